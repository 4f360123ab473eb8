//! `keel-perf e2e`: end-to-end order entry through a running node, open loop at fixed
//! offered rates, with coordinated-omission correction; and `--sweep`, the search for the
//! highest rate sustained without the queue growing.
//!
//! Each run (and, in a sweep, each step) starts a fresh `keel serve` node unless
//! `--server` names one, so runs do not inherit each other's journal, books or streams.
//!
//! `--cluster N` starts a fresh N-node Raft cluster of `keel serve` processes instead (same
//! per-node configuration plus `[cluster]`, see [`crate::cluster`]), finds the leader (the
//! endpoint that accepts a login) and drives the same load against it: every response is
//! then released only once a majority holds its input. `--compare-single` measures the
//! single node and the cluster in the same invocation, runs interleaved (single, cluster,
//! cluster, single, ...) so that drift in the machine's load hits both alike, and reports
//! the ratio of their Order Accepted p99s.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use indicatif::ProgressBar;
use keel_protocol::Stock;
use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, ClusterOptions};
use crate::driver::{self, Endpoint, Plan, RunResult};
use crate::flow::Mix;
use crate::report::{self, Machine, Spread};
use crate::server::{self, Node, NodeOptions};
use crate::sys;

/// Durability policies of the node under test.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityArg {
    /// Acknowledge once journaled (in memory).
    // `Default` only fills a field missing from a result file read back; each command
    // sets its own default.
    #[default]
    Async,
    /// Acknowledge once on disk.
    Fsync,
}

impl DurabilityArg {
    /// The configuration's name for it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            DurabilityArg::Async => "async",
            DurabilityArg::Fsync => "fsync",
        }
    }
}

/// `keel-perf e2e` options.
#[derive(Clone, Debug, Default, clap::Args, Serialize, Deserialize)]
#[serde(default)]
pub struct E2eArgs {
    /// Durability of the node the benchmark starts (ignored with --server).
    #[arg(long, value_enum, default_value = "async")]
    pub durability: DurabilityArg,
    /// Offered load: OUCH messages per second (Enter Order and Cancel Order alike), all
    /// sessions together.
    #[arg(long, default_value_t = 50_000.0)]
    #[serde(deserialize_with = "crate::json::f64")]
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
    #[serde(deserialize_with = "crate::json::f64")]
    pub sweep_start: f64,
    /// Each sweep step multiplies the rate by this until a step fails.
    #[arg(long, default_value_t = 1.5)]
    #[serde(deserialize_with = "crate::json::f64")]
    pub sweep_factor: f64,
    /// Bisection steps between the last good and the first failing rate.
    #[arg(long, default_value_t = 3)]
    pub sweep_refine: usize,
    /// Highest rate the sweep tries.
    #[arg(long, default_value_t = 4_000_000.0)]
    #[serde(deserialize_with = "crate::json::f64")]
    pub sweep_max: f64,
    /// A step fails if the Order Accepted p99 exceeds this (µs): latency exploded.
    #[arg(long, default_value_t = 20_000.0)]
    #[serde(deserialize_with = "crate::json::f64")]
    pub p99_limit_us: f64,
    /// A step fails if the generator ends more than this behind its schedule (µs) or sends
    /// less than 98% of the offered rate: the backlog grew on the sending side.
    #[arg(long, default_value_t = 5_000.0)]
    #[serde(deserialize_with = "crate::json::f64")]
    pub lag_limit_us: f64,
    /// A step fails if, when the last message is sent, more than this many milliseconds of
    /// traffic are still unanswered, or if the median latency of the last measured second
    /// exceeds twice the first second's plus 1 ms: the queue grew.
    #[arg(long, default_value_t = 10.0)]
    #[serde(deserialize_with = "crate::json::f64")]
    pub backlog_limit_ms: f64,
    /// Minimum µs between two sending wake-ups of the generator (0: one wake-up per
    /// message's intended time). Larger ticks batch messages into fewer writes; the tick's
    /// delay counts in the latencies.
    #[arg(long, default_value_t = 0.0)]
    #[serde(deserialize_with = "crate::json::f64")]
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
    #[serde(deserialize_with = "crate::json::f64")]
    pub drain_timeout: f64,
    /// The `keel` binary (default: `keel` next to this executable).
    #[arg(long)]
    pub keel: Option<PathBuf>,
    /// `server.matching_core` for the node started, or every node of a cluster (default:
    /// the node's own, the last core).
    #[arg(long)]
    pub matching_core: Option<usize>,
    /// Cores the generator thread may run on (comma separated; default: every core but the
    /// matching loop's; `none` leaves it to the scheduler).
    #[arg(long)]
    pub generator_cores: Option<String>,
    /// Pin every thread of the node (a cluster's leader) except its matching loop to the
    /// generator's cores (as `taskset -p` would), so that nothing is scheduled beside the
    /// spinning loop.
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
    /// `e2e-sweep-<durability>`; with --cluster N `e2e-clusterN-<durability>-<rate>`, and
    /// with --compare-single also `e2e-clusterN-vs-single-<durability>-<rate>`).
    #[arg(long)]
    pub label: Option<String>,
    /// Start an N-node Raft cluster (odd, at least 3) instead of one node and drive the
    /// load against its leader.
    #[arg(long, value_name = "N")]
    pub cluster: Option<usize>,
    /// With --cluster: also run the single-node configuration, alternating with the
    /// cluster, --runs runs each, and report both and the ratio of their p99s.
    #[arg(long, requires = "cluster")]
    pub compare_single: bool,
    /// With --cluster: `cluster.election_timeout_ms` (default: the node's, 150).
    #[arg(long, requires = "cluster")]
    pub election_timeout_ms: Option<u64>,
    /// With --cluster: `cluster.heartbeat_ms` (default: the node's, 30).
    #[arg(long, requires = "cluster")]
    pub heartbeat_ms: Option<u64>,
    /// With --compare-single: the aim for replicated p99 / single-node p99 (issue #5: 3).
    #[arg(long, default_value_t = 3.0)]
    #[serde(deserialize_with = "crate::json::f64")]
    pub aim_p99_ratio: f64,
}

