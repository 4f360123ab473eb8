// Tests unwrap and panic on purpose: a failed unwrap or a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `keel-perf engine` workloads are a function of their seed, and `keel-perf report`'s
//! Markdown writer includes every section (and says "not measured" for a missing piece),
//! given fake result files. Nothing here asserts a timing.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

fn keel_perf(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_keel-perf"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs the four workloads (small) with `seed` into `dir`; returns the JSON report.
fn engine_report(dir: &Path, seed: &str) -> Value {
    let output = keel_perf(&[
        "engine",
        "--commands",
        "20000",
        "--runs",
        "1",
        "--seed",
        seed,
        "--results",
        dir.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "keel-perf engine failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(dir.join("engine.json")).unwrap()).unwrap()
}

fn digests(report: &Value) -> Vec<(String, String)> {
    report["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["name"].as_str().unwrap().to_string(),
                w["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn engine_workloads_are_deterministic_from_their_seed() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let first = engine_report(a.path(), "7");
    let again = engine_report(b.path(), "7");
    let other = engine_report(c.path(), "8");
    let names: Vec<String> = digests(&first).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "exchange-core",
            "deep-book",
            "sweep-heavy",
            "cancel-heavy-mm"
        ]
    );
    assert_eq!(digests(&first), digests(&again), "same seed, same streams");
    for ((name, x), (_, y)) in digests(&first).iter().zip(digests(&other)) {
        assert_ne!(*x, y, "{name}: seeds 7 and 8 gave the same stream");
    }
    for w in first["workloads"].as_array().unwrap() {
        let name = w["name"].as_str().unwrap();
        // Same stream, same engine: the same events, and every generated command is valid.
        assert_eq!(w["commands"], 20_000, "{name}");
        assert_eq!(
            w["mix"]["rejected"], 0,
            "{name}: generated commands were refused"
        );
        assert!(w["events"].as_u64().unwrap() >= 20_000, "{name}");
    }
    let by_name = |name: &str| {
        first["workloads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == name)
            .unwrap()
            .clone()
    };
    assert!(
        by_name("deep-book")["mix"]["resting_orders_mean"]
            .as_f64()
            .unwrap()
            > 90_000.0
    );
    assert!(
        by_name("sweep-heavy")["mix"]["trades_per_command"]
            .as_f64()
            .unwrap()
            > 0.3
    );
    assert!(
        by_name("cancel-heavy-mm")["mix"]["cancel_share"]
            .as_f64()
            .unwrap()
            > 0.4
    );
}

fn spread(median: f64) -> Value {
    json!({"median": median, "min": median * 0.9, "max": median * 1.1})
}

fn e2e_report(p50: f64) -> Value {
    let distribution = json!([
        [0.0, p50 / 2.0],
        [50.0, p50],
        [90.0, p50 * 2.0],
        [99.0, p50 * 6.0],
        [99.9, p50 * 20.0],
        [100.0, p50 * 50.0]
    ]);
    json!({
        "runs": [{"result": {"session_errors": [], "accepted": {"p99_us": p50 * 6.0, "distribution": distribution}}}],
        "summary": {
            "achieved_rate": spread(20_000.0),
            "accepted_p50_us": spread(p50),
            "accepted_p99_us": spread(p50 * 6.0),
            "accepted_p99_9_us": spread(p50 * 20.0),
            "accepted_max_us": spread(p50 * 50.0),
            "executed_p99_us": spread(p50 * 6.5),
            "load_before": spread(1.0),
            "other_cores": spread(0.1),
            "runs_cut_off": spread(0.0)
        }
    })
}

fn write_json(dir: &Path, name: &str, value: &Value) {
    std::fs::write(dir.join(name), serde_json::to_string(value).unwrap()).unwrap();
}

#[test]
fn report_includes_every_section_given_fake_results() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");
    std::fs::create_dir_all(&results).unwrap();
    let steps = [
        "engine",
        "e2e-async",
        "e2e-fsync",
        "cluster",
        "failover",
        "lobster",
        "peers",
        "callgrind",
    ];
    let manifest = json!({
        "machine": {"cpu": "Fake CPU 9000", "cores": 2, "kernel": "6.0-fake", "memory_gib": 24.0,
                    "commit": "abc1234", "date": "2026-01-01T00:00:00Z", "rustc": "rustc 1.99"},
        "command": "keel-perf report",
        "binaries": "/fake/target/release",
        "duration_s": 321.0,
        "load_before": 0.5,
        "load_after": 1.5,
        "steps": steps.iter().map(|name| {
            let missing = *name == "callgrind";
            json!({
                "name": name,
                "command": format!("target/release/keel-perf {name} --fake"),
                "status": if missing { "not measured" } else { "ok" },
                "reason": if missing { Some("valgrind is not installed") } else { None },
                "duration_s": 10.0,
                "log": format!("logs/{name}.log"),
            })
        }).collect::<Vec<_>>(),
    });
    write_json(&results, "suite.json", &manifest);
    write_json(
        &results,
        "engine.json",
        &json!({"workloads": [{
            "name": "deep-book", "description": "a fake deep book", "digest": "00ff00ff00ff00ff",
            "commands_per_s": spread(12_345_678.0),
            "latency": {"p50_ns": 61, "p99_ns": 123, "p99_9_ns": 456, "p99_99_ns": 789, "max_ns": 9999,
                        "batch": 1, "clock_pair_p50_ns": 20,
                        "distribution": [[0.0, 30.0], [50.0, 61.0], [90.0, 90.0], [99.0, 123.0], [99.9, 456.0]]},
            "mix": {"resting_orders_mean": 100000.0, "trades_per_command": 0.05},
            "load_before": 1.0, "load_after": 1.2
        }]}),
    );
    write_json(&results, "e2e-async-20000.json", &e2e_report(111.0));
    write_json(&results, "e2e-fsync-20000.json", &e2e_report(222.0));
    write_json(
        &results,
        "e2e-cluster3-vs-single.json",
        &json!({"single": e2e_report(111.0), "cluster": e2e_report(333.0),
                "ratios": {"accepted_p50_us": 3.0, "accepted_p99_us": 2.75, "accepted_p99_9_us": 3.0},
                "pair_p99_ratios": [2.75], "aim_p99_ratio": 3.0, "aim_met": true}),
    );
    write_json(
        &results,
        "failover.json",
        &json!({"args": {"aim_p50_ms": 500.0, "aim_max_ms": 1000.0},
                "summary": {"trials": 5, "measured": 5, "failed": 0, "failover_p50_ms": 432.0,
                            "failover_min_ms": 301.0, "failover_max_ms": 876.0, "acknowledged": 2500,
                            "lost_or_duplicated": 0, "nothing_lost": true,
                            "p50_aim_met": true, "max_aim_met": true}}),
    );
    write_json(
        &results,
        "lobster.json",
        &json!({"pairs": [{"symbol": "GOOG", "messages": 49482,
                "timing": {"commands": 56161, "commands_per_s": spread(22_000_000.0)},
                "checks": {"executions": {"matched": 4403, "checkable": 5456, "match_share": 0.807},
                           "book": {"equal": 23593, "compared": 47449, "equal_share": 0.4972}}}]}),
    );
    write_json(
        &results,
        "peers.json",
        &json!({"engines": [
            {"name": "keel", "crate": "keel-engine", "commands_per_s": spread(9_000_000.0),
             "keel_over_peer": spread(1.0), "tally": {"trades": 55777}},
            {"name": "matchcore", "crate": "matchcore 0.4.0", "commands_per_s": spread(2_500_000.0),
             "keel_over_peer": spread(3.6), "tally": {"trades": 55001}}]}),
    );
    let notes = tmp.path().join("notes.md");
    std::fs::write(
        &notes,
        "### A hand-written topic\n\nNOTES-MARKER survives.\n",
    )
    .unwrap();
    let out = tmp.path().join("BENCHMARKS.md");
    let plots = tmp.path().join("plots");
    let output = keel_perf(&[
        "report",
        "--render-only",
        "--results",
        results.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--notes",
        notes.to_str().unwrap(),
        "--plots",
        plots.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "keel-perf report failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    for expected in [
        "# Benchmarks",
        "cargo build --release --workspace && target/release/keel-perf report",
        "## Machine",
        "Fake CPU 9000",
        "abc1234",
        "2026-01-01T00:00:00Z",
        "## What ran",
        "## Instructions per command (callgrind)",
        "**not measured:** valgrind is not installed",
        "## Engine: throughput and per-command latency",
        "target/release/keel-perf engine --fake",
        "**12,345,678** (11,111,110–13,580,246)",
        "00ff00ff00ff00ff",
        "## Keel beside other order books",
        "matchcore 0.4.0",
        "## LOBSTER: real NASDAQ order flow",
        "80.70%",
        "## Order entry end to end: one node",
        "**111** (99.9–122)",
        "## Order entry end to end: 3-node Raft cluster vs one node",
        "**p99 2.75×**",
        "## Failover: kill -9 of the leader",
        "**432** (301–876)",
        "**3.60×** (3.24–3.96)",
        "nothing lost",
        "## Analysis and earlier measurements",
        "NOTES-MARKER survives.",
        "e2e-latency.svg",
        "peers-throughput.svg",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    for plot in [
        "e2e-latency.svg",
        "engine-latency.svg",
        "engine-throughput.svg",
        "peers-throughput.svg",
    ] {
        let svg = std::fs::read_to_string(plots.join(plot)).unwrap();
        assert!(svg.starts_with("<svg"), "{plot} is not an SVG");
    }
}
