//! Small, single-purpose workloads for the criterion benches.
//!
//! A [`BookScenario`] describes a two-sided book resting around a central price with an
//! empty band between the best bid and the best ask, and hands out batches of commands
//! against it: non-crossing adds (with the cancels that remove them again), replaces that
//! move resting orders between levels, and aggressive orders that sweep a chosen number of
//! levels. Batches always restore the book's shape, so a bench can run them forever
//! without the book growing or draining. Order ids are fresh for every batch.

use keel_engine::{
    AccountId, Command, InstrumentId, NewOrder, OrderId, Price, Qty, SelfTradePrevention, Side,
    TimeInForce,
};

use crate::exchange_core::instrument_symbol;
use crate::rng::Xoshiro256StarStar;

/// The resting book a scenario starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BookShape {
    /// Middle of the empty band between bids and asks.
    pub center: Price,
    /// Best bid is `center - gap`, best ask `center + gap`.
    pub gap: Price,
    /// Price levels on each side (one tick apart, outwards from the best price).
    pub levels_per_side: usize,
    /// Resting orders on each side, spread round-robin over its levels.
    pub orders_per_side: usize,
    /// Distinct accounts owning the orders.
    pub accounts: u64,
}

impl Default for BookShape {
    /// About the size of the exchange-core mix: 1,000 orders on 750 levels. The band is
    /// 499 ticks wide: room for sweeps of up to 100 levels (4 per batch), while sweep
    /// liquidity stays within a few hundred ticks of the prices the book already holds, as
    /// in a real market (the engine indexes levels directly only in a window around the
    /// prices it has seen; far jumps take a slower path, which these benches do not target).
    fn default() -> Self {
        BookShape {
            center: 10_000,
            gap: 250,
            levels_per_side: 375,
            orders_per_side: 500,
            accounts: 8,
        }
    }
}

/// A resting order of the base book.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaseOrder {
    /// Its id.
    pub order_id: OrderId,
    /// Its owner.
    pub account: AccountId,
    /// Its side.
    pub side: Side,
    /// Its price in the base book.
    pub price: Price,
    /// Its quantity.
    pub qty: Qty,
}

/// Non-crossing GTC orders and the cancels that take them off again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddBatch {
    /// New GTC orders, each joining a level of the base book without crossing.
    pub adds: Vec<Command>,
    /// One cancel per add, in the same order.
    pub cancels: Vec<Command>,
}

/// Liquidity placed inside the band and the orders that sweep it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepBatch {
    /// Ask orders, one per level, at consecutive prices inside the empty band.
    pub liquidity: Vec<Command>,
    /// IOC buys; each fills exactly the next `levels` of the liquidity, level by level.
    pub sweeps: Vec<Command>,
    /// Levels each sweep crosses.
    pub levels: usize,
}

/// Generator of the criterion scenarios. Deterministic for a given seed and shape.
#[derive(Clone, Debug)]
pub struct BookScenario {
    shape: BookShape,
    instrument: InstrumentId,
    rng: Xoshiro256StarStar,
    next_order_id: OrderId,
    base: Vec<BaseOrder>,
}

impl BookScenario {
    /// A scenario with the default [`BookShape`].
    pub fn new(seed: u64) -> BookScenario {
        BookScenario::with_shape(seed, BookShape::default())
    }

    /// A scenario with the given shape (`gap >= 1`, `levels_per_side >= 1`).
    pub fn with_shape(seed: u64, shape: BookShape) -> BookScenario {
        let shape = BookShape {
            gap: shape.gap.max(1),
            levels_per_side: shape.levels_per_side.max(1),
            accounts: shape.accounts.max(1),
            ..shape
        };
        let mut scenario = BookScenario {
            shape,
            instrument: 1,
            rng: Xoshiro256StarStar::seed_from_u64(seed),
            next_order_id: 1,
            base: Vec::with_capacity(shape.orders_per_side * 2),
        };
        for side in [Side::Buy, Side::Sell] {
            for index in 0..shape.orders_per_side {
                let price = scenario.level_price(side, index % shape.levels_per_side);
                let order = BaseOrder {
                    order_id: scenario.take_id(),
                    account: scenario.account(),
                    side,
                    price,
                    qty: scenario.qty(),
                };
                scenario.base.push(order);
            }
        }
        scenario
    }

