//! The gateway I/O thread: SoupBinTCP sessions over mio, feeding the matching loop and
//! releasing each user's sequenced messages once their inputs are acknowledged.
//!
//! Rules enforced here (each misbehaving connection is cut off alone; others never wait):
//! - the first packet must be a Login Request; anything else before login is a logged
//!   disconnect; a second Login Request on a connection is a logged disconnect;
//! - a resumption ticket (`ticket.rs`) is checked here, in microseconds; passwords are
//!   checked by a small pool of threads (`auth.rs`: argon2 is slow on purpose; a bounded
//!   queue fair per source address, checks of closed connections dropped, a busy pool
//!   answers `Login Rejected S`), compared in constant time; a (user, source address) pair
//!   with 5 attempts without success is refused for 1 s, then twice as long at each further
//!   attempt (`rules::Lockout`), answered `Login Rejected A` after as long as a check takes;
//!   unknown user names are checked against a dummy hash of the same cost and counted
//!   against the source; failures are logged once a second per source, with counts;
//! - a user already logged in elsewhere, or a request for another session, gets
//!   `Login Rejected S`;
//! - malformed frames, unknown packet types, zero or oversized lengths, and undecodable OUCH
//!   messages are logged disconnects;
//! - admission (`admission.rs`): a source address holds at most
//!   `server.connections_per_source_max` connections not yet logged in; when every slot is
//!   taken a newcomer evicts the oldest unfinished login of the source holding the most
//!   (logged-in sessions are never evicted); refusals are logged once a second per source,
//!   with counts;
//! - a server heartbeat goes out after 1 s without sending; a connection silent for 15 s is
//!   dropped, and so is one that has not sent a whole Login Request by
//!   `server.login_deadline_ms` (2 s) after connecting;
//!   a client that stops reading is dropped once its unsent output exceeds the configured
//!   bound.
//! - each session has at most [`SESSION_INPUTS_IN_FLIGHT_MAX`] inputs in the matching loop,
//!   and is throttled to its configured packets per second (a token bucket,
//!   `throttle::Throttle`): over the rate its socket is not read until the bucket refills, so the one I/O thread's time
//!   cannot be taken by one session.

use std::collections::VecDeque;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use keel_engine::Event;
use keel_journal::envelope::Envelope;
use keel_journal::{Durability, Watermarks};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use super::admission::{Admission, Admit, LogLimit};
use super::auth::{CancelOnDrop, LoginCheck, LoginChecker};
use super::matching::Outcome;
use super::rules::{Liveness, Lockout, LoginName, Phase, Verdict};
use super::sessions::SessionBook;
use super::startup::now_ns;
use super::throttle::Throttle;
use super::ticket::{unix_now_s, TicketKey};
use keel_protocol::ouch::InboundMessage;
use keel_protocol::soupbin::{
    ClientPacket, FrameDecoder, LoginAccepted, LoginRejectReason, ServerPacket, SessionId,
};

/// The role of the thread that runs the gateway (a single node's main thread), as fault
/// messages name it. A cluster leader's gateway runs on its `keel-leader` thread.
pub const THREAD: &str = "keel-gateway";

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONNECTION: usize = 2;

pub use super::rules::{
    CLIENT_TIMEOUT, HEARTBEAT_INTERVAL, LOCKOUT_FIRST, LOCKOUT_MAX, LOGIN_DEADLINE_DEFAULT,
    LOGIN_FAILURES_MAX, LOGIN_FAILURE_WINDOW,
};
/// Connections served at once; beyond it a newcomer evicts an unfinished login or, if every
/// slot is a logged-in session, is closed at once (see `admission.rs`).
pub const CONNECTIONS_MAX: usize = 1024;
/// Lines about one source's refused or evicted connections, and about its failed logins: at
/// most one of each per this interval.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);
/// What a password check is taken to cost until one has been timed (argon2id with
/// `keel passwd`'s parameters, optimised).
const CHECK_TOOK_INITIAL: Duration = Duration::from_millis(25);
/// Bytes of unprocessed input buffered per connection (many packets; a packet is ≤ 50).
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Bytes taken from a socket per `read` call.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// While catching up from an old sequence number, output is queued in chunks of this size.
const CATCH_UP_CHUNK_BYTES: usize = 256 * 1024;
/// Inputs handed to the matching loop and not yet answered.
pub const INPUTS_IN_FLIGHT_MAX: usize = 16 * 1024;
/// How long the I/O thread keeps polling without sleeping after handing an input to the
/// matching loop or receiving an answer (the loop answers in microseconds).
const ANSWER_SPIN: Duration = Duration::from_micros(300);
/// Timer ticks (100 ms each, counted only while this thread runs, so a SIGSTOP of the
/// process does not count) with inputs in flight and no answer, after which the matching
/// loop is taken to be stuck (e.g. waiting for a journal segment that never comes) and the
/// node stops. It answers in microseconds; even a segment roll waiting for the preparer
/// takes a fraction of a second.
const MATCHING_STALL_TICKS_MAX: u32 = 100;
/// Inputs of one connection in flight at once. A flooding session fills its own window and
/// then waits its turn, so other sessions' orders are never queued behind its backlog.
pub const SESSION_INPUTS_IN_FLIGHT_MAX: usize = 32;
/// A throttled session is looked at again once its bucket holds this many packets (or is
/// full, if smaller): one wake-up per batch, not per packet...
const THROTTLE_RESUME_PACKETS_MAX: u64 = 64;
/// ...but never waits longer than this for a batch (slow rates resume packet by packet).
const THROTTLE_RESUME_WAIT: Duration = Duration::from_millis(5);
/// Checked for logins with an unknown user name if no hash like the users' can be made (see
/// `config::dummy_hash_like`): argon2id with the default parameters of `keel passwd`; the
/// password behind it is not one anyone could send.
const DUMMY_PASSWORD_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$/hpYfnAfzCOcvo45blCw/g$gFAOwqCrF5WhBNUEeREZmwMGrxuzucYPL6KkVKovhT4";

#[derive(Debug, PartialEq, Eq)]
enum State {
    AwaitingLogin,
    Authenticating,
    LoggedIn { user: usize },
}

struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    state: State,
    read_buf: Vec<u8>,
    write_buf: Vec<u8>,
    /// Index in the user's stream of the next message to send.
    next_index: usize,
    /// Whether the connection has once sent everything released (ends catch-up mode).
    caught_up: bool,
    /// The release point up to which everything is queued (meaningful once caught up).
    filled_seq: u64,
    /// When it connected, last received and last sent (the timers' inputs).
    liveness: Liveness,
    /// This connection's inputs handed to the matching loop and not yet answered.
    in_flight: usize,
    closing: Option<String>,
    /// Packets this connection may still send now (see [`Throttle`]).
    throttle: Throttle,
    /// Times the throttle held this connection back (logged when it disconnects).
    throttled_count: u64,
    /// Why the peer can no longer be read from or written to (it closed, or the socket
    /// failed). The connection closes, with this reason, once the input already read from it
    /// is handled: an order that reached the server is taken in even if its sender is gone
    /// (at the throttled pace, like any other).
    peer_gone: Option<String>,
    /// While its password is checked: cancels the queued check when the connection goes.
    login_check: Option<CancelOnDrop>,
}

/// Why `handle_packets` stopped with complete packets left in a connection's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HeldBack {
    /// Nothing left, or nothing that can be handled (an incomplete packet, a closing
    /// connection).
    No,
    /// The matching loop's window (global or this session's) is full; answers are due
    /// within microseconds.
    Window,
    /// The session's throttle is empty until this instant.
    Throttled(Instant),
}

/// The I/O side of the node.
pub struct Server {
    poll: Poll,
    listener: TcpListener,
    connections: HashMap<Token, Connection>,
    next_token: usize,
    decoder: FrameDecoder,
    session: SessionId,
    book: SessionBook,
    hashes: Vec<String>,
    dummy_hash: String,
    inbound: Sender<Envelope>,
    outcomes: Receiver<Outcome>,
    /// Inputs handed to the matching loop, oldest first, with the connection they came from.
    /// The decoded client message rides along, so that the outcome does not decode it again.
    in_flight: VecDeque<InFlight>,
    /// Last time an input was handed over or an answer came back.
    last_progress: Instant,
    events: Vec<Event>,
    last_done_seq: u64,
    marks: Arc<Watermarks>,
    durability: Durability,
    logins: LoginChecker,
    tickets: Option<TicketKey>,
    logged_in: HashMap<usize, Token>,
    /// Login attempts per (user, source), and which pairs are refused.
    lockout: Lockout,
    /// Limits the lines about failed and refused logins.
    login_log: LogLimit,
    /// Logins refused by the lockout, answered (`A`) when due: as long after the request as
    /// a password check takes, so the answer tells nothing. At most one per connection.
    delayed_rejects: VecDeque<(Instant, Token)>,
    /// How long a password check takes, smoothed (the delay of `delayed_rejects`).
    check_took: Duration,
    outbound_limit_bytes: usize,
    cluster: Option<ClusterLink>,
    /// Connections with input left to read or handle: a socket not read to `WouldBlock`
    /// (the read buffer was full) or complete packets held back by backpressure. Readiness
    /// is edge-triggered, so no new event would come for them; they are serviced again on
    /// the next turn of the loop.
    unread: HashSet<Token>,
    /// Connections held back by their throttle, with the instant to look at them again.
    /// Their sockets are not read meanwhile, so TCP pushes back on the sender.
    throttled: HashMap<Token, Instant>,
    /// Session throttle (packets per second, burst) by user index.
    throttles: Vec<(u64, u64)>,
    /// Throttle of a connection before its login is accepted.
    default_throttle: (u64, u64),
    /// Scratch space sockets are read into, allocated once (a fresh zeroed array per read
    /// cost more than handling the packets in it).
    read_chunk: Vec<u8>,
    /// Reused list of connections to visit (no allocation per turn of the loop).
    scratch_tokens: Vec<Token>,
    /// The release point of the last `release`.
    released_seq: u64,
    /// Whether every logged-in connection had all released output queued at the last
    /// `release` (false while one catches up from an old sequence number, or just logged in).
    all_caught_up: bool,
    /// A connection catching up has written its chunk and waits for the next one.
    refill_due: bool,
    /// Consecutive timer ticks (see [`MATCHING_STALL_TICKS_MAX`]) with inputs in flight and
    /// no answer from the matching loop.
    stalled_ticks: u32,
    /// `last_done_seq` at the previous timer tick.
    done_seq_at_tick: u64,
    /// Connection slots and unfinished logins per source.
    admission: Admission,
    /// How long a new connection has to send its Login Request.
    login_deadline: Duration,
    /// Limits the lines about refused and evicted connections.
    refusal_log: LogLimit,
    /// Connections refused or evicted so far (logged with each line about them).
    refusals: Refusals,
}

/// Connections turned away so far, by why.
#[derive(Clone, Copy, Debug, Default)]
struct Refusals {
    /// Closed at once: their source held its most unfinished logins.
    source_full: u64,
    /// Closed at once: every slot was a logged-in session.
    all_logged_in: u64,
    /// Closed to make room for a newcomer (an unfinished login).
    evicted: u64,
}

/// Everything the server is built from.
pub struct ServerParts {
    /// Bound listener.
    pub listener: TcpListener,
    /// The poll the listener and waker are registered with.
    pub poll: Poll,
    /// SoupBinTCP session name.
    pub session: SessionId,
    /// Recovered gateway state.
    pub book: SessionBook,
    /// Password hash of each user, by user index.
    pub hashes: Vec<String>,
    /// Session throttle (packets per second, burst) of each user, by user index.
    pub throttles: Vec<(u64, u64)>,
    /// Throttle before login (packets per second, burst).
    pub default_throttle: (u64, u64),
    /// Queue to the matching loop.
    pub inbound: Sender<Envelope>,
    /// Queue from the matching loop.
    pub outcomes: Receiver<Outcome>,
    /// Journal watermarks.
    pub marks: Arc<Watermarks>,
    /// Acknowledgement policy.
    pub durability: Durability,
    /// Last journal sequence number at start (everything recovered is acknowledged).
    pub last_seq: u64,
    /// The password checking threads.
    pub logins: LoginChecker,
    /// Issues and verifies resumption tickets (`None`: tickets disabled).
    pub tickets: Option<TicketKey>,
    /// Slow-reader bound.
    pub outbound_limit_bytes: usize,
    /// In a cluster: the committed watermark and the deposed flag.
    pub cluster: Option<ClusterLink>,
    /// Connections not yet logged in one source address may hold.
    pub connections_per_source_max: usize,
    /// How long a new connection has to send its Login Request.
    pub login_deadline: Duration,
}