impl E2eArgs {
    /// `clusterN` for a cluster run, `single` otherwise: the name of the configuration.
    pub fn topology(&self) -> String {
        match self.cluster {
            Some(nodes) => format!("cluster{nodes}"),
            None => "single".to_string(),
        }
    }
}

/// One run as reported: the measurement plus its context.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunRecord {
    /// 1-based run number.
    pub run: usize,
    /// 1-minute load average before the run.
    #[serde(deserialize_with = "crate::json::f64")]
    pub load_before: f64,
    /// 1-minute load average after the run.
    #[serde(deserialize_with = "crate::json::f64")]
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
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Sweep {
    /// 1-based sweep number.
    pub sweep: usize,
    /// The highest offered rate whose step met the criteria (0 if none).
    #[serde(deserialize_with = "crate::json::f64")]
    pub max_sustained_rate: f64,
    /// The lowest offered rate that failed, if any.
    pub first_failing_rate: Option<f64>,
    /// Why it failed.
    pub failing_verdict: Option<String>,
    /// Every step in order.
    pub steps: Vec<RunRecord>,
}

/// The whole output file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
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

/// The output of `--compare-single`: both configurations' runs and the ratios.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Comparison {
    /// `e2e-cluster-vs-single`.
    pub kind: String,
    /// The command line.
    pub command: String,
    /// Machine, commit, date.
    pub machine: Machine,
    /// Options.
    pub args: E2eArgs,
    /// The `keel` binary used.
    pub keel_binary: Option<String>,
    /// The order the runs were made in, e.g. `single 1`, `cluster3 1`, `cluster3 2`, ...
    pub order: Vec<String>,
    /// The single-node runs.
    pub single: Report,
    /// The cluster runs.
    pub cluster: Report,
    /// Median over the cluster's runs / median over the single node's runs, for
    /// `accepted_p50_us`, `accepted_p99_us`, `accepted_p99_9_us`.
    #[serde(deserialize_with = "crate::json::f64_map")]
    pub ratios: std::collections::BTreeMap<String, f64>,
    /// Cluster p99 / single p99 of each pair of runs made back to back.
    #[serde(deserialize_with = "crate::json::f64s")]
    pub pair_p99_ratios: Vec<f64>,
    /// The aim for the p99 ratio.
    #[serde(deserialize_with = "crate::json::f64")]
    pub aim_p99_ratio: f64,
    /// Whether the median p99 ratio is within the aim (and no run was cut off).
    pub aim_met: bool,
}

