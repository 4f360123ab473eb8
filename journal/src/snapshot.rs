//! Snapshots: the whole engine state at a sequence number, with the journal's Merkle
//! frontier at that point, checksummed and verified against its own roots on load.
//!
//! Snapshots are taken off the hot path by a snapshotter thread that tails the journal into
//! its own copy of the engine (see [`spawn_snapshotter`]), so the matching loop never pauses.
//! Only durable records are snapshotted: a snapshot can never describe commands a crash
//! could still take away from the journal.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use keel_engine::{Engine, EngineConfig, Event};

use crate::envelope::engine_command;
use crate::reader::Record;

use crate::merkle::{leaf_hash, Hash, MerkleFrontier};
use crate::reader::Reader;
use crate::segment::sync_dir;
use crate::watermarks::Watermarks;
use crate::Error;

const SNAPSHOT_MAGIC: [u8; 8] = *b"KEELSNAP";
const SNAPSHOT_VERSION: u32 = 1;
const SNAPSHOT_HEADER_BYTES: usize = 128;
/// How many snapshots are kept; older ones are deleted. Two, so that a damaged newest one
/// still leaves a valid one to fall back to.
pub const SNAPSHOTS_KEPT: usize = 2;

/// Engine state at a sequence number, with the Merkle commitments to it.
#[derive(Clone, Debug)]
pub struct StateAt {
    /// The last command applied (0: none).
    pub seq: u64,
    /// The engine after applying commands `1..=seq`.
    pub engine: Engine,
    /// Journal Merkle frontier over records `1..=seq`.
    pub frontier: MerkleFrontier,
}

impl StateAt {
    /// An empty engine before any command.
    pub fn empty(config: EngineConfig) -> Result<StateAt, Error> {
        Ok(StateAt {
            seq: 0,
            engine: Engine::new(config)?,
            frontier: MerkleFrontier::new(),
        })
    }

    /// Applies one journal record (command or envelope); `events` receives its events.
    pub fn apply(&mut self, record: &Record<'_>, events: &mut Vec<Event>) -> Result<(), Error> {
        let (seq, bytes) = (record.seq, record.bytes);
        if seq != self.seq + 1 {
            return Err(Error::NoSuchRecord { seq: self.seq + 1 });
        }
        events.clear();
        if let Some(command) = engine_command(record.record_type, record.payload)? {
            self.engine.process(&command, events);
        }
        self.frontier.push(bytes);
        self.seq = seq;
        Ok(())
    }

    /// The RFC 9162 root of the journal records `1..=seq`.
    pub fn journal_root(&self) -> Hash {
        self.frontier.root()
    }

    /// The RFC 9162 root over the engine's canonical state leaves.
    pub fn state_root(&self) -> Hash {
        state_root(&self.engine)
    }
}

/// The RFC 9162 Merkle root over an engine's canonical state leaves.
pub fn state_root(engine: &Engine) -> Hash {
    let mut frontier = MerkleFrontier::new();
    engine.visit_state_leaves(|leaf| frontier.push_leaf_hash(leaf_hash(leaf)));
    frontier.root()
}

/// File name of the snapshot at `seq`.
pub fn snapshot_file_name(seq: u64) -> String {
    format!("snapshot-{seq:020}.snap")
}

