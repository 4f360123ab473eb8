//! Keel's benchmark workloads and helpers.
//!
//! Everything here is deterministic: a workload is a function of its parameters and seed,
//! generated with the crate's own PRNG ([`rng`]) so that recorded figures stay comparable
//! across dependency upgrades.
//!
//! - [`exchange_core`]: exchange-core's published benchmark mix (GTC, IOC, cancel, move),
//!   used by `keel-perf engine`, `keel-peers` and `keel-callgrind-replay`.
//! - [`scenarios`]: single-purpose batches (add, cancel, replace, sweep) for criterion.
//! - [`stats`]: measures what a workload actually does ([`measure_mix`]).
//! - [`peers`]: adapters driving other order-book crates with the same commands, for the
//!   side-by-side comparison (`keel-peers`, the `peers` criterion group).
//! - [`cli`]: the binaries' shared `--flag value` parsing.
//! - [`fmt`]: how every report prints a figure (also used by `keel-perf`).
#![deny(missing_docs)]

pub mod cli;
pub mod date;
pub mod exchange_core;
pub mod fmt;
pub mod peers;
pub mod rng;
pub mod scenarios;
pub mod stats;

use keel_engine::{Command, Engine, Event};

pub use exchange_core::ExchangeCoreMix;
pub use scenarios::BookScenario;
pub use stats::{measure_mix, MixStats};

/// A generated command stream: a warm-up that sets the engine up (instrument definitions,
/// an initial book), then the commands to measure.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Workload {
    /// Commands to apply before measuring.
    pub warmup: Vec<Command>,
    /// Commands to measure.
    pub measured: Vec<Command>,
}

/// Applies `commands` in order, clearing `sink` before each so it never grows past one
/// command's events; returns the number of events emitted. Once `sink` has the capacity
/// of the largest command's events, this allocates nothing.
pub fn process_all(engine: &mut Engine, commands: &[Command], sink: &mut Vec<Event>) -> u64 {
    let mut events = 0;
    for command in commands {
        sink.clear();
        engine.process(command, sink);
        events += sink.len() as u64;
    }
    events
}
