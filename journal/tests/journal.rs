//! Journal behaviour on real files: appending across segments, reopening, reading back,
//! torn tails and corruption.

// Test helpers unwrap: a failure there is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use keel_journal::recovery::scan;
use keel_journal::{offline_reader, repair, Error, Journal, JournalConfig};

const SEGMENT: u64 = 8192;

fn config() -> JournalConfig {
    JournalConfig {
        segment_size_bytes: SEGMENT,
        ..JournalConfig::default()
    }
}

fn payload(seq: u64) -> Vec<u8> {
    let len = 1 + (seq * 7 % 90) as usize;
    (0..len)
        .map(|i| (seq as u8).wrapping_add(i as u8))
        .collect()
}

fn write(dir: &Path, count: u64) {
    let (mut journal, _) = Journal::open(dir, config()).unwrap();
    let start = journal.appender().next_seq();
    for seq in start..start + count {
        assert_eq!(
            journal.appender().append_payload(&payload(seq)).unwrap(),
            seq
        );
    }
    journal.close().unwrap();
}

fn read_all(dir: &Path) -> Vec<(u64, Vec<u8>)> {
    let (mut reader, _) = offline_reader(dir, 1).unwrap();
    let mut out = Vec::new();
    while let Some(record) = reader.next().unwrap() {
        out.push((record.seq, record.payload.to_vec()));
    }
    out
}

fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

#[test]
fn records_survive_reopen_across_many_segments() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 500);
    write(dir.path(), 300);
    let records = read_all(dir.path());
    assert_eq!(records.len(), 800);
    for (i, (seq, data)) in records.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1);
        assert_eq!(*data, payload(*seq));
    }
    assert!(
        segment_files(dir.path()).len() > 5,
        "the test must cross segments"
    );
}

#[test]
fn live_reader_follows_the_appender() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), config()).unwrap();
    journal.appender().append_payload(&payload(1)).unwrap();
    let mut reader = journal.reader(1).unwrap();
    let mut seen = 0;
    for seq in 2..=400 {
        journal.appender().append_payload(&payload(seq)).unwrap();
        while let Some(record) = reader.next().unwrap() {
            seen += 1;
            assert_eq!(record.seq, seen);
            assert_eq!(record.payload, payload(seen).as_slice());
        }
    }
    assert_eq!(seen, 400);
    journal.wait_durable().unwrap();
    assert_eq!(journal.watermarks().durable(), 400);
    journal.close().unwrap();
}

/// Writes the first `keep` bytes of what record `seq` would look like after the journal's
/// end, as a crash in the middle of an append leaves it.
fn tear_next_record(dir: &Path, seq: u64, keep: usize) {
    let end = scan(dir, |_| {}).unwrap().end.unwrap();
    let path = dir.join(format!("{:016}.seg", end.segment));
    let mut bytes = std::fs::read(&path).unwrap();
    let mut record = vec![0u8; 256];
    let data = payload(seq);
    let span = keel_journal::format::write_record(
        &mut record,
        seq,
        keel_journal::format::RecordType::Command,
        &data,
    );
    let at = end.offset as usize;
    bytes[at..at + keep.min(span)].copy_from_slice(&record[..keep.min(span)]);
    std::fs::write(&path, &bytes).unwrap();
}

#[test]
fn torn_tail_is_truncated_and_appending_continues() {
    for keep in [1, 8, 23, 24, 30] {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 40);
        tear_next_record(dir.path(), 41, keep);
        let found = scan(dir.path(), |_| {}).unwrap();
        let torn = found
            .torn
            .expect("a partial record after the end is a torn tail");
        assert_eq!(found.last_seq, 40);
        assert!(!torn.stray_records_after);
        let (journal, recovery) = Journal::open(dir.path(), config()).unwrap();
        assert!(recovery.truncated_torn_tail);
        journal.close().unwrap();
        assert!(scan(dir.path(), |_| {}).unwrap().torn.is_none());
        write(dir.path(), 5);
        let records = read_all(dir.path());
        assert_eq!(records.len(), 45);
        assert_eq!(records[40], (41, payload(41)));
    }
}

