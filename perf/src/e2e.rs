//! `keel-perf e2e`: end-to-end order entry through a running node, open loop at fixed
//! offered rates, with coordinated-omission correction; and `--sweep`, the search for the
//! highest rate sustained without the queue growing.
//!
//! Each run (and, in a sweep, each step) starts a fresh `keel serve` node unless
//! `--server` names one, so runs do not inherit each other's journal, books or streams.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use keel_gateway::protocol::Stock;
use serde::Serialize;

use crate::driver::{self, Endpoint, Plan, RunResult};
use crate::flow::Mix;
use crate::report::{self, Machine};
use crate::server::{self, Node, NodeOptions};
use crate::sys;

/// Durability policies of the node under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityArg {
    /// Acknowledge once journaled (in memory).
    Async,
    /// Acknowledge once on disk.
    Fsync,
}

impl DurabilityArg {
    fn name(self) -> &'static str {
        match self {
            DurabilityArg::Async => "async",
            DurabilityArg::Fsync => "fsync",
        }
    }
}

/// `keel-perf e2e` options.
#[derive(Clone, Debug, clap::Args, Serialize)]
pub struct E2eArgs {
    /// Durability of the node the benchmark starts (ignored with --server).
    #[arg(long, value_enum, default_value = "async")]
    pub durability: DurabilityArg,
    /// Offered load: OUCH messages per second (Enter Order and Cancel Order alike), all
    /// sessions together.
    #[arg(long, default_value_t = 50_000.0)]
    pub rate: f64,
    /// SoupBinTCP sessions (one user each), driven round-robin by one thread.
    #[arg(long, default_value_t = 8)]
    pub sessions: usize,
    /// Measured seconds per run (default 10; 5 per step with --sweep).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Warm-up seconds before the measured window, sent but not recorded (default 2; 1 with
    /// --sweep).
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Repetitions (each on a fresh node); the summary gives their median and spread.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Find the highest rate sustained without the queue growing, instead of one rate.
    #[arg(long)]
    pub sweep: bool,
    /// First rate of the sweep.
    #[arg(long, default_value_t = 50_000.0)]
    pub sweep_start: f64,
    /// Each sweep step multiplies the rate by this until a step fails.
    #[arg(long, default_value_t = 1.5)]
    pub sweep_factor: f64,
    /// Bisection steps between the last good and the first failing rate.
    #[arg(long, default_value_t = 3)]
    pub sweep_refine: usize,
    /// Highest rate the sweep tries.
    #[arg(long, default_value_t = 4_000_000.0)]
    pub sweep_max: f64,
    /// A step fails if the Order Accepted p99 exceeds this (µs): latency exploded.
    #[arg(long, default_value_t = 20_000.0)]
    pub p99_limit_us: f64,
    /// A step fails if the generator ends more than this behind its schedule (µs) or sends
    /// less than 98% of the offered rate: the backlog grew on the sending side.
    #[arg(long, default_value_t = 5_000.0)]
    pub lag_limit_us: f64,
    /// A step fails if, when the last message is sent, more than this many milliseconds of
    /// traffic are still unanswered, or if the median latency of the last measured second
    /// exceeds twice the first second's plus 1 ms: the queue grew.
    #[arg(long, default_value_t = 10.0)]
    pub backlog_limit_ms: f64,
    /// Minimum µs between two sending wake-ups of the generator (0: one wake-up per
    /// message's intended time). Larger ticks batch messages into fewer writes; the tick's
    /// delay counts in the latencies.
    #[arg(long, default_value_t = 0.0)]
    pub tick_us: f64,
    /// Percentage of messages that are crossing IOC orders.
    #[arg(long, default_value_t = 10)]
    pub ioc_pct: u32,
    /// Live resting orders per session before it cancels its oldest.
    #[arg(long, default_value_t = 64)]
    pub resting_per_session: usize,
    /// Seed of the order flow.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Seconds to wait for outstanding responses after the last send.
    #[arg(long, default_value_t = 10.0)]
    pub drain_timeout: f64,
    /// The `keel` binary (default: `keel` next to this executable).
    #[arg(long)]
    pub keel: Option<PathBuf>,
    /// `server.matching_core` for the node started (default: the node's own, the last core).
    #[arg(long)]
    pub matching_core: Option<usize>,
    /// Cores the generator thread may run on (comma separated; default: every core but the
    /// matching loop's; `none` leaves it to the scheduler).
    #[arg(long)]
    pub generator_cores: Option<String>,
    /// Pin every thread of the node except its matching loop to the generator's cores
    /// (as `taskset -p` would), so that nothing is scheduled beside the spinning loop.
    #[arg(long)]
    pub pin_server_threads: bool,
    /// Parent directory for the node's temporary data directory.
    #[arg(long)]
    pub tmp: Option<PathBuf>,
    /// Keep the node's data directory and log.
    #[arg(long)]
    pub keep: bool,
    /// Run against `keel-perf echo-server` (answers at once, no matching, no journal)
    /// instead of `keel serve`: the floor set by loopback TCP and the generator.
    #[arg(long)]
    pub echo: bool,
    /// Use a running node at this address instead of starting one.
    #[arg(long)]
    pub server: Option<SocketAddr>,
    /// With --server: `NAME:PASSWORD`, once per session.
    #[arg(long = "user")]
    pub users: Vec<String>,
    /// With --server: the instrument's OUCH symbol.
    #[arg(long, default_value = server::SYMBOL)]
    pub symbol: String,
    /// With --server: the instrument's price_scale.
    #[arg(long, default_value_t = server::PRICE_SCALE)]
    pub price_scale: u32,
    /// Results folder (JSON and Markdown); default `perf/results` in the workspace.
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// Name of the result files (default `e2e-<durability>-<rate>` or
    /// `e2e-sweep-<durability>`).
    #[arg(long)]
    pub label: Option<String>,
}

