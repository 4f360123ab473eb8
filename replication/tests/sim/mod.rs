//! A deterministic simulation of a Keel cluster: 3 or 5 nodes, a simulated network and a
//! logical clock, all driven by one seed. See `tests/simulation.rs` for what it checks.

pub mod checker;
pub mod host;
pub mod workload;

use std::collections::{BTreeMap, BTreeSet};

use keel_engine::{Command, EngineConfig};
use keel_journal::format::{read_record, RECORD_HEADER_BYTES};
use keel_journal::merkle::{Hash, MerkleFrontier};
use keel_journal::snapshot::state_root;
use keel_replication::node::PlantedBug;
use keel_replication::{Backend, ReplicaConfig};
use raft::prelude::Message;

use checker::{Ack, Checker, Roots};
use host::{Effects, Live, Node, Reply};
use keel_testkit::rng::Rng;
use workload::{Client, Outcome, State, RETRY_AFTER};

/// Logical time units per Raft tick. Messages take a few units, so several can cross
/// between two ticks and nodes tick at different phases.
pub const TICK_UNITS: u64 = 10;

/// After the faults are healed the cluster must finish the clients' work and agree within
/// this many time units, or the run fails as a stall.
pub const SETTLE_UNITS: u64 = 60_000;

/// A deliberately wrong node behaviour, to show the checker catches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// The leader acknowledges a command as soon as it journals it (before it is synced or
    /// committed), instead of waiting for the Raft commit.
    AckOnAppend,
    /// Planted in the production role machine: a new leader serves before an entry of its
    /// own term is committed.
    ServeBeforeTermCommit,
    /// Planted in the production role machine: a leader counts its lease three times as
    /// long as its followers' promise not to elect another.
    LeaseTooLong,
    /// Planted in the production role machine: no lease at all, a leader serves until
    /// raft-rs's `check_quorum` steps it down.
    IgnoreLease,
    /// Planted in the production role machine: it applies and opens order entry as if
    /// every rebuild finished the moment it was asked for.
    IgnorePendingRebuild,
}

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct SimConfig {
    /// Everything else follows from it.
    pub seed: u64,
    /// A planted bug, or none.
    pub bug: Option<Bug>,
}

/// What a run did (equal for equal seeds: the determinism test compares them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Cluster size.
    pub nodes: usize,
    /// Last committed sequence number at the end.
    pub final_seq: u64,
    /// Journal root at the end.
    pub journal_root: Hash,
    /// State root at the end.
    pub state_root: Hash,
    /// Client orders acknowledged.
    pub acked: usize,
    /// Retries refused as duplicates (the first attempt was taken, its ack lost).
    pub duplicates: usize,
    /// Terms that had a leader.
    pub terms: usize,
    /// Checkpoints whose roots were compared.
    pub checkpoints: usize,
    /// Node crashes.
    pub crashes: u64,
    /// Partitions.
    pub partitions: u64,
    /// Pauses.
    pub pauses: u64,
    /// Messages delivered, dropped and duplicated.
    pub delivered: u64,
    /// Messages lost (random drops, partitions, down nodes).
    pub dropped: u64,
    /// Extra copies sent.
    pub duplicated: u64,
    /// Engine rebuilds (restarts and step-downs).
    pub rebuilds: u64,
    /// Closings of order entry because a lease ran out while still leader.
    pub lease_losses: u64,
    /// Leaderships handed on after such a closing.
    pub abdications: u64,
    /// Vote requests a freshly (re)started node left unanswered.
    pub votes_deferred: u64,
    /// Records committed during a rebuild, applied after it from the journal.
    pub caught_up_records: u64,
    /// Logical time at the end.
    pub time: u64,
}

/// Fault intensities, drawn per seed so that some runs are calm and some are chaotic.
struct Faults {
    /// Message loss, per mille.
    drop: u64,
    /// Message duplication, per mille.
    duplicate: u64,
    /// Messages delayed far beyond the usual, per mille (reordering).
    reorder: u64,
    /// Usual delay: 1..=max_delay units.
    max_delay: u64,
    /// Mean time units between crashes.
    crash_every: u64,
    /// Mean time units between partitions.
    partition_every: u64,
    /// Mean time units between pauses (a node stops, as in a long GC or SIGSTOP, and
    /// later resumes with everything queued for it).
    pause_every: u64,
    /// Length of the faulty phase.
    duration: u64,
    /// Chance per time unit that a leader's replication thread runs, per mille (lower:
    /// unproposed records linger and batches grow).
    replicate: u64,
}

