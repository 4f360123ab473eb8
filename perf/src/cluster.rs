//! A Raft cluster of `keel serve` processes on loopback, managed by the benchmarks.
//!
//! Every node gets the configuration a single benchmark node gets ([`server::config_builder`]:
//! the same users, instrument and durability) plus a `[cluster]` section naming every
//! node's Raft address, as `keel cluster` writes it. Ports are fresh random loopback ports
//! (asked of the kernel, then released: a port taken by someone else in between makes the
//! start fail, it is not silently shared). The configurations, data directories and logs
//! live in one temporary directory:
//!
//! ```text
//!  DIR/node1.toml  DIR/node1/ (data)  DIR/node1.log (stderr of every start, appended)
//!  DIR/node2.toml  ...
//! ```
//!
//! Followers answer every Login Request with Login Rejected `S`; the leader is found by
//! logging in through the client library, which tries the endpoints in order.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use keel_client::{Client, ClientEvent, ClientOptions};
use keel_node::config::ServerConfig;
use keel_testkit::cluster::journal_roots;
use keel_testkit::config::ClusterSpec;
use keel_testkit::ports::loopback;

use crate::server::{self, Node, NodeOptions};

/// How to start a cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Every node's options (binary, durability, users, temporary directory, keep).
    pub node: NodeOptions,
    /// Number of nodes (odd, at least 3).
    pub nodes: usize,
    /// `cluster.election_timeout_ms`, if given (the node's default otherwise).
    pub election_timeout_ms: Option<u64>,
    /// `cluster.heartbeat_ms`, if given (the node's default otherwise).
    pub heartbeat_ms: Option<u64>,
}

/// A running cluster. Dropping it stops every node (SIGTERM) and removes the directory
/// unless `keep` was asked for.
pub struct Cluster {
    options: NodeOptions,
    dir: Option<tempfile::TempDir>,
    /// The directory holding configurations, data and logs.
    pub root: PathBuf,
    configs: Vec<PathBuf>,
    /// Each node's data directory (index = node id − 1).
    pub data_dirs: Vec<PathBuf>,
    /// Each node's log (standard error of every start).
    pub logs: Vec<PathBuf>,
    /// Each node's order-entry address (index = node id − 1).
    pub endpoints: Vec<SocketAddr>,
    nodes: Vec<Option<Node>>,
    /// Extra environment of each node's process.
    env: Vec<Vec<(String, String)>>,
    /// Killed nodes' processes, not yet reaped.
    corpses: Vec<std::process::Child>,
    /// `(username, password)` of every generated user.
    pub users: Vec<(String, String)>,
}

/// Where node `from` (index) dials node `to`, given `to`'s real Raft address: the real
/// address, or a fault-injecting proxy's (`keel-perf drill`).
pub type PeerRoute<'a> = dyn FnMut(usize, usize, SocketAddr) -> anyhow::Result<SocketAddr> + 'a;

/// Every node's configuration file (one shared secret, every node's peers, each other node
/// at the address `route` gives), written into `root`; returns the configuration files, data
/// folders and log files, by node.
fn write_configs(
    options: &ClusterOptions,
    root: &Path,
    spec: &ClusterSpec,
    route: &mut PeerRoute<'_>,
    change: &dyn Fn(&mut ServerConfig),
) -> anyhow::Result<(Vec<PathBuf>, Vec<PathBuf>, Vec<PathBuf>)> {
    let base = server::config_builder(&options.node, root, loopback(0))?.server(change);
    let mut configs = Vec::new();
    let mut data_dirs = Vec::new();
    let mut logs = Vec::new();
    for index in 0..spec.len() {
        let id = index + 1;
        let data_dir = root.join(format!("node{id}"));
        let config = root.join(format!("node{id}.toml"));
        let mut node_config = spec.node_config(&base, index, &data_dir);
        if let Some(cluster) = node_config.cluster.as_mut() {
            // A node binds its own entry, so only the other nodes' entries are routed.
            for (to, &port) in spec.raft_ports.iter().enumerate() {
                if to != index {
                    let addr = route(index, to, loopback(port))?;
                    cluster.peers.insert((to + 1).to_string(), addr);
                }
            }
        }
        server::write_config(&node_config, &config)
            .with_context(|| format!("cannot write {}", config.display()))?;
        configs.push(config);
        data_dirs.push(data_dir);
        logs.push(root.join(format!("node{id}.log")));
    }
    Ok((configs, data_dirs, logs))
}

impl Cluster {
    /// Writes every node's configuration, starts them all, and waits until each listens
    /// (not until a leader is elected: see [`Cluster::find_leader`]).
    pub fn start(options: &ClusterOptions) -> anyhow::Result<Cluster> {
        Cluster::start_routed(options, &mut |_, _, addr| Ok(addr), &|_| {})
    }

    /// [`Cluster::start`], with `change` applied to every node's `[server]` section (e.g.
    /// `resume_ticket_ttl_s`).
    pub fn start_with(
        options: &ClusterOptions,
        change: &dyn Fn(&mut ServerConfig),
    ) -> anyhow::Result<Cluster> {
        Cluster::start_routed(options, &mut |_, _, addr| Ok(addr), change)
    }

