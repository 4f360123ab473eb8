//! `orderbook-rs` 0.15.3: a thread-safe order book (`crossbeam` skip lists of price levels,
//! `DashMap` indexes, atomics and a submit gate) with many order types, fees, risk checks,
//! per-user indexes and optional self-trade prevention. Everything in the exchange-core mix
//! maps onto one native call.
//!
//! Mapping:
//! - new limit order → `add_limit_order_with_user` with the same time in force (GTC, IOC,
//!   FOK) and the Keel account as the user id; post-only → `add_post_only_order_with_user`;
//!   market order → `submit_market_order_with_user`. An IOC whose remainder is dropped is
//!   reported by the crate as `Err(InsufficientLiquidity)` after its fills: that is the
//!   IOC's normal end and is not counted as a refusal.
//! - cancel → `cancel_order` (`Ok(None)`, order not found, counts as a refusal).
//! - replace → `update_order(UpdatePriceAndQuantity)` (cancel and re-add inside the crate:
//!   back of the new level, trades if it crosses, as Keel). At an unchanged price the crate
//!   also sends the order to the back, where Keel keeps its priority unless the quantity
//!   grows; every move in the exchange-core mix changes the price.
//! - reduce to 0 → cancel; reduce to `q` > 0 → `update_order(UpdateQuantity)`. Unlike Keel,
//!   a `q` above the open quantity grows the order (the mix has no reduces).
//! - mass cancel → `cancel_orders_by_user` (all instruments: the adapter holds one book).
//!
//! Trades are counted by a trade listener (the crate's own way of reporting every fill,
//! including those of an IOC that ends in `Err`), on atomics.
//!
//! Set-up: a `StubClock` (a counter, no clock syscall; Keel reads no clock), no fees, no
//! risk limits, self-trade prevention off (the crate's defaults otherwise).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use keel_engine::{AccountId, Command, NewOrder, OrderId, Side, TimeInForce};
use orderbook_rs::{OrderBook, OrderBookError, StubClock, TradeResult};
use pricelevel::{Hash32, Id, OrderUpdate, Price, Quantity};

use super::{unsigned_price, BookState, PeerBook, PeerInfo, Tally};

/// Fills reported to the trade listener.
#[derive(Debug, Default)]
struct Fills {
    trades: AtomicU64,
    qty: AtomicU64,
}

/// An orderbook-rs book, its listener's counters and the tally.
pub struct OrderbookRsBook {
    book: OrderBook<()>,
    fills: Arc<Fills>,
    /// Listener counts at the last [`PeerBook::reset_tally`].
    fills_base: (u64, u64),
    tally: Tally,
}

fn side(side: Side) -> pricelevel::Side {
    match side {
        Side::Buy => pricelevel::Side::Buy,
        Side::Sell => pricelevel::Side::Sell,
    }
}

/// The Keel account as the crate's 32-byte user id (little-endian in the first 8 bytes).
fn user(account: AccountId) -> Hash32 {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&account.to_le_bytes());
    Hash32::new(bytes)
}

impl OrderbookRsBook {
    fn submit(&mut self, order: &NewOrder) {
        let id = Id::Sequential(order.order_id);
        let user_id = user(order.account);
        let side = side(order.side);
        let tif = match order.tif {
            TimeInForce::Gtc => pricelevel::TimeInForce::Gtc,
            TimeInForce::Ioc => pricelevel::TimeInForce::Ioc,
            TimeInForce::Fok => pricelevel::TimeInForce::Fok,
        };
        let immediate = order.price.is_none() || order.tif != TimeInForce::Gtc;
        let result = match order.price {
            None => self
                .book
                .submit_market_order_with_user(id, order.qty, side, user_id)
                .map(|_| ()),
            Some(price) => {
                let Some(price) = unsigned_price(price) else {
                    self.tally.refused += 1;
                    return;
                };
                if order.post_only {
                    self.book
                        .add_post_only_order_with_user(
                            id,
                            u128::from(price),
                            order.qty,
                            side,
                            tif,
                            user_id,
                            None,
                        )
                        .map(|_| ())
                } else {
                    self.book
                        .add_limit_order_with_user(
                            id,
                            u128::from(price),
                            order.qty,
                            side,
                            tif,
                            user_id,
                            None,
                        )
                        .map(|_| ())
                }
            }
        };
        match result {
            Ok(()) => {}
            // The normal end of an IOC/FOK/market order that did not fill completely.
            Err(OrderBookError::InsufficientLiquidity { .. }) if immediate => {}
            Err(_) => self.tally.refused += 1,
        }
    }

