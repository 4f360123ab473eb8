//! `keel-perf stepdown`: how long a deposed leader with a long day's journal takes to answer
//! Raft again, and how long its state takes to rebuild behind that (issue 12, Deliver 6).
//!
//! 1. A journal of `--records` engine commands (the exchange-core mix, seed 1) with its Raft
//!    index (one term-1 entry per 4,096 records, all committed) is written once through the
//!    node's own storage (`DiskBackend`), then copied to the three nodes' data directories.
//! 2. In this process, on that journal, the parts the replication thread used to run at a
//!    step-down are timed: the cut's full recovery scan, a full reopen (scan and a sync of
//!    every segment), and the trusting reopen that replaces it.
//! 3. Three `keel serve` nodes start on the copies (each replays the journal at its start).
//!    The leader is paused (SIGSTOP) until the others elected another, then resumed: it
//!    steps down. Its log gives **step-down-to-follower** (`step_down_ms`: from closing
//!    order entry to the replication loop answering Raft again; the parts: stopping order
//!    entry, taking the journal back) and the **background rebuild** (`rebuild_ms`, the
//!    replay of every committed record on the `keel-rebuild` thread).
//!
//! The journal holds engine commands, not client envelopes: the replay rebuilds the engine
//! alone (no session streams), so it is the fast end of a real day's replay.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use keel_benches::ExchangeCoreMix;
use keel_journal::format::{write_record, RecordType, RECORD_HEADER_BYTES};
use keel_journal::{Journal, JournalConfig};
use keel_replication::batch::{self, SeqRange};
use keel_replication::disk::DiskBackend;
use keel_replication::{Backend, Meta};
use keel_testkit::cluster::Cluster;
use keel_testkit::config::{user, ClusterSpec, NodeConfigBuilder};

use crate::report::Machine;

/// `keel-perf stepdown` options.
#[derive(Clone, Debug, clap::Args)]
pub struct StepdownArgs {
    /// Commands in the journal.
    #[arg(long, default_value_t = 10_000_000)]
    pub records: usize,
    /// `cluster.election_timeout_ms` of every node.
    #[arg(long, default_value_t = 300)]
    pub election_timeout_ms: u64,
    /// The `keel` binary (default: next to this executable).
    #[arg(long)]
    pub keel: Option<PathBuf>,
    /// Parent of the temporary directory (journals: about 1 GB per million records, four
    /// copies).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the directory (journals, configurations, logs).
    #[arg(long)]
    pub keep: bool,
}

/// Records per Raft entry of the written journal (a proposal's size on a real leader).
const RECORDS_PER_ENTRY: usize = 4096;
/// Longest wait for a node's start (it replays the whole journal) or log line.
const LOG_WAIT: Duration = Duration::from_secs(600);

