//! Bringing a node up on its data directory: recover the journal, rebuild the engine and the
//! gateway's sessions by replaying every record, then journal what the configuration adds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keel_engine::{Command, Engine, Event, Symbol};
use keel_journal::envelope::{engine_command, Envelope, Origin};
use keel_journal::format::RecordType;
use keel_journal::{Durability, Journal, JournalConfig, SyncMethod};

use crate::config::Config;
use crate::Error;

/// The node's user field for records it makes itself.
pub const NODE_USER: [u8; 6] = *b"      ";

/// Nanoseconds since the Unix epoch, from the I/O thread's clock. The only clock read on
/// the state path; the value is journaled, never re-read.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
        })
}

/// A journal record as seen by the gateway during recovery and at run time.
pub trait RecordSink {
    /// Called for every journaled input with the events it produced, in journal order.
    fn record(&mut self, seq: u64, envelope: &Envelope, events: &[Event]);
}

/// What startup recovered.
pub struct Recovered {
    /// The open journal.
    pub journal: Journal,
    /// The engine at the journal's end.
    pub engine: Engine,
    /// Sequence number of the last record.
    pub last_seq: u64,
    /// When the trading session started (ns since the epoch).
    pub session_start_ns: u64,
}

/// Shortest time between the starts of two journal sync rounds on a single node under
/// `async` durability (see `JournalConfig::sync_interval_min`). There responses are released
/// once journaled and nothing waits for the sync, so syncing flat out only takes the flusher
/// and its io_uring worker a share of a core the gateway needs; one round per 2 ms costs next
/// to nothing. It bounds what `async` can lose to a kernel crash or power loss: the flow of
/// about the last 2 ms plus one sync. A cluster node and `fsync` keep zero (sync as soon as
/// anything is appended): under `fsync` every response waits for the sync, and a cluster
/// node's journal is the Raft log its replication relies on.
pub const ASYNC_SINGLE_NODE_SYNC_INTERVAL_MIN: Duration = Duration::from_millis(2);

/// How the configuration asks for the journal to be opened.
pub fn journal_config(config: &Config) -> JournalConfig {
    let durability = config.server.durability.journal();
    let sync_interval_min = if durability == Durability::Async && config.cluster.is_none() {
        ASYNC_SINGLE_NODE_SYNC_INTERVAL_MIN
    } else {
        Duration::ZERO
    };
    JournalConfig {
        segment_size_bytes: config.server.segment_size_bytes,
        durability,
        sync_method: SyncMethod::Auto,
        sync_interval_min,
        free_space_warn_bytes: config.server.free_space_warn_bytes,
    }
}

/// Opens the journal in the configured data directory, replays it into a fresh engine and
/// `sink`, and journals a session start (first run) and any configured instrument the
/// journal does not define yet (also passed to `sink`).
pub fn recover(config: &Config, sink: &mut impl RecordSink) -> Result<Recovered, Error> {
    let dir = &config.server.data_dir;
    let (journal, recovery) = Journal::open(dir, journal_config(config))?;
    if let Some(torn) = recovery.scan.torn {
        tracing::warn!(
            segment = torn.segment,
            offset = torn.offset,
            "truncated a torn journal tail"
        );
    }
    tracing::info!(
        records = recovery.scan.records,
        sync = recovery.sync_method,
        dir = %dir.display(),
        "journal recovered"
    );
    let mut engine = Engine::default();
    let replayed = replay(&journal, &mut engine, sink)?;
    start_serving(config, journal, engine, replayed, sink)
}

/// What a replay of the journal found.
#[derive(Clone, Copy, Debug, Default)]
pub struct Replayed {
    /// Sequence number of the last record.
    pub last_seq: u64,
    /// The first session start journaled, if any.
    pub session_start_ns: Option<u64>,
}

/// Replays every record of `journal` into `engine` and `sink`.
pub fn replay(
    journal: &Journal,
    engine: &mut Engine,
    sink: &mut impl RecordSink,
) -> Result<Replayed, Error> {
    replay_upto(journal, engine, sink, u64::MAX)
}

