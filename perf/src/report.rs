//! Result files (the machine line, JSON with everything measured, a Markdown summary) and
//! the helpers every `keel-perf` subcommand shares to make them: medians, number formats,
//! the workspace root, progress bars.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use keel_benches::fmt;
use serde::{Deserialize, Serialize};

use crate::e2e::{Comparison, Report, RunRecord};

/// What the figures were measured on.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Machine {
    /// CPU model as `/proc/cpuinfo` reports it.
    pub cpu: String,
    /// Online cores.
    pub cores: usize,
    /// Kernel release.
    pub kernel: String,
    /// Memory, GiB.
    #[serde(deserialize_with = "crate::json::f64")]
    pub memory_gib: f64,
    /// `git rev-parse --short HEAD` of the workspace, with `+dirty` if it has changes.
    pub commit: String,
    /// Seconds since the Unix epoch when the run started.
    pub unix_time: u64,
    /// The same, as an ISO 8601 UTC date-time.
    pub date: String,
}

impl Machine {
    /// Reads `/proc` and git.
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map_or_else(|| "unknown".to_string(), |(_, v)| v.trim().to_string());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_string(), |s| s.trim().to_string());
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
            })
            .map_or(0.0, |kib| kib / (1024.0 * 1024.0));
        let workspace = workspace_root();
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(&workspace)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        let mut commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
        if git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty()) {
            commit.push_str("+dirty");
        }
        let unix_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Machine {
            cpu,
            cores: crate::sys::cpu_count(),
            kernel,
            memory_gib,
            commit,
            unix_time,
            date: iso_date(unix_time),
        }
    }

    /// One line for a report header.
    pub fn line(&self) -> String {
        format!(
            "{}, {} cores, {:.0} GiB, Linux {}, commit {}, {}",
            self.cpu, self.cores, self.memory_gib, self.kernel, self.commit, self.date
        )
    }
}

pub use keel_benches::date::iso_date;

/// The workspace root this tool was built from (results, git and the suite's commands are
/// relative to it).
pub fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize().unwrap_or(root)
}

/// Writes a result the way every `keel-perf` subcommand does: `<dir>/<label>.json` (pretty
/// JSON of `result`) and `<dir>/<label>.md` (`markdown`), plus a copy of the JSON under
/// `<dir>/runs/<label>-<unix time of the run>.json` so earlier runs are kept. Returns the
/// two main paths.
pub fn write_result(
    dir: &Path,
    label: &str,
    result: &impl Serialize,
    machine: &Machine,
    markdown: &str,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir.join("runs"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let json = serde_json::to_string_pretty(result)?;
    let json_path = dir.join(format!("{label}.json"));
    std::fs::write(&json_path, &json)
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    std::fs::write(
        dir.join("runs")
            .join(format!("{label}-{}.json", machine.unix_time)),
        &json,
    )?;
    let md_path = dir.join(format!("{label}.md"));
    std::fs::write(&md_path, markdown)
        .with_context(|| format!("cannot write {}", md_path.display()))?;
    Ok((json_path, md_path))
}

/// Writes a result with [`write_result`], prints its Markdown and says where it went, as
/// `keel-perf <tool>: wrote <json> and <md>` on standard error.
pub fn publish(
    tool: &str,
    dir: &Path,
    label: &str,
    result: &impl Serialize,
    machine: &Machine,
    markdown: &str,
) -> anyhow::Result<()> {
    let (json, md) = write_result(dir, label, result, machine, markdown)?;
    println!("{markdown}");
    eprintln!(
        "keel-perf {tool}: wrote {} and {}",
        json.display(),
        md.display()
    );
    Ok(())
}

/// Writes an e2e report with [`write_result`].
pub fn write(dir: &Path, label: &str, report: &Report) -> anyhow::Result<(PathBuf, PathBuf)> {
    write_result(dir, label, report, &report.machine, &markdown(report))
}

/// A progress bar on standard error drawn with `template` (indicatif syntax, `=> ` as the
/// bar's characters), ticking every `steady_tick` if given; hidden when standard error is
/// not a terminal, so logs and captured output stay clean.
pub fn progress_bar(len: u64, template: &str, steady_tick: Option<Duration>) -> ProgressBar {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    if let Some(interval) = steady_tick {
        bar.enable_steady_tick(interval);
    }
    bar
}

/// Median and spread of one figure over the runs.
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
}

