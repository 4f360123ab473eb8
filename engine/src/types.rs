//! The engine's vocabulary: identifiers, sides, order options and reason codes.
//!
//! Prices are integer ticks (`i64`), quantities integer lots (`u64`); there is no
//! floating point anywhere on the state path, so every replica computes the same thing.

use std::fmt;

use crate::Error;

/// External order identifier. Unique for the engine's whole life: an id may be used once ever.
pub type OrderId = u64;
/// Account identifier; orders of one account are subject to self-trade prevention.
pub type AccountId = u64;
/// Instrument identifier, chosen by the operator when the instrument is defined.
pub type InstrumentId = u32;
/// A price in integer ticks. Limit prices are always `>= 1`.
pub type Price = i64;
/// A quantity in integer lots.
pub type Qty = u64;

/// Which side of the book an order is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// Bid: wants to buy; best bid is the highest price.
    Buy,
    /// Ask: wants to sell; best ask is the lowest price.
    Sell,
}

impl Side {
    /// The side an incoming order of this side matches against.
    #[inline]
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }

    /// The wire name used by `keel replay` (`buy` / `sell`).
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }
}

/// Time in force.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TimeInForce {
    /// Good till canceled: any remainder rests on the book.
    #[default]
    Gtc,
    /// Immediate or cancel: the remainder is canceled (reason `ioc`).
    Ioc,
    /// Fill or kill: fills completely at once or has no effect and is canceled (reason `fok`).
    Fok,
}

impl TimeInForce {
    /// The wire name used by `keel replay`.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeInForce::Gtc => "gtc",
            TimeInForce::Ioc => "ioc",
            TimeInForce::Fok => "fok",
        }
    }
}

/// Self-trade prevention mode of an incoming (taker) order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SelfTradePrevention {
    /// Orders of the same account trade with each other.
    #[default]
    None,
    /// Cancel the taker's remainder; the resting order stays.
    CancelNewest,
    /// Cancel the resting order and keep matching.
    CancelOldest,
    /// Cancel the resting order, then the taker's remainder.
    CancelBoth,
}

impl SelfTradePrevention {
    /// The wire name used by `keel replay`.
    pub fn as_str(self) -> &'static str {
        match self {
            SelfTradePrevention::None => "none",
            SelfTradePrevention::CancelNewest => "cancel_newest",
            SelfTradePrevention::CancelOldest => "cancel_oldest",
            SelfTradePrevention::CancelBoth => "cancel_both",
        }
    }
}

/// Why a new order was rejected. A rejected order has no effect, but its id counts as used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The order id was used before (by any order, rejected ones included).
    DuplicateOrderId,
    /// The instrument was never defined.
    UnknownInstrument,
    /// Quantity 0, limit price `<= 0`, or `post_only` on a market or non-`gtc` order.
    Invalid,
    /// A `post_only` order would have crossed the opposite best price on arrival.
    PostOnly,
}

impl RejectReason {
    /// The wire name used by `keel replay`.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::DuplicateOrderId => "duplicate_order_id",
            RejectReason::UnknownInstrument => "unknown_instrument",
            RejectReason::Invalid => "invalid",
            RejectReason::PostOnly => "post_only",
        }
    }
}

/// Why open quantity left the book without trading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CancelReason {
    /// The owner canceled it.
    User,
    /// Remainder of an `ioc` or market order.
    Ioc,
    /// A `fok` order that could not fill completely.
    Fok,
    /// Self-trade prevention.
    Stp,
    /// A mass cancel by account.
    Mass,
}

impl CancelReason {
    /// The wire name used by `keel replay`.
    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::User => "user",
            CancelReason::Ioc => "ioc",
            CancelReason::Fok => "fok",
            CancelReason::Stp => "stp",
            CancelReason::Mass => "mass",
        }
    }
}

/// Why a cancel or replace was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AmendRejectReason {
    /// No live order with that id belongs to that account (unknown, filled, canceled, or
    /// another account's: the engine does not reveal which).
    UnknownOrder,
    /// A replace with quantity 0 or price `<= 0`.
    Invalid,
}

impl AmendRejectReason {
    /// The wire name used by `keel replay`.
    pub fn as_str(self) -> &'static str {
        match self {
            AmendRejectReason::UnknownOrder => "unknown_order",
            AmendRejectReason::Invalid => "invalid",
        }
    }
}

/// Why an instrument definition was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InstrumentRejectReason {
    /// An instrument with this id already exists; the existing one is unchanged.
    DuplicateInstrument,
}

impl InstrumentRejectReason {
    /// The wire name used by `keel replay`.
    pub fn as_str(self) -> &'static str {
        match self {
            InstrumentRejectReason::DuplicateInstrument => "duplicate_instrument",
        }
    }
}

/// Longest symbol the engine stores, in bytes.
pub const SYMBOL_BYTES_MAX: usize = 32;

/// An instrument's symbol: 1 to [`SYMBOL_BYTES_MAX`] bytes of UTF-8, stored inline so
/// that commands stay fixed-size and `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Symbol {
    len: u8,
    bytes: [u8; SYMBOL_BYTES_MAX],
}

impl Symbol {
    /// Makes a symbol from a string of 1 to [`SYMBOL_BYTES_MAX`] bytes.
    pub fn new(text: &str) -> Result<Symbol, Error> {
        let len_bytes = text.len();
        if len_bytes == 0 {
            return Err(Error::EmptySymbol);
        }
        if len_bytes > SYMBOL_BYTES_MAX {
            return Err(Error::SymbolTooLong { len_bytes });
        }
        let mut bytes = [0u8; SYMBOL_BYTES_MAX];
        bytes[..len_bytes].copy_from_slice(text.as_bytes());
        // Fits: checked against SYMBOL_BYTES_MAX (32) above.
        let len = len_bytes as u8;
        Ok(Symbol { len, bytes })
    }

    /// The symbol text.
    pub fn as_str(&self) -> &str {
        // Built only from a `&str` in `Symbol::new`, so the stored prefix is valid UTF-8.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Symbol({:?})", self.as_str())
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbol_round_trips_and_enforces_limits() {
        assert_eq!(Symbol::new("BTC-PERP").unwrap().as_str(), "BTC-PERP");
        assert_eq!(Symbol::new(""), Err(Error::EmptySymbol));
        let long = "X".repeat(SYMBOL_BYTES_MAX + 1);
        assert_eq!(
            Symbol::new(&long),
            Err(Error::SymbolTooLong {
                len_bytes: SYMBOL_BYTES_MAX + 1
            })
        );
        assert!(Symbol::new(&"X".repeat(SYMBOL_BYTES_MAX)).is_ok());
    }

    #[test]
    fn opposite_side() {
        assert_eq!(Side::Buy.opposite(), Side::Sell);
        assert_eq!(Side::Sell.opposite(), Side::Buy);
    }
}
