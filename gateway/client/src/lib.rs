//! A blocking OUCH 4.2 / SoupBinTCP 4.0 client for Keel (and any server speaking the same
//! protocols), and `keel client` on top of it ([`cli`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use keel_client::{parse_price, Client, ClientEvent, ClientOptions, OrderBuilder};
//!
//! let endpoints = ["127.0.0.1:9000".parse()?];
//! let client = Client::connect(&endpoints, "alice", "alicepass", ClientOptions::default())?;
//! let token = client.submit(&OrderBuilder::buy("BTC-PERP", 10, parse_price("100.25")?)?)?;
//! while let Some(event) = client.next_event(Duration::from_secs(1)) {
//!     println!("{event}");
//!     if let ClientEvent::Message { seq, message } = &event {
//!         // `seq` is the SoupBinTCP sequence number: persist the last one seen and pass
//!         // it + 1 as `requested_sequence_number` to resume in a later run.
//!         let _ = (seq, message, token);
//!     }
//! }
//! client.logout()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How it works
//!
//! [`Client::connect`] logs in on the calling thread (trying the endpoints in order), then
//! starts one background thread that owns the connection's read side. That thread decodes
//! every server packet (bounded: packets above
//! [`SERVER_PACKET_BYTES_MAX_DEFAULT`](keel_protocol::soupbin::SERVER_PACKET_BYTES_MAX_DEFAULT)
//! are protocol errors), numbers Sequenced Data messages, and queues them as
//! [`ClientEvent`]s on a bounded queue that [`Client::next_event`] reads. It also sends a
//! Client Heartbeat whenever the client has sent nothing for
//! [`ClientOptions::heartbeat_interval`], and treats a server silent for
//! [`ClientOptions::server_timeout`] as a lost connection. The sending methods
//! ([`Client::enter_order`] and friends) write directly from the caller's thread.
//!
//! # Reconnect and resume
//!
//! When the connection is lost (closed, reset, silent, a protocol error, End of Session),
//! the background thread queues [`ClientEvent::Disconnected`], then tries the endpoints in
//! order again, starting after the one it lost (which is tried last: after a failover it is
//! the dead leader) — [`ClientOptions::reconnect_attempts`] passes over the list, with a pause
//! between passes of [`ClientOptions::backoff_initial`] for the first second of the search
//! (an election takes a few hundred ms: a client is then at most one short pause from the
//! new leader), after that growing by half each pass up to [`ClientOptions::backoff_max`],
//! each pause drawn at random within ±50% of that (so the sessions of a dead leader do not
//! all come back in the same instant) — logging into the same session with requested sequence number = the
//! last message received + 1. `Login Rejected S` (e.g. a follower, or the server has not yet
//! noticed the old connection is gone) moves on to the next endpoint; `Login Rejected A`
//! ends the attempts ([`ClientEvent::GaveUp`]). Once logged in it queues
//! [`ClientEvent::Reconnected`] and the stream continues with no message lost or repeated:
//! if a server starts below the number asked for, the repeats are dropped; if it starts
//! above, [`ClientEvent::SequenceGap`] says so.
//!
//! **Silent servers.** A leader that is paused (SIGSTOP, a long GC-like stall, a frozen VM)
//! or cut off from the client neither answers nor closes the connection, and waiting
//! [`ClientOptions::server_timeout`] for its heartbeats to stop would cost seconds. So the
//! client also watches its own requests: when an order-entry message (Enter, Replace,
//! Cancel, Modify Order: every Unsequenced Data packet) was sent and *nothing at all* —
//! no message, no heartbeat — has arrived from the server since, for
//! [`ClientOptions::answer_timeout`] (default 250 ms), it *probes*: it tries to log into
//! the same session at each of the other endpoints, once, with connect and login each
//! limited to four times the answer timeout (at least 200 ms). If one accepts, the cluster
//! has moved on: the client drops the silent connection ([`ClientEvent::Disconnected`] says
//! why) and carries on at the new endpoint ([`ClientEvent::Reconnected`], the stream resumed
//! as after any reconnect). If none accepts (a follower answers `Login Rejected S`
//! while the leader is merely slow), the client stays, keeps reading, and probes again
//! after half the answer timeout, with ±50% random jitter, for as long as the silence
//! lasts; [`ClientOptions::server_timeout`] still ends the connection in the end. A slow
//! but live leader therefore never loses its clients to probing, and probing costs the
//! other endpoints one short login each (a follower refuses without checking a password).
//! With a single endpoint nothing is probed.
//!
//! **Resumption tickets.** After a password login a Keel node announces a resumption ticket
//! in a SoupBinTCP Debug packet (`keel_protocol::resume`). The client keeps the latest one
//! and logs in with it, instead of the password, on every reconnect while it has not expired
//! (by this machine's clock): a node verifies it in microseconds where a password costs an
//! argon2 check, which matters when every session of a failed leader logs in again at once.
//! A ticket refused as not authorized (expired, or the cluster's secret was rotated) is
//! forgotten and the same endpoint is tried again at once with the password. Servers that
//! send no ticket are logged into with the password, as before.
//!
//! Messages are *received* once queued: a message is never queued twice, and the queue
//! survives reconnects. While the queue is full the thread stops reading (heartbeats go
//! on); a server that then cuts the client off as a slow reader is reconnected to like any
//! other loss.
//!
//! Orders sent while disconnected fail with [`ClientError::NotConnected`] and are not
//! sent. A message written just before a connection dies may or may not have reached the
//! server: resend it with the same order token — Keel rejects a reused token, so a retried
//! Enter Order is never executed twice — and read the stream to see which one counted.
//!
//! The client never panics on server input: every decoder is bounded and every error is
//! an event or a reconnect.
#![deny(missing_docs)]

