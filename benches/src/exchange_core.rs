//! exchange-core's benchmark order flow, rebuilt for Keel.
//!
//! exchange-core (the Java exchange whose single-book figure Keel's bar comes from) publishes
//! its throughput on a stream of about 9% GTC orders, 3% IOC orders, 6% cancels and 82% moves,
//! with about 1,000 resting limit orders on roughly 750 price levels and a few percent of
//! commands trading. That stream comes from its `TestOrdersGenerator`; this module follows the
//! same rules (re-implemented, with this crate's own PRNG, so it is not the same random
//! sequence):
//!
//! - A central "last trade" price `P` with a band `P ± 5·dev`, `dev = min(P / 20, 10_000)`.
//!   Every trade moves `P` to the trade price (clamped to the band). The default starts at
//!   `P = 100_000` (`dev = 5_000`), the constants of the exchange-core version that published
//!   the figures; that spread is what puts ~1,000 orders on ~750 levels.
//! - Each command picks a side (50/50), then looks at how many orders that side lacks
//!   against its target (half the book target), using a count refreshed every 512 commands:
//!   - while warming up, or more than 3/4 of the target short: place a GTC order;
//!   - short of orders: 1 in 5 a GTC order, 1 in 10 a cancel, otherwise a move;
//!   - at or above target: 1 in 20 an IOC order, 1 in 40 a cancel, otherwise a move.
//! - A GTC order has size `1 + a·b·c` (`a, b, c` uniform in 0..6) and a price on its own
//!   side of `P`, at a distance drawn from the mean of four uniform draws in a window whose
//!   width is itself `dev·u²`; it trades only when the book has drifted across `P`.
//! - An IOC order has the same size distribution and a limit at the far edge of the band,
//!   so it takes liquidity like a market order.
//! - Cancels and moves pick uniformly among the 512 oldest live orders. A move shifts the
//!   order's price 1% of the way towards `P` (at least one tick), keeping its open size;
//!   moves that reach the other side's best price trade.
//! - Orders come from `accounts` accounts (exchange-core's published run used 1,000), with
//!   self-trade prevention off, since exchange-core has none.
//!
//! The generator replays every command through a [`keel_engine::Engine`] as it goes, to know
//! which orders are still live and what they have left (exchange-core does the same with its
//! naive order book). Generation is therefore a function of the seed and the engine's
//! matching rules, which the issue fixes; a change to either changes the stream.

use keel_engine::{
    AccountId, Command, Engine, Event, InstrumentId, NewOrder, OrderId, Price, Qty,
    SelfTradePrevention, Side, Symbol, TimeInForce,
};

use crate::rng::Xoshiro256StarStar;
use crate::Workload;

/// How often (in generated commands) the generator refreshes its view of the book size,
/// as exchange-core's `CHECK_ORDERBOOK_STAT_EVERY_NTH_COMMAND`.
const BOOK_SIZE_CHECK_EVERY: usize = 512;
/// Cancels and moves pick among this many of the oldest live orders.
const PICK_AMONG_OLDEST: usize = 512;

/// Parameters of the exchange-core mix. [`ExchangeCoreMix::default`] gives the published
/// configuration (one instrument, 1,000 resting orders, 1,000 accounts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExchangeCoreMix {
    /// Seed of the random stream: the same seed always gives the same commands.
    pub seed: u64,
    /// Number of commands after the warm-up.
    pub commands: usize,
    /// Resting orders the generator aims for (both sides together).
    pub target_orders: usize,
    /// Distinct accounts placing orders.
    pub accounts: u64,
    /// The initial central price in ticks; the price band is derived from it.
    pub central_price: Price,
    /// The instrument all orders are for (defined by the first warm-up command).
    pub instrument: InstrumentId,
}

impl Default for ExchangeCoreMix {
    fn default() -> Self {
        ExchangeCoreMix {
            seed: 1,
            commands: 1_000_000,
            target_orders: 1_000,
            accounts: 1_000,
            central_price: 100_000,
            instrument: 1,
        }
    }
}

impl ExchangeCoreMix {
    /// Generates the warm-up (instrument definition and the orders that fill the book to
    /// its target) and then exactly `commands` measured commands.
    pub fn generate(&self) -> Workload {
        let mut generator = Generator::new(self);
        let mut warmup = Vec::with_capacity(self.target_orders * 2 + 16);
        let mut measured = Vec::with_capacity(self.commands);
        let define = Command::DefineInstrument {
            instrument: self.instrument,
            symbol: instrument_symbol(),
        };
        generator.apply(&define);
        warmup.push(define);
        // A safety valve: the book normally fills within a couple of thousand commands.
        let warmup_limit = self.target_orders.saturating_mul(1_000).max(100_000);
        while measured.len() < self.commands {
            if !generator.filled && warmup.len() >= warmup_limit {
                generator.filled = true;
            }
            let Some(command) = generator.next_command() else {
                continue;
            };
            generator.apply(&command);
            if generator.filled {
                measured.push(command);
            } else {
                warmup.push(command);
            }
        }
        Workload { warmup, measured }
    }
}

