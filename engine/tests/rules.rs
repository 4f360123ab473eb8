//! One test per rule of issue 2 ("The engine"), through the public API only, each with the
//! exact sequence of events it must produce. The engine's invariants are checked after every
//! command.

// clippy.toml lets tests unwrap and panic, but clippy only recognises `#[test]` functions, not
// the helpers of an integration test; here a failed unwrap is a failed test, as intended.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keel_engine::{
    AccountId, AmendRejectReason, CancelReason, Command, Engine, Event, InstrumentId,
    InstrumentRejectReason, NewOrder, OrderId, Price, Qty, RejectReason, RestingOrder,
    SelfTradePrevention, Side, Symbol, TimeInForce,
};

use AmendRejectReason::{Invalid as AmendInvalid, UnknownOrder};
use CancelReason::{Fok, Ioc, Mass, Stp, User};
use RejectReason::{DuplicateOrderId, Invalid, PostOnly, UnknownInstrument};
use SelfTradePrevention::{CancelBoth, CancelNewest, CancelOldest};
use Side::{Buy, Sell};

const A: AccountId = 1;
const B: AccountId = 2;
const C: AccountId = 3;
const D: AccountId = 4;

/// One side of a book as (order id, price, open qty).
type Book = Vec<(OrderId, Price, Qty)>;

// ===== Helpers =================================================================================

/// An engine with instrument 1 defined, checked after every command.
struct Exchange {
    engine: Engine,
}

impl Exchange {
    fn new() -> Exchange {
        let mut exchange = Exchange {
            engine: Engine::default(),
        };
        assert_eq!(exchange.define(1, "BTC-PERP"), vec![]);
        exchange
    }

    fn run(&mut self, command: Command) -> Vec<Event> {
        let mut events = Vec::new();
        self.engine.process(&command, &mut events);
        self.engine.check_invariants().unwrap();
        events
    }

    fn define(&mut self, instrument: InstrumentId, symbol: &str) -> Vec<Event> {
        self.run(Command::DefineInstrument {
            instrument,
            symbol: Symbol::new(symbol).unwrap(),
        })
    }

    fn order(&mut self, order: NewOrder) -> Vec<Event> {
        self.run(Command::New(order))
    }

    /// Enters an order that must be accepted and rest without trading.
    fn rest(&mut self, order: NewOrder) {
        assert_eq!(
            self.order(order),
            vec![accepted(order.order_id)],
            "{order:?}"
        );
    }

    fn cancel(&mut self, order_id: OrderId, account: AccountId) -> Vec<Event> {
        self.run(Command::Cancel { order_id, account })
    }

    fn replace(
        &mut self,
        order_id: OrderId,
        account: AccountId,
        price: Price,
        qty: Qty,
    ) -> Vec<Event> {
        self.run(Command::Replace {
            order_id,
            account,
            price,
            qty,
        })
    }

    fn mass_cancel(&mut self, account: AccountId, instrument: Option<InstrumentId>) -> Vec<Event> {
        self.run(Command::MassCancel {
            account,
            instrument,
        })
    }

    /// One side of instrument 1, best first.
    fn book(&self, side: Side) -> Book {
        self.book_of(1, side)
    }

    fn book_of(&self, instrument: InstrumentId, side: Side) -> Book {
        self.engine
            .resting_orders(instrument, side)
            .unwrap()
            .map(|order| (order.order_id, order.price, order.qty))
            .collect()
    }

    /// Both sides of instrument 1: (bids, asks).
    fn books(&self) -> (Book, Book) {
        (self.book(Buy), self.book(Sell))
    }
}

fn limit(order_id: OrderId, account: AccountId, side: Side, price: Price, qty: Qty) -> NewOrder {
    NewOrder {
        order_id,
        account,
        instrument: 1,
        side,
        price: Some(price),
        qty,
        tif: TimeInForce::Gtc,
        post_only: false,
        stp: SelfTradePrevention::None,
    }
}

fn buy(order_id: OrderId, account: AccountId, price: Price, qty: Qty) -> NewOrder {
    limit(order_id, account, Buy, price, qty)
}

fn sell(order_id: OrderId, account: AccountId, price: Price, qty: Qty) -> NewOrder {
    limit(order_id, account, Sell, price, qty)
}

/// A market order with the replay defaults (`tif` gtc, which a market order ignores).
fn market(order_id: OrderId, account: AccountId, side: Side, qty: Qty) -> NewOrder {
    NewOrder {
        price: None,
        ..limit(order_id, account, side, 1, qty)
    }
}

fn with_tif(order: NewOrder, tif: TimeInForce) -> NewOrder {
    NewOrder { tif, ..order }
}

fn with_stp(order: NewOrder, stp: SelfTradePrevention) -> NewOrder {
    NewOrder { stp, ..order }
}

fn post_only(order: NewOrder) -> NewOrder {
    NewOrder {
        post_only: true,
        ..order
    }
}

fn accepted(order_id: OrderId) -> Event {
    Event::Accepted { order_id }
}

fn rejected(order_id: OrderId, reason: RejectReason) -> Event {
    Event::Rejected { order_id, reason }
}

/// A trade on instrument 1.
fn trade(
    match_id: u64,
    taker_order_id: OrderId,
    maker_order_id: OrderId,
    taker_side: Side,
    price: Price,
    qty: Qty,
) -> Event {
    Event::Trade {
        instrument: 1,
        price,
        qty,
        taker_order_id,
        maker_order_id,
        taker_side,
        match_id,
    }
}

fn canceled(order_id: OrderId, qty: Qty, reason: CancelReason) -> Event {
    Event::Canceled {
        order_id,
        qty,
        reason,
    }
}

fn replaced(order_id: OrderId, price: Price, qty: Qty) -> Event {
    Event::Replaced {
        order_id,
        price,
        qty,
    }
}

fn cancel_rejected(order_id: OrderId) -> Event {
    Event::CancelRejected {
        order_id,
        reason: UnknownOrder,
    }
}

fn replace_rejected(order_id: OrderId, reason: AmendRejectReason) -> Event {
    Event::ReplaceRejected { order_id, reason }
}

fn empty() -> Book {
    Vec::new()
}

// ===== Instruments =============================================================================

#[test]
fn order_for_undefined_instrument_is_rejected() {
    let mut x = Exchange::new();
    x.rest(sell(1, A, 100, 5));
    let elsewhere = NewOrder {
        instrument: 7,
        ..buy(2, B, 100, 5)
    };
    assert_eq!(x.order(elsewhere), vec![rejected(2, UnknownInstrument)]);
    let market_elsewhere = NewOrder {
        instrument: 0,
        ..market(3, B, Buy, 5)
    };
    assert_eq!(
        x.order(market_elsewhere),
        vec![rejected(3, UnknownInstrument)]
    );
    assert_eq!(x.books(), (empty(), vec![(1, 100, 5)]));
    assert!(x.engine.resting_orders(7, Buy).is_none());
    assert_eq!(x.engine.next_match_id(), 1);
}