fn parse_snapshot_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("snapshot-")?.strip_suffix(".snap")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Snapshot sequence numbers present in `dir`, newest first.
pub fn list_snapshots(dir: &Path) -> Result<Vec<u64>, Error> {
    let mut seqs = Vec::new();
    for entry in fs::read_dir(dir)? {
        if let Some(seq) = entry?
            .file_name()
            .to_str()
            .and_then(parse_snapshot_file_name)
        {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable_by(|a, b| b.cmp(a));
    Ok(seqs)
}

/// Encodes a snapshot file.
pub fn encode(state: &StateAt) -> Vec<u8> {
    let (tree_size, nodes) = state.frontier.parts();
    let mut body = Vec::with_capacity(nodes.len() * 32 + 64 * state.engine.resting_count());
    for node in nodes {
        body.extend_from_slice(node);
    }
    let mut leaves = 0u64;
    let mut roots = MerkleFrontier::new();
    state.engine.visit_state_leaves(|leaf| {
        // Leaves are at most STATE_LEAF_BYTES_MAX (35) long: fits u16.
        body.extend_from_slice(&(leaf.len() as u16).to_le_bytes());
        body.extend_from_slice(leaf);
        roots.push_leaf_hash(leaf_hash(leaf));
        leaves += 1;
    });
    let body_crc = crc32c::crc32c(&body);
    body.extend_from_slice(&body_crc.to_le_bytes());

    let mut out = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + body.len());
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    // SNAPSHOT_HEADER_BYTES is 128: fits u32.
    out.extend_from_slice(&(SNAPSHOT_HEADER_BYTES as u32).to_le_bytes());
    out.extend_from_slice(&state.seq.to_le_bytes());
    out.extend_from_slice(&leaves.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&roots.root());
    out.extend_from_slice(&state.frontier.root());
    out.extend_from_slice(&tree_size.to_le_bytes());
    // The frontier has at most 64 nodes (one per bit of the tree size): fits u32.
    out.extend_from_slice(&(nodes.len() as u32).to_le_bytes());
    out.resize(SNAPSHOT_HEADER_BYTES - 4, 0);
    let header_crc = crc32c::crc32c(&out);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes and fully verifies a snapshot file: both checksums, the state root recomputed
/// from the leaves, the journal root recomputed from the frontier, and the engine rebuilt
/// strictly from the leaves.
pub fn decode(bytes: &[u8], config: EngineConfig) -> Result<StateAt, String> {
    let header = bytes
        .get(..SNAPSHOT_HEADER_BYTES)
        .ok_or("shorter than a header")?;
    if header[0..8] != SNAPSHOT_MAGIC {
        return Err("not a snapshot (bad magic)".into());
    }
    if crc32c::crc32c(&header[..SNAPSHOT_HEADER_BYTES - 4])
        != le_u32(&header[SNAPSHOT_HEADER_BYTES - 4..])
    {
        return Err("header checksum mismatch".into());
    }
    if le_u32(&header[8..12]) != SNAPSHOT_VERSION
        || le_u32(&header[12..16]) as usize != SNAPSHOT_HEADER_BYTES
    {
        return Err("unsupported snapshot version".into());
    }
    if header[116..SNAPSHOT_HEADER_BYTES - 4]
        .iter()
        .any(|&b| b != 0)
    {
        return Err("reserved header bytes not zero".into());
    }
    let seq = le_u64(&header[16..24]);
    let leaf_count = le_u64(&header[24..32]);
    let body_len = le_u64(&header[32..40]);
    let state_root: Hash = header[40..72].try_into().map_err(|_| "bad state root")?;
    let journal_root: Hash = header[72..104].try_into().map_err(|_| "bad journal root")?;
    let tree_size = le_u64(&header[104..112]);
    let node_count = le_u32(&header[112..116]) as usize;
    let body = &bytes[SNAPSHOT_HEADER_BYTES..];
    if body.len() as u64 != body_len || body.len() < 4 {
        return Err("body length mismatch".into());
    }
    let (body, crc) = body.split_at(body.len() - 4);
    if crc32c::crc32c(body) != le_u32(crc) {
        return Err("body checksum mismatch".into());
    }
    if tree_size != seq || node_count > 64 || body.len() < node_count * 32 {
        return Err("bad journal frontier".into());
    }
    let (node_bytes, mut rest) = body.split_at(node_count * 32);
    let nodes = node_bytes
        .chunks_exact(32)
        .map(|c| c.try_into().map_err(|_| "bad frontier node"))
        .collect::<Result<Vec<Hash>, _>>()?;
    let frontier = MerkleFrontier::from_parts(tree_size, nodes).map_err(|e| e.to_string())?;
    if frontier.root() != journal_root {
        return Err("journal frontier does not match its root".into());
    }
    let mut leaves = Vec::new();
    while !rest.is_empty() {
        let len = usize::from(u16::from_le_bytes([
            rest[0],
            *rest.get(1).ok_or("truncated leaf")?,
        ]));
        let leaf = rest.get(2..2 + len).ok_or("truncated leaf")?;
        leaves.push(leaf);
        rest = &rest[2 + len..];
    }
    if leaves.len() as u64 != leaf_count {
        return Err("leaf count mismatch".into());
    }
    let mut roots = MerkleFrontier::new();
    for leaf in &leaves {
        roots.push_leaf_hash(leaf_hash(leaf));
    }
    if roots.root() != state_root {
        return Err("state leaves do not match the state root".into());
    }
    let engine =
        Engine::from_state_leaves(config, leaves.iter().copied()).map_err(|e| e.to_string())?;
    Ok(StateAt {
        seq,
        engine,
        frontier,
    })
}

/// Writes a snapshot durably (temporary file, fsync, rename, directory fsync) and deletes
/// snapshots beyond the newest [`SNAPSHOTS_KEPT`].
pub fn write(dir: &Path, state: &StateAt) -> Result<PathBuf, Error> {
    let path = dir.join(snapshot_file_name(state.seq));
    let tmp = path.with_extension("snap.tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(&encode(state))?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    for old in list_snapshots(dir)?.into_iter().skip(SNAPSHOTS_KEPT) {
        fs::remove_file(dir.join(snapshot_file_name(old)))?;
    }
    Ok(path)
}

/// Loads the newest snapshot that verifies, skipping (and logging) damaged ones.
pub fn load_newest(dir: &Path, config: EngineConfig) -> Result<Option<StateAt>, Error> {
    for seq in list_snapshots(dir)? {
        let path = dir.join(snapshot_file_name(seq));
        let bytes = fs::read(&path)?;
        match decode(&bytes, config) {
            Ok(state) if state.seq == seq => return Ok(Some(state)),
            Ok(_) => {
                tracing::warn!(path = %path.display(), "snapshot sequence does not match its name; skipped")
            }
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "damaged snapshot skipped")
            }
        }
    }
    Ok(None)
}

