//! `keel-perf failover`: how long order entry is down when the leader of a 3-node cluster
//! is killed, as a client sees it, and whether anything acknowledged was lost.
//!
//! One cluster ([`crate::cluster`]) for all trials. Each trial:
//!
//! 1. a client (the gateway's client library, given every node's order-entry address)
//!    logs in as the trial's own user (so each trial has its own session stream) and sends
//!    1-share buy limit orders, which never cross, at a steady paced rate, each with its
//!    own token;
//! 2. at a moment drawn uniformly from `--kill-after-min-ms..--kill-after-max-ms` after the
//!    first order, the node the client is logged into (the leader) gets SIGKILL;
//! 3. the client notices the connection is gone, tries the endpoints (the dead one
//!    refuses, followers answer Login Rejected `S` until one of them is elected) and
//!    resumes its session on the new leader. Orders due while it is disconnected are not
//!    sent (the library refuses them); the same order is tried again at the next slot;
//! 4. **failover time = from the kill (the instant just before `kill(2)`) to the first
//!    Order Accepted received for an order whose Enter Order was sent after the kill** —
//!    necessarily answered by the new leader. Also recorded, to show where the time goes:
//!    kill → Disconnected seen; from the new leader's own log (its UTC time stamps against
//!    this machine's real-time clock at the kill): kill → "elected leader", kill → "order
//!    entry open", kill → the trial user "logged in" (after the argon2 password check);
//!    kill → Login Accepted as the client sees it, and kill → the first Order Accepted of
//!    any order (one sent before the kill and answered only after it counts here, e.g.
//!    resent by the new leader on resume);
//! 5. sending goes on for `--after-ms`, then the client logs out; the killed node is
//!    started again on its data directory and the trial waits until all three nodes'
//!    `keel journal roots` agree (the restarted node caught up), then `--settle-ms`;
//! 6. loss check: a fresh client replays the trial user's stream from sequence number 1;
//!    every token the live client saw accepted must be accepted exactly once there (and
//!    no token twice in either stream). At the end every trial's stream is replayed and
//!    checked again, so a later failover losing an earlier trial's orders shows too.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::ProgressBar;
use keel_client::{Client, ClientEvent, ClientOptions, OrderBuilder};
use keel_protocol::ouch::{OutboundMessage, Price};
use keel_protocol::OrderToken;
use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, ClusterOptions};
use crate::e2e::{self, DurabilityArg};
use crate::flow::{Rng, MID_TICKS};
use crate::report::{self, fig, header_lines, median, sorted_finite, Machine};
use crate::server::{self, NodeOptions};
use crate::sys;

/// Nodes in the cluster.
const NODES: usize = 3;
/// Nanoseconds in a day (log time stamps are compared as times of day).
const NS_PER_DAY: i128 = 86_400_000_000_000;

/// `keel-perf failover` options.
#[derive(Clone, Debug, Default, clap::Args, Serialize, Deserialize)]
#[serde(default)]
pub struct FailoverArgs {
    /// Trials; each kills the leader once.
    #[arg(long, default_value_t = 20)]
    pub trials: usize,
    /// Orders per second the client sends, steadily paced.
    #[arg(long, default_value_t = 500.0)]
    #[serde(deserialize_with = "crate::json::f64")]
    pub rate: f64,
    /// Durability of every node.
    #[arg(long, value_enum, default_value = "fsync")]
    pub durability: DurabilityArg,
    /// Earliest kill, in ms after the trial's first order.
    #[arg(long, default_value_t = 1_000)]
    pub kill_after_min_ms: u64,
    /// Latest kill, in ms after the trial's first order.
    #[arg(long, default_value_t = 2_000)]
    pub kill_after_max_ms: u64,
    /// Keep sending this long after the first order accepted by the new leader.
    #[arg(long, default_value_t = 500)]
    pub after_ms: u64,
    /// A trial fails if no order sent after the kill is accepted within this many ms.
    #[arg(long, default_value_t = 10_000)]
    pub give_up_ms: u64,
    /// After sending stops, wait at most this long for outstanding answers.
    #[arg(long, default_value_t = 3_000)]
    pub drain_ms: u64,
    /// Wait at most this long for the restarted node to catch up (equal journal roots).
    #[arg(long, default_value_t = 60)]
    pub converge_timeout_s: u64,
    /// Pause after the replicas agree, before the next trial.
    #[arg(long, default_value_t = 1_000)]
    pub settle_ms: u64,
    /// Client reconnect backoff: pause after the first pass over the endpoints failed (the
    /// library's default is 100 ms).
    #[arg(long, default_value_t = 10)]
    pub backoff_initial_ms: u64,
    /// Client reconnect backoff: the pause doubles up to this (the library's default is
    /// 2,000 ms).
    #[arg(long, default_value_t = 100)]
    pub backoff_max_ms: u64,
    /// `cluster.election_timeout_ms` (default: the node's, 150).
    #[arg(long)]
    pub election_timeout_ms: Option<u64>,
    /// `cluster.heartbeat_ms` (default: the node's, 30).
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// Seed of the kill moments.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The `keel` binary (default: `keel` next to this executable).
    #[arg(long)]
    pub keel: Option<PathBuf>,
    /// Parent directory for the cluster's temporary directory.
    #[arg(long)]
    pub tmp: Option<PathBuf>,
    /// Keep the cluster's directory (configurations, data, logs).
    #[arg(long)]
    pub keep: bool,
    /// Results folder; default `perf/results` in the workspace.
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// Name of the result files.
    #[arg(long, default_value = "failover")]
    pub label: String,
    /// Aim for the median failover time, ms (issue #5: 500).
    #[arg(long, default_value_t = 500.0)]
    #[serde(deserialize_with = "crate::json::f64")]
    pub aim_p50_ms: f64,
    /// Aim for the largest failover time, ms (issue #5: 1,000).
    #[arg(long, default_value_t = 1_000.0)]
    #[serde(deserialize_with = "crate::json::f64")]
    pub aim_max_ms: f64,
}

