//! The node's configuration: TOML, strictly parsed (unknown keys and bad values fail at
//! start with a message naming the key), with an embedded default for `keel serve` without
//! `--config`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use keel_engine::SelfTradePrevention;
use serde::{Deserialize, Serialize};

use crate::Error;

/// The configuration `keel serve` uses without `--config`: loopback only, data in
/// `./keel-data`, two demo instruments and two demo users (their passwords are
/// `keel_client::DEMO_USERS`).
pub const DEFAULT_CONFIG: &str = include_str!("default_config.toml");

/// The whole node configuration.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[[instrument]]` tables.
    #[serde(rename = "instrument", default)]
    pub instruments: Vec<InstrumentConfig>,
    /// `[[user]]` tables.
    #[serde(rename = "user", default)]
    pub users: Vec<UserConfig>,
    /// `[cluster]`: present when the node is one of a Raft cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterConfig>,
}

/// `[cluster]`: this node's place in a Raft cluster. Every node lists every node (itself
/// included) under `peers`, with the address other nodes reach its Raft port on.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's id (a key of `peers`).
    pub node_id: u64,
    /// Node id (as a string key) → Raft address.
    pub peers: std::collections::BTreeMap<String, SocketAddr>,
    /// Shared secret (at least 16 characters) that authenticates every peer frame.
    pub secret: String,
    /// Leader silence after which followers elect a new one (randomised up to twice this).
    #[serde(default = "default_election_timeout_ms")]
    pub election_timeout_ms: u64,
    /// Leader heartbeat interval.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
}

impl ClusterConfig {
    /// `election_timeout_ms` when the configuration leaves it out.
    pub const DEFAULT_ELECTION_TIMEOUT_MS: u64 = 150;
    /// `heartbeat_ms` when the configuration leaves it out.
    pub const DEFAULT_HEARTBEAT_MS: u64 = 30;

    /// Peers as (id, address), this node included.
    pub fn peer_ids(&self) -> Vec<(u64, SocketAddr)> {
        self.peers
            .iter()
            .filter_map(|(id, addr)| id.parse().ok().map(|id| (id, *addr)))
            .collect()
    }
}

fn default_election_timeout_ms() -> u64 {
    ClusterConfig::DEFAULT_ELECTION_TIMEOUT_MS
}
fn default_heartbeat_ms() -> u64 {
    ClusterConfig::DEFAULT_HEARTBEAT_MS
}

/// `[server]`: where to listen, where to keep data, how to acknowledge.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Order-entry listen address.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Journal and snapshots live here.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// `fsync` (acknowledge once durable) or `async` (once journaled).
    #[serde(default)]
    pub durability: DurabilityConfig,
    /// CPU core to pin the matching loop to; by default the last core.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matching_core: Option<usize>,
    /// SoupBinTCP session name (up to 10 characters); by default `KEEL` and the date the
    /// data directory was first started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Bytes a client may leave unread before it is disconnected as a slow reader.
    #[serde(default = "default_outbound_limit")]
    pub outbound_buffer_bytes: usize,
    /// Journal segment size in bytes.
    #[serde(default = "default_segment_size")]
    pub segment_size_bytes: u64,
    /// Warn (log, and the journal's health state) when the data directory's file system has
    /// less free space than this, or than two segments if that is more.
    #[serde(default = "default_free_space_warn")]
    pub free_space_warn_bytes: u64,
    /// Client packets a session may send per second, sustained; beyond it the gateway stops
    /// reading that session's socket until it is back under the rate (nothing is dropped).
    /// A user's own `messages_per_second_max` overrides it.
    #[serde(default = "default_messages_per_second_max")]
    pub messages_per_second_max: u64,
    /// Packets a session may send at once above the sustained rate (the bucket's size).
    #[serde(default = "default_message_burst_max")]
    pub message_burst_max: u64,
    /// Threads verifying passwords (argon2); by default one per core the matching loop does
    /// not use, at most 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_threads: Option<usize>,
    /// Life of the resumption tickets issued at password logins, in seconds; 0 issues and
    /// accepts none.
    #[serde(default = "default_resume_ticket_ttl_s")]
    pub resume_ticket_ttl_s: u64,
    /// Connections not yet logged in that one source address may hold at once; more from
    /// it are closed at once. Logged-in sessions do not count (one per user at most).
    #[serde(default = "default_connections_per_source_max")]
    pub connections_per_source_max: usize,
    /// How long a new connection has to send its Login Request, in milliseconds.
    #[serde(default = "default_login_deadline_ms")]
    pub login_deadline_ms: u64,
}

