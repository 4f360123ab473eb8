//! Hostile network input against the real `keel serve`'s order-entry port, from a second
//! source address: on Linux every 127.x.y.z is loopback, so the attacker binds 127.0.0.2
//! (and up) while the real users connect from 127.0.0.1. What is checked is that real
//! users get in, never how fast (deadlines are only bounds for failure).

// A failed unwrap or assertion in a test is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod serve_support;

use std::net::Ipv4Addr;
use std::time::Duration;

use keel_protocol::ouch::BuySellIndicator;
use serve_support::{enter, order_round_trip, write_config_with, Client, Node, Packet, GTC};

const SECOND: Duration = Duration::from_secs(1);
const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const USER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

/// `user` logs in with the right password from `from`; the logged-in client.
fn logs_in(node: &Node, from: Ipv4Addr, user: &str) -> Client {
    let mut client = Client::connect_from(from, node.addr);
    match client.login(user, serve_support::PASSWORD, "", 0) {
        Packet::Accepted { .. } => client,
        other => panic!(
            "{user} from {from} not logged in: {other:?}\n{}",
            node.log_text()
        ),
    }
}

/// A connection slot for every idle connection of the attacker, and time to hold them.
fn roomy_attacker_config() -> serve_support::Setup {
    write_config_with("async", |builder| {
        builder.server(|server| {
            server.connections_per_source_max = keel_node::server::CONNECTIONS_MAX;
            server.login_deadline_ms = 60_000;
        })
    })
}

#[test]
fn idle_connections_filling_every_slot_do_not_keep_a_real_user_out() {
    let setup = roomy_attacker_config();
    let node = Node::start(&setup.config);
    // Idle connections in every slot, all from the attacker's address (its per-source
    // limit raised so that it can take every slot).
    let slots = keel_node::server::CONNECTIONS_MAX;
    let mut held: Vec<Client> = (0..slots)
        .map(|_| Client::connect_from(ATTACKER, node.addr))
        .collect();
    // alice logs in from 127.0.0.1: her connection takes the slot of one of theirs.
    let mut alice = logs_in(&node, USER, "alice");
    let order = enter("A1", BuySellIndicator::Buy, 1, "BTC-PERP", 1_000, GTC);
    order_round_trip(&mut alice, &order, "A1");
    // The oldest of the attacker's was evicted to make room (logged), not alice.
    let oldest = held[0].local_addr();
    assert!(held[0].wait_closed(10 * SECOND, &mut Vec::new()));
    let line = node.wait_disconnect_logged(oldest, 5 * SECOND).unwrap();
    assert!(line.contains("evicted"), "{line}");
    // A logged-in session is never evicted: the attacker connecting again does not cut
    // alice off, it evicts its own.
    for _ in 0..50 {
        held.push(Client::connect_from(ATTACKER, node.addr));
    }
    let order = enter("A2", BuySellIndicator::Buy, 1, "BTC-PERP", 1_000, GTC);
    order_round_trip(&mut alice, &order, "A2");
    drop(held);
}

#[test]
fn one_address_holds_at_most_its_share_of_connections_not_logged_in() {
    let setup = write_config_with("async", |builder| {
        builder.server(|server| {
            server.connections_per_source_max = 8;
            server.login_deadline_ms = 60_000;
        })
    });
    let node = Node::start(&setup.config);
    let mut held: Vec<Client> = (0..12)
        .map(|_| Client::connect_from(ATTACKER, node.addr))
        .collect();
    // The 4 beyond the limit are closed at once, without a word.
    for (n, client) in held[8..].iter_mut().enumerate() {
        let mut seen = Vec::new();
        assert!(
            client.wait_closed(10 * SECOND, &mut seen),
            "connection {} over the limit was not closed",
            8 + n
        );
        assert!(seen.is_empty(), "{seen:?}");
    }
    assert!(node
        .wait_log("holds its most connections not yet logged in", 5 * SECOND)
        .is_some());
    // Other addresses are not affected.
    let _alice = logs_in(&node, USER, "alice");
    // A connection that logs in no longer counts: bob from the attacker's address, once
    // one of its idle connections is gone, gets in, and so does a further connection.
    let gone = held.remove(0);
    let gone_peer = gone.local_addr();
    drop(gone);
    assert!(node
        .wait_disconnect_logged(gone_peer, 10 * SECOND)
        .is_some());
    let _bob = logs_in(&node, ATTACKER, "bob");
    let _another = logs_in(&node, ATTACKER, "dave");
}

#[test]
fn a_connection_without_a_login_request_is_closed_at_the_short_login_deadline() {
    let setup = write_config_with("async", |builder| builder);
    let node = Node::start(&setup.config);
    let mut idle = Client::connect_from(ATTACKER, node.addr);
    let peer = idle.local_addr();
    // Half a Login Request, then nothing: the default deadline is 2 s (the silence
    // timeout, 15 s, is not what closes it).
    assert!(idle.send_raw(&[0, 47, b'L', b'a']));
    assert!(idle.wait_closed(10 * SECOND, &mut Vec::new()));
    let line = node.wait_disconnect_logged(peer, 5 * SECOND).unwrap();
    assert!(line.contains("no login request"), "{line}");
}

