//! The client library against scripted fake servers (no `keel serve`): what a real server
//! does not do on demand — resuming below or above the requested sequence number, garbage
//! and protocol violations, silence, refusing a reconnect — plus heartbeats, a consumer that
//! stops reading, and logout.
// Tests fail by panicking; unwrap/expect/panic are how they report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use keel_client::{Client, ClientError, ClientEvent, ClientOptions};
use keel_protocol::ouch::{EventCode, OutboundMessage, SystemEvent};
use keel_protocol::soupbin::{
    ClientPacket, FrameDecoder, LoginAccepted, LoginRejectReason, LoginRequest, ServerPacket,
    SessionId,
};

/// Serves connections one after another: `script(index, stream, login)` for each.
fn fake<F>(script: F) -> SocketAddr
where
    F: Fn(usize, TcpStream, LoginRequest) + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for (index, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { return };
            let mut login = [0u8; 49];
            if stream.read_exact(&mut login).is_err() {
                continue;
            }
            let Ok(Some((ClientPacket::LoginRequest(request), _))) =
                FrameDecoder::default().decode_client(&login)
            else {
                panic!("not a login request: {login:?}");
            };
            script(index, stream, request);
        }
    });
    addr
}

fn accepted(seq: u64) -> Vec<u8> {
    let mut out = Vec::new();
    ServerPacket::LoginAccepted(LoginAccepted {
        session: SessionId::new("FAKE1").unwrap(),
        sequence_number: seq,
    })
    .encode(&mut out)
    .unwrap();
    out
}

/// A distinguishable message: a System Event whose timestamp is `n`.
fn message(n: u64) -> OutboundMessage {
    OutboundMessage::SystemEvent(SystemEvent {
        timestamp: n,
        event_code: EventCode::StartOfDay,
    })
}

fn sequenced(n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    message(n).encode_sequenced(&mut out);
    out
}

fn quick() -> ClientOptions {
    ClientOptions {
        requested_sequence_number: 1,
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        reconnect_attempts: 5,
        ..ClientOptions::default()
    }
}

fn connect(addr: SocketAddr, options: ClientOptions) -> Client {
    Client::connect(&[addr], "alice", "pw", options).unwrap()
}

/// Events until `stop` says so, with a deadline.
fn events_until(client: &Client, mut stop: impl FnMut(&ClientEvent) -> bool) -> Vec<ClientEvent> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut events = Vec::new();
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_else(|| panic!("timed out: {events:#?}"));
        let Some(event) = client.next_event(left) else {
            if client.is_finished() {
                panic!("client finished: {events:#?}");
            }
            continue;
        };
        let done = stop(&event);
        events.push(event);
        if done {
            return events;
        }
    }
}

/// Keeps a connection open with heartbeats until the client closes it.
fn hold(mut stream: TcpStream) {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(_) => {
                if stream.write_all(&[0, 1, b'H']).is_err() {
                    return;
                }
            }
        }
    }
}

#[test]
fn resume_drops_repeats_and_reports_gaps() {
    let (requested_tx, requested_rx) = mpsc::channel();
    let addr = fake(move |index, mut stream, login| {
        requested_tx.send(login.requested_sequence_number).unwrap();
        let mut out = Vec::new();
        match index {
            0 => {
                out.extend(accepted(1));
                (1..=3).for_each(|n| out.extend(sequenced(n)));
            }
            // Starts below what was asked: 2 and 3 again, then 4 and 5.
            1 => {
                out.extend(accepted(2));
                (2..=5).for_each(|n| out.extend(sequenced(n)));
            }
            // Starts above: 6 to 8 never come.
            _ => {
                out.extend(accepted(9));
                out.extend(sequenced(9));
            }
        }
        stream.write_all(&out).unwrap();
        if index >= 2 {
            hold(stream);
        }
    });
    let client = connect(addr, quick());
    let events = events_until(&client, |e| {
        matches!(e, ClientEvent::Message { seq: 9, .. })
    });
    let messages: Vec<(u64, OutboundMessage)> = events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Message { seq, message } => Some((*seq, *message)),
            _ => None,
        })
        .collect();
    let expected: Vec<(u64, OutboundMessage)> = [1, 2, 3, 4, 5, 9]
        .iter()
        .map(|n| (*n, message(*n)))
        .collect();
    assert_eq!(messages, expected, "{events:#?}");
    assert!(events.contains(&ClientEvent::SequenceGap {
        expected: 6,
        next: 9
    }));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, ClientEvent::Reconnected { .. }))
            .count(),
        2
    );
    let requested: Vec<u64> = requested_rx.try_iter().collect();
    assert_eq!(requested, [1, 4, 6]);
    assert_eq!(client.next_sequence_number(), 10);
    assert_eq!(client.session().as_str(), "FAKE1");
}

