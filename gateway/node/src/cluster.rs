//! A node in a Raft cluster: the I/O around `keel_replication::RoleMachine`, which decides
//! what the node does (when to serve, what to apply, what may be released). This module
//! only moves bytes and threads: peer messages in and out through the transport, the clock,
//! and carrying out the machine's actions.
//!
//! ```text
//!  follower: transport ─▶ raft ─▶ journal (records copied byte for byte) ─▶ commit ─▶ engine
//!            order-entry port answers every Login Request with Login Rejected `S`
//!  leader:   clients ─▶ gateway ─▶ matching loop ─▶ journal ─▶ raft proposes the new records
//!            ─▶ followers; the gateway releases a response once its record is committed
//!            (and durable under the node's policy)
//! ```
//!
//! Changes of role are whole hand-overs, so each mode has one owner of the journal:
//! - opening order entry: the journal, engine and sessions move to a fresh matching loop
//!   and gateway; the node journals its own inputs (instruments, cancel-on-disconnect) as
//!   the single node does at start;
//! - closing it: the gateway stops without End of Session (clients resume on the new
//!   leader), the matching loop closes the journal, and the machine cuts the records raft
//!   never took and asks for the engine and sessions to be rebuilt. The rebuild replays the
//!   committed journal prefix on its own thread (`keel-rebuild`) while this loop keeps
//!   answering Raft; the machine applies and opens nothing until it reports back, then
//!   catches up on what was committed meanwhile from the journal.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use keel_engine::{Engine, Event};
use keel_journal::format::read_record;
use keel_replication::disk::DiskBackend;
use keel_replication::transport::{Transport, TransportConfig};
use keel_replication::{Action, Mode, Replica, ReplicaConfig, RoleConfig, RoleMachine};
use protobuf::Message as _;
use raft::prelude::Message;

use super::server::ClusterLink;
use super::sessions::SessionBook;
use super::startup::{self, Replayed};
use super::{Replay, StartInfo};
use crate::config::{ClusterConfig, Config};
use crate::Error;
use keel_protocol::soupbin::{LoginRejectReason, ServerPacket};

/// The role of the thread that runs the replication loop (the process's main thread), as
/// fault messages name it.
pub const THREAD: &str = "keel-replication";
/// The leader's order-entry thread (gateway and matching loop of a leadership stint).
const LEADER_THREAD: &str = "keel-leader";
/// The thread that replays the committed journal into a fresh engine and sessions.
const REBUILD_THREAD: &str = "keel-rebuild";

/// How long a new leader's order entry may take to open (journal the node's own inputs,
/// bind, listen). A leader that heartbeats but never opens would keep every client out
/// with no election to end it, so past this the node stops.
const ORDER_ENTRY_OPEN_MAX: Duration = Duration::from_secs(10);

/// Raft's logical clock tick.
const TICK_MS: u64 = 10;
/// Peer messages queued between the transport and this loop.
const PEER_MESSAGES_QUEUED_MAX: usize = 16 * 1024;
/// Peer messages handed to the machine per loop turn beyond the one that woke it.
const PEER_MESSAGES_PER_TURN_MAX: usize = 1024;
/// Ready rounds per loop turn (a close, its rebuild and a re-opening fit in a few).
const CARRY_OUT_ROUNDS_MAX: usize = 4;
/// How much earlier than the followers' promise a leader's lease ends: the loop notices
/// the end within a tick when idle, and stopping the gateway takes a little longer.
const LEASE_MARGIN_MS: u64 = 2 * TICK_MS;

/// The engine and sessions rebuilt from this node's journal.
struct Applied {
    engine: Engine,
    book: SessionBook,
    replayed: Replayed,
    events: Vec<Event>,
}

impl Applied {
    fn empty(config: &Config) -> Result<Applied, Error> {
        Ok(Applied {
            engine: Engine::default(),
            book: SessionBook::new(config)?,
            replayed: Replayed::default(),
            events: Vec::new(),
        })
    }

    /// Replays journal records `1..=upto_seq` (all committed) into a fresh engine and
    /// sessions, through a reader of that prefix alone: the replication thread may append
    /// to the journal, cut its uncommitted tail or reopen it meanwhile.
    fn rebuild(config: &Config, upto_seq: u64, cancel: &AtomicBool) -> Result<Applied, Error> {
        crate::fault::check("rebuild")?;
        let mut applied = Applied::empty(config)?;
        if upto_seq > 0 {
            let mut reader = keel_journal::Reader::open_prefix(&config.server.data_dir, upto_seq)?;
            applied.replayed = startup::replay_reader(
                &mut reader,
                &mut applied.engine,
                &mut Replay(&mut applied.book),
                upto_seq,
                &|| cancel.load(Ordering::Acquire),
            )?;
        }
        if applied.replayed.last_seq != upto_seq {
            return Err(Error::Node(format!(
                "rebuilding to record {upto_seq}, but the journal ends at {}",
                applied.replayed.last_seq
            )));
        }
        Ok(applied)
    }

