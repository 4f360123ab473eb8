//! Side-by-side peers: Keel's engine and other order-book crates from crates.io, driven by
//! the same Keel command stream through each crate's public API.
//!
//! Each peer gets an adapter implementing [`PeerBook`]: it maps every Keel [`Command`]
//! (new GTC/IOC/FOK/market order, cancel, replace, reduce) onto the closest thing the
//! peer's API offers, and keeps a [`Tally`] of what it produced (trades, traded quantity,
//! refusals) so that a run can show each adapter did real work, not just return early.
//! Where a peer cannot express a command it either emulates it with several calls
//! (counted as [`Tally::emulated`]) or skips it ([`Tally::skipped`]); the adapters' module
//! docs and [`PeerInfo`] say which, and where the comparison is unfair in either direction.
//!
//! Adapters are generic-dispatched ([`run_once`] is monomorphised per peer), hold one book
//! for one instrument (the exchange-core mix has one), and treat
//! [`Command::DefineInstrument`] as set-up: it is neither applied nor counted.
//!
//! The peers, pinned in `benches/Cargo.toml`:
//! - [`keel`]: Keel's own engine, the reference.
//! - [`matchcore`]: `matchcore` 0.4.0, a single-threaded deterministic price-time engine.
//! - [`orderbook_rs`]: `orderbook-rs` 0.15.3, a concurrent (lock-free/`DashMap`) order book.
//! - [`lobster`]: `lobster` 0.7.0, a small single-threaded limit order book.

pub mod keel;
pub mod lobster;
pub mod matchcore;
pub mod orderbook_rs;
pub mod report;

use std::time::Instant;

use keel_engine::{Command, Price};

use crate::Workload;

/// What one adapter produced over the commands it was given. Compared across peers to
/// check that each did the same work as Keel (same trades, same volume).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Commands handed to the adapter (instrument definitions excluded).
    pub commands: u64,
    /// Trades (one per maker order filled, partially or fully), as the peer reports them.
    pub trades: u64,
    /// Quantity traded, summed over trades, in lots.
    pub traded_qty: u64,
    /// Commands the peer refused or reported as failing (unknown order, invalid value...).
    /// For Keel: `Rejected`, `CancelRejected` and `ReplaceRejected` events.
    pub refused: u64,
    /// Commands the peer cannot express in one call, carried out as several (e.g. a
    /// replace as cancel + new).
    pub emulated: u64,
    /// Commands the peer cannot express at all, not applied.
    pub skipped: u64,
}

/// The book an adapter ends with, compared with Keel's to check that the same stream left
/// the same state behind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BookState {
    /// Best bid price in ticks.
    pub best_bid: Option<Price>,
    /// Best ask price in ticks.
    pub best_ask: Option<Price>,
    /// Open quantity resting on both sides, in lots.
    pub resting_qty: u64,
    /// Resting orders, where the peer's API can count them.
    pub resting_orders: Option<u64>,
}

/// Static facts about a peer, printed next to its figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// Short name used in tables and JSON (`keel`, `matchcore`, ...).
    pub name: &'static str,
    /// Crate and version the adapter drives.
    pub krate: &'static str,
    /// How each Keel command is mapped, one line per command kind.
    pub mapping: &'static [&'static str],
    /// Where the comparison is unfair, in either direction.
    pub fairness: &'static [&'static str],
}

/// One order book driven by Keel commands.
pub trait PeerBook {
    /// Facts about this peer.
    const INFO: PeerInfo;

    /// A fresh, empty book.
    fn new() -> Self;

    /// Applies one command, updating the tally.
    fn apply(&mut self, command: &Command);

    /// What the book has produced since it was made or last [`reset_tally`](Self::reset_tally).
    fn tally(&self) -> Tally;

    /// Zeroes the tally (after the warm-up, so that only measured commands are counted).
    fn reset_tally(&mut self);

    /// The book's end state. Not timed; may be slow.
    fn book_state(&self) -> BookState;
}

