//! `BENCHMARKS.md` from the suite's result files and `perf/notes.md`.
//!
//! Result files are read as untyped JSON ([`serde_json::Value`]) so the report depends only
//! on the fields it prints, not on the producing module's types: a missing field prints
//! "–", a missing or failed step prints "not measured: <reason>".

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use super::{settings, Manifest, StepRecord};
use crate::report::{group, median_min_max};

/// Each step's main result file, relative to the results folder.
pub fn result_file(step: &str) -> Option<String> {
    match step {
        "engine" => Some("engine.json".to_string()),
        "e2e-async" => Some(format!("e2e-async-{}.json", settings::E2E_RATE)),
        "e2e-fsync" => Some(format!("e2e-fsync-{}.json", settings::E2E_RATE)),
        "cluster" => Some("e2e-cluster3-vs-single.json".to_string()),
        "failover" => Some("failover.json".to_string()),
        "lobster" => Some("lobster.json".to_string()),
        "peers" => Some("peers.json".to_string()),
        "callgrind" => Some("callgrind.out".to_string()),
        _ => None,
    }
}

/// The callgrind figures: instructions inside `replay_measured` and what it processed.
#[derive(Clone, Copy, Debug)]
pub struct Callgrind {
    /// Instructions (Ir) counted.
    pub instructions: u64,
    /// Measured commands.
    pub commands: u64,
    /// Events they produced.
    pub events: u64,
}

/// Everything the report is made from.
pub struct Inputs {
    /// What ran.
    pub manifest: Manifest,
    /// The results folder as given (workspace-relative).
    pub results_rel: String,
    /// The hand-written notes, verbatim (`None` if the file is missing).
    pub notes: Option<String>,
    /// Parsed result files of the steps that succeeded, by step name.
    pub data: BTreeMap<String, Value>,
    /// The callgrind figures, if that step succeeded.
    pub callgrind: Option<Callgrind>,
    /// Why a step has no figures, by step name.
    pub missing: BTreeMap<String, String>,
}

impl Inputs {
    /// Reads the result files of every step that succeeded.
    pub fn load(
        manifest: &Manifest,
        results: &Path,
        results_rel: &Path,
        notes: &Path,
    ) -> anyhow::Result<Inputs> {
        let mut inputs = Inputs {
            manifest: manifest.clone(),
            results_rel: results_rel.display().to_string(),
            notes: std::fs::read_to_string(notes).ok(),
            data: BTreeMap::new(),
            callgrind: None,
            missing: BTreeMap::new(),
        };
        for step in &manifest.steps {
            if !step.ok() {
                inputs.missing.insert(
                    step.name.clone(),
                    step.reason.clone().unwrap_or_else(|| "failed".to_string()),
                );
                continue;
            }
            let Some(file) = result_file(&step.name) else {
                continue;
            };
            let path = results.join(&file);
            if step.name == "callgrind" {
                match read_callgrind(&path, &results.join("logs").join("callgrind.log")) {
                    Ok(figures) => inputs.callgrind = Some(figures),
                    Err(reason) => {
                        inputs.missing.insert(step.name.clone(), reason);
                    }
                }
                continue;
            }
            match std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
                .and_then(|text| {
                    serde_json::from_str::<Value>(&text)
                        .map_err(|e| format!("cannot parse {}: {e}", path.display()))
                }) {
                Ok(value) => {
                    inputs.data.insert(step.name.clone(), value);
                }
                Err(reason) => {
                    inputs.missing.insert(step.name.clone(), reason);
                }
            }
        }
        Ok(inputs)
    }

    fn step(&self, name: &str) -> Option<&StepRecord> {
        self.manifest.steps.iter().find(|s| s.name == name)
    }

    /// The step's result, or why there is none.
    fn get(&self, name: &str) -> Result<&Value, String> {
        if let Some(value) = self.data.get(name) {
            return Ok(value);
        }
        Err(self.missing.get(name).cloned().unwrap_or_else(|| {
            if self.step(name).is_some() {
                "no result file".to_string()
            } else {
                "not part of this run of the suite".to_string()
            }
        }))
    }
}

