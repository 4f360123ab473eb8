//! Shared harness for the `client_*` tests: a real `keel serve` process on a free loopback
//! port with a configuration in a temporary directory, and helpers to read a client's
//! events.
//!
//! The users' password hashes use tiny argon2 parameters so that logins are quick in debug
//! builds (the server verifies with the parameters stored in the hash).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use keel_client::{Client, ClientEvent, ClientOptions};
use keel_protocol::ouch::OutboundMessage;
use keel_testkit::config::{user, NodeConfigBuilder};
use keel_testkit::ports::free_port;
use keel_testkit::process::{Launch, Node};

/// Users and passwords of the test configuration (accounts 1, 2, 3).
pub const USERS: &[(&str, &str)] = &[
    ("alice", "alicepass"),
    ("bob", "bobpass"),
    ("carol", "carolpass"),
];

fn cheap_hash(password: &str) -> String {
    let params = Params::new(8, 1, 1, None).expect("argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
        .expect("hash")
        .to_string()
}

fn hashes() -> &'static Vec<String> {
    static HASHES: OnceLock<Vec<String>> = OnceLock::new();
    HASHES.get_or_init(|| USERS.iter().map(|(_, p)| cheap_hash(p)).collect())
}

/// A loopback address where nothing listens.
pub fn dead_endpoint() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port().expect("free port")))
}

/// A running `keel serve`.
pub struct Server {
    node: Option<Node>,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    durability: String,
    /// The log of earlier runs (stopped, killed or failed to start).
    earlier_log: String,
    _temp: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts a server with a fresh data directory.
    pub fn start(durability: &str) -> Server {
        let temp = tempfile::tempdir().expect("tempdir");
        let dir = temp.path().to_path_buf();
        let mut server = Server {
            node: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
            durability: durability.to_string(),
            earlier_log: String::new(),
            _temp: Some(temp),
        };
        server.launch();
        server
    }

    fn write_config(&self, port: u16) -> PathBuf {
        let mut builder = NodeConfigBuilder::new(self.dir.join("data"))
            .listen(SocketAddr::from(([127, 0, 0, 1], port)))
            .durability_named(&self.durability)
            .expect("durability")
            .segment_size(1 << 20);
        for (id, symbol) in [(1, "BTC-PERP"), (2, "ETH-PERP")] {
            builder = builder.instrument(id, symbol, 100);
        }
        for (index, (name, _)) in USERS.iter().enumerate() {
            builder = builder.user(user(name, &hashes()[index], index as u64 + 1));
        }
        let path = self.dir.join("keel.toml");
        builder.write(&path).expect("write config");
        path
    }

    fn keep_log(&mut self, node: &Node) {
        if !self.earlier_log.is_empty() {
            self.earlier_log.push('\n');
        }
        self.earlier_log.push_str(&node.log_text());
    }