    /// The book's shape.
    pub fn shape(&self) -> BookShape {
        self.shape
    }

    /// The instrument every command is for.
    pub fn instrument(&self) -> InstrumentId {
        self.instrument
    }

    /// The base book's orders, bids first.
    pub fn base_orders(&self) -> &[BaseOrder] {
        &self.base
    }

    /// Defines the instrument and places the base book. Apply once to a fresh engine.
    pub fn setup(&self) -> Vec<Command> {
        let mut commands = Vec::with_capacity(self.base.len() + 1);
        commands.push(Command::DefineInstrument {
            instrument: self.instrument,
            symbol: instrument_symbol(),
        });
        commands.extend(self.base.iter().map(|order| {
            self.new_order(
                order.order_id,
                order.account,
                order.side,
                order.price,
                order.qty,
                TimeInForce::Gtc,
            )
        }));
        commands
    }

    /// `count` GTC orders at random existing levels of either side, and their cancels.
    pub fn add_batch(&mut self, count: usize) -> AddBatch {
        let mut batch = AddBatch {
            adds: Vec::with_capacity(count),
            cancels: Vec::with_capacity(count),
        };
        for _ in 0..count {
            let side = if self.rng.below(2) == 0 {
                Side::Buy
            } else {
                Side::Sell
            };
            let level = self.pick(self.shape.levels_per_side);
            let price = self.level_price(side, level);
            let order_id = self.take_id();
            let account = self.account();
            let qty = self.qty();
            batch
                .adds
                .push(self.new_order(order_id, account, side, price, qty, TimeInForce::Gtc));
            batch.cancels.push(Command::Cancel { order_id, account });
        }
        batch
    }

    /// Two replaces per base order: first each order moves to another random level of its
    /// side, then each moves back. Every replace changes the price (so the order loses
    /// priority and changes level) and none crosses; applying the cycle over and over keeps
    /// the book's shape. Needs at least two levels per side to move anything.
    pub fn replace_cycle(&mut self) -> Vec<Command> {
        let levels = self.shape.levels_per_side;
        let mut away = Vec::with_capacity(self.base.len());
        let mut back = Vec::with_capacity(self.base.len());
        let base = self.base.clone();
        for order in &base {
            if levels < 2 {
                break;
            }
            let current = self.level_of(order.side, order.price);
            // A different level: shift by 1..levels-1, wrapping around.
            let shift = 1 + self.pick(levels - 1);
            let target = self.level_price(order.side, (current + shift) % levels);
            away.push(Command::Replace {
                order_id: order.order_id,
                account: order.account,
                price: target,
                qty: order.qty,
            });
            back.push(Command::Replace {
                order_id: order.order_id,
                account: order.account,
                price: order.price,
                qty: order.qty,
            });
        }
        away.extend(back);
        away
    }

    /// `sweeps` IOC buys, each crossing exactly `levels` ask levels placed inside the empty
    /// band (one order per level). `sweeps` is reduced so the liquidity fits in the band.
    pub fn sweep_batch(&mut self, levels: usize, sweeps: usize) -> SweepBatch {
        let levels = levels.max(1);
        let band = usize::try_from(2 * self.shape.gap - 1).unwrap_or(0);
        let sweeps = sweeps.min(band / levels).max(1);
        let first_price = self.shape.center - self.shape.gap + 1;
        let mut batch = SweepBatch {
            liquidity: Vec::with_capacity(levels * sweeps),
            sweeps: Vec::with_capacity(sweeps),
            levels,
        };
        let mut price = first_price;
        for _ in 0..sweeps {
            let mut total: Qty = 0;
            for _ in 0..levels {
                let order_id = self.take_id();
                let account = self.account();
                let qty = self.qty();
                total += qty;
                batch.liquidity.push(self.new_order(
                    order_id,
                    account,
                    Side::Sell,
                    price,
                    qty,
                    TimeInForce::Gtc,
                ));
                price += 1;
            }
            let order_id = self.take_id();
            let account = self.account();
            batch.sweeps.push(self.new_order(
                order_id,
                account,
                Side::Buy,
                price - 1,
                total,
                TimeInForce::Ioc,
            ));
        }
        batch
    }