impl ServerConfig {
    /// `resume_ticket_ttl_s` when the configuration leaves it out: 8 hours, a trading day.
    pub const DEFAULT_RESUME_TICKET_TTL_S: u64 = 8 * 3_600;
    /// The largest `resume_ticket_ttl_s` accepted: one week.
    pub const RESUME_TICKET_TTL_S_MAX: u64 = 7 * 24 * 3_600;
    /// The largest `login_threads` accepted.
    pub const LOGIN_THREADS_MAX: usize = 64;
    /// `connections_per_source_max` when the configuration leaves it out: enough for a
    /// client host logging many sessions in at once (they log in within milliseconds), a
    /// small share of the 1,024 slots for an attacker.
    pub const DEFAULT_CONNECTIONS_PER_SOURCE_MAX: usize = 32;
    /// The accepted range of `login_deadline_ms`.
    pub const LOGIN_DEADLINE_MS_RANGE: std::ops::RangeInclusive<u64> = 100..=60_000;
}

/// Durability policy names in the configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DurabilityConfig {
    /// Acknowledge once on stable storage.
    #[default]
    Fsync,
    /// Acknowledge once journaled (in memory).
    Async,
}

impl DurabilityConfig {
    /// The journal's policy of this name.
    pub fn journal(self) -> keel_journal::Durability {
        match self {
            DurabilityConfig::Fsync => keel_journal::Durability::Fsync,
            DurabilityConfig::Async => keel_journal::Durability::Async,
        }
    }
}

/// `[[instrument]]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InstrumentConfig {
    /// Engine instrument id.
    pub id: u32,
    /// OUCH Stock: 1 to 8 characters, upper-case letters, digits, `-` or `.`.
    pub symbol: String,
    /// OUCH price units (1/10000) per engine tick. 100 means ticks of 0.01.
    #[serde(default = "default_price_scale")]
    pub price_scale: u32,
}

/// `[[user]]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// SoupBinTCP user name: 1 to 6 letters or digits.
    pub username: String,
    /// Salted slow hash of the password (a PHC string from `keel passwd`).
    pub password_hash: String,
    /// Engine account the user's orders belong to.
    pub account: u64,
    /// Self-trade prevention applied to the user's orders.
    #[serde(default)]
    pub stp: StpConfig,
    /// Cancel the account's resting orders when the user's connection ends.
    #[serde(default)]
    pub cancel_on_disconnect: bool,
    /// This user's session throttle, instead of `server.messages_per_second_max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_per_second_max: Option<u64>,
}

/// Self-trade prevention names in the configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StpConfig {
    /// Trades with itself.
    #[default]
    None,
    /// Cancel the incoming order.
    CancelNewest,
    /// Cancel the resting order.
    CancelOldest,
    /// Cancel both.
    CancelBoth,
}

impl From<StpConfig> for SelfTradePrevention {
    fn from(stp: StpConfig) -> Self {
        match stp {
            StpConfig::None => SelfTradePrevention::None,
            StpConfig::CancelNewest => SelfTradePrevention::CancelNewest,
            StpConfig::CancelOldest => SelfTradePrevention::CancelOldest,
            StpConfig::CancelBoth => SelfTradePrevention::CancelBoth,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9000))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./keel-data")
}
fn default_outbound_limit() -> usize {
    4 << 20
}
fn default_segment_size() -> u64 {
    64 << 20
}
fn default_free_space_warn() -> u64 {
    keel_journal::JournalConfig::default().free_space_warn_bytes
}
fn default_messages_per_second_max() -> u64 {
    20_000
}
fn default_message_burst_max() -> u64 {
    2_000
}
fn default_resume_ticket_ttl_s() -> u64 {
    ServerConfig::DEFAULT_RESUME_TICKET_TTL_S
}
fn default_connections_per_source_max() -> usize {
    ServerConfig::DEFAULT_CONNECTIONS_PER_SOURCE_MAX
}
fn default_login_deadline_ms() -> u64 {
    u64::try_from(crate::rules::LOGIN_DEADLINE_DEFAULT.as_millis()).unwrap_or(u64::MAX)
}
fn default_price_scale() -> u32 {
    1
}

/// A configuration error naming the key.
fn config_error(key: String, problem: &str) -> Result<(), Error> {
    Err(Error::Config(format!("{key}: {problem}")))
}

