//! The matching engine: applies commands to books and reports what happened.
//!
//! Rules (the contract `keel replay` documents):
//! - New orders are validated in this order: duplicate id, unknown instrument, invalid
//!   (qty 0, limit price <= 0, `post_only` on a market or non-`gtc` order), then a
//!   `post_only` order that would cross is rejected. Every rejected id stays used.
//! - Price-time priority; trades execute at the maker's price, level by level, FIFO.
//! - Market orders never rest; `ioc` and market remainders are canceled (`ioc`); `fok`
//!   fills completely or is canceled (`fok`) with no other effect.
//! - Self-trade prevention is the taker's choice and applies when it meets its own account.
//! - Replace keeps queue priority only at the same price with quantity not increased.

mod state;

pub use state::{STATE_LEAF_BYTES_MAX, STATE_VERSION};

use rustc_hash::FxHashMap;

use crate::command::{Command, NewOrder};
use crate::event::{Event, EventSink};
use crate::ids::IdSet;
use crate::ladder::{key_of, price_of, Ladder};
use crate::slab::{Order, Slab, NIL};
use crate::types::{
    AccountId, AmendRejectReason, CancelReason, InstrumentId, InstrumentRejectReason, OrderId,
    Price, Qty, RejectReason, SelfTradePrevention, Side, Symbol, TimeInForce,
};
use crate::Error;

/// Sizing knobs. They change speed and memory, never results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Resting orders preallocated at start; beyond this the slab grows (amortized).
    pub capacity_orders: usize,
    /// Each book side indexes `2^price_window_bits` ticks around the best price directly;
    /// prices outside fall back to an ordered map. 6 ..= 24.
    pub price_window_bits: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            capacity_orders: 1 << 16,
            price_window_bits: 13,
        }
    }
}

/// A resting order as seen from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestingOrder {
    /// The order's id.
    pub order_id: OrderId,
    /// Its owner.
    pub account: AccountId,
    /// Its instrument.
    pub instrument: InstrumentId,
    /// Its side.
    pub side: Side,
    /// Its limit price.
    pub price: Price,
    /// Its open quantity.
    pub qty: Qty,
    /// The self-trade prevention it uses when a replace makes it a taker.
    pub stp: SelfTradePrevention,
}

/// Quantity accounting, kept so that "nothing is created or lost" can be checked after
/// every command: `entered == 2 * filled + canceled + replaced_away + resting`
/// (each trade fills both a taker and a maker). `resting` is what the other four imply; the
/// engine checks it against the open quantity its order slots hold after every command
/// (modulo 2^64, in release builds too) and against the books, exactly, in
/// [`Engine::check_invariants`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Quantity of accepted orders plus the new quantity of every replace.
    pub entered: u128,
    /// Quantity traded, counted once per trade.
    pub filled: u128,
    /// Quantity removed by cancels of any reason.
    pub canceled: u128,
    /// Open quantity an order had just before each replace.
    pub replaced_away: u128,
    /// Open quantity resting on all books (as the flows above imply it).
    pub resting: u128,
}

impl Ledger {
    /// Whether the books conserve quantity.
    pub fn balances(&self) -> bool {
        self.entered == 2 * self.filled + self.canceled + self.replaced_away + self.resting
    }
}

/// The quantities that flowed in and out of the books (the [`Ledger`] without its resting
/// quantity, which the order slab sums as orders change).
#[derive(Clone, Copy, Debug, Default)]
struct Flows {
    entered: u128,
    filled: u128,
    canceled: u128,
    replaced_away: u128,
    /// [`Flows::resting`] modulo 2^64, kept as the flows change so that checking it after
    /// every command is one comparison.
    resting_low: u64,
}

impl Flows {
    #[inline]
    fn enter(&mut self, qty: Qty) {
        self.entered += u128::from(qty);
        self.resting_low = self.resting_low.wrapping_add(qty);
    }

    /// A trade: both the taker and the maker are filled by `qty`.
    #[inline]
    fn fill(&mut self, qty: Qty) {
        self.filled += u128::from(qty);
        self.resting_low = self.resting_low.wrapping_sub(qty.wrapping_mul(2));
    }

    #[inline]
    fn cancel(&mut self, qty: Qty) {
        self.canceled += u128::from(qty);
        self.resting_low = self.resting_low.wrapping_sub(qty);
    }

