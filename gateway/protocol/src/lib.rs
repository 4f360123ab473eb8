//! Keel's wire codecs for order entry: SoupBinTCP 4.0 framing ([`soupbin`]) carrying OUCH
//! 4.2 messages ([`ouch`]), the packet header and types both use ([`framing`]), plus pure
//! helpers that translate OUCH fields to engine commands ([`mapping`]), and the text of
//! Keel's resumption ticket notice, a SoupBinTCP Debug packet ([`resume`]). The node
//! (`keel-node`) and the client library (`keel-client`) both build on this crate, which
//! depends on nothing but the engine's types.
//!
//! This layer is pure: no sockets, no threads, no clocks, no allocation on decode. Decoders
//! take a byte slice and return either a decoded value, `Ok(None)` when more bytes are needed
//! (framing only), or a [`ProtocolError`]; they never read past the slice, never panic and
//! never wait for more than a bounded number of bytes. Encoders append to a caller's
//! `Vec<u8>` or write into a caller's `&mut [u8]`.
//!
//! # Sources
//!
//! - NASDAQ, *SoupBinTCP* (version 3.00, updated 2017-02-22),
//!   <https://www.nasdaqtrader.com/content/technicalsupport/specifications/dataproducts/soupbintcp.pdf>.
//!   The issue calls the protocol SoupBinTCP 4.0; the packets here are the 3.00 ones, which
//!   are also what Wireshark dissects. NASDAQ's SoupBinTCP 4.1
//!   (<https://www.nasdaq.com/docs/SoupBinTCP%204.1.pdf>) appends a 5-byte heartbeat timeout
//!   to the Login Request; that longer login is refused here (see [`soupbin`]).
//! - NASDAQ, *O\*U\*C\*H Version 4.2*,
//!   <https://www.nasdaqtrader.com/content/technicalsupport/specifications/TradingProducts/OUCH4.2.pdf>.
//! - Wireshark's dissectors `epan/dissectors/packet-soupbintcp.c` and
//!   `epan/dissectors/packet-ouch.c` (<https://gitlab.com/wireshark/wireshark>), the
//!   independent decoder the conformance test runs through `tshark`. Their OUCH heuristic
//!   claims a payload only when its type byte and exact length match, so every length here
//!   equals theirs; every code enum here equals their value tables (checked by the test).
//!   Their SoupBinTCP dissector parses the 20-digit sequence numbers as *signed 32-bit*
//!   integers and reports values from 2^31 up as malformed, although the specification
//!   allows 20 digits; the codec allows the full `u64` range.
//! - The i01 trading system's OUCH 4.2 structures (`OUCH42/Messages.hpp`, `Types.hpp`), a
//!   second independent reading of the 4.2 layouts and of the special prices
//!   `0x7735939C` (maximum, $199,999.9900) and `0x7FFFFFFF` (market orders in a cross).
//!
//! Where the specification is silent or ambiguous the choice made is documented on the
//! item concerned (search for "Ambiguity").
//!
//! # Shared field rules
//!
//! - Integers are unsigned big-endian binary.
//! - *Alpha* fields ([`Alpha`] and its aliases) are printable ASCII (`0x20..=0x7E`),
//!   left-justified and padded on the right with spaces. The value is the field with its
//!   trailing spaces removed; any other byte (control characters, DEL, bytes `>= 0x80`) is
//!   an error. Encoding a value and decoding it again gives back the same bytes.
//!   *Ambiguity:* the specifications do not say whether leading or embedded spaces may
//!   occur; they are accepted and are part of the value (an Order Token is compared as the
//!   14 bytes written, so `" A"` and `"A"` are different tokens, and a Stock of `"  AAPL"`
//!   does not name `AAPL`).
//! - SoupBinTCP *numeric* fields are ASCII digits right-justified and padded on the left
//!   with spaces; see [`soupbin`].

#![deny(missing_docs)]

use std::fmt;

pub mod framing;
pub mod mapping;
pub mod ouch;
pub mod resume;
pub mod soupbin;

