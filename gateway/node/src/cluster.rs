//! A node in a Raft cluster: the replication thread (this module's loop) drives a
//! `keel_replication::Replica` over the journal and decides what the node does.
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
//! - becoming leader: only once raft says an entry of the new term is committed (so this
//!   log holds every committed record) and every record is applied here. The journal,
//!   engine and sessions move to a fresh matching loop and gateway; the node journals its
//!   own inputs (instruments, cancel-on-disconnect) as the single node does at start;
//! - stepping down: the gateway stops without End of Session (clients resume on the new
//!   leader), the matching loop closes the journal, records raft never took are cut, and
//!   the engine and sessions are rebuilt from the journal before anything else happens.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use keel_engine::{Engine, Event};
use keel_journal::format::read_record;
use keel_replication::disk::DiskBackend;
use keel_replication::transport::{Transport, TransportConfig};
use keel_replication::{Output, Replica, ReplicaConfig};
use protobuf::Message as _;
use raft::prelude::Message;
use raft::StateRole;

use super::server::ClusterLink;
use super::sessions::SessionBook;
use super::startup::{self, Replayed};
use super::{Replay, StartInfo};
use crate::config::{ClusterConfig, Config};
use crate::Error;
use keel_protocol::soupbin::{LoginRejectReason, ServerPacket};

/// Raft's logical clock.
const TICK: Duration = Duration::from_millis(10);
/// Records per proposal, and its approximate byte bound.
const PROPOSAL_RECORDS_MAX: u32 = 4096;
const PROPOSAL_BYTES_MAX: usize = 1 << 20;
/// Inbound peer messages buffered.
const INBOUND_CAPACITY: usize = 16 * 1024;

/// The engine and sessions rebuilt from this node's journal.
struct Applied {
    engine: Engine,
    book: SessionBook,
    replayed: Replayed,
    events: Vec<Event>,
}