    fn apply_batch(&mut self, data: &[u8]) -> Result<(), Error> {
        let Applied {
            engine,
            book,
            replayed,
            events,
        } = self;
        keel_replication::batch::for_each(data, |_, seq, _, record| {
            if seq <= replayed.last_seq {
                return Ok(());
            }
            // `for_each` checked the record already; this only splits header and payload.
            let (header, payload) = read_record(record)
                .map_err(|d| keel_replication::Error::BadBatch(format!("{d:?}")))?;
            startup::apply_record(
                engine,
                &mut Replay(book),
                replayed,
                events,
                (seq, header.record_type, payload),
            )
            .map_err(|e| keel_replication::Error::Storage(e.to_string()))
        })
        .map_err(|e| Error::Node(format!("applying committed records: {e}")))
    }
}

/// A leadership stint: the gateway and matching loop serving on their own thread.
struct Stint {
    link: ClusterLink,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<(), Error>>,
    /// Set once order entry listens; checked against [`ORDER_ENTRY_OPEN_MAX`].
    opened: Arc<AtomicBool>,
    /// When the stint started.
    since: Instant,
}

/// A rebuild on its own thread: the replication loop keeps answering Raft meanwhile and
/// takes the result from `done` (one message: a bounded channel of one).
struct Rebuilding {
    upto_seq: u64,
    done: Receiver<Result<Applied, Error>>,
    /// Set to abandon the replay (the node stops).
    cancel: Arc<AtomicBool>,
    thread: JoinHandle<()>,
    since: Instant,
}

impl Rebuilding {
    fn start(config: &Config, upto_seq: u64) -> Result<Rebuilding, Error> {
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let cancel = Arc::new(AtomicBool::new(false));
        let thread = {
            let config = config.clone();
            let cancel = cancel.clone();
            std::thread::Builder::new()
                .name(REBUILD_THREAD.into())
                .spawn(move || {
                    // The receiver is gone only if the loop stopped: nobody needs it then.
                    let _ = done_tx.send(Applied::rebuild(&config, upto_seq, &cancel));
                })?
        };
        Ok(Rebuilding {
            upto_seq,
            done,
            cancel,
            thread,
            since: Instant::now(),
        })
    }

    /// The thread's answer, joined: an error from it is the rebuild thread's fault, which
    /// stops the node (through the supervisor, as any thread's).
    fn finish(
        self,
        result: Result<Result<Applied, Error>, crossbeam_channel::RecvError>,
    ) -> Result<(Applied, Duration), Error> {
        let took = self.since.elapsed();
        let _ = self.thread.join();
        let fault = |error: &Error| {
            Error::Fatal(crate::supervisor::Fault::from_error(REBUILD_THREAD, error))
        };
        match result {
            // `Applied::rebuild` checked that it reached `upto_seq`.
            Ok(Ok(applied)) => Ok((applied, took)),
            Ok(Err(error)) => Err(fault(&error)),
            Err(_) => Err(fault(&Error::Node("ended without a result".into()))),
        }
    }

    /// Abandons the replay (the node stops): it looks at `cancel` every few thousand
    /// records and ends. Not joined: a thread stuck in a system call is left behind, as
    /// after a fault, rather than holding the node's stop.
    fn abandon(self) {
        self.cancel.store(true, Ordering::Release);
        drop(self.thread);
    }
}

/// What the I/O loop holds besides the role machine.
struct Host<'a> {
    config: &'a Config,
    core: Option<usize>,
    transport: Transport,
    /// The follower's state; moved into the matching loop while serving.
    applied: Applied,
    /// The rebuild under way, if any (the machine applies nothing until it is done).
    rebuilding: Option<Rebuilding>,
    stint: Option<Stint>,
    door: Option<Door>,
    kick: crossbeam_channel::Sender<()>,
    /// Reused for the messages that leave after persistence.
    messages: Vec<Message>,
    /// The role machine's clock (its `now_ms` counts from here), shared with the gateway
    /// so that it can tell whether the lease it was given still holds.
    clock: Instant,
    /// When an invalid peer message was last logged at warn, and how many since went to
    /// debug: a hostile peer must not flood the log.
    invalid_logged: (Option<Instant>, u64),
}