/// One trial.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Trial {
    /// 1-based trial number.
    pub trial: usize,
    /// The user (and so the session stream) of this trial.
    pub user: String,
    /// Node id killed (the leader the client was logged into).
    pub killed_node: usize,
    /// Node id of the new leader (the endpoint the client resumed on).
    pub new_leader_node: Option<usize>,
    /// When the kill came, ms after the trial's first order.
    #[serde(deserialize_with = "crate::json::f64")]
    pub kill_at_ms: f64,
    /// Kill → the client saw the connection lost.
    pub disconnected_ms: Option<f64>,
    /// Kill → the new leader logged "elected leader" (its log's time stamp against this
    /// machine's real-time clock at the kill).
    pub elected_ms: Option<f64>,
    /// Kill → the new leader logged "order entry open" (its gateway listens).
    pub open_ms: Option<f64>,
    /// Kill → the new leader logged the trial user "logged in" (password checked).
    pub logged_in_ms: Option<f64>,
    /// Kill → the new leader accepted the client's login (session resumed), as the client
    /// saw it.
    pub reconnected_ms: Option<f64>,
    /// Kill → the first Order Accepted received, whichever order it answers.
    pub first_accepted_any_ms: Option<f64>,
    /// **Kill → the first Order Accepted for an order sent after the kill**: the failover
    /// time.
    pub failover_ms: Option<f64>,
    /// When that order was sent, ms after the kill.
    pub failover_order_sent_ms: Option<f64>,
    /// Order → Accepted before the kill: median and largest, ms (the steady state).
    #[serde(deserialize_with = "crate::json::f64")]
    pub steady_p50_ms: f64,
    /// Largest order → Accepted before the kill, ms.
    #[serde(deserialize_with = "crate::json::f64")]
    pub steady_max_ms: f64,
    /// Enter Orders sent (written to the connection).
    pub orders_sent: usize,
    /// Of which sent after the kill.
    pub orders_sent_after_kill: usize,
    /// Orders the live client saw accepted.
    pub acknowledged: usize,
    /// Orders refused by the library while disconnected (tried again at the next slot).
    pub refused_while_disconnected: usize,
    /// Orders sent before the kill and never answered (in flight when the leader died and
    /// not committed: allowed, they were never acknowledged).
    pub unanswered_sent_before_kill: usize,
    /// Orders sent after the kill and never answered (written to the dying connection
    /// before the client noticed).
    pub unanswered_sent_after_kill: usize,
    /// Order Rejected received.
    pub rejected: usize,
    /// Connection losses before the kill (an unplanned leader change: the trial is
    /// disturbed).
    pub disconnects_before_kill: usize,
    /// Sequence gaps reported on resume (messages the client never got).
    pub sequence_gaps: Vec<String>,
    /// Restart of the killed node → all three journal roots equal, ms.
    pub converge_ms: Option<f64>,
    /// The common `keel journal roots` line.
    pub roots: Option<String>,
    /// Accepted tokens in the replay right after the trial.
    pub replayed_accepted: usize,
    /// Acknowledged orders not accepted exactly once in the replay after the trial.
    pub lost_after_trial: Vec<String>,
    /// Tokens accepted more than once (live stream or replay).
    pub duplicated: Vec<String>,
    /// Acknowledged orders not accepted exactly once in the replay at the end of all
    /// trials.
    pub lost_at_end: Vec<String>,
    /// Whether the end-of-run replay was made for this trial.
    pub checked_at_end: bool,
    /// Why the trial failed, if it did.
    pub error: Option<String>,
    /// The acknowledged tokens (for the final check; not written out).
    #[serde(skip)]
    pub acknowledged_tokens: Vec<String>,
}

impl Trial {
    /// Measured, and nothing acknowledged lost or duplicated.
    pub fn ok(&self) -> bool {
        self.error.is_none()
            && self.failover_ms.is_some()
            && self.lost_after_trial.is_empty()
            && self.duplicated.is_empty()
            && self.lost_at_end.is_empty()
            && self.sequence_gaps.is_empty()
    }
}

/// Figures over the trials.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Summary {
    /// Trials run.
    pub trials: usize,
    /// Trials with a failover time.
    pub measured: usize,
    /// Trials that failed (no failover time, an error, or a loss).
    pub failed: usize,
    /// Median failover time, ms.
    #[serde(deserialize_with = "crate::json::f64")]
    pub failover_p50_ms: f64,
    /// Largest failover time, ms (infinite if a trial never recovered).
    #[serde(deserialize_with = "crate::json::f64")]
    pub failover_max_ms: f64,
    /// Smallest failover time, ms.
    #[serde(deserialize_with = "crate::json::f64")]
    pub failover_min_ms: f64,
    /// Median kill → Disconnected, ms.
    #[serde(deserialize_with = "crate::json::f64")]
    pub disconnected_p50_ms: f64,
    /// Median kill → new leader elected (its log), ms.
    #[serde(deserialize_with = "crate::json::f64")]
    pub elected_p50_ms: f64,
    /// Largest kill → new leader elected, ms.
    #[serde(deserialize_with = "crate::json::f64")]
    pub elected_max_ms: f64,
    /// Median kill → the new leader's gateway open (its log), ms.
    #[serde(deserialize_with = "crate::json::f64")]
    pub open_p50_ms: f64,
    /// Median kill → the user logged in (the new leader's log), ms.
    #[serde(deserialize_with = "crate::json::f64")]
    pub logged_in_p50_ms: f64,
    /// Median kill → login accepted by the new leader, as the client saw it, ms.
    #[serde(deserialize_with = "crate::json::f64")]
    pub reconnected_p50_ms: f64,
    /// Median restart → replicas agree, ms.
    #[serde(deserialize_with = "crate::json::f64")]
    pub converge_p50_ms: f64,
    /// Orders acknowledged over all trials.
    pub acknowledged: usize,
    /// Acknowledged orders lost or duplicated, over all trials.
    pub lost_or_duplicated: usize,
    /// Whether every trial found every acknowledged order exactly once.
    pub nothing_lost: bool,
    /// Median ≤ the aim.
    pub p50_aim_met: bool,
    /// Largest ≤ the aim.
    pub max_aim_met: bool,
}

/// The output file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FailoverReport {
    /// `failover`.
    pub kind: String,
    /// The command line.
    pub command: String,
    /// Machine, commit, date.
    pub machine: Machine,
    /// Options.
    pub args: FailoverArgs,
    /// The `keel` binary used.
    pub keel_binary: Option<String>,
    /// The client's reconnect settings.
    pub client: String,
    /// One argon2 password verification on this machine (median of 3), ms: the new leader
    /// does one before it accepts the client's login.
    #[serde(deserialize_with = "crate::json::f64")]
    pub argon2_verify_ms: f64,
    /// Every trial.
    pub trials: Vec<Trial>,
    /// Figures over the trials.
    pub summary: Summary,
    /// Why the run stopped early, if it did.
    pub aborted: Option<String>,
}

