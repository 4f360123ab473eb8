//! Node input records: an engine command (or none) with the context the gateway needs to
//! rebuild its sessions from the journal alone: when it arrived, from whom, the client's raw
//! order-entry message, and the gateway's own verdict. Time enters the system only here, as
//! data, so replaying the journal reproduces every outbound message (timestamps included)
//! byte for byte.
//!
//! Layout (little-endian); the client message and then, when `has_command` is 1, the engine
//! command's canonical encoding follow the header:
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 1 | origin code (see [`Origin`]) |
//! | 1 | 8 | timestamp, nanoseconds since the Unix epoch |
//! | 9 | 6 | user name, ASCII, right-padded with spaces (spaces for the node itself) |
//! | 15 | 1 | gateway reject code: 0 when the gateway passed the message to the engine |
//! | 16 | 1 | client message length `m`, at most 64 |
//! | 17 | 1 | `has_command`: 0 or 1 |
//! | 18 | m | the client's order-entry message as received (an OUCH message) |
//! | 18 + m | n | engine command |

use keel_engine::Command;

use crate::Error;

/// Bytes before the client message.
pub const ENVELOPE_HEADER_BYTES: usize = 18;
/// Longest client message an envelope carries.
pub const CLIENT_MESSAGE_BYTES_MAX: usize = 64;

/// Where a node input came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The node started a trading session (no command); its timestamp dates the session.
    SessionStart,
    /// An instrument definition from the node's configuration.
    Configuration,
    /// OUCH Enter Order.
    EnterOrder,
    /// OUCH Replace Order.
    ReplaceOrder,
    /// OUCH Cancel Order.
    CancelOrder,
    /// OUCH Modify Order.
    ModifyOrder,
    /// A user disconnected with cancel-on-disconnect set: mass cancel of its account.
    CancelOnDisconnect,
}

impl Origin {
    fn code(self) -> u8 {
        match self {
            Origin::SessionStart => 1,
            Origin::Configuration => 2,
            Origin::EnterOrder => 3,
            Origin::ReplaceOrder => 4,
            Origin::CancelOrder => 5,
            Origin::ModifyOrder => 6,
            Origin::CancelOnDisconnect => 7,
        }
    }

    fn from_code(code: u8) -> Option<Origin> {
        Some(match code {
            1 => Origin::SessionStart,
            2 => Origin::Configuration,
            3 => Origin::EnterOrder,
            4 => Origin::ReplaceOrder,
            5 => Origin::CancelOrder,
            6 => Origin::ModifyOrder,
            7 => Origin::CancelOnDisconnect,
            _ => return None,
        })
    }
}

/// A node input record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// Where it came from.
    pub origin: Origin,
    /// Arrival time, ns since the Unix epoch.
    pub timestamp_ns: u64,
    /// User name, space padded.
    pub user: [u8; 6],
    /// The gateway's reject code (an OUCH reason), 0 if it passed the message on.
    pub reject: u8,
    client_message_len: u8,
    client_message: [u8; CLIENT_MESSAGE_BYTES_MAX],
    /// The engine command, if any.
    pub command: Option<Command>,
}

impl Envelope {
    /// Makes an envelope; `None` if the client message exceeds
    /// [`CLIENT_MESSAGE_BYTES_MAX`].
    pub fn new(
        origin: Origin,
        timestamp_ns: u64,
        user: [u8; 6],
        reject: u8,
        client_message: &[u8],
        command: Option<Command>,
    ) -> Option<Envelope> {
        let len = client_message.len();
        if len > CLIENT_MESSAGE_BYTES_MAX {
            return None;
        }
        let mut bytes = [0u8; CLIENT_MESSAGE_BYTES_MAX];
        bytes[..len].copy_from_slice(client_message);
        Some(Envelope {
            origin,
            timestamp_ns,
            user,
            reject,
            // At most CLIENT_MESSAGE_BYTES_MAX (64): fits u8.
            client_message_len: len as u8,
            client_message: bytes,
            command,
        })
    }