#[test]
fn garbage_from_the_server_is_a_reconnect_never_a_panic() {
    let garbage: Vec<Vec<u8>> = vec![
        vec![0, 0],                               // zero length
        vec![0xff, 0xff, b'S'],                   // longer than any server packet
        vec![0, 1, b'Q'],                         // unknown packet type
        vec![0, 2, b'H', 0],                      // heartbeat of the wrong length
        accepted(5),                              // a second Login Accepted
        vec![0, 2, b'J', b'A'],                   // Login Rejected while logged in
        vec![0, 5, b'A', b'1', b'2', b'3', b'4'], // a truncated Login Accepted
    ];
    let cases = garbage.len();
    let addr = fake(move |index, mut stream, _| {
        let mut out = accepted(1);
        match garbage.get(index) {
            Some(bytes) => {
                out.extend(bytes);
                let _ = stream.write_all(&out);
                // Wait for the client to hang up.
                let _ = stream.read(&mut [0u8; 64]);
            }
            None => {
                // Finally a message that is sequenced but not OUCH, then a good one.
                out.extend([0, 3, b'S', b'A', 0]);
                out.extend(sequenced(2));
                stream.write_all(&out).unwrap();
                hold(stream);
            }
        }
    });
    let client = connect(addr, quick());
    let events = events_until(&client, |e| matches!(e, ClientEvent::Message { .. }));
    let lost: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Disconnected { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(lost.len(), cases, "{events:#?}");
    assert!(
        lost.iter().all(|r| r.contains("protocol error")),
        "{lost:#?}"
    );
    assert!(
        matches!(&events[events.len() - 2], ClientEvent::Undecodable { seq: 1, payload, .. } if payload == &[b'A', 0]),
        "{events:#?}"
    );
    assert_eq!(
        events.last(),
        Some(&ClientEvent::Message {
            seq: 2,
            message: message(2)
        })
    );

    // Garbage instead of a login answer: connect fails with the reason.
    let addr = fake(|_, mut stream, _| {
        let _ = stream.write_all(&[0, 1, b'?']);
    });
    let error = Client::connect(
        &[addr],
        "alice",
        "pw",
        ClientOptions {
            connect_attempts: 1,
            ..quick()
        },
    )
    .unwrap_err();
    assert!(
        matches!(&error, ClientError::Unavailable { failures, .. } if failures.contains("protocol error")),
        "{error}"
    );
}

#[test]
fn client_heartbeats_and_a_silent_server() {
    let (count_tx, count_rx) = mpsc::channel();
    let addr = fake(move |_, mut stream, _| {
        stream.write_all(&accepted(1)).unwrap();
        // Say nothing; count the client's heartbeats for a while.
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_millis(700);
        let mut bytes = Vec::new();
        let mut buf = [0u8; 64];
        while Instant::now() < deadline {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
        }
        let heartbeats = bytes.chunks(3).filter(|c| *c == [0, 1, b'R']).count();
        assert_eq!(bytes.len(), heartbeats * 3, "only heartbeats: {bytes:?}");
        count_tx.send(heartbeats).unwrap();
        // Stay silent (reading, not answering) until the client gives up on us.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(0) = stream.read(&mut buf) {
                break;
            }
        }
    });
    let client = connect(
        addr,
        ClientOptions {
            heartbeat_interval: Duration::from_millis(100),
            server_timeout: Duration::from_millis(1000),
            reconnect: false,
            ..quick()
        },
    );
    let events = events_until(&client, |e| matches!(e, ClientEvent::GaveUp { .. }));
    assert!(
        matches!(&events[0], ClientEvent::Disconnected { reason, .. } if reason.contains("nothing from the server")),
        "{events:#?}"
    );
    let heartbeats = count_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        (4..=9).contains(&heartbeats),
        "{heartbeats} heartbeats in 700 ms"
    );
    assert!(client.next_event(Duration::from_millis(100)).is_none());
    assert!(client.is_finished());
    assert!(matches!(
        client.cancel_order(keel_client::order_token("X").unwrap(), 0),
        Err(ClientError::Closed)
    ));
}

