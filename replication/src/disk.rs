//! The node's [`Backend`]: records in the journal, the Raft index and hard state in two
//! small files beside it (`raft-index`, `raft-state`; byte layout in `replication/FORMAT.md`).
//!
//! A follower's backend owns the journal and appends the leader's records to it. While the
//! node leads, the matching loop owns the journal and appends; the backend then only tails it
//! (records are proposed after the loop journaled them, so "appending" them is a no-op).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keel_journal::{Durability, Journal, JournalConfig, Reader, Watermarks};
use raft::prelude::HardState;

use crate::batch::{self, SeqRange};
use crate::store::{Backend, Loaded, Meta};
use crate::Error;

/// Name of the index file in the journal directory.
pub const INDEX_FILE: &str = "raft-index";
/// Name of the hard-state file in the journal directory.
pub const STATE_FILE: &str = "raft-state";
const INDEX_MAGIC: [u8; 8] = *b"KEELRIDX";
const STATE_MAGIC: [u8; 8] = *b"KEELRHS1";
/// Bytes per index entry (and of the index file's header).
const INDEX_ENTRY_BYTES: u64 = 32;
const STATE_BYTES: usize = 40;

enum Access {
    /// This backend appends (follower).
    Owned(Box<Journal>),
    /// The matching loop appends; this backend reads (leader).
    Tailing(Arc<Watermarks>),
}

/// Journal plus `raft-index` and `raft-state`.
pub struct DiskBackend {
    dir: PathBuf,
    config: JournalConfig,
    access: Access,
    /// Reader for raft-rs's entry reads (`Backend::read`).
    reader: Option<Reader>,
    /// Reader that follows the matching loop for new proposals (`read_new`): kept apart so
    /// the two never reposition each other (a reposition scans a segment from its start).
    tail: Option<Reader>,
    /// Recent batches, so raft-rs's reads of entries it just handled (sending them to a
    /// follower, committing them) do not go back to the journal.
    cache: BatchCache,
    index: File,
    /// Index entries written (the file is preallocated beyond them, zero-filled).
    index_entries: u64,
    /// Index entries the file has room for.
    index_capacity: u64,
}

/// Index entries added to the file at a time, zero-filled and synced up front: appending
/// within the file then never changes its size, so `fdatasync` flushes data only (a size
/// change costs an ext4 journal commit, milliseconds on every Raft round).
const INDEX_GROW_ENTRIES: u64 = 64 * 1024;
/// Bytes of recent batches kept in memory.
const CACHE_BYTES_MAX: usize = 64 << 20;

/// Recent batches by first sequence number, oldest first, bounded in bytes.
#[derive(Default)]
struct BatchCache {
    batches: std::collections::VecDeque<(SeqRange, Vec<u8>)>,
    bytes: usize,
}

impl BatchCache {
    fn insert(&mut self, range: SeqRange, data: &[u8]) {
        if range.count == 0 {
            return;
        }
        // Keep ranges ascending and disjoint: anything at or after this start is stale.
        while self
            .batches
            .back()
            .is_some_and(|(r, _)| r.last_seq() >= range.first_seq)
        {
            if let Some((_, old)) = self.batches.pop_back() {
                self.bytes -= old.len();
            }
        }
        self.bytes += data.len();
        self.batches.push_back((range, data.to_vec()));
        while self.bytes > CACHE_BYTES_MAX {
            match self.batches.pop_front() {
                Some((_, old)) => self.bytes -= old.len(),
                None => break,
            }
        }
    }

    fn get(&self, first_seq: u64, count: u32) -> Option<&[u8]> {
        let i = self
            .batches
            .partition_point(|(r, _)| r.first_seq < first_seq);
        self.batches
            .get(i)
            .filter(|(r, _)| r.first_seq == first_seq && r.count == count)
            .map(|(_, data)| data.as_slice())
    }

    fn truncate_after(&mut self, seq: u64) {
        while self.batches.back().is_some_and(|(r, _)| r.last_seq() > seq) {
            if let Some((_, old)) = self.batches.pop_back() {
                self.bytes -= old.len();
            }
        }
    }
}

