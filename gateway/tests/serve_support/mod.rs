//! Shared helpers for the `serve_*` tests: start the real `keel serve` binary on a config in a
//! temporary directory, watch its log, and talk SoupBinTCP/OUCH to it over raw sockets.
//!
//! Deliberately independent of the gateway's client library: packets are built with the
//! public codecs only, and every read is bounded by a timeout so that a misbehaving server
//! fails a test instead of hanging it.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use keel_testkit::config::{user, NodeConfigBuilder};

use keel_protocol::ouch::{
    BuySellIndicator, Capacity, CrossType, CustomerType, DisplayType, EnterOrder, InboundMessage,
    IntermarketSweepEligibility, OutboundMessage, Price, TimeInForce,
};
use keel_protocol::soupbin::{
    ClientPacket, FrameDecoder, LoginRequest, Password, ServerPacket, SessionId,
};
use keel_protocol::{Firm, OrderToken, Stock, Username};

/// The password every test user has.
pub const PASSWORD: &str = "pw1234";

/// An argon2id hash of [`PASSWORD`] with deliberately cheap parameters, shared by every
/// user but `erin`. The server verifies with whatever parameters the PHC string carries;
/// at the default parameters one verification takes 0.5-1 s in a debug build, which would
/// dominate every test that logs in.
pub fn password_hash() -> &'static str {
    use argon2::password_hash::{PasswordHasher, SaltString};
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let params = argon2::Params::new(64, 1, 1, None).unwrap();
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        argon
            .hash_password(PASSWORD.as_bytes(), &salt)
            .unwrap()
            .to_string()
    })
}

/// A hash of [`PASSWORD`] exactly as `keel passwd` makes it
/// (`keel_node::config::hash_password`, default parameters): `erin`'s.
pub fn default_password_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| keel_node::config::hash_password(PASSWORD).unwrap())
}

/// The users of [`config_builder`]: name, account, cancel_on_disconnect. All have [`PASSWORD`];
/// `erin`'s hash has `keel passwd`'s default (slow) parameters, the others' are cheap.
pub const USERS: &[(&str, u64, bool)] = &[
    ("alice", 1, false),
    ("bob", 2, false),
    ("carol", 3, true),
    ("dave", 4, false),
    ("erin", 5, false),
];

/// A node's directory: the config file and the data directory inside a temporary directory.
pub struct Setup {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
    /// The configuration file.
    pub config: PathBuf,
    /// `server.data_dir`.
    pub data_dir: PathBuf,
}

/// The test configuration in `data_dir`, as a typed builder: listen on 127.0.0.1 port 0
/// (the node prints the port it got), 1 MiB journal segments (a scan of a mostly empty
/// 64 MiB segment is slow in a debug build), instruments 1 = `BTC-PERP` and 2 = `ETH-PERP`
/// (price scale 1), and the [`USERS`].
pub fn config_builder(durability: &str, data_dir: &Path) -> NodeConfigBuilder {
    let mut builder = NodeConfigBuilder::new(data_dir)
        .durability_named(durability)
        .unwrap()
        .segment_size(1 << 20)
        .instrument(1, "BTC-PERP", 1)
        .instrument(2, "ETH-PERP", 1);
    for (name, account, cancel) in USERS {
        let hash = if *name == "erin" {
            default_password_hash()
        } else {
            password_hash()
        };
        let mut user = user(name, hash, *account);
        user.cancel_on_disconnect = *cancel;
        builder = builder.user(user);
    }
    builder
}

/// Writes the test configuration ([`config_builder`]).
pub fn write_config(durability: &str) -> Setup {
    write_config_with(durability, |builder| builder)
}

/// Writes the test configuration ([`config_builder`]) after `change` (e.g. a throttle).
pub fn write_config_with(
    durability: &str,
    change: impl FnOnce(NodeConfigBuilder) -> NodeConfigBuilder,
) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let config = dir.path().join("keel.toml");
    change(config_builder(durability, &data_dir))
        .write(&config)
        .unwrap();
    Setup {
        dir,
        config,
        data_dir,
    }
}

/// Path of the binary under test.
pub fn keel() -> &'static str {
    env!("CARGO_BIN_EXE_keel")
}

/// A running `keel serve` (the test kit's, with the tests' panicking shorthands).
pub struct Node(pub keel_testkit::process::Node);

