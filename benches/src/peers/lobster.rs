//! `lobster` 0.7.0: a small single-threaded limit order book (`BTreeMap` of price levels,
//! each a `Vec` of arena indices; a `HashMap` from id to arena slot). Its API has limit,
//! market and cancel orders only, so two of Keel's commands are emulated.
//!
//! Mapping:
//! - new GTC limit order → `Limit`.
//! - new IOC limit order → `Limit`, then `Cancel` of the remainder when the result says
//!   part of it rested (`Placed` or `PartiallyFilled`): the same book and trades as a
//!   native IOC, at the cost of a second call (counted as emulated). A `Market` order
//!   would be one call but is not the same order: it ignores the IOC's limit price.
//! - market order → `Market` (its unfilled part is dropped, as Keel's).
//! - FOK and post-only orders: skipped (no way to express them).
//! - cancel → `Cancel`. lobster answers `Canceled` even for an unknown id, so refusals
//!   cannot be counted.
//! - replace → `Cancel` + `Limit` at the new price and quantity (counted as emulated): the
//!   order goes to the back of its new level and trades if it crosses, as Keel's replace
//!   does whenever the price changes (every move in the mix changes it).
//! - reduce, mass cancel: skipped (no modify and no price lookup to re-enter the order;
//!   no accounts).
//!
//! Known behaviour that shows on this stream: lobster never removes an emptied price level
//! from its `BTreeMap`, and recomputes the best price after a cancel by scanning levels
//! from the top, skipping empty ones. The exchange-core mix walks its price over a band of
//! tens of thousands of ticks, so empty levels can pile up and make those scans longer (not
//! measured separately here). Filled orders are also never removed from its id map.

use keel_engine::{Command, NewOrder, OrderId, Price, Side, TimeInForce};
use lobster::{OrderBook, OrderEvent, OrderType};

use super::{unsigned_price, BookState, PeerBook, PeerInfo, Tally};

/// Keel order ids at or above this are refused by the adapter (its side map is a dense
/// `Vec`); the generator's ids are dense from 1.
const MAX_MAPPED_ORDER_ID: OrderId = 1 << 32;

/// A lobster book, the side of each order (a replace re-enters the order, and neither Keel's
/// replace nor lobster's cancel carries the side) and the tally.
pub struct LobsterBook {
    book: OrderBook,
    /// Side of each Keel order id entered as a limit order.
    sides: Vec<Option<Side>>,
    tally: Tally,
}

fn side(side: Side) -> lobster::Side {
    match side {
        Side::Buy => lobster::Side::Bid,
        Side::Sell => lobster::Side::Ask,
    }
}

impl LobsterBook {
    /// Executes one lobster order, counting its fills; returns whether part of it rested.
    fn execute(&mut self, order: OrderType) -> bool {
        match self.book.execute(order) {
            OrderEvent::Placed { .. } => true,
            OrderEvent::PartiallyFilled {
                filled_qty, fills, ..
            } => {
                self.count(filled_qty, fills.len());
                // For a limit order a partial fill means the remainder rested.
                matches!(order, OrderType::Limit { .. })
            }
            OrderEvent::Filled {
                filled_qty, fills, ..
            } => {
                self.count(filled_qty, fills.len());
                false
            }
            OrderEvent::Unfilled { .. } | OrderEvent::Canceled { .. } => false,
        }
    }

    fn count(&mut self, qty: u64, trades: usize) {
        self.tally.trades += trades as u64;
        self.tally.traded_qty += qty;
    }

