//! Restart recovery against the real `keel serve`: a clean SIGTERM (End of Session to every
//! client, exit 0) and a restart that replays every user's stream byte for byte and keeps
//! every resting order and instrument; a `kill -9` under load after which nothing a client
//! had received is lost or moved; cancel-on-disconnect; acknowledgements under `fsync`.

// A failed unwrap or assertion in a test is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod serve_support;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_protocol::ouch::{
    BuySellIndicator, CancelReason, DisplayType, InboundMessage, IntermarketSweepEligibility,
    OutboundMessage, Price, ReplaceOrder, TimeInForce,
};
use keel_protocol::OrderToken;
use serve_support::{
    enter, keel, order_round_trip, token_of, write_config, Client, End, Node, Packet, GTC, IOC,
};

const SECOND: Duration = Duration::from_secs(1);
use BuySellIndicator::{Buy, Sell};

/// `keel journal verify DIR`: must succeed; returns the record count it prints.
fn journal_verify(dir: &Path) -> u64 {
    let output = Command::new(keel())
        .args(["journal", "verify"])
        .arg(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "keel journal verify failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("records: "))
        .unwrap()
        .parse()
        .unwrap()
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

/// Sends `message` and reads every message up to and including the first one naming
/// `token`; returns them.
fn send_and_collect(client: &mut Client, message: &InboundMessage, token: &str) -> Vec<Vec<u8>> {
    assert!(client.send(message));
    let mut out = Vec::new();
    loop {
        let bytes = client.message(10 * SECOND).unwrap();
        let decoded = OutboundMessage::decode(&bytes).unwrap();
        out.push(bytes);
        if token_of(&decoded) == token {
            return out;
        }
    }
}

fn decode_all(messages: &[Vec<u8>]) -> Vec<OutboundMessage> {
    messages
        .iter()
        .map(|m| OutboundMessage::decode(m).unwrap())
        .collect()
}

/// (token, shares, price, match number) of every Order Executed.
fn executions(messages: &[OutboundMessage]) -> Vec<(String, u32, u32, u64)> {
    messages
        .iter()
        .filter_map(|m| match m {
            OutboundMessage::OrderExecuted(e) => Some((
                e.order_token.as_str().to_string(),
                e.executed_shares,
                e.execution_price.0,
                e.match_number,
            )),
            _ => None,
        })
        .collect()
}

/// Reads until End of Session and then the close; returns what came before End of Session.
fn expect_end_of_session(client: &mut Client) -> Vec<Packet> {
    let mut before = Vec::new();
    loop {
        match client.recv(20 * SECOND) {
            Ok(Packet::End) => break,
            Ok(packet) => before.push(packet),
            Err(end) => panic!("no End of Session ({end:?}) after {before:?}"),
        }
    }
    let mut after = Vec::new();
    assert!(client.wait_closed(10 * SECOND, &mut after));
    assert!(after.is_empty(), "sent after End of Session: {after:?}");
    before
}

#[test]
fn sigterm_then_restart_replays_identical_streams_and_keeps_the_book() {
    let setup = write_config("async");
    let mut node = Node::start(&setup.config);
    let first_session = node.session.clone();
    let (mut alice, next) = Client::logged_in(node.addr, "alice", 1);
    assert_eq!(next, 1);
    let (mut bob, next) = Client::logged_in(node.addr, "bob", 1);
    assert_eq!(next, 1);
    let mut alice_stream = read_messages(&mut alice, 1);
    let mut bob_stream = read_messages(&mut bob, 1);

    // Resting orders on both instruments, trades, a replace.
    let a1 = enter("A1", Buy, 10, "BTC-PERP", 1_000_000, GTC);
    alice_stream.extend(send_and_collect(&mut alice, &a1, "A1"));
    let a2 = enter("A2", Buy, 5, "BTC-PERP", 990_000, GTC);
    alice_stream.extend(send_and_collect(&mut alice, &a2, "A2"));
    let a3 = enter("A3", Sell, 7, "ETH-PERP", 20_000_000, GTC);
    alice_stream.extend(send_and_collect(&mut alice, &a3, "A3"));
    let b1 = enter("B1", Sell, 4, "BTC-PERP", 1_000_000, IOC);
    bob_stream.extend(send_and_collect(&mut bob, &b1, "B1"));
    let b2 = enter("B2", Sell, 3, "BTC-PERP", 980_000, GTC);
    bob_stream.extend(send_and_collect(&mut bob, &b2, "B2"));
    // B2 is filled at once: its execution follows its acceptance.
    bob_stream.extend(read_messages(&mut bob, 1));
    let replace = InboundMessage::ReplaceOrder(ReplaceOrder {
        existing_order_token: OrderToken::new("A2").unwrap(),
        replacement_order_token: OrderToken::new("A2R").unwrap(),
        shares: 6,
        price: Price(995_000),
        time_in_force: TimeInForce(GTC),
        display: DisplayType::Attributable,
        intermarket_sweep: IntermarketSweepEligibility::NotEligible,
        minimum_quantity: 0,
    });
    // alice's stream: her executions on A1 (from B1 and B2), then the replace.
    alice_stream.extend(send_and_collect(&mut alice, &replace, "A2R"));
    let before = decode_all(&alice_stream);
    let traded: Vec<_> = executions(&before);
    assert_eq!(
        traded
            .iter()
            .map(|(t, q, p, _)| (t.as_str(), *q, *p))
            .collect::<Vec<_>>(),
        vec![("A1", 4, 1_000_000), ("A1", 3, 1_000_000)],
        "{before:?}"
    );
    let bob_before = decode_all(&bob_stream);
    let bob_traded = executions(&bob_before);
    assert_eq!(bob_traded.len(), 2);
    // The match number is the same on both sides of each trade.
    for ((_, _, _, a), (_, _, _, b)) in traded.iter().zip(&bob_traded) {
        assert_eq!(a, b);
    }
    let old_matches: HashSet<u64> = traded.iter().map(|t| t.3).collect();
    assert_eq!(old_matches.len(), 2);

    // SIGTERM: both clients get everything, then End of Session; exit code 0.
    let status = node.terminate();
    assert!(status.success(), "exit status {status:?}");
    for client in [&mut alice, &mut bob] {
        let before_end = expect_end_of_session(client);
        assert!(
            before_end.iter().all(|p| *p == Packet::Heartbeat),
            "{before_end:?}"
        );
    }
    assert!(node.log_text().contains("stopped cleanly"));
    let records = journal_verify(&setup.data_dir);

    // Restart on the same data directory: nothing new journaled at start (instruments and
    // the session start are recovered, not redefined), same session name.
    let mut node = Node::start(&setup.config);
    assert_eq!(node.start_record, records);
    assert_eq!(node.session, first_session);

    // Every stream from 1: the same bytes at the same sequence numbers, nothing more.
    let (mut alice, next) = Client::logged_in(node.addr, "alice", 1);
    assert_eq!(next, 1);
    assert_eq!(read_messages(&mut alice, alice_stream.len()), alice_stream);
    let (mut bob, next) = Client::logged_in(node.addr, "bob", 1);
    assert_eq!(next, 1);
    assert_eq!(read_messages(&mut bob, bob_stream.len()), bob_stream);
    // Resuming in the middle works across the restart too.
    let (mut dave, next) = Client::logged_in(node.addr, "dave", 1);
    assert_eq!(next, 1);
    assert_eq!(read_messages(&mut dave, 1)[0][0], b'S');

    // The resting orders are still there: bob takes A1's remaining 3, A2R's 6, and A3's 7
    // on the second instrument.
    let takes = [
        (
            enter("B3", Sell, 3, "BTC-PERP", 1_000_000, IOC),
            "B3",
            "A1",
            3,
            1_000_000,
        ),
        (
            enter("B4", Sell, 10, "BTC-PERP", 995_000, IOC),
            "B4",
            "A2R",
            6,
            995_000,
        ),
        (
            enter("B5", Buy, 9, "ETH-PERP", 20_000_000, IOC),
            "B5",
            "A3",
            7,
            20_000_000,
        ),
    ];
    let mut new_matches = HashSet::new();
    for (order, token, maker, shares, price) in takes {
        let answers = decode_all(&send_and_collect(&mut bob, &order, token));
        assert!(
            matches!(answers.last(), Some(OutboundMessage::OrderAccepted(_))),
            "{answers:?}"
        );
        let mut more = vec![bob.expect_message()];
        let bob_exec = executions(&more);
        assert_eq!(bob_exec.len(), 1, "{more:?}");
        assert_eq!((bob_exec[0].1, bob_exec[0].2), (shares, price));
        if token != "B3" {
            // The rest of an IOC is canceled.
            more.push(bob.expect_message());
            assert!(
                matches!(more[1], OutboundMessage::OrderCanceled(c) if c.reason == CancelReason::ImmediateOrCancel),
                "{more:?}"
            );
        }
        let alice_exec = executions(&[alice.expect_message()]);
        assert_eq!(
            alice_exec,
            vec![(maker.to_string(), shares, price, bob_exec[0].3)]
        );
        assert!(!old_matches.contains(&bob_exec[0].3), "match number reused");
        assert!(new_matches.insert(bob_exec[0].3));
    }

    let status = node.terminate();
    assert!(status.success());
    expect_end_of_session(&mut alice);
    journal_verify(&setup.data_dir);
}

/// One trader under load: pipelined batches of orders, recording every message received
/// (from sequence number 1) until the connection dies.
fn trade_until_killed(
    addr: std::net::SocketAddr,
    user: &'static str,
    side: BuySellIndicator,
    received_total: Arc<AtomicUsize>,
    stop_sending: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Vec<u8>>> {
    std::thread::spawn(move || {
        let (mut client, next) = Client::logged_in(addr, user, 1);
        assert_eq!(next, 1);
        let mut received = Vec::new();
        let mut n = 0u64;
        loop {
            if !stop_sending.load(Ordering::Relaxed) {
                let mut batch = Vec::new();
                for _ in 0..20 {
                    // Prices around 100.00 so that about half the orders trade; some IOC.
                    let price = 990_000 + (n * 7919 % 21) as u32 * 1_000;
                    let tif = if n % 3 == 0 { IOC } else { GTC };
                    let token = format!("{user}{n}");
                    enter(&token, side, 1 + (n % 5) as u32, "BTC-PERP", price, tif)
                        .encode_unsequenced(&mut batch);
                    n += 1;
                }
                if !client.send_raw(&batch) {
                    return received;
                }
            }
            // Read whatever has arrived (at least one message, or the end).
            loop {
                match client.recv(Duration::from_millis(20)) {
                    Ok(Packet::Data(message)) => {
                        received.push(message);
                        received_total.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Packet::Heartbeat) => {}
                    Ok(other) => panic!("{user}: unexpected {other:?}"),
                    Err(End::Closed) => return received,
                    Err(End::Timeout) => break,
                }
            }
        }
    })
}

#[test]
fn kill_9_under_load_loses_nothing_acknowledged() {
    // fsync: a client hears of a command only once it is on disk.
    let setup = write_config("fsync");
    let mut node = Node::start(&setup.config);
    let received = Arc::new(AtomicUsize::new(0));
    let stop_sending = Arc::new(AtomicBool::new(false));
    // (Same order as the user names below.)
    let traders: Vec<_> = [
        ("alice", Buy),
        ("bob", Sell),
        ("dave", Buy),
        ("carol", Sell),
    ]
    .into_iter()
    .map(|(user, side)| {
        trade_until_killed(
            node.addr,
            user,
            side,
            received.clone(),
            stop_sending.clone(),
        )
    })
    .collect();
    // Kill mid-load: once plenty has been acknowledged, with orders still streaming in.
    let started = Instant::now();
    while received.load(Ordering::Relaxed) < 20_000 {
        assert!(
            started.elapsed() < 60 * SECOND,
            "only {} messages in 60 s",
            received.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    node.kill9();
    let streams: Vec<Vec<Vec<u8>>> = traders.into_iter().map(|t| t.join().unwrap()).collect();
    let total: usize = streams.iter().map(Vec::len).sum();
    let records = journal_verify(&setup.data_dir);
    eprintln!(
        "killed after {total} messages received in {:?}; {records} records journaled",
        started.elapsed()
    );

    // Restart: every message a client received is in its replayed stream at the same
    // sequence number. (Messages the node journaled but had not released yet may follow.)
    let mut node = Node::start(&setup.config);
    for (user, stream) in ["alice", "bob", "dave", "carol"].iter().zip(&streams) {
        let (mut client, next) = Client::logged_in(node.addr, user, 1);
        assert_eq!(next, 1);
        let replayed = read_messages(&mut client, stream.len());
        for (index, (got, had)) in replayed.iter().zip(stream).enumerate() {
            assert_eq!(
                got,
                had,
                "{user}: message {} differs after the restart",
                index + 1
            );
        }
        // And the stream goes on from there: a new order is answered after whatever else
        // was journaled.
        let token = format!("{user}-after");
        order_round_trip(
            &mut client,
            &enter(&token, Buy, 1, "ETH-PERP", 10_000, GTC),
            &token,
        );
    }
    let status = node.terminate();
    assert!(status.success());
    journal_verify(&setup.data_dir);
}

#[test]
fn cancel_on_disconnect_cancels_the_users_resting_orders() {
    let setup = write_config("async");
    let node = Node::start(&setup.config);

    // carol has cancel_on_disconnect; dave does not.
    let (mut carol, next) = Client::logged_in(node.addr, "carol", 0);
    assert_eq!(next, 2);
    for (token, price) in [("C1", 1_000_000), ("C2", 1_010_000)] {
        order_round_trip(
            &mut carol,
            &enter(token, Sell, 5, "BTC-PERP", price, GTC),
            token,
        );
    }
    let (mut dave, _) = Client::logged_in(node.addr, "dave", 0);
    order_round_trip(
        &mut dave,
        &enter("D1", Sell, 5, "BTC-PERP", 1_020_000, GTC),
        "D1",
    );

    // carol logs out, dave just drops the connection; wait until the node has seen both.
    assert!(carol.logout());
    assert!(carol.wait_closed(5 * SECOND, &mut Vec::new()));
    let dave_peer = dave.local_addr();
    drop(dave);
    node.wait_disconnect_logged(dave_peer, 5 * SECOND).unwrap();

    // bob sweeps everything up to 102.00: only dave's order is left to trade with.
    let (mut bob, _) = Client::logged_in(node.addr, "bob", 0);
    let mut answers = decode_all(&send_and_collect(
        &mut bob,
        &enter("B1", Buy, 20, "BTC-PERP", 1_020_000, IOC),
        "B1",
    ));
    answers.push(bob.expect_message());
    answers.push(bob.expect_message());
    let traded = executions(&answers);
    assert_eq!(traded.len(), 1, "{answers:?}");
    assert_eq!((traded[0].1, traded[0].2), (5, 1_020_000));
    assert!(
        matches!(answers[2], OutboundMessage::OrderCanceled(c) if c.decrement_shares == 15),
        "{answers:?}"
    );

    // carol, back, resumes from where she was (4: after start of day and two acceptances)
    // and learns her orders were canceled.
    let (mut carol, next) = Client::logged_in(node.addr, "carol", 4);
    assert_eq!(next, 4);
    for token in ["C1", "C2"] {
        match carol.expect_message() {
            OutboundMessage::OrderCanceled(canceled) => {
                assert_eq!(canceled.order_token.as_str(), token);
                assert_eq!(canceled.decrement_shares, 5);
            }
            other => panic!("expected Order Canceled for {token}, got {other:?}"),
        }
    }
    // An abrupt disconnect (no logout) cancels too.
    order_round_trip(
        &mut carol,
        &enter("C3", Sell, 5, "BTC-PERP", 1_000_000, GTC),
        "C3",
    );
    let carol_peer = carol.local_addr();
    drop(carol);
    node.wait_disconnect_logged(carol_peer, 5 * SECOND).unwrap();
    let answers = decode_all(&send_and_collect(
        &mut bob,
        &enter("B2", Buy, 5, "BTC-PERP", 1_000_000, IOC),
        "B2",
    ));
    assert!(matches!(answers[0], OutboundMessage::OrderAccepted(_)));
    match bob.expect_message() {
        OutboundMessage::OrderCanceled(c) => assert_eq!(c.decrement_shares, 5),
        other => panic!("B2 traded with a canceled order: {other:?}"),
    }
    let (mut carol, _) = Client::logged_in(node.addr, "carol", 7);
    match carol.expect_message() {
        OutboundMessage::OrderCanceled(canceled) => {
            assert_eq!(canceled.order_token.as_str(), "C3");
        }
        other => panic!("expected Order Canceled for C3, got {other:?}"),
    }
}

#[test]
fn fsync_durability_acknowledges_orders() {
    let setup = write_config("fsync");
    let node = Node::start(&setup.config);
    let (mut alice, _) = Client::logged_in(node.addr, "alice", 0);
    let (mut bob, _) = Client::logged_in(node.addr, "bob", 0);
    // One at a time...
    for n in 0..20 {
        let token = format!("A{n}");
        order_round_trip(
            &mut alice,
            &enter(&token, Buy, 1, "BTC-PERP", 1_000_000, GTC),
            &token,
        );
    }
    // ...and a pipelined burst.
    let mut burst = Vec::new();
    for n in 20..520 {
        enter(&format!("A{n}"), Buy, 1, "BTC-PERP", 990_000, GTC).encode_unsequenced(&mut burst);
    }
    assert!(alice.send_raw(&burst));
    let accepted = read_messages(&mut alice, 500);
    assert!(accepted.iter().all(|m| m[0] == b'A'));
    // A trade: both sides hear of it.
    let answers = decode_all(&send_and_collect(
        &mut bob,
        &enter("B1", Sell, 25, "BTC-PERP", 1_000_000, IOC),
        "B1",
    ));
    assert!(matches!(answers[0], OutboundMessage::OrderAccepted(_)));
    let bob_side: Vec<_> = (0..21).map(|_| bob.expect_message()).collect();
    assert_eq!(executions(&bob_side).len(), 20);
    let alice_side: Vec<_> = (0..20).map(|_| alice.expect_message()).collect();
    assert_eq!(executions(&alice_side).len(), 20);
}

#[test]
fn a_restart_cancels_the_orders_of_cancel_on_disconnect_users() {
    let setup = write_config("fsync");
    let mut node = Node::start(&setup.config);
    // carol (cancel_on_disconnect) and dave (not) each rest an order; then the node dies
    // with both still logged in, so no disconnect was ever processed.
    let (mut carol, _) = Client::logged_in(node.addr, "carol", 0);
    order_round_trip(
        &mut carol,
        &enter("C1", Sell, 5, "BTC-PERP", 1_000_000, GTC),
        "C1",
    );
    let (mut dave, _) = Client::logged_in(node.addr, "dave", 0);
    order_round_trip(
        &mut dave,
        &enter("D1", Sell, 5, "BTC-PERP", 1_010_000, GTC),
        "D1",
    );
    node.kill9();
    drop((carol, dave));

    let node = Node::start(&setup.config);
    // carol learns at once that her order is gone (resuming after start of day and C1).
    let (mut carol, next) = Client::logged_in(node.addr, "carol", 3);
    assert_eq!(next, 3);
    match carol.expect_message() {
        OutboundMessage::OrderCanceled(canceled) => {
            assert_eq!(canceled.order_token.as_str(), "C1");
            assert_eq!(canceled.decrement_shares, 5);
        }
        other => panic!("expected Order Canceled for C1, got {other:?}"),
    }
    // bob can only trade with dave's order.
    let (mut bob, _) = Client::logged_in(node.addr, "bob", 0);
    let mut answers = decode_all(&send_and_collect(
        &mut bob,
        &enter("B1", Buy, 10, "BTC-PERP", 1_010_000, IOC),
        "B1",
    ));
    answers.push(bob.expect_message());
    answers.push(bob.expect_message());
    let traded = executions(&answers);
    assert_eq!(traded.len(), 1, "{answers:?}");
    assert_eq!((traded[0].1, traded[0].2), (5, 1_010_000));
}
