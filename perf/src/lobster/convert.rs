//! LOBSTER messages → Keel commands.
//!
//! Rules (see `perf/LOBSTER.md` for why):
//! - The book before message 1 is orderbook row 1 with message 1's visible effect undone; it
//!   is entered as one synthetic GTC order per level and side ("seed" orders, engine ids
//!   `1..=seeds`, account [`SEED_ACCOUNT`]) that stand for the orders resting before the file.
//! - Type 1 → a new GTC limit order (account [`LOBSTER_ACCOUNT`]).
//! - Type 2 → `Reduce` to the open quantity NASDAQ has left, keeping queue priority.
//! - Type 3 → `Cancel`.
//! - Type 4 → an IOC order on the other side (account [`AGGRESSOR_ACCOUNT`]) for the executed
//!   size at the resting order's price. Consecutive type-4 rows with the same timestamp and
//!   direction (hidden executions, type 5/6, of the same timestamp may sit between them) are
//!   one incoming order at NASDAQ, so they become one aggressor for the total size, limited
//!   at the furthest price.
//! - Type 5 (hidden execution) and 6 (cross) → nothing: no visible order changes.
//! - Type 7 → the engine has no halt command, so the converter halts: from a halt (price -1)
//!   to trading resuming (price 1) new orders are not sent (cancels still are).
//! - Events on orders no type-1 row entered: if a seed with open quantity rests at that
//!   price and side, the event draws on the seed (a reduce, or an aggressor that fills the
//!   seed, first in its queue as the oldest liquidity); otherwise the order never existed in
//!   Keel and the event is skipped (and counted). NASDAQ order ids are not in time order
//!   (the AAPL file enters id 11599111 long after 16113575), so an id cannot tell whether an
//!   order predates the file.
//! - Reconciliation (on unless turned off): a file with N levels shows every level at or
//!   better than its N-th price, so an order Keel holds at a price inside that range that
//!   the orderbook row does not show is gone at NASDAQ — removed by an event the message
//!   file left out because it happened outside the N levels. And a level the row shows
//!   with more shares than Keel holds there has orders Keel never received (they entered
//!   outside the N levels, or predate the file deeper than row 1 shows). After each
//!   message's orderbook row, before the next message, the former are canceled and the
//!   latter added as a synthetic order for the missing shares at the back of the level
//!   (its true queue position is unknown); it is a seed like those of row 1.
//!
//! Engine order ids are dense from 1 in the order the commands create them, as a gateway
//! would assign them; [`Replay::origins`] maps each back to where it came from.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::{bail, Context};
use keel_engine::{
    AccountId, Command, InstrumentId, NewOrder, OrderId, Price, Qty, SelfTradePrevention, Side,
    Symbol, TimeInForce,
};
use serde::{Deserialize, Serialize};

use super::parse::{BookRow, Level, Message};

/// The one instrument a replay defines.
pub const INSTRUMENT: InstrumentId = 1;
/// Owner of the synthetic orders standing for the book before message 1.
pub const SEED_ACCOUNT: AccountId = 1;
/// Owner of every order a type-1 row enters.
pub const LOBSTER_ACCOUNT: AccountId = 2;
/// Owner of the IOC orders standing for type-4 executions.
pub const AGGRESSOR_ACCOUNT: AccountId = 3;

/// Where an engine order id came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Synthetic liquidity for one level of the book before message 1.
    Seed,
    /// The order a type-1 row entered: its NASDAQ id and message row.
    Lobster {
        /// NASDAQ order reference number.
        order_id: u64,
        /// 1-based message row of the type-1 event.
        row: usize,
    },
    /// An aggressor for the type-4 rows of [`Replay::groups`]`[group]`.
    Aggressor {
        /// Index into [`Replay::groups`].
        group: usize,
    },
}

/// What NASDAQ's execution row says was filled, in engine terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpectedFill {
    /// 1-based message row of the type-4 event.
    pub row: usize,
    /// Engine id of the resting order NASDAQ filled (an in-file order or a seed).
    pub maker: OrderId,
    /// Whether the maker was entered by a type-1 row of the file (else it is a seed):
    /// only these fills test price-time priority.
    pub in_file: bool,
    /// Shares executed.
    pub qty: Qty,
}

