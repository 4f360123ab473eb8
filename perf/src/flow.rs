//! The order flow the end-to-end generator sends, and the order tokens that let a response
//! be traced back to the message that caused it.
//!
//! # The mix
//!
//! One instrument, a fixed mid price `M` (10,000 ticks; with `price_scale = 100` that is
//! $100.0000 in OUCH terms). Every message slot `i` goes to session `i mod S`. Each session
//! keeps a FIFO of the resting orders it believes live (sent and neither fully executed nor
//! canceled) and decides, with its own seeded xorshift generator:
//!
//! - with probability `ioc_pct`%: a **crossing IOC** order (Time In Force 0), buy at
//!   `M + 3` or sell at `M − 3` ticks (side 50/50), 1–20 shares. Resting orders sit at
//!   `M ± 1..25` ticks, so it executes against the best level(s) on the other side almost
//!   always, and the remainder (if any) is canceled by the engine (reason `I`);
//! - otherwise, if the session already has `resting_per_session` live resting orders: a
//!   **Cancel Order** (shares 0) of its oldest one, which keeps the book bounded at about
//!   `S × resting_per_session` orders;
//! - otherwise a **resting limit** order (Time In Force 99999, display `Y`), buy at
//!   `M − 1 − u` or sell at `M + 1 + u` ticks with `u` uniform in 0..25 (so it never
//!   crosses), 10–100 shares.
//!
//! In steady state that is about `(100 − ioc_pct)/2`% new resting orders, as many cancels,
//! and `ioc_pct`% crossing IOC orders; every Enter Order is answered by Order Accepted, every
//! IOC by Order Executed (against makers of other sessions, or its own: self-trade
//! prevention is off for the generated users) and every cancel by Order Canceled.
//!
//! # Tokens
//!
//! An Order Token is 14 characters: a 4-character run prefix (base 36, different for every
//! run so tokens are never reused on a long-lived server) and the message's index in the
//! run, 10 base-36 digits. The index gives the message's intended send time directly
//! (`t0 + i / R`), so no lookup table is needed to apply the coordinated-omission
//! correction.

use keel_gateway::protocol::ouch::{
    BuySellIndicator, CancelOrder, Capacity, CrossType, CustomerType, DisplayType, EnterOrder,
    InboundMessage, IntermarketSweepEligibility, Price, TimeInForce,
};
use keel_gateway::protocol::{Firm, OrderToken, Stock};

/// Mid price in ticks.
pub const MID_TICKS: u32 = 10_000;
/// Resting orders are placed 1..=RESTING_BAND ticks away from the mid.
pub const RESTING_BAND: u32 = 25;
/// Crossing IOC orders are priced this many ticks through the mid.
pub const IOC_THROUGH: u32 = 3;

const BASE36: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const PREFIX_LEN: usize = 4;
const INDEX_LEN: usize = 10;

/// What a message slot turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A non-crossing GTC limit order.
    Rest = 1,
    /// A crossing IOC order.
    Ioc = 2,
    /// A cancel of an earlier resting order.
    Cancel = 3,
}

impl Kind {
    /// From the stored byte.
    pub fn from_u8(byte: u8) -> Option<Kind> {
        match byte {
            1 => Some(Kind::Rest),
            2 => Some(Kind::Ioc),
            3 => Some(Kind::Cancel),
            _ => None,
        }
    }
}

/// Builds and parses the run's order tokens.
#[derive(Clone, Copy, Debug)]
pub struct Tokens {
    prefix: [u8; PREFIX_LEN],
}

impl Tokens {
    /// Tokens for a run; `seed` picks the prefix.
    pub fn new(seed: u64) -> Tokens {
        let mut prefix = [b'0'; PREFIX_LEN];
        let mut rest = seed;
        for slot in prefix.iter_mut().rev() {
            *slot = BASE36[(rest % 36) as usize];
            rest /= 36;
        }
        Tokens { prefix }
    }

    /// The token of message `index`.
    pub fn token(&self, index: u64) -> OrderToken {
        let mut text = [b'0'; PREFIX_LEN + INDEX_LEN];
        text[..PREFIX_LEN].copy_from_slice(&self.prefix);
        let mut rest = index;
        for slot in text[PREFIX_LEN..].iter_mut().rev() {
            *slot = BASE36[(rest % 36) as usize];
            rest /= 36;
        }
        // 14 printable ASCII characters, no trailing space: always a valid token.
        OrderToken::from_wire(&text, "Order Token").unwrap_or(OrderToken::BLANK)
    }

    /// The message index a token carries, if it is one of this run's.
    pub fn index(&self, token: &OrderToken) -> Option<u64> {
        let wire = token.wire();
        if wire[..PREFIX_LEN] != self.prefix {
            return None;
        }
        let mut index: u64 = 0;
        for &byte in &wire[PREFIX_LEN..] {
            let digit = match byte {
                b'0'..=b'9' => byte - b'0',
                b'A'..=b'Z' => byte - b'A' + 10,
                _ => return None,
            };
            index = index.checked_mul(36)?.checked_add(u64::from(digit))?;
        }
        Some(index)
    }
}