#[test]
fn a_reconnect_refused_as_not_authorized_gives_up() {
    let addr = fake(|index, mut stream, _| {
        if index == 0 {
            stream.write_all(&accepted(1)).unwrap();
        } else {
            let mut out = Vec::new();
            ServerPacket::LoginRejected(LoginRejectReason::NotAuthorized)
                .encode(&mut out)
                .unwrap();
            stream.write_all(&out).unwrap();
        }
    });
    let client = connect(addr, quick());
    let events = events_until(&client, |e| matches!(e, ClientEvent::GaveUp { .. }));
    assert!(
        matches!(events.last(), Some(ClientEvent::GaveUp { reason }) if reason.contains("not authorized")),
        "{events:#?}"
    );
}

#[test]
fn a_consumer_that_stops_reading_keeps_the_connection_alive_and_loses_nothing() {
    const COUNT: u64 = 5_000;
    let (heartbeats_tx, heartbeats_rx) = mpsc::channel();
    let addr = fake(move |_, mut stream, _| {
        let mut out = accepted(1);
        (1..=COUNT).for_each(|n| out.extend(sequenced(n)));
        stream.write_all(&out).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut heartbeats = 0;
        let deadline = Instant::now() + Duration::from_millis(800);
        let mut buf = [0u8; 64];
        while Instant::now() < deadline {
            if let Ok(n) = stream.read(&mut buf) {
                heartbeats += buf[..n].iter().filter(|b| **b == b'R').count();
            }
        }
        heartbeats_tx.send(heartbeats).unwrap();
        hold(stream);
    });
    let client = connect(
        addr,
        ClientOptions {
            event_capacity: 16,
            heartbeat_interval: Duration::from_millis(100),
            ..quick()
        },
    );
    // The queue fills at once; the client keeps heartbeating while nobody reads.
    let heartbeats = heartbeats_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(heartbeats >= 4, "{heartbeats} heartbeats");
    assert!(client.next_sequence_number() < COUNT);
    for n in 1..=COUNT {
        match client.next_event(Duration::from_secs(5)) {
            Some(ClientEvent::Message { seq, message: m }) => {
                assert_eq!((seq, m), (n, message(n)));
            }
            other => panic!("message {n}: {other:?}"),
        }
    }
    assert!(client.is_connected());
}

#[test]
fn logout_sends_the_request_and_ends_the_stream() {
    let (got_tx, got_rx) = mpsc::channel();
    let addr = fake(move |_, mut stream, _| {
        stream.write_all(&accepted(1)).unwrap();
        let mut packet = [0u8; 3];
        stream.read_exact(&mut packet).unwrap();
        // Messages already on their way still arrive.
        stream.write_all(&sequenced(1)).unwrap();
        got_tx.send(packet).unwrap();
    });
    let client = connect(addr, quick());
    client.logout().unwrap();
    let events = events_until(&client, |e| matches!(e, ClientEvent::LoggedOut));
    assert_eq!(got_rx.recv().unwrap(), [0, 1, b'O']);
    assert_eq!(
        events,
        [
            ClientEvent::Message {
                seq: 1,
                message: message(1)
            },
            ClientEvent::LoggedOut
        ]
    );
    assert!(client.next_event(Duration::from_millis(100)).is_none());
}

#[test]
fn sequence_numbers_at_the_top_of_the_range_do_not_panic() {
    let addr = fake(|_, mut stream, _| {
        let mut out = accepted(u64::MAX);
        out.extend(sequenced(1));
        out.extend(sequenced(2));
        stream.write_all(&out).unwrap();
        hold(stream);
    });
    let client = connect(addr, quick());
    let events = events_until(
        &client,
        |e| matches!(e, ClientEvent::Message { message: m, .. } if *m == message(2)),
    );
    assert_eq!(
        events.first(),
        Some(&ClientEvent::SequenceGap {
            expected: 1,
            next: u64::MAX
        })
    );
    assert!(matches!(
        events[1],
        ClientEvent::Message { seq: u64::MAX, .. }
    ));
    assert!(client.is_connected());
}

/// Reads whatever the client sends and never answers, until the client closes.
fn silent(mut stream: TcpStream) {
    let mut buf = [0u8; 256];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            return;
        }
    }
}

