//! The node's role logic as a sans-IO state machine: when a cluster member serves order
//! entry, when it stops, what it applies, and what its gateway may release.
//!
//! The real node (`keel serve` with a `[cluster]` section) wraps a [`RoleMachine`] in a thread
//! with a transport, a clock and the matching loop; the deterministic cluster simulation
//! drives the very same type with a simulated network and clock. Neither holds a copy of
//! these rules. Inputs are values: the time ([`RoleMachine::on_time`]), peer messages
//! ([`RoleMachine::step`]), "the matching loop journaled records"
//! ([`RoleMachine::propose_journaled`]) and "order entry has closed"
//! ([`RoleMachine::order_entry_closed`]); [`RoleMachine::ready`] runs raft-rs's Ready
//! protocol and the role rules, and the driver then carries out the [`Action`]s.
//!
//! The rules, and why:
//! - **Open order entry** only once raft-rs says an entry of this leader's term is
//!   committed, the log holds nothing uncommitted, and everything committed is applied:
//!   only then does this node's state hold every command any leader ever acknowledged.
//! - **Close order entry** as soon as the role or term changes, before the next Ready: the
//!   new leader's entries must go to a journal the replica owns again, after the records the
//!   old matching loop journaled but raft never took are cut. Until the driver reports the
//!   close, no Ready runs (nothing is persisted or applied).
//! - **Apply** (followers) exactly the committed records, in order, once each.
//! - **Rebuild off the Raft path**: after asking the driver to rebuild its state from the
//!   journal ([`Action::Rebuild`]), apply nothing and open nothing until the driver reports
//!   it done ([`RoleMachine::rebuilt`]); Raft keeps stepping, persisting, acknowledging and
//!   voting meanwhile. Records committed during the rebuild are then read back from the
//!   journal (which holds every committed record) and applied in bounded chunks, so no
//!   queue grows with the rebuild's length. A deposed leader's replay of a long journal
//!   therefore never silences its Raft replica.
//! - **Release**: while serving, responses up to the committed sequence number may leave;
//!   never while closing, since a record at that position may become another leader's.
//! - **Lease**: serve only while a majority (this node included) answered, within the
//!   last [`RoleConfig::lease_ms`], a heartbeat this node sent, and open only with such a
//!   lease. raft-rs's `check_quorum` alone would leave a deposed leader serving for up to
//!   two election timeouts, while the others may elect a new one after one.
//! - **Hand-off**: a leader that closed for want of a lease hands leadership on once order
//!   entry is closed ([`Replica::abdicate`]), instead of heartbeating until raft-rs's
//!   `check_quorum` steps it down and the others wait out an election timeout after that.
//!
//! Why the lease holds. Every outgoing heartbeat is stamped (in its context, which the
//! follower echoes) with the term and the time it left, on this node's clock. A follower
//! that answers it reset its election timer when the heartbeat arrived, after it left; with
//! `check_quorum` raft-rs ignores (pre-)vote requests while it heard from its leader within
//! its election timeout, which its tick schedule makes at least `election_ticks - 2` ticks
//! (its first tick after the heartbeat may come at once, a late tick reschedules from
//! when it ran). Any majority that elects another leader shares a voter with the majority
//! that answered, so nobody else can be elected until `stamp + (election_ticks - 2) ×
//! tick`, measured on either clock (durations, so clock offsets do not matter; only rates
//! would). The lease ends `margin` before that, with the shortest election timeout of any
//! voter ([`RoleConfig::lease_ms_for`]). The leader itself votes for nobody while it leads
//! and closes order entry before raft-rs lets it vote after stepping down. A voter that
//! restarts forgets whom it heard from, so it grants no vote for `lease_ms` after it
//! starts ([`RoleMachine::step`]).

use raft::prelude::{Message, MessageType};
use raft::StateRole;

use crate::batch::SeqRange;
use crate::replica::{Committed, Output, Replica};
use crate::store::Backend;
use crate::Error;