/// One merged aggressor: consecutive type-4 rows of one timestamp and direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// First and last type-4 message rows.
    pub first_row: usize,
    /// See `first_row`.
    pub last_row: usize,
    /// The fills the aggressor should make, in NASDAQ's order.
    pub expected: Vec<ExpectedFill>,
    /// The aggressor's engine order id, if one was sent (none if no row was represented).
    pub aggressor: Option<OrderId>,
}

/// Why an event was not turned into a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Skip {
    /// No type-1 row entered the order and no seed with open quantity rests at its price:
    /// it predates the file at a level deeper than the orderbook file shows, or it was
    /// entered while outside the file's levels (the message file leaves such events out).
    UnknownOrderNoSeed,
    /// The order was entered during a halt and not sent.
    EnteredDuringHalt,
    /// A new order or execution during a halt.
    Halted,
    /// Type 5: a hidden order executed.
    HiddenExecution,
    /// Type 6: a cross trade.
    Cross,
    /// Type 7: a halt indicator (it changes converter state, not the book).
    HaltIndicator,
}

/// Counts of what the conversion did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ConversionStats {
    /// Message rows by event type (`"1"` … `"7"`).
    pub messages_by_type: BTreeMap<String, u64>,
    /// Synthetic seed orders (one per non-empty level and side of the initial book).
    pub seed_orders: u64,
    /// New GTC orders from type-1 rows.
    pub new_orders: u64,
    /// Reduces from type-2 rows (of in-file orders or seeds).
    pub reduces: u64,
    /// Cancels from type-3 rows of in-file orders.
    pub cancels: u64,
    /// IOC aggressors sent.
    pub aggressors: u64,
    /// Type-4 rows they stand for.
    pub aggressor_rows: u64,
    /// Events on orders that predate the file applied to a seed, by event type.
    pub seed_events_by_type: BTreeMap<String, u64>,
    /// Rows not turned into a command, by reason and event type (`reason/type`).
    pub skipped: BTreeMap<String, u64>,
    /// Cancels of in-file orders that an orderbook row showed gone (reconciliation).
    pub reconcile_cancels_in_file: u64,
    /// Cancels of seed orders that an orderbook row showed gone (reconciliation).
    pub reconcile_cancels_seed: u64,
    /// Synthetic orders added for shares an orderbook row showed that Keel never received
    /// (reconciliation), and their total shares.
    pub reconcile_fills: u64,
    /// See `reconcile_fills`.
    pub reconcile_fill_shares: u64,
}

/// The converted replay: the commands and what the checks need to interpret them.
#[derive(Clone, Debug, Default)]
pub struct Replay {
    /// Every command, in order: define the instrument, the seeds, then the messages'.
    pub commands: Vec<Command>,
    /// `origins[id - 1]` is where engine order id `id` came from.
    pub origins: Vec<Origin>,
    /// Merged aggressors, in order.
    pub groups: Vec<Group>,
    /// `(commands applied, message row)`: after applying the first `commands applied`
    /// commands, the book should equal orderbook row `message row`. Rows inside a merged
    /// aggressor (before its last type-4 row) have none: Keel has no state between fills.
    pub checkpoints: Vec<(usize, usize)>,
    /// Rows inside a merged aggressor, which have no checkpoint.
    pub rows_inside_aggressor: u64,
    /// Whether reconciliation cancels were generated.
    pub reconciled: bool,
    /// Conversion counts.
    pub stats: ConversionStats,
    /// For each in-file NASDAQ id, the last message row that mentions it.
    pub last_mention: HashMap<u64, usize>,
    /// LOBSTER price units per engine tick.
    pub tick: i64,
}

/// An order a type-1 row entered, as NASDAQ sees it.
#[derive(Clone, Copy, Debug)]
struct Known {
    engine_id: OrderId,
    remaining: Qty,
}

/// A seed order and the open quantity NASDAQ's pre-file orders at its level still have.
#[derive(Clone, Copy, Debug)]
struct Seed {
    engine_id: OrderId,
    open: Qty,
}

fn side_of(direction: i8) -> Side {
    if direction > 0 {
        Side::Buy
    } else {
        Side::Sell
    }
}

/// Converts LOBSTER prices to engine ticks, refusing prices that are not whole ticks.
fn ticks(price: i64, tick: i64, message: &Message, file: &str) -> anyhow::Result<Price> {
    if price <= 0 || price % tick != 0 {
        bail!(
            "{file}:{}: price {price} is not a positive multiple of the tick ({tick} = ${})",
            message.row,
            tick as f64 / 10_000.0
        );
    }
    Ok(price / tick)
}

