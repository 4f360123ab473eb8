//! One cluster member's Raft state machine, sans IO: messages, ticks and proposals go in;
//! messages to send and committed records come out. The node wraps it in a thread with a
//! transport and a clock; the simulation drives it with a simulated network and clock.

use raft::prelude::{Entry, Message, MessageType};
use raft::{RawNode, StateRole};

use crate::batch::SeqRange;
use crate::store::{Backend, Loaded, Store};
use crate::Error;

/// How a replica runs.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// This node's id (non-zero).
    pub id: u64,
    /// Every voter's id, this node's included.
    pub voters: Vec<u64>,
    /// Ticks without a leader before campaigning.
    pub election_ticks: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_ticks: usize,
    /// Randomise the election timeout in `[election_ticks, 2 × election_ticks)` (raft-rs
    /// draws from the thread's RNG). Off in the simulation, which draws per node from its
    /// seed instead, so that a run is reproducible.
    pub randomized_election: bool,
    /// Largest append message, in bytes.
    pub max_message_bytes: u64,
}

/// A committed entry: the journal records it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// Raft index.
    pub index: u64,
    /// Raft term.
    pub term: u64,
    /// Its records.
    pub range: SeqRange,
    /// The records themselves (a batch).
    pub data: Vec<u8>,
}

/// What one round of Raft produced.
#[derive(Debug, Default)]
pub struct Output {
    /// Messages to deliver (each names its recipient in `to`).
    pub messages: Vec<Message>,
    /// Newly committed entries, in order.
    pub committed: Vec<Committed>,
}

/// A cluster member.
pub struct Replica<B: Backend> {
    node: RawNode<Store<B>>,
    /// Sequence number of the last committed record.
    committed_seq: u64,
    /// Number of voters, this node included (membership is fixed).
    voters: usize,
}

impl<B: Backend> Replica<B> {
    /// A replica over `backend` with what it loaded.
    pub fn new(
        config: &ReplicaConfig,
        backend: B,
        loaded: Loaded,
        logger: &slog::Logger,
    ) -> Result<Replica<B>, Error> {
        let store = Store::new(backend, loaded, config.voters.clone())?;
        let applied = store.hard_state().commit;
        let max_election = if config.randomized_election {
            2 * config.election_ticks
        } else {
            config.election_ticks + 1
        };
        let raft_config = raft::Config {
            id: config.id,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            min_election_tick: config.election_ticks,
            max_election_tick: max_election,
            applied,
            max_size_per_msg: config.max_message_bytes,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..raft::Config::default()
        };
        raft_config.validate()?;
        let node = RawNode::new(&raft_config, store, logger)?;
        let committed_seq = node
            .store()
            .range_of(applied)
            .map_or(0, |range| range.last_seq());
        Ok(Replica {
            node,
            committed_seq,
            voters: config.voters.len(),
        })
    }

    /// Advances the logical clock by one tick.
    pub fn tick(&mut self) {
        self.node.tick();
    }

    /// Hands over a message that arrived authenticated from peer `from`. A message that
    /// fails [`Replica::check`] is refused untouched ([`Error::InvalidMessage`]); one raft-rs
    /// refuses is an error the caller logs. Either way the replica stays usable.
    pub fn step(&mut self, from: u64, message: Message) -> Result<(), Error> {
        self.check(from, &message)?;
        self.step_checked(message)
    }

    /// Whether raft-rs may see this peer message ([`crate::check`]). Among the refused:
    /// proposals (only the local replication thread proposes, see `propose`: a peer's
    /// would make this leader append records its own matching loop never journaled).
    pub fn check(&self, from: u64, message: &Message) -> Result<(), Error> {
        crate::check::check(&self.node.raft, from, message)
            .map_err(|reason| Error::InvalidMessage { from, reason })
    }

    /// [`Replica::step`] for a message that passed [`Replica::check`].
    pub(crate) fn step_checked(&mut self, message: Message) -> Result<(), Error> {
        Ok(self.node.step(message)?)
    }

    /// Proposes a batch of journal records (the leader's next ones, in order). Refused
    /// unless this node leads: raft-rs 0.7 would forward a follower's proposal to the
    /// leader (it has no switch to turn that off), and the records of a deposed leader
    /// must be discarded, never appended to another leader's log.
    pub fn propose(&mut self, batch: Vec<u8>) -> Result<(), Error> {
        if self.role() != StateRole::Leader {
            return Err(Error::Raft(raft::Error::ProposalDropped));
        }
        Ok(self.node.propose(Vec::new(), batch)?)
    }

    /// Runs one round of raft-rs's Ready protocol: sends the leader's messages, persists
    /// entries and hard state and syncs them, then releases the messages that had to wait
    /// for persistence, and reports committed entries.
    pub fn handle_ready(&mut self, out: &mut Output) -> Result<(), Error> {
        let mut early = Vec::new();
        let result = self.handle_ready_with(out, &mut |messages| early.extend(messages));
        out.messages.splice(0..0, early);
        result
    }