/// One run as reported: the measurement plus its context.
#[derive(Clone, Debug, Serialize)]
pub struct RunRecord {
    /// 1-based run number.
    pub run: usize,
    /// 1-minute load average before the run.
    pub load_before: f64,
    /// 1-minute load average after the run.
    pub load_after: f64,
    /// Whether the run met the sustain criteria.
    pub sustained: bool,
    /// Why not, or "ok".
    pub verdict: String,
    /// The node's start line (address, core), when managed.
    pub node: Option<String>,
    /// The measurement.
    pub result: RunResult,
}

/// One sweep: its steps and the last rate sustained.
#[derive(Clone, Debug, Serialize)]
pub struct Sweep {
    /// 1-based sweep number.
    pub sweep: usize,
    /// The highest offered rate whose step met the criteria (0 if none).
    pub max_sustained_rate: f64,
    /// The lowest offered rate that failed, if any.
    pub first_failing_rate: Option<f64>,
    /// Why it failed.
    pub failing_verdict: Option<String>,
    /// Every step in order.
    pub steps: Vec<RunRecord>,
}

/// Median and spread of one figure over the runs.
#[derive(Clone, Debug, Serialize)]
pub struct Spread {
    /// Median.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    fn of(values: &[f64]) -> Spread {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        if sorted.is_empty() {
            return Spread {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            };
        }
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Spread {
            median,
            min: sorted[0],
            max: sorted[n - 1],
        }
    }
}

/// The whole output file.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `e2e` or `e2e-sweep`.
    pub kind: String,
    /// The command line.
    pub command: String,
    /// Machine, commit, date.
    pub machine: Machine,
    /// Options.
    pub args: E2eArgs,
    /// The `keel` binary used (path, size, modification time), when the tool started it.
    pub keel_binary: Option<String>,
    /// Fixed-rate runs.
    pub runs: Vec<RunRecord>,
    /// Sweeps.
    pub sweeps: Vec<Sweep>,
    /// Medians and spreads over the runs (or sweeps).
    pub summary: std::collections::BTreeMap<String, Spread>,
}

