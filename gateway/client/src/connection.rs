//! Connections, login, and the background thread that reads, heartbeats and reconnects.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{SendTimeoutError, Sender};

use super::{ClientError, ClientEvent, ClientOptions};
use keel_protocol::ouch::OutboundMessage;
use keel_protocol::resume::TicketNotice;
use keel_protocol::soupbin::{
    ClientPacket, FrameDecoder, LoginAccepted, LoginRejectReason, LoginRequest, Password,
    ServerPacket, SessionId, SERVER_PACKET_BYTES_MAX_DEFAULT,
};
use keel_protocol::Username;

/// The longest the background thread blocks in one call (a read, a full event queue, a
/// backoff slice) before looking at its flags and timers again.
const TICK: Duration = Duration::from_millis(50);
/// How long a search for a server retries every `backoff_initial` before backing off
/// (several election timeouts).
const FAST_RETRY_WINDOW: Duration = Duration::from_secs(1);
/// A probe's connect and login are each limited to this many answer timeouts…
const PROBE_LIMIT_FACTOR: u32 = 4;
/// …but never less than this (a loaded machine takes a while to answer a login).
const PROBE_LIMIT_MIN: Duration = Duration::from_millis(200);

/// `base` scaled by a random factor in [0.5, 1.5): spreads the probes of many clients that
/// lost the same server at the same instant.
fn jittered(base: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // `RandomState` is seeded from the OS once per thread and varies per instance.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    let per_mille = 500 + hasher.finish() % 1_000;
    let per_mille = u32::try_from(per_mille).unwrap_or(1_000);
    base.checked_mul(per_mille)
        .map_or(base, |scaled| scaled / 1_000)
}

/// Bytes read from the socket at once. The receive buffer holds at most this plus one
/// partial packet (at most [`SERVER_PACKET_BYTES_MAX_DEFAULT`] + 2 bytes).
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// What the client's threads share: the write half of the current connection and flags.
pub(crate) struct Shared {
    write: Mutex<WriteHalf>,
    connected: Condvar,
    /// The client is being dropped: the worker exits at once.
    pub(crate) stop: AtomicBool,
    /// A Logout Request was sent (or asked for): the worker does not reconnect.
    pub(crate) logging_out: AtomicBool,
    /// The worker has exited; nothing will be sent again.
    pub(crate) finished: AtomicBool,
    /// Sequence number of the next Sequenced Data message expected.
    pub(crate) next_seq: AtomicU64,
    /// Expiry (Unix seconds) of the resumption ticket held, 0 if none.
    pub(crate) ticket_expires_unix_s: AtomicU64,
}

pub(crate) struct WriteHalf {
    pub(crate) stream: Option<TcpStream>,
    /// Why this side shut the connection down, if it did (reported instead of the EOF).
    local_close: Option<String>,
    /// Whether this connection has carried a Logout Request.
    logout_sent: bool,
    pub(crate) endpoint: Option<SocketAddr>,
    pub(crate) session: SessionId,
    last_sent: Instant,
    /// When the oldest order-entry message not yet followed by anything from the server was
    /// sent (the silence the answer timeout measures).
    unanswered_since: Option<Instant>,
}

