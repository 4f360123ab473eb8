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
    /// Reads the records after `after_seq` that the local matching loop journaled, at most
    /// `records_max` or about `bytes_max`, into `out` as a batch (a leader's next
    /// proposal), and returns their range.
    fn read_unproposed(
        &mut self,
        after_seq: u64,
        records_max: u32,
        bytes_max: usize,
        out: &mut Vec<u8>,
    ) -> Result<SeqRange, Error>;
    /// Takes the journal back from the matching loop after order entry closed, discarding
    /// every record after `keep_seq` (journaled, never in the Raft log).
    fn reclaim(&mut self, keep_seq: u64) -> Result<(), Error>;
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
    /// The term this node leads, if it does: entries of that term are its own proposals
    /// of records its matching loop journaled (see `append_records`).
    own_term: Option<u64>,
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
        let hard_state = loaded.hard_state;
        // The commit index is saved lazily, but only ever after the entries it covers were
        // synced (`Replica::handle_ready_with`), and a backend refuses to load a log cut
        // below it: a shorter log would forget entries this node acknowledged.
        if hard_state.commit > loaded.metas.len() as u64 {
            return Err(Error::Storage(format!(
                "the hard state commits entry {} but the raft log holds {} entries",
                hard_state.commit,
                loaded.metas.len()
            )));
        }
        Ok(Store {
            backend: RefCell::new(backend),
            metas: loaded.metas,
            hard_state,
            conf_state: ConfState::from((voters, vec![])),
            truncated_from_seq: None,
            own_term: None,
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

    /// Tells the store which term this node leads (`None`: it does not), before the
    /// entries of a `Ready` are appended.
    pub fn set_own_term(&mut self, term: Option<u64>) {
        self.own_term = term;
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
            assert_eq!(entry.index, self.metas.len() as u64 + 1);
            if entry.get_entry_type() != EntryType::EntryNormal {
                return Err(Error::Storage(format!(
                    "entry {} is a configuration change; membership is fixed",
                    entry.index
                )));
            }
            let range = batch::parse(&entry.data, self.log_last_seq() + 1)?;
            let own = self.own_term == Some(entry.term);
            self.append_records(&entry.data, range, own)?;
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
    /// matching loop has already journaled them (`own`: an entry of the term this node
    /// leads, which only its own proposals can be); on a follower they are new.
    ///
    /// Records a follower's journal holds beyond the Raft log are not necessarily this
    /// entry's: a deposed leader's journal can still hold its unproposed speculative
    /// records (the matching loop discards them only once it learns of the step-down) when
    /// the new leader's entries for the same sequence numbers arrive. Equal sequence numbers
    /// prove nothing, so the bytes are compared: the common prefix is kept, and from the
    /// first record that differs the journal is truncated (reported by `take_truncation`)
    /// and the entry's records are written instead. (Before this comparison, such an entry
    /// was skipped as "already present" and the follower kept the deposed leader's records
    /// under the new leader's index: the simulation caught replicas committing different
    /// records at one sequence number.)
    fn append_records(&mut self, data: &[u8], range: SeqRange, own: bool) -> Result<(), Error> {
        let backend = self.backend.get_mut();
        let have = backend.last_seq();
        if range.count == 0 || (own && range.last_seq() <= have) {
            return Ok(());
        }
        if range.first_seq > have {
            return backend.append(data);
        }
        let present = have.min(range.last_seq()) - range.first_seq + 1;
        let mut held = Vec::with_capacity(data.len());
        // `present` <= range.count, a u32.
        backend.read(range.first_seq, present as u32, &mut held)?;
        // Walk the entry's records; while they equal the journal's, both sit at the same
        // offsets, so the first difference is found by comparing slices at equal offsets.
        let mut differs_at = None;
        let mut tail_at = None;
        batch::for_each(data, |offset, seq, _, record| {
            if differs_at.is_none() && tail_at.is_none() {
                if seq > have {
                    tail_at = Some(offset);
                } else if held.get(offset..offset + record.len()) != Some(record) {
                    differs_at = Some((offset, seq));
                }
            }
            Ok(())
        })?;
        if let Some((offset, seq)) = differs_at {
            backend.truncate_after(seq - 1)?;
            self.truncated_from_seq = Some(self.truncated_from_seq.map_or(seq, |t| t.min(seq)));
            return self.backend.get_mut().append(&data[offset..]);
        }
        match tail_at {
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
        size_bytes_max: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let last = self.metas.len() as u64;
        if low == 0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > last + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let size_bytes_max = size_bytes_max.into();
        let mut entries = Vec::with_capacity((high - low) as usize);
        let mut size: u64 = 0;
        for index in low..high {
            let entry = self.entry(index)?;
            size += entry.data.len() as u64 + 16;
            entries.push(entry);
            // At least one entry, then stop at the size limit (as raft-rs's limit_size).
            if size_bytes_max.is_some_and(|limit| size > limit) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::MemBackend;
    use keel_journal::format::RecordType;

    fn entry(index: u64, term: u64, data: Vec<u8>) -> Entry {
        Entry {
            index,
            term,
            data: data.into(),
            ..Entry::default()
        }
    }

    /// A deposed leader's unproposed records beyond the Raft log must not pass for the new
    /// leader's records at the same sequence numbers.
    #[test]
    fn a_foreign_entry_replaces_an_unproposed_tail_that_differs() {
        let mut store = Store::new(MemBackend::default(), Loaded::default(), vec![1, 2]).unwrap();
        // The new leader's records 1 and 2, built on another journal.
        let mut theirs = MemBackend::default();
        theirs.append_local(RecordType::Command, b"theirs-1");
        theirs.append_local(RecordType::Command, b"theirs-2");
        let mut data = Vec::new();
        theirs.read(1, 2, &mut data).unwrap();
        // Our journal holds record 1 identical to theirs, then our own speculative record 2.
        let backend = store.backend_mut();
        backend.append_local(RecordType::Command, b"theirs-1");
        backend.append_local(RecordType::Command, b"ours-2");
        store.append(&[entry(1, 2, data.clone())]).unwrap();
        assert_eq!(store.take_truncation(), Some(2));
        let mut held = Vec::new();
        store.backend_mut().read(1, 2, &mut held).unwrap();
        assert_eq!(held, data);

        // The leader's own proposal of records its journal already holds is taken as is.
        store.set_own_term(Some(3));
        let seq = store
            .backend_mut()
            .append_local(RecordType::Command, b"mine-3");
        let mut mine = Vec::new();
        store.backend_mut().read(seq, 1, &mut mine).unwrap();
        store.append(&[entry(2, 3, mine)]).unwrap();
        assert_eq!(store.take_truncation(), None);
        assert_eq!(store.backend().last_seq(), 3);
        assert_eq!(store.log_last_seq(), 3);
    }
}