#[test]
fn defining_an_instrument_emits_nothing_and_a_duplicate_is_rejected() {
    let mut x = Exchange::new();
    x.rest(buy(1, A, 100, 5));
    assert_eq!(
        x.define(1, "ETH-PERP"),
        vec![Event::InstrumentRejected {
            instrument: 1,
            reason: InstrumentRejectReason::DuplicateInstrument,
        }]
    );
    // The existing instrument and its book are unchanged.
    assert_eq!(x.book(Buy), vec![(1, 100, 5)]);
    assert_eq!(x.define(3, "SOL-PERP"), vec![]);
    assert_eq!(x.define(2, "ETH-PERP"), vec![]);
    let listed: Vec<_> = x
        .engine
        .instruments()
        .map(|(id, symbol)| (id, symbol.as_str().to_string()))
        .collect();
    assert_eq!(
        listed,
        vec![
            (1, "BTC-PERP".to_string()),
            (2, "ETH-PERP".to_string()),
            (3, "SOL-PERP".to_string())
        ]
    );
    // The new instrument trades independently.
    let on_2 = |order: NewOrder| NewOrder {
        instrument: 2,
        ..order
    };
    x.rest(on_2(sell(2, A, 100, 5)));
    assert_eq!(x.book(Buy), vec![(1, 100, 5)]);
    assert_eq!(x.book_of(2, Sell), vec![(2, 100, 5)]);
}

// ===== Validation ==============================================================================

#[test]
fn duplicate_id_of_a_resting_order_is_rejected() {
    let mut x = Exchange::new();
    x.rest(buy(1, A, 100, 5));
    // Would cross: a duplicate must not trade.
    assert_eq!(
        x.order(sell(1, B, 100, 5)),
        vec![rejected(1, DuplicateOrderId)]
    );
    assert_eq!(x.books(), (vec![(1, 100, 5)], empty()));
}

#[test]
fn ids_of_rejected_orders_stay_used() {
    let mut x = Exchange::new();
    x.rest(sell(10, A, 100, 5));
    let unknown = NewOrder {
        instrument: 9,
        ..buy(1, B, 90, 5)
    };
    assert_eq!(x.order(unknown), vec![rejected(1, UnknownInstrument)]);
    assert_eq!(x.order(buy(2, B, 90, 0)), vec![rejected(2, Invalid)]);
    assert_eq!(
        x.order(post_only(buy(3, B, 100, 5))),
        vec![rejected(3, PostOnly)]
    );
    for id in [1, 2, 3] {
        assert!(x.engine.order_id_used(id));
        assert_eq!(
            x.order(buy(id, B, 90, 5)),
            vec![rejected(id, DuplicateOrderId)]
        );
    }
    assert_eq!(x.books(), (empty(), vec![(10, 100, 5)]));
}

#[test]
fn ids_stay_used_after_the_order_is_filled_or_canceled() {
    let mut x = Exchange::new();
    x.rest(sell(1, A, 100, 5));
    assert_eq!(
        x.order(buy(2, B, 100, 5)),
        vec![accepted(2), trade(1, 2, 1, Buy, 100, 5)]
    );
    x.rest(buy(3, B, 90, 5));
    assert_eq!(x.cancel(3, B), vec![canceled(3, 5, User)]);
    assert_eq!(
        x.order(with_tif(buy(4, B, 90, 5), TimeInForce::Ioc)),
        vec![accepted(4), canceled(4, 5, Ioc)]
    );
    // Filled maker, filled taker, user-canceled, ioc-canceled: all used up.
    for id in [1, 2, 3, 4] {
        assert_eq!(
            x.order(buy(id, C, 80, 1)),
            vec![rejected(id, DuplicateOrderId)]
        );
    }
    assert_eq!(x.books(), (empty(), empty()));
}

#[test]
fn duplicate_is_checked_before_unknown_instrument_and_invalid() {
    let mut x = Exchange::new();
    x.rest(buy(1, A, 100, 5));
    let everything_wrong = NewOrder {
        instrument: 9,
        price: Some(-1),
        qty: 0,
        tif: TimeInForce::Ioc,
        post_only: true,
        ..buy(1, B, 100, 5)
    };
    assert_eq!(
        x.order(everything_wrong),
        vec![rejected(1, DuplicateOrderId)]
    );
    let invalid = NewOrder {
        qty: 0,
        ..buy(1, B, 100, 5)
    };
    assert_eq!(x.order(invalid), vec![rejected(1, DuplicateOrderId)]);
}

#[test]
fn unknown_instrument_is_checked_before_invalid() {
    let mut x = Exchange::new();
    let invalid_and_unknown = NewOrder {
        instrument: 9,
        price: Some(0),
        qty: 0,
        tif: TimeInForce::Fok,
        post_only: true,
        ..buy(1, B, 100, 5)
    };
    assert_eq!(
        x.order(invalid_and_unknown),
        vec![rejected(1, UnknownInstrument)]
    );
    let market_zero = NewOrder {
        instrument: 9,
        ..market(2, B, Sell, 0)
    };
    assert_eq!(x.order(market_zero), vec![rejected(2, UnknownInstrument)]);
}

#[test]
fn zero_quantity_is_invalid_and_has_no_effect() {
    let mut x = Exchange::new();
    x.rest(sell(1, A, 100, 5));
    assert_eq!(x.order(buy(2, B, 100, 0)), vec![rejected(2, Invalid)]);
    assert_eq!(x.order(market(3, B, Buy, 0)), vec![rejected(3, Invalid)]);
    assert_eq!(
        x.order(with_tif(buy(4, B, 100, 0), TimeInForce::Fok)),
        vec![rejected(4, Invalid)]
    );
    assert_eq!(x.books(), (empty(), vec![(1, 100, 5)]));
    assert_eq!(x.engine.next_match_id(), 1);
}

#[test]
fn non_positive_limit_price_is_invalid() {
    let mut x = Exchange::new();
    x.rest(buy(1, A, 100, 5));
    let mut id = 1;
    for price in [0, -1, -100, i64::MIN] {
        for side in [Buy, Sell] {
            id += 1;
            assert_eq!(
                x.order(limit(id, B, side, price, 5)),
                vec![rejected(id, Invalid)],
                "{side:?} at {price}"
            );
        }
    }
    assert_eq!(x.books(), (vec![(1, 100, 5)], empty()));
    // Price 1 is the lowest valid price.
    x.rest(buy(20, B, 1, 5));
    assert_eq!(x.book(Buy), vec![(1, 100, 5), (20, 1, 5)]);
}

#[test]
fn post_only_is_invalid_unless_on_a_gtc_limit_order() {
    let mut x = Exchange::new();
    // Empty book: nothing could cross, so these are `invalid`, not `post_only`.
    let cases = [
        with_tif(buy(1, A, 100, 5), TimeInForce::Ioc),
        with_tif(buy(2, A, 100, 5), TimeInForce::Fok),
        market(3, A, Buy, 5),
        with_tif(market(4, A, Sell, 5), TimeInForce::Ioc),
        with_tif(market(5, A, Sell, 5), TimeInForce::Fok),
    ];
    for order in cases {
        assert_eq!(
            x.order(post_only(order)),
            vec![rejected(order.order_id, Invalid)],
            "{order:?}"
        );
    }
    assert_eq!(x.books(), (empty(), empty()));
    x.rest(post_only(buy(6, A, 100, 5)));
    assert_eq!(x.books(), (vec![(6, 100, 5)], empty()));
}