/// Runs `keel-perf failover`.
pub fn main(args: &FailoverArgs) -> anyhow::Result<()> {
    check_args(args)?;
    let machine = Machine::detect();
    eprintln!("keel-perf failover: {}", machine.line());
    let keel = match &args.keel {
        Some(path) => path.clone(),
        None => e2e::default_keel()?,
    };
    let options = client_options(args);
    let mut report = FailoverReport {
        kind: "failover".to_string(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine,
        args: args.clone(),
        keel_binary: e2e::describe_binary(&keel),
        client: format!(
            "keel_client::Client, endpoints = all three nodes in order; reconnect backoff {} ms doubling to {} ms between passes over the endpoints; server timeout {:?}",
            args.backoff_initial_ms, args.backoff_max_ms, options.server_timeout
        ),
        argon2_verify_ms: argon2_verify_ms()?,
        trials: Vec::new(),
        summary: Summary::default(),
        aborted: None,
    };
    let mut cluster = start_cluster(args, keel)?;
    // A fresh cluster's first leader is sometimes replaced at once; let it settle.
    std::thread::sleep(Duration::from_millis(args.settle_ms));
    run_trials(args, &mut cluster, &options, &mut report);
    if report.aborted.is_none() {
        eprintln!("keel-perf failover: replaying every trial's stream again");
        check_replays(&cluster, &options, &mut report.trials);
    }
    // Write the report even if a node does not stop cleanly; say so afterwards.
    let stopped = cluster.stop();
    report.summary = summarize(args, &report.trials);
    let dir = args.results.clone().unwrap_or_else(e2e::default_results);
    report::publish(
        "failover",
        &dir,
        &args.label,
        &report,
        &report.machine,
        &markdown(&report),
    )?;
    stopped
}

/// Refuses options the drill cannot run with.
fn check_args(args: &FailoverArgs) -> anyhow::Result<()> {
    if args.trials == 0 || args.trials > 999 {
        bail!("--trials must be 1 to 999 (one user per trial)");
    }
    if args.rate <= 0.0 || args.rate > 100_000.0 {
        bail!("--rate must be positive (and at most 100,000 orders/s)");
    }
    if args.kill_after_max_ms < args.kill_after_min_ms {
        bail!("--kill-after-max-ms must not be below --kill-after-min-ms");
    }
    Ok(())
}

/// Starts the 3-node cluster the trials run against (one user per trial).
fn start_cluster(args: &FailoverArgs, keel: PathBuf) -> anyhow::Result<Cluster> {
    let node = NodeOptions {
        keel,
        durability: match args.durability {
            DurabilityArg::Async => "async",
            DurabilityArg::Fsync => "fsync",
        }
        .to_string(),
        users: args.trials,
        matching_core: None,
        temp_parent: args.tmp.clone(),
        keep: args.keep,
    };
    let cluster = Cluster::start(&ClusterOptions {
        node,
        nodes: NODES,
        election_timeout_ms: args.election_timeout_ms,
        heartbeat_ms: args.heartbeat_ms,
    })?;
    eprintln!(
        "keel-perf failover: {NODES} nodes on {} (data in {})",
        cluster
            .endpoints
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        cluster.root.display()
    );
    Ok(cluster)
}

/// Runs the `--trials` trials into `report.trials`, each killing the leader at a random
/// moment; stops early (setting `report.aborted`) if a killed node cannot be brought back.
fn run_trials(
    args: &FailoverArgs,
    cluster: &mut Cluster,
    options: &ClientOptions,
    report: &mut FailoverReport,
) {
    let bar = progress_bar(args.trials);
    let mut rng = Rng::new(args.seed);
    for number in 1..=args.trials {
        bar.set_message(format!("trial {number}: sending"));
        let mut trial = Trial {
            trial: number,
            user: format!("perf{}", number - 1),
            ..Trial::default()
        };
        let span = args.kill_after_max_ms - args.kill_after_min_ms;
        let kill_after =
            Duration::from_millis(args.kill_after_min_ms + rng.below(span.saturating_add(1)));
        let outcome = run_trial(args, cluster, options, kill_after, &mut trial, &bar);
        if let Err(error) = &outcome {
            trial.error = Some(format!("{error:#}"));
        }
        bar.suspend(|| eprintln!("keel-perf failover: {}", one_line(&trial)));
        bar.set_message(match trial.failover_ms {
            Some(ms) => format!("last failover {ms:.0} ms"),
            None => "last trial failed".to_string(),
        });
        bar.inc(1);
        report.trials.push(trial);
        if outcome.is_err() {
            // Bring back any node still down; without all three there is nothing to test.
            let down: Vec<usize> = (0..NODES).filter(|&i| cluster.pid(i).is_none()).collect();
            if let Some(error) = down.into_iter().find_map(|i| cluster.restart(i).err()) {
                report.aborted = Some(format!("after trial {number}: {error:#}"));
                break;
            }
        }
    }
    bar.finish_and_clear();
}

/// Replays every trial's stream once more at the end: whatever it acknowledged must still
/// be there exactly once.
fn check_replays(cluster: &Cluster, options: &ClientOptions, trials: &mut [Trial]) {
    for trial in trials {
        match replay_check(cluster, options, trial) {
            Ok(lost) => {
                trial.lost_at_end = lost;
                trial.checked_at_end = true;
            }
            Err(error) => {
                trial.lost_at_end = vec![format!("(replay failed: {error:#})")];
            }
        }
    }
}

/// The client: reconnect for as long as a trial may take, with a short backoff so that
/// the figure measures the cluster rather than the client's pauses.
fn client_options(args: &FailoverArgs) -> ClientOptions {
    ClientOptions {
        connect_attempts: 400,
        reconnect_attempts: 400,
        backoff_initial: Duration::from_millis(args.backoff_initial_ms.max(1)),
        backoff_max: Duration::from_millis(args.backoff_max_ms.max(args.backoff_initial_ms).max(1)),
        server_timeout: Duration::from_secs(2),
        ..ClientOptions::default()
    }
}

/// One order sent.
struct SentOrder {
    sent: Instant,
    after_kill: bool,
    accepted: Option<Instant>,
    rejected: bool,
}

/// What the event handler tracks during a trial.
struct Live {
    prefix: String,
    orders: Vec<SentOrder>,
    accepted: BTreeMap<String, u32>,
    endpoint: Option<SocketAddr>,
    killed: Option<(Instant, SocketAddr)>,
    failover: Option<Instant>,
    gave_up: Option<String>,
    /// The kill: wall-clock ns (to find it in the nodes' logs) and the node's index.
    kill_real_ns: u64,
    killed_index: Option<usize>,
}

impl Live {
    fn index(&self, token: &str) -> Option<usize> {
        token.strip_prefix(&self.prefix)?.parse().ok()
    }

    fn since_kill(&self, at: Instant) -> Option<f64> {
        self.killed
            .map(|(k, _)| at.saturating_duration_since(k).as_secs_f64() * 1e3)
    }

    fn handle(&mut self, cluster: &Cluster, event: ClientEvent, trial: &mut Trial) {
        let now = Instant::now();
        match event {
            ClientEvent::Message { message, .. } => match message {
                OutboundMessage::OrderAccepted(accepted) => {
                    let token = accepted.order_token.as_str().trim().to_string();
                    *self.accepted.entry(token.clone()).or_default() += 1;
                    let Some(index) = self.index(&token) else {
                        return;
                    };
                    let Some(order) = self.orders.get_mut(index) else {
                        return;
                    };
                    if order.accepted.is_some() {
                        return;
                    }
                    order.accepted = Some(now);
                    let after_kill = order.after_kill;
                    let sent = order.sent;
                    if self.killed.is_some() {
                        if trial.first_accepted_any_ms.is_none() {
                            trial.first_accepted_any_ms = self.since_kill(now);
                        }
                        let from_new_leader = match (self.endpoint, self.killed) {
                            (Some(now_at), Some((_, dead))) => now_at != dead,
                            _ => false,
                        };
                        if after_kill && from_new_leader && self.failover.is_none() {
                            self.failover = Some(now);
                            trial.failover_ms = self.since_kill(now);
                            trial.failover_order_sent_ms = self.since_kill(sent);
                        }
                    }
                }
                OutboundMessage::OrderRejected(rejected) => {
                    trial.rejected += 1;
                    let token = rejected.order_token.as_str().trim().to_string();
                    if let Some(order) = self.index(&token).and_then(|i| self.orders.get_mut(i)) {
                        order.rejected = true;
                    }
                }
                _ => {}
            },
            ClientEvent::Disconnected { .. } => {
                if self.killed.is_none() {
                    trial.disconnects_before_kill += 1;
                } else if trial.disconnected_ms.is_none() {
                    trial.disconnected_ms = self.since_kill(now);
                }
            }
            ClientEvent::Reconnected { endpoint, .. } => {
                self.endpoint = Some(endpoint);
                if self.killed.is_some() && trial.reconnected_ms.is_none() {
                    trial.reconnected_ms = self.since_kill(now);
                    trial.new_leader_node = cluster.index_of(endpoint).map(|i| i + 1);
                }
            }
            ClientEvent::SequenceGap { expected, next } => {
                trial
                    .sequence_gaps
                    .push(format!("expected {expected}, server resumed at {next}"));
            }
            ClientEvent::GaveUp { reason } => self.gave_up = Some(reason),
            _ => {}
        }
    }
}

/// Sends, kills, measures, restarts and checks one trial.
fn run_trial(
    args: &FailoverArgs,
    cluster: &mut Cluster,
    options: &ClientOptions,
    kill_after: Duration,
    trial: &mut Trial,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let client = Client::connect(
        &cluster.endpoints,
        &trial.user,
        server::PASSWORD,
        options.clone(),
    )
    .context("the client could not log in to any node")?;
    let mut live = Live {
        prefix: format!("F{:03}", trial.trial),
        orders: Vec::new(),
        accepted: BTreeMap::new(),
        endpoint: client.endpoint(),
        killed: None,
        failover: None,
        gave_up: None,
        kill_real_ns: 0,
        killed_index: None,
    };
    let result = send_through_the_kill(args, cluster, &client, &mut live, kill_after, trial, bar)?;
    // Log out; late answers still count.
    let _ = client.logout();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match client.next_event(Duration::from_millis(100)) {
            Some(ClientEvent::LoggedOut | ClientEvent::GaveUp { .. }) => break,
            Some(event) => live.handle(cluster, event, trial),
            None if client.is_finished() => break,
            None => {}
        }
    }
    drop(client);
    tally(&live, trial);
    leader_log_times(cluster, live.kill_real_ns, trial);
    // Bring the killed node back and wait until it caught up.
    if let Some(index) = live.killed_index {
        bar.set_message(format!(
            "trial {}: restarting node{}",
            trial.trial,
            index + 1
        ));
        cluster.restart(index)?;
        let restarted = Instant::now();
        let roots = cluster.wait_converged(Duration::from_secs(args.converge_timeout_s))?;
        trial.converge_ms = Some(restarted.elapsed().as_secs_f64() * 1e3);
        trial.roots = Some(roots);
    }
    result?;
    bar.set_message(format!("trial {}: replaying", trial.trial));
    trial.lost_after_trial = replay_check(cluster, options, trial)?;
    std::thread::sleep(Duration::from_millis(args.settle_ms));
    Ok(())
}

