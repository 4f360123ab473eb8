//! Resume without loss or duplicates, against a real `keel serve`: a new client asking for
//! the last sequence number + 1, the library's own reconnect while messages are in flight,
//! and a server restarted (SIGTERM, and kill -9 under `fsync`) on the same data directory.
// Tests fail by panicking; unwrap/expect/panic are how they report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod client_support;

use std::collections::BTreeSet;
use std::time::Duration;

use client_support::{
    assert_contiguous, assert_quiet, connect, connect_with, events_until, messages, options, Server,
};
use keel_client::{order_token, parse_price, ClientEvent, ClientOptions, OrderBuilder};
use keel_protocol::ouch::{OutboundMessage, RejectReason};

fn executed_matches(messages: &[(u64, OutboundMessage)]) -> Vec<u64> {
    messages
        .iter()
        .filter_map(|(_, m)| match m {
            OutboundMessage::OrderExecuted(e) => Some(e.match_number),
            _ => None,
        })
        .collect()
}

#[test]
fn a_new_client_resumes_from_the_last_sequence_number_plus_one() {
    let server = Server::start("async");
    let alice = connect(&server, "alice");
    for i in 0..6 {
        alice
            .submit(&OrderBuilder::buy("BTC-PERP", 1 + i, parse_price("90").unwrap()).unwrap())
            .unwrap();
    }
    // Read only part of the stream, then drop the connection without a logout.
    let seen = messages(&alice, 4);
    assert_contiguous(&seen, 1);
    let last = seen.last().unwrap().0;
    drop(alice);

    let alice = connect_with(
        &[server.addr],
        "alice",
        ClientOptions {
            requested_sequence_number: last + 1,
            ..options()
        },
    );
    assert_eq!(alice.first_sequence_number(), last + 1);
    alice
        .submit(&OrderBuilder::sell("ETH-PERP", 1, parse_price("500").unwrap()).unwrap())
        .unwrap();
    let rest = messages(&alice, 4);
    assert_contiguous(&rest, last + 1);
    assert_quiet(&alice, Duration::from_millis(300));
    drop(alice);

    // The whole stream, from 1, is what the two halves saw.
    let alice = connect(&server, "alice");
    let all = messages(&alice, 8);
    assert_contiguous(&all, 1);
    let halves: Vec<_> = seen.into_iter().chain(rest).collect();
    assert_eq!(all, halves);
    assert_quiet(&alice, Duration::from_millis(300));
}

#[test]
fn reconnects_while_messages_are_in_flight_lose_and_repeat_nothing() {
    let server = Server::start("async");
    let alice = connect(&server, "alice");
    let bob = connect(&server, "bob");
    let bid = alice
        .submit(&OrderBuilder::buy("BTC-PERP", 1000, parse_price("100").unwrap()).unwrap())
        .unwrap();
    let mut seen = messages(&alice, 2);
    let mut events = Vec::new();
    // Bob hits alice's bid 60 times while alice's connection is dropped every 10 orders.
    let mut bob_matches = Vec::new();
    for round in 0..6 {
        alice.force_reconnect();
        for _ in 0..10 {
            bob.submit(
                &OrderBuilder::sell("BTC-PERP", 1, parse_price("100").unwrap())
                    .unwrap()
                    .ioc(),
            )
            .unwrap();
        }
        // Bob's side: accepted + executed per order (a full fill has no cancel).
        let bob_msgs = messages(&bob, if round == 0 { 21 } else { 20 });
        bob_matches.extend(executed_matches(&bob_msgs));
        let (m, e) = events_until(&alice, Duration::from_secs(20), |m| {
            executed_matches(m).len() >= 10
        });
        seen.extend(m);
        events.extend(e);
    }
    assert_contiguous(&seen, 1);
    assert_eq!(seen.len(), 62);
    assert_eq!(executed_matches(&seen), bob_matches);
    assert!(seen[2..].iter().all(|(_, m)| m.order_token() == Some(bid)));
    let reconnects = events
        .iter()
        .filter(|e| matches!(e, ClientEvent::Reconnected { .. }))
        .count();
    assert_eq!(reconnects, 6, "{events:?}");
    assert!(!events
        .iter()
        .any(|e| matches!(e, ClientEvent::SequenceGap { .. })));
    assert_quiet(&alice, Duration::from_millis(300));
    assert_eq!(alice.next_sequence_number(), 63);
}

