// A test harness reports failures by panicking, and unwrap/expect on setup that cannot
// fail keeps the harness readable; the checks themselves return descriptive errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! The deterministic cluster simulation.
//!
//! Each seed builds an in-process cluster (3 nodes, or 5 in about a quarter of the seeds)
//! over a simulated network and a logical clock, runs clients against it while it drops,
//! delays, duplicates and reorders messages, partitions the nodes (leader isolated,
//! minority, no majority at all, one-way links) and crashes nodes (losing whatever was not
//! synced, but for a prefix the seed picks), then heals everything, lets the cluster settle
//! and checks:
//!
//! 1. every acknowledged command is in every replica's committed journal exactly once, at
//!    the sequence number it was acknowledged with, in an entry of the acknowledging
//!    leader's term; and no order id is committed twice;
//! 2. journal Merkle roots and engine state roots agree across replicas at every checkpoint
//!    (every 50 records) and at the end;
//! 3. at most one leader per term, over the whole run;
//! 4. the committed prefix never changes: every node's committed record at a sequence
//!    number equals the first one anybody reported committed there;
//!
//! plus, during the run: a node's committed sequence number never goes back (but across a
//! restart), a conflict never truncates committed records, followers apply exactly what is
//! committed, the engine's own invariants hold, and after the heal the cluster finishes the
//! clients' work (no stall).
//!
//! `KEEL_SIM_SEED=S` runs exactly seed S; `KEEL_SIM_SEEDS=N` runs seeds 0..N (default: a
//! batch sized for CI).

mod sim;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use sim::{run, Bug, Report, SimConfig};

/// Seeds run by default (every `cargo test`, so every CI run): about 100 s in a debug build
/// on two cores with the optimised profile overrides in the workspace Cargo.toml.
const DEFAULT_SEEDS: u64 = 2000;

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
    )
}

/// Runs one seed, turning a panic (in raft-rs or the replication core) into an error too.
fn run_seed(config: SimConfig) -> Result<Report, String> {
    catch_unwind(AssertUnwindSafe(|| run(config))).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "(no message)".into());
        Err(format!("panicked: {message}"))
    })
}

