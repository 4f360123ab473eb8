//! `keel-perf lobster`: replays real NASDAQ order flow from LOBSTER files through the
//! engine, times the replay and measures how closely Keel agrees with the exchange.
//!
//! For each message/orderbook pair: parse both files ([`parse`]), convert the messages to
//! Keel commands ([`convert`]), replay them once with checks ([`check`]), then time
//! `--runs` replays of the same commands on fresh engines (engine processing only: parsing,
//! conversion and checks are outside the timed loop). Results go to `<out>/<label>.json`
//! and `.md`. `perf/LOBSTER.md` explains the rules and the figures.

pub mod check;
pub mod convert;
pub mod parse;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use indicatif::ProgressBar;
use keel_benches::fmt;
use keel_engine::{Engine, EngineConfig, Event};
use serde::{Deserialize, Serialize};

use crate::report::{self, fig, group, header_lines, median_min_max, Machine, Spread};

/// Arguments of `keel-perf lobster`.
#[derive(Debug, clap::Args)]
pub struct LobsterArgs {
    /// A LOBSTER message file. Give each with its `--orderbook`, in the same order. Without
    /// any, every `*_message_*.csv` in `perf/data/lobster` (the LOBSTER sample files kept
    /// in the repository) is run with its `*_orderbook_*.csv`.
    #[arg(long = "message", value_name = "FILE")]
    pub messages: Vec<PathBuf>,
    /// The orderbook file of the `--message` file in the same position.
    #[arg(long = "orderbook", value_name = "FILE")]
    pub orderbooks: Vec<PathBuf>,
    /// Levels per side to compare; default (and at most) the levels the orderbook file has.
    #[arg(long)]
    pub levels: Option<usize>,
    /// Timed replays per pair; the report gives the median, min and max.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// LOBSTER price units (dollars × 10000) per engine tick: 100 makes a tick one cent,
    /// NASDAQ's price increment above $1.
    #[arg(long, default_value_t = 100)]
    pub tick: i64,
    /// Results folder; default `perf/results` of the workspace.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Do not cancel the orders an orderbook row shows gone (see perf/LOBSTER.md): replay
    /// the message file alone.
    #[arg(long)]
    pub no_reconcile: bool,
    /// Result file name: `<out>/<label>.json` and `<out>/<label>.md`.
    #[arg(long, default_value = "lobster")]
    pub label: String,
}

/// Timing of the engine replay.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Timing {
    /// Commands per replay (instrument definition and seeds included).
    pub commands: u64,
    /// Events the engine emitted per replay.
    pub events: u64,
    /// Each run's engine processing time, ns.
    pub runs_duration_ns: Vec<u64>,
    /// Commands per second over the runs.
    pub commands_per_s: Spread,
    /// Mean ns per command over the runs.
    pub ns_per_command: Spread,
    /// 1-minute load average before and after the timed runs: the machine is shared.
    #[serde(deserialize_with = "crate::json::f64")]
    pub load_before: f64,
    /// See `load_before`.
    #[serde(deserialize_with = "crate::json::f64")]
    pub load_after: f64,
}

/// Everything measured for one message/orderbook pair.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PairReport {
    /// Ticker, from the file name.
    pub symbol: String,
    /// Message file.
    pub message_file: String,
    /// Orderbook file.
    pub orderbook_file: String,
    /// Message rows.
    pub messages: u64,
    /// Levels per side in the orderbook file.
    pub file_levels: usize,
    /// LOBSTER price units per engine tick.
    pub tick: i64,
    /// What the conversion did.
    pub conversion: convert::ConversionStats,
    /// Rows inside a merged aggressor (no book to compare).
    pub rows_inside_aggressor: u64,
    /// Whether orders the orderbook file shows gone were canceled (reconciliation).
    pub reconciled: bool,
    /// The agreement checks.
    pub checks: check::CheckReport,
    /// The timed replays.
    pub timing: Timing,
}

/// The whole report.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Report {
    /// `"lobster"`.
    pub kind: String,
    /// What it ran on.
    pub machine: Machine,
    /// The command line.
    pub command: String,
    /// One entry per pair.
    pub pairs: Vec<PairReport>,
}

/// The default data folder: the LOBSTER sample files in `perf/data/lobster`, found from
/// this crate's folder so a clone works wherever it is placed.
pub fn default_data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join("lobster")
}

/// The `(message, orderbook)` pairs in `dir`, sorted by file name.
fn pairs_in(dir: &Path) -> anyhow::Result<Vec<(PathBuf, PathBuf)>> {
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "cannot read the LOBSTER data folder {} (give --message/--orderbook pairs instead)",
            dir.display()
        )
    })?;
    let mut pairs = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.contains("_message_") && name.ends_with(".csv") {
            let book = path.with_file_name(name.replacen("_message_", "_orderbook_", 1));
            if !book.exists() {
                bail!(
                    "{} has no orderbook file {}",
                    path.display(),
                    book.display()
                );
            }
            pairs.push((path, book));
        }
    }
    pairs.sort();
    if pairs.is_empty() {
        bail!("no *_message_*.csv files in {}", dir.display());
    }
    Ok(pairs)
}

