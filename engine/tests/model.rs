//! Model-based tests: random command streams run through the engine and through a
//! deliberately naive reference model of issue 2's rules, written here from the issue text
//! alone (plain vectors re-sorted by price and arrival, linear scans, no cleverness). Every
//! command's events must be identical, the books of every instrument must be identical after
//! every command, and the engine's own invariant check must pass after every command.
//!
//! Each proptest runs 256 cases by default, keeping the whole file to seconds in a debug
//! build; `PROPTEST_CASES=5000 cargo test -p keel-engine --test model` runs a longer search.

// clippy.toml lets tests unwrap and panic, but clippy only recognises `#[test]` functions, not
// the helpers of an integration test; here a failed unwrap is a failed test, as intended.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use keel_engine::{
    AccountId, AmendRejectReason, CancelReason, Command, Engine, EngineConfig, Event, InstrumentId,
    InstrumentRejectReason, NewOrder, OrderId, Price, Qty, RejectReason, RestingOrder,
    SelfTradePrevention, Side, Symbol, TimeInForce,
};
use keel_testkit::rng::Rng;
use proptest::prelude::*;

// ===== The reference model ===================================================================

/// A resting order in the model. `seq` is its arrival number: time priority.
#[derive(Clone, Copy, Debug)]
struct ModelOrder {
    id: OrderId,
    account: AccountId,
    side: Side,
    price: Price,
    qty: Qty,
    stp: SelfTradePrevention,
    seq: u64,
}

/// One instrument: each side is a plain vector kept sorted best price first, then by arrival.
#[derive(Clone, Debug)]
struct ModelBook {
    symbol: Symbol,
    bids: Vec<ModelOrder>,
    asks: Vec<ModelOrder>,
}

