//! The canonical binary encoding of commands: what the journal stores and replicas replay.
//!
//! Little-endian, fixed layout per command kind, no padding. The first byte is the kind:
//!
//! | kind | command | body after the kind byte |
//! |---|---|---|
//! | 1 | define instrument | `instrument u32`, `symbol_len u8` (1..=32), `symbol` bytes (UTF-8) |
//! | 2 | new order | `order_id u64`, `account u64`, `instrument u32`, `side u8` (0 buy, 1 sell), `tif u8` (0 gtc, 1 ioc, 2 fok), `stp u8` (0 none, 1 cancel_newest, 2 cancel_oldest, 3 cancel_both), `flags u8` (bit 0 has price, bit 1 post_only), `price i64` (0 when no price), `qty u64` |
//! | 3 | cancel | `order_id u64`, `account u64` |
//! | 4 | replace | `order_id u64`, `account u64`, `price i64`, `qty u64` |
//! | 5 | mass cancel | `account u64`, `has_instrument u8` (0 or 1), `instrument u32` (0 when absent) |
//! | 6 | reduce | `order_id u64`, `account u64`, `qty u64` |
//!
//! Decoding is strict (parse, don't validate): unknown kinds, enum values or flag bits,
//! a wrong length, trailing bytes or a non-UTF-8 symbol are errors, so exactly one byte
//! string encodes each command and a decoded command re-encodes to the same bytes.

use crate::command::{Command, NewOrder};
use crate::types::{SelfTradePrevention, Side, Symbol, TimeInForce, SYMBOL_BYTES_MAX};
use crate::Error;

/// The longest encoding of any command, in bytes.
pub const COMMAND_BYTES_MAX: usize = 1 + 8 + 8 + 4 + 4 + 8 + 8;

const KIND_INSTRUMENT: u8 = 1;
const KIND_NEW: u8 = 2;
const KIND_CANCEL: u8 = 3;
const KIND_REPLACE: u8 = 4;
const KIND_MASS_CANCEL: u8 = 5;
const KIND_REDUCE: u8 = 6;

const FLAG_HAS_PRICE: u8 = 1;
const FLAG_POST_ONLY: u8 = 2;

/// Sequential little-endian writer over a caller's buffer.
struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Writer<'_> {
    #[inline]
    fn bytes(&mut self, bytes: &[u8]) {
        self.buf[self.pos..self.pos + bytes.len()].copy_from_slice(bytes);
        self.pos += bytes.len();
    }
    #[inline]
    fn u8(&mut self, value: u8) {
        self.bytes(&[value]);
    }
    #[inline]
    fn u32(&mut self, value: u32) {
        self.bytes(&value.to_le_bytes());
    }
    #[inline]
    fn u64(&mut self, value: u64) {
        self.bytes(&value.to_le_bytes());
    }
    #[inline]
    fn i64(&mut self, value: i64) {
        self.bytes(&value.to_le_bytes());
    }
}

/// Sequential little-endian reader that fails instead of reading past the end.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], Error> {
        if self.bytes.len() < len {
            return Err(Error::Decode("command truncated"));
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.array::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, Error> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    fn finish(&self) -> Result<(), Error> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(Error::Decode("trailing bytes after command"))
        }
    }
}

impl Command {
    /// Length of this command's encoding in bytes (at most [`COMMAND_BYTES_MAX`]).
    pub fn encoded_len(&self) -> usize {
        1 + match self {
            Command::DefineInstrument { symbol, .. } => 4 + 1 + symbol.as_str().len(),
            Command::New(_) => 8 + 8 + 4 + 4 + 8 + 8,
            Command::Cancel { .. } => 8 + 8,
            Command::Replace { .. } => 8 + 8 + 8 + 8,
            Command::MassCancel { .. } => 8 + 1 + 4,
            Command::Reduce { .. } => 8 + 8 + 8,
        }
    }

