//! `keel-perf drill`: a Jepsen-style fault drill against a local Raft cluster of real
//! `keel serve` processes.
//!
//! - **Cluster** ([`crate::cluster`]): `--nodes` nodes (3 by default) on loopback, `fsync`
//!   durability by default, every peer link through a fault-injecting TCP proxy
//!   ([`proxy`]): each node dials each other node at the proxy listener of that directed
//!   link.
//! - **Clients** ([`client`]): `--clients` users through the client library, open loop at
//!   `--rate` orders/s in all, recording every send, acknowledgement and message.
//! - **Nemesis** ([`nemesis`]): `--faults N` (random, from `--seed`) or a script; each fault
//!   is held `--hold-min-ms`..`--hold-max-ms`, healed, and followed by a recovery wait
//!   (an order sent after the heal is accepted) and `--quiet-ms` of calm.
//! - **Checks** ([`check`]): after the last fault the clients drain and log out, the
//!   replicas converge, every node stops cleanly, and every replica's journal is read
//!   offline: acknowledged orders present exactly once, received messages byte-identical,
//!   no token twice, replicas equal.
//! - **Output** ([`output`]): Markdown and JSON under `--results`, the outage table per
//!   fault (fault → first Order Accepted of an order sent after it), a timeline plot (SVG)
//!   and the seed. Any failed check (or a fault the cluster never recovered from) prints the
//!   seed and the first evidence and makes the exit status non-zero.
//!
//! - **Disks** ([`disk`]): with `full-disk` or `slow-disk` faults scheduled, each node's
//!   data directory is its own small loop-mounted ext4 (root and a loop device needed;
//!   otherwise the kinds are skipped, and the output says so). For `slow-disk` faults each
//!   image lies on its own [`slowfs`] mount, a FUSE passthrough served by this process
//!   whose writes and syncs wait `--slow-disk-ms` while the fault holds (`/dev/fuse`
//!   needed too). `sync-fail` faults need a `keel` built with the fault-injection seam
//!   (`--keel-faulty`; otherwise skipped likewise): every node then runs it, armed to fail
//!   its journal syncs once a trigger file exists.

pub mod check;
pub mod client;
pub mod disk;
pub mod nemesis;
pub mod output;
pub mod plot;
pub mod proxy;
pub mod slowfs;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use keel_testkit::process::send_signal;
use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, ClusterOptions};
use crate::e2e::{self, DurabilityArg};
use crate::flow::Rng;
use crate::report::Machine;
use crate::server::NodeOptions;

use client::{Clock, History, Plan, Status};
use disk::Disks;
use nemesis::{Fault, Kind, Role};
use output::{DrillReport, FaultRecord};
use proxy::Proxy;