/// What the trial loop does next.
enum Step {
    /// Carry on.
    Go,
    /// Start the next turn of the loop at once.
    Again,
    /// The trial's sending is over, with this outcome.
    Stop(anyhow::Result<()>),
}

/// Sends paced orders, kills the leader after `kill_after` and goes on until the orders
/// sent after the recovery are answered. The outer error ends the trial at once (as a
/// failed kill or order does); the inner one is the trial's outcome.
fn send_through_the_kill(
    args: &FailoverArgs,
    cluster: &mut Cluster,
    client: &Client,
    live: &mut Live,
    kill_after: Duration,
    trial: &mut Trial,
    bar: &ProgressBar,
) -> anyhow::Result<anyhow::Result<()>> {
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let start = Instant::now();
    let kill_at = start + kill_after;
    let mut next_send = start;
    let mut stop_sending: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if live.killed.is_none() && now >= kill_at && client.is_connected() {
            match kill_leader(cluster, client, live, trial, bar, start)? {
                Step::Go => {}
                Step::Again => continue,
                Step::Stop(outcome) => return Ok(outcome),
            }
        }
        let sending = stop_sending.is_none_or(|stop| now < stop);
        if sending && now >= next_send {
            send_order(client, live, trial)?;
            next_send += period;
            if next_send + period < now {
                // Behind (a stall): go on from now rather than burst.
                next_send = now + period;
            }
        }
        if let Some(failover) = live.failover {
            if stop_sending.is_none() {
                stop_sending = Some(failover + Duration::from_millis(args.after_ms));
                bar.set_message(format!("trial {}: recovered", trial.trial));
            }
        }
        if let Step::Stop(outcome) = trial_step(args, live, now, stop_sending, kill_at) {
            return Ok(outcome);
        }
        let mut wake = if sending {
            next_send
        } else {
            now + Duration::from_millis(10)
        };
        if live.killed.is_none() {
            wake = wake.min(kill_at);
        }
        if let Some(event) = client.next_event(wake.saturating_duration_since(Instant::now())) {
            live.handle(cluster, event, trial);
            while let Some(event) = client.try_next_event() {
                live.handle(cluster, event, trial);
            }
        }
    }
}

