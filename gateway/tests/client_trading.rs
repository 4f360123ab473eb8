//! The client library against a real `keel serve` (async durability): login, crossing
//! orders between two users, cancel, modify, replace, rejects, idempotent retries, and
//! failover across endpoints.
// Tests fail by panicking; unwrap/expect/panic are how they report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod client_support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use client_support::{
    assert_quiet, connect, connect_with, dead_endpoint, events_until, messages, messages_through,
    options, Server,
};
use keel_client::{
    order_token, parse_price, Client, ClientError, ClientEvent, ClientOptions, OrderBuilder,
};
use keel_protocol::ouch::{
    BuySellIndicator, CancelReason, EventCode, LiquidityFlag, OrderState, OutboundMessage, Price,
    RejectReason,
};
use keel_protocol::soupbin::{LoginRejectReason, ServerPacket};
use keel_protocol::OrderToken;

fn tok(text: &str) -> OrderToken {
    order_token(text).unwrap()
}

fn px(text: &str) -> Price {
    parse_price(text).unwrap()
}

/// Reads the start-of-day message every fresh stream begins with.
fn skip_start_of_day(client: &Client) {
    let first = messages(client, 1);
    assert_eq!(first[0].0, 1);
    assert!(
        matches!(first[0].1, OutboundMessage::SystemEvent(e) if e.event_code == EventCode::StartOfDay),
        "{first:?}"
    );
}

fn is_for(message: &OutboundMessage, token: OrderToken) -> bool {
    message.order_token() == Some(token)
}

#[test]
fn login_start_of_day_and_refused_passwords() {
    let server = Server::start("async");
    let alice = connect(&server, "alice");
    assert_eq!(alice.first_sequence_number(), 1);
    assert_eq!(alice.endpoint(), Some(server.addr));
    assert!(alice.is_connected());
    assert!(!alice.session().is_blank());
    skip_start_of_day(&alice);
    assert_eq!(alice.next_sequence_number(), 2);

    for (user, password) in [("alice", "wrong"), ("nobody", "alicepass")] {
        match Client::connect(&[server.addr], user, password, options()) {
            Err(ClientError::LoginRejected { endpoint, reason }) => {
                assert_eq!(endpoint, server.addr);
                assert_eq!(reason, LoginRejectReason::NotAuthorized);
            }
            other => panic!("{user}/{password}: {other:?}"),
        }
    }
    // A second login of a logged-in user is refused with S: with one endpoint and few
    // attempts, connect gives up.
    let second = Client::connect(
        &[server.addr],
        "alice",
        "alicepass",
        ClientOptions {
            connect_attempts: 2,
            ..options()
        },
    );
    match second {
        Err(ClientError::Unavailable { failures, .. }) => {
            assert!(failures.contains("session not available"), "{failures}")
        }
        other => panic!("{other:?}"),
    }
    // Requested sequence number 0: only new messages.
    let bob = connect_with(
        &[server.addr],
        "bob",
        ClientOptions {
            requested_sequence_number: 0,
            ..options()
        },
    );
    assert_eq!(bob.first_sequence_number(), 2);
    alice.logout().unwrap();
    let (_, events) = events_until(&alice, Duration::from_secs(10), |_| alice.is_finished());
    assert_eq!(events.last(), Some(&ClientEvent::LoggedOut), "{events:?}");
    assert!(matches!(
        alice.submit(&OrderBuilder::buy("BTC-PERP", 1, px("1")).unwrap()),
        Err(ClientError::Closed | ClientError::NotConnected)
    ));
}