/// `--compare-single`: single node and cluster alternately, `--runs` each, in the order
/// single, cluster, cluster, single, single, cluster, ... (each pair swaps who goes first,
/// so a steady drift in the machine's load does not favour either).
fn compare(args: E2eArgs) -> anyhow::Result<()> {
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let machine = Machine::detect();
    eprintln!("keel-perf e2e: {}", machine.line());
    pin_generator(&args)?;
    let mut single_args = args.clone();
    single_args.cluster = None;
    single_args.compare_single = false;
    let mut cluster_args = args.clone();
    cluster_args.compare_single = false;
    let empty = |a: &E2eArgs| Report {
        kind: format!("e2e-{}", a.topology()),
        command: command.clone(),
        machine: machine.clone(),
        args: a.clone(),
        keel_binary: describe_keel(a),
        runs: Vec::new(),
        sweeps: Vec::new(),
        summary: Default::default(),
    };
    let mut single = empty(&single_args);
    let mut cluster = empty(&cluster_args);
    let order = alternate_runs(
        &args,
        (&single_args, &mut single),
        (&cluster_args, &mut cluster),
    )?;
    single.summary = summarize(&single.runs);
    cluster.summary = summarize(&cluster.runs);
    let comparison = compared(&args, command, machine, order, single, cluster);
    write_compared(&args, &cluster_args.topology(), &comparison)
}

/// `--runs` pairs of runs, single node and cluster, each pair in the order the other
/// went last; a run the node cut off is made again (at most twice). Returns the order the
/// runs were made in.
fn alternate_runs(
    args: &E2eArgs,
    single: (&E2eArgs, &mut Report),
    cluster: (&E2eArgs, &mut Report),
) -> anyhow::Result<Vec<String>> {
    let (single_args, single) = single;
    let (cluster_args, cluster) = cluster;
    let mut order = Vec::new();
    for run in 1..=args.runs {
        let pair: [(&E2eArgs, &mut Report); 2] = if run % 2 == 1 {
            [(single_args, &mut *single), (cluster_args, &mut *cluster)]
        } else {
            [(cluster_args, &mut *cluster), (single_args, &mut *single)]
        };
        for (config, report) in pair {
            let label = format!(
                "run {run}/{} {} {} {:.0}/s",
                args.runs,
                config.topology(),
                config.durability.name(),
                config.rate
            );
            // A run the node cut off (e.g. a leader change) is kept in the report, left
            // out of the figures, and made again, at most twice.
            for attempt in 0..3 {
                let record = run_once(config, config.rate, run, &label)?;
                eprintln!(
                    "keel-perf e2e: {} {}",
                    config.topology(),
                    report::one_line(&record)
                );
                let complete = record.result.session_errors.is_empty();
                order.push(format!(
                    "{} {run}{}",
                    config.topology(),
                    if complete { "" } else { " (cut off)" }
                ));
                report.runs.push(record);
                if complete || attempt == 2 {
                    break;
                }
            }
        }
    }
    Ok(order)
}

/// The comparison of the two sets of runs: ratios of the medians, per-pair p99 ratios and
/// whether the aim is met (never when a run stayed cut off).
fn compared(
    args: &E2eArgs,
    command: String,
    machine: Machine,
    order: Vec<String>,
    single: Report,
    cluster: Report,
) -> Comparison {
    let median = |r: &Report, key: &str| r.summary.get(key).map_or(f64::NAN, |s| s.median);
    let ratios: std::collections::BTreeMap<String, f64> =
        ["accepted_p50_us", "accepted_p99_us", "accepted_p99_9_us"]
            .iter()
            .map(|key| {
                (
                    (*key).to_string(),
                    median(&cluster, key) / median(&single, key),
                )
            })
            .collect();
    // Pairs by run number, from the complete runs.
    let complete_p99 = |r: &Report, run: usize| {
        r.runs
            .iter()
            .rev()
            .find(|x| x.run == run && x.result.session_errors.is_empty())
            .map_or(f64::NAN, |x| x.result.accepted.p99_us)
    };
    let pair_p99_ratios = (1..=args.runs)
        .map(|run| complete_p99(&cluster, run) / complete_p99(&single, run))
        .collect();
    let complete = |r: &Report| {
        (1..=args.runs).all(|run| {
            r.runs
                .iter()
                .any(|x| x.run == run && x.result.session_errors.is_empty())
        })
    };
    let cut_off = !complete(&single) || !complete(&cluster);
    let p99_ratio = ratios.get("accepted_p99_us").copied().unwrap_or(f64::NAN);
    Comparison {
        kind: "e2e-cluster-vs-single".to_string(),
        command,
        machine,
        keel_binary: describe_keel(args),
        args: args.clone(),
        order,
        single,
        cluster,
        ratios,
        pair_p99_ratios,
        aim_p99_ratio: args.aim_p99_ratio,
        aim_met: !cut_off && p99_ratio <= args.aim_p99_ratio,
    }
}