/// Runs a cluster node until `shutdown` is set.
pub fn run(
    config: &Config,
    shutdown: &AtomicBool,
    started: impl FnOnce(&StartInfo),
) -> Result<(), Error> {
    let cluster = config
        .cluster
        .clone()
        .ok_or_else(|| Error::Node("no [cluster] section".into()))?;
    let core = super::matching_core(config);
    if let Some(core) = core {
        super::keep_off_core(core);
    }
    let (backend, loaded) =
        DiskBackend::open(&config.server.data_dir, startup::journal_config(config))
            .map_err(replication)?;
    let (inbound_tx, inbound_rx) = crossbeam_channel::bounded(PEER_MESSAGES_QUEUED_MAX);
    let transport = start_transport(&cluster, inbound_tx)?;
    let replica = Replica::new(
        &replica_config(&cluster),
        backend,
        loaded,
        &keel_replication::raft_logger(cluster.node_id),
    )
    .map_err(replication)?;
    let mut role = RoleMachine::new(replica, role_config(&cluster)?);
    let (kick, kick_rx) = crossbeam_channel::bounded::<()>(1);
    let mut host = Host {
        config,
        core,
        transport,
        applied: Applied::empty(config)?,
        rebuilding: None,
        stint: None,
        door: Some(Door::open(config.server.listen)?),
        kick,
        messages: Vec::new(),
        clock: Instant::now(),
        invalid_logged: (None, 0),
    };
    // At the start the node waits for its state before it takes part: it has not been
    // answering Raft anyway, and its log says what it recovered.
    if let Err(error) = host
        .carry_out(&mut role)
        .and_then(|()| host.wait_rebuild(&mut role))
    {
        let _ = host.shutdown();
        return Err(error);
    }
    tracing::info!(
        node = cluster.node_id,
        peers = ?cluster.peer_ids(),
        committed_records = host.applied.replayed.last_seq,
        "cluster node started (follower until elected)"
    );
    started(&StartInfo {
        listen: config.server.listen,
        session: "(decided by the leader)".into(),
        matching_core: core,
        recovered_records: host.applied.replayed.last_seq,
    });
    let result = io_loop(&mut host, &mut role, shutdown, (&inbound_rx, &kick_rx));
    if let Err(error) = &result {
        // The whole node stops (no more heartbeats: the followers elect another leader);
        // a serving stint tells its clients End of Session.
        crate::supervisor::node().trip(crate::supervisor::Fault::from_error(THREAD, error));
    }
    let ended = host.shutdown();
    match crate::supervisor::node().fault() {
        Some(fault) => Err(Error::Fatal(fault.clone())),
        None => result.and(ended),
    }
}

/// The node's loop: wait for a peer message, a kick from the gateway (new records
/// journaled) or the next tick; hand everything to the role machine; carry out its actions.
fn io_loop(
    host: &mut Host<'_>,
    role: &mut RoleMachine<DiskBackend>,
    shutdown: &AtomicBool,
    (inbound, kicks): (&Receiver<(u64, Vec<u8>)>, &Receiver<()>),
) -> Result<(), Error> {
    let clock = host.clock;
    let now_ms = || u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
    let latch = crate::supervisor::node();
    while !shutdown.load(Ordering::Acquire) {
        // Another thread's fault (the leader's matching loop, its journal, its gateway):
        // stop, and so stop heartbeating. Checked at least once per tick.
        if let Some(fault) = latch.fault() {
            return Err(Error::Fatal(fault.clone()));
        }
        crate::fault::check("replication")?;
        if crate::fault::fires("journal-sync") {
            // The test seam: the flusher's next sync fails as a failing disk's would.
            role.replica()
                .store()
                .backend()
                .watermarks()
                .inject_sync_failures(1);
        }
        host.check_stint()?;
        let wait_ms = role
            .next_tick_ms()
            .map_or(0, |next| next.saturating_sub(now_ms()));
        let rebuilt = host
            .rebuilding
            .as_ref()
            .map_or_else(crossbeam_channel::never, |r| r.done.clone());
        crossbeam_channel::select! {
            recv(inbound) -> message => {
                if let Ok((from, bytes)) = message {
                    host.step(role, from, &bytes);
                }
            }
            recv(kicks) -> _ => {}
            recv(rebuilt) -> result => host.take_rebuild(role, result)?,
            default(Duration::from_millis(wait_ms)) => {}
        }
        // Drain what else arrived, boundedly.
        for (from, bytes) in inbound.try_iter().take(PEER_MESSAGES_PER_TURN_MAX) {
            host.step(role, from, &bytes);
        }
        role.on_time(now_ms());
        role.propose_journaled().map_err(replication)?;
        host.carry_out(role)?;
        host.publish_lease(role);
    }
    Ok(())
}