#[test]
fn crossing_orders_execute_on_both_sides_with_one_match_number() {
    let server = Server::start("async");
    let alice = connect(&server, "alice");
    let bob = connect(&server, "bob");
    skip_start_of_day(&alice);
    skip_start_of_day(&bob);

    let a1 = alice
        .submit(&OrderBuilder::buy("BTC-PERP", 10, px("100.25")).unwrap())
        .unwrap();
    let accepted = messages(&alice, 1);
    let OutboundMessage::OrderAccepted(acc) = accepted[0].1 else {
        panic!("{accepted:?}");
    };
    assert_eq!(accepted[0].0, 2);
    assert_eq!(acc.order_token, a1);
    assert_eq!(acc.side, BuySellIndicator::Buy);
    assert_eq!(acc.shares, 10);
    assert_eq!(acc.stock.as_str(), "BTC-PERP");
    assert_eq!(acc.price, Price(1_002_500));
    assert_eq!(acc.order_state, OrderState::Live);

    // Bob sells 4 below alice's bid: trades at alice's (resting) price.
    let b1 = tok("B1");
    bob.submit(
        &OrderBuilder::sell("BTC-PERP", 4, px("100.20"))
            .unwrap()
            .token(b1),
    )
    .unwrap();
    let bob_msgs = messages_through(&bob, |m| matches!(m, OutboundMessage::OrderExecuted(_)));
    assert_eq!(bob_msgs.len(), 2, "{bob_msgs:?}");
    assert!(matches!(bob_msgs[0].1, OutboundMessage::OrderAccepted(a) if a.order_token == b1));
    let OutboundMessage::OrderExecuted(bob_exec) = bob_msgs[1].1 else {
        panic!()
    };
    let alice_msgs = messages(&alice, 1);
    let OutboundMessage::OrderExecuted(alice_exec) = alice_msgs[0].1 else {
        panic!("{alice_msgs:?}")
    };
    assert_eq!(alice_msgs[0].0, 3);
    assert_eq!(bob_exec.order_token, b1);
    assert_eq!(alice_exec.order_token, a1);
    assert_eq!(bob_exec.executed_shares, 4);
    assert_eq!(alice_exec.executed_shares, 4);
    assert_eq!(bob_exec.execution_price, Price(1_002_500));
    assert_eq!(alice_exec.execution_price, Price(1_002_500));
    assert_eq!(bob_exec.liquidity_flag, LiquidityFlag::Removed);
    assert_eq!(alice_exec.liquidity_flag, LiquidityFlag::Added);
    assert_eq!(bob_exec.match_number, alice_exec.match_number);

    // Bob takes the remaining 6 (and more) with an IOC: 6 trade, the rest is canceled.
    let b2 = bob
        .submit(&OrderBuilder::sell("BTC-PERP", 9, px("100")).unwrap().ioc())
        .unwrap();
    let bob_msgs = messages_through(&bob, |m| matches!(m, OutboundMessage::OrderCanceled(_)));
    let kinds: Vec<u8> = bob_msgs.iter().map(|(_, m)| m.message_type()).collect();
    assert_eq!(kinds, b"AEC", "{bob_msgs:?}");
    let OutboundMessage::OrderExecuted(exec2) = bob_msgs[1].1 else {
        panic!()
    };
    assert_eq!(exec2.order_token, b2);
    assert_eq!(exec2.executed_shares, 6);
    assert_ne!(exec2.match_number, bob_exec.match_number);
    let OutboundMessage::OrderCanceled(rest) = bob_msgs[2].1 else {
        panic!()
    };
    assert_eq!(rest.decrement_shares, 3);
    assert_eq!(rest.reason, CancelReason::ImmediateOrCancel);
    let alice_msgs = messages(&alice, 1);
    assert!(
        matches!(alice_msgs[0].1, OutboundMessage::OrderExecuted(e)
            if e.order_token == a1 && e.executed_shares == 6
                && e.match_number == exec2.match_number && e.liquidity_flag == LiquidityFlag::Added),
        "{alice_msgs:?}"
    );
    // Alice's order is filled: cancelling it now is refused.
    alice.cancel_order(a1, 0).unwrap();
    let reply = messages(&alice, 1);
    assert!(
        matches!(reply[0].1, OutboundMessage::CancelReject(c) if c.order_token == a1),
        "{reply:?}"
    );
    assert_quiet(&bob, Duration::from_millis(300));
}

