//! What a workload actually does to the engine: the mix of commands, how many trade, and
//! how big the book is while it runs. Measured by running the workload through a fresh
//! [`Engine`], so that claims like "the exchange-core mix" can be checked, not trusted.

use std::fmt;

use keel_engine::{Command, Engine, Event, Side, TimeInForce};

use crate::Workload;

/// How often (in measured commands) the book size is sampled.
pub const SAMPLE_EVERY: usize = 512;

/// Counts gathered over the measured part of a workload. Fractions are of `commands`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MixStats {
    /// Warm-up commands run before measuring.
    pub warmup_commands: u64,
    /// Resting orders when the warm-up ended.
    pub resting_after_warmup: u64,
    /// Measured commands.
    pub commands: u64,
    /// New GTC limit orders.
    pub gtc: u64,
    /// New IOC orders (limit or market).
    pub ioc: u64,
    /// New FOK orders.
    pub fok: u64,
    /// Cancels.
    pub cancel: u64,
    /// Replaces (moves).
    pub replace: u64,
    /// Anything else (instrument definitions, mass cancels).
    pub other: u64,
    /// Commands that produced at least one trade.
    pub trading_commands: u64,
    /// Trades.
    pub trades: u64,
    /// Events emitted in total.
    pub events: u64,
    /// Commands that were refused (reject, cancel reject or replace reject events).
    pub rejected: u64,
    /// Book-size samples taken (one every [`SAMPLE_EVERY`] commands).
    pub samples: u64,
    /// Sum over samples of resting orders (all instruments).
    pub resting_orders_sum: u64,
    /// Sum over samples of non-empty price levels (both sides, all instruments).
    pub levels_sum: u64,
    /// Smallest and largest resting-order count seen in a sample.
    pub resting_orders_min: u64,
    /// Largest resting-order count seen in a sample.
    pub resting_orders_max: u64,
    /// Smallest level count seen in a sample.
    pub levels_min: u64,
    /// Largest level count seen in a sample.
    pub levels_max: u64,
}

impl MixStats {
    /// `count` as a fraction of the measured commands.
    pub fn fraction(&self, count: u64) -> f64 {
        if self.commands == 0 {
            return 0.0;
        }
        count as f64 / self.commands as f64
    }

    /// Mean resting orders over the samples.
    pub fn mean_resting_orders(&self) -> f64 {
        mean(self.resting_orders_sum, self.samples)
    }

    /// Mean non-empty price levels over the samples.
    pub fn mean_levels(&self) -> f64 {
        mean(self.levels_sum, self.samples)
    }
}

fn mean(sum: u64, count: u64) -> f64 {
    if count == 0 {
        return 0.0;
    }
    sum as f64 / count as f64
}

impl fmt::Display for MixStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |count| 100.0 * self.fraction(count);
        writeln!(
            f,
            "warm-up: {} commands, {} resting orders after it",
            self.warmup_commands, self.resting_after_warmup
        )?;
        writeln!(
            f,
            "measured commands: {}: GTC {:.2}%, IOC {:.2}%, FOK {:.2}%, cancel {:.2}%, \
             replace/move {:.2}%, other {:.2}%",
            self.commands,
            pct(self.gtc),
            pct(self.ioc),
            pct(self.fok),
            pct(self.cancel),
            pct(self.replace),
            pct(self.other)
        )?;
        writeln!(
            f,
            "trading: {:.2}% of commands trade ({} trades, {:.3} per command); \
             {:.3} events per command; rejected: {}",
            pct(self.trading_commands),
            self.trades,
            mean(self.trades, self.commands),
            mean(self.events, self.commands),
            self.rejected
        )?;
        write!(
            f,
            "book (sampled every {} commands, {} samples): resting orders mean {:.0} \
             (min {}, max {}), price levels mean {:.0} (min {}, max {})",
            SAMPLE_EVERY,
            self.samples,
            self.mean_resting_orders(),
            self.resting_orders_min,
            self.resting_orders_max,
            self.mean_levels(),
            self.levels_min,
            self.levels_max
        )
    }
}

/// Runs `workload` through a fresh default engine and reports what its measured part did.
pub fn measure_mix(workload: &Workload) -> MixStats {
    let mut engine = Engine::default();
    let mut events: Vec<Event> = Vec::with_capacity(256);
    for command in &workload.warmup {
        events.clear();
        engine.process(command, &mut events);
    }
    let mut stats = MixStats {
        warmup_commands: workload.warmup.len() as u64,
        resting_after_warmup: engine.resting_count() as u64,
        resting_orders_min: u64::MAX,
        levels_min: u64::MAX,
        ..MixStats::default()
    };
    for (index, command) in workload.measured.iter().enumerate() {
        events.clear();
        engine.process(command, &mut events);
        stats.commands += 1;
        match command {
            Command::New(order) => match order.tif {
                TimeInForce::Gtc if order.price.is_some() => stats.gtc += 1,
                TimeInForce::Gtc | TimeInForce::Ioc => stats.ioc += 1,
                TimeInForce::Fok => stats.fok += 1,
            },
            Command::Cancel { .. } | Command::Reduce { .. } => stats.cancel += 1,
            Command::Replace { .. } => stats.replace += 1,
            Command::DefineInstrument { .. } | Command::MassCancel { .. } => stats.other += 1,
        }
        let trades = events
            .iter()
            .filter(|event| matches!(event, Event::Trade { .. }))
            .count() as u64;
        stats.trades += trades;
        stats.trading_commands += u64::from(trades > 0);
        stats.events += events.len() as u64;
        stats.rejected += u64::from(events.iter().any(|event| {
            matches!(
                event,
                Event::Rejected { .. }
                    | Event::CancelRejected { .. }
                    | Event::ReplaceRejected { .. }
                    | Event::InstrumentRejected { .. }
            )
        }));
        if (index + 1) % SAMPLE_EVERY == 0 {
            let resting = engine.resting_count() as u64;
            let levels = count_levels(&engine);
            stats.samples += 1;
            stats.resting_orders_sum += resting;
            stats.levels_sum += levels;
            stats.resting_orders_min = stats.resting_orders_min.min(resting);
            stats.resting_orders_max = stats.resting_orders_max.max(resting);
            stats.levels_min = stats.levels_min.min(levels);
            stats.levels_max = stats.levels_max.max(levels);
        }
    }
    if stats.samples == 0 {
        stats.resting_orders_min = 0;
        stats.levels_min = 0;
    }
    stats
}

/// Non-empty price levels across every instrument and both sides, from the engine's
/// public book view.
fn count_levels(engine: &Engine) -> u64 {
    let mut levels = 0;
    for (instrument, _) in engine.instruments() {
        for side in [Side::Buy, Side::Sell] {
            let Some(orders) = engine.resting_orders(instrument, side) else {
                continue;
            };
            let mut last_price = None;
            for order in orders {
                if last_price != Some(order.price) {
                    levels += 1;
                    last_price = Some(order.price);
                }
            }
        }
    }
    levels
}