/// The kill: the node the client is logged into right now (the leader). If the client is
/// between connections (an unplanned leader change), wait for it.
fn kill_leader(
    cluster: &mut Cluster,
    client: &Client,
    live: &mut Live,
    trial: &mut Trial,
    bar: &ProgressBar,
    start: Instant,
) -> anyhow::Result<Step> {
    let Some(endpoint) = client.endpoint() else {
        return Ok(Step::Again);
    };
    let Some(index) = cluster.index_of(endpoint) else {
        return Ok(Step::Stop(Err(anyhow::anyhow!(
            "connected to {endpoint}, which is not a node"
        ))));
    };
    let real = sys::real_ns();
    let killed = cluster.kill9(index)?;
    live.kill_real_ns = real;
    live.killed = Some((killed, endpoint));
    live.killed_index = Some(index);
    trial.killed_node = index + 1;
    trial.kill_at_ms = killed.saturating_duration_since(start).as_secs_f64() * 1e3;
    bar.set_message(format!("trial {}: node{} killed", trial.trial, index + 1));
    Ok(Step::Go)
}

/// Sends the next order: 1 share, bids only, below the mid, so nothing ever crosses.
fn send_order(client: &Client, live: &mut Live, trial: &mut Trial) -> anyhow::Result<()> {
    let token = format!("{}{:07}", live.prefix, live.orders.len());
    let ticks = MID_TICKS - 100 - (live.orders.len() % 50) as u32;
    let order = OrderBuilder::buy(server::SYMBOL, 1, Price(ticks * server::PRICE_SCALE))?
        .token(OrderToken::new(&token)?);
    let sent = Instant::now();
    match client.submit(&order) {
        Ok(_) => live.orders.push(SentOrder {
            sent,
            after_kill: live.killed.is_some(),
            accepted: None,
            rejected: false,
        }),
        Err(_) => trial.refused_while_disconnected += 1,
    }
    Ok(())
}

/// Whether the trial's sending is over at `now`: recovered and drained, or given up.
fn trial_step(
    args: &FailoverArgs,
    live: &mut Live,
    now: Instant,
    stop_sending: Option<Instant>,
    kill_at: Instant,
) -> Step {
    let give_up = Duration::from_millis(args.give_up_ms);
    if let (Some(stop), Some(recovered)) = (stop_sending, live.failover) {
        // Orders sent since the recovery are all answered (or the drain ran out).
        let outstanding = live
            .orders
            .iter()
            .any(|o| o.accepted.is_none() && !o.rejected && o.sent >= recovered);
        if now >= stop && (!outstanding || now >= stop + Duration::from_millis(args.drain_ms)) {
            return Step::Stop(Ok(()));
        }
    }
    if let Some((killed, _)) = live.killed {
        if live.failover.is_none() && now >= killed + give_up {
            return Step::Stop(Err(anyhow::anyhow!(
                "no order sent after the kill was accepted within {give_up:?}"
            )));
        }
    } else if now >= kill_at + give_up {
        return Step::Stop(Err(anyhow::anyhow!(
            "the client stayed disconnected before the kill"
        )));
    }
    if let Some(reason) = live.gave_up.take() {
        return Step::Stop(Err(anyhow::anyhow!("the client gave up: {reason}")));
    }
    Step::Go
}

/// When the new leader logged its election, opened order entry and logged the user in,
/// ms after the kill (from its log).
fn leader_log_times(cluster: &Cluster, kill_real_ns: u64, trial: &mut Trial) {
    let Some(index) = trial.new_leader_node.map(|n| n - 1) else {
        return;
    };
    let Ok(log) = std::fs::read_to_string(&cluster.logs[index]) else {
        return;
    };
    let user = format!("user={} ", trial.user);
    trial.elected_ms = logged_after(&log, kill_real_ns, |l| l.contains("elected leader"));
    trial.open_ms = logged_after(&log, kill_real_ns, |l| {
        l.contains("leader: order entry open")
    });
    trial.logged_in_ms = logged_after(&log, kill_real_ns, |l| {
        l.contains(" logged in ") && l.contains(&user)
    });
}

/// Counts what the trial's live stream showed.
fn tally(live: &Live, trial: &mut Trial) {
    trial.orders_sent = live.orders.len();
    trial.orders_sent_after_kill = live.orders.iter().filter(|o| o.after_kill).count();
    trial.acknowledged_tokens = live.accepted.keys().cloned().collect();
    trial.acknowledged = trial.acknowledged_tokens.len();
    trial.duplicated = live
        .accepted
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(t, n)| format!("{t} ×{n} live"))
        .collect();
    let unanswered = |after: bool| {
        live.orders
            .iter()
            .filter(|o| o.after_kill == after && o.accepted.is_none() && !o.rejected)
            .count()
    };
    trial.unanswered_sent_before_kill = unanswered(false);
    trial.unanswered_sent_after_kill = unanswered(true);
    // Only answers received before the kill describe the steady state.
    let before_kill = |at: Instant| live.killed.is_none_or(|(k, _)| at < k);
    let mut steady: Vec<f64> = live
        .orders
        .iter()
        .filter_map(|o| {
            o.accepted
                .filter(|a| before_kill(*a))
                .map(|a| a.saturating_duration_since(o.sent).as_secs_f64() * 1e3)
        })
        .collect();
    steady.sort_by(f64::total_cmp);
    trial.steady_p50_ms = median(&steady);
    trial.steady_max_ms = steady.last().copied().unwrap_or(f64::NAN);
}