impl DiskBackend {
    /// Opens the Raft files in `dir` and the journal there. Journal records the index does
    /// not cover (journaled by a leader that never proposed them, or whose index entry was
    /// lost in a crash) are discarded first: they were never acknowledged, and a follower's
    /// journal must end where its Raft log ends.
    pub fn open(dir: &Path, config: JournalConfig) -> Result<(DiskBackend, Loaded), Error> {
        fs::create_dir_all(dir)?;
        let (index, mut metas) = open_index(dir)?;
        let metas_on_disk = metas.len() as u64;
        let hard_state = load_state(dir)?;
        // Opening recovers the journal (a torn tail is cut) and publishes its last record.
        let (journal, _) = Journal::open(dir, config)?;
        let journal_last = journal.watermarks().appended();
        let keep = metas
            .iter()
            .take_while(|m| m.range.last_seq() <= journal_last)
            .count();
        metas.truncate(keep);
        let log_last = metas.last().map_or(0, |m| m.range.last_seq());
        let mut backend = DiskBackend {
            dir: dir.to_path_buf(),
            config,
            access: Access::Owned(Box::new(journal)),
            reader: None,
            tail: None,
            cache: BatchCache::default(),
            index,
            index_entries: 0,
            index_capacity: 0,
        };
        backend.index_capacity =
            (backend.index.metadata()?.len() / INDEX_ENTRY_BYTES).saturating_sub(1);
        // Zero everything after the valid prefix: a crash can leave whole entries of a
        // batch behind a torn one, and they must not reappear once the gap is rewritten.
        backend.index_entries = backend.index_capacity.max(metas_on_disk);
        backend.cut_index(keep as u64)?;
        if backend.last_seq() > log_last {
            tracing::warn!(
                from_seq = log_last + 1,
                to_seq = backend.last_seq(),
                "discarding journal records the raft log does not hold"
            );
            backend.truncate_after(log_last)?;
        }
        Ok((backend, Loaded { metas, hard_state }))
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Hands the journal to the matching loop (this node now leads); the backend tails it.
    pub fn release_journal(&mut self) -> Option<Journal> {
        let marks = match &self.access {
            Access::Owned(journal) => journal.watermarks().clone(),
            Access::Tailing(_) => return None,
        };
        self.reader = None;
        self.tail = None;
        match std::mem::replace(&mut self.access, Access::Tailing(marks)) {
            Access::Owned(journal) => Some(*journal),
            Access::Tailing(_) => None,
        }
    }

    /// Takes the journal back after the matching loop closed it (this node stepped down):
    /// records after `keep_seq` (journaled but never in the Raft log) are discarded.
    pub fn reclaim_journal(&mut self, keep_seq: u64) -> Result<(), Error> {
        self.reader = None;
        self.tail = None;
        self.cache.truncate_after(keep_seq);
        keel_journal::truncate_after(&self.dir, keep_seq)?;
        let (journal, _) = Journal::open(&self.dir, self.config)?;
        self.access = Access::Owned(Box::new(journal));
        Ok(())
    }

    /// The journal, while this backend owns it.
    pub fn journal(&mut self) -> Option<&mut Journal> {
        match &mut self.access {
            Access::Owned(journal) => Some(journal),
            Access::Tailing(_) => None,
        }
    }

    /// The journal's watermarks.
    pub fn watermarks(&self) -> Arc<Watermarks> {
        match &self.access {
            Access::Owned(journal) => journal.watermarks().clone(),
            Access::Tailing(marks) => marks.clone(),
        }
    }

    /// Reads the records after `after_seq`, at most `records_max` or about `bytes_max`, into
    /// `out` as a batch (the leader's next proposal). Returns their range.
    pub fn read_new(
        &mut self,
        after_seq: u64,
        records_max: u32,
        bytes_max: usize,
        out: &mut Vec<u8>,
    ) -> Result<SeqRange, Error> {
        let available = self.last_seq().saturating_sub(after_seq);
        let count = u32::try_from(available.min(u64::from(records_max))).unwrap_or(records_max);
        let mut range = SeqRange {
            first_seq: after_seq + 1,
            count: 0,
        };
        if count == 0 {
            return Ok(range);
        }
        let reusable = self
            .tail
            .as_ref()
            .is_some_and(|r| r.next_seq() == after_seq + 1);
        if !reusable {
            self.tail = Some(Reader::open(&self.dir, self.watermarks(), after_seq + 1)?);
        }
        let reader = self
            .tail
            .as_mut()
            .ok_or_else(|| Error::Storage("journal reader missing".into()))?;
        let start = out.len();
        while range.count < count && out.len() < bytes_max {
            match reader.next()? {
                Some(record) => {
                    batch::push_record(out, record.bytes);
                    range.count += 1;
                }
                None => break,
            }
        }
        self.cache.insert(range, &out[start..]);
        Ok(range)
    }

    fn reader_at(&mut self, seq: u64) -> Result<&mut Reader, Error> {
        let reusable = self.reader.as_ref().is_some_and(|r| r.next_seq() == seq);
        if !reusable {
            self.reader = Some(Reader::open(&self.dir, self.watermarks(), seq)?);
        }
        self.reader
            .as_mut()
            .ok_or_else(|| Error::Storage("journal reader missing".into()))
    }

    /// Drops index entries from `entries` on: zeroes them on disk and syncs at once (a
    /// conflict is rare, and a stale entry must never reappear behind new ones after a
    /// crash).
    fn cut_index(&mut self, entries: u64) -> Result<(), Error> {
        if entries >= self.index_entries {
            return Ok(());
        }
        let zeros = vec![0u8; ((self.index_entries - entries) * INDEX_ENTRY_BYTES) as usize];
        self.index
            .write_all_at(&zeros, INDEX_ENTRY_BYTES * (entries + 1))?;
        self.index.sync_data()?;
        self.index_entries = entries;
        Ok(())
    }

    /// Makes room for `entries` index entries: grows the file by zero-filled steps, synced
    /// with its new size, so later appends within it change no metadata.
    fn reserve_index(&mut self, entries: u64) -> Result<(), Error> {
        if entries <= self.index_capacity {
            return Ok(());
        }
        let capacity = entries.next_multiple_of(INDEX_GROW_ENTRIES);
        self.index.set_len(INDEX_ENTRY_BYTES * (capacity + 1))?;
        self.index.sync_all()?;
        self.index_capacity = capacity;
        Ok(())
    }
}

impl Backend for DiskBackend {
    fn last_seq(&self) -> u64 {
        match &self.access {
            Access::Owned(journal) => journal.watermarks().appended(),
            Access::Tailing(marks) => marks.appended(),
        }
    }