    /// A replace: the order's `open` quantity goes, the new `qty` enters.
    #[inline]
    fn replace(&mut self, open: Qty, qty: Qty) {
        self.replaced_away += u128::from(open);
        self.entered += u128::from(qty);
        self.resting_low = self.resting_low.wrapping_add(qty.wrapping_sub(open));
    }

    /// The quantity that must still be resting. Wraps rather than panics if quantity was
    /// not conserved, which the checks then report.
    fn resting(&self) -> u128 {
        self.entered
            .wrapping_sub(self.filled.wrapping_mul(2))
            .wrapping_sub(self.canceled)
            .wrapping_sub(self.replaced_away)
    }
}

/// One instrument's order book.
#[derive(Clone, Debug)]
struct Book {
    instrument: InstrumentId,
    symbol: Symbol,
    bids: Ladder,
    asks: Ladder,
}

impl Book {
    #[inline]
    fn side(&self, side: Side) -> &Ladder {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    #[inline]
    fn side_mut(&mut self, side: Side) -> &mut Ladder {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }
}

/// The incoming side of a match: a new order, or a replaced one that lost priority.
#[derive(Clone, Copy, Debug)]
struct Taker {
    order_id: OrderId,
    account: AccountId,
    side: Side,
    /// Matches makers whose key (on the maker side's ladder) is `<= limit_key`;
    /// `i64::MAX` for a market order.
    limit_key: i64,
    stp: SelfTradePrevention,
}

/// How a taker's matching ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MatchEnd {
    /// Nothing more crosses (or nothing is left): this much remains.
    Remaining(Qty),
    /// Self-trade prevention canceled the taker with this much left.
    StpCanceled(Qty),
}

/// The matching engine. Deterministic: the same commands give the same events and state.
#[derive(Clone, Debug)]
pub struct Engine {
    config: EngineConfig,
    orders: Slab,
    books: Vec<Book>,
    /// Instrument id → index into `books`.
    book_index: FxHashMap<InstrumentId, u32>,
    /// Defined instruments in ascending id order, for deterministic iteration.
    instruments_sorted: Vec<InstrumentId>,
    /// Resting order id → slot. Never iterated, so hash order cannot leak into results.
    live: FxHashMap<OrderId, u32>,
    used_ids: IdSet,
    /// Account → first slot of its resting-order list (`NIL` when it has none).
    accounts: FxHashMap<AccountId, u32>,
    next_match_id: u64,
    /// Reused buffer for mass cancel, so it allocates nothing after warm-up.
    scratch: Vec<(OrderId, u32)>,
    /// The ledger's flows; its resting quantity is the order slab's own sum.
    flows: Flows,
}

impl Default for Engine {
    fn default() -> Self {
        Engine::build(EngineConfig::default())
    }
}

impl Engine {
    /// Makes an empty engine with the given sizing.
    pub fn new(config: EngineConfig) -> Result<Engine, Error> {
        if !(6..=24).contains(&config.price_window_bits) {
            return Err(Error::InvalidConfig("price_window_bits must be 6..=24"));
        }
        Ok(Engine::build(config))
    }

    fn build(config: EngineConfig) -> Engine {
        let mut live = FxHashMap::default();
        live.reserve(config.capacity_orders);
        Engine {
            config,
            orders: Slab::with_capacity(config.capacity_orders),
            books: Vec::new(),
            book_index: FxHashMap::default(),
            instruments_sorted: Vec::new(),
            live,
            used_ids: IdSet::default(),
            accounts: FxHashMap::default(),
            next_match_id: 1,
            scratch: Vec::new(),
            flows: Flows::default(),
        }
    }

    /// Applies one command, writing its events to `out` in the order they happen.
    pub fn process<S: EventSink>(&mut self, command: &Command, out: &mut S) {
        match *command {
            Command::DefineInstrument { instrument, symbol } => {
                self.define_instrument(instrument, symbol, out)
            }
            Command::New(ref order) => self.new_order(order, out),
            Command::Cancel { order_id, account } => self.cancel(order_id, account, out),
            Command::Replace {
                order_id,
                account,
                price,
                qty,
            } => self.replace(order_id, account, price, qty, out),
            Command::Reduce {
                order_id,
                account,
                qty,
            } => self.reduce(order_id, account, qty, out),
            Command::MassCancel {
                account,
                instrument,
            } => self.mass_cancel(account, instrument, out),
        }
        self.assert_ledger();
        // Every book: O(instruments), so debug only.
        #[cfg(debug_assertions)]
        for book in &self.books {
            if let (Some(bid), Some(ask)) = (book.bids.best(), book.asks.best()) {
                debug_assert!(-bid < ask, "book {} crossed", book.instrument);
            }
        }
    }

