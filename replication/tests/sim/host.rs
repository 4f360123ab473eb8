//! One simulated host: the production role machine ([`RoleMachine`]) over an in-memory
//! journal, with the parts of a real node that are I/O or threads played by the harness: an
//! engine that applies what the machine says, and — while the machine has order entry open
//! — a matching loop that journals client commands and applies them at once
//! (speculatively), and a gateway that holds each acknowledgement until the machine's
//! release watermark passes it.
//!
//! Every rule about roles (when to open and close order entry, what to apply, when to cut
//! and rebuild, what may be released) is the machine's; this file only carries out its
//! actions and reports what happened to the checker. The liberties it takes are timing:
//! it may close order entry a while after the machine asked (`close_lag`), as a busy
//! matching loop would (meanwhile raft-rs takes messages and ticks but nothing is
//! persisted); and it finishes a rebuild some time units after the machine asked
//! (`rebuild_lag`), as the real node's rebuild thread does, while raft-rs carries on. A
//! node that applies or opens order entry while its rebuild is pending fails the run.

use keel_engine::{Command, Engine, EngineConfig, Event};
use keel_journal::format::{read_record, RecordType, RECORD_HEADER_BYTES};
use keel_journal::merkle::MerkleFrontier;
use keel_journal::snapshot::state_root;
use keel_replication::mem::MemBackend;
use keel_replication::node::{Action, PlantedBug, RoleConfig, RoleMachine, RoleStats};
use keel_replication::{batch, Loaded, Replica, ReplicaConfig};
use raft::prelude::Message;
use raft::StateRole;

use super::checker::{Ack, Checker, Roots};
use super::workload::INSTRUMENTS;

/// Roots are compared across replicas at every multiple of this sequence number.
pub const CHECKPOINT_EVERY: u64 = 50;

/// How the simulated nodes' role machines run: ticks of 10 time units, one small proposal
/// per replication turn (so batches vary with the turns' pace), and the lease for a cluster
/// whose shortest election timeout is `election_ticks_min`, with one tick of margin (a node
/// sees the time every unit, so it notices a lapsed lease at once).
pub fn role_config(election_ticks_min: u64) -> RoleConfig {
    RoleConfig {
        tick_ms: 10,
        proposal_records_max: 64,
        proposal_bytes_max: 1 << 20,
        proposals_per_call_max: 1,
        lease_ms: RoleConfig::lease_ms_for(election_ticks_min, 10, 10),
    }
}

/// A client order the leader journaled and has not acknowledged yet.
#[derive(Clone, Copy, Debug)]
struct Pending {
    order_id: u64,
    client: usize,
    seq: u64,
    term: u64,
}

/// What a node operation produced for the rest of the cluster.
#[derive(Default)]
pub struct Effects {
    /// Raft messages to send.
    pub messages: Vec<Message>,
    /// Acknowledgements released: order id, client, where.
    pub acks: Vec<(u64, usize, Ack)>,
}

/// The matching loop's answer to a client command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// This node is not serving; try the node named (0: unknown).
    NotLeader { hint: u64 },
    /// The order id was used before (an OUCH gateway refuses a reused Order Token).
    Duplicate,
    /// The order is journaled here already and waits for commit; keep waiting.
    InFlight,
    /// Journaled at `seq` in `term`.
    Appended { seq: u64, term: u64 },
}

/// Counters for the run's report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// The role machine's counters.
    pub role: RoleStats,
    /// Times the engine was rebuilt from the journal.
    pub rebuilds: u64,
}

/// A running node.
pub struct Live {
    /// The production role machine.
    pub role: RoleMachine<MemBackend>,
    /// The engine, at `applied_seq`.
    pub engine: Engine,
    engine_config: EngineConfig,
    /// Last record applied to the engine.
    pub applied_seq: u64,
    /// Journal Merkle frontier over records `1..=applied_seq`.
    pub frontier: MerkleFrontier,
    /// The term the matching loop serves, while order entry is open.
    pub serving: Option<u64>,
    /// Operations to wait between the machine asking to close order entry and closing it.
    close_lag: u32,
    /// Operations since the machine asked to close, while the close waits.
    closing_for: Option<u32>,
    /// Time units a rebuild takes (0: done at the next unit).
    rebuild_lag: u32,
    /// The rebuild under way: its `upto_seq` and the time units it still takes.
    rebuild_pending: Option<(u64, u32)>,
    /// Last record reported committed to the checker while serving.
    released_seq: u64,
    pending: Vec<Pending>,
    /// Checkpoints of speculatively applied records, reported once released.
    tentative: Vec<(u64, Roots)>,
    events: Vec<Event>,
    rebuilds: u64,
    /// Messages the machine sent on its own while order entry closed (a hand-off), for
    /// the network at the end of this operation.
    outbox: Vec<Message>,
}