/// How the role machine paces itself.
#[derive(Clone, Copy, Debug)]
pub struct RoleConfig {
    /// Length of one raft-rs logical clock tick.
    pub tick_ms: u64,
    /// Journal records per proposal.
    pub proposal_records_max: u32,
    /// Approximate bytes per proposal.
    pub proposal_bytes_max: usize,
    /// Proposals per [`RoleMachine::propose_journaled`] call (the rest wait for the next).
    pub proposals_per_call_max: u32,
    /// How long a peer's answer to a heartbeat keeps this node's lease, counted from when
    /// the heartbeat left; also how long a (re)started node grants no vote. Derive it with
    /// [`RoleConfig::lease_ms_for`] from the shortest election timeout of any voter.
    pub lease_ms: u64,
}

impl RoleConfig {
    /// The lease for a cluster whose voters' shortest election timeout is
    /// `election_ticks_min` ticks of `tick_ms`: what raft-rs makes a voter wait after
    /// hearing from its leader (`election_ticks_min - 2` ticks, see the module docs) minus
    /// `margin_ms`, which covers the time this node takes to notice its lease ended and
    /// close order entry, and clock rate differences. 0 if nothing is left.
    pub fn lease_ms_for(election_ticks_min: u64, tick_ms: u64, margin_ms: u64) -> u64 {
        (election_ticks_min.saturating_sub(2) * tick_ms).saturating_sub(margin_ms)
    }
}

impl Default for RoleConfig {
    fn default() -> RoleConfig {
        RoleConfig {
            tick_ms: 10,
            proposal_records_max: 4096,
            proposal_bytes_max: 1 << 20,
            proposals_per_call_max: 64,
            // raft-rs's default election timeout (10 ticks), two ticks of margin.
            lease_ms: RoleConfig::lease_ms_for(10, 10, 20),
        }
    }
}

/// What the driver must do, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Apply these committed records to the engine and sessions (followers only): they
    /// follow the last record applied, with no gap.
    Apply {
        /// Their sequence numbers.
        range: SeqRange,
        /// The records, as a batch ([`crate::batch`]).
        data: Vec<u8>,
    },
    /// Discard the engine and sessions and rebuild them from journal records
    /// `1..=upto_seq` (all committed, so never cut), then call [`RoleMachine::rebuilt`].
    /// The driver may take its time (another thread): until it reports, the machine
    /// applies and opens nothing.
    Rebuild {
        /// Last record to replay.
        upto_seq: u64,
    },
    /// Start serving order entry in `term`: the state holds exactly records `1..=last_seq`
    /// (every committed record), and the journal may be handed to the matching loop.
    OpenOrderEntry {
        /// The term this node leads.
        term: u64,
        /// The journal's last record, all committed.
        last_seq: u64,
    },
    /// Stop serving: stop the matching loop and gateway (no End of Session: clients resume
    /// on the new leader), drop held responses, take the journal back, then call
    /// [`RoleMachine::order_entry_closed`].
    CloseOrderEntry,
    /// Responses for records up to `committed_seq` may leave (the release watermark).
    Release {
        /// Last committed record.
        committed_seq: u64,
    },
}

/// A deliberately wrong rule, planted by the simulation's self-test to show its checks
/// catch it. Never set outside that test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// Serve as soon as this node is leader with what it knows committed applied, without
    /// waiting for an entry of its own term to commit.
    ServeBeforeTermCommit,
    /// Count a lease as three times as long as the followers' promise: a deposed leader
    /// keeps serving while another is elected.
    LeaseTooLong,
    /// Ignore the lease and serve for as long as raft-rs says leader (what the machine did
    /// before it kept a lease: only `check_quorum` ends a cut-off leader's stint).
    IgnoreLease,
    /// Apply and open as if a rebuild finished the moment it was asked for (what the
    /// machine assumed when the driver rebuilt on the replication thread).
    IgnorePendingRebuild,
}