/// Reads the `summary:` (or `totals:`) line of a callgrind profile and the
/// `... commands N events M` line `keel-callgrind-replay` prints.
fn read_callgrind(profile: &Path, log: &Path) -> Result<Callgrind, String> {
    let text = std::fs::read_to_string(profile)
        .map_err(|e| format!("cannot read {}: {e}", profile.display()))?;
    let instructions = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .ok_or_else(|| format!("no summary line in {}", profile.display()))?;
    let output = std::fs::read_to_string(log).unwrap_or_default();
    let field = |name: &str| {
        output.lines().find_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            words
                .windows(2)
                .find(|w| w[0] == name)
                .and_then(|w| w[1].parse::<u64>().ok())
        })
    };
    let commands = field("commands").ok_or("no `commands N` line in the replay's output")?;
    Ok(Callgrind {
        instructions,
        commands,
        events: field("events").unwrap_or(0),
    })
}

/// `value[a][b]...` as a number.
pub fn num(value: &Value, path: &[&str]) -> Option<f64> {
    let mut v = value;
    for key in path {
        v = v.get(key)?;
    }
    v.as_f64()
}

/// `value[a][b]...` as a string.
fn text<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut v = value;
    for key in path {
        v = v.get(key)?;
    }
    v.as_str()
}

/// A figure: grouped integer from 100 up, one decimal below.
fn fig(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() && v.abs() >= 100.0 => group(v.round() as u64),
        Some(v) if v.is_finite() && v.fract() == 0.0 => format!("{v:.0}"),
        Some(v) if v.is_finite() => format!("{v:.1}"),
        _ => "–".to_string(),
    }
}

/// `**median** (min–max)` of a `{median, min, max}` object.
fn spread(value: &Value, path: &[&str]) -> String {
    let mut v = value;
    for key in path {
        match v.get(key) {
            Some(next) => v = next,
            None => return "–".to_string(),
        }
    }
    let median = num(v, &["median"]);
    if median.is_none() {
        return "–".to_string();
    }
    median_min_max(median, num(v, &["min"]), num(v, &["max"]), fig)
}

/// `**median×** (min–max)` of a `{median, min, max}` object of ratios.
fn ratio_spread(value: &Value, path: &[&str]) -> String {
    let at = |key: &str| {
        let mut full: Vec<&str> = path.to_vec();
        full.push(key);
        num(value, &full)
    };
    match (at("median"), at("min"), at("max")) {
        (Some(median), Some(min), Some(max)) => {
            format!("**{median:.2}×** ({min:.2}–{max:.2})")
        }
        _ => "–".to_string(),
    }
}

fn not_measured(out: &mut String, reason: &str) {
    let _ = writeln!(out, "**not measured:** {reason}\n");
}

fn reproduce(out: &mut String, inputs: &Inputs, steps: &[&str]) {
    let _ = writeln!(out, "```");
    for step in steps {
        if let Some(s) = inputs.step(step) {
            let _ = writeln!(out, "{}", s.command);
        }
    }
    let _ = writeln!(out, "```\n");
}

/// The whole report. `plots` are `(title, path relative to the report)`.
pub fn render(inputs: &Inputs, plots: &[(String, String)]) -> String {
    let mut out = String::new();
    let m = &inputs.manifest;
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "<!-- Generated by `keel-perf report` (perf/src/suite/) from {}/ and perf/notes.md. Edit perf/notes.md, not this file: the next run rewrites it. -->\n",
        inputs.results_rel
    );
    let _ = writeln!(
        out,
        "Every figure below was measured by one run of the benchmark suite and comes with the exact command that reproduces it (run from the workspace root). The whole suite is one command:\n\n```\ncargo build --release --workspace && target/release/keel-perf report\n```\n\nIt took **{:.1} minutes** this time. Timings depend on the machine and on whatever else runs on it (the load is given with each figure); instruction counts do not, so compare commits with those. Medians are over several runs, with the smallest and largest in brackets.\n",
        m.duration_s / 60.0
    );
    machine(&mut out, inputs);
    suite_table(&mut out, inputs);
    callgrind(&mut out, inputs);
    engine(&mut out, inputs, plots);
    peers(&mut out, inputs, plots);
    lobster(&mut out, inputs);
    e2e(&mut out, inputs, plots);
    cluster(&mut out, inputs);
    failover(&mut out, inputs);
    let _ = writeln!(out, "## Analysis and earlier measurements\n");
    match &inputs.notes {
        Some(notes) => {
            let _ = writeln!(
                out,
                "Hand-written, from `perf/notes.md` (included verbatim; figures there carry their own commands, dates and commits).\n"
            );
            let _ = writeln!(out, "{}", notes.trim_end());
        }
        None => not_measured(&mut out, "perf/notes.md is missing"),
    }
    out
}

