//! Peer transport: authenticated, length-prefixed TCP frames between cluster nodes.
//!
//! The Raft layer hands [`Transport::send`] opaque payloads (protobuf-encoded raft messages)
//! addressed to a node id; payloads that arrive from authenticated peers come out of the
//! `inbound` channel given to [`Transport::start`]. raft-rs decodes those bytes with
//! protobuf 2.x, so the transport's one hard rule is: **no byte reaches `inbound` unless its
//! frame's MAC verified under a key only holders of the cluster secret can derive**, and
//! nothing a peer sends can make it panic. The wire format is specified byte by byte in
//! `replication/FORMAT.md`, section "Peer frames".
//!
//! # Design
//!
//! - **Connections are one-way.** Every node dials each peer for its own outbound traffic
//!   (one connection per peer, at most one at a time) and accepts inbound connections only
//!   to receive. There are no dial races to resolve, and per-pair ordering follows from TCP.
//! - **Handshake** (four fixed-size messages): the dialer's `Hello` names both node ids and
//!   carries its nonce; the acceptor answers with its own nonce; both derive a per-connection
//!   key `HMAC-SHA256(secret, "keel-raft-v1" || from || to || nonce_d || nonce_a)`; the dialer
//!   proves the key first (so the *acceptor* can log "wrong secret" precisely), then the
//!   acceptor proves it back (so the dialer knows it reached the node it meant, with the
//!   same secret). Data frames then carry a counter and a 16-byte truncated HMAC tag.
//! - **Threads, blocking std::net.** One writer thread per peer drains that peer's bounded
//!   queue (all queued payloads per batch, TCP_NODELAY); one accept thread polls a
//!   non-blocking listener; one thread per inbound connection does the handshake and then
//!   reads frames. Every socket is kept in a registry so shutdown can `shutdown(Both)` it,
//!   which unblocks any thread reading or writing it: shutdown never waits for a peer.
//! - **Everything is bounded**: the per-peer queue ([`PEER_QUEUE_PAYLOADS_MAX`] payloads and
//!   [`PEER_QUEUE_BYTES_MAX`]), the frame size ([`FRAME_PAYLOAD_BYTES_MAX`]), the handshake
//!   time ([`HANDSHAKE_TIMEOUT_MS`]), the unauthenticated inbound connections
//!   ([`HANDSHAKES_PENDING_PER_PEER_MAX`] per configured peer, counted by source address)
//!   and the authenticated ones (one per known peer: a newer authenticated connection from
//!   the same peer closes the older one, which is what a restarted peer needs).
//! - **Admission before any byte**: a connection whose source address is not the IP of a
//!   configured peer is closed on accept, before the handshake starts (counted in
//!   [`TransportStats::inbound_refused_stranger`], logged at most once a second with the
//!   number left unlogged). A source's pending handshakes are capped at
//!   [`HANDSHAKES_PENDING_PER_PEER_MAX`] per peer configured at that IP, so one source
//!   cannot take another's slots. A new connection from a source at its cap evicts that
//!   source's oldest pending connection that has not yet sent a valid `Hello` (a real peer
//!   sends its `Hello` with its first segment), and is refused only when every pending one
//!   has: an idle flood from a peer's own address churns through its own connections
//!   instead of locking the peer out.
//!
//! # Choices beyond the brief
//!
//! - Counters must be *exactly* one more than the previous frame's (first frame: 1), not
//!   merely increasing: TCP neither loses nor reorders, so any gap is tampering, and the
//!   stricter rule also detects deleted frames.
//! - When a peer cannot be reached (connect or handshake fails, or a write fails), the
//!   writer discards the payloads queued for it and counts them in
//!   [`TransportStats::dropped_unreachable`], then backs off (20 ms doubling to 500 ms).
//!   Raft messages go stale quickly and Raft retransmits, so flooding a peer that comes back
//!   with thousands of stale messages would only slow its recovery.
//! - The payloads of a batch whose write failed are counted as dropped, although the peer
//!   may have received some of them: the transport does not know and Raft does not care.
//! - Empty payloads, payloads above [`FRAME_PAYLOAD_BYTES_MAX`] and payloads for unknown node
//!   ids are dropped by [`Transport::send`] and counted in [`TransportStats::dropped_invalid`]
//!   (the wire format has no empty frame; a raft message always encodes to at least its
//!   `to`/`from` fields).
//! - Before writing to a connection that has been idle, the writer peeks at it (the acceptor
//!   never sends after the handshake, so anything readable means the peer closed it). This
//!   makes a restarted peer's old connection fail before a batch is written into it rather
//!   than after.
//!
//! # What it does not do
//!
//! No confidentiality: payloads travel in clear (they are replicated order flow, so run the
//! cluster on a private network or under a tunnel if that matters). No protection against a
//! weak secret: the handshake lets an eavesdropper test guesses offline, so the secret must
//! be random (at least [`SECRET_BYTES_MIN`] bytes, e.g. 32 from a CSPRNG), not a password.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender, TrySendError};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// First eight bytes of a `Hello` and a `Challenge`: ASCII `KEELRAFT`.
pub const HANDSHAKE_MAGIC: [u8; 8] = *b"KEELRAFT";
/// Version of the peer-frame protocol this module speaks (FORMAT.md, "Peer frames").
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest payload one frame may carry. Raft messages are at most a few MiB; the cap bounds
/// what one frame header can make a reader allocate.
pub const FRAME_PAYLOAD_BYTES_MAX: usize = 64 << 20;
/// Shortest accepted cluster secret.
pub const SECRET_BYTES_MIN: usize = 16;
/// Payloads queued per peer before [`Transport::send`] starts dropping.
pub const PEER_QUEUE_PAYLOADS_MAX: usize = 4096;
/// Payload bytes queued per peer before [`Transport::send`] starts dropping (bounds memory
/// when payloads are large).
pub const PEER_QUEUE_BYTES_MAX: usize = 256 << 20;
/// A handshake (either side) not completed within this is abandoned. A handshake takes
/// about 1.5 round trips after the connection is accepted, so this leaves room for peers
/// up to ~100 ms apart while an idle connection holds a slot for at most this long.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 200;
/// Inbound connections not yet authenticated, at most, per configured peer at the source's
/// IP address (each one costs a thread until its handshake ends). A dialer has one
/// handshake in progress per peer at a time, so two leave room for a redial.
pub const HANDSHAKES_PENDING_PER_PEER_MAX: usize = 2;

