//! What SoupBinTCP and the messages it carries share: the packet header (length and type
//! byte), the packet type bytes, and the size of the largest client message a packet must
//! hold.
//!
//! [`super::soupbin`] decodes and encodes whole packets; [`super::ouch`] encodes its messages
//! directly inside Sequenced/Unsequenced Data packets. Both take what they share from here,
//! so neither depends on the other (ITCH will sit beside them the same way).

use super::{ProtocolError, Sink};

/// Bytes before the payload: length (2) and packet type (1).
pub const HEADER_LEN: usize = 3;

/// The largest payload a packet can carry: the length field is 16 bits and counts the type.
pub const PAYLOAD_BYTES_MAX: usize = u16::MAX as usize - 1;

/// The longest message a client sends inside Unsequenced Data: OUCH's Enter Order (49
/// bytes; [`super::ouch`] checks at compile time that this is its longest inbound message).
pub const INBOUND_MESSAGE_BYTES_MAX: usize = 49;

/// Packet type bytes.
pub mod packet_type {
    /// Debug, either direction.
    pub const DEBUG: u8 = b'+';
    /// Login Accepted (server).
    pub const LOGIN_ACCEPTED: u8 = b'A';
    /// Login Rejected (server).
    pub const LOGIN_REJECTED: u8 = b'J';
    /// Sequenced Data (server).
    pub const SEQUENCED_DATA: u8 = b'S';
    /// Server Heartbeat (server).
    pub const SERVER_HEARTBEAT: u8 = b'H';
    /// End of Session (server).
    pub const END_OF_SESSION: u8 = b'Z';
    /// Login Request (client).
    pub const LOGIN_REQUEST: u8 = b'L';
    /// Unsequenced Data (client).
    pub const UNSEQUENCED_DATA: u8 = b'U';
    /// Client Heartbeat (client).
    pub const CLIENT_HEARTBEAT: u8 = b'R';
    /// Logout Request (client).
    pub const LOGOUT_REQUEST: u8 = b'O';
}

/// Writes a packet header for a payload of `payload_len` bytes.
pub(crate) fn put_header<S: Sink>(
    out: &mut S,
    packet_type: u8,
    payload_len: usize,
) -> Result<(), ProtocolError> {
    let len = u16::try_from(payload_len + 1)
        .ok()
        .filter(|_| payload_len <= PAYLOAD_BYTES_MAX)
        .ok_or(ProtocolError::PayloadTooLong {
            len: payload_len,
            max: PAYLOAD_BYTES_MAX,
        })?;
    out.put_u16(len);
    out.put_u8(packet_type);
    Ok(())
}
