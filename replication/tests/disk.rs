//! The node's backend on real files: the Raft index and hard state survive a reopen, a
//! damaged index entry ends the index there (and nothing behind it comes back), and journal
//! records the index does not cover are cut at open.

// Tests: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::FileExt;

use keel_journal::format::{record_span, write_record, RecordType, RECORD_HEADER_BYTES};
use keel_journal::JournalConfig;
use keel_replication::batch::{self, SeqRange};
use keel_replication::disk::{DiskBackend, INDEX_FILE};
use keel_replication::{Backend, Meta};
use raft::prelude::HardState;

fn config() -> JournalConfig {
    JournalConfig {
        segment_size_bytes: 1 << 20,
        ..JournalConfig::default()
    }
}

/// A batch of records `first..first + count`.
fn records(first: u64, count: u64) -> Vec<u8> {
    let mut data = Vec::new();
    for seq in first..first + count {
        let payload = format!("record {seq}");
        let mut buf = vec![0u8; record_span(payload.len())];
        write_record(&mut buf, seq, RecordType::Command, payload.as_bytes());
        batch::push_record(&mut data, &buf[..RECORD_HEADER_BYTES + payload.len()]);
    }
    data
}

fn meta(term: u64, first_seq: u64, count: u32) -> Meta {
    Meta {
        term,
        range: SeqRange { first_seq, count },
    }
}

#[test]
fn index_and_hard_state_survive_and_damage_ends_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let metas = vec![meta(1, 1, 3), meta(1, 4, 0), meta(2, 4, 2), meta(2, 6, 4)];
    {
        let (mut backend, loaded) = DiskBackend::open(dir.path(), config()).unwrap();
        assert!(loaded.metas.is_empty());
        backend.append(&records(1, 9)).unwrap();
        backend.save_metas(1, &metas).unwrap();
        backend
            .save_hard_state(&HardState {
                term: 2,
                vote: 3,
                commit: 2,
                ..HardState::default()
            })
            .unwrap();
        backend.sync().unwrap();
        // Records read back as the batch they were appended as.
        let mut out = Vec::new();
        backend.read(4, 2, &mut out).unwrap();
        assert_eq!(out, records(4, 2));
    }
    {
        let (backend, loaded) = DiskBackend::open(dir.path(), config()).unwrap();
        assert_eq!(loaded.metas, metas);
        assert_eq!((loaded.hard_state.term, loaded.hard_state.vote), (2, 3));
        assert_eq!(backend.last_seq(), 9);
    }
    // Damage entry 2 (of 4): the index ends at entry 1, and the journal is cut to its last
    // record (3); entries 3 and 4 behind the damage stay gone after a rewrite of entry 2.
    let index = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join(INDEX_FILE))
        .unwrap();
    index.write_all_at(&[0xff], 32 * 2 + 3).unwrap();
    drop(index);
    {
        let (mut backend, loaded) = DiskBackend::open(dir.path(), config()).unwrap();
        assert_eq!(loaded.metas, metas[..1].to_vec());
        assert_eq!(backend.last_seq(), 3);
        backend.save_metas(2, &[meta(3, 4, 0)]).unwrap();
        backend.sync().unwrap();
    }
    let (_, loaded) = DiskBackend::open(dir.path(), config()).unwrap();
    assert_eq!(loaded.metas, vec![meta(1, 1, 3), meta(3, 4, 0)]);
}

#[test]
fn a_conflict_cuts_index_entries_for_good() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut backend, _) = DiskBackend::open(dir.path(), config()).unwrap();
        backend.append(&records(1, 6)).unwrap();
        backend
            .save_metas(1, &[meta(1, 1, 2), meta(1, 3, 2), meta(1, 5, 2)])
            .unwrap();
        backend.sync().unwrap();
        // A new leader's entry 2 replaces entries 2 and 3.
        backend.truncate_after(2).unwrap();
        backend.save_metas(2, &[meta(2, 3, 0)]).unwrap();
        backend.sync().unwrap();
    }
    let (backend, loaded) = DiskBackend::open(dir.path(), config()).unwrap();
    assert_eq!(loaded.metas, vec![meta(1, 1, 2), meta(2, 3, 0)]);
    assert_eq!(backend.last_seq(), 2);
}