#[test]
fn damage_to_a_durable_last_record_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 40);
    let end = scan(dir.path(), |_| {}).unwrap().end.unwrap();
    let path = dir.path().join(format!("{:016}.seg", end.segment));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[end.offset as usize - 9] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        Journal::open(dir.path(), config()),
        Err(Error::Corrupt { .. })
    ));
}

#[test]
fn corruption_followed_by_valid_records_refuses_and_repair_truncates() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 400);
    let first = segment_files(dir.path()).remove(0);
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[200] ^= 1;
    std::fs::write(&first, &bytes).unwrap();
    match Journal::open(dir.path(), config()) {
        Err(Error::Corrupt {
            segment, offset, ..
        }) => {
            assert_eq!(segment, 1);
            assert!(offset <= 200);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    let cut = repair(dir.path()).unwrap().expect("repair reports the cut");
    assert_eq!(cut.0, 1);
    let records = read_all(dir.path());
    assert!(!records.is_empty() && records.len() < 400);
    for (i, (seq, data)) in records.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1);
        assert_eq!(*data, payload(*seq));
    }
}

#[test]
fn a_zeroed_page_in_the_middle_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 100);
    let first = segment_files(dir.path()).remove(0);
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[1024..2048].fill(0);
    std::fs::write(&first, &bytes).unwrap();
    assert!(matches!(
        scan(dir.path(), |_| {}),
        Err(Error::Corrupt { segment: 1, .. })
    ));
}

#[test]
fn a_missing_middle_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 400);
    let files = segment_files(dir.path());
    std::fs::remove_file(&files[1]).unwrap();
    assert!(matches!(
        scan(dir.path(), |_| {}),
        Err(Error::Corrupt { .. })
    ));
}

#[test]
fn a_damaged_marker_slot_is_reported_and_repair_rewrites_it() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 50);
    let first = segment_files(dir.path()).remove(0);
    let mut bytes = std::fs::read(&first).unwrap();
    let slot = keel_journal::format::MARKER_SLOT_OFFSET;
    // Make both slots non-empty garbage so the damage cannot hide behind an empty slot.
    bytes[slot] ^= 0xff;
    bytes[slot + 16] ^= 0xff;
    std::fs::write(&first, &bytes).unwrap();
    let found = scan(dir.path(), |_| {}).unwrap();
    assert!(!found.damaged_markers.is_empty());
    assert!(repair(dir.path()).unwrap().is_some());
    let repaired = scan(dir.path(), |_| {}).unwrap();
    assert!(repaired.damaged_markers.is_empty());
    assert_eq!(repaired.last_seq, 50);
    assert_eq!(repaired.durable_marker, 50);
}

/// A replica copies its leader's records byte for byte, and a diverged tail can be cut and
/// rewritten: the copy's segments then hold exactly the leader's bytes.
#[test]
fn copied_records_are_byte_identical_and_a_tail_can_be_truncated() {
    let leader = tempfile::tempdir().unwrap();
    let follower = tempfile::tempdir().unwrap();
    write(leader.path(), 300);
    let (mut reader, _) = offline_reader(leader.path(), 1).unwrap();
    let (mut journal, _) = Journal::open(follower.path(), config()).unwrap();
    while let Some(record) = reader.next().unwrap() {
        let seq = journal.appender().append_copy(record.bytes).unwrap();
        assert_eq!(seq, record.seq);
    }
    // A record out of sequence is refused, not appended.
    let (mut again, _) = offline_reader(leader.path(), 5).unwrap();
    let stale = again.next().unwrap().unwrap();
    assert!(journal.appender().append_copy(stale.bytes).is_err());
    journal.close().unwrap();
    assert_eq!(read_all(follower.path()), read_all(leader.path()));
    for (a, b) in segment_files(leader.path())
        .iter()
        .zip(segment_files(follower.path()).iter())
    {
        // Past the 128-byte header (whose durable-marker slots depend on sync timing), the
        // segments are identical: same records, same padding, same seals.
        let (a, b) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
        assert!(a[128..] == b[128..], "segment bodies differ");
    }

    // Cut in the middle of a later segment, then continue appending different records.
    let removed = keel_journal::truncate_after(follower.path(), 150).unwrap();
    assert_eq!(removed, 150);
    let report = scan(follower.path(), |_| {}).unwrap();
    assert_eq!(report.last_seq, 150);
    assert!(report.durable_marker <= 150);
    let (mut journal, _) = Journal::open(follower.path(), config()).unwrap();
    assert_eq!(journal.appender().next_seq(), 151);
    journal.appender().append_payload(b"different").unwrap();
    journal.close().unwrap();
    let records = read_all(follower.path());
    assert_eq!(records.len(), 151);
    assert_eq!(records[149], read_all(leader.path())[149]);
    assert_eq!(records[150].1, b"different".to_vec());
    // Truncating everything leaves an empty journal that starts again at 1.
    keel_journal::truncate_after(follower.path(), 0).unwrap();
    let (mut journal, _) = Journal::open(follower.path(), config()).unwrap();
    assert_eq!(journal.appender().next_seq(), 1);
    journal.close().unwrap();
}