/// Where the node stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Applying what the leader commits; order entry is closed.
    Following,
    /// Order entry is open: the matching loop journals, this machine proposes.
    Serving {
        /// The term this node leads.
        term: u64,
        /// Last record handed to raft.
        proposed_seq: u64,
    },
    /// Leadership was lost; waiting for the driver to close order entry.
    Closing,
}

/// Counters, for logs and the simulation's report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoleStats {
    /// Peer messages refused, by the checks or by raft-rs (stale or duplicated ones, mostly).
    pub step_errors: u64,
    /// Peer messages refused before raft-rs as invalid ([`crate::check`]), a forged sender
    /// included: a broken or hostile peer.
    pub invalid_messages: u64,
    /// Proposals raft-rs dropped.
    pub dropped_proposals: u64,
    /// Times order entry opened.
    pub openings: u64,
    /// Times order entry closed.
    pub step_downs: u64,
    /// Closings because the lease ran out while raft-rs still said leader.
    pub lease_losses: u64,
    /// Leaderships handed on after such a closing ([`Replica::abdicate`]).
    pub abdications: u64,
    /// Vote requests left unanswered in the first `lease_ms` after the start.
    pub votes_deferred: u64,
    /// Rebuilds asked of the driver.
    pub rebuilds: u64,
    /// Records read back from the journal and applied after a rebuild (committed while it
    /// ran).
    pub caught_up_records: u64,
}

/// Most actions one call can queue: a Ready's committed entries are bounded by raft-rs's
/// message size, and the driver drains the queue after every call.
const ACTIONS_MAX: usize = 64 * 1024;

/// Records read back from the journal and handed out to apply per [`RoleMachine::ready`]
/// after a rebuild: bounds the time one call spends on the catch-up (the driver applies
/// them on its Raft thread), so a long catch-up is spread over many calls.
const CATCH_UP_RECORDS_PER_READY_MAX: u64 = 16 * 1024;

/// One cluster member's role logic over a [`Replica`].
pub struct RoleMachine<B: Backend> {
    replica: Replica<B>,
    config: RoleConfig,
    mode: Mode,
    /// Last record the driver was told to apply (or rebuild to).
    applied_seq: u64,
    /// The rebuild asked for (its `upto_seq`) that the driver has not reported done.
    rebuilding_seq: Option<u64>,
    /// The replica's committed sequence number after the previous Ready.
    committed_seq_seen: u64,
    /// Last release watermark handed out while serving.
    released_seq: u64,
    /// When raft-rs ticks next; `None` until the first time input.
    next_tick_ms: Option<u64>,
    /// The latest time input, on this node's clock.
    now_ms: Option<u64>,
    /// The first time input: no vote is granted for `lease_ms` after it.
    started_ms: Option<u64>,
    /// What answered heartbeats prove (see the module docs).
    lease: Lease,
    /// When a heartbeat was last sent early to win a lease before opening.
    beat_forced_ms: Option<u64>,
    actions: Vec<Action>,
    planted_bug: Option<PlantedBug>,
    stats: RoleStats,
}

impl<B: Backend> RoleMachine<B> {
    /// A follower over `replica`. The first action asks the driver to rebuild its state from
    /// the committed journal records.
    pub fn new(replica: Replica<B>, config: RoleConfig) -> RoleMachine<B> {
        assert!(config.tick_ms > 0 && config.proposal_records_max > 0 && config.lease_ms > 0);
        let committed_seq = replica.committed_seq();
        RoleMachine {
            replica,
            config,
            mode: Mode::Following,
            applied_seq: committed_seq,
            rebuilding_seq: Some(committed_seq),
            committed_seq_seen: committed_seq,
            released_seq: 0,
            next_tick_ms: None,
            now_ms: None,
            started_ms: None,
            lease: Lease::default(),
            beat_forced_ms: None,
            actions: vec![Action::Rebuild {
                upto_seq: committed_seq,
            }],
            planted_bug: None,
            stats: RoleStats {
                rebuilds: 1,
                ..RoleStats::default()
            },
        }
    }