impl Spread {
    /// Median, min and max of the finite `values` (NaN for none).
    pub fn of(values: &[f64]) -> Spread {
        let sorted = sorted_finite(values.iter().copied());
        match (sorted.first(), sorted.last()) {
            (Some(&min), Some(&max)) => Spread {
                median: median(&sorted),
                min,
                max,
            },
            _ => Spread {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            },
        }
    }
}

/// The finite `values`, sorted ascending: what [`median`] and min/max are taken over.
pub fn sorted_finite(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut values: Vec<f64> = values.filter(|v| v.is_finite()).collect();
    values.sort_by(f64::total_cmp);
    values
}

/// The median of `sorted` (ascending): the middle value, or the mean of the two middle
/// values; NaN when empty.
pub fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

pub use keel_benches::fmt::{fig, group, median_min_max};

fn us(value: f64) -> String {
    if !value.is_finite() {
        "–".to_string()
    } else if value >= 100.0 {
        group(value.round() as u64)
    } else {
        format!("{value:.1}")
    }
}

/// The first lines of every result's Markdown list: the machine, the command that produced
/// the result and, when the tool started a node, the `keel` binary it used.
pub fn header_lines(out: &mut String, machine: &Machine, command: &str, keel: Option<&str>) {
    let _ = writeln!(out, "- machine: {}", machine.line());
    let _ = writeln!(out, "- command: `{command}`");
    if let Some(keel) = keel {
        let _ = writeln!(out, "- keel binary: `{keel}`");
    }
}

fn spread(s: Option<&Spread>, unit: fn(f64) -> String) -> String {
    match s {
        Some(s) => median_min_max(s.median, s.min, s.max, unit),
        None => "–".into(),
    }
}

fn rate(value: f64) -> String {
    group(value.round().max(0.0) as u64)
}

/// Cores used by everything but the node and the generator during the measured window.
pub fn other_cores(record: &RunRecord) -> f64 {
    record
        .result
        .cpu
        .iter()
        .find(|c| c.process == "other")
        .map_or(f64::NAN, |c| c.cores)
}

/// A one-line summary of a run for the terminal.
pub fn one_line(record: &RunRecord) -> String {
    let r = &record.result;
    format!(
        "{:.0}/s offered, {:.0}/s sent, load {:.2}→{:.2}, other CPU {:.2} cores: accepted p50 {} p99 {} p99.9 {} max {} µs; executed p50 {} p99 {} µs; send lag p99 {} µs, final {} µs; {}",
        r.offered_rate,
        r.achieved_rate,
        record.load_before,
        record.load_after,
        other_cores(record),
        us(r.accepted.p50_us),
        us(r.accepted.p99_us),
        us(r.accepted.p99_9_us),
        us(r.accepted.max_us),
        us(r.executed.p50_us),
        us(r.executed.p99_us),
        us(r.send_lag.p99_us),
        us(r.final_send_lag_us),
        record.verdict
    )
}

