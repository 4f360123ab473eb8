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

use keel_protocol::ouch::{
    BuySellIndicator, CancelOrder, Capacity, CrossType, CustomerType, DisplayType, EnterOrder,
    InboundMessage, IntermarketSweepEligibility, Price, TimeInForce,
};
use keel_protocol::{Firm, OrderToken, Stock};

/// Mid price in ticks.
pub const MID_TICKS: u32 = 10_000;
/// Resting orders are placed 1..=RESTING_BAND ticks away from the mid.
pub const RESTING_BAND: u32 = 25;
/// Crossing IOC orders are priced this many ticks through the mid.
pub const IOC_THROUGH: u32 = 3;

const BASE36: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const PREFIX_LEN: usize = 4;
const INDEX_LEN: usize = 10;
/// Order Token length.
pub const TOKEN_LEN: usize = PREFIX_LEN + INDEX_LEN;

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

/// Two base-36 digits per entry: entry `n` spells `n` (0..36²), most significant first.
const BASE36_PAIRS: [[u8; 2]; 36 * 36] = {
    let mut pairs = [[0u8; 2]; 36 * 36];
    let mut n = 0;
    while n < 36 * 36 {
        pairs[n] = [BASE36[n / 36], BASE36[n % 36]];
        n += 1;
    }
    pairs
};