impl Host<'_> {
    /// Tells the serving gateway until when its lease holds (0 once it does not), so that
    /// it refuses logins past it even when this thread is late (a stalled disk).
    fn publish_lease(&self, role: &RoleMachine<DiskBackend>) {
        if let Some(stint) = &self.stint {
            let until_ms = match role.mode() {
                Mode::Serving { .. } => role.lease_until_ms(),
                _ => 0,
            };
            stint.link.lease_until_ms.store(until_ms, Ordering::Release);
        }
    }

    /// Runs the machine's Ready and carries out its actions until it has none left (a
    /// close of order entry asks for a rebuild, and the next Ready may then open it).
    fn carry_out(&mut self, role: &mut RoleMachine<DiskBackend>) -> Result<(), Error> {
        for _ in 0..CARRY_OUT_ROUNDS_MAX {
            let transport = &self.transport;
            // The leader's messages go out before it persists (raft-rs's Ready protocol),
            // so followers write and sync in parallel with the leader.
            role.ready(
                &mut |messages| send_all(transport, messages),
                &mut self.messages,
            )
            .map_err(replication)?;
            send_all(&self.transport, self.messages.drain(..));
            let actions: Vec<Action> = role.take_actions().collect();
            if actions.is_empty() {
                return Ok(());
            }
            for action in actions {
                self.act(role, action)?;
            }
        }
        Ok(())
    }

    fn act(&mut self, role: &mut RoleMachine<DiskBackend>, action: Action) -> Result<(), Error> {
        match action {
            Action::Apply { data, .. } => self.applied.apply_batch(&data)?,
            Action::Rebuild { upto_seq } => {
                if self.rebuilding.is_some() {
                    return Err(Error::Node("a rebuild while one runs".into()));
                }
                self.rebuilding = Some(Rebuilding::start(self.config, upto_seq)?);
            }
            Action::OpenOrderEntry { term, last_seq } => self.open(role, term, last_seq)?,
            Action::CloseOrderEntry => self.step_down(role)?,
            Action::Release { committed_seq } => {
                if let Some(stint) = &self.stint {
                    stint.link.committed.store(committed_seq, Ordering::Release);
                    if let Some(waker) = stint.link.waker.get() {
                        let _ = waker.wake();
                    }
                }
            }
        }
        Ok(())
    }

    /// Closes order entry and takes the journal back; the rebuild it asks for runs on its
    /// own thread, so this node answers Raft again as soon as this returns.
    fn step_down(&mut self, role: &mut RoleMachine<DiskBackend>) -> Result<(), Error> {
        let reason = if role.replica().role() == raft::StateRole::Leader {
            "no majority answered a heartbeat within the lease"
        } else {
            "lost leadership"
        };
        tracing::warn!(
            term = role.replica().term(),
            leader = role.replica().leader_id(),
            reason,
            "stepping down"
        );
        let started = Instant::now();
        if let Some(old) = self.stint.take() {
            end_stint(old)?;
        }
        let stopped = started.elapsed();
        let transport = &self.transport;
        let handed_to = role
            .order_entry_closed(&mut |messages| send_all(transport, messages))
            .map_err(replication)?;
        self.door = Some(Door::open(self.config.server.listen)?);
        if let Some(voter) = handed_to {
            tracing::warn!(
                to = voter,
                "handed leadership on (MsgTimeoutNow): no lease, order entry closed"
            );
        }
        tracing::info!(
            step_down_ms = millis(started.elapsed()),
            order_entry_stop_ms = millis(stopped),
            journal_reclaim_ms = millis(started.elapsed().saturating_sub(stopped)),
            committed_records = role.replica().committed_seq(),
            "following; state rebuilt in the background"
        );
        Ok(())
    }

    /// The rebuild thread answered (`result`): the state is this node's again and the
    /// machine is told, so it catches up and may open order entry.
    fn take_rebuild(
        &mut self,
        role: &mut RoleMachine<DiskBackend>,
        result: Result<Result<Applied, Error>, crossbeam_channel::RecvError>,
    ) -> Result<(), Error> {
        let Some(rebuilding) = self.rebuilding.take() else {
            return Ok(());
        };
        let upto_seq = rebuilding.upto_seq;
        let (applied, took) = rebuilding.finish(result)?;
        self.applied = applied;
        role.rebuilt(upto_seq).map_err(replication)?;
        tracing::info!(
            records = upto_seq,
            rebuild_ms = millis(took),
            "state rebuilt from the journal"
        );
        Ok(())
    }

    /// Waits for the rebuild under way, if any, and carries out what the machine then asks
    /// (the node's start, before it takes part in Raft).
    fn wait_rebuild(&mut self, role: &mut RoleMachine<DiskBackend>) -> Result<(), Error> {
        let Some(rebuilding) = &self.rebuilding else {
            return Ok(());
        };
        let result = rebuilding.done.recv();
        self.take_rebuild(role, result)?;
        self.carry_out(role)
    }

    fn open(
        &mut self,
        role: &mut RoleMachine<DiskBackend>,
        term: u64,
        last_seq: u64,
    ) -> Result<(), Error> {
        if self.applied.replayed.last_seq != last_seq {
            return Err(Error::Node(format!(
                "state at record {} but the journal ends at {last_seq}",
                self.applied.replayed.last_seq
            )));
        }
        if let Some(door) = self.door.take() {
            door.close();
        }
        tracing::info!(
            term,
            records = last_seq,
            "elected leader; serving order entry"
        );
        let journal = role
            .replica_mut()
            .store_mut()
            .backend_mut()
            .release_journal()
            .ok_or_else(|| Error::Node("journal already released".into()))?;
        let taken = std::mem::replace(&mut self.applied, Applied::empty(self.config)?);
        self.stint = Some(start_stint(
            self.config,
            self.core,
            journal,
            taken,
            last_seq,
            self.kick.clone(),
            (self.clock, role.lease_until_ms()),
        )?);
        Ok(())
    }

    /// Fails if this leader's order entry has not opened within [`ORDER_ENTRY_OPEN_MAX`].
    fn check_stint(&self) -> Result<(), Error> {
        match &self.stint {
            Some(stint)
                if !stint.opened.load(Ordering::Acquire)
                    && stint.since.elapsed() > ORDER_ENTRY_OPEN_MAX =>
            {
                Err(Error::Fatal(crate::supervisor::Fault::new(
                    LEADER_THREAD,
                    crate::supervisor::FaultKind::Thread,
                    format!(
                        "order entry did not open within {} s of the election",
                        ORDER_ENTRY_OPEN_MAX.as_secs()
                    ),
                )))
            }
            _ => Ok(()),
        }
    }

    /// Stops serving (clients get End of Session: this is a shutdown, not a step-down),
    /// closes the follower's door and the transport.
    fn shutdown(mut self) -> Result<(), Error> {
        if let Some(rebuilding) = self.rebuilding.take() {
            rebuilding.abandon();
        }
        let ended = match self.stint.take() {
            Some(old) => {
                old.link.deposed.store(false, Ordering::Release);
                end_stint(old)
            }
            None => Ok(()),
        };
        if let Some(door) = self.door.take() {
            door.close();
        }
        self.transport.shutdown();
        ended
    }
}