/// Runs the measurement and prints its table.
pub fn main(args: &StepdownArgs) -> anyhow::Result<()> {
    let machine = Machine::detect();
    eprintln!("keel-perf stepdown: {}", machine.line());
    let keel = match &args.keel {
        Some(path) => path.clone(),
        None => crate::e2e::default_keel()?,
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix("keel-perf-stepdown-");
    let dir = match &args.dir {
        Some(parent) => builder.tempdir_in(parent),
        None => builder.tempdir(),
    }
    .context("cannot create a temporary directory")?;
    let seed = dir.path().join("seed");
    let started = Instant::now();
    let last_seq = write_journal(&seed, args.records)?;
    eprintln!(
        "journal of {last_seq} records written in {:.1?}",
        started.elapsed()
    );
    let parts = time_old_parts(&seed, last_seq)?;
    let figures = run_cluster(args, &keel, dir.path(), &seed)?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    println!("`{command}`\n\n{}\n", machine.line());
    println!("| what | ms |\n|---|---|");
    for (what, ms) in parts.iter().chain(figures.iter()) {
        println!("| {what} | {ms} |");
    }
    if args.keep {
        eprintln!("keel-perf: keeping {}", dir.keep().display());
    }
    Ok(())
}

/// Writes `records` commands and their Raft index into `dir` through the node's storage;
/// returns the last sequence number.
fn write_journal(dir: &Path, records: usize) -> anyhow::Result<u64> {
    let workload = ExchangeCoreMix {
        commands: records,
        ..ExchangeCoreMix::default()
    }
    .generate();
    let commands = workload
        .warmup
        .iter()
        .chain(&workload.measured)
        .take(records);
    let (mut backend, _) = DiskBackend::open(dir, JournalConfig::default())?;
    let mut batch = Vec::new();
    let mut record = Vec::new();
    let mut range = SeqRange {
        first_seq: 1,
        count: 0,
    };
    let mut index = 1;
    for (i, command) in commands.enumerate() {
        let payload = command.encode_to_vec();
        record.resize(RECORD_HEADER_BYTES + payload.len() + 8, 0);
        let seq = i as u64 + 1;
        write_record(&mut record, seq, RecordType::Command, &payload);
        batch::push_record(&mut batch, &record[..RECORD_HEADER_BYTES + payload.len()]);
        range.count += 1;
        if range.count as usize == RECORDS_PER_ENTRY {
            flush_entry(&mut backend, &mut batch, &mut range, &mut index)?;
        }
    }
    flush_entry(&mut backend, &mut batch, &mut range, &mut index)?;
    backend.sync()?;
    backend.save_hard_state(&raft::prelude::HardState {
        term: 1,
        vote: 0,
        commit: index - 1,
        ..Default::default()
    })?;
    Ok(backend.last_seq())
}

/// Appends the batch as Raft entry `index` (term 1).
fn flush_entry(
    backend: &mut DiskBackend,
    batch: &mut Vec<u8>,
    range: &mut SeqRange,
    index: &mut u64,
) -> anyhow::Result<()> {
    if range.count == 0 {
        return Ok(());
    }
    backend.append(batch)?;
    backend.save_metas(
        *index,
        &[Meta {
            term: 1,
            range: *range,
        }],
    )?;
    *index += 1;
    batch.clear();
    *range = SeqRange {
        first_seq: range.last_seq() + 1,
        count: 0,
    };
    Ok(())
}

/// Times, on the journal in `dir`, what the replication thread did at a step-down before
/// the rebuild moved off it, and the trusting reopen that replaced it.
fn time_old_parts(dir: &Path, last_seq: u64) -> anyhow::Result<Vec<(String, u64)>> {
    let config = JournalConfig::default();
    let timed = |f: &mut dyn FnMut() -> anyhow::Result<()>| -> anyhow::Result<u64> {
        let started = Instant::now();
        f()?;
        Ok(millis(started.elapsed()))
    };
    let cut = timed(&mut || Ok(keel_journal::truncate_after(dir, last_seq).map(drop)?))?;
    let reopen = timed(&mut || Ok(Journal::open(dir, config)?.0.close()?))?;
    let trusting = timed(&mut || Ok(Journal::open_trusting(dir, config, last_seq)?.0.close()?))?;
    Ok(vec![
        (
            "before: the cut's recovery scan (nothing to cut)".into(),
            cut,
        ),
        (
            "before: reopening the journal (full scan, sync of every segment)".into(),
            reopen,
        ),
        (
            "now: reopening it trusting the records synced before the close".into(),
            trusting,
        ),
    ])
}

/// Starts three nodes on copies of `seed`, deposes the leader, and reads its figures.
fn run_cluster(
    args: &StepdownArgs,
    keel: &Path,
    root: &Path,
    seed: &Path,
) -> anyhow::Result<Vec<(String, u64)>> {
    let spec = ClusterSpec::new(3)?.timing(args.election_timeout_ms, args.election_timeout_ms / 5);
    let hash = crate::server::hash_once()?;
    let base = NodeConfigBuilder::new(root)
        .instrument(1, "BENCH", 1)
        .user(user("perf0", &hash, 1));
    let mut cluster = Cluster::write(keel, root, spec, &base)?;
    for data_dir in &cluster.data_dirs {
        copy_dir(seed, data_dir)?;
    }
    for index in 0..cluster.len() {
        let node = cluster.launch(index)?.start_timeout(LOG_WAIT).start()?;
        cluster.insert(index, node)?;
    }
    let leader = find_leader(&cluster)?;
    let node = cluster.node(leader).context("leader gone")?;
    node.pause()?;
    std::thread::sleep(Duration::from_millis(4 * args.election_timeout_ms));
    node.resume()?;
    let following = node
        .wait_log("following; state rebuilt in the background", LOG_WAIT)
        .context("the leader never stepped down")?;
    let rebuilt = wait_nth(node, "state rebuilt from the journal", 2)?;
    let field = |line: &str, name: &str| -> anyhow::Result<u64> {
        let start = line.find(&format!("{name}=")).context(name.to_string())? + name.len() + 1;
        let digits: String = line[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        Ok(digits.parse()?)
    };
    Ok(vec![
        (
            "now: step-down to follower (order entry closed, Raft answered again)".into(),
            field(&following, "step_down_ms")?,
        ),
        (
            "now: … of which stopping order entry".into(),
            field(&following, "order_entry_stop_ms")?,
        ),
        (
            "now: … of which taking the journal back (cut, trusting reopen)".into(),
            field(&following, "journal_reclaim_ms")?,
        ),
        (
            "now: background rebuild (replay on keel-rebuild)".into(),
            field(&rebuilt, "rebuild_ms")?,
        ),
        ("records replayed".into(), field(&rebuilt, "records")?),
    ])
}

/// The node serving order entry, once the same one has served for a while: the nodes
/// start one after another, each replaying the journal first, so leadership may change
/// hands a few times before the cluster settles.
fn find_leader(cluster: &Cluster) -> anyhow::Result<usize> {
    let deadline = Instant::now() + LOG_WAIT;
    let mut since: Option<(usize, Instant)> = None;
    while Instant::now() < deadline {
        let serving: Vec<usize> = (0..cluster.len())
            .filter(|&index| cluster.node(index).is_some_and(serves))
            .collect();
        match (serving.as_slice(), since) {
            ([leader], Some((held, from))) if *leader == held => {
                if from.elapsed() >= SETTLED {
                    return Ok(held);
                }
            }
            ([leader], _) => since = Some((*leader, Instant::now())),
            _ => since = None,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("no leader kept order entry open")
}

/// How long one leader must serve before the cluster counts as settled.
const SETTLED: Duration = Duration::from_secs(3);

/// Whether the node's last change of role opened order entry.
fn serves(node: &keel_testkit::process::Node) -> bool {
    let text = node.log_text();
    let opened = text.rfind("leader: order entry open");
    let closed = text.rfind("stepping down");
    opened.is_some_and(|opened| closed.is_none_or(|closed| closed < opened))
}

/// The `n`-th log line containing `needle`.
fn wait_nth(node: &keel_testkit::process::Node, needle: &str, n: usize) -> anyhow::Result<String> {
    let deadline = Instant::now() + LOG_WAIT;
    while node.count_log(needle) < n {
        if Instant::now() > deadline {
            bail!("no {n} lines with {needle:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = node.log_text();
    text.lines()
        .filter(|line| line.contains(needle))
        .nth(n - 1)
        .map(str::to_string)
        .context("log line vanished")
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