/// A prefix reader (a cluster node's rebuild thread) reads exactly records `1..=upto`, across
/// segments, while the journal stays open, keeps taking records and has its tail cut and
/// its later segments removed underneath it.
#[test]
fn a_prefix_reader_reads_its_prefix_while_the_tail_changes() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 400);
    let segments_before = segment_files(dir.path()).len();
    let upto = 250;
    let mut reader = keel_journal::Reader::open_prefix(dir.path(), upto).unwrap();
    let mut read = 0;
    // Read half, then cut everything past the prefix (removing later segments) and append
    // more, as a replication thread may while the rebuild runs.
    while read < upto / 2 {
        let record = reader.next().unwrap().unwrap();
        read += 1;
        assert_eq!(
            (record.seq, record.payload),
            (read, payload(read).as_slice())
        );
    }
    keel_journal::truncate_after(dir.path(), upto).unwrap();
    assert!(
        segment_files(dir.path()).len() < segments_before,
        "the cut must remove segments"
    );
    let (mut journal, _) = Journal::open(dir.path(), config()).unwrap();
    for _ in 0..200 {
        journal.appender().append_payload(&[0xee; 40]).unwrap();
    }
    while let Some(record) = reader.next().unwrap() {
        read += 1;
        assert_eq!(
            (record.seq, record.payload),
            (read, payload(read).as_slice())
        );
    }
    assert_eq!(read, upto, "the reader stops at its prefix");
    journal.close().unwrap();
}

/// A journal this process closed cleanly is cut and reopened without reading the records it
/// trusts again (a cluster node's step-down); the result is the journal a full scan and cut
/// give, and a torn tail after the trusted records is still found.
#[test]
fn trusting_cut_and_reopen_equal_the_full_ones() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 800);
    let full = scan(dir.path(), |_| {}).unwrap();
    assert!(full.data_segments.len() > 5, "the test must cross segments");
    assert_eq!(
        keel_journal::truncate_after_trusting(dir.path(), 600, 600).unwrap(),
        200
    );
    let cut = scan(dir.path(), |_| {}).unwrap();
    assert_eq!(
        (cut.first_seq, cut.last_seq, cut.records),
        (Some(1), 600, 600)
    );
    tear_next_record(dir.path(), 601, 30);
    let (mut journal, recovery) = Journal::open_trusting(dir.path(), config(), 600).unwrap();
    assert!(recovery.truncated_torn_tail, "the tail is still scanned");
    assert_eq!(recovery.scan.data_segments, cut.data_segments);
    assert_eq!((recovery.scan.last_seq, recovery.scan.records), (600, 600));
    assert_eq!(
        journal.appender().append_payload(&payload(601)).unwrap(),
        601
    );
    journal.close().unwrap();
    let records = read_all(dir.path());
    assert_eq!(records.len(), 601);
    assert!(records.iter().all(|(seq, data)| *data == payload(*seq)));
}
