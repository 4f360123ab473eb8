//! Keel's test kit: what the gateway's end-to-end tests, the cluster failover test and
//! `keel-perf` share to run real `keel serve` nodes.
//!
//! - [`ports`]: free loopback ports, and connections from a chosen source address;
//! - [`cases`]: case counts of randomised tests, from the environment;
//! - [`flood`]: idle-connection floods (an attacker without credentials);
//! - [`rng`]: the one small seeded PRNG of the tests and the load generator;
//! - `config` (feature `node`): node and cluster configurations built from the node's typed
//!   configuration and written through its own serialisation;
//! - `process` (feature `node`): a running `keel serve` with its log;
//! - `cluster` (feature `node`): a Raft cluster of them on loopback;
//! - `source` (feature `node`): connections from another loopback address (an attacker's).
//!
//! Everything that can fail returns an error with context (keel-perf is a binary); tests
//! unwrap.
#![deny(missing_docs)]

pub mod cases;
pub mod flood;
pub mod ports;
pub mod rng;
pub mod source;

#[cfg(feature = "node")]
pub mod cluster;
#[cfg(feature = "node")]
pub mod config;
#[cfg(feature = "node")]
pub mod process;