#[test]
fn cancel_modify_replace_and_their_rejects() {
    let server = Server::start("async");
    let alice = connect(&server, "alice");
    skip_start_of_day(&alice);
    let a = tok("A");
    alice
        .submit(
            &OrderBuilder::buy("ETH-PERP", 10, px("99"))
                .unwrap()
                .token(a),
        )
        .unwrap();
    assert!(
        matches!(messages(&alice, 1)[0].1, OutboundMessage::OrderAccepted(x) if x.order_token == a)
    );

    // Reduce to 7: 3 canceled.
    alice.cancel_order(a, 7).unwrap();
    let m = messages(&alice, 1);
    assert!(
        matches!(m[0].1, OutboundMessage::OrderCanceled(c)
            if c.order_token == a && c.decrement_shares == 3 && c.reason == CancelReason::UserRequested),
        "{m:?}"
    );
    // Modify to 5.
    alice.modify_order(a, BuySellIndicator::Buy, 5).unwrap();
    let m = messages(&alice, 1);
    assert!(
        matches!(m[0].1, OutboundMessage::OrderModified(x) if x.order_token == a && x.shares == 5),
        "{m:?}"
    );
    // Replace with 8 @ 98.50 under a new token.
    let b = alice.replace(a, Some(tok("B")), 8, px("98.5")).unwrap();
    let m = messages(&alice, 1);
    let OutboundMessage::OrderReplaced(r) = m[0].1 else {
        panic!("{m:?}")
    };
    assert_eq!(r.previous_order_token, a);
    assert_eq!(r.replacement_order_token, b);
    assert_eq!(r.shares, 8);
    assert_eq!(r.price, Price(985_000));
    assert_eq!(r.stock.as_str(), "ETH-PERP");
    // The old token is gone; the replacement cancels.
    alice.cancel_order(a, 0).unwrap();
    assert!(
        matches!(messages(&alice, 1)[0].1, OutboundMessage::CancelReject(c) if c.order_token == a)
    );
    alice.cancel_order(b, 0).unwrap();
    let m = messages(&alice, 1);
    assert!(
        matches!(m[0].1, OutboundMessage::OrderCanceled(c) if c.order_token == b && c.decrement_shares == 8),
        "{m:?}"
    );
    // Replacing a dead order is rejected under the replacement token.
    let c = alice.replace(b, None, 3, px("97")).unwrap();
    let m = messages(&alice, 1);
    assert!(
        matches!(m[0].1, OutboundMessage::OrderRejected(j) if j.order_token == c && j.reason == RejectReason::Other),
        "{m:?}"
    );
    // Cancel of a token never used.
    alice.cancel_order(tok("NEVER"), 0).unwrap();
    assert!(matches!(
        messages(&alice, 1)[0].1,
        OutboundMessage::CancelReject(_)
    ));
    assert_quiet(&alice, Duration::from_millis(200));
}

#[test]
fn rejects_carry_the_spec_codes() {
    let server = Server::start("async");
    let bob = connect(&server, "bob");
    skip_start_of_day(&bob);
    let cases: [(OrderBuilder, RejectReason); 3] = [
        (
            OrderBuilder::buy("NOPE", 1, px("1")).unwrap(),
            RejectReason::InvalidStock,
        ),
        // Price scale 100: 100.255 is not a whole tick.
        (
            OrderBuilder::buy("BTC-PERP", 1, px("100.255")).unwrap(),
            RejectReason::InvalidPrice,
        ),
        // Post-only cannot be IOC.
        (
            OrderBuilder::buy("BTC-PERP", 1, px("100"))
                .unwrap()
                .post_only()
                .ioc(),
            RejectReason::InvalidDisplayType,
        ),
    ];
    for (order, reason) in cases {
        let token = bob.submit(&order).unwrap();
        let m = messages(&bob, 1);
        assert!(
            matches!(m[0].1, OutboundMessage::OrderRejected(j) if j.order_token == token && j.reason == reason),
            "{order:?}: {m:?}"
        );
    }
    // A token is single-use, even after its order was rejected.
    let used = tok("USED");
    bob.submit(&OrderBuilder::buy("NOPE", 1, px("1")).unwrap().token(used))
        .unwrap();
    bob.submit(
        &OrderBuilder::buy("BTC-PERP", 1, px("1"))
            .unwrap()
            .token(used),
    )
    .unwrap();
    let m = messages(&bob, 2);
    assert!(
        matches!(m[0].1, OutboundMessage::OrderRejected(j) if j.reason == RejectReason::InvalidStock)
    );
    assert!(matches!(m[1].1, OutboundMessage::OrderRejected(j) if j.reason == RejectReason::Other));
    // Generated tokens are distinct.
    let t1 = bob.next_token().unwrap();
    let t2 = bob.next_token().unwrap();
    assert_ne!(t1, t2);
}