    /// Writes the encoding into the front of `buf` and returns its length.
    ///
    /// `buf` must hold at least [`Command::encoded_len`] bytes; the caller sizes it (the
    /// journal reserves exactly that), so a short buffer is a programming error and panics.
    pub fn encode_into(&self, buf: &mut [u8]) -> usize {
        let mut w = Writer { buf, pos: 0 };
        match *self {
            Command::DefineInstrument { instrument, symbol } => {
                let text = symbol.as_str().as_bytes();
                w.u8(KIND_INSTRUMENT);
                w.u32(instrument);
                // Symbols are at most SYMBOL_BYTES_MAX (32) long, so this fits a u8.
                w.u8(text.len() as u8);
                w.bytes(text);
            }
            Command::New(order) => {
                w.u8(KIND_NEW);
                w.u64(order.order_id);
                w.u64(order.account);
                w.u32(order.instrument);
                w.u8(side_code(order.side));
                w.u8(tif_code(order.tif));
                w.u8(stp_code(order.stp));
                let mut flags = 0;
                if order.price.is_some() {
                    flags |= FLAG_HAS_PRICE;
                }
                if order.post_only {
                    flags |= FLAG_POST_ONLY;
                }
                w.u8(flags);
                w.i64(order.price.unwrap_or(0));
                w.u64(order.qty);
            }
            Command::Cancel { order_id, account } => {
                w.u8(KIND_CANCEL);
                w.u64(order_id);
                w.u64(account);
            }
            Command::Replace {
                order_id,
                account,
                price,
                qty,
            } => {
                w.u8(KIND_REPLACE);
                w.u64(order_id);
                w.u64(account);
                w.i64(price);
                w.u64(qty);
            }
            Command::Reduce {
                order_id,
                account,
                qty,
            } => {
                w.u8(KIND_REDUCE);
                w.u64(order_id);
                w.u64(account);
                w.u64(qty);
            }
            Command::MassCancel {
                account,
                instrument,
            } => {
                w.u8(KIND_MASS_CANCEL);
                w.u64(account);
                w.u8(u8::from(instrument.is_some()));
                w.u32(instrument.unwrap_or(0));
            }
        }
        assert_eq!(w.pos, self.encoded_len(), "encoded length mismatch");
        w.pos
    }

    /// The encoding as a new vector (convenience for tests and tools).
    pub fn encode_to_vec(&self) -> Vec<u8> {
        let mut buf = vec![0; self.encoded_len()];
        self.encode_into(&mut buf);
        buf
    }

    /// Decodes exactly one command occupying all of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Command, Error> {
        let mut r = Reader { bytes };
        let command = match r.u8()? {
            KIND_INSTRUMENT => decode_instrument(&mut r)?,
            KIND_NEW => decode_new(&mut r)?,
            KIND_CANCEL => Command::Cancel {
                order_id: r.u64()?,
                account: r.u64()?,
            },
            KIND_REPLACE => Command::Replace {
                order_id: r.u64()?,
                account: r.u64()?,
                price: r.i64()?,
                qty: r.u64()?,
            },
            KIND_MASS_CANCEL => decode_mass_cancel(&mut r)?,
            KIND_REDUCE => Command::Reduce {
                order_id: r.u64()?,
                account: r.u64()?,
                qty: r.u64()?,
            },
            _ => return Err(Error::Decode("unknown command kind")),
        };
        r.finish()?;
        Ok(command)
    }
}

fn decode_instrument(r: &mut Reader<'_>) -> Result<Command, Error> {
    let instrument = r.u32()?;
    let len = usize::from(r.u8()?);
    if len == 0 || len > SYMBOL_BYTES_MAX {
        return Err(Error::Decode("symbol length out of range"));
    }
    let text =
        std::str::from_utf8(r.take(len)?).map_err(|_| Error::Decode("symbol is not UTF-8"))?;
    Ok(Command::DefineInstrument {
        instrument,
        symbol: Symbol::new(text)?,
    })
}

fn decode_new(r: &mut Reader<'_>) -> Result<Command, Error> {
    let order_id = r.u64()?;
    let account = r.u64()?;
    let instrument = r.u32()?;
    let side = side_from_code(r.u8()?).ok_or(Error::Decode("unknown side"))?;
    let tif = match r.u8()? {
        0 => TimeInForce::Gtc,
        1 => TimeInForce::Ioc,
        2 => TimeInForce::Fok,
        _ => return Err(Error::Decode("unknown time in force")),
    };
    let stp = stp_from_code(r.u8()?).ok_or(Error::Decode("unknown self-trade prevention"))?;
    let flags = r.u8()?;
    if flags & !(FLAG_HAS_PRICE | FLAG_POST_ONLY) != 0 {
        return Err(Error::Decode("unknown order flags"));
    }
    let raw_price = r.i64()?;
    let price = if flags & FLAG_HAS_PRICE != 0 {
        Some(raw_price)
    } else if raw_price == 0 {
        None
    } else {
        return Err(Error::Decode("market order with a price"));
    };
    Ok(Command::New(NewOrder {
        order_id,
        account,
        instrument,
        side,
        price,
        qty: r.u64()?,
        tif,
        post_only: flags & FLAG_POST_ONLY != 0,
        stp,
    }))
}