// ===== Post only ===============================================================================

#[test]
fn post_only_that_would_cross_is_rejected_and_nothing_happens() {
    let mut x = Exchange::new();
    x.rest(sell(1, A, 100, 5));
    x.rest(sell(2, A, 101, 5));
    x.rest(buy(3, A, 98, 5));
    // Touching the best ask crosses; so does going through it.
    assert_eq!(
        x.order(post_only(buy(4, B, 100, 5))),
        vec![rejected(4, PostOnly)]
    );
    assert_eq!(
        x.order(post_only(buy(5, B, 105, 50))),
        vec![rejected(5, PostOnly)]
    );
    assert_eq!(
        x.order(post_only(sell(6, B, 98, 5))),
        vec![rejected(6, PostOnly)]
    );
    // Against its own account too: post_only comes before self-trade prevention.
    assert_eq!(
        x.order(with_stp(post_only(buy(7, A, 100, 5)), CancelOldest)),
        vec![rejected(7, PostOnly)]
    );
    assert_eq!(
        x.books(),
        (vec![(3, 98, 5)], vec![(1, 100, 5), (2, 101, 5)])
    );
    assert_eq!(x.engine.next_match_id(), 1);
}

#[test]
fn post_only_that_does_not_cross_rests() {
    let mut x = Exchange::new();
    x.rest(post_only(buy(1, A, 99, 5)));
    x.rest(sell(2, B, 100, 5));
    x.rest(post_only(buy(3, C, 99, 4)));
    x.rest(post_only(sell(4, C, 101, 3)));
    x.rest(post_only(sell(5, C, 100, 2)));
    assert_eq!(
        x.books(),
        (
            vec![(1, 99, 5), (3, 99, 4)],
            vec![(2, 100, 5), (5, 100, 2), (4, 101, 3)]
        )
    );
}

// ===== Matching ================================================================================

#[test]
fn price_time_priority_across_levels_and_fifo_within_a_level() {
    let mut x = Exchange::new();
    x.rest(sell(1, A, 102, 5));
    x.rest(sell(2, B, 101, 3));
    x.rest(sell(3, C, 101, 4));
    x.rest(sell(4, A, 103, 5));
    x.rest(sell(5, A, 101, 2));
    assert_eq!(
        x.order(buy(6, D, 103, 16)),
        vec![
            accepted(6),
            trade(1, 6, 2, Buy, 101, 3),
            trade(2, 6, 3, Buy, 101, 4),
            trade(3, 6, 5, Buy, 101, 2),
            trade(4, 6, 1, Buy, 102, 5),
            trade(5, 6, 4, Buy, 103, 2),
        ]
    );
    assert_eq!(x.books(), (empty(), vec![(4, 103, 3)]));
}

#[test]
fn sell_taker_takes_the_highest_bids_first() {
    let mut x = Exchange::new();
    x.rest(buy(1, A, 98, 2));
    x.rest(buy(2, B, 100, 2));
    x.rest(buy(3, C, 99, 2));
    x.rest(buy(4, A, 100, 2));
    assert_eq!(
        x.order(sell(5, D, 99, 7)),
        vec![
            accepted(5),
            trade(1, 5, 2, Sell, 100, 2),
            trade(2, 5, 4, Sell, 100, 2),
            trade(3, 5, 3, Sell, 99, 2),
        ]
    );
    // It stops at its limit (98 does not cross 99) and rests the remainder.
    assert_eq!(x.books(), (vec![(1, 98, 2)], vec![(5, 99, 1)]));
}

#[test]
fn trade_executes_at_the_maker_price() {
    let mut x = Exchange::new();
    x.rest(sell(1, A, 100, 5));
    assert_eq!(
        x.order(buy(2, B, 110, 5)),
        vec![accepted(2), trade(1, 2, 1, Buy, 100, 5)]
    );
    x.rest(buy(3, A, 90, 5));
    assert_eq!(
        x.order(sell(4, B, 80, 5)),
        vec![accepted(4), trade(2, 4, 3, Sell, 90, 5)]
    );
    assert_eq!(x.books(), (empty(), empty()));
}

#[test]
fn incoming_order_stops_at_its_limit_and_gtc_remainder_rests() {
    let mut x = Exchange::new();
    x.rest(sell(1, A, 100, 5));
    x.rest(sell(2, A, 102, 5));
    assert_eq!(
        x.order(buy(3, B, 101, 8)),
        vec![accepted(3), trade(1, 3, 1, Buy, 100, 5)]
    );
    assert_eq!(x.books(), (vec![(3, 101, 3)], vec![(2, 102, 5)]));
    let resting = x.engine.order(3).unwrap();
    assert_eq!(
        resting,
        RestingOrder {
            order_id: 3,
            account: B,
            instrument: 1,
            side: Buy,
            price: 101,
            qty: 3,
            stp: SelfTradePrevention::None,
        }
    );
}

#[test]
fn partially_filled_maker_keeps_its_place() {
    let mut x = Exchange::new();
    x.rest(sell(1, A, 100, 10));
    x.rest(sell(2, B, 100, 5));
    assert_eq!(
        x.order(buy(3, C, 100, 4)),
        vec![accepted(3), trade(1, 3, 1, Buy, 100, 4)]
    );
    assert_eq!(x.book(Sell), vec![(1, 100, 6), (2, 100, 5)]);
    assert_eq!(
        x.order(buy(4, C, 100, 7)),
        vec![
            accepted(4),
            trade(2, 4, 1, Buy, 100, 6),
            trade(3, 4, 2, Buy, 100, 1)
        ]
    );
    assert_eq!(x.books(), (empty(), vec![(2, 100, 4)]));
}

#[test]
fn ioc_remainder_is_canceled() {
    let mut x = Exchange::new();
    x.rest(sell(1, A, 100, 3));
    x.rest(sell(2, A, 102, 3));
    assert_eq!(
        x.order(with_tif(buy(3, B, 101, 5), TimeInForce::Ioc)),
        vec![
            accepted(3),
            trade(1, 3, 1, Buy, 100, 3),
            canceled(3, 2, Ioc)
        ]
    );
    // Nothing to match: the whole quantity is canceled.
    assert_eq!(
        x.order(with_tif(buy(4, B, 101, 5), TimeInForce::Ioc)),
        vec![accepted(4), canceled(4, 5, Ioc)]
    );
    // Fully filled: no cancel.
    assert_eq!(
        x.order(with_tif(buy(5, B, 102, 3), TimeInForce::Ioc)),
        vec![accepted(5), trade(2, 5, 2, Buy, 102, 3)]
    );
    assert_eq!(x.books(), (empty(), empty()));
}

