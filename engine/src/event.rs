//! Events: everything the engine says about what a command did, in the order it happened.

use crate::types::{
    AmendRejectReason, CancelReason, InstrumentId, InstrumentRejectReason, OrderId, Price, Qty,
    RejectReason, Side,
};

/// One thing that happened while processing a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new order passed validation. Emitted before any of its trades.
    Accepted {
        /// The order.
        order_id: OrderId,
    },
    /// A new order was refused and had no effect (its id is nevertheless used up).
    Rejected {
        /// The order.
        order_id: OrderId,
        /// Why.
        reason: RejectReason,
    },
    /// Two orders traded at the maker's price.
    Trade {
        /// Instrument traded.
        instrument: InstrumentId,
        /// Execution price: the resting (maker) order's price.
        price: Price,
        /// Executed quantity, `>= 1`.
        qty: Qty,
        /// The incoming order.
        taker_order_id: OrderId,
        /// The resting order.
        maker_order_id: OrderId,
        /// The incoming order's side.
        taker_side: Side,
        /// Engine-wide trade number, dense from 1: the same for both sides of one trade.
        match_id: u64,
    },
    /// Open quantity left the book (or an incoming order's remainder was dropped) without trading.
    Canceled {
        /// The order.
        order_id: OrderId,
        /// Open quantity removed.
        qty: Qty,
        /// Why.
        reason: CancelReason,
    },
    /// A replace took effect. Emitted before any trades the replace causes.
    Replaced {
        /// The order.
        order_id: OrderId,
        /// New limit price.
        price: Price,
        /// New open quantity.
        qty: Qty,
    },
    /// A cancel was refused.
    CancelRejected {
        /// The order named by the cancel.
        order_id: OrderId,
        /// Why.
        reason: AmendRejectReason,
    },
    /// A replace was refused and changed nothing.
    ReplaceRejected {
        /// The order named by the replace.
        order_id: OrderId,
        /// Why.
        reason: AmendRejectReason,
    },
    /// An instrument definition was refused and changed nothing.
    InstrumentRejected {
        /// The instrument named by the definition.
        instrument: InstrumentId,
        /// Why.
        reason: InstrumentRejectReason,
    },
}

/// Where the engine writes events. Implemented for `Vec<Event>`; callers that route events
/// (the gateway, market data) implement it to avoid an intermediate copy.
pub trait EventSink {
    /// Receives the next event.
    fn emit(&mut self, event: Event);
}

impl EventSink for Vec<Event> {
    #[inline]
    fn emit(&mut self, event: Event) {
        self.push(event);
    }
}