/// A crashed node: what survived in its storage.
pub struct Down {
    backend: MemBackend,
    loaded: Loaded,
    /// When it comes back.
    pub restart_at: u64,
}

/// A cluster member, up or down; it keeps its id across restarts.
pub struct Node {
    /// Raft id (index + 1).
    pub id: u64,
    config: ReplicaConfig,
    role_config: RoleConfig,
    engine_config: EngineConfig,
    /// This node's clock reads the simulation's time plus this offset, so nodes do not
    /// tick in lockstep.
    pub clock_offset: u64,
    close_lag: u32,
    rebuild_lag: u32,
    bug: Option<PlantedBug>,
    logger: slog::Logger,
    /// Running state.
    pub live: Option<Box<Live>>,
    /// Crashed state.
    pub down: Option<Down>,
    /// Counters of earlier incarnations.
    pub past_stats: NodeStats,
}

impl Node {
    /// A fresh node with an empty journal. `close_lag` (0: at once) is how many operations
    /// the matching loop takes to close order entry after the machine asked;
    /// `rebuild_lag` how many time units a rebuild of the engine takes.
    pub fn new(
        (config, role_config): (ReplicaConfig, RoleConfig),
        engine_config: EngineConfig,
        (clock_offset, close_lag, rebuild_lag): (u64, u32, u32),
        bug: Option<PlantedBug>,
        checker: &mut Checker,
    ) -> Result<Node, String> {
        let id = config.id;
        let mut node = Node {
            id,
            logger: keel_replication::raft_logger(id),
            config,
            role_config,
            engine_config,
            clock_offset,
            close_lag,
            rebuild_lag,
            bug,
            live: None,
            down: Some(Down {
                backend: MemBackend::default(),
                loaded: Loaded::default(),
                restart_at: 0,
            }),
            past_stats: NodeStats::default(),
        };
        node.restart(checker)?;
        Ok(node)
    }

    /// Starts the node on whatever its storage holds, as the real node does at start:
    /// recover the Raft log, then do what the role machine asks (rebuild from the journal).
    pub fn restart(&mut self, checker: &mut Checker) -> Result<(), String> {
        let Some(down) = self.down.take() else {
            return Ok(());
        };
        let replica = Replica::new(&self.config, down.backend, down.loaded, &self.logger)
            .map_err(|e| format!("node {} cannot restart: {e}", self.id))?;
        let mut role = RoleMachine::new(replica, self.role_config);
        if let Some(bug) = self.bug {
            role.plant_bug(bug);
        }
        let mut live = Box::new(Live {
            role,
            engine: new_engine(self.engine_config),
            engine_config: self.engine_config,
            applied_seq: 0,
            frontier: MerkleFrontier::new(),
            serving: None,
            close_lag: self.close_lag,
            closing_for: None,
            rebuild_lag: self.rebuild_lag,
            rebuild_pending: None,
            released_seq: 0,
            pending: Vec::new(),
            tentative: Vec::new(),
            events: Vec::new(),
            rebuilds: 0,
            outbox: Vec::new(),
        });
        live.carry_out(self.id, checker)?;
        self.live = Some(live);
        Ok(())
    }

    /// Crashes the node: everything not synced is lost, except a prefix `pick` chooses (a
    /// disk may have written some of it). Unacknowledged client work is gone with it.
    pub fn crash(&mut self, restart_at: u64, pick: &mut impl FnMut(usize) -> usize) {
        let Some(mut live) = self.live.take() else {
            return;
        };
        accumulate(&mut self.past_stats, &live.stats());
        let backend = live.role.replica_mut().store_mut().backend_mut();
        let (records, metas) = backend.unsynced();
        let loaded = backend.crash(pick(records), pick(metas));
        let backend = live.role.replica().store().backend().clone();
        self.down = Some(Down {
            backend,
            loaded,
            restart_at,
        });
    }

    /// All counters, earlier incarnations included.
    pub fn stats(&self) -> NodeStats {
        let mut total = self.past_stats;
        if let Some(live) = &self.live {
            accumulate(&mut total, &live.stats());
        }
        total
    }
}