#[test]
fn market_order_sweeps_the_book_and_its_remainder_is_canceled_ioc() {
    let mut x = Exchange::new();
    x.rest(sell(1, A, 100, 2));
    x.rest(sell(2, B, 105, 3));
    x.rest(sell(3, C, 200, 4));
    x.rest(buy(4, C, 50, 4));
    assert_eq!(
        x.order(market(5, D, Buy, 12)),
        vec![
            accepted(5),
            trade(1, 5, 1, Buy, 100, 2),
            trade(2, 5, 2, Buy, 105, 3),
            trade(3, 5, 3, Buy, 200, 4),
            canceled(5, 3, Ioc),
        ]
    );
    // It never rests, even with tif gtc.
    assert_eq!(x.books(), (vec![(4, 50, 4)], empty()));
    assert_eq!(
        x.order(with_tif(market(6, D, Sell, 3), TimeInForce::Ioc)),
        vec![accepted(6), trade(4, 6, 4, Sell, 50, 3)]
    );
    assert_eq!(x.books(), (vec![(4, 50, 1)], empty()));
}

#[test]
fn market_order_on_an_empty_book_is_canceled_ioc() {
    let mut x = Exchange::new();
    assert_eq!(
        x.order(market(1, A, Buy, 5)),
        vec![accepted(1), canceled(1, 5, Ioc)]
    );
    assert_eq!(
        x.order(with_tif(market(2, A, Sell, 7), TimeInForce::Ioc)),
        vec![accepted(2), canceled(2, 7, Ioc)]
    );
    // Liquidity on the same side does not help.
    x.rest(sell(3, B, 100, 5));
    assert_eq!(
        x.order(market(4, A, Sell, 5)),
        vec![accepted(4), canceled(4, 5, Ioc)]
    );
    assert_eq!(x.books(), (empty(), vec![(3, 100, 5)]));
}

// ===== Fill or kill ============================================================================

#[test]
fn fok_fills_completely_across_levels() {
    let mut x = Exchange::new();
    x.rest(sell(1, A, 100, 3));
    x.rest(sell(2, B, 101, 3));
    x.rest(sell(3, C, 102, 3));
    assert_eq!(
        x.order(with_tif(buy(4, D, 102, 8), TimeInForce::Fok)),
        vec![
            accepted(4),
            trade(1, 4, 1, Buy, 100, 3),
            trade(2, 4, 2, Buy, 101, 3),
            trade(3, 4, 3, Buy, 102, 2),
        ]
    );
    assert_eq!(x.books(), (empty(), vec![(3, 102, 1)]));
    // Exactly the available quantity, as a market fok.
    assert_eq!(
        x.order(with_tif(market(5, D, Buy, 1), TimeInForce::Fok)),
        vec![accepted(5), trade(4, 5, 3, Buy, 102, 1)]
    );
    assert_eq!(x.books(), (empty(), empty()));
}

#[test]
fn fok_that_cannot_fill_is_canceled_with_no_effect() {
    let mut x = Exchange::new();
    x.rest(sell(1, A, 100, 3));
    x.rest(sell(2, B, 101, 3));
    x.rest(sell(3, C, 103, 5));
    let before = x.books();
    // 6 lots within the limit of 102; 11 in the whole book.
    assert_eq!(
        x.order(with_tif(buy(4, D, 102, 7), TimeInForce::Fok)),
        vec![accepted(4), canceled(4, 7, Fok)]
    );
    assert_eq!(
        x.order(with_tif(market(5, D, Buy, 12), TimeInForce::Fok)),
        vec![accepted(5), canceled(5, 12, Fok)]
    );
    assert_eq!(
        x.order(with_tif(sell(6, D, 1, 1), TimeInForce::Fok)),
        vec![accepted(6), canceled(6, 1, Fok)]
    );
    assert_eq!(x.books(), before);
    assert_eq!(x.engine.next_match_id(), 1);
}

#[test]
fn fok_with_stp_none_counts_and_trades_its_own_liquidity() {
    let mut x = Exchange::new();
    x.rest(sell(1, A, 100, 3));
    x.rest(sell(2, B, 100, 3));
    assert_eq!(
        x.order(with_tif(buy(3, A, 100, 6), TimeInForce::Fok)),
        vec![
            accepted(3),
            trade(1, 3, 1, Buy, 100, 3),
            trade(2, 3, 2, Buy, 100, 3)
        ]
    );
    assert_eq!(x.books(), (empty(), empty()));
}

#[test]
fn fok_with_cancel_oldest_skips_own_orders_in_the_check() {
    // Enough other liquidity behind the own order: it fills, and matching cancels the own
    // order on the way (stp).
    let mut x = Exchange::new();
    x.rest(sell(1, A, 100, 3));
    x.rest(sell(2, B, 100, 4));
    x.rest(sell(3, C, 101, 2));
    assert_eq!(
        x.order(with_stp(
            with_tif(buy(4, A, 101, 6), TimeInForce::Fok),
            CancelOldest
        )),
        vec![
            accepted(4),
            canceled(1, 3, Stp),
            trade(1, 4, 2, Buy, 100, 4),
            trade(2, 4, 3, Buy, 101, 2),
        ]
    );
    assert_eq!(x.books(), (empty(), empty()));

    // Only enough if the own order counted: no fill, and no stp cancel either.
    let mut x = Exchange::new();
    x.rest(sell(1, A, 100, 3));
    x.rest(sell(2, B, 100, 4));
    assert_eq!(
        x.order(with_stp(
            with_tif(buy(4, A, 100, 6), TimeInForce::Fok),
            CancelOldest
        )),
        vec![accepted(4), canceled(4, 6, Fok)]
    );
    assert_eq!(x.books(), (empty(), vec![(1, 100, 3), (2, 100, 4)]));
}

#[test]
fn fok_with_cancel_newest_or_both_cannot_fill_once_it_reaches_an_own_order() {
    for stp in [CancelNewest, CancelBoth] {
        let mut x = Exchange::new();
        x.rest(sell(1, B, 100, 2));
        x.rest(sell(2, A, 100, 3));
        x.rest(sell(3, B, 101, 10));
        assert_eq!(
            x.order(with_stp(with_tif(buy(4, A, 101, 5), TimeInForce::Fok), stp)),
            vec![accepted(4), canceled(4, 5, Fok)],
            "{stp:?}"
        );
        assert_eq!(
            x.books(),
            (empty(), vec![(1, 100, 2), (2, 100, 3), (3, 101, 10)])
        );
        // An own order at the very front blocks too.
        let mut x = Exchange::new();
        x.rest(sell(1, A, 100, 1));
        x.rest(sell(2, B, 100, 10));
        assert_eq!(
            x.order(with_stp(
                with_tif(market(3, A, Buy, 1), TimeInForce::Fok),
                stp
            )),
            vec![accepted(3), canceled(3, 1, Fok)],
            "{stp:?}"
        );
        assert_eq!(x.books(), (empty(), vec![(1, 100, 1), (2, 100, 10)]));
    }
}