/// Everything that can be wrong with bytes handed to a decoder, or with a value handed to
/// an encoder. A decoder returning one of these has consumed nothing; a session should treat
/// it as a protocol violation by the peer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A SoupBinTCP packet declared length 0 (every packet has at least its type byte).
    #[error("SoupBinTCP packet with length 0")]
    ZeroLength,
    /// A SoupBinTCP packet declared a length above the decoder's limit. Reported as soon as
    /// the two length bytes arrive, without waiting for the body.
    #[error("SoupBinTCP packet length {len} exceeds the limit of {max}")]
    PacketTooLong {
        /// Declared length (type byte plus payload).
        len: usize,
        /// The decoder's limit.
        max: usize,
    },
    /// A SoupBinTCP packet type this side of the connection may not receive.
    #[error("unknown SoupBinTCP packet type {}", ShowByte(*.0))]
    UnknownPacketType(u8),
    /// A fixed-size SoupBinTCP packet with the wrong length.
    #[error("SoupBinTCP packet type {} has length {len}, expected {expected}", ShowByte(*.packet_type))]
    BadPacketLength {
        /// The packet type byte.
        packet_type: u8,
        /// Declared length (type byte plus payload).
        len: usize,
        /// The length the specification fixes.
        expected: usize,
    },
    /// An OUCH message with no bytes at all.
    #[error("empty OUCH message")]
    EmptyMessage,
    /// An OUCH message type this side of the connection may not receive.
    #[error("unknown OUCH message type {}", ShowByte(*.0))]
    UnknownMessageType(u8),
    /// An OUCH message with the wrong length for its type.
    #[error("OUCH message type {} has length {len}, expected {expected}", ShowByte(*.message_type))]
    BadMessageLength {
        /// The message type byte.
        message_type: u8,
        /// Actual length including the type byte.
        len: usize,
        /// The length the specification fixes.
        expected: usize,
    },
    /// A one-byte code field holding a value its specification does not list.
    #[error("invalid {field} code {}", ShowByte(*.byte))]
    InvalidCode {
        /// The field's name as in the specification.
        field: &'static str,
        /// The offending byte.
        byte: u8,
    },
    /// A text or numeric field that breaks its format.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// The field's name as in the specification.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A payload too long for a SoupBinTCP packet (at most 65,534 bytes after the type byte).
    #[error("payload of {len} bytes exceeds the SoupBinTCP maximum of {max}")]
    PayloadTooLong {
        /// The payload length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The output slice given to an `encode_into` is too short.
    #[error("output buffer of {available} bytes, {needed} needed")]
    BufferTooSmall {
        /// Bytes the encoding needs.
        needed: usize,
        /// Bytes the caller provided.
        available: usize,
    },
}

/// Formats a type or code byte as the specification writes it: `'A'` when printable, hex
/// otherwise.
struct ShowByte(u8);

impl fmt::Display for ShowByte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() || self.0 == b' ' {
            write!(f, "'{}'", char::from(self.0))
        } else {
            write!(f, "{:#04x}", self.0)
        }
    }
}

/// A fixed-width *Alpha* field of `N` bytes: printable ASCII, left-justified, padded on the
/// right with spaces (the padding is not part of the value).
///
/// The aliases fix the widths the protocols use; which of them may be blank is each
/// decoder's rule, stated where the alias is used. `Alpha` is `Copy` and stores its wire
/// bytes inline, so messages carrying it never allocate.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Alpha<const N: usize> {
    wire: [u8; N],
}

/// OUCH Order Token: 14 bytes, the client's identity for an order (not blank).
pub type OrderToken = Alpha<14>;
/// OUCH Stock: 8 bytes, the instrument's symbol (not blank).
pub type Stock = Alpha<8>;
/// OUCH Firm: 4 bytes (blank means the account's default firm).
pub type Firm = Alpha<4>;
/// SoupBinTCP Username: 6 bytes (not blank).
pub type Username = Alpha<6>;

impl<const N: usize> Alpha<N> {
    /// The field's width on the wire.
    pub const WIDTH: usize = N;

    /// The blank (all spaces) value.
    pub const BLANK: Alpha<N> = Alpha { wire: [b' '; N] };

    /// Makes a field from `text`: at most `N` printable ASCII characters with no trailing
    /// space (trailing spaces would be indistinguishable from padding). Blank is allowed
    /// here; decoders refuse it where the protocol needs a value.
    pub fn new(text: &str) -> Result<Alpha<N>, ProtocolError> {
        let bytes = text.as_bytes();
        if bytes.len() > N {
            return Err(ProtocolError::InvalidField {
                field: "alpha",
                reason: "longer than the field",
            });
        }
        if !bytes.iter().all(|b| is_printable(*b)) {
            return Err(ProtocolError::InvalidField {
                field: "alpha",
                reason: "not printable ASCII",
            });
        }
        if bytes.last() == Some(&b' ') {
            return Err(ProtocolError::InvalidField {
                field: "alpha",
                reason: "trailing space",
            });
        }
        let mut wire = [b' '; N];
        wire[..bytes.len()].copy_from_slice(bytes);
        Ok(Alpha { wire })
    }

    /// Reads a field from its wire bytes. `field` names it in the error.
    pub fn from_wire(wire: &[u8; N], field: &'static str) -> Result<Alpha<N>, ProtocolError> {
        if wire.iter().all(|b| is_printable(*b)) {
            Ok(Alpha { wire: *wire })
        } else {
            Err(ProtocolError::InvalidField {
                field,
                reason: "not printable ASCII",
            })
        }
    }

    /// Like [`Alpha::from_wire`], refusing a blank field.
    pub fn from_wire_non_blank(
        wire: &[u8; N],
        field: &'static str,
    ) -> Result<Alpha<N>, ProtocolError> {
        let value = Alpha::from_wire(wire, field)?;
        if value.is_blank() {
            Err(ProtocolError::InvalidField {
                field,
                reason: "blank",
            })
        } else {
            Ok(value)
        }
    }

    /// The padded wire bytes.
    pub fn wire(&self) -> &[u8; N] {
        &self.wire
    }

