//! Node and cluster configurations built from the node's typed configuration
//! ([`keel_node::config::Config`]) and written by its own serialisation
//! ([`Config::to_toml`]), so that a test's configuration is always one the node accepts and
//! never a hand-formatted copy of its keys.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use keel_node::config::{
    ClusterConfig, Config, DurabilityConfig, InstrumentConfig, ServerConfig, StpConfig, UserConfig,
};

use crate::ports::{free_ports, loopback};

/// A node configuration under construction: by default it listens on `127.0.0.1:0` (the
/// node prints the port it got), acknowledges after `fsync`, keeps the node's other
/// defaults, and has no instrument and no user.
#[derive(Clone, Debug)]
pub struct NodeConfigBuilder {
    config: Config,
}

/// A user with the node's defaults (no self-trade prevention, no cancel on disconnect,
/// the server's throttle).
pub fn user(username: &str, password_hash: &str, account: u64) -> UserConfig {
    UserConfig {
        username: username.to_string(),
        password_hash: password_hash.to_string(),
        account,
        stp: StpConfig::None,
        cancel_on_disconnect: false,
        messages_per_second_max: None,
    }
}

impl NodeConfigBuilder {
    /// A configuration keeping its journal and snapshots in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> NodeConfigBuilder {
        // The node's defaults are those of an empty `[server]` table.
        let mut config = Config {
            server: ServerConfig {
                listen: loopback(0),
                data_dir: data_dir.into(),
                ..Config::embedded_default().server
            },
            instruments: Vec::new(),
            users: Vec::new(),
            cluster: None,
        };
        config.server.durability = DurabilityConfig::Fsync;
        config.server.matching_core = None;
        config.server.session = None;
        NodeConfigBuilder { config }
    }

    /// `server.listen`.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.config.server.listen = addr;
        self
    }

    /// `server.data_dir`.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.server.data_dir = dir.into();
        self
    }

    /// `server.durability`.
    pub fn durability(mut self, durability: DurabilityConfig) -> Self {
        self.config.server.durability = durability;
        self
    }

    /// `server.durability` by its configuration name, `fsync` or `async`.
    pub fn durability_named(self, name: &str) -> anyhow::Result<Self> {
        Ok(self.durability(durability(name)?))
    }

    /// `server.segment_size_bytes`.
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.config.server.segment_size_bytes = bytes;
        self
    }

    /// `server.session`.
    pub fn session(mut self, name: &str) -> Self {
        self.config.server.session = Some(name.to_string());
        self
    }

    /// `server.matching_core`.
    pub fn matching_core(mut self, core: Option<usize>) -> Self {
        self.config.server.matching_core = core;
        self
    }

    /// `server.outbound_buffer_bytes`.
    pub fn outbound_buffer_bytes(mut self, bytes: usize) -> Self {
        self.config.server.outbound_buffer_bytes = bytes;
        self
    }

    /// `server.messages_per_second_max` and `server.message_burst_max`.
    pub fn throttle(mut self, per_second: u64, burst: u64) -> Self {
        self.config.server.messages_per_second_max = per_second;
        self.config.server.message_burst_max = burst;
        self
    }

    /// Any other change to `[server]`.
    pub fn server(mut self, change: impl FnOnce(&mut ServerConfig)) -> Self {
        change(&mut self.config.server);
        self
    }

    /// An `[[instrument]]`.
    pub fn instrument(mut self, id: u32, symbol: &str, price_scale: u32) -> Self {
        self.config.instruments.push(InstrumentConfig {
            id,
            symbol: symbol.to_string(),
            price_scale,
        });
        self
    }

    /// A `[[user]]` (see [`user`] for one with the defaults).
    pub fn user(mut self, user: UserConfig) -> Self {
        self.config.users.push(user);
        self
    }

    /// `[cluster]`.
    pub fn cluster(mut self, cluster: ClusterConfig) -> Self {
        self.config.cluster = Some(cluster);
        self
    }

    /// The configuration so far.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The configuration.
    pub fn build(self) -> Config {
        self.config
    }

    /// Writes the configuration to `path` (checked, as the node will read it); returns it.
    pub fn write(self, path: &Path) -> anyhow::Result<Config> {
        write_config(&self.config, path)?;
        Ok(self.config)
    }
}

/// Writes `config` to `path` through the node's own serialisation ([`Config::write`]).
pub fn write_config(config: &Config, path: &Path) -> anyhow::Result<()> {
    config
        .write(path, "")
        .map_err(|error| anyhow::anyhow!("{error}"))
        .with_context(|| format!("cannot write the configuration {}", path.display()))
}