/// The ticker of a LOBSTER file name (`GOOG_2012-06-21_message_1.csv` → `GOOG`).
fn symbol_of(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('_').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("LOBSTER")
        .chars()
        .take(keel_engine::SYMBOL_BYTES_MAX)
        .collect()
}

fn progress_bar(label: &str, len: u64, unit: &str) -> ProgressBar {
    let template = format!("{{prefix:.bold}} [{{bar:30}}] {{pos:>6}}/{{len}} {unit}");
    let bar = report::progress_bar(len, &template, None);
    bar.set_prefix(label.to_string());
    bar
}

/// Times `runs` replays of the commands on fresh engines.
fn time_replays(replay: &convert::Replay, runs: usize, symbol: &str) -> anyhow::Result<Timing> {
    let progress = progress_bar(&format!("{symbol} timing"), runs as u64, "runs");
    let load_before = crate::sys::load_average()[0];
    let mut durations_ns = Vec::with_capacity(runs);
    let mut events_total = 0u64;
    for _ in 0..runs {
        // Built outside the timed loop: allocation of the engine's preallocated slab is
        // start-up cost, not processing.
        let mut engine = Engine::new(EngineConfig::default())?;
        let mut events: Vec<Event> = Vec::with_capacity(256);
        let mut emitted = 0u64;
        let start = Instant::now();
        for command in &replay.commands {
            engine.process(command, &mut events);
            emitted += events.len() as u64;
            events.clear();
        }
        let duration_ns = start.elapsed().as_nanos();
        std::hint::black_box(&engine);
        durations_ns.push(u64::try_from(duration_ns).unwrap_or(u64::MAX));
        events_total = emitted;
        progress.inc(1);
    }
    progress.finish_and_clear();
    let commands = replay.commands.len() as u64;
    let rates: Vec<f64> = durations_ns
        .iter()
        .map(|&ns| commands as f64 / (ns.max(1) as f64 / 1e9))
        .collect();
    let per_command: Vec<f64> = durations_ns
        .iter()
        .map(|&ns| ns as f64 / commands.max(1) as f64)
        .collect();
    Ok(Timing {
        commands,
        events: events_total,
        runs_duration_ns: durations_ns,
        commands_per_s: Spread::of(&rates),
        ns_per_command: Spread::of(&per_command),
        load_before,
        load_after: crate::sys::load_average()[0],
    })
}

/// Runs one pair: parse, convert, check, time.
pub fn run_pair(
    message_path: &Path,
    book_path: &Path,
    levels: Option<usize>,
    runs: usize,
    tick: i64,
    reconcile: bool,
) -> anyhow::Result<PairReport> {
    let symbol = symbol_of(message_path);
    let messages = parse::read_messages(message_path)?;
    let (file_levels, book) = parse::read_orderbook(book_path)?;
    let levels = match levels {
        None => file_levels,
        Some(0) => bail!("--levels must be at least 1"),
        Some(n) if n > file_levels => bail!(
            "--levels {n}: {} has only {file_levels} levels",
            book_path.display()
        ),
        Some(n) => n,
    };
    let compare_book: Vec<parse::BookRow> = book
        .iter()
        .map(|row| parse::BookRow {
            asks: row.asks.iter().take(levels).copied().collect(),
            bids: row.bids.iter().take(levels).copied().collect(),
        })
        .collect();
    let replay = convert::convert(
        &symbol,
        &messages,
        &book,
        file_levels,
        tick,
        reconcile,
        &message_path.display().to_string(),
    )?;
    let progress = progress_bar(&format!("{symbol} check"), messages.len() as u64, "rows");
    let checks = check::check(&replay, &compare_book, levels, &progress)?;
    progress.finish_and_clear();
    let timing = time_replays(&replay, runs, &symbol)?;
    Ok(PairReport {
        symbol,
        message_file: message_path.display().to_string(),
        orderbook_file: book_path.display().to_string(),
        messages: messages.len() as u64,
        file_levels,
        tick,
        conversion: replay.stats.clone(),
        rows_inside_aggressor: replay.rows_inside_aggressor,
        reconciled: replay.reconciled,
        checks,
        timing,
    })
}

fn percent(share: f64) -> String {
    if share.is_finite() {
        format!("{:.2}%", share * 100.0)
    } else {
        "–".to_string()
    }
}

/// The LOBSTER table of `BENCHMARKS.md`: per pair, commands/s and how far executions and
/// books agree with the exchange's.
pub fn summary_table(report: &Report) -> String {
    let mut out = String::from(
        "| symbol | messages | commands | commands/s | executions matched | book rows equal | load before→after |\n|---|---|---|---|---|---|---|\n",
    );
    let pct = |share: f64| {
        if share.is_finite() {
            format!("{:.2}%", share * 100.0)
        } else {
            "–".to_string()
        }
    };
    for p in &report.pairs {
        let (e, b, t) = (&p.checks.executions, &p.checks.book, &p.timing);
        let c = &t.commands_per_s;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} of {} ({}) | {} of {} ({}) | {:.2}→{:.2} |",
            p.symbol,
            fig(p.messages as f64),
            fig(t.commands as f64),
            fmt::spread(c.median, c.min, c.max),
            fig(e.matched as f64),
            fig(e.checkable as f64),
            pct(e.match_share),
            fig(b.equal as f64),
            fig(b.compared as f64),
            pct(b.equal_share),
            t.load_before,
            t.load_after,
        );
    }
    out
}