    /// Plants a deliberately wrong rule (the simulation's self-test only).
    #[doc(hidden)]
    pub fn plant_bug(&mut self, bug: PlantedBug) {
        self.planted_bug = Some(bug);
    }

    /// Time passed: ticks raft-rs if a tick is due by `now_ms` (at most one: a node that
    /// was paused restarts its schedule from `now_ms` rather than catching up in a burst).
    /// Returns whether [`RoleMachine::ready`] has work: it ticked, or the lease of a
    /// serving node ran out (the next `ready` closes order entry).
    pub fn on_time(&mut self, now_ms: u64) -> bool {
        // Time never goes back: a clock that did would stretch the lease.
        let now_ms = now_ms.max(self.now_ms.unwrap_or(0));
        self.now_ms = Some(now_ms);
        self.started_ms.get_or_insert(now_ms);
        let lapsed = matches!(self.mode, Mode::Serving { .. }) && !self.has_lease();
        let next = *self
            .next_tick_ms
            .get_or_insert(now_ms + self.config.tick_ms);
        if now_ms < next {
            return lapsed;
        }
        self.replica.tick();
        let mut next = next + self.config.tick_ms;
        if next <= now_ms {
            next = now_ms + self.config.tick_ms;
        }
        self.next_tick_ms = Some(next);
        true
    }

    /// When the next tick is due (the driver sleeps at most until then).
    pub fn next_tick_ms(&self) -> Option<u64> {
        self.next_tick_ms
    }

    /// A peer message that arrived authenticated as coming from node `from`. A message
    /// claiming another sender, or one raft-rs refuses, is an error for the driver to log;
    /// the machine stays usable.
    ///
    /// Two kinds are looked at first: a heartbeat answer renews the lease (its echoed
    /// stamp says when the heartbeat left), and a vote request in the first `lease_ms`
    /// after the start goes unanswered: before a crash this node may have answered a
    /// leader's heartbeat, promising not to vote for another until that leader's lease
    /// ends, and raft-rs forgets whom it heard from across a restart.
    pub fn step(&mut self, from: u64, message: Message) -> Result<(), Error> {
        if message.from != from {
            self.stats.step_errors += 1;
            self.stats.invalid_messages += 1;
            return Err(Error::ForgedSender {
                from,
                claimed: message.from,
            });
        }
        // Before anything looks at it: a refused message changes nothing, the lease included.
        if let Err(error) = self.replica.check(from, &message) {
            self.stats.step_errors += 1;
            self.stats.invalid_messages += 1;
            return Err(error);
        }
        match message.get_msg_type() {
            MessageType::MsgHeartbeatResponse => self.take_lease_answer(&message),
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote if !self.may_vote() => {
                self.stats.votes_deferred += 1;
                return Ok(());
            }
            _ => {}
        }
        let result = self.replica.step_checked(message);
        if result.is_err() {
            self.stats.step_errors += 1;
        }
        result
    }

    /// The matching loop journaled records: while serving, propose the ones raft does not
    /// have yet, in batches. Does nothing otherwise.
    pub fn propose_journaled(&mut self) -> Result<(), Error> {
        let Mode::Serving { term, proposed_seq } = self.mode else {
            return Ok(());
        };
        if !self.leads(term) {
            // Deposed: the next `ready` closes order entry; these records will be cut.
            return Ok(());
        }
        let mut proposed_seq = proposed_seq;
        for _ in 0..self.config.proposals_per_call_max {
            let mut batch = Vec::new();
            let range = self.replica.store_mut().backend_mut().read_unproposed(
                proposed_seq,
                self.config.proposal_records_max,
                self.config.proposal_bytes_max,
                &mut batch,
            )?;
            if range.count == 0 {
                break;
            }
            assert_eq!(range.first_seq, proposed_seq + 1);
            if self.replica.propose(batch).is_err() {
                self.stats.dropped_proposals += 1;
                break;
            }
            proposed_seq = range.last_seq();
        }
        self.mode = Mode::Serving { term, proposed_seq };
        Ok(())
    }