/// Orderbook row 1 with message 1's visible effect undone: the book before message 1.
/// Type 1 added its size at its level, so it is taken off; types 2–4 removed theirs, so it
/// is put back (a level they emptied is reinserted in price order).
pub fn book_before_first(row1: &BookRow, first: &Message) -> BookRow {
    let mut book = row1.clone();
    let side = side_of(first.direction);
    let levels = match side {
        Side::Buy => &mut book.bids,
        Side::Sell => &mut book.asks,
    };
    let better = |a: i64, b: i64| match side {
        Side::Buy => a > b,
        Side::Sell => a < b,
    };
    match first.kind {
        1 => {
            if let Some(index) = levels.iter().position(|l| l.price == first.price) {
                levels[index].size = levels[index].size.saturating_sub(first.size);
                if levels[index].size == 0 {
                    levels.remove(index);
                }
            }
        }
        2..=4 => match levels.iter().position(|l| !better(l.price, first.price)) {
            Some(index) if levels[index].price == first.price => levels[index].size += first.size,
            Some(index) => levels.insert(
                index,
                Level {
                    price: first.price,
                    size: first.size,
                },
            ),
            None => levels.push(Level {
                price: first.price,
                size: first.size,
            }),
        },
        _ => {}
    }
    book
}

/// The orders the converter believes rest at NASDAQ (in-file orders and seeds), by level,
/// for reconciliation. Engine ids in a level are in arrival order, as ids are dense.
#[derive(Debug, Default)]
struct Model {
    /// Engine id → (side, LOBSTER price, open shares as NASDAQ has them).
    orders: HashMap<OrderId, (Side, i64, Qty)>,
    /// `[bids, asks]`: price → engine ids.
    levels: [BTreeMap<i64, Vec<OrderId>>; 2],
}

fn side_index(side: Side) -> usize {
    match side {
        Side::Buy => 0,
        Side::Sell => 1,
    }
}

impl Model {
    fn add(&mut self, id: OrderId, side: Side, price: i64, qty: Qty) {
        self.orders.insert(id, (side, price, qty));
        self.levels[side_index(side)]
            .entry(price)
            .or_default()
            .push(id);
    }

    /// Sets an order's open shares; 0 removes it.
    fn set_qty(&mut self, id: OrderId, qty: Qty) {
        if qty == 0 {
            self.remove(id);
        } else if let Some(order) = self.orders.get_mut(&id) {
            order.2 = qty;
        }
    }

    /// Open shares at one level.
    fn level_qty(&self, side: Side, price: i64) -> Qty {
        self.levels[side_index(side)].get(&price).map_or(0, |ids| {
            ids.iter()
                .filter_map(|id| self.orders.get(id))
                .map(|o| o.2)
                .sum()
        })
    }

    fn remove(&mut self, id: OrderId) {
        let Some((side, price, _)) = self.orders.remove(&id) else {
            return;
        };
        let levels = &mut self.levels[side_index(side)];
        if let Some(ids) = levels.get_mut(&price) {
            ids.retain(|&other| other != id);
            if ids.is_empty() {
                levels.remove(&price);
            }
        }
    }

    /// Orders at prices the orderbook row's side shows as absent: every price strictly
    /// inside its visible range (at or better than its last level when it has all
    /// `levels`, anywhere when it has fewer) that it does not list.
    fn gone(&self, side: Side, shown: &[Level], levels: usize) -> Vec<OrderId> {
        let limit = (shown.len() >= levels)
            .then(|| shown.last().map(|l| l.price))
            .flatten();
        let visible = |price: i64| match (limit, side) {
            (None, _) => true,
            (Some(limit), Side::Buy) => price >= limit,
            (Some(limit), Side::Sell) => price <= limit,
        };
        let listed = |price: i64| shown.iter().any(|l| l.price == price);
        let book = &self.levels[side_index(side)];
        let best_first: Box<dyn Iterator<Item = (&i64, &Vec<OrderId>)>> = match side {
            Side::Buy => Box::new(book.iter().rev()),
            Side::Sell => Box::new(book.iter()),
        };
        best_first
            .take_while(|(&price, _)| visible(price))
            .filter(|(&price, _)| !listed(price))
            .flat_map(|(_, ids)| ids.iter().copied())
            .collect()
    }
}