fn accumulate(total: &mut NodeStats, more: &NodeStats) {
    total.role.step_errors += more.role.step_errors;
    total.role.dropped_proposals += more.role.dropped_proposals;
    total.role.openings += more.role.openings;
    total.role.step_downs += more.role.step_downs;
    total.role.lease_losses += more.role.lease_losses;
    total.role.abdications += more.role.abdications;
    total.role.votes_deferred += more.role.votes_deferred;
    total.role.rebuilds += more.role.rebuilds;
    total.role.caught_up_records += more.role.caught_up_records;
    total.rebuilds += more.rebuilds;
}

fn new_engine(config: EngineConfig) -> Engine {
    // The configs the simulation draws are all valid; an invalid one is a harness bug.
    Engine::new(config).unwrap_or_default()
}

impl Live {
    fn stats(&self) -> NodeStats {
        NodeStats {
            role: self.role.stats(),
            rebuilds: self.rebuilds,
        }
    }

    /// Time passes on this node's clock; raft-rs ticks when one is due.
    pub fn on_time(
        &mut self,
        id: u64,
        now: u64,
        checker: &mut Checker,
        fx: &mut Effects,
    ) -> Result<(), String> {
        // A real node closes order entry within the loop turn that noticed the loss of
        // leadership, so a pending close always happens before its next tick (and so
        // before this node could campaign again).
        if self.closing_for.is_some() {
            self.finish_close(id, checker)?;
        }
        let rebuilt = self.advance_rebuild(id, checker)?;
        if self.role.on_time(now) || rebuilt {
            self.after_op(id, checker, fx)?;
        }
        fx.messages.append(&mut self.outbox);
        Ok(())
    }

    /// One time unit of the rebuild under way, if any; at its end the engine is rebuilt
    /// and the machine told. Returns whether it ended now.
    fn advance_rebuild(&mut self, id: u64, checker: &mut Checker) -> Result<bool, String> {
        let Some((upto_seq, left)) = self.rebuild_pending else {
            return Ok(false);
        };
        if left > 0 {
            self.rebuild_pending = Some((upto_seq, left - 1));
            return Ok(false);
        }
        self.rebuild_pending = None;
        self.rebuild(id, upto_seq, checker)?;
        self.role
            .rebuilt(upto_seq)
            .map_err(|e| format!("node {id}: reporting the rebuild: {e}"))?;
        Ok(true)
    }

    /// A message from a peer.
    pub fn step(
        &mut self,
        id: u64,
        message: Message,
        checker: &mut Checker,
        fx: &mut Effects,
    ) -> Result<(), String> {
        // raft-rs refuses some messages (e.g. a stale response); the machine counts them. A
        // real node's message refused as invalid means the checks are too strict: a run
        // with crashes, partitions and delays must never see one.
        if let Err(error @ keel_replication::Error::InvalidMessage { .. }) =
            self.role.step(message.from, message)
        {
            return Err(format!("node {id} refused a real peer's message: {error}"));
        }
        self.after_op(id, checker, fx)
    }

    /// The replication turn: the machine proposes what the matching loop journaled.
    pub fn replicate(
        &mut self,
        id: u64,
        checker: &mut Checker,
        fx: &mut Effects,
    ) -> Result<(), String> {
        self.role
            .propose_journaled()
            .map_err(|e| format!("node {id}: proposing: {e}"))?;
        self.after_op(id, checker, fx)
    }

    /// The matching loop takes a client command (`client` set for a tracked new order).
    pub fn accept(
        &mut self,
        id: u64,
        command: &Command,
        client: Option<usize>,
        checker: &mut Checker,
    ) -> Result<Reply, String> {
        // Once the machine asked to close, the gateway turns clients away: a retry must
        // not be refused as a duplicate on the strength of a record about to be cut.
        let Some(term) = self.open_term() else {
            return Ok(Reply::NotLeader {
                hint: self.role.replica().leader_id(),
            });
        };
        // Taking a command as leader of `term` once a later term has a leader is what the
        // lease rules out.
        checker.serving(id, term)?;
        if let Command::New(order) = command {
            if self.engine.order_id_used(order.order_id) {
                let in_flight = self.pending.iter().any(|p| p.order_id == order.order_id);
                return Ok(if in_flight {
                    Reply::InFlight
                } else {
                    Reply::Duplicate
                });
            }
        }
        let seq = self.journal_and_apply(id, command, checker)?;
        if let (Some(client), Command::New(order)) = (client, command) {
            self.pending.push(Pending {
                order_id: order.order_id,
                client,
                seq,
                term,
            });
        }
        Ok(Reply::Appended { seq, term })
    }