    /// Starts the process (on the previous port when restarting) and waits until it listens.
    fn launch(&mut self) {
        let reuse = self.addr.port() != 0;
        for attempt in 0..20 {
            let port = if reuse {
                self.addr.port()
            } else {
                free_port().expect("free port")
            };
            let config = self.write_config(port);
            let started = Launch::serve(env!("CARGO_BIN_EXE_keel"), &config)
                .current_dir(&self.dir)
                .env("RUST_LOG", "info")
                .start();
            match started {
                Ok(node) => {
                    self.addr = SocketAddr::from(([127, 0, 0, 1], port));
                    self.node = Some(node);
                    return;
                }
                Err(error) => {
                    eprintln!("keel serve did not start (attempt {attempt}): {error:#}");
                    self.earlier_log.push_str(&format!("{error:#}\n"));
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        panic!("keel serve did not start:\n{}", self.log_text());
    }

    /// What the server logged so far.
    pub fn log_text(&self) -> String {
        match &self.node {
            Some(node) if self.earlier_log.is_empty() => node.log_text(),
            Some(node) => format!("{}\n{}", self.earlier_log, node.log_text()),
            None => self.earlier_log.clone(),
        }
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(&mut self) {
        let Some(mut node) = self.node.take() else {
            return;
        };
        let status = node.terminate(Duration::from_secs(20));
        self.keep_log(&node);
        let status = status.unwrap_or_else(|error| {
            panic!(
                "keel serve did not stop on SIGTERM: {error:#}\n{}",
                self.log_text()
            )
        });
        assert!(
            status.success(),
            "keel serve exited with {status}:\n{}",
            self.log_text()
        );
    }

    /// Starts the server again on the same port and data directory.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// SIGKILL: no shutdown at all.
    pub fn kill(&mut self) {
        if let Some(mut node) = self.node.take() {
            node.kill().expect("kill -9");
            self.keep_log(&node);
        }
    }

    /// Starts the (stopped or killed) server again on the same port and data directory.
    pub fn relaunch(&mut self) {
        assert!(self.node.is_none(), "the server is running");
        self.launch();
    }

    /// Path of the data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The config path (as last written).
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("keel.toml")
    }
}

/// Options for tests: the whole stream from 1 and patient reconnects.
pub fn options() -> ClientOptions {
    ClientOptions {
        requested_sequence_number: 1,
        connect_attempts: 100,
        reconnect_attempts: 60,
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        ..ClientOptions::default()
    }
}

/// Logs `user` in on `endpoints` with `options`.
pub fn connect_with(endpoints: &[SocketAddr], user: &str, options: ClientOptions) -> Client {
    let password = USERS
        .iter()
        .find(|(name, _)| *name == user)
        .map(|(_, password)| *password)
        .expect("known user");
    Client::connect(endpoints, user, password, options).expect("connect")
}

/// Logs `user` in on `server`, asking for the whole stream.
pub fn connect(server: &Server, user: &str) -> Client {
    connect_with(&[server.addr], user, options())
}

/// Every event that arrives until `done` says so (given all messages so far) or the
/// timeout passes (a test failure, reported with what arrived).
pub fn events_until(
    client: &Client,
    timeout: Duration,
    mut done: impl FnMut(&[(u64, OutboundMessage)]) -> bool,
) -> (Vec<(u64, OutboundMessage)>, Vec<ClientEvent>) {
    let deadline = Instant::now() + timeout;
    let mut messages = Vec::new();
    let mut events = Vec::new();
    while !done(&messages) {
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_else(|| {
                panic!("timed out; messages so far: {messages:#?}\nevents: {events:#?}")
            });
        if let Some(event) = client.next_event(left) {
            if let ClientEvent::Message { seq, message } = &event {
                messages.push((*seq, *message));
            }
            events.push(event);
        }
    }
    (messages, events)
}

/// The next `n` sequenced messages.
pub fn messages(client: &Client, n: usize) -> Vec<(u64, OutboundMessage)> {
    events_until(client, Duration::from_secs(15), |m| m.len() >= n).0
}

/// Messages until one satisfies `last` (included).
pub fn messages_through(
    client: &Client,
    mut last: impl FnMut(&OutboundMessage) -> bool,
) -> Vec<(u64, OutboundMessage)> {
    events_until(client, Duration::from_secs(15), |m| {
        m.last().is_some_and(|(_, message)| last(message))
    })
    .0
}

/// Asserts that nothing more arrives for `quiet`.
pub fn assert_quiet(client: &Client, quiet: Duration) {
    let deadline = Instant::now() + quiet;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if let Some(ClientEvent::Message { seq, message }) = client.next_event(left) {
            panic!("unexpected message #{seq}: {message:?}");
        }
    }
}

/// Asserts sequence numbers run `first, first + 1, …` with no gap or repeat.
pub fn assert_contiguous(messages: &[(u64, OutboundMessage)], first: u64) {
    for (index, (seq, message)) in messages.iter().enumerate() {
        assert_eq!(
            *seq,
            first + index as u64,
            "message {index} ({message:?}) out of sequence in {messages:#?}"
        );
    }
}