    /// As [`Replica::handle_ready`], but the messages that may leave before persistence (a
    /// leader's appends and heartbeats) are handed to `send_now` first, so followers write
    /// and sync while the leader does; the rest go to `out` as usual.
    pub fn handle_ready_with(
        &mut self,
        out: &mut Output,
        send_now: &mut dyn FnMut(Vec<Message>),
    ) -> Result<(), Error> {
        if !self.node.has_ready() {
            return Ok(());
        }
        let mut ready = self.node.ready();
        let early = ready.take_messages();
        if !early.is_empty() {
            send_now(early);
        }
        if !ready.snapshot().is_empty() {
            return Err(Error::Storage(
                "a snapshot arrived; logs are never compacted".into(),
            ));
        }
        let committed = ready.take_committed_entries();
        let must_sync = !ready.entries().is_empty() || ready.must_sync();
        // Entries of the term this node leads are its own proposals, of records its journal
        // already holds; any other entry's records are compared with what the journal holds.
        let own_term = (self.node.raft.state == StateRole::Leader).then_some(self.node.raft.term);
        let store = self.node.mut_store();
        store.set_own_term(own_term);
        store.append(ready.entries())?;
        if must_sync {
            store.backend_mut().sync()?;
        }
        // The hard state goes after the entries are synced, so the commit index it carries
        // never points past the durable log (a restart refuses a log shorter than it).
        if let Some(hard_state) = ready.hs() {
            store.set_hard_state(hard_state)?;
        }
        self.report(committed, out)?;
        out.messages.extend(ready.take_persisted_messages());
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.node.mut_store().set_commit(commit);
        }
        out.messages.extend(light.take_messages());
        self.report(light.take_committed_entries(), out)?;
        self.node.advance_apply();
        Ok(())
    }

    fn report(&mut self, entries: Vec<Entry>, out: &mut Output) -> Result<(), Error> {
        for entry in entries {
            let range = self.node.store().range_of(entry.index).ok_or_else(|| {
                Error::Storage(format!("committed entry {} is not in the log", entry.index))
            })?;
            assert!(range.count == 0 || range.first_seq == self.committed_seq + 1);
            if range.count > 0 {
                self.committed_seq = range.last_seq();
            }
            out.committed.push(Committed {
                index: entry.index,
                term: entry.term,
                range,
                data: entry.data.to_vec(),
            });
        }
        Ok(())
    }

    /// Sends a heartbeat to every peer now (leaders only; otherwise nothing), rather than
    /// at the next heartbeat tick. The messages leave with the next Ready.
    pub fn broadcast_heartbeat(&mut self) {
        if self.role() == StateRole::Leader {
            self.node.raft.bcast_heartbeat();
        }
    }

    /// A leader that stopped serving hands leadership on at once instead of leaving the
    /// others to wait out an election timeout: it tells the voter it knows to hold the
    /// longest log (`MsgTimeoutNow`, the leadership-transfer message: that voter campaigns
    /// now, without pre-vote) and steps down. Returns the voter told, or `None` when this
    /// node does not lead (or leads alone). The message is returned rather than queued, so
    /// that the driver sends it at once, ahead of the journal clean-up that follows a close.
    ///
    /// Only for a leader whose order entry is closed: a transfer campaign is granted even by
    /// voters that heard from this leader within their election timeout, so it ends the
    /// lease early. Raft's vote rules still elect only a node with every committed entry.
    pub fn abdicate(&mut self) -> Option<Message> {
        if self.role() != StateRole::Leader {
            return None;
        }
        let raft = &mut self.node.raft;
        let own_id = raft.id;
        let target = raft
            .prs()
            .iter()
            .filter(|&(&id, _)| id != own_id)
            // Longest log first, then lowest id: deterministic for the simulation.
            .max_by_key(|&(&id, progress)| (progress.matched, std::cmp::Reverse(id)))
            .map(|(&id, _)| id)?;
        raft.send_timeout_now(target);
        // `send_timeout_now` appends to the outgoing queue: the last message is ours.
        let message = raft.msgs.pop();
        debug_assert!(message
            .as_ref()
            .is_some_and(|m| m.msg_type == MessageType::MsgTimeoutNow && m.to == target));
        let term = raft.term;
        raft.become_follower(term, raft::INVALID_ID);
        message
    }

    /// Number of voters, this node included.
    pub fn voters(&self) -> usize {
        self.voters
    }

    /// This node's role.
    pub fn role(&self) -> StateRole {
        self.node.raft.state
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.node.raft.term
    }

    /// The leader this node knows of (0: none).
    pub fn leader_id(&self) -> u64 {
        self.node.raft.leader_id
    }

    /// Whether this node leads and has committed an entry of its own term, so its log (and
    /// state, once applied) holds everything ever committed: it may start serving.
    pub fn leader_ready(&self) -> bool {
        let log = &self.node.raft.raft_log;
        self.role() == StateRole::Leader && log.term(log.committed).ok() == Some(self.term())
    }

    /// Sequence number of the last committed record.
    pub fn committed_seq(&self) -> u64 {
        self.committed_seq
    }

    /// Sequence number of the last record in the Raft log (persisted or not).
    pub fn log_last_seq(&self) -> u64 {
        self.node.store().log_last_seq()
    }

    /// The storage.
    pub fn store(&self) -> &Store<B> {
        self.node.store()
    }

    /// The storage, mutably (mode switches of the node's backend).
    pub fn store_mut(&mut self) -> &mut Store<B> {
        self.node.mut_store()
    }

    /// The last index and the commit index of the Raft log.
    pub fn indices(&self) -> (u64, u64) {
        let log = &self.node.raft.raft_log;
        (log.last_index(), log.committed)
    }
}