/// The symbol used for generated instruments.
pub(crate) fn instrument_symbol() -> Symbol {
    // "BENCH" is 5 bytes, within the 1..=32 a symbol allows, so this never falls back.
    Symbol::new("BENCH").unwrap_or_else(|_| unreachable_symbol())
}

#[cold]
fn unreachable_symbol() -> Symbol {
    // Only reachable if the engine's symbol rules changed to refuse a 5-byte ASCII string.
    match Symbol::new("X") {
        Ok(symbol) => symbol,
        Err(_) => std::process::abort(),
    }
}

/// What the generator knows about an order it created.
#[derive(Clone, Copy, Debug)]
struct Tracked {
    account: AccountId,
    side: Side,
    price: Price,
    open: Qty,
    live: bool,
}

/// The generator's state, as exchange-core's `TestOrdersGeneratorSession`.
struct Generator {
    rng: Xoshiro256StarStar,
    engine: Engine,
    events: Vec<Event>,
    instrument: InstrumentId,
    accounts: u64,
    target_half: i64,
    dev: i64,
    min_price: Price,
    max_price: Price,
    last_trade_price: Price,
    price_direction: i64,
    /// Set when the book first reaches its target: from then on commands are measured.
    filled: bool,
    /// Generated commands so far, and when the book-size view is next refreshed.
    generated: usize,
    next_size_check: usize,
    /// Book size as last seen (refreshed every [`BOOK_SIZE_CHECK_EVERY`] commands).
    seen_bids: i64,
    seen_asks: i64,
    /// Exact live counts, maintained from events.
    live_bids: i64,
    live_asks: i64,
    /// Every order created, indexed by `order_id - 1`.
    orders: Vec<Tracked>,
    /// Live orders by age, to pick among the oldest.
    live: LiveSet,
    next_order_id: OrderId,
}

impl Generator {
    fn new(config: &ExchangeCoreMix) -> Generator {
        let central = config.central_price.max(100);
        let dev = (central / 20).clamp(1, 10_000);
        let target_half = i64::try_from(config.target_orders / 2).unwrap_or(i64::MAX);
        Generator {
            rng: Xoshiro256StarStar::seed_from_u64(config.seed),
            engine: Engine::default(),
            events: Vec::with_capacity(256),
            instrument: config.instrument,
            accounts: config.accounts.max(1),
            target_half,
            dev,
            min_price: (central - 5 * dev).max(1),
            max_price: central + 5 * dev,
            last_trade_price: central,
            price_direction: 0,
            filled: false,
            generated: 0,
            next_size_check: BOOK_SIZE_CHECK_EVERY.min(config.target_orders + 1),
            seen_bids: 0,
            seen_asks: 0,
            live_bids: 0,
            live_asks: 0,
            orders: Vec::with_capacity(config.commands / 8 + config.target_orders * 2),
            live: LiveSet::with_capacity(config.commands / 8 + config.target_orders * 2),
            next_order_id: 1,
        }
    }

    /// The next command, or `None` when the chosen action is impossible (no live order to
    /// cancel or move); the caller simply asks again, as exchange-core does.
    fn next_command(&mut self) -> Option<Command> {
        let side = if i64::try_from(self.rng.below(4)).unwrap_or(0) + self.price_direction >= 2 {
            Side::Buy
        } else {
            Side::Sell
        };
        let lack = self.target_half
            - match side {
                Side::Buy => self.seen_bids,
                Side::Sell => self.seen_asks,
            };
        let fast_fill_threshold = i64::try_from(BOOK_SIZE_CHECK_EVERY)
            .unwrap_or(i64::MAX)
            .min(self.target_half * 3 / 4);
        let require_fast_fill = !self.filled || lack > fast_fill_threshold;
        let grow = lack > 0;
        if !self.filled && !grow {
            self.filled = true;
        }
        let q = self.rng.below(if grow {
            if require_fast_fill {
                2
            } else {
                10
            }
        } else {
            40
        });
        if q < 2 {
            return Some(self.place(side, grow));
        }
        let candidates = self.live.len().min(PICK_AMONG_OLDEST);
        if candidates == 0 {
            return None;
        }
        let pick = usize::try_from(self.rng.below(candidates as u64)).unwrap_or(0);
        let index = self.live.kth(pick)?;
        let order_id = index as OrderId + 1;
        let tracked = self.orders[index];
        if q == 2 {
            // Like exchange-core, forget the order at once; the engine's `Canceled` confirms.
            self.forget(index);
            return Some(Command::Cancel {
                order_id,
                account: tracked.account,
            });
        }
        let distance = self.last_trade_price - tracked.price;
        let step = match tracked.price.cmp(&self.last_trade_price) {
            // floor(distance / 100) above P and ceil(distance / 100) below it: 1% of the way,
            // at least one tick.
            std::cmp::Ordering::Greater => distance.div_euclid(100),
            std::cmp::Ordering::Less => -((-distance).div_euclid(100)),
            std::cmp::Ordering::Equal => {
                if self.rng.below(2) == 0 {
                    -1
                } else {
                    1
                }
            }
        };
        let price = (tracked.price + step).max(1);
        self.orders[index].price = price;
        Some(Command::Replace {
            order_id,
            account: tracked.account,
            price,
            qty: tracked.open,
        })
    }