/// Writes the comparison and the cluster's own report, prints the comparison.
fn write_compared(args: &E2eArgs, topology: &str, comparison: &Comparison) -> anyhow::Result<()> {
    let results = args.results.clone().unwrap_or_else(default_results);
    let (cluster_label, label) = match &args.label {
        Some(label) => (format!("{label}-{topology}"), label.clone()),
        None => (
            format!("e2e-{topology}-{}-{:.0}", args.durability.name(), args.rate),
            format!(
                "e2e-{topology}-vs-single-{}-{:.0}",
                args.durability.name(),
                args.rate
            ),
        ),
    };
    let (cluster_json, cluster_md) = report::write(&results, &cluster_label, &comparison.cluster)?;
    let (json, markdown) = report::write_comparison(&results, &label, comparison)?;
    println!("{}", report::comparison_markdown(comparison));
    let p99_ratio = comparison
        .ratios
        .get("accepted_p99_us")
        .copied()
        .unwrap_or(f64::NAN);
    eprintln!(
        "keel-perf e2e: replicated p99 / single p99 = {p99_ratio:.2} (aim ≤ {}): {}",
        args.aim_p99_ratio,
        if comparison.aim_met { "met" } else { "NOT met" }
    );
    eprintln!(
        "keel-perf e2e: wrote {}, {}, {} and {}",
        json.display(),
        markdown.display(),
        cluster_json.display(),
        cluster_md.display()
    );
    Ok(())
}

/// What a managed run started: one node (or the echo server), or a cluster and which of
/// its nodes leads.
enum Managed {
    Node(Node),
    Cluster { cluster: Cluster, leader: usize },
}

impl Managed {
    /// Starts a fresh cluster and finds its leader.
    fn start_cluster(
        args: &E2eArgs,
        options: &NodeOptions,
        nodes: usize,
    ) -> anyhow::Result<Managed> {
        let cluster = Cluster::start(&ClusterOptions {
            node: options.clone(),
            nodes,
            election_timeout_ms: args.election_timeout_ms,
            heartbeat_ms: args.heartbeat_ms,
        })?;
        let user = cluster.users.first().cloned().context("no users")?;
        // The first leader of a fresh cluster is sometimes replaced at once (a node that
        // started late campaigns): take a leader that is still the leader a second later.
        let mut leader = cluster.find_leader(&user, Duration::from_secs(60))?;
        for _ in 0..5 {
            std::thread::sleep(Duration::from_secs(1));
            let again = cluster.find_leader(&user, Duration::from_secs(60))?;
            if again == leader {
                break;
            }
            eprintln!(
                "keel-perf e2e: leader changed from node{} to node{} after the start",
                leader + 1,
                again + 1
            );
            leader = again;
        }
        Ok(Managed::Cluster { cluster, leader })
    }

    /// Where the sessions log in: the node, or the cluster's leader.
    fn endpoint(&self) -> Endpoint {
        match self {
            Managed::Node(node) => Endpoint {
                addr: node.addr,
                users: node.users.clone(),
            },
            Managed::Cluster { cluster, leader } => Endpoint {
                addr: cluster.endpoints[*leader],
                users: cluster.users.clone(),
            },
        }
    }

    /// The process serving order entry.
    fn pid(&self) -> Option<u32> {
        match self {
            Managed::Node(node) => node.pid(),
            Managed::Cluster { cluster, leader } => cluster.pid(*leader),
        }
    }

    /// A cluster's followers.
    fn follower_pids(&self) -> Vec<u32> {
        match self {
            Managed::Node(_) => Vec::new(),
            Managed::Cluster { cluster, leader } => cluster.other_pids(*leader),
        }
    }

