//! What a peer's raft message must satisfy before raft-rs sees it.
//!
//! raft-rs 0.7 trusts its peers: a heartbeat committing past the end of the log reaches a
//! `fatal!` (an abort under `panic = "abort"`), append entries whose indexes skip conflict
//! with committed entries (`fatal!`), a snapshot makes the next Ready fail (this store never
//! compacts, so snapshots are never sent), and a malformed batch makes the store refuse the
//! Ready, which stops the node. Peers are authenticated, but a node must not die because
//! another one is broken or compromised, so every peer message passes [`check`] first; a
//! message that fails changes nothing (it never reaches raft-rs or the role machine).

use raft::prelude::{EntryType, Message, MessageType};
use raft::Raft;

use crate::batch;
use crate::store::{Backend, Store};

/// Entries one append may carry: raft-rs sends at most `max_size_per_msg` bytes (about a
/// proposal each) per append, so this is far above any real message.
pub const APPEND_ENTRIES_MAX: usize = 4096;

/// Terms at or above this are refused: raft-rs adds 1 to the term unchecked when it
/// campaigns, and no cluster holds 2^62 elections.
pub const TERM_LIMIT: u64 = 1 << 62;

/// Why a peer message was refused.
pub type Invalid = String;

/// Checks one peer message, authenticated as coming from `from`, against this node's Raft
/// state (`replication/README.md`, "Peer messages").
pub fn check<B: Backend>(raft: &Raft<Store<B>>, from: u64, m: &Message) -> Result<(), Invalid> {
    use MessageType as T;
    let kind = m.get_msg_type();
    // Only what a peer legitimately sends: local messages (MsgHup, MsgBeat, MsgPropose, …),
    // snapshots, read-index and transfer requests are never sent between Keel nodes.
    let peer_kind = matches!(
        kind,
        T::MsgAppend
            | T::MsgAppendResponse
            | T::MsgRequestVote
            | T::MsgRequestVoteResponse
            | T::MsgRequestPreVote
            | T::MsgRequestPreVoteResponse
            | T::MsgHeartbeat
            | T::MsgHeartbeatResponse
            | T::MsgTimeoutNow
    );
    if !peer_kind {
        return Err(format!("{kind:?} is never sent by a peer"));
    }
    if m.from != from {
        return Err(format!("claims to be from node {}", m.from));
    }
    if from == raft.id || raft.prs().get(from).is_none() {
        return Err(format!("node {from} is not a peer"));
    }
    if m.term >= TERM_LIMIT || m.log_term >= TERM_LIMIT {
        return Err(format!(
            "term {} (log term {}) out of range",
            m.term, m.log_term
        ));
    }
    if m.to != raft.id {
        return Err(format!("addressed to node {}", m.to));
    }
    if m.has_snapshot() && *m.get_snapshot() != raft::prelude::Snapshot::default() {
        return Err("carries a snapshot".into());
    }
    if kind != T::MsgAppend && !m.entries.is_empty() {
        return Err(format!("{kind:?} carries entries"));
    }
    let last_index = raft.raft_log.last_index();
    match kind {
        // raft-rs commits a heartbeat's index unchecked (`commit_to` is fatal past the end).
        T::MsgHeartbeat if m.commit > last_index => Err(format!(
            "heartbeat commits {} past the log's end {last_index}",
            m.commit
        )),
        T::MsgAppend => check_append(raft, m),
        // A success acknowledges entries this leader sent, so at most its last one.
        T::MsgAppendResponse if !m.reject && m.term == raft.term && m.index > last_index => {
            Err(format!(
                "acknowledges entry {} past the log's end {last_index}",
                m.index
            ))
        }
        _ => Ok(()),
    }
}

/// An append's entries follow its `index` one by one, with terms from its `log_term` up to
/// its `term`, normal entries only, each a well-formed batch continuing the records before.
fn check_append<B: Backend>(raft: &Raft<Store<B>>, m: &Message) -> Result<(), Invalid> {
    if m.entries.len() > APPEND_ENTRIES_MAX {
        return Err(format!("{} entries in one append", m.entries.len()));
    }
    let mut previous_term = m.log_term;
    // Only an entry at `index` of the leader's `log_term` is the one the batch continues;
    // on any other, raft-rs rejects the append (and the leader must hear that rejection
    // to back off), so only the batches' own continuity is checked then.
    let matches_leader = raft.raft_log.term(m.index).ok() == Some(m.log_term);
    let mut seq = next_seq_after(raft, m.index).filter(|_| matches_leader);
    for (i, entry) in m.entries.iter().enumerate() {
        let expected = m
            .index
            .checked_add(i as u64 + 1)
            .ok_or_else(|| format!("entry index overflows after {}", m.index))?;
        if entry.index != expected {
            return Err(format!(
                "entry {} where {expected} was expected",
                entry.index
            ));
        }
        if entry.term < previous_term || entry.term > m.term {
            return Err(format!(
                "entry {} of term {} after term {previous_term}, in a message of term {}",
                entry.index, entry.term, m.term
            ));
        }
        previous_term = entry.term;
        if entry.get_entry_type() != EntryType::EntryNormal {
            return Err(format!("entry {} is a configuration change", entry.index));
        }
        if seq.is_none() && entry.data.is_empty() {
            // An empty entry says nothing about where the next one's records start.
            continue;
        }
        let first_seq = seq.map_or_else(|| first_record_seq(&entry.data), Some);
        // A batch whose first record does not read fails `parse` whatever it expects.
        let range = batch::parse(&entry.data, first_seq.unwrap_or(1))
            .map_err(|error| format!("entry {}: {error}", entry.index))?;
        seq = Some(range.last_seq() + 1);
    }
    Ok(())
}

