// Tests unwrap and panic freely: a failed unwrap or an explicit panic is a failed test, which
// is exactly what we want, and it keeps the scenarios readable.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! The peer transport over real TCP on 127.0.0.1: delivery and ordering between two and three
//! nodes, a node restart, a wrong secret, and a raw client that speaks the wire format of
//! `replication/FORMAT.md` ("Peer frames") by hand to forge, replay and corrupt frames.
//!
//! No assertion depends on timing: waits only have generous deadlines so a broken transport
//! fails the test instead of hanging it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use hmac::{Hmac, Mac};
use keel_replication::transport::{
    Transport, TransportConfig, TransportError, FRAME_PAYLOAD_BYTES_MAX,
};
use keel_testkit::flood::IdleFlood;
use keel_testkit::source::connect_from;
use rand::RngCore;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const SECRET: &[u8] = b"keel-test-cluster-secret-0123456789";
const DEADLINE: Duration = Duration::from_secs(10);
/// Nothing listens on port 9 of 127.0.0.1 in a test sandbox; used until real ports are known.
const PLACEHOLDER: &str = "127.0.0.1:9";

struct Node {
    id: u64,
    transport: Transport,
    rx: Receiver<(u64, Vec<u8>)>,
    wakes: Arc<AtomicUsize>,
}

fn start_node(id: u64, peers: BTreeMap<u64, SocketAddr>, secret: &[u8]) -> Node {
    // A small inbound channel, so readers block on it and backpressure reaches the senders.
    let (tx, rx) = crossbeam_channel::bounded(256);
    let wakes = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&wakes);
    let config = TransportConfig {
        node_id: id,
        listen: "127.0.0.1:0".parse().unwrap(),
        peers,
        secret: secret.to_vec(),
    };
    let transport = Transport::start(
        config,
        tx,
        Arc::new(move || {
            counted.fetch_add(1, Ordering::Relaxed);
        }),
    )
    .unwrap();
    Node {
        id,
        transport,
        rx,
        wakes,
    }
}

/// Nodes with ids `1..=secrets.len()`, each knowing all the others at their real addresses.
fn cluster(secrets: &[&[u8]]) -> Vec<Node> {
    let ids: Vec<u64> = (1..=secrets.len() as u64).collect();
    let nodes: Vec<Node> = ids
        .iter()
        .zip(secrets)
        .map(|(&id, secret)| {
            let peers = ids
                .iter()
                .filter(|&&other| other != id)
                .map(|&other| (other, PLACEHOLDER.parse().unwrap()))
                .collect();
            start_node(id, peers, secret)
        })
        .collect();
    for node in &nodes {
        for other in &nodes {
            if other.id != node.id {
                node.transport
                    .set_peer_addr(other.id, other.transport.local_addr());
            }
        }
    }
    nodes
}

/// Payload `seq` from `from`: a header naming both, then a body whose size varies, with a
/// large one now and then so frames bigger than the writer's buffer are exercised.
fn payload(from: u64, seq: u64) -> Vec<u8> {
    let body_len = match seq % 97 {
        0 => 300_000,
        1 => 20_000,
        n => n as usize * 13,
    };
    let mut bytes = Vec::with_capacity(16 + body_len);
    bytes.extend_from_slice(&from.to_le_bytes());
    bytes.extend_from_slice(&seq.to_le_bytes());
    bytes.extend((0..body_len).map(|i| (i as u64 ^ seq) as u8));
    bytes
}

fn parse(bytes: &[u8]) -> (u64, u64) {
    let from = u64::from_le_bytes(bytes[0..8].try_into().unwrap());
    let seq = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
    assert_eq!(bytes, payload(from, seq).as_slice(), "payload corrupted");
    (from, seq)
}