    fn submit(&mut self, order: &NewOrder) {
        let id = u128::from(order.order_id);
        let side = side(order.side);
        if order.post_only || order.tif == TimeInForce::Fok {
            self.tally.skipped += 1;
            return;
        }
        let Some(price) = order.price else {
            self.execute(OrderType::Market {
                id,
                side,
                qty: order.qty,
            });
            return;
        };
        let Some(price) = unsigned_price(price) else {
            self.tally.refused += 1;
            return;
        };
        if order.order_id >= MAX_MAPPED_ORDER_ID {
            self.tally.refused += 1;
            return;
        }
        // Ids are dense, so the Vec grows by about one slot per order.
        let index = order.order_id as usize;
        if self.sides.len() <= index {
            self.sides.resize(index + 1, None);
        }
        self.sides[index] = Some(order.side);
        let rested = self.execute(OrderType::Limit {
            id,
            side,
            qty: order.qty,
            price,
        });
        if order.tif == TimeInForce::Ioc {
            self.tally.emulated += 1;
            if rested {
                self.execute(OrderType::Cancel { id });
            }
        }
    }

    fn replace(&mut self, order_id: OrderId, price: Price, qty: u64) {
        let Some(price) = unsigned_price(price) else {
            self.tally.refused += 1;
            return;
        };
        let side_of = usize::try_from(order_id)
            .ok()
            .and_then(|index| self.sides.get(index).copied().flatten());
        let Some(side_of) = side_of else {
            self.tally.refused += 1;
            return;
        };
        self.tally.emulated += 1;
        let id = u128::from(order_id);
        self.execute(OrderType::Cancel { id });
        self.execute(OrderType::Limit {
            id,
            side: side(side_of),
            qty,
            price,
        });
    }
}

impl PeerBook for LobsterBook {
    const INFO: PeerInfo = PeerInfo {
        name: "lobster",
        krate: "lobster 0.7.0",
        mapping: &[
            "new GTC limit: native Limit",
            "new IOC limit: emulated as Limit + Cancel of the rested remainder (no IOC)",
            "cancel: native Cancel",
            "replace (move): emulated as Cancel + Limit (no modify)",
            "FOK, post-only, reduce, mass cancel: skipped (not expressible; none in the mix)",
        ],
        fairness: &[
            "does much less than Keel: no accounts, no ownership checks, no self-trade \
             prevention, no duplicate-id check, no refusals at all (cancel of an unknown id \
             answers Canceled), no IOC/FOK/post-only",
            "two calls for each IOC and each replace, where Keel makes one (82% of the mix \
             are replaces)",
            "never removes emptied price levels and rescans from the top for the best \
             price after a cancel: with this stream's drifting price, a cost of its design \
             (not of the adapter); how much of its time it takes was not measured",
            "its API allocates a Vec of fills per trading order",
        ],
    };

    fn new() -> Self {
        LobsterBook {
            // Arena capacity: the mix keeps about a thousand orders resting; lobster grows
            // the arena beyond this anyway (and never frees filled orders' slots).
            book: OrderBook::new(1 << 16, 16, false),
            sides: Vec::with_capacity(1 << 16),
            tally: Tally::default(),
        }
    }

    fn apply(&mut self, command: &Command) {
        match *command {
            Command::DefineInstrument { .. } => return,
            Command::New(ref order) => self.submit(order),
            Command::Cancel { order_id, .. } => {
                self.execute(OrderType::Cancel {
                    id: u128::from(order_id),
                });
            }
            Command::Replace {
                order_id,
                price,
                qty,
                ..
            } => self.replace(order_id, price, qty),
            Command::Reduce { .. } | Command::MassCancel { .. } => self.tally.skipped += 1,
        }
        self.tally.commands += 1;
    }

    fn tally(&self) -> Tally {
        self.tally
    }

    fn reset_tally(&mut self) {
        self.tally = Tally::default();
    }

    fn book_state(&self) -> BookState {
        let price = |p: Option<u64>| p.and_then(|p| i64::try_from(p).ok());
        // `depth` walks every level whatever its argument, which only sizes its Vecs.
        let depth = self.book.depth(0);
        let resting_qty = depth
            .bids
            .iter()
            .chain(depth.asks.iter())
            .map(|level| level.qty)
            .sum();
        BookState {
            best_bid: price(self.book.max_bid()),
            best_ask: price(self.book.min_ask()),
            resting_qty,
            resting_orders: None,
        }
    }
}