    fn cancel(&mut self, order_id: OrderId) {
        match self.book.cancel_order(Id::Sequential(order_id)) {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => self.tally.refused += 1,
        }
    }

    fn update(&mut self, update: OrderUpdate) {
        match self.book.update_order(update) {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => self.tally.refused += 1,
        }
    }
}

impl PeerBook for OrderbookRsBook {
    const INFO: PeerInfo = PeerInfo {
        name: "orderbook-rs",
        krate: "orderbook-rs 0.15.3 (pricelevel 0.10.2)",
        mapping: &[
            "new GTC/IOC/FOK limit: native add_limit_order_with_user (Keel account as user \
             id)",
            "cancel: native cancel_order",
            "replace (move): native update_order(UpdatePriceAndQuantity) (cancel + re-add \
             inside the crate, matches when crossing)",
            "reduce: update_order(UpdateQuantity) (0 = cancel); grows the order where Keel \
             would ignore it (no reduces in the mix)",
            "mass cancel: cancel_orders_by_user",
        ],
        fairness: &[
            "built for concurrent access (skip lists, DashMap, atomics, a submit gate): \
             that costs it single-threaded speed, and buys something Keel does not offer \
             (many threads submitting into one book); Keel is single-writer by design",
            "does things Keel does not: iceberg, trailing-stop, pegged orders, fees, risk \
             layer, order-state tracking hooks, trade ids (UUIDs) and per-trade \
             TradeResult with the symbol String, built for the listener",
            "does less than Keel: no ownership check on cancel/replace (any caller can \
             cancel any id); self-trade prevention exists but is off here as in Keel's run",
            "a StubClock is used so it reads no system clock per order (its default \
             MonotonicClock would add a clock read per order)",
        ],
    };

    fn new() -> Self {
        let mut book = OrderBook::with_clock("BENCH", Arc::new(StubClock::new()));
        let fills = Arc::new(Fills::default());
        let listener_fills = Arc::clone(&fills);
        book.set_trade_listener(Arc::new(move |result: &TradeResult| {
            let trades = result.match_result.trades().as_vec();
            let qty: u64 = trades.iter().map(|t| t.quantity().as_u64()).sum();
            listener_fills
                .trades
                .fetch_add(trades.len() as u64, Ordering::Relaxed);
            listener_fills.qty.fetch_add(qty, Ordering::Relaxed);
        }));
        OrderbookRsBook {
            book,
            fills,
            fills_base: (0, 0),
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
                // Always the price-and-quantity update: the crate cancels and re-adds even
                // at an unchanged price (back of the level), where Keel keeps priority when
                // the quantity does not grow. Every move in the mix changes the price, and
                // looking the order up first to tell would cost it a map lookup and a clone.
                Some(price) => self.update(OrderUpdate::UpdatePriceAndQuantity {
                    order_id: Id::Sequential(order_id),
                    new_price: Price::new(u128::from(price)),
                    new_quantity: Quantity::new(qty),
                }),
                None => self.tally.refused += 1,
            },
            Command::Reduce { order_id, qty, .. } => {
                if qty == 0 {
                    self.cancel(order_id);
                } else {
                    self.update(OrderUpdate::UpdateQuantity {
                        order_id: Id::Sequential(order_id),
                        new_quantity: Quantity::new(qty),
                    });
                }
            }
            Command::MassCancel { account, .. } => {
                // The result lists what was canceled; an empty one is not a refusal (Keel
                // answers a mass cancel with nothing to cancel with no event either).
                let _canceled = self.book.cancel_orders_by_user(user(account));
            }
        }
        self.tally.commands += 1;
    }

    fn tally(&self) -> Tally {
        Tally {
            trades: self.fills.trades.load(Ordering::Relaxed) - self.fills_base.0,
            traded_qty: self.fills.qty.load(Ordering::Relaxed) - self.fills_base.1,
            ..self.tally
        }
    }

    fn reset_tally(&mut self) {
        self.tally = Tally::default();
        self.fills_base = (
            self.fills.trades.load(Ordering::Relaxed),
            self.fills.qty.load(Ordering::Relaxed),
        );
    }

    fn book_state(&self) -> BookState {
        let price = |p: Option<u128>| p.and_then(|p| i64::try_from(p).ok());
        let orders = self.book.get_all_orders();
        let resting_qty = orders
            .iter()
            .map(|o| o.visible_quantity().as_u64() + o.hidden_quantity().as_u64())
            .sum();
        BookState {
            best_bid: price(self.book.best_bid()),
            best_ask: price(self.book.best_ask()),
            resting_qty,
            resting_orders: Some(orders.len() as u64),
        }
    }
}