    /// Start line(s), for the report.
    fn banner(&self) -> String {
        match self {
            Managed::Node(node) => node.banner.clone(),
            Managed::Cluster { cluster, leader } => {
                format!("leader node{}; {}", leader + 1, cluster.banner())
            }
        }
    }

    /// The last warnings and errors of every node's log (`; node log: ...`), or nothing.
    fn warnings(&self) -> String {
        let logs: Vec<(String, &std::path::Path)> = match self {
            Managed::Node(node) => vec![("node".to_string(), node.log.as_path())],
            Managed::Cluster { cluster, .. } => cluster
                .logs
                .iter()
                .enumerate()
                .map(|(i, log)| (format!("node{}", i + 1), log.as_path()))
                .collect(),
        };
        let mut out = String::new();
        for (name, log) in logs {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| {
                    (l.contains(" WARN ") || l.contains(" ERROR ") || l.contains("panicked"))
                        && !l.contains("cannot connect to peer")
                })
                .collect();
            for line in lines.iter().skip(lines.len().saturating_sub(5)) {
                out.push_str(&format!("; {name} log: {line}"));
            }
        }
        out
    }

    fn stop(self) -> anyhow::Result<()> {
        match self {
            Managed::Node(node) => node.stop(),
            Managed::Cluster { cluster, .. } => cluster.stop(),
        }
    }
}

/// The options of the node(s) a run starts.
fn node_options(args: &E2eArgs) -> anyhow::Result<NodeOptions> {
    Ok(NodeOptions {
        keel: match &args.keel {
            Some(path) => path.clone(),
            None => default_keel()?,
        },
        durability: args.durability.name().to_string(),
        users: args.sessions,
        matching_core: args.matching_core,
        temp_parent: args.tmp.clone(),
        keep: args.keep,
    })
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
    describe_binary(&path)
}

/// A binary's path, size and modification time.
pub fn describe_binary(path: &std::path::Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
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

/// The `keel` binary next to this executable (where `cargo build` puts both).
pub fn default_keel() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate this executable")?;
    Ok(exe.with_file_name("keel"))
}

