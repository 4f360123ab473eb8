// Tests unwrap and panic on purpose: a failed unwrap or a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A short `keel-perf drill` against real `keel serve` processes: a full data disk under
//! the leader (each node on its own loop-mounted ext4; skipped, saying so, where loop
//! mounts are unavailable: not root, or `KEEL_SKIP_LOOP_MOUNT=1`), then one kill -9,
//! SIGSTOP, isolation and one-way partition each way of the leader (the leader that cannot
//! hear its followers hands leadership on), and a slow disk under the leader (its image on
//! the drill's FUSE mount; skipped like the full disk), a few seconds each, then the drill's
//! checks of every replica's journal (every acknowledged order exactly once, every received
//! message byte-identical, no token twice, equal roots). No timing is asserted: the outage
//! figures are the drill's report, not this test's business.
//!
//! The long run is documented in the README: `target/release/keel-perf drill --faults 100`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The `keel` binary next to `keel-perf`, built first if this package's tests run alone.
fn keel_binary() -> PathBuf {
    let perf = PathBuf::from(env!("CARGO_BIN_EXE_keel-perf"));
    let keel = perf.with_file_name("keel");
    if !keel.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "keel"]);
        if perf.parent().and_then(Path::file_name) == Some("release".as_ref()) {
            build.arg("--release");
        }
        assert!(build.status().unwrap().success(), "cannot build keel");
    }
    keel
}

#[test]
fn a_short_drill_of_each_leader_fault_passes_every_check() {
    let results = tempfile::tempdir().unwrap();
    let keel = keel_binary();
    let output = Command::new(env!("CARGO_BIN_EXE_keel-perf"))
        .args([
            "drill",
            "--faults",
            // The full disk first: on nodes never restarted, the Raft index is still sparse
            // and the next block it needs fails the node within about 128 entries; later,
            // a node fails only at the end of its journal segment (up to a minute).
            "full-disk-leader,kill-leader,stop-leader,isolate,oneway-out,oneway-in,slow-disk-leader",
            "--quick",
            "--seed",
            "5",
            "--rate",
            "200",
            "--keel",
        ])
        .arg(&keel)
        .arg("--results")
        .arg(results.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(results.path().join("drill.json"))
            .unwrap_or_else(|e| panic!("no drill.json ({e}); keel-perf said:\n{stderr}")),
    )
    .unwrap();
    let faults = report["faults"].as_array().unwrap();
    let kinds: Vec<&str> = faults
        .iter()
        .map(|f| f["fault"]["kind"].as_str().unwrap())
        .collect();
    let notes = report["notes"].as_array().unwrap();
    let skipped = |kind: &str| {
        notes.iter().any(|n| {
            n.as_str()
                .unwrap()
                .starts_with(&format!("{kind} faults SKIPPED"))
        })
    };
    let disk_kinds = ["full-disk", "slow-disk"];
    let skipped_kinds: Vec<&str> = disk_kinds.into_iter().filter(|k| skipped(k)).collect();
    if !skipped_kinds.is_empty() {
        // SAFETY: a plain query of this process's effective user id.
        let root = unsafe { libc::geteuid() } == 0;
        assert!(
            !root || std::env::var("KEEL_SKIP_LOOP_MOUNT").as_deref() == Ok("1"),
            "running as root, yet the drill could not mount its disks (set \
             KEEL_SKIP_LOOP_MOUNT=1 to skip the disk faults): {notes:?}"
        );
        eprintln!("{skipped_kinds:?} faults SKIPPED: {notes:?}");
    }
    let expected: Vec<&str> = [
        "full-disk",
        "kill",
        "stop",
        "isolate",
        "oneway",
        "oneway",
        "slow-disk",
    ]
    .into_iter()
    .filter(|k| !skipped_kinds.contains(k))
    .collect();
    assert_eq!(kinds, expected, "{stderr}");
    if !skipped_kinds.contains(&"full-disk") {
        // The node whose disk filled exited with status 74 on its own.
        let exit = faults[0]["exit"].as_str().unwrap();
        assert!(exit.contains("74"), "{exit}\n{stderr}");
        assert!(faults[0]["failed_ms"].is_number(), "{stderr}");
    }
    for fault in faults {
        assert!(fault["error"].is_null(), "{fault}\n{stderr}");
        assert!(fault["recovered_ms"].is_number(), "{fault}\n{stderr}");
        assert!(fault["caught_up_ms"].is_number(), "{fault}\n{stderr}");
    }
    let checks = report["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 5, "{stderr}");
    for check in checks {
        assert!(check["cases"].as_u64().unwrap() > 0, "{check}");
        assert_eq!(check["ok"], true, "{check}\n{stderr}");
    }
    assert_eq!(report["problems"], serde_json::json!([]), "{stderr}");
    // A node that exits on its own is a failure (no zombie, but no needless death either:
    // a leader deposed by check-quorum or its lease must step down and carry on).
    for fault in faults {
        let exits = fault["node_exits"].as_array().unwrap();
        assert!(
            exits.is_empty(),
            "a node exited during fault {}: {exits:?}\n{stderr}",
            fault["number"]
        );
    }
    assert!(output.status.success(), "keel-perf drill failed:\n{stderr}");
    let accepted: u64 = report["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["accepted"].as_u64().unwrap())
        .sum();
    assert!(accepted > 0, "{stderr}");
}
