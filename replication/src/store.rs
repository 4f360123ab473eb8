//! The Raft log's storage: raft-rs's [`Storage`] over the journal.
//!
//! The journal holds every command once. The Raft log adds only a small index beside it:
//! for each Raft entry, its term and the range of journal records it carries ([`Meta`]).
//! Entry data is rebuilt from the journal when raft-rs asks for it. Where the bytes live
//! and how they are made durable is the [`Backend`]'s business: the node's backend is the
//! journal plus two small files; the simulation's is in memory and forgets whatever was
//! not synced when a node "crashes".

use std::cell::RefCell;

use raft::prelude::{ConfState, Entry, EntryType, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

use crate::batch::{self, SeqRange};
use crate::Error;

/// The index's record of one Raft entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// The entry's term.
    pub term: u64,
    /// The journal records it carries.
    pub range: SeqRange,
}

/// Where the Raft log's bytes live.
pub trait Backend {
    /// Sequence number of the last journal record present (0 if none).
    fn last_seq(&self) -> u64;
    /// Appends `count` records from `first_seq` on, as a batch (see [`crate::batch`]).
    fn read(&mut self, first_seq: u64, count: u32, out: &mut Vec<u8>) -> Result<(), Error>;
    /// Appends checked records; the first one's sequence number is `last_seq() + 1`.
    fn append(&mut self, records: &[u8]) -> Result<(), Error>;
    /// Discards every record after `seq`.
    fn truncate_after(&mut self, seq: u64) -> Result<(), Error>;
    /// Replaces the index from entry `first_index` on with `metas` (dropping any later ones).
    fn save_metas(&mut self, first_index: u64, metas: &[Meta]) -> Result<(), Error>;
    /// Stores the hard state durably before returning.
    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), Error>;
    /// Makes every record and index entry written so far durable.
    fn sync(&mut self) -> Result<(), Error>;
}

/// What a backend recovered from disk (or memory) at start.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    /// The index, entry 1 first.
    pub metas: Vec<Meta>,
    /// The last hard state saved.
    pub hard_state: HardState,
}

/// raft-rs storage over a [`Backend`].
pub struct Store<B: Backend> {
    // raft-rs reads through `&self`; the backend's reader moves as it reads.
    backend: RefCell<B>,
    metas: Vec<Meta>,
    hard_state: HardState,
    conf_state: ConfState,
    /// Lowest sequence number discarded by a conflict since the caller last asked.
    truncated_from_seq: Option<u64>,
}

impl<B: Backend> Store<B> {
    /// Storage for a cluster of `voters` (fixed membership), from what the backend loaded.
    pub fn new(backend: B, loaded: Loaded, voters: Vec<u64>) -> Result<Store<B>, Error> {
        let mut expected_first = 1;
        for (i, meta) in loaded.metas.iter().enumerate() {
            if meta.range.first_seq != expected_first {
                return Err(Error::Storage(format!(
                    "raft index entry {} starts at record {} where {} was expected",
                    i + 1,
                    meta.range.first_seq,
                    expected_first
                )));
            }
            expected_first = meta.range.last_seq() + 1;
        }
        if expected_first - 1 > backend.last_seq() {
            return Err(Error::Storage(format!(
                "raft index reaches record {} but the journal ends at {}",
                expected_first - 1,
                backend.last_seq()
            )));
        }
        let mut hard_state = loaded.hard_state;
        // The commit index is saved lazily; it can never exceed the log we have.
        hard_state.commit = hard_state.commit.min(loaded.metas.len() as u64);
        Ok(Store {
            backend: RefCell::new(backend),
            metas: loaded.metas,
            hard_state,
            conf_state: ConfState::from((voters, vec![])),
            truncated_from_seq: None,
        })
    }