/// `keel-perf drill` options.
#[derive(Clone, Debug, clap::Args, Serialize, Deserialize)]
pub struct DrillArgs {
    /// Faults: a number (random schedule over `--kinds`, from `--seed`) or a comma-separated
    /// script, e.g. `kill-leader,stop-follower,isolate,oneway-out,split-majority,flap`.
    #[arg(long, default_value = "12")]
    pub faults: String,
    /// Kinds of the random schedule. `full-disk` needs root and loop devices, `slow-disk`
    /// root, loop devices and `/dev/fuse`, `sync-fail` needs `--keel-faulty`; without them
    /// those kinds are skipped (and the output says so).
    #[arg(
        long,
        default_value = "kill,stop,isolate,split,oneway,flap,full-disk,sync-fail,slow-disk"
    )]
    pub kinds: String,
    /// Seed of the schedule, targets, hold times and orders: the run to reproduce.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Nodes (3 or 5).
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Client sessions (one user each).
    #[arg(long, default_value_t = 2)]
    pub clients: usize,
    /// Orders per second over all clients, open loop.
    #[arg(long, default_value_t = 300.0)]
    pub rate: f64,
    /// Durability of every node.
    #[arg(long, value_enum, default_value = "fsync")]
    pub durability: DurabilityArg,
    /// Shortest time a fault is held before it is healed, ms.
    #[arg(long, default_value_t = 1_000)]
    pub hold_min_ms: u64,
    /// Longest hold, ms.
    #[arg(long, default_value_t = 2_000)]
    pub hold_max_ms: u64,
    /// How long each write, sync, flush and allocation of a slow disk's image waits
    /// (`slow-disk` faults), ms. An `fdatasync` of a node's journal reaches the image as
    /// 5–6 of these (data, ext4's journal blocks, flushes), so the default makes each take
    /// about 1 s (measured: 1.0–1.2 s), many times the election timeout (150 ms): a leader
    /// cannot wait such a disk out within the outage goal, and even one delayed write
    /// outlasts an election timeout.
    #[arg(long, default_value_t = 200)]
    pub slow_disk_ms: u64,
    /// Calm after each recovery (and before the first fault), ms.
    #[arg(long, default_value_t = 1_000)]
    pub quiet_ms: u64,
    /// A fault the cluster has not recovered from this long after the heal fails the run.
    #[arg(long, default_value_t = 30)]
    pub recover_timeout_s: u64,
    /// The client library's server timeout (a silent server is left after this), ms; the
    /// library's default (a silent leader with orders outstanding is left sooner, by the
    /// library's answer-timeout probe).
    #[arg(long, default_value_t = 5_000)]
    pub server_timeout_ms: u64,
    /// `cluster.election_timeout_ms` (default: the node's, 150).
    #[arg(long)]
    pub election_timeout_ms: Option<u64>,
    /// `cluster.heartbeat_ms` (default: the node's, 30).
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// Short settings for CI: holds of 500–800 ms, 300 ms of calm.
    #[arg(long)]
    pub quick: bool,
    /// The `keel` binary (default: `keel` next to this executable).
    #[arg(long)]
    pub keel: Option<PathBuf>,
    /// A `keel` built with the fault-injection seam (`cargo build --release -p keel
    /// --features keel-node/fault-injection`, copied aside): needed by `sync-fail` faults,
    /// and then run by every node instead of `--keel`.
    #[arg(long)]
    pub keel_faulty: Option<PathBuf>,
    /// Parent directory for the cluster's temporary directory.
    #[arg(long)]
    pub tmp: Option<PathBuf>,
    /// Where the nodes' disk images live (full-disk faults): by default `/dev/shm` where it
    /// exists, else the cluster's directory. On one machine, images on one host file system
    /// share its journal, which couples the nodes' syncs (filling one node's disk stalled
    /// the others' fsyncs for up to a second), as three machines would not; images in RAM
    /// keep each node's disk its own.
    #[arg(long)]
    pub disk_images: Option<PathBuf>,
    /// Keep the cluster's directory (configurations, data, logs).
    #[arg(long)]
    pub keep: bool,
    /// Results folder; default `perf/results` in the workspace.
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// Name of the result files (and of the plot, `LABEL-timeline.svg`).
    #[arg(long, default_value = "drill")]
    pub label: String,
}

/// Timings actually used (`--quick` applied).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Timings {
    /// Hold range, ms.
    pub hold_min_ms: u64,
    /// Hold range, ms.
    pub hold_max_ms: u64,
    /// Calm after each recovery, ms.
    pub quiet_ms: u64,
    /// Wait for outstanding answers when the clients stop, ms.
    pub drain_ms: u64,
}

impl Timings {
    fn of(args: &DrillArgs) -> Timings {
        if args.quick {
            Timings {
                hold_min_ms: 500,
                hold_max_ms: 800,
                quiet_ms: 300,
                drain_ms: 3_000,
            }
        } else {
            Timings {
                hold_min_ms: args.hold_min_ms,
                hold_max_ms: args.hold_max_ms,
                quiet_ms: args.quiet_ms,
                drain_ms: 5_000,
            }
        }
    }
}

fn check_args(args: &DrillArgs) -> anyhow::Result<()> {
    if args.nodes != 3 && args.nodes != 5 {
        bail!("--nodes must be 3 or 5");
    }
    if args.clients == 0 || args.clients > 50 {
        bail!("--clients must be 1 to 50");
    }
    if !(args.rate > 0.0 && args.rate <= 20_000.0) {
        bail!("--rate must be positive and at most 20,000 orders/s");
    }
    if args.hold_max_ms < args.hold_min_ms {
        bail!("--hold-max-ms must not be below --hold-min-ms");
    }
    Ok(())
}

/// Set by SIGINT or SIGTERM: the drill stops its schedule, heals, stops the nodes and
/// undoes its mounts (a second signal is ignored meanwhile).
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn install_interrupt_handler() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

fn interrupted() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted (SIGINT or SIGTERM)");
    }
    Ok(())
}