/// What a leader's gateway shares with the replication thread.
#[derive(Clone, Debug, Default)]
pub struct ClusterLink {
    /// Sequence number of the last record committed by a majority. Nothing above it is
    /// released to a client.
    pub committed: Arc<std::sync::atomic::AtomicU64>,
    /// Set when this node lost leadership: the gateway stops without waiting for answers
    /// that can never be committed and without End of Session (clients move on to the new
    /// leader and resume there).
    pub deposed: Arc<AtomicBool>,
    /// The gateway's waker, once it exists: the replication thread wakes the gateway when
    /// the committed watermark moves.
    pub waker: Arc<std::sync::OnceLock<Arc<Waker>>>,
    /// Tells the replication thread that new records were journaled (a bounded(1) channel:
    /// a pending kick is enough).
    pub kick: Option<Sender<()>>,
    /// The replication thread's clock: its lease times count in ms from here (`None`: no
    /// lease to check).
    pub lease_clock: Option<Instant>,
    /// Until when (ms on `lease_clock`) this leader's lease holds, as the replication thread
    /// last published it: a login is accepted only before then. Published late it is only
    /// earlier than the truth, so a stalled replication thread makes the gateway refuse
    /// logins, never accept one another leader may already be serving.
    pub lease_until_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl ClusterLink {
    /// Whether the published lease still holds now (always, without a lease clock).
    fn lease_holds(&self) -> bool {
        self.lease_clock.is_none_or(|clock| {
            let now_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
            now_ms < self.lease_until_ms.load(Ordering::Acquire)
        })
    }
}

impl Server {
    /// Builds the server.
    pub fn new(parts: ServerParts) -> std::io::Result<Server> {
        let mut listener = parts.listener;
        parts
            .poll
            .registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Server {
            poll: parts.poll,
            listener,
            connections: HashMap::new(),
            next_token: FIRST_CONNECTION,
            decoder: FrameDecoder::default(),
            session: parts.session,
            book: parts.book,
            // The cost of the configured users' checks (the first's parameters).
            dummy_hash: parts
                .hashes
                .first()
                .and_then(|like| crate::config::dummy_hash_like(like).ok())
                .unwrap_or_else(|| DUMMY_PASSWORD_HASH.to_string()),
            hashes: parts.hashes,
            inbound: parts.inbound,
            outcomes: parts.outcomes,
            in_flight: VecDeque::new(),
            last_progress: Instant::now(),
            events: Vec::with_capacity(1024),
            last_done_seq: parts.last_seq,
            marks: parts.marks,
            durability: parts.durability,
            logins: parts.logins,
            tickets: parts.tickets,
            logged_in: HashMap::new(),
            lockout: Lockout::new(),
            login_log: LogLimit::new(REFUSAL_LOG_INTERVAL),
            delayed_rejects: VecDeque::new(),
            check_took: CHECK_TOOK_INITIAL,
            outbound_limit_bytes: parts.outbound_limit_bytes,
            cluster: parts.cluster,
            unread: HashSet::new(),
            throttled: HashMap::new(),
            throttles: parts.throttles,
            default_throttle: parts.default_throttle,
            read_chunk: vec![0; READ_CHUNK_BYTES],
            scratch_tokens: Vec::with_capacity(CONNECTIONS_MAX),
            released_seq: 0,
            all_caught_up: false,
            refill_due: false,
            stalled_ticks: 0,
            done_seq_at_tick: parts.last_seq,
            admission: Admission::new(CONNECTIONS_MAX, parts.connections_per_source_max),
            login_deadline: parts.login_deadline,
            refusal_log: LogLimit::new(REFUSAL_LOG_INTERVAL),
            refusals: Refusals::default(),
        })
    }