fn check_server(server: &ServerConfig) -> Result<(), Error> {
    if let Some(session) = &server.session {
        if session.is_empty()
            || session.len() > 10
            || !session.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return config_error("server.session".into(), "must be 1 to 10 letters or digits");
        }
    }
    if server.outbound_buffer_bytes < 64 * 1024 {
        return config_error(
            "server.outbound_buffer_bytes".into(),
            "must be at least 65536",
        );
    }
    if server.segment_size_bytes < 1 << 20 || server.segment_size_bytes % 4096 != 0 {
        return config_error(
            "server.segment_size_bytes".into(),
            "must be a multiple of 4096 and at least 1 MiB",
        );
    }
    if server.messages_per_second_max == 0 {
        return config_error(
            "server.messages_per_second_max".into(),
            "must be at least 1",
        );
    }
    if server.message_burst_max == 0 {
        return config_error("server.message_burst_max".into(), "must be at least 1");
    }
    if server
        .login_threads
        .is_some_and(|n| n == 0 || n > ServerConfig::LOGIN_THREADS_MAX)
    {
        return config_error("server.login_threads".into(), "must be 1 to 64");
    }
    if server.resume_ticket_ttl_s > ServerConfig::RESUME_TICKET_TTL_S_MAX {
        return config_error(
            "server.resume_ticket_ttl_s".into(),
            "must be at most 604800 (a week); 0 disables tickets",
        );
    }
    if server.connections_per_source_max == 0
        || server.connections_per_source_max > crate::server::CONNECTIONS_MAX
    {
        return config_error(
            "server.connections_per_source_max".into(),
            "must be 1 to 1024 (the connection slots)",
        );
    }
    if !ServerConfig::LOGIN_DEADLINE_MS_RANGE.contains(&server.login_deadline_ms) {
        return config_error("server.login_deadline_ms".into(), "must be 100 to 60000");
    }
    Ok(())
}

fn check_instruments(instruments: &[InstrumentConfig]) -> Result<(), Error> {
    if instruments.is_empty() {
        return config_error(
            "instrument".into(),
            "at least one [[instrument]] is required",
        );
    }
    let (mut ids, mut symbols) = (BTreeSet::new(), BTreeSet::new());
    for (index, instrument) in instruments.iter().enumerate() {
        let key = |field: &str| format!("instrument[{index}].{field}");
        let symbol = &instrument.symbol;
        if symbol.is_empty()
            || symbol.len() > 8
            || !symbol
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            return config_error(key("symbol"), "must be 1 to 8 of A-Z, 0-9, '-' or '.'");
        }
        if !ids.insert(instrument.id) {
            return config_error(key("id"), "duplicate instrument id");
        }
        if !symbols.insert(symbol.clone()) {
            return config_error(key("symbol"), "duplicate symbol");
        }
        if instrument.price_scale == 0 {
            return config_error(key("price_scale"), "must be at least 1");
        }
    }
    Ok(())
}

fn check_users(users: &[UserConfig]) -> Result<(), Error> {
    let mut names = BTreeSet::new();
    for (index, user) in users.iter().enumerate() {
        let key = |field: &str| format!("user[{index}].{field}");
        let name = &user.username;
        if name.is_empty() || name.len() > 6 || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return config_error(key("username"), "must be 1 to 6 letters or digits");
        }
        if !names.insert(name.to_ascii_lowercase()) {
            return config_error(key("username"), "duplicate user name");
        }
        if user.messages_per_second_max == Some(0) {
            return config_error(key("messages_per_second_max"), "must be at least 1");
        }
        if PasswordHash::new(&user.password_hash).is_err() {
            return config_error(
                key("password_hash"),
                "not a PHC hash string (make one with `keel passwd`)",
            );
        }
    }
    Ok(())
}

fn check_cluster(cluster: &ClusterConfig) -> Result<(), Error> {
    let fail = |key: &str, problem: String| Err(Error::Config(format!("cluster.{key}: {problem}")));
    for key in cluster.peers.keys() {
        match key.parse::<u64>() {
            Ok(id) if id > 0 => {}
            _ => {
                return fail(
                    "peers",
                    format!("`{key}` is not a node id (a positive integer)"),
                )
            }
        }
    }
    if cluster.peers.len() < 3 || cluster.peers.len() % 2 == 0 {
        return fail(
            "peers",
            format!(
                "{} nodes; a cluster needs an odd number, at least 3",
                cluster.peers.len()
            ),
        );
    }
    if !cluster.peers.contains_key(&cluster.node_id.to_string()) {
        return fail(
            "node_id",
            format!("{} is not one of the peers", cluster.node_id),
        );
    }
    if cluster.secret.len() < 16 {
        return fail("secret", "must be at least 16 characters".into());
    }
    if cluster.heartbeat_ms < 10 || cluster.election_timeout_ms < 3 * cluster.heartbeat_ms {
        return fail(
            "election_timeout_ms",
            "heartbeat_ms must be at least 10 and the election timeout at least 3 heartbeats"
                .into(),
        );
    }
    Ok(())
}