    /// The quantity ledger after a command, in O(1), release builds included: the quantity
    /// resting, as the flows imply it (what entered, less what was filled twice — taker and
    /// maker —, canceled or replaced away), is the sum the order slab keeps as orders are
    /// inserted, changed and freed. The flows are counted where events are emitted, the sum
    /// by the slab, so a path that changes an order's open quantity without accounting for
    /// it (or the reverse) fails here. Compared modulo 2^64, which takes a few instructions;
    /// [`Engine::check_invariants`] recounts the books and compares exactly.
    #[inline]
    fn assert_ledger(&self) {
        assert!(
            self.flows.resting_low == self.orders.open_sum(),
            "quantity not conserved"
        );
        // Truncation is the point: `resting_low` is the same quantity modulo 2^64.
        debug_assert!(self.flows.resting() as u64 == self.flows.resting_low);
    }

    fn define_instrument<S: EventSink>(
        &mut self,
        instrument: InstrumentId,
        symbol: Symbol,
        out: &mut S,
    ) {
        let position = match self.instruments_sorted.binary_search(&instrument) {
            Ok(_) => {
                out.emit(Event::InstrumentRejected {
                    instrument,
                    reason: InstrumentRejectReason::DuplicateInstrument,
                });
                return;
            }
            Err(position) => position,
        };
        let index = u32::try_from(self.books.len()).unwrap_or(u32::MAX);
        // Every book preallocates its ladders' windows: 4 billion of them is far beyond any
        // memory this runs on, so reaching the limit is a broken invariant, not input.
        assert!(index != u32::MAX, "too many instruments");
        self.books.push(Book {
            instrument,
            symbol,
            bids: Ladder::new(self.config.price_window_bits),
            asks: Ladder::new(self.config.price_window_bits),
        });
        self.book_index.insert(instrument, index);
        self.instruments_sorted.insert(position, instrument);
    }

    fn new_order<S: EventSink>(&mut self, order: &NewOrder, out: &mut S) {
        let reject = |reason, out: &mut S| {
            out.emit(Event::Rejected {
                order_id: order.order_id,
                reason,
            })
        };
        if !self.used_ids.insert(order.order_id) {
            return reject(RejectReason::DuplicateOrderId, out);
        }
        let Some(&book) = self.book_index.get(&order.instrument) else {
            return reject(RejectReason::UnknownInstrument, out);
        };
        let post_only_allowed = order.price.is_some() && order.tif == TimeInForce::Gtc;
        if order.qty == 0
            || order.price.is_some_and(|price| price <= 0)
            || (order.post_only && !post_only_allowed)
        {
            return reject(RejectReason::Invalid, out);
        }
        let maker_side = order.side.opposite();
        let limit_key = order
            .price
            .map_or(i64::MAX, |price| key_of(maker_side, price));
        if order.post_only && self.crosses(book, maker_side, limit_key) {
            return reject(RejectReason::PostOnly, out);
        }

        out.emit(Event::Accepted {
            order_id: order.order_id,
        });
        self.flows.enter(order.qty);
        let taker = Taker {
            order_id: order.order_id,
            account: order.account,
            side: order.side,
            limit_key,
            stp: order.stp,
        };
        if order.tif == TimeInForce::Fok && !self.fok_fillable(book, &taker, order.qty) {
            return self.cancel_incoming(order.order_id, order.qty, CancelReason::Fok, out);
        }
        let remaining = match self.match_taker(book, &taker, order.qty, out) {
            MatchEnd::StpCanceled(remaining) => {
                return self.cancel_incoming(order.order_id, remaining, CancelReason::Stp, out);
            }
            MatchEnd::Remaining(0) => return,
            MatchEnd::Remaining(remaining) => remaining,
        };
        match (order.price, order.tif) {
            (Some(price), TimeInForce::Gtc) => self.rest(book, order, price, remaining),
            _ => {
                assert!(
                    order.tif != TimeInForce::Fok,
                    "fillable fok left a remainder"
                );
                self.cancel_incoming(order.order_id, remaining, CancelReason::Ioc, out);
            }
        }
    }