fn machine(out: &mut String, inputs: &Inputs) {
    let m = &inputs.manifest;
    let mi = &m.machine;
    let _ = writeln!(out, "## Machine\n");
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| CPU | {} |", mi.cpu);
    let _ = writeln!(out, "| cores | {} |", mi.cores);
    let _ = writeln!(out, "| memory | {:.0} GiB |", mi.memory_gib);
    let _ = writeln!(out, "| kernel | Linux {} |", mi.kernel);
    let _ = writeln!(out, "| rustc | {} |", mi.rustc);
    let _ = writeln!(
        out,
        "| profile | `release` (`lto = \"fat\"`, `codegen-units = 1`, `panic = \"abort\"`), binaries from `{}` |",
        m.binaries
    );
    let _ = writeln!(out, "| commit | `{}` |", mi.commit);
    let _ = writeln!(out, "| date | {} |", mi.date);
    let _ = writeln!(
        out,
        "| load (1-min average) | {:.2} when the suite started, {:.2} when it ended |\n",
        m.load_before, m.load_after
    );
}

fn suite_table(out: &mut String, inputs: &Inputs) {
    let _ = writeln!(out, "## What ran\n");
    let _ = writeln!(
        out,
        "Reduced settings keep the suite under 10 minutes on a 2-core machine: engine workloads of 1,000,000 commands × 3 runs (`--quick`; the standalone default is 5,000,000 × 5); end-to-end runs of {} s measured after {} s of warm-up at {} messages/s, {} runs per configuration; {} failover trials; {} LOBSTER replays; peers on {} commands × {} runs; callgrind on {} commands. Each step's result files (JSON with every run, and Markdown) and its log are in `{}/`.\n",
        settings::E2E_DURATION_S,
        settings::E2E_WARMUP_S,
        group(u64::from(settings::E2E_RATE)),
        settings::E2E_RUNS,
        settings::FAILOVER_TRIALS,
        settings::LOBSTER_RUNS,
        group(u64::from(settings::PEERS_COMMANDS)),
        settings::PEERS_RUNS,
        group(u64::from(settings::CALLGRIND_COMMANDS)),
        inputs.results_rel
    );
    let _ = writeln!(
        out,
        "| step | command | status | seconds |\n|---|---|---|---|"
    );
    for step in &inputs.manifest.steps {
        let status = match (&step.reason, inputs.missing.get(&step.name)) {
            (_, Some(reason)) => format!("not measured: {reason}"),
            (None, None) => "ok".to_string(),
            (Some(reason), None) => format!("not measured: {reason}"),
        };
        let _ = writeln!(
            out,
            "| {} | `{}` | {} | {:.0} |",
            step.name,
            step.command,
            status.replace('|', "\\|"),
            step.duration_s
        );
    }
    let _ = writeln!(out);
}

fn callgrind(out: &mut String, inputs: &Inputs) {
    let _ = writeln!(out, "## Instructions per command (callgrind)\n");
    let _ = writeln!(
        out,
        "Free of machine noise: the exchange-core mix (seed 1), counted by callgrind only inside the function that processes the measured commands (`--toggle-collect`; generation and warm-up are outside it). `benches/callgrind.sh` does the same after building, and also prints where the instructions go.\n"
    );
    reproduce(out, inputs, &["callgrind"]);
    match (&inputs.callgrind, inputs.missing.get("callgrind")) {
        (Some(c), _) => {
            let _ = writeln!(out, "| | |\n|---|---|");
            let _ = writeln!(
                out,
                "| instructions (Ir) in `replay_measured` | {} |",
                group(c.instructions)
            );
            let _ = writeln!(
                out,
                "| commands | {} ({} events) |",
                group(c.commands),
                group(c.events)
            );
            let _ = writeln!(
                out,
                "| **instructions per command** | **{:.1}** |\n",
                c.instructions as f64 / c.commands.max(1) as f64
            );
        }
        (None, reason) => not_measured(
            out,
            reason.map_or("not part of this run of the suite", String::as_str),
        ),
    }
}

fn plot_link(out: &mut String, plots: &[(String, String)], key: &str) {
    for (title, path) in plots {
        if path.contains(key) {
            let _ = writeln!(out, "![{title}]({path})\n");
        }
    }
}