/// The converter's state while walking the messages.
struct Converter<'a> {
    file: &'a str,
    tick: i64,
    replay: Replay,
    known: HashMap<u64, Known>,
    /// Seeds by level, oldest first.
    seeds: HashMap<(Side, i64), Vec<Seed>>,
    halted_ids: HashSet<u64>,
    model: Model,
    halted: bool,
}

impl Converter<'_> {
    /// Counts `message` by type and, for types `from_kind` to 4, notes it as the last row
    /// mentioning its order (1 for a message on its own; 4 for the other rows of an
    /// execution group, where only executions count).
    fn count(&mut self, message: &Message, from_kind: u8) {
        *self
            .replay
            .stats
            .messages_by_type
            .entry(message.kind.to_string())
            .or_default() += 1;
        if (from_kind..=4).contains(&message.kind) {
            self.replay
                .last_mention
                .insert(message.order_id, message.row);
        }
    }

    /// Converts the message at `index` (with the rest of its group, for an execution);
    /// returns the index of the next message to convert.
    fn step(&mut self, messages: &[Message], index: usize) -> anyhow::Result<usize> {
        let message = &messages[index];
        Ok(match message.kind {
            1 => {
                self.new_order(message)?;
                index + 1
            }
            2 | 3 => {
                self.cancel(message);
                index + 1
            }
            4 => {
                let end = group_end(messages, index);
                // The other rows of the group are counted here; the group handles them.
                for other in &messages[index + 1..end] {
                    self.count(other, 4);
                }
                self.group(&messages[index..end])?;
                self.replay.rows_inside_aggressor += (end - index - 1) as u64;
                end
            }
            7 => {
                self.halt(message)?;
                index + 1
            }
            kind => {
                self.ignored(kind);
                index + 1
            }
        })
    }

    fn next_id(&mut self, origin: Origin) -> OrderId {
        self.replay.origins.push(origin);
        self.replay.origins.len() as OrderId
    }

    fn skip(&mut self, reason: Skip, kind: u8) {
        let name = serde_json::to_value(reason)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        *self
            .replay
            .stats
            .skipped
            .entry(format!("{name}/{kind}"))
            .or_default() += 1;
    }

    /// Why an event on an id no type-1 row entered cannot draw on a seed.
    fn unknown_reason(&self, order_id: u64) -> Skip {
        if self.halted_ids.contains(&order_id) {
            Skip::EnteredDuringHalt
        } else {
            Skip::UnknownOrderNoSeed
        }
    }

    /// The seed an event on an unknown order draws on: a seed with open quantity at its
    /// price and side (orders entered during a halt never draw on seeds).
    fn seed_for(&mut self, message: &Message) -> Option<&mut Seed> {
        if self.halted_ids.contains(&message.order_id) {
            return None;
        }
        self.seeds
            .get_mut(&(side_of(message.direction), message.price))?
            .iter_mut()
            .find(|seed| seed.open > 0)
    }

    /// Takes `size` off the seed an unknown-order event draws on; returns its engine id and
    /// open quantity left, or `None` if there is no such seed.
    fn draw_seed(&mut self, message: &Message) -> Option<(OrderId, Qty)> {
        let seed = self.seed_for(message)?;
        seed.open = seed.open.saturating_sub(message.size);
        let (engine_id, open) = (seed.engine_id, seed.open);
        self.model.set_qty(engine_id, open);
        *self
            .replay
            .stats
            .seed_events_by_type
            .entry(message.kind.to_string())
            .or_default() += 1;
        Some((engine_id, open))
    }

    /// Reconciliation after orderbook row `row`: cancels what it shows gone.
    fn reconcile(&mut self, row: &BookRow, levels: usize) {
        for (side, shown) in [(Side::Buy, &row.bids), (Side::Sell, &row.asks)] {
            for id in self.model.gone(side, shown, levels) {
                self.model.remove(id);
                let origin = id
                    .checked_sub(1)
                    .and_then(|i| self.replay.origins.get(i as usize))
                    .copied();
                let account = if let Some(Origin::Lobster { order_id, .. }) = origin {
                    if let Some(known) = self.known.get_mut(&order_id) {
                        known.remaining = 0;
                    }
                    self.replay.stats.reconcile_cancels_in_file += 1;
                    LOBSTER_ACCOUNT
                } else {
                    if let Some(seed) = self
                        .seeds
                        .values_mut()
                        .flat_map(|list| list.iter_mut())
                        .find(|s| s.engine_id == id)
                    {
                        seed.open = 0;
                    }
                    self.replay.stats.reconcile_cancels_seed += 1;
                    SEED_ACCOUNT
                };
                self.replay.commands.push(Command::Cancel {
                    order_id: id,
                    account,
                });
            }
        }
        // Only after both sides' removals, so an added order cannot meet a removed one.
        for (side, shown) in [(Side::Buy, &row.bids), (Side::Sell, &row.asks)] {
            for level in shown {
                let held = self.model.level_qty(side, level.price);
                if held < level.size && level.price > 0 && level.price % self.tick == 0 {
                    self.add_seed(side, level.price, level.size - held);
                    self.replay.stats.reconcile_fills += 1;
                    self.replay.stats.reconcile_fill_shares += level.size - held;
                }
            }
        }
    }

    /// Enters a synthetic order for `qty` shares nobody in the file entered.
    fn add_seed(&mut self, side: Side, price: i64, qty: Qty) {
        let engine_id = self.next_id(Origin::Seed);
        self.replay.commands.push(Command::New(NewOrder {
            order_id: engine_id,
            account: SEED_ACCOUNT,
            instrument: INSTRUMENT,
            side,
            price: Some(price / self.tick),
            qty,
            tif: TimeInForce::Gtc,
            post_only: false,
            stp: SelfTradePrevention::None,
        }));
        self.model.add(engine_id, side, price, qty);
        self.seeds.entry((side, price)).or_default().push(Seed {
            engine_id,
            open: qty,
        });
    }

    fn seed_book(&mut self, book: &BookRow) -> anyhow::Result<()> {
        for (side, levels) in [(Side::Buy, &book.bids), (Side::Sell, &book.asks)] {
            for level in levels {
                if level.price <= 0 || level.price % self.tick != 0 {
                    bail!(
                        "{}: initial book price {} is not a positive multiple of the tick {}",
                        self.file,
                        level.price,
                        self.tick
                    );
                }
                self.add_seed(side, level.price, level.size);
                self.replay.stats.seed_orders += 1;
            }
        }
        Ok(())
    }

    fn new_order(&mut self, message: &Message) -> anyhow::Result<()> {
        if self.halted {
            self.halted_ids.insert(message.order_id);
            self.skip(Skip::Halted, 1);
            return Ok(());
        }
        let price = ticks(message.price, self.tick, message, self.file)?;
        let engine_id = self.next_id(Origin::Lobster {
            order_id: message.order_id,
            row: message.row,
        });
        self.known.insert(
            message.order_id,
            Known {
                engine_id,
                remaining: message.size,
            },
        );
        self.model.add(
            engine_id,
            side_of(message.direction),
            message.price,
            message.size,
        );
        self.replay.commands.push(Command::New(NewOrder {
            order_id: engine_id,
            account: LOBSTER_ACCOUNT,
            instrument: INSTRUMENT,
            side: side_of(message.direction),
            price: Some(price),
            qty: message.size,
            tif: TimeInForce::Gtc,
            post_only: false,
            stp: SelfTradePrevention::None,
        }));
        self.replay.stats.new_orders += 1;
        Ok(())
    }

    /// Types 2 and 3: take `size` off the order (all of it for a delete).
    fn cancel(&mut self, message: &Message) {
        let delete = message.kind == 3;
        if let Some(known) = self.known.get_mut(&message.order_id) {
            known.remaining = known.remaining.saturating_sub(message.size);
            let (engine_id, remaining) = (known.engine_id, known.remaining);
            self.model
                .set_qty(engine_id, if delete { 0 } else { remaining });
            let Some(known) = self.known.get(&message.order_id) else {
                return;
            };
            let command = if delete {
                self.replay.stats.cancels += 1;
                Command::Cancel {
                    order_id: known.engine_id,
                    account: LOBSTER_ACCOUNT,
                }
            } else {
                self.replay.stats.reduces += 1;
                Command::Reduce {
                    order_id: known.engine_id,
                    account: LOBSTER_ACCOUNT,
                    qty: known.remaining,
                }
            };
            self.replay.commands.push(command);
            return;
        }
        if let Some((engine_id, open)) = self.draw_seed(message) {
            self.replay.commands.push(Command::Reduce {
                order_id: engine_id,
                account: SEED_ACCOUNT,
                qty: open,
            });
            self.replay.stats.reduces += 1;
            return;
        }
        let reason = self.unknown_reason(message.order_id);
        self.skip(reason, message.kind);
    }

    /// One type-4 row of a group: what it expects, or why it is skipped.
    fn execution(&mut self, message: &Message) -> Option<ExpectedFill> {
        if self.halted {
            self.skip(Skip::Halted, 4);
            return None;
        }
        if let Some(known) = self.known.get_mut(&message.order_id) {
            known.remaining = known.remaining.saturating_sub(message.size);
            let (maker, remaining) = (known.engine_id, known.remaining);
            self.model.set_qty(maker, remaining);
            return Some(ExpectedFill {
                row: message.row,
                maker,
                in_file: true,
                qty: message.size,
            });
        }
        if let Some((maker, _)) = self.draw_seed(message) {
            return Some(ExpectedFill {
                row: message.row,
                maker,
                in_file: false,
                qty: message.size,
            });
        }
        let reason = self.unknown_reason(message.order_id);
        self.skip(reason, 4);
        None
    }

    /// Converts the type-4 rows `messages[start..=end]` (with ignored rows between) into
    /// one aggressor.
    fn group(&mut self, group: &[Message]) -> anyhow::Result<()> {
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            return Ok(());
        };
        let resting = side_of(first.direction);
        let mut expected = Vec::new();
        let mut limit: Option<i64> = None;
        for message in group {
            match message.kind {
                4 => {
                    if let Some(fill) = self.execution(message) {
                        ticks(message.price, self.tick, message, self.file)?;
                        // Buying from asks goes up to the highest ask filled; selling, down.
                        limit = Some(match (limit, resting) {
                            (None, _) => message.price,
                            (Some(l), Side::Sell) => l.max(message.price),
                            (Some(l), Side::Buy) => l.min(message.price),
                        });
                        expected.push(fill);
                    }
                }
                kind => self.ignored(kind),
            }
        }
        let group_index = self.replay.groups.len();
        let mut aggressor = None;
        if let Some(limit) = limit {
            let qty = expected.iter().map(|f| f.qty).sum();
            let engine_id = self.next_id(Origin::Aggressor { group: group_index });
            self.replay.commands.push(Command::New(NewOrder {
                order_id: engine_id,
                account: AGGRESSOR_ACCOUNT,
                instrument: INSTRUMENT,
                side: resting.opposite(),
                price: Some(limit / self.tick),
                qty,
                tif: TimeInForce::Ioc,
                post_only: false,
                stp: SelfTradePrevention::None,
            }));
            self.replay.stats.aggressors += 1;
            self.replay.stats.aggressor_rows += expected.len() as u64;
            aggressor = Some(engine_id);
        }
        self.replay.groups.push(Group {
            first_row: first.row,
            last_row: last.row,
            expected,
            aggressor,
        });
        Ok(())
    }

    fn ignored(&mut self, kind: u8) {
        match kind {
            5 => self.skip(Skip::HiddenExecution, 5),
            6 => self.skip(Skip::Cross, 6),
            _ => {}
        }
    }

    fn halt(&mut self, message: &Message) -> anyhow::Result<()> {
        self.skip(Skip::HaltIndicator, 7);
        match message.price {
            -1 => self.halted = true,
            0 => {} // quoting resumes, trading does not yet
            1 => self.halted = false,
            other => bail!(
                "{}:{}: a halt indicator (type 7) has price -1, 0 or 1, not {other}",
                self.file,
                message.row
            ),
        }
        Ok(())
    }
}