fn recv(node: &Node) -> (u64, Vec<u8>) {
    match node.rx.recv_timeout(DEADLINE) {
        Ok(item) => item,
        Err(RecvTimeoutError::Timeout) => panic!(
            "node {}: nothing delivered within {DEADLINE:?}; stats {:?}",
            node.id,
            node.transport.stats()
        ),
        Err(RecvTimeoutError::Disconnected) => panic!("node {}: inbound closed", node.id),
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// Every node sends `rounds * per_round` payloads to every other node; every node must
/// receive each peer's payloads exactly once, complete and in order.
fn exchange(nodes: &[Node], first_seq: u64, rounds: u64, per_round: u64) {
    let mut next_expected: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for round in 0..rounds {
        let seqs = first_seq + round * per_round..first_seq + (round + 1) * per_round;
        for node in nodes {
            for seq in seqs.clone() {
                for peer in nodes.iter().filter(|peer| peer.id != node.id) {
                    node.transport.send(peer.id, payload(node.id, seq));
                }
            }
        }
        // Receive until every node has every peer's payloads of this round.
        for node in nodes {
            let expected_count = per_round * (nodes.len() as u64 - 1);
            for _ in 0..expected_count {
                let (from, bytes) = recv(node);
                let (claimed_from, seq) = parse(&bytes);
                assert_eq!(from, claimed_from, "payload attributed to the wrong node");
                let next = next_expected.entry((node.id, from)).or_insert(first_seq);
                assert_eq!(
                    seq, *next,
                    "node {} got {from}'s payloads out of order",
                    node.id
                );
                *next += 1;
            }
        }
    }
}

fn assert_nothing_dropped(nodes: &[Node]) {
    for node in nodes {
        let stats = node.transport.stats();
        assert_eq!(stats.dropped(), 0, "node {}: {stats:?}", node.id);
    }
}

#[test]
fn two_nodes_exchange_in_order_both_ways() {
    let nodes = cluster(&[SECRET, SECRET]);
    exchange(&nodes, 0, 4, 1500);
    assert_nothing_dropped(&nodes);
    // A payload of several MiB, like a raft snapshot chunk or a large append.
    let big: Vec<u8> = (0..5 << 20).map(|i: u32| (i % 251) as u8).collect();
    nodes[0].transport.send(2, big.clone());
    assert_eq!(recv(&nodes[1]), (1, big));
    assert_nothing_dropped(&nodes);
    for node in &nodes {
        let stats = node.transport.stats();
        assert_eq!(stats.frames_received, 4 * 1500 + u64::from(node.id == 2));
        // `wake` runs after each hand-over; the last one may trail the test's `recv`.
        wait_for("a wake per delivery", || {
            node.wakes.load(Ordering::Relaxed) as u64 >= stats.frames_received
        });
        assert_eq!(stats.outbound_connections, 1, "{stats:?}");
        assert_eq!(stats.auth_failures + stats.protocol_errors, 0, "{stats:?}");
    }
}

#[test]
fn three_nodes_exchange_in_order_all_pairs() {
    let nodes = cluster(&[SECRET, SECRET, SECRET]);
    exchange(&nodes, 0, 3, 1000);
    assert_nothing_dropped(&nodes);
}

#[test]
fn restarted_node_on_a_new_port_is_reached_again() {
    let mut nodes = cluster(&[SECRET, SECRET]);
    exchange(&nodes, 0, 1, 200);

    let old = nodes.pop().unwrap();
    let a = &nodes[0];
    old.transport.shutdown();
    // While node 2 is down, sends to it never block; they are dropped, or delivered once
    // the new address is known if the writer had not got to them yet.
    for seq in 0..100 {
        a.transport.send(2, payload(1, seq));
    }

    let restarted = start_node(2, BTreeMap::from([(1, a.transport.local_addr())]), SECRET);
    a.transport
        .set_peer_addr(2, restarted.transport.local_addr());
    // Keep sending (continuing the sequence) until one arrives; from then on every payload
    // must arrive, in order, without gaps.
    let mut seq = 100;
    let first = loop {
        a.transport.send(2, payload(1, seq));
        seq += 1;
        match restarted.rx.recv_timeout(Duration::from_millis(50)) {
            Ok((from, bytes)) => break (from, parse(&bytes).1),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => panic!("inbound closed"),
        }
        assert!(seq < 100 + 200, "restarted node never reached");
    };
    assert_eq!(first.0, 1);
    // Drain what is still in flight from the probing loop.
    let mut last = first.1;
    while last + 1 < seq {
        let (_, bytes) = recv(&restarted);
        let (_, got) = parse(&bytes);
        assert_eq!(got, last + 1, "gap or reordering after the restart");
        last = got;
    }
    // The restarted node dials node 1 afresh; node 1 replaces the dead inbound connection.
    let nodes = vec![nodes.pop().unwrap(), restarted];
    exchange(&nodes, 10_000, 2, 500);
    assert_eq!(nodes[1].transport.stats().dropped(), 0);
}

#[test]
fn peer_with_wrong_secret_delivers_nothing_and_others_keep_working() {
    let nodes = cluster(&[SECRET, SECRET, b"a-different-secret-of-enough-length"]);
    let (good, bad) = nodes.split_at(2);
    let bad = &bad[0];
    for seq in 0..50 {
        for to in [1, 2] {
            bad.transport.send(to, payload(3, seq));
        }
        for node in good {
            node.transport.send(3, payload(node.id, seq));
        }
    }
    // Each good node rejects node 3's proof, and node 3 rejects theirs.
    for node in nodes.iter() {
        wait_for("handshakes with node 3 to fail", || {
            node.transport.stats().auth_failures >= 1
        });
    }
    // The good pair still works, and nothing from node 3 is ever among what they receive.
    exchange(good, 0, 2, 300);
    for node in &nodes {
        assert!(
            node.rx.try_recv().is_err(),
            "node {} got a stray payload",
            node.id
        );
        if node.id != 3 {
            assert_eq!(node.transport.stats().frames_received, 2 * 300);
        }
    }
    assert_eq!(bad.transport.stats().frames_received, 0);
    assert_eq!(bad.transport.stats().frames_sent, 0);
}

// ----------------------------------------------------------------------------------------
// A client written from FORMAT.md alone.

struct RawPeer {
    stream: TcpStream,
    key: Vec<u8>,
    next_counter: u64,
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).unwrap();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn hello(from: u64, to: u64, nonce_d: &[u8; 16]) -> Vec<u8> {
    let mut hello = b"KEELRAFT".to_vec();
    hello.extend_from_slice(&1u32.to_le_bytes());
    hello.extend_from_slice(&from.to_le_bytes());
    hello.extend_from_slice(&to.to_le_bytes());
    hello.extend_from_slice(nonce_d);
    assert_eq!(hello.len(), 44);
    hello
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
}

/// Sends a Hello and returns the stream and the acceptor's nonce, or None when the acceptor
/// closed the connection instead of answering.
fn start_handshake(
    addr: SocketAddr,
    from: u64,
    to: u64,
) -> (TcpStream, [u8; 16], Option<[u8; 16]>) {
    let mut stream = connect(addr);
    let mut nonce_d = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut nonce_d);
    stream.write_all(&hello(from, to, &nonce_d)).unwrap();
    let mut challenge = [0u8; 28];
    if stream.read_exact(&mut challenge).is_err() {
        return (stream, nonce_d, None);
    }
    assert_eq!(&challenge[0..8], b"KEELRAFT");
    assert_eq!(challenge[8..12], 1u32.to_le_bytes());
    (stream, nonce_d, Some(challenge[12..28].try_into().unwrap()))
}

impl RawPeer {
    /// Completes a handshake as node `from` with `secret`; checks the acceptor's proof.
    fn connect(addr: SocketAddr, from: u64, to: u64, secret: &[u8]) -> RawPeer {
        let (mut stream, nonce_d, nonce_a) = start_handshake(addr, from, to);
        let nonce_a = nonce_a.expect("acceptor refused the hello");
        let key = hmac(
            secret,
            &[
                b"keel-raft-v1",
                &from.to_le_bytes(),
                &to.to_le_bytes(),
                &nonce_d,
                &nonce_a,
            ],
        );
        stream.write_all(&hmac(&key, &[b"dialer"])).unwrap();
        let mut welcome = [0u8; 32];
        stream.read_exact(&mut welcome).unwrap();
        assert_eq!(welcome, hmac(&key, &[b"acceptor"]), "acceptor proof");
        RawPeer {
            stream,
            key: key.to_vec(),
            next_counter: 1,
        }
    }

    /// The bytes of the next correctly formed frame.
    fn frame(&mut self, payload: &[u8]) -> Vec<u8> {
        let counter = self.next_counter;
        self.next_counter += 1;
        frame_with(&self.key, counter, payload)
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        // The acceptor may already have cut us off; that is what several tests expect.
        let _ = self.stream.write_all(bytes);
    }
}

fn frame_with(key: &[u8], counter: u64, payload: &[u8]) -> Vec<u8> {
    let tag = hmac(key, &[&counter.to_le_bytes(), payload]);
    let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&counter.to_le_bytes());
    frame.extend_from_slice(&tag[..16]);
    frame.extend_from_slice(payload);
    frame
}

