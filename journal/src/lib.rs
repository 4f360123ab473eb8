//! Keel's journal: the append-only, checksummed log of the node's inputs, the snapshots
//! taken from it, and the Merkle roots that commit to both.
//!
//! The matching loop appends each sequenced input into a memory-mapped segment through the
//! [`Appender`] (a copy and a release store, nothing more): an engine command, or a node
//! input [`envelope`] that carries one with its arrival time and client message. A replica
//! appends byte-for-byte copies of its leader's records ([`Appender::append_copy`]). Other
//! threads follow the appender: the flusher makes records durable (io_uring `fdatasync`,
//! group commit), records the durable point in checksummed markers in the segment headers
//! and publishes the durable watermark; [`Reader`]s tail the log for replication, the
//! [`snapshot`]ter (which writes the engine state at a durable sequence number with its
//! state and journal roots, see [`merkle`]) and market data.
//!
//! Opening a journal recovers it ([`recovery`]): checksums and sequence continuity are
//! verified, a torn tail is truncated, and corruption refuses to start; [`repair`] cuts a
//! damaged journal on request and [`truncate_after`] drops a replica's diverged suffix. The
//! byte format is specified in `journal/FORMAT.md`.
//!
//! Disk faults: a failed sync freezes the durable watermark and leaves a durable
//! [`sync_failure`] record that makes [`Journal::open`] refuse the journal until
//! [`inspect::clear_sync_failure`]; segment preparation retries with backoff; both, and low
//! free space, show in [`Watermarks::health`] ([`JournalHealth`]), which the node polls to
//! stop taking orders it could not acknowledge.
#![deny(missing_docs)]

mod appender;
mod crc;
pub mod envelope;
mod flusher;
pub mod format;
pub mod inspect;
mod journal;
pub mod merkle;
mod preparer;
mod reader;
pub mod recovery;
mod segment;
pub mod snapshot;
pub mod sync_failure;
pub mod threads;
mod truncation;
mod watermarks;

pub use appender::Appender;
pub use flusher::SyncMethod;
pub use journal::{offline_reader, repair, Durability, Journal, JournalConfig, Recovery};
pub use reader::{Reader, Record};
pub use truncation::{truncate_after, truncate_after_trusting};
#[doc(hidden)]
pub use truncation::{truncate_after_with_steps, TruncationStep};
pub use watermarks::{JournalHealth, Watermarks};

/// Errors at the journal's boundary.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The journal is damaged somewhere other than its tail. Nothing was changed.
    #[error("journal corrupt in segment {segment} at offset {offset}: {reason}")]
    Corrupt {
        /// Segment index.
        segment: u64,
        /// Byte offset within the segment file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A record payload exceeds the format's limit.
    #[error("record payload of {payload_len} bytes exceeds the limit")]
    RecordTooLarge {
        /// The payload length asked for.
        payload_len: usize,
    },
    /// The segment preparer thread stopped.
    #[error("journal segment preparer stopped")]
    PreparerGone,
    /// A sync failed earlier; nothing further can be made durable.
    #[error("journal sync failed; the node must restart")]
    SyncFailed,
    /// The journal carries a sync-failure record (`journal/FORMAT.md`): a sync failed, so
    /// pages the page cache still shows may never have reached the disk. It does not open
    /// until an operator has checked the disk and run `keel journal clear-sync-failure`.
    #[error(
        "journal {dir}: a sync failed earlier ({detail}); records past the last durable one \
         may never have reached the disk. Check the disk, then run \
         `keel journal clear-sync-failure {dir}` (it verifies the journal and cuts it back to \
         the last durable record)"
    )]
    SyncFailureRecorded {
        /// The journal directory.
        dir: String,
        /// What the record says (or why it cannot be read).
        detail: String,
    },
    /// Segment preparation is failing (a full disk, an I/O error) and the current segment
    /// is full: nothing can be appended until a preparation succeeds (it is retried).
    #[error("journal segment preparation failing: {0}")]
    PreparerFailing(String),
    /// No record with this sequence number is in the journal.
    #[error("no record with sequence number {seq} in the journal")]
    NoSuchRecord {
        /// The sequence number asked for.
        seq: u64,
    },
    /// A configuration value is out of range.
    #[error("invalid journal configuration: {0}")]
    InvalidConfig(&'static str),
    /// A snapshot file is damaged or not a snapshot.
    #[error("snapshot {path}: {reason}")]
    BadSnapshot {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The path given as a journal directory is not a directory.
    #[error("{path} is not a directory")]
    NotADirectory {
        /// The path.
        path: String,
    },
    /// Records before `first_seq` were retired (a snapshot holds their state), so nothing
    /// can be computed from the journal's start.
    #[error("records before {first_seq} were retired; no root from the start")]
    Retired {
        /// The first record still in the journal.
        first_seq: u64,
    },
    /// A record's payload is not a valid command or envelope.
    #[error("record {seq} cannot be decoded")]
    UndecodableRecord {
        /// Its sequence number.
        seq: u64,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// An engine command or state could not be decoded.
    #[error(transparent)]
    Engine(#[from] keel_engine::Error),
    /// File system error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