/// Replays the records of `journal` up to `upto_seq` into `engine` and `sink` (a cluster
/// follower applies committed records only; the journal may hold more).
pub fn replay_upto(
    journal: &Journal,
    engine: &mut Engine,
    sink: &mut impl RecordSink,
    upto_seq: u64,
) -> Result<Replayed, Error> {
    if journal.watermarks().appended() == 0 {
        return Ok(Replayed::default());
    }
    let mut reader = journal.reader(1)?;
    replay_reader(&mut reader, engine, sink, upto_seq, &|| false)
}

/// Records replayed between two looks at `cancelled`.
const REPLAY_CANCEL_CHECK_RECORDS: u64 = 4096;

/// Replays what `reader` returns, from record 1 up to `upto_seq` (or the reader's end),
/// into `engine` and `sink`. Stops with an error once `cancelled` says so (checked every
/// few thousand records: a background rebuild is abandoned when the node stops).
pub fn replay_reader(
    reader: &mut keel_journal::Reader,
    engine: &mut Engine,
    sink: &mut impl RecordSink,
    upto_seq: u64,
    cancelled: &dyn Fn() -> bool,
) -> Result<Replayed, Error> {
    let mut replayed = Replayed::default();
    let mut events = Vec::new();
    if reader.next_seq() != 1 {
        return Err(Error::Node("the journal does not start at record 1".into()));
    }
    while replayed.last_seq < upto_seq {
        if replayed.last_seq % REPLAY_CANCEL_CHECK_RECORDS == 0 && cancelled() {
            return Err(Error::Node("replay cancelled".into()));
        }
        let Some(record) = reader.next()? else {
            break;
        };
        apply_record(
            engine,
            sink,
            &mut replayed,
            &mut events,
            (record.seq, record.record_type, record.payload),
        )?;
    }
    Ok(replayed)
}

/// Applies one journal record (`seq`, type, payload) to `engine` and `sink`.
pub fn apply_record(
    engine: &mut Engine,
    sink: &mut impl RecordSink,
    replayed: &mut Replayed,
    events: &mut Vec<Event>,
    (seq, record_type, payload): (u64, RecordType, &[u8]),
) -> Result<(), Error> {
    events.clear();
    if let Some(command) = engine_command(record_type, payload)? {
        engine.process(&command, events);
    }
    if record_type == RecordType::Envelope {
        let envelope = Envelope::decode(payload)?;
        if envelope.origin == Origin::SessionStart && replayed.session_start_ns.is_none() {
            replayed.session_start_ns = Some(envelope.timestamp_ns);
        }
        sink.record(seq, &envelope, events);
    }
    replayed.last_seq = seq;
    Ok(())
}

/// Journals what the node adds before it serves (a session start on first run, instruments
/// the configuration adds, cancel-on-disconnect of stranded orders) and waits until it is
/// durable. Only the node that will append — the single node, or a cluster's new leader —
/// calls this.
pub fn start_serving(
    config: &Config,
    mut journal: Journal,
    mut engine: Engine,
    replayed: Replayed,
    sink: &mut impl RecordSink,
) -> Result<Recovered, Error> {
    let mut log = NodeLog {
        journal: &mut journal,
        sink,
        events: Vec::new(),
        last_seq: replayed.last_seq,
    };
    let session_start_ns = match replayed.session_start_ns {
        Some(start) => start,
        None => {
            let start = now_ns();
            log.append(
                node_envelope(Origin::SessionStart, start, None)?,
                &mut engine,
            )?;
            start
        }
    };
    define_instruments(config, &mut engine, &mut log)?;
    cancel_stranded_orders(config, &mut engine, &mut log)?;
    let last_seq = log.last_seq;
    journal.wait_durable()?;
    Ok(Recovered {
        journal,
        engine,
        last_seq,
        session_start_ns,
    })
}

/// Appends the node's own records before serving, applying each to the engine and showing
/// it to the sink.
struct NodeLog<'a, S> {
    journal: &'a mut Journal,
    sink: &'a mut S,
    events: Vec<Event>,
    last_seq: u64,
}

impl<S: RecordSink> NodeLog<'_, S> {
    fn append(&mut self, envelope: Envelope, engine: &mut Engine) -> Result<(), Error> {
        let seq = self.journal.appender().append_envelope(&envelope)?;
        self.events.clear();
        if let Some(command) = &envelope.command {
            engine.process(command, &mut self.events);
        }
        self.sink.record(seq, &envelope, &self.events);
        self.last_seq = seq;
        Ok(())
    }
}

