//! `keel-perf engine`: in-process throughput and per-command latency of the matching engine
//! on generated workloads ([`workloads`]), reproducible from a seed.
//!
//! For each workload: generate it (untimed), count what its measured part does
//! (`keel_benches::measure_mix`), then `--runs` times build a fresh engine, apply the
//! warm-up untimed and time the measured commands as one block (commands/s over the whole
//! stream; the report gives the median and min–max). One more pass on a fresh engine
//! records the time of each command into an HDR histogram: with `std::time::Instant`
//! around every command when a clock read is cheap next to a command, or, when it is not
//! (`--timing auto` decides: a back-to-back pair of clock reads costing more than half a
//! command's mean time), around batches of `--batch` commands, recording the batch's mean
//! for each of its commands. The report says which; batch means hide a single command's
//! tail inside its batch.
//!
//! Results go to `<results>/<label>.json` and `.md` (default `perf/results/engine.*`).

pub mod workloads;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use keel_benches::{fmt, measure_mix, process_all, Workload};
use keel_engine::{Engine, Event};
use serde::{Deserialize, Serialize};

use crate::report::{self, fig, group, header_lines, median_min_max, Machine};
use workloads::Kind;

/// How per-command latency is timed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimingArg {
    /// Per command, unless the clock costs more than half a command (then batches).
    #[default]
    Auto,
    /// A clock read pair around every command.
    Command,
    /// A clock read pair around every `--batch` commands; each gets the batch's mean.
    Batch,
}

/// `keel-perf engine` options.
#[derive(Clone, Debug, Default, clap::Args, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineArgs {
    /// Workloads to run (comma separated; default all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub workloads: Vec<Kind>,
    /// Measured commands per workload (default 5,000,000; 1,000,000 with --quick).
    #[arg(long)]
    pub commands: Option<usize>,
    /// Timed runs per workload, each on a fresh engine (default 5; 3 with --quick).
    #[arg(long)]
    pub runs: Option<usize>,
    /// Seed of every workload.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How the per-command latency is timed.
    #[arg(long, value_enum, default_value = "auto")]
    pub timing: TimingArg,
    /// Commands per timed batch when timing batches.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Fewer commands and runs (for `keel-perf report`).
    #[arg(long)]
    pub quick: bool,
    /// Results folder; default `perf/results` in the workspace.
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// Name of the result files.
    #[arg(long, default_value = "engine")]
    pub label: String,
}

impl EngineArgs {
    fn commands(&self) -> usize {
        self.commands
            .unwrap_or(if self.quick { 1_000_000 } else { 5_000_000 })
    }

    fn runs(&self) -> usize {
        self.runs.unwrap_or(if self.quick { 3 } else { 5 })
    }

    fn kinds(&self) -> Vec<Kind> {
        if self.workloads.is_empty() {
            Kind::ALL.to_vec()
        } else {
            self.workloads.clone()
        }
    }
}

/// Median and spread of a figure over the runs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Spread {
    /// Median.
    #[serde(deserialize_with = "crate::json::f64")]
    pub median: f64,
    /// Smallest.
    #[serde(deserialize_with = "crate::json::f64")]
    pub min: f64,
    /// Largest.
    #[serde(deserialize_with = "crate::json::f64")]
    pub max: f64,
    /// Every run's value, in run order.
    #[serde(deserialize_with = "crate::json::f64s")]
    pub per_run: Vec<f64>,
}

impl Spread {
    /// Median, min and max of the finite `values` (NaN for none), and every value.
    pub fn of(values: &[f64]) -> Spread {
        let report::Spread { median, min, max } = report::Spread::of(values);
        Spread {
            median,
            min,
            max,
            per_run: values.to_vec(),
        }
    }
}

/// What the measured part of a workload does, counted on a fresh engine.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MixSummary {
    /// New GTC limit orders, share of commands.
    #[serde(deserialize_with = "crate::json::f64")]
    pub gtc_share: f64,
    /// New IOC (or market) orders.
    #[serde(deserialize_with = "crate::json::f64")]
    pub ioc_share: f64,
    /// Cancels and reductions.
    #[serde(deserialize_with = "crate::json::f64")]
    pub cancel_share: f64,
    /// Replaces (moves).
    #[serde(deserialize_with = "crate::json::f64")]
    pub replace_share: f64,
    /// Commands that traded at least once.
    #[serde(deserialize_with = "crate::json::f64")]
    pub trading_share: f64,
    /// Trades per command.
    #[serde(deserialize_with = "crate::json::f64")]
    pub trades_per_command: f64,
    /// Events per command.
    #[serde(deserialize_with = "crate::json::f64")]
    pub events_per_command: f64,
    /// Commands refused (any reject event).
    pub rejected: u64,
    /// Resting orders, mean of samples every 512 commands.
    #[serde(deserialize_with = "crate::json::f64")]
    pub resting_orders_mean: f64,
    /// Smallest sample.
    pub resting_orders_min: u64,
    /// Largest sample.
    pub resting_orders_max: u64,
    /// Non-empty price levels (both sides), mean of the samples.
    #[serde(deserialize_with = "crate::json::f64")]
    pub levels_mean: f64,
}