/// Replays the trial user's stream from sequence number 1 and returns the acknowledged
/// tokens not accepted there exactly once (and notes tokens accepted twice).
fn replay_check(
    cluster: &Cluster,
    options: &ClientOptions,
    trial: &mut Trial,
) -> anyhow::Result<Vec<String>> {
    let reader = Client::connect(
        &cluster.endpoints,
        &trial.user,
        server::PASSWORD,
        ClientOptions {
            requested_sequence_number: 1,
            ..options.clone()
        },
    )
    .context("the replay client could not log in")?;
    let mut replayed: BTreeMap<String, u32> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Every message the live client saw is in the stream; read until it has been quiet
    // for a while (the server sends the replay back to back).
    while Instant::now() < deadline {
        let Some(event) = reader.next_event(Duration::from_millis(500)) else {
            break;
        };
        if let ClientEvent::Message {
            message: OutboundMessage::OrderAccepted(accepted),
            ..
        } = event
        {
            *replayed
                .entry(accepted.order_token.as_str().trim().to_string())
                .or_default() += 1;
        }
    }
    let _ = reader.logout();
    let logout_deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < logout_deadline {
        match reader.next_event(Duration::from_millis(100)) {
            Some(ClientEvent::LoggedOut | ClientEvent::GaveUp { .. }) => break,
            None if reader.is_finished() => break,
            _ => {}
        }
    }
    trial.replayed_accepted = replayed.len();
    for (token, count) in &replayed {
        if *count > 1 {
            let note = format!("{token} ×{count} in the replay");
            if !trial.duplicated.contains(&note) {
                trial.duplicated.push(note);
            }
        }
    }
    Ok(trial
        .acknowledged_tokens
        .iter()
        .filter(|t| replayed.get(*t) != Some(&1))
        .cloned()
        .collect())
}

/// Median of three argon2 verifications of the generated users' password, ms.
fn argon2_verify_ms() -> anyhow::Result<f64> {
    let hash = server::hash_once()?;
    let mut times: Vec<f64> = (0..3)
        .map(|_| {
            let start = Instant::now();
            let _ = keel_node::config::verify_password(server::PASSWORD, &hash);
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    Ok(median(&times))
}

/// Kill → the first line of the node log `text` that `wanted` picks and that is stamped
/// after the kill, ms. The node's log time stamps are UTC real time
/// (`YYYY-MM-DDTHH:MM:SS.ffffffZ`); only the time of day is compared, which is enough for
/// anything under 12 hours.
fn logged_after(text: &str, kill_real_ns: u64, wanted: impl Fn(&str) -> bool) -> Option<f64> {
    let kill = i128::from(kill_real_ns) % NS_PER_DAY;
    text.lines()
        .filter(|line| wanted(line))
        .filter_map(|line| {
            let stamp = line.split_whitespace().next()?;
            let of_day = time_of_day_ns(stamp)?;
            let delta = (of_day - kill).rem_euclid(NS_PER_DAY);
            (delta < NS_PER_DAY / 2).then_some(delta)
        })
        .min()
        .map(|ns| ns as f64 / 1e6)
}

/// Nanoseconds since midnight of an RFC 3339 UTC time stamp (`...THH:MM:SS.fffZ`).
fn time_of_day_ns(stamp: &str) -> Option<i128> {
    let (_, time) = stamp.split_once('T')?;
    let time = time.strip_suffix('Z')?;
    let mut parts = time.splitn(3, ':');
    let hours: i128 = parts.next()?.parse().ok()?;
    let minutes: i128 = parts.next()?.parse().ok()?;
    let seconds = parts.next()?;
    let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
    let whole: i128 = whole.parse().ok()?;
    let digits: String = fraction.chars().take(9).collect();
    let fraction_ns: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse::<i128>().ok()? * 10i128.pow(9 - digits.len() as u32)
    };
    Some(((hours * 60 + minutes) * 60 + whole) * 1_000_000_000 + fraction_ns)
}

fn summarize(args: &FailoverArgs, trials: &[Trial]) -> Summary {
    let failover = sorted_finite(trials.iter().filter_map(|t| t.failover_ms));
    let unmeasured = trials.iter().any(|t| t.failover_ms.is_none());
    let elected = sorted_finite(trials.iter().filter_map(|t| t.elected_ms));
    let lost: usize = trials
        .iter()
        .map(|t| t.lost_after_trial.len() + t.lost_at_end.len() + t.duplicated.len())
        .sum();
    let failover_p50_ms = median(&failover);
    let failover_max_ms = if unmeasured {
        f64::INFINITY
    } else {
        failover.last().copied().unwrap_or(f64::NAN)
    };
    Summary {
        trials: trials.len(),
        measured: failover.len(),
        failed: trials.iter().filter(|t| !t.ok()).count(),
        failover_p50_ms,
        failover_max_ms,
        failover_min_ms: failover.first().copied().unwrap_or(f64::NAN),
        disconnected_p50_ms: median(&sorted_finite(
            trials.iter().filter_map(|t| t.disconnected_ms),
        )),
        elected_p50_ms: median(&elected),
        elected_max_ms: elected.last().copied().unwrap_or(f64::NAN),
        open_p50_ms: median(&sorted_finite(trials.iter().filter_map(|t| t.open_ms))),
        logged_in_p50_ms: median(&sorted_finite(trials.iter().filter_map(|t| t.logged_in_ms))),
        reconnected_p50_ms: median(&sorted_finite(
            trials.iter().filter_map(|t| t.reconnected_ms),
        )),
        converge_p50_ms: median(&sorted_finite(trials.iter().filter_map(|t| t.converge_ms))),
        acknowledged: trials.iter().map(|t| t.acknowledged).sum(),
        lost_or_duplicated: lost,
        nothing_lost: lost == 0 && trials.iter().all(|t| t.checked_at_end),
        p50_aim_met: failover_p50_ms <= args.aim_p50_ms,
        max_aim_met: failover_max_ms <= args.aim_max_ms,
    }
}

fn ms(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v:.0}"),
        Some(v) if v.is_infinite() => "∞".to_string(),
        _ => "–".to_string(),
    }
}