impl Config {
    /// Parses and checks a configuration.
    pub fn parse(text: &str) -> Result<Config, Error> {
        let config: Config =
            toml::from_str(text).map_err(|error| Error::Config(error.to_string()))?;
        config.check()?;
        Ok(config)
    }

    /// The configuration as TOML that [`Config::parse`] reads back as the same
    /// configuration (after checking it: an invalid configuration is an error here too).
    pub fn to_toml(&self) -> Result<String, Error> {
        self.check()?;
        toml::to_string(self).map_err(|error| Error::Config(format!("cannot write TOML: {error}")))
    }

    /// Writes the configuration ([`Config::to_toml`]) to `path`, preceded by `header`
    /// (comment lines, each starting with `#`, or empty).
    pub fn write(&self, path: &Path, header: &str) -> Result<(), Error> {
        let text = format!("{header}{}", self.to_toml()?);
        std::fs::write(path, text)
            .map_err(|error| Error::Config(format!("cannot write {}: {error}", path.display())))
    }

    /// Reads, parses and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| Error::Config(format!("cannot read {}: {error}", path.display())))?;
        Config::parse(&text).map_err(|error| match error {
            Error::Config(message) => Error::Config(format!("{}: {message}", path.display())),
            other => other,
        })
    }

    /// The embedded default configuration.
    pub fn embedded_default() -> Config {
        // The embedded text is checked by a unit test; a failure here is a build defect.
        Config::parse(DEFAULT_CONFIG).unwrap_or_else(|error| {
            unreachable!("embedded default configuration is invalid: {error}")
        })
    }

    fn check(&self) -> Result<(), Error> {
        check_server(&self.server)?;
        if let Some(cluster) = &self.cluster {
            check_cluster(cluster)?;
        }
        check_instruments(&self.instruments)?;
        check_users(&self.users)
    }

    /// Every user's password hash, in user order.
    pub fn password_hashes(&self) -> Vec<String> {
        self.users
            .iter()
            .map(|user| user.password_hash.clone())
            .collect()
    }

    /// Password checking threads: `server.login_threads`, or one per core the matching
    /// loop does not use (at most 4).
    pub fn login_threads(&self) -> usize {
        self.server
            .login_threads
            .unwrap_or_else(crate::auth::default_threads)
    }

    /// Every user's session throttle ([`Config::throttle_of`]), in user order.
    pub fn throttles(&self) -> Vec<(u64, u64)> {
        (0..self.users.len())
            .map(|index| self.throttle_of(index))
            .collect()
    }

    /// The throttle of a connection before its login is accepted: (packets per second,
    /// burst).
    pub fn default_throttle(&self) -> (u64, u64) {
        (
            self.server.messages_per_second_max,
            self.server.message_burst_max,
        )
    }

    /// The session throttle of user `index`: (packets per second, burst).
    pub fn throttle_of(&self, index: usize) -> (u64, u64) {
        let rate = self
            .users
            .get(index)
            .and_then(|user| user.messages_per_second_max)
            .unwrap_or(self.server.messages_per_second_max);
        (rate, self.server.message_burst_max)
    }

    /// The user with this SoupBinTCP user name (compared case-insensitively, as the field is
    /// space padded and clients differ in case).
    pub fn user(&self, username: &str) -> Option<&UserConfig> {
        self.users
            .iter()
            .find(|user| user.username.eq_ignore_ascii_case(username))
    }
}

/// Hashes a password for the configuration (argon2id, random salt, PHC string).
pub fn hash_password(password: &str) -> Result<String, Error> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| Error::Config(format!("cannot hash password: {error}")))
}

/// A hash of a random password (nobody can send it) with the algorithm and parameters of
/// `like`, or argon2's defaults if `like` does not parse: checked for logins with an
/// unknown user name, so that such a login costs what a configured user's check costs and
/// its answer's timing does not tell which names exist.
pub fn dummy_hash_like(like: &str) -> Result<String, Error> {
    let rng = &mut argon2::password_hash::rand_core::OsRng;
    let password = SaltString::generate(&mut *rng);
    let salt = SaltString::generate(&mut *rng);
    let hasher = PasswordHash::new(like)
        .ok()
        .and_then(|parsed| {
            let algorithm = argon2::Algorithm::try_from(parsed.algorithm).ok()?;
            let version = parsed
                .version
                .map_or(Some(argon2::Version::default()), |v| {
                    argon2::Version::try_from(v).ok()
                })?;
            let params = argon2::Params::try_from(&parsed).ok()?;
            Some(Argon2::new(algorithm, version, params))
        })
        .unwrap_or_default();
    hasher
        .hash_password(password.as_str().as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| Error::Config(format!("cannot hash a dummy password: {error}")))
}