/// Which `keel` binary a managed run uses: path, size and modification time (builds in a
/// shared target directory change under one's feet; this says which one was measured).
fn describe_keel(args: &E2eArgs) -> Option<String> {
    if args.server.is_some() || args.echo {
        return None;
    }
    let path = match &args.keel {
        Some(path) => path.clone(),
        None => default_keel().ok()?,
    };
    let meta = std::fs::metadata(&path).ok()?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    Some(format!(
        "{} ({} bytes, modified {})",
        path.display(),
        meta.len(),
        report::iso_date(modified)
    ))
}

fn default_keel() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate this executable")?;
    Ok(exe.with_file_name("keel"))
}

/// The folder results go to by default: `perf/results` of the workspace this tool was built
/// in, or `./perf/results` if that is gone.
fn default_results() -> PathBuf {
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results");
    if built.parent().is_some_and(|p| p.exists()) {
        built
    } else {
        PathBuf::from("perf/results")
    }
}

fn parse_cores(text: &str) -> anyhow::Result<Vec<usize>> {
    text.split(',')
        .map(|part| {
            part.trim()
                .parse::<usize>()
                .with_context(|| format!("bad core number {part:?}"))
        })
        .collect()
}

/// Runs `keel-perf e2e`.
pub fn main(args: E2eArgs) -> anyhow::Result<()> {
    if args.sessions == 0 || args.rate <= 0.0 || args.runs == 0 {
        bail!("--sessions, --rate and --runs must be positive");
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let machine = Machine::detect();
    eprintln!("keel-perf e2e: {}", machine.line());
    pin_generator(&args)?;
    let mut report = Report {
        kind: if args.sweep { "e2e-sweep" } else { "e2e" }.to_string(),
        command,
        machine,
        args: args.clone(),
        keel_binary: describe_keel(&args),
        runs: Vec::new(),
        sweeps: Vec::new(),
        summary: Default::default(),
    };
    if args.sweep {
        for sweep in 1..=args.runs {
            let result = run_sweep(&args, sweep)?;
            eprintln!(
                "keel-perf e2e: sweep {sweep}/{}: highest rate sustained {:.0} messages/s{}",
                args.runs,
                result.max_sustained_rate,
                result
                    .first_failing_rate
                    .map(|r| format!(
                        "; {r:.0}/s failed: {}",
                        result.failing_verdict.clone().unwrap_or_default()
                    ))
                    .unwrap_or_default()
            );
            report.sweeps.push(result);
        }
        let best: Vec<f64> = report.sweeps.iter().map(|s| s.max_sustained_rate).collect();
        report
            .summary
            .insert("max_sustained_rate".into(), Spread::of(&best));
    } else {
        for run in 1..=args.runs {
            let label = format!(
                "run {run}/{} {} {:.0}/s",
                args.runs,
                args.durability.name(),
                args.rate
            );
            let record = run_once(&args, args.rate, run, &label)?;
            eprintln!("keel-perf e2e: {}", report::one_line(&record));
            report.runs.push(record);
        }
        report.summary = summarize(&report.runs);
    }
    let results = args.results.clone().unwrap_or_else(default_results);
    let label = args.label.clone().unwrap_or_else(|| {
        if args.sweep {
            if args.echo {
                "e2e-sweep-echo".to_string()
            } else {
                format!("e2e-sweep-{}", args.durability.name())
            }
        } else {
            if args.echo {
                format!("e2e-echo-{:.0}", args.rate)
            } else {
                format!("e2e-{}-{:.0}", args.durability.name(), args.rate)
            }
        }
    });
    let (json, markdown) = report::write(&results, &label, &report)?;
    println!("{}", report::markdown(&report));
    eprintln!(
        "keel-perf e2e: wrote {} and {}",
        json.display(),
        markdown.display()
    );
    Ok(())
}

/// The generator's cores: as given, or every core but the matching loop's (None: leave it
/// to the scheduler).
fn generator_cores(args: &E2eArgs) -> Option<Vec<usize>> {
    match args.generator_cores.as_deref() {
        Some("none") => None,
        Some(list) => parse_cores(list).ok(),
        None => {
            let count = sys::cpu_count();
            if count < 2 {
                return None;
            }
            let matching = args.matching_core.unwrap_or(count - 1);
            Some((0..count).filter(|&c| c != matching).collect())
        }
    }
}

fn pin_generator(args: &E2eArgs) -> anyhow::Result<()> {
    if let Some(list) = args.generator_cores.as_deref().filter(|l| *l != "none") {
        parse_cores(list)?;
    }
    let Some(cores) = generator_cores(args) else {
        return Ok(());
    };
    if sys::pin_current_thread(&cores) {
        eprintln!("keel-perf e2e: generator thread on core(s) {cores:?}");
    } else {
        eprintln!("keel-perf e2e: could not pin the generator to {cores:?}; unpinned");
    }
    Ok(())
}

/// Medians and spreads over the runs that completed (a run whose sessions were cut off —
/// the node stopped or crashed — is reported but left out of the figures).
fn summarize(runs: &[RunRecord]) -> std::collections::BTreeMap<String, Spread> {
    let mut summary = std::collections::BTreeMap::new();
    let complete: Vec<&RunRecord> = runs
        .iter()
        .filter(|r| r.result.session_errors.is_empty())
        .collect();
    let mut put = |name: &str, f: &dyn Fn(&RunRecord) -> f64| {
        let values: Vec<f64> = complete.iter().map(|r| f(r)).collect();
        summary.insert(name.to_string(), Spread::of(&values));
    };
    put("achieved_rate", &|r| r.result.achieved_rate);
    put("accepted_p50_us", &|r| r.result.accepted.p50_us);
    put("accepted_p99_us", &|r| r.result.accepted.p99_us);
    put("accepted_p99_9_us", &|r| r.result.accepted.p99_9_us);
    put("accepted_p99_99_us", &|r| r.result.accepted.p99_99_us);
    put("accepted_max_us", &|r| r.result.accepted.max_us);
    put("executed_p50_us", &|r| r.result.executed.p50_us);
    put("executed_p99_us", &|r| r.result.executed.p99_us);
    put("executed_p99_9_us", &|r| r.result.executed.p99_9_us);
    put("executed_p99_99_us", &|r| r.result.executed.p99_99_us);
    put("executed_max_us", &|r| r.result.executed.max_us);
    put("canceled_p50_us", &|r| r.result.canceled.p50_us);
    put("canceled_p99_us", &|r| r.result.canceled.p99_us);
    put("canceled_p99_9_us", &|r| r.result.canceled.p99_9_us);
    put("canceled_p99_99_us", &|r| r.result.canceled.p99_99_us);
    put("canceled_max_us", &|r| r.result.canceled.max_us);
    put("inbound_leg_p50_us", &|r| r.result.inbound_leg.p50_us);
    put("outbound_leg_p50_us", &|r| r.result.outbound_leg.p50_us);
    put("inbound_leg_p99_us", &|r| r.result.inbound_leg.p99_us);
    put("outbound_leg_p99_us", &|r| r.result.outbound_leg.p99_us);
    put("send_lag_p50_us", &|r| r.result.send_lag.p50_us);
    put("send_lag_p99_us", &|r| r.result.send_lag.p99_us);
    put("send_lag_max_us", &|r| r.result.send_lag.max_us);
    put("final_send_lag_us", &|r| r.result.final_send_lag_us);
    put("load_before", &|r| r.load_before);
    put("other_cores", &report::other_cores);
    put("load_after", &|r| r.load_after);
    let failed = (runs.len() - complete.len()) as f64;
    summary.insert(
        "runs_cut_off".to_string(),
        Spread {
            median: failed,
            min: failed,
            max: failed,
        },
    );
    summary
}

/// Whether a run met the sustain criteria, and why not.
fn judge(args: &E2eArgs, result: &RunResult) -> (bool, String) {
    if let Some(error) = result.session_errors.first() {
        return (false, format!("session ended: {error}"));
    }
    if result.unanswered > 0 {
        return (
            false,
            format!(
                "{} messages unanswered {:.0} s after the last send ({:?}; e.g. {:?})",
                result.unanswered,
                args.drain_timeout,
                result.unanswered_by_kind,
                result.unanswered_examples.first()
            ),
        );
    }
    if result.final_send_lag_us > args.lag_limit_us
        || result.achieved_rate < 0.98 * result.offered_rate
    {
        return (
            false,
            format!(
                "sending fell behind: last message {:.0} µs late, {:.0}/s sent of {:.0}/s offered",
                result.final_send_lag_us, result.achieved_rate, result.offered_rate
            ),
        );
    }
    let backlog = result.offered_rate * args.backlog_limit_ms / 1000.0;
    if result.in_flight_at_end as f64 > backlog {
        return (
            false,
            format!(
                "queue grew: {} messages unanswered when the last was sent (> {:.0} ms of traffic)",
                result.in_flight_at_end, args.backlog_limit_ms
            ),
        );
    }
    if let (Some(first), Some(last)) = (result.per_second.first(), result.per_second.last()) {
        if last.p50_us > 2.0 * first.p50_us + 1000.0 {
            return (
                false,
                format!(
                    "queue grew: median latency {:.0} µs in the first second, {:.0} µs in the last",
                    first.p50_us, last.p50_us
                ),
            );
        }
    }
    if result.accepted.p99_us > args.p99_limit_us {
        return (
            false,
            format!(
                "Order Accepted p99 {:.0} µs > {:.0} µs",
                result.accepted.p99_us, args.p99_limit_us
            ),
        );
    }
    (true, "ok".to_string())
}

fn progress_bar(label: &str) -> ProgressBar {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {pos:>6}/{len} ms {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(label.to_string());
    bar
}

/// One run at `rate` on a fresh node (or the given server).
fn run_once(args: &E2eArgs, rate: f64, run: usize, label: &str) -> anyhow::Result<RunRecord> {
    let sweep = args.sweep;
    let duration = args.duration.unwrap_or(if sweep { 5.0 } else { 10.0 });
    let warmup = args.warmup.unwrap_or(if sweep { 1.0 } else { 2.0 });
    let (node, endpoint, stock, price_scale) = match args.server {
        Some(addr) => {
            let users = args
                .users
                .iter()
                .map(|spec| {
                    spec.split_once(':')
                        .map(|(u, p)| (u.to_string(), p.to_string()))
                        .with_context(|| format!("--user {spec:?}: expected NAME:PASSWORD"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let stock = Stock::new(&args.symbol).context("--symbol")?;
            (None, Endpoint { addr, users }, stock, args.price_scale)
        }
        None => {
            let options = NodeOptions {
                keel: match &args.keel {
                    Some(path) => path.clone(),
                    None => default_keel()?,
                },
                durability: args.durability.name().to_string(),
                users: args.sessions,
                matching_core: args.matching_core,
                temp_parent: args.tmp.clone(),
                keep: args.keep,
            };
            let node = if args.echo {
                Node::start_echo(&options)?
            } else {
                Node::start(&options)?
            };
            let endpoint = Endpoint {
                addr: node.addr,
                users: node.users.clone(),
            };
            let stock = Stock::new(server::SYMBOL).context("symbol")?;
            (Some(node), endpoint, stock, server::PRICE_SCALE)
        }
    };
    let plan = Plan {
        rate,
        warmup: Duration::from_secs_f64(warmup),
        duration: Duration::from_secs_f64(duration),
        drain_timeout: Duration::from_secs_f64(args.drain_timeout),
        mix: Mix {
            ioc_pct: args.ioc_pct.min(100),
            resting_per_session: args.resting_per_session.max(1),
            price_scale,
        },
        stock,
        seed: args.seed.wrapping_add(run as u64),
        server_pid: node.as_ref().and_then(Node::pid),
        tick: Duration::from_secs_f64(args.tick_us.max(0.0) / 1e6),
        pin_server_threads: args
            .pin_server_threads
            .then(|| generator_cores(args))
            .flatten(),
    };
    let load_before = sys::load_average()[0];
    let bar = progress_bar(label);
    let result = driver::run(&endpoint, args.sessions, &plan, &bar);
    bar.finish_and_clear();
    let load_after = sys::load_average()[0];
    let banner = node.as_ref().map(|n| n.banner.clone());
    if let Some(node) = node {
        node.stop()?;
    }
    let result = result?;
    let (sustained, verdict) = judge(args, &result);
    Ok(RunRecord {
        run,
        load_before,
        load_after,
        sustained,
        verdict,
        node: banner,
        result,
    })
}

fn run_sweep(args: &E2eArgs, sweep: usize) -> anyhow::Result<Sweep> {
    let mut steps: Vec<RunRecord> = Vec::new();
    let mut good: Option<f64> = None;
    let mut bad: Option<(f64, String)> = None;
    let mut rate = args.sweep_start;
    let step = |rate: f64, steps: &mut Vec<RunRecord>| -> anyhow::Result<bool> {
        let label = format!(
            "sweep {sweep}/{} {} {:.0}/s",
            args.runs,
            args.durability.name(),
            rate
        );
        let mut record = run_once(args, rate, steps.len() + 1, &label)?;
        eprintln!("keel-perf e2e: {}", report::one_line(&record));
        if !record.result.session_errors.is_empty() {
            // The node ended the sessions (stopped from outside, or crashed): say so, keep
            // the record, and measure the step once more.
            steps.push(record);
            record = run_once(args, rate, steps.len() + 1, &label)?;
            eprintln!("keel-perf e2e: (retry) {}", report::one_line(&record));
        }
        let ok = record.sustained;
        steps.push(record);
        Ok(ok)
    };
    // Up from the start rate until a step fails; if the very first fails, down until one
    // passes (or the rate is below 1,000/s).
    loop {
        if step(rate, &mut steps)? {
            good = Some(rate);
            if bad.is_some() || rate >= args.sweep_max {
                break;
            }
            rate = (rate * args.sweep_factor).min(args.sweep_max);
        } else {
            let verdict = steps.last().map(|s| s.verdict.clone()).unwrap_or_default();
            bad = Some((rate, verdict));
            if good.is_some() {
                break;
            }
            rate = (rate / args.sweep_factor / 1000.0).round() * 1000.0;
            if rate < 1000.0 {
                break;
            }
        }
    }
    if let (Some(mut low), Some((mut high, _))) = (good, bad.clone()) {
        for _ in 0..args.sweep_refine {
            if high / low < 1.03 {
                break;
            }
            let mid = ((low * high).sqrt() / 1000.0).round() * 1000.0;
            if step(mid, &mut steps)? {
                low = mid;
            } else {
                high = mid;
                let verdict = steps.last().map(|s| s.verdict.clone()).unwrap_or_default();
                bad = Some((mid, verdict));
            }
        }
        good = Some(low);
        let _ = high;
    }
    Ok(Sweep {
        sweep,
        max_sustained_rate: good.unwrap_or(0.0),
        first_failing_rate: bad.as_ref().map(|b| b.0),
        failing_verdict: bad.map(|b| b.1),
        steps,
    })
}
