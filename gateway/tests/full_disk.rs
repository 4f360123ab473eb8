//! A full data disk under a real `keel serve` (fsync): a small loop-mounted ext4 holds the
//! data directory, a filler file takes the rest of its space, and three clients stream
//! orders until the journal needs a segment the disk has no room for. Then:
//! - the node exits with status 74 and a `keel serve: fatal:` line naming the thread and
//!   the error (no space), instead of keeping its sessions open and answering nothing;
//! - every client is told End of Session or sees its connection closed; no order stays
//!   unanswered on an open connection;
//! - `keel journal verify` accepts the journal;
//! - with space again (the filler deleted), the node restarts, each client's stream from
//!   sequence number 1 begins with exactly the messages it received before (so every order
//!   it saw acknowledged is there), names no order it never sent, accepts no order twice,
//!   and new orders are answered.
//!
//! And the cluster case: in a 3-node cluster (fsync) each node's data directory is
//! its own small disk, and only the leader's fills. The leader exits with status 74 instead
//! of heartbeating on as a leader that answers nothing; another node is elected, and there
//! every client's stream from sequence number 1 begins with exactly what it received from
//! the old leader; with space again the old leader restarts and the three journals agree.
//!
//! Mounting needs root and a loop device (CI has both). Without them the test fails and says
//! why, unless `KEEL_SKIP_LOOP_MOUNT=1` is set. The deadlines are bounds for a failure, not
//! timing assertions: filling two 1 MiB journal segments takes about 15,000 orders, a few
//! seconds on an idle machine, over a minute on a loaded one (a debug cluster replicating
//! with fsync), hence the 300 s bound on the node's exit.

// A failed unwrap or assertion in a test is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod disk_support;
mod serve_support;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Orders acknowledged before the disk is filled.
const ACCEPTED_BEFORE_FILL: usize = 1_001;

use disk_support::{fill, mount_or_skip, stream_orders, stream_orders_counting, Seen};
use keel_protocol::ouch::{BuySellIndicator, OutboundMessage};
use keel_testkit::cluster::Cluster;
use keel_testkit::config::{ClusterSpec, NodeConfigBuilder};
use keel_testkit::process::Launch;
use serve_support::{enter, keel, token_of, write_config_with, Client, Node, Packet, IOC};

const SECOND: Duration = Duration::from_secs(1);
/// The sessions that stream orders.
const USERS: [&str; 3] = ["alice", "bob", "dave"];