    /// Whether the best maker on `maker_side` is at or better than `limit_key`.
    #[inline]
    fn crosses(&self, book: u32, maker_side: Side, limit_key: i64) -> bool {
        self.books[book as usize]
            .side(maker_side)
            .best()
            .is_some_and(|best| best <= limit_key)
    }

    /// Cancels the remainder of an order that is not resting (an incoming or replaced one).
    fn cancel_incoming<S: EventSink>(
        &mut self,
        order_id: OrderId,
        qty: Qty,
        reason: CancelReason,
        out: &mut S,
    ) {
        self.flows.cancel(qty);
        out.emit(Event::Canceled {
            order_id,
            qty,
            reason,
        });
    }

    /// Puts a new order's remainder on its book.
    fn rest(&mut self, book: u32, order: &NewOrder, price: Price, open: Qty) {
        self.insert_resting(Order {
            id: order.order_id,
            account: order.account,
            price,
            open,
            prev: NIL,
            next: NIL,
            acct_prev: NIL,
            acct_next: NIL,
            book,
            side: order.side,
            stp: order.stp,
        });
    }

    /// Places `order` at the back of its price level and registers it everywhere a resting
    /// order is found from: the id map and its account's list.
    fn insert_resting(&mut self, order: Order) {
        let (id, side, price, book) = (order.id, order.side, order.price, order.book);
        let slot = self.orders.insert(order);
        self.books[book as usize].side_mut(side).push_back(
            key_of(side, price),
            slot,
            &mut self.orders,
        );
        self.live.insert(id, slot);
        self.link_account(slot);
    }

    /// Whether a `fok` taker could fill `qty` right now. Same-account makers count when
    /// `stp` is `none`, are skipped under `cancel_oldest` (matching will cancel them), and
    /// stop the check under `cancel_newest`/`cancel_both` (matching would stop there).
    fn fok_fillable(&self, book: u32, taker: &Taker, qty: Qty) -> bool {
        let ladder = self.books[book as usize].side(taker.side.opposite());
        let mut needed = qty;
        let mut level = ladder.best();
        while let Some(key) = level.filter(|&key| key <= taker.limit_key) {
            let mut slot = ladder.head(key);
            while slot != NIL {
                let maker = self.orders.get(slot);
                slot = maker.next;
                if maker.account == taker.account {
                    match taker.stp {
                        SelfTradePrevention::None => {}
                        SelfTradePrevention::CancelOldest => continue,
                        SelfTradePrevention::CancelNewest | SelfTradePrevention::CancelBoth => {
                            return false;
                        }
                    }
                }
                if maker.open >= needed {
                    return true;
                }
                needed -= maker.open;
            }
            level = ladder.next_after(key);
        }
        false
    }

    /// Matches `taker` against the opposite side while it crosses and has quantity left.
    fn match_taker<S: EventSink>(
        &mut self,
        book: u32,
        taker: &Taker,
        mut remaining: Qty,
        out: &mut S,
    ) -> MatchEnd {
        let maker_side = taker.side.opposite();
        let instrument = self.books[book as usize].instrument;
        while remaining > 0 {
            let ladder = self.books[book as usize].side(maker_side);
            let Some(key) = ladder.best().filter(|&key| key <= taker.limit_key) else {
                break;
            };
            let slot = ladder.head(key);
            assert!(slot != NIL, "best level is empty");
            let maker = *self.orders.get(slot);
            if maker.account == taker.account && taker.stp != SelfTradePrevention::None {
                match taker.stp {
                    SelfTradePrevention::CancelOldest => {
                        self.cancel_resting(slot, CancelReason::Stp, out);
                        continue;
                    }
                    SelfTradePrevention::CancelBoth => {
                        self.cancel_resting(slot, CancelReason::Stp, out);
                        return MatchEnd::StpCanceled(remaining);
                    }
                    SelfTradePrevention::CancelNewest | SelfTradePrevention::None => {
                        return MatchEnd::StpCanceled(remaining);
                    }
                }
            }
            let qty = remaining.min(maker.open);
            let match_id = self.next_match_id;
            self.next_match_id += 1;
            out.emit(Event::Trade {
                instrument,
                price: price_of(maker_side, key),
                qty,
                taker_order_id: taker.order_id,
                maker_order_id: maker.id,
                taker_side: taker.side,
                match_id,
            });
            remaining -= qty;
            self.flows.fill(qty);
            if qty == maker.open {
                self.detach_resting(slot);
            } else {
                self.orders.set_open(slot, maker.open - qty);
            }
        }
        MatchEnd::Remaining(remaining)
    }