impl ModelBook {
    fn side_mut(&mut self, side: Side) -> &mut Vec<ModelOrder> {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    fn side(&self, side: Side) -> &Vec<ModelOrder> {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    /// Adds an order and re-sorts its side by (price, best first) then arrival.
    fn rest(&mut self, order: ModelOrder) {
        let orders = self.side_mut(order.side);
        orders.push(order);
        orders.sort_by(|a, b| {
            let by_price = match order.side {
                Side::Buy => b.price.cmp(&a.price),
                Side::Sell => a.price.cmp(&b.price),
            };
            by_price.then(a.seq.cmp(&b.seq))
        });
    }
}

/// Whether a taker on `taker_side` with limit `limit` (`None` = market) may trade with a
/// resting order at `maker_price`.
fn crosses(taker_side: Side, limit: Option<Price>, maker_price: Price) -> bool {
    match (limit, taker_side) {
        (None, _) => true,
        (Some(limit), Side::Buy) => maker_price <= limit,
        (Some(limit), Side::Sell) => maker_price >= limit,
    }
}

/// The incoming side of a match (a new order or a replace that lost priority).
struct ModelTaker {
    id: OrderId,
    account: AccountId,
    side: Side,
    limit: Option<Price>,
    stp: SelfTradePrevention,
}

#[derive(Clone, Debug, Default)]
struct Model {
    books: BTreeMap<InstrumentId, ModelBook>,
    used_ids: BTreeSet<OrderId>,
    next_seq: u64,
    next_match_id: u64,
}

impl Model {
    fn new() -> Model {
        Model {
            next_match_id: 1,
            ..Model::default()
        }
    }

    fn process(&mut self, command: &Command) -> Vec<Event> {
        let mut out = Vec::new();
        match *command {
            Command::DefineInstrument { instrument, symbol } => {
                match self.books.entry(instrument) {
                    // Redefinition is refused; the existing instrument is unchanged.
                    Entry::Occupied(_) => out.push(Event::InstrumentRejected {
                        instrument,
                        reason: InstrumentRejectReason::DuplicateInstrument,
                    }),
                    Entry::Vacant(vacant) => {
                        vacant.insert(ModelBook {
                            symbol,
                            bids: Vec::new(),
                            asks: Vec::new(),
                        });
                    }
                }
            }
            Command::New(order) => self.new_order(&order, &mut out),
            Command::Cancel { order_id, account } => match self.find(order_id, account) {
                Some((instrument, side)) => {
                    let order = self.remove(instrument, side, order_id);
                    out.push(Event::Canceled {
                        order_id,
                        qty: order.qty,
                        reason: CancelReason::User,
                    });
                }
                None => out.push(Event::CancelRejected {
                    order_id,
                    reason: AmendRejectReason::UnknownOrder,
                }),
            },
            Command::Replace {
                order_id,
                account,
                price,
                qty,
            } => self.replace(order_id, account, price, qty, &mut out),
            Command::Reduce {
                order_id,
                account,
                qty,
            } => match self.find(order_id, account) {
                Some((instrument, side)) if qty == 0 => {
                    let order = self.remove(instrument, side, order_id);
                    out.push(Event::Canceled {
                        order_id,
                        qty: order.qty,
                        reason: CancelReason::User,
                    });
                }
                Some((instrument, side)) => {
                    let order = self
                        .book(instrument)
                        .side_mut(side)
                        .iter_mut()
                        .find(|order| order.id == order_id)
                        .expect("model: order exists");
                    // Never grows; keeps its place (the Vec position is untouched).
                    if qty < order.qty {
                        let removed = order.qty - qty;
                        order.qty = qty;
                        out.push(Event::Canceled {
                            order_id,
                            qty: removed,
                            reason: CancelReason::User,
                        });
                    }
                }
                None => out.push(Event::CancelRejected {
                    order_id,
                    reason: AmendRejectReason::UnknownOrder,
                }),
            },
            Command::MassCancel {
                account,
                instrument,
            } => {
                let mut victims = Vec::new();
                for (&id, book) in &self.books {
                    if instrument.is_some_and(|only| only != id) {
                        continue;
                    }
                    for order in book.bids.iter().chain(book.asks.iter()) {
                        if order.account == account {
                            victims.push((order.id, id, order.side));
                        }
                    }
                }
                victims.sort_by_key(|&(order_id, _, _)| order_id);
                for (order_id, instrument, side) in victims {
                    let order = self.remove(instrument, side, order_id);
                    out.push(Event::Canceled {
                        order_id,
                        qty: order.qty,
                        reason: CancelReason::Mass,
                    });
                }
            }
        }
        out
    }

    fn new_order(&mut self, order: &NewOrder, out: &mut Vec<Event>) {
        let reject = |reason| Event::Rejected {
            order_id: order.order_id,
            reason,
        };
        // 1. An id may be used once ever, rejected orders included.
        if !self.used_ids.insert(order.order_id) {
            return out.push(reject(RejectReason::DuplicateOrderId));
        }
        // 2. The instrument must exist.
        if !self.books.contains_key(&order.instrument) {
            return out.push(reject(RejectReason::UnknownInstrument));
        }
        // 3. Invalid: qty 0, limit price <= 0, post_only on anything but a gtc limit.
        let bad_price = matches!(order.price, Some(price) if price <= 0);
        let post_only_allowed = order.price.is_some() && order.tif == TimeInForce::Gtc;
        if order.qty == 0 || bad_price || (order.post_only && !post_only_allowed) {
            return out.push(reject(RejectReason::Invalid));
        }
        let opposite = order.side.opposite();
        if order.post_only {
            let book = &self.books[&order.instrument];
            if let Some(best) = book.side(opposite).first() {
                if crosses(order.side, order.price, best.price) {
                    return out.push(reject(RejectReason::PostOnly));
                }
            }
        }
        out.push(Event::Accepted {
            order_id: order.order_id,
        });
        let taker = ModelTaker {
            id: order.order_id,
            account: order.account,
            side: order.side,
            limit: order.price,
            stp: order.stp,
        };
        if order.tif == TimeInForce::Fok && !self.fok_fillable(order.instrument, &taker, order.qty)
        {
            return out.push(Event::Canceled {
                order_id: order.order_id,
                qty: order.qty,
                reason: CancelReason::Fok,
            });
        }
        let (remaining, stp_stopped) = self.match_taker(order.instrument, &taker, order.qty, out);
        if stp_stopped {
            out.push(Event::Canceled {
                order_id: order.order_id,
                qty: remaining,
                reason: CancelReason::Stp,
            });
        } else if remaining > 0 {
            match (order.price, order.tif) {
                (Some(price), TimeInForce::Gtc) => {
                    let seq = self.take_seq();
                    self.book(order.instrument).rest(ModelOrder {
                        id: order.order_id,
                        account: order.account,
                        side: order.side,
                        price,
                        qty: remaining,
                        stp: order.stp,
                        seq,
                    });
                }
                _ => {
                    assert!(order.tif != TimeInForce::Fok, "model: fok left a remainder");
                    out.push(Event::Canceled {
                        order_id: order.order_id,
                        qty: remaining,
                        reason: CancelReason::Ioc,
                    });
                }
            }
        }
    }

    /// Walks the crossing opposite orders best first and adds up what the taker could take.
    fn fok_fillable(&self, instrument: InstrumentId, taker: &ModelTaker, qty: Qty) -> bool {
        let mut available: u128 = 0;
        for maker in self.books[&instrument].side(taker.side.opposite()) {
            if !crosses(taker.side, taker.limit, maker.price) {
                break;
            }
            if maker.account == taker.account {
                match taker.stp {
                    // Counts: it will self-trade.
                    SelfTradePrevention::None => {}
                    // Matching would cancel it, so it provides nothing.
                    SelfTradePrevention::CancelOldest => continue,
                    // Matching would stop here.
                    SelfTradePrevention::CancelNewest | SelfTradePrevention::CancelBoth => {
                        return false
                    }
                }
            }
            available += u128::from(maker.qty);
            if available >= u128::from(qty) {
                return true;
            }
        }
        false
    }

    /// Matches the taker while it crosses; returns what is left and whether STP stopped it.
    fn match_taker(
        &mut self,
        instrument: InstrumentId,
        taker: &ModelTaker,
        mut remaining: Qty,
        out: &mut Vec<Event>,
    ) -> (Qty, bool) {
        let opposite = taker.side.opposite();
        while remaining > 0 {
            let Some(maker) = self.book(instrument).side(opposite).first().copied() else {
                break;
            };
            if !crosses(taker.side, taker.limit, maker.price) {
                break;
            }
            if maker.account == taker.account && taker.stp != SelfTradePrevention::None {
                match taker.stp {
                    SelfTradePrevention::CancelNewest => return (remaining, true),
                    SelfTradePrevention::CancelOldest | SelfTradePrevention::CancelBoth => {
                        self.book(instrument).side_mut(opposite).remove(0);
                        out.push(Event::Canceled {
                            order_id: maker.id,
                            qty: maker.qty,
                            reason: CancelReason::Stp,
                        });
                        if taker.stp == SelfTradePrevention::CancelBoth {
                            return (remaining, true);
                        }
                        continue;
                    }
                    SelfTradePrevention::None => unreachable!(),
                }
            }
            let qty = remaining.min(maker.qty);
            out.push(Event::Trade {
                instrument,
                price: maker.price,
                qty,
                taker_order_id: taker.id,
                maker_order_id: maker.id,
                taker_side: taker.side,
                match_id: self.next_match_id,
            });
            self.next_match_id += 1;
            remaining -= qty;
            let side = self.book(instrument).side_mut(opposite);
            if qty == maker.qty {
                side.remove(0);
            } else {
                side[0].qty -= qty;
            }
        }
        (remaining, false)
    }

    fn replace(
        &mut self,
        order_id: OrderId,
        account: AccountId,
        price: Price,
        qty: Qty,
        out: &mut Vec<Event>,
    ) {
        let Some((instrument, side)) = self.find(order_id, account) else {
            return out.push(Event::ReplaceRejected {
                order_id,
                reason: AmendRejectReason::UnknownOrder,
            });
        };
        if qty == 0 || price <= 0 {
            return out.push(Event::ReplaceRejected {
                order_id,
                reason: AmendRejectReason::Invalid,
            });
        }
        out.push(Event::Replaced {
            order_id,
            price,
            qty,
        });
        let old = self.remove(instrument, side, order_id);
        if price == old.price && qty <= old.qty {
            // Keeps its place: put it back with its old arrival number.
            self.book(instrument).rest(ModelOrder { qty, ..old });
            return;
        }
        let taker = ModelTaker {
            id: order_id,
            account,
            side,
            limit: Some(price),
            stp: old.stp,
        };
        let (remaining, stp_stopped) = self.match_taker(instrument, &taker, qty, out);
        if stp_stopped {
            out.push(Event::Canceled {
                order_id,
                qty: remaining,
                reason: CancelReason::Stp,
            });
        } else if remaining > 0 {
            let seq = self.take_seq();
            self.book(instrument).rest(ModelOrder {
                price,
                qty: remaining,
                seq,
                ..old
            });
        }
    }

    fn take_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    fn book(&mut self, instrument: InstrumentId) -> &mut ModelBook {
        self.books.get_mut(&instrument).expect("model: book exists")
    }

    /// Where a resting order of `account` with this id is, by linear search.
    fn find(&self, order_id: OrderId, account: AccountId) -> Option<(InstrumentId, Side)> {
        for (&instrument, book) in &self.books {
            for order in book.bids.iter().chain(book.asks.iter()) {
                if order.id == order_id {
                    return (order.account == account).then_some((instrument, order.side));
                }
            }
        }
        None
    }

    fn remove(&mut self, instrument: InstrumentId, side: Side, order_id: OrderId) -> ModelOrder {
        let orders = self.book(instrument).side_mut(side);
        let index = orders
            .iter()
            .position(|order| order.id == order_id)
            .expect("model: order exists");
        orders.remove(index)
    }

    fn view(instrument: InstrumentId, order: &ModelOrder) -> RestingOrder {
        RestingOrder {
            order_id: order.id,
            account: order.account,
            instrument,
            side: order.side,
            price: order.price,
            qty: order.qty,
            stp: order.stp,
        }
    }

    fn resting(&self, instrument: InstrumentId, side: Side) -> Option<Vec<RestingOrder>> {
        let book = self.books.get(&instrument)?;
        Some(
            book.side(side)
                .iter()
                .map(|order| Model::view(instrument, order))
                .collect(),
        )
    }

    fn order(&self, order_id: OrderId) -> Option<RestingOrder> {
        self.books.iter().find_map(|(&instrument, book)| {
            book.bids
                .iter()
                .chain(book.asks.iter())
                .find(|order| order.id == order_id)
                .map(|order| Model::view(instrument, order))
        })
    }

    /// Every resting order id with its owner, ascending by id.
    fn live(&self) -> Vec<(OrderId, AccountId)> {
        let mut live: Vec<_> = self
            .books
            .values()
            .flat_map(|book| book.bids.iter().chain(book.asks.iter()))
            .map(|order| (order.id, order.account))
            .collect();
        live.sort_unstable();
        live
    }
}

// ===== Random streams ==========================================================================

/// How an op chooses an order id; resolved against the stream's history when it runs.
#[derive(Clone, Copy, Debug)]
enum IdPick {
    /// The next id of an increasing counter (usually unused).
    Fresh,
    /// Some id a previous new order used (a duplicate for a new order).
    Used(usize),
    /// Some currently resting order (falls back to `Used` when nothing rests).
    Live(usize),
    /// This exact id.
    Raw(OrderId),
}

/// A command before its ids and accounts are resolved.
#[derive(Clone, Copy, Debug)]
enum Op {
    Define {
        instrument: InstrumentId,
    },
    New {
        id: IdPick,
        account: AccountId,
        instrument: InstrumentId,
        side: Side,
        price: Option<Price>,
        qty: Qty,
        tif: TimeInForce,
        post_only: bool,
        stp: SelfTradePrevention,
    },
    Cancel {
        id: IdPick,
        /// Use the order's owner (otherwise `account`, right or wrong).
        owner: bool,
        account: AccountId,
    },
    Replace {
        id: IdPick,
        owner: bool,
        account: AccountId,
        price: Price,
        qty: Qty,
    },
    MassCancel {
        account: AccountId,
        instrument: Option<InstrumentId>,
    },
}

/// Turns ops into commands: remembers ids handed out and who sent them.
#[derive(Default)]
struct Resolver {
    next_fresh: OrderId,
    used: Vec<OrderId>,
    owners: BTreeMap<OrderId, AccountId>,
}

impl Resolver {
    fn id(&mut self, pick: IdPick, model: &Model) -> OrderId {
        match pick {
            IdPick::Fresh => {
                self.next_fresh += 1;
                self.next_fresh
            }
            IdPick::Used(n) if !self.used.is_empty() => self.used[n % self.used.len()],
            IdPick::Used(_) => self.id(IdPick::Fresh, model),
            IdPick::Live(n) => {
                let live = model.live();
                if live.is_empty() {
                    self.id(IdPick::Used(n), model)
                } else {
                    live[n % live.len()].0
                }
            }
            IdPick::Raw(id) => id,
        }
    }

    fn account(&self, order_id: OrderId, owner: bool, account: AccountId) -> AccountId {
        if owner {
            self.owners.get(&order_id).copied().unwrap_or(account)
        } else {
            account
        }
    }

    fn command(&mut self, op: Op, model: &Model) -> Command {
        match op {
            Op::Define { instrument } => Command::DefineInstrument {
                instrument,
                symbol: symbol(instrument),
            },
            Op::New {
                id,
                account,
                instrument,
                side,
                price,
                qty,
                tif,
                post_only,
                stp,
            } => {
                let order_id = self.id(id, model);
                self.used.push(order_id);
                self.owners.entry(order_id).or_insert(account);
                Command::New(NewOrder {
                    order_id,
                    account,
                    instrument,
                    side,
                    price,
                    qty,
                    tif,
                    post_only,
                    stp,
                })
            }
            Op::Cancel { id, owner, account } => {
                let order_id = self.id(id, model);
                Command::Cancel {
                    order_id,
                    account: self.account(order_id, owner, account),
                }
            }
            Op::Replace {
                id,
                owner,
                account,
                price,
                qty,
            } => {
                let order_id = self.id(id, model);
                let account = self.account(order_id, owner, account);
                // About a third of the amendments with a quantity are reduces (the OUCH
                // partial cancel), the rest replaces; deriving it from the price keeps the
                // strategies unchanged and leaves every invalid replace a replace.
                if qty != 0 && price > 0 && price % 3 == 0 {
                    Command::Reduce {
                        order_id,
                        account,
                        qty: qty % 4,
                    }
                } else {
                    Command::Replace {
                        order_id,
                        account,
                        price,
                        qty,
                    }
                }
            }
            Op::MassCancel {
                account,
                instrument,
            } => Command::MassCancel {
                account,
                instrument,
            },
        }
    }
}

fn symbol(instrument: InstrumentId) -> Symbol {
    Symbol::new(&format!("SYM-{instrument}")).unwrap()
}

const STPS: [SelfTradePrevention; 4] = [
    SelfTradePrevention::None,
    SelfTradePrevention::CancelNewest,
    SelfTradePrevention::CancelOldest,
    SelfTradePrevention::CancelBoth,
];

/// Mostly `gtc`, so books build depth; `ioc` and `fok` still often.
fn tif_strategy() -> impl Strategy<Value = TimeInForce> {
    prop_oneof![
        3 => Just(TimeInForce::Gtc),
        1 => Just(TimeInForce::Ioc),
        1 => Just(TimeInForce::Fok),
    ]
}

fn stp_strategy() -> impl Strategy<Value = SelfTradePrevention> {
    prop::sample::select(STPS.to_vec())
}

fn side_strategy() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Buy), Just(Side::Sell)]
}

