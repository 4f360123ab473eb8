//! Commands: everything that can change engine state. The journal records exactly these.

use crate::types::{
    AccountId, InstrumentId, OrderId, Price, Qty, SelfTradePrevention, Side, Symbol, TimeInForce,
};

/// A new order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewOrder {
    /// Unique for the engine's whole life.
    pub order_id: OrderId,
    /// Owner; cancels, replaces and self-trade prevention go by account.
    pub account: AccountId,
    /// Must have been defined by [`Command::DefineInstrument`].
    pub instrument: InstrumentId,
    /// Buy or sell.
    pub side: Side,
    /// Limit price in ticks, or `None` for a market order (which never rests).
    pub price: Option<Price>,
    /// Quantity in lots, `>= 1`.
    pub qty: Qty,
    /// Time in force; ignored for resting purposes by market orders, which never rest.
    pub tif: TimeInForce,
    /// Reject instead of crossing on arrival. Valid only on a `gtc` limit order.
    pub post_only: bool,
    /// What happens when this order meets a resting order of its own account.
    pub stp: SelfTradePrevention,
}

/// One input to the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Define a tradable instrument. Redefining an existing id is refused.
    DefineInstrument {
        /// The new instrument's id.
        instrument: InstrumentId,
        /// Its symbol.
        symbol: Symbol,
    },
    /// Enter a new order.
    New(NewOrder),
    /// Cancel a resting order of `account`.
    Cancel {
        /// The order to cancel.
        order_id: OrderId,
        /// Must own the order.
        account: AccountId,
    },
    /// Change a resting order's price and open quantity.
    Replace {
        /// The order to replace.
        order_id: OrderId,
        /// Must own the order.
        account: AccountId,
        /// New limit price, `>= 1`.
        price: Price,
        /// New open quantity, `>= 1`.
        qty: Qty,
    },
    /// Reduce a resting order of `account` to at most `qty` open, keeping its queue
    /// position: the removed quantity is reported as a `canceled` event (reason `user`) and
    /// the order rests on unless `qty` is 0. Asking for `qty` at or above the open quantity
    /// changes nothing. Unlike a replace, a reduce can never grow an order, even if fills
    /// arrive between the client's request and its processing.
    Reduce {
        /// The order to reduce.
        order_id: OrderId,
        /// Must own the order.
        account: AccountId,
        /// The most open quantity the order may keep.
        qty: Qty,
    },
    /// Cancel every resting order of `account`, optionally only on one instrument.
    MassCancel {
        /// Whose orders.
        account: AccountId,
        /// Restrict to this instrument, or all instruments when `None`.
        instrument: Option<InstrumentId>,
    },
}
