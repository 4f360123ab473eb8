//! The crate's one error type.

/// Errors at keel-node's boundary.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input line is not a valid command.
    #[error("line {line}: {message}")]
    BadLine {
        /// 1-based input line number.
        line: u64,
        /// What is wrong with it.
        message: String,
    },
    /// An input line exceeds the replay's line limit.
    #[error("line {line}: longer than {limit_bytes} bytes")]
    LineTooLong {
        /// 1-based input line number.
        line: u64,
        /// The limit.
        limit_bytes: usize,
    },
    /// `keel replay` stopped: a bad input line, or its input or output failed.
    #[error("replay stopped")]
    ReplayStopped(#[source] Box<Error>),
    /// The engine could not be rebuilt from the journal's snapshots and records.
    #[error("cannot rebuild the engine from the journal")]
    Recover(#[source] keel_journal::Error),
    /// The snapshotter thread failed.
    #[error("snapshotter failed")]
    Snapshotter(#[source] keel_journal::Error),
    /// The journal could not be closed (its last records may not be durable).
    #[error("cannot close the journal")]
    JournalClose(#[source] keel_journal::Error),
    /// The snapshotter's engine, fed the same journal, ended in a different state than the
    /// replay's: the engine is not deterministic.
    #[error("determinism check failed: the snapshotter's engine state differs from the replay's")]
    Determinism,
    /// The journal refused an operation.
    #[error(transparent)]
    Journal(#[from] keel_journal::Error),
    /// The node configuration is invalid; the message names the key.
    #[error("configuration: {0}")]
    Config(String),
    /// The node cannot run (startup or a fatal runtime failure).
    #[error("node: {0}")]
    Node(String),
    /// The node stopped on a fault (a thread died or failed, or the journal failed): the
    /// process should exit with [`Fault::exit_status`](crate::supervisor::Fault::exit_status).
    #[error("{0}")]
    Fatal(crate::supervisor::Fault),
    /// `keel cluster` could not set up or start its local cluster.
    #[error("{0}")]
    LocalCluster(String),
    /// An engine value was refused (e.g. an instrument symbol).
    #[error(transparent)]
    Engine(#[from] keel_engine::Error),
    /// Reading input or writing output failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
