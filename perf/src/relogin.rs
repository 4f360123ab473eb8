//! `keel-perf relogin`: the login storm after a failover. Every session of a killed leader
//! logs in again at once on the new one; how long until all of them are served, with
//! resumption tickets and without (every login an argon2 check)?
//!
//! Per mode (tickets on: the nodes' default `resume_ticket_ttl_s`; off: 0):
//!
//! 1. a 3-node cluster ([`crate::cluster`]) with `--sessions` + 1 generated users; the leader
//!    is found with the spare user;
//! 2. `--sessions` clients (the client library, every node's address in order) log in, each
//!    as its own user, by password (with tickets on, each then holds a ticket);
//! 3. the leader gets `kill -9`; every client sees its connection end and reconnects with
//!    its own backoff (the library's defaults unless given), by ticket when it holds one;
//! 4. **relogin time = from the kill (the instant just before `kill(2)`) to the client's
//!    `Reconnected` event** (Login Accepted by the new leader). Reported: the first (the new
//!    leader's order entry is open by then), median, p90, p99 and last, the sessions that
//!    gave up or were not back within `--timeout-s`, and, from the new leader's log, the
//!    logins by ticket and by password, password checks refused as busy, and checks dropped
//!    because their connection had closed.
//!
//! Where the time goes: the new leader serves a wave of ticket logins in about 100 ms; the
//! rest is the clients' own pauses between passes over the endpoints (by default 100 ms,
//! jittered ±50%, for the first second, then growing by half per pass to 2 s). `--backoff-initial-ms` / `--backoff-max-ms` show the figure
//! with faster-retrying clients.
//!
//! No orders flow: this measures logins alone. The clients' background threads (one per
//! session) run in this process, on the same cores as the nodes.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use keel_client::{Client, ClientEvent, ClientOptions};

use crate::cluster::{Cluster, ClusterOptions};
use crate::e2e::{self, DurabilityArg};
use crate::report::Machine;
use crate::server::NodeOptions;

/// `keel-perf relogin` options.
#[derive(Clone, Debug, clap::Args)]
pub struct ReloginArgs {
    /// Sessions logged in when the leader is killed (one user each).
    #[arg(long, default_value_t = 1_000)]
    pub sessions: usize,
    /// Which modes to run: with resumption tickets, without, or both (tickets first).
    #[arg(long, value_enum, default_value = "both")]
    pub tickets: TicketsArg,
    /// Durability of every node.
    #[arg(long, value_enum, default_value = "fsync")]
    pub durability: DurabilityArg,
    /// Clients' first pause between passes over the endpoints (ms; the library's default).
    #[arg(long, default_value_t = 100)]
    pub backoff_initial_ms: u64,
    /// Clients' longest pause between passes (ms; the library's default).
    #[arg(long, default_value_t = 2_000)]
    pub backoff_max_ms: u64,
    /// Give up waiting for the sessions this long after the kill.
    #[arg(long, default_value_t = 120)]
    pub timeout_s: u64,
    /// Threads logging the sessions in before the kill.
    #[arg(long, default_value_t = 8)]
    pub login_threads: usize,
    /// The `keel` binary (default: next to this executable).
    #[arg(long)]
    pub keel: Option<PathBuf>,
    /// Keep the cluster's directory (configurations, data, logs).
    #[arg(long)]
    pub keep: bool,
}

/// `--tickets`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TicketsArg {
    /// Resumption tickets on (the nodes' default).
    On,
    /// `resume_ticket_ttl_s = 0`: every login is a password check.
    Off,
    /// Both, one after the other.
    Both,
}

/// One mode's figures.
#[derive(Debug, Default)]
struct Outcome {
    mode: &'static str,
    sessions: usize,
    /// Kill → Reconnected, per session back in time, seconds, sorted.
    back_s: Vec<f64>,
    gave_up: usize,
    by_ticket: usize,
    by_password: usize,
    refused_busy: usize,
    dropped_checks: usize,
    initial_login_s: f64,
}