pub mod cli;
mod connection;
pub mod display;
mod error;
mod order;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Receiver;

use connection::{open_any, Credentials, Shared, Worker};
use keel_protocol::ouch::{
    BuySellIndicator, CancelOrder, EnterOrder, InboundMessage, ModifyOrder, OutboundMessage, Price,
    ReplaceOrder,
};
use keel_protocol::soupbin::{Password, SessionId};
use keel_protocol::{OrderToken, ProtocolError, Username};

pub use error::{login_reject_text, ClientError};
/// The users of the embedded demo configuration (`keel serve` without `--config`) and their
/// passwords: `keel client` logs in with these when given no password, and `keel serve`
/// prints them at start so a newcomer can log in. Never use them for anything but a demo.
pub const DEMO_USERS: &[(&str, &str)] = &[("alice", "alicepass"), ("bob", "bobpass")];

pub use order::{
    format_price, order_token, parse_price, replace_request, stock, OrderBuilder, TokenGenerator,
};

/// How a [`Client`] connects, heartbeats and reconnects. `ClientOptions::default()` suits
/// Keel's servers (1 s heartbeats, 5 s silence timeout, 250 ms answer timeout).
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Requested sequence number of the first login: `0` for only messages generated from
    /// now on, `1` for the whole session, `n` to resume after message `n - 1`. Default 0.
    pub requested_sequence_number: u64,
    /// Session of the first login; blank (the default) for the server's current session.
    /// Reconnects always ask for the session the first login got.
    pub session: SessionId,
    /// A Client Heartbeat is sent after this long without sending. Default 1 s.
    pub heartbeat_interval: Duration,
    /// The connection is considered lost after this long without hearing from the server
    /// (which heartbeats every second). Default 5 s.
    pub server_timeout: Duration,
    /// When an order-entry message has gone unanswered this long, with nothing at all
    /// received from the server since it was sent, the client asks the other endpoints
    /// whether one of them now serves the session, and moves there if one does (see
    /// "Silent servers" in the crate documentation). Zero turns the probing off. Default
    /// 250 ms.
    pub answer_timeout: Duration,
    /// TCP connect timeout per endpoint. Default 2 s.
    pub connect_timeout: Duration,
    /// Time allowed for the server to answer a Login Request. Default 10 s.
    pub login_timeout: Duration,
    /// A write blocked this long breaks the connection. Default 5 s.
    pub write_timeout: Duration,
    /// How long [`Client::logout`] waits for the server to close before giving up. Default 5 s.
    pub logout_timeout: Duration,
    /// Passes over the endpoint list for the first login. Default 10 (about a second with
    /// the default pauses: long enough to ride out an election).
    pub connect_attempts: u32,
    /// Whether to reconnect after a lost connection. Default true.
    pub reconnect: bool,
    /// Passes over the endpoint list per reconnect before giving up. Default 40 (about 50 s
    /// with the default backoff).
    pub reconnect_attempts: u32,
    /// Pause between passes (±50% jitter) for the first second of a search. Default 100 ms.
    pub backoff_initial: Duration,
    /// After the first second the pause grows by half per failed pass up to this. Default 2 s.
    pub backoff_max: Duration,
    /// Events queued before the background thread stops reading. Default 65,536.
    pub event_capacity: usize,
    /// Prefix for generated order tokens (1 to 13 characters); by default a unique one from
    /// the clock and the process id ([`TokenGenerator::unique`]).
    pub token_prefix: Option<String>,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            requested_sequence_number: 0,
            session: SessionId::BLANK,
            heartbeat_interval: Duration::from_secs(1),
            server_timeout: Duration::from_secs(5),
            answer_timeout: Duration::from_millis(250),
            connect_timeout: Duration::from_secs(2),
            login_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(5),
            logout_timeout: Duration::from_secs(5),
            connect_attempts: 10,
            reconnect: true,
            reconnect_attempts: 40,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            event_capacity: 65_536,
            token_prefix: None,
        }
    }
}

