//! One simulated node: a Raft replica over an in-memory journal, an engine that replays
//! the journal, and — while it leads — the matching loop and the replication thread.
//!
//! It behaves as the real node does: the leader journals a client command and applies it
//! to its engine at once (speculatively), proposes journal records to Raft in batches,
//! and releases an acknowledgement only once the command is committed; followers apply
//! what Raft commits. A deposed leader drops the records it never got into the Raft log
//! and rebuilds its engine from the committed journal.

use keel_engine::{Command, Engine, EngineConfig, Event};
use keel_journal::format::{read_record, RecordType, RECORD_HEADER_BYTES};
use keel_journal::merkle::MerkleFrontier;
use keel_journal::snapshot::state_root;
use keel_replication::mem::MemBackend;
use keel_replication::{batch, Backend, Loaded, Output, Replica, ReplicaConfig};
use raft::prelude::Message;
use raft::StateRole;

use super::checker::{Ack, Checker, Roots};
use super::workload::INSTRUMENTS;

/// Roots are compared across replicas at every multiple of this sequence number.
pub const CHECKPOINT_EVERY: u64 = 50;

/// Most records the replication thread puts in one Raft entry.
pub const BATCH_RECORDS: u64 = 64;

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
    /// Messages raft-rs refused.
    pub step_errors: u64,
    /// Proposals raft-rs dropped.
    pub dropped_proposals: u64,
    /// Times the engine was rebuilt from the journal.
    pub rebuilds: u64,
    /// Times this node stepped down from serving.
    pub step_downs: u64,
}

/// A running node.
pub struct Live {
    /// The Raft member.
    pub replica: Replica<MemBackend>,
    /// The engine, at `applied_seq`.
    pub engine: Engine,
    engine_config: EngineConfig,
    /// Last record applied to the engine.
    pub applied_seq: u64,
    /// Journal Merkle frontier over records `1..=applied_seq`.
    pub frontier: MerkleFrontier,
    /// The term in which this node serves as leader (its matching loop runs), if any.
    pub lead_term: Option<u64>,
    /// Node operations between losing leadership and discarding the unproposed journal
    /// tail (see [`Node::new`]).
    discard_lag: u32,
    /// Operations since the loss of leadership was noticed, while the discard waits.
    deposed_for: Option<u32>,
    /// Last record handed to Raft by the replication thread.
    proposed_seq: u64,
    pending: Vec<Pending>,
    /// Checkpoints of speculatively applied records, reported once committed.
    tentative: Vec<(u64, Roots)>,
    /// Raft's committed sequence number after the previous operation.
    last_committed_seq: u64,
    events: Vec<Event>,
    /// Counters.
    pub stats: NodeStats,
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
    engine_config: EngineConfig,
    /// The node ticks when `now % TICK_UNITS == tick_phase`, so nodes are not in lockstep.
    pub tick_phase: u64,
    discard_lag: u32,
    logger: slog::Logger,
    /// Running state.
    pub live: Option<Box<Live>>,
    /// Crashed state.
    pub down: Option<Down>,
    /// Counters of earlier incarnations.
    pub past_stats: NodeStats,
}

impl Node {
    /// A fresh node with an empty journal.
    ///
    /// `discard_lag` models the real node's threads: the replication thread sees the loss
    /// of leadership at once, but the matching loop owns the journal and the engine, so the
    /// unproposed tail is truncated and the engine rebuilt only a little later. Meanwhile
    /// the replica keeps persisting the new leader's entries over a journal that still
    /// holds the deposed leader's unproposed records, and the replication thread may still
    /// try to propose them. 0 discards at once.
    pub fn new(
        config: ReplicaConfig,
        engine_config: EngineConfig,
        tick_phase: u64,
        discard_lag: u32,
        checker: &mut Checker,
    ) -> Result<Node, String> {
        let id = config.id;
        let mut node = Node {
            id,
            logger: keel_replication::raft_logger(id),
            config,
            engine_config,
            tick_phase,
            discard_lag,
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
    /// recover the Raft log, then rebuild the engine from the committed journal.
    pub fn restart(&mut self, checker: &mut Checker) -> Result<(), String> {
        let Some(down) = self.down.take() else {
            return Ok(());
        };
        let replica = Replica::new(&self.config, down.backend, down.loaded, &self.logger)
            .map_err(|e| format!("node {} cannot restart: {e}", self.id))?;
        let committed_seq = replica.committed_seq();
        let mut live = Box::new(Live {
            replica,
            engine: new_engine(self.engine_config),
            engine_config: self.engine_config,
            applied_seq: 0,
            frontier: MerkleFrontier::new(),
            lead_term: None,
            discard_lag: self.discard_lag,
            deposed_for: None,
            proposed_seq: 0,
            pending: Vec::new(),
            tentative: Vec::new(),
            last_committed_seq: committed_seq,
            events: Vec::new(),
            stats: NodeStats::default(),
        });
        live.rebuild(self.id, checker)?;
        self.live = Some(live);
        Ok(())
    }

    /// Crashes the node: everything not synced is lost, except a prefix `rng` picks (a disk
    /// may have written some of it). Unacknowledged client work is gone with it.
    pub fn crash(&mut self, restart_at: u64, pick: &mut impl FnMut(usize) -> usize) {
        let Some(mut live) = self.live.take() else {
            return;
        };
        accumulate(&mut self.past_stats, &live.stats);
        let backend = live.replica.store_mut().backend_mut();
        let (records, metas) = backend.unsynced();
        let loaded = backend.crash(pick(records), pick(metas));
        let backend = live.replica.store().backend().clone();
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
            accumulate(&mut total, &live.stats);
        }
        total
    }
}

fn accumulate(total: &mut NodeStats, more: &NodeStats) {
    total.step_errors += more.step_errors;
    total.dropped_proposals += more.dropped_proposals;
    total.rebuilds += more.rebuilds;
    total.step_downs += more.step_downs;
}

fn new_engine(config: EngineConfig) -> Engine {
    // The configs the simulation draws are all valid; an invalid one is a harness bug.
    Engine::new(config).unwrap_or_default()
}

impl Live {
    /// One logical clock tick.
    pub fn tick(&mut self, id: u64, checker: &mut Checker, fx: &mut Effects) -> Result<(), String> {
        // The real node checks its role once per loop iteration and ticks at most once per
        // iteration, so a pending discard always happens before the next tick (and so before
        // this node could campaign again).
        if self.deposed_for.take().is_some() {
            self.step_down(id, checker)?;
        }
        self.replica.tick();
        self.after_op(id, checker, fx)
    }