    /// The driver stopped the matching loop and gateway and holds the journal again: the
    /// records raft never took are cut and the state is rebuilt from what is committed.
    /// If this node still led (it closed for want of a lease), it first hands leadership
    /// on: the message goes to `send_now` before the journal is reclaimed, which syncs and
    /// may take a while. Returns the voter it was handed to.
    pub fn order_entry_closed(
        &mut self,
        send_now: &mut dyn FnMut(Vec<Message>),
    ) -> Result<Option<u64>, Error> {
        if self.mode != Mode::Closing {
            return Err(Error::Role("order entry closed while not closing".into()));
        }
        // Closed for want of a lease while raft-rs still says leader (it would go on
        // heartbeating, holding the others off their election for up to two timeouts):
        // hand leadership on now that nothing of this term leaves any more.
        let handed_to = self.replica.abdicate().map(|message| {
            let to = message.to;
            send_now(vec![message]);
            to
        });
        if handed_to.is_some() {
            self.stats.abdications += 1;
        }
        let keep_seq = self.replica.log_last_seq();
        self.replica.store_mut().backend_mut().reclaim(keep_seq)?;
        self.mode = Mode::Following;
        self.rebuild();
        Ok(handed_to)
    }

    /// The driver finished the rebuild it was asked for: its state holds records
    /// `1..=upto_seq`. What was committed meanwhile is applied from the next
    /// [`RoleMachine::ready`] on (read back from the journal), and only then may order entry
    /// open.
    pub fn rebuilt(&mut self, upto_seq: u64) -> Result<(), Error> {
        if self.rebuilding_seq != Some(upto_seq) {
            return Err(Error::Role(format!(
                "rebuilt to record {upto_seq}, but the rebuild asked for was {:?}",
                self.rebuilding_seq
            )));
        }
        self.rebuilding_seq = None;
        Ok(())
    }

    /// Whether a rebuild is under way (asked for and not reported done).
    pub fn rebuilding(&self) -> bool {
        self.rebuilding_seq.is_some()
    }

    /// Runs the role rules and raft-rs's Ready protocol. Messages that may leave before
    /// persistence (a leader's appends) go to `send_now` at once, so followers write while
    /// the leader does; the rest are returned in `out`. Then drain [`Self::take_actions`].
    pub fn ready(
        &mut self,
        send_now: &mut dyn FnMut(Vec<Message>),
        messages: &mut Vec<Message>,
    ) -> Result<(), Error> {
        if let Mode::Serving { term, .. } = self.mode {
            if !self.leads(term) {
                self.close();
            } else if !self.has_lease() {
                // Another leader may be elected soon: stop before it can be.
                self.stats.lease_losses += 1;
                self.close();
            }
        }
        if self.mode == Mode::Closing {
            // Nothing is persisted or applied until the journal is this replica's again.
            return Ok(());
        }
        self.maybe_force_heartbeat();
        let mut out = Output::default();
        let stamp = self.heartbeat_stamp();
        let mut send_stamped = |mut early: Vec<Message>| {
            stamp_heartbeats(stamp, &mut early);
            send_now(early);
        };
        // A second round picks up what the first round's advance left ready (a commit index
        // to store); it is a no-op when there is nothing.
        for _ in 0..2 {
            self.replica
                .handle_ready_with(&mut out, &mut send_stamped)?;
        }
        stamp_heartbeats(stamp, &mut out.messages);
        messages.append(&mut out.messages);
        self.check_truncation()?;
        self.take_committed(out.committed)?;
        self.catch_up()?;
        self.maybe_open()?;
        assert!(
            self.actions.len() <= ACTIONS_MAX,
            "role actions not drained"
        );
        Ok(())
    }