/// A side and a limit (or market) price. Bids lean low and asks high within a narrow band,
/// so the book keeps some depth while orders still cross often.
fn side_price_strategy() -> impl Strategy<Value = (Side, Option<Price>)> {
    let limit = |band: std::ops::RangeInclusive<i64>| {
        prop_oneof![
            12 => band.prop_map(Some),
            1 => price_strategy().prop_map(Some),
            2 => Just(None),
        ]
    };
    prop_oneof![
        (Just(Side::Buy), limit(95..=102)),
        (Just(Side::Sell), limit(98..=105)),
    ]
}
/// Few accounts, so self-trade prevention triggers often.
fn account_strategy() -> impl Strategy<Value = AccountId> {
    prop_oneof![12 => 1u64..=3, 1 => Just(4u64)]
}

/// Instruments 1 and 2 are defined up front, 3 only once a define op names it; 9 never.
fn instrument_strategy() -> impl Strategy<Value = InstrumentId> {
    prop_oneof![14 => 1u32..=2, 2 => Just(3u32), 1 => Just(9u32)]
}

/// A narrow band so orders cross, plus invalid and extreme prices now and then.
fn price_strategy() -> impl Strategy<Value = Price> {
    prop_oneof![
        60 => 95i64..=105,
        2 => Just(0i64),
        2 => -3i64..0,
        1 => Just(i64::MIN),
        1 => Just(1i64),
        1 => Just(i64::MAX),
        1 => Just(i64::MAX / 2),
    ]
}