impl std::ops::Deref for Node {
    type Target = keel_testkit::process::Node;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Node {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Node {
    /// Starts `keel serve --config CONFIG` and waits until it listens.
    pub fn start(config: &Path) -> Node {
        Node(keel_testkit::process::Node::start(keel(), config).unwrap())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.0.pid().unwrap()
    }

    /// Waits for the log line saying the connection from `peer` was closed; returns it.
    pub fn wait_disconnect_logged(&self, peer: SocketAddr, timeout: Duration) -> Option<String> {
        let peer = format!("peer={peer}");
        self.wait_log_all(&["disconnected", &peer], timeout)
    }

    /// Sends SIGTERM and waits (bounded) for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.0.terminate(Duration::from_secs(20)).unwrap()
    }

    /// `kill -9`, and reap.
    pub fn kill9(&mut self) {
        self.0.kill().unwrap();
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.0.wait_exit(timeout).unwrap()
    }
}

/// A packet from the server, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// Login Accepted: session and next sequence number.
    Accepted {
        /// Session name.
        session: String,
        /// Sequence number of the next Sequenced Data packet.
        next: u64,
    },
    /// Login Rejected with its reason code.
    Rejected(u8),
    /// Sequenced Data payload (one OUCH message).
    Data(Vec<u8>),
    /// Server Heartbeat.
    Heartbeat,
    /// End of Session.
    End,
    /// Debug.
    Debug(Vec<u8>),
}

/// Why a read ended without a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Nothing arrived in time.
    Timeout,
    /// The server closed (or reset) the connection.
    Closed,
}

/// A raw SoupBinTCP client on a blocking socket.
pub struct Client {
    /// The socket.
    pub stream: TcpStream,
    buf: Vec<u8>,
    decoder: FrameDecoder,
    /// Debug packets received, in order ([`Client::recv`] sets them aside: standard clients
    /// ignore them, and Keel sends its resumption ticket in one after Login Accepted).
    pub debug: Vec<Vec<u8>>,
}

impl Client {
    /// Connects.
    pub fn connect(addr: SocketAddr) -> Client {
        Client::with_stream(TcpStream::connect(addr).unwrap())
    }

    fn with_stream(stream: TcpStream) -> Client {
        stream.set_nodelay(true).unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Client {
            stream,
            buf: Vec::new(),
            decoder: FrameDecoder::new(1024),
            debug: Vec::new(),
        }
    }

    /// Connects from source address `from` (e.g. 127.0.0.2, acting as another host).
    pub fn connect_from(from: std::net::Ipv4Addr, addr: SocketAddr) -> Client {
        let to = keel_testkit::source::v4(addr).unwrap();
        let stream = keel_testkit::source::connect_from(from, to).unwrap();
        Client::with_stream(stream)
    }