    /// Cancels a resting order's whole open quantity.
    fn cancel_resting<S: EventSink>(&mut self, slot: u32, reason: CancelReason, out: &mut S) {
        let order = self.detach_resting(slot);
        self.flows.cancel(order.open);
        out.emit(Event::Canceled {
            order_id: order.id,
            qty: order.open,
            reason,
        });
    }

    /// Removes a resting order from its level, its account and the id map, and frees it.
    fn detach_resting(&mut self, slot: u32) -> Order {
        let order = *self.orders.get(slot);
        self.books[order.book as usize].side_mut(order.side).unlink(
            key_of(order.side, order.price),
            slot,
            &mut self.orders,
        );
        self.forget(slot)
    }

    /// Removes an order that is no longer on a level from its account and the id map.
    fn forget(&mut self, slot: u32) -> Order {
        let order = *self.orders.get(slot);
        self.unlink_account(slot);
        self.live.remove(&order.id);
        self.orders.remove(slot);
        order
    }

    fn link_account(&mut self, slot: u32) {
        let account = self.orders.get(slot).account;
        let head = self.accounts.entry(account).or_insert(NIL);
        let old_head = *head;
        *head = slot;
        if old_head != NIL {
            self.orders.get_mut(old_head).acct_prev = slot;
        }
        let order = self.orders.get_mut(slot);
        order.acct_prev = NIL;
        order.acct_next = old_head;
    }

    fn unlink_account(&mut self, slot: u32) {
        let Order {
            account,
            acct_prev,
            acct_next,
            ..
        } = *self.orders.get(slot);
        if acct_prev == NIL {
            if let Some(head) = self.accounts.get_mut(&account) {
                *head = acct_next;
            }
        } else {
            self.orders.get_mut(acct_prev).acct_next = acct_next;
        }
        if acct_next != NIL {
            self.orders.get_mut(acct_next).acct_prev = acct_prev;
        }
    }

    /// The slot of resting order `order_id` if `account` owns it.
    #[inline]
    fn owned_slot(&self, order_id: OrderId, account: AccountId) -> Option<u32> {
        let &slot = self.live.get(&order_id)?;
        (self.orders.get(slot).account == account).then_some(slot)
    }

    fn cancel<S: EventSink>(&mut self, order_id: OrderId, account: AccountId, out: &mut S) {
        match self.owned_slot(order_id, account) {
            Some(slot) => self.cancel_resting(slot, CancelReason::User, out),
            None => out.emit(Event::CancelRejected {
                order_id,
                reason: AmendRejectReason::UnknownOrder,
            }),
        }
    }

    fn reduce<S: EventSink>(
        &mut self,
        order_id: OrderId,
        account: AccountId,
        qty: Qty,
        out: &mut S,
    ) {
        let Some(slot) = self.owned_slot(order_id, account) else {
            return out.emit(Event::CancelRejected {
                order_id,
                reason: AmendRejectReason::UnknownOrder,
            });
        };
        let open = self.orders.get(slot).open;
        if qty == 0 {
            return self.cancel_resting(slot, CancelReason::User, out);
        }
        if qty >= open {
            return;
        }
        // Same price, less quantity: the order keeps its place in the queue.
        self.orders.set_open(slot, qty);
        let removed = open - qty;
        self.flows.cancel(removed);
        out.emit(Event::Canceled {
            order_id,
            qty: removed,
            reason: CancelReason::User,
        });
    }