    /// A message from a peer.
    pub fn step(
        &mut self,
        id: u64,
        message: Message,
        checker: &mut Checker,
        fx: &mut Effects,
    ) -> Result<(), String> {
        if self.replica.step(message).is_err() {
            // raft-rs refuses some messages (e.g. a stale response); the node logs them.
            self.stats.step_errors += 1;
        }
        self.after_op(id, checker, fx)
    }

    /// The replication thread: proposes the next journal records the matching loop wrote.
    pub fn replicate(
        &mut self,
        id: u64,
        checker: &mut Checker,
        fx: &mut Effects,
    ) -> Result<(), String> {
        if self.lead_term.is_none() {
            return Ok(());
        }
        let last = self.replica.store().backend().last_seq();
        if last <= self.proposed_seq {
            return Ok(());
        }
        let count = (last - self.proposed_seq).min(BATCH_RECORDS) as u32;
        let mut data = Vec::new();
        self.replica
            .store_mut()
            .backend_mut()
            .read(self.proposed_seq + 1, count, &mut data)
            .map_err(|e| format!("node {id}: reading its journal: {e}"))?;
        match self.replica.propose(data) {
            Ok(()) => self.proposed_seq += u64::from(count),
            Err(_) => self.stats.dropped_proposals += 1,
        }
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
        let (Some(term), None) = (self.lead_term, self.deposed_for) else {
            return Ok(Reply::NotLeader {
                hint: self.replica.leader_id(),
            });
        };
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
        let backend = self.replica.store_mut().backend_mut();
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
            if header.seq <= self.replica.committed_seq() {
                checker.checkpoint(id, header.seq, roots)?;
            } else {
                // The leader applied it speculatively: it may yet be discarded.
                self.tentative.push((header.seq, roots));
            }
        }
        Ok(())
    }

    /// Rebuilds the engine from the committed journal (from record 1), as the node does at
    /// start and after losing leadership; every record replayed is a committed one, so it is
    /// also checked against the committed history.
    fn rebuild(&mut self, id: u64, checker: &mut Checker) -> Result<(), String> {
        self.stats.rebuilds += 1;
        self.engine = new_engine(self.engine_config);
        self.frontier = MerkleFrontier::new();
        self.applied_seq = 0;
        self.tentative.clear();
        let upto = self.replica.committed_seq() as usize;
        let records = self.replica.store().backend().records()[..upto].to_vec();
        for (i, record) in records.iter().enumerate() {
            checker.committed(id, i as u64 + 1, record)?;
            self.apply(id, record, checker)?;
        }
        Ok(())
    }

    /// The leader lost its role: work it did speculatively and never got into the Raft log
    /// is discarded, and the engine is rebuilt from the committed journal.
    fn step_down(&mut self, id: u64, checker: &mut Checker) -> Result<(), String> {
        self.stats.step_downs += 1;
        self.lead_term = None;
        self.pending.clear();
        let keep = self.replica.log_last_seq();
        self.replica
            .store_mut()
            .backend_mut()
            .truncate_after(keep)
            .map_err(|e| format!("node {id}: discarding unproposed records: {e}"))?;
        self.rebuild(id, checker)
    }