/// Waits until the transport closes `stream` (read returns end of file or a reset). The
/// acceptor never sends anything after the handshake, so any data is a failure too.
fn assert_cut_off(stream: &mut TcpStream, what: &str) {
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => {}
        Ok(_) => panic!("{what}: the acceptor sent data"),
        Err(error) => assert!(
            !matches!(
                error.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{what}: connection not cut off within {DEADLINE:?}"
        ),
    }
}

/// Node 1 (the target) knows node 2 (a real transport) and node 3 (the raw client, which
/// holds the secret). The good pair exchanges payloads between attacks.
#[test]
fn raw_client_attacks_are_cut_off_and_good_traffic_continues() {
    let raw_id = 3;
    let target = start_node(
        1,
        BTreeMap::from([
            (2, PLACEHOLDER.parse().unwrap()),
            (raw_id, PLACEHOLDER.parse().unwrap()),
        ]),
        SECRET,
    );
    let good = start_node(
        2,
        BTreeMap::from([(1, target.transport.local_addr())]),
        SECRET,
    );
    target
        .transport
        .set_peer_addr(2, good.transport.local_addr());
    let addr = target.transport.local_addr();
    let pair = [target, good];
    let mut seq = 0;
    let mut good_traffic = |pair: &[Node; 2]| {
        exchange(pair, seq, 1, 20);
        seq += 20;
    };
    good_traffic(&pair);
    let target = &pair[0];
    let mut expected_protocol_errors = 0;
    let mut expected_auth_failures = 0;

    // Garbage instead of a Hello.
    let mut stream = connect(addr);
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: keel\r\n\r\n")
        .unwrap();
    assert_cut_off(&mut stream, "garbage");
    expected_protocol_errors += 1;
    good_traffic(&pair);

    // A right-looking Hello with a future version.
    let mut stream = connect(addr);
    let mut bad_version = hello(raw_id, 1, &[7; 16]);
    bad_version[8] = 2;
    stream.write_all(&bad_version).unwrap();
    assert_cut_off(&mut stream, "bad version");
    expected_protocol_errors += 1;

    // Hellos for another node, from an unknown node, and from the target itself.
    for (from, to) in [(raw_id, 2), (99, 1), (1, 1)] {
        let (mut stream, _, nonce_a) = start_handshake(addr, from, to);
        assert!(nonce_a.is_none(), "hello {from}->{to} was answered");
        assert_cut_off(&mut stream, "bad ids");
        expected_protocol_errors += 1;
    }

    // A wrong secret: the proof does not verify.
    let (mut stream, _, nonce_a) = start_handshake(addr, raw_id, 1);
    assert!(nonce_a.is_some());
    stream.write_all(&[0x55; 32]).unwrap();
    assert_cut_off(&mut stream, "wrong proof");
    expected_auth_failures += 1;
    good_traffic(&pair);

    // A Hello and then silence: the handshake deadline closes it.
    let mut stream = connect(addr);
    stream.write_all(&hello(raw_id, 1, &[1; 16])[..20]).unwrap();
    assert_cut_off(&mut stream, "stalled handshake");
    expected_protocol_errors += 1;

    // An authenticated peer: one good frame is delivered...
    let mut raw = RawPeer::connect(addr, raw_id, 1, SECRET);
    let captured = raw.frame(b"first");
    raw.send_raw(&captured);
    let (from, bytes) = recv(target);
    assert_eq!((from, bytes.as_slice()), (raw_id, b"first".as_slice()));
    // ...but the same frame again is a replay.
    raw.send_raw(&captured);
    assert_cut_off(&mut raw.stream, "replay on the same connection");
    expected_protocol_errors += 1;

    // The captured frame replayed as the first frame of a new connection: the counter fits,
    // but the key is new, so the tag does not verify.
    let mut raw = RawPeer::connect(addr, raw_id, 1, SECRET);
    raw.send_raw(&captured);
    assert_cut_off(&mut raw.stream, "replay on a new connection");
    expected_auth_failures += 1;
    good_traffic(&pair);

    // Every single-bit flip, in the length, the counter, the tag or the payload, is caught.
    let payload = b"a frame with one bit flipped";
    let frame_len = 28 + payload.len();
    for bit in [
        0,
        7,
        4 * 8 + 1,
        12 * 8,
        27 * 8 + 7,
        28 * 8 + 3,
        frame_len * 8 - 1,
    ] {
        let mut raw = RawPeer::connect(addr, raw_id, 1, SECRET);
        let mut frame = raw.frame(payload);
        frame[bit / 8] ^= 1 << (bit % 8);
        raw.send_raw(&frame);
        if bit < 32 {
            // A longer length waits for bytes that never come; close our side to end it.
            raw.stream.shutdown(std::net::Shutdown::Write).unwrap();
        }
        assert_cut_off(&mut raw.stream, &format!("bit {bit} flipped"));
        if bit >= 32 {
            if (4 * 8..12 * 8).contains(&bit) {
                expected_protocol_errors += 1; // counter
            } else {
                expected_auth_failures += 1; // tag or payload
            }
        }
    }
    good_traffic(&pair);

    // Lengths of zero and above the cap, the second with a tag valid for an empty payload.
    for len_bytes in [0u32, FRAME_PAYLOAD_BYTES_MAX as u32 + 1, u32::MAX] {
        let mut raw = RawPeer::connect(addr, raw_id, 1, SECRET);
        let mut frame = raw.frame(b"x");
        frame[0..4].copy_from_slice(&len_bytes.to_le_bytes());
        raw.send_raw(&frame);
        assert_cut_off(&mut raw.stream, &format!("length {len_bytes}"));
        expected_protocol_errors += 1;
    }

    // A frame whose counter skips ahead (a deleted frame).
    let mut raw = RawPeer::connect(addr, raw_id, 1, SECRET);
    let skipped = frame_with(&raw.key, 2, b"skipped");
    raw.send_raw(&skipped);
    assert_cut_off(&mut raw.stream, "counter gap");
    expected_protocol_errors += 1;
    good_traffic(&pair);

    // Nothing but "first" ever came from the raw client.
    let stats = target.transport.stats();
    assert!(target.rx.try_recv().is_err());
    assert_eq!(stats.frames_received, 1 + 6 * 20, "{stats:?}");
    // Bit flips in the length are counted as a protocol error (closed mid-frame is not), so
    // only lower bounds are exact for the whole run.
    assert!(stats.auth_failures >= expected_auth_failures, "{stats:?}");
    assert!(
        stats.protocol_errors >= expected_protocol_errors,
        "{stats:?}"
    );
    assert_eq!(pair[1].transport.stats().dropped(), 0);
}