fn run_rows(out: &mut String, records: &[RunRecord], first_column: &str) {
    let _ = writeln!(
        out,
        "| {first_column} | load 1-min (before→after) | other CPU (cores) | sent/s | accepted p50 | p99 | p99.9 | p99.99 | max | executed p50 | p99 | p99.9 | max | canceled p50 | p99 | send lag p99 | final lag | in flight at end | verdict |"
    );
    let _ = writeln!(
        out,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for record in records {
        let r = &record.result;
        let first = if first_column == "run" {
            record.run.to_string()
        } else {
            rate(r.offered_rate)
        };
        let _ = writeln!(
            out,
            "| {first} | {:.2}→{:.2} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            record.load_before,
            record.load_after,
            other_cores(record),
            rate(r.achieved_rate),
            us(r.accepted.p50_us),
            us(r.accepted.p99_us),
            us(r.accepted.p99_9_us),
            us(r.accepted.p99_99_us),
            us(r.accepted.max_us),
            us(r.executed.p50_us),
            us(r.executed.p99_us),
            us(r.executed.p99_9_us),
            us(r.executed.max_us),
            us(r.canceled.p50_us),
            us(r.canceled.p99_us),
            us(r.send_lag.p99_us),
            us(r.final_send_lag_us),
            r.in_flight_at_end,
            record.verdict
        );
    }
}

fn count_rows(out: &mut String, records: &[RunRecord]) {
    let _ = writeln!(
        out,
        "\n| run | rate | measured messages (rest / IOC / cancel) | executions | IOC remainders canceled | Order Rejected | Cancel Reject | cancels whose order filled first (answered with Cancel Reject) | unanswered |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for record in records {
        let r = &record.result;
        let _ = writeln!(
            out,
            "| {} | {} | {} ({} / {} / {}) | {} | {} | {} | {} | {} ({}) | {} |",
            record.run,
            rate(r.offered_rate),
            group(r.measured_messages),
            group(r.measured_rest),
            group(r.measured_ioc),
            group(r.measured_cancel),
            group(r.executions),
            group(r.ioc_remainders_canceled),
            r.rejected,
            r.cancel_rejected,
            r.moot_cancels,
            r.moot_cancels_rejected,
            r.unanswered
        );
    }
}

fn cpu_rows(out: &mut String, record: &RunRecord) {
    if record.result.cpu.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nThread CPU over the measured window of run {} ({:.0} messages/s offered):\n",
        record.run, record.result.offered_rate
    );
    let _ = writeln!(
        out,
        "| process | thread | cores used | CPU µs per message | voluntary switches per message | preemptions/s |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for cpu in &record.result.cpu {
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.0} |",
            cpu.process,
            cpu.thread,
            cpu.cores,
            cpu.us_per_message,
            cpu.voluntary_per_message,
            cpu.preemptions_per_s
        );
    }
}

/// The Markdown summary.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let args = &report.args;
    let _ = writeln!(out, "# keel-perf {}\n", report.kind);
    header_lines(
        &mut out,
        &report.machine,
        &report.command,
        report.keel_binary.as_deref(),
    );
    let _ = writeln!(
        out,
        "- node: {}; {} sessions; mix: {}% crossing IOC, the rest resting limit orders and cancels (≤ {} live resting orders per session); latencies in µs from the intended send time",
        if args.server.is_some() {
            "external (--server)".to_string()
        } else if let Some(nodes) = args.cluster {
            format!(
                "{nodes}-node Raft cluster of `keel serve` on loopback, durability {} on every node, load on the leader (responses released once a majority holds the input)",
                format!("{:?}", args.durability).to_lowercase()
            )
        } else if args.echo {
            "`keel-perf echo-server` (no matching, no journal: the floor)".to_string()
        } else {
            format!("`keel serve`, durability {:?}", args.durability).to_lowercase()
        },
        args.sessions,
        args.ioc_pct,
        args.resting_per_session
    );
    if !report.runs.is_empty() {
        runs_summary(&mut out, report);
        runs_section(&mut out, report);
    }
    sweeps_section(&mut out, report);
    if let Some(best) = report.summary.get("max_sustained_rate") {
        let _ = writeln!(
            out,
            "\n**Highest rate sustained: median {} messages/s (min {}, max {}) over {} sweeps.**",
            rate(best.median),
            rate(best.min),
            rate(best.max),
            report.sweeps.len()
        );
    }
    out
}

/// `## Summary` of the fixed-rate runs: latency percentiles, send lag, legs, load.
fn runs_summary(out: &mut String, report: &Report) {
    let args = &report.args;
    let s = &report.summary;
    let cut_off = s.get("runs_cut_off").map_or(0.0, |c| c.median) as usize;
    let _ = writeln!(
        out,
        "\n## Summary: median (min–max) of {} runs at {} messages/s offered\n",
        report.runs.len() - cut_off,
        rate(args.rate)
    );
    if cut_off > 0 {
        let _ = writeln!(
            out,
            "({cut_off} more run(s) were cut off — the node ended the sessions — and are left out; see the runs table.)\n"
        );
    }
    let _ = writeln!(
        out,
        "| figure | order → Accepted | IOC → Executed | cancel → Canceled |"
    );
    let _ = writeln!(out, "|---|---|---|---|");
    for (name, key) in [
        ("p50", "p50"),
        ("p99", "p99"),
        ("p99.9", "p99_9"),
        ("p99.99", "p99_99"),
        ("max", "max"),
    ] {
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} |",
            spread(s.get(&format!("accepted_{key}_us")), us),
            spread(s.get(&format!("executed_{key}_us")), us),
            spread(s.get(&format!("canceled_{key}_us")), us),
        );
    }
    let _ = writeln!(
        out,
        "\nSent: {} messages/s; send lag p99 {} µs, max {} µs, at the end {} µs; split of order → Accepted at the gateway's intake timestamp: inbound (send → intake) p50 {} / p99 {} µs, outbound (intake → Accepted read) p50 {} / p99 {} µs; 1-min load {} before, {} after; CPU used by the rest of the machine during the window {} cores.\n",
        spread(s.get("achieved_rate"), rate),
        spread(s.get("send_lag_p99_us"), us),
        spread(s.get("send_lag_max_us"), us),
        spread(s.get("final_send_lag_us"), us),
        spread(s.get("inbound_leg_p50_us"), us),
        spread(s.get("inbound_leg_p99_us"), us),
        spread(s.get("outbound_leg_p50_us"), us),
        spread(s.get("outbound_leg_p99_us"), us),
        spread(s.get("load_before"), |v| format!("{v:.2}")),
        spread(s.get("load_after"), |v| format!("{v:.2}")),
        spread(s.get("other_cores"), |v| format!("{v:.2}")),
    );
}