impl Shared {
    pub(crate) fn new(session: SessionId) -> Shared {
        Shared {
            write: Mutex::new(WriteHalf {
                stream: None,
                local_close: None,
                logout_sent: false,
                endpoint: None,
                session,
                last_sent: Instant::now(),
                unanswered_since: None,
            }),
            connected: Condvar::new(),
            stop: AtomicBool::new(false),
            logging_out: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            next_seq: AtomicU64::new(0),
            ticket_expires_unix_s: AtomicU64::new(0),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, WriteHalf> {
        self.write.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `stream` the connection writes go to.
    fn install(&self, stream: TcpStream, endpoint: SocketAddr, session: SessionId) {
        let mut write = self.lock();
        write.stream = Some(stream);
        write.local_close = None;
        write.logout_sent = false;
        write.endpoint = Some(endpoint);
        write.session = session;
        write.last_sent = Instant::now();
        write.unanswered_since = None;
        drop(write);
        self.connected.notify_all();
    }

    /// Forgets the current connection, shutting it down (which also wakes its reader);
    /// `reason` is what the reader reports instead of the end of the stream.
    pub(crate) fn clear(&self, reason: &str) {
        let mut write = self.lock();
        if let Some(stream) = write.stream.take() {
            let _ = stream.shutdown(Shutdown::Both);
            write.local_close.get_or_insert_with(|| reason.to_string());
        }
    }

    /// Why this side closed the last connection, if it did.
    fn take_local_close(&self) -> Option<String> {
        self.lock().local_close.take()
    }

    /// Writes one complete packet on the current connection. A failed or partial write
    /// breaks the framing, so it also shuts the connection down (the worker reconnects).
    pub(crate) fn send(&self, packet: &[u8]) -> Result<(), ClientError> {
        let mut write = self.lock();
        let Some(stream) = write.stream.as_mut() else {
            return Err(if self.finished.load(Ordering::Acquire) {
                ClientError::Closed
            } else {
                ClientError::NotConnected
            });
        };
        match stream.write_all(packet) {
            Ok(()) => {
                let now = Instant::now();
                write.last_sent = now;
                // Every order-entry message (Unsequenced Data) gets an answer from a live
                // server; heartbeats and logouts do not count.
                if packet.get(2) == Some(&b'U') {
                    write.unanswered_since.get_or_insert(now);
                }
                Ok(())
            }
            Err(error) => {
                if let Some(stream) = write.stream.take() {
                    let _ = stream.shutdown(Shutdown::Both);
                    write
                        .local_close
                        .get_or_insert_with(|| format!("write error: {error}"));
                }
                Err(ClientError::Io(error))
            }
        }
    }

    /// Sends a Logout Request on the current connection unless it already carried one.
    pub(crate) fn send_logout(&self) -> Result<(), ClientError> {
        let mut packet = Vec::with_capacity(3);
        let _ = ClientPacket::LogoutRequest.encode(&mut packet);
        let mut write = self.lock();
        if write.stream.is_none() || write.logout_sent {
            return Ok(());
        }
        write.logout_sent = true;
        drop(write);
        self.send(&packet)
    }

    /// Sends a Client Heartbeat if nothing was sent for `interval`.
    fn heartbeat(&self, interval: Duration) {
        let due = {
            let write = self.lock();
            write.stream.is_some() && write.last_sent.elapsed() >= interval
        };
        if due {
            let mut packet = Vec::with_capacity(3);
            let _ = ClientPacket::ClientHeartbeat.encode(&mut packet);
            // A failure shuts the connection down; the reader notices and reconnects.
            let _ = self.send(&packet);
        }
    }

    /// Something arrived from the server: any silence being measured is over.
    fn heard_from_server(&self) {
        self.lock().unanswered_since = None;
    }

    /// How long an order-entry message has waited with nothing from the server since.
    fn silent_for(&self) -> Option<Duration> {
        self.lock().unanswered_since.map(|since| since.elapsed())
    }

    /// Waits until connected, closed, or `timeout`; whether connected.
    pub(crate) fn wait_connected(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut write = self.lock();
        loop {
            if write.stream.is_some() {
                return true;
            }
            if self.finished.load(Ordering::Acquire) {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            // Woken by `install`; the slice bounds the wait if the worker finishes instead.
            let slice = (deadline - now).min(TICK);
            write = self
                .connected
                .wait_timeout(write, slice)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// What a login needs.
#[derive(Clone, Copy)]
pub(crate) struct Credentials {
    pub(crate) username: Username,
    pub(crate) password: Password,
    /// The latest resumption ticket the servers gave (see `keel_protocol::resume`): tried
    /// first while it has not expired by this machine's clock; forgotten once refused.
    pub(crate) ticket: Option<TicketNotice>,
}

impl Credentials {
    /// The ticket to try, if one is held and not yet expired.
    fn live_ticket(&self) -> Option<Password> {
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        self.ticket
            .filter(|notice| notice.expires_unix_s > now_s)
            .map(|notice| notice.ticket)
    }
}

/// A connection that completed its login.
pub(crate) struct Opened {
    pub(crate) reader: TcpStream,
    pub(crate) writer: TcpStream,
    pub(crate) endpoint: SocketAddr,
    pub(crate) accepted: LoginAccepted,
    /// Bytes received after the Login Accepted packet.
    pub(crate) leftover: Vec<u8>,
}

/// Why one endpoint did not give a session.
enum Failure {
    Rejected(LoginRejectReason),
    Other(String),
}

/// Connects to `endpoint` and logs in.
fn open_one(
    endpoint: SocketAddr,
    (username, password): (Username, Password),
    session: SessionId,
    requested_seq: u64,
    options: &ClientOptions,
    keep_going: &dyn Fn() -> bool,
) -> Result<Opened, Failure> {
    let (mut reader, mut writer) = connect(endpoint, options)?;
    let request = ClientPacket::LoginRequest(LoginRequest {
        username,
        password,
        requested_session: session,
        requested_sequence_number: requested_seq,
    });
    let mut packet = Vec::with_capacity(64);
    request
        .encode(&mut packet)
        .map_err(|e| Failure::Other(e.to_string()))?;
    writer
        .write_all(&packet)
        .map_err(|e| io_failure("sending the login", e))?;
    // No client heartbeats before Login Accepted: the server refuses data during login.
    let decoder = FrameDecoder::new(SERVER_PACKET_BYTES_MAX_DEFAULT);
    let deadline = Instant::now() + options.login_timeout;
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let (accepted, offset) = login_answer(&decoder, &buf)?;
        if let Some(accepted) = accepted {
            return Ok(Opened {
                reader,
                writer,
                endpoint,
                accepted,
                leftover: buf[offset..].to_vec(),
            });
        }
        buf.drain(..offset);
        if !keep_going() {
            return Err(Failure::Other("the client is closing".into()));
        }
        if Instant::now() >= deadline {
            return Err(Failure::Other(format!(
                "no login response within {:?}",
                options.login_timeout
            )));
        }
        match reader.read(&mut chunk) {
            Ok(0) => return Err(Failure::Other("connection closed during login".into())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(io_failure("reading the login response", e)),
        }
    }
}

/// Reads the complete packets in `buf` up to the server's answer to a login: Login Accepted
/// (with the bytes up to and including it), or, when no answer is there yet, `None` with the
/// bytes read. Login Rejected and anything a server may not send during login fail.
fn login_answer(
    decoder: &FrameDecoder,
    buf: &[u8],
) -> Result<(Option<LoginAccepted>, usize), Failure> {
    let mut offset = 0;
    loop {
        let decoded = decoder
            .decode_server(&buf[offset..])
            .map_err(|e| Failure::Other(format!("protocol error during login: {e}")))?;
        let Some((packet, used)) = decoded else {
            return Ok((None, offset));
        };
        offset += used;
        match packet {
            ServerPacket::LoginAccepted(accepted) => return Ok((Some(accepted), offset)),
            ServerPacket::LoginRejected(reason) => return Err(Failure::Rejected(reason)),
            ServerPacket::ServerHeartbeat | ServerPacket::Debug(_) => {}
            ServerPacket::EndOfSession => {
                return Err(Failure::Other("end of session during login".into()))
            }
            ServerPacket::SequencedData(_) => {
                return Err(Failure::Other(
                    "protocol error: sequenced data before Login Accepted".into(),
                ))
            }
        }
    }
}

/// A socket failure while opening a connection, saying what was being done.
fn io_failure(what: &str, error: std::io::Error) -> Failure {
    Failure::Other(format!("{what}: {error}"))
}

/// Connects to `endpoint` with the options' timeouts; the reading and the writing handle.
fn connect(
    endpoint: SocketAddr,
    options: &ClientOptions,
) -> Result<(TcpStream, TcpStream), Failure> {
    let stream = TcpStream::connect_timeout(&endpoint, options.connect_timeout)
        .map_err(|e| io_failure("connect", e))?;
    stream
        .set_nodelay(true)
        .map_err(|e| io_failure("setsockopt", e))?;
    stream
        .set_write_timeout(Some(options.write_timeout))
        .map_err(|e| io_failure("setsockopt", e))?;
    stream
        .set_read_timeout(Some(TICK))
        .map_err(|e| io_failure("setsockopt", e))?;
    let writer = stream.try_clone().map_err(|e| io_failure("socket", e))?;
    Ok((stream, writer))
}

fn is_timeout(error: &std::io::Error) -> bool {
    matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Sleeps `duration` in slices, returning early (false) once `keep_going` says no.
fn sleep_while(duration: Duration, keep_going: &dyn Fn() -> bool) -> bool {
    let deadline = Instant::now() + duration;
    loop {
        if !keep_going() {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(TICK));
    }
}

/// Logs in at `endpoint` with the resumption ticket if one is held, else (or if the ticket is
/// refused as not authorized: expired, or issued under another secret) with the password.
fn open_with_credentials(
    endpoint: SocketAddr,
    credentials: &mut Credentials,
    session: SessionId,
    requested_seq: u64,
    options: &ClientOptions,
    keep_going: &dyn Fn() -> bool,
) -> Result<Opened, Failure> {
    if let Some(ticket) = credentials.live_ticket() {
        let username = credentials.username;
        match open_one(
            endpoint,
            (username, ticket),
            session,
            requested_seq,
            options,
            keep_going,
        ) {
            Err(Failure::Rejected(LoginRejectReason::NotAuthorized)) => {
                tracing::info!(%endpoint, "client: resumption ticket refused; logging in with the password");
            }
            other => return other,
        }
    }
    credentials.ticket = None;
    open_one(
        endpoint,
        (credentials.username, credentials.password),
        session,
        requested_seq,
        options,
        keep_going,
    )
}

/// Tries the endpoints in order, `attempts` passes over the list with a pause between
/// passes of `backoff_initial` for the first [`FAST_RETRY_WINDOW`], then growing by half
/// each time up to `backoff_max`, each pause jittered ±50%. `Login Rejected S` (and any connection failure) moves on to the next
/// endpoint; `Login Rejected A` ends the search at once.
pub(crate) fn open_any(
    endpoints: &[SocketAddr],
    credentials: &mut Credentials,
    session: SessionId,
    requested_seq: u64,
    options: &ClientOptions,
    attempts: u32,
    keep_going: &dyn Fn() -> bool,
) -> Result<Opened, ClientError> {
    if endpoints.is_empty() {
        return Err(ClientError::invalid("endpoints", "the list is empty"));
    }
    let attempts = attempts.max(1);
    let mut failures: Vec<(SocketAddr, String)> = Vec::new();
    let mut backoff = options.backoff_initial;
    let started = Instant::now();
    for attempt in 0..attempts {
        if attempt > 0 {
            if !sleep_while(jittered(backoff), keep_going) {
                return Err(ClientError::Closed);
            }
            // Flat at first: after a failover the new leader opens a few hundred ms in, and
            // a client should then be at most one short pause away, not sleeping for a
            // second. Only a search that outlasts an election backs off.
            if started.elapsed() >= FAST_RETRY_WINDOW {
                backoff =
                    (backoff + backoff / 2).min(options.backoff_max.max(options.backoff_initial));
            }
        }
        for &endpoint in endpoints {
            if !keep_going() {
                return Err(ClientError::Closed);
            }
            match open_with_credentials(
                endpoint,
                credentials,
                session,
                requested_seq,
                options,
                keep_going,
            ) {
                Ok(opened) => return Ok(opened),
                Err(Failure::Rejected(LoginRejectReason::NotAuthorized)) => {
                    return Err(ClientError::LoginRejected {
                        endpoint,
                        reason: LoginRejectReason::NotAuthorized,
                    })
                }
                Err(failure) => {
                    let reason = match failure {
                        Failure::Rejected(reason) => {
                            format!("login rejected: {}", super::login_reject_text(reason))
                        }
                        Failure::Other(reason) => reason,
                    };
                    tracing::debug!(%endpoint, %reason, attempt, "client: endpoint failed");
                    failures.retain(|(e, _)| *e != endpoint);
                    failures.push((endpoint, reason));
                }
            }
        }
    }
    Err(ClientError::Unavailable {
        attempts,
        failures: failures
            .iter()
            .map(|(endpoint, reason)| format!("{endpoint}: {reason}"))
            .collect::<Vec<_>>()
            .join("; "),
    })
}

/// `endpoints` in order starting after `lost` (which comes last); unchanged if `lost` is not
/// one of them.
fn after_lost(endpoints: &[SocketAddr], lost: Option<SocketAddr>) -> Vec<SocketAddr> {
    let mut ordered = endpoints.to_vec();
    if let Some(index) = lost.and_then(|lost| endpoints.iter().position(|e| *e == lost)) {
        ordered.rotate_left(index + 1);
    }
    ordered
}

/// Why a connection's session ended.
enum End {
    /// The client is dropped.
    Stopped,
    /// The logout completed (the server closed after our Logout Request).
    LoggedOut,
    /// The connection was lost; reconnect.
    Lost(String),
    /// The server went silent and another endpoint accepted the session: carry on there.
    Moved(Box<Opened>, String),
}

/// The background thread: reads the current connection, queues events, heartbeats, and
/// reconnects and resumes when the connection is lost.
pub(crate) struct Worker {
    pub(crate) shared: Arc<Shared>,
    pub(crate) events: Sender<ClientEvent>,
    pub(crate) endpoints: Vec<SocketAddr>,
    pub(crate) credentials: Credentials,
    pub(crate) options: ClientOptions,
    /// Sequence number of the next Sequenced Data message.
    pub(crate) next_seq: u64,
    /// Messages numbered below this were already queued (a server resent them on resume).
    pub(crate) skip_below: u64,
}

impl Worker {
    /// Runs until the client is dropped, logs out, or gives up reconnecting.
    pub(crate) fn run(mut self, first: Opened) {
        let mut current = first;
        loop {
            let endpoint = current.endpoint;
            let end = self.session(current);
            let local = self.shared.take_local_close();
            self.shared.clear("connection ended");
            match end {
                End::Stopped => break,
                End::LoggedOut => {
                    self.emit(ClientEvent::LoggedOut);
                    break;
                }
                End::Moved(opened, reason) => {
                    tracing::info!(%endpoint, to = %opened.endpoint, %reason, "client: moving");
                    if !self.emit(ClientEvent::Disconnected { endpoint, reason }) {
                        break;
                    }
                    match self.adopt(*opened) {
                        Ok(opened) => current = opened,
                        Err(error) => {
                            // Only a failed socket clone gets here; reconnect as after a loss.
                            tracing::info!(%error, "client: cannot use the new connection");
                            match self.reconnect() {
                                Ok(opened) => current = opened,
                                Err(_) => break,
                            }
                        }
                    }
                }
                End::Lost(reason) => {
                    let reason = local.unwrap_or(reason);
                    tracing::info!(%endpoint, %reason, "client: connection lost");
                    if !self.emit(ClientEvent::Disconnected { endpoint, reason }) {
                        break;
                    }
                    if self.shared.logging_out.load(Ordering::Acquire) {
                        self.emit(ClientEvent::LoggedOut);
                        break;
                    }
                    if !self.options.reconnect {
                        self.emit(ClientEvent::GaveUp {
                            reason: "reconnecting is disabled".into(),
                        });
                        break;
                    }
                    match self.reconnect() {
                        Ok(opened) => current = opened,
                        Err(ClientError::Closed) => {
                            if self.shared.logging_out.load(Ordering::Acquire) {
                                self.emit(ClientEvent::LoggedOut);
                            }
                            break;
                        }
                        Err(error) => {
                            self.emit(ClientEvent::GaveUp {
                                reason: error.to_string(),
                            });
                            break;
                        }
                    }
                }
            }
        }
        self.shared.finished.store(true, Ordering::Release);
        self.shared.clear("client finished");
    }

    /// Queues an event, waiting while the queue is full (heartbeats continue; reading
    /// stops, so a consumer that never reads eventually gets cut off by the server as a
    /// slow reader, and the client resumes where it stopped). False if the client is gone.
    fn emit(&self, event: ClientEvent) -> bool {
        let mut event = event;
        loop {
            if self.shared.stop.load(Ordering::Acquire) {
                return false;
            }
            match self.events.send_timeout(event, TICK) {
                Ok(()) => return true,
                Err(SendTimeoutError::Timeout(back)) => {
                    event = back;
                    self.shared.heartbeat(self.options.heartbeat_interval);
                }
                Err(SendTimeoutError::Disconnected(_)) => return false,
            }
        }
    }

    /// Logs into this client's session at the first of `endpoints` that accepts, with
    /// `options` and `attempts` passes.
    fn open_session(
        &mut self,
        endpoints: &[SocketAddr],
        options: &ClientOptions,
        attempts: u32,
    ) -> Result<Opened, ClientError> {
        let session = self.shared.lock().session;
        let shared = self.shared.clone();
        let keep_going = move || {
            !shared.stop.load(Ordering::Acquire) && !shared.logging_out.load(Ordering::Acquire)
        };
        let opened = open_any(
            endpoints,
            &mut self.credentials,
            session,
            self.next_seq,
            options,
            attempts,
            &keep_going,
        );
        // A refused ticket was forgotten on the way.
        let expires = self.credentials.ticket.map_or(0, |t| t.expires_unix_s);
        self.shared
            .ticket_expires_unix_s
            .store(expires, Ordering::Release);
        opened
    }

    fn reconnect(&mut self) -> Result<Opened, ClientError> {
        // The endpoint just lost goes last: after a failover it is the dead (or dying)
        // leader, whose half-closed listener can hold a connection until the process is
        // gone.
        let lost = self.shared.lock().endpoint;
        let endpoints = after_lost(&self.endpoints, lost);
        let options = self.options.clone();
        let opened = self.open_session(&endpoints, &options, options.reconnect_attempts)?;
        self.adopt(opened)
    }

    /// Makes a freshly logged-in connection the current one: installs its writer, lines
    /// its numbering up with what was received, and reports the reconnect.
    fn adopt(&mut self, opened: Opened) -> Result<Opened, ClientError> {
        let next = opened.accepted.sequence_number;
        // Install the writer first: heartbeats must flow even if the event queue is full.
        let writer = opened.writer.try_clone()?;
        self.shared
            .install(writer, opened.endpoint, opened.accepted.session);
        if next > self.next_seq {
            self.emit(ClientEvent::SequenceGap {
                expected: self.next_seq,
                next,
            });
        } else if next < self.next_seq {
            self.skip_below = self.skip_below.max(self.next_seq);
        }
        self.next_seq = next;
        self.shared.next_seq.store(next, Ordering::Release);
        tracing::info!(endpoint = %opened.endpoint, next, "client: reconnected");
        self.emit(ClientEvent::Reconnected {
            endpoint: opened.endpoint,
            session: opened.accepted.session,
            next_sequence_number: next,
        });
        Ok(opened)
    }

    /// Serves one connection until it ends.
    fn session(&mut self, opened: Opened) -> End {
        let Opened {
            mut reader,
            leftover,
            ..
        } = opened;
        let decoder = FrameDecoder::new(SERVER_PACKET_BYTES_MAX_DEFAULT);
        let mut buf = leftover;
        let mut chunk = vec![0u8; READ_CHUNK_BYTES];
        let mut last_received = Instant::now();
        let mut logout_seen: Option<Instant> = None;
        let mut probe_due = Instant::now();
        loop {
            if self.shared.stop.load(Ordering::Acquire) {
                return End::Stopped;
            }
            if self.logout_done(&mut logout_seen) {
                return End::LoggedOut;
            }
            self.shared.heartbeat(self.options.heartbeat_interval);
            // Everything complete in the buffer first.
            if let Some(end) = self.handle_buffered(&decoder, &mut buf) {
                return end;
            }
            if let Some(end) = self.read_more(&mut reader, &mut chunk, &mut buf, &mut last_received)
            {
                return end;
            }
            if let Some(end) = self.probe_if_silent(&mut probe_due) {
                return end;
            }
        }
    }

    /// The silent-server rule (crate documentation, "Silent servers"): after
    /// `answer_timeout` of silence since an order-entry message, tries the other endpoints
    /// once; `End::Moved` when one of them accepts the session.
    fn probe_if_silent(&mut self, probe_due: &mut Instant) -> Option<End> {
        let answer_timeout = self.options.answer_timeout;
        if answer_timeout.is_zero() || self.endpoints.len() < 2 {
            return None;
        }
        let silent_for = self.shared.silent_for()?;
        let now = Instant::now();
        if silent_for < answer_timeout || now < *probe_due {
            return None;
        }
        let current = self.shared.lock().endpoint;
        let others: Vec<SocketAddr> = after_lost(&self.endpoints, current)
            .into_iter()
            .filter(|endpoint| Some(*endpoint) != current)
            .collect();
        // Short limits: a probe must not keep this thread from the current connection for
        // long, and a paused node accepts TCP connections but never answers a login.
        let limit = answer_timeout
            .checked_mul(PROBE_LIMIT_FACTOR)
            .unwrap_or(Duration::MAX)
            .max(PROBE_LIMIT_MIN);
        let options = ClientOptions {
            connect_timeout: self.options.connect_timeout.min(limit),
            login_timeout: self.options.login_timeout.min(limit),
            ..self.options.clone()
        };
        match self.open_session(&others, &options, 1) {
            Ok(opened) => {
                let reason = format!(
                    "no answer for {} ms and {} accepted the session",
                    silent_for.as_millis(),
                    opened.endpoint
                );
                Some(End::Moved(Box::new(opened), reason))
            }
            Err(error) => {
                tracing::debug!(%error, "client: probe found no other server for the session");
                *probe_due = Instant::now() + jittered(answer_timeout / 2);
                None
            }
        }
    }

    /// Whether a logout asked for has run its course (`logout_timeout` passed since this
    /// connection first saw it). Sends the Logout Request the first time it is seen here.
    fn logout_done(&self, logout_seen: &mut Option<Instant>) -> bool {
        if !self.shared.logging_out.load(Ordering::Acquire) {
            return false;
        }
        if logout_seen.is_none() {
            // Covers a logout asked for while this connection was being opened.
            let _ = self.shared.send_logout();
        }
        let since = *logout_seen.get_or_insert_with(Instant::now);
        since.elapsed() >= self.options.logout_timeout
    }

    /// Handles every complete packet in `buf` and drops their bytes; `Some` when the
    /// connection ends.
    fn handle_buffered(&mut self, decoder: &FrameDecoder, buf: &mut Vec<u8>) -> Option<End> {
        let mut offset = 0;
        loop {
            let step = match decoder.decode_server(&buf[offset..]) {
                Ok(Some((packet, used))) => {
                    offset += used;
                    Step::from(packet)
                }
                Ok(None) => break,
                Err(error) => {
                    return Some(End::Lost(format!("protocol error from server: {error}")))
                }
            };
            match step {
                Step::Nothing => {}
                Step::Ticket(notice) => self.keep_ticket(notice),
                Step::Data(payload) => {
                    if !self.sequenced_data(payload) {
                        return Some(End::Stopped);
                    }
                }
                Step::EndOfSession => {
                    if !self.emit(ClientEvent::EndOfSession) {
                        return Some(End::Stopped);
                    }
                    return Some(End::Lost("end of session".into()));
                }
                Step::Unexpected(what) => {
                    return Some(End::Lost(format!("protocol error from server: {what}")))
                }
            }
        }
        buf.drain(..offset);
        None
    }

    /// Keeps the latest resumption ticket for the next logins (reconnects).
    fn keep_ticket(&mut self, notice: TicketNotice) {
        tracing::debug!(
            expires_unix_s = notice.expires_unix_s,
            "client: resumption ticket received"
        );
        self.credentials.ticket = Some(notice);
        self.shared
            .ticket_expires_unix_s
            .store(notice.expires_unix_s, Ordering::Release);
    }

    /// Numbers one Sequenced Data message and queues it, unless it repeats one already
    /// received; false when the client stopped.
    fn sequenced_data(&mut self, payload: Vec<u8>) -> bool {
        let seq = self.next_seq;
        // Saturating: a hostile Login Accepted near u64::MAX must not panic.
        self.next_seq = self.next_seq.saturating_add(1);
        self.shared.next_seq.store(self.next_seq, Ordering::Release);
        if seq < self.skip_below {
            return true;
        }
        let event = match OutboundMessage::decode(&payload) {
            Ok(message) => ClientEvent::Message { seq, message },
            Err(error) => ClientEvent::Undecodable {
                seq,
                payload,
                error,
            },
        };
        self.emit(event)
    }

    /// Reads what the server sent next into `buf` (waiting at most the socket's read
    /// timeout); `Some` when the connection ends (closed, failed, or the server silent for
    /// `server_timeout`).
    fn read_more(
        &self,
        reader: &mut TcpStream,
        chunk: &mut [u8],
        buf: &mut Vec<u8>,
        last_received: &mut Instant,
    ) -> Option<End> {
        match reader.read(chunk) {
            Ok(0) => Some(if self.shared.logging_out.load(Ordering::Acquire) {
                End::LoggedOut
            } else {
                End::Lost("connection closed by the server".into())
            }),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                *last_received = Instant::now();
                self.shared.heard_from_server();
                None
            }
            Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {
                if last_received.elapsed() >= self.options.server_timeout {
                    return Some(End::Lost(format!(
                        "nothing from the server for {:?}",
                        self.options.server_timeout
                    )));
                }
                None
            }
            Err(e) => Some(if self.shared.logging_out.load(Ordering::Acquire) {
                End::LoggedOut
            } else {
                End::Lost(format!("read error: {e}"))
            }),
        }
    }
}

/// A decoded server packet, detached from the receive buffer.
enum Step {
    Nothing,
    Ticket(TicketNotice),
    Data(Vec<u8>),
    EndOfSession,
    Unexpected(&'static str),
}

impl From<ServerPacket<'_>> for Step {
    fn from(packet: ServerPacket<'_>) -> Step {
        match packet {
            ServerPacket::SequencedData(payload) => Step::Data(payload.to_vec()),
            ServerPacket::ServerHeartbeat => Step::Nothing,
            // Other Debug text is free-form and ignored.
            ServerPacket::Debug(text) => {
                TicketNotice::parse(text).map_or(Step::Nothing, Step::Ticket)
            }
            ServerPacket::EndOfSession => Step::EndOfSession,
            ServerPacket::LoginAccepted(_) => Step::Unexpected("Login Accepted while logged in"),
            ServerPacket::LoginRejected(_) => Step::Unexpected("Login Rejected while logged in"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_either_side_and_varies() {
        let base = Duration::from_millis(100);
        let drawn: Vec<Duration> = (0..200).map(|_| jittered(base)).collect();
        assert!(drawn.iter().all(|d| *d >= base / 2 && *d < base + base / 2));
        assert!(drawn.iter().any(|d| *d != drawn[0]), "no jitter: {drawn:?}");
        assert_eq!(jittered(Duration::MAX), Duration::MAX);
    }

    #[test]
    fn reconnects_try_the_lost_endpoint_last() {
        let e: Vec<SocketAddr> = (1..=3)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect();
        assert_eq!(after_lost(&e, Some(e[0])), vec![e[1], e[2], e[0]]);
        assert_eq!(after_lost(&e, Some(e[1])), vec![e[2], e[0], e[1]]);
        assert_eq!(after_lost(&e, Some(e[2])), e);
        assert_eq!(after_lost(&e, None), e);
        let elsewhere = SocketAddr::from(([127, 0, 0, 2], 9));
        assert_eq!(after_lost(&e, Some(elsewhere)), e);
    }
}