/// A second loopback address: no peer is configured there.
const STRANGER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

fn v4(addr: SocketAddr) -> SocketAddrV4 {
    match addr {
        SocketAddr::V4(addr) => addr,
        SocketAddr::V6(_) => panic!("the tests listen on IPv4"),
    }
}

#[test]
fn connections_from_addresses_that_are_not_peers_are_closed_before_any_byte() {
    let nodes = cluster(&[SECRET, SECRET]);
    exchange(&nodes, 0, 1, 10);
    let addr = v4(nodes[0].transport.local_addr());
    let mut strangers: Vec<TcpStream> = (0..50)
        .map(|_| connect_from(STRANGER_IP, addr).unwrap())
        .collect();
    // Even a stranger speaking the protocol with the right node ids gets no Challenge.
    strangers[0].write_all(&hello(2, 1, &[7; 16])).unwrap();
    for stream in &mut strangers {
        assert_cut_off(stream, "stranger");
    }
    wait_for("strangers to be counted", || {
        nodes[0].transport.stats().inbound_refused_stranger == 50
    });
    let stats = nodes[0].transport.stats();
    assert_eq!(
        stats.inbound_evicted + stats.inbound_refused_busy,
        0,
        "{stats:?}"
    );
    exchange(&nodes, 10, 1, 100);
}

