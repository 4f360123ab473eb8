//! SoupBinTCP session rules against the real `keel serve`: logins (wrong password, unknown
//! user, rate limiting, another session, a user logged in twice), data before login, a second
//! login on a live connection, logout, resuming from a sequence number, server heartbeats,
//! the 15 s client timeout (also for half-open connections and truncated frames) and the
//! login deadline, configured to 15 s there (a Login Request trickled byte by byte).
//!
//! The timeout test takes about 17 s by nature; the other tests of this file run beside it
//! (the default two test threads), so the file takes about as long as that one test. It is
//! named to sort first, so that libtest starts it first.

// A failed unwrap or assertion in a test is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod serve_support;

use std::time::{Duration, Instant};

use keel_protocol::ouch::{
    BuySellIndicator, CancelOrder, DisplayType, EventCode, InboundMessage,
    IntermarketSweepEligibility, ModifyOrder, OutboundMessage, Price, ReplaceOrder, TimeInForce,
};
use keel_protocol::soupbin::{encode_numeric, ClientPacket};
use keel_protocol::OrderToken;
use serve_support::{
    enter, order_round_trip, write_config, write_config_with, Client, End, Node, Packet, GTC, IOC,
    PASSWORD,
};

const SECOND: Duration = Duration::from_secs(1);

fn buy(token: &str) -> InboundMessage {
    enter(token, BuySellIndicator::Buy, 10, "BTC-PERP", 1_000_000, GTC)
}

/// Logs in `user` with `password` on a fresh connection and returns the answer, checking
/// that a rejection is followed by the server closing the connection.
fn try_login(node: &Node, user: &str, password: &str, session: &str) -> (Client, Packet) {
    let mut client = Client::connect(node.addr);
    let answer = client.login(user, password, session, 0);
    if let Packet::Rejected(_) = answer {
        let mut seen = Vec::new();
        assert!(
            client.wait_closed(5 * SECOND, &mut seen),
            "{user}: still open after Login Rejected"
        );
        assert!(
            seen.is_empty(),
            "{user}: sent after the rejection: {seen:?}"
        );
    }
    (client, answer)
}