    /// The value: the wire bytes without their trailing spaces.
    pub fn as_str(&self) -> &str {
        let end = self
            .wire
            .iter()
            .rposition(|b| *b != b' ')
            .map_or(0, |last| last + 1);
        // Every byte is printable ASCII (checked by both constructors), hence valid UTF-8.
        std::str::from_utf8(&self.wire[..end]).unwrap_or("")
    }

    /// Whether the field is all spaces.
    pub fn is_blank(&self) -> bool {
        self.wire.iter().all(|b| *b == b' ')
    }
}

impl<const N: usize> fmt::Debug for Alpha<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl<const N: usize> fmt::Display for Alpha<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Printable ASCII, space included.
fn is_printable(byte: u8) -> bool {
    (0x20..=0x7e).contains(&byte)
}

/// Bounds-checked reading from a slice whose length the caller has already validated; the
/// `Truncated`-style error therefore never fires on well-formed framing, but a bug cannot
/// turn into a panic or an out-of-bounds read.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<&'a [u8; N], ProtocolError> {
        let (head, rest) =
            self.rest
                .split_first_chunk::<N>()
                .ok_or(ProtocolError::InvalidField {
                    field: "message",
                    reason: "truncated",
                })?;
        self.rest = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, ProtocolError> {
        Ok(u32::from_be_bytes(*self.array::<4>()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, ProtocolError> {
        Ok(u64::from_be_bytes(*self.array::<8>()?))
    }
}

/// Where encoders write: a growable `Vec<u8>` or a pre-checked `&mut [u8]`.
pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]);

    fn put_u8(&mut self, byte: u8) {
        self.put(&[byte]);
    }

    fn put_u16(&mut self, value: u16) {
        self.put(&value.to_be_bytes());
    }

    fn put_u32(&mut self, value: u32) {
        self.put(&value.to_be_bytes());
    }

    fn put_u64(&mut self, value: u64) {
        self.put(&value.to_be_bytes());
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Writes into a slice whose length was checked against the encoding's length beforehand;
/// if that check were ever wrong the writer drops bytes rather than panicking.
pub(crate) struct SliceSink<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> SliceSink<'a> {
    /// Checks that `buf` can hold `needed` bytes.
    pub(crate) fn new(buf: &'a mut [u8], needed: usize) -> Result<SliceSink<'a>, ProtocolError> {
        if buf.len() < needed {
            return Err(ProtocolError::BufferTooSmall {
                needed,
                available: buf.len(),
            });
        }
        Ok(SliceSink { buf, pos: 0 })
    }

    pub(crate) fn written(&self) -> usize {
        self.pos
    }
}

impl Sink for SliceSink<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.pos.saturating_add(bytes.len());
        if let Some(dst) = self.buf.get_mut(self.pos..end) {
            dst.copy_from_slice(bytes);
            self.pos = end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_pads_and_trims() {
        let token = OrderToken::new("ABC123").unwrap();
        assert_eq!(token.wire(), b"ABC123        ");
        assert_eq!(token.as_str(), "ABC123");
        assert_eq!(format!("{token}"), "ABC123");
        assert_eq!(format!("{token:?}"), "\"ABC123\"");
        assert!(Firm::BLANK.is_blank());
        assert_eq!(Firm::BLANK.as_str(), "");
    }

    #[test]
    fn alpha_rejects_bad_text() {
        assert!(Stock::new("TOOLONGSYM").is_err());
        assert!(Stock::new("AB\u{7f}").is_err());
        assert!(Stock::new("AB ").is_err());
        assert!(Stock::new("é").is_err());
        assert!(Stock::new("A B").is_ok());
    }

    #[test]
    fn alpha_from_wire_checks_bytes() {
        assert!(Stock::from_wire(b"AAPL    ", "Stock").is_ok());
        assert!(Stock::from_wire(b"AAPL\0   ", "Stock").is_err());
        assert!(Stock::from_wire(b"AAPL\xff   ", "Stock").is_err());
        assert!(Stock::from_wire_non_blank(b"        ", "Stock").is_err());
        // Leading spaces are part of the value (the field is compared as written).
        assert_eq!(
            Stock::from_wire(b"  AAPL  ", "Stock").unwrap().as_str(),
            "  AAPL"
        );
    }

    #[test]
    fn errors_show_codes_like_the_spec() {
        assert_eq!(
            ProtocolError::UnknownPacketType(b'Q').to_string(),
            "unknown SoupBinTCP packet type 'Q'"
        );
        assert_eq!(
            ProtocolError::UnknownMessageType(0).to_string(),
            "unknown OUCH message type 0x00"
        );
    }

    #[test]
    fn slice_sink_refuses_short_buffers() {
        let mut buf = [0u8; 3];
        assert_eq!(
            SliceSink::new(&mut buf, 4).err(),
            Some(ProtocolError::BufferTooSmall {
                needed: 4,
                available: 3
            })
        );
        let mut sink = SliceSink::new(&mut buf, 3).unwrap();
        sink.put(b"ab");
        sink.put(b"cd");
        assert_eq!(sink.written(), 2);
    }
}