#[test]
fn fok_market_and_post_only() {
    let server = Server::start("async");
    let alice = connect(&server, "alice");
    let bob = connect(&server, "bob");
    skip_start_of_day(&alice);
    skip_start_of_day(&bob);
    let ask = bob
        .submit(&OrderBuilder::sell("BTC-PERP", 5, px("101")).unwrap())
        .unwrap();
    messages(&bob, 1);
    // FOK for more than is offered: nothing trades.
    let fok = alice
        .submit(&OrderBuilder::buy("BTC-PERP", 10, px("101")).unwrap().fok())
        .unwrap();
    let m = messages_through(&alice, |m| {
        matches!(
            m,
            OutboundMessage::OrderCanceled(_) | OutboundMessage::OrderRejected(_)
        )
    });
    assert!(m.iter().all(|(_, x)| is_for(x, fok)), "{m:?}");
    assert!(
        !m.iter()
            .any(|(_, x)| matches!(x, OutboundMessage::OrderExecuted(_))),
        "{m:?}"
    );
    // Post-only that would cross: never trades.
    let post = alice
        .submit(
            &OrderBuilder::buy("BTC-PERP", 1, px("101"))
                .unwrap()
                .post_only(),
        )
        .unwrap();
    let m = messages_through(&alice, |m| {
        matches!(
            m,
            OutboundMessage::OrderCanceled(_) | OutboundMessage::OrderRejected(_)
        )
    });
    assert!(m.iter().all(|(_, x)| is_for(x, post)), "{m:?}");
    assert!(
        !m.iter()
            .any(|(_, x)| matches!(x, OutboundMessage::OrderExecuted(_))),
        "{m:?}"
    );
    // Market buy of 2: trades at the ask.
    let market = alice
        .submit(&OrderBuilder::market(BuySellIndicator::Buy, "BTC-PERP", 2).unwrap())
        .unwrap();
    let m = messages_through(&alice, |m| matches!(m, OutboundMessage::OrderExecuted(_)));
    assert!(
        matches!(m[0].1, OutboundMessage::OrderAccepted(a) if a.order_token == market && a.price == Price::MARKET),
        "{m:?}"
    );
    assert!(
        matches!(m.last().unwrap().1, OutboundMessage::OrderExecuted(e)
            if e.executed_shares == 2 && e.execution_price == Price(1_010_000)),
        "{m:?}"
    );
    let b = messages(&bob, 1);
    assert!(
        matches!(b[0].1, OutboundMessage::OrderExecuted(e) if e.order_token == ask && e.executed_shares == 2)
    );
}