    fn journal_and_apply(
        &mut self,
        id: u64,
        command: &Command,
        checker: &mut Checker,
    ) -> Result<u64, String> {
        let backend = self.role.replica_mut().store_mut().backend_mut();
        let seq = backend.append_local(RecordType::Command, &command.encode_to_vec());
        let record = backend.records()[seq as usize - 1].clone();
        self.apply(id, &record, checker)?;
        Ok(seq)
    }

    /// Applies the next record to the engine and the journal frontier.
    fn apply(&mut self, id: u64, record: &[u8], checker: &mut Checker) -> Result<(), String> {
        let (header, payload) =
            read_record(record).map_err(|d| format!("node {id}: bad record: {d:?}"))?;
        if header.seq != self.applied_seq + 1 {
            return Err(format!(
                "node {id}: record {} applied after {}",
                header.seq, self.applied_seq
            ));
        }
        if header.record_type != RecordType::Command {
            return Err(format!(
                "node {id}: unexpected {:?} record",
                header.record_type
            ));
        }
        let command = Command::decode(payload)
            .map_err(|e| format!("node {id}: record {} does not decode: {e}", header.seq))?;
        self.events.clear();
        self.engine.process(&command, &mut self.events);
        self.frontier
            .push(&record[..RECORD_HEADER_BYTES + payload.len()]);
        self.applied_seq = header.seq;
        if header.seq % CHECKPOINT_EVERY == 0 {
            self.engine
                .check_invariants()
                .map_err(|e| format!("node {id}: engine invariant at {}: {e}", header.seq))?;
            let roots = Roots {
                journal: self.frontier.root(),
                state: state_root(&self.engine),
            };
            if self.serving.is_none() {
                checker.checkpoint(id, header.seq, roots)?;
            } else {
                // The matching loop applied it speculatively: it may yet be discarded.
                self.tentative.push((header.seq, roots));
            }
        }
        Ok(())
    }

    /// Rebuilds the engine from journal records `1..=upto_seq` (committed ones: each is
    /// also checked against the committed history).
    fn rebuild(&mut self, id: u64, upto_seq: u64, checker: &mut Checker) -> Result<(), String> {
        self.rebuilds += 1;
        self.engine = new_engine(self.engine_config);
        self.frontier = MerkleFrontier::new();
        self.applied_seq = 0;
        self.tentative.clear();
        let records = self.role.replica().store().backend().records()[..upto_seq as usize].to_vec();
        for (i, record) in records.iter().enumerate() {
            checker.committed(id, i as u64 + 1, record)?;
            self.apply(id, record, checker)?;
        }
        Ok(())
    }

    /// Everything a node does after raft-rs saw a tick, message or proposal: run the role
    /// machine's Ready and carry out what it asks, then release what it allows.
    fn after_op(&mut self, id: u64, checker: &mut Checker, fx: &mut Effects) -> Result<(), String> {
        if let Some(waited) = &mut self.closing_for {
            *waited += 1;
            if *waited >= self.close_lag {
                self.finish_close(id, checker)?;
            }
        }
        let replica = self.role.replica();
        if replica.role() == StateRole::Leader {
            checker.leader(id, replica.term())?;
        }
        let mut early = Vec::new();
        let mut late = Vec::new();
        self.role
            .ready(&mut |messages| early.extend(messages), &mut late)
            .map_err(|e| format!("node {id}: ready: {e}"))?;
        fx.messages.append(&mut early);
        fx.messages.append(&mut late);
        self.carry_out(id, checker)?;
        fx.messages.append(&mut self.outbox);
        self.release(id, fx);
        if self.serving.is_none()
            && self.rebuild_pending.is_none()
            && self.applied_seq != self.role.applied_seq()
        {
            return Err(format!(
                "node {id}: follower applied {} but the machine says {}",
                self.applied_seq,
                self.role.applied_seq()
            ));
        }
        Ok(())
    }

    /// Carries out the role machine's actions, in order.
    fn carry_out(&mut self, id: u64, checker: &mut Checker) -> Result<(), String> {
        let actions: Vec<Action> = self.role.take_actions().collect();
        for action in actions {
            // The engine is being replaced: applying to it, or serving on it, would act on
            // a state that is about to be thrown away (or is stale).
            if let (Some((upto_seq, _)), Action::Apply { .. } | Action::OpenOrderEntry { .. }) =
                (self.rebuild_pending, &action)
            {
                return Err(format!(
                    "node {id}: {action:?} while its rebuild to record {upto_seq} is pending"
                ));
            }
            match action {
                Action::Apply { data, .. } => self.apply_committed(id, &data, checker)?,
                Action::Rebuild { upto_seq } => {
                    if self.rebuild_pending.is_some() {
                        return Err(format!("node {id}: a rebuild while one is pending"));
                    }
                    self.rebuild_pending = Some((upto_seq, self.rebuild_lag));
                }
                Action::OpenOrderEntry { term, last_seq } => {
                    self.open(id, term, last_seq, checker)?;
                }
                Action::CloseOrderEntry => {
                    // The gateway drops the responses it holds: they can never be released;
                    // and the speculative checkpoints are void.
                    self.pending.clear();
                    self.tentative.clear();
                    self.closing_for = Some(0);
                    if self.close_lag == 0 {
                        self.finish_close(id, checker)?;
                    }
                }
                Action::Release { committed_seq } => {
                    self.committed_while_serving(id, committed_seq, checker)?
                }
            }
        }
        Ok(())
    }