fn qty_strategy() -> impl Strategy<Value = Qty> {
    prop_oneof![
        40 => 1u64..=10,
        2 => Just(0u64),
        3 => 11u64..=60,
        1 => Just(u64::MAX),
    ]
}

fn new_id_strategy() -> impl Strategy<Value = IdPick> {
    prop_oneof![
        40 => Just(IdPick::Fresh),
        2 => any::<usize>().prop_map(IdPick::Used),
        1 => prop_oneof![Just(0u64), 400u64..600, Just(u64::MAX)].prop_map(IdPick::Raw),
    ]
}

fn target_id_strategy() -> impl Strategy<Value = IdPick> {
    prop_oneof![
        30 => any::<usize>().prop_map(IdPick::Live),
        4 => any::<usize>().prop_map(IdPick::Used),
        1 => Just(IdPick::Fresh),
        1 => prop_oneof![Just(0u64), Just(u64::MAX)].prop_map(IdPick::Raw),
    ]
}

fn owner_strategy() -> impl Strategy<Value = bool> {
    prop::bool::weighted(0.85)
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let new = (
        new_id_strategy(),
        account_strategy(),
        instrument_strategy(),
        side_price_strategy(),
        qty_strategy(),
        tif_strategy(),
        prop::bool::weighted(0.2),
        stp_strategy(),
    )
        .prop_map(
            |(id, account, instrument, (side, price), qty, tif, post_only, stp)| Op::New {
                id,
                account,
                instrument,
                side,
                price,
                qty,
                tif,
                post_only,
                stp,
            },
        );
    let cancel = (target_id_strategy(), owner_strategy(), account_strategy())
        .prop_map(|(id, owner, account)| Op::Cancel { id, owner, account });
    let replace = (
        target_id_strategy(),
        owner_strategy(),
        account_strategy(),
        price_strategy(),
        prop_oneof![20 => 1u64..=12, 1 => Just(0u64)],
    )
        .prop_map(|(id, owner, account, price, qty)| Op::Replace {
            id,
            owner,
            account,
            price,
            qty,
        });
    let mass = (
        account_strategy(),
        prop_oneof![Just(None), instrument_strategy().prop_map(Some)],
    )
        .prop_map(|(account, instrument)| Op::MassCancel {
            account,
            instrument,
        });
    let define = (1u32..=3).prop_map(|instrument| Op::Define { instrument });
    prop_oneof![
        70 => new,
        8 => cancel,
        18 => replace,
        1 => mass,
        1 => define,
    ]
}

