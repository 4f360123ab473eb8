// Tests unwrap and panic freely: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! Hostile peers: mutated real raft messages, and random or corrupted frame payloads, fed to
//! a cluster member's production `RoleMachine` as if an authenticated peer sent them. Never
//! a panic (raft-rs's `fatal!` is one; in a release node, an abort), never a Ready that
//! fails afterwards (that stops a node), and a message refused as invalid leaves the
//! machine's state exactly as it was.
//!
//! The real messages come from a small cluster of three role machines over the in-memory
//! backend, driven to elect node 2 and commit a few batches, recorded as they reach node 1.
//! Each case replays that run (it is deterministic), then feeds node 1 one mutated message.
//!
//! CI runs 256 cases; longer locally (a failure prints the minimal case):
//! `KEEL_PEER_FUZZ_CASES=100000 cargo test --release -p keel-replication --test peer_fuzz`

use keel_journal::format::RecordType;
use keel_replication::mem::MemBackend;
use keel_replication::{
    Action, Error, Loaded, Mode, Replica, ReplicaConfig, RoleConfig, RoleMachine,
};
use proptest::prelude::*;
use protobuf::{Message as _, ProtobufEnum as _};
use raft::prelude::{EntryType, Message, MessageType, Snapshot};

const TICK_MS: u64 = 10;
const TARGET: u64 = 1;
const LEADER: u64 = 2;

fn machine(id: u64) -> RoleMachine<MemBackend> {
    let config = ReplicaConfig {
        id,
        voters: vec![1, 2, 3],
        election_ticks: 10,
        heartbeat_ticks: 2,
        randomized_election: false,
        max_message_bytes: 1 << 20,
    };
    let logger = keel_replication::raft_logger(id);
    let replica = Replica::new(&config, MemBackend::default(), Loaded::default(), &logger).unwrap();
    RoleMachine::new(replica, RoleConfig::default())
}

/// Runs a Ready; every message it produced goes to `out`.
fn ready(machine: &mut RoleMachine<MemBackend>, out: &mut Vec<Message>) {
    let mut early = Vec::new();
    machine.ready(&mut |m| early.extend(m), out).unwrap();
    out.append(&mut early);
}

/// Carries out a machine's actions as a driver would (rebuilds finish at once).
fn act(machine: &mut RoleMachine<MemBackend>, out: &mut Vec<Message>) {
    for _ in 0..8 {
        let actions: Vec<Action> = machine.take_actions().collect();
        if actions.is_empty() {
            return;
        }
        for action in actions {
            match action {
                Action::Rebuild { upto_seq } => machine.rebuilt(upto_seq).unwrap(),
                Action::CloseOrderEntry => {
                    machine.order_entry_closed(&mut |m| out.extend(m)).unwrap();
                }
                Action::Apply { .. } | Action::OpenOrderEntry { .. } | Action::Release { .. } => {}
            }
        }
        ready(machine, out);
    }
}

/// Runs the cluster; returns node 1 and the messages it received, in order.
fn recorded_run() -> (RoleMachine<MemBackend>, Vec<Message>) {
    let mut nodes: Vec<RoleMachine<MemBackend>> = (1..=3).map(machine).collect();
    let mut received = Vec::new();
    let mut in_flight: Vec<Message> = Vec::new();
    for step in 0..400u64 {
        let now_ms = step * TICK_MS / 2;
        for (i, node) in nodes.iter_mut().enumerate() {
            // Node 2's clock runs twice as fast, so it campaigns first and leads (with equal
            // timeouts and no randomisation, the three would split their votes forever).
            let rate = if i as u64 + 1 == LEADER { 2 } else { 1 };
            node.on_time(now_ms * rate);
            if matches!(node.mode(), Mode::Serving { .. }) && step % 7 == 0 {
                let backend = node.replica_mut().store_mut().backend_mut();
                for k in 0..3u64 {
                    backend.append_local(RecordType::Command, &(step * 10 + k).to_le_bytes());
                }
                node.propose_journaled().unwrap();
            }
            let mut out = Vec::new();
            ready(node, &mut out);
            act(node, &mut out);
            in_flight.append(&mut out);
        }
        for message in std::mem::take(&mut in_flight) {
            if message.to == TARGET {
                received.push(message.clone());
            }
            let to = message.to as usize - 1;
            let _ = nodes[to].step(message.from, message);
        }
    }
    assert!(
        nodes[LEADER as usize - 1].serving_term().is_some(),
        "no leader"
    );
    let target = nodes.swap_remove(0);
    assert!(
        target.replica().indices().1 > 3,
        "node 1 committed too little"
    );
    (target, received)
}

/// A mutation of a recorded message.
#[derive(Clone, Debug)]
enum Mutation {
    Kind(i32),
    Term(u64),
    LogTerm(u64),
    Index(u64),
    Commit(u64),
    From(u64),
    To(u64),
    Reject(bool),
    Snapshot(u64),
    DropEntry(usize),
    DuplicateEntry(usize),
    EntryIndex(usize, u64),
    EntryTerm(usize, u64),
    EntryConfChange(usize),
    FlipData(usize, usize, u8),
    CutData(usize, usize),
}