/// The generator's parameters.
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    /// Percentage of message slots that are crossing IOC orders.
    pub ioc_pct: u32,
    /// Live resting orders a session keeps before it starts canceling.
    pub resting_per_session: usize,
    /// OUCH price units per tick of the instrument.
    pub price_scale: u32,
}

/// A small, fast, seeded generator (xorshift64*); the stream for a seed never changes.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value; 0 is remapped).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u32) -> u32 {
        ((self.next_u64() >> 32) % u64::from(n.max(1))) as u32
    }
}

/// The OUCH message for slot `index` of the given kind.
pub fn enter_order(
    tokens: &Tokens,
    index: u64,
    stock: Stock,
    mix: &Mix,
    kind: Kind,
    rng: &mut Rng,
) -> (InboundMessage, u32) {
    let buy = rng.below(2) == 0;
    let (ticks, shares, tif) = match kind {
        Kind::Ioc => {
            let ticks = if buy {
                MID_TICKS + IOC_THROUGH
            } else {
                MID_TICKS - IOC_THROUGH
            };
            (ticks, 1 + rng.below(20), TimeInForce::IMMEDIATE_OR_CANCEL)
        }
        _ => {
            let away = 1 + rng.below(RESTING_BAND);
            let ticks = if buy {
                MID_TICKS - away
            } else {
                MID_TICKS + away
            };
            (ticks, 10 + rng.below(91), TimeInForce::SYSTEM_HOURS)
        }
    };
    let message = InboundMessage::EnterOrder(EnterOrder {
        order_token: tokens.token(index),
        side: if buy {
            BuySellIndicator::Buy
        } else {
            BuySellIndicator::Sell
        },
        shares,
        stock,
        price: Price(ticks.saturating_mul(mix.price_scale)),
        time_in_force: tif,
        firm: Firm::BLANK,
        display: DisplayType::Anonymous,
        capacity: Capacity::Agency,
        intermarket_sweep: IntermarketSweepEligibility::NotEligible,
        minimum_quantity: 0,
        cross_type: CrossType::NoCross,
        customer_type: CustomerType::PortDefault,
    });
    (message, shares)
}

/// A Cancel Order for the order with message index `target`.
pub fn cancel_order(tokens: &Tokens, target: u64) -> InboundMessage {
    InboundMessage::CancelOrder(CancelOrder {
        order_token: tokens.token(target),
        shares: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let tokens = Tokens::new(123_456);
        for index in [0, 1, 35, 36, 1_000_000, 3_656_158_440_062_975] {
            let token = tokens.token(index);
            assert_eq!(token.as_str().len(), 14);
            assert_eq!(tokens.index(&token), Some(index));
        }
        assert_eq!(Tokens::new(1).index(&tokens.token(5)), None);
    }

    #[test]
    fn orders_decode_and_rest_or_cross_as_documented() {
        let tokens = Tokens::new(7);
        let stock = Stock::new("PERF").unwrap();
        let mix = Mix {
            ioc_pct: 10,
            resting_per_session: 64,
            price_scale: 100,
        };
        let mut rng = Rng::new(1);
        for index in 0..1000 {
            for kind in [Kind::Rest, Kind::Ioc] {
                let (message, shares) = enter_order(&tokens, index, stock, &mix, kind, &mut rng);
                let mut wire = Vec::new();
                message.encode(&mut wire);
                let InboundMessage::EnterOrder(order) = InboundMessage::decode(&wire).unwrap()
                else {
                    panic!("not an Enter Order");
                };
                assert_eq!(order.shares, shares);
                let ticks = order.price.0 / 100;
                let buy = order.side == BuySellIndicator::Buy;
                match kind {
                    Kind::Rest => {
                        assert!((10..=100).contains(&shares));
                        assert!(if buy {
                            ticks < MID_TICKS
                        } else {
                            ticks > MID_TICKS
                        });
                        assert!(ticks.abs_diff(MID_TICKS) <= RESTING_BAND);
                    }
                    _ => {
                        assert!((1..=20).contains(&shares));
                        assert_eq!(order.time_in_force, TimeInForce::IMMEDIATE_OR_CANCEL);
                        assert!(if buy {
                            ticks > MID_TICKS
                        } else {
                            ticks < MID_TICKS
                        });
                    }
                }
            }
        }
        let mut wire = Vec::new();
        cancel_order(&tokens, 42).encode(&mut wire);
        assert!(matches!(
            InboundMessage::decode(&wire).unwrap(),
            InboundMessage::CancelOrder(c) if c.shares == 0 && tokens.index(&c.order_token) == Some(42)
        ));
    }
}