#[test]
fn a_retried_enter_order_is_rejected_never_executed_twice() {
    let server = Server::start("async");
    let alice = connect(&server, "alice");
    let bob = connect(&server, "bob");
    skip_start_of_day(&alice);
    skip_start_of_day(&bob);
    let ask = bob
        .submit(&OrderBuilder::sell("BTC-PERP", 10, px("100")).unwrap())
        .unwrap();
    messages(&bob, 1);
    let t = tok("RETRY1");
    let order = OrderBuilder::buy("BTC-PERP", 4, px("100"))
        .unwrap()
        .build(t);
    alice.enter_order(&order).unwrap();
    let first = messages(&alice, 2);
    assert!(matches!(first[1].1, OutboundMessage::OrderExecuted(e) if e.order_token == t));
    // The client does not know whether its order arrived: it reconnects and retries.
    alice.force_reconnect();
    assert!(alice.wait_connected(Duration::from_secs(15)));
    alice.enter_order(&order).unwrap();
    let (retry, events) = events_until(&alice, Duration::from_secs(15), |m| !m.is_empty());
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ClientEvent::Reconnected { .. })),
        "{events:?}"
    );
    assert_eq!(retry[0].0, 4);
    assert!(
        matches!(retry[0].1, OutboundMessage::OrderRejected(j) if j.order_token == t && j.reason == RejectReason::Other),
        "{retry:?}"
    );
    assert_quiet(&alice, Duration::from_millis(300));
    // Bob traded 4, once: 6 remain to cancel.
    let m = messages(&bob, 1);
    assert!(
        matches!(m[0].1, OutboundMessage::OrderExecuted(e) if e.order_token == ask && e.executed_shares == 4)
    );
    bob.cancel_order(ask, 0).unwrap();
    let m = messages(&bob, 1);
    assert!(
        matches!(m[0].1, OutboundMessage::OrderCanceled(c) if c.order_token == ask && c.decrement_shares == 6),
        "{m:?}"
    );
}

/// A stand-in for a follower: answers every Login Request with Login Rejected S.
fn follower() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let logins = Arc::new(AtomicUsize::new(0));
    let counter = logins.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut login = [0u8; 49];
            if stream.read_exact(&mut login).is_ok() {
                counter.fetch_add(1, Ordering::SeqCst);
                let mut reply = Vec::new();
                ServerPacket::LoginRejected(LoginRejectReason::SessionNotAvailable)
                    .encode(&mut reply)
                    .unwrap();
                let _ = stream.write_all(&reply);
            }
        }
    });
    (addr, logins)
}

#[test]
fn endpoints_are_tried_in_order_past_dead_ones_and_followers() {
    let server = Server::start("async");
    let (follower, follower_logins) = follower();
    let endpoints = [dead_endpoint(), follower, server.addr];
    let alice = connect_with(&endpoints, "alice", options());
    assert_eq!(alice.endpoint(), Some(server.addr));
    assert_eq!(follower_logins.load(Ordering::SeqCst), 1);
    skip_start_of_day(&alice);
    let token = alice
        .submit(&OrderBuilder::buy("BTC-PERP", 1, px("50")).unwrap())
        .unwrap();
    assert!(
        matches!(messages(&alice, 1)[0].1, OutboundMessage::OrderAccepted(a) if a.order_token == token)
    );
    // A lost connection goes through the list again, from the top.
    alice.force_reconnect();
    assert!(alice.wait_connected(Duration::from_secs(15)));
    assert!(follower_logins.load(Ordering::SeqCst) >= 2);
    assert_eq!(alice.endpoint(), Some(server.addr));
    alice.cancel_order(token, 0).unwrap();
    let (m, all) = events_until(&alice, Duration::from_secs(15), |m| !m.is_empty());
    assert!(
        all.iter().any(
            |e| matches!(e, ClientEvent::Disconnected { endpoint, .. } if *endpoint == server.addr)
        ),
        "{all:?}"
    );
    assert!(
        all.iter().any(|e| matches!(e, ClientEvent::Reconnected { endpoint, next_sequence_number: 3, .. } if *endpoint == server.addr)),
        "{all:?}"
    );
    assert_eq!(m[0].0, 3);
    assert!(matches!(m[0].1, OutboundMessage::OrderCanceled(c) if c.order_token == token));

    // Only dead endpoints and followers: connect reports each one's failure.
    let refused = Client::connect(
        &[dead_endpoint(), follower],
        "bob",
        "bobpass",
        ClientOptions {
            connect_attempts: 2,
            backoff_initial: Duration::from_millis(10),
            ..ClientOptions::default()
        },
    );
    match refused {
        Err(ClientError::Unavailable { attempts, failures }) => {
            assert_eq!(attempts, 2);
            assert!(failures.contains("refused"), "{failures}");
            assert!(failures.contains("session not available"), "{failures}");
        }
        other => panic!("{other:?}"),
    }
}