/// Per-command latency, ns.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LatencySummary {
    /// `command` (a clock pair around each) or `batch` (around each batch).
    pub timing: String,
    /// Commands per timed batch (1 when timing each command).
    pub batch: usize,
    /// Two back-to-back `Instant::now()` reads: median, ns (included in every figure).
    pub clock_pair_p50_ns: u64,
    /// Their 99th percentile, ns.
    pub clock_pair_p99_ns: u64,
    /// Median.
    pub p50_ns: u64,
    /// 90th percentile.
    pub p90_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p99_9_ns: u64,
    /// 99.99th percentile.
    pub p99_99_ns: u64,
    /// Largest sample.
    pub max_ns: u64,
    /// Mean.
    #[serde(deserialize_with = "crate::json::f64")]
    pub mean_ns: f64,
    /// `(percentile, ns)` points, HdrHistogram style, for a percentile plot.
    pub distribution: Vec<(f64, f64)>,
}

/// Everything measured for one workload.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkloadResult {
    /// The workload's name.
    pub name: String,
    /// What it exercises.
    pub description: String,
    /// Its seed.
    pub seed: u64,
    /// Warm-up commands (applied untimed before every run).
    pub warmup_commands: usize,
    /// Measured commands.
    pub commands: usize,
    /// FNV-1a digest of the whole stream's encoding: equal means the same commands.
    pub digest: String,
    /// What the measured part does.
    pub mix: MixSummary,
    /// Commands per second over the whole measured stream.
    pub commands_per_s: Spread,
    /// Events emitted by the measured stream (the same every run, or the run fails).
    pub events: u64,
    /// Per-command latency.
    pub latency: LatencySummary,
    /// 1-minute load average before the workload's timed runs.
    #[serde(deserialize_with = "crate::json::f64")]
    pub load_before: f64,
    /// 1-minute load average after its latency pass.
    #[serde(deserialize_with = "crate::json::f64")]
    pub load_after: f64,
}

/// The output file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineReport {
    /// `engine`.
    pub kind: String,
    /// The command line.
    pub command: String,
    /// Machine, commit, date.
    pub machine: Machine,
    /// Measured commands per workload.
    pub commands: usize,
    /// Timed runs per workload.
    pub runs: usize,
    /// Seed.
    pub seed: u64,
    /// Every workload.
    pub workloads: Vec<WorkloadResult>,
}

/// Runs `keel-perf engine`.
pub fn main(args: &EngineArgs) -> anyhow::Result<()> {
    if args.runs() == 0 || args.commands() == 0 {
        bail!("--runs and --commands must be at least 1");
    }
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let machine = Machine::detect();
    eprintln!("keel-perf engine: {}", machine.line());
    let kinds = args.kinds();
    let progress = progress_bar(kinds.len() as u64 * (args.runs() as u64 + 2));
    let mut report = EngineReport {
        kind: "engine".to_string(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine,
        commands: args.commands(),
        runs: args.runs(),
        seed: args.seed,
        workloads: Vec::new(),
    };
    for kind in kinds {
        let result = run_workload(args, kind, &progress)?;
        progress.suspend(|| {
            eprintln!(
                "keel-perf engine: {}: {:.0} commands/s (median of {}; {:.0}–{:.0}), latency p50 {} p99 {} p99.9 {} ns ({}), {:.2} trades/command, {:.0} resting orders",
                result.name,
                result.commands_per_s.median,
                args.runs(),
                result.commands_per_s.min,
                result.commands_per_s.max,
                result.latency.p50_ns,
                result.latency.p99_ns,
                result.latency.p99_9_ns,
                timing_label(&result.latency),
                result.mix.trades_per_command,
                result.mix.resting_orders_mean
            )
        });
        report.workloads.push(result);
    }
    progress.finish_and_clear();
    let dir = args
        .results
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("results"));
    report::publish(
        "engine",
        &dir,
        &args.label,
        &report,
        &report.machine,
        &markdown(&report),
    )
}

fn progress_bar(len: u64) -> ProgressBar {
    report::progress_bar(len, "engine [{bar:30}] {pos:>3}/{len} steps {msg}", None)
}