/// Alice rests an order and reads it; the server restarts (`restart` does it); Bob crosses
/// it; Alice's live stream continues with the next numbers, and equals the stream a fresh
/// login from 1 reads back.
fn resume_across(durability: &str, restart: impl FnOnce(&mut Server)) {
    let mut server = Server::start(durability);
    let alice = connect(&server, "alice");
    let token = order_token("KEEP1").unwrap();
    let order = OrderBuilder::buy("BTC-PERP", 10, parse_price("100").unwrap())
        .unwrap()
        .token(token);
    alice.submit(&order).unwrap();
    let mut live = messages(&alice, 2);

    restart(&mut server);

    // The client notices, reconnects on its own and resumes at 3.
    assert!(alice.wait_connected(Duration::from_secs(30)));
    let bob = connect(&server, "bob");
    bob.submit(
        &OrderBuilder::sell("BTC-PERP", 3, parse_price("100").unwrap())
            .unwrap()
            .ioc(),
    )
    .unwrap();
    // The same token again after the restart: still used.
    alice.submit(&order).unwrap();
    let (m, events) = events_until(&alice, Duration::from_secs(20), |m| m.len() >= 2);
    live.extend(m);
    assert_contiguous(&live, 1);
    assert!(
        events.iter().any(|e| matches!(
            e,
            ClientEvent::Reconnected {
                next_sequence_number: 3,
                ..
            }
        )),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ClientEvent::SequenceGap { .. })),
        "{events:?}"
    );
    let kinds: BTreeSet<u8> = live[2..].iter().map(|(_, m)| m.message_type()).collect();
    assert_eq!(kinds, BTreeSet::from([b'E', b'J']), "{live:?}");
    assert!(live[2..].iter().any(|(_, m)| matches!(m,
        OutboundMessage::OrderRejected(j) if j.order_token == token && j.reason == RejectReason::Other)));
    assert!(live[2..].iter().any(|(_, m)| matches!(m,
        OutboundMessage::OrderExecuted(e) if e.order_token == token && e.executed_shares == 3)));
    assert_quiet(&alice, Duration::from_millis(300));
    alice.logout().unwrap();
    events_until(&alice, Duration::from_secs(10), |_| alice.is_finished());
    drop(alice);

    let replay = connect(&server, "alice");
    let all = messages(&replay, live.len());
    assert_eq!(all, live);
    assert_quiet(&replay, Duration::from_millis(300));
}

#[test]
fn a_server_restart_is_seamless() {
    resume_across("async", |server| {
        server.restart();
    });
}

#[test]
fn a_killed_fsync_server_loses_nothing_it_acknowledged() {
    resume_across("fsync", |server| {
        server.kill();
        server.relaunch();
    });
}

#[test]
fn a_refused_ticket_falls_back_to_the_password_and_a_new_ticket() {
    // A single node draws a new ticket key at each start: after a restart the client's
    // ticket is refused, and it must log in with its password at once (and get a new one).
    let mut server = Server::start("async");
    let bob = connect(&server, "bob");
    let bob_logins = |server: &Server, count: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let log = server.log_text();
            let logins: Vec<String> = log
                .lines()
                .filter(|l| l.contains("logged in") && l.contains("user=bob"))
                .map(str::to_string)
                .collect();
            if logins.len() >= count || std::time::Instant::now() >= deadline {
                return (logins, log);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while bob.resume_ticket_expiry().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(bob.resume_ticket_expiry().is_some());
    // A reconnect to the same process uses the ticket.
    bob.force_reconnect();
    assert_eq!(bob_logins(&server, 2).0.len(), 2);
    server.restart();
    let (logins, log) = bob_logins(&server, 3);
    // Password (first login), ticket (same process), then after the restart: the ticket
    // refused (a failed login) and the password accepted.
    assert_eq!(logins.len(), 3, "{log}");
    assert!(logins[0].contains("credential=password"), "{log}");
    assert!(logins[1].contains("credential=ticket"), "{log}");
    assert!(logins[2].contains("credential=password"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("login failed") && l.contains("user=bob")),
        "{log}"
    );
    assert!(bob.wait_connected(Duration::from_secs(10)));
}
