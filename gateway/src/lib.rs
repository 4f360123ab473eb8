//! Keel's node: the order-entry gateway and the `keel` operator binary.
//!
//! For now this crate holds the `keel replay` JSON-lines contract ([`replay`]); the
//! SoupBinTCP/OUCH gateway, sessions and the node's thread wiring arrive with their issues.
#![deny(missing_docs)]

pub mod config;
mod error;
pub mod node;
pub mod replay;

pub use error::Error;
pub use keel_client as client;
pub use keel_protocol as protocol;