    fn read(&mut self, first_seq: u64, count: u32, out: &mut Vec<u8>) -> Result<(), Error> {
        if let Some(data) = self.cache.get(first_seq, count) {
            out.extend_from_slice(data);
            return Ok(());
        }
        let reader = self.reader_at(first_seq)?;
        for _ in 0..count {
            let record = reader.next()?.ok_or_else(|| {
                Error::Storage(format!("record missing in {first_seq}..+{count}"))
            })?;
            batch::push_record(out, record.bytes);
        }
        Ok(())
    }

    fn append(&mut self, records: &[u8]) -> Result<(), Error> {
        let Access::Owned(journal) = &mut self.access else {
            return Err(Error::Storage(
                "records appended while the matching loop owns the journal".into(),
            ));
        };
        let appender = journal.appender();
        let mut range: Option<SeqRange> = None;
        batch::for_each(records, |_, seq, _, record| {
            appender.append_copy(record)?;
            let r = range.get_or_insert(SeqRange {
                first_seq: seq,
                count: 0,
            });
            r.count += 1;
            Ok(())
        })?;
        if let Some(range) = range {
            self.cache.insert(range, records);
        }
        Ok(())
    }

    fn truncate_after(&mut self, seq: u64) -> Result<(), Error> {
        if !matches!(self.access, Access::Owned(_)) {
            return Err(Error::Storage(
                "journal truncated while the matching loop owns it".into(),
            ));
        }
        self.reader = None;
        self.tail = None;
        self.cache.truncate_after(seq);
        // Close (syncing what is there), cut, reopen: conflicts are rare (after a change of
        // leader), so the simple path is the right one.
        let marks = self.watermarks();
        if let Access::Owned(journal) = std::mem::replace(&mut self.access, Access::Tailing(marks))
        {
            journal.close()?;
        }
        self.reclaim_journal(seq)
    }

    fn save_metas(&mut self, first_index: u64, metas: &[Meta]) -> Result<(), Error> {
        self.cut_index(first_index.saturating_sub(1))?;
        let end = first_index.saturating_sub(1) + metas.len() as u64;
        self.reserve_index(end)?;
        let mut bytes = Vec::with_capacity(metas.len() * INDEX_ENTRY_BYTES as usize);
        for meta in metas {
            bytes.extend_from_slice(&encode_meta(meta));
        }
        self.index
            .write_all_at(&bytes, INDEX_ENTRY_BYTES * first_index)?;
        self.index_entries = end;
        Ok(())
    }

    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), Error> {
        let mut bytes = [0u8; STATE_BYTES];
        bytes[0..8].copy_from_slice(&STATE_MAGIC);
        bytes[8..16].copy_from_slice(&hard_state.term.to_le_bytes());
        bytes[16..24].copy_from_slice(&hard_state.vote.to_le_bytes());
        bytes[24..32].copy_from_slice(&hard_state.commit.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[0..32]);
        bytes[32..36].copy_from_slice(&crc.to_le_bytes());
        // Write a new file and rename it over the old one: the state is always one whole
        // version or the other.
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let mut file = File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_data()?;
        fs::rename(&tmp, self.dir.join(STATE_FILE))?;
        File::open(&self.dir)?.sync_all()?;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), Error> {
        if self.config.durability == Durability::Async {
            // The node's policy is `async`: an entry counts as persisted once it is in the
            // page cache (journal mapping and index file), which survives a crash of the
            // process but not of the machine — the same promise a single `async` node
            // makes. The journal's flusher still syncs continuously behind it. Hard state
            // (term and vote) is always synced (`save_hard_state`).
            return Ok(());
        }
        // Records: the journal's flusher syncs continuously; wait for it to pass our end.
        let marks = self.watermarks();
        let target = marks.appended();
        marks.wake_flusher();
        while marks.durable() < target {
            if marks.failed() {
                return Err(Error::Journal(keel_journal::Error::SyncFailed));
            }
            std::thread::sleep(Duration::from_micros(20));
        }
        self.index.sync_data()?;
        Ok(())
    }