/// The engine configurations tried: the layout must never change results, so a 64-tick
/// window (lots of overflow and re-centring) must agree with the default one.
fn config_strategy() -> impl Strategy<Value = EngineConfig> {
    (
        prop_oneof![2 => Just(6u32), 1 => Just(8), 1 => Just(13)],
        prop_oneof![Just(0usize), Just(8), Just(1024)],
    )
        .prop_map(|(price_window_bits, capacity_orders)| EngineConfig {
            capacity_orders,
            price_window_bits,
        })
}

// ===== Running and comparing ===================================================================

/// Drives the engine and the model with the same commands and compares everything.
struct Harness {
    engine: Engine,
    model: Model,
    resolver: Resolver,
    /// The commands so far, printed when something disagrees.
    history: Vec<Command>,
    /// Compare the whole state after every command (otherwise only on `check_state`).
    check_every_command: bool,
}

impl Harness {
    fn new(config: EngineConfig) -> Harness {
        Harness {
            engine: Engine::new(config).unwrap(),
            model: Model::new(),
            resolver: Resolver::default(),
            history: Vec::new(),
            check_every_command: true,
        }
    }

    fn op(&mut self, op: Op) -> Result<Vec<Event>, String> {
        let command = self.resolver.command(op, &self.model);
        self.command(command)
    }

    fn command(&mut self, command: Command) -> Result<Vec<Event>, String> {
        self.history.push(command);
        let mut got = Vec::new();
        self.engine.process(&command, &mut got);
        let want = self.model.process(&command);
        if got != want {
            return self.fail(format!(
                "events differ\n engine: {got:?}\n  model: {want:?}"
            ));
        }
        if let Err(error) = self.engine.check_invariants() {
            return self.fail(error.to_string());
        }
        let events = got;
        let target = match command {
            Command::New(order) => Some(order.order_id),
            Command::Cancel { order_id, .. } | Command::Replace { order_id, .. } => Some(order_id),
            _ => None,
        };
        if let Some(order_id) = target {
            let (got, want) = (self.engine.order(order_id), self.model.order(order_id));
            if got != want {
                return Err(
                    self.report(format!("order {order_id}: engine {got:?}, model {want:?}"))
                );
            }
            let used = self.model.used_ids.contains(&order_id);
            if self.engine.order_id_used(order_id) != used {
                return Err(self.report(format!("order id {order_id}: used should be {used}")));
            }
        }
        if self.check_every_command {
            self.check_state()?;
        }
        Ok(events)
    }

    /// Compares instruments, both sides of every book (and an undefined one), the number of
    /// resting orders and the next match id.
    fn check_state(&self) -> Result<(), String> {
        let got: Vec<_> = self.engine.instruments().collect();
        let want: Vec<_> = self
            .model
            .books
            .iter()
            .map(|(&id, book)| (id, book.symbol))
            .collect();
        if got != want {
            return self.fail(format!("instruments: engine {got:?}, model {want:?}"));
        }
        for instrument in self.model.books.keys().copied().chain([u32::MAX]) {
            for side in [Side::Buy, Side::Sell] {
                let got: Option<Vec<_>> = self
                    .engine
                    .resting_orders(instrument, side)
                    .map(Iterator::collect);
                let want = self.model.resting(instrument, side);
                if got != want {
                    return self.fail(format!(
                        "book {instrument} {side:?}\n engine: {got:?}\n  model: {want:?}"
                    ));
                }
            }
        }
        if self.engine.resting_count() != self.model.live().len() {
            return self.fail("resting count differs".into());
        }
        if self.engine.next_match_id() != self.model.next_match_id {
            return self.fail("next match id differs".into());
        }
        Ok(())
    }

    fn fail<T>(&self, what: String) -> Result<T, String> {
        Err(self.report(what))
    }

    fn report(&self, what: String) -> String {
        let start = self.history.len().saturating_sub(60);
        let mut text = format!(
            "{what}\nafter {} commands; the last ones:\n",
            self.history.len()
        );
        for (index, command) in self.history.iter().enumerate().skip(start) {
            text.push_str(&format!("  #{index}: {command:?}\n"));
        }
        text
    }
}

