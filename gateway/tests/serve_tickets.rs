//! Resumption tickets and password checks against the real `keel serve`: a password login
//! is followed by a ticket in a Debug packet; the ticket logs the same user in again (and
//! earns no new ticket); it is refused for another user, an unknown user, or when altered;
//! with `resume_ticket_ttl_s = 0` no ticket is sent; a queued password check whose
//! connection closed is dropped unchecked (the node logs a running count); and the client
//! library keeps the ticket and logs in with it when it reconnects.

// A failed unwrap or assertion in a test is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod serve_support;

use std::time::Duration;

use keel_protocol::resume::TicketNotice;
use serve_support::{write_config, write_config_with, Client, Node, Packet, PASSWORD};

const SECOND: Duration = Duration::from_secs(1);

/// Logs `user` in with `password` on a new connection; the answer, and the ticket announced
/// after it (waiting for the first heartbeat, which follows within about a second).
fn login(node: &Node, user: &str, password: &str) -> (Client, Packet, Option<TicketNotice>) {
    let mut client = Client::connect(node.addr);
    let answer = client.login(user, password, "", 0);
    if !matches!(answer, Packet::Accepted { .. }) {
        return (client, answer, None);
    }
    assert_eq!(client.recv(5 * SECOND), Ok(Packet::Heartbeat));
    let notices: Vec<TicketNotice> = client
        .debug
        .iter()
        .map(|text| TicketNotice::parse(text).expect("a Debug packet that is not a ticket"))
        .collect();
    assert!(notices.len() <= 1, "{notices:?}");
    (client, answer, notices.first().copied())
}

/// Logs out and waits until the server closed the connection (the user is free again).
fn log_out(mut client: Client) {
    assert!(client.logout());
    assert!(client.wait_closed(10 * SECOND, &mut Vec::new()));
}

#[test]
fn a_ticket_logs_its_user_in_again_and_nobody_else() {
    let setup = write_config("async");
    let node = Node::start(&setup.config);

    let (alice, answer, notice) = login(&node, "alice", PASSWORD);
    assert!(matches!(answer, Packet::Accepted { .. }), "{answer:?}");
    let notice = notice.expect("no ticket after a password login");
    let ticket = notice.ticket.as_str().to_string();
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // The default life is 8 hours, rounded up to the next hour.
    assert!(notice.expires_unix_s >= now_s + 8 * 3_600 - 5, "{notice:?}");
    assert!(notice.expires_unix_s <= now_s + 9 * 3_600 + 5, "{notice:?}");
    log_out(alice);

    // The ticket instead of the password: accepted, and no new ticket.
    let (alice, answer, again) = login(&node, "alice", &ticket);
    assert!(matches!(answer, Packet::Accepted { .. }), "{answer:?}");
    assert_eq!(again, None);
    assert!(node
        .wait_log_all(
            &["logged in", "user=alice", "credential=ticket"],
            10 * SECOND
        )
        .is_some());
    log_out(alice);

    // Another user, an unknown user, an altered ticket: not authorized.
    assert_eq!(login(&node, "bob", &ticket).1, Packet::Rejected(b'A'));
    assert_eq!(login(&node, "zed", &ticket).1, Packet::Rejected(b'A'));
    let mut altered = ticket.into_bytes();
    altered[9] = if altered[9] == b'a' { b'b' } else { b'a' };
    let altered = String::from_utf8(altered).unwrap();
    assert_eq!(login(&node, "alice", &altered).1, Packet::Rejected(b'A'));
    // The password still works, and earns a ticket again.
    let (_alice, answer, notice) = login(&node, "alice", PASSWORD);
    assert!(matches!(answer, Packet::Accepted { .. }), "{answer:?}");
    assert!(notice.is_some());
}

#[test]
fn with_tickets_disabled_no_ticket_is_sent() {
    let setup = write_config_with("async", |builder| {
        builder.server(|server| server.resume_ticket_ttl_s = 0)
    });
    let node = Node::start(&setup.config);
    let (_alice, answer, notice) = login(&node, "alice", PASSWORD);
    assert!(matches!(answer, Packet::Accepted { .. }), "{answer:?}");
    assert_eq!(notice, None);
}

#[test]
fn a_closed_connections_queued_password_check_is_dropped() {
    // One checking thread, so that checks queue behind each other.
    let setup = write_config_with("async", |builder| {
        builder.server(|server| server.login_threads = Some(1))
    });
    let node = Node::start(&setup.config);
    // erin's hash has `keel passwd`'s default (slow) parameters: her check keeps the one
    // thread busy while the logins behind it are sent and their connections closed.
    let mut first = Client::connect(node.addr);
    first.send_login("erin", PASSWORD, "", 0);
    for _ in 0..5 {
        let mut gone = Client::connect(node.addr);
        gone.send_login("erin", PASSWORD, "", 0);
        drop(gone);
    }
    assert!(matches!(
        first.recv(30 * SECOND),
        Ok(Packet::Accepted { .. })
    ));
    // The closed connections' checks end as dropped, not verified: the node counts them.
    let line = node
        .wait_log("password check dropped", 30 * SECOND)
        .expect("no dropped check logged");
    assert!(line.contains("dropped_total=1"), "{line}");
    // Only erin's own login was verified and logged in.
    assert_eq!(node.count_log("logged in"), 1, "{}", node.log_text());
}

#[test]
fn the_client_library_reconnects_with_its_ticket() {
    let setup = write_config("async");
    let node = Node::start(&setup.config);
    let client = keel_client::Client::connect(
        &[node.addr],
        "bob",
        PASSWORD,
        keel_client::ClientOptions::default(),
    )
    .unwrap();
    // The ticket arrives just after Login Accepted, on the background thread.
    let deadline = std::time::Instant::now() + 10 * SECOND;
    while client.resume_ticket_expiry().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(client.resume_ticket_expiry().is_some());
    client.force_reconnect();
    assert!(node
        .wait_log_all(&["logged in", "user=bob", "credential=ticket"], 20 * SECOND)
        .is_some());
    assert!(client.wait_connected(10 * SECOND));
    assert_eq!(
        node.count_log("credential=password"),
        1,
        "{}",
        node.log_text()
    );
}
