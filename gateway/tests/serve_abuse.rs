//! Untrusted input against the real `keel serve`: malformed frames and messages, garbage, a
//! slow reader flooding orders, a burst sent in one write, and a flood of connections. Each
//! offender gets a logged disconnect; the server keeps running and a healthy session keeps
//! getting its acknowledgements throughout (measured, and reported; never a timing
//! assertion beyond a generous bound).

// A failed unwrap or assertion in a test is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod serve_support;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use keel_protocol::ouch::{BuySellIndicator, OutboundMessage};
use keel_protocol::soupbin::{encode_numeric, ClientPacket};
use keel_testkit::rng::Rng;
use serve_support::{
    enter, order_round_trip, write_config, write_config_with, Client, End, Node, Packet, GTC, IOC,
    PASSWORD,
};

const SECOND: Duration = Duration::from_secs(1);
/// The generous bound on any healthy acknowledgement while others misbehave.
const ACK_BOUND: Duration = Duration::from_secs(5);

/// A healthy session trading in the background: one resting order at a time, each answered
/// within [`ACK_BOUND`]. Returns (orders acknowledged, slowest acknowledgement).
struct Healthy {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<AtomicUsize>,
    thread: JoinHandle<(usize, Duration)>,
}

impl Healthy {
    fn start(addr: SocketAddr, user: &'static str) -> Healthy {
        let stop = Arc::new(AtomicBool::new(false));
        let (mut client, _) = Client::logged_in(addr, user, 0);
        let flag = stop.clone();
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let count = acknowledged.clone();
        let thread = std::thread::spawn(move || {
            let mut n = 0;
            let mut slowest = Duration::ZERO;
            while !flag.load(Ordering::Relaxed) {
                let token = format!("H{n}");
                // Alternate sides far apart so nothing ever trades.
                let (side, price) = if n % 2 == 0 {
                    (BuySellIndicator::Buy, 1_000)
                } else {
                    (BuySellIndicator::Sell, 9_000_000)
                };
                let took = order_round_trip(
                    &mut client,
                    &enter(&token, side, 1, "BTC-PERP", price, GTC),
                    &token,
                );
                assert!(took < ACK_BOUND, "healthy order {n} took {took:?}");
                slowest = slowest.max(took);
                n += 1;
                count.store(n, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
            (n, slowest)
        });
        Healthy {
            stop,
            acknowledged,
            thread,
        }
    }

    /// Waits until the healthy session has had `more` further orders acknowledged.
    fn wait_for(&self, more: usize) {
        let target = self.acknowledged.load(Ordering::Relaxed) + more;
        let deadline = Instant::now() + 2 * ACK_BOUND;
        while self.acknowledged.load(Ordering::Relaxed) < target {
            assert!(Instant::now() < deadline, "the healthy session stalled");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn finish(self) -> (usize, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// Sends `bytes` on a connection (logged in as `user` first if given) and checks that the
/// server disconnects it and logs why (the reason must contain `reason`).
fn expect_cut_off(node: &Node, user: Option<&str>, what: &str, bytes: &[u8], reason: &str) {
    let mut client = match user {
        Some(user) => Client::logged_in(node.addr, user, 0).0,
        None => Client::connect(node.addr),
    };
    let peer = client.local_addr();
    // The write may fail if the server already closed: that is fine.
    let _ = client.send_raw(bytes);
    let mut seen = Vec::new();
    assert!(
        client.wait_closed(5 * SECOND, &mut seen),
        "{what}: not disconnected"
    );
    // Before login nothing at all is sent; after it, heartbeats, and the answer to a valid
    // order that came before the bad bytes may still go out before the close.
    let allowed =
        |packet: &Packet| user.is_some() && matches!(packet, Packet::Heartbeat | Packet::Data(_));
    assert!(seen.iter().all(allowed), "{what}: answered {seen:?}");
    let line = node
        .wait_disconnect_logged(peer, 5 * SECOND)
        .unwrap_or_else(|| panic!("{what}: no disconnect logged\n{}", node.log_text()));
    assert!(line.contains(reason), "{what}: {line}");
}

/// Deterministic garbage.
fn garbage(len: usize, seed: u64) -> Vec<u8> {
    Rng::new(seed).bytes(len)
}

fn unsequenced(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    keel_protocol::soupbin::encode_packet(&mut out, b'U', payload).unwrap();
    out
}

#[test]
fn malformed_input_disconnects_only_the_offender() {
    let setup = write_config("async");
    let node = Node::start(&setup.config);
    let healthy = Healthy::start(node.addr, "alice");

    let mut login = Vec::new();
    login.extend_from_slice(&[0, 47, b'L']);
    login.extend_from_slice(b"bob   ");
    login.extend_from_slice(format!("{PASSWORD:<10}").as_bytes());
    login.extend_from_slice(&[b' '; 10]);
    let mut bad_seq_login = login.clone();
    bad_seq_login.extend_from_slice(b"               1x234");
    login.extend_from_slice(&encode_numeric(0));
    // SoupBinTCP 4.1's longer Login Request (a heartbeat timeout field) is not 4.0.
    let mut login_41 = login.clone();
    login_41[1] = 52;
    login_41.extend_from_slice(b"30000");

    let mut order = Vec::new();
    enter("X1", BuySellIndicator::Buy, 1, "BTC-PERP", 1_000, GTC).encode(&mut order);
    let mut bad_side = order.clone();
    bad_side[15] = b'Z';
    let mut heartbeat = Vec::new();
    ClientPacket::ClientHeartbeat
        .encode(&mut heartbeat)
        .unwrap();

    // Before login: framing errors and garbage.
    let before: &[(&str, Vec<u8>, &str)] = &[
        ("zero length", vec![0, 0], "length 0"),
        ("oversize length", vec![0xff, 0xff], "exceeds"),
        (
            "oversize length with a body",
            [vec![0xff, 0xff, b'U'], garbage(8000, 1)].concat(),
            "exceeds",
        ),
        (
            "unknown packet type",
            vec![0, 1, b'Q'],
            "unknown SoupBinTCP",
        ),
        (
            "server packet type from a client",
            vec![0, 1, b'H'],
            "unknown SoupBinTCP",
        ),
        ("SoupBinTCP 4.1 login", login_41, "length"),
        ("bad sequence number", bad_seq_login, "Requested Sequence"),
        ("garbage", garbage(4096, 7), "protocol error"),
        ("heartbeat before login", heartbeat.clone(), "before login"),
    ];
    for (what, bytes, reason) in before {
        expect_cut_off(&node, None, what, bytes, reason);
        healthy.wait_for(2);
    }

    // After login (bob, again and again): bad OUCH, bad framing, garbage.
    let after: &[(&str, Vec<u8>, &str)] = &[
        (
            "unknown OUCH message type",
            unsequenced(&[b'Q'; 20]),
            "unknown OUCH",
        ),
        ("empty OUCH message", unsequenced(&[]), "empty OUCH"),
        (
            "short Enter Order",
            unsequenced(&order[..order.len() - 1]),
            "length",
        ),
        ("bad side code", unsequenced(&bad_side), "Buy/Sell"),
        ("zero length", vec![0, 0], "length 0"),
        ("oversize length", vec![0xff, 0xff], "exceeds"),
        (
            "unknown packet type",
            vec![0, 1, b'Q'],
            "unknown SoupBinTCP",
        ),
        ("garbage", garbage(4096, 99), "protocol error"),
        (
            "valid order then garbage",
            [unsequenced(&order), garbage(512, 5)].concat(),
            "protocol error",
        ),
    ];
    for (what, bytes, reason) in after {
        expect_cut_off(&node, Some("bob"), what, bytes, reason);
        healthy.wait_for(2);
    }

    let (orders, slowest) = healthy.finish();
    eprintln!("healthy session: {orders} orders acknowledged, slowest {slowest:?}");
    assert!(orders >= 2 * (before.len() + after.len()));
    let mut node = node;
    assert!(node.is_running());
    // bob's one valid order (before the garbage) was entered and answered.
    let (mut bob, next) = Client::logged_in(node.addr, "bob", 1);
    assert_eq!(next, 1);
    let accepted: Vec<OutboundMessage> = (0..2).map(|_| bob.expect_message()).collect();
    assert!(
        matches!(accepted[1], OutboundMessage::OrderAccepted(a) if a.order_token.as_str() == "X1"),
        "{accepted:?}"
    );
}

#[test]
fn a_burst_in_one_write_is_fully_answered() {
    // The server reads in bounded chunks; whatever it leaves in the socket must still be
    // read although the client sends nothing more and just waits for its answers.
    let setup = write_config("async");
    let node = Node::start(&setup.config);
    let (mut alice, _) = Client::logged_in(node.addr, "alice", 0);
    const ORDERS: usize = 5_000;
    let mut burst = Vec::new();
    for n in 0..ORDERS {
        // IOC buys against an empty book: Order Accepted, then Order Canceled.
        enter(
            &format!("B{n}"),
            BuySellIndicator::Buy,
            1,
            "BTC-PERP",
            1_000,
            IOC,
        )
        .encode_unsequenced(&mut burst);
    }
    assert!(burst.len() > 200 * 1024);
    let started = Instant::now();
    assert!(alice.send_raw(&burst));
    let mut answered = 0;
    while answered < 2 * ORDERS {
        match alice.message(10 * SECOND) {
            Ok(_) => answered += 1,
            Err(end) => panic!("{end:?} after {answered} of {} answers", 2 * ORDERS),
        }
    }
    eprintln!("{ORDERS} orders answered in {:?}", started.elapsed());
}

#[test]
fn a_slow_reader_is_cut_off_and_others_do_not_notice() {
    let setup = write_config_with("async", |c| c.outbound_buffer_bytes(65536));
    let node = Node::start(&setup.config);
    let healthy = Healthy::start(node.addr, "alice");

    // dave, then dave again, then carol flood IOC orders (each answered by Order Accepted
    // and Order Canceled) as fast as the socket takes them and never read. carol (who has
    // cancel_on_disconnect) first leaves an order resting.
    for (round, user) in ["dave", "dave", "carol"].into_iter().enumerate() {
        let (mut flooder, _) = Client::logged_in(node.addr, user, 0);
        if user == "carol" {
            let rest = enter(
                "REST",
                BuySellIndicator::Sell,
                5,
                "BTC-PERP",
                5_000_000,
                GTC,
            );
            order_round_trip(&mut flooder, &rest, "REST");
        }
        let peer = flooder.local_addr();
        let mut stream: TcpStream = flooder.stream;
        let flood = std::thread::spawn(move || {
            let started = Instant::now();
            let mut sent = 0usize;
            let mut batch = Vec::new();
            loop {
                batch.clear();
                for _ in 0..100 {
                    let token = format!("F{round}-{sent}");
                    enter(&token, BuySellIndicator::Buy, 1, "ETH-PERP", 1_000, IOC)
                        .encode_unsequenced(&mut batch);
                    sent += 1;
                }
                // Fails once the server has cut the connection (or after the write timeout
                // if it stopped reading without doing so, which the log check then catches).
                if stream.write_all(&batch).is_err() {
                    return (sent, started.elapsed());
                }
            }
        });
        let line = node
            .wait_disconnect_logged(peer, 60 * SECOND)
            .unwrap_or_else(|| panic!("no disconnect logged\n{}", node.log_text()));
        assert!(line.contains("slow reader"), "{line}");
        let (sent, took) = flood.join().unwrap();
        eprintln!("slow reader cut off after about {sent} orders, {took:?}");
        healthy.wait_for(2);
    }

    let (orders, slowest) = healthy.finish();
    eprintln!("healthy session: {orders} orders acknowledged, slowest {slowest:?}");
    assert!(orders > 0);

    // carol's cut-off canceled her resting order: bob finds nothing to trade with...
    let (mut bob, _) = Client::logged_in(node.addr, "bob", 0);
    let take = enter("TAKE", BuySellIndicator::Buy, 5, "BTC-PERP", 5_000_000, IOC);
    order_round_trip(&mut bob, &take, "TAKE");
    let after = bob.expect_message();
    assert!(
        matches!(after, OutboundMessage::OrderCanceled(c) if c.decrement_shares == 5),
        "traded with a canceled order: {after:?}"
    );
    // ...and carol's stream ends with the cancel.
    let (mut carol, next) = Client::logged_in(node.addr, "carol", 0);
    assert!(carol.logout());
    assert!(carol.wait_closed(5 * SECOND, &mut Vec::new()));
    let (mut carol, _) = Client::logged_in(node.addr, "carol", next - 1);
    let last = carol.expect_message();
    assert!(
        matches!(last, OutboundMessage::OrderCanceled(c) if c.order_token.as_str() == "REST"),
        "{last:?}"
    );

    // The slow reader can come back and read what it missed, from where it wants.
    let (mut dave, next) = Client::logged_in(node.addr, "dave", 2);
    assert_eq!(next, 2);
    let first = dave.expect_message();
    assert!(
        matches!(first, OutboundMessage::OrderAccepted(a) if a.order_token.as_str() == "F0-0"),
        "{first:?}"
    );
}

#[test]
fn a_flood_of_connections_does_not_take_the_server_down() {
    let setup = write_config("async");
    let mut node = Node::start(&setup.config);
    let healthy = Healthy::start(node.addr, "alice");

    // From another address (an attacker): 200 connections held open at once (silent, half a
    // login, garbage, data before login), of which it may hold only its share not logged in
    // (the others are closed at once)...
    let attacker = Ipv4Addr::new(127, 0, 0, 2);
    let mut held = Vec::new();
    for n in 0..200u64 {
        let mut client = Client::connect_from(attacker, node.addr);
        match n % 4 {
            0 => {}
            1 => {
                let _ = client.send_raw(&[0, 47, b'L', b'b', b'o']);
            }
            2 => {
                let _ = client.send_raw(&garbage(64, n + 1));
            }
            _ => {
                let _ = client.send_raw(&[0, 1, b'R']);
            }
        }
        held.push(client);
    }
    // ...and 200 that connect and leave at once.
    for _ in 0..200 {
        drop(Client::connect_from(attacker, node.addr));
    }
    // A real user logs in and trades in the middle of it.
    let (mut bob, _) = Client::logged_in(node.addr, "bob", 0);
    let order = enter("B1", BuySellIndicator::Sell, 5, "BTC-PERP", 5_000_000, GTC);
    order_round_trip(&mut bob, &order, "B1");
    // A burst of 50 wrong logins at once from a third address: it may hold only its share of
    // connections not logged in, so some are closed at once; of the others, some may be
    // refused at once as busy (`S`, try again: the password checker's queue is bounded) and
    // the rest are checked and refused as not authorized (`A`).
    let mut wrong = Vec::new();
    for _ in 0..50 {
        let mut client = Client::connect_from(Ipv4Addr::new(127, 0, 0, 3), node.addr);
        client.send_login("carol", "nope", "", 0);
        wrong.push(client);
    }
    let mut not_authorized = 0;
    for client in &mut wrong {
        match client.recv(30 * SECOND) {
            Ok(Packet::Rejected(b'A')) => not_authorized += 1,
            Ok(Packet::Rejected(b'S')) | Err(End::Closed) => {}
            other => panic!("a wrong login answered {other:?}"),
        }
    }
    assert!(not_authorized > 0);
    drop(wrong);
    drop(held);
    let order = enter("B2", BuySellIndicator::Buy, 5, "BTC-PERP", 5_000_000, IOC);
    order_round_trip(&mut bob, &order, "B2");

    let (orders, slowest) = healthy.finish();
    eprintln!("healthy session: {orders} orders acknowledged, slowest {slowest:?}");
    assert!(orders > 0);
    assert!(node.is_running());
    assert!(node.count_log("connected") >= 32);
    assert!(node.count_log("holds its most connections not yet logged in") >= 1);
}

#[test]
fn a_session_over_its_message_rate_is_slowed_not_cut_off_and_others_go_first() {
    // 20 packets a second, 5 at once: alice's 40 orders in one write need at least
    // (40 - 5) / 20 = 1.75 s of the server's time; bob's one order must not wait for them.
    let setup = write_config_with("async", |c| c.throttle(20, 5));
    let node = Node::start(&setup.config);
    let (mut alice, _) = Client::logged_in(node.addr, "alice", 0);
    let (mut bob, _) = Client::logged_in(node.addr, "bob", 0);
    // Idle a while first: a full bucket must not bank more than the burst.
    std::thread::sleep(Duration::from_millis(500));
    const ORDERS: usize = 40;
    let mut burst = Vec::new();
    for n in 0..ORDERS {
        enter(
            &format!("A{n}"),
            BuySellIndicator::Buy,
            1,
            "BTC-PERP",
            1_000 + n as u32,
            GTC,
        )
        .encode_unsequenced(&mut burst);
    }
    assert!(alice.send_raw(&burst));
    assert!(bob.send(&enter(
        "B0",
        BuySellIndicator::Sell,
        1,
        "BTC-PERP",
        9_000_000,
        GTC
    )));
    let OutboundMessage::OrderAccepted(bob_accepted) = bob.expect_message() else {
        panic!("bob's first message is not his Order Accepted");
    };
    node.wait_log("session throttled", 10 * SECOND)
        .expect("the throttle is logged");

    // Every one of alice's orders is accepted, in the order sent: slowed, nothing dropped.
    let mut intake_ns = Vec::new();
    for n in 0..ORDERS {
        match alice.expect_message() {
            OutboundMessage::OrderAccepted(accepted) => {
                assert_eq!(accepted.order_token.as_str(), format!("A{n}"));
                intake_ns.push(accepted.timestamp);
            }
            other => panic!("order A{n}: {other:?}"),
        }
    }
    // The server's own intake times (Order Accepted's timestamp, ns since midnight) show the
    // rate held: at most the burst at once, then 20 a second.
    const DAY_NS: u64 = 86_400 * 1_000_000_000;
    let after_first = |ns: u64| (ns + DAY_NS - intake_ns[0]) % DAY_NS;
    let spread_ns = after_first(intake_ns[ORDERS - 1]);
    let floor_ns = (ORDERS as u64 - 5) * 1_000_000_000 / 20;
    assert!(
        spread_ns + 50_000_000 >= floor_ns,
        "40 orders taken in within {spread_ns} ns; the throttle allows no less than {floor_ns}"
    );
    // In the first 100 ms: the burst of 5 plus the 2 that 100 ms earn, however long alice
    // was logged in before she sent (idle time banks nothing beyond the burst).
    let early = intake_ns
        .iter()
        .filter(|&&ns| after_first(ns) < 100_000_000)
        .count();
    assert!(early <= 7, "{early} orders taken in within 100 ms");
    // bob's order was taken in while alice's backlog was still waiting.
    assert!(
        bob_accepted.timestamp < intake_ns[ORDERS - 1],
        "bob's order waited behind alice's throttled backlog"
    );
}

#[test]
fn orders_sent_just_before_closing_are_all_handled_even_when_throttled() {
    // alice sends 20 orders and a Logout Request in one write and closes at once; the
    // throttle (20 a second, 5 at once) holds most of them back past her close. Every one
    // must still be taken in: the close is acted on once her input is handled.
    let setup = write_config_with("async", |c| c.throttle(20, 5));
    let node = Node::start(&setup.config);
    let (mut alice, _) = Client::logged_in(node.addr, "alice", 0);
    const ORDERS: usize = 20;
    let mut bytes = Vec::new();
    for n in 0..ORDERS {
        enter(
            &format!("C{n}"),
            BuySellIndicator::Buy,
            1,
            "BTC-PERP",
            1_000,
            GTC,
        )
        .encode_unsequenced(&mut bytes);
    }
    ClientPacket::LogoutRequest.encode(&mut bytes).unwrap();
    let peer = alice.local_addr();
    assert!(alice.send_raw(&bytes));
    drop(alice);
    let line = node
        .wait_disconnect_logged(peer, 30 * SECOND)
        .expect("alice's disconnect is logged");
    assert!(line.contains("logout"), "{line}");
    // Her stream, read back from the start: every order accepted, in order.
    let (mut alice, _) = Client::logged_in(node.addr, "alice", 1);
    let mut accepted = Vec::new();
    while accepted.len() < ORDERS {
        match alice.expect_message() {
            OutboundMessage::OrderAccepted(a) => accepted.push(a.order_token.as_str().to_string()),
            OutboundMessage::SystemEvent(_) => {}
            other => panic!("{other:?}"),
        }
    }
    let expected: Vec<String> = (0..ORDERS).map(|n| format!("C{n}")).collect();
    assert_eq!(accepted, expected);
}