/// Defines the configured instruments the journal does not have yet; an instrument the
/// journal names differently is an error.
fn define_instruments(
    config: &Config,
    engine: &mut Engine,
    log: &mut NodeLog<'_, impl RecordSink>,
) -> Result<(), Error> {
    for instrument in &config.instruments {
        let symbol = Symbol::new(&instrument.symbol)?;
        let existing = engine
            .instruments()
            .find(|(id, _)| *id == instrument.id)
            .map(|(_, symbol)| symbol);
        match existing {
            Some(existing) if existing == symbol => {}
            Some(existing) => {
                return Err(Error::Node(format!(
                    "instrument {} is {} in the journal but {} in the configuration",
                    instrument.id, existing, instrument.symbol
                )))
            }
            None => {
                let command = Command::DefineInstrument {
                    instrument: instrument.id,
                    symbol,
                };
                log.append(
                    node_envelope(Origin::Configuration, now_ns(), Some(command))?,
                    engine,
                )?;
            }
        }
    }
    Ok(())
}

/// No session survives a restart: users who asked for cancel-on-disconnect must not find
/// orders resting that they can no longer manage (after a crash or a clean stop alike).
fn cancel_stranded_orders(
    config: &Config,
    engine: &mut Engine,
    log: &mut NodeLog<'_, impl RecordSink>,
) -> Result<(), Error> {
    let stranded: Vec<_> = config
        .users
        .iter()
        .filter(|user| user.cancel_on_disconnect && engine.account_has_resting_orders(user.account))
        .collect();
    for user in stranded {
        let command = Command::MassCancel {
            account: user.account,
            instrument: None,
        };
        let envelope = Envelope::new(
            Origin::CancelOnDisconnect,
            now_ns(),
            super::sessions::user_wire(&user.username),
            0,
            &[],
            Some(command),
        )
        .ok_or_else(|| Error::Node("empty client message rejected".into()))?;
        log.append(envelope, engine)?;
    }
    Ok(())
}

fn node_envelope(
    origin: Origin,
    timestamp_ns: u64,
    command: Option<Command>,
) -> Result<Envelope, Error> {
    Envelope::new(origin, timestamp_ns, NODE_USER, 0, &[], command)
        .ok_or_else(|| Error::Node("empty client message rejected".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClusterConfig, DurabilityConfig};
    use std::net::SocketAddr;

    /// The embedded configuration with `durability` set, as one node or one of three.
    fn config(durability: &str, cluster: bool) -> Config {
        let mut config = Config::embedded_default();
        config.server.durability = match durability {
            "async" => DurabilityConfig::Async,
            _ => DurabilityConfig::Fsync,
        };
        if cluster {
            config.cluster = Some(ClusterConfig {
                node_id: 1,
                peers: (1..=3u16)
                    .map(|id| {
                        (
                            id.to_string(),
                            SocketAddr::from(([127, 0, 0, 1], 9100 + id)),
                        )
                    })
                    .collect(),
                secret: "pacing-test-secret-0123".into(),
                election_timeout_ms: ClusterConfig::DEFAULT_ELECTION_TIMEOUT_MS,
                heartbeat_ms: ClusterConfig::DEFAULT_HEARTBEAT_MS,
            });
        }
        // Through the node's own TOML, as a configuration file would be.
        let config = Config::parse(&config.to_toml().unwrap()).unwrap();
        assert_eq!(config.cluster.is_some(), cluster);
        config
    }

    #[test]
    fn only_a_single_async_node_paces_its_syncs() {
        let single_async = journal_config(&config("async", false));
        assert_eq!(single_async.durability, Durability::Async);
        assert_eq!(
            single_async.sync_interval_min,
            ASYNC_SINGLE_NODE_SYNC_INTERVAL_MIN
        );
        assert!(!ASYNC_SINGLE_NODE_SYNC_INTERVAL_MIN.is_zero());
        for (durability, cluster) in [("fsync", false), ("fsync", true), ("async", true)] {
            let journal = journal_config(&config(durability, cluster));
            assert_eq!(
                journal.sync_interval_min,
                Duration::ZERO,
                "{durability}, cluster: {cluster}"
            );
        }
    }
}