/// The attack: unauthenticated connections holding the acceptor's handshake slots
/// kept a restarted peer out. Node 1's Raft port is flooded with idle connections from the
/// peers' own address (127.0.0.1) and from a stranger's (127.0.0.2) while node 2 restarts;
/// node 2's new transport must still get its payloads through.
#[test]
fn a_restarted_peer_gets_in_while_idle_connections_flood_the_port() {
    let mut nodes = cluster(&[SECRET, SECRET]);
    exchange(&nodes, 0, 1, 10);
    let addr = v4(nodes[0].transport.local_addr());
    let flood_peer_ip = IdleFlood::start(addr, &[Ipv4Addr::LOCALHOST], 16);
    let flood_stranger = IdleFlood::start(addr, &[STRANGER_IP], 4);
    wait_for("the flood to fill the peer address's slots", || {
        nodes[0].transport.stats().inbound_evicted > 0
    });
    nodes.remove(1).transport.shutdown();
    let restarted = start_node(2, BTreeMap::from([(1, SocketAddr::V4(addr))]), SECRET);
    let deadline = Instant::now() + DEADLINE;
    let mut seq = 1_000;
    let got = loop {
        if Instant::now() >= deadline {
            break None;
        }
        restarted.transport.send(1, payload(2, seq));
        seq += 1;
        match nodes[0].rx.recv_timeout(Duration::from_millis(50)) {
            Ok((from, bytes)) => break Some((from, parse(&bytes).0)),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break None,
        }
    };
    let (opened_peer_ip, opened_stranger) = (flood_peer_ip.stop(), flood_stranger.stop());
    assert_eq!(
        got,
        Some((2, 2)),
        "the restarted peer never got in: {:?}",
        nodes[0].transport.stats()
    );
    let stats = nodes[0].transport.stats();
    eprintln!(
        "flood: {opened_peer_ip} idle connections from the peers' address, {opened_stranger} \
         from a stranger's; {stats:?}"
    );
    assert!(stats.inbound_refused_stranger > 0, "{stats:?}");
    assert!(stats.inbound_evicted > 0, "{stats:?}");
}