#[test]
fn simulated_clusters_keep_every_invariant() {
    let seeds: Vec<u64> = match env_u64("KEEL_SIM_SEED") {
        Some(seed) => vec![seed],
        None => (0..env_u64("KEEL_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS)).collect(),
    };
    let started = Instant::now();
    let mut totals = Totals::default();
    for &seed in &seeds {
        match run_seed(SimConfig { seed, bug: None }) {
            Ok(report) => totals.add(&report),
            Err(error) => panic!(
                "seed {seed}: {error}\nreproduce: KEEL_SIM_SEED={seed} cargo test -p \
                 keel-replication --test simulation"
            ),
        }
    }
    // A report, not an assertion: how much the seeds exercised, and how long they took.
    println!(
        "{} seeds in {:.1?}: {totals:?}",
        seeds.len(),
        started.elapsed()
    );
}

/// The first of seeds `0..seeds` whose run with `bug` planted fails, and its error.
fn first_caught(bug: Bug, seeds: u64) -> Option<(u64, String)> {
    (0..seeds).find_map(|seed| {
        run_seed(SimConfig {
            seed,
            bug: Some(bug),
        })
        .err()
        .map(|error| (seed, error))
    })
}

#[test]
fn a_seed_replays_identically() {
    let seed = env_u64("KEEL_SIM_SEED").unwrap_or(7);
    let first = run_seed(SimConfig { seed, bug: None });
    let second = run_seed(SimConfig { seed, bug: None });
    assert_eq!(first, second, "seed {seed} ran differently twice");
}

/// A checker that cannot fail is worthless: plant a real bug (acknowledge on the leader's
/// journal append, before the command is synced or committed) and require the checks to
/// catch it within a handful of seeds.
#[test]
fn the_checks_catch_an_acknowledgement_before_commit() {
    let caught = first_caught(Bug::AckOnAppend, 40);
    let (seed, error) = caught.expect("40 seeds of acknowledging before commit went unnoticed");
    println!("planted bug caught at seed {seed}: {error}");
    assert!(
        error.contains("acknowledged"),
        "caught, but not by the acknowledgement check: {error}"
    );
}

/// The simulation drives the production role machine, so a bug planted there must be
/// caught too: a new leader that serves before an entry of its own term is committed
/// (its state may lack commands an earlier leader acknowledged).
#[test]
fn the_checks_catch_serving_before_the_new_term_commits() {
    let caught = first_caught(Bug::ServeBeforeTermCommit, 200);
    let (seed, error) =
        caught.expect("200 seeds of serving before the term's first commit went unnoticed");
    println!("planted role-machine bug caught at seed {seed}: {error}");
}

/// The lease check can fail: a leader that counts its lease three times as long as its
/// followers promised keeps serving while another is elected and serves.
#[test]
fn the_checks_catch_a_lease_longer_than_the_followers_promise() {
    let caught = first_caught(Bug::LeaseTooLong, 300);
    let (seed, error) = caught.expect("300 seeds of an overlong lease went unnoticed");
    println!("planted lease bug caught at seed {seed}: {error}");
    assert!(
        error.contains("overlapping leases") || error.contains("took a command as leader"),
        "caught, but not by a lease check: {error}"
    );
}

/// Without a lease (serving until raft-rs's `check_quorum` steps the leader down, as the
/// machine did before), a cut-off leader still takes commands after another was elected.
#[test]
fn the_checks_catch_a_leader_that_relies_on_check_quorum_alone() {
    let caught = first_caught(Bug::IgnoreLease, 300);
    let (seed, error) = caught.expect("300 seeds without a lease went unnoticed");
    println!("leader without a lease caught at seed {seed}: {error}");
    assert!(
        error.contains("took a command as leader"),
        "caught, but not by the stale-leader check: {error}"
    );
}

/// Rebuilds finish some time after they are asked for (as the node's rebuild thread does):
/// a machine that applied or opened order entry meanwhile, on a state about to be replaced,
/// is caught by the host's check.
#[test]
fn the_checks_catch_applying_while_a_rebuild_is_pending() {
    let caught = first_caught(Bug::IgnorePendingRebuild, 100);
    let (seed, error) = caught.expect("100 seeds of ignoring pending rebuilds went unnoticed");
    println!("planted rebuild bug caught at seed {seed}: {error}");
    assert!(
        error.contains("is pending"),
        "caught, but not by the pending-rebuild check: {error}"
    );
}

/// Sums over seeds, for the report line.
#[derive(Debug, Default)]
struct Totals {
    five_node_runs: u64,
    records: u64,
    acked: u64,
    duplicates: u64,
    terms: u64,
    checkpoints: u64,
    crashes: u64,
    partitions: u64,
    pauses: u64,
    delivered: u64,
    dropped: u64,
    duplicated: u64,
    rebuilds: u64,
    lease_losses: u64,
    abdications: u64,
    votes_deferred: u64,
    caught_up_records: u64,
    time: u64,
}

impl Totals {
    fn add(&mut self, r: &Report) {
        self.five_node_runs += u64::from(r.nodes == 5);
        self.records += r.final_seq;
        self.acked += r.acked as u64;
        self.duplicates += r.duplicates as u64;
        self.terms += r.terms as u64;
        self.checkpoints += r.checkpoints as u64;
        self.crashes += r.crashes;
        self.partitions += r.partitions;
        self.pauses += r.pauses;
        self.delivered += r.delivered;
        self.dropped += r.dropped;
        self.duplicated += r.duplicated;
        self.rebuilds += r.rebuilds;
        self.lease_losses += r.lease_losses;
        self.abdications += r.abdications;
        self.votes_deferred += r.votes_deferred;
        self.caught_up_records += r.caught_up_records;
        self.time += r.time;
    }
}