#[test]
fn logins_are_authenticated_and_rate_limited() {
    let setup = write_config("async");
    let node = Node::start(&setup.config);

    // bob is logged in throughout and keeps being served.
    let (mut bob, _) = Client::logged_in(node.addr, "bob", 0);
    order_round_trip(&mut bob, &buy("B1"), "B1");

    // Wrong password, unknown user: not authorized.
    assert_eq!(
        try_login(&node, "alice", "wrong", "").1,
        Packet::Rejected(b'A')
    );
    assert_eq!(
        try_login(&node, "zed", PASSWORD, "").1,
        Packet::Rejected(b'A')
    );
    // A blank password never matches.
    assert_eq!(try_login(&node, "alice", "", "").1, Packet::Rejected(b'A'));

    // Another session than the current one: session not available.
    assert_eq!(
        try_login(&node, "alice", PASSWORD, "OTHERSESS").1,
        Packet::Rejected(b'S')
    );
    // The current session named explicitly is fine (as is blank, used everywhere else).
    let (mut alice, answer) = try_login(&node, "alice", PASSWORD, &node.session);
    assert_eq!(
        answer,
        Packet::Accepted {
            session: node.session.clone(),
            next: 2
        }
    );
    // User names are case-insensitive: "ALICE" is alice, already logged in.
    assert_eq!(
        try_login(&node, "ALICE", PASSWORD, "").1,
        Packet::Rejected(b'S')
    );
    // The same user twice: the second gets "session not available"; the first is untouched.
    assert_eq!(
        try_login(&node, "bob", PASSWORD, "").1,
        Packet::Rejected(b'S')
    );
    order_round_trip(&mut bob, &buy("B2"), "B2");
    order_round_trip(&mut alice, &buy("A1"), "A1");

    // Five failures for dave from this address, then even the right password is refused
    // from it for a second (the next attempts lock it out twice as long each; the rules'
    // unit tests follow that; `serve_hostile` shows other addresses are not affected).
    for attempt in 0..5 {
        let (_, answer) = try_login(&node, "dave", &format!("bad{attempt}"), "");
        assert_eq!(answer, Packet::Rejected(b'A'), "attempt {attempt}");
    }
    let started = Instant::now();
    assert_eq!(
        try_login(&node, "DAVE", PASSWORD, "").1,
        Packet::Rejected(b'A')
    );
    // Refused without checking the password, after as long as a check takes.
    eprintln!("locked-out login answered in {:?}", started.elapsed());

    // Others are not affected: bob keeps trading, erin logs in.
    order_round_trip(&mut bob, &buy("B3"), "B3");
    let (_erin, _) = Client::logged_in(node.addr, "erin", 0);

    // The specification left-pads the session name in Login Accepted but does not say how
    // a client pads its request; a client that left-justifies the name (as Alpha fields
    // are) must still reach the current session.
    let mut raw = vec![0, 47, b'L'];
    raw.extend_from_slice(b"carol ");
    raw.extend_from_slice(format!("{PASSWORD:<10}").as_bytes());
    raw.extend_from_slice(format!("{:<10}", node.session).as_bytes());
    raw.extend_from_slice(&encode_numeric(1));
    assert_eq!(raw.len(), 49);
    let mut carol = Client::connect(node.addr);
    assert!(carol.send_raw(&raw));
    assert_eq!(
        carol.recv(20 * SECOND).unwrap(),
        Packet::Accepted {
            session: node.session.clone(),
            next: 1
        }
    );

    // Failures are logged, at most a line a second per address, and what was held back is
    // counted in a summary line.
    assert!(node.count_log("login failed") >= 1, "{}", node.log_text());
    assert!(node
        .wait_log(
            "logins failed or refused since the last line about this address",
            5 * SECOND
        )
        .is_some());
    assert!(node.count_log("already logged in elsewhere") >= 2);
}

#[test]
fn session_protocol_violations_disconnect() {
    let setup = write_config("async");
    let node = Node::start(&setup.config);
    let (mut alice, _) = Client::logged_in(node.addr, "alice", 0);

    // Data before login: a heartbeat, then an order. Disconnected, logged, nothing sent.
    let mut heartbeat = Vec::new();
    ClientPacket::ClientHeartbeat
        .encode(&mut heartbeat)
        .unwrap();
    let mut order = Vec::new();
    buy("EARLY").encode_unsequenced(&mut order);
    for (what, bytes) in [("heartbeat", &heartbeat), ("order", &order)] {
        let mut client = Client::connect(node.addr);
        let peer = client.local_addr();
        client.send_raw(bytes);
        let mut seen = Vec::new();
        assert!(client.wait_closed(5 * SECOND, &mut seen), "{what}");
        assert!(seen.is_empty(), "{what}: {seen:?}");
        let line = node.wait_disconnect_logged(peer, 5 * SECOND).unwrap();
        assert!(line.contains("data before login"), "{line}");
    }

    // A second Login Request on a logged-in connection: disconnected (and the user is then
    // free to log in again).
    let (mut bob, _) = Client::logged_in(node.addr, "bob", 0);
    let peer = bob.local_addr();
    bob.send_login("bob", PASSWORD, "", 0);
    let mut seen = Vec::new();
    assert!(bob.wait_closed(5 * SECOND, &mut seen), "{seen:?}");
    assert!(seen.iter().all(|p| *p == Packet::Heartbeat), "{seen:?}");
    let line = node.wait_disconnect_logged(peer, 5 * SECOND).unwrap();
    assert!(line.contains("second login"), "{line}");

    // Logout Request: the server closes the connection; the user may come back.
    let (mut bob, _) = Client::logged_in(node.addr, "bob", 0);
    order_round_trip(&mut bob, &buy("B1"), "B1");
    assert!(bob.logout());
    assert!(bob.wait_closed(5 * SECOND, &mut Vec::new()));
    let (mut bob, _) = Client::logged_in(node.addr, "bob", 0);
    order_round_trip(&mut bob, &buy("B2"), "B2");

    // alice, logged in throughout, saw none of it: her stream from 1 is the start of day,
    // then her own new order.
    log_out(&mut alice);
    let (mut alice, next) = Client::logged_in(node.addr, "alice", 1);
    assert_eq!(next, 1);
    assert_eq!(read_messages(&mut alice, 1)[0][0], b'S');
    next_is_new(&mut alice, "A1");
}