/// `count` logins of `user` with a wrong password from `from`, all at once; their answers.
fn guess_flood(node: &Node, from: Ipv4Addr, user: &str, count: usize) -> Vec<Packet> {
    let mut clients: Vec<Client> = (0..count)
        .map(|n| {
            let mut client = Client::connect_from(from, node.addr);
            client.send_login(user, &format!("guess{n}"), "", 0);
            client
        })
        .collect();
    clients
        .iter_mut()
        .map(|client| {
            client
                .recv(30 * SECOND)
                .unwrap_or_else(|end| panic!("a guess got no answer: {end:?}"))
        })
        .collect()
}

#[test]
fn a_wrong_password_flood_against_alice_from_another_address_does_not_lock_her_out() {
    let setup = write_config_with("async", |builder| builder);
    let node = Node::start(&setup.config);
    for round in 0..3 {
        let answers = guess_flood(&node, ATTACKER, "alice", 20);
        // Wrong password and locked out look the same: `A`.
        assert!(
            answers.iter().all(|a| *a == Packet::Rejected(b'A')),
            "round {round}: {answers:?}"
        );
        // alice, from her own address, logs in with her password all the same.
        let mut alice = logs_in(&node, USER, "alice");
        assert!(alice.logout());
        assert!(alice.wait_closed(10 * SECOND, &mut Vec::new()));
    }
    assert!(node.count_log("too many failures of this user from this address") >= 1);
}

#[test]
fn unknown_user_names_are_answered_like_wrong_passwords_and_lock_out_no_real_user() {
    let setup = write_config_with("async", |builder| builder);
    let node = Node::start(&setup.config);
    let mut clients: Vec<Client> = (0..20)
        .map(|n| {
            let mut client = Client::connect_from(ATTACKER, node.addr);
            client.send_login(&format!("zz{n}"), serve_support::PASSWORD, "", 0);
            client
        })
        .collect();
    for client in &mut clients {
        assert_eq!(client.recv(30 * SECOND).unwrap(), Packet::Rejected(b'A'));
    }
    // The guesses counted against that address's unknown names, not against any user: a
    // real user from the same address, and one from elsewhere, log in.
    let _bob = logs_in(&node, ATTACKER, "bob");
    let _alice = logs_in(&node, USER, "alice");
}

/// `keel serve` on `config` under `sh -c 'ulimit LIMIT; exec keel serve'`.
fn serve_under_ulimit(config: &std::path::Path, limit: &str) -> std::process::Command {
    let mut command = std::process::Command::new("sh");
    command.arg("-c").arg(format!(
        "ulimit {limit} && exec \"$0\" serve --config \"$1\""
    ));
    command.arg(serve_support::keel()).arg(config);
    command
}

#[test]
fn a_node_refuses_to_start_when_the_open_file_limit_cannot_hold_its_connections() {
    let setup = write_config_with("async", |builder| builder);
    // Soft and hard limit 512: fewer than the 1,024 connection slots.
    let output = serve_under_ulimit(&setup.config, "-n 512")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started: {stderr}");
    assert!(
        stderr.contains("open-file limit is too low") && stderr.contains("ulimit -n"),
        "{stderr}"
    );
}

#[test]
fn a_node_raises_a_low_soft_open_file_limit_up_to_the_hard_one() {
    let setup = write_config_with("async", |builder| builder);
    // Soft limit 512, hard limit as it is: high enough on a test machine (else skipped).
    let hard = std::process::Command::new("sh")
        .args(["-c", "ulimit -Hn"])
        .output()
        .unwrap();
    let hard = String::from_utf8_lossy(&hard.stdout).trim().to_string();
    if hard != "unlimited" && hard.parse::<u64>().unwrap() < 4_096 {
        eprintln!("skipped: the hard open-file limit is {hard}");
        return;
    }
    let launch =
        keel_testkit::process::Launch::command(serve_under_ulimit(&setup.config, "-Sn 512"));
    let node = Node(launch.start().unwrap());
    assert!(node
        .wait_log("open-file limit (soft) raised", 5 * SECOND)
        .is_some());
    let _alice = logs_in(&node, USER, "alice");
}

#[test]
fn a_login_from_another_address_is_checked_before_a_backlog_of_guesses() {
    // One checking thread, and guesses against erin, whose hash has `keel passwd`'s full
    // cost: her checks are slow, the others' cheap.
    let setup = write_config_with("async", |builder| {
        builder.server(|server| server.login_threads = Some(1))
    });
    let node = Node::start(&setup.config);
    // Five from each of two addresses (more from one would be refused by the lockout
    // without a check).
    let mut guesses: Vec<Client> = (0..10)
        .map(|n| {
            let from = if n % 2 == 0 {
                ATTACKER
            } else {
                Ipv4Addr::new(127, 0, 0, 3)
            };
            let mut client = Client::connect_from(from, node.addr);
            client.send_login("erin", &format!("guess{n}"), "", 0);
            client
        })
        .collect();
    // alice's login arrives behind the ten guesses; the queue is fair per address, so it is
    // checked after a few of them, not after all ten (one thread answers in order of
    // checking, and the I/O thread answers as verdicts come).
    let _alice = logs_in(&node, USER, "alice");
    let answered = guesses
        .iter_mut()
        .map(|client| client.recv(Duration::from_millis(1)).is_ok())
        .filter(|answered| *answered)
        .count();
    assert!(
        answered < 5,
        "alice was answered after every guess before her"
    );
    for client in &mut guesses {
        // The rest are answered too, as wrong passwords.
        let _ = client.recv(30 * SECOND);
    }
}