fn start_transport(
    cluster: &ClusterConfig,
    inbound: crossbeam_channel::Sender<(u64, Vec<u8>)>,
) -> Result<Transport, Error> {
    let peers = cluster.peer_ids();
    let listen = peers
        .iter()
        .find(|(id, _)| *id == cluster.node_id)
        .map(|(_, addr)| *addr)
        .ok_or_else(|| Error::Config("cluster.node_id is not a peer".into()))?;
    tracing::info!(node = cluster.node_id, raft = %listen, "cluster transport listening");
    Transport::start(
        TransportConfig {
            node_id: cluster.node_id,
            listen,
            peers: peers
                .iter()
                .filter(|(id, _)| *id != cluster.node_id)
                .copied()
                .collect(),
            secret: cluster.secret.as_bytes().to_vec(),
        },
        inbound,
        Arc::new(|| {}),
    )
    .map_err(|e| Error::Node(format!("cluster transport: {e}")))
}

/// The lease assumes every node uses this node's election timeout (they share the
/// `[cluster]` section), and must outlast a heartbeat round with room to spare.
fn role_config(cluster: &ClusterConfig) -> Result<RoleConfig, Error> {
    let election_ticks = replica_config(cluster).election_ticks as u64;
    let lease_ms = RoleConfig::lease_ms_for(election_ticks, TICK_MS, LEASE_MARGIN_MS);
    if lease_ms < 2 * cluster.heartbeat_ms {
        return Err(Error::Config(format!(
            "cluster.election_timeout_ms = {} leaves a leader lease of {lease_ms} ms (the \
             timeout less {} ms), under two heartbeats ({} ms): raise it to at least {} ms",
            cluster.election_timeout_ms,
            2 * TICK_MS + LEASE_MARGIN_MS,
            2 * cluster.heartbeat_ms,
            (2 * cluster.heartbeat_ms + 2 * TICK_MS + LEASE_MARGIN_MS).next_multiple_of(TICK_MS)
        )));
    }
    Ok(RoleConfig {
        tick_ms: TICK_MS,
        lease_ms,
        ..RoleConfig::default()
    })
}