/// Reads exactly `n` Sequenced Data messages (heartbeats skipped).
fn read_messages(client: &mut Client, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            client
                .message(10 * SECOND)
                .unwrap_or_else(|end| panic!("message {i} of {n}: {end:?}"))
        })
        .collect()
}

/// Enters a new order and returns the next message, which must be its Order Accepted: so
/// nothing else (no duplicate, nothing skipped ahead) was queued before it.
fn next_is_new(client: &mut Client, token: &str) -> Vec<u8> {
    assert!(client.send(&buy(token)));
    let message = client.message(10 * SECOND).unwrap();
    match OutboundMessage::decode(&message).unwrap() {
        OutboundMessage::OrderAccepted(accepted) => {
            assert_eq!(accepted.order_token.as_str(), token);
        }
        other => panic!("expected the Order Accepted of {token}, got {other:?}"),
    }
    message
}

fn log_out(client: &mut Client) {
    assert!(client.logout());
    assert!(client.wait_closed(5 * SECOND, &mut Vec::new()));
}

#[test]
fn login_resumes_from_the_requested_sequence_number() {
    let setup = write_config("async");
    let node = Node::start(&setup.config);

    // First connection: everything from 1. Message 1 is the start of day.
    let (mut alice, next) = Client::logged_in(node.addr, "alice", 1);
    assert_eq!(next, 1);
    let mut stream = read_messages(&mut alice, 1);
    assert!(matches!(
        OutboundMessage::decode(&stream[0]).unwrap(),
        OutboundMessage::SystemEvent(event) if event.event_code == EventCode::StartOfDay
    ));
    for token in ["A1", "A2", "A3", "A4"] {
        assert!(alice.send(&buy(token)));
    }
    assert!(alice.send(&InboundMessage::CancelOrder(CancelOrder {
        order_token: OrderToken::new("A2").unwrap(),
        shares: 0,
    })));
    stream.extend(read_messages(&mut alice, 5));
    stream.push(next_is_new(&mut alice, "A5"));
    let kinds: Vec<u8> = stream.iter().map(|m| m[0]).collect();
    assert_eq!(kinds, b"SAAAACA");
    log_out(&mut alice);

    // Resume from 3: exactly messages 3..=7, byte for byte, then the next new one is 8.
    let (mut alice, next) = Client::logged_in(node.addr, "alice", 3);
    assert_eq!(next, 3);
    assert_eq!(read_messages(&mut alice, 5), stream[2..].to_vec());
    stream.push(next_is_new(&mut alice, "A6"));
    log_out(&mut alice);

    // From 1 on a new connection: the whole stream, then new messages.
    let (mut alice, next) = Client::logged_in(node.addr, "alice", 1);
    assert_eq!(next, 1);
    assert_eq!(read_messages(&mut alice, stream.len()), stream);
    stream.push(next_is_new(&mut alice, "A7"));
    log_out(&mut alice);

    // 0: only what comes next. Beyond the end: also the next one (nothing is skipped).
    for (requested, token) in [(0, "A8"), (12, "A9"), (1000, "A10")] {
        let (mut alice, next) = Client::logged_in(node.addr, "alice", requested);
        assert_eq!(next, stream.len() as u64 + 1, "requested {requested}");
        stream.push(next_is_new(&mut alice, token));
        log_out(&mut alice);
    }

    // Streams are per user: bob's holds only the start of day.
    let (mut bob, next) = Client::logged_in(node.addr, "bob", 1);
    assert_eq!(next, 1);
    assert_eq!(read_messages(&mut bob, 1), stream[..1].to_vec());
    next_is_new(&mut bob, "B1");
}