    /// Serves until `shutdown` is set, then drains in-flight inputs, tells every logged-in
    /// client End of Session, and returns. Stops at once when the node's latch trips
    /// ([`crate::supervisor`]): then only what is already acknowledged is released, and every
    /// logged-in client is told End of Session.
    pub fn run(&mut self, shutdown: &AtomicBool) -> std::io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut last_tick = Instant::now();
        let latch = crate::supervisor::node();
        while !shutdown.load(Ordering::Acquire) && !latch.is_tripped() {
            let timeout = self.poll_timeout();
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => {
                    // Sessions can still be told End of Session below.
                    latch.trip(crate::supervisor::Fault::new(
                        &crate::supervisor::current_thread(),
                        crate::supervisor::FaultKind::Thread,
                        format!("gateway poll failed: {error}"),
                    ));
                    break;
                }
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    token => self.service(token),
                }
            }
            self.finish_logins();
            self.reject_due();
            self.pump_outcomes();
            self.resume_throttled();
            self.resume_reads();
            self.release();
            if last_tick.elapsed() >= Duration::from_millis(100) {
                self.timers();
                self.watch_matching();
                last_tick = Instant::now();
            }
            self.reap();
        }
        if latch.is_tripped() {
            self.stop_on_fault();
        } else {
            self.shutdown();
        }
        Ok(())
    }

    /// How long the next poll may wait for events.
    fn poll_timeout(&self) -> Duration {
        let timeout = if !self.unread.is_empty() || self.refill_due {
            // Input is waiting in buffers or sockets, or a catching-up client's next chunk is
            // due: just collect new events.
            Duration::ZERO
        } else if self.in_flight.is_empty() {
            // Nothing due from the matching loop; the flusher's waker ends the wait when
            // acknowledgements become releasable.
            Duration::from_millis(50)
        } else if self.last_progress.elapsed() < ANSWER_SPIN {
            // Answers are due within microseconds, and their arrival on the queue wakes
            // no file descriptor: poll without sleeping for a short while.
            Duration::ZERO
        } else {
            Duration::from_millis(1)
        };
        let next_due = self
            .throttled
            .values()
            .chain(self.delayed_rejects.front().map(|(at, _)| at))
            .min();
        match next_due {
            Some(at) => timeout.min(at.saturating_duration_since(Instant::now())),
            None => timeout,
        }
    }

    /// Services the throttled connections whose buckets have refilled.
    fn resume_throttled(&mut self) {
        if self.throttled.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut due = std::mem::take(&mut self.scratch_tokens);
        due.clear();
        due.extend(
            self.throttled
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(token, _)| *token),
        );
        for &token in &due {
            self.throttled.remove(&token);
            self.service(token);
        }
        self.scratch_tokens = due;
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    if self.admit(peer) {
                        self.open(stream, peer);
                    }
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    return;
                }
            }
        }
    }

    /// Whether a new connection from `peer` gets a slot (after evicting an unfinished login
    /// if every slot is taken); a refused one is dropped, closing it.
    fn admit(&mut self, peer: SocketAddr) -> bool {
        let refused = match self.admission.admit(peer.ip()) {
            Admit::Yes => return true,
            Admit::Evict(victim) => {
                let victim_peer = self.connections.get(&victim).map(|c| c.peer);
                self.refusals.evicted += 1;
                self.close_now(victim, "evicted: every connection slot taken");
                if let Some(victim_peer) = victim_peer {
                    self.log_refusal(
                        victim_peer,
                        "connection not yet logged in evicted to make room: every slot taken",
                    );
                }
                return true;
            }
            Admit::SourceFull(_) => {
                self.refusals.source_full += 1;
                "connection closed: its address holds its most connections not yet logged in"
            }
            Admit::AllLoggedIn => {
                self.refusals.all_logged_in += 1;
                "connection closed: every slot is a logged-in session"
            }
        };
        self.log_refusal(peer, refused);
        false
    }

    /// Logs a refused or evicted connection of `peer`, at most once per source per
    /// [`REFUSAL_LOG_INTERVAL`], with the counts so far.
    fn log_refusal(&mut self, peer: SocketAddr, what: &str) {
        let Some(held_back) = self.refusal_log.note(peer.ip(), Instant::now()) else {
            return;
        };
        let Refusals {
            source_full,
            all_logged_in,
            evicted,
        } = self.refusals;
        tracing::warn!(
            %peer,
            held_back,
            source_full,
            all_logged_in,
            evicted,
            open = self.admission.open(),
            "{what} (one line per address per second; held_back: lines about it not written since)"
        );
    }

    /// Registers an admitted connection and gives it a slot.
    fn open(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        let token = Token(self.next_token);
        self.next_token += 1;
        let _ = stream.set_nodelay(true);
        if let Err(error) = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            tracing::warn!(%peer, %error, "cannot register connection");
            return;
        }
        tracing::info!(%peer, "connected");
        let now = Instant::now();
        self.admission.opened(peer.ip(), token);
        self.connections.insert(
            token,
            Connection {
                stream,
                peer,
                state: State::AwaitingLogin,
                read_buf: Vec::with_capacity(4096),
                write_buf: Vec::with_capacity(4096),
                next_index: 0,
                caught_up: false,
                filled_seq: 0,
                liveness: Liveness::new(now),
                in_flight: 0,
                closing: None,
                throttle: Throttle::new(self.default_throttle.0, self.default_throttle.1, now),
                throttled_count: 0,
                peer_gone: None,
                login_check: None,
            },
        );
    }

    /// Reads what the socket has and handles every complete packet.
    fn service(&mut self, token: Token) {
        let Some(connection) = self.connections.get_mut(&token) else {
            return;
        };
        let chunk = &mut self.read_chunk;
        // Whether the socket was read until it had nothing more (or ended).
        let mut drained = connection.peer_gone.is_some();
        while !drained {
            if connection.read_buf.len() >= READ_BUFFER_BYTES {
                break;
            }
            if self.throttled.contains_key(&token) {
                // Held back: leave its input in the socket until the throttle allows more.
                break;
            }
            match connection.stream.read(chunk) {
                Ok(0) => {
                    // Not closing yet: what it sent before closing (orders, a Logout Request)
                    // is handled first, even if the throttle or the window holds it back.
                    connection.peer_gone = Some("peer closed".into());
                    drained = true;
                }
                Ok(n) => {
                    connection.read_buf.extend_from_slice(&chunk[..n]);
                    connection.liveness.received(Instant::now());
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => drained = true,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => {
                    connection.peer_gone = Some(format!("read error: {error}"));
                    drained = true;
                }
            }
        }
        if self.throttled.contains_key(&token) {
            // Woken by readiness while throttled: its input waits in the socket, but output
            // the socket can now take goes out.
            self.flush(token);
            return;
        }
        match self.handle_packets(token) {
            HeldBack::Throttled(at) => {
                self.throttled.insert(token, at);
            }
            HeldBack::Window => {
                self.unread.insert(token);
            }
            HeldBack::No if !drained => {
                // Edge-triggered readiness will not report this input again: come back to it.
                self.unread.insert(token);
            }
            HeldBack::No => {
                if let Some(connection) = self.connections.get_mut(&token) {
                    if let Some(reason) = connection.peer_gone.take() {
                        // Everything it sent that reached us is handled.
                        connection.closing.get_or_insert(reason);
                    }
                }
            }
        }
        self.flush(token);
    }

    /// Services again the connections that still had input (see `unread`).
    fn resume_reads(&mut self) {
        if self.unread.is_empty() {
            return;
        }
        let mut tokens = std::mem::take(&mut self.scratch_tokens);
        tokens.clear();
        tokens.extend(self.unread.drain());
        for &token in &tokens {
            self.service(token);
        }
        self.scratch_tokens = tokens;
    }

    /// Handles the complete packets buffered for `token`; says why it stopped if packets are
    /// left that it could not handle yet.
    fn handle_packets(&mut self, token: Token) -> HeldBack {
        // One clock read per call: tokens earned while it runs count on the next call.
        let now = Instant::now();
        let mut consumed = 0;
        let mut held_back = HeldBack::No;
        loop {
            if self.in_flight.len() >= INPUTS_IN_FLIGHT_MAX {
                // Backpressure: leave the rest buffered until the matching loop catches up.
                held_back = HeldBack::Window;
                break;
            }
            let Some(connection) = self.connections.get_mut(&token) else {
                return HeldBack::No;
            };
            if connection.closing.is_some() {
                break;
            }
            if connection.in_flight >= SESSION_INPUTS_IN_FLIGHT_MAX {
                // Fairness: this session waits for its own answers; others go on.
                held_back = HeldBack::Window;
                break;
            }
            let buf = &connection.read_buf[consumed..];
            let (packet, used) = match self.decoder.decode_client(buf) {
                Ok(Some(decoded)) => decoded,
                Ok(None) => break,
                Err(error) => {
                    connection.closing = Some(format!("protocol error: {error}"));
                    break;
                }
            };
            if !connection.throttle.try_take(now) {
                // Left unconsumed: handled, in order, once the throttle allows. The client
                // is demonstrably sending, so this is not silence for the 15 s timeout.
                connection.liveness.received(now);
                connection.throttled_count += 1;
                if connection.throttled_count == 1 {
                    tracing::info!(peer = %connection.peer, "session throttled: over its message rate");
                }
                held_back = HeldBack::Throttled(
                    connection
                        .throttle
                        .ready_at(THROTTLE_RESUME_PACKETS_MAX)
                        .min(now + THROTTLE_RESUME_WAIT),
                );
                break;
            }
            consumed += used;
            let action = Self::classify(&mut self.book, &connection.state, packet);
            self.act(token, action);
        }
        if let Some(connection) = self.connections.get_mut(&token) {
            connection.read_buf.drain(..consumed);
            if connection.closing.is_some() {
                // Nothing is held back for a connection that is closing.
                held_back = HeldBack::No;
            }
        }
        held_back
    }

    /// What to do with a packet. Orders, the hot path, are decoded once, straight into an
    /// envelope (which updates the session's token bookkeeping).
    fn classify(book: &mut SessionBook, state: &State, packet: ClientPacket<'_>) -> Action {
        match (state, packet) {
            (State::AwaitingLogin, ClientPacket::LoginRequest(login)) => Action::Login {
                username: login.username.as_str().trim_end().to_string(),
                password: login.password.as_str().trim_end().to_string(),
                session_ok: login.requested_session.is_blank(),
                session: *login.requested_session.wire(),
                requested_seq: login.requested_sequence_number,
            },
            (State::AwaitingLogin, _) => Action::Close("data before login".into()),
            (State::Authenticating, _) => Action::Close("data while the login is checked".into()),
            (State::LoggedIn { .. }, ClientPacket::LoginRequest(_)) => {
                Action::Close("second login request on a logged-in connection".into())
            }
            (&State::LoggedIn { user }, ClientPacket::UnsequencedData(payload)) => {
                match InboundMessage::decode(payload) {
                    Ok(message) => match book.intake_decoded(user, now_ns(), &message, payload) {
                        Some(envelope) => Action::Submit(envelope, message),
                        None => Action::Close("OUCH message too long for the journal".into()),
                    },
                    Err(error) => Action::Close(format!("bad OUCH message: {error}")),
                }
            }
            (State::LoggedIn { .. }, ClientPacket::ClientHeartbeat | ClientPacket::Debug(_)) => {
                Action::Nothing
            }
            (State::LoggedIn { .. }, ClientPacket::LogoutRequest) => Action::Close("logout".into()),
        }
    }

    fn act(&mut self, token: Token, action: Action) {
        match action {
            Action::Nothing => {}
            Action::Close(reason) => {
                if let Some(connection) = self.connections.get_mut(&token) {
                    connection.closing.get_or_insert(reason);
                }
            }
            Action::Submit(envelope, message) => self.submit(envelope, Some(message), Some(token)),
            Action::Login {
                username,
                password,
                session_ok,
                session,
                requested_seq,
            } => self.begin_login(
                token,
                username,
                password,
                session_ok || session == *self.session.wire(),
                requested_seq,
            ),
        }
    }

    fn begin_login(
        &mut self,
        token: Token,
        username: String,
        password: String,
        session_ok: bool,
        requested_seq: u64,
    ) {
        let Some(peer) = self.connections.get(&token).map(|c| c.peer) else {
            return;
        };
        if !session_ok {
            tracing::warn!(%peer, user = %username, "login for another session");
            return self.reject_login(token, LoginRejectReason::SessionNotAvailable);
        }
        let user = self.book.user_index(&username);
        let name = user.map_or(LoginName::Unknown, LoginName::User);
        let now = Instant::now();
        if self.lockout.locked(name, peer.ip(), now) {
            self.log_login(peer, &username, "login refused (Login Rejected A): too many failures of this user from this address");
            return self.reject_later(token, now);
        }
        if let Some(user) = user.filter(|&u| self.ticket_valid(u, &password)) {
            // A resumption ticket: checked here in microseconds, no password check queued.
            return self.accept_login(token, user, requested_seq, Credential::Ticket);
        }
        let hash = user.map_or_else(|| self.dummy_hash.clone(), |u| self.hashes[u].clone());
        let check = LoginCheck {
            token,
            peer,
            user,
            password,
            hash,
            requested_seq,
        };
        match self.logins.submit(check) {
            Ok(guard) => {
                // Counted now, not when the verdict comes: see `Lockout`.
                self.lockout.attempted(name, peer.ip(), now);
                if let Some(connection) = self.connections.get_mut(&token) {
                    connection.state = State::Authenticating;
                    connection.login_check = Some(guard);
                }
            }
            Err(busy) => {
                // Transient: `S` makes clients try again (another node, or after their
                // backoff); `A` would tell them their credentials are wrong.
                tracing::warn!(%peer, user = %username, reason = %busy, "login refused (Login Rejected S): password checker busy");
                self.reject_login(token, LoginRejectReason::SessionNotAvailable);
            }
        }
    }

    /// Whether `presented` is a valid resumption ticket of user `user`.
    fn ticket_valid(&self, user: usize, presented: &str) -> bool {
        let Some(key) = &self.tickets else {
            return false;
        };
        let name = &self.book.user(user).name;
        key.verify(name, &self.hashes[user], presented, unix_now_s())
    }

    fn finish_logins(&mut self) {
        while let Some(verdict) = self.logins.try_verdict() {
            let token = verdict.token;
            let Some(connection) = self.connections.get_mut(&token) else {
                continue;
            };
            connection.login_check = None;
            let peer = connection.peer;
            if verdict.ok.is_some() {
                // Smoothed over about 8 checks.
                self.check_took = (self.check_took * 7 + verdict.took) / 8;
            }
            match (verdict.ok, verdict.user) {
                (Some(true), Some(user)) => {
                    self.lockout.succeeded(LoginName::User(user), peer.ip());
                    self.accept_login(token, user, verdict.requested_seq, Credential::Password)
                }
                _ => {
                    self.note_failure(verdict.user, peer);
                    self.reject_login(token, LoginRejectReason::NotAuthorized);
                }
            }
        }
    }

    /// Logs `user` in on connection `token` (its credential checked): Login Accepted, then,
    /// after a password login, a resumption ticket in a Debug packet.
    fn accept_login(
        &mut self,
        token: Token,
        user: usize,
        requested_seq: u64,
        credential: Credential,
    ) {
        let Some(connection) = self.connections.get(&token) else {
            return;
        };
        let peer = connection.peer;
        if self.logged_in.contains_key(&user) {
            tracing::warn!(%peer, user = %self.book.user(user).name, "already logged in elsewhere");
            self.reject_login(token, LoginRejectReason::SessionNotAvailable);
            return;
        }
        if !self.cluster.as_ref().is_none_or(ClusterLink::lease_holds) {
            // Another leader may be elected by now: `S`, as a follower answers, so the
            // client tries the other nodes.
            tracing::warn!(%peer, user = %self.book.user(user).name, "login refused (Login Rejected S): this leader's lease has run out");
            self.reject_login(token, LoginRejectReason::SessionNotAvailable);
            return;
        }
        let stream = &self.book.user(user).stream;
        let released = stream.released_len(self.release_seq());
        let next = match requested_seq {
            0 => released + 1,
            n => usize::try_from(n).unwrap_or(usize::MAX).min(released + 1),
        };
        // Only a password login earns a ticket: using a ticket never extends its life.
        let notice = match (&self.tickets, credential) {
            (Some(key), Credential::Password) => {
                let name = &self.book.user(user).name;
                Some(key.issue(name, &self.hashes[user], unix_now_s()))
            }
            _ => None,
        };
        let Some(connection) = self.connections.get_mut(&token) else {
            return;
        };
        connection.state = State::LoggedIn { user };
        self.admission.logged_in(peer.ip(), token);
        let (rate, burst) = self
            .throttles
            .get(user)
            .copied()
            .unwrap_or(self.default_throttle);
        connection.throttle = Throttle::new(rate, burst, Instant::now());
        connection.next_index = next - 1;
        connection.caught_up = false;
        self.all_caught_up = false;
        let accepted = ServerPacket::LoginAccepted(LoginAccepted {
            session: self.session,
            sequence_number: next as u64,
        });
        let _ = accepted.encode(&mut connection.write_buf);
        if let Some(notice) = notice {
            let text = notice.text();
            let _ = ServerPacket::Debug(text.as_bytes()).encode(&mut connection.write_buf);
        }
        connection.liveness.sent(Instant::now());
        self.logged_in.insert(user, token);
        tracing::info!(%peer, user = %self.book.user(user).name, next, credential = %credential.name(), "logged in");
        self.flush(token);
    }

    fn note_failure(&mut self, user: Option<usize>, peer: SocketAddr) {
        let name = user.map_or_else(
            || "<unknown>".to_string(),
            |u| self.book.user(u).name.clone(),
        );
        self.log_login(peer, &name, "login failed (Login Rejected A)");
    }

    /// Logs a failed or refused login of `user` from `peer`, at most once per source per
    /// [`REFUSAL_LOG_INTERVAL`] (a guessing flood must not flood the log), with the lines
    /// held back since.
    fn log_login(&mut self, peer: SocketAddr, user: &str, what: &str) {
        if let Some(held_back) = self.login_log.note(peer.ip(), Instant::now()) {
            let (pairs, untracked) = self.lockout.sizes();
            tracing::warn!(%peer, %user, held_back, pairs, untracked, "{what} (one line per address per second; held_back: lines about it not written since)");
        }
    }

    /// Refuses the login on `token` (`A`) once a password check's time has passed since
    /// `now`: a refusal by the lockout looks like a wrong password, in content and timing.
    fn reject_later(&mut self, token: Token, now: Instant) {
        let Some(connection) = self.connections.get_mut(&token) else {
            return;
        };
        // Nothing more is read from it meanwhile; it is not held to the login deadline.
        connection.state = State::Authenticating;
        // Bounded: one per connection (it is authenticating until answered).
        self.delayed_rejects
            .push_back((now + self.check_took, token));
    }

    /// Answers the delayed refusals that are due.
    fn reject_due(&mut self) {
        let now = Instant::now();
        // Delays change slowly, so the queue is nearly in order; one a little late waits
        // for the one before it.
        while let Some(&(at, token)) = self.delayed_rejects.front() {
            if at > now {
                break;
            }
            self.delayed_rejects.pop_front();
            self.reject_login(token, LoginRejectReason::NotAuthorized);
        }
    }

    fn reject_login(&mut self, token: Token, reason: LoginRejectReason) {
        if let Some(connection) = self.connections.get_mut(&token) {
            let _ = ServerPacket::LoginRejected(reason).encode(&mut connection.write_buf);
            connection
                .closing
                .get_or_insert_with(|| "login rejected".into());
        }
        self.flush(token);
    }

    /// Hands an input (from connection `origin`, if any) to the matching loop.
    fn submit(
        &mut self,
        envelope: Envelope,
        message: Option<InboundMessage>,
        origin: Option<Token>,
    ) {
        if let Err(error) = crate::fault::check("gateway") {
            crate::supervisor::node().trip(crate::supervisor::Fault::from_error(
                &crate::supervisor::current_thread(),
                &error,
            ));
            return;
        }
        let mut pending = envelope;
        loop {
            match self.inbound.try_send(pending) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) => {
                    // Bounded by INPUTS_IN_FLIGHT_MAX below the queue's capacity, so this is brief.
                    pending = back;
                    self.pump_outcomes();
                    std::thread::yield_now();
                }
                Err(TrySendError::Disconnected(_)) => {
                    // The matching thread is gone (its own fault is normally reported
                    // already); this node can take no more orders.
                    crate::supervisor::node().trip(crate::supervisor::Fault::new(
                        crate::matching::THREAD,
                        crate::supervisor::FaultKind::Thread,
                        "the matching loop ended while the gateway was serving",
                    ));
                    return;
                }
            }
        }

        // The flusher may be parked after a quiet spell; this input is about to be journaled.
        if self.durability == Durability::Fsync || self.cluster.is_some() {
            self.marks.wake_flusher();
        }
        if let Some(connection) = origin.and_then(|token| self.connections.get_mut(&token)) {
            connection.in_flight += 1;
        }
        self.in_flight.push_back(InFlight {
            envelope,
            message,
            origin,
        });
        self.last_progress = Instant::now();
    }

    /// Applies every outcome the matching loop has produced.
    fn pump_outcomes(&mut self) {
        let done_before = self.last_done_seq;
        self.pump_outcomes_inner();
        if self.last_done_seq != done_before {
            // New records are journaled: the replication thread proposes them.
            if let Some(kick) = self.cluster.as_ref().and_then(|link| link.kick.as_ref()) {
                let _ = kick.try_send(());
            }
        }
    }

    fn pump_outcomes_inner(&mut self) {
        loop {
            match self.outcomes.try_recv() {
                Ok(Outcome::Event(event)) => self.events.push(event),
                Ok(Outcome::Done { seq }) => {
                    self.last_progress = Instant::now();
                    if let Some(InFlight {
                        envelope,
                        message,
                        origin,
                    }) = self.in_flight.pop_front()
                    {
                        self.book
                            .outcome_decoded(seq, &envelope, message, &self.events);
                        if let Some(connection) =
                            origin.and_then(|token| self.connections.get_mut(&token))
                        {
                            connection.in_flight = connection.in_flight.saturating_sub(1);
                        }
                    }
                    self.events.clear();
                    self.last_done_seq = seq;
                }
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => return,
            }
        }
    }

    /// Highest journal sequence number whose outcome may be shown to clients.
    fn release_seq(&self) -> u64 {
        let local = match self.durability {
            Durability::Fsync => self.marks.durable().min(self.last_done_seq),
            Durability::Async => self.last_done_seq,
        };
        match &self.cluster {
            Some(link) => local.min(link.committed.load(Ordering::Acquire)),
            None => local,
        }
    }

    fn release(&mut self) {
        let seq = self.release_seq();
        if seq == self.released_seq && self.all_caught_up {
            debug_assert!(!self.refill_due);
            // Nothing new to queue, and nobody is catching up chunk by chunk. (Partly written
            // buffers are flushed when their sockets report writable.)
            return;
        }
        // A reused list: this runs on most turns of the loop under load.
        let mut tokens = std::mem::take(&mut self.scratch_tokens);
        tokens.clear();
        tokens.extend(self.logged_in.values().copied());
        let mut all_caught_up = true;
        let mut refill_due = false;
        for &token in &tokens {
            self.fill(token, seq);
            self.flush(token);
            if let Some(connection) = self.connections.get(&token) {
                all_caught_up &= connection.caught_up;
                // A catch-up chunk went out whole: no writable event will come, so the next
                // chunk is due on the next turn, not after the poll's idle timeout.
                refill_due |= !connection.caught_up && connection.write_buf.is_empty();
            }
        }
        self.scratch_tokens = tokens;
        self.released_seq = seq;
        self.all_caught_up = all_caught_up;
        self.refill_due = refill_due;
    }

    /// Queues released messages for a logged-in connection.
    fn fill(&mut self, token: Token, seq: u64) {
        let Some(connection) = self.connections.get_mut(&token) else {
            return;
        };
        let State::LoggedIn { user } = connection.state else {
            return;
        };
        if connection.peer_gone.is_some() {
            // Nothing can be sent; it is not catching up either.
            connection.caught_up = true;
            return;
        }
        if connection.caught_up && connection.filled_seq == seq {
            // Nothing new: every message of inputs up to `seq` is already queued (messages
            // are added to streams only for inputs above the release point, never below it).
            return;
        }
        let stream = &self.book.user(user).stream;
        let released = stream.released_len(seq);
        while connection.next_index < released {
            if !connection.caught_up && connection.write_buf.len() >= CATCH_UP_CHUNK_BYTES {
                return;
            }
            let message = stream.message(connection.next_index);
            let _ = ServerPacket::SequencedData(message).encode(&mut connection.write_buf);
            connection.next_index += 1;
        }
        connection.caught_up = true;
        connection.filled_seq = seq;
        if connection.write_buf.len() > self.outbound_limit_bytes {
            connection.closing.get_or_insert_with(|| {
                format!(
                    "slow reader: more than {} bytes unread",
                    self.outbound_limit_bytes
                )
            });
        }
    }

    fn flush(&mut self, token: Token) {
        let Some(connection) = self.connections.get_mut(&token) else {
            return;
        };
        if connection.peer_gone.is_some() {
            // Nobody to write to; its remaining input is still being handled.
            connection.write_buf.clear();
            return;
        }
        let mut written = 0;
        while written < connection.write_buf.len() {
            match connection.stream.write(&connection.write_buf[written..]) {
                Ok(0) => break,
                Ok(n) => written += n,
                Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => {
                    connection.peer_gone = Some(format!("write error: {error}"));
                    connection.write_buf.clear();
                    // Handle what it sent before it went (see `peer_gone`).
                    self.unread.insert(token);
                    return;
                }
            }
        }
        if written > 0 {
            connection.write_buf.drain(..written);
            connection.liveness.sent(Instant::now());
        }
    }

    /// Stops the node if the matching loop has answered nothing for
    /// [`MATCHING_STALL_TICKS_MAX`] ticks while inputs wait: a loop that hangs must not
    /// leave the node up, taking orders it never answers.
    fn watch_matching(&mut self) {
        if self.in_flight.is_empty() || self.last_done_seq != self.done_seq_at_tick {
            self.stalled_ticks = 0;
        } else {
            self.stalled_ticks += 1;
        }
        self.done_seq_at_tick = self.last_done_seq;
        if self.stalled_ticks >= MATCHING_STALL_TICKS_MAX {
            crate::supervisor::node().trip(crate::supervisor::Fault::new(
                crate::matching::THREAD,
                crate::supervisor::FaultKind::Thread,
                format!(
                    "stuck: no answer to {} inputs for {} timer ticks of 100 ms",
                    self.in_flight.len(),
                    MATCHING_STALL_TICKS_MAX
                ),
            ));
        }
    }

    fn timers(&mut self) {
        let now = Instant::now();
        for connection in self.connections.values_mut() {
            let phase = match connection.state {
                State::AwaitingLogin => Phase::AwaitingLogin,
                State::Authenticating => Phase::Authenticating,
                State::LoggedIn { .. } => Phase::LoggedIn,
            };
            let output_pending = !connection.write_buf.is_empty();
            match connection
                .liveness
                .verdict(now, phase, output_pending, self.login_deadline)
            {
                Verdict::Quiet => {}
                Verdict::Heartbeat => {
                    let _ = ServerPacket::ServerHeartbeat.encode(&mut connection.write_buf);
                }
                Verdict::Drop(reason) => {
                    connection.closing.get_or_insert_with(|| reason.into());
                }
            }
        }
        let tokens: Vec<Token> = self.connections.keys().copied().collect();
        for token in tokens {
            self.flush(token);
        }
        log_held_back(&mut self.refusal_log, now, "connections refused or evicted");
        log_held_back(&mut self.login_log, now, "logins failed or refused");
    }

    /// Closes connections marked for closing (after a last flush of what they were told).
    fn reap(&mut self) {
        let closing: Vec<Token> = self
            .connections
            .iter()
            .filter(|(_, c)| c.closing.is_some())
            .map(|(t, _)| *t)
            .collect();
        for token in closing {
            self.flush(token);
            self.close_now(token, "");
        }
    }

    /// Closes connection `token` now (with its `closing` reason, or `reason`), freeing its
    /// slot; a logged-in session's cancel-on-disconnect is submitted.
    fn close_now(&mut self, token: Token, reason: &str) {
        let Some(mut connection) = self.connections.remove(&token) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut connection.stream);
        self.unread.remove(&token);
        self.throttled.remove(&token);
        self.admission.closed(connection.peer.ip(), token);
        let reason = connection.closing.unwrap_or_else(|| reason.to_string());
        let throttled = connection.throttled_count;
        tracing::info!(peer = %connection.peer, %reason, throttled, "disconnected");
        if let State::LoggedIn { user } = connection.state {
            self.logged_in.remove(&user);
            if self.book.user(user).cancel_on_disconnect {
                if let Some(envelope) = self.book.disconnect_input(user, now_ns()) {
                    self.submit(envelope, None, None);
                }
            }
        }
    }

    /// The node stops on a fault: nothing more will be answered. Releases what is already
    /// acknowledged (durable, and committed in a cluster: [`Server::release_seq`] never goes
    /// past that), tells every logged-in client End of Session and flushes, without waiting
    /// for inputs in flight. A client resumes after the restart and gets every answer the
    /// journal holds.
    fn stop_on_fault(&mut self) {
        self.pump_outcomes();
        self.release();
        for token in self.logged_in.values().copied().collect::<Vec<_>>() {
            if let Some(connection) = self.connections.get_mut(&token) {
                let _ = ServerPacket::EndOfSession.encode(&mut connection.write_buf);
            }
            self.flush(token);
        }
        tracing::error!(
            unanswered = self.in_flight.len(),
            "gateway stopped on a fault; clients told End of Session"
        );
    }

    fn shutdown(&mut self) {
        if self
            .cluster
            .as_ref()
            .is_some_and(|link| link.deposed.load(Ordering::Acquire))
        {
            // Nothing more will be committed here; drop connections, say nothing.
            tracing::warn!("no longer the leader: order entry closed");
            return;
        }
        // Let everything submitted be answered and acknowledged, for a bounded time.
        let deadline = Instant::now() + Duration::from_secs(5);
        while (!self.in_flight.is_empty() || self.release_seq() < self.last_done_seq)
            && Instant::now() < deadline
        {
            self.pump_outcomes();
            std::thread::sleep(Duration::from_micros(200));
        }
        self.release();
        for token in self.logged_in.values().copied().collect::<Vec<_>>() {
            if let Some(connection) = self.connections.get_mut(&token) {
                let _ = ServerPacket::EndOfSession.encode(&mut connection.write_buf);
            }
            self.flush(token);
        }
        tracing::info!("gateway stopped; clients told End of Session");
    }
}

