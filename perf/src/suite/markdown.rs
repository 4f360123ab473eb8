//! `BENCHMARKS.md` from the suite's result files and `perf/notes.md`.
//!
//! Each result file is read back into the type its tool wrote it from ([`Results`]), and
//! each table comes from that result's own renderer, next to the tool's Markdown:
//! [`engine::summary_tables`], [`PeersReport::summary_table`], [`lobster::summary_table`],
//! [`report::summary_row`] and [`report::comparison_summary`], [`failover::summary_table`].
//! This module only lays out the page: headings, the method in words, the commands that
//! reproduce each figure, and "not measured: <reason>" for a step that failed, was skipped
//! or whose file cannot be read. The result types take `#[serde(default)]`, so a file
//! written before a field existed still reads (the field at its default), and a figure
//! written as `null` (not finite) reads as NaN and prints "–".

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use keel_benches::peers::report::PeersReport;
use serde::de::DeserializeOwned;

use super::{settings, Manifest, StepRecord};
use crate::e2e::{Comparison, Report as E2eReport};
use crate::engine::{self, EngineReport};
use crate::failover::{self, FailoverReport};
use crate::lobster;
use crate::report::{self, group};

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
    /// The result files of the steps that succeeded, read back.
    pub results: Results,
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
            results: Results::default(),
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
            if let Err(reason) = inputs.results.read(&step.name, &path) {
                inputs.missing.insert(step.name.clone(), reason);
            }
        }
        Ok(inputs)
    }

    fn step(&self, name: &str) -> Option<&StepRecord> {
        self.manifest.steps.iter().find(|s| s.name == name)
    }

    /// The step's result, or why there is none.
    fn get<'a, T>(&self, name: &str, result: &'a Option<T>) -> Result<&'a T, String> {
        if let Some(value) = result {
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

/// The result files of the suite's steps, each read into the type its tool wrote it from.
#[derive(Default)]
pub struct Results {
    /// `engine`.
    pub engine: Option<EngineReport>,
    /// `e2e-async`.
    pub e2e_async: Option<E2eReport>,
    /// `e2e-fsync`.
    pub e2e_fsync: Option<E2eReport>,
    /// `cluster`.
    pub cluster: Option<Comparison>,
    /// `failover`.
    pub failover: Option<FailoverReport>,
    /// `lobster`.
    pub lobster: Option<lobster::Report>,
    /// `peers`.
    pub peers: Option<PeersReport>,
}

impl Results {
    /// Reads `path`, the result file of step `name`; `Err(reason)` if it cannot.
    fn read(&mut self, name: &str, path: &Path) -> Result<(), String> {
        match name {
            "engine" => self.engine = Some(parse(path)?),
            "e2e-async" => self.e2e_async = Some(parse(path)?),
            "e2e-fsync" => self.e2e_fsync = Some(parse(path)?),
            "cluster" => self.cluster = Some(parse(path)?),
            "failover" => self.failover = Some(parse(path)?),
            "lobster" => self.lobster = Some(parse(path)?),
            "peers" => self.peers = Some(parse(path)?),
            _ => {}
        }
        Ok(())
    }
}

/// A result file read into its type.
fn parse<T: DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("cannot parse {}: {e}", path.display()))
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
    match inputs.get("engine", &inputs.results.engine) {
        Ok(report) => out.push_str(&engine::summary_tables(report)),
        Err(reason) => return not_measured(out, &reason),
    }
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
    match inputs.get("peers", &inputs.results.peers) {
        Ok(report) => {
            let _ = writeln!(out, "{}", report.summary_table());
        }
        Err(reason) => return not_measured(out, &reason),
    }
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
    match inputs.get("lobster", &inputs.results.lobster) {
        Ok(report) => out.push_str(&lobster::summary_table(report)),
        Err(reason) => return not_measured(out, &reason),
    }
    let _ = writeln!(
        out,
        "\nA short file's commands/s is dominated by timer and cache effects; the disagreements are explained in the notes below and in `perf/LOBSTER.md`.\n"
    );
}

