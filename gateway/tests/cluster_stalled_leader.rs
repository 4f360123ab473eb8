//! A leader whose replication thread stalls (as behind a disk that takes seconds to sync)
//! cannot notice that its lease ran out, yet its gateway still runs: it must not accept a
//! login once another leader may have been elected. Three real `keel serve` processes, each
//! armed through the test seam to hang its replication loop while a trigger file exists
//! (`KEEL_FAULT=replication:hang:when=…`). Once the leader's thread hangs, the others elect
//! a new leader; a login at the old one is then refused with `S` (as a follower refuses it),
//! never accepted.
//!
//! The deadlines are bounds for a failure, not timing assertions.

// Tests: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cluster_support;
mod serve_support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cluster_support::{start_armed, write_cluster, NODES};
use serve_support::{Client, Packet, PASSWORD};

/// Node `index`'s trigger file.
fn trigger(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("stall-node{}", index + 1))
}

/// Logs alice in at `endpoint`: `Some(client)` if accepted, `None` if refused with `S`.
fn try_login(endpoint: SocketAddr) -> Option<Client> {
    let mut client = Client::connect(endpoint);
    match client.login("alice", PASSWORD, "", 0) {
        Packet::Accepted { .. } => Some(client),
        Packet::Rejected(b'S') => None,
        other => panic!("login at {endpoint}: {other:?}"),
    }
}

/// The first endpoint (other than `except`) that accepts alice, within `timeout`.
fn find_leader(endpoints: &[SocketAddr], except: Option<usize>, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        for (index, endpoint) in endpoints.iter().enumerate() {
            if Some(index) == except {
                continue;
            }
            if let Some(mut client) = try_login(*endpoint) {
                assert!(client.logout());
                return index;
            }
        }
        assert!(Instant::now() < deadline, "no leader within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_leader_whose_replication_stalls_refuses_logins_once_its_lease_is_over() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = write_cluster(dir.path(), 300, 50);
    for index in 0..NODES {
        let fault = format!(
            "replication:hang:when={}",
            trigger(dir.path(), index).display()
        );
        start_armed(&mut cluster, index, Some(&fault));
    }
    let endpoints = cluster.endpoints();
    let old = find_leader(&endpoints, None, Duration::from_secs(20));

    // The leader's replication loop hangs at its next turn; its gateway runs on.
    std::fs::write(trigger(dir.path(), old), b"").unwrap();
    let new = find_leader(&endpoints, Some(old), Duration::from_secs(20));

    // Another leader exists: the old one must refuse, however often it is asked.
    for _ in 0..5 {
        let refused = try_login(endpoints[old]).is_none();
        let log = cluster.node_mut(old).unwrap().log_text();
        assert!(
            refused,
            "node{} accepted a login while node{} leads:\n{log}",
            old + 1,
            new + 1
        );
    }
    let node = cluster.node_mut(old).unwrap();
    assert!(
        node.wait_log("lease has run out", Duration::from_secs(5))
            .is_some(),
        "no refusal logged:\n{}",
        node.log_text()
    );
    assert!(node.is_running(), "the stalled node exited");
    eprintln!(
        "stalled leader: node{} refused logins once node{} was elected",
        old + 1,
        new + 1
    );
}