/// The folder results go to by default: `perf/results` of the workspace this tool was built
/// in, or `./perf/results` if that is gone.
pub fn default_results() -> PathBuf {
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
    check_args(&args)?;
    if args.compare_single {
        return compare(args);
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
        run_sweeps(&args, &mut report)?;
    } else {
        for run in 1..=args.runs {
            let label = format!(
                "run {run}/{} {} {} {:.0}/s",
                args.runs,
                args.topology(),
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
    let label = args.label.clone().unwrap_or_else(|| default_label(&args));
    let (json, markdown) = report::write(&results, &label, &report)?;
    println!("{}", report::markdown(&report));
    eprintln!(
        "keel-perf e2e: wrote {} and {}",
        json.display(),
        markdown.display()
    );
    Ok(())
}

/// Refuses option combinations that cannot run.
fn check_args(args: &E2eArgs) -> anyhow::Result<()> {
    if args.sessions == 0 || args.rate <= 0.0 || args.runs == 0 {
        bail!("--sessions, --rate and --runs must be positive");
    }
    if let Some(nodes) = args.cluster {
        if nodes < 3 || nodes % 2 == 0 {
            bail!("--cluster needs an odd number of nodes, at least 3");
        }
        if args.server.is_some() || args.echo {
            bail!("--cluster starts its own nodes: it cannot be combined with --server or --echo");
        }
        if args.compare_single && args.sweep {
            bail!("--compare-single compares fixed-rate runs; it cannot be combined with --sweep");
        }
    }
    Ok(())
}

/// `--sweep`: `--runs` sweeps into `report`, and the median highest rate sustained.
fn run_sweeps(args: &E2eArgs, report: &mut Report) -> anyhow::Result<()> {
    for sweep in 1..=args.runs {
        let result = run_sweep(args, sweep)?;
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
    Ok(())
}

/// The result files' name without `--label`: topology, durability and rate (or sweep).
fn default_label(args: &E2eArgs) -> String {
    if let Some(nodes) = args.cluster {
        if args.sweep {
            format!("e2e-cluster{nodes}-sweep-{}", args.durability.name())
        } else {
            format!(
                "e2e-cluster{nodes}-{}-{:.0}",
                args.durability.name(),
                args.rate
            )
        }
    } else if args.sweep {
        if args.echo {
            "e2e-sweep-echo".to_string()
        } else {
            format!("e2e-sweep-{}", args.durability.name())
        }
    } else if args.echo {
        format!("e2e-echo-{:.0}", args.rate)
    } else {
        format!("e2e-{}-{:.0}", args.durability.name(), args.rate)
    }
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
    let bar = report::progress_bar(0, "{prefix:.bold} [{bar:30}] {pos:>6}/{len} ms {msg}", None);
    bar.set_prefix(label.to_string());
    bar
}

/// What a run loads: an external `--server` (with `--user`s), or a node, the echo server
/// or a cluster started for the run; its endpoint, stock and price scale.
fn target(args: &E2eArgs) -> anyhow::Result<(Option<Managed>, Endpoint, Stock, u32)> {
    Ok(match args.server {
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
            let options = node_options(args)?;
            let managed = match args.cluster {
                Some(nodes) => Managed::start_cluster(args, &options, nodes)?,
                None if args.echo => Managed::Node(Node::start_echo(&options)?),
                None => Managed::Node(Node::start(&options)?),
            };
            let endpoint = managed.endpoint();
            let stock = Stock::new(server::SYMBOL).context("symbol")?;
            (Some(managed), endpoint, stock, server::PRICE_SCALE)
        }
    })
}

/// One run at `rate` on a fresh node (or the given server).
fn run_once(args: &E2eArgs, rate: f64, run: usize, label: &str) -> anyhow::Result<RunRecord> {
    let sweep = args.sweep;
    let duration = args.duration.unwrap_or(if sweep { 5.0 } else { 10.0 });
    let warmup = args.warmup.unwrap_or(if sweep { 1.0 } else { 2.0 });
    let (server, endpoint, stock, price_scale) = target(args)?;
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
        server_pid: server.as_ref().and_then(Managed::pid),
        follower_pids: server
            .as_ref()
            .map(Managed::follower_pids)
            .unwrap_or_default(),
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
    let cut_off = result
        .as_ref()
        .map_or(true, |r| !r.session_errors.is_empty());
    let banner = server.as_ref().map(|s| {
        let mut banner = s.banner();
        if cut_off {
            // Why the node(s) ended the sessions: their warnings, while the logs exist.
            banner.push_str(&s.warnings());
        }
        banner
    });
    if let Some(server) = server {
        server.stop()?;
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
    // Up from the start rate until a step fails; if the very first fails, down until one
    // passes (or the rate is below 1,000/s).
    loop {
        if sweep_step(args, sweep, rate, &mut steps)? {
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
    if let (Some(low), Some((high, _))) = (good, bad.clone()) {
        good = Some(refine(args, sweep, low, high, &mut bad, &mut steps)?);
    }
    Ok(Sweep {
        sweep,
        max_sustained_rate: good.unwrap_or(0.0),
        first_failing_rate: bad.as_ref().map(|b| b.0),
        failing_verdict: bad.map(|b| b.1),
        steps,
    })
}

/// Narrows the highest sustained rate between `low` (sustained) and `high` (failed) by
/// geometric bisection, `--sweep-refine` steps at most; returns the highest sustained.
fn refine(
    args: &E2eArgs,
    sweep: usize,
    mut low: f64,
    mut high: f64,
    bad: &mut Option<(f64, String)>,
    steps: &mut Vec<RunRecord>,
) -> anyhow::Result<f64> {
    for _ in 0..args.sweep_refine {
        if high / low < 1.03 {
            break;
        }
        let mid = ((low * high).sqrt() / 1000.0).round() * 1000.0;
        if sweep_step(args, sweep, mid, steps)? {
            low = mid;
        } else {
            high = mid;
            let verdict = steps.last().map(|s| s.verdict.clone()).unwrap_or_default();
            *bad = Some((mid, verdict));
        }
    }
    Ok(low)
}

/// One step of a sweep at `rate` (made again once if the node cut it off); whether it
/// was sustained.
fn sweep_step(
    args: &E2eArgs,
    sweep: usize,
    rate: f64,
    steps: &mut Vec<RunRecord>,
) -> anyhow::Result<bool> {
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
}