/// The Markdown summary.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# keel-perf lobster\n");
    header_lines(&mut out, &report.machine, &report.command, None);
    let _ = writeln!(
        out,
        "- rules and classes: [`perf/LOBSTER.md`](../LOBSTER.md); commands/s is engine processing only (median, min–max over the runs) on a shared, loaded machine\n"
    );
    let _ = writeln!(
        out,
        "| symbol | messages | levels | commands | commands/s | checkable executions | matched | execution agreement | book rows compared | equal | book agreement |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    for pair in &report.pairs {
        let t = &pair.timing;
        let e = &pair.checks.executions;
        let b = &pair.checks.book;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | **{}** | {} | {} | **{}** |",
            pair.symbol,
            group(pair.messages),
            pair.file_levels,
            group(t.commands),
            median_min_max(
                t.commands_per_s.median,
                t.commands_per_s.min,
                t.commands_per_s.max,
                |v| group(v as u64)
            ),
            group(e.checkable),
            group(e.matched),
            percent(e.match_share),
            group(b.compared),
            group(b.equal),
            percent(b.equal_share),
        );
    }
    for pair in &report.pairs {
        pair_section(&mut out, pair);
    }
    out
}

/// One pair's section: its files, its executions and every class count.
fn pair_section(out: &mut String, pair: &PairReport) {
    let _ = writeln!(out, "\n## {}\n", pair.symbol);
    let _ = writeln!(
        out,
        "Files: `{}`, `{}`. Load (1-min) {:.2} before the timed runs, {:.2} after.\n",
        pair.message_file, pair.orderbook_file, pair.timing.load_before, pair.timing.load_after
    );
    let e = &pair.checks.executions;
    let _ = writeln!(
        out,
        "Executions: {} aggressors ({} merged from several type-4 rows); {} checkable rows, {} matched, {} mismatched; {} rows of pre-file orders drew on seeds ({} filled as NASDAQ did).\n",
        group(e.aggressors),
        group(e.multi_row_aggressors),
        group(e.checkable),
        group(e.matched),
        group(e.mismatched),
        group(e.seed_rows),
        group(e.seed_rows_matched)
    );
    let mut table = |title: &str, classes: &std::collections::BTreeMap<String, u64>| {
        if classes.is_empty() {
            return;
        }
        let _ = writeln!(out, "| {title} | rows |\n|---|---|");
        for (class, count) in classes {
            let _ = writeln!(out, "| {class} | {} |", group(*count));
        }
        let _ = writeln!(out);
    };
    table("execution mismatch class", &e.mismatch_classes);
    let b = &pair.checks.book;
    table("book difference class", &b.differ_classes);
    table("rows not converted (reason/type)", &pair.conversion.skipped);
    table(
        "type-1 orders that traded on entry in Keel",
        &pair.checks.new_orders_traded_on_entry,
    );
    table("engine refusals", &pair.checks.engine_refusals);
}

/// `keel-perf lobster`.
pub fn main(args: &LobsterArgs) -> anyhow::Result<()> {
    if args.messages.len() != args.orderbooks.len() {
        bail!(
            "give one --orderbook per --message ({} messages, {} orderbooks)",
            args.messages.len(),
            args.orderbooks.len()
        );
    }
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let pairs = if args.messages.is_empty() {
        pairs_in(&default_data_dir())?
    } else {
        args.messages
            .iter()
            .cloned()
            .zip(args.orderbooks.iter().cloned())
            .collect()
    };
    let machine = Machine::detect();
    eprintln!("keel-perf lobster: {}", machine.line());
    let mut report = Report {
        kind: "lobster".to_string(),
        machine,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        pairs: Vec::new(),
    };
    for (message, book) in &pairs {
        let pair = run_pair(
            message,
            book,
            args.levels,
            args.runs,
            args.tick,
            !args.no_reconcile,
        )?;
        eprintln!(
            "{}: {} commands, {:.0} commands/s (median of {}); executions {}/{} matched ({}); book rows {}/{} equal ({})",
            pair.symbol,
            pair.timing.commands,
            pair.timing.commands_per_s.median,
            args.runs,
            pair.checks.executions.matched,
            pair.checks.executions.checkable,
            percent(pair.checks.executions.match_share),
            pair.checks.book.equal,
            pair.checks.book.compared,
            percent(pair.checks.book.equal_share),
        );
        report.pairs.push(pair);
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("results"));
    let (json, md) = report::write_result(
        &out,
        &args.label,
        &report,
        &report.machine,
        &markdown(&report),
    )?;
    eprintln!("wrote {} and {}", json.display(), md.display());
    Ok(())
}