fn engine(out: &mut String, inputs: &Inputs, plots: &[(String, String)]) {
    let _ = writeln!(out, "## Engine: throughput and per-command latency\n");
    let _ = writeln!(
        out,
        "In process, one thread, no journal or network: each workload is generated from its seed (untimed), its warm-up applied untimed, and the measured commands timed as one block on a fresh engine (commands/s over the whole stream). One more pass times each command with `Instant` into an HDR histogram (or batches of commands when a clock read costs more than half a command; the table says which). Latencies include the clock's own cost (a back-to-back pair, given as \"clock pair\"). Generators: `perf/src/engine/workloads.rs`; the digest identifies the exact stream.\n"
    );
    reproduce(out, inputs, &["engine"]);
    let value = match inputs.get("engine") {
        Ok(v) => v,
        Err(reason) => return not_measured(out, &reason),
    };
    let _ = writeln!(
        out,
        "| workload | commands/s | p50 | p99 | p99.9 | p99.99 | max | timing | resting orders (mean) | trades/command | load before→after |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    let empty = Vec::new();
    let workloads = value
        .get("workloads")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    for w in workloads {
        let ns = |key: &str| format!("{} ns", fig(num(w, &["latency", key])));
        let batch = num(w, &["latency", "batch"]).unwrap_or(1.0);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} (clock pair {} ns) | {} | {:.3} | {:.2}→{:.2} |",
            text(w, &["name"]).unwrap_or("?"),
            spread(w, &["commands_per_s"]),
            ns("p50_ns"),
            ns("p99_ns"),
            ns("p99_9_ns"),
            ns("p99_99_ns"),
            ns("max_ns"),
            if batch <= 1.0 {
                "each command".to_string()
            } else {
                format!("batches of {batch:.0}")
            },
            fig(num(w, &["latency", "clock_pair_p50_ns"])),
            fig(num(w, &["mix", "resting_orders_mean"])),
            num(w, &["mix", "trades_per_command"]).unwrap_or(f64::NAN),
            num(w, &["load_before"]).unwrap_or(f64::NAN),
            num(w, &["load_after"]).unwrap_or(f64::NAN),
        );
    }
    let _ = writeln!(out, "\n| workload | what it is | digest |\n|---|---|---|");
    for w in workloads {
        let _ = writeln!(
            out,
            "| {} | {} | `{}` |",
            text(w, &["name"]).unwrap_or("?"),
            text(w, &["description"]).unwrap_or(""),
            text(w, &["digest"]).unwrap_or("")
        );
    }
    let _ = writeln!(out);
    plot_link(out, plots, "engine-");
}

fn peers(out: &mut String, inputs: &Inputs, plots: &[(String, String)]) {
    let _ = writeln!(
        out,
        "## Keel beside other order books (exchange-core mix)\n"
    );
    let _ = writeln!(
        out,
        "The same command stream through each crate's order book, interleaved runs, each on a fresh book, warm-up untimed (`benches/src/bin/peers.rs`; what each adapter maps, emulates or skips, and what each engine does more or less than Keel, is in `{}/peers.md`).\n",
        inputs.results_rel
    );
    reproduce(out, inputs, &["peers"]);
    let value = match inputs.get("peers") {
        Ok(v) => v,
        Err(reason) => return not_measured(out, &reason),
    };
    let _ = writeln!(
        out,
        "| engine | crate | commands/s | Keel ÷ this (per-run ratios) | trades |\n|---|---|---|---|---|"
    );
    let empty = Vec::new();
    for e in value
        .get("engines")
        .and_then(Value::as_array)
        .unwrap_or(&empty)
    {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            text(e, &["name"]).unwrap_or("?"),
            text(e, &["crate"]).unwrap_or(""),
            spread(e, &["commands_per_s"]),
            ratio_spread(e, &["keel_over_peer"]),
            fig(num(e, &["tally", "trades"]))
        );
    }
    let _ = writeln!(out);
    plot_link(out, plots, "peers");
}