struct InFlight {
    from: u64,
    to: u64,
    message: Message,
}

struct Request {
    client: usize,
    node: usize,
    command: Command,
}

struct Cluster {
    seed: u64,
    bug: Option<Bug>,
    rng: Rng,
    now: u64,
    nodes: Vec<Node>,
    clients: Vec<Client>,
    checker: Checker,
    faults: Faults,
    healed: bool,
    /// Messages in flight, by delivery time and send order.
    network: BTreeMap<(u64, u64), InFlight>,
    requests: BTreeMap<(u64, u64), Request>,
    serial: u64,
    /// Partition group of each node; nodes in different groups cannot talk.
    groups: Vec<u8>,
    /// Links cut in one direction only.
    one_way: BTreeSet<(u64, u64)>,
    partition_until: u64,
    /// Per node: it does nothing before this time (messages for it wait).
    paused_until: Vec<u64>,
    outcomes: BTreeMap<u64, Outcome>,
    crashes: u64,
    partitions: u64,
    pauses: u64,
    delivered: u64,
    dropped: u64,
    duplicated: u64,
}

/// Runs one seed. `Err` describes the first violation (or stall) found.
pub fn run(config: SimConfig) -> Result<Report, String> {
    let mut cluster = Cluster::new(config)?;
    cluster.run()?;
    cluster.final_check()
}

impl Cluster {
    fn new(config: SimConfig) -> Result<Cluster, String> {
        let mut rng = Rng::new(config.seed);
        let size = if rng.chance(250) { 5 } else { 3 };
        let voters: Vec<u64> = (1..=size as u64).collect();
        let mut checker = Checker::default();
        let mut nodes = Vec::new();
        // In a third of the runs, deposed leaders close order entry (and so discard their
        // unproposed records) late.
        let lagging = rng.chance(333);
        let mut drawn = Vec::new();
        for id in 1..=size as u64 {
            let replica_config = ReplicaConfig {
                id,
                voters: voters.clone(),
                // Per node, from the seed: deterministic, yet nodes time out at different
                // moments, so elections are not lockstep.
                election_ticks: rng.range(10, 20) as usize,
                heartbeat_ticks: 3,
                randomized_election: false,
                // Sometimes small, so appends are split over several messages.
                max_message_bytes: if rng.chance(300) {
                    rng.range(200, 2000)
                } else {
                    64 * 1024
                },
            };
            // Engine sizing changes speed, never results: give each node its own, and the
            // state roots must still agree.
            let engine_config = EngineConfig {
                capacity_orders: rng.range(16, 4096) as usize,
                price_window_bits: rng.range(6, 12) as u32,
            };
            let clock_offset = rng.below(TICK_UNITS);
            let close_lag = if lagging { rng.range(1, 200) as u32 } else { 0 };
            // A rebuild takes up to 12 ticks: the node keeps answering Raft meanwhile, and
            // may even win an election before it can serve.
            let rebuild_lag = rng.range(0, 12 * TICK_UNITS) as u32;
            drawn.push((
                replica_config,
                engine_config,
                (clock_offset, close_lag, rebuild_lag),
            ));
        }
        // Every node's lease rests on the shortest election timeout of any voter.
        let election_ticks_min = drawn
            .iter()
            .map(|(r, _, _)| r.election_ticks as u64)
            .min()
            .unwrap_or(10);
        let planted = match config.bug {
            Some(Bug::ServeBeforeTermCommit) => Some(PlantedBug::ServeBeforeTermCommit),
            Some(Bug::LeaseTooLong) => Some(PlantedBug::LeaseTooLong),
            Some(Bug::IgnoreLease) => Some(PlantedBug::IgnoreLease),
            Some(Bug::IgnorePendingRebuild) => Some(PlantedBug::IgnorePendingRebuild),
            Some(Bug::AckOnAppend) | None => None,
        };
        for (replica_config, engine_config, timing) in drawn {
            nodes.push(Node::new(
                (replica_config, host::role_config(election_ticks_min)),
                engine_config,
                timing,
                planted,
                &mut checker,
            )?);
        }
        let faults = Faults {
            drop: rng.below(150),
            duplicate: rng.below(100),
            reorder: rng.below(100),
            max_delay: rng.range(2, 20),
            crash_every: rng.range(300, 4000),
            partition_every: rng.range(300, 3000),
            pause_every: rng.range(300, 3000),
            duration: rng.range(3000, 6000),
            replicate: rng.range(50, 900),
        };
        let mut plans = rng.fork();
        let clients = (0..rng.range(2, 5) as usize)
            .map(|index| Client::new(index, plans.range(50, 300) as usize, &mut plans))
            .collect();
        Ok(Cluster {
            seed: config.seed,
            bug: config.bug,
            rng,
            now: 0,
            groups: vec![0; size],
            nodes,
            clients,
            checker,
            faults,
            healed: false,
            network: BTreeMap::new(),
            requests: BTreeMap::new(),
            serial: 0,
            one_way: BTreeSet::new(),
            partition_until: 0,
            paused_until: vec![0; size],
            outcomes: BTreeMap::new(),
            crashes: 0,
            partitions: 0,
            pauses: 0,
            delivered: 0,
            dropped: 0,
            duplicated: 0,
        })
    }