#[test]
fn fok_with_cancel_newest_or_both_fills_before_reaching_an_own_order() {
    for stp in [CancelNewest, CancelBoth] {
        let mut x = Exchange::new();
        x.rest(sell(1, B, 100, 2));
        x.rest(sell(2, C, 100, 3));
        x.rest(sell(3, A, 100, 3));
        x.rest(sell(4, B, 100, 10));
        // Exactly the quantity ahead of the own order.
        assert_eq!(
            x.order(with_stp(with_tif(buy(5, A, 100, 5), TimeInForce::Fok), stp)),
            vec![
                accepted(5),
                trade(1, 5, 1, Buy, 100, 2),
                trade(2, 5, 2, Buy, 100, 3)
            ],
            "{stp:?}"
        );
        assert_eq!(x.books(), (empty(), vec![(3, 100, 3), (4, 100, 10)]));
    }
}

// ===== Self-trade prevention ===================================================================

/// Asks at 100: B 2 lots (1), A 3 lots (2), B 4 lots (3).
fn stp_book() -> Exchange {
    let mut x = Exchange::new();
    x.rest(sell(1, B, 100, 2));
    x.rest(sell(2, A, 100, 3));
    x.rest(sell(3, B, 100, 4));
    x
}

#[test]
fn stp_none_allows_a_self_trade() {
    let mut x = stp_book();
    assert_eq!(
        x.order(buy(4, A, 100, 5)),
        vec![
            accepted(4),
            trade(1, 4, 1, Buy, 100, 2),
            trade(2, 4, 2, Buy, 100, 3)
        ]
    );
    assert_eq!(x.books(), (empty(), vec![(3, 100, 4)]));
}

#[test]
fn stp_cancel_newest_cancels_the_taker_remainder_and_keeps_the_maker() {
    let mut x = stp_book();
    assert_eq!(
        x.order(with_stp(buy(4, A, 100, 8), CancelNewest)),
        vec![
            accepted(4),
            trade(1, 4, 1, Buy, 100, 2),
            canceled(4, 6, Stp)
        ]
    );
    // Matching stopped (order 3 untouched) and the gtc remainder did not rest.
    assert_eq!(x.books(), (empty(), vec![(2, 100, 3), (3, 100, 4)]));
}

#[test]
fn stp_cancel_oldest_cancels_the_maker_and_keeps_matching() {
    let mut x = stp_book();
    assert_eq!(
        x.order(with_stp(buy(4, A, 100, 8), CancelOldest)),
        vec![
            accepted(4),
            trade(1, 4, 1, Buy, 100, 2),
            canceled(2, 3, Stp),
            trade(2, 4, 3, Buy, 100, 4),
        ]
    );
    assert_eq!(x.books(), (vec![(4, 100, 2)], empty()));
}

#[test]
fn stp_cancel_both_cancels_the_maker_then_the_taker_remainder() {
    let mut x = stp_book();
    assert_eq!(
        x.order(with_stp(buy(4, A, 100, 8), CancelBoth)),
        vec![
            accepted(4),
            trade(1, 4, 1, Buy, 100, 2),
            canceled(2, 3, Stp),
            canceled(4, 6, Stp),
        ]
    );
    assert_eq!(x.books(), (empty(), vec![(3, 100, 4)]));
}

#[test]
fn stp_cancel_oldest_cancels_the_whole_open_quantity_of_a_partly_filled_maker() {
    let mut x = Exchange::new();
    x.rest(sell(1, A, 100, 10));
    assert_eq!(
        x.order(buy(2, B, 100, 4)),
        vec![accepted(2), trade(1, 2, 1, Buy, 100, 4)]
    );
    assert_eq!(
        x.order(with_stp(buy(3, A, 100, 1), CancelOldest)),
        vec![accepted(3), canceled(1, 6, Stp)]
    );
    assert_eq!(x.books(), (vec![(3, 100, 1)], empty()));
}

#[test]
fn stp_applies_only_between_orders_of_the_same_account_and_uses_the_taker_mode() {
    let mut x = Exchange::new();
    // Other accounts trade whatever their modes.
    x.rest(with_stp(sell(1, A, 100, 2), CancelBoth));
    assert_eq!(
        x.order(with_stp(buy(2, B, 100, 2), CancelBoth)),
        vec![accepted(2), trade(1, 2, 1, Buy, 100, 2)]
    );
    // Same account: the maker's mode is irrelevant, the taker's `none` self-trades.
    x.rest(with_stp(sell(3, A, 100, 2), CancelNewest));
    assert_eq!(
        x.order(buy(4, A, 100, 2)),
        vec![accepted(4), trade(2, 4, 3, Buy, 100, 2)]
    );
    assert_eq!(x.books(), (empty(), empty()));
}

#[test]
fn stp_on_market_and_ioc_orders() {
    let mut x = stp_book();
    // cancel_oldest keeps matching; the market remainder is then canceled `ioc`.
    assert_eq!(
        x.order(with_stp(market(4, A, Buy, 10), CancelOldest)),
        vec![
            accepted(4),
            trade(1, 4, 1, Buy, 100, 2),
            canceled(2, 3, Stp),
            trade(2, 4, 3, Buy, 100, 4),
            canceled(4, 4, Ioc),
        ]
    );
    // cancel_newest stopping an ioc order: the remainder's reason is `stp`, not `ioc`.
    x.rest(sell(5, A, 101, 1));
    x.rest(sell(6, B, 101, 1));
    assert_eq!(
        x.order(with_stp(
            with_tif(buy(7, A, 101, 2), TimeInForce::Ioc),
            CancelNewest
        )),
        vec![accepted(7), canceled(7, 2, Stp)]
    );
    assert_eq!(x.books(), (empty(), vec![(5, 101, 1), (6, 101, 1)]));
}

// ===== Cancel ==================================================================================

#[test]
fn owner_cancels_the_open_quantity() {
    let mut x = Exchange::new();
    x.rest(buy(1, A, 100, 10));
    assert_eq!(
        x.order(sell(2, B, 100, 4)),
        vec![accepted(2), trade(1, 2, 1, Sell, 100, 4)]
    );
    assert_eq!(x.cancel(1, A), vec![canceled(1, 6, User)]);
    assert_eq!(x.books(), (empty(), empty()));
    assert_eq!(x.engine.order(1), None);
}

#[test]
fn cancel_by_another_account_is_unknown_order() {
    let mut x = Exchange::new();
    x.rest(buy(1, A, 100, 10));
    assert_eq!(x.cancel(1, B), vec![cancel_rejected(1)]);
    assert_eq!(x.books(), (vec![(1, 100, 10)], empty()));
}

#[test]
fn cancel_of_an_unknown_id_is_unknown_order() {
    let mut x = Exchange::new();
    assert_eq!(x.cancel(42, A), vec![cancel_rejected(42)]);
    // A rejected order's id names no order either.
    assert_eq!(x.order(buy(43, A, 0, 1)), vec![rejected(43, Invalid)]);
    assert_eq!(x.cancel(43, A), vec![cancel_rejected(43)]);
}