/// Runs `keel-perf drill`.
pub fn main(args: &DrillArgs) -> anyhow::Result<()> {
    check_args(args)?;
    install_interrupt_handler();
    let kinds = nemesis::parse_kinds(&args.kinds)?;
    // Which kinds the schedule would use, before knowing which can run here.
    let planned = nemesis::schedule(&args.faults, &kinds, &mut Rng::new(args.seed))?;
    let wants = |kind: Kind| planned.iter().any(|f| f.kind == kind);
    let machine = Machine::detect();
    eprintln!("keel-perf drill: {}", machine.line());
    let keel = match &args.keel {
        Some(path) => path.clone(),
        None => e2e::default_keel()?,
    };
    let mut notes = Vec::new();
    let mut skipped = Vec::new();
    let faulty = match &args.keel_faulty {
        Some(_) if !wants(Kind::SyncFail) => {
            notes.push(format!(
                "no sync-fail fault scheduled: the nodes run {}, not --keel-faulty",
                keel.display()
            ));
            None
        }
        Some(path) if path.exists() => Some(path.clone()),
        Some(path) => bail!("--keel-faulty: no such file {}", path.display()),
        None => {
            if wants(Kind::SyncFail) {
                skipped.push(Kind::SyncFail);
                notes.push("sync-fail faults SKIPPED: no --keel-faulty binary (build one with `cargo build --release -p keel --features keel-node/fault-injection` and copy it aside)".to_string());
            }
            None
        }
    };
    if let Some(path) = &faulty {
        notes.push(format!(
            "every node runs the fault-injection build {} (KEEL_FAULT=journal-sync:error:when=<trigger file>), for the sync-fail faults",
            path.display()
        ));
    }
    let mut report = DrillReport::new(
        args,
        machine,
        Timings::of(args),
        e2e::describe_binary(faulty.as_ref().unwrap_or(&keel)),
    );
    let mut proxy = Proxy::new();
    let wants_disks = wants(Kind::FullDisk) || wants(Kind::SlowDisk);
    let small_segments = wants_disks;
    if small_segments {
        notes.push(format!(
            "journal segments of {} MiB (the smallest a node takes), for the small disks of the full-disk and slow-disk faults",
            SMALL_SEGMENT_BYTES >> 20
        ));
    }
    let mut cluster = create_cluster(
        args,
        faulty.clone().unwrap_or(keel),
        &mut proxy,
        small_segments,
    )?;
    // Declared before `disks`, so dropped (and deleted) after they are unmounted.
    let shm = PathBuf::from("/dev/shm");
    let images_parent = args
        .disk_images
        .clone()
        .or_else(|| shm.is_dir().then_some(shm));
    let images = match images_parent.filter(|_| wants_disks) {
        Some(parent) => Some(
            tempfile::Builder::new()
                .prefix("keel-drill-disks-")
                .tempdir_in(&parent)
                .with_context(|| format!("cannot make a directory in {}", parent.display()))?,
        ),
        None => None,
    };
    let images_dir = images.as_ref().map_or(cluster.root.as_path(), |d| d.path());
    let mut disks = mount_disks(
        (wants(Kind::FullDisk), wants(Kind::SlowDisk)),
        images_dir,
        &cluster.data_dirs,
        (&mut notes, &mut skipped),
    );
    let available: Vec<Kind> = kinds
        .iter()
        .copied()
        .filter(|k| !skipped.contains(k))
        .collect();
    let mut rng = Rng::new(args.seed);
    let mut faults = nemesis::schedule(&args.faults, &available, &mut rng)?;
    faults.retain(|f| !skipped.contains(&f.kind));
    for note in &notes {
        eprintln!("keel-perf drill: NOTE: {note}");
    }
    report.notes = notes;
    eprintln!(
        "keel-perf drill: seed {}, {} faults: {}",
        args.seed,
        faults.len(),
        faults
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    );
    let triggers: Vec<PathBuf> = (0..cluster.len())
        .map(|i| cluster.root.join(format!("node{}.sync-fault", i + 1)))
        .collect();
    if faulty.is_some() {
        for (index, trigger) in triggers.iter().enumerate() {
            let value = format!("journal-sync:error:when={}", trigger.display());
            cluster.set_env(index, "KEEL_FAULT", &value);
        }
    }
    if let Err(error) = start_nodes(args, &mut cluster) {
        let _ = cluster.stop_nodes();
        if let Some(disks) = disks.as_mut() {
            disks.unmount();
        }
        return Err(error);
    }
    let outcome = if faults.is_empty() {
        Err(anyhow::anyhow!(
            "no fault left to run (every scheduled kind was skipped)"
        ))
    } else {
        run(
            args,
            &mut cluster,
            &proxy,
            (disks.as_mut(), &triggers),
            &faults,
            rng.fork(),
            &mut report,
        )
    };
    if let Err(error) = &outcome {
        report.aborted = Some(format!("{error:#}"));
    }
    // The proxy carries the peer links until every node has stopped: the replicas
    // converge through it.
    finish(args, &mut cluster, &mut report);
    if let Some(mut disks) = disks {
        let problems = disks.unmount();
        report
            .problems
            .extend(problems.into_iter().map(|p| format!("unmounting: {p}")));
    }
    report.links = proxy.stats();
    proxy.stop();
    drop(cluster);
    output::publish(args, &mut report)?;
    if let Some(failure) = report.first_failure() {
        bail!(
            "drill FAILED (seed {}; rerun: {}): {failure}",
            args.seed,
            report.command
        );
    }
    Ok(())
}

