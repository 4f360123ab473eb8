//! A failed journal sync in a real cluster leader (issue 12, "disks, the safe way"): three
//! `keel serve` processes armed through the test seam with `journal-sync` (the journal
//! flusher's next sync fails with EIO, so the real failed-sync path runs) that fires only
//! once a trigger file exists. A client trades through the keel-client library; the
//! leader's trigger is created mid-stream. Then:
//! - the leader exits with status 74 and a `keel serve: fatal:` line, and another node is
//!   elected and answers the remaining orders;
//! - restarting the failed node on its data is refused, naming
//!   `keel journal clear-sync-failure`; `keel journal sync-failure` shows the record;
//! - after `keel journal clear-sync-failure`, the node starts, catches up, and every order
//!   the client saw acknowledged is in the committed stream exactly once, with the three
//!   journals' roots equal.
//!
//! The deadlines are bounds for a failure, not timing assertions.

// Tests: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cluster_support;
mod serve_support;

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use cluster_support::{
    assert_committed_once, converged_roots, note, options, start_armed, trade, write_cluster, NODES,
};
use keel_client::Client;
use serve_support::{keel, PASSWORD};

/// Orders before the fault, and after it.
const ORDERS_BEFORE: usize = 15;
const ORDERS_AFTER: usize = 15;

/// Runs `command` to its end, killing it (and failing) after `timeout`.
fn run_bounded(mut command: Command, timeout: Duration) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait_with_output());
    });
    match done_rx.recv_timeout(timeout) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("still running after {timeout:?}: {command:?}");
        }
    }
}

fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_leader_whose_journal_sync_fails_exits_and_is_refused_until_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = write_cluster(dir.path(), 300, 50);
    let trigger = |index: usize| dir.path().join(format!("fail-sync-{}", index + 1));
    for index in 0..NODES {
        let fault = format!("journal-sync:error:when={}", trigger(index).display());
        start_armed(&mut cluster, index, Some(&fault));
    }
    let endpoints = cluster.endpoints();
    let client = Client::connect(&endpoints, "alice", PASSWORD, options()).unwrap();
    let mut accepted: BTreeMap<String, u32> = BTreeMap::new();
    for i in 0..ORDERS_BEFORE {
        trade(&client, &format!("B{i:07}"), i, &mut accepted);
    }
    let first_leader = client.endpoint().unwrap();
    let failed = endpoints.iter().position(|e| *e == first_leader).unwrap();
    std::fs::write(trigger(failed), b"fire").unwrap();
    for i in 0..ORDERS_AFTER {
        trade(
            &client,
            &format!("A{i:07}"),
            ORDERS_BEFORE + i,
            &mut accepted,
        );
    }
    let second_leader = client.endpoint().unwrap();
    while let Some(event) = client.next_event(Duration::from_millis(500)) {
        note(&event, &mut accepted);
    }
    client.logout().unwrap();
    assert_ne!(first_leader, second_leader, "the leader did not change");
    assert_eq!(accepted.len(), ORDERS_BEFORE + ORDERS_AFTER);

    // The leader stopped with the journal's status and a fatal line; the others run on.
    let node = cluster.node_mut(failed).unwrap();
    let status = node.wait_exit(Duration::from_secs(30)).unwrap();
    let log = node.log_text();
    assert_eq!(status.code(), Some(74), "exit {status}:\n{log}");
    assert!(
        node.wait_log("keel serve: fatal:", Duration::from_secs(1))
            .is_some(),
        "no fatal line:\n{log}"
    );
    for index in (0..NODES).filter(|i| *i != failed) {
        assert!(cluster.node_mut(index).unwrap().is_running());
    }
    cluster.take(failed);

    // Its data is refused until an operator clears the record.
    let data_dir = cluster.data_dirs[failed].clone();
    let mut serve = Command::new(keel());
    serve
        .arg("serve")
        .arg("--config")
        .arg(&cluster.configs[failed]);
    let refused = run_bounded(serve, Duration::from_secs(30));
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("clear-sync-failure"),
        "the refusal does not name the command:\n{}",
        text(&refused)
    );
    let mut show = Command::new(keel());
    show.args(["journal", "sync-failure"]).arg(&data_dir);
    let shown = run_bounded(show, Duration::from_secs(30));
    let shown_text = text(&shown);
    assert!(shown_text.contains("sync"), "{shown_text}");
    let mut clear = Command::new(keel());
    clear.args(["journal", "clear-sync-failure"]).arg(&data_dir);
    let cleared = run_bounded(clear, Duration::from_secs(30));
    assert!(cleared.status.success(), "{}", text(&cleared));

    // Cleared, it starts (unarmed), catches up, and the replicas agree.
    cluster.start(failed).unwrap();
    let roots = converged_roots(&cluster);

    // Every acknowledged order is in the committed stream exactly once.
    assert_committed_once(&endpoints, &accepted);
    eprintln!(
        "cluster sync failure: {first_leader} exited 74, refused until cleared; roots {roots}"
    );
}