fn decode_mass_cancel(r: &mut Reader<'_>) -> Result<Command, Error> {
    let account = r.u64()?;
    let has_instrument = r.u8()?;
    let raw = r.u32()?;
    let instrument = match (has_instrument, raw) {
        (0, 0) => None,
        (1, id) => Some(id),
        _ => return Err(Error::Decode("bad mass cancel instrument")),
    };
    Ok(Command::MassCancel {
        account,
        instrument,
    })
}

pub(crate) fn side_code(side: Side) -> u8 {
    match side {
        Side::Buy => 0,
        Side::Sell => 1,
    }
}

fn tif_code(tif: TimeInForce) -> u8 {
    match tif {
        TimeInForce::Gtc => 0,
        TimeInForce::Ioc => 1,
        TimeInForce::Fok => 2,
    }
}

pub(crate) fn stp_code(stp: SelfTradePrevention) -> u8 {
    match stp {
        SelfTradePrevention::None => 0,
        SelfTradePrevention::CancelNewest => 1,
        SelfTradePrevention::CancelOldest => 2,
        SelfTradePrevention::CancelBoth => 3,
    }
}

pub(crate) fn side_from_code(code: u8) -> Option<Side> {
    match code {
        0 => Some(Side::Buy),
        1 => Some(Side::Sell),
        _ => None,
    }
}

pub(crate) fn stp_from_code(code: u8) -> Option<SelfTradePrevention> {
    match code {
        0 => Some(SelfTradePrevention::None),
        1 => Some(SelfTradePrevention::CancelNewest),
        2 => Some(SelfTradePrevention::CancelOldest),
        3 => Some(SelfTradePrevention::CancelBoth),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_command() -> impl Strategy<Value = Command> {
        let side = prop_oneof![Just(Side::Buy), Just(Side::Sell)];
        let tif = prop_oneof![
            Just(TimeInForce::Gtc),
            Just(TimeInForce::Ioc),
            Just(TimeInForce::Fok)
        ];
        let stp = prop_oneof![
            Just(SelfTradePrevention::None),
            Just(SelfTradePrevention::CancelNewest),
            Just(SelfTradePrevention::CancelOldest),
            Just(SelfTradePrevention::CancelBoth)
        ];
        prop_oneof![
            (any::<u32>(), "[a-zA-Z0-9-]{1,32}").prop_map(|(instrument, s)| {
                Command::DefineInstrument {
                    instrument,
                    symbol: Symbol::new(&s).unwrap(),
                }
            }),
            (
                any::<u64>(),
                any::<u64>(),
                any::<u32>(),
                side,
                proptest::option::of(any::<i64>()),
                any::<u64>(),
                tif,
                any::<bool>(),
                stp
            )
                .prop_map(
                    |(order_id, account, instrument, side, price, qty, tif, post_only, stp)| {
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
                ),
            (any::<u64>(), any::<u64>())
                .prop_map(|(order_id, account)| Command::Cancel { order_id, account }),
            (any::<u64>(), any::<u64>(), any::<i64>(), any::<u64>()).prop_map(
                |(order_id, account, price, qty)| Command::Replace {
                    order_id,
                    account,
                    price,
                    qty
                }
            ),
            (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(order_id, account, qty)| {
                Command::Reduce {
                    order_id,
                    account,
                    qty,
                }
            }),
            (any::<u64>(), proptest::option::of(any::<u32>())).prop_map(|(account, instrument)| {
                Command::MassCancel {
                    account,
                    instrument,
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn round_trips(command in arb_command()) {
            let bytes = command.encode_to_vec();
            prop_assert!(bytes.len() <= COMMAND_BYTES_MAX);
            prop_assert_eq!(Command::decode(&bytes).unwrap(), command);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics_and_is_canonical(
            bytes in proptest::collection::vec(any::<u8>(), 0..64)
        ) {
            if let Ok(command) = Command::decode(&bytes) {
                prop_assert_eq!(command.encode_to_vec(), bytes);
            }
        }

        #[test]
        fn every_strict_prefix_is_refused(command in arb_command()) {
            let bytes = command.encode_to_vec();
            for len in 0..bytes.len() {
                prop_assert!(Command::decode(&bytes[..len]).is_err());
            }
        }
    }

    #[test]
    fn market_order_with_nonzero_price_bytes_is_refused() {
        let mut bytes = Command::New(NewOrder {
            order_id: 1,
            account: 1,
            instrument: 1,
            side: Side::Buy,
            price: None,
            qty: 1,
            tif: TimeInForce::Ioc,
            post_only: false,
            stp: SelfTradePrevention::None,
        })
        .encode_to_vec();
        bytes[25] = 7; // first byte of the price field
        assert!(Command::decode(&bytes).is_err());
    }
}