/// One line per trial for the terminal.
fn one_line(trial: &Trial) -> String {
    format!(
        "trial {}: killed node{} at {:.0} ms, new leader node{}: disconnected +{} ms, elected +{} ms, open +{} ms, logged in +{} ms, first accepted +{} ms, failover {} ms; {} sent, {} acknowledged, {} unanswered; caught up in {} ms; {}",
        trial.trial,
        trial.killed_node,
        trial.kill_at_ms,
        trial.new_leader_node.map_or("?".to_string(), |n| n.to_string()),
        ms(trial.disconnected_ms),
        ms(trial.elected_ms),
        ms(trial.open_ms),
        ms(trial.reconnected_ms),
        ms(trial.first_accepted_any_ms),
        ms(trial.failover_ms),
        trial.orders_sent,
        trial.acknowledged,
        trial.unanswered_sent_before_kill + trial.unanswered_sent_after_kill,
        ms(trial.converge_ms),
        match &trial.error {
            Some(error) => format!("FAILED: {error}"),
            None if !trial.lost_after_trial.is_empty() || !trial.duplicated.is_empty() => {
                format!(
                    "LOST {} / duplicated {}",
                    trial.lost_after_trial.len(),
                    trial.duplicated.len()
                )
            }
            None => "nothing acknowledged lost".to_string(),
        }
    )
}

/// The failover table of `BENCHMARKS.md`: failover time over the trials, its parts,
/// catch-up, losses and the aims.
pub fn summary_table(report: &FailoverReport) -> String {
    let s = &report.summary;
    let met = |met: bool| if met { "met" } else { "not met" };
    let mut out = String::from("| | |\n|---|---|\n");
    let _ = writeln!(
        out,
        "| trials (measured / failed) | {} ({} / {}) |",
        fig(s.trials as f64),
        fig(s.measured as f64),
        fig(s.failed as f64)
    );
    let _ = writeln!(
        out,
        "| **failover time, ms: median (min–max) over the trials** | **{}** ({}–{}) |",
        fig(s.failover_p50_ms),
        fig(s.failover_min_ms),
        fig(s.failover_max_ms)
    );
    let _ = writeln!(
        out,
        "| of which, medians (ms after the kill): client sees the disconnect / new leader elected / its order entry open / client logged in again | {} / {} / {} / {} |",
        fig(s.disconnected_p50_ms),
        fig(s.elected_p50_ms),
        fig(s.open_p50_ms),
        fig(s.reconnected_p50_ms)
    );
    let _ = writeln!(
        out,
        "| restarted node caught up (median ms) | {} |",
        fig(s.converge_p50_ms)
    );
    let _ = writeln!(
        out,
        "| orders acknowledged; lost or duplicated | {}; {} ({}) |",
        fig(s.acknowledged as f64),
        fig(s.lost_or_duplicated as f64),
        if s.nothing_lost {
            "nothing lost"
        } else {
            "**LOSS**"
        }
    );
    let _ = writeln!(
        out,
        "| aims | median ≤ {} ms: {}; largest ≤ {} ms: {} |\n",
        fig(report.args.aim_p50_ms),
        met(s.p50_aim_met),
        fig(report.args.aim_max_ms),
        met(s.max_aim_met)
    );
    out
}

/// The Markdown summary.
pub fn markdown(report: &FailoverReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# keel-perf failover\n");
    method_lines(&mut out, report);
    if let Some(aborted) = &report.aborted {
        let _ = writeln!(out, "**Stopped early:** {aborted}\n");
    }
    summary_section(&mut out, report);
    trials_section(&mut out, report);
    out
}

/// The list under the title: machine, command, cluster, client, load and method.
fn method_lines(out: &mut String, report: &FailoverReport) {
    let args = &report.args;
    header_lines(
        out,
        &report.machine,
        &report.command,
        report.keel_binary.as_deref(),
    );
    let _ = writeln!(
        out,
        "- cluster: {NODES} `keel serve` nodes on loopback, durability {}, election timeout {} ms, heartbeat {} ms",
        format!("{:?}", args.durability).to_lowercase(),
        args.election_timeout_ms
            .map_or("150 (default)".to_string(), |v| v.to_string()),
        args.heartbeat_ms
            .map_or("30 (default)".to_string(), |v| v.to_string()),
    );
    let _ = writeln!(out, "- client: {}", report.client);
    let _ = writeln!(
        out,
        "- one argon2 password verification (which the new leader does before accepting the login) takes {:.0} ms on this machine",
        report.argon2_verify_ms
    );
    let _ = writeln!(
        out,
        "- load: {} orders/s, steadily paced (1-share bids that never cross); the leader gets SIGKILL {}–{} ms after the trial's first order (uniform, seed {})",
        args.rate, args.kill_after_min_ms, args.kill_after_max_ms, args.seed
    );
    let _ = writeln!(
        out,
        "- **failover** = from the kill (just before `kill(2)`) to the first Order Accepted the client receives for an order it *sent after the kill* (so answered by the new leader). Orders due while disconnected are refused by the client library and tried at the next slot, so that order goes out at most one slot (1/rate) after the login on the new leader is accepted"
    );
    let _ = writeln!(
        out,
        "- loss check: after each trial (killed node restarted, all three `keel journal roots` equal) and again at the end, a fresh client replays the trial's session from sequence number 1; every order the live client saw accepted must be accepted there exactly once\n"
    );
}