/// Whether `password` matches the PHC `hash`. Slow on purpose (argon2): call it off the
/// I/O thread. The comparison of the derived hashes is constant-time.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_client::DEMO_USERS;

    #[test]
    fn embedded_default_parses_and_demo_passwords_match() {
        let config = Config::embedded_default();
        assert_eq!(config.server.listen, default_listen());
        assert_eq!(config.instruments.len(), 2);
        for (name, password) in DEMO_USERS {
            let user = config.user(name).unwrap();
            assert!(verify_password(password, &user.password_hash));
            assert!(!verify_password("wrong", &user.password_hash));
        }
    }

    #[test]
    fn errors_name_the_key() {
        let base = DEFAULT_CONFIG;
        let cases = [
            (base.replace("listen =", "lisen ="), "lisen"),
            (
                base.replace("durability = \"fsync\"", "durability = \"sometimes\""),
                "sometimes",
            ),
            (
                base.replace("symbol = \"BTC-PERP\"", "symbol = \"BTC-PERPETUAL\""),
                "instrument[0].symbol",
            ),
            (
                base.replace("username = \"alice\"", "username = \"alice_the_great\""),
                "user[0].username",
            ),
            (base.replace("account = 1", "account = -1"), "account"),
            (
                base.replace(
                    "# outbound_buffer_bytes",
                    "messages_per_second_max = 0\n# outbound_buffer_bytes",
                ),
                "server.messages_per_second_max",
            ),
            (
                base.replace(
                    "# outbound_buffer_bytes",
                    "login_threads = 0\n# outbound_buffer_bytes",
                ),
                "server.login_threads",
            ),
            (
                base.replace(
                    "# outbound_buffer_bytes",
                    "resume_ticket_ttl_s = 9999999\n# outbound_buffer_bytes",
                ),
                "server.resume_ticket_ttl_s",
            ),
            (
                base.replace(
                    "# outbound_buffer_bytes",
                    "connections_per_source_max = 0\n# outbound_buffer_bytes",
                ),
                "server.connections_per_source_max",
            ),
            (
                base.replace(
                    "# outbound_buffer_bytes",
                    "login_deadline_ms = 10\n# outbound_buffer_bytes",
                ),
                "server.login_deadline_ms",
            ),
        ];
        for (text, needle) in cases {
            let error = Config::parse(&text).unwrap_err().to_string();
            assert!(error.contains(needle), "{needle}: {error}");
        }
    }

    #[test]
    fn the_embedded_default_round_trips_through_toml() {
        let config = Config::embedded_default();
        let text = config.to_toml().unwrap();
        assert_eq!(Config::parse(&text).unwrap(), config, "{text}");
        let mut cluster = config.clone();
        cluster.server.session = Some("KEEL1".into());
        cluster.server.matching_core = Some(0);
        cluster.users[1].messages_per_second_max = Some(7);
        cluster.server.login_threads = Some(3);
        cluster.server.resume_ticket_ttl_s = 0;
        cluster.server.connections_per_source_max = 4;
        cluster.server.login_deadline_ms = 500;
        cluster.cluster = Some(ClusterConfig {
            node_id: 2,
            peers: (1..=3)
                .map(|id| {
                    (
                        id.to_string(),
                        SocketAddr::from(([127, 0, 0, 1], 9100 + id)),
                    )
                })
                .collect(),
            secret: "0123456789abcdef".into(),
            election_timeout_ms: 200,
            heartbeat_ms: 40,
        });
        let text = cluster.to_toml().unwrap();
        assert!(text.contains("[cluster.peers]"), "{text}");
        assert_eq!(Config::parse(&text).unwrap(), cluster, "{text}");
    }

    #[test]
    fn the_dummy_hash_has_the_parameters_of_the_hash_it_is_like() {
        let cheap =
            "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHRzYWx0$YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo";
        let dummy = dummy_hash_like(cheap).unwrap();
        assert!(
            dummy.starts_with("$argon2id$v=19$m=256,t=1,p=1$"),
            "{dummy}"
        );
        let fallback = dummy_hash_like("not a hash").unwrap();
        assert!(
            fallback.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{fallback}"
        );
    }

    #[test]
    fn hashes_verify_only_their_password() {
        let hash = hash_password("s3cret").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("s3cret", &hash));
        assert!(!verify_password("s3cret ", &hash));
        assert!(!verify_password("s3cret", "not a hash"));
    }
}