/// What the client reports, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// An OUCH message with its SoupBinTCP sequence number (1-based, per session).
    Message {
        /// Sequence number.
        seq: u64,
        /// The message.
        message: OutboundMessage,
    },
    /// A sequenced message this client cannot decode (it still counts in the numbering).
    Undecodable {
        /// Sequence number.
        seq: u64,
        /// The Sequenced Data payload.
        payload: Vec<u8>,
        /// Why it did not decode.
        error: ProtocolError,
    },
    /// The connection to `endpoint` was lost; the client is reconnecting (unless it is
    /// logging out or reconnecting is off).
    Disconnected {
        /// The endpoint that was lost.
        endpoint: SocketAddr,
        /// What happened.
        reason: String,
    },
    /// Logged in again after a loss; the stream resumes at `next_sequence_number`.
    Reconnected {
        /// The endpoint now serving.
        endpoint: SocketAddr,
        /// The session.
        session: SessionId,
        /// Sequence number of the next message.
        next_sequence_number: u64,
    },
    /// On resume the server started after the next expected message: messages
    /// `expected..next` were never received.
    SequenceGap {
        /// The sequence number asked for.
        expected: u64,
        /// The one the server will send next.
        next: u64,
    },
    /// The server sent End of Session (e.g. it is shutting down); the client reconnects.
    EndOfSession,
    /// The logout completed; no more events follow.
    LoggedOut,
    /// Reconnecting failed (attempts exhausted, or the login was refused as not
    /// authorized); no more events follow.
    GaveUp {
        /// Why.
        reason: String,
    },
}