    fn replace<S: EventSink>(
        &mut self,
        order_id: OrderId,
        account: AccountId,
        price: Price,
        qty: Qty,
        out: &mut S,
    ) {
        let Some(slot) = self.owned_slot(order_id, account) else {
            return out.emit(Event::ReplaceRejected {
                order_id,
                reason: AmendRejectReason::UnknownOrder,
            });
        };
        if qty == 0 || price <= 0 {
            return out.emit(Event::ReplaceRejected {
                order_id,
                reason: AmendRejectReason::Invalid,
            });
        }
        out.emit(Event::Replaced {
            order_id,
            price,
            qty,
        });
        let order = *self.orders.get(slot);
        self.flows.replace(order.open, qty);
        if price == order.price && qty <= order.open {
            // Same price, not more quantity: the order keeps its place in the queue.
            self.orders.set_open(slot, qty);
            return;
        }
        // Loses priority: leave the level, match as a taker if the new price crosses,
        // and rest any remainder at the back of the new level.
        let book = order.book;
        self.books[book as usize].side_mut(order.side).unlink(
            key_of(order.side, order.price),
            slot,
            &mut self.orders,
        );
        let taker = Taker {
            order_id,
            account,
            side: order.side,
            limit_key: key_of(order.side.opposite(), price),
            stp: order.stp,
        };
        let remaining = match self.match_taker(book, &taker, qty, out) {
            MatchEnd::Remaining(0) => {
                self.forget(slot);
                return;
            }
            MatchEnd::StpCanceled(remaining) => {
                self.forget(slot);
                return self.cancel_incoming(order_id, remaining, CancelReason::Stp, out);
            }
            MatchEnd::Remaining(remaining) => remaining,
        };
        self.orders.get_mut(slot).price = price;
        self.orders.set_open(slot, remaining);
        self.books[book as usize].side_mut(order.side).push_back(
            key_of(order.side, price),
            slot,
            &mut self.orders,
        );
    }

    fn mass_cancel<S: EventSink>(
        &mut self,
        account: AccountId,
        instrument: Option<InstrumentId>,
        out: &mut S,
    ) {
        let book_filter = match instrument {
            None => None,
            Some(id) => match self.book_index.get(&id) {
                Some(&book) => Some(book),
                // No such instrument: the account has nothing resting on it.
                None => return,
            },
        };
        let mut targets = std::mem::take(&mut self.scratch);
        targets.clear();
        let mut slot = self.accounts.get(&account).copied().unwrap_or(NIL);
        while slot != NIL {
            let order = self.orders.get(slot);
            if book_filter.is_none_or(|book| book == order.book) {
                targets.push((order.id, slot));
            }
            slot = order.acct_next;
        }
        // Cancels are reported in ascending order id, independent of list order.
        targets.sort_unstable();
        for &(_, slot) in &targets {
            self.cancel_resting(slot, CancelReason::Mass, out);
        }
        self.scratch = targets;
    }

    // ----- Read-only views -------------------------------------------------------------