/// Runs the benchmark and prints its table.
pub fn main(args: &ReloginArgs) -> anyhow::Result<()> {
    if args.sessions == 0 || args.sessions > 1_000 {
        bail!("--sessions must be 1 to 1,000 (a node serves at most 1,024 connections)");
    }
    let machine = Machine::detect();
    eprintln!("keel-perf relogin: {}", machine.line());
    let keel = match &args.keel {
        Some(path) => path.clone(),
        None => e2e::default_keel()?,
    };
    let modes: &[(&'static str, bool)] = match args.tickets {
        TicketsArg::On => &[("tickets", true)],
        TicketsArg::Off => &[("no tickets", false)],
        TicketsArg::Both => &[("tickets", true), ("no tickets", false)],
    };
    let mut outcomes = Vec::new();
    for &(mode, tickets) in modes {
        outcomes.push(run_mode(args, &keel, mode, tickets)?);
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    println!("{}", table(&command, &machine.line(), args, &outcomes));
    Ok(())
}

fn run_mode(
    args: &ReloginArgs,
    keel: &std::path::Path,
    mode: &'static str,
    tickets: bool,
) -> anyhow::Result<Outcome> {
    let node = NodeOptions {
        keel: keel.to_path_buf(),
        durability: args.durability.name().to_string(),
        users: args.sessions + 1,
        matching_core: None,
        temp_parent: None,
        keep: args.keep,
    };
    let options = ClusterOptions {
        node,
        nodes: 3,
        election_timeout_ms: None,
        heartbeat_ms: None,
    };
    let mut cluster = Cluster::start_with(&options, &|server| {
        if !tickets {
            server.resume_ticket_ttl_s = 0;
        }
        // Every session logs in from 127.0.0.1 here; the per-address limit on logins in
        // progress stands for the many client hosts they would come from.
        server.connections_per_source_max = keel_node::server::CONNECTIONS_MAX;
    })?;
    let spare = cluster.users[args.sessions].clone();
    let leader = cluster.find_leader(&spare, Duration::from_secs(20))?;
    eprintln!("keel-perf relogin [{mode}]: leader is node{}", leader + 1);
    let started = Instant::now();
    let clients = log_in_all(args, &cluster)?;
    let initial_login_s = started.elapsed().as_secs_f64();
    eprintln!(
        "keel-perf relogin [{mode}]: {} sessions logged in in {initial_login_s:.1} s",
        clients.len()
    );
    if tickets {
        wait_for_tickets(&clients)?;
    }
    // The leader may have changed during the initial logins (argon2 checks load the
    // machine): kill the node every session is on now, once they all agree.
    let serving = settled_on(&clients, &cluster, Duration::from_secs(30))?;
    if serving != leader {
        eprintln!(
            "keel-perf relogin [{mode}]: leadership moved to node{} during the initial logins",
            serving + 1
        );
    }
    for client in &clients {
        while client.try_next_event().is_some() {}
    }
    let killed = cluster.kill9(serving)?;
    let (back_s, gave_up) = wait_back(&clients, killed, Duration::from_secs(args.timeout_s));
    eprintln!(
        "keel-perf relogin [{mode}]: {} of {} back, {gave_up} gave up",
        back_s.len(),
        clients.len()
    );
    let new_leader = clients
        .iter()
        .find_map(|client| client.endpoint())
        .and_then(|endpoint| cluster.index_of(endpoint))
        .context("no client is on a node of the cluster")?;
    let log = std::fs::read_to_string(&cluster.logs[new_leader]).unwrap_or_default();
    drop(clients);
    cluster.stop()?;
    Ok(Outcome {
        mode,
        sessions: args.sessions,
        back_s,
        gave_up,
        by_ticket: count(&log, &["logged in", "credential=ticket"]),
        by_password: count(&log, &["logged in", "credential=password"]),
        refused_busy: count(&log, &["password checker busy"]),
        dropped_checks: count(&log, &["password check dropped"]),
        initial_login_s,
    })
}

/// The node every client is connected to, once they all are connected to the same one.
fn settled_on(clients: &[Client], cluster: &Cluster, timeout: Duration) -> anyhow::Result<usize> {
    let deadline = Instant::now() + timeout;
    loop {
        let first = clients.first().and_then(Client::endpoint);
        let agreed = clients
            .iter()
            .all(|client| client.is_connected() && client.endpoint() == first);
        if let (true, Some(index)) = (agreed, first.and_then(|e| cluster.index_of(e))) {
            return Ok(index);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the sessions did not settle on one node within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Logs every session in (by password), from a few threads.
fn log_in_all(args: &ReloginArgs, cluster: &Cluster) -> anyhow::Result<Vec<Client>> {
    let options = ClientOptions {
        reconnect_attempts: 1_000,
        backoff_initial: Duration::from_millis(args.backoff_initial_ms),
        backoff_max: Duration::from_millis(args.backoff_max_ms),
        connect_attempts: 20,
        event_capacity: 64,
        ..ClientOptions::default()
    };
    let users = &cluster.users[..args.sessions];
    let threads = args.login_threads.clamp(1, 64);
    let chunk = users.len().div_ceil(threads);
    let results: Vec<anyhow::Result<Vec<Client>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = users
            .chunks(chunk)
            .map(|part| {
                let options = options.clone();
                scope.spawn(move || {
                    part.iter()
                        .map(|(user, password)| {
                            Client::connect(&cluster.endpoints, user, password, options.clone())
                                .with_context(|| format!("logging {user} in"))
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a login thread panicked")))
            })
            .collect()
    });
    let mut clients = Vec::with_capacity(users.len());
    for result in results {
        clients.extend(result?);
    }
    Ok(clients)
}

/// Waits until every client holds a resumption ticket (it arrives just after Login
/// Accepted, on the client's background thread).
fn wait_for_tickets(clients: &[Client]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while clients.iter().any(|c| c.resume_ticket_expiry().is_none()) {
        if Instant::now() >= deadline {
            let missing = clients
                .iter()
                .filter(|c| c.resume_ticket_expiry().is_none())
                .count();
            bail!("{missing} sessions got no resumption ticket");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Kill → `Reconnected` of each client back within `timeout` (seconds, sorted), and how
/// many gave up.
fn wait_back(clients: &[Client], killed: Instant, timeout: Duration) -> (Vec<f64>, usize) {
    let mut back: Vec<Option<f64>> = vec![None; clients.len()];
    let mut gave_up = vec![false; clients.len()];
    let deadline = killed + timeout;
    while Instant::now() < deadline {
        let mut waiting = false;
        for (index, client) in clients.iter().enumerate() {
            if back[index].is_some() || gave_up[index] {
                continue;
            }
            while let Some(event) = client.try_next_event() {
                match event {
                    ClientEvent::Reconnected { .. } => {
                        back[index] = Some(killed.elapsed().as_secs_f64());
                        break;
                    }
                    ClientEvent::GaveUp { .. } => {
                        gave_up[index] = true;
                        break;
                    }
                    _ => {}
                }
            }
            waiting |= back[index].is_none() && !gave_up[index];
        }
        if !waiting {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut times: Vec<f64> = back.into_iter().flatten().collect();
    times.sort_by(f64::total_cmp);
    (times, gave_up.iter().filter(|g| **g).count())
}

fn count(log: &str, needles: &[&str]) -> usize {
    log.lines()
        .filter(|line| needles.iter().all(|needle| line.contains(needle)))
        .count()
}

/// The value at quantile `q` of sorted `values`, in ms.
fn quantile_ms(values: &[f64], q: f64) -> String {
    if values.is_empty() {
        return "—".into();
    }
    let rank = ((values.len() as f64 - 1.0) * q).round() as usize;
    format!("{:.0}", values[rank.min(values.len() - 1)] * 1_000.0)
}

fn table(command: &str, machine: &str, args: &ReloginArgs, outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Login storm after a leader kill (`keel-perf relogin`)\n"
    );
    let _ = writeln!(
        out,
        "`{command}` — {machine}; {} durability; client backoff {} ms (jittered ±50%) for 1 s, then growing by half to {} ms.\n",
        args.durability.name(),
        args.backoff_initial_ms,
        args.backoff_max_ms
    );
    let _ = writeln!(
        out,
        "| mode | sessions | back | gave up | first (ms) | p50 (ms) | p90 (ms) | p99 (ms) | all back (ms) | by ticket | by password | refused busy | checks dropped | initial logins (s) |"
    );
    let _ = writeln!(
        out,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for o in outcomes {
        let all = if o.back_s.len() == o.sessions {
            quantile_ms(&o.back_s, 1.0)
        } else {
            format!("not all (> {} s)", args.timeout_s)
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} |",
            o.mode,
            o.sessions,
            o.back_s.len(),
            o.gave_up,
            quantile_ms(&o.back_s, 0.0),
            quantile_ms(&o.back_s, 0.5),
            quantile_ms(&o.back_s, 0.9),
            quantile_ms(&o.back_s, 0.99),
            all,
            o.by_ticket,
            o.by_password,
            o.refused_busy,
            o.dropped_checks,
            o.initial_login_s
        );
    }
    out
}