fn run_ops(config: EngineConfig, ops: &[Op]) -> Result<(), String> {
    let mut harness = Harness::new(config);
    for instrument in [1, 2] {
        harness.op(Op::Define { instrument })?;
    }
    for &op in ops {
        harness.op(op)?;
    }
    harness.check_state()
}

/// The number of cases: small by default to keep CI quick, `PROPTEST_CASES` overrides.
fn proptest_config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(proptest_config(256))]

    /// The main property: engine and model agree on every event and every book.
    #[test]
    fn engine_matches_model(
        config in config_strategy(),
        ops in prop::collection::vec(op_strategy(), 1..300),
    ) {
        if let Err(report) = run_ops(config, &ops) {
            prop_assert!(false, "{}", report);
        }
    }

    /// Long runs of only new orders and replaces on one instrument with two accounts: deep
    /// books, lots of STP and priority changes.
    #[test]
    fn engine_matches_model_on_a_busy_book(
        ops in prop::collection::vec(
            prop_oneof![
                3 => (1u64..=2, side_strategy(), prop_oneof![9 => (97i64..=103).prop_map(Some), 1 => Just(None)],
                      1u64..=6, tif_strategy(), prop::bool::weighted(0.15), stp_strategy())
                    .prop_map(|(account, side, price, qty, tif, post_only, stp)| Op::New {
                        id: IdPick::Fresh, account, instrument: 1, side, price, qty, tif, post_only, stp,
                    }),
                2 => (any::<usize>(), 97i64..=103, 1u64..=6).prop_map(|(n, price, qty)| Op::Replace {
                        id: IdPick::Live(n), owner: true, account: 0, price, qty,
                    }),
            ],
            1..400,
        ),
    ) {
        let config = EngineConfig { capacity_orders: 16, price_window_bits: 6 };
        if let Err(report) = run_ops(config, &ops) {
            prop_assert!(false, "{}", report);
        }
    }
}

// ===== Seeded long streams =====================================================================

/// Where limit prices come from: `center ± spread`, occasionally junk or extremes.
#[derive(Clone, Copy, Debug)]
struct Prices {
    center: Price,
    spread: i64,
}

impl Prices {
    /// A limit price for `side` (`None`: either side's band). Bids lean low and asks high
    /// so books keep depth, yet the bands overlap so orders cross often.
    fn price(&self, rng: &mut Rng, side: Option<Side>) -> Price {
        let (low, high) = match side {
            Some(Side::Buy) => (-self.spread, self.spread / 3),
            Some(Side::Sell) => (-self.spread / 3, self.spread),
            None => (-self.spread, self.spread),
        };
        match rng.below(100) {
            0 => 0,
            1 => -rng.range_i64(1, 1000),
            2 => *rng.pick(&[1, i64::MAX, i64::MAX / 2, 10_000_000]).unwrap(),
            _ => (self.center + rng.range_i64(low, high)).max(1),
        }
    }
}

/// One random op, with the same mix as `op_strategy` (per mille).
fn random_op(rng: &mut Rng, prices: Prices) -> Op {
    let account = if rng.chance(950) {
        rng.range_i64(1, 3) as u64
    } else {
        4
    };
    let instrument = |rng: &mut Rng| match rng.below(20) {
        0 => 9,
        1 | 2 => 3,
        _ => rng.range_i64(1, 2) as u32,
    };
    let target = |rng: &mut Rng| match rng.below(20) {
        0..=15 => IdPick::Live(rng.next_u64() as usize),
        16 | 17 => IdPick::Used(rng.next_u64() as usize),
        18 => IdPick::Fresh,
        _ => {
            let near = rng.below(1_000);
            IdPick::Raw(*rng.pick(&[0, u64::MAX, near]).unwrap())
        }
    };
    match rng.below(1000) {
        0..=699 => {
            let side = *rng.pick(&[Side::Buy, Side::Sell]).unwrap();
            Op::New {
                id: match rng.below(50) {
                    0 | 1 => IdPick::Used(rng.next_u64() as usize),
                    2 => IdPick::Raw(rng.below(1_000_000)),
                    _ => IdPick::Fresh,
                },
                account,
                instrument: instrument(rng),
                side,
                price: if rng.chance(120) {
                    None
                } else {
                    Some(prices.price(rng, Some(side)))
                },
                qty: match rng.below(50) {
                    0 => 0,
                    1 => u64::MAX,
                    2..=5 => rng.range_i64(11, 100) as u64,
                    _ => rng.range_i64(1, 10) as u64,
                },
                tif: match rng.below(5) {
                    0 => TimeInForce::Ioc,
                    1 => TimeInForce::Fok,
                    _ => TimeInForce::Gtc,
                },
                post_only: rng.chance(200),
                stp: *rng.pick(&STPS).unwrap(),
            }
        }
        700..=779 => Op::Cancel {
            id: target(rng),
            owner: rng.chance(850),
            account,
        },
        780..=989 => Op::Replace {
            id: target(rng),
            owner: rng.chance(850),
            account,
            price: prices.price(rng, None),
            qty: if rng.chance(40) {
                0
            } else {
                rng.range_i64(1, 12) as u64
            },
        },
        990..=994 => Op::MassCancel {
            account,
            instrument: if rng.chance(500) {
                None
            } else {
                Some(instrument(rng))
            },
        },
        _ => Op::Define {
            instrument: rng.range_i64(1, 3) as u32,
        },
    }
}

