//! The flusher's minimum interval between sync rounds (`JournalConfig::sync_interval_min`):
//! without one every append gets its own round; with one, appends after a round wait for the
//! interval, unless somebody asks for durability or the journal stops — closing and dropping
//! still make everything durable at once.
//!
//! No assertion depends on how fast the machine is: the paced journals use an interval of an
//! hour, and the waits below have deadlines of a minute only so a regression fails instead of
//! hanging.

// Test helpers unwrap: a failure there is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_journal::recovery::scan;
use keel_journal::{Journal, JournalConfig, Watermarks};

/// Long enough that a paced flusher never reaches its next round within a test.
const FOREVER: Duration = Duration::from_secs(3600);
/// How long a wait that should end at once may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(60);
const RECORDS: u64 = 20;

fn open(dir: &Path, sync_interval_min: Duration) -> Journal {
    let config = JournalConfig {
        segment_size_bytes: 8192,
        sync_interval_min,
        ..JournalConfig::default()
    };
    Journal::open(dir, config).unwrap().0
}

fn append(journal: &mut Journal, seq: u64) {
    let payload = seq.to_le_bytes();
    assert_eq!(journal.appender().append_payload(&payload).unwrap(), seq);
}

/// Waits (without waking the flusher) until `seq` is durable.
fn await_durable(marks: &Watermarks, seq: u64) {
    let start = Instant::now();
    while marks.durable() < seq {
        assert!(
            start.elapsed() < DEADLINE,
            "record {seq} not durable after {DEADLINE:?} (durable {}, {} rounds)",
            marks.durable(),
            marks.sync_rounds()
        );
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// Runs `finish` on the journal in another thread and fails if it takes a minute.
fn finish_within_deadline(journal: Journal, finish: fn(Journal)) {
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        finish(journal);
        let _ = done_tx.send(());
    });
    done_rx
        .recv_timeout(DEADLINE)
        .expect("closing a paced journal must not wait for the interval");
}

/// What the records' segments say after the journal is gone: records and durable marker.
fn on_disk(dir: &Path) -> (u64, u64) {
    let scan = scan(dir, |_| {}).unwrap();
    (scan.last_seq, scan.durable_marker)
}

/// Appends record 1 to a fresh journal and waits for the round that makes it durable, then
/// appends the rest a few at a time, with pauses between (and none of them waking the
/// flusher, as a single `async` node's gateway does not).
fn append_spread(journal: &mut Journal) -> Arc<Watermarks> {
    let marks = journal.watermarks().clone();
    append(journal, 1);
    await_durable(&marks, 1);
    for seq in 2..=RECORDS {
        append(journal, seq);
        if seq % 5 == 0 {
            std::thread::sleep(Duration::from_millis(3));
        }
    }
    marks
}

#[test]
fn without_an_interval_every_append_gets_its_own_round() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = open(dir.path(), Duration::ZERO);
    let marks = journal.watermarks().clone();
    for seq in 1..=RECORDS {
        append(&mut journal, seq);
        // Nobody wakes the flusher: it finds the record by itself.
        await_durable(&marks, seq);
    }
    // Each round found exactly one new record.
    assert_eq!(marks.sync_rounds(), RECORDS);
    journal.close().unwrap();
    assert_eq!(marks.sync_rounds(), RECORDS);
    assert_eq!(on_disk(dir.path()), (RECORDS, RECORDS));
}

#[test]
fn with_an_interval_appends_after_a_round_wait_and_close_syncs_them_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = open(dir.path(), FOREVER);
    let marks = append_spread(&mut journal);
    // Give an unpaced flusher ample time to sync what was appended after the first round.
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(marks.sync_rounds(), 1, "only the first round may have run");
    assert_eq!(marks.durable(), 1);
    assert_eq!(marks.appended(), RECORDS);
    // Close asks for durability: one more round, at once, then the marker on disk.
    finish_within_deadline(journal, |journal| journal.close().unwrap());
    assert_eq!(marks.sync_rounds(), 2);
    assert_eq!(marks.durable(), RECORDS);
    assert_eq!(on_disk(dir.path()), (RECORDS, RECORDS));
}

#[test]
fn with_an_interval_drop_still_syncs_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = open(dir.path(), FOREVER);
    let marks = append_spread(&mut journal);
    assert_eq!(marks.sync_rounds(), 1);
    // Dropping stops the flusher without `wait_durable` (Drop wakes it after setting the stop
    // flag, so this checks the drop path as a whole; the flusher's own "stopping skips the
    // pause" rule is a second safeguard that no public call reaches alone).
    finish_within_deadline(journal, drop);
    assert_eq!(marks.sync_rounds(), 2);
    assert_eq!(marks.durable(), RECORDS);
    assert_eq!(on_disk(dir.path()), (RECORDS, RECORDS));
}

#[test]
fn with_an_interval_wait_durable_ends_the_pause() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = open(dir.path(), FOREVER);
    let marks = append_spread(&mut journal);
    assert_eq!(marks.sync_rounds(), 1);
    // Somebody waits for durability (as `keel serve` does once at start): no pause.
    finish_within_deadline(journal, |journal| {
        journal.wait_durable().unwrap();
        assert_eq!(journal.watermarks().durable(), RECORDS);
        assert_eq!(journal.watermarks().sync_rounds(), 2);
        journal.close().unwrap();
    });
    assert_eq!(marks.sync_rounds(), 2);
    assert_eq!(on_disk(dir.path()), (RECORDS, RECORDS));
}
