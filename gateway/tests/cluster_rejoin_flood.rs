//! A restarted node rejoins its cluster while its Raft port is flooded by unauthenticated
//! connections (issue 13's Done-when). Three real `keel serve` processes on 127.0.0.1; a
//! follower is killed, the others commit orders without it, and it is restarted while idle
//! connections flood its Raft port from the peers' own address (127.0.0.1, where every node
//! of a loopback cluster dials from) and from a stranger's (127.0.0.2). It must catch up:
//! all three journals end with the same roots, and every acknowledged order is committed
//! exactly once.
//!
//! The deadlines are bounds for a failure, not timing assertions.

// Tests: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cluster_support;
mod serve_support;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use cluster_support::{assert_committed_once, converged_roots, options, trade, write_cluster};
use keel_client::Client;
use keel_testkit::flood::IdleFlood;
use serve_support::PASSWORD;

/// Flooding threads per source address.
const FLOOD_THREADS: usize = 8;

#[test]
fn a_restarted_node_rejoins_while_its_raft_port_is_flooded() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = write_cluster(dir.path(), 300, 50);
    cluster.start_all().unwrap();
    let endpoints = cluster.endpoints();
    let client = Client::connect(&endpoints, "alice", PASSWORD, options()).unwrap();
    let mut accepted: BTreeMap<String, u32> = BTreeMap::new();
    for i in 0..20 {
        trade(&client, &format!("R{i:07}"), i, &mut accepted);
    }
    let leader = client.endpoint().unwrap();
    let victim = endpoints.iter().position(|e| *e != leader).unwrap();
    cluster.kill(victim).unwrap();
    for i in 20..40 {
        trade(&client, &format!("R{i:07}"), i, &mut accepted);
    }

    let raft = SocketAddrV4::new(Ipv4Addr::LOCALHOST, cluster.spec.raft_ports[victim]);
    let flood = IdleFlood::start(
        raft,
        &[Ipv4Addr::LOCALHOST, Ipv4Addr::new(127, 0, 0, 2)],
        FLOOD_THREADS,
    );
    cluster.start(victim).unwrap();
    let opened_at_start = flood.opened();
    let deadline = Instant::now() + Duration::from_secs(20);
    while flood.opened() < opened_at_start + 100 {
        assert!(
            Instant::now() < deadline,
            "the flood never reached the restarted node"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for i in 40..60 {
        trade(&client, &format!("R{i:07}"), i, &mut accepted);
    }
    let roots = converged_roots(&cluster);
    let opened = flood.stop();
    client.logout().unwrap();
    assert_committed_once(&endpoints, &accepted);
    let log = cluster.node_mut(victim).unwrap().log_text();
    assert!(
        log.contains("rejected inbound peer connection"),
        "no refused connection logged:\n{log}"
    );
    eprintln!(
        "rejoin under flood: node{} caught up through {opened} idle connections; roots {roots}",
        victim + 1
    );
}
