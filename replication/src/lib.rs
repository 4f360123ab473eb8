//! Keel's replication: a Raft cluster (TiKV's raft-rs) that copies the journal to followers.
//!
//! - [`batch`]: Raft entry payloads, a run of journal records byte for byte.
//! - [`check`]: what a peer's raft message must satisfy before raft-rs sees it.
//! - [`store`]: raft-rs storage over the journal plus a small index (term and record range
//!   per entry); the [`store::Backend`] says where bytes live and how they become durable.
//! - [`replica`]: one member's Raft state machine, sans IO (raft-rs `RawNode` and the Ready
//!   protocol).
//! - [`node`]: the node's role logic (when to serve order entry, what to apply and release),
//!   a sans-IO state machine the real node and the simulation both drive.
//! - [`mem`]: an in-memory backend that forgets unsynced writes, for the simulation.
//! - [`disk`]: the node's backend: the journal and two small files beside it.
//! - [`transport`]: authenticated, length-prefixed TCP frames between nodes.
#![deny(missing_docs)]

pub mod batch;
pub mod check;
pub mod disk;
pub mod mem;
pub mod node;
pub mod replica;
pub mod store;
pub mod transport;

pub use node::{Action, Mode, RoleConfig, RoleMachine};
pub use replica::{Committed, Output, Replica, ReplicaConfig};
pub use store::{Backend, Loaded, Meta, Store};

/// Errors at the replication boundary.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Raft entry's records do not verify.
    #[error("bad record batch: {0}")]
    BadBatch(String),
    /// The Raft log's storage is inconsistent or failed.
    #[error("raft storage: {0}")]
    Storage(String),
    /// raft-rs refused an operation.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// The journal failed.
    #[error("journal: {0}")]
    Journal(#[from] keel_journal::Error),
    /// A peer message claimed a sender other than the authenticated one.
    #[error("peer {from} sent a message claiming to be from {claimed}")]
    ForgedSender {
        /// The authenticated sender.
        from: u64,
        /// The sender the message named.
        claimed: u64,
    },
    /// A peer message raft-rs must not see ([`check`]): refused, nothing changed. The
    /// driver drops the peer's connection.
    #[error("invalid message from peer {from}: {reason}")]
    InvalidMessage {
        /// The authenticated sender.
        from: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The role rules found an inconsistency (a bug: the node must stop).
    #[error("role: {0}")]
    Role(String),
    /// A file beside the journal failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The Raft index is damaged where cutting it could drop entries this node
    /// acknowledged or knows committed: the node refuses to start rather than forget them.
    #[error(
        "{}: raft index entry {entry} (byte offset {offset}): {problem}; the commit index is \
         {commit}. Refusing to start, since cutting the index here could drop acknowledged \
         entries. Recover this replica from its peers: stop it, move its data directory aside \
         and start it with an empty one while the other nodes run; it catches up from the \
         leader's log (replication/README.md, \"A damaged Raft index\")",
        path.display()
    )]
    IndexDamaged {
        /// The index file.
        path: std::path::PathBuf,
        /// The first entry (1-based Raft index) that cannot be kept.
        entry: u64,
        /// Its byte offset in the file.
        offset: u64,
        /// The commit index in the hard state.
        commit: u64,
        /// What is wrong there.
        problem: IndexDamage,
    },
}

/// Why a damaged Raft index cannot simply be cut back (see [`Error::IndexDamaged`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IndexDamage {
    /// The entry is damaged but a later one is valid: damage in the middle of the file, not
    /// a torn tail (a crash only ever tears the last, unsynced writes).
    #[error("damaged, but entry {valid_after} after it is valid (damage in the middle)")]
    Middle {
        /// The first valid entry after the damage.
        valid_after: u64,
    },
    /// The index ends (torn, damaged or zeroed) at or below the commit index.
    #[error("missing or damaged at or below the commit index")]
    BelowCommit,
    /// The entry is committed but the journal ends before its records.
    #[error("committed, but the journal ends at record {journal_last_seq}, before its records")]
    RecordsMissing {
        /// The journal's last record.
        journal_last_seq: u64,
    },
}

/// A logger for raft-rs that forwards warnings and errors to `tracing` (raft-rs logs with
/// slog; its debug chatter is dropped).
pub fn raft_logger(node_id: u64) -> slog::Logger {
    slog::Logger::root(TracingDrain { node_id }, slog::o!())
}

struct TracingDrain {
    node_id: u64,
}

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(
        &self,
        record: &slog::Record<'_>,
        _values: &slog::OwnedKVList,
    ) -> Result<(), slog::Never> {
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(node = self.node_id, "raft: {}", record.msg());
            }
            slog::Level::Warning => {
                tracing::warn!(node = self.node_id, "raft: {}", record.msg());
            }
            slog::Level::Info => {
                tracing::debug!(node = self.node_id, "raft: {}", record.msg());
            }
            _ => {}
        }
        Ok(())
    }
}
