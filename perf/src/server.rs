//! A `keel serve` node managed by the benchmark: a configuration written into a temporary
//! directory (users with known passwords, one instrument, the durability asked for), the
//! `keel` binary spawned on it, and a clean SIGTERM shutdown at the end. Cluster members
//! ([`crate::cluster`]) use the same configuration plus a `[cluster]` section, and can also
//! be killed with SIGKILL and started again on the same data directory.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::sys;

/// The generated users' password (at most 10 characters, as SoupBinTCP allows).
pub const PASSWORD: &str = "perfpass";
/// The generated instrument's OUCH symbol.
pub const SYMBOL: &str = "PERF";
/// Its price scale (OUCH units per tick: ticks of $0.01).
pub const PRICE_SCALE: u32 = 100;

/// How to start the node.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// The `keel` binary.
    pub keel: PathBuf,
    /// `async` or `fsync`.
    pub durability: String,
    /// Users to create.
    pub users: usize,
    /// `server.matching_core`, if given.
    pub matching_core: Option<usize>,
    /// Parent directory for the temporary data directory (system default when absent).
    pub temp_parent: Option<PathBuf>,
    /// Keep the data directory and log after the run.
    pub keep: bool,
}

/// A running node.
pub struct Node {
    child: Option<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// `(username, password)` of every generated user.
    pub users: Vec<(String, String)>,
    dir: Option<tempfile::TempDir>,
    /// The node's standard error, copied to a file.
    pub log: PathBuf,
    /// What the node printed when it started (its "listening on" line).
    pub banner: String,
}

/// Password hashes are slow on purpose (argon2); hash once per process and reuse.
pub fn hash_once() -> anyhow::Result<String> {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(hash) = HASH.get() {
        return Ok(hash.clone());
    }
    let hash =
        keel_node::config::hash_password(PASSWORD).map_err(|error| anyhow::anyhow!("{error}"))?;
    Ok(HASH.get_or_init(|| hash).clone())
}

/// The configuration text for a node in `data_dir` listening on `listen` (e.g.
/// `127.0.0.1:0` for any free port); `cluster` is a `[cluster]` section (with its
/// `[cluster.peers]` table) for a cluster member, appended after `[server]`.
pub fn config_text(
    options: &NodeOptions,
    data_dir: &Path,
    listen: &str,
    cluster: Option<&str>,
) -> anyhow::Result<String> {
    let hash = hash_once()?;
    let mut text = String::new();
    writeln!(text, "# Written by keel-perf.")?;
    writeln!(text, "[server]")?;
    writeln!(text, "listen = {listen:?}")?;
    writeln!(text, "data_dir = {:?}", data_dir.display().to_string())?;
    writeln!(text, "durability = {:?}", options.durability)?;
    writeln!(text, "session = \"PERF\"")?;
    // The benchmarks measure the node, not the per-session throttle that protects it from
    // one flooding client: lift the throttle far above any rate they offer.
    writeln!(text, "messages_per_second_max = 100000000")?;
    writeln!(text, "message_burst_max = 1000000")?;
    if let Some(core) = options.matching_core {
        writeln!(text, "matching_core = {core}")?;
    }
    if let Some(cluster) = cluster {
        writeln!(text, "\n{}", cluster.trim_end())?;
    }
    writeln!(
        text,
        "\n[[instrument]]\nid = 1\nsymbol = \"{SYMBOL}\"\nprice_scale = {PRICE_SCALE}"
    )?;
    for user in 0..options.users {
        writeln!(
            text,
            "\n[[user]]\nusername = \"perf{user}\"\npassword_hash = \"{hash}\"\naccount = {}\nstp = \"none\"",
            user + 1
        )?;
    }
    Ok(text)
}

impl Node {
    /// Writes the configuration, starts `keel serve`, and waits until it listens.
    pub fn start(options: &NodeOptions) -> anyhow::Result<Node> {
        if options.users > 999 {
            bail!("at most 999 generated users (user names are at most 6 characters)");
        }
        if !options.keel.exists() {
            bail!(
                "no keel binary at {} (build it with `cargo build --release -p keel`, or pass --keel)",
                options.keel.display()
            );
        }
        let mut builder = tempfile::Builder::new();
        builder.prefix("keel-perf-");
        let dir = match &options.temp_parent {
            Some(parent) => builder.tempdir_in(parent),
            None => builder.tempdir(),
        }
        .context("cannot create a temporary directory")?;
        let config_path = dir.path().join("keel.toml");
        let data_dir = dir.path().join("data");
        std::fs::write(
            &config_path,
            config_text(options, &data_dir, "127.0.0.1:0", None)?,
        )?;
        let mut command = Command::new(&options.keel);
        command.arg("serve").arg("--config").arg(&config_path);
        let log = dir.path().join("keel.log");
        Node::spawn(command, Some(dir), log, options)
    }