#[test]
fn cancel_of_a_filled_or_canceled_order_is_unknown_order() {
    let mut x = Exchange::new();
    x.rest(sell(1, A, 100, 5));
    assert_eq!(
        x.order(buy(2, B, 100, 5)),
        vec![accepted(2), trade(1, 2, 1, Buy, 100, 5)]
    );
    assert_eq!(x.cancel(1, A), vec![cancel_rejected(1)]);
    assert_eq!(x.cancel(2, B), vec![cancel_rejected(2)]);
    x.rest(sell(3, A, 100, 5));
    assert_eq!(x.cancel(3, A), vec![canceled(3, 5, User)]);
    assert_eq!(x.cancel(3, A), vec![cancel_rejected(3)]);
    assert_eq!(
        x.order(with_tif(buy(4, B, 90, 5), TimeInForce::Ioc)),
        vec![accepted(4), canceled(4, 5, Ioc)]
    );
    assert_eq!(x.cancel(4, B), vec![cancel_rejected(4)]);
    assert_eq!(x.books(), (empty(), empty()));
}

// ===== Replace =================================================================================

#[test]
fn replace_checks_unknown_order_before_invalid() {
    let mut x = Exchange::new();
    x.rest(buy(1, A, 100, 5));
    assert_eq!(
        x.replace(99, A, 0, 0),
        vec![replace_rejected(99, UnknownOrder)]
    );
    assert_eq!(
        x.replace(1, B, -1, 0),
        vec![replace_rejected(1, UnknownOrder)]
    );
    assert_eq!(x.cancel(1, A), vec![canceled(1, 5, User)]);
    assert_eq!(
        x.replace(1, A, 0, 5),
        vec![replace_rejected(1, UnknownOrder)]
    );
}

#[test]
fn invalid_replace_changes_nothing() {
    let mut x = Exchange::new();
    x.rest(buy(1, A, 100, 5));
    x.rest(buy(2, B, 100, 5));
    x.rest(sell(3, C, 101, 5));
    for (price, qty) in [(100, 0), (0, 5), (-5, 3), (i64::MIN, 1), (101, 0)] {
        assert_eq!(
            x.replace(1, A, price, qty),
            vec![replace_rejected(1, AmendInvalid)],
            "price {price} qty {qty}"
        );
    }
    assert_eq!(
        x.books(),
        (vec![(1, 100, 5), (2, 100, 5)], vec![(3, 101, 5)])
    );
    // Its queue position is kept too.
    assert_eq!(
        x.order(sell(4, C, 100, 1)),
        vec![accepted(4), trade(1, 4, 1, Sell, 100, 1)]
    );
}

#[test]
fn replace_of_another_accounts_order_is_unknown_order_and_changes_nothing() {
    let mut x = Exchange::new();
    x.rest(buy(1, A, 100, 5));
    x.rest(sell(2, C, 105, 5));
    assert_eq!(
        x.replace(1, B, 105, 5),
        vec![replace_rejected(1, UnknownOrder)]
    );
    assert_eq!(x.books(), (vec![(1, 100, 5)], vec![(2, 105, 5)]));
}

#[test]
fn replace_of_a_filled_or_canceled_order_is_unknown_order() {
    let mut x = Exchange::new();
    x.rest(sell(1, A, 100, 5));
    assert_eq!(
        x.order(buy(2, B, 100, 5)),
        vec![accepted(2), trade(1, 2, 1, Buy, 100, 5)]
    );
    assert_eq!(
        x.replace(1, A, 100, 5),
        vec![replace_rejected(1, UnknownOrder)]
    );
    assert_eq!(
        x.replace(2, B, 100, 5),
        vec![replace_rejected(2, UnknownOrder)]
    );
    x.rest(sell(3, A, 100, 5));
    assert_eq!(x.cancel(3, A), vec![canceled(3, 5, User)]);
    assert_eq!(
        x.replace(3, A, 100, 5),
        vec![replace_rejected(3, UnknownOrder)]
    );
    assert_eq!(x.books(), (empty(), empty()));
}

/// Bids at 100: A 5 lots (1), B 5 lots (2).
fn queue() -> Exchange {
    let mut x = Exchange::new();
    x.rest(buy(1, A, 100, 5));
    x.rest(buy(2, B, 100, 5));
    x
}

#[test]
fn same_price_smaller_quantity_keeps_queue_position() {
    let mut x = queue();
    assert_eq!(x.replace(1, A, 100, 3), vec![replaced(1, 100, 3)]);
    assert_eq!(x.book(Buy), vec![(1, 100, 3), (2, 100, 5)]);
    assert_eq!(
        x.order(sell(3, C, 100, 4)),
        vec![
            accepted(3),
            trade(1, 3, 1, Sell, 100, 3),
            trade(2, 3, 2, Sell, 100, 1)
        ]
    );
}

#[test]
fn same_price_same_quantity_keeps_queue_position() {
    let mut x = queue();
    assert_eq!(x.replace(1, A, 100, 5), vec![replaced(1, 100, 5)]);
    assert_eq!(x.book(Buy), vec![(1, 100, 5), (2, 100, 5)]);
    assert_eq!(
        x.order(sell(3, C, 100, 1)),
        vec![accepted(3), trade(1, 3, 1, Sell, 100, 1)]
    );
}

#[test]
fn same_price_larger_quantity_loses_queue_position() {
    let mut x = queue();
    assert_eq!(x.replace(1, A, 100, 6), vec![replaced(1, 100, 6)]);
    assert_eq!(x.book(Buy), vec![(2, 100, 5), (1, 100, 6)]);
    assert_eq!(
        x.order(sell(3, C, 100, 1)),
        vec![accepted(3), trade(1, 3, 2, Sell, 100, 1)]
    );
}

#[test]
fn quantity_increase_is_judged_against_the_open_quantity() {
    // Replace sets the new *open* quantity: 8 after a partial fill left 6 open is an
    // increase, even though it is below the original 10.
    let mut x = Exchange::new();
    x.rest(buy(1, A, 100, 10));
    x.rest(buy(2, B, 100, 5));
    assert_eq!(
        x.order(sell(3, C, 100, 4)),
        vec![accepted(3), trade(1, 3, 1, Sell, 100, 4)]
    );
    assert_eq!(x.replace(1, A, 100, 6), vec![replaced(1, 100, 6)]);
    assert_eq!(x.book(Buy), vec![(1, 100, 6), (2, 100, 5)]);
    assert_eq!(x.replace(1, A, 100, 8), vec![replaced(1, 100, 8)]);
    assert_eq!(x.book(Buy), vec![(2, 100, 5), (1, 100, 8)]);
}