fn replica_config(cluster: &ClusterConfig) -> ReplicaConfig {
    let ticks = |ms: u64| usize::try_from(ms / TICK_MS).unwrap_or(usize::MAX);
    ReplicaConfig {
        id: cluster.node_id,
        voters: cluster.peer_ids().iter().map(|(id, _)| *id).collect(),
        election_ticks: ticks(cluster.election_timeout_ms).max(3),
        heartbeat_ticks: ticks(cluster.heartbeat_ms).max(1),
        randomized_election: true,
        max_message_bytes: 1 << 20,
    }
}

fn replication(error: keel_replication::Error) -> Error {
    match error {
        // A journal that cannot take or sync records (a follower's full disk) stops the
        // node as a journal fault (exit status 74), like the leader's.
        keel_replication::Error::Journal(error) => Error::Journal(error),
        // The replication's own files (the raft index) sit beside the journal, on the same
        // disk.
        keel_replication::Error::Io(error) => Error::Journal(keel_journal::Error::Io(error)),
        error => Error::Node(format!("replication: {error}")),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn send_all(transport: &Transport, messages: impl IntoIterator<Item = Message>) {
    for message in messages {
        match message.write_to_bytes() {
            Ok(bytes) => transport.send(message.to, bytes),
            Err(error) => tracing::error!(%error, "cannot encode a raft message"),
        }
    }
}

impl Host<'_> {
    /// Hands one peer message to the role machine. Only authenticated bytes reach here (the
    /// transport checks every frame's MAC). A message that does not decode, or that the
    /// machine refuses as invalid (`keel_replication::check`), comes from a broken or
    /// hostile peer: it is dropped, logged (rate-limited) and the peer's connection closed.
    fn step(&mut self, role: &mut RoleMachine<DiskBackend>, from: u64, bytes: &[u8]) {
        let invalid = match Message::parse_from_bytes(bytes) {
            Ok(message) => match role.step(from, message) {
                Ok(()) => return,
                Err(
                    error @ (keel_replication::Error::ForgedSender { .. }
                    | keel_replication::Error::InvalidMessage { .. }),
                ) => error.to_string(),
                Err(error) => {
                    tracing::debug!(%error, from, "raft message not taken");
                    return;
                }
            },
            Err(error) => format!("undecodable message from peer {from}: {error}"),
        };
        self.transport.disconnect_inbound(from);
        let (last_warn, unlogged) = &mut self.invalid_logged;
        if last_warn.is_none_or(|at| at.elapsed() >= INVALID_LOG_INTERVAL) {
            *last_warn = Some(Instant::now());
            let unlogged = std::mem::take(unlogged);
            tracing::warn!(
                from, reason = %invalid, unlogged,
                "invalid peer message dropped and the peer's connection closed"
            );
        } else {
            *unlogged += 1;
            tracing::debug!(from, reason = %invalid, "invalid peer message dropped");
        }
    }
}

/// Invalid peer messages are logged at warn at most this often.
const INVALID_LOG_INTERVAL: Duration = Duration::from_secs(1);

fn start_stint(
    config: &Config,
    core: Option<usize>,
    journal: keel_journal::Journal,
    applied: Applied,
    last_seq: u64,
    kick: crossbeam_channel::Sender<()>,
    (lease_clock, lease_until_ms): (Instant, u64),
) -> Result<Stint, Error> {
    let link = ClusterLink {
        kick: Some(kick),
        lease_clock: Some(lease_clock),
        ..ClusterLink::default()
    };
    link.committed.store(last_seq, Ordering::Release);
    link.lease_until_ms.store(lease_until_ms, Ordering::Release);
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicBool::new(false));
    let thread = {
        let config = config.clone();
        let link = link.clone();
        let stop = stop.clone();
        let opened = opened.clone();
        std::thread::Builder::new()
            .name(LEADER_THREAD.into())
            .spawn(move || {
                let result = serve_stint(&config, (journal, applied), core, (&stop, &opened), link);
                // A stint ends only when told to; an error, or an end nobody asked for,
                // leaves a leader that heartbeats but takes no orders: stop the node.
                let fault = match &result {
                    Err(error) => Some(crate::supervisor::Fault::from_error(LEADER_THREAD, error)),
                    Ok(()) if !stop.load(Ordering::Acquire) => Some(crate::supervisor::Fault::new(
                        LEADER_THREAD,
                        crate::supervisor::FaultKind::Thread,
                        "order entry ended on its own",
                    )),
                    Ok(()) => None,
                };
                if let Some(fault) = fault {
                    crate::supervisor::node().trip(fault);
                }
                result
            })?
    };
    Ok(Stint {
        link,
        stop,
        thread,
        opened,
        since: Instant::now(),
    })
}