    /// As [`Cluster::start_with`], each node dialing each other node at the address `route`
    /// gives for it.
    pub fn start_routed(
        options: &ClusterOptions,
        route: &mut PeerRoute<'_>,
        change: &dyn Fn(&mut ServerConfig),
    ) -> anyhow::Result<Cluster> {
        let mut cluster = Cluster::create_routed(options, route, change)?;
        cluster.start_all()?;
        Ok(cluster)
    }

    /// As [`Cluster::start_routed`], but nothing is started yet: the configurations are
    /// written and the data directories named (not created), so that the caller can put them
    /// somewhere first (`keel-perf drill` mounts a small disk on each) and then call
    /// [`Cluster::start_all`].
    pub fn create_routed(
        options: &ClusterOptions,
        route: &mut PeerRoute<'_>,
        change: &dyn Fn(&mut ServerConfig),
    ) -> anyhow::Result<Cluster> {
        if options.nodes < 3 || options.nodes % 2 == 0 {
            bail!("a cluster needs an odd number of nodes, at least 3");
        }
        if options.node.users > 99_999 {
            bail!("at most 99,999 generated users (user names are at most 6 characters)");
        }
        let mut builder = tempfile::Builder::new();
        builder.prefix("keel-perf-cluster-");
        let dir = match &options.node.temp_parent {
            Some(parent) => builder.tempdir_in(parent),
            None => builder.tempdir(),
        }
        .context("cannot create a temporary directory")?;
        let root = dir.path().to_path_buf();
        let mut spec = ClusterSpec::new(options.nodes)?;
        spec.election_timeout_ms = options.election_timeout_ms;
        spec.heartbeat_ms = options.heartbeat_ms;
        let (configs, data_dirs, logs) = write_configs(options, &root, &spec, route, change)?;
        let mut cluster = Cluster {
            options: options.node.clone(),
            dir: Some(dir),
            root,
            configs,
            data_dirs,
            logs,
            endpoints: spec.endpoints(),
            nodes: (0..options.nodes).map(|_| None).collect(),
            env: vec![Vec::new(); options.nodes],
            corpses: Vec::new(),
            users: (0..options.node.users)
                .map(|u| (server::username(u), server::PASSWORD.to_string()))
                .collect(),
        };
        if options.node.keep {
            if let Some(dir) = cluster.dir.take() {
                let kept = dir.keep();
                eprintln!("keel-perf: keeping {}", kept.display());
            }
        }
        Ok(cluster)
    }

    /// Starts every node that is not running, and waits until each listens.
    pub fn start_all(&mut self) -> anyhow::Result<()> {
        for index in 0..self.len() {
            if self.nodes[index].is_none() {
                self.restart(index)
                    .with_context(|| format!("starting node {}", index + 1))?;
            }
        }
        Ok(())
    }

    /// Sets an environment variable for every later start of node `index` (e.g.
    /// `KEEL_FAULT` for a fault-injection build).
    pub fn set_env(&mut self, index: usize, key: &str, value: &str) {
        if let Some(env) = self.env.get_mut(index) {
            env.push((key.to_string(), value.to_string()));
        }
    }

    /// The `keel` binary the nodes run.
    pub fn keel(&self) -> &Path {
        &self.options.keel
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// The node (index = id − 1) whose order-entry address is `addr`.
    pub fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        self.endpoints.iter().position(|e| *e == addr)
    }

    /// Process id of node `index`, if it runs.
    pub fn pid(&self, index: usize) -> Option<u32> {
        self.nodes.get(index)?.as_ref()?.pid()
    }

    /// Process ids of every running node but `index`.
    pub fn other_pids(&self, index: usize) -> Vec<u32> {
        (0..self.len())
            .filter(|&i| i != index)
            .filter_map(|i| self.pid(i))
            .collect()
    }