#[test]
fn new_price_loses_priority_and_goes_to_the_back_of_the_new_level() {
    let mut x = Exchange::new();
    x.rest(buy(1, A, 100, 5));
    x.rest(buy(2, B, 99, 5));
    x.rest(buy(3, C, 100, 5));
    assert_eq!(x.replace(1, A, 99, 5), vec![replaced(1, 99, 5)]);
    assert_eq!(x.book(Buy), vec![(3, 100, 5), (2, 99, 5), (1, 99, 5)]);
    // Back to 100 with less quantity: still a new price, so behind order 3.
    assert_eq!(x.replace(1, A, 100, 2), vec![replaced(1, 100, 2)]);
    assert_eq!(x.book(Buy), vec![(3, 100, 5), (1, 100, 2), (2, 99, 5)]);
    // To a new best level.
    assert_eq!(x.replace(2, B, 101, 5), vec![replaced(2, 101, 5)]);
    assert_eq!(x.book(Buy), vec![(2, 101, 5), (3, 100, 5), (1, 100, 2)]);
    assert_eq!(x.engine.order(2).unwrap().price, 101);
}

#[test]
fn crossing_replace_trades_as_taker_after_the_replaced_event_and_rests_the_remainder() {
    let mut x = Exchange::new();
    x.rest(sell(10, B, 101, 3));
    x.rest(sell(11, C, 102, 4));
    x.rest(sell(12, C, 103, 4));
    x.rest(buy(1, A, 100, 10));
    assert_eq!(
        x.replace(1, A, 102, 9),
        vec![
            replaced(1, 102, 9),
            trade(1, 1, 10, Buy, 101, 3),
            trade(2, 1, 11, Buy, 102, 4),
        ]
    );
    assert_eq!(x.books(), (vec![(1, 102, 2)], vec![(12, 103, 4)]));
    // Fully filled by a replace: the order is gone.
    assert_eq!(
        x.replace(1, A, 103, 4),
        vec![replaced(1, 103, 4), trade(3, 1, 12, Buy, 103, 4)]
    );
    assert_eq!(x.books(), (empty(), empty()));
    assert_eq!(x.cancel(1, A), vec![cancel_rejected(1)]);
}

#[test]
fn crossing_replace_of_an_ask_trades_at_bid_prices() {
    let mut x = Exchange::new();
    x.rest(buy(1, B, 100, 3));
    x.rest(buy(2, C, 99, 3));
    x.rest(sell(3, A, 105, 5));
    assert_eq!(
        x.replace(3, A, 99, 7),
        vec![
            replaced(3, 99, 7),
            trade(1, 3, 1, Sell, 100, 3),
            trade(2, 3, 2, Sell, 99, 3)
        ]
    );
    assert_eq!(x.books(), (empty(), vec![(3, 99, 1)]));
}

/// Bid 1 of account A (with `stp`) at 100; asks at 101: B 2 lots (2), A 3 lots (3), B 3 lots (4).
fn replace_stp_book(stp: SelfTradePrevention) -> Exchange {
    let mut x = Exchange::new();
    x.rest(with_stp(buy(1, A, 100, 5), stp));
    x.rest(sell(2, B, 101, 2));
    x.rest(sell(3, A, 101, 3));
    x.rest(sell(4, B, 101, 3));
    x
}

#[test]
fn crossing_replace_uses_the_orders_own_stp_mode() {
    let mut x = replace_stp_book(SelfTradePrevention::None);
    assert_eq!(
        x.replace(1, A, 101, 6),
        vec![
            replaced(1, 101, 6),
            trade(1, 1, 2, Buy, 101, 2),
            trade(2, 1, 3, Buy, 101, 3),
            trade(3, 1, 4, Buy, 101, 1),
        ]
    );
    assert_eq!(x.books(), (empty(), vec![(4, 101, 2)]));

    let mut x = replace_stp_book(CancelNewest);
    assert_eq!(
        x.replace(1, A, 101, 6),
        vec![
            replaced(1, 101, 6),
            trade(1, 1, 2, Buy, 101, 2),
            canceled(1, 4, Stp)
        ]
    );
    assert_eq!(x.books(), (empty(), vec![(3, 101, 3), (4, 101, 3)]));
    assert_eq!(x.engine.order(1), None);

    let mut x = replace_stp_book(CancelOldest);
    assert_eq!(
        x.replace(1, A, 101, 6),
        vec![
            replaced(1, 101, 6),
            trade(1, 1, 2, Buy, 101, 2),
            canceled(3, 3, Stp),
            trade(2, 1, 4, Buy, 101, 3),
        ]
    );
    assert_eq!(x.books(), (vec![(1, 101, 1)], empty()));
    assert_eq!(x.engine.order(1).unwrap().stp, CancelOldest);

    let mut x = replace_stp_book(CancelBoth);
    assert_eq!(
        x.replace(1, A, 101, 6),
        vec![
            replaced(1, 101, 6),
            trade(1, 1, 2, Buy, 101, 2),
            canceled(3, 3, Stp),
            canceled(1, 4, Stp),
        ]
    );
    assert_eq!(x.books(), (empty(), vec![(4, 101, 3)]));
}

#[test]
fn replacing_a_post_only_order_to_a_crossing_price_trades() {
    // Post-only is checked on arrival only; a replace that crosses matches as the taker.
    let mut x = Exchange::new();
    x.rest(post_only(buy(1, A, 99, 5)));
    x.rest(sell(2, B, 100, 3));
    assert_eq!(
        x.replace(1, A, 100, 5),
        vec![replaced(1, 100, 5), trade(1, 1, 2, Buy, 100, 3)]
    );
    assert_eq!(x.books(), (vec![(1, 100, 2)], empty()));
}

// ===== Mass cancel =============================================================================

/// Account A rests ids 30, 10, 20, 5 (in that order) across instruments 1 and 2, B rests 7
/// and 40; order 30 is then partly filled to 2 open lots.
fn mass_book() -> Exchange {
    let mut x = Exchange::new();
    assert_eq!(x.define(2, "ETH-PERP"), vec![]);
    let on_2 = |order: NewOrder| NewOrder {
        instrument: 2,
        ..order
    };
    x.rest(buy(30, A, 90, 3));
    x.rest(on_2(sell(10, A, 200, 2)));
    x.rest(sell(20, A, 110, 3));
    x.rest(on_2(buy(5, A, 50, 4)));
    x.rest(buy(7, B, 89, 5));
    x.rest(on_2(sell(40, B, 300, 6)));
    assert_eq!(
        x.order(sell(50, C, 90, 1)),
        vec![accepted(50), trade(1, 50, 30, Sell, 90, 1)]
    );
    x
}

#[test]
fn mass_cancel_cancels_every_instrument_in_ascending_order_id() {
    let mut x = mass_book();
    assert_eq!(
        x.mass_cancel(A, None),
        vec![
            canceled(5, 4, Mass),
            canceled(10, 2, Mass),
            canceled(20, 3, Mass),
            canceled(30, 2, Mass),
        ]
    );
    assert_eq!(x.books(), (vec![(7, 89, 5)], empty()));
    assert_eq!(x.book_of(2, Buy), empty());
    assert_eq!(x.book_of(2, Sell), vec![(40, 300, 6)]);
    assert_eq!(x.mass_cancel(A, None), vec![]);
    assert_eq!(x.cancel(20, A), vec![cancel_rejected(20)]);
}

