//! Disk faults through the journal's fault-injection seams: a failed sync is recorded
//! durably and refuses the next open until cleared (keeping only what was durable), and
//! segment preparation retries until it succeeds.

// Test helpers unwrap: a failure there is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keel_journal::{inspect, offline_reader, sync_failure, Error, Journal, JournalConfig};

fn config() -> JournalConfig {
    JournalConfig {
        segment_size_bytes: 8192,
        ..JournalConfig::default()
    }
}

fn payload(seq: u64) -> Vec<u8> {
    vec![seq as u8; 1 + (seq % 50) as usize]
}

fn append(journal: &mut Journal, seqs: std::ops::RangeInclusive<u64>) {
    for seq in seqs {
        assert_eq!(
            journal.appender().append_payload(&payload(seq)).unwrap(),
            seq
        );
    }
}

fn records(dir: &std::path::Path) -> Vec<u64> {
    let (mut reader, _) = offline_reader(dir, 1).unwrap();
    let mut seqs = Vec::new();
    while let Some(record) = reader.next().unwrap() {
        assert_eq!(record.payload, payload(record.seq).as_slice());
        seqs.push(record.seq);
    }
    seqs
}

#[test]
fn a_failed_sync_is_recorded_refuses_reopening_and_is_cleared_back_to_the_durable_point() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), config()).unwrap();
    append(&mut journal, 1..=10);
    journal.wait_durable().unwrap();
    assert_eq!(journal.watermarks().durable(), 10);

    journal.watermarks().inject_sync_failures(1);
    append(&mut journal, 11..=15);
    // The next sync fails: waiting for durability reports it instead of hanging.
    assert!(matches!(journal.wait_durable(), Err(Error::SyncFailed)));
    let health = journal.watermarks().health();
    assert!(!health.is_ok());
    assert!(health.sync_failure.unwrap().contains("os error 5"));
    assert!(health.sync_failure_recorded);
    // Nothing past the last successful sync is reported durable, then or later.
    assert_eq!(journal.watermarks().durable(), 10);
    append(&mut journal, 16..=16);
    assert_eq!(journal.watermarks().durable(), 10);
    assert!(journal.close().is_err());

    let recorded = sync_failure::read(dir.path()).unwrap().unwrap().unwrap();
    assert_eq!(recorded.last_durable_seq, 10);
    assert_eq!(recorded.os_error, 5);
    // No durable marker on disk says more than the last successful sync.
    let markers: Vec<u64> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "seg"))
        .filter_map(|path| keel_journal::format::read_marker(&std::fs::read(path).unwrap()))
        .collect();
    // (The round that made 10 durable wrote its marker before the failing round began.)
    assert_eq!(markers.iter().max(), Some(&10), "markers {markers:?}");
    // The records after 10 are all there (the page cache has them), yet are not trusted.
    assert_eq!(records(dir.path()), (1..=16).collect::<Vec<_>>());
    match Journal::open(dir.path(), config()) {
        Err(error @ Error::SyncFailureRecorded { .. }) => {
            let message = error.to_string();
            assert!(
                message.contains("keel journal clear-sync-failure"),
                "{message}"
            );
        }
        other => panic!("opened after a sync failure: {other:?}"),
    }

    let cleared = inspect::clear_sync_failure(dir.path()).unwrap().unwrap();
    assert_eq!(cleared.last_kept_seq, 10);
    assert_eq!(cleared.discarded, 6);
    assert!(sync_failure::read(dir.path()).unwrap().is_none());
    assert!(inspect::clear_sync_failure(dir.path()).unwrap().is_none());
    let (mut journal, recovery) = Journal::open(dir.path(), config()).unwrap();
    assert_eq!(recovery.scan.last_seq, 10);
    append(&mut journal, 11..=12);
    journal.close().unwrap();
    assert_eq!(records(dir.path()), (1..=12).collect::<Vec<_>>());
}

#[test]
fn an_unreadable_sync_failure_record_still_refuses_and_clears_to_the_durable_marker() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), config()).unwrap();
    append(&mut journal, 1..=20);
    journal.close().unwrap();
    // A crash while the record was being written leaves it cut short.
    std::fs::write(sync_failure::path(dir.path()), b"KEELSY").unwrap();
    assert!(matches!(
        Journal::open(dir.path(), config()),
        Err(Error::SyncFailureRecorded { .. })
    ));
    let cleared = inspect::clear_sync_failure(dir.path()).unwrap().unwrap();
    assert!(cleared.record.is_err());
    // The clean close left the marker at 20: everything was durable.
    assert_eq!((cleared.last_kept_seq, cleared.discarded), (20, 0));
    Journal::open(dir.path(), config())
        .unwrap()
        .0
        .close()
        .unwrap();
}

#[test]
fn clearing_refuses_a_journal_that_ends_before_its_last_durable_record() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), config()).unwrap();
    append(&mut journal, 1..=5);
    journal.close().unwrap();
    let failure = sync_failure::SyncFailure {
        time_unix_ns: 1,
        last_durable_seq: 9,
        os_error: 5,
        message: "test".into(),
    };
    std::fs::write(
        sync_failure::path(dir.path()),
        sync_failure::encode(&failure),
    )
    .unwrap();
    assert!(matches!(
        inspect::clear_sync_failure(dir.path()),
        Err(Error::Corrupt { .. })
    ));
    assert!(sync_failure::read(dir.path()).unwrap().is_some());
}

#[test]
fn segment_preparation_retries_and_appends_fail_instead_of_blocking_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), config()).unwrap();
    // Every preparation fails until the fault is lifted.
    journal.watermarks().inject_prepare_failures(u32::MAX);
    let mut seq = 1;
    let error = loop {
        match journal.appender().append_payload(&payload(seq)) {
            Ok(appended) => {
                assert_eq!(appended, seq);
                seq += 1;
            }
            Err(error) => break error,
        }
    };
    // The first segment is full and no second one could be made: the append fails (it does
    // not block), and the health state says why.
    assert!(
        matches!(&error, Error::PreparerFailing(why) if why.contains("os error 5")),
        "{error}"
    );
    let health = journal.watermarks().health();
    assert!(
        health.preparer_failing_since.is_some() && !health.is_ok(),
        "{health:?}"
    );
    assert_eq!(journal.appender().next_seq(), seq);

    // The disk recovers: a retry succeeds and the same record goes in.
    journal.watermarks().inject_prepare_failures(0);
    let last = seq + 200;
    while seq <= last {
        match journal.appender().append_payload(&payload(seq)) {
            Ok(appended) => {
                assert_eq!(appended, seq);
                seq += 1;
            }
            Err(Error::PreparerFailing(_)) => std::thread::yield_now(),
            Err(other) => panic!("{other}"),
        }
    }
    assert!(journal.watermarks().health().is_ok());
    journal.close().unwrap();
    assert_eq!(records(dir.path()), (1..=last).collect::<Vec<_>>());
}
