//! `keel journal sync-failure` and `clear-sync-failure` through the real binary: a journal
//! carrying a sync-failure record (written here as the flusher writes it, with the layout of
//! `journal/FORMAT.md`) refuses to open in `keel replay --journal`, the error names the
//! operator command, verify reports it, and clearing cuts the journal back to the last
//! durable record. The flusher writing the record on a failed sync is tested in
//! `journal/tests/disk_faults.rs` (fault injection).

// A failed unwrap or assertion in a test is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command as Process, Output, Stdio};

use keel_engine::{Command, Symbol};
use keel_journal::sync_failure::{self, SyncFailure};
use keel_node::replay;

fn keel() -> Process {
    Process::new(env!("CARGO_BIN_EXE_keel"))
}

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn journal(args: &[&str], dir: &Path) -> Output {
    keel().arg("journal").args(args).arg(dir).output().unwrap()
}

/// `keel replay --journal DIR` fed `count` instrument definitions.
fn replay_into(dir: &Path, first: u32, count: u32) -> Output {
    let mut input = Vec::new();
    for instrument in first..first + count {
        let command = Command::DefineInstrument {
            instrument,
            symbol: Symbol::new(&format!("S{instrument}")).unwrap(),
        };
        replay::write_command(&mut input, &command).unwrap();
    }
    let temp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(temp.path(), &input).unwrap();
    keel()
        .args(["replay", "--journal"])
        .arg(dir)
        .args(["--segment-size", "65536"])
        .arg(temp.path())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn last_seq(dir: &Path) -> u64 {
    let output = journal(&["verify"], dir);
    assert!(output.status.success(), "{}", describe(&output));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("last sequence number:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no last sequence number\n{}", describe(&output)))
}

#[test]
fn a_recorded_sync_failure_blocks_opening_until_cleared_back_to_the_durable_point() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("journal");
    let output = replay_into(&dir, 1, 30);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(last_seq(&dir), 30);
    let output = journal(&["sync-failure"], &dir);
    assert!(output.status.success(), "{}", describe(&output));

    let failure = SyncFailure {
        time_unix_ns: 1_700_000_000_000_000_000,
        last_durable_seq: 25,
        os_error: 5,
        message: "Input/output error (os error 5)".into(),
    };
    std::fs::write(sync_failure::path(&dir), sync_failure::encode(&failure)).unwrap();

    let output = replay_into(&dir, 31, 1);
    assert!(!output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("keel journal clear-sync-failure"),
        "{}",
        describe(&output)
    );
    let output = journal(&["sync-failure"], &dir);
    assert!(!output.status.success(), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("durable up to record 25"),
        "{}",
        describe(&output)
    );
    let output = journal(&["verify"], &dir);
    assert!(!output.status.success(), "{}", describe(&output));

    let output = journal(&["clear-sync-failure"], &dir);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("kept records up to 25, discarded 5"),
        "{}",
        describe(&output)
    );
    assert_eq!(last_seq(&dir), 25);
    let output = replay_into(&dir, 26, 2);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(last_seq(&dir), 27);
}