#[test]
fn mass_cancel_of_one_instrument_leaves_the_others() {
    let mut x = mass_book();
    assert_eq!(
        x.mass_cancel(A, Some(1)),
        vec![canceled(20, 3, Mass), canceled(30, 2, Mass)]
    );
    assert_eq!(x.books(), (vec![(7, 89, 5)], empty()));
    assert_eq!(x.book_of(2, Buy), vec![(5, 50, 4)]);
    assert_eq!(x.book_of(2, Sell), vec![(10, 200, 2), (40, 300, 6)]);
    assert_eq!(x.mass_cancel(A, Some(1)), vec![]);
    assert_eq!(x.mass_cancel(A, Some(9)), vec![]);
    assert_eq!(
        x.mass_cancel(A, Some(2)),
        vec![canceled(5, 4, Mass), canceled(10, 2, Mass)]
    );
}

#[test]
fn mass_cancel_order_ignores_replaces_and_accounts_without_orders() {
    let mut x = mass_book();
    assert_eq!(x.mass_cancel(D, None), vec![]);
    // Replacing changes arrival order, not the cancel order.
    assert_eq!(x.replace(5, A, 60, 1), vec![replaced(5, 60, 1)]);
    assert_eq!(x.replace(30, A, 91, 2), vec![replaced(30, 91, 2)]);
    assert_eq!(
        x.mass_cancel(A, None),
        vec![
            canceled(5, 1, Mass),
            canceled(10, 2, Mass),
            canceled(20, 3, Mass),
            canceled(30, 2, Mass),
        ]
    );
}

// ===== Book views and match ids ================================================================

#[test]
fn book_view_lists_best_price_first_in_time_priority() {
    let mut x = Exchange::new();
    for (id, price) in [(1, 99), (2, 101), (3, 100), (4, 101), (5, 99)] {
        x.rest(buy(id, A + id % 2, price, id));
    }
    for (id, price) in [(6, 105), (7, 103), (8, 105), (9, 104)] {
        x.rest(with_stp(sell(id, C, price, id), CancelBoth));
    }
    assert_eq!(
        x.books(),
        (
            vec![
                (2, 101, 2),
                (4, 101, 4),
                (3, 100, 3),
                (1, 99, 1),
                (5, 99, 5)
            ],
            vec![(7, 103, 7), (9, 104, 9), (6, 105, 6), (8, 105, 8)]
        )
    );
    let best_ask = x.engine.resting_orders(1, Sell).unwrap().next();
    assert_eq!(
        best_ask,
        Some(RestingOrder {
            order_id: 7,
            account: C,
            instrument: 1,
            side: Sell,
            price: 103,
            qty: 7,
            stp: CancelBoth,
        })
    );
    assert_eq!(x.engine.best_prices(1), Some((Some(101), Some(103))));
    assert_eq!(x.engine.resting_count(), 9);
    assert!(x.engine.resting_orders(2, Buy).is_none());
    assert_eq!(x.engine.best_prices(2), None);
}

#[test]
fn match_ids_are_dense_from_one_across_commands_and_instruments() {
    let mut x = Exchange::new();
    assert_eq!(x.define(2, "ETH-PERP"), vec![]);
    let on_2 = |order: NewOrder| NewOrder {
        instrument: 2,
        ..order
    };
    let mut events = Vec::new();
    x.rest(sell(1, A, 100, 2));
    x.rest(sell(2, B, 101, 2));
    x.rest(on_2(sell(3, A, 100, 2)));
    events.extend(x.order(buy(4, C, 101, 3)));
    // Events that are not trades do not use match ids.
    events.extend(x.order(with_tif(buy(5, C, 101, 5), TimeInForce::Fok)));
    events.extend(x.order(with_stp(on_2(buy(6, A, 100, 1)), CancelNewest)));
    events.extend(x.order(on_2(buy(7, C, 100, 1))));
    x.rest(buy(8, C, 99, 1));
    events.extend(x.replace(8, C, 101, 1));
    events.extend(x.order(on_2(market(9, D, Buy, 5))));
    let match_ids: Vec<u64> = events
        .iter()
        .filter_map(|event| match event {
            Event::Trade { match_id, .. } => Some(*match_id),
            _ => None,
        })
        .collect();
    assert_eq!(match_ids, vec![1, 2, 3, 4, 5]);
    assert_eq!(x.engine.next_match_id(), 6);
    let instruments: Vec<InstrumentId> = events
        .iter()
        .filter_map(|event| match event {
            Event::Trade { instrument, .. } => Some(*instrument),
            _ => None,
        })
        .collect();
    assert_eq!(instruments, vec![1, 1, 2, 1, 2]);
}

// ===== Reduce (the engine-level partial cancel behind OUCH Cancel/Modify with Shares) ==========

fn reduce(exchange: &mut Exchange, order_id: OrderId, account: AccountId, qty: Qty) -> Vec<Event> {
    exchange.run(Command::Reduce {
        order_id,
        account,
        qty,
    })
}

#[test]
fn reduce_keeps_queue_position_and_reports_the_removed_quantity() {
    let mut x = Exchange::new();
    x.rest(buy(1, A, 100, 10));
    x.rest(buy(2, B, 100, 5));
    assert_eq!(reduce(&mut x, 1, A, 4), vec![canceled(1, 6, User)]);
    // Order 1 is still first at 100: a seller of 4 fills it entirely.
    assert_eq!(
        x.order(sell(3, C, 100, 4)),
        vec![accepted(3), trade(1, 3, 1, Sell, 100, 4)]
    );
    assert_eq!(x.engine.order(1), None);
    assert_eq!(x.engine.order(2).unwrap().qty, 5);
}

#[test]
fn reduce_never_grows_an_order_and_zero_cancels_it() {
    let mut x = Exchange::new();
    x.rest(buy(1, A, 100, 10));
    assert_eq!(reduce(&mut x, 1, A, 10), vec![], "equal: unchanged");
    assert_eq!(reduce(&mut x, 1, A, 50), vec![], "larger: unchanged");
    assert_eq!(x.engine.order(1).unwrap().qty, 10);
    assert_eq!(reduce(&mut x, 1, A, 0), vec![canceled(1, 10, User)]);
    assert_eq!(x.engine.order(1), None);
}

#[test]
fn reduce_checks_ownership() {
    let mut x = Exchange::new();
    x.rest(buy(1, A, 100, 10));
    assert_eq!(reduce(&mut x, 1, B, 5), vec![cancel_rejected(1)]);
    assert_eq!(reduce(&mut x, 99, A, 5), vec![cancel_rejected(99)]);
    assert_eq!(x.engine.order(1).unwrap().qty, 10);
}

#[test]
fn account_resting_query_follows_the_book() {
    let mut x = Exchange::new();
    assert!(!x.engine.account_has_resting_orders(A));
    x.rest(buy(1, A, 100, 10));
    assert!(x.engine.account_has_resting_orders(A));
    assert!(!x.engine.account_has_resting_orders(B));
    x.cancel(1, A);
    assert!(!x.engine.account_has_resting_orders(A));
}