    /// Starts `keel serve` on an existing configuration (a cluster member's; its directory
    /// belongs to the caller), appending the node's standard error to `log`. Used for the
    /// first start and for restarts on the same data directory.
    pub fn start_member(options: &NodeOptions, config: &Path, log: &Path) -> anyhow::Result<Node> {
        if !options.keel.exists() {
            bail!(
                "no keel binary at {} (build it with `cargo build --release -p keel`, or pass --keel)",
                options.keel.display()
            );
        }
        let mut command = Command::new(&options.keel);
        command.arg("serve").arg("--config").arg(config);
        Node::spawn(command, None, log.to_path_buf(), options)
    }

    /// Starts `keel-perf echo-server` (this executable) instead of a node: the floor under
    /// the end-to-end figures (see [`crate::echo`]).
    pub fn start_echo(options: &NodeOptions) -> anyhow::Result<Node> {
        let dir = tempfile::Builder::new()
            .prefix("keel-perf-echo-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        let exe = std::env::current_exe().context("cannot locate this executable")?;
        let mut command = Command::new(exe);
        command.arg("echo-server");
        let log = dir.path().join("keel.log");
        Node::spawn(command, Some(dir), log, options)
    }

    fn spawn(
        mut command: Command,
        dir: Option<tempfile::TempDir>,
        log: PathBuf,
        options: &NodeOptions,
    ) -> anyhow::Result<Node> {
        // The generator thread may be pinned; the node must not inherit that (its matching
        // loop picks "the last core" among the cores it is allowed on).
        let mut child = sys::with_all_cores(|| {
            command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
        })
        .with_context(|| format!("cannot start {:?}", command.get_program()))?;
        let rx = copy_log(&mut child, &log)?;
        let mut node = Node {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            users: (0..options.users)
                .map(|u| (format!("perf{u}"), PASSWORD.to_string()))
                .collect(),
            dir,
            log: log.clone(),
            banner: String::new(),
        };
        let line = node.await_listening(&rx)?;
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .context("cannot read the listen address")?;
        node.addr = addr
            .parse()
            .with_context(|| format!("bad listen address {addr:?}"))?;
        node.banner = line
            .split("keel serve: ")
            .nth(1)
            .unwrap_or(&line)
            .to_string();
        if options.keep {
            if let Some(dir) = node.dir.take() {
                let kept = dir.keep();
                eprintln!("keel-perf: keeping {}", kept.display());
            }
        }
        Ok(node)
    }

    /// Waits (60 s at most) for the node's "listening on" line; an error with its log if it
    /// exits or stays silent.
    fn await_listening(&mut self, rx: &mpsc::Receiver<String>) -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => return Ok(line),
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Some(child) = self.child.as_mut() {
                        if let Some(status) = child.try_wait()? {
                            // Reaped: never signal this pid again.
                            self.child = None;
                            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
                            bail!("keel serve exited ({status}) before listening:\n{text}");
                        }
                    }
                }
                Err(_) => {
                    let text = std::fs::read_to_string(&self.log).unwrap_or_default();
                    bail!("keel serve did not start listening within 60 s:\n{text}");
                }
            }
        }
    }

    /// The node's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the node with SIGTERM (SIGKILL after 20 s) and removes its directory.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown()
    }

    /// Sends SIGTERM without waiting (see [`Node::stop`]), so that several nodes can stop
    /// at once.
    pub fn signal_stop(&self) {
        if let Some(child) = &self.child {
            let _ = sys::terminate(child.id());
        }
    }

    /// `kill -9`: SIGKILL, without waiting for the process to end (its exit, e.g. while
    /// an fsync is in flight, takes a while, and the caller's clock must keep running). The
    /// data directory stays. Returns the monotonic instant taken just before the signal and
    /// the process, which the caller must reap ([`Child::wait`]); this node never signals
    /// that pid again.
    pub fn kill9(&mut self) -> anyhow::Result<(Instant, Child)> {
        let Some(mut child) = self.child.take() else {
            bail!("the node is not running");
        };
        let before = Instant::now();
        child.kill().context("SIGKILL")?;
        Ok((before, child))
    }

    fn shutdown(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let _ = sys::terminate(child.id());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    let text = std::fs::read_to_string(&self.log).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(20).collect();
                    eprintln!(
                        "keel-perf: keel serve exited with {status}; last log lines:\n{}",
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    );
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("keel serve did not stop within 20 s of SIGTERM; killed");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Copies the child's standard error into `log` on a thread of its own; the receiver gets
/// the first "listening on" line.
fn copy_log(child: &mut Child, log: &Path) -> anyhow::Result<mpsc::Receiver<String>> {
    let stderr = child.stderr.take().context("no stderr pipe")?;
    let (tx, rx) = mpsc::channel();
    let mut log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    std::thread::Builder::new()
        .name("keel-log".into())
        .spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log_file, "{line}");
                if !sent && line.contains("keel serve: listening on ") {
                    sent = true;
                    let _ = tx.send(line);
                }
            }
        })?;
    Ok(rx)
}