#[test]
fn requests_pipelined_behind_an_order_that_ends_at_once_are_answered() {
    // Each IOC order below ends as soon as it is entered; the cancel, modify or replace sent
    // in the same write is decided before that end is known, reaches the engine, and is
    // refused there. The client must still hear about it.
    let setup = write_config("async");
    let node = Node::start(&setup.config);
    let (mut alice, _) = Client::logged_in(node.addr, "alice", 0);
    let mut bytes = Vec::new();
    for (token, kind) in [("T1", 0), ("T2", 1), ("T3", 2)] {
        enter(token, BuySellIndicator::Buy, 10, "BTC-PERP", 1_000, IOC)
            .encode_unsequenced(&mut bytes);
        let order_token = OrderToken::new(token).unwrap();
        let follow_up = match kind {
            0 => InboundMessage::CancelOrder(CancelOrder {
                order_token,
                shares: 0,
            }),
            1 => InboundMessage::ModifyOrder(ModifyOrder {
                order_token,
                side: BuySellIndicator::Buy,
                shares: 5,
            }),
            _ => InboundMessage::ReplaceOrder(ReplaceOrder {
                existing_order_token: order_token,
                replacement_order_token: OrderToken::new("R3").unwrap(),
                shares: 5,
                price: Price(1_000),
                time_in_force: TimeInForce(GTC),
                display: DisplayType::Attributable,
                intermarket_sweep: IntermarketSweepEligibility::NotEligible,
                minimum_quantity: 0,
            }),
        };
        follow_up.encode_unsequenced(&mut bytes);
    }
    assert!(alice.send_raw(&bytes));
    let answers: Vec<(u8, String)> = read_messages(&mut alice, 9)
        .iter()
        .map(|m| {
            let decoded = OutboundMessage::decode(m).unwrap();
            (m[0], serve_support::token_of(&decoded))
        })
        .collect();
    let expected: Vec<(u8, String)> = [
        (b'A', "T1"),
        (b'C', "T1"),
        (b'I', "T1"),
        (b'A', "T2"),
        (b'C', "T2"),
        (b'I', "T2"),
        (b'A', "T3"),
        (b'C', "T3"),
        (b'J', "R3"),
    ]
    .iter()
    .map(|(kind, token)| (*kind, token.to_string()))
    .collect();
    assert_eq!(answers, expected);
    next_is_new(&mut alice, "T4");
}