fn run_workload(
    args: &EngineArgs,
    kind: Kind,
    progress: &ProgressBar,
) -> anyhow::Result<WorkloadResult> {
    progress.set_message(format!("{}: generating", kind.name()));
    let workload = workloads::generate(kind, args.seed, args.commands())?;
    let digest = workloads::digest(&workload);
    let stats = measure_mix(&workload);
    progress.inc(1);
    let load_before = crate::sys::load_average()[0];
    let mut rates = Vec::with_capacity(args.runs());
    let mut expected_events = None;
    for run in 1..=args.runs() {
        progress.set_message(format!("{}: run {run}/{}", kind.name(), args.runs()));
        let (seconds, events) = timed_run(kind, &workload)?;
        if let Some(expected) = expected_events {
            if expected != events {
                bail!(
                    "{}: run {run} emitted {events} events, run 1 emitted {expected}",
                    kind.name()
                );
            }
        }
        expected_events = Some(events);
        rates.push(workload.measured.len() as f64 / seconds.max(1e-9));
        progress.inc(1);
    }
    let commands_per_s = Spread::of(&rates);
    progress.set_message(format!("{}: latency", kind.name()));
    let mean_ns = 1e9 / commands_per_s.median.max(1.0);
    let latency = latency_pass(args, kind, &workload, mean_ns)?;
    progress.inc(1);
    let n = stats.commands.max(1) as f64;
    Ok(WorkloadResult {
        name: kind.name().to_string(),
        description: kind.description().to_string(),
        seed: args.seed,
        warmup_commands: workload.warmup.len(),
        commands: workload.measured.len(),
        digest,
        mix: MixSummary {
            gtc_share: stats.gtc as f64 / n,
            ioc_share: stats.ioc as f64 / n,
            cancel_share: stats.cancel as f64 / n,
            replace_share: stats.replace as f64 / n,
            trading_share: stats.trading_commands as f64 / n,
            trades_per_command: stats.trades as f64 / n,
            events_per_command: stats.events as f64 / n,
            rejected: stats.rejected,
            resting_orders_mean: stats.mean_resting_orders(),
            resting_orders_min: stats.resting_orders_min,
            resting_orders_max: stats.resting_orders_max,
            levels_mean: stats.mean_levels(),
        },
        commands_per_s,
        events: expected_events.unwrap_or(0),
        latency,
        load_before,
        load_after: crate::sys::load_average()[0],
    })
}

/// A fresh engine, the warm-up untimed, the measured commands timed as one block:
/// (seconds, events).
fn timed_run(kind: Kind, workload: &Workload) -> anyhow::Result<(f64, u64)> {
    let mut engine = Engine::new(kind.engine_config())?;
    let mut sink: Vec<Event> = Vec::with_capacity(4_096);
    process_all(&mut engine, &workload.warmup, &mut sink);
    let start = Instant::now();
    let events = process_all(&mut engine, &workload.measured, &mut sink);
    let seconds = start.elapsed().as_secs_f64();
    std::hint::black_box(&engine);
    Ok((seconds, events))
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).context("histogram")
}