/// The end (exclusive) of the merged aggressor starting at `messages[start]` (a type-4
/// row): it takes the following type-4 rows of the same time and direction, and hidden
/// executions or crosses of the same time between them, and ends at its last type-4 row.
pub fn group_end(messages: &[Message], start: usize) -> usize {
    let first = &messages[start];
    let mut end = start + 1;
    let mut scan = start + 1;
    while let Some(next) = messages.get(scan) {
        if next.time_ns != first.time_ns {
            break;
        }
        match next.kind {
            4 if next.direction == first.direction => end = scan + 1,
            5 | 6 => {}
            _ => break,
        }
        scan += 1;
    }
    end
}

/// Converts a LOBSTER message file and its orderbook file (`levels` levels per side) into a
/// replay. `file` names the message file in errors; `tick` is LOBSTER price units
/// (dollars × 10000) per engine tick; `reconcile` turns on reconciliation.
pub fn convert(
    symbol: &str,
    messages: &[Message],
    book: &[BookRow],
    levels: usize,
    tick: i64,
    reconcile: bool,
    file: &str,
) -> anyhow::Result<Replay> {
    if tick <= 0 {
        bail!("the tick must be positive");
    }
    let (Some(first), Some(row1)) = (messages.first(), book.first()) else {
        bail!("{file}: the message file and the orderbook file must both have rows");
    };
    if messages.len() != book.len() {
        bail!(
            "{file}: {} messages but {} orderbook rows: the files must have one row per message",
            messages.len(),
            book.len()
        );
    }
    let mut converter = Converter {
        file,
        tick,
        replay: Replay {
            tick,
            reconciled: reconcile,
            ..Replay::default()
        },
        known: HashMap::new(),
        seeds: HashMap::new(),
        halted_ids: HashSet::new(),
        model: Model::default(),
        halted: false,
    };
    let symbol = Symbol::new(symbol).with_context(|| format!("bad symbol {symbol:?}"))?;
    converter.replay.commands.push(Command::DefineInstrument {
        instrument: INSTRUMENT,
        symbol,
    });
    converter.seed_book(&book_before_first(row1, first))?;
    let mut index = 0;
    while let Some(message) = messages.get(index) {
        converter.count(message, 1);
        let next = converter.step(messages, index)?;
        let last_row = messages[next - 1].row;
        converter
            .replay
            .checkpoints
            .push((converter.replay.commands.len(), last_row));
        // Row `last_row` is compared with the state before its own reconciliation, so the
        // book check is not made equal by construction.
        if reconcile {
            if let Some(row) = book.get(next - 1) {
                converter.reconcile(row, levels);
            }
        }
        index = next;
    }
    // Ids a type-1 row entered that later rows mention only from before: not needed.
    converter
        .replay
        .last_mention
        .retain(|id, _| converter.known.contains_key(id));
    Ok(converter.replay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lobster::parse::{read_messages, read_orderbook};

    /// Writes the two CSVs to a temp dir and converts them (tick 100 = one cent).
    fn convert_csv(messages: &str, book: &str, reconcile: bool) -> Replay {
        let dir = tempfile::tempdir().unwrap();
        let (m, b) = (dir.path().join("m.csv"), dir.path().join("b.csv"));
        std::fs::write(&m, messages).unwrap();
        std::fs::write(&b, book).unwrap();
        let messages = read_messages(&m).unwrap();
        let (levels, rows) = read_orderbook(&b).unwrap();
        convert("TEST", &messages, &rows, levels, 100, reconcile, "m.csv").unwrap()
    }

    fn order(id: OrderId, account: AccountId, side: Side, price: Price, qty: Qty) -> Command {
        Command::New(NewOrder {
            order_id: id,
            account,
            instrument: INSTRUMENT,
            side,
            price: Some(price),
            qty,
            tif: TimeInForce::Gtc,
            post_only: false,
            stp: SelfTradePrevention::None,
        })
    }

    fn ioc(id: OrderId, side: Side, price: Price, qty: Qty) -> Command {
        Command::New(NewOrder {
            tif: TimeInForce::Ioc,
            ..match order(id, AGGRESSOR_ACCOUNT, side, price, qty) {
                Command::New(o) => o,
                _ => unreachable!(),
            }
        })
    }

    #[test]
    fn each_message_type_becomes_the_documented_command() {
        // Book before message 1: bid 100.00 x 50 (message 1 adds 10 to it), ask 100.10 x 30.
        let messages = "\
1.0,1,500,10,1000000,1
2.0,2,500,4,1000000,1
3.0,1,501,20,1001000,-1
4.0,4,501,5,1001000,-1
4.0,5,0,7,1000500,-1
4.0,4,9,30,1001000,-1
5.0,3,500,6,1000000,1
6.0,5,0,3,1000500,1
7.0,7,0,0,-1,-1
8.0,1,502,1,1000000,1
9.0,7,0,0,1,-1
10.0,4,77,50,1000000,1
";
        // Only row 1 matters without reconciliation; the rest repeat it.
        let book = "1001000,30,1000000,60\n".repeat(12);
        let replay = convert_csv(messages, &book, false);
        let symbol = Symbol::new("TEST").unwrap();
        use Side::{Buy, Sell};
        assert_eq!(
            replay.commands,
            vec![
                Command::DefineInstrument {
                    instrument: INSTRUMENT,
                    symbol
                },
                order(1, SEED_ACCOUNT, Buy, 10000, 50),
                order(2, SEED_ACCOUNT, Sell, 10010, 30),
                order(3, LOBSTER_ACCOUNT, Buy, 10000, 10),
                Command::Reduce {
                    order_id: 3,
                    account: LOBSTER_ACCOUNT,
                    qty: 6
                },
                order(4, LOBSTER_ACCOUNT, Sell, 10010, 20),
                // Rows 4–6: one aggressor (the hidden execution between does not split it);
                // 501 and the seed at 100.10 (id 9 is no file order) for 5 + 30.
                ioc(5, Buy, 10010, 35),
                Command::Cancel {
                    order_id: 3,
                    account: LOBSTER_ACCOUNT
                },
                // Row 10 is entered during the halt: not sent. Row 12 draws on the bid seed.
                ioc(6, Sell, 10000, 50),
            ]
        );
        assert_eq!(
            replay.groups[0].expected,
            vec![
                ExpectedFill {
                    row: 4,
                    maker: 4,
                    in_file: true,
                    qty: 5
                },
                ExpectedFill {
                    row: 6,
                    maker: 2,
                    in_file: false,
                    qty: 30
                },
            ]
        );
        // Book checkpoints: every row but 4 and 5 (inside the aggressor of rows 4..=6).
        let rows: Vec<usize> = replay.checkpoints.iter().map(|c| c.1).collect();
        assert_eq!(rows, vec![1, 2, 3, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(replay.rows_inside_aggressor, 2);
        assert_eq!(replay.stats.skipped.get("halted/1"), Some(&1));
        assert_eq!(replay.stats.skipped.get("hidden_execution/5"), Some(&2));
        assert_eq!(
            replay.origins[3],
            Origin::Lobster {
                order_id: 501,
                row: 3
            }
        );
    }

    #[test]
    fn unknown_orders_without_a_seed_are_skipped() {
        let replay = convert_csv(
            "1.0,3,42,10,999900,1\n2.0,4,43,10,999900,1\n",
            "1001000,30,1000000,60\n1001000,30,1000000,60\n",
            false,
        );
        // Message 1 is undone into row 1 (a bid at 99.99 x 10 is put back), so that seed
        // takes message 1; message 2 finds the seed at 99.99 used up.
        assert_eq!(replay.stats.seed_events_by_type.get("3"), Some(&1));
        assert_eq!(
            replay.stats.skipped.get("unknown_order_no_seed/4"),
            Some(&1)
        );
        assert_eq!(replay.stats.aggressors, 0);
    }

    #[test]
    fn reconciliation_cancels_what_a_row_shows_gone_and_adds_what_it_shows_unseen() {
        // Level-1 file. Message 2 enters a better bid; row 2 shows the old best bid
        // 100.00 instead (the new order was canceled unseen) and the ask grew to 40.
        let replay = convert_csv(
            "1.0,1,500,10,1000000,1\n2.0,1,501,5,1000100,1\n3.0,1,502,1,1002000,-1\n",
            "1001000,30,1000000,10\n1001000,40,1000000,10\n1001000,40,1000000,10\n",
            true,
        );
        use Side::{Buy, Sell};
        // Row 1 minus message 1 leaves no bid: the only seed is the ask (id 1).
        assert_eq!(
            &replay.commands[2..],
            &[
                order(2, LOBSTER_ACCOUNT, Buy, 10000, 10),
                order(3, LOBSTER_ACCOUNT, Buy, 10001, 5),
                Command::Cancel {
                    order_id: 3,
                    account: LOBSTER_ACCOUNT
                },
                order(4, SEED_ACCOUNT, Sell, 10010, 10),
                order(5, LOBSTER_ACCOUNT, Sell, 10020, 1),
            ]
        );
        // Row 2 is compared before its own reconciliation.
        assert_eq!(replay.checkpoints[1], (4, 2));
        assert_eq!(replay.stats.reconcile_cancels_in_file, 1);
        assert_eq!(replay.stats.reconcile_fill_shares, 10);
    }

    #[test]
    fn prices_must_be_whole_ticks() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("m.csv");
        std::fs::write(&m, "1.0,1,1,10,1000050,1\n").unwrap();
        let messages = read_messages(&m).unwrap();
        let book = vec![BookRow::default()];
        let error = convert("T", &messages, &book, 1, 100, false, "m.csv").unwrap_err();
        assert!(
            error.to_string().contains("m.csv:1: price 1000050"),
            "{error}"
        );
    }
}
