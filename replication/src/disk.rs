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
use crate::{Error, IndexDamage};

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
    ///
    /// A torn index tail (damage after which nothing valid follows: the last writes before
    /// a crash) is cut, and so are entries whose records the journal lost, but only above
    /// the commit index. Damage in the middle, or a cut that would reach the commit index,
    /// is [`Error::IndexDamaged`]: the node must not start and forget entries it
    /// acknowledged (`replication/README.md`, "A damaged Raft index").
    pub fn open(dir: &Path, config: JournalConfig) -> Result<(DiskBackend, Loaded), Error> {
        fs::create_dir_all(dir)?;
        let (index, scan) = open_index(dir)?;
        let hard_state = load_state(dir)?;
        let path = dir.join(INDEX_FILE);
        let refuse = |entry: u64, problem: IndexDamage| Error::IndexDamaged {
            path: path.clone(),
            entry,
            offset: INDEX_ENTRY_BYTES * entry,
            commit: hard_state.commit,
            problem,
        };
        let mut metas = scan.metas;
        let valid = metas.len() as u64;
        if let Some(valid_after) = scan.valid_after_damage {
            return Err(refuse(valid + 1, IndexDamage::Middle { valid_after }));
        }
        if valid < hard_state.commit {
            return Err(refuse(valid + 1, IndexDamage::BelowCommit));
        }
        if scan.torn {
            tracing::warn!(
                file = %path.display(),
                entry = valid + 1,
                offset = INDEX_ENTRY_BYTES * (valid + 1),
                commit = hard_state.commit,
                "cutting a torn raft index tail (above the commit index)"
            );
        }
        // Opening recovers the journal (a torn tail is cut) and publishes its last record.
        let (journal, _) = Journal::open(dir, config)?;
        let journal_last = journal.watermarks().appended();
        let keep = metas
            .iter()
            .take_while(|m| m.range.last_seq() <= journal_last)
            .count();
        if (keep as u64) < hard_state.commit {
            return Err(refuse(
                keep as u64 + 1,
                IndexDamage::RecordsMissing {
                    journal_last_seq: journal_last,
                },
            ));
        }
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
        // Zero everything after the valid prefix (a torn tail, entries whose records are
        // gone), so nothing of it can reappear once those slots are written again.
        backend.index_entries = backend.index_capacity.max(valid);
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
    ///
    /// This runs on the replication thread, so it must not cost the whole journal: the
    /// journal was closed cleanly by this process (closing syncs everything), so the
    /// records up to its durable mark, which this process checked or wrote, are not read
    /// again: the cut (when there is one) and the reopening scan only the segments after
    /// them. The cut keeps its crash-safe order (`keel_journal::truncate_after`).
    pub fn reclaim_journal(&mut self, keep_seq: u64) -> Result<(), Error> {
        self.reader = None;
        self.tail = None;
        self.cache.truncate_after(keep_seq);
        let marks = self.watermarks();
        let trusted_seq = marks.durable().min(keep_seq);
        if marks.appended() > keep_seq {
            keel_journal::truncate_after_trusting(&self.dir, keep_seq, trusted_seq)?;
        }
        let (journal, _) = Journal::open_trusting(&self.dir, self.config, trusted_seq)?;
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

/// What the index file holds: its valid prefix, and what follows it.
struct IndexScan {
    /// Entries 1.. up to the first slot that is not a valid entry.
    metas: Vec<Meta>,
    /// A slot after the valid prefix holds something other than zeros, and no valid entry
    /// follows: a torn tail.
    torn: bool,
    /// The first valid entry after a bad or zeroed slot: damage in the middle.
    valid_after_damage: Option<u64>,
}

/// Opens (creating) the index and reads it. Slots after the last entry are zeros (the
/// file grows zero-filled, and cut entries are zeroed and synced at once), so a valid
/// prefix followed by zeros is a clean end; anything else after the prefix is damage,
/// classified for [`DiskBackend::open`]: a torn tail if no valid entry follows it,
/// damage in the middle if one does.
fn open_index(dir: &Path) -> Result<(File, IndexScan), Error> {
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
        let scan = IndexScan {
            metas: Vec::new(),
            torn: false,
            valid_after_damage: None,
        };
        return Ok((file, scan));
    }
    if bytes[0..8] != INDEX_MAGIC {
        return Err(Error::Storage(format!(
            "{} is not a Keel raft index",
            path.display()
        )));
    }
    Ok((file, scan_index(&bytes[INDEX_ENTRY_BYTES as usize..])))
}

/// Classifies the index's slots (the bytes after its header).
fn scan_index(slots: &[u8]) -> IndexScan {
    let mut chunks = slots.chunks(INDEX_ENTRY_BYTES as usize);
    let mut metas = Vec::new();
    let mut torn = false;
    for chunk in chunks.by_ref() {
        match decode_meta(chunk) {
            Some(meta) => metas.push(meta),
            None => {
                // A short last slot (a file size a crash tore) counts as non-zero.
                torn = chunk.len() != INDEX_ENTRY_BYTES as usize || chunk.iter().any(|&b| b != 0);
                break;
            }
        }
    }
    let mut valid_after_damage = None;
    for (i, chunk) in chunks.enumerate() {
        if decode_meta(chunk).is_some() {
            // Entry numbers: the valid prefix, the bad slot, then `i` more before this one.
            valid_after_damage = Some(metas.len() as u64 + 2 + i as u64);
            break;
        }
        torn |= chunk.iter().any(|&b| b != 0);
    }
    IndexScan {
        metas,
        torn,
        valid_after_damage,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(term: u64, first_seq: u64, count: u32) -> Vec<u8> {
        encode_meta(&Meta {
            term,
            range: SeqRange { first_seq, count },
        })
        .to_vec()
    }

    /// Four entries and `zero_slots` zero-filled slots (the preallocated rest of the file).
    fn index(zero_slots: usize) -> Vec<u8> {
        let mut bytes = [slot(1, 1, 2), slot(1, 3, 2), slot(2, 5, 1), slot(2, 6, 3)].concat();
        bytes.resize(bytes.len() + zero_slots * INDEX_ENTRY_BYTES as usize, 0);
        bytes
    }

    fn damage(bytes: &mut [u8], offset: usize) {
        bytes[offset] ^= 0x5a;
    }

    #[test]
    fn a_clean_end_is_neither_torn_nor_damaged() {
        let scan = scan_index(&index(8));
        assert_eq!(scan.metas.len(), 4);
        assert!(!scan.torn);
        assert_eq!(scan.valid_after_damage, None);
    }

    #[test]
    fn damage_with_nothing_valid_after_it_is_a_torn_tail() {
        // The last entry, at each of its bytes: torn wherever the write stopped.
        for offset in 96..128 {
            let mut bytes = index(8);
            damage(&mut bytes, offset);
            let scan = scan_index(&bytes);
            assert_eq!(scan.metas.len(), 3, "offset {offset}");
            assert!(scan.torn);
            assert_eq!(scan.valid_after_damage, None);
        }
        // The last two entries, and garbage in the zero-filled slots after them.
        let mut bytes = index(8);
        damage(&mut bytes, 70);
        damage(&mut bytes, 100);
        damage(&mut bytes, 200);
        let scan = scan_index(&bytes);
        assert_eq!((scan.metas.len(), scan.torn), (2, true));
        assert_eq!(scan.valid_after_damage, None);
        // A file cut inside the last entry.
        let scan = scan_index(&index(0)[..110]);
        assert_eq!((scan.metas.len(), scan.torn), (3, true));
    }

    #[test]
    fn a_bad_or_zeroed_entry_before_a_valid_one_is_damage_in_the_middle() {
        for offset in [0, 31, 32, 45, 64, 95] {
            let mut bytes = index(8);
            damage(&mut bytes, offset);
            let scan = scan_index(&bytes);
            let bad = offset as u64 / INDEX_ENTRY_BYTES + 1;
            assert_eq!(scan.metas.len() as u64, bad - 1, "offset {offset}");
            assert_eq!(scan.valid_after_damage, Some(bad + 1), "offset {offset}");
        }
        // A zeroed entry is no better than a damaged one when a valid one follows.
        let mut bytes = index(8);
        bytes[32..64].fill(0);
        let scan = scan_index(&bytes);
        assert_eq!((scan.metas.len(), scan.valid_after_damage), (1, Some(3)));
        // Nor is a valid entry after a run of zeros: entries are written contiguously.
        let mut bytes = index(8);
        let far = slot(2, 9, 1);
        bytes[192..224].copy_from_slice(&far);
        let scan = scan_index(&bytes);
        assert_eq!((scan.metas.len(), scan.valid_after_damage), (4, Some(7)));
    }
}