    /// A new GTC (when the side needs orders) or IOC order.
    fn place(&mut self, side: Side, grow: bool) -> Command {
        let account = 1 + self.rng.below(self.accounts);
        let order_id = self.next_order_id;
        self.next_order_id += 1;
        let qty = 1 + self.rng.below(6) * self.rng.below(6) * self.rng.below(6);
        let (price, tif) = if grow {
            // Window width dev·u² with u uniform in [0, 1), in 32-bit fixed point.
            let u = self.rng.next_u64() >> 32;
            let u_squared = (u * u) >> 32;
            let dev_u64 = u64::try_from(self.dev).unwrap_or(0);
            let window = 1 + i64::try_from((u_squared * dev_u64) >> 32).unwrap_or(0);
            let window_u64 = u64::try_from(window).unwrap_or(1);
            let sum: u64 = (0..4).map(|_| self.rng.below(window_u64)).sum();
            let mut offset = i64::try_from(sum / 4).unwrap_or(0) * 2 - window;
            // Asks at or above P, bids at or below it.
            if (offset > 0) ^ (side == Side::Sell) {
                offset = -offset;
            }
            ((self.last_trade_price + offset).max(1), TimeInForce::Gtc)
        } else {
            let limit = match side {
                Side::Buy => self.max_price,
                Side::Sell => self.min_price,
            };
            (limit, TimeInForce::Ioc)
        };
        self.orders.push(Tracked {
            account,
            side,
            price,
            open: qty,
            live: false,
        });
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

    /// Runs `command` through the engine and updates what the generator knows.
    fn apply(&mut self, command: &Command) {
        self.events.clear();
        self.engine.process(command, &mut self.events);
        let mut taker_filled: Qty = 0;
        let events = std::mem::take(&mut self.events);
        for event in &events {
            match *event {
                Event::Trade {
                    price,
                    qty,
                    maker_order_id,
                    ..
                } => {
                    taker_filled += qty;
                    let maker = order_index(maker_order_id);
                    if let Some(tracked) = self.orders.get_mut(maker) {
                        tracked.open = tracked.open.saturating_sub(qty);
                        if tracked.open == 0 {
                            self.forget(maker);
                        }
                    }
                    self.last_trade_price = price.clamp(self.min_price, self.max_price);
                    if price <= self.min_price {
                        self.price_direction = 1;
                    } else if price >= self.max_price {
                        self.price_direction = -1;
                    }
                }
                Event::Canceled { order_id, .. } => self.forget(order_index(order_id)),
                _ => {}
            }
        }
        self.events = events;
        match *command {
            Command::New(order) if order.tif == TimeInForce::Gtc => {
                let open = order.qty.saturating_sub(taker_filled);
                if open > 0 {
                    self.remember(order_index(order.order_id), open);
                }
            }
            Command::Replace { order_id, qty, .. } => {
                let index = order_index(order_id);
                let open = qty.saturating_sub(taker_filled);
                if open == 0 {
                    self.forget(index);
                } else if let Some(tracked) = self.orders.get_mut(index) {
                    tracked.open = open;
                }
            }
            _ => {}
        }
        self.generated += 1;
        if self.generated >= self.next_size_check {
            self.next_size_check += BOOK_SIZE_CHECK_EVERY;
            self.seen_bids = self.live_bids;
            self.seen_asks = self.live_asks;
        }
    }

    fn remember(&mut self, index: usize, open: Qty) {
        let Some(tracked) = self.orders.get_mut(index) else {
            return;
        };
        if tracked.live {
            return;
        }
        tracked.live = true;
        tracked.open = open;
        match tracked.side {
            Side::Buy => self.live_bids += 1,
            Side::Sell => self.live_asks += 1,
        }
        self.live.insert(index);
    }

    fn forget(&mut self, index: usize) {
        let Some(tracked) = self.orders.get_mut(index) else {
            return;
        };
        if !tracked.live {
            return;
        }
        tracked.live = false;
        match tracked.side {
            Side::Buy => self.live_bids -= 1,
            Side::Sell => self.live_asks -= 1,
        }
        self.live.remove(index);
    }
}

/// Generated order ids are dense from 1.
fn order_index(order_id: OrderId) -> usize {
    usize::try_from(order_id.saturating_sub(1)).unwrap_or(usize::MAX)
}

/// A set of indices that can return its k-th smallest member in O(log n): a Fenwick tree
/// over presence flags, grown by doubling.
#[derive(Clone, Debug)]
struct LiveSet {
    /// 1-based Fenwick tree; `tree.len() - 1` is a power of two.
    tree: Vec<u32>,
    present: Vec<bool>,
    len: usize,
}

impl LiveSet {
    fn with_capacity(capacity: usize) -> LiveSet {
        let size = capacity.max(64).next_power_of_two();
        LiveSet {
            tree: vec![0; size + 1],
            present: vec![false; size],
            len: 0,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn size(&self) -> usize {
        self.present.len()
    }

    fn insert(&mut self, index: usize) {
        while index >= self.size() {
            self.grow();
        }
        if self.present[index] {
            return;
        }
        self.present[index] = true;
        self.len += 1;
        self.add(index, 1);
    }

    fn remove(&mut self, index: usize) {
        if index >= self.size() || !self.present[index] {
            return;
        }
        self.present[index] = false;
        self.len -= 1;
        self.add(index, -1);
    }

    fn add(&mut self, index: usize, delta: i32) {
        let mut i = index + 1;
        while i < self.tree.len() {
            self.tree[i] = self.tree[i].wrapping_add_signed(delta);
            i += i & i.wrapping_neg();
        }
    }

    /// The `k`-th smallest present index (0-based), if there are more than `k`.
    fn kth(&self, k: usize) -> Option<usize> {
        if k >= self.len {
            return None;
        }
        let mut remaining = u32::try_from(k).ok()? + 1;
        let mut position = 0;
        let mut step = self.size();
        while step > 0 {
            let next = position + step;
            if next < self.tree.len() && self.tree[next] < remaining {
                position = next;
                remaining -= self.tree[next];
            }
            step /= 2;
        }
        // `position` is the count of indices strictly before the answer (1-based tree).
        Some(position)
    }

    fn grow(&mut self) {
        let size = self.size() * 2;
        self.present.resize(size, false);
        self.tree = vec![0; size + 1];
        for (index, &present) in self.present.iter().enumerate() {
            if present {
                let i = index + 1;
                self.tree[i] += 1;
            }
        }
        // Linear-time Fenwick construction: push each node's sum to its parent.
        for i in 1..=size {
            let parent = i + (i & i.wrapping_neg());
            if parent <= size {
                self.tree[parent] += self.tree[i];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_set_kth_matches_a_sorted_list() {
        let mut set = LiveSet::with_capacity(4);
        let mut model: Vec<usize> = Vec::new();
        let mut rng = Xoshiro256StarStar::seed_from_u64(3);
        for _ in 0..5_000 {
            let index = rng.below(300) as usize;
            if rng.below(3) == 0 {
                set.remove(index);
                model.retain(|&x| x != index);
            } else {
                set.insert(index);
                if !model.contains(&index) {
                    model.push(index);
                }
            }
            model.sort_unstable();
            assert_eq!(set.len(), model.len());
            for (k, &expected) in model.iter().enumerate().step_by(7) {
                assert_eq!(set.kth(k), Some(expected));
            }
            assert_eq!(set.kth(model.len()), None);
        }
    }

    #[test]
    fn same_seed_same_stream() {
        let config = ExchangeCoreMix {
            commands: 20_000,
            ..ExchangeCoreMix::default()
        };
        let a = config.generate();
        let b = config.generate();
        assert_eq!(a.warmup, b.warmup);
        assert_eq!(a.measured, b.measured);
        assert_eq!(a.measured.len(), 20_000);
        let other = ExchangeCoreMix { seed: 2, ..config }.generate();
        assert_ne!(a.measured, other.measured);
    }

    #[test]
    fn stream_is_valid_for_the_engine() {
        let config = ExchangeCoreMix {
            commands: 50_000,
            ..ExchangeCoreMix::default()
        };
        let workload = config.generate();
        let stats = crate::measure_mix(&workload);
        // The generator only cancels and moves orders it knows are live.
        assert_eq!(stats.rejected, 0, "{stats}");
        assert!(stats.fraction(stats.replace) > 0.7, "{stats}");
        assert!(stats.trading_commands > 0, "{stats}");
    }
}