/// Mounts a loop disk per node if `full` or `slow` (disk faults of those kinds are
/// scheduled), on slow mounts if `slow`; a kind that cannot run here is added to `skipped`,
/// with a note saying why.
fn mount_disks(
    (full, slow): (bool, bool),
    images_dir: &Path,
    data_dirs: &[PathBuf],
    (notes, skipped): (&mut Vec<String>, &mut Vec<Kind>),
) -> Option<Disks> {
    if !full && !slow {
        return None;
    }
    let mut mounted = Disks::mount(images_dir, data_dirs, slow);
    if let (true, Err(why)) = (slow, &mounted) {
        skipped.push(Kind::SlowDisk);
        notes.push(format!(
            "slow-disk faults SKIPPED: cannot put each node's disk on a slow (FUSE) mount: {why}"
        ));
        if !full {
            return None;
        }
        mounted = Disks::mount(images_dir, data_dirs, false);
    }
    match mounted {
        Ok(disks) => {
            notes.push(format!(
                "each node's data directory is its own {} MiB loop-mounted ext4 ({}), images in {}{}",
                disk::IMAGE_BYTES >> 20,
                disks.devices().join(", "),
                images_dir.display(),
                if disks.slow() {
                    ", each on its own slow mount (a FUSE passthrough served by the drill, whose writes and syncs wait during a slow-disk fault)"
                } else {
                    ""
                }
            ));
            Some(disks)
        }
        Err(why) => {
            skipped.push(Kind::FullDisk);
            notes.push(format!(
                "full-disk faults SKIPPED: cannot loop-mount a disk per node: {why}"
            ));
            None
        }
    }
}

/// Journal segment size on the disk faults' small disks (the node's minimum).
const SMALL_SEGMENT_BYTES: u64 = 1 << 20;

/// The cluster, every peer link through `proxy`; nothing started yet. With
/// `small_segments`, journal segments of [`SMALL_SEGMENT_BYTES`].
fn create_cluster(
    args: &DrillArgs,
    keel: PathBuf,
    proxy: &mut Proxy,
    small_segments: bool,
) -> anyhow::Result<Cluster> {
    let node = NodeOptions {
        keel,
        durability: match args.durability {
            DurabilityArg::Async => "async",
            DurabilityArg::Fsync => "fsync",
        }
        .to_string(),
        // One user per client and one to find the leader with.
        users: args.clients + 1,
        matching_core: None,
        temp_parent: args.tmp.clone(),
        keep: args.keep,
    };
    let options = ClusterOptions {
        node,
        nodes: args.nodes,
        election_timeout_ms: args.election_timeout_ms,
        heartbeat_ms: args.heartbeat_ms,
    };
    Cluster::create_routed(
        &options,
        &mut |from, to, addr| proxy.add_link(from, to, addr),
        &|server| {
            if small_segments {
                server.segment_size_bytes = SMALL_SEGMENT_BYTES;
                server.free_space_warn_bytes = 2 * SMALL_SEGMENT_BYTES;
            }
        },
    )
}

/// Starts every node.
fn start_nodes(args: &DrillArgs, cluster: &mut Cluster) -> anyhow::Result<()> {
    cluster.start_all()?;
    eprintln!(
        "keel-perf drill: {} nodes, order entry on {}, peer links through the proxy (data in {})",
        args.nodes,
        cluster
            .endpoints
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        cluster.root.display()
    );
    Ok(())
}

/// What the nemesis works with.
struct Ctx<'a> {
    cluster: &'a mut Cluster,
    proxy: &'a Proxy,
    /// Each node's own disk, if mounted (full-disk and slow-disk faults).
    disks: Option<&'a mut Disks>,
    /// The delay of each write and sync of a slow disk.
    slow_disk: Duration,
    /// Each node's sync-fault trigger file (the fault-injection seam fires while it exists).
    triggers: &'a [PathBuf],
    statuses: &'a [Status],
    clock: Clock,
    rng: Rng,
    timings: Timings,
    recover_timeout: Duration,
}