/// An input handed to the matching loop and not yet answered.
struct InFlight {
    envelope: Envelope,
    /// Its client message, decoded (None for inputs without one).
    message: Option<InboundMessage>,
    /// The connection it came from.
    origin: Option<Token>,
}

/// What a login was accepted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Credential {
    Password,
    Ticket,
}

impl Credential {
    fn name(self) -> &'static str {
        match self {
            Credential::Password => "password",
            Credential::Ticket => "ticket",
        }
    }
}

enum Action {
    Nothing,
    Close(String),
    Login {
        username: String,
        password: String,
        session_ok: bool,
        session: [u8; 10],
        requested_seq: u64,
    },
    /// An order for the matching loop, and its decoded client message.
    Submit(Envelope, InboundMessage),
}

/// Logs, per source whose interval is over, the lines `limit` held back (about `what`).
fn log_held_back(limit: &mut LogLimit, now: Instant, what: &str) {
    let (held_back, uncounted) = limit.expired(now);
    for (source, count) in held_back {
        tracing::warn!(%source, count, "{what} since the last line about this address");
    }
    if uncounted > 0 {
        tracing::warn!(
            count = uncounted,
            "{what} from addresses not logged separately"
        );
    }
}

/// Wakes the I/O thread from another thread (the flusher, the password checker).
pub fn waker(poll: &Poll) -> std::io::Result<Arc<Waker>> {
    Ok(Arc::new(Waker::new(poll.registry(), WAKER)?))
}
