//! A cluster leader whose matching loop dies does not stay leader: three real `keel serve`
//! processes on loopback, each armed through the test seam (`KEEL_FAULT`, only a leader runs
//! a matching loop) to fail its matching loop after `FAULT_AFTER` inputs. A client trades
//! through the keel-client library. The first leader's matching loop fails; then:
//! - that process exits with status 70 and a `keel serve: fatal:` line naming
//!   `keel-matching` (so it stops heartbeating);
//! - another node is elected and answers the remaining orders (fewer than `FAULT_AFTER`, so
//!   the new leader's own seam never fires);
//! - after the dead node is restarted (without the fault), every order the client saw
//!   acknowledged is in the committed stream exactly once, and the three journals agree.
//!
//! The deadlines are bounds for a failure, not timing assertions.

// Tests: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cluster_support;
mod serve_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cluster_support::{
    assert_committed_once, converged_roots, note, options, start_armed, trade, write_cluster, NODES,
};
use keel_client::Client;
use keel_testkit::cluster::Cluster;
use serve_support::PASSWORD;

/// Inputs a leader's matching loop takes before the injected fault.
const FAULT_AFTER: usize = 25;
/// Orders sent in all: the first leader dies, the second sees fewer than `FAULT_AFTER`.
const ORDERS: usize = 40;

#[test]
fn a_leader_whose_matching_loop_dies_exits_and_another_is_elected() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = write_cluster(dir.path(), 300, 50);
    let fault = format!("matching:error:after={FAULT_AFTER}");
    for index in 0..NODES {
        start_armed(&mut cluster, index, Some(&fault));
    }
    let endpoints = cluster.endpoints();
    let client = Client::connect(&endpoints, "alice", PASSWORD, options()).unwrap();
    let first_leader = client.endpoint().unwrap();
    let mut accepted: BTreeMap<String, u32> = BTreeMap::new();
    for i in 0..ORDERS {
        trade(&client, &format!("S{i:07}"), i, &mut accepted);
    }
    let second_leader = client.endpoint().unwrap();
    while let Some(event) = client.next_event(Duration::from_millis(500)) {
        note(&event, &mut accepted);
    }
    client.logout().unwrap();
    assert_ne!(first_leader, second_leader, "the leader did not change");
    assert_eq!(
        accepted.len(),
        ORDERS,
        "every order is answered with an Accepted"
    );

    // Exactly the first leader exited, with its fault named.
    let dead = endpoints.iter().position(|e| *e == first_leader).unwrap();
    for index in 0..NODES {
        let node = cluster.node_mut(index).unwrap();
        if index == dead {
            let status = node.wait_exit(Duration::from_secs(20)).unwrap();
            let log = node.log_text();
            assert_eq!(status.code(), Some(70), "leader exit {status}:\n{log}");
            let fatal = node
                .wait_log("keel serve: fatal:", Duration::from_secs(1))
                .unwrap_or_else(|| panic!("no fatal line:\n{log}"));
            assert!(fatal.contains("keel-matching"), "{fatal}");
        } else {
            assert!(node.is_running(), "node {} stopped", index + 1);
        }
    }
    cluster.take(dead);
    cluster.start(dead).unwrap();
    let roots = converged_roots(&cluster);
    assert_committed_once(&endpoints, &accepted);
    eprintln!(
        "cluster supervision: leader {first_leader} exited 70, {second_leader} serves; roots {roots}"
    );
}

/// Waits until `count` nodes have exited; returns their indexes with status and fatal line.
fn wait_exits(cluster: &mut Cluster, count: usize) -> Vec<(usize, Option<i32>, String)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut exited = Vec::new();
    while exited.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} nodes exited",
            exited.len()
        );
        for index in 0..NODES {
            if exited.iter().any(|(i, _, _)| *i == index) {
                continue;
            }
            let node = cluster.node_mut(index).unwrap();
            if let Some(status) = node.try_status().unwrap() {
                let fatal = node
                    .wait_log("keel serve: fatal:", Duration::from_secs(1))
                    .unwrap_or_else(|| panic!("no fatal line:\n{}", node.log_text()));
                exited.push((index, status.code(), fatal));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    exited
}

/// Every node's order entry fails to open, as `fault` says. The first leader exits; the
/// two others elect one of them, which exits too; the last node alone has no majority and
/// stays a follower (and stops cleanly when told). Two deaths in a row show that each failed
/// leader stopped heartbeating and let an election happen. Restarted without the fault, the
/// cluster serves again.
fn leaders_whose_order_entry_never_opens_exit(fault: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = write_cluster(dir.path(), 300, 50);
    for index in 0..NODES {
        start_armed(&mut cluster, index, Some(fault));
    }
    let exited = wait_exits(&mut cluster, 2);
    for (index, code, fatal) in &exited {
        assert_eq!(*code, Some(70), "node {}: {fatal}", index + 1);
        assert!(fatal.contains("keel-leader"), "node {}: {fatal}", index + 1);
    }
    let alive = (0..NODES)
        .find(|i| exited.iter().all(|(e, _, _)| e != i))
        .unwrap();
    assert!(cluster.node_mut(alive).unwrap().is_running());
    // The survivor is armed too: it is stopped and all three start without the fault.
    cluster.stop(alive, Duration::from_secs(20)).unwrap();
    for (index, _, _) in &exited {
        cluster.take(*index);
    }
    cluster.start_all().unwrap();
    let endpoints = cluster.endpoints();
    let client = Client::connect(&endpoints, "alice", PASSWORD, options()).unwrap();
    let mut accepted = BTreeMap::new();
    trade(&client, "AFTER", 0, &mut accepted);
    client.logout().unwrap();
    assert_eq!(accepted.get("AFTER"), Some(&1));
}

#[test]
fn a_leader_whose_order_entry_cannot_start_exits_and_another_is_elected() {
    // As a failed bind would.
    leaders_whose_order_entry_never_opens_exit("leader:error");
}

#[test]
fn a_leader_whose_order_entry_hangs_exits_and_another_is_elected() {
    // Order entry never opens and never returns: the replication loop gives it 10 s, then
    // the node stops (the stuck thread cannot be joined: the watchdog ends the process).
    leaders_whose_order_entry_never_opens_exit("leader:hang");
}

#[test]
fn a_node_whose_replication_loop_fails_exits_and_the_cluster_serves_on() {
    // Node 3's replication loop fails after about 300 turns (a few seconds); it may be the
    // leader or a follower. Either way it exits, and the client's orders are all answered.
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = write_cluster(dir.path(), 300, 50);
    for index in 0..NODES {
        let fault = (index == 2).then_some("replication:error:after=300");
        start_armed(&mut cluster, index, fault);
    }
    let endpoints = cluster.endpoints();
    let client = Client::connect(&endpoints, "alice", PASSWORD, options()).unwrap();
    let mut accepted: BTreeMap<String, u32> = BTreeMap::new();
    let mut i = 0;
    while cluster.node_mut(2).unwrap().is_running() {
        trade(&client, &format!("R{i:07}"), i, &mut accepted);
        i += 1;
        assert!(i < 100_000, "node 3 never failed");
    }
    for j in i..i + 10 {
        trade(&client, &format!("R{j:07}"), j, &mut accepted);
    }
    client.logout().unwrap();
    let exited = wait_exits(&mut cluster, 1);
    assert_eq!(exited[0].0, 2);
    assert_eq!(exited[0].1, Some(70), "{}", exited[0].2);
    assert!(exited[0].2.contains("keel-replication"), "{}", exited[0].2);
    assert!(accepted.values().all(|count| *count == 1), "{accepted:?}");
}