#[test]
fn heartbeats_then_silent_connections_are_dropped_after_15_seconds() {
    // A login deadline as long as the silence timeout: connections that never log in are
    // here to show the silence timeout (the short default deadline is `serve_hostile`'s).
    let setup = write_config_with("async", |builder| {
        builder.server(|server| server.login_deadline_ms = 15_000)
    });
    let node = Node::start(&setup.config);
    let addr = node.addr;

    // alice: logged in, then silent. Heartbeats every second, then dropped.
    let silent = std::thread::spawn(move || {
        let (mut client, _) = Client::logged_in(addr, "alice", 0);
        let peer = client.local_addr();
        let start = Instant::now();
        let mut heartbeats_in_6s = 0;
        let mut heartbeats = 0;
        let closed_after = loop {
            match client.recv(30 * SECOND) {
                Ok(Packet::Heartbeat) => {
                    heartbeats += 1;
                    if start.elapsed() < 6 * SECOND {
                        heartbeats_in_6s += 1;
                    }
                }
                Ok(other) => panic!("unexpected {other:?}"),
                Err(End::Closed) => break start.elapsed(),
                Err(End::Timeout) => panic!("never dropped"),
            }
        };
        (peer, heartbeats_in_6s, heartbeats, closed_after)
    });
    // bob: logged in, sends half of an Enter Order frame, then silence.
    let truncated = std::thread::spawn(move || {
        let (mut client, _) = Client::logged_in(addr, "bob", 0);
        let peer = client.local_addr();
        let mut frame = Vec::new();
        buy("HALF").encode_unsequenced(&mut frame);
        assert!(client.send_raw(&frame[..20]));
        let start = Instant::now();
        assert!(client.wait_closed(30 * SECOND, &mut Vec::new()));
        (peer, start.elapsed())
    });
    // Half-open: connected, never a byte. And half a Login Request, then silence.
    let half_open = std::thread::spawn(move || {
        let mut quiet = Client::connect(addr);
        let mut partial = Client::connect(addr);
        assert!(partial.send_raw(&[0, 47, b'L', b'a', b'l']));
        let start = Instant::now();
        assert!(quiet.wait_closed(30 * SECOND, &mut Vec::new()));
        let quiet_after = start.elapsed();
        assert!(partial.wait_closed(30 * SECOND, &mut Vec::new()));
        (
            quiet.local_addr(),
            partial.local_addr(),
            quiet_after,
            start.elapsed(),
        )
    });
    // A Login Request trickled one byte a second: it would complete after 49 s, but a
    // connection gets 15 s to log in (otherwise such connections could hold every
    // connection slot forever).
    let trickle = std::thread::spawn(move || {
        let mut login = vec![0, 47, b'L'];
        login.extend_from_slice(b"erin  ");
        login.extend_from_slice(format!("{PASSWORD:<10}").as_bytes());
        login.extend_from_slice(&[b' '; 10]);
        login.extend_from_slice(&encode_numeric(0));
        let mut client = Client::connect(addr);
        let peer = client.local_addr();
        let start = Instant::now();
        for byte in login {
            if !client.send_raw(&[byte]) {
                break;
            }
            match client.recv(SECOND) {
                Err(End::Closed) => break,
                Err(End::Timeout) => {}
                Ok(packet) => panic!("trickled login answered: {packet:?}"),
            }
        }
        (peer, start.elapsed())
    });
    // dave: heartbeats every second, is never dropped and keeps trading.
    let (mut dave, _) = Client::logged_in(addr, "dave", 0);
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < 17 * SECOND {
        std::thread::sleep(SECOND);
        assert!(dave.heartbeat());
        n += 1;
        if n % 5 == 0 {
            order_round_trip(&mut dave, &buy(&format!("D{n}")), &format!("D{n}"));
        }
    }

    let (peer, heartbeats_in_6s, heartbeats, closed_after) = silent.join().unwrap();
    eprintln!("silent: {heartbeats} heartbeats, dropped after {closed_after:?}");
    assert!(
        heartbeats_in_6s >= 5,
        "{heartbeats_in_6s} heartbeats in 6 s"
    );
    assert!(closed_after >= 12 * SECOND && closed_after < 25 * SECOND);
    let line = node.wait_disconnect_logged(peer, SECOND).unwrap();
    assert!(line.contains("no client traffic"), "{line}");

    let (peer, after) = truncated.join().unwrap();
    assert!(after >= 12 * SECOND && after < 25 * SECOND, "{after:?}");
    let line = node.wait_disconnect_logged(peer, SECOND).unwrap();
    assert!(line.contains("no client traffic"), "{line}");

    let (quiet, partial, quiet_after, partial_after) = half_open.join().unwrap();
    for (peer, after) in [(quiet, quiet_after), (partial, partial_after)] {
        assert!(after >= 12 * SECOND && after < 25 * SECOND, "{after:?}");
        let line = node.wait_disconnect_logged(peer, SECOND).unwrap();
        assert!(line.contains("no client traffic"), "{line}");
    }

    let (peer, after) = trickle.join().unwrap();
    assert!(after >= 12 * SECOND && after < 25 * SECOND, "{after:?}");
    let line = node.wait_disconnect_logged(peer, SECOND).unwrap();
    assert!(line.contains("no login request"), "{line}");

    // dave was never dropped.
    order_round_trip(&mut dave, &buy("DLAST"), "DLAST");
    assert!(node
        .wait_disconnect_logged(dave.local_addr(), Duration::ZERO)
        .is_none());
}