    fn read_unproposed(
        &mut self,
        after_seq: u64,
        records_max: u32,
        bytes_max: usize,
        out: &mut Vec<u8>,
    ) -> Result<SeqRange, Error> {
        self.read_new(after_seq, records_max, bytes_max, out)
    }

    fn reclaim(&mut self, keep_seq: u64) -> Result<(), Error> {
        self.reclaim_journal(keep_seq)
    }
}

fn encode_meta(meta: &Meta) -> [u8; INDEX_ENTRY_BYTES as usize] {
    let mut bytes = [0u8; INDEX_ENTRY_BYTES as usize];
    bytes[0..8].copy_from_slice(&meta.term.to_le_bytes());
    bytes[8..16].copy_from_slice(&meta.range.first_seq.to_le_bytes());
    bytes[16..20].copy_from_slice(&meta.range.count.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[0..24]);
    bytes[24..28].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn decode_meta(bytes: &[u8]) -> Option<Meta> {
    let field = |range: std::ops::Range<usize>| bytes.get(range);
    let crc = u32::from_le_bytes(field(24..28)?.try_into().ok()?);
    if crc32c::crc32c(field(0..24)?) != crc || field(20..24)? != [0; 4] || field(28..32)? != [0; 4]
    {
        return None;
    }
    Some(Meta {
        term: u64::from_le_bytes(field(0..8)?.try_into().ok()?),
        range: SeqRange {
            first_seq: u64::from_le_bytes(field(8..16)?.try_into().ok()?),
            count: u32::from_le_bytes(field(16..20)?.try_into().ok()?),
        },
    })
}

/// Opens (creating) the index and reads its entries. A torn or damaged tail entry (a write
/// cut short by a crash before its sync) ends the index there; the entries before it were
/// synced before any peer was told about them.
fn open_index(dir: &Path) -> Result<(File, Vec<Meta>), Error> {
    let path = dir.join(INDEX_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    if bytes.len() < INDEX_ENTRY_BYTES as usize {
        let mut header = [0u8; INDEX_ENTRY_BYTES as usize];
        header[0..8].copy_from_slice(&INDEX_MAGIC);
        file.set_len(0)?;
        file.write_all_at(&header, 0)?;
        file.sync_all()?;
        File::open(dir)?.sync_all()?;
        return Ok((file, Vec::new()));
    }
    if bytes[0..8] != INDEX_MAGIC {
        return Err(Error::Storage(format!(
            "{} is not a Keel raft index",
            path.display()
        )));
    }
    let mut metas = Vec::new();
    for chunk in bytes[INDEX_ENTRY_BYTES as usize..].chunks(INDEX_ENTRY_BYTES as usize) {
        match decode_meta(chunk) {
            Some(meta) => metas.push(meta),
            None => break,
        }
    }
    Ok((file, metas))
}

fn load_state(dir: &Path) -> Result<HardState, Error> {
    let path = dir.join(STATE_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(HardState::default())
        }
        Err(error) => return Err(error.into()),
    };
    let valid = bytes.len() == STATE_BYTES
        && bytes[0..8] == STATE_MAGIC
        && bytes[32..36] == crc32c::crc32c(&bytes[0..32]).to_le_bytes();
    if !valid {
        // Written whole by rename, so damage is not a torn write: refuse to guess a vote.
        return Err(Error::Storage(format!("{} is damaged", path.display())));
    }
    let word = |at: usize| {
        let mut field = [0u8; 8];
        field.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(field)
    };
    Ok(HardState {
        term: word(8),
        vote: word(16),
        commit: word(24),
        ..HardState::default()
    })
}