/// A leadership stint's order entry: journal the node's own inputs, then serve (setting
/// `opened` once it listens) until `stop`.
fn serve_stint(
    config: &Config,
    (journal, applied): (keel_journal::Journal, Applied),
    core: Option<usize>,
    (stop, opened): (&AtomicBool, &AtomicBool),
    link: ClusterLink,
) -> Result<(), Error> {
    crate::fault::check("leader")?;
    let Applied {
        engine,
        mut book,
        replayed,
        ..
    } = applied;
    let recovered =
        startup::start_serving(config, journal, engine, replayed, &mut Replay(&mut book))?;
    super::serve(config, recovered, book, core, stop, Some(link), |info| {
        opened.store(true, Ordering::Release);
        tracing::info!(listen = %info.listen, session = %info.session, "leader: order entry open");
    })
}

fn end_stint(stint: Stint) -> Result<(), Error> {
    if !stint.stop.load(Ordering::Acquire) {
        stint.link.deposed.store(true, Ordering::Release);
    }
    stint.stop.store(true, Ordering::Release);
    if let Some(waker) = stint.link.waker.get() {
        let _ = waker.wake();
    }
    match stint.thread.join() {
        Ok(result) => result,
        Err(_) => Err(Error::Node("leader thread panicked".into())),
    }
}

/// A follower's order-entry port: every Login Request is answered with Login Rejected `S`
/// (this node cannot take orders), so clients move on to the next endpoint.
struct Door {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// Connections a follower's door handles at once; more are closed at once.
pub const DOOR_CONNECTIONS_MAX: usize = 64;

impl Door {
    fn open(listen: SocketAddr) -> Result<Door, Error> {
        let listener = TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        widen_backlog(&listener);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("keel-door".into())
                .spawn(move || door_loop(&listener, &stop))?
        };
        Ok(Door { stop, thread })
    }

    fn close(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.thread.join();
    }
}

/// Raises the door's listen backlog (see [`crate::widen_listen_backlog`]).
fn widen_backlog(listener: &TcpListener) {
    use std::os::fd::AsRawFd;
    crate::widen_listen_backlog(listener.as_raw_fd(), "follower door");
}

fn door_loop(listener: &TcpListener, stop: &AtomicBool) {
    // One thread, no thread per connection: after a failover every client of the old
    // leader tries this door several times a second, and threads spawned per attempt would
    // take the CPU the election needs.
    let mut waiting: Vec<Waiting> = Vec::with_capacity(DOOR_CONNECTIONS_MAX);
    while !stop.load(Ordering::Acquire) {
        let accepted = accept_some(listener, &mut waiting);
        let now = Instant::now();
        let before = waiting.len();
        waiting.retain_mut(|waiting| !waiting.turn_away(now));
        if accepted == 0 && waiting.len() == before {
            std::thread::sleep(DOOR_IDLE);
        }
    }
}

/// How long the door sleeps when nothing happened in a pass.
const DOOR_IDLE: Duration = Duration::from_millis(2);
/// How long a connection may take to send its Login Request's header.
const DOOR_WAIT: Duration = Duration::from_secs(2);

/// A connection to a follower's door, waiting for the first packet's header.
struct Waiting {
    stream: TcpStream,
    peer: SocketAddr,
    header: [u8; 3],
    have: usize,
    until: Instant,
}