/// Deletes segments all of whose records are at or below the oldest kept snapshot, so the
/// fallback snapshot still has its journal tail. The segment holding the journal's end is
/// never deleted.
pub fn retire_segments(dir: &Path) -> Result<usize, Error> {
    let snapshots = list_snapshots(dir)?;
    let Some(&oldest_kept) = snapshots[..snapshots.len().min(SNAPSHOTS_KEPT)].last() else {
        return Ok(0);
    };
    let segments = crate::segment::list(dir)?;
    let mut retired = 0;
    for pair in segments.windows(2) {
        let next_first = crate::segment::map_readonly(dir, pair[1])
            .ok()
            .and_then(|map| {
                crate::format::read_record(&map[crate::format::SEGMENT_HEADER_BYTES..])
                    .ok()
                    .map(|(header, _)| header.seq)
            });
        // Segment pair[0] holds records below `next_first` only.
        match next_first {
            Some(first) if first <= oldest_kept + 1 => {
                fs::remove_file(crate::segment::segment_path(dir, pair[0]))?;
                retired += 1;
            }
            _ => break,
        }
    }
    if retired > 0 {
        sync_dir(dir)?;
    }
    Ok(retired)
}

/// Rebuilds the state at the journal's end: the newest valid snapshot, then every later
/// record. Falls back to older snapshots, then to a full replay, when snapshots are damaged.
pub fn recover_state(
    dir: &Path,
    marks: Arc<Watermarks>,
    config: EngineConfig,
) -> Result<StateAt, Error> {
    let mut state = match load_newest(dir, config)? {
        Some(state) => state,
        None => StateAt::empty(config)?,
    };
    if state.seq >= marks.appended() {
        if state.seq > marks.appended() {
            return Err(Error::BadSnapshot {
                path: dir
                    .join(snapshot_file_name(state.seq))
                    .display()
                    .to_string(),
                reason: format!(
                    "describes sequence {} beyond the journal's end {}",
                    state.seq,
                    marks.appended()
                ),
            });
        }
        return Ok(state);
    }
    let mut reader = Reader::open(dir, marks, state.seq + 1)?;
    if reader.next_seq() != state.seq + 1 {
        return Err(Error::NoSuchRecord { seq: state.seq + 1 });
    }
    let mut events = Vec::new();
    while let Some(record) = reader.next()? {
        state.apply(&record, &mut events)?;
    }
    Ok(state)
}