    fn run(&mut self) -> Result<(), String> {
        loop {
            if !self.healed && self.now >= self.faults.duration {
                self.heal()?;
            }
            if self.healed && self.quiet() {
                return Ok(());
            }
            if self.now > self.faults.duration + SETTLE_UNITS {
                return Err(format!("no progress: {}", self.describe()));
            }
            if !self.healed {
                self.inject_faults();
            }
            self.step_time()?;
            self.now += 1;
        }
    }

    /// One unit of logical time: restarts and partitions that end now, ticks, deliveries,
    /// clients, and the leaders' replication threads.
    fn step_time(&mut self) -> Result<(), String> {
        let now = self.now;
        self.checker.now = now;
        for i in 0..self.nodes.len() {
            if self.nodes[i]
                .down
                .as_ref()
                .is_some_and(|d| d.restart_at <= now)
            {
                self.nodes[i].restart(&mut self.checker)?;
            }
        }
        if self.partition_until <= now {
            self.groups.iter_mut().for_each(|g| *g = 0);
            self.one_way.clear();
        }
        for i in 0..self.nodes.len() {
            if self.paused_until[i] <= now {
                let clock = now + self.nodes[i].clock_offset;
                self.on_node(i, |live, id, checker, fx| {
                    live.on_time(id, clock, checker, fx)
                })?;
            }
        }
        while let Some(entry) = self.network.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let InFlight { from, to, message } = entry.remove();
            let i = (to - 1) as usize;
            if self.paused_until[i] > now {
                // Held until the node resumes (in send order, give or take a little).
                let at = self.paused_until[i] + self.rng.below(3);
                self.serial += 1;
                self.network
                    .insert((at, self.serial), InFlight { from, to, message });
                continue;
            }
            if self.nodes[i].live.is_none() || self.blocked(from, to) {
                self.dropped += 1;
                continue;
            }
            self.delivered += 1;
            self.on_node(i, move |live, id, checker, fx| {
                live.step(id, message, checker, fx)
            })?;
        }
        while let Some(entry) = self.requests.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let request = entry.remove();
            if self.paused_until[request.node] > now {
                let at = self.paused_until[request.node] + self.rng.below(3);
                self.serial += 1;
                self.requests.insert((at, self.serial), request);
                continue;
            }
            self.deliver_request(request)?;
        }
        for c in 0..self.clients.len() {
            self.client_acts(c);
        }
        for i in 0..self.nodes.len() {
            // The replication thread runs at its own pace; skipping some units lets records
            // pile up into larger batches.
            if self.paused_until[i] <= now && self.rng.chance(self.faults.replicate) {
                self.on_node(i, |live, id, checker, fx| live.replicate(id, checker, fx))?;
            }
        }
        self.check_leases()
    }

    /// At no instant do two nodes serve order entry each holding a lease. Leases are
    /// durations on each node's own clock; this node's clock reads `now + clock_offset`.
    fn check_leases(&self) -> Result<(), String> {
        let holders: Vec<(u64, u64, u64)> = self
            .nodes
            .iter()
            .filter_map(|node| {
                let live = node.live.as_ref()?;
                let term = live.open_term()?;
                let until = live.role.lease_until_ms();
                let clock = self.now + node.clock_offset;
                (clock < until).then(|| (node.id, term, until - node.clock_offset))
            })
            .collect();
        if holders.len() > 1 {
            return Err(format!(
                "overlapping leases at time {}: (node, term, lease end) {holders:?}",
                self.now
            ));
        }
        Ok(())
    }

    /// Runs an operation on node `i` if it is up, then routes what it produced.
    fn on_node(
        &mut self,
        i: usize,
        op: impl FnOnce(&mut Live, u64, &mut Checker, &mut Effects) -> Result<(), String>,
    ) -> Result<(), String> {
        let node = &mut self.nodes[i];
        let Some(live) = node.live.as_mut() else {
            return Ok(());
        };
        let mut fx = Effects::default();
        op(live, node.id, &mut self.checker, &mut fx)?;
        for message in fx.messages {
            self.send(message);
        }
        for (order_id, client, ack) in fx.acks {
            self.acknowledge(order_id, client, ack)?;
        }
        Ok(())
    }

    fn blocked(&self, from: u64, to: u64) -> bool {
        self.groups[(from - 1) as usize] != self.groups[(to - 1) as usize]
            || self.one_way.contains(&(from, to))
    }

    fn delay(&mut self) -> u64 {
        if self.rng.chance(self.faults.reorder) {
            self.rng
                .range(self.faults.max_delay, 20 * self.faults.max_delay)
        } else {
            self.rng.range(1, self.faults.max_delay)
        }
    }

    fn send(&mut self, message: Message) {
        let (from, to) = (message.from, message.to);
        if self.blocked(from, to) || self.rng.chance(self.faults.drop) {
            self.dropped += 1;
            return;
        }
        if self.rng.chance(self.faults.duplicate) {
            self.duplicated += 1;
            let at = self.now + self.delay();
            self.serial += 1;
            self.network.insert(
                (at, self.serial),
                InFlight {
                    from,
                    to,
                    message: message.clone(),
                },
            );
        }
        let at = self.now + self.delay();
        self.serial += 1;
        self.network
            .insert((at, self.serial), InFlight { from, to, message });
    }

    fn client_acts(&mut self, c: usize) {
        let now = self.now;
        let command = match self.clients[c].state {
            State::Idle { at } if at <= now => match self.clients[c].next_command() {
                Some(command) => command,
                None => {
                    self.clients[c].state = State::Done;
                    return;
                }
            },
            State::Waiting { order, retry_at } if retry_at <= now => Command::New(order),
            _ => return,
        };
        let hint = self.clients[c].leader_hint;
        let node = if hint != 0 && self.rng.chance(800) {
            (hint - 1) as usize
        } else {
            self.rng.below(self.nodes.len() as u64) as usize
        };
        self.clients[c].state = match command {
            Command::New(order) => State::Waiting {
                order,
                retry_at: now + RETRY_AFTER,
            },
            _ => State::Idle {
                at: now + self.clients[c].think(&mut self.rng),
            },
        };
        if self.rng.chance(self.faults.drop) {
            return;
        }
        let at = now + self.delay();
        self.serial += 1;
        self.requests.insert(
            (at, self.serial),
            Request {
                client: c,
                node,
                command,
            },
        );
    }

    fn deliver_request(&mut self, request: Request) -> Result<(), String> {
        let Request {
            client,
            node,
            command,
        } = request;
        let tracked = matches!(command, Command::New(_)).then_some(client);
        let id = self.nodes[node].id;
        let Some(live) = self.nodes[node].live.as_mut() else {
            return Ok(());
        };
        let reply = live.accept(id, &command, tracked, &mut self.checker)?;
        // Replies travel back over the same lossy network (an acknowledgement is released
        // all the same: the checker records what the node released, not what arrived).
        let lost = self.rng.chance(self.faults.drop);
        let waiting_for = match self.clients[client].state {
            State::Waiting { order, .. } => Some(order.order_id),
            _ => None,
        };
        let this_order = match command {
            Command::New(order) => Some(order.order_id),
            _ => None,
        };
        match reply {
            Reply::NotLeader { hint } if !lost => {
                self.clients[client].leader_hint = hint;
                if let State::Waiting { retry_at, .. } = &mut self.clients[client].state {
                    let soon = self.now + self.rng.range(10, 40);
                    *retry_at = (*retry_at).min(soon);
                }
            }
            Reply::Duplicate if !lost && waiting_for.is_some() && waiting_for == this_order => {
                if let Some(order_id) = this_order {
                    self.outcomes.entry(order_id).or_insert(Outcome::Duplicate);
                }
                self.clients[client].state = State::Idle {
                    at: self.now + self.clients[client].think(&mut self.rng),
                };
            }
            Reply::Appended { seq, term } if self.bug == Some(Bug::AckOnAppend) => {
                if let Some(order_id) = this_order {
                    self.acknowledge(
                        order_id,
                        client,
                        Ack {
                            seq,
                            term,
                            node: id,
                        },
                    )?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn acknowledge(&mut self, order_id: u64, client: usize, ack: Ack) -> Result<(), String> {
        self.checker.ack(order_id, ack)?;
        self.outcomes
            .entry(order_id)
            .or_insert(Outcome::Acked(ack.seq));
        if self.rng.chance(self.faults.drop) {
            // The response is lost: the client will retry and hear "duplicate".
            return Ok(());
        }
        let c = &mut self.clients[client];
        if let State::Waiting { order, .. } = c.state {
            if order.order_id == order_id {
                c.leader_hint = ack.node;
                c.state = State::Idle {
                    at: self.now + c.think(&mut self.rng),
                };
            }
        }
        Ok(())
    }

    fn leader_index(&self) -> Option<usize> {
        self.nodes.iter().position(|n| {
            n.live
                .as_ref()
                .is_some_and(|l| l.role.replica().role() == raft::StateRole::Leader)
        })
    }

    fn inject_faults(&mut self) {
        let n = self.nodes.len();
        if self.partition_until <= self.now && self.rng.below(self.faults.partition_every) == 0 {
            self.partitions += 1;
            self.partition_until = self.now + self.rng.range(50, 1500);
            let ids: Vec<u64> = (1..=n as u64).collect();
            match self.rng.below(5) {
                // The leader alone on its side.
                0 => {
                    let leader = self.leader_index().unwrap_or(0);
                    self.groups[leader] = 1;
                }
                // A random minority cut off together.
                1 => {
                    let size = self.rng.range(1, ((n - 1) / 2) as u64);
                    for _ in 0..size {
                        let i = self.rng.below(n as u64) as usize;
                        self.groups[i] = 1;
                    }
                }
                // Random groups: often no side has a majority.
                2 => {
                    for g in &mut self.groups {
                        *g = self.rng.below(3) as u8;
                    }
                }
                // Some links cut in one direction only (a leader that can send but not
                // hear, a follower that hears but cannot answer).
                3 => {
                    for &from in &ids {
                        for &to in &ids {
                            if from != to && self.rng.chance(300) {
                                self.one_way.insert((from, to));
                            }
                        }
                    }
                }
                // The leader cannot hear anybody (its heartbeats still go out).
                _ => {
                    let leader = self.leader_index().map_or(1, |i| i as u64 + 1);
                    for &from in &ids {
                        if from != leader {
                            self.one_way.insert((from, leader));
                        }
                    }
                }
            }
        }
        if self.rng.below(self.faults.pause_every) == 0 {
            // Mostly the leader: a paused leader that wakes up deposed, with client commands
            // queued for it, is where stale leadership bites.
            let victim = match self.leader_index() {
                Some(leader) if self.rng.chance(700) => leader,
                _ => self.rng.below(n as u64) as usize,
            };
            self.pauses += 1;
            self.paused_until[victim] = self.now + self.rng.range(50, 600);
        }
        if self.rng.below(self.faults.crash_every) == 0 {
            let victim = match self.leader_index() {
                Some(leader) if self.rng.chance(500) => leader,
                _ => self.rng.below(n as u64) as usize,
            };
            if self.nodes[victim].live.is_some() {
                self.crashes += 1;
                let restart_at = self.now + self.rng.range(20, 1000);
                let rng = &mut self.rng;
                self.nodes[victim].crash(restart_at, &mut |unsynced| {
                    rng.below(unsynced as u64 + 1) as usize
                });
            }
        }
    }

    /// Ends the faulty phase: every node up, every link whole, no more loss.
    fn heal(&mut self) -> Result<(), String> {
        self.healed = true;
        self.faults.drop = 0;
        self.faults.duplicate = 0;
        self.faults.reorder = 0;
        self.partition_until = self.now;
        self.groups.iter_mut().for_each(|g| *g = 0);
        self.one_way.clear();
        self.paused_until.iter_mut().for_each(|p| *p = 0);
        for node in &mut self.nodes {
            node.restart(&mut self.checker)?;
        }
        Ok(())
    }

    /// Every client is done and every node holds the same fully committed log, with one
    /// leader serving and nothing left to propose.
    fn quiet(&self) -> bool {
        if !self.clients.iter().all(Client::is_done) {
            return false;
        }
        let mut lives = Vec::new();
        for node in &self.nodes {
            match &node.live {
                Some(live) => lives.push(live),
                None => return false,
            }
        }
        let (last, commit) = lives[0].role.replica().indices();
        let seq = lives[0].committed_seq();
        let serving = lives.iter().filter(|l| l.serving.is_some()).count();
        serving == 1
            && commit == last
            && lives.iter().all(|l| {
                l.role.replica().indices() == (last, commit)
                    && l.committed_seq() == seq
                    && l.applied_seq == seq
                    && l.role.replica().store().backend().last_seq() == seq
            })
    }

    fn describe(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| match &n.live {
                Some(l) => format!(
                    "node {} {:?} term {} indices {:?} committed_seq {} applied {} journal {} serving {:?}",
                    n.id,
                    l.role.replica().role(),
                    l.role.replica().term(),
                    l.role.replica().indices(),
                    l.committed_seq(),
                    l.applied_seq,
                    l.role.replica().store().backend().last_seq(),
                    l.serving
                ),
                None => format!("node {} down", n.id),
            })
            .collect();
        let clients: Vec<String> = self
            .clients
            .iter()
            .map(|c| format!("client {} {:?}", c.index, c.state))
            .collect();
        format!(
            "seed {} time {}; {}; {}; {} messages in flight",
            self.seed,
            self.now,
            nodes.join("; "),
            clients.join("; "),
            self.network.len()
        )
    }

    /// The checks at the end of a run, on every replica (all are up after the heal).
    fn final_check(&mut self) -> Result<Report, String> {
        let final_seq = self.nodes[0].live.as_ref().map_or(0, |l| l.committed_seq());
        if self.checker.committed_high() > final_seq {
            return Err(format!(
                "record {} was reported committed but the cluster ends at {final_seq}",
                self.checker.committed_high()
            ));
        }
        let mut reference: Option<Roots> = None;
        for node in &self.nodes {
            let id = node.id;
            let live = node
                .live
                .as_ref()
                .ok_or_else(|| format!("node {id} is down at the end"))?;
            let backend = live.role.replica().store().backend();
            let records = backend.records();
            if (records.len() as u64) < final_seq || live.committed_seq() != final_seq {
                return Err(format!("node {id} ends behind: {}", self.describe()));
            }
            // The committed prefix never changed (check 4), on every replica.
            let mut frontier = MerkleFrontier::new();
            let mut orders: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
            for (i, record) in records[..final_seq as usize].iter().enumerate() {
                let seq = i as u64 + 1;
                if self.checker.committed_record(seq) != Some(record.as_slice()) {
                    return Err(format!(
                        "node {id}: record {seq} is not the one first committed"
                    ));
                }
                let (_, payload) =
                    read_record(record).map_err(|d| format!("node {id}: record {seq}: {d:?}"))?;
                frontier.push(&record[..RECORD_HEADER_BYTES + payload.len()]);
                if let Ok(Command::New(order)) = Command::decode(payload) {
                    orders.entry(order.order_id).or_default().push(seq);
                }
            }
            // Roots agree across replicas at the final sequence number (check 2), and the
            // node's incrementally kept root matches the one recomputed from its journal.
            let roots = Roots {
                journal: frontier.root(),
                state: state_root(&live.engine),
            };
            if live.frontier.root() != roots.journal || live.applied_seq != final_seq {
                return Err(format!(
                    "node {id}: its running journal root is not its journal's"
                ));
            }
            match reference {
                None => reference = Some(roots),
                Some(first) if first != roots => {
                    return Err(format!(
                        "roots at {final_seq} differ: node 1 {first:02x?}, node {id} {roots:02x?}"
                    ))
                }
                Some(_) => {}
            }
            self.checker.checkpoint(id, final_seq, roots)?;
            // No order id is ever committed twice (the matching loop refuses reuse).
            if let Some((order_id, seqs)) = orders.iter().find(|(_, seqs)| seqs.len() > 1) {
                return Err(format!(
                    "node {id}: order {order_id} committed more than once, at {seqs:?}"
                ));
            }
            // Every acknowledged order is there exactly once, where it was acknowledged,
            // in an entry of the acknowledging leader's term (check 1).
            for (order_id, ack) in self.checker.acks() {
                let seqs = orders.get(order_id).map_or(&[][..], |s| s.as_slice());
                if seqs != [ack.seq] {
                    return Err(format!(
                        "node {id}: order {order_id} acknowledged at {} (term {}, by node {}) \
                         but committed at {seqs:?}",
                        ack.seq, ack.term, ack.node
                    ));
                }
                let term = live
                    .role
                    .replica()
                    .store()
                    .metas()
                    .iter()
                    .find(|m| m.range.first_seq <= ack.seq && ack.seq <= m.range.last_seq())
                    .map(|m| m.term);
                if term != Some(ack.term) {
                    return Err(format!(
                        "node {id}: order {order_id} acknowledged in term {} but its entry has \
                         term {term:?}",
                        ack.term
                    ));
                }
            }
            // A retry refused as a duplicate means the first attempt was taken.
            for (order_id, outcome) in &self.outcomes {
                if *outcome == Outcome::Duplicate && !orders.contains_key(order_id) {
                    return Err(format!(
                        "order {order_id} was refused as a duplicate but never committed"
                    ));
                }
            }
        }
        let roots = reference.unwrap_or(Roots {
            journal: [0; 32],
            state: [0; 32],
        });
        Ok(Report {
            nodes: self.nodes.len(),
            final_seq,
            journal_root: roots.journal,
            state_root: roots.state,
            acked: self.checker.acks().len(),
            duplicates: self
                .outcomes
                .values()
                .filter(|o| **o == Outcome::Duplicate)
                .count(),
            terms: self.checker.terms_led(),
            checkpoints: self.checker.checkpoint_count(),
            crashes: self.crashes,
            partitions: self.partitions,
            pauses: self.pauses,
            delivered: self.delivered,
            dropped: self.dropped,
            duplicated: self.duplicated,
            rebuilds: self.nodes.iter().map(|n| n.stats().rebuilds).sum(),
            lease_losses: self.nodes.iter().map(|n| n.stats().role.lease_losses).sum(),
            abdications: self.nodes.iter().map(|n| n.stats().role.abdications).sum(),
            caught_up_records: self
                .nodes
                .iter()
                .map(|n| n.stats().role.caught_up_records)
                .sum(),
            votes_deferred: self
                .nodes
                .iter()
                .map(|n| n.stats().role.votes_deferred)
                .sum(),
            time: self.now,
        })
    }
}
