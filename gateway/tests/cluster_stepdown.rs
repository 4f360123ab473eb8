//! A deposed leader answers Raft while its state is rebuilt: three real `keel serve`
//! processes on loopback, armed through the test seam (`KEEL_FAULT=rebuild:hang:after=1`) so
//! that every rebuild after a node's start never finishes. A client journals a few hundred
//! orders through the leader; the leader is paused (SIGSTOP) until the others elect a new
//! one, and resumed: it steps down and its rebuild starts (and hangs). Then the third node
//! is killed, so the new leader can commit only with the deposed node's acknowledgements:
//! - every later order is accepted (the rebuilding node appends, syncs and acknowledges);
//! - by the same leader, in the same stint (no election churn: the client never moves, and
//!   the leader never steps down);
//! - the deposed node never finishes its rebuild nor serves, and stays up.
//!
//! And a deposed leader whose rebuild fails stops (exit 70, the fault naming
//! `keel-rebuild`) rather than hang.
//!
//! The deadlines are bounds for a failure, not timing assertions.

// Tests: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cluster_support;
mod serve_support;

use std::collections::BTreeMap;
use std::time::Duration;

use cluster_support::{options, trade, write_cluster, NODES};
use keel_client::Client;
use keel_testkit::cluster::Cluster;
use serve_support::PASSWORD;

/// Orders journaled before the step-down (several 1 MiB segments of the test cluster).
const ORDERS_BEFORE: usize = 300;
/// Orders that need the rebuilding node's acknowledgements.
const ORDERS_AFTER: usize = 30;
/// What the node logs once it follows again, with its rebuild started.
const FOLLOWING: &str = "following; state rebuilt in the background";
/// What the node logs when a rebuild finished.
const REBUILT: &str = "state rebuilt from the journal";

/// Journals `orders` orders through the leader, pauses it (SIGSTOP) until the client has
/// an order accepted by the leader the others elect, and resumes it. Returns the indexes of
/// the deposed leader and of the new one.
fn depose_leader(
    cluster: &mut Cluster,
    client: &Client,
    orders: usize,
    accepted: &mut BTreeMap<String, u32>,
) -> (usize, usize) {
    for i in 0..orders {
        trade(client, &format!("B{i:07}"), i, accepted);
    }
    let deposed = position(cluster, client);
    cluster.node(deposed).unwrap().pause().unwrap();
    trade(client, "DURING", 0, accepted);
    let leader = position(cluster, client);
    assert_ne!(leader, deposed);
    cluster.node(deposed).unwrap().resume().unwrap();
    (deposed, leader)
}

/// The index of the node the client is connected to.
fn position(cluster: &Cluster, client: &Client) -> usize {
    let endpoint = client.endpoint().unwrap();
    cluster
        .endpoints()
        .iter()
        .position(|e| *e == endpoint)
        .unwrap()
}

#[test]
fn a_deposed_leader_keeps_acknowledging_appends_while_its_state_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    // A long election timeout: once the third node is gone, a leader that lost its lease
    // to a loaded machine could only hand over to the deposed node, which can never serve
    // here; that stall would be of the test's making, not churn caused by the rebuild.
    let mut cluster =
        write_cluster(dir.path(), 1000, 100).env("KEEL_FAULT", "rebuild:hang:after=1");
    cluster.start_all().unwrap();
    let client = Client::connect(&cluster.endpoints(), "alice", PASSWORD, options()).unwrap();
    let mut accepted: BTreeMap<String, u32> = BTreeMap::new();
    let (deposed, leader) = depose_leader(&mut cluster, &client, ORDERS_BEFORE, &mut accepted);
    let node = cluster.node(deposed).unwrap();
    assert!(
        node.wait_log(FOLLOWING, Duration::from_secs(30)).is_some(),
        "the deposed leader never stepped down:\n{}",
        node.log_text()
    );
    // Only the deposed node, whose rebuild hangs, can now make a majority with the leader.
    let third = (0..NODES).find(|i| *i != deposed && *i != leader).unwrap();
    cluster.kill(third).unwrap();
    for i in 0..ORDERS_AFTER {
        trade(&client, &format!("A{i:07}"), i, &mut accepted);
    }
    assert_eq!(
        position(&cluster, &client),
        leader,
        "the client had to move"
    );
    let leader_log = cluster.node(leader).unwrap().log_text();
    assert!(!leader_log.contains("stepping down"), "{leader_log}");
    let deposed_node = cluster.node_mut(deposed).unwrap();
    assert!(deposed_node.is_running());
    let deposed_log = deposed_node.log_text();
    // Once, at its start; the step-down's rebuild is still held.
    assert_eq!(deposed_log.matches(REBUILT).count(), 1, "{deposed_log}");
    assert_eq!(
        deposed_log.matches("elected leader").count(),
        1,
        "{deposed_log}"
    );
    client.logout().unwrap();
    assert!(accepted.values().all(|count| *count == 1), "{accepted:?}");
    assert_eq!(accepted.len(), ORDERS_BEFORE + 1 + ORDERS_AFTER);
}

#[test]
fn a_deposed_leader_whose_rebuild_fails_exits() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = write_cluster(dir.path(), 300, 50).env("KEEL_FAULT", "rebuild:error:after=1");
    cluster.start_all().unwrap();
    let client = Client::connect(&cluster.endpoints(), "alice", PASSWORD, options()).unwrap();
    let mut accepted: BTreeMap<String, u32> = BTreeMap::new();
    let (deposed, _) = depose_leader(&mut cluster, &client, 10, &mut accepted);
    let node = cluster.node_mut(deposed).unwrap();
    let status = node.wait_exit(Duration::from_secs(30)).unwrap();
    let fatal = node
        .wait_log("keel serve: fatal:", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no fatal line:\n{}", node.log_text()));
    assert_eq!(status.code(), Some(70), "{fatal}");
    assert!(fatal.contains("keel-rebuild"), "{fatal}");
    client.logout().unwrap();
}