/// The durability policy of this configuration name.
pub fn durability(name: &str) -> anyhow::Result<DurabilityConfig> {
    match name {
        "fsync" => Ok(DurabilityConfig::Fsync),
        "async" => Ok(DurabilityConfig::Async),
        other => anyhow::bail!("durability must be fsync or async, not `{other}`"),
    }
}

/// A Raft cluster's shape on loopback: node `i` (id `i + 1`) takes order entry on
/// `client_ports[i]` and Raft traffic on `raft_ports[i]`.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// Order-entry ports, by node.
    pub client_ports: Vec<u16>,
    /// Raft ports, by node.
    pub raft_ports: Vec<u16>,
    /// `cluster.secret` (at least 16 characters).
    pub secret: String,
    /// `cluster.election_timeout_ms` (the node's default when `None`).
    pub election_timeout_ms: Option<u64>,
    /// `cluster.heartbeat_ms` (the node's default when `None`).
    pub heartbeat_ms: Option<u64>,
}

impl ClusterSpec {
    /// `nodes` nodes on fresh free ports, a random secret, the node's default timings.
    pub fn new(nodes: usize) -> anyhow::Result<ClusterSpec> {
        if nodes < 3 || nodes % 2 == 0 {
            anyhow::bail!("a cluster needs an odd number of nodes, at least 3");
        }
        let ports = free_ports(2 * nodes).context("cannot find free ports")?;
        Ok(ClusterSpec {
            client_ports: ports[..nodes].to_vec(),
            raft_ports: ports[nodes..].to_vec(),
            secret: random_secret()?,
            election_timeout_ms: None,
            heartbeat_ms: None,
        })
    }

    /// With this shared secret.
    pub fn secret(mut self, secret: &str) -> Self {
        self.secret = secret.to_string();
        self
    }

    /// With these timings.
    pub fn timing(mut self, election_timeout_ms: u64, heartbeat_ms: u64) -> Self {
        self.election_timeout_ms = Some(election_timeout_ms);
        self.heartbeat_ms = Some(heartbeat_ms);
        self
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.client_ports.len()
    }

    /// Whether the cluster has no node.
    pub fn is_empty(&self) -> bool {
        self.client_ports.is_empty()
    }

    /// Every node's order-entry address, by node.
    pub fn endpoints(&self) -> Vec<SocketAddr> {
        self.client_ports
            .iter()
            .map(|&port| loopback(port))
            .collect()
    }

    /// `[cluster]` of node `index` (id `index + 1`).
    pub fn cluster_config(&self, index: usize) -> ClusterConfig {
        let peers: BTreeMap<String, SocketAddr> = self
            .raft_ports
            .iter()
            .enumerate()
            .map(|(i, &port)| ((i + 1).to_string(), loopback(port)))
            .collect();
        ClusterConfig {
            node_id: index as u64 + 1,
            peers,
            secret: self.secret.clone(),
            election_timeout_ms: self
                .election_timeout_ms
                .unwrap_or(ClusterConfig::DEFAULT_ELECTION_TIMEOUT_MS),
            heartbeat_ms: self
                .heartbeat_ms
                .unwrap_or(ClusterConfig::DEFAULT_HEARTBEAT_MS),
        }
    }

    /// Node `index`'s configuration: `base` with this node's listen address, data
    /// directory and `[cluster]`.
    pub fn node_config(&self, base: &NodeConfigBuilder, index: usize, data_dir: &Path) -> Config {
        base.clone()
            .listen(loopback(self.client_ports[index]))
            .data_dir(data_dir)
            .cluster(self.cluster_config(index))
            .build()
    }
}

/// 32 random hexadecimal characters from `/dev/urandom`: a cluster's shared secret.
pub fn random_secret() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_members_configuration_reads_back_the_same() -> anyhow::Result<()> {
        let hash = keel_node::config::Config::embedded_default().users[0]
            .password_hash
            .clone();
        let base = NodeConfigBuilder::new("/tmp/data")
            .durability_named("async")?
            .segment_size(1 << 20)
            .throttle(20, 5)
            .instrument(1, "BTC-PERP", 100)
            .user(user("alice", &hash, 1));
        let spec = ClusterSpec::new(3)?.timing(200, 40);
        let config = spec.node_config(&base, 1, Path::new("/tmp/node2"));
        let text = config.to_toml().map_err(|e| anyhow::anyhow!("{e}"))?;
        let parsed = Config::parse(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
        assert_eq!(parsed, config);
        let cluster = parsed.cluster.context("no [cluster]")?;
        assert_eq!(cluster.node_id, 2);
        assert_eq!(cluster.peers.len(), 3);
        assert_eq!(cluster.heartbeat_ms, 40);
        Ok(())
    }
}