    fn apply_committed(
        &mut self,
        id: u64,
        data: &[u8],
        checker: &mut Checker,
    ) -> Result<(), String> {
        let mut records = Vec::new();
        batch::for_each(data, |_, seq, _, record| {
            records.push((seq, record.to_vec()));
            Ok(())
        })
        .map_err(|e| format!("node {id}: committed entry: {e}"))?;
        for (seq, record) in records {
            checker.committed(id, seq, &record)?;
            self.apply(id, &record, checker)?;
        }
        Ok(())
    }

    /// The matching loop starts. The harness trusts the machine's word that the state is
    /// at `last_seq` (the real node also checks it), so that a wrong opening shows in the
    /// checker's verdicts rather than in a harness assertion.
    fn open(
        &mut self,
        id: u64,
        term: u64,
        last_seq: u64,
        checker: &mut Checker,
    ) -> Result<(), String> {
        self.serving = Some(term);
        self.released_seq = last_seq;
        self.applied_seq = last_seq;
        // The node's configuration: instruments, defined once by whichever leader first
        // finds them missing.
        for (instrument, symbol) in INSTRUMENTS {
            if !self
                .engine
                .instruments()
                .any(|(known, _)| known == instrument)
            {
                let symbol = keel_engine::Symbol::new(symbol)
                    .map_err(|e| format!("bad symbol {symbol}: {e}"))?;
                self.journal_and_apply(
                    id,
                    &Command::DefineInstrument { instrument, symbol },
                    checker,
                )?;
            }
        }
        Ok(())
    }

    fn finish_close(&mut self, id: u64, checker: &mut Checker) -> Result<(), String> {
        self.closing_for = None;
        self.serving = None;
        self.pending.clear();
        let outbox = &mut self.outbox;
        self.role
            .order_entry_closed(&mut |messages| outbox.extend(messages))
            .map_err(|e| format!("node {id}: closing order entry: {e}"))?;
        self.carry_out(id, checker)
    }

    /// Records up to `committed_seq`, journaled by this node's matching loop, are committed:
    /// report them, and confirm the speculative checkpoints they cover.
    fn committed_while_serving(
        &mut self,
        id: u64,
        committed_seq: u64,
        checker: &mut Checker,
    ) -> Result<(), String> {
        let from = self.released_seq as usize;
        let records =
            self.role.replica().store().backend().records()[from..committed_seq as usize].to_vec();
        for (i, record) in records.iter().enumerate() {
            checker.committed(id, (from + i) as u64 + 1, record)?;
        }
        self.released_seq = committed_seq;
        let mut confirmed = Vec::new();
        self.tentative.retain(|&(seq, roots)| {
            let now = seq <= committed_seq;
            if now {
                confirmed.push((seq, roots));
            }
            !now
        });
        for (seq, roots) in confirmed {
            checker.checkpoint(id, seq, roots)?;
        }
        Ok(())
    }

    /// The gateway releases a response once the machine's release watermark passes it.
    fn release(&mut self, id: u64, fx: &mut Effects) {
        let watermark = self.released_seq;
        if self.serving.is_none() {
            return;
        }
        self.pending.retain(|p| {
            if p.seq <= watermark {
                fx.acks.push((
                    p.order_id,
                    p.client,
                    Ack {
                        seq: p.seq,
                        term: p.term,
                        node: id,
                    },
                ));
                false
            } else {
                true
            }
        });
    }

    /// The term whose commands the gateway takes now: serving, and no close asked for.
    pub fn open_term(&self) -> Option<u64> {
        match (self.serving, self.closing_for) {
            (Some(term), None) => Some(term),
            _ => None,
        }
    }

    /// Raft's committed sequence number.
    pub fn committed_seq(&self) -> u64 {
        self.role.replica().committed_seq()
    }
}
