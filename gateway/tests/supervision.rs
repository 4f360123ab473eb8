//! No zombie nodes: the death of each kind of node thread, injected into a real `keel serve`
//! through the test seam (`KEEL_FAULT`, keel-node's feature `fault-injection`, which this
//! package's tests turn on), stops the whole node:
//! - the process exits with the fault's status (70: a thread failed, 74: the journal
//!   failed) and one `keel serve: fatal:` line naming the thread;
//! - the client is told End of Session or sees its connection closed: no order is left
//!   unanswered on an open connection;
//! - after a restart (without the fault) the client's stream from sequence number 1 starts
//!   with exactly the messages it received before, holds every order it saw acknowledged,
//!   and the node takes orders again.
//!
//! The deadlines below are bounds for a failure, not timing assertions.

// A failed unwrap or assertion in a test is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod serve_support;

use std::collections::BTreeSet;
use std::time::Duration;

use keel_protocol::ouch::{BuySellIndicator, OutboundMessage};
use keel_testkit::process::Launch;
use serve_support::{enter, keel, token_of, write_config, Client, End, Node, Packet, IOC};

const SECOND: Duration = Duration::from_secs(1);
/// Inputs the faulty thread lets through before it fails.
const FAULT_AFTER: u64 = 20;
/// Orders the client tries to send (more than get through).
const ORDERS: usize = 60;

/// What the client saw before the node went away.
struct Seen {
    /// Every Sequenced Data message, in order.
    messages: Vec<Vec<u8>>,
    /// Tokens of the orders it saw accepted.
    accepted: BTreeSet<String>,
    /// Tokens it sent.
    sent: BTreeSet<String>,
    /// Whether it was told End of Session before the connection closed.
    end_of_session: bool,
}

/// Sends IOC orders one at a time, each followed by its answers, until the node stops
/// answering (End of Session or a closed connection). Fails if the connection stays open
/// with an order unanswered.
fn trade_until_the_node_stops(client: &mut Client) -> Seen {
    let mut seen = Seen {
        messages: Vec::new(),
        accepted: BTreeSet::new(),
        sent: BTreeSet::new(),
        end_of_session: false,
    };
    for i in 0..ORDERS {
        let token = format!("Z{i:05}");
        if !client.send(&enter(
            &token,
            BuySellIndicator::Buy,
            1,
            "BTC-PERP",
            100,
            IOC,
        )) {
            return seen;
        }
        seen.sent.insert(token.clone());
        loop {
            match client.recv(60 * SECOND) {
                Ok(Packet::Data(bytes)) => {
                    let message = OutboundMessage::decode(&bytes).unwrap();
                    seen.messages.push(bytes);
                    if let OutboundMessage::OrderAccepted(_) = message {
                        seen.accepted.insert(token_of(&message));
                    }
                    if token_of(&message) == token {
                        break;
                    }
                }
                Ok(Packet::Heartbeat) => {}
                Ok(Packet::End) => {
                    seen.end_of_session = true;
                    let mut after = Vec::new();
                    assert!(
                        client.wait_closed(20 * SECOND, &mut after),
                        "the connection stayed open after End of Session"
                    );
                    assert!(after.is_empty(), "packets after End of Session: {after:?}");
                    return seen;
                }
                Ok(other) => panic!("unexpected packet {other:?}"),
                Err(End::Closed) => return seen,
                Err(End::Timeout) => {
                    panic!("order {token} unanswered for 60 s on an open connection (a zombie)")
                }
            }
        }
    }
    panic!("the injected fault never stopped the node ({ORDERS} orders answered)");
}

