//! A three-node cluster of real `keel serve` processes on loopback: a client trades through
//! a `kill -9` of the leader, the killed node is restarted, and then:
//! - every order the client saw acknowledged (Order Accepted) appears exactly once in the
//!   session stream the new leader replays from sequence number 1 (nothing acknowledged was
//!   lost, nothing retried ran twice: retries reuse the order token);
//! - all three journals hold the same records: `keel journal roots` prints the same
//!   sequence number, journal root and state root for each.
//!
//! Orders: `KEEL_FAILOVER_ORDERS` (default 240).

// Tests: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cluster_support;
mod serve_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use cluster_support::{note, options, write_cluster};
use keel_client::{Client, ClientEvent, ClientOptions, OrderBuilder};
use keel_protocol::ouch::Price;
use keel_protocol::OrderToken;
use keel_testkit::cluster::Cluster;
use serve_support::PASSWORD;

fn roots(cluster: &Cluster) -> Vec<String> {
    (0..cluster.len())
        .map(|i| cluster.journal_roots(i).unwrap())
        .collect()
}

#[test]
fn a_client_trades_through_a_kill_9_of_the_leader_and_nothing_acknowledged_is_lost() {
    let orders: usize = std::env::var("KEEL_FAILOVER_ORDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(240);
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = write_cluster(dir.path(), 200, 40);
    cluster.start_all().unwrap();
    let endpoints = cluster.endpoints();
    let client = Client::connect(&endpoints, "alice", PASSWORD, options()).unwrap();
    let mut accepted: BTreeMap<String, u32> = BTreeMap::new();
    let mut killed: Option<usize> = None;
    let mut retries = 0;
    for i in 0..orders {
        if i == orders / 3 {
            let leader = client.endpoint().unwrap();
            let index = endpoints.iter().position(|e| *e == leader).unwrap();
            cluster.kill(index).unwrap();
            killed = Some(index);
        }
        let token = format!("F{i:07}");
        let order = OrderBuilder::buy("BTC-PERP", 1, Price(10_000 * (1_000 + (i % 50) as u32)))
            .unwrap()
            .token(OrderToken::new(&token).unwrap());
        let deadline = Instant::now() + Duration::from_secs(60);
        'answered: loop {
            assert!(Instant::now() < deadline, "order {token} never answered");
            if !client.wait_connected(Duration::from_secs(30)) {
                continue;
            }
            if client.submit(&order).is_err() {
                retries += 1;
                continue;
            }
            let wait_until = Instant::now() + Duration::from_secs(3);
            while Instant::now() < wait_until {
                let Some(event) = client.next_event(Duration::from_millis(100)) else {
                    continue;
                };
                if note(&event, &mut accepted).as_deref() == Some(token.as_str()) {
                    break 'answered;
                }
                if matches!(event, ClientEvent::Disconnected { .. }) {
                    break;
                }
            }
            // No answer: the connection went down with the order in flight. Retry with the
            // same token; the cluster rejects it if the first attempt was committed (and the
            // resumed stream then brings its Accepted).
            retries += 1;
        }
    }
    // Let the resumed stream catch up.
    while let Some(event) = client.next_event(Duration::from_millis(500)) {
        note(&event, &mut accepted);
    }
    client.logout().unwrap();
    let acknowledged: BTreeSet<String> = accepted.keys().cloned().collect();
    assert!(
        acknowledged.len() >= orders * 9 / 10,
        "too few acknowledged: {}",
        acknowledged.len()
    );
    for (token, count) in &accepted {
        assert_eq!(
            *count, 1,
            "{token} accepted {count} times in the live stream"
        );
    }

    // Restart the killed node; wait until all three journals agree.
    let killed = killed.unwrap();
    cluster.start(killed).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lines = roots(&cluster);
        if lines.iter().all(|l| *l == lines[0]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replicas did not converge: {lines:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The whole stream, from sequence number 1, as the cluster now serves it.
    let replay_options = ClientOptions {
        requested_sequence_number: 1,
        ..options()
    };
    let reader = Client::connect(&endpoints, "alice", PASSWORD, replay_options).unwrap();
    let mut replayed: BTreeMap<String, u32> = BTreeMap::new();
    while let Some(event) = reader.next_event(Duration::from_secs(1)) {
        note(&event, &mut replayed);
    }
    reader.logout().unwrap();
    for token in &acknowledged {
        assert_eq!(
            replayed.get(token),
            Some(&1),
            "acknowledged order {token} is not in the committed stream exactly once"
        );
    }
    for (token, count) in &replayed {
        assert_eq!(*count, 1, "{token} accepted {count} times");
    }

    for index in 0..cluster.len() {
        if let Some(node) = cluster.node_mut(index) {
            node.terminate(Duration::from_secs(20)).unwrap();
        }
    }
    let lines = roots(&cluster);
    assert!(
        lines.iter().all(|l| *l == lines[0]),
        "roots differ: {lines:?}"
    );
    eprintln!(
        "failover test: {} orders, {} acknowledged, {retries} retries; roots {}",
        orders,
        acknowledged.len(),
        lines[0].trim()
    );
}
