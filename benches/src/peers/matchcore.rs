//! `matchcore` 0.4.0: a single-threaded, deterministic price-time matching engine
//! (`BTreeMap` of levels over a `Slab`, `FxHashMap` of orders), the closest peer to Keel in
//! design. Everything in the exchange-core mix maps onto one native call.
//!
//! Mapping:
//! - new limit order (GTC/IOC/FOK, post-only) → `Submit(NewOrder::Limit)` with the same
//!   flags; market order → `Submit(NewOrder::Market)` (not market-to-limit).
//! - cancel → `Cancel { order_kind: Limit }`.
//! - replace → `Amend` with the new price and `QuantityPolicy::Standard { quantity }`: the
//!   same rules as Keel (keeps priority at the same price when the quantity does not grow,
//!   otherwise goes to the back; a crossing new price trades).
//! - reduce to 0 → cancel; reduce to `q` > 0 → `Amend` with quantity `q`. Unlike Keel, a
//!   `q` above the open quantity grows the order (the mix has no reduces).
//! - mass cancel: skipped (no such command).
//! - self-trade prevention: not supported; ignored (the mix has it off).
//!
//! Known behaviour that shows on this stream: matchcore 0.4.0 matches a limit order that
//! crosses on arrival with no price limit (`submit_crossable_order` passes `None` to
//! `match_order`), so it also trades at prices beyond the order's limit, like a market
//! order; a test below shows it on three orders. Its trades therefore differ slightly from
//! Keel's, and some orders Keel still has resting are already filled in matchcore, so later
//! moves and cancels of them are refused (`OrderNotFound`).
//!
//! matchcore numbers orders itself (the id is the command's sequence number), so the adapter
//! keeps a dense `Vec` from Keel order id to matchcore id; that lookup is charged to it.

use keel_engine::{Command, NewOrder, OrderId, Side, TimeInForce};
use matchcore as mc;

use super::{unsigned_price, BookState, PeerBook, PeerInfo, Tally};

/// Keel order ids at or above this are refused by the adapter (its id map is a dense
/// `Vec`); the generator's ids are dense from 1.
const MAX_MAPPED_ORDER_ID: OrderId = 1 << 32;

/// A matchcore book, the Keel → matchcore id map and the tally.
pub struct MatchcoreBook {
    book: mc::OrderBook,
    next_sequence: u64,
    /// matchcore id + 1 of each Keel order id (0: never submitted).
    ids: Vec<u64>,
    tally: Tally,
}

impl MatchcoreBook {
    fn meta(&mut self) -> mc::CommandMeta {
        let sequence_number = mc::SequenceNumber(self.next_sequence);
        self.next_sequence += 1;
        mc::CommandMeta {
            sequence_number,
            // matchcore expires GTD orders by timestamp; none are used, so a constant
            // timestamp is faithful and avoids reading a clock Keel does not read either.
            timestamp: mc::Timestamp(0),
        }
    }

    fn mapped(&self, order_id: OrderId) -> Option<mc::OrderId> {
        let index = usize::try_from(order_id).ok()?;
        match self.ids.get(index) {
            Some(&id) if id > 0 => Some(mc::OrderId(id - 1)),
            _ => None,
        }
    }

    fn execute(&mut self, kind: mc::CommandKind) -> Option<mc::OrderId> {
        let command = mc::Command {
            meta: self.meta(),
            kind,
        };
        match self.book.execute(&command) {
            mc::CommandOutcome::Applied(report) => match report {
                mc::CommandReport::Submit(effects) | mc::CommandReport::Amend(effects) => {
                    let target = effects.target_order();
                    let orders = std::iter::once(target).chain(effects.triggered_orders());
                    for order in orders {
                        if let Some(result) = order.match_result() {
                            self.tally.trades += result.trades().len() as u64;
                            self.tally.traded_qty += result.executed_quantity().0;
                        }
                    }
                    Some(target.order_id())
                }
                mc::CommandReport::Cancel => None,
            },
            mc::CommandOutcome::Rejected(_) => {
                self.tally.refused += 1;
                None
            }
        }
    }

    fn submit(&mut self, order: &NewOrder) {
        if order.order_id >= MAX_MAPPED_ORDER_ID {
            self.tally.refused += 1;
            return;
        }
        let side = side(order.side);
        let quantity = mc::QuantityPolicy::Standard {
            quantity: mc::Quantity(order.qty),
        };
        let new_order = match order.price {
            None => {
                mc::NewOrder::Market(mc::MarketOrder::new(mc::Quantity(order.qty), side, false))
            }
            Some(price) => {
                let Some(price) = unsigned_price(price) else {
                    self.tally.refused += 1;
                    return;
                };
                let tif = match order.tif {
                    TimeInForce::Gtc => mc::TimeInForce::Gtc,
                    TimeInForce::Ioc => mc::TimeInForce::Ioc,
                    TimeInForce::Fok => mc::TimeInForce::Fok,
                };
                mc::NewOrder::Limit(mc::LimitOrder::new(
                    mc::Price(price),
                    quantity,
                    mc::OrderFlags::new(side, order.post_only, tif),
                ))
            }
        };
        if let Some(id) = self.execute(mc::CommandKind::Submit(mc::SubmitCmd { order: new_order }))
        {
            // Ids are dense, so the Vec grows by about one slot per order.
            let index = order.order_id as usize;
            if self.ids.len() <= index {
                self.ids.resize(index + 1, 0);
            }
            self.ids[index] = id.0 + 1;
        }
    }