/// Starts a node with `fault` armed, trades until it stops, checks its exit and restarts
/// it; returns whether the client was told End of Session.
fn a_dying_thread_stops_the_node(fault: &str, status: i32, thread: &str) -> bool {
    let setup = write_config("fsync");
    let mut node = Node(
        Launch::serve(keel(), &setup.config)
            .env("RUST_LOG", "info")
            .env("KEEL_FAULT", fault)
            .start()
            .unwrap(),
    );
    assert!(
        node.wait_log("fault injection armed", 10 * SECOND)
            .is_some(),
        "the test binary lacks the fault-injection seam"
    );
    let (mut client, next) = Client::logged_in(node.addr, "alice", 1);
    assert_eq!(next, 1);
    let seen = trade_until_the_node_stops(&mut client);
    let exit = node.wait_exit(20 * SECOND);
    let log = node.log_text();
    assert_eq!(exit.code(), Some(status), "{fault}: exit {exit}:\n{log}");
    let fatal = node
        .wait_log("keel serve: fatal:", SECOND)
        .unwrap_or_else(|| panic!("{fault}: no fatal line:\n{log}"));
    assert!(fatal.contains(thread), "{fault}: {fatal}");
    assert!(
        fatal.contains(&format!("exit status {status}")),
        "{fault}: {fatal}"
    );
    assert!(
        seen.accepted.len() as u64 >= FAULT_AFTER / 2,
        "{fault}: only {} orders accepted before the fault",
        seen.accepted.len()
    );

    // Restart without the fault: everything the client saw is there, and more orders go.
    let node = Node::start(&setup.config);
    let (mut client, _) = Client::logged_in(node.addr, "alice", 1);
    for (i, before) in seen.messages.iter().enumerate() {
        let again = client
            .message(10 * SECOND)
            .unwrap_or_else(|end| panic!("{fault}: message {} after restart: {end:?}", i + 1));
        assert_eq!(&again, before, "{fault}: message {} changed", i + 1);
    }
    let mut replayed: BTreeSet<String> = BTreeSet::new();
    for bytes in client.drain_messages(SECOND) {
        let message = OutboundMessage::decode(&bytes).unwrap();
        assert!(
            seen.sent.contains(&token_of(&message)),
            "{fault}: a message for an order never sent: {message:?}"
        );
        if let OutboundMessage::OrderAccepted(_) = message {
            replayed.insert(token_of(&message));
        }
    }
    assert!(
        seen.accepted.is_disjoint(&replayed),
        "{fault}: accepted twice"
    );
    let answer = serve_support::order_round_trip(
        &mut client,
        &enter("AFTER", BuySellIndicator::Buy, 1, "BTC-PERP", 100, IOC),
        "AFTER",
    );
    assert!(answer < 10 * SECOND);
    seen.end_of_session
}

#[test]
fn a_matching_loop_error_stops_the_node_with_end_of_session() {
    let fault = format!("matching:error:after={FAULT_AFTER}");
    assert!(a_dying_thread_stops_the_node(&fault, 70, "keel-matching"));
}

#[test]
fn a_matching_loop_panic_stops_the_node_with_end_of_session() {
    let fault = format!("matching:panic:after={FAULT_AFTER}");
    assert!(a_dying_thread_stops_the_node(&fault, 70, "keel-matching"));
}

#[test]
fn a_failed_journal_sync_stops_the_node_with_end_of_session() {
    let fault = format!("flusher:error:after={FAULT_AFTER}");
    assert!(a_dying_thread_stops_the_node(
        &fault,
        74,
        "keel-journal-sync"
    ));
}

#[test]
fn a_gateway_error_stops_the_node_with_end_of_session() {
    let fault = format!("gateway:error:after={FAULT_AFTER}");
    assert!(a_dying_thread_stops_the_node(&fault, 70, "keel-gateway"));
}

#[test]
fn a_gateway_panic_stops_the_node() {
    // The gateway itself is gone: nobody can say End of Session; the connection closes.
    let fault = format!("gateway:panic:after={FAULT_AFTER}");
    a_dying_thread_stops_the_node(&fault, 70, "keel-gateway");
}

#[test]
fn a_stuck_matching_loop_stops_the_node_with_end_of_session() {
    // The loop never returns (as one waiting for a journal segment that never comes would):
    // the gateway sees inputs unanswered for 100 of its 100 ms ticks and stops the node.
    let fault = format!("matching:hang:after={FAULT_AFTER}");
    assert!(a_dying_thread_stops_the_node(&fault, 70, "keel-matching"));
}