/// `## Runs`: one row per run, the runs cut off, the counts and the median run's CPU.
fn runs_section(out: &mut String, report: &Report) {
    let _ = writeln!(out, "## Runs\n");
    run_rows(out, &report.runs, "run");
    for record in report
        .runs
        .iter()
        .filter(|r| !r.result.session_errors.is_empty())
    {
        let _ = writeln!(
            out,
            "\nRun {} was cut off ({}); node(s): {}",
            record.run,
            record.verdict,
            record.node.as_deref().unwrap_or("external")
        );
    }
    count_rows(out, &report.runs);
    if let Some(median) = median_run(&report.runs) {
        cpu_rows(out, median);
    }
}

/// One `## Sweep` section per sweep: its steps and the CPU of the last sustained one.
fn sweeps_section(out: &mut String, report: &Report) {
    for sweep in &report.sweeps {
        let _ = writeln!(
            out,
            "\n## Sweep {}: highest rate sustained {} messages/s{}\n",
            sweep.sweep,
            rate(sweep.max_sustained_rate),
            sweep
                .first_failing_rate
                .map(|r| format!(
                    " (first failing {}: {})",
                    rate(r),
                    sweep.failing_verdict.clone().unwrap_or_default()
                ))
                .unwrap_or_default()
        );
        run_rows(out, &sweep.steps, "offered/s");
        count_rows(out, &sweep.steps);
        if let Some(last_good) = sweep
            .steps
            .iter()
            .filter(|s| s.sustained)
            .max_by(|a, b| a.result.offered_rate.total_cmp(&b.result.offered_rate))
        {
            cpu_rows(out, last_good);
        }
    }
}

/// Writes a `--compare-single` run with [`write_result`].
pub fn write_comparison(
    dir: &Path,
    label: &str,
    comparison: &Comparison,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    write_result(
        dir,
        label,
        comparison,
        &comparison.machine,
        &comparison_markdown(comparison),
    )
}

fn ratio(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.2}×")
    } else {
        "–".to_string()
    }
}

/// The header of the end-to-end table in `BENCHMARKS.md` ([`summary_row`]).
pub const SUMMARY_HEADER: &str = "| node | runs | sent/s | order → Accepted p50 (µs) | p99 | p99.9 | max | IOC → Executed p99 | load before | other CPU (cores) |\n|---|---|---|---|---|---|---|---|---|---|";

/// One row of the end-to-end table in `BENCHMARKS.md`: the medians (min–max) of `report`'s
/// summary, under the name `label`.
pub fn summary_row(label: &str, report: &Report) -> String {
    let s = |key: &str| {
        report
            .summary
            .get(key)
            .map_or("–".to_string(), |s| fmt::spread(s.median, s.min, s.max))
    };
    let cut = report.summary.get("runs_cut_off").map_or(0.0, |s| s.median);
    format!(
        "| {label} | {}{} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
        report.runs.len(),
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
    )
}

