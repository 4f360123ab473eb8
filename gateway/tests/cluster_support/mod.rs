//! What the cluster tests share: a three-node cluster of real `keel serve` processes written
//! into a directory, the client options that ride through a failover, and the bookkeeping of
//! answered order tokens.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use keel_client::{ClientEvent, ClientOptions};
use keel_protocol::ouch::OutboundMessage;
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
        connect_attempts: 20,
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