/// Values near the real ones, edges, and anything.
fn number() -> impl Strategy<Value = u64> {
    prop_oneof![0..64u64, Just(u64::MAX), Just(u64::MAX - 1), any::<u64>()]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0..20i32).prop_map(Mutation::Kind),
        number().prop_map(Mutation::Term),
        number().prop_map(Mutation::LogTerm),
        number().prop_map(Mutation::Index),
        number().prop_map(Mutation::Commit),
        (0..5u64).prop_map(Mutation::From),
        (0..5u64).prop_map(Mutation::To),
        any::<bool>().prop_map(Mutation::Reject),
        number().prop_map(Mutation::Snapshot),
        any::<usize>().prop_map(Mutation::DropEntry),
        any::<usize>().prop_map(Mutation::DuplicateEntry),
        (any::<usize>(), number()).prop_map(|(i, v)| Mutation::EntryIndex(i, v)),
        (any::<usize>(), number()).prop_map(|(i, v)| Mutation::EntryTerm(i, v)),
        any::<usize>().prop_map(Mutation::EntryConfChange),
        (any::<usize>(), any::<usize>(), 0..8u8).prop_map(|(i, p, b)| Mutation::FlipData(i, p, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(i, p)| Mutation::CutData(i, p)),
    ]
}

fn mutate(m: &mut Message, mutation: &Mutation) {
    let pick = |len: usize, i: usize| (len > 0).then(|| i % len);
    match *mutation {
        Mutation::Kind(kind) => {
            if let Some(kind) = MessageType::from_i32(kind) {
                m.set_msg_type(kind);
            }
        }
        Mutation::Term(v) => m.term = v,
        Mutation::LogTerm(v) => m.log_term = v,
        Mutation::Index(v) => m.index = v,
        Mutation::Commit(v) => m.commit = v,
        Mutation::From(v) => m.from = v,
        Mutation::To(v) => m.to = v,
        Mutation::Reject(v) => m.reject = v,
        Mutation::Snapshot(index) => {
            let mut snapshot = Snapshot::default();
            snapshot.mut_metadata().index = index;
            m.set_snapshot(snapshot);
        }
        Mutation::DropEntry(i) => {
            if let Some(i) = pick(m.entries.len(), i) {
                m.entries.remove(i);
            }
        }
        Mutation::DuplicateEntry(i) => {
            if let Some(i) = pick(m.entries.len(), i) {
                let entry = m.entries[i].clone();
                m.entries.insert(i, entry);
            }
        }
        Mutation::EntryIndex(i, v) => {
            if let Some(i) = pick(m.entries.len(), i) {
                m.entries[i].index = v;
            }
        }
        Mutation::EntryTerm(i, v) => {
            if let Some(i) = pick(m.entries.len(), i) {
                m.entries[i].term = v;
            }
        }
        Mutation::EntryConfChange(i) => {
            if let Some(i) = pick(m.entries.len(), i) {
                m.entries[i].set_entry_type(EntryType::EntryConfChange);
            }
        }
        Mutation::FlipData(i, at, bit) => {
            if let Some(i) = pick(m.entries.len(), i) {
                let mut data = m.entries[i].data.to_vec();
                if let Some(at) = pick(data.len(), at) {
                    data[at] ^= 1 << bit;
                }
                m.entries[i].data = data.into();
            }
        }
        Mutation::CutData(i, at) => {
            if let Some(i) = pick(m.entries.len(), i) {
                let mut data = m.entries[i].data.to_vec();
                data.truncate(pick(data.len(), at).unwrap_or(0));
                m.entries[i].data = data.into();
            }
        }
    }
}

/// What a refused message must leave as it was.
fn state(machine: &RoleMachine<MemBackend>) -> String {
    let replica = machine.replica();
    let store = replica.store();
    format!(
        "{:?} term {} leader {} indices {:?} hard {:?} log_seq {} journal {} applied {} mode {:?} lease {}",
        replica.role(),
        replica.term(),
        replica.leader_id(),
        replica.indices(),
        store.hard_state(),
        store.log_last_seq(),
        store.backend().records().len(),
        machine.applied_seq(),
        machine.mode(),
        machine.lease_until_ms(),
    )
}

/// Feeds one message from `from` and runs a Ready; checks the rules above.
fn feed(target: &mut RoleMachine<MemBackend>, from: u64, message: Message) {
    let before = state(target);
    let result = target.step(from, message);
    if matches!(
        result,
        Err(Error::InvalidMessage { .. } | Error::ForgedSender { .. })
    ) {
        assert_eq!(
            state(target),
            before,
            "a refused message changed the state: {result:?}"
        );
    }
    let mut out = Vec::new();
    ready(target, &mut out);
    act(target, &mut out);
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: keel_testkit::cases::from_env("KEEL_PEER_FUZZ_CASES", 256),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mutated_real_messages_never_crash_a_node(
        pick in any::<usize>(),
        mutations in proptest::collection::vec(mutation(), 1..4),
        from in prop_oneof![Just(LEADER), 0..5u64],
    ) {
        let (mut target, received) = recorded_run();
        let mut message = received[pick % received.len()].clone();
        for mutation in &mutations {
            mutate(&mut message, mutation);
        }
        feed(&mut target, from, message);
    }

    #[test]
    fn corrupted_and_random_frames_never_crash_a_node(
        pick in any::<usize>(),
        flips in proptest::collection::vec((any::<usize>(), 0..8u8), 0..4),
        random in proptest::collection::vec(any::<u8>(), 0..256),
        use_random in any::<bool>(),
    ) {
        let (mut target, received) = recorded_run();
        let mut bytes = if use_random {
            random
        } else {
            received[pick % received.len()].write_to_bytes().unwrap()
        };
        for (at, bit) in flips {
            if !bytes.is_empty() {
                let at = at % bytes.len();
                bytes[at] ^= 1 << bit;
            }
        }
        // As the node does: bytes that do not decode are dropped before the machine.
        if let Ok(message) = Message::parse_from_bytes(&bytes) {
            feed(&mut target, LEADER, message);
        }
    }
}