/// Waits until journal segment 2 exists in `data_dir` (the node prepares it at start).
fn wait_second_segment(data_dir: &Path) {
    let second = data_dir.join(format!("{:016}.seg", 2));
    let deadline = Instant::now() + 20 * SECOND;
    while !second.exists() {
        assert!(Instant::now() < deadline, "segment 2 never prepared");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_full_disk_stops_the_node_and_nothing_acknowledged_is_lost() {
    let root = tempfile::tempdir().unwrap();
    let Some(mount) = mount_or_skip(&root.path().join("disk.img"), &root.path().join("mnt")) else {
        return;
    };
    let setup = write_config_with("fsync", |builder| {
        builder
            .data_dir(mount.dir.join("data"))
            .throttle(10_000_000, 10_000_000)
    });
    let data_dir = mount.dir.join("data");
    let mut node = Node(
        Launch::serve(keel(), &setup.config)
            .env("RUST_LOG", "info")
            .start()
            .unwrap(),
    );
    // The journal's first two segments exist (the second is prepared at start). Orders
    // flow and are acknowledged first (so that the check below has acknowledgements to
    // lose: flooding a node whose disk is already full can take two segments' worth of
    // orders before the first sync returns on a slow disk, and then nothing is
    // acknowledged); then the disk fills, so a later segment cannot be made.
    wait_second_segment(&data_dir);
    let addr = node.addr;
    let accepted_total = Arc::new(AtomicUsize::new(0));
    let streams: Vec<_> = USERS
        .iter()
        .map(|user| {
            let accepted_total = accepted_total.clone();
            std::thread::spawn(move || (*user, stream_orders_counting(addr, user, &accepted_total)))
        })
        .collect();
    let deadline = Instant::now() + 120 * SECOND;
    while accepted_total.load(Ordering::Relaxed) < ACCEPTED_BEFORE_FILL {
        assert!(
            Instant::now() < deadline,
            "fewer than {ACCEPTED_BEFORE_FILL} orders accepted in 120 s:\n{}",
            node.log_text()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let filler = fill(&mount.dir);
    let exit = node.wait_exit(300 * SECOND);
    let seen: Vec<(&str, Seen)> = streams.into_iter().map(|s| s.join().unwrap()).collect();
    let log = node.log_text();
    assert_eq!(exit.code(), Some(74), "exit {exit}:\n{log}");
    let fatal = node
        .wait_log("keel serve: fatal:", SECOND)
        .unwrap_or_else(|| panic!("no fatal line:\n{log}"));
    assert!(
        fatal.contains("journal failure in thread keel-matching")
            && fatal.contains("No space left on device"),
        "{fatal}"
    );
    let accepted: usize = seen.iter().map(|(_, s)| s.accepted.len()).sum();
    let told: usize = seen.iter().filter(|(_, s)| s.end_of_session).count();
    assert!(
        accepted >= ACCEPTED_BEFORE_FILL,
        "only {accepted} orders accepted before the disk filled"
    );
    let verify = Command::new(keel())
        .args(["journal", "verify"])
        .arg(&data_dir)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "keel journal verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );

    // Space again: restart, and every client finds what it saw.
    fs::remove_file(&filler).unwrap();
    let node = Node::start(&setup.config);
    for (user, before) in &seen {
        let (mut client, _) = Client::logged_in(node.addr, user, 1);
        for (i, message) in before.messages.iter().enumerate() {
            let again = client
                .message(10 * SECOND)
                .unwrap_or_else(|end| panic!("{user}: message {} after restart: {end:?}", i + 1));
            assert_eq!(&again, message, "{user}: message {} changed", i + 1);
        }
        let mut accepted = before.accepted.clone();
        for bytes in client.drain_messages(SECOND) {
            let message = OutboundMessage::decode(&bytes).unwrap();
            let token = token_of(&message);
            assert!(before.sent.contains(&token), "{user}: {token} never sent");
            if let OutboundMessage::OrderAccepted(_) = message {
                assert!(
                    accepted.insert(token.clone()),
                    "{user}: {token} accepted twice"
                );
            }
        }
        let token = format!("AFTER{}", user.to_uppercase());
        serve_support::order_round_trip(
            &mut client,
            &enter(&token, BuySellIndicator::Buy, 1, "BTC-PERP", 100, IOC),
            &token,
        );
    }
    eprintln!(
        "full disk: {accepted} orders acknowledged before the node stopped (exit 74); \
         {told} of {} sessions told End of Session, the others saw the connection close",
        USERS.len()
    );
    drop(node);
}

/// The index of the node among `endpoints` that accepts `user`'s login (the leader), and
/// the logged-in client; waits (bounded) for one.
fn leader(endpoints: &[std::net::SocketAddr], user: &str, skip: Option<usize>) -> (usize, Client) {
    let deadline = Instant::now() + 60 * SECOND;
    loop {
        assert!(Instant::now() < deadline, "no leader accepts a login");
        for (index, addr) in endpoints.iter().enumerate() {
            if Some(index) == skip || std::net::TcpStream::connect(addr).is_err() {
                continue;
            }
            let mut client = Client::connect(*addr);
            client.send_login(user, serve_support::PASSWORD, "", 1);
            if let Ok(Packet::Accepted { .. }) = client.recv(10 * SECOND) {
                return (index, client);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A 3-node cluster (fsync) in `root` whose nodes each keep their data on their own small
/// disk (`None`: skipped, see [`mount_or_skip`]). Nothing started.
fn disk_cluster(root: &Path) -> Option<(Vec<disk_support::LoopMount>, Cluster)> {
    let mut mounts = Vec::new();
    for id in 1..=3 {
        let dir = root.join(format!("node{id}"));
        let mount = mount_or_skip(&root.join(format!("disk{id}.img")), &dir)?;
        fs::remove_dir(dir.join("lost+found")).unwrap();
        mounts.push(mount);
    }
    let spec = ClusterSpec::new(3)
        .unwrap()
        .secret("test-cluster-secret-0123")
        .timing(300, 50);
    let base: NodeConfigBuilder =
        serve_support::config_builder("fsync", root).throttle(10_000_000, 10_000_000);
    let cluster = Cluster::write(keel(), root, spec, &base)
        .unwrap()
        .env("RUST_LOG", "info");
    assert_eq!(cluster.data_dirs[0], mounts[0].dir);
    Some((mounts, cluster))
}

/// Waits (bounded) until the three journals agree.
fn wait_converged(cluster: &Cluster) {
    let deadline = Instant::now() + 60 * SECOND;
    loop {
        let lines: Vec<String> = (0..3).map(|i| cluster.journal_roots(i).unwrap()).collect();
        if lines.iter().all(|l| *l == lines[0]) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replicas did not converge: {lines:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_cluster_leader_on_a_full_disk_exits_and_another_is_elected() {
    // Each node's data directory is its own small disk; only the leader's fills.
    let root = tempfile::tempdir().unwrap();
    let Some((mounts, mut cluster)) = disk_cluster(root.path()) else {
        return;
    };
    cluster.start_all().unwrap();
    let endpoints = cluster.endpoints();
    let (old, probe) = leader(&endpoints, "erin", None);
    drop(probe);
    wait_second_segment(&cluster.data_dirs[old]);
    let filler = fill(&mounts[old].dir);

    let addr = endpoints[old];
    let streams: Vec<_> = USERS
        .iter()
        .map(|user| std::thread::spawn(move || (*user, stream_orders(addr, user))))
        .collect();
    let node = cluster.node_mut(old).unwrap();
    let exit = node.wait_exit(300 * SECOND).unwrap();
    let log = node.log_text();
    assert_eq!(exit.code(), Some(74), "leader exit {exit}:\n{log}");
    let fatal = node
        .wait_log("keel serve: fatal:", SECOND)
        .unwrap_or_else(|| panic!("no fatal line:\n{log}"));
    assert!(fatal.contains("No space left on device"), "{fatal}");
    let seen: Vec<(&str, Seen)> = streams.into_iter().map(|s| s.join().unwrap()).collect();
    let accepted: usize = seen.iter().map(|(_, s)| s.accepted.len()).sum();
    assert!(
        accepted > 1000,
        "only {accepted} accepted before the disk filled"
    );

    // Another node is elected; every stream there begins with what its client saw.
    for (user, before) in &seen {
        let (new, mut client) = leader(&endpoints, user, Some(old));
        assert_ne!(new, old);
        for (i, message) in before.messages.iter().enumerate() {
            let again = client.message(10 * SECOND).unwrap_or_else(|end| {
                panic!("{user}: message {} on the new leader: {end:?}", i + 1)
            });
            assert_eq!(&again, message, "{user}: message {} changed", i + 1);
        }
        for bytes in client.drain_messages(SECOND) {
            let token = token_of(&OutboundMessage::decode(&bytes).unwrap());
            assert!(before.sent.contains(&token), "{user}: {token} never sent");
        }
        let token = format!("NEW{}", user.to_uppercase());
        serve_support::order_round_trip(
            &mut client,
            &enter(&token, BuySellIndicator::Buy, 1, "BTC-PERP", 100, IOC),
            &token,
        );
    }

    // With space again the old leader restarts and catches up.
    fs::remove_file(&filler).unwrap();
    cluster.take(old);
    cluster.start(old).unwrap();
    wait_converged(&cluster);
    eprintln!("full disk, cluster: {accepted} acknowledged by the old leader before it exited 74");
    // The nodes go before the disks they run on.
    drop(cluster);
}