/// What the node does with a peer that sent an invalid raft message: its inbound
/// connection is closed, so the peer must authenticate again; traffic then resumes.
#[test]
fn a_peer_disconnected_for_misbehaving_reconnects_and_delivers_again() {
    let nodes = cluster(&[SECRET, SECRET]);
    exchange(&nodes, 0, 1, 10);
    nodes[0].transport.disconnect_inbound(2);
    // A peer with no inbound connection: nothing to close.
    nodes[0].transport.disconnect_inbound(7);
    assert_eq!(nodes[0].transport.stats().inbound_disconnected, 1);
    wait_for("node 2 to authenticate again", || {
        nodes[1].transport.send(1, payload(2, 99));
        nodes[0].transport.stats().inbound_connections >= 2
    });
    for seq in 1_000..1_100 {
        nodes[1].transport.send(1, payload(2, seq));
    }
    // After any probes still in flight, the new payloads arrive whole and in order.
    let mut expected = 1_000;
    while expected < 1_100 {
        let (from, bytes) = recv(&nodes[0]);
        let (_, seq) = parse(&bytes);
        assert_eq!(from, 2);
        if seq != 99 {
            assert_eq!(seq, expected, "gap or reordering after the reconnection");
            expected += 1;
        }
    }
    assert!(nodes[1].transport.stats().outbound_connections >= 2);
}