fn elapsed_ns(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Times every command (or batch) of the measured stream on a fresh engine.
fn latency_pass(
    args: &EngineArgs,
    kind: Kind,
    workload: &Workload,
    mean_command_ns: f64,
) -> anyhow::Result<LatencySummary> {
    let mut clock = histogram()?;
    for _ in 0..200_000 {
        let start = Instant::now();
        clock.saturating_record(elapsed_ns(start).max(1));
    }
    let clock_p50 = clock.value_at_quantile(0.5);
    let batch = match args.timing {
        TimingArg::Command => 1,
        TimingArg::Batch => args.batch,
        TimingArg::Auto if clock_p50 as f64 > 0.5 * mean_command_ns => args.batch,
        TimingArg::Auto => 1,
    };
    let mut latency = histogram()?;
    let mut engine = Engine::new(kind.engine_config())?;
    let mut sink: Vec<Event> = Vec::with_capacity(4_096);
    process_all(&mut engine, &workload.warmup, &mut sink);
    if batch == 1 {
        for command in &workload.measured {
            sink.clear();
            let start = Instant::now();
            engine.process(command, &mut sink);
            latency.saturating_record(elapsed_ns(start).max(1));
        }
    } else {
        for chunk in workload.measured.chunks(batch) {
            let start = Instant::now();
            for command in chunk {
                sink.clear();
                engine.process(command, &mut sink);
            }
            let per_command = elapsed_ns(start) / chunk.len() as u64;
            latency
                .record_n(per_command.max(1), chunk.len() as u64)
                .context("recording a batch")?;
        }
    }
    std::hint::black_box(&engine);
    let distribution = latency
        .iter_quantiles(2)
        .map(|v| {
            (
                v.quantile_iterated_to() * 100.0,
                v.value_iterated_to() as f64,
            )
        })
        .collect();
    Ok(LatencySummary {
        timing: if batch == 1 { "command" } else { "batch" }.to_string(),
        batch,
        clock_pair_p50_ns: clock_p50,
        clock_pair_p99_ns: clock.value_at_quantile(0.99),
        p50_ns: latency.value_at_quantile(0.5),
        p90_ns: latency.value_at_quantile(0.9),
        p99_ns: latency.value_at_quantile(0.99),
        p99_9_ns: latency.value_at_quantile(0.999),
        p99_99_ns: latency.value_at_quantile(0.9999),
        max_ns: latency.max(),
        mean_ns: latency.mean(),
        distribution,
    })
}

/// "per command" or "batches of N".
pub fn timing_label(latency: &LatencySummary) -> String {
    if latency.batch <= 1 {
        "each command timed".to_string()
    } else {
        format!("mean of batches of {}", latency.batch)
    }
}

/// The engine tables of `BENCHMARKS.md`: each workload's throughput, latency and book, then
/// what each workload is.
pub fn summary_tables(report: &EngineReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| workload | commands/s | p50 | p99 | p99.9 | p99.99 | max | timing | resting orders (mean) | trades/command | load before→after |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    for w in &report.workloads {
        let l = &w.latency;
        let ns = |value: u64| format!("{} ns", fig(value as f64));
        let c = &w.commands_per_s;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} (clock pair {} ns) | {} | {:.3} | {:.2}→{:.2} |",
            w.name,
            fmt::spread(c.median, c.min, c.max),
            ns(l.p50_ns),
            ns(l.p99_ns),
            ns(l.p99_9_ns),
            ns(l.p99_99_ns),
            ns(l.max_ns),
            if l.batch <= 1 {
                "each command".to_string()
            } else {
                format!("batches of {}", l.batch)
            },
            fig(l.clock_pair_p50_ns as f64),
            fig(w.mix.resting_orders_mean),
            w.mix.trades_per_command,
            w.load_before,
            w.load_after,
        );
    }
    let _ = writeln!(out, "\n| workload | what it is | digest |\n|---|---|---|");
    for w in &report.workloads {
        let _ = writeln!(out, "| {} | {} | `{}` |", w.name, w.description, w.digest);
    }
    let _ = writeln!(out);
    out
}

/// The Markdown summary.
pub fn markdown(report: &EngineReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# keel-perf engine\n");
    header_lines(&mut out, &report.machine, &report.command, None);
    let _ = writeln!(
        out,
        "- {} measured commands per workload after an untimed warm-up, seed {}; throughput = commands/s over the whole measured stream, median (min–max) of {} runs on fresh engines, one thread; latency = one more pass, HdrHistogram of per-command time (ns) including the clock's own cost\n",
        group(report.commands as u64),
        report.seed,
        report.runs
    );
    let _ = writeln!(
        out,
        "| workload | commands/s | p50 | p99 | p99.9 | p99.99 | max | timing | resting orders | levels | trades/command | digest |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for w in &report.workloads {
        let l = &w.latency;
        let _ = writeln!(
            out,
            "| {} | {} | {} ns | {} ns | {} ns | {} ns | {} ns | {} (clock pair {} ns) | {} ({}–{}) | {} | {:.3} | `{}` |",
            w.name,
            median_min_max(
                w.commands_per_s.median,
                w.commands_per_s.min,
                w.commands_per_s.max,
                |v| group(v as u64)
            ),
            group(l.p50_ns),
            group(l.p99_ns),
            group(l.p99_9_ns),
            group(l.p99_99_ns),
            group(l.max_ns),
            timing_label(l),
            l.clock_pair_p50_ns,
            group(w.mix.resting_orders_mean.round() as u64),
            group(w.mix.resting_orders_min),
            group(w.mix.resting_orders_max),
            group(w.mix.levels_mean.round() as u64),
            w.mix.trades_per_command,
            w.digest
        );
    }
    let _ = writeln!(
        out,
        "\n| workload | what | GTC | IOC | cancel/reduce | move | commands that trade | events/command | refused | load before→after |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for w in &report.workloads {
        let m = &w.mix;
        let pct = |share: f64| format!("{:.1}%", share * 100.0);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {:.2} | {} | {:.2}→{:.2} |",
            w.name,
            w.description,
            pct(m.gtc_share),
            pct(m.ioc_share),
            pct(m.cancel_share),
            pct(m.replace_share),
            pct(m.trading_share),
            m.events_per_command,
            m.rejected,
            w.load_before,
            w.load_after
        );
    }
    out
}