    fn cancel(&mut self, order_id: OrderId) {
        let Some(id) = self.mapped(order_id) else {
            self.tally.refused += 1;
            return;
        };
        self.execute(mc::CommandKind::Cancel(mc::CancelCmd {
            order_id: id,
            order_kind: mc::OrderKind::Limit,
        }));
    }

    fn amend(&mut self, order_id: OrderId, patch: mc::LimitOrderPatch) {
        let Some(id) = self.mapped(order_id) else {
            self.tally.refused += 1;
            return;
        };
        self.execute(mc::CommandKind::Amend(mc::AmendCmd {
            order_id: id,
            patch: mc::AmendPatch::Limit(patch),
        }));
    }
}

fn side(side: Side) -> mc::Side {
    match side {
        Side::Buy => mc::Side::Buy,
        Side::Sell => mc::Side::Sell,
    }
}

impl PeerBook for MatchcoreBook {
    const INFO: PeerInfo = PeerInfo {
        name: "matchcore",
        krate: "matchcore 0.4.0",
        mapping: &[
            "new GTC/IOC/FOK limit: native Submit(Limit) with the same time in force",
            "cancel: native Cancel",
            "replace (move): native Amend with new price and quantity (same priority rules \
             as Keel)",
            "reduce: Amend quantity (0 = Cancel); grows the order where Keel would ignore \
             it (no reduces in the mix)",
            "mass cancel: skipped (not supported)",
        ],
        fairness: &[
            "bug in 0.4.0: a limit order crossing on arrival is matched with no price \
             limit (trades beyond its limit like a market order); so its trades differ a \
             little from Keel's and it refuses moves/cancels of orders it over-filled",
            "does less than Keel: no accounts (so no ownership check on cancel/replace), \
             no self-trade prevention, no duplicate-id check (it numbers orders itself)",
            "does things Keel does not: pegged, iceberg, GTD and price-conditional (stop) \
             order support is checked on every command (cascade after each match), and it \
             checks command sequence numbers",
            "its API allocates per command: each outcome owns Vecs of trades and of \
             triggered orders, where Keel writes into a reused sink",
            "the adapter's Keel-id → matchcore-id lookup (one Vec read per cancel or \
             replace) is charged to matchcore",
        ],
    };

    fn new() -> Self {
        MatchcoreBook {
            book: mc::OrderBook::new("BENCH"),
            next_sequence: 0,
            ids: Vec::with_capacity(1 << 16),
            tally: Tally::default(),
        }
    }

    fn apply(&mut self, command: &Command) {
        match *command {
            Command::DefineInstrument { .. } => return,
            Command::New(ref order) => self.submit(order),
            Command::Cancel { order_id, .. } => self.cancel(order_id),
            Command::Replace {
                order_id,
                price,
                qty,
                ..
            } => match unsigned_price(price) {
                Some(price) => self.amend(
                    order_id,
                    mc::LimitOrderPatch::new()
                        .with_price(mc::Price(price))
                        .with_quantity_policy(mc::QuantityPolicy::Standard {
                            quantity: mc::Quantity(qty),
                        }),
                ),
                None => self.tally.refused += 1,
            },
            Command::Reduce { order_id, qty, .. } => {
                if qty == 0 {
                    self.cancel(order_id);
                } else {
                    self.amend(
                        order_id,
                        mc::LimitOrderPatch::new().with_quantity_policy(
                            mc::QuantityPolicy::Standard {
                                quantity: mc::Quantity(qty),
                            },
                        ),
                    );
                }
            }
            Command::MassCancel { .. } => self.tally.skipped += 1,
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
        let price = |p: Option<mc::Price>| p.and_then(|p| i64::try_from(p.0).ok());
        // `bid_size(n)`/`ask_size(n)` sum the first n levels; usize::MAX covers them all.
        let resting_qty = self.book.bid_size(usize::MAX).0 + self.book.ask_size(usize::MAX).0;
        BookState {
            best_bid: price(self.book.best_bid_price()),
            best_ask: price(self.book.best_ask_price()),
            resting_qty,
            resting_orders: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_engine::SelfTradePrevention;

    fn limit(order_id: OrderId, side: Side, price: i64, qty: u64) -> Command {
        Command::New(NewOrder {
            order_id,
            account: order_id,
            instrument: 1,
            side,
            price: Some(price),
            qty,
            tif: TimeInForce::Gtc,
            post_only: false,
            stp: SelfTradePrevention::None,
        })
    }

    /// Why matchcore's trade count differs from Keel's on the mix: in 0.4.0 a limit order
    /// that crosses on arrival is matched with no price limit (`submit_crossable_order`
    /// passes `None` to `match_order`), so it also takes liquidity beyond its own price.
    /// Keel (and the other peers) stop at the limit.
    #[test]
    fn matchcore_0_4_trades_through_a_crossing_limit_price() {
        let mut book = MatchcoreBook::new();
        book.apply(&limit(1, Side::Sell, 100, 5));
        book.apply(&limit(2, Side::Sell, 101, 5));
        book.reset_tally();
        // A buy limited to 100 for 8: Keel trades 5 at 100 and rests 3 at 100.
        book.apply(&limit(3, Side::Buy, 100, 8));
        let tally = book.tally();
        assert_eq!((tally.trades, tally.traded_qty), (2, 8), "{tally:?}");
        assert_eq!(book.book_state().best_ask, Some(101));
        assert_eq!(book.book_state().best_bid, None);
    }
}