#[test]
fn send_never_blocks_and_counts_drops() {
    // An address where nothing listens: bind a port, then free it.
    let offline = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let node = start_node(1, BTreeMap::from([(2, offline)]), SECRET);
    // Send until the bounded queue overflows; `send` must keep returning.
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    thread::scope(|scope| {
        scope.spawn(|| {
            let mut sent = 0u64;
            let deadline = Instant::now() + DEADLINE;
            while node.transport.stats().dropped_queue_full == 0 && Instant::now() < deadline {
                for _ in 0..1000 {
                    node.transport.send(2, vec![7; 100]);
                }
                sent += 1000;
            }
            done_tx.send(sent).unwrap();
        });
        let sent = done_rx.recv_timeout(DEADLINE * 2).expect("send blocked");
        let stats = node.transport.stats();
        assert!(stats.dropped_queue_full > 0, "{stats:?}");
        // Whatever was queued is discarded as unreachable; nothing is lost uncounted.
        wait_for("all payloads to be counted as dropped", || {
            node.transport.stats().dropped() == sent
        });
    });
    // Unknown peer, empty payload, oversize payload.
    let before = node.transport.stats().dropped_invalid;
    node.transport.send(77, vec![1]);
    node.transport.send(2, Vec::new());
    node.transport.send(2, vec![0; FRAME_PAYLOAD_BYTES_MAX + 1]);
    let stats = node.transport.stats();
    assert_eq!(stats.dropped_invalid, before + 3);
    assert_eq!(stats.frames_sent, 0);
}

#[test]
fn shutdown_returns_with_connections_and_strangers_open() {
    let mut nodes = cluster(&[SECRET, SECRET]);
    exchange(&nodes, 0, 1, 50);
    let addr = nodes[0].transport.local_addr();
    let _idle = connect(addr);
    let mut half_hello = connect(addr);
    half_hello.write_all(&hello(2, 1, &[3; 16])[..30]).unwrap();
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let first = nodes.remove(0);
    thread::spawn(move || {
        first.transport.shutdown();
        done_tx.send(()).unwrap();
    });
    done_rx.recv_timeout(DEADLINE).expect("shutdown hung");
    // The survivor's sends to the stopped node are dropped, never blocked on.
    for seq in 0..10 {
        nodes[0].transport.send(1, payload(2, seq));
    }
}

#[test]
fn bad_configurations_are_refused() {
    let (tx, _rx) = crossbeam_channel::bounded(1);
    let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(|| {});
    let config = |node_id: u64, peers: &[u64], secret: &[u8]| TransportConfig {
        node_id,
        listen: "127.0.0.1:0".parse().unwrap(),
        peers: peers
            .iter()
            .map(|&id| (id, PLACEHOLDER.parse().unwrap()))
            .collect(),
        secret: secret.to_vec(),
    };
    let start = |config| Transport::start(config, tx.clone(), Arc::clone(&wake));
    assert!(matches!(
        start(config(1, &[2], b"short")),
        Err(TransportError::SecretTooShort { len_bytes: 5 })
    ));
    assert!(matches!(
        start(config(1, &[1, 2], SECRET)),
        Err(TransportError::SelfInPeers { node_id: 1 })
    ));
    assert!(matches!(
        start(config(0, &[2], SECRET)),
        Err(TransportError::ZeroNodeId)
    ));
    let debug = format!("{:?}", config(1, &[2], SECRET));
    assert!(
        !debug.contains("keel-test"),
        "secret leaked into Debug: {debug}"
    );
}
