//! Node input records: an engine command (or none) with the context the gateway needs to
//! rebuild its sessions from the journal alone: when it arrived, from whom, under which
//! OUCH order token(s). Time enters the system only here, as data, so replaying the journal
//! reproduces every outbound message (timestamps included) byte for byte.
//!
//! Layout (little-endian), after which the engine command's canonical encoding follows
//! when `has_command` is 1:
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 1 | origin code (see [`Origin`]) |
//! | 1 | 8 | timestamp, nanoseconds since the Unix epoch |
//! | 9 | 6 | user name, ASCII, right-padded with spaces (spaces for the node itself) |
//! | 15 | 14 | order token (spaces when none) |
//! | 29 | 14 | second token: the replacement token of a replace (spaces when none) |
//! | 43 | 1 | `has_command`: 0 or 1 |
//! | 44 | n | engine command |

use keel_engine::Command;

use crate::Error;

/// Bytes before the engine command.
pub const ENVELOPE_HEADER_BYTES: usize = 44;

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
    /// Order token, space padded.
    pub token: [u8; 14],
    /// Replacement token, space padded.
    pub token2: [u8; 14],
    /// The engine command, if any.
    pub command: Option<Command>,
}

impl Envelope {
    /// Encoded length in bytes.
    pub fn encoded_len(&self) -> usize {
        ENVELOPE_HEADER_BYTES + self.command.map_or(0, |c| c.encoded_len())
    }

    /// Writes the encoding into the front of `buf` (at least `encoded_len` bytes).
    pub fn encode_into(&self, buf: &mut [u8]) -> usize {
        buf[0] = self.origin.code();
        buf[1..9].copy_from_slice(&self.timestamp_ns.to_le_bytes());
        buf[9..15].copy_from_slice(&self.user);
        buf[15..29].copy_from_slice(&self.token);
        buf[29..43].copy_from_slice(&self.token2);
        buf[43] = u8::from(self.command.is_some());
        let command_len = match &self.command {
            Some(command) => command.encode_into(&mut buf[ENVELOPE_HEADER_BYTES..]),
            None => 0,
        };
        ENVELOPE_HEADER_BYTES + command_len
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
        let mut token = [0u8; 14];
        token.copy_from_slice(&bytes[15..29]);
        let mut token2 = [0u8; 14];
        token2.copy_from_slice(&bytes[29..43]);
        let rest = &bytes[ENVELOPE_HEADER_BYTES..];
        let command = match (bytes[43], rest.is_empty()) {
            (0, true) => None,
            (1, false) => Some(Command::decode(rest)?),
            _ => return Err(bad("envelope command flag does not match its length")),
        };
        Ok(Envelope {
            origin,
            timestamp_ns: u64::from_le_bytes(timestamp),
            user,
            token,
            token2,
            command,
        })
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
        let mut envelope = Envelope {
            origin: Origin::Configuration,
            timestamp_ns: 1_700_000_000_123_456_789,
            user: *b"alice ",
            token: *b"ABC           ",
            token2: [b' '; 14],
            command: Some(Command::DefineInstrument {
                instrument: 1,
                symbol: Symbol::new("BTC-PERP").unwrap(),
            }),
        };
        for _ in 0..2 {
            let mut buf = vec![0u8; envelope.encoded_len()];
            assert_eq!(envelope.encode_into(&mut buf), buf.len());
            assert_eq!(Envelope::decode(&buf).unwrap(), envelope);
            for len in 0..buf.len() {
                assert!(Envelope::decode(&buf[..len]).is_err());
            }
            envelope.command = None;
            envelope.origin = Origin::SessionStart;
        }
    }
}
