//! An in-memory [`Backend`] for the deterministic simulation. It keeps what was synced apart
//! from what was only written, and a crash keeps any prefix of the unsynced part (the
//! simulation picks it from its seed), just as a disk may have persisted some of the writes
//! that were never synced.

use raft::prelude::HardState;

use keel_journal::format::{record_span, write_record, RecordType};

use crate::batch::{self, SeqRange};
use crate::store::{Backend, Loaded, Meta};
use crate::Error;

/// Records, index and hard state held in memory.
#[derive(Clone, Debug, Default)]
pub struct MemBackend {
    /// Record `seq` at `records[seq - 1]`, padded as in a batch.
    records: Vec<Vec<u8>>,
    synced_records: usize,
    metas: Vec<Meta>,
    synced_metas: usize,
    hard_state: HardState,
    /// Number of syncs (a figure for the simulation's report).
    pub syncs: u64,
}

impl MemBackend {
    /// Every record present, `records()[seq - 1]` being record `seq`.
    pub fn records(&self) -> &[Vec<u8>] {
        &self.records
    }

    /// Appends a record the node itself produced (the leader's matching loop journaling a
    /// command) and returns its sequence number. Like a journal write it is not durable until
    /// the next [`Backend::sync`]; the replication thread proposes it to Raft later.
    pub fn append_local(&mut self, record_type: RecordType, payload: &[u8]) -> u64 {
        let seq = self.records.len() as u64 + 1;
        let mut record = vec![0u8; record_span(payload.len())];
        write_record(&mut record, seq, record_type, payload);
        self.records.push(record);
        seq
    }

    /// How many records and index entries were written but not synced: the most a crash
    /// can keep of them (see [`MemBackend::crash`]).
    pub fn unsynced(&self) -> (usize, usize) {
        (
            self.records.len() - self.synced_records,
            self.metas.len() - self.synced_metas,
        )
    }

    /// Forgets unsynced writes as a crash would, keeping the first `keep_records` unsynced
    /// records and `keep_metas` unsynced index entries (clamped), then recovers as the node
    /// does at start: index entries whose records are gone are cut, and records past the
    /// index (never proposed, or their index entry was lost) are discarded.
    pub fn crash(&mut self, keep_records: usize, keep_metas: usize) -> Loaded {
        let records = (self.synced_records + keep_records).min(self.records.len());
        self.records.truncate(records);
        let metas = (self.synced_metas + keep_metas).min(self.metas.len());
        self.metas.truncate(metas);
        self.recover()
    }

    /// What a node starting on this backend loads (see [`MemBackend::crash`]).
    pub fn recover(&mut self) -> Loaded {
        let have = self.records.len() as u64;
        let keep = self
            .metas
            .iter()
            .take_while(|m| m.range.last_seq() <= have)
            .count();
        self.metas.truncate(keep);
        let last = self.metas.last().map_or(0, |m| m.range.last_seq());
        self.records.truncate(last as usize);
        self.synced_records = self.records.len();
        self.synced_metas = self.metas.len();
        Loaded {
            metas: self.metas.clone(),
            hard_state: self.hard_state.clone(),
        }
    }
}

impl Backend for MemBackend {
    fn last_seq(&self) -> u64 {
        self.records.len() as u64
    }

    fn read(&mut self, first_seq: u64, count: u32, out: &mut Vec<u8>) -> Result<(), Error> {
        let start = usize::try_from(first_seq.saturating_sub(1))
            .map_err(|_| Error::Storage("sequence number out of range".into()))?;
        let end = start + count as usize;
        let records = self.records.get(start..end).ok_or_else(|| {
            Error::Storage(format!(
                "records {first_seq}..+{count} are not held (last {})",
                self.records.len()
            ))
        })?;
        for record in records {
            out.extend_from_slice(record);
        }
        Ok(())
    }

    fn append(&mut self, data: &[u8]) -> Result<(), Error> {
        let mut next = self.records.len() as u64 + 1;
        batch::for_each(data, |_, seq, _, record| {
            if seq != next {
                return Err(Error::Storage(format!(
                    "record {seq} appended after {}",
                    next - 1
                )));
            }
            self.records.push(record.to_vec());
            next += 1;
            Ok(())
        })
    }

    fn truncate_after(&mut self, seq: u64) -> Result<(), Error> {
        let keep = (seq as usize).min(self.records.len());
        self.records.truncate(keep);
        self.synced_records = self.synced_records.min(keep);
        Ok(())
    }

    fn save_metas(&mut self, first_index: u64, metas: &[Meta]) -> Result<(), Error> {
        let keep = (first_index.saturating_sub(1) as usize).min(self.metas.len());
        self.metas.truncate(keep);
        self.synced_metas = self.synced_metas.min(keep);
        self.metas.extend_from_slice(metas);
        Ok(())
    }

    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), Error> {
        self.hard_state = hard_state.clone();
        Ok(())
    }

    fn sync(&mut self) -> Result<(), Error> {
        self.synced_records = self.records.len();
        self.synced_metas = self.metas.len();
        self.syncs += 1;
        Ok(())
    }

    fn read_unproposed(
        &mut self,
        after_seq: u64,
        records_max: u32,
        bytes_max: usize,
        out: &mut Vec<u8>,
    ) -> Result<SeqRange, Error> {
        let start = usize::try_from(after_seq)
            .map_err(|_| Error::Storage("sequence number out of range".into()))?;
        let mut range = SeqRange {
            first_seq: after_seq + 1,
            count: 0,
        };
        let first_len = out.len();
        for record in self.records.iter().skip(start) {
            if range.count == records_max || out.len() - first_len >= bytes_max {
                break;
            }
            out.extend_from_slice(record);
            range.count += 1;
        }
        Ok(range)
    }

    fn reclaim(&mut self, keep_seq: u64) -> Result<(), Error> {
        self.truncate_after(keep_seq)
    }
}