    fn check_role(&mut self, id: u64, checker: &mut Checker) -> Result<(), String> {
        if self.replica.role() == StateRole::Leader {
            checker.leader(id, self.replica.term())?;
        }
        if let Some(term) = self.lead_term {
            if self.replica.role() != StateRole::Leader || self.replica.term() != term {
                // The gateway drops the responses it holds: they can never be released; and
                // the speculative checkpoints are void.
                self.pending.clear();
                self.tentative.clear();
                let waited = self.deposed_for.get_or_insert(0);
                if *waited >= self.discard_lag {
                    self.deposed_for = None;
                    self.step_down(id, checker)?;
                } else {
                    *waited += 1;
                }
            }
        }
        Ok(())
    }

    /// Everything a node does after raft-rs saw a tick, message or proposal: notice a lost
    /// leadership before persisting anything (so a follower never mistakes its unproposed
    /// records for the new leader's), run the Ready protocol, apply what committed, release
    /// acknowledgements, and start serving once it leads with everything applied.
    fn after_op(&mut self, id: u64, checker: &mut Checker, fx: &mut Effects) -> Result<(), String> {
        self.check_role(id, checker)?;
        let mut out = Output::default();
        // A second round picks up anything the first round's advance left ready (e.g. a
        // commit index to store); it is a no-op when there is nothing.
        for _ in 0..2 {
            self.replica
                .handle_ready(&mut out)
                .map_err(|e| format!("node {id}: handle_ready: {e}"))?;
        }
        if let Some(from) = self.replica.store_mut().take_truncation() {
            let deposed = self.deposed_for.is_some();
            if from <= self.last_committed_seq {
                return Err(format!(
                    "node {id}: a conflict truncated records from {from} but {} were committed",
                    self.last_committed_seq
                ));
            }
            // A deposed leader rebuilds anyway once it discards its tail.
            if from <= self.applied_seq && !deposed {
                self.rebuild(id, checker)?;
            }
        }
        for committed in &out.committed {
            let mut records = Vec::new();
            batch::for_each(&committed.data, |_, seq, _, record| {
                records.push((seq, record.to_vec()));
                Ok(())
            })
            .map_err(|e| format!("node {id}: committed entry {}: {e}", committed.index))?;
            for (seq, record) in records {
                checker.committed(id, seq, &record)?;
                // A deposed leader's engine still holds its speculative work: it catches up
                // by rebuilding, not by applying on top of that.
                if seq > self.applied_seq && self.deposed_for.is_none() {
                    self.apply(id, &record, checker)?;
                }
            }
        }
        let committed_seq = self.replica.committed_seq();
        if committed_seq < self.last_committed_seq {
            return Err(format!(
                "node {id}: committed sequence number went back from {} to {committed_seq}",
                self.last_committed_seq
            ));
        }
        self.last_committed_seq = committed_seq;
        // The gateway releases a response once its command is committed, by this node as
        // leader of the term it journaled the command in (after that, the record at `seq`
        // may be another leader's). Speculative checkpoints are confirmed the same way.
        let leading = self.replica.role() == StateRole::Leader;
        let term = self.replica.term();
        let own = |t: u64| leading && t == term;
        let mut now_committed = Vec::new();
        self.tentative.retain(|&(seq, roots)| {
            if seq <= committed_seq && self.lead_term.is_some_and(own) {
                now_committed.push((seq, roots));
                false
            } else {
                true
            }
        });
        for (seq, roots) in now_committed {
            checker.checkpoint(id, seq, roots)?;
        }
        let mut released = Vec::new();
        self.pending.retain(|p| {
            if own(p.term) && p.seq <= committed_seq {
                released.push(*p);
                false
            } else {
                true
            }
        });
        for p in released {
            fx.acks.push((
                p.order_id,
                p.client,
                Ack {
                    seq: p.seq,
                    term: p.term,
                    node: id,
                },
            ));
        }
        self.check_role(id, checker)?;
        self.maybe_start_serving(id, checker)?;
        if self.lead_term.is_none() && self.applied_seq != committed_seq {
            return Err(format!(
                "node {id}: follower applied {} but {committed_seq} are committed",
                self.applied_seq
            ));
        }
        fx.messages.append(&mut out.messages);
        Ok(())
    }

    /// A leader starts its matching loop once it has committed an entry of its own term and
    /// applied everything before it: its engine then holds every committed command.
    fn maybe_start_serving(&mut self, id: u64, checker: &mut Checker) -> Result<(), String> {
        if self.lead_term.is_some() || !self.replica.leader_ready() {
            return Ok(());
        }
        let committed_seq = self.replica.committed_seq();
        if committed_seq != self.replica.log_last_seq() || self.applied_seq != committed_seq {
            return Ok(());
        }
        let journal_last = self.replica.store().backend().last_seq();
        if journal_last != committed_seq {
            return Err(format!(
                "node {id}: starts leading with journal at {journal_last} but log at {committed_seq}"
            ));
        }
        self.lead_term = Some(self.replica.term());
        self.proposed_seq = committed_seq;
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

    /// Raft's committed sequence number.
    pub fn committed_seq(&self) -> u64 {
        self.replica.committed_seq()
    }
}
