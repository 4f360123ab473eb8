//! The crate's one error type.

use crate::types::SYMBOL_BYTES_MAX;

/// Errors at the engine's boundary. Processing a command never fails: a bad command
/// produces a reject event. These errors are about constructing things.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Symbols must not be empty.
    #[error("symbol is empty")]
    EmptySymbol,
    /// Symbols are at most [`SYMBOL_BYTES_MAX`] bytes.
    #[error("symbol is {len_bytes} bytes long; the limit is {SYMBOL_BYTES_MAX}")]
    SymbolTooLong {
        /// Length of the rejected symbol.
        len_bytes: usize,
    },
    /// An engine configuration value is out of range.
    #[error("invalid engine configuration: {0}")]
    InvalidConfig(&'static str),
    /// Bytes that are not a valid encoding (of a command or of engine state).
    #[error("cannot decode: {0}")]
    Decode(&'static str),
    /// An internal consistency check failed: a bug, reported with what was found.
    #[error("engine invariant violated: {0}")]
    InvariantViolated(String),
}