    /// The backend.
    pub fn backend(&self) -> std::cell::Ref<'_, B> {
        self.backend.borrow()
    }

    /// The backend, mutably.
    pub fn backend_mut(&mut self) -> &mut B {
        self.backend.get_mut()
    }

    /// The index.
    pub fn metas(&self) -> &[Meta] {
        &self.metas
    }

    /// Sequence number of the last record in the Raft log (0 if none).
    pub fn log_last_seq(&self) -> u64 {
        self.metas.last().map_or(0, |m| m.range.last_seq())
    }

    /// The journal records of entry `index`.
    pub fn range_of(&self, index: u64) -> Option<SeqRange> {
        let i = usize::try_from(index.checked_sub(1)?).ok()?;
        self.metas.get(i).map(|m| m.range)
    }

    /// The hard state as last stored.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// Takes note of a conflict truncation: the lowest sequence number removed since the
    /// last call, if any (state built from those records is no longer valid).
    pub fn take_truncation(&mut self) -> Option<u64> {
        self.truncated_from_seq.take()
    }

    /// Persists entries raft-rs handed over in a `Ready` (not yet synced).
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), Error> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let last_index = self.metas.len() as u64;
        if first.index == 0 || first.index > last_index + 1 {
            return Err(Error::Storage(format!(
                "entry {} appended after {last_index}",
                first.index
            )));
        }
        if first.index <= last_index {
            // A conflict: our suffix from `first.index` on is not the leader's. Drop it and
            // the records it carried.
            let keep = (first.index - 1) as usize;
            self.metas.truncate(keep);
            let keep_seq = self.log_last_seq();
            if self.backend.get_mut().last_seq() > keep_seq {
                self.backend.get_mut().truncate_after(keep_seq)?;
                let from = keep_seq + 1;
                self.truncated_from_seq =
                    Some(self.truncated_from_seq.map_or(from, |t| t.min(from)));
            }
        }
        let start = self.metas.len();
        for entry in entries {
            debug_assert_eq!(entry.index, self.metas.len() as u64 + 1);
            if entry.get_entry_type() != EntryType::EntryNormal {
                return Err(Error::Storage(format!(
                    "entry {} is a configuration change; membership is fixed",
                    entry.index
                )));
            }
            let range = batch::parse(&entry.data, self.log_last_seq() + 1)?;
            self.append_records(&entry.data, range)?;
            self.metas.push(Meta {
                term: entry.term,
                range,
            });
        }
        let first_index = start as u64 + 1;
        let new = &self.metas[start..];
        self.backend.get_mut().save_metas(first_index, new)
    }

    /// Writes the records of a batch that the journal does not hold yet. On the leader the
    /// matching loop has already journaled them; on a follower they are new.
    fn append_records(&mut self, data: &[u8], range: SeqRange) -> Result<(), Error> {
        let backend = self.backend.get_mut();
        let have = backend.last_seq();
        if range.count == 0 || range.last_seq() <= have {
            return Ok(());
        }
        if range.first_seq > have {
            return backend.append(data);
        }
        // Partly present (cannot happen after the truncation above, but stay exact).
        let mut tail_start = None;
        batch::for_each(data, |offset, seq, _, _| {
            if seq == have + 1 {
                tail_start = Some(offset);
            }
            Ok(())
        })?;
        match tail_start {
            Some(offset) => backend.append(&data[offset..]),
            None => Ok(()),
        }
    }

    /// Stores a new hard state; synced only when the term or vote changed (the commit index
    /// may lag on disk: it is relearned from the leader).
    pub fn set_hard_state(&mut self, hard_state: &HardState) -> Result<(), Error> {
        let durable_change =
            hard_state.term != self.hard_state.term || hard_state.vote != self.hard_state.vote;
        self.hard_state = hard_state.clone();
        if durable_change {
            self.backend.get_mut().save_hard_state(hard_state)?;
        }
        Ok(())
    }

    /// Records a new commit index (not synced by itself).
    pub fn set_commit(&mut self, commit: u64) {
        self.hard_state.commit = commit;
    }

    fn entry(&self, index: u64) -> raft::Result<Entry> {
        let meta = usize::try_from(index - 1)
            .ok()
            .and_then(|i| self.metas.get(i))
            .ok_or(raft::Error::Store(StorageError::Unavailable))?;
        let mut data = Vec::new();
        self.backend
            .borrow_mut()
            .read(meta.range.first_seq, meta.range.count, &mut data)
            .map_err(|e| raft::Error::Store(StorageError::Other(Box::new(e))))?;
        Ok(Entry {
            index,
            term: meta.term,
            data: data.into(),
            ..Entry::default()
        })
    }
}

impl<B: Backend> Storage for Store<B> {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let last = self.metas.len() as u64;
        if low == 0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > last + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max_size = max_size.into();
        let mut entries = Vec::with_capacity((high - low) as usize);
        let mut size: u64 = 0;
        for index in low..high {
            let entry = self.entry(index)?;
            size += entry.data.len() as u64 + 16;
            entries.push(entry);
            // At least one entry, then stop at the size limit (as raft-rs's limit_size).
            if max_size.is_some_and(|max| size > max) {
                if entries.len() > 1 {
                    entries.pop();
                }
                break;
            }
        }
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        if index == 0 {
            return Ok(0);
        }
        usize::try_from(index - 1)
            .ok()
            .and_then(|i| self.metas.get(i))
            .map(|m| m.term)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        // The journal is never retired under a running cluster: the log starts at 1.
        Ok(1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.metas.len() as u64)
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // Never requested: no entry is ever compacted away (first_index is always 1).
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}
