//! What the simulation remembers in order to judge a run: the first committed version of
//! every record, checkpoint roots, the leader of every term, and every acknowledgement.
//! Every method returns `Err(description)` on the first violation; the run stops there.

use std::collections::BTreeMap;

use keel_journal::merkle::Hash;

/// Records are compared whole: they are small, and a byte diff is easier to read than a
/// hash mismatch.
pub type RecordBytes = Vec<u8>;

/// A client command the cluster acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// Its sequence number.
    pub seq: u64,
    /// The term of the leader that acknowledged it.
    pub term: u64,
    /// That leader.
    pub node: u64,
}

/// Roots at one sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roots {
    /// Journal Merkle root over records `1..=seq`.
    pub journal: Hash,
    /// State root of the engine after applying record `seq`.
    pub state: Hash,
}

/// The judge.
#[derive(Default)]
pub struct Checker {
    /// Record `seq` as first reported committed, and by whom.
    committed: BTreeMap<u64, (RecordBytes, u64)>,
    /// Roots at checkpoint sequence numbers, and which node first reported them.
    checkpoints: BTreeMap<u64, (Roots, u64)>,
    /// The leader seen in each term, and when it was first seen leading.
    leaders: BTreeMap<u64, (u64, u64)>,
    /// The simulation's time now (set by the cluster every unit).
    pub now: u64,
    /// Order id → its acknowledgement.
    acks: BTreeMap<u64, Ack>,
}

impl Checker {
    /// A node reports record `seq` committed (from Raft, or from its journal on restart).
    /// The committed prefix never changes: it must equal what was first reported.
    pub fn committed(&mut self, node: u64, seq: u64, record: &[u8]) -> Result<(), String> {
        match self.committed.get(&seq) {
            None => {
                self.committed.insert(seq, (record.to_vec(), node));
                Ok(())
            }
            Some((first, first_node)) if first.as_slice() != record => Err(format!(
                "committed record {seq} changed: node {first_node} reported {first:02x?}, \
                 node {node} now holds {record:02x?}"
            )),
            Some(_) => Ok(()),
        }
    }

    /// The record first reported committed at `seq`.
    pub fn committed_record(&self, seq: u64) -> Option<&[u8]> {
        self.committed
            .get(&seq)
            .map(|(record, _)| record.as_slice())
    }

    /// Highest sequence number anybody reported committed.
    pub fn committed_high(&self) -> u64 {
        self.committed.keys().next_back().copied().unwrap_or(0)
    }

    /// A node reports its roots at a checkpoint (only ever for committed records).
    pub fn checkpoint(&mut self, node: u64, seq: u64, roots: Roots) -> Result<(), String> {
        match self.checkpoints.get(&seq) {
            None => {
                self.checkpoints.insert(seq, (roots, node));
                Ok(())
            }
            Some((first, first_node)) if *first != roots => Err(format!(
                "roots at checkpoint {seq} differ: node {first_node} {first:02x?}, node {node} \
                 {roots:02x?}"
            )),
            Some(_) => Ok(()),
        }
    }

    /// Number of checkpoints compared.
    pub fn checkpoint_count(&self) -> usize {
        self.checkpoints.len()
    }

    /// A node is seen leading in `term`: at most one leader per term, ever.
    pub fn leader(&mut self, node: u64, term: u64) -> Result<(), String> {
        let now = self.now;
        match self.leaders.entry(term).or_insert((node, now)) {
            (other, _) if *other != node => Err(format!(
                "two leaders in term {term}: node {other} and node {node}"
            )),
            _ => Ok(()),
        }
    }

    /// A node takes a client command as leader of `term`: no later term may have had a
    /// leader yet (an old leader stops serving before anybody else can be elected).
    pub fn serving(&self, node: u64, term: u64) -> Result<(), String> {
        match self.leaders.range(term + 1..).next() {
            Some((newer, (other, since))) => Err(format!(
                "node {node} took a command as leader of term {term} at time {}, but node \
                 {other} leads term {newer} since time {since}",
                self.now
            )),
            None => Ok(()),
        }
    }

    /// Number of terms that had a leader.
    pub fn terms_led(&self) -> usize {
        self.leaders.len()
    }

    /// The cluster acknowledges order `order_id` to its client.
    pub fn ack(&mut self, order_id: u64, ack: Ack) -> Result<(), String> {
        match self.acks.insert(order_id, ack) {
            Some(before) if before.seq != ack.seq => Err(format!(
                "order {order_id} acknowledged twice at different places: {before:?} and {ack:?}"
            )),
            _ => Ok(()),
        }
    }

    /// Every acknowledgement, by order id.
    pub fn acks(&self) -> &BTreeMap<u64, Ack> {
        &self.acks
    }
}