    /// The actions queued so far, in order.
    pub fn take_actions(&mut self) -> std::vec::Drain<'_, Action> {
        self.actions.drain(..)
    }

    /// Where the node stands.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The term order entry is open for, if it is.
    pub fn serving_term(&self) -> Option<u64> {
        match self.mode {
            Mode::Serving { term, .. } => Some(term),
            _ => None,
        }
    }

    /// Last record the driver was told to apply.
    pub fn applied_seq(&self) -> u64 {
        self.applied_seq
    }

    /// Counters.
    pub fn stats(&self) -> RoleStats {
        self.stats
    }

    /// The replica (role, term, indices, storage).
    pub fn replica(&self) -> &Replica<B> {
        &self.replica
    }

    /// The replica, mutably (the driver's journal hand-over and crash simulation).
    pub fn replica_mut(&mut self) -> &mut Replica<B> {
        &mut self.replica
    }

    fn leads(&self, term: u64) -> bool {
        self.replica.role() == StateRole::Leader && self.replica.term() == term
    }

    /// Until when (this node's clock, exclusive) the lease holds: `lease_ms` after the
    /// latest heartbeat that a majority, this node included, has answered. 0: no lease.
    pub fn lease_until_ms(&self) -> u64 {
        let term = self.replica.term();
        if self.replica.role() != StateRole::Leader {
            return 0;
        }
        let lease_ms = match self.planted_bug {
            Some(PlantedBug::LeaseTooLong) => 3 * self.config.lease_ms,
            _ => self.config.lease_ms,
        };
        // Peers needed besides this node for a majority.
        let peers_needed = self.replica.voters() / 2;
        if peers_needed == 0 {
            return u64::MAX;
        }
        if self.lease.term != term {
            return 0;
        }
        let mut sent: Vec<u64> = self.lease.answered.iter().map(|&(_, ms)| ms).collect();
        sent.sort_unstable_by(|a, b| b.cmp(a));
        sent.get(peers_needed - 1)
            .map_or(0, |&sent_ms| sent_ms.saturating_add(lease_ms))
    }

    fn has_lease(&self) -> bool {
        self.planted_bug == Some(PlantedBug::IgnoreLease)
            || self.now_ms.is_some_and(|now| now < self.lease_until_ms())
    }

    /// Whether a vote request may reach raft-rs: not before the first `lease_ms` since the
    /// start have passed (see [`RoleMachine::step`]).
    fn may_vote(&self) -> bool {
        match (self.started_ms, self.now_ms) {
            (Some(started), Some(now)) => now >= started.saturating_add(self.config.lease_ms),
            _ => false,
        }
    }

    /// A heartbeat answer: the stamp it echoes, if it is one of this term's, renews the
    /// answering peer's part of the lease.
    fn take_lease_answer(&mut self, message: &Message) {
        let term = self.replica.term();
        if self.replica.role() != StateRole::Leader || message.term != term {
            return;
        }
        let Some((stamp_term, sent_ms)) = read_stamp(message.get_context()) else {
            return;
        };
        // A stamp from the future is not ours (a previous process had another clock).
        if stamp_term != term || self.now_ms.is_none_or(|now| sent_ms > now) {
            return;
        }
        if self.lease.term != term {
            self.lease = Lease {
                term,
                answered: Vec::new(),
            };
        }
        match self
            .lease
            .answered
            .iter_mut()
            .find(|(peer, _)| *peer == message.from)
        {
            Some((_, latest)) => *latest = (*latest).max(sent_ms),
            None => self.lease.answered.push((message.from, sent_ms)),
        }
    }

    /// The stamp for heartbeats leaving in this Ready, if this node leads.
    fn heartbeat_stamp(&self) -> Option<(u64, u64)> {
        let now_ms = self.now_ms?;
        (self.replica.role() == StateRole::Leader).then(|| (self.replica.term(), now_ms))
    }

    /// A leader ready to open but without a lease asks for one at once (at most once a
    /// tick) rather than waiting for the next heartbeat tick.
    fn maybe_force_heartbeat(&mut self) {
        let Some(now_ms) = self.now_ms else {
            return;
        };
        let due = self
            .beat_forced_ms
            .is_none_or(|at| now_ms >= at.saturating_add(self.config.tick_ms));
        if due && self.mode == Mode::Following && self.replica.leader_ready() && !self.has_lease() {
            self.replica.broadcast_heartbeat();
            self.beat_forced_ms = Some(now_ms);
        }
    }

    fn close(&mut self) {
        self.mode = Mode::Closing;
        self.stats.step_downs += 1;
        self.actions.push(Action::CloseOrderEntry);
    }

    fn rebuild(&mut self) {
        // A rebuild is asked for at the start and after a close, and order entry opens only
        // once the previous one finished: they never overlap.
        assert!(
            self.rebuilding_seq.is_none(),
            "a second rebuild while one runs"
        );
        let upto_seq = self.replica.committed_seq();
        self.applied_seq = upto_seq;
        self.rebuilding_seq = Some(upto_seq);
        self.stats.rebuilds += 1;
        self.actions.push(Action::Rebuild { upto_seq });
    }

    /// Whether the driver's state is being rebuilt, so nothing may be applied or opened
    /// (the planted bug pretends rebuilds are instant).
    fn awaiting_rebuild(&self) -> bool {
        self.rebuilding_seq.is_some() && self.planted_bug != Some(PlantedBug::IgnorePendingRebuild)
    }

    /// After a rebuild, applies what was committed while it ran: read back from the
    /// journal (every committed record is in it, persisted before it counted), at most
    /// [`CATCH_UP_RECORDS_PER_READY_MAX`] per call, in batches of a proposal's size.
    fn catch_up(&mut self) -> Result<(), Error> {
        if self.mode != Mode::Following || self.awaiting_rebuild() {
            return Ok(());
        }
        let target_seq = self
            .committed_seq_seen
            .min(self.applied_seq + CATCH_UP_RECORDS_PER_READY_MAX);
        let journal_last = self.replica.store().backend().last_seq();
        if target_seq > journal_last {
            return Err(Error::Role(format!(
                "record {target_seq} is committed but the journal ends at {journal_last}"
            )));
        }
        while self.applied_seq < target_seq {
            let count =
                (target_seq - self.applied_seq).min(u64::from(self.config.proposal_records_max));
            let range = SeqRange {
                first_seq: self.applied_seq + 1,
                // At most `proposal_records_max`, a u32.
                count: u32::try_from(count).unwrap_or(self.config.proposal_records_max),
            };
            let mut data = Vec::new();
            let backend = self.replica.store_mut().backend_mut();
            backend.read(range.first_seq, range.count, &mut data)?;
            self.applied_seq = range.last_seq();
            self.stats.caught_up_records += u64::from(range.count);
            self.actions.push(Action::Apply { range, data });
        }
        Ok(())
    }

    /// A conflict may cut uncommitted records from the log; never committed ones, and never
    /// records this node applied (it applies committed records only).
    fn check_truncation(&mut self) -> Result<(), Error> {
        let Some(from_seq) = self.replica.store_mut().take_truncation() else {
            return Ok(());
        };
        if from_seq <= self.committed_seq_seen || from_seq <= self.applied_seq {
            return Err(Error::Role(format!(
                "a log conflict cut records from {from_seq}, but {} were committed and {} applied",
                self.committed_seq_seen, self.applied_seq
            )));
        }
        Ok(())
    }

    fn take_committed(&mut self, committed: Vec<Committed>) -> Result<(), Error> {
        let committed_seq = self.replica.committed_seq();
        if committed_seq < self.committed_seq_seen {
            return Err(Error::Role(format!(
                "the committed sequence number went back from {} to {committed_seq}",
                self.committed_seq_seen
            )));
        }
        self.committed_seq_seen = committed_seq;
        match self.mode {
            Mode::Following => {
                for entry in committed {
                    // Entries past a gap (committed during a rebuild, or behind a bounded
                    // catch-up) wait: `catch_up` reads them back from the journal in order.
                    if entry.range.count == 0
                        || entry.range.last_seq() <= self.applied_seq
                        || entry.range.first_seq != self.applied_seq + 1
                        || self.awaiting_rebuild()
                    {
                        continue;
                    }
                    self.applied_seq = entry.range.last_seq();
                    self.actions.push(Action::Apply {
                        range: entry.range,
                        data: entry.data,
                    });
                }
                assert!(self.applied_seq <= committed_seq, "applied past the commit");
            }
            Mode::Serving { term, .. } => {
                // Only this term's records commit while serving; the matching loop applied
                // them already. Entries of earlier terms were committed before opening.
                assert!(committed.iter().all(|e| e.term == term));
                if committed_seq > self.released_seq {
                    self.released_seq = committed_seq;
                    self.actions.push(Action::Release { committed_seq });
                }
            }
            Mode::Closing => unreachable!("no Ready runs while closing"),
        }
        Ok(())
    }

    fn maybe_open(&mut self) -> Result<(), Error> {
        if self.mode != Mode::Following || self.replica.role() != StateRole::Leader {
            return Ok(());
        }
        let committed_seq = self.replica.committed_seq();
        let ready = match self.planted_bug {
            Some(PlantedBug::ServeBeforeTermCommit) => true,
            _ => self.replica.leader_ready() && committed_seq == self.replica.log_last_seq(),
        };
        // Open only on the whole committed history: not while the state is rebuilt, nor
        // before what was committed meanwhile is applied.
        if !ready
            || self.awaiting_rebuild()
            || self.applied_seq != committed_seq
            || !self.has_lease()
        {
            return Ok(());
        }
        let journal_last = self.replica.store().backend().last_seq();
        if journal_last != committed_seq
            && self.planted_bug != Some(PlantedBug::ServeBeforeTermCommit)
        {
            return Err(Error::Role(format!(
                "starts leading with the journal at {journal_last} but the log at {committed_seq}"
            )));
        }
        let term = self.replica.term();
        self.mode = Mode::Serving {
            term,
            proposed_seq: journal_last,
        };
        self.released_seq = committed_seq;
        self.stats.openings += 1;
        self.actions.push(Action::OpenOrderEntry {
            term,
            last_seq: journal_last,
        });
        Ok(())
    }
}