    /// Defined instruments, ascending by id.
    pub fn instruments(&self) -> impl Iterator<Item = (InstrumentId, Symbol)> + '_ {
        self.instruments_sorted.iter().filter_map(|id| {
            let &book = self.book_index.get(id)?;
            Some((*id, self.books[book as usize].symbol))
        })
    }

    /// The resting orders of one side of an instrument's book, best price first and in
    /// time priority within a price. `None` if the instrument is not defined.
    pub fn resting_orders(
        &self,
        instrument: InstrumentId,
        side: Side,
    ) -> Option<impl Iterator<Item = RestingOrder> + '_> {
        let &book = self.book_index.get(&instrument)?;
        let ladder = self.books[book as usize].side(side);
        let orders = ladder.keys().flat_map(move |key| {
            let mut slot = ladder.head(key);
            std::iter::from_fn(move || {
                if slot == NIL {
                    return None;
                }
                let current = slot;
                slot = self.orders.get(current).next;
                Some(self.resting_view(current))
            })
        });
        Some(orders)
    }

    /// Best bid and best ask prices of an instrument.
    pub fn best_prices(&self, instrument: InstrumentId) -> Option<(Option<Price>, Option<Price>)> {
        let &book = self.book_index.get(&instrument)?;
        let book = &self.books[book as usize];
        Some((
            book.bids.best().map(|key| price_of(Side::Buy, key)),
            book.asks.best().map(|key| price_of(Side::Sell, key)),
        ))
    }

    /// A resting order by id.
    pub fn order(&self, order_id: OrderId) -> Option<RestingOrder> {
        let &slot = self.live.get(&order_id)?;
        Some(self.resting_view(slot))
    }

    /// Whether `order_id` has ever been used (by any order, rejected ones included).
    pub fn order_id_used(&self, order_id: OrderId) -> bool {
        self.used_ids.contains(order_id)
    }

    /// Every order id ever used, as ascending inclusive ranges.
    pub fn used_order_id_ranges(&self) -> impl Iterator<Item = (OrderId, OrderId)> + '_ {
        self.used_ids.ranges()
    }

    /// Whether `account` has any resting order, on any instrument. O(1).
    pub fn account_has_resting_orders(&self, account: AccountId) -> bool {
        self.accounts.get(&account).is_some_and(|&head| head != NIL)
    }

    /// Number of resting orders across all books.
    pub fn resting_count(&self) -> usize {
        self.orders.live_count()
    }

    /// The quantity accounting.
    pub fn ledger(&self) -> Ledger {
        Ledger {
            entered: self.flows.entered,
            filled: self.flows.filled,
            canceled: self.flows.canceled,
            replaced_away: self.flows.replaced_away,
            resting: self.flows.resting(),
        }
    }

    /// The number the next trade will carry.
    pub fn next_match_id(&self) -> u64 {
        self.next_match_id
    }

    fn resting_view(&self, slot: u32) -> RestingOrder {
        let order = self.orders.get(slot);
        RestingOrder {
            order_id: order.id,
            account: order.account,
            instrument: self.books[order.book as usize].instrument,
            side: order.side,
            price: order.price,
            qty: order.open,
            stp: order.stp,
        }
    }

    /// Checks every structural invariant: ladders consistent, books not crossed, every
    /// resting order reachable from its level, the id map and its account list, and
    /// quantity conserved. O(size of the state); for tests and debugging, not the hot path.
    pub fn check_invariants(&self) -> Result<(), Error> {
        let fail = |what: String| Err(Error::InvariantViolated(what));
        let mut resting_qty: u128 = 0;
        let mut resting_orders = 0usize;
        for (index, book) in self.books.iter().enumerate() {
            for side in [Side::Buy, Side::Sell] {
                let ladder = book.side(side);
                if let Err(what) = ladder.check() {
                    return fail(format!("instrument {}: {what}", book.instrument));
                }
                for key in ladder.keys() {
                    let mut slot = ladder.head(key);
                    let mut prev = NIL;
                    if slot == NIL {
                        return fail(format!("empty level {key} listed"));
                    }
                    while slot != NIL {
                        let order = self.orders.get(slot);
                        if order.prev != prev
                            || order.book as usize != index
                            || order.side != side
                            || key_of(side, order.price) != key
                            || order.open == 0
                            || self.live.get(&order.id) != Some(&slot)
                            || !self.used_ids.contains(order.id)
                        {
                            return fail(format!("order {} inconsistent", order.id));
                        }
                        resting_qty += u128::from(order.open);
                        resting_orders += 1;
                        prev = slot;
                        slot = order.next;
                    }
                }
            }
            if let (Some(bid), Some(ask)) = (book.bids.best(), book.asks.best()) {
                if -bid >= ask {
                    return fail(format!("instrument {} crossed", book.instrument));
                }
            }
        }
        if resting_orders != self.orders.live_count() || resting_orders != self.live.len() {
            return fail(format!(
                "{resting_orders} orders on books, {} slots, {} ids",
                self.orders.live_count(),
                self.live.len()
            ));
        }
        let mut listed = 0usize;
        for (&account, &head) in &self.accounts {
            let mut slot = head;
            let mut prev = NIL;
            while slot != NIL {
                let order = self.orders.get(slot);
                if order.account != account || order.acct_prev != prev {
                    return fail(format!("account list of {account} inconsistent"));
                }
                listed += 1;
                prev = slot;
                slot = order.acct_next;
            }
        }
        if listed != resting_orders {
            return fail(format!(
                "{listed} orders in account lists, {resting_orders} resting"
            ));
        }
        let ledger = self.ledger();
        // Truncation as in `assert_ledger`: the slab sums modulo 2^64.
        if resting_qty != ledger.resting || resting_qty as u64 != self.orders.open_sum() {
            return fail(format!(
                "ledger {ledger:?} vs {resting_qty} resting, {} in the order slots",
                self.orders.open_sum()
            ));
        }
        Ok(())
    }
}
