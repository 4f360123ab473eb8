//! Truncation killed for real: a child process runs `truncate_after` on a real journal and
//! aborts (SIGABRT, no unwinding, no cleanup) right after step k, for every k; the parent
//! then opens the journal as a restarting node would. The page cache survives an abort, so
//! this checks the real code on real files, not lost writes (the storage simulation,
//! `truncation_survives_a_crash_at_every_step`, models those).

// Test helpers unwrap: a failure there is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use keel_journal::{offline_reader, truncate_after_with_steps, Journal, JournalConfig};

const CHILD_DIR: &str = "KEEL_TRUNCATION_CHILD_DIR";
const CHILD_STEP: &str = "KEEL_TRUNCATION_CHILD_STEP";
const LAST: u64 = 300;
const LAST_KEPT: u64 = 40;
/// The child's exit code when the cut completed before the step it was to die at.
const FINISHED_EXIT_CODE: i32 = 3;

fn config() -> JournalConfig {
    JournalConfig {
        segment_size_bytes: 4096,
        ..JournalConfig::default()
    }
}

fn payload(seq: u64) -> Vec<u8> {
    vec![seq as u8; 1 + (seq % 70) as usize]
}

/// A closed journal of `LAST` records over many segments, plus snapshot stand-ins on both
/// sides of the cut.
fn build(dir: &Path) {
    let (mut journal, _) = Journal::open(dir, config()).unwrap();
    for seq in 1..=LAST {
        journal.appender().append_payload(&payload(seq)).unwrap();
    }
    journal.close().unwrap();
    for seq in [LAST_KEPT - 10, LAST_KEPT + 100] {
        let name = keel_journal::snapshot::snapshot_file_name(seq);
        std::fs::write(dir.join(name), b"stand-in").unwrap();
    }
}

#[test]
fn truncation_killed_after_every_step_reopens() {
    if let (Ok(dir), Ok(step)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_STEP)) {
        // The child: cut, and die right after step `step`.
        let abort_at: usize = step.parse().unwrap();
        let mut done = 0;
        truncate_after_with_steps(Path::new(&dir), LAST_KEPT, &mut |_| {
            done += 1;
            if done == abort_at {
                std::process::abort();
            }
        })
        .unwrap();
        // Fewer steps than `abort_at` (how many segments carry a marker depends on when the
        // flusher's rounds ran): the cut completed.
        std::process::exit(FINISHED_EXIT_CODE);
    }
    let mut killed = 0;
    for abort_at in 1.. {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path());
        let status = Command::new(std::env::current_exe().unwrap())
            .args(["truncation_killed_after_every_step_reopens", "--exact"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_STEP, abort_at.to_string())
            .status()
            .unwrap();
        let finished = status.code() == Some(FINISHED_EXIT_CODE);
        assert!(
            finished || !status.success(),
            "step {abort_at}: the child neither died nor finished: {status}"
        );
        let (journal, recovery) = Journal::open(dir.path(), config())
            .unwrap_or_else(|e| panic!("step {abort_at}: refused after the kill: {e}"));
        journal.close().unwrap();
        assert!(
            (LAST_KEPT..=LAST).contains(&recovery.scan.last_seq),
            "step {abort_at}"
        );
        keel_journal::truncate_after(dir.path(), LAST_KEPT).unwrap();
        let (mut reader, scan) = offline_reader(dir.path(), 1).unwrap();
        assert_eq!(scan.last_seq, LAST_KEPT, "step {abort_at}");
        let mut seq = 0;
        while let Some(record) = reader.next().unwrap() {
            seq += 1;
            assert_eq!(record.payload, payload(seq).as_slice(), "step {abort_at}");
        }
        assert_eq!(seq, LAST_KEPT, "step {abort_at}");
        let snapshots = keel_journal::snapshot::list_snapshots(dir.path()).unwrap();
        assert_eq!(snapshots, vec![LAST_KEPT - 10], "step {abort_at}");
        if finished {
            break;
        }
        killed += 1;
    }
    // Markers in at least one segment, a snapshot, the tail, and later segments.
    assert!(killed >= 4, "too few steps to be interesting: {killed}");
}
