//! A `keel serve` node managed by the benchmark: a configuration written into a temporary
//! directory (users with known passwords, one instrument, the durability asked for), the
//! `keel` binary spawned on it, and a clean SIGTERM shutdown at the end. Cluster members
//! ([`crate::cluster`]) use the same configuration plus a `[cluster]` section, and can also
//! be killed with SIGKILL and started again on the same data directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use keel_node::config::Config;
use keel_testkit::config::{user, NodeConfigBuilder};
use keel_testkit::ports::loopback;
use keel_testkit::process::{self, Launch};

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
    process: Option<process::Node>,
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

/// The name of generated user `index`: `perf0` … `perf99`, then `p100` … `p99999`
/// (SoupBinTCP user names are at most 6 characters).
pub fn username(index: usize) -> String {
    if index < 100 {
        format!("perf{index}")
    } else {
        format!("p{index}")
    }
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

/// The configuration of a node in `data_dir` listening on `listen` (port 0 for any free
/// port), as a typed builder: the generated users and instrument, the durability asked for,
/// the throttle lifted. Cluster members add their `[cluster]` ([`crate::cluster`]).
pub fn config_builder(
    options: &NodeOptions,
    data_dir: &Path,
    listen: SocketAddr,
) -> anyhow::Result<NodeConfigBuilder> {
    let hash = hash_once()?;
    let mut builder = NodeConfigBuilder::new(data_dir)
        .listen(listen)
        .durability_named(&options.durability)?
        .session("PERF")
        // The benchmarks measure the node, not the per-session throttle that protects it
        // from one flooding client: lift the throttle far above any rate they offer.
        .throttle(100_000_000, 1_000_000)
        .matching_core(options.matching_core)
        .instrument(1, SYMBOL, PRICE_SCALE);
    for index in 0..options.users {
        builder = builder.user(user(&username(index), &hash, index as u64 + 1));
    }
    Ok(builder)
}

/// Writes `config` to `path`, marked as keel-perf's.
pub fn write_config(config: &Config, path: &Path) -> anyhow::Result<()> {
    config
        .write(path, "# Written by keel-perf.\n")
        .map_err(|error| anyhow::anyhow!("{error}"))
}

impl Node {
    /// Writes the configuration, starts `keel serve`, and waits until it listens.
    pub fn start(options: &NodeOptions) -> anyhow::Result<Node> {
        if options.users > 99_999 {
            bail!("at most 99,999 generated users (user names are at most 6 characters)");
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
        let config = config_builder(options, &data_dir, loopback(0))?.build();
        write_config(&config, &config_path)?;
        let mut command = Command::new(&options.keel);
        command.arg("serve").arg("--config").arg(&config_path);
        let log = dir.path().join("keel.log");
        Node::spawn(command, Some(dir), log, options)
    }

    /// Starts `keel serve` on an existing configuration (a cluster member's; its directory
    /// belongs to the caller), appending the node's standard error to `log`. Used for the
    /// first start and for restarts on the same data directory; `env` is added to the
    /// process's environment.
    pub fn start_member(
        options: &NodeOptions,
        config: &Path,
        log: &Path,
        env: &[(String, String)],
    ) -> anyhow::Result<Node> {
        if !options.keel.exists() {
            bail!(
                "no keel binary at {} (build it with `cargo build --release -p keel`, or pass --keel)",
                options.keel.display()
            );
        }
        let mut command = Command::new(&options.keel);
        command.arg("serve").arg("--config").arg(config);
        command.envs(env.iter().map(|(k, v)| (k, v)));
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
        command: Command,
        dir: Option<tempfile::TempDir>,
        log: PathBuf,
        options: &NodeOptions,
    ) -> anyhow::Result<Node> {
        // The generator thread may be pinned; the node must not inherit that (its matching
        // loop picks "the last core" among the cores it is allowed on).
        let process = Launch::command(command)
            .log_file(&log)
            .start_timeout(Duration::from_secs(60))
            .start_with(|command| sys::with_all_cores(|| command.spawn()))?;
        let mut node = Node {
            addr: process.addr,
            banner: process.banner.clone(),
            process: Some(process),
            users: (0..options.users)
                .map(|u| (username(u), PASSWORD.to_string()))
                .collect(),
            dir,
            log,
        };
        if options.keep {
            if let Some(dir) = node.dir.take() {
                let kept = dir.keep();
                eprintln!("keel-perf: keeping {}", kept.display());
            }
        }
        Ok(node)
    }

    /// The node's process id.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(process::Node::pid)
    }

    /// The exit status if the process has ended on its own; it is then reaped and never
    /// signalled again.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.process.as_mut()?.try_status().ok().flatten()?;
        self.process = None;
        Some(status)
    }

    /// Stops the node with SIGTERM (SIGKILL after 20 s) and removes its directory.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown()
    }

    /// Sends SIGTERM without waiting (see [`Node::stop`]), so that several nodes can stop
    /// at once.
    pub fn signal_stop(&self) {
        if let Some(pid) = self.pid() {
            let _ = sys::terminate(pid);
        }
    }

    /// `kill -9`: SIGKILL, without waiting for the process to end (its exit, e.g. while
    /// an fsync is in flight, takes a while, and the caller's clock must keep running). The
    /// data directory stays. Returns the monotonic instant taken just before the signal and
    /// the process, which the caller must reap ([`Child::wait`]); this node never signals
    /// that pid again.
    pub fn kill9(&mut self) -> anyhow::Result<(Instant, Child)> {
        let Some(mut process) = self.process.take() else {
            bail!("the node is not running");
        };
        process.kill_nowait()
    }

    fn shutdown(&mut self) -> anyhow::Result<()> {
        let Some(mut process) = self.process.take() else {
            return Ok(());
        };
        let Some(pid) = process.pid() else {
            return Ok(());
        };
        let _ = sys::terminate(pid);
        let status = process.wait_exit(Duration::from_secs(20)).map_err(|_| {
            anyhow::anyhow!("keel serve did not stop within 20 s of SIGTERM; killed")
        })?;
        if !status.success() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            eprintln!(
                "keel-perf: keel serve exited with {status}; last log lines:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