/// Accepts what the listener has, up to the door's limit (more are closed at once); how
/// many it took.
fn accept_some(listener: &TcpListener, waiting: &mut Vec<Waiting>) -> usize {
    let mut accepted = 0;
    for _ in 0..DOOR_CONNECTIONS_MAX {
        match listener.accept() {
            Ok((stream, peer)) => {
                accepted += 1;
                if waiting.len() >= DOOR_CONNECTIONS_MAX || stream.set_nonblocking(true).is_err() {
                    continue;
                }
                waiting.push(Waiting {
                    stream,
                    peer,
                    header: [0; 3],
                    have: 0,
                    until: Instant::now() + DOOR_WAIT,
                });
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(error) => {
                tracing::warn!(%error, "follower door accept failed");
                std::thread::sleep(Duration::from_millis(50));
                break;
            }
        }
    }
    accepted
}

impl Waiting {
    /// Reads what arrived of the first packet's header; if it is a Login Request, answers
    /// Login Rejected `S`. True when done with the connection (answered, closed, garbage or
    /// too slow): it is then dropped, which closes it.
    fn turn_away(&mut self, now: Instant) -> bool {
        loop {
            match self.stream.read(&mut self.header[self.have..]) {
                Ok(0) => return true,
                Ok(n) => {
                    self.have += n;
                    if self.have == self.header.len() {
                        break;
                    }
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    return now >= self.until;
                }
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
        if self.header[2] == b'L' {
            let mut reply = Vec::new();
            if ServerPacket::LoginRejected(LoginRejectReason::SessionNotAvailable)
                .encode(&mut reply)
                .is_ok()
            {
                // A fresh socket's send buffer takes these few bytes at once.
                let _ = self.stream.write_all(&reply);
            }
            tracing::info!(peer = %self.peer, "login refused: this node is a follower");
        }
        true
    }
}

#[cfg(test)]
// Tests: a failed check panics, with its location.
#[allow(clippy::panic)]
mod tests {
    use super::*;

    fn cluster(election_timeout_ms: u64, heartbeat_ms: u64) -> ClusterConfig {
        let peers = (1..=3)
            .map(|id| {
                (
                    id.to_string(),
                    SocketAddr::from(([127, 0, 0, 1], 9100 + id)),
                )
            })
            .collect();
        ClusterConfig {
            node_id: 1,
            peers,
            secret: "test-cluster-secret-0123".into(),
            election_timeout_ms,
            heartbeat_ms,
        }
    }

    #[test]
    fn the_lease_is_the_election_timeout_less_four_ticks() {
        let defaults = cluster(
            ClusterConfig::DEFAULT_ELECTION_TIMEOUT_MS,
            ClusterConfig::DEFAULT_HEARTBEAT_MS,
        );
        assert_eq!(role_config(&defaults).map(|c| c.lease_ms).ok(), Some(110));
        assert_eq!(
            role_config(&cluster(200, 40)).map(|c| c.lease_ms).ok(),
            Some(160)
        );
    }

    #[test]
    fn a_lease_under_two_heartbeats_is_refused_with_the_timeout_that_would_do() {
        let Err(error) = role_config(&cluster(90, 30)) else {
            panic!("a 50 ms lease with 30 ms heartbeats was accepted");
        };
        assert!(error.to_string().contains("at least 100 ms"), "{error}");
        // The suggested timeout is enough, even where heartbeats are not a tick multiple.
        assert!(role_config(&cluster(100, 30)).is_ok());
        let Err(error) = role_config(&cluster(105, 33)) else {
            panic!("a 60 ms lease with 33 ms heartbeats was accepted");
        };
        assert!(error.to_string().contains("at least 110 ms"), "{error}");
        assert!(role_config(&cluster(110, 33)).is_ok());
    }

    #[test]
    fn the_door_refuses_logins_with_s_and_closes_anything_else() {
        let addr = {
            let probe = TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap()
        };
        let door = Door::open(addr).unwrap();
        let mut login = Vec::new();
        keel_protocol::soupbin::ClientPacket::LoginRequest(keel_protocol::soupbin::LoginRequest {
            username: keel_protocol::Username::new("alice").unwrap(),
            password: keel_protocol::soupbin::Password::new("pw").unwrap(),
            requested_session: keel_protocol::soupbin::SessionId::BLANK,
            requested_sequence_number: 1,
        })
        .encode(&mut login)
        .unwrap();
        let mut expected = Vec::new();
        ServerPacket::LoginRejected(LoginRejectReason::SessionNotAvailable)
            .encode(&mut expected)
            .unwrap();
        // More connections at once than the door keeps: each is answered or closed.
        let mut clients: Vec<TcpStream> = (0..3 * DOOR_CONNECTIONS_MAX)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        for client in &mut clients {
            client
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let _ = client.write_all(&login);
        }
        let mut refused = 0;
        for client in &mut clients {
            let mut answer = Vec::new();
            let _ = client.read_to_end(&mut answer);
            assert!(answer.is_empty() || answer == expected, "{answer:?}");
            refused += usize::from(answer == expected);
        }
        assert!(refused >= DOOR_CONNECTIONS_MAX, "{refused} refused");
        // Anything but a login is closed without an answer.
        let mut garbage = TcpStream::connect(addr).unwrap();
        garbage
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        garbage.write_all(&[0, 1, b'R']).unwrap();
        let mut answer = Vec::new();
        let _ = garbage.read_to_end(&mut answer);
        assert!(answer.is_empty(), "{answer:?}");
        door.close();
    }
}