fn lobster(out: &mut String, inputs: &Inputs) {
    let _ = writeln!(out, "## LOBSTER: real NASDAQ order flow\n");
    let _ = writeln!(
        out,
        "LOBSTER sample days replayed through the engine: engine processing only is timed; executions and books are compared with the exchange's (rules and mismatch classes: [`perf/LOBSTER.md`](perf/LOBSTER.md); per-class counts in `{}/lobster.md`).\n",
        inputs.results_rel
    );
    reproduce(out, inputs, &["lobster"]);
    let value = match inputs.get("lobster") {
        Ok(v) => v,
        Err(reason) => return not_measured(out, &reason),
    };
    let _ = writeln!(
        out,
        "| symbol | messages | commands | commands/s | executions matched | book rows equal | load before→after |\n|---|---|---|---|---|---|---|"
    );
    let empty = Vec::new();
    for p in value
        .get("pairs")
        .and_then(Value::as_array)
        .unwrap_or(&empty)
    {
        let pct = |path: &[&str]| {
            num(p, path).map_or("–".to_string(), |v| format!("{:.2}%", v * 100.0))
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} of {} ({}) | {} of {} ({}) | {:.2}→{:.2} |",
            text(p, &["symbol"]).unwrap_or("?"),
            fig(num(p, &["messages"])),
            fig(num(p, &["timing", "commands"])),
            spread(p, &["timing", "commands_per_s"]),
            fig(num(p, &["checks", "executions", "matched"])),
            fig(num(p, &["checks", "executions", "checkable"])),
            pct(&["checks", "executions", "match_share"]),
            fig(num(p, &["checks", "book", "equal"])),
            fig(num(p, &["checks", "book", "compared"])),
            pct(&["checks", "book", "equal_share"]),
            num(p, &["timing", "load_before"]).unwrap_or(f64::NAN),
            num(p, &["timing", "load_after"]).unwrap_or(f64::NAN),
        );
    }
    let _ = writeln!(
        out,
        "\nA short file's commands/s is dominated by timer and cache effects; the disagreements are explained in the notes below and in `perf/LOBSTER.md`.\n"
    );
}

/// One row of an end-to-end table from a report's `summary`.
fn e2e_row(out: &mut String, label: &str, report: &Value) {
    let s = |key: &str| spread(report, &["summary", key]);
    let runs = report
        .get("runs")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let cut = num(report, &["summary", "runs_cut_off", "median"]).unwrap_or(0.0);
    let _ = writeln!(
        out,
        "| {label} | {}{} | {} | {} | {} | {} | {} | {} | {} | {} |",
        runs,
        if cut > 0.0 {
            format!(" ({cut:.0} cut off)")
        } else {
            String::new()
        },
        s("achieved_rate"),
        s("accepted_p50_us"),
        s("accepted_p99_us"),
        s("accepted_p99_9_us"),
        s("accepted_max_us"),
        s("executed_p99_us"),
        s("load_before"),
        s("other_cores"),
    );
}

const E2E_HEADER: &str = "| node | runs | sent/s | order → Accepted p50 (µs) | p99 | p99.9 | max | IOC → Executed p99 | load before | other CPU (cores) |\n|---|---|---|---|---|---|---|---|---|---|";

fn e2e(out: &mut String, inputs: &Inputs, plots: &[(String, String)]) {
    let _ = writeln!(out, "## Order entry end to end: one node\n");
    let _ = writeln!(
        out,
        "`keel-perf e2e` starts a fresh `keel serve` per run (8 SoupBinTCP/OUCH sessions on loopback, one open-loop generator thread, 10% crossing IOC orders, the rest resting orders and cancels) and measures from each message's *intended* send time (coordinated-omission corrected). The method, the sustain criteria and the order flow are described in the notes below (\"Order entry end to end\") and in `perf/src/e2e.rs`.\n"
    );
    reproduce(out, inputs, &["e2e-async", "e2e-fsync"]);
    let _ = writeln!(out, "{E2E_HEADER}");
    let mut missing = Vec::new();
    for (step, label) in [("e2e-async", "`async`"), ("e2e-fsync", "`fsync`")] {
        match inputs.get(step) {
            Ok(report) => e2e_row(out, label, report),
            Err(reason) => missing.push(format!("{label}: {reason}")),
        }
    }
    let _ = writeln!(out);
    for line in missing {
        not_measured(out, &line);
    }
    plot_link(out, plots, "e2e-latency");
}