fn refuse_with_s(mut stream: TcpStream) {
    let mut out = Vec::new();
    ServerPacket::LoginRejected(LoginRejectReason::SessionNotAvailable)
        .encode(&mut out)
        .unwrap();
    let _ = stream.write_all(&out);
}

fn order(client: &Client) {
    let price = keel_client::parse_price("1").unwrap();
    client
        .submit(&keel_client::OrderBuilder::buy("X", 1, price).unwrap())
        .unwrap();
}

/// Options under which only the answer-timeout rule can end a connection: the silence
/// timeout is far beyond the test's deadline.
fn probing() -> ClientOptions {
    ClientOptions {
        answer_timeout: Duration::from_millis(100),
        server_timeout: Duration::from_secs(600),
        ..quick()
    }
}

#[test]
fn a_silent_server_loses_the_session_to_an_endpoint_that_accepts_it() {
    // A paused leader: logs in, then never says anything again.
    let paused = fake(|_, mut stream, _| {
        stream.write_all(&accepted(1)).unwrap();
        silent(stream);
    });
    // The new leader: serves the session from where the client asks.
    let (asked_tx, asked_rx) = mpsc::channel();
    let elected = fake(move |_, mut stream, login| {
        asked_tx.send(login.requested_sequence_number).unwrap();
        let mut out = accepted(login.requested_sequence_number);
        out.extend(sequenced(login.requested_sequence_number));
        stream.write_all(&out).unwrap();
        hold(stream);
    });
    let client = Client::connect(&[paused, elected], "alice", "pw", probing()).unwrap();
    order(&client);
    let events = events_until(&client, |e| matches!(e, ClientEvent::Message { .. }));
    assert!(
        matches!(&events[0], ClientEvent::Disconnected { endpoint, reason }
            if *endpoint == paused && reason.contains("accepted the session")),
        "{events:#?}"
    );
    assert!(
        matches!(&events[1], ClientEvent::Reconnected { endpoint, next_sequence_number: 1, .. }
            if *endpoint == elected),
        "{events:#?}"
    );
    assert_eq!(asked_rx.recv_timeout(Duration::from_secs(5)).unwrap(), 1);
    assert_eq!(client.endpoint(), Some(elected));
}

#[test]
fn a_slow_server_keeps_its_client_while_the_other_endpoints_refuse() {
    // A slow but live leader: answers the order only after many answer timeouts.
    let slow = fake(|_, mut stream, _| {
        stream.write_all(&accepted(1)).unwrap();
        let mut header = [0u8; 3];
        // Wait for the order (its header; the rest stays unread).
        stream.read_exact(&mut header).unwrap();
        std::thread::sleep(Duration::from_millis(1_000));
        stream.write_all(&sequenced(1)).unwrap();
        hold(stream);
    });
    // A follower: refuses every login with `S` and counts them.
    let (probe_tx, probe_rx) = mpsc::channel();
    let follower = fake(move |_, stream, _| {
        probe_tx.send(()).unwrap();
        refuse_with_s(stream);
    });
    let client = Client::connect(&[slow, follower], "alice", "pw", probing()).unwrap();
    order(&client);
    let events = events_until(&client, |e| matches!(e, ClientEvent::Message { .. }));
    assert!(
        matches!(&events[..], [ClientEvent::Message { seq: 1, .. }]),
        "{events:#?}"
    );
    assert_eq!(client.endpoint(), Some(slow));
    // The silence was probed (the follower saw logins), and did not move the client.
    assert!(probe_rx.try_iter().count() >= 1);
}

#[test]
fn without_an_outstanding_order_silence_is_not_probed() {
    let quiet = fake(|_, mut stream, _| {
        stream.write_all(&accepted(1)).unwrap();
        hold(stream);
    });
    let (probe_tx, probe_rx) = mpsc::channel();
    let follower = fake(move |_, stream, _| {
        probe_tx.send(()).unwrap();
        refuse_with_s(stream);
    });
    let client = Client::connect(&[quiet, follower], "alice", "pw", probing()).unwrap();
    // Heartbeats only (ours and the fake's): nothing unanswered, so nothing to probe.
    assert!(client.next_event(Duration::from_millis(800)).is_none());
    assert_eq!(probe_rx.try_iter().count(), 0);
    assert_eq!(client.endpoint(), Some(quiet));
}