/// Starts the clients, runs every fault, stops the clients; fills `report.faults` and
/// `report.histories`.
fn run(
    args: &DrillArgs,
    cluster: &mut Cluster,
    proxy: &Proxy,
    (disks, triggers): (Option<&mut Disks>, &[PathBuf]),
    faults: &[Fault],
    rng: Rng,
    report: &mut DrillReport,
) -> anyhow::Result<()> {
    let probe = cluster
        .users
        .last()
        .cloned()
        .context("the cluster has no user")?;
    let leader = cluster.find_leader(&probe, Duration::from_secs(30))?;
    eprintln!("keel-perf drill: node{} leads", leader + 1);
    let endpoints = cluster.endpoints.clone();
    let statuses: Vec<Status> = (0..args.clients).map(|_| Status::default()).collect();
    let clock = Clock(Instant::now());
    let timings = report.timings;
    let plans: Vec<Plan> = (0..args.clients)
        .map(|i| Plan {
            user: cluster.users[i].0.clone(),
            prefix: format!("D{i}"),
            rate: args.rate / args.clients as f64,
            seed: args.seed.wrapping_add(1 + i as u64),
            drain: Duration::from_millis(timings.drain_ms),
        })
        .collect();
    let options = client::options(Duration::from_millis(args.server_timeout_ms.max(100)));
    let mut ctx = Ctx {
        cluster,
        proxy,
        disks,
        slow_disk: Duration::from_millis(args.slow_disk_ms),
        triggers,
        statuses: &statuses,
        clock,
        rng,
        timings,
        recover_timeout: Duration::from_secs(args.recover_timeout_s),
    };
    let (outcome, histories) = std::thread::scope(|scope| {
        let handles: Vec<_> = plans
            .iter()
            .zip(&statuses)
            .map(|(plan, status)| {
                let (endpoints, options) = (&endpoints, options.clone());
                scope.spawn(move || client::run(plan, endpoints, options, clock, status))
            })
            .collect();
        let outcome = run_faults(&mut ctx, faults, &mut report.faults);
        // Whatever happened, everything is healed and the clients stop.
        let exits = heal_all(&mut ctx);
        report.problems.extend(exits);
        std::thread::sleep(Duration::from_millis(ctx.timings.quiet_ms));
        for status in &statuses {
            status.stop.store(true, Ordering::SeqCst);
        }
        let histories: Vec<History> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect();
        (outcome, histories)
    });
    report.duration_ms = clock.now_ms();
    report.histories = histories;
    outcome
}

/// Runs the schedule; stops at the first fault the nemesis itself could not carry out
/// (a node that does not restart). A fault the cluster does not recover from is recorded
/// and ends the schedule too: nothing after it would measure anything.
fn run_faults(
    ctx: &mut Ctx<'_>,
    faults: &[Fault],
    records: &mut Vec<FaultRecord>,
) -> anyhow::Result<()> {
    wait_serving(ctx, 0.0).context("no order was accepted before the first fault")?;
    std::thread::sleep(Duration::from_millis(ctx.timings.quiet_ms));
    for (i, fault) in faults.iter().enumerate() {
        interrupted()?;
        let mut record = FaultRecord::new(i + 1, *fault);
        let outcome = run_fault(ctx, &mut record);
        if let Err(error) = &outcome {
            record.error = Some(format!("{error:#}"));
        }
        eprintln!("keel-perf drill: {}", record.one_line());
        let stop = outcome.is_err() || record.recovered_ms.is_none();
        records.push(record);
        if stop {
            return outcome.and_then(|()| bail!("fault {} was never recovered from", i + 1));
        }
    }
    Ok(())
}

