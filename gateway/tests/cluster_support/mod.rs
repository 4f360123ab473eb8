//! What the cluster tests share: a three-node cluster of real `keel serve` processes written
//! into a directory, the client options that ride through a failover, and the bookkeeping of
//! answered order tokens.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use keel_client::{Client, ClientEvent, ClientOptions, OrderBuilder};
use keel_protocol::ouch::{OutboundMessage, Price};
use keel_protocol::OrderToken;
use keel_testkit::cluster::Cluster;
use keel_testkit::config::{user, ClusterSpec, NodeConfigBuilder};

use crate::serve_support::{keel, password_hash};

/// Nodes in the test clusters.
pub const NODES: usize = 3;

/// `NODES` nodes with the given election timeout and heartbeat, each with one instrument
/// (BTC-PERP) and alice, in `dir`; nothing started.
pub fn write_cluster(dir: &Path, election_timeout_ms: u64, heartbeat_ms: u64) -> Cluster {
    let spec = ClusterSpec::new(NODES)
        .unwrap()
        .secret("test-cluster-secret-0123")
        .timing(election_timeout_ms, heartbeat_ms);
    let base = NodeConfigBuilder::new(dir)
        .segment_size(1 << 20)
        .instrument(1, "BTC-PERP", 1)
        .user(user("alice", password_hash(), 1));
    Cluster::write(keel(), dir, spec, &base)
        .unwrap()
        .env("RUST_LOG", "info")
}

/// Client options that keep reconnecting through a failover.
pub fn options() -> ClientOptions {
    ClientOptions {
        reconnect_attempts: 100,
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        // Passes are 50 ms apart for the first second: enough for an election.
        connect_attempts: 200,
        server_timeout: Duration::from_secs(2),
        ..ClientOptions::default()
    }
}

/// Counts Accepted messages by token; returns the token an Accepted or Rejected names.
pub fn note(event: &ClientEvent, accepted: &mut BTreeMap<String, u32>) -> Option<String> {
    if let ClientEvent::Message { message, .. } = event {
        match message {
            OutboundMessage::OrderAccepted(a) => {
                let token = a.order_token.as_str().trim().to_string();
                *accepted.entry(token.clone()).or_default() += 1;
                return Some(token);
            }
            OutboundMessage::OrderRejected(r) => {
                return Some(r.order_token.as_str().trim().to_string())
            }
            _ => {}
        }
    }
    None
}

/// Submits `token` until it is answered (retrying with the same token across failovers).
// Not every test binary that includes this module trades one order at a time.
#[allow(dead_code)]
pub fn trade(client: &Client, token: &str, i: usize, accepted: &mut BTreeMap<String, u32>) {
    let order = OrderBuilder::buy("BTC-PERP", 1, Price(10_000 * (1_000 + (i % 50) as u32)))
        .unwrap()
        .token(OrderToken::new(token).unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "order {token} never answered");
        if !client.wait_connected(Duration::from_secs(30)) || client.submit(&order).is_err() {
            continue;
        }
        let wait_until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < wait_until {
            let Some(event) = client.next_event(Duration::from_millis(100)) else {
                continue;
            };
            if note(&event, accepted).as_deref() == Some(token) {
                return;
            }
            if matches!(event, ClientEvent::Disconnected { .. }) {
                break;
            }
        }
    }
}

/// Waits (up to 60 s) until every node's `keel journal roots` agree; returns that line.
// Not every test binary that includes this module restarts nodes.
#[allow(dead_code)]
pub fn converged_roots(cluster: &Cluster) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lines: Vec<String> = (0..NODES)
            .map(|i| cluster.journal_roots(i).unwrap())
            .collect();
        if lines.iter().all(|l| *l == lines[0]) {
            return lines[0].trim().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "replicas did not converge: {lines:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Reads alice's whole committed stream and checks that every order in `accepted` was
/// accepted once live and is in the stream exactly once, and nothing else is.
#[allow(dead_code)]
pub fn assert_committed_once(endpoints: &[std::net::SocketAddr], accepted: &BTreeMap<String, u32>) {
    let replay = ClientOptions {
        requested_sequence_number: 1,
        ..options()
    };
    let reader =
        Client::connect(endpoints, "alice", crate::serve_support::PASSWORD, replay).unwrap();
    let mut replayed: BTreeMap<String, u32> = BTreeMap::new();
    while let Some(event) = reader.next_event(Duration::from_secs(1)) {
        note(&event, &mut replayed);
    }
    reader.logout().unwrap();
    for (token, count) in accepted {
        assert_eq!(*count, 1, "{token} accepted {count} times live");
        assert_eq!(
            replayed.get(token),
            Some(&1),
            "acknowledged {token} not in the committed stream exactly once"
        );
    }
    assert_eq!(replayed.len(), accepted.len(), "{replayed:?}");
}

/// Starts node `index` with `fault` armed through the test seam (`KEEL_FAULT`; none:
/// unarmed).
#[allow(dead_code)]
pub fn start_armed(cluster: &mut Cluster, index: usize, fault: Option<&str>) {
    let mut launch = cluster.launch(index).unwrap();
    if let Some(fault) = fault {
        launch = launch.env("KEEL_FAULT", fault);
    }
    let node = launch.start().unwrap();
    cluster.insert(index, node).unwrap();
}