/// The value of a base-36 digit byte (`0`–`9`, `A`–`Z`), or `NOT_A_DIGIT`.
const NOT_A_DIGIT: u8 = 0xff;
const BASE36_VALUES: [u8; 256] = {
    let mut values = [NOT_A_DIGIT; 256];
    let mut digit = 0;
    while digit < 36 {
        values[BASE36[digit] as usize] = digit as u8;
        digit += 1;
    }
    values
};

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
        let mut text = [b'0'; TOKEN_LEN];
        self.write(index, &mut text);
        // 14 printable ASCII characters, no trailing space: always a valid token.
        OrderToken::from_wire(&text, "Order Token").unwrap_or(OrderToken::BLANK)
    }

    /// Writes the wire form of the token of message `index` (the bytes of
    /// [`Tokens::token`]), without building an [`OrderToken`]: the prefix, then the index
    /// in 10 base-36 digits (indices beyond 36¹⁰ wrap, as in [`Tokens::token`]).
    /// `out` must hold at least [`TOKEN_LEN`] bytes; the token goes to its start.
    pub fn write(&self, index: u64, out: &mut [u8]) {
        out[..PREFIX_LEN].copy_from_slice(&self.prefix);
        let mut rest = index;
        for pair in out[PREFIX_LEN..TOKEN_LEN].chunks_exact_mut(2).rev() {
            pair.copy_from_slice(&BASE36_PAIRS[(rest % (36 * 36)) as usize]);
            rest /= 36 * 36;
        }
    }

    /// The message index a token carries, if it is one of this run's.
    pub fn index(&self, token: &OrderToken) -> Option<u64> {
        self.index_of_wire(token.wire())
    }

    /// [`Tokens::index`] straight from the token's 14 wire bytes (no validation beyond
    /// what the index needs: this run's prefix and 10 base-36 digits, which together are
    /// always a valid token).
    pub fn index_of_wire(&self, wire: &[u8; TOKEN_LEN]) -> Option<u64> {
        if wire[..PREFIX_LEN] != self.prefix {
            return None;
        }
        let mut index: u64 = 0;
        // Digits are < 64, `NOT_A_DIGIT` is not: one test for all ten, after the loop.
        let mut any_bad = 0u8;
        for &byte in &wire[PREFIX_LEN..] {
            let digit = BASE36_VALUES[usize::from(byte)];
            any_bad |= digit;
            // At most 36^10 - 1 < 2^52 (wrapping only for the non-digits rejected below).
            index = index.wrapping_mul(36).wrapping_add(u64::from(digit));
        }
        (any_bad < 64).then_some(index)
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

/// The load generator's PRNG: the test kit's (xoshiro256**, seeded through splitmix64);
/// the stream for a seed never changes.
pub use keel_testkit::rng::Rng;

/// Uniform in `0..n` as a `u32` (0 when `n` is 0).
fn below(rng: &mut Rng, n: u32) -> u32 {
    // Below n, so it fits.
    rng.below(u64::from(n)) as u32
}

/// The terms of an Enter Order of the given kind: `(buy, price in ticks, shares, time in
/// force)`. The one place that draws from the session's generator for an order, so the
/// reference encoder (`enter_order`, in tests) and the generator's ([`Encoder::enter_order`])
/// consume the same numbers.
fn order_terms(kind: Kind, rng: &mut Rng) -> (bool, u32, u32, TimeInForce) {
    let buy = rng.below(2) == 0;
    let (ticks, shares, tif) = match kind {
        Kind::Ioc => {
            let ticks = if buy {
                MID_TICKS + IOC_THROUGH
            } else {
                MID_TICKS - IOC_THROUGH
            };
            (ticks, 1 + below(rng, 20), TimeInForce::IMMEDIATE_OR_CANCEL)
        }
        _ => {
            let away = 1 + below(rng, RESTING_BAND);
            let ticks = if buy {
                MID_TICKS - away
            } else {
                MID_TICKS + away
            };
            (ticks, 10 + below(rng, 91), TimeInForce::SYSTEM_HOURS)
        }
    };
    (buy, ticks, shares, tif)
}

/// The OUCH message for slot `index` of the given kind (the reference the generator's
/// [`Encoder`] is tested against).
#[cfg(test)]
pub fn enter_order(
    tokens: &Tokens,
    index: u64,
    stock: Stock,
    mix: &Mix,
    kind: Kind,
    rng: &mut Rng,
) -> (InboundMessage, u32) {
    let (buy, ticks, shares, tif) = order_terms(kind, rng);
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

/// A Cancel Order for the order with message index `target` (the reference the
/// generator's [`Encoder`] is tested against).
#[cfg(test)]
pub fn cancel_order(tokens: &Tokens, target: u64) -> InboundMessage {
    InboundMessage::CancelOrder(CancelOrder {
        order_token: tokens.token(target),
        shares: 0,
    })
}

/// Enter Order framed as a SoupBinTCP Unsequenced Data packet: 3 header bytes + 49.
const ENTER_PACKET_LEN: usize = 3 + EnterOrder::LEN;
/// Cancel Order framed likewise: 3 + 19.
const CANCEL_PACKET_LEN: usize = 3 + CancelOrder::LEN;
/// Field offsets in those packets (header, then the type byte, then the fields in order).
const TOKEN_AT: usize = 4;
const ENTER_SIDE_AT: usize = TOKEN_AT + TOKEN_LEN;
const ENTER_SHARES_AT: usize = ENTER_SIDE_AT + 1;
const ENTER_PRICE_AT: usize = ENTER_SHARES_AT + 4 + 8;
const ENTER_TIF_AT: usize = ENTER_PRICE_AT + 4;

/// Writes the generated messages, framed, straight into a session's output buffer: a
/// packet template encoded once by the gateway's own encoder, with the token, side,
/// shares, price and time in force patched in per message. Byte for byte what
/// `enter_order(..).encode_unsequenced(..)` and `cancel_order(..).encode_unsequenced(..)`
/// write (tested), without building a message or an [`OrderToken`] per message.
#[derive(Clone, Debug)]
pub struct Encoder {
    tokens: Tokens,
    price_scale: u32,
    enter: [u8; ENTER_PACKET_LEN],
    cancel: [u8; CANCEL_PACKET_LEN],
}

impl Encoder {
    /// An encoder for the run's tokens, instrument and mix.
    pub fn new(tokens: Tokens, stock: Stock, mix: &Mix) -> anyhow::Result<Encoder> {
        let mut enter = Vec::with_capacity(ENTER_PACKET_LEN);
        InboundMessage::EnterOrder(EnterOrder {
            order_token: tokens.token(0),
            side: BuySellIndicator::Buy,
            shares: 0,
            stock,
            price: Price(0),
            time_in_force: TimeInForce(0),
            firm: Firm::BLANK,
            display: DisplayType::Anonymous,
            capacity: Capacity::Agency,
            intermarket_sweep: IntermarketSweepEligibility::NotEligible,
            minimum_quantity: 0,
            cross_type: CrossType::NoCross,
            customer_type: CustomerType::PortDefault,
        })
        .encode_unsequenced(&mut enter);
        let mut cancel = Vec::with_capacity(CANCEL_PACKET_LEN);
        InboundMessage::CancelOrder(CancelOrder {
            order_token: tokens.token(0),
            shares: 0,
        })
        .encode_unsequenced(&mut cancel);
        let (Ok(enter), Ok(cancel)) = (enter.try_into(), cancel.try_into()) else {
            anyhow::bail!("unexpected Enter Order or Cancel Order packet length");
        };
        Ok(Encoder {
            tokens,
            price_scale: mix.price_scale,
            enter,
            cancel,
        })
    }

    /// Appends the Enter Order for slot `index` of the given kind (drawing its terms from
    /// `rng` exactly as the reference `enter_order` does) and returns its shares.
    pub fn enter_order(&self, out: &mut Vec<u8>, index: u64, kind: Kind, rng: &mut Rng) -> u32 {
        let (buy, ticks, shares, tif) = order_terms(kind, rng);
        let mut packet = self.enter;
        self.tokens.write(index, &mut packet[TOKEN_AT..]);
        packet[ENTER_SIDE_AT] = if buy {
            BuySellIndicator::Buy.code()
        } else {
            BuySellIndicator::Sell.code()
        };
        packet[ENTER_SHARES_AT..ENTER_SHARES_AT + 4].copy_from_slice(&shares.to_be_bytes());
        packet[ENTER_PRICE_AT..ENTER_PRICE_AT + 4]
            .copy_from_slice(&ticks.saturating_mul(self.price_scale).to_be_bytes());
        packet[ENTER_TIF_AT..ENTER_TIF_AT + 4].copy_from_slice(&tif.0.to_be_bytes());
        out.extend_from_slice(&packet);
        shares
    }

    /// Appends the Cancel Order (shares 0) for the order with message index `target`.
    pub fn cancel_order(&self, out: &mut Vec<u8>, target: u64) {
        let mut packet = self.cancel;
        self.tokens.write(target, &mut packet[TOKEN_AT..]);
        out.extend_from_slice(&packet);
    }
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

    /// The token text as first written: one base-36 digit per division.
    fn token_digit_by_digit(prefix: &[u8; PREFIX_LEN], index: u64) -> [u8; TOKEN_LEN] {
        let mut text = [b'0'; TOKEN_LEN];
        text[..PREFIX_LEN].copy_from_slice(prefix);
        let mut rest = index;
        for slot in text[PREFIX_LEN..].iter_mut().rev() {
            *slot = BASE36[(rest % 36) as usize];
            rest /= 36;
        }
        text
    }

    #[test]
    fn token_bytes_and_indices_match_the_digit_by_digit_forms() {
        let tokens = Tokens::new(987_654);
        let mut rng = Rng::new(3);
        let mut indices = vec![
            0,
            1,
            35,
            36,
            1295,
            1296,
            36u64.pow(10) - 1,
            36u64.pow(10),
            u64::MAX,
        ];
        indices.extend((0..10_000).map(|_| rng.next_u64() >> (rng.below(64))));
        for index in indices {
            let expected = token_digit_by_digit(&tokens.prefix, index);
            let mut wire = [0u8; TOKEN_LEN];
            tokens.write(index, &mut wire);
            assert_eq!(wire, expected, "{index}");
            assert_eq!(tokens.token(index).wire(), &expected);
            assert_eq!(tokens.index_of_wire(&wire), Some(index % 36u64.pow(10)));
        }
        let mut wire = [0u8; TOKEN_LEN];
        tokens.write(12_345, &mut wire);
        for bad in [b'a', b' ', b'-', 0, 0xff] {
            let mut broken = wire;
            broken[TOKEN_LEN - 3] = bad;
            assert_eq!(tokens.index_of_wire(&broken), None);
        }
        let mut other = wire;
        other[0] = if other[0] == b'Z' { b'Y' } else { b'Z' };
        assert_eq!(tokens.index_of_wire(&other), None);
    }

    /// The generator's encoder writes exactly what the gateway's encoder writes for the
    /// reference messages, and draws the same numbers from the session's generator.
    #[test]
    fn encoder_writes_the_reference_bytes() {
        let tokens = Tokens::new(4242);
        let stock = Stock::new("PERF").unwrap();
        for price_scale in [1, 100, 10_000] {
            let mix = Mix {
                ioc_pct: 10,
                resting_per_session: 64,
                price_scale,
            };
            let encoder = Encoder::new(tokens, stock, &mix).unwrap();
            let mut reference_rng = Rng::new(price_scale.into());
            let mut rng = reference_rng.clone();
            let mut expected = Vec::new();
            let mut out = Vec::new();
            for index in (0..5_000u64).chain([36u64.pow(10) - 1, 36u64.pow(10) + 7]) {
                let kind = match index % 3 {
                    0 => Kind::Rest,
                    1 => Kind::Ioc,
                    _ => Kind::Cancel,
                };
                if kind == Kind::Cancel {
                    let target = index / 2;
                    cancel_order(&tokens, target).encode_unsequenced(&mut expected);
                    encoder.cancel_order(&mut out, target);
                } else {
                    let (message, shares) =
                        enter_order(&tokens, index, stock, &mix, kind, &mut reference_rng);
                    message.encode_unsequenced(&mut expected);
                    assert_eq!(encoder.enter_order(&mut out, index, kind, &mut rng), shares);
                }
                assert_eq!(out, expected, "index {index}");
            }
            assert_eq!(rng.next_u64(), reference_rng.next_u64());
        }
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