/// One timed pass: figures of a fresh book after the warm-up (untimed) and the measured
/// commands (timed as one block).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunResult {
    /// Measured commands divided by the seconds they took.
    pub commands_per_s: f64,
    /// Seconds the measured commands took.
    pub seconds: f64,
    /// What the measured commands produced.
    pub tally: Tally,
    /// The book after the measured commands.
    pub state: BookState,
}

/// Runs `workload` through a fresh `B`: warm-up untimed, measured commands timed as one
/// block with one clock read on each side, then the end state (untimed).
pub fn run_once<B: PeerBook>(workload: &Workload) -> RunResult {
    let mut book = B::new();
    for command in &workload.warmup {
        book.apply(command);
    }
    book.reset_tally();
    let start = Instant::now();
    for command in &workload.measured {
        book.apply(std::hint::black_box(command));
    }
    let seconds = start.elapsed().as_secs_f64();
    let tally = book.tally();
    let state = book.book_state();
    // Dropping a large book is not part of matching; keep it out of the next run's timing
    // too by dropping it here, after the clock stopped.
    drop(book);
    RunResult {
        commands_per_s: workload.measured.len() as f64 / seconds.max(f64::MIN_POSITIVE),
        seconds,
        tally,
        state,
    }
}

/// The peers compared by `keel-peers`, by name, in table order (Keel first).
pub const PEER_NAMES: [&str; 4] = [
    keel::KeelBook::INFO.name,
    matchcore::MatchcoreBook::INFO.name,
    orderbook_rs::OrderbookRsBook::INFO.name,
    lobster::LobsterBook::INFO.name,
];

/// [`PeerInfo`] of a peer named in [`PEER_NAMES`].
pub fn info(name: &str) -> Option<PeerInfo> {
    [
        keel::KeelBook::INFO,
        matchcore::MatchcoreBook::INFO,
        orderbook_rs::OrderbookRsBook::INFO,
        lobster::LobsterBook::INFO,
    ]
    .into_iter()
    .find(|info| info.name == name)
}

/// Runs the peer named `name` (one of [`PEER_NAMES`]) once; `None` for an unknown name.
pub fn run_named(name: &str, workload: &Workload) -> Option<RunResult> {
    Some(match name {
        n if n == keel::KeelBook::INFO.name => run_once::<keel::KeelBook>(workload),
        n if n == matchcore::MatchcoreBook::INFO.name => {
            run_once::<matchcore::MatchcoreBook>(workload)
        }
        n if n == orderbook_rs::OrderbookRsBook::INFO.name => {
            run_once::<orderbook_rs::OrderbookRsBook>(workload)
        }
        n if n == lobster::LobsterBook::INFO.name => run_once::<lobster::LobsterBook>(workload),
        _ => return None,
    })
}

/// A Keel price as a peer's unsigned price; `None` for a price Keel would refuse (≤ 0).
pub(crate) fn unsigned_price(price: Price) -> Option<u64> {
    u64::try_from(price).ok().filter(|&p| p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExchangeCoreMix;

    /// Every adapter, on a short exchange-core stream, trades and ends like Keel, or
    /// differs only in the ways its docs explain (checked loosely here: it trades, it
    /// refuses nothing, it skips nothing).
    #[test]
    fn every_peer_does_real_work_on_the_mix() {
        let workload = ExchangeCoreMix {
            commands: 20_000,
            ..ExchangeCoreMix::default()
        }
        .generate();
        let keel = run_once::<keel::KeelBook>(&workload);
        assert!(keel.tally.trades > 0, "{keel:?}");
        assert_eq!(keel.tally.refused, 0);
        for name in PEER_NAMES {
            let Some(run) = run_named(name, &workload) else {
                panic!("unknown peer {name}");
            };
            assert_eq!(run.tally.commands, workload.measured.len() as u64, "{name}");
            assert_eq!(run.tally.skipped, 0, "{name}: {run:?}");
            assert!(run.tally.trades > 0, "{name}: {run:?}");
        }
    }

    #[test]
    fn names_resolve() {
        for name in PEER_NAMES {
            assert_eq!(info(name).map(|i| i.name), Some(name));
        }
        assert!(info("nope").is_none());
    }
}