/// The sequence number of the record after entry `index`, if this node holds that entry
/// (persisted, or still unstable in raft-rs's log) or an earlier one that says.
fn next_seq_after<B: Backend>(raft: &Raft<Store<B>>, index: u64) -> Option<u64> {
    let unstable = &raft.raft_log.unstable;
    let store = raft.raft_log.store();
    let mut at = index;
    // Bounded: each turn goes one entry back, at most through the unstable entries.
    loop {
        if at < unstable.offset || unstable.entries.is_empty() {
            return match at {
                0 => Some(1),
                _ => store.range_of(at).map(|range| range.last_seq() + 1),
            };
        }
        let position = usize::try_from(at - unstable.offset).ok()?;
        let entry = unstable.entries.get(position)?;
        if let Some(last) = last_record_seq(&entry.data) {
            return Some(last + 1);
        }
        at -= 1;
    }
}

fn first_record_seq(data: &[u8]) -> Option<u64> {
    keel_journal::format::read_record(data)
        .ok()
        .map(|(header, _)| header.seq)
}

fn last_record_seq(data: &[u8]) -> Option<u64> {
    let mut last = None;
    batch::for_each(data, |_, seq, _, _| {
        last = Some(seq);
        Ok(())
    })
    .ok()?;
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::MemBackend;
    use crate::replica::{Output, Replica, ReplicaConfig};
    use crate::store::Loaded;
    use crate::Error;
    use keel_journal::format::{record_span, write_record, RecordType};
    use raft::prelude::{Entry, Snapshot};

    /// Node 1 of three, following node 2 in term 2, holding entries 1 and 2 (records 1..=3).
    fn follower() -> Replica<MemBackend> {
        let config = ReplicaConfig {
            id: 1,
            voters: vec![1, 2, 3],
            election_ticks: 10,
            heartbeat_ticks: 2,
            randomized_election: false,
            max_message_bytes: 1 << 20,
        };
        let logger = crate::raft_logger(1);
        let mut replica =
            Replica::new(&config, MemBackend::default(), Loaded::default(), &logger).unwrap();
        let append = message(
            MessageType::MsgAppend,
            0,
            vec![entry(1, 2, 1, 2), entry(2, 2, 3, 1)],
        );
        replica.step(2, append).unwrap();
        replica.handle_ready(&mut Output::default()).unwrap();
        assert_eq!(replica.indices(), (2, 0));
        replica
    }

    fn records(first_seq: u64, count: u64) -> Vec<u8> {
        let mut data = Vec::new();
        for seq in first_seq..first_seq + count {
            let payload = seq.to_le_bytes();
            let mut record = vec![0u8; record_span(payload.len())];
            write_record(&mut record, seq, RecordType::Command, &payload);
            data.extend_from_slice(&record);
        }
        data
    }

    fn entry(index: u64, term: u64, first_seq: u64, count: u64) -> Entry {
        Entry {
            index,
            term,
            data: records(first_seq, count).into(),
            ..Entry::default()
        }
    }

    /// A message of term 2 from node 2 (the leader) to node 1; appends follow entry `index`.
    fn message(kind: MessageType, index: u64, entries: Vec<Entry>) -> Message {
        let mut m = Message::default();
        m.set_msg_type(kind);
        m.from = 2;
        m.to = 1;
        m.term = 2;
        m.index = index;
        m.log_term = if index == 0 { 0 } else { 2 };
        m.entries = entries.into();
        m
    }

    /// What a refused message must leave as it was.
    fn state(replica: &Replica<MemBackend>) -> (u64, u64, u64, u64, u64, usize) {
        let (last, committed) = replica.indices();
        let backend = replica.store().backend();
        (
            replica.term(),
            replica.leader_id(),
            last,
            committed,
            backend.last_seq(),
            backend.records().len(),
        )
    }

    fn refused(replica: &mut Replica<MemBackend>, from: u64, m: Message, why: &str) {
        let before = state(replica);
        match replica.step(from, m) {
            Err(Error::InvalidMessage { reason, .. }) => {
                assert!(
                    reason.contains(why),
                    "refused for {reason:?}, expected {why:?}"
                );
            }
            other => panic!("expected a refusal for {why:?}, got {other:?}"),
        }
        replica.handle_ready(&mut Output::default()).unwrap();
        assert_eq!(
            state(replica),
            before,
            "a refused message changed the state ({why})"
        );
    }

    #[test]
    fn a_heartbeat_committing_past_the_log_is_refused_where_raft_rs_would_abort() {
        let mut replica = follower();
        let mut beat = message(MessageType::MsgHeartbeat, 0, Vec::new());
        beat.commit = 3;
        refused(&mut replica, 2, beat.clone(), "past the log's end");
        // What the check prevents: raft-rs's fatal (a panic here, an abort in release).
        let unchecked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = replica.step_checked(beat);
        }));
        assert!(unchecked.is_err(), "raft-rs took a commit past its log");
        // A heartbeat within the log is taken.
        let mut replica = follower();
        let mut beat = message(MessageType::MsgHeartbeat, 0, Vec::new());
        beat.commit = 2;
        replica.step(2, beat).unwrap();
    }

    #[test]
    fn messages_no_peer_sends_are_refused() {
        let mut replica = follower();
        for kind in [
            MessageType::MsgHup,
            MessageType::MsgBeat,
            MessageType::MsgPropose,
            MessageType::MsgSnapshot,
            MessageType::MsgSnapStatus,
            MessageType::MsgUnreachable,
            MessageType::MsgCheckQuorum,
            MessageType::MsgTransferLeader,
            MessageType::MsgReadIndex,
            MessageType::MsgReadIndexResp,
        ] {
            refused(
                &mut replica,
                2,
                message(kind, 0, Vec::new()),
                "never sent by a peer",
            );
        }
        let mut with_snapshot = message(MessageType::MsgAppend, 2, Vec::new());
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = 9;
        with_snapshot.set_snapshot(snapshot);
        refused(&mut replica, 2, with_snapshot, "snapshot");
    }

    #[test]
    fn senders_and_recipients_must_be_right() {
        let mut replica = follower();
        let beat = message(MessageType::MsgHeartbeat, 0, Vec::new());
        refused(&mut replica, 3, beat.clone(), "claims to be from node 2");
        let mut stranger = beat.clone();
        stranger.from = 9;
        refused(&mut replica, 9, stranger, "not a peer");
        let mut own = beat.clone();
        own.from = 1;
        refused(&mut replica, 1, own, "not a peer");
        let mut elsewhere = beat;
        elsewhere.to = 3;
        refused(&mut replica, 2, elsewhere, "addressed to node 3");
        let mut huge = message(MessageType::MsgRequestVote, 0, Vec::new());
        huge.from = 3;
        huge.term = u64::MAX;
        refused(&mut replica, 3, huge, "out of range");
        let mut vote = message(MessageType::MsgRequestVote, 0, vec![entry(3, 2, 4, 1)]);
        vote.from = 3;
        refused(&mut replica, 3, vote, "carries entries");
    }

    #[test]
    fn appends_must_be_contiguous_ordered_and_well_formed() {
        let mut replica = follower();
        let skip = message(
            MessageType::MsgAppend,
            2,
            vec![entry(3, 2, 4, 1), entry(5, 2, 5, 1)],
        );
        refused(&mut replica, 2, skip, "where 4 was expected");
        let rewrite = message(MessageType::MsgAppend, 2, vec![entry(1, 2, 1, 1)]);
        refused(&mut replica, 2, rewrite, "where 3 was expected");
        let mut backwards = message(
            MessageType::MsgAppend,
            2,
            vec![entry(3, 3, 4, 1), entry(4, 2, 5, 1)],
        );
        backwards.term = 3;
        refused(&mut replica, 2, backwards, "after term 3");
        let future = message(MessageType::MsgAppend, 2, vec![entry(3, 7, 4, 1)]);
        refused(&mut replica, 2, future, "in a message of term 2");
        let gap = message(MessageType::MsgAppend, 2, vec![entry(3, 2, 5, 1)]);
        refused(&mut replica, 2, gap, "where 4 was expected");
        let mut damaged = entry(3, 2, 4, 2);
        let mut data = damaged.data.to_vec();
        data[30] ^= 1;
        damaged.data = data.into();
        refused(
            &mut replica,
            2,
            message(MessageType::MsgAppend, 2, vec![damaged]),
            "entry 3",
        );
        let mut conf = entry(3, 2, 4, 1);
        conf.set_entry_type(EntryType::EntryConfChange);
        refused(
            &mut replica,
            2,
            message(MessageType::MsgAppend, 2, vec![conf]),
            "configuration",
        );
        // The well-formed continuation is taken.
        let good = message(
            MessageType::MsgAppend,
            2,
            vec![entry(3, 2, 4, 2), entry(4, 2, 6, 0)],
        );
        replica.step(2, good).unwrap();
        replica.handle_ready(&mut Output::default()).unwrap();
        assert_eq!(replica.indices().0, 4);
        assert_eq!(replica.store().backend().last_seq(), 5);
    }
}