fn e2e(out: &mut String, inputs: &Inputs, plots: &[(String, String)]) {
    let _ = writeln!(out, "## Order entry end to end: one node\n");
    let _ = writeln!(
        out,
        "`keel-perf e2e` starts a fresh `keel serve` per run (8 SoupBinTCP/OUCH sessions on loopback, one open-loop generator thread, 10% crossing IOC orders, the rest resting orders and cancels) and measures from each message's *intended* send time (coordinated-omission corrected). The method, the sustain criteria and the order flow are described in the notes below (\"Order entry end to end\") and in `perf/src/e2e.rs`.\n"
    );
    reproduce(out, inputs, &["e2e-async", "e2e-fsync"]);
    let _ = writeln!(out, "{}", report::SUMMARY_HEADER);
    let mut missing = Vec::new();
    for (step, label, result) in [
        ("e2e-async", "`async`", &inputs.results.e2e_async),
        ("e2e-fsync", "`fsync`", &inputs.results.e2e_fsync),
    ] {
        match inputs.get(step, result) {
            Ok(result) => out.push_str(&report::summary_row(label, result)),
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
    match inputs.get("cluster", &inputs.results.cluster) {
        Ok(comparison) => out.push_str(&report::comparison_summary(comparison)),
        Err(reason) => not_measured(out, &reason),
    }
}

fn failover(out: &mut String, inputs: &Inputs) {
    let _ = writeln!(out, "## Failover: kill -9 of the leader\n");
    let _ = writeln!(
        out,
        "A client sends steadily paced orders to the leader of a 3-node cluster; at a random moment the leader gets SIGKILL. Failover time = from the kill to the first Order Accepted for an order sent after the kill (necessarily by the new leader). After each trial the killed node is restarted and must catch up (equal journal roots), and every order the client saw acknowledged must be in the replayed stream exactly once. Method: `perf/src/failover.rs`.\n"
    );
    reproduce(out, inputs, &["failover"]);
    match inputs.get("failover", &inputs.results.failover) {
        Ok(report) => out.push_str(&failover::summary_table(report)),
        Err(reason) => not_measured(out, &reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The summaries committed in `perf/results/suite/` read back into their types, so
    /// `keel-perf report --render-only` can rewrite `BENCHMARKS.md` from them.
    #[test]
    fn the_committed_suite_results_read_back() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("results/suite");
        let mut results = Results::default();
        for step in super::super::STEP_NAMES {
            if step == "callgrind" {
                continue;
            }
            let file = result_file(step).unwrap();
            results.read(step, &dir.join(file)).unwrap();
        }
        assert!(results.engine.is_some_and(|r| !r.workloads.is_empty()));
        assert!(results.e2e_async.is_some_and(|r| !r.runs.is_empty()));
        assert!(results.e2e_fsync.is_some());
        assert!(results.cluster.is_some());
        assert!(results.failover.is_some());
        assert!(results.lobster.is_some_and(|r| r.pairs.len() == 2));
        assert!(results.peers.is_some_and(|r| !r.engines.is_empty()));
    }

    #[test]
    fn null_reads_back_as_nan() {
        let spread: crate::report::Spread =
            serde_json::from_str(r#"{"median": null, "min": 1.0, "max": 2.0}"#).unwrap();
        assert!(spread.median.is_nan());
        assert_eq!(spread.max, 2.0);
    }
}

#[cfg(test)]
mod rendering {
    use super::*;

    fn committed(file: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("results/suite")
            .join(file);
        std::fs::read_to_string(&path).unwrap()
    }

    fn read<T: DeserializeOwned>(file: &str) -> T {
        serde_json::from_str(&committed(file)).unwrap()
    }

    /// Each tool's Markdown, rendered again from its committed JSON, is the Markdown it
    /// wrote beside it: the result types read back everything their renderers print.
    #[test]
    fn the_committed_markdown_is_what_the_typed_results_render() {
        let engine: EngineReport = read("engine.json");
        assert_eq!(engine::markdown(&engine), committed("engine.md"));
        let failover: FailoverReport = read("failover.json");
        assert_eq!(failover::markdown(&failover), committed("failover.md"));
        let pairs: lobster::Report = read("lobster.json");
        assert_eq!(lobster::markdown(&pairs), committed("lobster.md"));
        let e2e: E2eReport = read("e2e-async-20000.json");
        assert_eq!(report::markdown(&e2e), committed("e2e-async-20000.md"));
        let e2e: E2eReport = read("e2e-fsync-20000.json");
        assert_eq!(report::markdown(&e2e), committed("e2e-fsync-20000.md"));
        let comparison: Comparison = read("e2e-cluster3-vs-single.json");
        assert_eq!(
            report::comparison_markdown(&comparison),
            committed("e2e-cluster3-vs-single.md")
        );
    }
}