    /// This side's address (the server logs it as `peer=`).
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().unwrap()
    }

    /// Writes raw bytes; false if the server has closed the connection.
    pub fn send_raw(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// Sends a Login Request.
    pub fn send_login(&mut self, user: &str, password: &str, session: &str, seq: u64) {
        let mut out = Vec::new();
        ClientPacket::LoginRequest(LoginRequest {
            username: Username::new(user).unwrap(),
            password: Password::new(password).unwrap(),
            requested_session: SessionId::new(session).unwrap(),
            requested_sequence_number: seq,
        })
        .encode(&mut out)
        .unwrap();
        self.send_raw(&out);
    }

    /// Logs in and returns the first answer.
    pub fn login(&mut self, user: &str, password: &str, session: &str, seq: u64) -> Packet {
        self.send_login(user, password, session, seq);
        self.recv(Duration::from_secs(20))
            .unwrap_or_else(|end| panic!("no answer to the login of {user}: {end:?}"))
    }

    /// Connects and logs in with [`PASSWORD`], requesting `seq`; returns the client and the
    /// next sequence number from Login Accepted.
    pub fn logged_in(addr: SocketAddr, user: &str, seq: u64) -> (Client, u64) {
        let mut client = Client::connect(addr);
        match client.login(user, PASSWORD, "", seq) {
            Packet::Accepted { next, .. } => (client, next),
            other => panic!("login of {user} not accepted: {other:?}"),
        }
    }

    /// Sends a Client Heartbeat.
    pub fn heartbeat(&mut self) -> bool {
        let mut out = Vec::new();
        ClientPacket::ClientHeartbeat.encode(&mut out).unwrap();
        self.send_raw(&out)
    }

    /// Sends a Logout Request.
    pub fn logout(&mut self) -> bool {
        let mut out = Vec::new();
        ClientPacket::LogoutRequest.encode(&mut out).unwrap();
        self.send_raw(&out)
    }

    /// Sends one inbound OUCH message as Unsequenced Data.
    pub fn send(&mut self, message: &InboundMessage) -> bool {
        let mut out = Vec::new();
        message.encode_unsequenced(&mut out);
        self.send_raw(&out)
    }

    /// The next packet but Debug packets (kept in [`Client::debug`]).
    pub fn recv(&mut self, timeout: Duration) -> Result<Packet, End> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_any(left)? {
                Packet::Debug(text) => self.debug.push(text),
                other => return Ok(other),
            }
        }
    }

    /// The next packet, whatever it is.
    pub fn recv_any(&mut self, timeout: Duration) -> Result<Packet, End> {
        let deadline = Instant::now() + timeout;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match self.decoder.decode_server(&self.buf) {
                Ok(Some((packet, used))) => {
                    let owned = match packet {
                        ServerPacket::LoginAccepted(accepted) => Packet::Accepted {
                            session: accepted.session.as_str().to_string(),
                            next: accepted.sequence_number,
                        },
                        ServerPacket::LoginRejected(reason) => Packet::Rejected(reason.code()),
                        ServerPacket::SequencedData(data) => Packet::Data(data.to_vec()),
                        ServerPacket::ServerHeartbeat => Packet::Heartbeat,
                        ServerPacket::EndOfSession => Packet::End,
                        ServerPacket::Debug(data) => Packet::Debug(data.to_vec()),
                    };
                    self.buf.drain(..used);
                    return Ok(owned);
                }
                Ok(None) => {}
                Err(error) => panic!("the server sent a malformed packet: {error}"),
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(End::Timeout);
            }
            self.stream
                .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))
                .unwrap();
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(End::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(error)
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(End::Closed),
            }
        }
    }

    /// The next Sequenced Data message, skipping heartbeats (and Debug packets, see
    /// [`Client::recv`]). Panics on anything else.
    pub fn message(&mut self, timeout: Duration) -> Result<Vec<u8>, End> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left)? {
                Packet::Data(data) => return Ok(data),
                Packet::Heartbeat => {}
                other => panic!("expected Sequenced Data, got {other:?}"),
            }
        }
    }

    /// The next Sequenced Data message decoded; panics if none arrives within 10 s.
    pub fn expect_message(&mut self) -> OutboundMessage {
        let bytes = self
            .message(Duration::from_secs(10))
            .unwrap_or_else(|end| panic!("no message: {end:?}"));
        OutboundMessage::decode(&bytes).unwrap()
    }

    /// Messages until `timeout` passes without one (heartbeats skipped).
    pub fn drain_messages(&mut self, quiet: Duration) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Ok(message) = self.message(quiet) {
            out.push(message);
        }
        out
    }

    /// Reads (discarding data) until the server closes the connection; true if it did
    /// within `timeout`. Returns the packets seen on the way in `seen`.
    pub fn wait_closed(&mut self, timeout: Duration, seen: &mut Vec<Packet>) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.recv(left) {
                Ok(packet) => seen.push(packet),
                Err(End::Closed) => return true,
                Err(End::Timeout) => return false,
            }
        }
    }
}

/// An Enter Order: limit `price` (OUCH units), `tif` 0 (IOC) or 99999 (rest).
pub fn enter(
    token: &str,
    side: BuySellIndicator,
    shares: u32,
    stock: &str,
    price: u32,
    tif: u32,
) -> InboundMessage {
    InboundMessage::EnterOrder(EnterOrder {
        order_token: OrderToken::new(token).unwrap(),
        side,
        shares,
        stock: Stock::new(stock).unwrap(),
        price: Price(price),
        time_in_force: TimeInForce(tif),
        firm: Firm::BLANK,
        display: DisplayType::Attributable,
        capacity: Capacity::Agency,
        intermarket_sweep: IntermarketSweepEligibility::NotEligible,
        minimum_quantity: 0,
        cross_type: CrossType::NoCross,
        customer_type: CustomerType::PortDefault,
    })
}

/// Time in force that rests on the book.
pub const GTC: u32 = 99_999;
/// Immediate or cancel.
pub const IOC: u32 = 0;

/// The order token of an outbound message, as text.
pub fn token_of(message: &OutboundMessage) -> String {
    message
        .order_token()
        .map(|token| token.as_str().to_string())
        .unwrap_or_default()
}

/// Sends `message` and waits for the first answer naming `token`; panics after 10 s.
pub fn order_round_trip(client: &mut Client, message: &InboundMessage, token: &str) -> Duration {
    let start = Instant::now();
    assert!(client.send(message), "send failed");
    loop {
        let answer = client.expect_message();
        if token_of(&answer) == token {
            return start.elapsed();
        }
    }
}