impl Applied {
    fn rebuild(config: &Config, backend: &mut DiskBackend) -> Result<Applied, Error> {
        let journal = backend
            .journal()
            .ok_or_else(|| Error::Node("journal not held while rebuilding".into()))?;
        let mut engine = Engine::default();
        let mut book = SessionBook::new(config)?;
        let replayed = startup::replay(journal, &mut engine, &mut Replay(&mut book))?;
        Ok(Applied {
            engine,
            book,
            replayed,
            events: Vec::new(),
        })
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
    /// Last record handed to raft.
    proposed_seq: u64,
    /// The term this stint leads.
    term: u64,
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
    let dir = &config.server.data_dir;
    let (mut backend, loaded) =
        DiskBackend::open(dir, startup::journal_config(config)).map_err(replication)?;
    let mut applied = Applied::rebuild(config, &mut backend)?;
    let (inbound_tx, inbound_rx) = crossbeam_channel::bounded(INBOUND_CAPACITY);
    let peers = cluster.peer_ids();
    let listen = peers
        .iter()
        .find(|(id, _)| *id == cluster.node_id)
        .map(|(_, addr)| *addr)
        .ok_or_else(|| Error::Config("cluster.node_id is not a peer".into()))?;
    let transport = Transport::start(
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
        inbound_tx,
        Arc::new(|| {}),
    )
    .map_err(|e| Error::Node(format!("cluster transport: {e}")))?;
    let mut replica = Replica::new(
        &replica_config(&cluster),
        backend,
        loaded,
        &keel_replication::raft_logger(cluster.node_id),
    )
    .map_err(replication)?;
    tracing::info!(
        node = cluster.node_id,
        raft = %listen,
        peers = ?peers,
        journal_records = applied.replayed.last_seq,
        "cluster node started (follower until elected)"
    );
    started(&StartInfo {
        listen: config.server.listen,
        session: "(decided by the leader)".into(),
        matching_core: core,
        recovered_records: applied.replayed.last_seq,
    });
    let (kick_tx, kick_rx) = crossbeam_channel::bounded::<()>(1);
    let mut door = Some(Door::open(config.server.listen)?);
    let mut stint: Option<Stint> = None;
    let mut next_tick = Instant::now() + TICK;
    let mut out = Output::default();
    let mut batch = Vec::new();
    let result = loop {
        if shutdown.load(Ordering::Acquire) {
            break Ok(());
        }
        // Sleep until a peer message, a kick from the gateway (new records journaled), or
        // the next tick.
        let wait = next_tick.saturating_duration_since(Instant::now());
        crossbeam_channel::select! {
            recv(inbound_rx) -> message => {
                if let Ok((from, bytes)) = message {
                    step(&mut replica, from, &bytes);
                }
            }
            recv(kick_rx) -> _ => {}
            default(wait) => {}
        }
        // Drain what else arrived, boundedly.
        for (from, bytes) in inbound_rx.try_iter().take(1024) {
            step(&mut replica, from, &bytes);
        }
        if Instant::now() >= next_tick {
            replica.tick();
            next_tick += TICK;
            if next_tick < Instant::now() {
                next_tick = Instant::now() + TICK;
            }
        }
        // Stepping down comes first, before raft's next Ready: the new leader's entries in
        // it must go to a journal this thread owns again, after the records the old
        // stint journaled but raft never took are cut.
        let deposed = stint
            .as_ref()
            .is_some_and(|s| replica.role() != StateRole::Leader || replica.term() != s.term);
        if deposed {
            tracing::warn!(
                term = replica.term(),
                leader = replica.leader_id(),
                "lost leadership; stepping down"
            );
            if let Some(old) = stint.take() {
                end_stint(old)?;
            }
            let keep_seq = replica.log_last_seq();
            let backend = replica.store_mut().backend_mut();
            backend.reclaim_journal(keep_seq).map_err(replication)?;
            applied = Applied::rebuild(config, backend)?;
            door = Some(Door::open(config.server.listen)?);
        }
        if let Some(stint) = &mut stint {
            if let Err(error) = propose_new(&mut replica, stint, &mut batch) {
                tracing::warn!(%error, "proposal refused");
            }
        }
        out.messages.clear();
        out.committed.clear();
        // The leader's messages go out before it persists (raft-rs's Ready protocol), so
        // followers write and sync in parallel with the leader.
        let ready = replica.handle_ready_with(&mut out, &mut |messages| {
            send_all(&transport, messages);
        });
        if let Err(error) = ready {
            break Err(replication(error));
        }
        send_all(&transport, out.messages.drain(..));
        if let Some(stint) = &stint {
            stint
                .link
                .committed
                .store(replica.committed_seq(), Ordering::Release);
            if let Some(waker) = stint.link.waker.get() {
                let _ = waker.wake();
            }
        } else {
            for committed in out.committed.drain(..) {
                applied.apply_batch(&committed.data)?;
            }
        }
        if let Some(from_seq) = replica.store_mut().take_truncation() {
            if from_seq <= applied.replayed.last_seq && stint.is_none() {
                tracing::warn!(
                    from_seq,
                    "log conflict cut applied records; rebuilding state"
                );
                applied = Applied::rebuild(config, replica.store_mut().backend_mut())?;
            }
        }
        // Becoming leader.
        if stint.is_none() && replica.leader_ready() {
            if let Some(door) = door.take() {
                door.close();
            }
            let proposed_seq = replica.log_last_seq();
            let fresh = Applied {
                engine: Engine::default(),
                book: SessionBook::new(config)?,
                replayed: Replayed::default(),
                events: Vec::new(),
            };
            let taken = std::mem::replace(&mut applied, fresh);
            tracing::info!(
                term = replica.term(),
                records = proposed_seq,
                "elected leader; serving order entry"
            );
            let journal = replica
                .store_mut()
                .backend_mut()
                .release_journal()
                .ok_or_else(|| Error::Node("journal already released".into()))?;
            if taken.replayed.last_seq != proposed_seq {
                return Err(Error::Node(format!(
                    "state at record {} but the log ends at {proposed_seq}",
                    taken.replayed.last_seq
                )));
            }
            stint = Some(start_stint(
                config,
                core,
                journal,
                taken,
                (proposed_seq, replica.term()),
                kick_tx.clone(),
            )?);
        }
    };
    if let Some(old) = stint.take() {
        old.link.deposed.store(false, Ordering::Release);
        end_stint(old)?;
    }
    if let Some(door) = door.take() {
        door.close();
    }
    transport.shutdown();
    result
}

fn replica_config(cluster: &ClusterConfig) -> ReplicaConfig {
    let ticks = |ms: u64| usize::try_from(ms / TICK.as_millis() as u64).unwrap_or(usize::MAX);
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
    Error::Node(format!("replication: {error}"))
}

fn send_all(transport: &Transport, messages: impl IntoIterator<Item = Message>) {
    for message in messages {
        match message.write_to_bytes() {
            Ok(bytes) => transport.send(message.to, bytes),
            Err(error) => tracing::error!(%error, "cannot encode a raft message"),
        }
    }
}

/// Hands one peer message to raft. Only authenticated bytes reach here (the transport
/// checks every frame's MAC); a message claiming another sender is dropped.
fn step(replica: &mut Replica<DiskBackend>, from: u64, bytes: &[u8]) {
    match Message::parse_from_bytes(bytes) {
        Ok(message) if message.from == from => {
            if let Err(error) = replica.step(message) {
                tracing::debug!(%error, from, "raft message not taken");
            }
        }
        Ok(message) => {
            tracing::warn!(
                from,
                claimed = message.from,
                "peer message with a forged sender dropped"
            );
        }
        Err(error) => tracing::warn!(from, %error, "undecodable peer message dropped"),
    }
}

/// Proposes the records the matching loop journaled since the last proposal.
fn propose_new(
    replica: &mut Replica<DiskBackend>,
    stint: &mut Stint,
    batch: &mut Vec<u8>,
) -> Result<(), Error> {
    loop {
        batch.clear();
        let range = replica
            .store_mut()
            .backend_mut()
            .read_new(
                stint.proposed_seq,
                PROPOSAL_RECORDS_MAX,
                PROPOSAL_BYTES_MAX,
                batch,
            )
            .map_err(replication)?;
        if range.count == 0 {
            return Ok(());
        }
        replica
            .propose(std::mem::take(batch))
            .map_err(replication)?;
        stint.proposed_seq = range.last_seq();
    }
}

fn start_stint(
    config: &Config,
    core: Option<usize>,
    journal: keel_journal::Journal,
    applied: Applied,
    (proposed_seq, term): (u64, u64),
    kick: crossbeam_channel::Sender<()>,
) -> Result<Stint, Error> {
    let link = ClusterLink {
        kick: Some(kick),
        ..ClusterLink::default()
    };
    link.committed.store(proposed_seq, Ordering::Release);
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let config = config.clone();
        let link = link.clone();
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("keel-leader".into())
            .spawn(move || {
                let Applied {
                    engine,
                    mut book,
                    replayed,
                    ..
                } = applied;
                let recovered = startup::start_serving(
                    &config,
                    journal,
                    engine,
                    replayed,
                    &mut Replay(&mut book),
                )?;
                super::serve(&config, recovered, book, core, &stop, Some(link), |info| {
                    tracing::info!(listen = %info.listen, session = %info.session, "leader: order entry open");
                })
            })?
    };
    Ok(Stint {
        link,
        stop,
        thread,
        proposed_seq,
        term,
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
const DOOR_CONNECTIONS_MAX: usize = 64;

impl Door {
    fn open(listen: SocketAddr) -> Result<Door, Error> {
        let listener = TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
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

fn door_loop(listener: &TcpListener, stop: &AtomicBool) {
    let active = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, peer)) => {
                if active.load(Ordering::Acquire) >= DOOR_CONNECTIONS_MAX {
                    continue;
                }
                active.fetch_add(1, Ordering::AcqRel);
                let active = active.clone();
                let spawned = std::thread::Builder::new()
                    .name("keel-door-conn".into())
                    .spawn(move || {
                        turn_away(stream, peer);
                        active.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    tracing::warn!(%peer, "cannot start a thread for a follower connection");
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(error) => {
                tracing::warn!(%error, "follower door accept failed");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Reads one SoupBinTCP packet (bounded, 2 s) and, if it is a Login Request, answers Login
/// Rejected `S`; then closes.
fn turn_away(mut stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let mut header = [0u8; 3];
    if stream.read_exact(&mut header).is_err() {
        return;
    }
    if header[2] == b'L' {
        let mut reply = Vec::new();
        if ServerPacket::LoginRejected(LoginRejectReason::SessionNotAvailable)
            .encode(&mut reply)
            .is_ok()
        {
            let _ = stream.write_all(&reply);
        }
        tracing::info!(%peer, "login refused: this node is a follower");
    }
}
