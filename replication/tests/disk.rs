//! The node's backend on real files: the Raft index and hard state survive a reopen; a torn
//! index tail above the commit index is cut (and nothing of it comes back), while damage in
//! the middle of the index or a cut that would reach the commit index refuses to start;
//! journal records the index does not cover are cut at open.

// Tests: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::FileExt;
use std::path::Path;

use keel_journal::format::{record_span, write_record, RecordType, RECORD_HEADER_BYTES};
use keel_journal::JournalConfig;
use keel_replication::batch::{self, SeqRange};
use keel_replication::disk::{DiskBackend, INDEX_FILE};
use keel_replication::{Backend, Error, IndexDamage, Meta};
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

const fn meta(term: u64, first_seq: u64, count: u32) -> Meta {
    Meta {
        term,
        range: SeqRange { first_seq, count },
    }
}

const METAS: [Meta; 4] = [meta(1, 1, 3), meta(1, 4, 0), meta(2, 4, 2), meta(2, 6, 4)];

/// A replica's files: records 1..=9 in four entries, term 2, vote 3, commit index `commit`.
fn replica_with_four_entries(dir: &Path, commit: u64) {
    let (mut backend, loaded) = DiskBackend::open(dir, config()).unwrap();
    assert!(loaded.metas.is_empty());
    backend.append(&records(1, 9)).unwrap();
    backend.save_metas(1, &METAS).unwrap();
    backend.sync().unwrap();
    backend
        .save_hard_state(&HardState {
            term: 2,
            vote: 3,
            commit,
            ..HardState::default()
        })
        .unwrap();
    // Records read back as the batch they were appended as.
    let mut out = Vec::new();
    backend.read(4, 2, &mut out).unwrap();
    assert_eq!(out, records(4, 2));
}

/// Flips one byte of the index at `offset` (entry `n` occupies bytes `32n..32n + 32`).
fn damage_index(dir: &Path, offset: u64) {
    let path = dir.join(INDEX_FILE);
    let index = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut byte = [0u8; 1];
    index.read_exact_at(&mut byte, offset).unwrap();
    index.write_all_at(&[byte[0] ^ 0x5a], offset).unwrap();
}

/// Opening must fail with `IndexDamaged` at `entry`, leaving the files as they were.
fn refused(dir: &Path) -> (u64, IndexDamage) {
    let before = std::fs::read(dir.join(INDEX_FILE)).unwrap();
    let error = match DiskBackend::open(dir, config()) {
        Ok(_) => panic!("a damaged index was accepted"),
        Err(error) => error,
    };
    let message = error.to_string();
    assert!(
        message.contains(INDEX_FILE) && message.contains("data directory"),
        "the message names neither the file nor the remedy: {message}"
    );
    assert_eq!(std::fs::read(dir.join(INDEX_FILE)).unwrap(), before);
    match error {
        Error::IndexDamaged {
            entry,
            offset,
            problem,
            ..
        } => {
            assert_eq!(offset, 32 * entry);
            (entry, problem)
        }
        other => panic!("refused for another reason: {other}"),
    }
}

#[test]
fn index_and_hard_state_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    replica_with_four_entries(dir.path(), 2);
    let (backend, loaded) = DiskBackend::open(dir.path(), config()).unwrap();
    assert_eq!(loaded.metas, METAS.to_vec());
    let hard_state = &loaded.hard_state;
    assert_eq!(
        (hard_state.term, hard_state.vote, hard_state.commit),
        (2, 3, 2)
    );
    assert_eq!(backend.last_seq(), 9);
}

/// A torn tail above the commit index is what a crash leaves: it is cut (with the journal
/// records it covered), and nothing of it comes back once those entries are rewritten.
#[test]
fn a_torn_tail_above_the_commit_index_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    replica_with_four_entries(dir.path(), 2);
    // Entries 3 and 4 torn (the commit index is 2).
    damage_index(dir.path(), 32 * 3 + 20);
    damage_index(dir.path(), 32 * 4 + 3);
    {
        let (mut backend, loaded) = DiskBackend::open(dir.path(), config()).unwrap();
        assert_eq!(loaded.metas, METAS[..2].to_vec());
        assert_eq!(backend.last_seq(), 3);
        backend.save_metas(3, &[meta(3, 4, 0)]).unwrap();
        backend.sync().unwrap();
    }
    let (_, loaded) = DiskBackend::open(dir.path(), config()).unwrap();
    assert_eq!(
        loaded.metas,
        vec![meta(1, 1, 3), meta(1, 4, 0), meta(3, 4, 0)]
    );
}