/// Handle of a running snapshotter.
#[derive(Debug)]
pub struct Snapshotter {
    handle: JoinHandle<Result<StateAt, Error>>,
    marks: Arc<Watermarks>,
}

/// Starts a thread that follows the journal from `state` with its own engine copy, writes a
/// snapshot every `every_records` durable records (0: never) and retires old segments.
pub fn spawn_snapshotter(
    dir: PathBuf,
    marks: Arc<Watermarks>,
    state: StateAt,
    every_records: u64,
) -> Result<Snapshotter, Error> {
    let thread_marks = marks.clone();
    let handle = std::thread::Builder::new()
        .name("keel-snapshot".into())
        .spawn(move || follow(&dir, thread_marks, state, every_records))?;
    Ok(Snapshotter { handle, marks })
}

impl Snapshotter {
    /// Waits until the snapshotter has applied every record appended so far, stops it, and
    /// returns its state (whose roots the caller can compare with its own).
    pub fn finish(self) -> Result<StateAt, Error> {
        self.marks.stop_snapshotter();
        self.handle
            .join()
            .map_err(|_| Error::Io(std::io::Error::other("snapshotter thread panicked")))?
    }
}

fn follow(
    dir: &Path,
    marks: Arc<Watermarks>,
    mut state: StateAt,
    every_records: u64,
) -> Result<StateAt, Error> {
    let mut reader: Option<Reader> = None;
    let mut events = Vec::new();
    // Count from the newest snapshot on disk, not from where this process started: a node
    // restarted more often than every `every_records` commands must still snapshot, or its
    // recovery tail (and the segments kept for it) would grow without bound.
    let mut last_snapshot = list_snapshots(dir)?
        .into_iter()
        .find(|&seq| seq <= state.seq)
        .unwrap_or(0);
    loop {
        // Read `stopping` first: once it is set, everything to wait for is already appended.
        let stopping = marks.snapshotter_stopping();
        // Only durable records: a snapshot must never get ahead of what a crash keeps.
        let durable = marks.durable();
        if reader.is_none() && durable > state.seq {
            reader = Some(Reader::open(dir, marks.clone(), state.seq + 1)?);
        }
        let mut progressed = false;
        if let Some(reader) = reader.as_mut() {
            while let Some(record) = reader.next_until(durable)? {
                state.apply(&record, &mut events)?;
                progressed = true;
                if every_records > 0 && state.seq >= last_snapshot + every_records {
                    write(dir, &state)?;
                    retire_segments(dir)?;
                    last_snapshot = state.seq;
                }
            }
        }
        if stopping && state.seq >= marks.appended() {
            return Ok(state);
        }
        if marks.failed() {
            return Err(Error::SyncFailed);
        }
        if !progressed {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

fn le_u32(bytes: &[u8]) -> u32 {
    let mut out = [0u8; 4];
    out.copy_from_slice(&bytes[..4]);
    u32::from_le_bytes(out)
}

fn le_u64(bytes: &[u8]) -> u64 {
    let mut out = [0u8; 8];
    out.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(out)
}
