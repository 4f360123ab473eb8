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
    /// The journal refused an operation.
    #[error(transparent)]
    Journal(#[from] keel_journal::Error),
    /// The node configuration is invalid; the message names the key.
    #[error("configuration: {0}")]
    Config(String),
    /// The node cannot run (startup or a fatal runtime failure).
    #[error("node: {0}")]
    Node(String),
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