const CONNECT_TIMEOUT_MS: u64 = 1_000;
/// A write blocked this long (the peer stopped reading) fails and the connection is redialed.
const WRITE_TIMEOUT_MS: u64 = 10_000;
const BACKOFF_MS_MIN: u64 = 20;
const BACKOFF_MS_MAX: u64 = 500;
/// How often the accept thread looks for new connections and for shutdown.
const ACCEPT_POLL_MS: u64 = 20;
/// Refused or failed inbound connections are logged at most this often (with the number
/// left unlogged in between), so a flood cannot flood the log.
const REFUSAL_LOG_INTERVAL_MS: u64 = 1_000;
/// How often a reader blocked on a full `inbound` channel checks for shutdown.
const DELIVER_POLL_MS: u64 = 100;
/// A connection idle this long is probed for a peer-side close before the next batch.
const IDLE_PROBE_AFTER_MS: u64 = 10;
/// Frames are gathered into writes of about this size (fewer syscalls under TCP_NODELAY).
const WRITE_BUFFER_BYTES: usize = 64 << 10;
/// Payloads larger than this are written straight from the caller's buffer, not copied.
const INLINE_PAYLOAD_BYTES_MAX: usize = 16 << 10;
/// First allocation for an incoming payload; it grows as bytes actually arrive, so a header
/// that lies about its length cannot make the reader allocate the whole cap up front.
const READ_INITIAL_CAPACITY_BYTES: usize = 1 << 20;

const KDF_LABEL: &[u8] = b"keel-raft-v1";
// Both proof inputs are shorter than any frame MAC input (8-byte counter + at least one
// payload byte), so a proof can never be passed off as a frame tag.
const DIALER_PROOF_LABEL: &[u8] = b"dialer";
const ACCEPTOR_PROOF_LABEL: &[u8] = b"acceptor";

const NONCE_BYTES: usize = 16;
const HELLO_BYTES: usize = 44;
const CHALLENGE_BYTES: usize = 28;
const PROOF_BYTES: usize = 32;
const FRAME_HEADER_BYTES: usize = 28;
const TAG_BYTES: usize = 16;

/// Configuration of one node's transport.
#[derive(Clone)]
pub struct TransportConfig {
    /// This node's raft id (non-zero: raft-rs reserves 0 as "no node").
    pub node_id: u64,
    /// Address to listen on for inbound peer connections; port 0 picks a free port
    /// (see [`Transport::local_addr`]).
    pub listen: SocketAddr,
    /// The other nodes' ids and addresses (not this node). Only these ids may connect in.
    pub peers: BTreeMap<u64, SocketAddr>,
    /// Shared cluster secret, at least [`SECRET_BYTES_MIN`] random bytes.
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for TransportConfig {
    // Hand-written so the secret never ends up in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportConfig")
            .field("node_id", &self.node_id)
            .field("listen", &self.listen)
            .field("peers", &self.peers)
            .field("secret", &format_args!("<{} bytes>", self.secret.len()))
            .finish()
    }
}

/// Why a transport could not start.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The cluster secret is shorter than [`SECRET_BYTES_MIN`].
    #[error(
        "cluster secret is {len_bytes} bytes; at least {} are required",
        SECRET_BYTES_MIN
    )]
    SecretTooShort {
        /// Length of the secret given.
        len_bytes: usize,
    },
    /// A node id is 0, which raft-rs reserves as "no node".
    #[error("node id 0 is reserved")]
    ZeroNodeId,
    /// The peer list contains this node's own id.
    #[error("peer list contains this node's own id {node_id}")]
    SelfInPeers {
        /// This node's id.
        node_id: u64,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address from the configuration.
        addr: SocketAddr,
        /// The operating system's error.
        source: io::Error,
    },
    /// Setting up the listener or a thread failed.
    #[error("transport setup failed: {0}")]
    Io(#[from] io::Error),
}

/// Counters since the transport started. Payload counts, not bytes, unless named `_bytes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Frames written to peers (the write returned; delivery is not acknowledged).
    pub frames_sent: u64,
    /// Payload bytes in `frames_sent`.
    pub payload_bytes_sent: u64,
    /// Authenticated frames received and handed to the inbound channel (counted just before
    /// the hand-over, which only a stopping transport or a dropped receiver prevents).
    pub frames_received: u64,
    /// Payload bytes in `frames_received`.
    pub payload_bytes_received: u64,
    /// Payloads dropped by [`Transport::send`] because the peer's queue was full.
    pub dropped_queue_full: u64,
    /// Payloads discarded because their peer could not be reached, or whose write failed.
    pub dropped_unreachable: u64,
    /// Payloads dropped by [`Transport::send`] as unsendable: empty, above
    /// [`FRAME_PAYLOAD_BYTES_MAX`], or addressed to an unknown node id.
    pub dropped_invalid: u64,
    /// Outbound connections that completed the handshake.
    pub outbound_connections: u64,
    /// Inbound connections that completed the handshake.
    pub inbound_connections: u64,
    /// Connections dropped because a MAC did not verify: a handshake proof (wrong secret)
    /// or a frame tag (forged or corrupted frame).
    pub auth_failures: u64,
    /// Connections dropped for any other protocol violation: bad magic, version, node ids,
    /// frame length or counter, handshake timeout, a peer closing mid-handshake.
    pub protocol_errors: u64,
    /// Inbound connections closed on accept because their source held
    /// [`HANDSHAKES_PENDING_PER_PEER_MAX`] per peer pending handshakes, each past its
    /// `Hello`.
    pub inbound_refused_busy: u64,
    /// Inbound connections closed on accept, before any byte, because their source address
    /// is not a configured peer's IP.
    pub inbound_refused_stranger: u64,
    /// Pending inbound connections closed to make room for a newer one from the same source
    /// (the oldest that had not sent a valid `Hello`).
    pub inbound_evicted: u64,
    /// Authenticated inbound connections closed by [`Transport::disconnect_inbound`].
    pub inbound_disconnected: u64,
}

impl TransportStats {
    /// All payloads dropped, for whatever reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full + self.dropped_unreachable + self.dropped_invalid
    }
}

