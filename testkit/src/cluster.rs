//! A Raft cluster of `keel serve` processes on loopback: one typed configuration per node
//! ([`ClusterSpec::node_config`]) in a directory,
//!
//! ```text
//!  DIR/node1.toml  DIR/node1/ (data)  DIR/node1.log (standard error of every start)
//!  DIR/node2.toml  ...
//! ```
//!
//! and each node started, stopped and restarted on its own.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::config::{write_config, ClusterSpec, NodeConfigBuilder};
use crate::process::{Launch, Node};

/// A cluster's files and its running nodes (index = node id − 1). Dropping it kills the
/// nodes still running.
pub struct Cluster {
    keel: OsString,
    /// The directory of configurations, data and logs.
    pub root: PathBuf,
    /// The cluster's shape.
    pub spec: ClusterSpec,
    /// Each node's configuration file.
    pub configs: Vec<PathBuf>,
    /// Each node's data directory.
    pub data_dirs: Vec<PathBuf>,
    /// Each node's log file.
    pub logs: Vec<PathBuf>,
    nodes: Vec<Option<Node>>,
    env: Vec<(String, String)>,
}

impl Cluster {
    /// Writes every node's configuration (`base` with the node's `[server]` address, data
    /// directory and `[cluster]`) into `root`; starts nothing.
    pub fn write(
        keel: impl Into<OsString>,
        root: &Path,
        spec: ClusterSpec,
        base: &NodeConfigBuilder,
    ) -> anyhow::Result<Cluster> {
        let mut cluster = Cluster {
            keel: keel.into(),
            root: root.to_path_buf(),
            configs: Vec::new(),
            data_dirs: Vec::new(),
            logs: Vec::new(),
            nodes: Vec::new(),
            env: Vec::new(),
            spec,
        };
        for index in 0..cluster.spec.len() {
            let id = index + 1;
            let data_dir = root.join(format!("node{id}"));
            let config = root.join(format!("node{id}.toml"));
            write_config(&cluster.spec.node_config(base, index, &data_dir), &config)?;
            cluster.configs.push(config);
            cluster.data_dirs.push(data_dir);
            cluster.logs.push(root.join(format!("node{id}.log")));
            cluster.nodes.push(None);
        }
        Ok(cluster)
    }

    /// Sets an environment variable of every node started from now on.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.configs.len()
    }

    /// Whether the cluster has no node.
    pub fn is_empty(&self) -> bool {
        self.configs.is_empty()
    }

    /// Every node's order-entry address.
    pub fn endpoints(&self) -> Vec<SocketAddr> {
        self.spec.endpoints()
    }

    /// How node `index` is started: `keel serve` on its configuration, logging to its log
    /// file. For callers that start it their own way ([`Cluster::insert`]).
    pub fn launch(&self, index: usize) -> anyhow::Result<Launch> {
        let config = self.configs.get(index).context("no such node")?;
        let mut launch = Launch::serve(&self.keel, config).log_file(&self.logs[index]);
        for (key, value) in &self.env {
            launch = launch.env(key, value);
        }
        Ok(launch)
    }

    /// Starts node `index` (it must not be running) and waits until it listens.
    pub fn start(&mut self, index: usize) -> anyhow::Result<&mut Node> {
        let node = self
            .launch(index)?
            .start()
            .with_context(|| format!("starting node {}", index + 1))?;
        self.insert(index, node)
    }

    /// Makes `node` (started from [`Cluster::launch`]) node `index`.
    pub fn insert(&mut self, index: usize, node: Node) -> anyhow::Result<&mut Node> {
        let slot = self.nodes.get_mut(index).context("no such node")?;
        if slot.as_ref().is_some_and(|node| node.pid().is_some()) {
            bail!("node {} is running", index + 1);
        }
        Ok(slot.insert(node))
    }

    /// Starts every node that is not running.
    pub fn start_all(&mut self) -> anyhow::Result<()> {
        for index in 0..self.len() {
            if self.node(index).is_none() {
                self.start(index)?;
            }
        }
        Ok(())
    }

    /// Node `index`, if started (and not taken).
    pub fn node(&self, index: usize) -> Option<&Node> {
        self.nodes.get(index)?.as_ref()
    }

    /// Node `index`, mutably.
    pub fn node_mut(&mut self, index: usize) -> Option<&mut Node> {
        self.nodes.get_mut(index)?.as_mut()
    }

    /// Takes node `index` out of the cluster (which then counts it as not running).
    pub fn take(&mut self, index: usize) -> Option<Node> {
        self.nodes.get_mut(index)?.take()
    }

    /// Process id of node `index`, if it runs.
    pub fn pid(&self, index: usize) -> Option<u32> {
        self.node(index)?.pid()
    }

    /// SIGKILL to node `index`, reaped; its data stays.
    pub fn kill(&mut self, index: usize) -> anyhow::Result<()> {
        let mut node = self.take(index).context("the node is not running")?;
        node.kill()?;
        Ok(())
    }

    /// SIGTERM to node `index`, and waits (up to `timeout`) for its exit.
    pub fn stop(&mut self, index: usize, timeout: Duration) -> anyhow::Result<()> {
        let mut node = self.take(index).context("the node is not running")?;
        let status = node.terminate(timeout)?;
        if !status.success() {
            bail!(
                "node {} exited with {status}:\n{}",
                index + 1,
                node.log_text()
            );
        }
        Ok(())
    }

    /// Stops node `index` (SIGTERM) if it runs, and starts it again on its data.
    pub fn restart(&mut self, index: usize, timeout: Duration) -> anyhow::Result<&mut Node> {
        if self.node(index).is_some() {
            self.stop(index, timeout)?;
        }
        self.start(index)
    }

    /// `keel journal roots DIR` of node `index`'s data directory: its output.
    pub fn journal_roots(&self, index: usize) -> anyhow::Result<String> {
        journal_roots(
            &self.keel,
            self.data_dirs.get(index).context("no such node")?,
        )
    }
}

/// `keel journal roots DIR`: what it prints (an error with its standard error if it fails).
pub fn journal_roots(keel: impl AsRef<std::ffi::OsStr>, data_dir: &Path) -> anyhow::Result<String> {
    let out = Command::new(keel)
        .args(["journal", "roots"])
        .arg(data_dir)
        .output()
        .context("cannot run keel journal roots")?;
    if !out.status.success() {
        bail!(
            "keel journal roots {} failed: {}",
            data_dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).context("keel journal roots printed non-UTF-8")
}