/// A connected OUCH client. Cheap to share between threads by reference (`&Client` sends
/// and reads events); dropping it closes the connection without a Logout Request (call
/// [`Client::logout`] first for a clean goodbye).
pub struct Client {
    shared: Arc<Shared>,
    events: Receiver<ClientEvent>,
    worker: Option<JoinHandle<()>>,
    tokens: TokenGenerator,
    username: Username,
    first_sequence_number: u64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("username", &self.username)
            .field("endpoint", &self.endpoint())
            .field("next_sequence_number", &self.next_sequence_number())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the first endpoint that accepts the login (trying them in order,
    /// [`ClientOptions::connect_attempts`] passes) and starts the background thread.
    pub fn connect(
        endpoints: &[SocketAddr],
        username: &str,
        password: &str,
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        let username_field = Username::new(username)
            .ok()
            .filter(|u| !u.is_blank() && !username.starts_with(' '))
            .ok_or_else(|| ClientError::invalid("user name", "1 to 6 printable characters"))?;
        let password_field = Password::new(password)
            .map_err(|_| ClientError::invalid("password", "at most 10 printable characters"))?;
        let tokens = match &options.token_prefix {
            Some(prefix) => TokenGenerator::new(prefix)?,
            None => TokenGenerator::unique(),
        };
        let mut credentials = Credentials {
            username: username_field,
            password: password_field,
            ticket: None,
        };
        let opened = open_any(
            endpoints,
            &mut credentials,
            options.session,
            options.requested_sequence_number,
            &options,
            options.connect_attempts,
            &|| true,
        )?;
        let requested = options.requested_sequence_number;
        let next = opened.accepted.sequence_number;
        let shared = Arc::new(Shared::new(opened.accepted.session));
        shared.next_seq.store(next, Ordering::Release);
        let (sender, receiver) = crossbeam_channel::bounded(options.event_capacity.max(16));
        if requested != 0 && next > requested {
            // The server cannot serve from where the caller asked.
            let _ = sender.try_send(ClientEvent::SequenceGap {
                expected: requested,
                next,
            });
        }
        let writer = opened.writer.try_clone()?;
        {
            let mut write = shared.lock();
            write.stream = Some(writer);
            write.endpoint = Some(opened.endpoint);
        }
        let worker = Worker {
            shared: shared.clone(),
            events: sender,
            endpoints: endpoints.to_vec(),
            credentials,
            options,
            next_seq: next,
            skip_below: 0,
        };
        let handle = std::thread::Builder::new()
            .name("keel-client".into())
            .spawn(move || worker.run(opened))?;
        Ok(Client {
            shared,
            events: receiver,
            worker: Some(handle),
            tokens,
            username: username_field,
            first_sequence_number: next,
        })
    }

    /// The next event, waiting up to `timeout`; `None` on timeout or once the client has
    /// finished (after [`ClientEvent::LoggedOut`] or [`ClientEvent::GaveUp`]).
    pub fn next_event(&self, timeout: Duration) -> Option<ClientEvent> {
        self.events.recv_timeout(timeout).ok()
    }

    /// The next event if one is queued.
    pub fn try_next_event(&self) -> Option<ClientEvent> {
        self.events.try_recv().ok()
    }

    /// Whether the client has finished: logged out or gave up, and every event was read.
    pub fn is_finished(&self) -> bool {
        self.shared.finished.load(Ordering::Acquire) && self.events.is_empty()
    }

    /// Sends one OUCH message as Unsequenced Data.
    pub fn send(&self, message: &InboundMessage) -> Result<(), ClientError> {
        let mut packet = Vec::with_capacity(64);
        message.encode_unsequenced(&mut packet);
        self.shared.send(&packet)
    }

    /// Sends an Enter Order as given.
    pub fn enter_order(&self, order: &EnterOrder) -> Result<(), ClientError> {
        self.send(&InboundMessage::EnterOrder(*order))
    }

    /// Sends the order built by `order`, with its own token or a generated one; returns the
    /// token.
    pub fn submit(&self, order: &OrderBuilder) -> Result<OrderToken, ClientError> {
        let token = match order.given_token() {
            Some(token) => token,
            None => self.tokens.next_token()?,
        };
        self.enter_order(&order.build(token))?;
        Ok(token)
    }

    /// Sends a Replace Order as given.
    pub fn replace_order(&self, replace: &ReplaceOrder) -> Result<(), ClientError> {
        self.send(&InboundMessage::ReplaceOrder(*replace))
    }

    /// Replaces `existing` with a new order of `shares` at `price` under `replacement` (or
    /// a generated token), with the plain values of [`replace_request`]; returns the new
    /// token.
    pub fn replace(
        &self,
        existing: OrderToken,
        replacement: Option<OrderToken>,
        shares: u32,
        price: Price,
    ) -> Result<OrderToken, ClientError> {
        let replacement = match replacement {
            Some(token) => token,
            None => self.tokens.next_token()?,
        };
        self.replace_order(&replace_request(existing, replacement, shares, price))?;
        Ok(replacement)
    }

    /// Sends a Cancel Order: `shares` is the order's new intended size, 0 cancels it all.
    pub fn cancel_order(&self, token: OrderToken, shares: u32) -> Result<(), ClientError> {
        self.send(&InboundMessage::CancelOrder(CancelOrder {
            order_token: token,
            shares,
        }))
    }

    /// Sends a Modify Order (side among `S`/`T`/`E`, or unchanged; new intended size).
    pub fn modify_order(
        &self,
        token: OrderToken,
        side: BuySellIndicator,
        shares: u32,
    ) -> Result<(), ClientError> {
        self.send(&InboundMessage::ModifyOrder(ModifyOrder {
            order_token: token,
            side,
            shares,
        }))
    }

    /// A fresh order token from the client's generator.
    pub fn next_token(&self) -> Result<OrderToken, ClientError> {
        self.tokens.next_token()
    }

    /// Sends a Logout Request and stops reconnecting. Events keep arriving until the
    /// server closes the connection, then [`ClientEvent::LoggedOut`] ends the stream. When
    /// disconnected, the client just stops.
    pub fn logout(&self) -> Result<(), ClientError> {
        self.shared.logging_out.store(true, Ordering::Release);
        match self.shared.send_logout() {
            Ok(()) | Err(ClientError::NotConnected | ClientError::Closed) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Drops the current connection as a network failure would; the client then reconnects
    /// and resumes (for tests and for moving to another endpoint).
    pub fn force_reconnect(&self) {
        self.shared.clear("dropped by the client (force_reconnect)");
    }

    /// Whether a connection is logged in right now.
    pub fn is_connected(&self) -> bool {
        self.shared.lock().stream.is_some()
    }

    /// Waits until connected (true) or `timeout` / the client finished (false).
    pub fn wait_connected(&self, timeout: Duration) -> bool {
        self.shared.wait_connected(timeout)
    }

    /// The endpoint of the current connection (the last one while reconnecting).
    pub fn endpoint(&self) -> Option<SocketAddr> {
        self.shared.lock().endpoint
    }

    /// The session the client is logged into.
    pub fn session(&self) -> SessionId {
        self.shared.lock().session
    }

    /// The sequence number the server gave at the first login.
    pub fn first_sequence_number(&self) -> u64 {
        self.first_sequence_number
    }

    /// Sequence number of the next message to be received (every message below it has
    /// been queued as an event).
    pub fn next_sequence_number(&self) -> u64 {
        self.shared.next_seq.load(Ordering::Acquire)
    }

    /// When the resumption ticket the client holds expires (Unix seconds), if it holds one.
    /// The client keeps the latest ticket a server announced after a password login and
    /// presents it instead of the password when it reconnects, to any of its endpoints (see
    /// "Reconnect and resume").
    pub fn resume_ticket_expiry(&self) -> Option<u64> {
        match self.shared.ticket_expires_unix_s.load(Ordering::Acquire) {
            0 => None,
            expires => Some(expires),
        }
    }

    /// The user name.
    pub fn username(&self) -> &str {
        self.username.as_str()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.clear("client dropped");
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_is_shareable_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Client>();
        assert_send_sync::<ClientEvent>();
        assert_send_sync::<ClientError>();
    }
}