/// A reproducible stream of commands (resolved against a model run alongside).
fn seeded_stream(seed: u64, commands: usize, mut prices: Prices, drift: i64) -> Vec<Command> {
    let mut rng = Rng::new(seed);
    let mut model = Model::new();
    let mut resolver = Resolver::default();
    let mut stream = Vec::with_capacity(commands + 2);
    for instrument in [1, 2] {
        let command = resolver.command(Op::Define { instrument }, &model);
        model.process(&command);
        stream.push(command);
    }
    while stream.len() < commands {
        if drift > 0 && stream.len() % 500 == 0 {
            prices.center = (prices.center + rng.range_i64(-drift, drift)).max(1);
        }
        let command = resolver.command(random_op(&mut rng, prices), &model);
        model.process(&command);
        stream.push(command);
    }
    stream
}

fn run_stream(config: EngineConfig, stream: &[Command], check_every: usize) {
    let mut harness = Harness::new(config);
    harness.check_every_command = false;
    for (index, &command) in stream.iter().enumerate() {
        let mut result = harness.command(command).map(drop);
        if result.is_ok() && index % check_every == 0 {
            result = harness.check_state();
        }
        if let Err(report) = result {
            panic!("{report}");
        }
    }
    if let Err(report) = harness.check_state() {
        panic!("{report}");
    }
}

/// Counts what a stream's events contain, so the long runs can show they are not trivial.
fn census(stream: &[Command]) -> BTreeMap<String, usize> {
    let mut engine = Engine::default();
    let mut counts = BTreeMap::new();
    let mut events = Vec::new();
    for command in stream {
        events.clear();
        engine.process(command, &mut events);
        for event in &events {
            let name = match event {
                Event::Canceled { reason, .. } => format!("canceled {reason:?}"),
                Event::Rejected { reason, .. } => format!("rejected {reason:?}"),
                Event::ReplaceRejected { reason, .. } => format!("replace_rejected {reason:?}"),
                other => format!("{other:?}")
                    .split([' ', '{'])
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            };
            *counts.entry(name).or_insert(0) += 1;
        }
    }
    counts
}

/// The long stream: 50,000 commands on a narrow band of prices.
fn long_stream() -> Vec<Command> {
    seeded_stream(
        0x6b65_656c,
        50_000,
        Prices {
            center: 100,
            spread: 5,
        },
        0,
    )
}

#[test]
fn long_seeded_stream_matches_model() {
    let stream = long_stream();
    assert!(stream.len() >= 50_000);
    // The stream must exercise every outcome, or the comparison proves little.
    let counts = census(&stream);
    for name in [
        "Accepted",
        "Trade",
        "Replaced",
        "CancelRejected",
        "InstrumentRejected",
        "canceled User",
        "canceled Ioc",
        "canceled Fok",
        "canceled Stp",
        "canceled Mass",
        "rejected DuplicateOrderId",
        "rejected UnknownInstrument",
        "rejected Invalid",
        "rejected PostOnly",
        "replace_rejected UnknownOrder",
        "replace_rejected Invalid",
    ] {
        assert!(
            counts.get(name).copied().unwrap_or(0) >= 100,
            "{name} too rare: {counts:?}"
        );
    }
    // A 256-tick window keeps the per-command invariant check cheap in debug builds; the
    // default layout runs the same stream in `same_stream_same_results` and must agree.
    let config = EngineConfig {
        capacity_orders: 1024,
        price_window_bits: 8,
    };
    run_stream(config, &stream, 1);
}

/// Prices that drift by large steps over time leave levels behind in the overflow map and
/// force the window to re-centre, with a tiny window so it happens constantly.
#[test]
fn drifting_prices_match_model() {
    // Large jumps (far beyond any window) and steps of about a window's width, where the
    // old and new windows overlap.
    for (seed, center, drift) in [(7, 1_000_000_000, 5_000_000), (8, 1_000, 150)] {
        let stream = seeded_stream(seed, 15_000, Prices { center, spread: 40 }, drift);
        for price_window_bits in [6, 8] {
            let config = EngineConfig {
                capacity_orders: 4,
                price_window_bits,
            };
            run_stream(config, &stream, 1);
        }
        // The default layout gives the same events (its invariants are checked every 500
        // commands: the check walks the whole 8192-tick window, slow in debug builds).
        let mut small = Engine::new(EngineConfig {
            capacity_orders: 4,
            price_window_bits: 6,
        })
        .unwrap();
        let mut default = Engine::default();
        let (mut want, mut got) = (Vec::new(), Vec::new());
        for (index, command) in stream.iter().enumerate() {
            want.clear();
            got.clear();
            small.process(command, &mut want);
            default.process(command, &mut got);
            assert_eq!(got, want, "command #{index}: {command:?}");
            if index % 500 == 0 {
                default.check_invariants().unwrap();
            }
        }
        default.check_invariants().unwrap();
    }
}