/// `## Summary`: the figures over the trials and the loss check.
fn summary_section(out: &mut String, report: &FailoverReport) {
    let args = &report.args;
    let s = &report.summary;
    let _ = writeln!(out, "## Summary\n");
    let _ = writeln!(out, "| figure | ms |");
    let _ = writeln!(out, "|---|---|");
    let _ = writeln!(
        out,
        "| failover p50 (aim ≤ {}) | **{}** {} |",
        args.aim_p50_ms,
        ms(Some(s.failover_p50_ms)),
        if s.p50_aim_met { "met" } else { "not met" }
    );
    let _ = writeln!(
        out,
        "| failover max (aim ≤ {}) | **{}** {} |",
        args.aim_max_ms,
        ms(Some(s.failover_max_ms)),
        if s.max_aim_met { "met" } else { "not met" }
    );
    let _ = writeln!(out, "| failover min | {} |", ms(Some(s.failover_min_ms)));
    let _ = writeln!(
        out,
        "| kill → client sees the connection lost, p50 | {} |",
        ms(Some(s.disconnected_p50_ms))
    );
    let _ = writeln!(
        out,
        "| kill → new leader elected (its log), p50 / max | {} / {} |",
        ms(Some(s.elected_p50_ms)),
        ms(Some(s.elected_max_ms))
    );
    let _ = writeln!(
        out,
        "| kill → new leader's order entry open (its log), p50 | {} |",
        ms(Some(s.open_p50_ms))
    );
    let _ = writeln!(
        out,
        "| kill → client's user logged in (new leader's log, after the argon2 check), p50 | {} |",
        ms(Some(s.logged_in_p50_ms))
    );
    let _ = writeln!(
        out,
        "| kill → login accepted, as the client sees it, p50 | {} |",
        ms(Some(s.reconnected_p50_ms))
    );
    let _ = writeln!(
        out,
        "| restart of the killed node → replicas agree, p50 | {} |",
        ms(Some(s.converge_p50_ms))
    );
    let _ = writeln!(
        out,
        "\n{} trials, {} measured, {} failed; {} orders acknowledged, {} lost or duplicated: **{}**.\n",
        s.trials,
        s.measured,
        s.failed,
        s.acknowledged,
        s.lost_or_duplicated,
        if s.nothing_lost {
            "nothing acknowledged was lost"
        } else {
            "acknowledged orders lost, duplicated, or not checked"
        }
    );
}

/// `## Trials`: one row per trial, then the trials disturbed before the kill.
fn trials_section(out: &mut String, report: &FailoverReport) {
    let _ = writeln!(out, "## Trials\n");
    let _ = writeln!(
        out,
        "| trial | killed | new leader | kill at (ms) | disconnected | elected | order entry open | user logged in (server) | login accepted (client) | first accepted (any) | **failover** | its order sent | steady p50 / max | sent (after kill) | acknowledged | unanswered (before / after kill) | refused while down | caught up (ms) | replay after trial / at end | result |"
    );
    let _ = writeln!(
        out,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for t in &report.trials {
        trial_row(out, t);
    }
    let disturbed: Vec<String> = report
        .trials
        .iter()
        .filter(|t| t.disconnects_before_kill > 0)
        .map(|t| t.trial.to_string())
        .collect();
    if !disturbed.is_empty() {
        let _ = writeln!(
            out,
            "\nTrials with an unplanned connection loss before the kill (a leader change nobody asked for): {}.",
            disturbed.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "\nAll times in ms after the kill unless said otherwise; \"unanswered\" orders were never acknowledged (in flight when the leader died, or written to its dead connection), so losing them is allowed; \"steady\" is order → Accepted before the kill."
    );
}

/// One trial's row of the `## Trials` table.
fn trial_row(out: &mut String, t: &Trial) {
    let check = |lost: &[String], done: bool| {
        if !done {
            "–".to_string()
        } else if lost.is_empty() {
            "ok".to_string()
        } else {
            format!("{} lost", lost.len())
        }
    };
    let _ = writeln!(
        out,
        "| {} | node{} | {} | {:.0} | {} | {} | {} | {} | {} | {} | **{}** | {} | {:.1} / {:.1} | {} ({}) | {} | {} / {} | {} | {} | {} / {} | {} |",
        t.trial,
        t.killed_node,
        t.new_leader_node.map_or("–".to_string(), |n| format!("node{n}")),
        t.kill_at_ms,
        ms(t.disconnected_ms),
        ms(t.elected_ms),
        ms(t.open_ms),
        ms(t.logged_in_ms),
        ms(t.reconnected_ms),
        ms(t.first_accepted_any_ms),
        ms(t.failover_ms),
        ms(t.failover_order_sent_ms),
        t.steady_p50_ms,
        t.steady_max_ms,
        t.orders_sent,
        t.orders_sent_after_kill,
        t.acknowledged,
        t.unanswered_sent_before_kill,
        t.unanswered_sent_after_kill,
        t.refused_while_disconnected,
        ms(t.converge_ms),
        check(&t.lost_after_trial, t.replayed_accepted > 0 || t.acknowledged == 0),
        check(&t.lost_at_end, t.checked_at_end),
        if t.ok() {
            "ok".to_string()
        } else {
            let mut notes = Vec::new();
            if let Some(error) = &t.error {
                notes.push(error.clone());
            }
            if !t.duplicated.is_empty() {
                notes.push(format!("duplicated: {}", t.duplicated.join(", ")));
            }
            if !t.sequence_gaps.is_empty() {
                notes.push(format!("sequence gaps: {}", t.sequence_gaps.join(", ")));
            }
            for lost in t.lost_after_trial.iter().chain(&t.lost_at_end).take(5) {
                notes.push(format!("lost {lost}"));
            }
            notes.join("; ").replace('|', "/")
        }
    );
}

fn progress_bar(trials: usize) -> ProgressBar {
    report::progress_bar(
        trials as u64,
        "failover [{bar:30}] {pos}/{len} trials, {elapsed} {msg}",
        Some(Duration::from_millis(200)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_time_stamps_parse_to_the_time_of_day() {
        assert_eq!(
            time_of_day_ns("2026-11-22T01:02:03.250000Z"),
            Some((3600 + 2 * 60 + 3) * 1_000_000_000_i128 + 250_000_000)
        );
        assert_eq!(time_of_day_ns("2026-11-22T00:00:00Z"), Some(0));
        assert_eq!(time_of_day_ns("INFO"), None);
    }

    #[test]
    fn log_lines_after_the_kill_are_found() {
        let log = "2026-11-22T10:00:00.000000Z  INFO elected leader; serving order entry\n\
                   2026-11-22T10:00:05.300000Z  INFO elected leader; serving order entry\n\
                   2026-11-22T10:00:05.500000Z  INFO logged in peer=1 user=perf1 next=3\n";
        let kill = (10 * 3600 + 5) * 1_000_000_000u64;
        let elected = logged_after(log, kill, |l| l.contains("elected leader")).unwrap();
        assert!((elected - 300.0).abs() < 1e-6, "{elected}");
        let login = logged_after(log, kill, |l| l.contains("user=perf1 ")).unwrap();
        assert!((login - 500.0).abs() < 1e-6, "{login}");
        assert_eq!(logged_after(log, kill, |l| l.contains("user=perf2 ")), None);
    }
}