/// The lease's evidence: per peer, the latest send time of a heartbeat of `term` that the
/// peer answered.
#[derive(Debug, Default)]
struct Lease {
    term: u64,
    /// (peer, send time on this node's clock).
    answered: Vec<(u64, u64)>,
}

/// Bytes of a heartbeat stamp: term and send time, little-endian.
const STAMP_BYTES: usize = 16;

/// Stamps this leader's outgoing heartbeats with `(term, sent_ms)`. raft-rs puts a context
/// there only for ReadIndex requests, which Keel never makes; followers echo it back.
fn stamp_heartbeats(stamp: Option<(u64, u64)>, messages: &mut [Message]) {
    let Some((term, sent_ms)) = stamp else {
        return;
    };
    for message in messages {
        if message.get_msg_type() == MessageType::MsgHeartbeat && message.term == term {
            let mut context = Vec::with_capacity(STAMP_BYTES);
            context.extend_from_slice(&term.to_le_bytes());
            context.extend_from_slice(&sent_ms.to_le_bytes());
            message.context = context.into();
        }
    }
}

fn read_stamp(context: &[u8]) -> Option<(u64, u64)> {
    if context.len() != STAMP_BYTES {
        return None;
    }
    let (term, sent) = context.split_at(8);
    Some((
        u64::from_le_bytes(term.try_into().ok()?),
        u64::from_le_bytes(sent.try_into().ok()?),
    ))
}