/// A running transport. Dropping it (or [`Transport::shutdown`]) stops its threads and
/// closes its sockets.
pub struct Transport {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    /// Dropped on shutdown: every thread's `stop_rx` then reports disconnection at once.
    stop_tx: Option<Sender<()>>,
    accept_thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("node_id", &self.shared.node_id)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Binds, starts threads. Authenticated inbound payloads go to `inbound` as
    /// `(from_node_id, payload)`; after each delivery `wake` is called (lets the raft thread
    /// stop waiting). When `inbound` is full the connection's reader waits (TCP backpressure
    /// reaches the sender) rather than dropping.
    pub fn start(
        config: TransportConfig,
        inbound: Sender<(u64, Vec<u8>)>,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> Result<Transport, TransportError> {
        if config.secret.len() < SECRET_BYTES_MIN {
            return Err(TransportError::SecretTooShort {
                len_bytes: config.secret.len(),
            });
        }
        if config.node_id == 0 || config.peers.contains_key(&0) {
            return Err(TransportError::ZeroNodeId);
        }
        if config.peers.contains_key(&config.node_id) {
            return Err(TransportError::SelfInPeers {
                node_id: config.node_id,
            });
        }
        let listener = TcpListener::bind(config.listen).map_err(|source| TransportError::Bind {
            addr: config.listen,
            source,
        })?;
        let local_addr = listener.local_addr()?;
        // Non-blocking so the accept thread can notice shutdown between polls.
        listener.set_nonblocking(true)?;

        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let shared = Arc::new(Shared {
            node_id: config.node_id,
            secret: config.secret,
            stopping: AtomicBool::new(false),
            counters: Counters::default(),
            peers: RwLock::new(BTreeMap::new()),
            conns: Mutex::new(Conns::default()),
            pending: Mutex::new(HashMap::new()),
            refusal_log: Mutex::new(LogLimit::default()),
            inbound,
            wake,
            threads: Mutex::new(Vec::new()),
            stop_rx,
            next_conn_id: AtomicU64::new(1),
        });
        // From here on, an early return drops `transport`, which stops what was started.
        let mut transport = Transport {
            shared,
            local_addr,
            stop_tx: Some(stop_tx),
            accept_thread: None,
        };
        for (id, addr) in config.peers {
            add_peer(&transport.shared, id, addr)?;
        }
        let shared = Arc::clone(&transport.shared);
        transport.accept_thread = Some(
            thread::Builder::new()
                .name(format!("keel-raft-accept-{}", config.node_id))
                .spawn(move || accept_loop(&shared, &listener))?,
        );
        tracing::info!(node_id = config.node_id, %local_addr, "raft transport listening");
        Ok(transport)
    }

    /// The address the transport listens on (the bound port when `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Never blocks: queues the payload for `to` (bounded per peer; when full the payload is
    /// dropped and counted — Raft tolerates lost messages and retries).
    pub fn send(&self, to: u64, payload: Vec<u8>) {
        let counters = &self.shared.counters;
        let len_bytes = payload.len();
        if len_bytes == 0 || len_bytes > FRAME_PAYLOAD_BYTES_MAX {
            tracing::debug!(to, len_bytes, "dropping payload of unsendable size");
            counters.dropped_invalid.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some(peer) = read(&self.shared.peers).get(&to).cloned() else {
            tracing::debug!(to, "dropping payload for unknown node id");
            counters.dropped_invalid.fetch_add(1, Ordering::Relaxed);
            return;
        };
        // Reserve the bytes first; the writer releases them when it takes the payload.
        let queued_bytes = peer.queued_bytes.fetch_add(len_bytes, Ordering::Relaxed);
        if queued_bytes.saturating_add(len_bytes) > PEER_QUEUE_BYTES_MAX {
            peer.queued_bytes.fetch_sub(len_bytes, Ordering::Relaxed);
            counters.dropped_queue_full.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match peer.queue.try_send(payload) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                peer.queued_bytes.fetch_sub(len_bytes, Ordering::Relaxed);
                counters.dropped_queue_full.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {
                // Only after shutdown began: the writer is gone.
                peer.queued_bytes.fetch_sub(len_bytes, Ordering::Relaxed);
                counters.dropped_unreachable.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Updates a peer's address (a node restarted elsewhere). The current outbound
    /// connection to it, if any, is closed before the next batch and redialed at `addr`.
    /// An id not yet known is added as a new peer (it may then also connect in); this
    /// node's own id and 0 are ignored with a warning.
    pub fn set_peer_addr(&self, id: u64, addr: SocketAddr) {
        if id == 0 || id == self.shared.node_id {
            tracing::warn!(peer_id = id, %addr, "ignoring peer address for an invalid node id");
            return;
        }
        if let Some(peer) = read(&self.shared.peers).get(&id) {
            *lock(&peer.addr) = addr;
            peer.addr_generation.fetch_add(1, Ordering::SeqCst);
            return;
        }
        if let Err(error) = add_peer(&self.shared, id, addr) {
            tracing::warn!(peer_id = id, %addr, %error, "cannot add peer");
        }
    }

    /// Closes peer `id`'s current inbound connection, if any (it sent something invalid):
    /// it has to authenticate again before anything more of it is delivered. Payloads its
    /// reader already handed over stay delivered.
    pub fn disconnect_inbound(&self, id: u64) {
        let conns = lock(&self.shared.conns);
        if let Some(stream) = conns
            .inbound_by_peer
            .get(&id)
            .and_then(|conn_id| conns.open.get(conn_id))
        {
            let _ = stream.shutdown(Shutdown::Both);
            self.shared
                .counters
                .inbound_disconnected
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A snapshot of the transport's counters.
    pub fn stats(&self) -> TransportStats {
        self.shared.counters.snapshot()
    }

    /// Stops all threads and closes all sockets; returns when every thread has exited.
    /// Payloads still queued are discarded. Dropping the transport does the same.
    pub fn shutdown(self) {
        drop(self);
    }

    fn stop(&mut self) {
        let Some(stop_tx) = self.stop_tx.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        drop(stop_tx);
        // Unblock every thread sitting in a read or write. `register` refuses new sockets
        // once `stopping` is set (checked under the same lock), so none is missed.
        for stream in lock(&self.shared.conns).open.values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        if let Some(handle) = self.accept_thread.take() {
            let _ = handle.join();
        }
        // The accept thread has exited, so no reader threads are added any more.
        loop {
            let handles = std::mem::take(&mut *lock(&self.shared.threads));
            if handles.is_empty() {
                break;
            }
            for handle in handles {
                let _ = handle.join();
            }
        }
        tracing::info!(node_id = self.shared.node_id, "raft transport stopped");
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.stop();
    }
}

/// State shared by the transport handle and its threads.
struct Shared {
    node_id: u64,
    secret: Vec<u8>,
    stopping: AtomicBool,
    counters: Counters,
    peers: RwLock<BTreeMap<u64, Arc<Peer>>>,
    conns: Mutex<Conns>,
    /// Inbound connections accepted but not yet authenticated, by source IP, oldest first.
    pending: Mutex<HashMap<IpAddr, Vec<PendingConn>>>,
    /// Paces the warnings about refused and failed inbound connections.
    refusal_log: Mutex<LogLimit>,
    inbound: Sender<(u64, Vec<u8>)>,
    wake: Arc<dyn Fn() + Send + Sync>,
    /// Writer and reader threads, joined on shutdown.
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Never receives a value; disconnects when the transport stops, waking any waiter.
    stop_rx: Receiver<()>,
    next_conn_id: AtomicU64,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn knows_peer(&self, id: u64) -> bool {
        id != self.node_id && read(&self.peers).contains_key(&id)
    }

    /// Pending handshakes allowed from `ip`: [`HANDSHAKES_PENDING_PER_PEER_MAX`] per peer
    /// configured at that address; 0 for a stranger.
    fn pending_cap(&self, ip: IpAddr) -> usize {
        let ip = ip.to_canonical();
        let peers_there = read(&self.peers)
            .values()
            .filter(|peer| lock(&peer.addr).ip().to_canonical() == ip)
            .count();
        peers_there * HANDSHAKES_PENDING_PER_PEER_MAX
    }

    /// Takes a pending-handshake slot for connection `conn_id` from `ip`, evicting the
    /// source's oldest connection that has not sent a valid `Hello` if it is at `cap`.
    /// `None`: refused (every pending one from there is past its `Hello`).
    fn admit(self: &Arc<Self>, ip: IpAddr, conn_id: u64, cap: usize) -> Option<PendingGuard> {
        let mut pending = lock(&self.pending);
        let from_source = pending.entry(ip).or_default();
        if from_source.len() >= cap {
            let idle = from_source.iter().position(|conn| !conn.hello_ok)?;
            let evicted = from_source.remove(idle);
            if let Some(stream) = lock(&self.conns).open.get(&evicted.conn_id) {
                // Its handshake thread sees the close and ends (its guard finds no slot).
                let _ = stream.shutdown(Shutdown::Both);
            }
            self.counters
                .inbound_evicted
                .fetch_add(1, Ordering::Relaxed);
        }
        from_source.push(PendingConn {
            conn_id,
            hello_ok: false,
        });
        Some(PendingGuard {
            shared: Arc::clone(self),
            ip,
            conn_id,
        })
    }

    /// Logs a refused or failed inbound connection at warn, at most once per
    /// [`REFUSAL_LOG_INTERVAL_MS`]; the others at debug, counted into the next warning.
    fn log_refusal(&self, addr: SocketAddr, reason: &dyn std::fmt::Display) {
        match lock(&self.refusal_log).admit(Instant::now()) {
            Some(unlogged) => tracing::warn!(
                peer_addr = %addr, %reason, unlogged,
                "rejected inbound peer connection (`unlogged`: others since the last warning)"
            ),
            None => tracing::debug!(peer_addr = %addr, %reason, "rejected inbound peer connection"),
        }
    }

    /// Records a socket so shutdown can close it; the guard forgets it when dropped.
    fn register(self: &Arc<Self>, stream: &TcpStream) -> Result<ConnGuard, ConnError> {
        let clone = stream.try_clone()?;
        let mut conns = lock(&self.conns);
        if self.stopping() {
            return Err(ConnError::Stopping);
        }
        let id = self.next_conn_id.fetch_add(1, Ordering::Relaxed);
        conns.open.insert(id, clone);
        Ok(ConnGuard {
            shared: Arc::clone(self),
            id,
        })
    }

    /// Makes `conn_id` the inbound connection of `peer_id`, closing the previous one: a peer
    /// only dials again when its old connection is dead to it (for example, it restarted).
    fn claim_inbound(&self, peer_id: u64, conn_id: u64) {
        let mut conns = lock(&self.conns);
        if let Some(old) = conns.inbound_by_peer.insert(peer_id, conn_id) {
            if let Some(stream) = conns.open.get(&old) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    fn count_failure(&self, error: &ConnError) {
        let counter = match error.kind() {
            FailureKind::Auth => &self.counters.auth_failures,
            FailureKind::Protocol => &self.counters.protocol_errors,
            FailureKind::Io => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn spawn(&self, name: String, body: impl FnOnce() + Send + 'static) -> io::Result<()> {
        let handle = thread::Builder::new().name(name).spawn(body)?;
        let mut threads = lock(&self.threads);
        // Forget threads that already ended so the list stays as long as the live ones.
        threads.retain(|handle| !handle.is_finished());
        threads.push(handle);
        Ok(())
    }
}

#[derive(Default)]
struct Conns {
    /// Every open socket (handshaking, inbound, outbound), by connection id.
    open: HashMap<u64, TcpStream>,
    /// The current authenticated inbound connection of each peer.
    inbound_by_peer: HashMap<u64, u64>,
}

/// Removes a socket from the registry when its connection ends.
struct ConnGuard {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut conns = lock(&self.shared.conns);
        if let Some(stream) = conns.open.remove(&self.id) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        conns
            .inbound_by_peer
            .retain(|_, conn_id| *conn_id != self.id);
    }
}

/// A connection holding a pending-handshake slot of its source.
struct PendingConn {
    conn_id: u64,
    /// It sent a valid `Hello` (so it is not merely idle, and is not evicted).
    hello_ok: bool,
}

/// Holds a pending-handshake slot of its source until the handshake ends.
struct PendingGuard {
    shared: Arc<Shared>,
    ip: IpAddr,
    conn_id: u64,
}

impl PendingGuard {
    /// The connection sent a valid `Hello`: a newer connection from its source may no
    /// longer evict it.
    fn hello_verified(&self) {
        let mut pending = lock(&self.shared.pending);
        if let Some(conn) = pending
            .get_mut(&self.ip)
            .and_then(|conns| conns.iter_mut().find(|conn| conn.conn_id == self.conn_id))
        {
            conn.hello_ok = true;
        }
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        let mut pending = lock(&self.shared.pending);
        if let Some(conns) = pending.get_mut(&self.ip) {
            conns.retain(|conn| conn.conn_id != self.conn_id);
            if conns.is_empty() {
                pending.remove(&self.ip);
            }
        }
    }
}

/// At most one warning per [`REFUSAL_LOG_INTERVAL_MS`].
#[derive(Default)]
struct LogLimit {
    last_warn: Option<Instant>,
    unlogged: u64,
}

impl LogLimit {
    /// `Some(events not logged since the last warning)` when a warning may go out now.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        let due = self.last_warn.is_none_or(|last| {
            now.duration_since(last) >= Duration::from_millis(REFUSAL_LOG_INTERVAL_MS)
        });
        if !due {
            self.unlogged = self.unlogged.saturating_add(1);
            return None;
        }
        self.last_warn = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

struct Peer {
    id: u64,
    addr: Mutex<SocketAddr>,
    /// Bumped by `set_peer_addr` so the writer drops a connection to the old address.
    addr_generation: AtomicU64,
    queue: Sender<Vec<u8>>,
    queued_bytes: AtomicUsize,
}

#[derive(Default)]
struct Counters {
    frames_sent: AtomicU64,
    payload_bytes_sent: AtomicU64,
    frames_received: AtomicU64,
    payload_bytes_received: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_unreachable: AtomicU64,
    dropped_invalid: AtomicU64,
    outbound_connections: AtomicU64,
    inbound_connections: AtomicU64,
    auth_failures: AtomicU64,
    protocol_errors: AtomicU64,
    inbound_refused_busy: AtomicU64,
    inbound_refused_stranger: AtomicU64,
    inbound_evicted: AtomicU64,
    inbound_disconnected: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> TransportStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        TransportStats {
            frames_sent: get(&self.frames_sent),
            payload_bytes_sent: get(&self.payload_bytes_sent),
            frames_received: get(&self.frames_received),
            payload_bytes_received: get(&self.payload_bytes_received),
            dropped_queue_full: get(&self.dropped_queue_full),
            dropped_unreachable: get(&self.dropped_unreachable),
            dropped_invalid: get(&self.dropped_invalid),
            outbound_connections: get(&self.outbound_connections),
            inbound_connections: get(&self.inbound_connections),
            auth_failures: get(&self.auth_failures),
            protocol_errors: get(&self.protocol_errors),
            inbound_refused_busy: get(&self.inbound_refused_busy),
            inbound_refused_stranger: get(&self.inbound_refused_stranger),
            inbound_evicted: get(&self.inbound_evicted),
            inbound_disconnected: get(&self.inbound_disconnected),
        }
    }
}

/// Why one connection ended. Each ends only its own connection.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("connection closed by the peer")]
    Closed,
    #[error("connection closed by the peer mid-handshake")]
    ClosedInHandshake,
    #[error("peer closed the handshake without accepting us (different cluster secret, or it does not know node {0} at this address?)")]
    RejectedByPeer(u64),
    #[error("handshake not completed within {} ms", HANDSHAKE_TIMEOUT_MS)]
    HandshakeTimeout,
    #[error("bad magic {0:02x?}: not a keel raft peer")]
    BadMagic([u8; 8]),
    #[error("unsupported protocol version {0} (this node speaks {ours})", ours = PROTOCOL_VERSION)]
    BadVersion(u32),
    #[error("hello addressed to node {to}, but this is node {ours}")]
    WrongTo { to: u64, ours: u64 },
    #[error("hello from node {0}, which is not a configured peer")]
    UnknownFrom(u64),
    #[error("handshake proof does not verify (different cluster secret?)")]
    BadProof,
    #[error("frame length {0} bytes is zero or above the {max} byte limit", max = FRAME_PAYLOAD_BYTES_MAX)]
    BadLength(u32),
    #[error("frame counter {got}, expected {expected} (replayed, reordered or deleted frame)")]
    BadCounter { expected: u64, got: u64 },
    #[error("tag of frame {counter} does not verify (forged or corrupted frame)")]
    BadTag { counter: u64 },
    #[error("payload of {0} bytes cannot be framed")]
    Unframeable(usize),
    #[error("operating-system random number generator failed: {0}")]
    Random(rand::Error),
    #[error("HMAC key setup failed")]
    MacKey,
    #[error("transport is stopping")]
    Stopping,
}

enum FailureKind {
    Auth,
    Protocol,
    Io,
}

impl ConnError {
    fn kind(&self) -> FailureKind {
        match self {
            ConnError::BadProof | ConnError::BadTag { .. } => FailureKind::Auth,
            ConnError::ClosedInHandshake
            | ConnError::RejectedByPeer(_)
            | ConnError::HandshakeTimeout
            | ConnError::BadMagic(_)
            | ConnError::BadVersion(_)
            | ConnError::WrongTo { .. }
            | ConnError::UnknownFrom(_)
            | ConnError::BadLength(_)
            | ConnError::BadCounter { .. } => FailureKind::Protocol,
            ConnError::Io(_)
            | ConnError::Closed
            | ConnError::Unframeable(_)
            | ConnError::Random(_)
            | ConnError::MacKey
            | ConnError::Stopping => FailureKind::Io,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking holder cannot leave these structures half-updated in a way that matters
    // (maps of sockets and handles), so poisoning is ignored rather than propagated.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// Registers a peer and starts its writer thread (holding the write lock, so two calls for
/// the same new id cannot both start one).
fn add_peer(shared: &Arc<Shared>, id: u64, addr: SocketAddr) -> io::Result<()> {
    let mut peers = write(&shared.peers);
    if peers.contains_key(&id) {
        return Ok(());
    }
    let (queue_tx, queue_rx) = crossbeam_channel::bounded(PEER_QUEUE_PAYLOADS_MAX);
    let peer = Arc::new(Peer {
        id,
        addr: Mutex::new(addr),
        addr_generation: AtomicU64::new(0),
        queue: queue_tx,
        queued_bytes: AtomicUsize::new(0),
    });
    let writer_shared = Arc::clone(shared);
    let writer_peer = Arc::clone(&peer);
    shared.spawn(format!("keel-raft-tx-{id}"), move || {
        writer_loop(&writer_shared, &writer_peer, &queue_rx);
    })?;
    peers.insert(id, peer);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Keys, proofs, tags

fn random_nonce() -> Result<[u8; NONCE_BYTES], ConnError> {
    let mut nonce = [0u8; NONCE_BYTES];
    rand::rngs::OsRng
        .try_fill_bytes(&mut nonce)
        .map_err(ConnError::Random)?;
    Ok(nonce)
}

fn hmac(key: &[u8]) -> Result<HmacSha256, ConnError> {
    // HMAC accepts keys of any length (long ones are hashed), so this never fails in
    // practice; the error only keeps the code free of panics.
    <HmacSha256 as Mac>::new_from_slice(key).map_err(|_| ConnError::MacKey)
}

/// The per-connection frame key, as a keyed MAC state that is cloned per use.
fn derive_key(
    secret: &[u8],
    from: u64,
    to: u64,
    nonce_d: &[u8; NONCE_BYTES],
    nonce_a: &[u8; NONCE_BYTES],
) -> Result<HmacSha256, ConnError> {
    let mut kdf = hmac(secret)?;
    kdf.update(KDF_LABEL);
    kdf.update(&from.to_le_bytes());
    kdf.update(&to.to_le_bytes());
    kdf.update(nonce_d);
    kdf.update(nonce_a);
    let key = kdf.finalize().into_bytes();
    hmac(&key)
}

fn proof(key: &HmacSha256, label: &[u8]) -> [u8; PROOF_BYTES] {
    let mut mac = key.clone();
    mac.update(label);
    mac.finalize().into_bytes().into()
}

fn verify_proof(key: &HmacSha256, label: &[u8], proof: &[u8]) -> Result<(), ConnError> {
    let mut mac = key.clone();
    mac.update(label);
    // Constant-time comparison.
    mac.verify_slice(proof).map_err(|_| ConnError::BadProof)
}

fn frame_mac(key: &HmacSha256, counter: u64, payload: &[u8]) -> HmacSha256 {
    let mut mac = key.clone();
    mac.update(&counter.to_le_bytes());
    mac.update(payload);
    mac
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

fn check_magic_and_version(header: &[u8]) -> Result<(), ConnError> {
    let mut magic = [0u8; 8];
    magic.copy_from_slice(&header[0..8]);
    if magic != HANDSHAKE_MAGIC {
        return Err(ConnError::BadMagic(magic));
    }
    let version = le_u32(header, 8);
    if version != PROTOCOL_VERSION {
        return Err(ConnError::BadVersion(version));
    }
    Ok(())
}

/// `read_exact` that gives up at `deadline` however slowly the bytes trickle in.
fn read_exact_by(
    stream: &mut TcpStream,
    buf: &mut [u8],
    deadline: Instant,
    closed: ConnError,
) -> Result<(), ConnError> {
    let mut filled = 0;
    while filled < buf.len() {
        let remaining = deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .ok_or(ConnError::HandshakeTimeout)?;
        stream.set_read_timeout(Some(remaining))?;
        match stream.read(&mut buf[filled..]) {
            Ok(0) => return Err(closed),
            Ok(n) => filled += n,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Inbound: accept, handshake, read frames

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    loop {
        if shared.stopping() {
            return;
        }
        match listener.accept() {
            Ok((stream, addr)) => on_accept(shared, stream, addr),
            Err(error) => {
                if error.kind() != io::ErrorKind::WouldBlock {
                    // E.g. out of file descriptors: keep polling rather than spinning.
                    tracing::warn!(%error, "accepting a peer connection failed");
                }
                match shared
                    .stop_rx
                    .recv_timeout(Duration::from_millis(ACCEPT_POLL_MS))
                {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        }
    }
}

fn on_accept(shared: &Arc<Shared>, stream: TcpStream, addr: SocketAddr) {
    let cap = shared.pending_cap(addr.ip());
    if cap == 0 {
        // Not a peer's address: closed (by dropping it) before a byte is read or written.
        shared
            .counters
            .inbound_refused_stranger
            .fetch_add(1, Ordering::Relaxed);
        shared.log_refusal(addr, &"source address is not a configured peer's");
        return;
    }
    let setup = stream
        .set_nonblocking(false)
        .map_err(ConnError::from)
        .and_then(|()| shared.register(&stream));
    let conn = match setup {
        Ok(conn) => conn,
        Err(ConnError::Stopping) => return,
        Err(error) => {
            tracing::warn!(peer_addr = %addr, reason = %error, "cannot set up peer connection");
            return;
        }
    };
    let Some(pending) = shared.admit(addr.ip().to_canonical(), conn.id, cap) else {
        shared
            .counters
            .inbound_refused_busy
            .fetch_add(1, Ordering::Relaxed);
        shared.log_refusal(
            addr,
            &"too many unauthenticated connections from this address",
        );
        return;
    };
    let reader_shared = Arc::clone(shared);
    let spawned = shared.spawn(format!("keel-raft-rx-{addr}"), move || {
        serve_inbound(&reader_shared, stream, addr, &conn, pending);
    });
    if let Err(error) = spawned {
        tracing::warn!(peer_addr = %addr, %error, "cannot start a reader thread; closing");
    }
}

fn serve_inbound(
    shared: &Arc<Shared>,
    mut stream: TcpStream,
    addr: SocketAddr,
    conn: &ConnGuard,
    pending: PendingGuard,
) {
    let (peer_id, key) = match accept_handshake(shared, &mut stream, &pending) {
        Ok(accepted) => accepted,
        Err(error) => {
            if !shared.stopping() {
                shared.count_failure(&error);
                shared.log_refusal(addr, &error);
            }
            return;
        }
    };
    drop(pending);
    shared
        .counters
        .inbound_connections
        .fetch_add(1, Ordering::Relaxed);
    shared.claim_inbound(peer_id, conn.id);
    tracing::info!(peer_addr = %addr, peer_id, "inbound peer connection authenticated");
    match read_frames(shared, &mut stream, peer_id, &key) {
        Ok(()) => tracing::info!(peer_addr = %addr, peer_id, "inbound peer connection closed"),
        Err(_) if shared.stopping() => {}
        Err(error) => match error.kind() {
            FailureKind::Io => tracing::info!(
                peer_addr = %addr, peer_id, reason = %error, "inbound peer connection closed"
            ),
            FailureKind::Auth | FailureKind::Protocol => {
                shared.count_failure(&error);
                tracing::warn!(
                    peer_addr = %addr, peer_id, reason = %error,
                    "dropping inbound peer connection"
                );
            }
        },
    }
}

/// The acceptor's side of the handshake; returns the authenticated peer and the frame key.
fn accept_handshake(
    shared: &Shared,
    stream: &mut TcpStream,
    pending: &PendingGuard,
) -> Result<(u64, HmacSha256), ConnError> {
    let deadline = Instant::now() + Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
    let mut hello = [0u8; HELLO_BYTES];
    // Magic and version first, so a stranger speaking another protocol is cut off at once.
    read_exact_by(
        stream,
        &mut hello[..12],
        deadline,
        ConnError::ClosedInHandshake,
    )?;
    check_magic_and_version(&hello)?;
    read_exact_by(
        stream,
        &mut hello[12..],
        deadline,
        ConnError::ClosedInHandshake,
    )?;
    let from = le_u64(&hello, 12);
    let to = le_u64(&hello, 20);
    let mut nonce_d = [0u8; NONCE_BYTES];
    nonce_d.copy_from_slice(&hello[28..44]);
    if to != shared.node_id {
        return Err(ConnError::WrongTo {
            to,
            ours: shared.node_id,
        });
    }
    if !shared.knows_peer(from) {
        return Err(ConnError::UnknownFrom(from));
    }
    pending.hello_verified();

    let nonce_a = random_nonce()?;
    let mut challenge = [0u8; CHALLENGE_BYTES];
    challenge[0..8].copy_from_slice(&HANDSHAKE_MAGIC);
    challenge[8..12].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    challenge[12..28].copy_from_slice(&nonce_a);
    // The handshake's writes are tiny and fit any socket buffer; the timeout is a backstop.
    stream.set_write_timeout(Some(Duration::from_millis(HANDSHAKE_TIMEOUT_MS)))?;
    stream.write_all(&challenge)?;

    let key = derive_key(&shared.secret, from, to, &nonce_d, &nonce_a)?;
    let mut dialer_proof = [0u8; PROOF_BYTES];
    read_exact_by(
        stream,
        &mut dialer_proof,
        deadline,
        ConnError::ClosedInHandshake,
    )?;
    verify_proof(&key, DIALER_PROOF_LABEL, &dialer_proof)?;
    stream.write_all(&proof(&key, ACCEPTOR_PROOF_LABEL))?;
    // From now on the reader blocks until a frame arrives; shutdown or a replacing
    // connection unblocks it by shutting the socket down.
    stream.set_read_timeout(None)?;
    Ok((from, key))
}

/// Reads, verifies and delivers frames until the peer closes (`Ok`) or misbehaves (`Err`).
fn read_frames(
    shared: &Shared,
    stream: &mut TcpStream,
    peer_id: u64,
    key: &HmacSha256,
) -> Result<(), ConnError> {
    let mut expected_counter: u64 = 1;
    let mut header = [0u8; FRAME_HEADER_BYTES];
    loop {
        // A close between frames is the normal end of a connection.
        match stream.read(&mut header[..1]) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error.into()),
        }
        read_exact_or_closed(stream, &mut header[1..])?;
        let len_bytes = le_u32(&header, 0);
        let counter = le_u64(&header, 4);
        // Reject on the unauthenticated header before reading the payload: either way the
        // connection is dropped, and this way a lying length is never waited for.
        if len_bytes == 0 || len_bytes as usize > FRAME_PAYLOAD_BYTES_MAX {
            return Err(ConnError::BadLength(len_bytes));
        }
        if counter != expected_counter {
            return Err(ConnError::BadCounter {
                expected: expected_counter,
                got: counter,
            });
        }
        let mut payload = Vec::with_capacity((len_bytes as usize).min(READ_INITIAL_CAPACITY_BYTES));
        Read::take(&mut *stream, u64::from(len_bytes)).read_to_end(&mut payload)?;
        if payload.len() != len_bytes as usize {
            return Err(ConnError::Closed);
        }
        frame_mac(key, counter, &payload)
            .verify_truncated_left(&header[12..12 + TAG_BYTES])
            .map_err(|_| ConnError::BadTag { counter })?;
        // Authenticated from here on.
        expected_counter = counter.checked_add(1).ok_or(ConnError::BadCounter {
            expected: expected_counter,
            got: counter,
        })?;
        if !deliver(shared, peer_id, payload) {
            return Ok(());
        }
    }
}

fn read_exact_or_closed(stream: &mut TcpStream, buf: &mut [u8]) -> Result<(), ConnError> {
    stream.read_exact(buf).map_err(|error| {
        if error.kind() == io::ErrorKind::UnexpectedEof {
            ConnError::Closed
        } else {
            ConnError::Io(error)
        }
    })
}

/// Hands a payload to the raft thread, waiting while the channel is full. Returns false when
/// the transport is stopping or the receiver is gone.
fn deliver(shared: &Shared, from: u64, payload: Vec<u8>) -> bool {
    // Counted before the hand-over, so a reader of the stats never sees fewer frames than
    // have come out of the channel.
    let counters = &shared.counters;
    counters.frames_received.fetch_add(1, Ordering::Relaxed);
    counters
        .payload_bytes_received
        .fetch_add(payload.len() as u64, Ordering::Relaxed);
    let mut item = (from, payload);
    loop {
        match shared
            .inbound
            .send_timeout(item, Duration::from_millis(DELIVER_POLL_MS))
        {
            Ok(()) => break,
            Err(SendTimeoutError::Timeout(back)) => {
                if shared.stopping() {
                    return false;
                }
                item = back;
            }
            Err(SendTimeoutError::Disconnected(_)) => return false,
        }
    }
    (shared.wake)();
    true
}

// ---------------------------------------------------------------------------------------
// Outbound: dial, handshake, write batches

/// An authenticated outbound connection.
struct Outbound {
    stream: TcpStream,
    key: HmacSha256,
    next_counter: u64,
    /// Frames are gathered here and written in chunks of about [`WRITE_BUFFER_BYTES`].
    /// (Not a `BufWriter`: dropping one flushes, which could block on a dead connection.)
    buf: Vec<u8>,
    last_write: Instant,
    _conn: ConnGuard,
}

impl Outbound {
    /// True when the peer has closed the connection (or sent something, which an acceptor
    /// never does after the handshake). Only probes connections idle for a while, to keep
    /// busy connections at one syscall per write.
    fn peer_closed(&self) -> bool {
        if self.last_write.elapsed() < Duration::from_millis(IDLE_PROBE_AFTER_MS) {
            return false;
        }
        if self.stream.set_nonblocking(true).is_err() {
            return true;
        }
        let mut byte = [0u8; 1];
        let closed = match self.stream.peek(&mut byte) {
            Ok(_) => true,
            Err(error) => error.kind() != io::ErrorKind::WouldBlock,
        };
        closed || self.stream.set_nonblocking(false).is_err()
    }

    fn write_batch(&mut self, batch: &[Vec<u8>]) -> Result<(), ConnError> {
        self.buf.clear();
        for payload in batch {
            let len_bytes = u32::try_from(payload.len())
                .ok()
                .filter(|&len| len != 0 && len as usize <= FRAME_PAYLOAD_BYTES_MAX)
                .ok_or(ConnError::Unframeable(payload.len()))?;
            let counter = self.next_counter;
            let tag = frame_mac(&self.key, counter, payload)
                .finalize()
                .into_bytes();
            self.buf.extend_from_slice(&len_bytes.to_le_bytes());
            self.buf.extend_from_slice(&counter.to_le_bytes());
            self.buf.extend_from_slice(&tag[..TAG_BYTES]);
            if payload.len() <= INLINE_PAYLOAD_BYTES_MAX {
                self.buf.extend_from_slice(payload);
            } else {
                self.stream.write_all(&self.buf)?;
                self.buf.clear();
                self.stream.write_all(payload)?;
            }
            if self.buf.len() >= WRITE_BUFFER_BYTES {
                self.stream.write_all(&self.buf)?;
                self.buf.clear();
            }
            // Counters never wrap: 2^64 frames is out of reach.
            self.next_counter = counter.wrapping_add(1);
        }
        if !self.buf.is_empty() {
            self.stream.write_all(&self.buf)?;
            self.buf.clear();
        }
        self.last_write = Instant::now();
        Ok(())
    }
}

/// Dials a peer and runs the dialer's side of the handshake.
fn dial(shared: &Arc<Shared>, peer_id: u64, addr: SocketAddr) -> Result<Outbound, ConnError> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(CONNECT_TIMEOUT_MS))?;
    let conn = shared.register(&stream)?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(Duration::from_millis(WRITE_TIMEOUT_MS)))?;
    let deadline = Instant::now() + Duration::from_millis(HANDSHAKE_TIMEOUT_MS);

    let nonce_d = random_nonce()?;
    let mut hello = [0u8; HELLO_BYTES];
    hello[0..8].copy_from_slice(&HANDSHAKE_MAGIC);
    hello[8..12].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    hello[12..20].copy_from_slice(&shared.node_id.to_le_bytes());
    hello[20..28].copy_from_slice(&peer_id.to_le_bytes());
    hello[28..44].copy_from_slice(&nonce_d);
    stream.write_all(&hello)?;

    let rejected = || ConnError::RejectedByPeer(shared.node_id);
    let mut challenge = [0u8; CHALLENGE_BYTES];
    read_exact_by(&mut stream, &mut challenge, deadline, rejected())?;
    check_magic_and_version(&challenge)?;
    let mut nonce_a = [0u8; NONCE_BYTES];
    nonce_a.copy_from_slice(&challenge[12..28]);
    let key = derive_key(&shared.secret, shared.node_id, peer_id, &nonce_d, &nonce_a)?;
    stream.write_all(&proof(&key, DIALER_PROOF_LABEL))?;

    let mut acceptor_proof = [0u8; PROOF_BYTES];
    read_exact_by(&mut stream, &mut acceptor_proof, deadline, rejected())?;
    verify_proof(&key, ACCEPTOR_PROOF_LABEL, &acceptor_proof)?;
    Ok(Outbound {
        stream,
        key,
        next_counter: 1,
        buf: Vec::with_capacity(WRITE_BUFFER_BYTES + INLINE_PAYLOAD_BYTES_MAX),
        last_write: Instant::now(),
        _conn: conn,
    })
}

/// Sleeps for the backoff, or returns false at once when the transport stops.
fn backoff(shared: &Shared, backoff_ms: u64) -> bool {
    matches!(
        shared
            .stop_rx
            .recv_timeout(Duration::from_millis(backoff_ms)),
        Err(RecvTimeoutError::Timeout)
    )
}

fn writer_loop(shared: &Arc<Shared>, peer: &Peer, queue: &Receiver<Vec<u8>>) {
    let counters = &shared.counters;
    let mut out: Option<Outbound> = None;
    let mut backoff_ms = BACKOFF_MS_MIN;
    let mut seen_generation = peer.addr_generation.load(Ordering::SeqCst);
    // Repeated connect failures to a down peer are logged once at warn, then at debug.
    let mut failing = false;
    let discard = |count: usize| {
        counters
            .dropped_unreachable
            .fetch_add(count as u64, Ordering::Relaxed);
    };
    loop {
        let first = crossbeam_channel::select! {
            recv(queue) -> payload => match payload {
                Ok(payload) => payload,
                Err(_) => return,
            },
            recv(shared.stop_rx) -> _ => return,
        };
        let mut batch = vec![first];
        batch.extend(queue.try_iter().take(PEER_QUEUE_PAYLOADS_MAX));
        let batch_bytes: usize = batch.iter().map(Vec::len).sum();
        peer.queued_bytes.fetch_sub(batch_bytes, Ordering::Relaxed);
        if shared.stopping() {
            return;
        }
        let generation = peer.addr_generation.load(Ordering::SeqCst);
        if generation != seen_generation {
            seen_generation = generation;
            out = None;
            backoff_ms = BACKOFF_MS_MIN;
        }
        if out.as_ref().is_some_and(Outbound::peer_closed) {
            tracing::debug!(
                peer_id = peer.id,
                "outbound connection closed by the peer; redialing"
            );
            out = None;
        }
        let addr = *lock(&peer.addr);
        let connection = match out.as_mut() {
            Some(connection) => connection,
            None => match dial(shared, peer.id, addr) {
                Ok(connection) => {
                    counters
                        .outbound_connections
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(peer_id = peer.id, peer_addr = %addr, "connected to peer");
                    out.insert(connection)
                }
                Err(error) => {
                    if shared.stopping() {
                        return;
                    }
                    shared.count_failure(&error);
                    let quiet = failing && matches!(error.kind(), FailureKind::Io);
                    if quiet {
                        tracing::debug!(peer_id = peer.id, peer_addr = %addr, reason = %error, "cannot connect to peer");
                    } else {
                        tracing::warn!(peer_id = peer.id, peer_addr = %addr, reason = %error, "cannot connect to peer");
                    }
                    failing = true;
                    // Stale raft messages are worth nothing once the peer is back.
                    discard(batch.len() + queue.try_iter().count());
                    if !backoff(shared, backoff_ms) {
                        return;
                    }
                    backoff_ms = (backoff_ms * 2).min(BACKOFF_MS_MAX);
                    continue;
                }
            },
        };
        match connection.write_batch(&batch) {
            Ok(()) => {
                counters
                    .frames_sent
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                counters
                    .payload_bytes_sent
                    .fetch_add(batch_bytes as u64, Ordering::Relaxed);
                backoff_ms = BACKOFF_MS_MIN;
                failing = false;
            }
            Err(error) => {
                out = None;
                if shared.stopping() {
                    return;
                }
                tracing::warn!(peer_id = peer.id, peer_addr = %addr, reason = %error, "lost connection to peer");
                failing = true;
                discard(batch.len());
                if !backoff(shared, backoff_ms) {
                    return;
                }
                backoff_ms = (backoff_ms * 2).min(BACKOFF_MS_MAX);
            }
        }
    }
}