/// The cluster-against-single part of `BENCHMARKS.md`: both rows and the ratios against
/// the aim.
pub fn comparison_summary(comparison: &Comparison) -> String {
    let times = |r: f64| {
        if r.is_finite() {
            format!("{r:.2}×")
        } else {
            "–".to_string()
        }
    };
    let ratio = |key: &str| {
        comparison
            .ratios
            .get(key)
            .map_or("–".to_string(), |&r| times(r))
    };
    let pairs = comparison
        .pair_p99_ratios
        .iter()
        .map(|&r| times(r))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{SUMMARY_HEADER}\n{}{}\nCluster ÷ single (medians): p50 {}, **p99 {}**, p99.9 {}; p99 ratio per back-to-back pair: {}. Aim: p99 ratio ≤ {}× — **{}**.\n\n",
        summary_row("single node", &comparison.single),
        summary_row("3-node cluster (leader)", &comparison.cluster),
        ratio("accepted_p50_us"),
        ratio("accepted_p99_us"),
        ratio("accepted_p99_9_us"),
        pairs,
        fig(comparison.aim_p99_ratio),
        if comparison.aim_met { "met" } else { "not met" }
    )
}

/// The Markdown of a `--compare-single` run: the comparison first, then each
/// configuration's full report (headings one level down).
pub fn comparison_markdown(comparison: &Comparison) -> String {
    let mut out = String::new();
    let args = &comparison.args;
    let topology = comparison.cluster.args.topology();
    let _ = writeln!(
        out,
        "# keel-perf e2e: single node vs {topology}, {} messages/s, durability {}\n",
        rate(args.rate),
        format!("{:?}", args.durability).to_lowercase()
    );
    header_lines(
        &mut out,
        &comparison.machine,
        &comparison.command,
        comparison.keel_binary.as_deref(),
    );
    let _ = writeln!(
        out,
        "- {} runs each, interleaved in this order: {}",
        args.runs,
        comparison.order.join(", ")
    );
    let _ = writeln!(
        out,
        "- same per-node configuration (users, instrument, durability); the cluster adds `[cluster]` and serves from its leader\n"
    );
    comparison_table(&mut out, comparison, &topology);
    for (title, report) in [
        ("Single node", &comparison.single),
        (topology.as_str(), &comparison.cluster),
    ] {
        nested_report(&mut out, title, report);
    }
    out
}

/// `## Order → Accepted`: both configurations side by side, the ratios and the aim.
fn comparison_table(out: &mut String, comparison: &Comparison, topology: &str) {
    let _ = writeln!(
        out,
        "## Order → Accepted, µs: median (min–max) over the runs\n"
    );
    let _ = writeln!(
        out,
        "| figure | single node | {topology} | {topology} / single (medians) |"
    );
    let _ = writeln!(out, "|---|---|---|---|");
    for (name, key) in [("p50", "p50"), ("p99", "p99"), ("p99.9", "p99_9")] {
        let key = format!("accepted_{key}_us");
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} |",
            spread(comparison.single.summary.get(&key), us),
            spread(comparison.cluster.summary.get(&key), us),
            ratio(comparison.ratios.get(&key).copied().unwrap_or(f64::NAN)),
        );
    }
    let p99_ratio = comparison
        .ratios
        .get("accepted_p99_us")
        .copied()
        .unwrap_or(f64::NAN);
    let _ = writeln!(
        out,
        "\n**Replicated p99 / single p99 = {} (aim ≤ {}×): {}.** Per pair of runs made back to back: {}.\n",
        ratio(p99_ratio),
        comparison.aim_p99_ratio,
        if comparison.aim_met { "met" } else { "not met" },
        comparison
            .pair_p99_ratios
            .iter()
            .map(|r| ratio(*r))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// `report`'s own Markdown under `## title`, its headings one level down.
fn nested_report(out: &mut String, title: &str, report: &Report) {
    let _ = writeln!(out, "## {title}");
    for line in markdown(report).lines() {
        if line.starts_with("# keel-perf") {
            continue;
        }
        if line.starts_with('#') {
            let _ = writeln!(out, "#{line}");
        } else {
            let _ = writeln!(out, "{line}");
        }
    }
}

/// The run whose Order Accepted p50 is the median one.
fn median_run(runs: &[RunRecord]) -> Option<&RunRecord> {
    let mut sorted: Vec<&RunRecord> = runs.iter().collect();
    sorted.sort_by(|a, b| {
        a.result
            .accepted
            .p50_us
            .total_cmp(&b.result.accepted.p50_us)
    });
    sorted.get(sorted.len() / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping() {
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(group(999), "999");
        assert_eq!(us(12.345), "12.3");
        assert_eq!(us(1234.4), "1,234");
    }
}