/// Determinism: the same stream through two fresh engines (and through differently sized
/// ones, which must only change speed) gives identical events, books and id sets.
#[test]
fn same_stream_same_results() {
    let stream = long_stream();
    // The invariant check walks the whole price window, so the default 8192-tick layout is
    // checked every 500 commands (a full check each time would dominate debug test time).
    let run = |config: EngineConfig, check_every: usize| {
        let mut engine = Engine::new(config).unwrap();
        let mut events = Vec::new();
        let mut per_command = Vec::with_capacity(stream.len());
        for (index, command) in stream.iter().enumerate() {
            events.clear();
            engine.process(command, &mut events);
            per_command.push(events.clone());
            if index % check_every == 0 {
                engine.check_invariants().unwrap();
            }
        }
        engine.check_invariants().unwrap();
        let books: Vec<_> = engine
            .instruments()
            .map(|(instrument, symbol)| {
                let side = |side| -> Vec<RestingOrder> {
                    engine.resting_orders(instrument, side).unwrap().collect()
                };
                (instrument, symbol, side(Side::Buy), side(Side::Sell))
            })
            .collect();
        let ids: Vec<_> = engine.used_order_id_ranges().collect();
        (
            per_command,
            books,
            ids,
            engine.ledger(),
            engine.next_match_id(),
        )
    };
    let first = run(EngineConfig::default(), 500);
    assert!(first.4 > 1_000, "the stream should trade");
    assert!(
        first
            .1
            .iter()
            .map(|book| book.2.len() + book.3.len())
            .sum::<usize>()
            > 0,
        "something should rest at the end"
    );
    let second = run(EngineConfig::default(), 500);
    assert!(first == second, "two fresh engines disagree");
    let small = run(
        EngineConfig {
            capacity_orders: 1,
            price_window_bits: 6,
        },
        1,
    );
    assert!(first == small, "a different layout changed the results");
}

/// Prices far apart live in the window and in the overflow map at once; a sweep must still
/// visit them in price order and books must list them best first. Everything also goes
/// through the model.
#[test]
fn far_apart_prices() {
    let order = |order_id, account, side, price: Option<Price>, qty, tif| {
        Command::New(NewOrder {
            order_id,
            account,
            instrument: 1,
            side,
            price,
            qty,
            tif,
            post_only: false,
            stp: SelfTradePrevention::None,
        })
    };
    let trades = |events: &[Event]| -> Vec<(Price, Qty, u64)> {
        events
            .iter()
            .filter_map(|event| match *event {
                Event::Trade {
                    price,
                    qty,
                    match_id,
                    ..
                } => Some((price, qty, match_id)),
                _ => None,
            })
            .collect()
    };
    let prices = |harness: &Harness, side| -> Vec<Price> {
        harness
            .engine
            .resting_orders(1, side)
            .unwrap()
            .map(|order| order.price)
            .collect()
    };
    let asks = [
        i64::MAX,
        10_000_000,
        i64::MAX / 2,
        100,
        i64::MAX - 1,
        10_000,
    ];
    for price_window_bits in [6, 13] {
        let mut harness = Harness::new(EngineConfig {
            capacity_orders: 8,
            price_window_bits,
        });
        let mut run = |command| harness.command(command).unwrap();
        run(Command::DefineInstrument {
            instrument: 1,
            symbol: symbol(1),
        });
        for (index, &price) in asks.iter().enumerate() {
            run(order(
                index as u64 + 1,
                1,
                Side::Sell,
                Some(price),
                2,
                TimeInForce::Gtc,
            ));
        }
        run(order(7, 2, Side::Buy, Some(1), 2, TimeInForce::Gtc));
        run(order(8, 2, Side::Buy, Some(2), 2, TimeInForce::Gtc));
        assert_eq!(
            prices(&harness, Side::Sell),
            vec![
                100,
                10_000,
                10_000_000,
                i64::MAX / 2,
                i64::MAX - 1,
                i64::MAX
            ]
        );
        assert_eq!(prices(&harness, Side::Buy), vec![2, 1]);
        assert_eq!(harness.engine.best_prices(1), Some((Some(2), Some(100))));

        // A market buy sweeps every ask, cheapest first, each at the maker's price.
        let mut run = |command| harness.command(command).unwrap();
        let events = run(order(100, 3, Side::Buy, None, 11, TimeInForce::Ioc));
        assert_eq!(
            trades(&events),
            vec![
                (100, 2, 1),
                (10_000, 2, 2),
                (10_000_000, 2, 3),
                (i64::MAX / 2, 2, 4),
                (i64::MAX - 1, 2, 5),
                (i64::MAX, 1, 6),
            ]
        );
        assert_eq!(
            events.len(),
            7,
            "accepted + 6 trades, nothing left: {events:?}"
        );

        // A sell at 1 takes both bids (best first) and rests its remainder at 1.
        let events = run(order(101, 3, Side::Sell, Some(1), 5, TimeInForce::Gtc));
        assert_eq!(trades(&events), vec![(2, 2, 7), (1, 2, 8)]);
        // Moved far up, it goes to the overflow side of the window (or re-centres it).
        run(Command::Replace {
            order_id: 101,
            account: 3,
            price: i64::MAX / 4,
            qty: 3,
        });
        assert_eq!(prices(&harness, Side::Sell), vec![i64::MAX / 4, i64::MAX]);
        assert_eq!(prices(&harness, Side::Buy), Vec::<Price>::new());

        // A bid at i64::MAX takes both and rests; a sell at 1 then trades at i64::MAX.
        let mut run = |command| harness.command(command).unwrap();
        let events = run(order(
            102,
            2,
            Side::Buy,
            Some(i64::MAX),
            10,
            TimeInForce::Gtc,
        ));
        assert_eq!(
            trades(&events),
            vec![(i64::MAX / 4, 3, 9), (i64::MAX, 1, 10)]
        );
        let events = run(order(103, 1, Side::Sell, Some(1), 1, TimeInForce::Ioc));
        assert_eq!(trades(&events), vec![(i64::MAX, 1, 11)]);
        assert_eq!(harness.engine.best_prices(1), Some((Some(i64::MAX), None)));
        assert_eq!(harness.engine.order(102).map(|o| o.qty), Some(5));
        harness.check_state().unwrap();
    }
}