fn cluster(out: &mut String, inputs: &Inputs) {
    let _ = writeln!(
        out,
        "## Order entry end to end: 3-node Raft cluster vs one node\n"
    );
    let _ = writeln!(
        out,
        "The same load against the leader of a fresh 3-node cluster on loopback (every response released once a majority holds its input), interleaved with single-node runs of the same configuration so drift in the machine's load hits both alike.\n"
    );
    reproduce(out, inputs, &["cluster"]);
    let value = match inputs.get("cluster") {
        Ok(v) => v,
        Err(reason) => return not_measured(out, &reason),
    };
    let _ = writeln!(out, "{E2E_HEADER}");
    if let Some(single) = value.get("single") {
        e2e_row(out, "single node", single);
    }
    if let Some(cluster) = value.get("cluster") {
        e2e_row(out, "3-node cluster (leader)", cluster);
    }
    let ratio =
        |key: &str| num(value, &["ratios", key]).map_or("–".to_string(), |r| format!("{r:.2}×"));
    let pairs = value
        .get("pair_p99_ratios")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|r| r.as_f64().map_or("–".to_string(), |r| format!("{r:.2}×")))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let met = value.get("aim_met").and_then(Value::as_bool);
    let _ = writeln!(
        out,
        "\nCluster ÷ single (medians): p50 {}, **p99 {}**, p99.9 {}; p99 ratio per back-to-back pair: {}. Aim: p99 ratio ≤ {}× — **{}**.\n",
        ratio("accepted_p50_us"),
        ratio("accepted_p99_us"),
        ratio("accepted_p99_9_us"),
        pairs,
        fig(num(value, &["aim_p99_ratio"])),
        match met {
            Some(true) => "met",
            Some(false) => "not met",
            None => "–",
        }
    );
}

fn failover(out: &mut String, inputs: &Inputs) {
    let _ = writeln!(out, "## Failover: kill -9 of the leader\n");
    let _ = writeln!(
        out,
        "A client sends steadily paced orders to the leader of a 3-node cluster; at a random moment the leader gets SIGKILL. Failover time = from the kill to the first Order Accepted for an order sent after the kill (necessarily by the new leader). After each trial the killed node is restarted and must catch up (equal journal roots), and every order the client saw acknowledged must be in the replayed stream exactly once. Method: `perf/src/failover.rs`.\n"
    );
    reproduce(out, inputs, &["failover"]);
    let value = match inputs.get("failover") {
        Ok(v) => v,
        Err(reason) => return not_measured(out, &reason),
    };
    let s = |key: &str| num(value, &["summary", key]);
    let ms = |key: &str| fig(s(key));
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(
        out,
        "| trials (measured / failed) | {} ({} / {}) |",
        fig(s("trials")),
        fig(s("measured")),
        fig(s("failed"))
    );
    let _ = writeln!(
        out,
        "| **failover time, ms: median (min–max) over the trials** | **{}** ({}–{}) |",
        ms("failover_p50_ms"),
        ms("failover_min_ms"),
        ms("failover_max_ms")
    );
    let _ = writeln!(
        out,
        "| of which, medians (ms after the kill): client sees the disconnect / new leader elected / its order entry open / client logged in again | {} / {} / {} / {} |",
        ms("disconnected_p50_ms"),
        ms("elected_p50_ms"),
        ms("open_p50_ms"),
        ms("reconnected_p50_ms")
    );
    let _ = writeln!(
        out,
        "| restarted node caught up (median ms) | {} |",
        ms("converge_p50_ms")
    );
    let lost = value
        .get("summary")
        .and_then(|s| s.get("nothing_lost"))
        .and_then(Value::as_bool);
    let _ = writeln!(
        out,
        "| orders acknowledged; lost or duplicated | {}; {} ({}) |",
        fig(s("acknowledged")),
        fig(s("lost_or_duplicated")),
        match lost {
            Some(true) => "nothing lost",
            Some(false) => "**LOSS**",
            None => "–",
        }
    );
    let aim = |met: &str, limit: &str| {
        let flag = value
            .get("summary")
            .and_then(|s| s.get(met))
            .and_then(Value::as_bool);
        format!(
            "≤ {} ms: {}",
            fig(num(value, &["args", limit])),
            match flag {
                Some(true) => "met",
                Some(false) => "not met",
                None => "–",
            }
        )
    };
    let _ = writeln!(
        out,
        "| aims | median {}; largest {} |\n",
        aim("p50_aim_met", "aim_p50_ms"),
        aim("max_aim_met", "aim_max_ms")
    );
}
