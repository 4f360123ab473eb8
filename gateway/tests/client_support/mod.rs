//! Shared harness for the `client_*` tests: a real `keel serve` process on a free loopback
//! port with a configuration in a temporary directory, and helpers to read a client's
//! events.
//!
//! The users' password hashes use tiny argon2 parameters so that logins are quick in debug
//! builds (the server verifies with the parameters stored in the hash).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use keel_client::{Client, ClientEvent, ClientOptions};
use keel_protocol::ouch::OutboundMessage;

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

/// A free loopback port (bound once, then released for the server to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A loopback address where nothing listens.
pub fn dead_endpoint() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A running `keel serve`.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    durability: String,
    log: Arc<Mutex<Vec<String>>>,
    _temp: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts a server with a fresh data directory.
    pub fn start(durability: &str) -> Server {
        let temp = tempfile::tempdir().expect("tempdir");
        let dir = temp.path().to_path_buf();
        let mut server = Server {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
            durability: durability.to_string(),
            log: Arc::new(Mutex::new(Vec::new())),
            _temp: Some(temp),
        };
        server.launch();
        server
    }

    fn write_config(&self, port: u16) -> PathBuf {
        let mut text = format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\ndurability = \"{}\"\n\
             segment_size_bytes = 1048576\n\n",
            self.dir.join("data").display(),
            self.durability
        );
        for (id, symbol) in [(1, "BTC-PERP"), (2, "ETH-PERP")] {
            text.push_str(&format!(
                "[[instrument]]\nid = {id}\nsymbol = \"{symbol}\"\nprice_scale = 100\n\n"
            ));
        }
        for (index, (name, _)) in USERS.iter().enumerate() {
            text.push_str(&format!(
                "[[user]]\nusername = \"{name}\"\npassword_hash = \"{}\"\naccount = {}\n\n",
                hashes()[index],
                index + 1
            ));
        }
        let path = self.dir.join("keel.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// Starts the process (on the previous port when restarting) and waits until it listens.
    fn launch(&mut self) {
        let reuse = self.addr.port() != 0;
        for attempt in 0..20 {
            let port = if reuse { self.addr.port() } else { free_port() };
            let config = self.write_config(port);
            let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
                .args(["serve", "--config"])
                .arg(&config)
                .current_dir(&self.dir)
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn keel serve");
            let stderr = child.stderr.take().expect("stderr");
            let (ready_tx, ready_rx) = mpsc::channel();
            let log = self.log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains("listening on") {
                        let _ = ready_tx.send(true);
                    }
                    log.lock().expect("log").push(line);
                }
                let _ = ready_tx.send(false);
            });
            match ready_rx.recv_timeout(Duration::from_secs(20)) {
                Ok(true) => {
                    self.addr = SocketAddr::from(([127, 0, 0, 1], port));
                    self.child = Some(child);
                    return;
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    eprintln!(
                        "keel serve did not start (attempt {attempt}):\n{}",
                        self.log_text()
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        panic!("keel serve did not start:\n{}", self.log_text());
    }

    /// What the server logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                assert!(
                    status.success(),
                    "keel serve exited with {status}:\n{}",
                    self.log_text()
                );
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("keel serve did not stop on SIGTERM:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same port and data directory.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// SIGKILL: no shutdown at all.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9");
            child.wait().expect("wait");
        }
    }

    /// Starts the (stopped or killed) server again on the same port and data directory.
    pub fn relaunch(&mut self) {
        assert!(self.child.is_none(), "the server is running");
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

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Options for tests: the whole stream from 1 and patient reconnects.
pub fn options() -> ClientOptions {
    ClientOptions {
        requested_sequence_number: 1,
        connect_attempts: 20,
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