    /// Start lines of every node, for the report.
    pub fn banner(&self) -> String {
        let lines: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| match node {
                Some(node) => format!("node{}: {}", i + 1, node.banner),
                None => format!("node{}: down", i + 1),
            })
            .collect();
        lines.join("; ")
    }

    /// Finds the leader: logs in as `user` through the client library (endpoints in
    /// order; followers answer Login Rejected `S`), notes which endpoint accepted, and logs
    /// out, waiting until the leader closed the session (so the same user can log in
    /// again at once). Retries until `timeout` (an election takes a few election timeouts).
    pub fn find_leader(&self, user: &(String, String), timeout: Duration) -> anyhow::Result<usize> {
        let options = ClientOptions {
            connect_attempts: u32::try_from(timeout.as_millis() / 50).unwrap_or(u32::MAX),
            backoff_initial: Duration::from_millis(20),
            backoff_max: Duration::from_millis(50),
            reconnect: false,
            ..ClientOptions::default()
        };
        let client = Client::connect(&self.endpoints, &user.0, &user.1, options)
            .with_context(|| format!("no leader accepted a login within {timeout:?}"))?;
        let endpoint = client
            .endpoint()
            .context("the client has no endpoint after connecting")?;
        let index = self
            .index_of(endpoint)
            .with_context(|| format!("logged in at {endpoint}, which is not a node"))?;
        client.logout()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match client.next_event(Duration::from_millis(100)) {
                Some(ClientEvent::LoggedOut | ClientEvent::GaveUp { .. }) => break,
                Some(_) => {}
                None if client.is_finished() => break,
                None => {}
            }
        }
        Ok(index)
    }

    /// `kill -9` node `index`; returns the instant taken just before the signal (the
    /// process is reaped later, by [`Cluster::restart`] or the shutdown).
    pub fn kill9(&mut self, index: usize) -> anyhow::Result<Instant> {
        let node = self
            .nodes
            .get_mut(index)
            .and_then(Option::as_mut)
            .with_context(|| format!("node {} is not running", index + 1))?;
        let (killed, corpse) = node.kill9()?;
        self.corpses.push(corpse);
        self.nodes[index] = None;
        Ok(killed)
    }

    /// Nodes that have ended on their own since the last look: index, exit status and the
    /// last line of its log. Each then counts as down ([`Cluster::restart`] brings it back).
    pub fn exited(&mut self) -> Vec<(usize, String)> {
        let mut ended = Vec::new();
        for (index, slot) in self.nodes.iter_mut().enumerate() {
            let Some(status) = slot.as_mut().and_then(Node::exited) else {
                continue;
            };
            *slot = None;
            let log = std::fs::read_to_string(&self.logs[index]).unwrap_or_default();
            let last = log.lines().last().unwrap_or("").to_string();
            ended.push((index, format!("{status}; last log line: {last}")));
        }
        ended
    }

    /// Waits up to `timeout` for node `index` to end on its own; its exit status and the
    /// last line of its log. The node then counts as down ([`Cluster::restart`] brings it
    /// back). `None`: still running (or not running at all).
    pub fn wait_exit(
        &mut self,
        index: usize,
        timeout: Duration,
    ) -> Option<(std::process::ExitStatus, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            let slot = self.nodes.get_mut(index)?;
            if let Some(status) = slot.as_mut()?.exited() {
                *slot = None;
                let log = std::fs::read_to_string(&self.logs[index]).unwrap_or_default();
                // The fatal line if this exit printed one (later lines are the stop's).
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                let line = tail
                    .iter()
                    .find(|l| l.starts_with("keel serve: fatal:"))
                    .or(tail.first())
                    .map_or(String::new(), ToString::to_string);
                return Some((status, line));
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits for every killed process to end.
    fn reap(&mut self) {
        for mut corpse in self.corpses.drain(..) {
            let _ = corpse.wait();
        }
    }

    /// Starts node `index` again on its configuration and data directory (once the killed
    /// process has ended); waits until it listens.
    pub fn restart(&mut self, index: usize) -> anyhow::Result<()> {
        if self.nodes.get(index).is_some_and(Option::is_some) {
            bail!("node {} is still running", index + 1);
        }
        self.reap();
        let node = Node::start_member(
            &self.options,
            &self.configs[index],
            &self.logs[index],
            &self.env[index],
        )
        .with_context(|| format!("restarting node {}", index + 1))?;
        self.nodes[index] = Some(node);
        Ok(())
    }

    /// `keel journal roots` of every node's data directory: sequence number, journal root
    /// and state root, one line each.
    pub fn roots(&self) -> anyhow::Result<Vec<String>> {
        self.data_dirs
            .iter()
            .map(|dir| journal_roots(&self.options.keel, dir))
            .collect()
    }

    /// Waits until every node's journal holds the same records (equal `keel journal roots`
    /// lines); returns the common line. Only meaningful while no orders are being sent.
    pub fn wait_converged(&self, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.roots()?;
            if lines.iter().all(|l| *l == lines[0]) {
                return Ok(lines[0].trim().to_string());
            }
            if Instant::now() >= deadline {
                bail!("the replicas did not converge within {timeout:?}: {lines:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops every node: SIGTERM to all at once, then waits for each.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown()
    }

    /// Stops every node as [`Cluster::stop`] does, keeping the directory (configurations,
    /// data, logs) until the cluster is dropped, for offline checks of the journals.
    pub fn stop_nodes(&mut self) -> anyhow::Result<()> {
        self.shutdown()
    }

    /// Node `index`'s configuration file.
    pub fn config_path(&self, index: usize) -> Option<&Path> {
        self.configs.get(index).map(PathBuf::as_path)
    }

    fn shutdown(&mut self) -> anyhow::Result<()> {
        self.reap();
        for node in self.nodes.iter().flatten() {
            node.signal_stop();
        }
        let mut first_error = None;
        for node in self.nodes.iter_mut() {
            if let Some(node) = node.take() {
                if let Err(error) = node.stop() {
                    first_error.get_or_insert(error);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