    /// The client's message as received.
    pub fn client_message(&self) -> &[u8] {
        &self.client_message[..usize::from(self.client_message_len)]
    }

    /// Encoded length in bytes.
    pub fn encoded_len(&self) -> usize {
        ENVELOPE_HEADER_BYTES
            + usize::from(self.client_message_len)
            + self.command.map_or(0, |c| c.encoded_len())
    }

    /// Writes the encoding into the front of `buf` (at least `encoded_len` bytes).
    pub fn encode_into(&self, buf: &mut [u8]) -> usize {
        let message = self.client_message();
        buf[0] = self.origin.code();
        buf[1..9].copy_from_slice(&self.timestamp_ns.to_le_bytes());
        buf[9..15].copy_from_slice(&self.user);
        buf[15] = self.reject;
        buf[16] = self.client_message_len;
        buf[17] = u8::from(self.command.is_some());
        let body = ENVELOPE_HEADER_BYTES + message.len();
        buf[ENVELOPE_HEADER_BYTES..body].copy_from_slice(message);
        let command_len = match &self.command {
            Some(command) => command.encode_into(&mut buf[body..]),
            None => 0,
        };
        body + command_len
    }

    /// Decodes an envelope occupying all of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, Error> {
        let bad = |reason: &'static str| Error::Engine(keel_engine::Error::Decode(reason));
        if bytes.len() < ENVELOPE_HEADER_BYTES {
            return Err(bad("envelope truncated"));
        }
        let origin = Origin::from_code(bytes[0]).ok_or_else(|| bad("unknown envelope origin"))?;
        let mut timestamp = [0u8; 8];
        timestamp.copy_from_slice(&bytes[1..9]);
        let mut user = [0u8; 6];
        user.copy_from_slice(&bytes[9..15]);
        let message_len = usize::from(bytes[16]);
        let body = ENVELOPE_HEADER_BYTES + message_len;
        if message_len > CLIENT_MESSAGE_BYTES_MAX || bytes.len() < body {
            return Err(bad("envelope client message out of range"));
        }
        let rest = &bytes[body..];
        let command = match (bytes[17], rest.is_empty()) {
            (0, true) => None,
            (1, false) => Some(Command::decode(rest)?),
            _ => return Err(bad("envelope command flag does not match its length")),
        };
        Envelope::new(
            origin,
            u64::from_le_bytes(timestamp),
            user,
            bytes[15],
            &bytes[ENVELOPE_HEADER_BYTES..body],
            command,
        )
        .ok_or_else(|| bad("envelope client message too long"))
    }
}

/// The engine command a journal record carries, whatever its type.
pub fn engine_command(
    record_type: crate::format::RecordType,
    payload: &[u8],
) -> Result<Option<Command>, Error> {
    match record_type {
        crate::format::RecordType::Command => Ok(Some(Command::decode(payload)?)),
        crate::format::RecordType::Envelope => Ok(Envelope::decode(payload)?.command),
        crate::format::RecordType::Seal => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_engine::Symbol;

    #[test]
    fn round_trip_with_and_without_command() {
        let command = Command::DefineInstrument {
            instrument: 1,
            symbol: Symbol::new("BTC-PERP").unwrap(),
        };
        for (message, command) in [(&b"O0123456789ABCDB"[..], Some(command)), (&b""[..], None)] {
            let envelope = Envelope::new(
                Origin::EnterOrder,
                1_700_000_000_123_456_789,
                *b"alice ",
                b'S',
                message,
                command,
            )
            .unwrap();
            let mut buf = vec![0u8; envelope.encoded_len()];
            assert_eq!(envelope.encode_into(&mut buf), buf.len());
            let decoded = Envelope::decode(&buf).unwrap();
            assert_eq!(decoded, envelope);
            assert_eq!(decoded.client_message(), message);
            for len in 0..buf.len() {
                assert!(Envelope::decode(&buf[..len]).is_err(), "prefix {len}");
            }
        }
        assert!(Envelope::new(Origin::EnterOrder, 0, [b' '; 6], 0, &[0; 65], None).is_none());
    }
}