/// A bad entry followed by a valid one is not a torn write: the node refuses to start,
/// whatever the commit index, and changes nothing.
#[test]
fn damage_in_the_middle_refuses_to_start() {
    for (offset, commit) in [(32 * 2 + 3, 0), (32 * 2 + 31, 4), (32 + 9, 1), (32 * 3, 2)] {
        let dir = tempfile::tempdir().unwrap();
        replica_with_four_entries(dir.path(), commit);
        damage_index(dir.path(), offset);
        let bad = offset / 32;
        assert_eq!(
            refused(dir.path()),
            (
                bad,
                IndexDamage::Middle {
                    valid_after: bad + 1
                }
            ),
            "offset {offset}, commit {commit}"
        );
    }
}

/// A torn tail is cut only above the commit index: reaching it refuses to start.
#[test]
fn a_tail_cut_below_the_commit_index_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    replica_with_four_entries(dir.path(), 4);
    damage_index(dir.path(), 32 * 4 + 7);
    assert_eq!(refused(dir.path()), (4, IndexDamage::BelowCommit));

    // Entries 3 and 4 lost whole (zeroed, as a lost write leaves them), commit index 3.
    let dir = tempfile::tempdir().unwrap();
    replica_with_four_entries(dir.path(), 3);
    let index = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join(INDEX_FILE))
        .unwrap();
    index.write_all_at(&[0u8; 64], 32 * 3).unwrap();
    drop(index);
    assert_eq!(refused(dir.path()), (3, IndexDamage::BelowCommit));
}

/// Committed entries whose records the journal lost are not cut either: whether the
/// journal itself calls the damage corruption or a torn tail (that depends on how far its
/// durable marker got), the node refuses to start.
#[test]
fn committed_entries_whose_records_are_gone_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    replica_with_four_entries(dir.path(), 4);
    let mut hit = false;
    for file in std::fs::read_dir(dir.path()).unwrap() {
        let path = file.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("raft-") {
            continue;
        }
        let mut bytes = std::fs::read(&path).unwrap();
        if let Some(at) = bytes.windows(8).position(|w| w == b"record 9") {
            bytes[at..at + 8].fill(0);
            std::fs::write(&path, &bytes).unwrap();
            hit = true;
        }
    }
    assert!(hit, "record 9 not found in the journal");
    match DiskBackend::open(dir.path(), config()) {
        Ok((_, loaded)) => panic!("started with {} of 4 committed entries", loaded.metas.len()),
        Err(Error::IndexDamaged { entry, problem, .. }) => {
            assert_eq!(entry, 4);
            assert!(
                matches!(problem, IndexDamage::RecordsMissing { .. }),
                "{problem}"
            );
        }
        Err(Error::Journal(error)) => println!("the journal refused: {error}"),
        Err(other) => panic!("refused for another reason: {other}"),
    }
}

/// A journal that ends early (as after a lost, never-synced tail) costs the index entries
/// whose records it lost only above the commit index; at or below it, the node refuses.
#[test]
fn index_entries_past_a_short_journal_are_cut_only_above_the_commit_index() {
    let dir = tempfile::tempdir().unwrap();
    replica_with_four_entries(dir.path(), 3);
    // The journal keeps records 1..=7: entry 4 (records 6..=9) loses its records.
    keel_journal::truncate_after(dir.path(), 7).unwrap();
    {
        let (backend, loaded) = DiskBackend::open(dir.path(), config()).unwrap();
        assert_eq!(loaded.metas, METAS[..3].to_vec());
        assert_eq!(backend.last_seq(), 5);
    }

    let dir = tempfile::tempdir().unwrap();
    replica_with_four_entries(dir.path(), 4);
    keel_journal::truncate_after(dir.path(), 7).unwrap();
    assert_eq!(
        refused(dir.path()),
        (
            4,
            IndexDamage::RecordsMissing {
                journal_last_seq: 7
            }
        )
    );
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