/// The leader as the clients see it: the node most connected clients are logged into.
fn wait_leader(ctx: &Ctx<'_>) -> anyhow::Result<usize> {
    let deadline = Instant::now() + ctx.recover_timeout;
    loop {
        let mut votes = vec![0usize; ctx.cluster.len()];
        for status in ctx.statuses {
            if let Some(index) = status
                .connected_endpoint()
                .and_then(|e| ctx.cluster.index_of(e))
            {
                votes[index] += 1;
            }
        }
        if let Some((index, _)) = votes
            .iter()
            .enumerate()
            .filter(|(_, v)| **v > 0)
            .max_by_key(|(_, v)| **v)
        {
            return Ok(index);
        }
        if Instant::now() >= deadline {
            bail!("no client is logged in to any node");
        }
        interrupted()?;
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until an order sent after `after_ms` has been accepted; returns when, ms.
fn wait_serving(ctx: &Ctx<'_>, after_ms: f64) -> anyhow::Result<f64> {
    let deadline = Instant::now() + ctx.recover_timeout;
    let after_us = (after_ms * 1e3) as u64;
    loop {
        if ctx
            .statuses
            .iter()
            .any(|s| s.accepted_sent_us.load(Ordering::SeqCst) > after_us)
        {
            return Ok(ctx.clock.now_ms());
        }
        if Instant::now() >= deadline {
            bail!(
                "no order sent after {after_ms:.0} ms was accepted within {:?}",
                ctx.recover_timeout
            );
        }
        interrupted()?;
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Injects one fault, holds it, heals it, and waits for the recovery.
fn run_fault(ctx: &mut Ctx<'_>, record: &mut FaultRecord) -> anyhow::Result<()> {
    let leader = wait_leader(ctx)?;
    let others: Vec<usize> = (0..ctx.cluster.len()).filter(|&i| i != leader).collect();
    let follower = others[ctx.rng.index(others.len())];
    let fault = record.fault;
    let target = match fault.role {
        Role::Leader => leader,
        Role::Follower => follower,
    };
    let links = nemesis::blocked_links(&fault, ctx.cluster.len(), leader, follower);
    let span = ctx.timings.hold_max_ms - ctx.timings.hold_min_ms;
    let hold = Duration::from_millis(ctx.timings.hold_min_ms + ctx.rng.below(span + 1));
    record.leader_node = leader + 1;
    record.target_node = target + 1;
    record.links = links.iter().map(|&(a, b)| (a + 1, b + 1)).collect();
    record.hold_ms = hold.as_secs_f64() * 1e3;
    let delayed_before = ctx.disks.as_ref().map(|d| d.delayed_ops(target));
    let started = inject(ctx, &fault, target, &links)?;
    record.start_ms = ctx.clock.ms(started);
    if fault.kind.is_disk() {
        // The node must fail on its own; the hold counts from its exit.
        wait_disk_failure(ctx, record, target)?;
        std::thread::sleep(hold);
    } else if fault.kind == Kind::Flap {
        record.flaps = flap(ctx, &links, started + hold);
    } else {
        std::thread::sleep((started + hold).saturating_duration_since(Instant::now()));
    }
    heal(ctx, &fault, target, record)?;
    record.heal_ms = ctx.clock.now_ms();
    if fault.kind == Kind::SlowDisk {
        record.delayed_ops = ctx
            .disks
            .as_ref()
            .zip(delayed_before)
            .map(|(disks, before)| disks.delayed_ops(target) - before);
    }
    restart_exited(ctx, record)?;
    let recovered = wait_serving(ctx, record.heal_ms);
    restart_exited(ctx, record)?;
    record.recovered_ms = Some(recovered?);
    let leader_after = wait_leader(ctx).ok();
    record.leader_after_node = leader_after.map(|i| i + 1);
    if let Some(leader) = leader_after {
        let caught_up = wait_caught_up(ctx, leader);
        restart_exited(ctx, record)?;
        record.caught_up_ms = Some(caught_up? - record.heal_ms);
    }
    std::thread::sleep(Duration::from_millis(ctx.timings.quiet_ms));
    Ok(())
}

/// How long a disk fault may take to stop its node: a full disk fails the node's next
/// Raft index block (about every 128 entries) or journal segment.
const DISK_FAILURE_MAX: Duration = Duration::from_secs(120);

/// A disk fault's node must exit on its own with status 74 (the journal failed): waits
/// for that (bounded) and records when.
fn wait_disk_failure(
    ctx: &mut Ctx<'_>,
    record: &mut FaultRecord,
    target: usize,
) -> anyhow::Result<()> {
    let Some((status, last)) = ctx.cluster.wait_exit(target, DISK_FAILURE_MAX) else {
        bail!(
            "node{} did not stop within {DISK_FAILURE_MAX:?} of the {} fault",
            target + 1,
            record.fault.kind.name()
        );
    };
    record.failed_ms = Some(ctx.clock.now_ms());
    record.exit = Some(format!("{status}: {last}"));
    if status.code() != Some(74) {
        bail!(
            "node{} exited with {status}, not 74 (journal failure): {last}",
            target + 1
        );
    }
    Ok(())
}

/// Waits until every node's journal holds at least what the leader's held once the
/// cluster had recovered (the healed node has caught up: nothing of this fault is left
/// for the next one to be blamed for); returns when, ms.
fn wait_caught_up(ctx: &Ctx<'_>, leader: usize) -> anyhow::Result<f64> {
    let dirs = &ctx.cluster.data_dirs;
    let target = disk::last_seq(&dirs[leader])
        .with_context(|| format!("cannot read node{}'s journal", leader + 1))?;
    let deadline = Instant::now() + ctx.recover_timeout;
    let mut behind: Vec<usize> = (0..dirs.len()).filter(|&i| i != leader).collect();
    loop {
        behind.retain(|&i| disk::last_seq(&dirs[i]).is_none_or(|seq| seq < target));
        if behind.is_empty() {
            return Ok(ctx.clock.now_ms());
        }
        if Instant::now() >= deadline {
            bail!(
                "node{} did not catch up with the leader's sequence number {target} within {:?}",
                behind[0] + 1,
                ctx.recover_timeout
            );
        }
        interrupted()?;
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A node that ended on its own is a failure of the run (a crash, not a fault the drill
/// made): noted with its exit status and last log line, and started again so that the
/// drill goes on measuring.
fn restart_exited(ctx: &mut Ctx<'_>, record: &mut FaultRecord) -> anyhow::Result<()> {
    for (index, what) in ctx.cluster.exited() {
        let note = format!(
            "node{} exited on its own at {:.0} ms ({what})",
            index + 1,
            ctx.clock.now_ms()
        );
        eprintln!("keel-perf drill: {note}");
        record.node_exits.push(note);
        ctx.cluster.restart(index)?;
    }
    Ok(())
}

/// Starts the fault; returns the instant just before it took effect.
fn inject(
    ctx: &mut Ctx<'_>,
    fault: &Fault,
    target: usize,
    links: &[(usize, usize)],
) -> anyhow::Result<Instant> {
    match fault.kind {
        Kind::Kill => ctx.cluster.kill9(target),
        Kind::Stop => {
            let pid = ctx
                .cluster
                .pid(target)
                .context("the target is not running")?;
            let at = Instant::now();
            send_signal(pid, libc::SIGSTOP)?;
            Ok(at)
        }
        Kind::Isolate | Kind::Split | Kind::Oneway | Kind::Flap => {
            let at = Instant::now();
            for &(from, to) in links {
                ctx.proxy.set_blocked(from, to, true);
            }
            Ok(at)
        }
        Kind::FullDisk => {
            let disks = ctx.disks.as_mut().context("no disks are mounted")?;
            let at = Instant::now();
            disks
                .fill(target)
                .with_context(|| format!("cannot fill node{}'s disk", target + 1))?;
            Ok(at)
        }
        Kind::SyncFail => {
            let at = Instant::now();
            std::fs::write(&ctx.triggers[target], b"")?;
            Ok(at)
        }
        Kind::SlowDisk => {
            let disks = ctx.disks.as_ref().context("no disks are mounted")?;
            let at = Instant::now();
            disks
                .set_delay(target, ctx.slow_disk)
                .map_err(anyhow::Error::msg)?;
            Ok(at)
        }
    }
}

/// Flapping: the links go down and up at random moments, 50–400 ms each way, until
/// `until`; they end up. Returns the number of changes.
fn flap(ctx: &mut Ctx<'_>, links: &[(usize, usize)], until: Instant) -> usize {
    let mut blocked = true;
    let mut changes = 0;
    loop {
        let phase = Duration::from_millis(ctx.rng.range(50, 400));
        let next = Instant::now() + phase;
        if next >= until {
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
            return changes;
        }
        std::thread::sleep(phase);
        blocked = !blocked;
        changes += 1;
        for &(from, to) in links {
            ctx.proxy.set_blocked(from, to, blocked);
        }
    }
}

/// Ends the fault: restart, SIGCONT, or every link open again; for a full disk, the
/// ballast deleted and a restart; for a failed sync, the operator's procedure (`keel serve`
/// must refuse the journal, `keel journal clear-sync-failure`) and a restart; for a slow
/// disk, the delay taken away (the node ran on).
fn heal(
    ctx: &mut Ctx<'_>,
    fault: &Fault,
    target: usize,
    record: &mut FaultRecord,
) -> anyhow::Result<()> {
    match fault.kind {
        Kind::Kill => ctx.cluster.restart(target),
        Kind::FullDisk => {
            if let Some(disks) = ctx.disks.as_mut() {
                disks.free(target)?;
            }
            ctx.cluster.restart(target)
        }
        Kind::SyncFail => {
            std::fs::remove_file(&ctx.triggers[target])?;
            record.operator = clear_sync_failure(ctx, target)?;
            ctx.cluster.restart(target)
        }
        Kind::SlowDisk => {
            let disks = ctx.disks.as_ref().context("no disks are mounted")?;
            disks
                .set_delay(target, Duration::ZERO)
                .map_err(anyhow::Error::msg)
        }
        Kind::Stop => {
            let pid = ctx
                .cluster
                .pid(target)
                .context("the stopped node is gone")?;
            send_signal(pid, libc::SIGCONT)
        }
        _ => {
            ctx.proxy.heal();
            Ok(())
        }
    }
}

/// After a failed sync: `keel serve` must refuse the journal, `keel journal sync-failure`
/// must show the record, and `keel journal clear-sync-failure` must clear it. Returns what
/// each said, for the report.
fn clear_sync_failure(ctx: &Ctx<'_>, target: usize) -> anyhow::Result<Vec<String>> {
    let keel = ctx.cluster.keel();
    let dir = &ctx.cluster.data_dirs[target];
    let config = ctx
        .cluster
        .config_path(target)
        .context("no configuration")?;
    let (status, line) = disk::start_refused(keel, config, Duration::from_secs(20))?;
    if status.success() || !line.contains("clear-sync-failure") {
        bail!(
            "node{}: keel serve did not refuse the journal after the failed sync ({status}): {line}",
            target + 1
        );
    }
    let mut said = vec![format!("keel serve refused ({status}): {line}")];
    let (status, text) = disk::journal_command(keel, &["sync-failure"], dir)?;
    if status.success() {
        bail!(
            "node{}: keel journal sync-failure shows no record: {text}",
            target + 1
        );
    }
    said.push(format!("keel journal sync-failure ({status}): {text}"));
    let (status, text) = disk::journal_command(keel, &["clear-sync-failure"], dir)?;
    if !status.success() {
        bail!(
            "node{}: keel journal clear-sync-failure failed ({status}): {text}",
            target + 1
        );
    }
    said.push(format!("keel journal clear-sync-failure: {text}"));
    Ok(said)
}

/// Best effort after an error: every link open, every disk emptied of its ballast and at
/// full speed, no sync-fault armed, every node running and not stopped. Returns a note for each node that
/// had exited on its own (a crash).
fn heal_all(ctx: &mut Ctx<'_>) -> Vec<String> {
    ctx.proxy.heal();
    for index in 0..ctx.cluster.len() {
        if let Some(disks) = ctx.disks.as_mut() {
            let _ = disks.free(index);
            // An error only says the disks are not slow ones.
            let _ = disks.set_delay(index, Duration::ZERO);
        }
        let _ = std::fs::remove_file(&ctx.triggers[index]);
    }
    let exits: Vec<String> = ctx
        .cluster
        .exited()
        .into_iter()
        .map(|(index, what)| format!("node{} exited on its own ({what})", index + 1))
        .collect();
    for index in 0..ctx.cluster.len() {
        match ctx.cluster.pid(index) {
            Some(pid) => {
                let _ = send_signal(pid, libc::SIGCONT);
            }
            None => {
                if let Err(error) = ctx.cluster.restart(index) {
                    eprintln!(
                        "keel-perf drill: cannot restart node{}: {error:#}",
                        index + 1
                    );
                }
            }
        }
    }
    exits
}

/// After the run: the replicas converge, every node stops cleanly, every journal is
/// replayed and checked.
fn finish(args: &DrillArgs, cluster: &mut Cluster, report: &mut DrillReport) {
    if INTERRUPTED.load(Ordering::SeqCst) {
        eprintln!("keel-perf drill: interrupted; stopping the nodes without checking");
        if let Err(error) = cluster.stop_nodes() {
            report
                .problems
                .push(format!("a node did not stop cleanly: {error:#}"));
        }
        return;
    }
    for (index, what) in cluster.exited() {
        let note = format!(
            "node{} exited on its own after the last fault ({what})",
            index + 1
        );
        report.problems.push(note);
        if let Err(error) = cluster.restart(index) {
            report
                .problems
                .push(format!("cannot restart node{}: {error:#}", index + 1));
        }
    }
    let started = Instant::now();
    let converged = cluster.wait_converged(Duration::from_secs(args.recover_timeout_s.max(30)));
    eprintln!(
        "keel-perf drill: replicas converged after {:.1} s; stopping the nodes",
        started.elapsed().as_secs_f64()
    );
    if let Err(error) = &converged {
        report
            .problems
            .push(format!("replicas did not converge: {error:#}"));
    }
    if let Err(error) = cluster.stop_nodes() {
        report
            .problems
            .push(format!("a node did not stop cleanly: {error:#}"));
    }
    eprintln!(
        "keel-perf drill: nodes stopped after {:.1} s; replaying every journal",
        started.elapsed().as_secs_f64()
    );
    let users: Vec<String> = report.histories.iter().map(|h| h.user.clone()).collect();
    let mut replicas = Vec::new();
    for index in 0..cluster.len() {
        let config = cluster.config_path(index).map(PathBuf::from);
        let replayed = config.context("no configuration").and_then(|config| {
            check::replay_replica(index + 1, &config, &cluster.data_dirs[index], &users)
        });
        match replayed {
            Ok(replica) => replicas.push(replica),
            Err(error) => report.problems.push(format!(
                "node{}'s journal cannot be replayed: {error:#}",
                index + 1
            )),
        }
    }
    eprintln!(
        "keel-perf drill: journals replayed after {:.1} s; checking",
        started.elapsed().as_secs_f64()
    );
    let roots = match cluster.roots() {
        Ok(roots) => roots,
        Err(error) => {
            report
                .problems
                .push(format!("keel journal roots failed: {error:#}"));
            Vec::new()
        }
    };
    report.roots = roots.iter().map(|r| r.trim().to_string()).collect();
    report.records = replicas.iter().map(|r| r.records).collect();
    report.checks = check::run_checks(&report.histories, &replicas, &roots);
}