    fn new_order(
        &self,
        order_id: OrderId,
        account: AccountId,
        side: Side,
        price: Price,
        qty: Qty,
        tif: TimeInForce,
    ) -> Command {
        Command::New(NewOrder {
            order_id,
            account,
            instrument: self.instrument,
            side,
            price: Some(price),
            qty,
            tif,
            post_only: false,
            stp: SelfTradePrevention::None,
        })
    }

    /// Price of level `index` (0 = best) of `side` in the base book.
    fn level_price(&self, side: Side, index: usize) -> Price {
        let offset = self.shape.gap + Price::try_from(index).unwrap_or(0);
        match side {
            Side::Buy => self.shape.center - offset,
            Side::Sell => self.shape.center + offset,
        }
    }

    /// Inverse of [`Self::level_price`].
    fn level_of(&self, side: Side, price: Price) -> usize {
        let offset = match side {
            Side::Buy => self.shape.center - price,
            Side::Sell => price - self.shape.center,
        };
        usize::try_from(offset - self.shape.gap).unwrap_or(0)
    }

    fn take_id(&mut self) -> OrderId {
        let id = self.next_order_id;
        self.next_order_id += 1;
        id
    }

    fn account(&mut self) -> AccountId {
        1 + self.rng.below(self.shape.accounts)
    }

    fn qty(&mut self) -> Qty {
        1 + self.rng.below(100)
    }

    fn pick(&mut self, below: usize) -> usize {
        usize::try_from(self.rng.below(below as u64)).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_engine::{Engine, Event};

    fn run(engine: &mut Engine, commands: &[Command], events: &mut Vec<Event>) {
        for command in commands {
            engine.process(command, events);
        }
    }

    #[test]
    fn batches_restore_the_book() {
        let mut scenario = BookScenario::new(5);
        let mut engine = Engine::default();
        let mut events = Vec::new();
        run(&mut engine, &scenario.setup(), &mut events);
        assert_eq!(engine.resting_count(), 1_000);
        assert!(events.iter().all(|e| matches!(e, Event::Accepted { .. })));

        events.clear();
        let batch = scenario.add_batch(300);
        run(&mut engine, &batch.adds, &mut events);
        assert_eq!(engine.resting_count(), 1_300);
        run(&mut engine, &batch.cancels, &mut events);
        assert_eq!(engine.resting_count(), 1_000);
        assert!(!events.iter().any(|e| matches!(
            e,
            Event::Trade { .. } | Event::CancelRejected { .. } | Event::Rejected { .. }
        )));

        events.clear();
        let cycle = scenario.replace_cycle();
        assert_eq!(cycle.len(), 2_000);
        run(&mut engine, &cycle, &mut events);
        run(&mut engine, &cycle, &mut events);
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, Event::Replaced { .. }))
                .count(),
            4_000
        );
        assert_eq!(events.len(), 4_000);
        assert_eq!(engine.resting_count(), 1_000);

        for levels in [1, 10, 100] {
            events.clear();
            let sweep = scenario.sweep_batch(levels, 1_000);
            run(&mut engine, &sweep.liquidity, &mut events);
            events.clear();
            for command in &sweep.sweeps {
                let before = events.len();
                engine.process(command, &mut events);
                let trades = events[before..]
                    .iter()
                    .filter(|e| matches!(e, Event::Trade { .. }))
                    .count();
                assert_eq!(trades, levels);
            }
            assert!(!events.iter().any(|e| matches!(e, Event::Canceled { .. })));
            assert_eq!(engine.resting_count(), 1_000);
        }
        engine.check_invariants().unwrap();
    }
}
