//! SoupBinTCP 4.0: the session layer under OUCH.
//!
//! Every logical packet is a two-byte big-endian *packet length*, counting the one-byte
//! *packet type* and the payload but not the length field itself, followed by the type and
//! the payload. Packets do not map to TCP segments: one read may hold half a packet or
//! several, so [`FrameDecoder`] works incrementally on whatever bytes have arrived.
//!
//! | Packet | Type | Direction | Length | Payload |
//! |---|---|---|---|---|
//! | Debug | `+` | both | 1 + text | free-form text |
//! | Login Accepted | `A` | server → client | 31 | Session (10, alphanumeric), Sequence Number (20, numeric) |
//! | Login Rejected | `J` | server → client | 2 | Reject Reason Code (`A` not authorized, `S` session not available) |
//! | Sequenced Data | `S` | server → client | 1 + message | one OUCH outbound message |
//! | Server Heartbeat | `H` | server → client | 1 | — |
//! | End of Session | `Z` | server → client | 1 | — |
//! | Login Request | `L` | client → server | 47 | Username (6), Password (10), Requested Session (10), Requested Sequence Number (20) |
//! | Unsequenced Data | `U` | client → server | 1 + message | one OUCH inbound message |
//! | Client Heartbeat | `R` | client → server | 1 | — |
//! | Logout Request | `O` | client → server | 1 | — |
//!
//! Field formats, as decoded here (strict) and encoded here (canonical):
//!
//! - **Debug** text is passed through as bytes without validation (the spec calls it
//!   free-form); the packet-length limit bounds it. Keel's nodes send one right after a
//!   password login's Login Accepted, carrying a resumption ticket ([`super::resume`]);
//!   clients that do not know it ignore it, as they ignore any Debug packet.
//! - **Username** (6) and **Password** (10): *Alpha*, printable ASCII left-justified and
//!   padded on the right with spaces (see [`super::Alpha`]). A blank username is an error; a
//!   blank password is accepted by the codec (authentication will refuse it). The spec calls
//!   both case-insensitive; the codec preserves case and leaves comparison to the session.
//! - **Session** (10), in Login Request and Login Accepted: [`SessionId`], ASCII letters and
//!   digits padded with spaces, all blanks meaning "the currently active session" in a
//!   request. *Ambiguity:* the spec says Login Accepted's session is *left*-padded but gives
//!   no side for the request's; the encoder always left-pads and the decoder accepts padding
//!   on either side (or both), as long as the letters and digits are contiguous.
//! - **Sequence Number** (20): numeric, ASCII digits right-justified and padded on the left
//!   with spaces. The decoder requires: optional leading spaces, then one or more digits to
//!   the end of the field, with a value that fits `u64`. All blanks, embedded or trailing
//!   spaces, signs or other bytes are errors. Leading zeros are accepted; the encoder never
//!   writes them. `0` in a request means "start with the next message generated".
//!   *Ambiguity:* the spec does not say whether zero-filled numbers are allowed; they are
//!   digits, so they are accepted.
//!
//! Limits: the decoder refuses length 0, any length above its configured maximum (checked as
//! soon as the two length bytes are in, so a peer cannot make it buffer up to 64 KiB), unknown
//! packet types and fixed-size packets of the wrong length (both checked as soon as the type
//! byte is in). SoupBinTCP 4.1's Login Request (length 52, with a heartbeat timeout) is
//! therefore refused as a wrong length.

use std::fmt;

use super::framing::put_header;
use super::{Alpha, ProtocolError, Reader, Sink, SliceSink, Username};

pub use super::framing::{packet_type, HEADER_LEN, PAYLOAD_BYTES_MAX};

/// Packet length (type byte included) of a Login Request.
pub const LOGIN_REQUEST_LEN: usize = 47;
/// Packet length (type byte included) of a Login Accepted.
pub const LOGIN_ACCEPTED_LEN: usize = 31;
/// Packet length (type byte included) of a Login Rejected.
pub const LOGIN_REJECTED_LEN: usize = 2;

/// Default limit on a client packet's length (type byte included): room for the largest
/// OUCH inbound message (Enter Order, 49 bytes) in an Unsequenced Data packet. Also bounds
/// client Debug text to 49 bytes.
pub const CLIENT_PACKET_BYTES_MAX_DEFAULT: u16 =
    1 + super::framing::INBOUND_MESSAGE_BYTES_MAX as u16;

/// Default limit on a server packet's length when a client decodes: generous enough for
/// a server's Debug text; every other server packet is at most 81 bytes.
pub const SERVER_PACKET_BYTES_MAX_DEFAULT: u16 = 1024;

/// Password: a 10-byte *Alpha* field whose `Debug` output is redacted.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Password(Alpha<10>);

impl Password {
    /// Makes a password of at most 10 printable ASCII characters (no trailing space).
    pub fn new(text: &str) -> Result<Password, ProtocolError> {
        Alpha::new(text).map(Password)
    }

    /// The password without its padding.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The padded wire bytes.
    pub fn wire(&self) -> &[u8; 10] {
        self.0.wire()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A SoupBinTCP session name: up to 10 ASCII letters or digits. Blank in a Login Request
/// asks for the currently active session.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId {
    /// Left-padded wire form.
    wire: [u8; 10],
}

impl SessionId {
    /// The blank session (log into the current one).
    pub const BLANK: SessionId = SessionId { wire: [b' '; 10] };

    /// Makes a session name of 0 to 10 ASCII letters or digits.
    pub fn new(name: &str) -> Result<SessionId, ProtocolError> {
        let bytes = name.as_bytes();
        if bytes.len() > 10 {
            return Err(ProtocolError::InvalidField {
                field: "Session",
                reason: "longer than 10 characters",
            });
        }
        if !bytes.iter().all(u8::is_ascii_alphanumeric) {
            return Err(ProtocolError::InvalidField {
                field: "Session",
                reason: "not ASCII letters and digits",
            });
        }
        let mut wire = [b' '; 10];
        wire[10 - bytes.len()..].copy_from_slice(bytes);
        Ok(SessionId { wire })
    }

    /// Reads the field: letters and digits, contiguous, with spaces on either side.
    pub fn from_wire(wire: &[u8; 10]) -> Result<SessionId, ProtocolError> {
        let start = wire.iter().position(|b| *b != b' ').unwrap_or(10);
        let end = wire
            .iter()
            .rposition(|b| *b != b' ')
            .map_or(start, |i| i + 1);
        let name = wire.get(start..end).unwrap_or(&[]);
        if !name.iter().all(u8::is_ascii_alphanumeric) {
            return Err(ProtocolError::InvalidField {
                field: "Session",
                reason: "not ASCII letters and digits padded with spaces",
            });
        }
        let mut out = [b' '; 10];
        out[10 - name.len()..].copy_from_slice(name);
        Ok(SessionId { wire: out })
    }

    /// The canonical (left-padded) wire bytes.
    pub fn wire(&self) -> &[u8; 10] {
        &self.wire
    }

    /// The name without padding (empty when blank).
    pub fn as_str(&self) -> &str {
        let start = self.wire.iter().position(|b| *b != b' ').unwrap_or(10);
        // Letters and digits only (checked by both constructors), hence valid UTF-8.
        std::str::from_utf8(self.wire.get(start..).unwrap_or(&[])).unwrap_or("")
    }

    /// Whether the session is blank.
    pub fn is_blank(&self) -> bool {
        self.wire == [b' '; 10]
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({:?})", self.as_str())
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads a 20-byte numeric field (see the module docs for the exact rule).
pub fn decode_numeric(wire: &[u8; 20], field: &'static str) -> Result<u64, ProtocolError> {
    let start = wire
        .iter()
        .position(|b| *b != b' ')
        .ok_or(ProtocolError::InvalidField {
            field,
            reason: "blank",
        })?;
    let mut value: u64 = 0;
    for byte in wire.get(start..).unwrap_or(&[]) {
        if !byte.is_ascii_digit() {
            return Err(ProtocolError::InvalidField {
                field,
                reason: "not digits right-justified with leading spaces",
            });
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(byte - b'0')))
            .ok_or(ProtocolError::InvalidField {
                field,
                reason: "does not fit 64 bits",
            })?;
    }
    Ok(value)
}

/// Writes a 20-byte numeric field: digits right-justified, padded on the left with spaces.
/// Every `u64` fits (the largest has 20 digits).
pub fn encode_numeric(value: u64) -> [u8; 20] {
    let mut wire = [b' '; 20];
    let mut rest = value;
    for slot in wire.iter_mut().rev() {
        // `rest % 10` is a single decimal digit, so the cast cannot truncate.
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    wire
}

/// Why the server refused a login.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LoginRejectReason {
    /// `A`: bad username or password.
    NotAuthorized,
    /// `S`: the requested session is not available.
    SessionNotAvailable,
}

impl LoginRejectReason {
    /// The code byte.
    pub const fn code(self) -> u8 {
        match self {
            LoginRejectReason::NotAuthorized => b'A',
            LoginRejectReason::SessionNotAvailable => b'S',
        }
    }

    /// Reads the code byte.
    pub fn from_code(byte: u8) -> Result<LoginRejectReason, ProtocolError> {
        match byte {
            b'A' => Ok(LoginRejectReason::NotAuthorized),
            b'S' => Ok(LoginRejectReason::SessionNotAvailable),
            _ => Err(ProtocolError::InvalidCode {
                field: "Reject Reason Code",
                byte,
            }),
        }
    }
}

/// A Login Request's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginRequest {
    /// Username, not blank.
    pub username: Username,
    /// Password (redacted in `Debug`).
    pub password: Password,
    /// The session to join, or blank for the current one.
    pub requested_session: SessionId,
    /// The next sequence number the client wants, or 0 for "from the next new message".
    pub requested_sequence_number: u64,
}

/// A Login Accepted's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginAccepted {
    /// The session now logged into.
    pub session: SessionId,
    /// The sequence number of the next Sequenced Data packet the server will send.
    pub sequence_number: u64,
}

/// A packet a client sends. Data and Debug payloads borrow from the decoder's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientPacket<'a> {
    /// `L`
    LoginRequest(LoginRequest),
    /// `U`: one OUCH inbound message (see [`super::ouch::InboundMessage::decode`]).
    UnsequencedData(&'a [u8]),
    /// `R`
    ClientHeartbeat,
    /// `O`
    LogoutRequest,
    /// `+`: free-form text, passed through unchecked.
    Debug(&'a [u8]),
}

/// A packet a server sends. Data and Debug payloads borrow from the decoder's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerPacket<'a> {
    /// `A`
    LoginAccepted(LoginAccepted),
    /// `J`
    LoginRejected(LoginRejectReason),
    /// `S`: one OUCH outbound message (see [`super::ouch::OutboundMessage::decode`]).
    SequencedData(&'a [u8]),
    /// `H`
    ServerHeartbeat,
    /// `Z`
    EndOfSession,
    /// `+`: free-form text, passed through unchecked.
    Debug(&'a [u8]),
}

/// Required packet length for a known type: `Some(Some(n))` fixed, `Some(None)` variable,
/// `None` unknown (for that direction).
fn client_packet_len(packet_type: u8) -> Option<Option<usize>> {
    match packet_type {
        packet_type::LOGIN_REQUEST => Some(Some(LOGIN_REQUEST_LEN)),
        packet_type::CLIENT_HEARTBEAT | packet_type::LOGOUT_REQUEST => Some(Some(1)),
        packet_type::UNSEQUENCED_DATA | packet_type::DEBUG => Some(None),
        _ => None,
    }
}

fn server_packet_len(packet_type: u8) -> Option<Option<usize>> {
    match packet_type {
        packet_type::LOGIN_ACCEPTED => Some(Some(LOGIN_ACCEPTED_LEN)),
        packet_type::LOGIN_REJECTED => Some(Some(LOGIN_REJECTED_LEN)),
        packet_type::SERVER_HEARTBEAT | packet_type::END_OF_SESSION => Some(Some(1)),
        packet_type::SEQUENCED_DATA | packet_type::DEBUG => Some(None),
        _ => None,
    }
}

/// A split-off packet: type byte, payload, bytes used (header included).
type RawFrame<'a> = (u8, &'a [u8], usize);

/// An incremental, bounded SoupBinTCP decoder. It holds only its limit: feed it the bytes
/// received so far; it returns the first complete packet and how many bytes it used, or
/// `Ok(None)` if the packet is not complete yet. Callers drop the consumed bytes and call
/// again. An error means the stream is unusable (framing is lost); nothing was consumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameDecoder {
    max_packet_len: u16,
}

impl Default for FrameDecoder {
    /// A decoder for a server reading clients, with [`CLIENT_PACKET_BYTES_MAX_DEFAULT`].
    fn default() -> FrameDecoder {
        FrameDecoder::new(CLIENT_PACKET_BYTES_MAX_DEFAULT)
    }
}

impl FrameDecoder {
    /// A decoder refusing packets longer than `max_packet_len` (type byte included). The
    /// limit is raised to at least [`LOGIN_REQUEST_LEN`] so that every fixed-size packet fits.
    pub const fn new(max_packet_len: u16) -> FrameDecoder {
        let floor = LOGIN_REQUEST_LEN as u16;
        FrameDecoder {
            max_packet_len: if max_packet_len < floor {
                floor
            } else {
                max_packet_len
            },
        }
    }

    /// The limit on a packet's length (type byte included).
    pub const fn max_packet_len(&self) -> u16 {
        self.max_packet_len
    }

    /// Decodes the first client packet in `buf` (server side).
    pub fn decode_client<'a>(
        &self,
        buf: &'a [u8],
    ) -> Result<Option<(ClientPacket<'a>, usize)>, ProtocolError> {
        let Some((packet_type, payload, used)) = self.frame(buf, client_packet_len)? else {
            return Ok(None);
        };
        let packet = match packet_type {
            packet_type::LOGIN_REQUEST => {
                let mut r = Reader::new(payload);
                ClientPacket::LoginRequest(LoginRequest {
                    username: Alpha::from_wire_non_blank(r.array()?, "Username")?,
                    password: Password(Alpha::from_wire(r.array()?, "Password")?),
                    requested_session: SessionId::from_wire(r.array()?)?,
                    requested_sequence_number: decode_numeric(
                        r.array()?,
                        "Requested Sequence Number",
                    )?,
                })
            }
            packet_type::UNSEQUENCED_DATA => ClientPacket::UnsequencedData(payload),
            packet_type::CLIENT_HEARTBEAT => ClientPacket::ClientHeartbeat,
            packet_type::LOGOUT_REQUEST => ClientPacket::LogoutRequest,
            packet_type::DEBUG => ClientPacket::Debug(payload),
            other => return Err(ProtocolError::UnknownPacketType(other)),
        };
        Ok(Some((packet, used)))
    }

    /// Decodes the first server packet in `buf` (client side).
    pub fn decode_server<'a>(
        &self,
        buf: &'a [u8],
    ) -> Result<Option<(ServerPacket<'a>, usize)>, ProtocolError> {
        let Some((packet_type, payload, used)) = self.frame(buf, server_packet_len)? else {
            return Ok(None);
        };
        let packet = match packet_type {
            packet_type::LOGIN_ACCEPTED => {
                let mut r = Reader::new(payload);
                ServerPacket::LoginAccepted(LoginAccepted {
                    session: SessionId::from_wire(r.array()?)?,
                    sequence_number: decode_numeric(r.array()?, "Sequence Number")?,
                })
            }
            packet_type::LOGIN_REJECTED => ServerPacket::LoginRejected(
                LoginRejectReason::from_code(Reader::new(payload).u8()?)?,
            ),
            packet_type::SEQUENCED_DATA => ServerPacket::SequencedData(payload),
            packet_type::SERVER_HEARTBEAT => ServerPacket::ServerHeartbeat,
            packet_type::END_OF_SESSION => ServerPacket::EndOfSession,
            packet_type::DEBUG => ServerPacket::Debug(payload),
            other => return Err(ProtocolError::UnknownPacketType(other)),
        };
        Ok(Some((packet, used)))
    }

    /// Splits off the first packet: `(type, payload, bytes used)`. Checks the length and the
    /// type as early as the bytes allow.
    fn frame<'a>(
        &self,
        buf: &'a [u8],
        expected_len: fn(u8) -> Option<Option<usize>>,
    ) -> Result<Option<RawFrame<'a>>, ProtocolError> {
        let Some((len_bytes, rest)) = buf.split_first_chunk::<2>() else {
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes(*len_bytes));
        if len == 0 {
            return Err(ProtocolError::ZeroLength);
        }
        let max = usize::from(self.max_packet_len);
        if len > max {
            return Err(ProtocolError::PacketTooLong { len, max });
        }
        let Some((&packet_type, _)) = rest.split_first() else {
            return Ok(None);
        };
        match expected_len(packet_type) {
            None => return Err(ProtocolError::UnknownPacketType(packet_type)),
            Some(Some(expected)) if expected != len => {
                return Err(ProtocolError::BadPacketLength {
                    packet_type,
                    len,
                    expected,
                })
            }
            Some(_) => {}
        }
        let Some(body) = rest.get(1..len) else {
            return Ok(None);
        };
        Ok(Some((packet_type, body, 2 + len)))
    }
}

/// Decodes the first client packet in `buf` with the default limit
/// ([`CLIENT_PACKET_BYTES_MAX_DEFAULT`]). See [`FrameDecoder::decode_client`].
pub fn decode_client(buf: &[u8]) -> Result<Option<(ClientPacket<'_>, usize)>, ProtocolError> {
    FrameDecoder::new(CLIENT_PACKET_BYTES_MAX_DEFAULT).decode_client(buf)
}

/// Decodes the first server packet in `buf` with the default limit
/// ([`SERVER_PACKET_BYTES_MAX_DEFAULT`]). See [`FrameDecoder::decode_server`].
pub fn decode_server(buf: &[u8]) -> Result<Option<(ServerPacket<'_>, usize)>, ProtocolError> {
    FrameDecoder::new(SERVER_PACKET_BYTES_MAX_DEFAULT).decode_server(buf)
}

/// Appends one packet of type `packet_type` carrying `payload`. Fails only if the payload
/// is longer than [`PAYLOAD_BYTES_MAX`], in which case nothing is written. This writes any type
/// byte as given: use it for Sequenced/Unsequenced Data and Debug, or prefer the typed
/// encoders.
pub fn encode_packet(
    out: &mut Vec<u8>,
    packet_type: u8,
    payload: &[u8],
) -> Result<(), ProtocolError> {
    put_header(out, packet_type, payload.len())?;
    out.extend_from_slice(payload);
    Ok(())
}

impl ClientPacket<'_> {
    /// The packet type byte.
    pub fn packet_type(&self) -> u8 {
        match self {
            ClientPacket::LoginRequest(_) => packet_type::LOGIN_REQUEST,
            ClientPacket::UnsequencedData(_) => packet_type::UNSEQUENCED_DATA,
            ClientPacket::ClientHeartbeat => packet_type::CLIENT_HEARTBEAT,
            ClientPacket::LogoutRequest => packet_type::LOGOUT_REQUEST,
            ClientPacket::Debug(_) => packet_type::DEBUG,
        }
    }

    /// Bytes [`ClientPacket::encode`] writes, header included.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload_len()
    }

    fn payload_len(&self) -> usize {
        match self {
            ClientPacket::LoginRequest(_) => LOGIN_REQUEST_LEN - 1,
            ClientPacket::UnsequencedData(data) | ClientPacket::Debug(data) => data.len(),
            ClientPacket::ClientHeartbeat | ClientPacket::LogoutRequest => 0,
        }
    }

    fn write<S: Sink>(&self, out: &mut S) -> Result<(), ProtocolError> {
        put_header(out, self.packet_type(), self.payload_len())?;
        match self {
            ClientPacket::LoginRequest(login) => {
                out.put(login.username.wire());
                out.put(login.password.wire());
                out.put(login.requested_session.wire());
                out.put(&encode_numeric(login.requested_sequence_number));
            }
            ClientPacket::UnsequencedData(data) | ClientPacket::Debug(data) => out.put(data),
            ClientPacket::ClientHeartbeat | ClientPacket::LogoutRequest => {}
        }
        Ok(())
    }

    /// Appends the packet. Fails (writing nothing) only for a payload over
    /// [`PAYLOAD_BYTES_MAX`].
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        self.write(out)
    }

    /// Writes the packet at the start of `out`, returning the bytes written.
    pub fn encode_into(&self, out: &mut [u8]) -> Result<usize, ProtocolError> {
        let mut sink = SliceSink::new(out, self.encoded_len())?;
        self.write(&mut sink)?;
        Ok(sink.written())
    }
}

impl ServerPacket<'_> {
    /// The packet type byte.
    pub fn packet_type(&self) -> u8 {
        match self {
            ServerPacket::LoginAccepted(_) => packet_type::LOGIN_ACCEPTED,
            ServerPacket::LoginRejected(_) => packet_type::LOGIN_REJECTED,
            ServerPacket::SequencedData(_) => packet_type::SEQUENCED_DATA,
            ServerPacket::ServerHeartbeat => packet_type::SERVER_HEARTBEAT,
            ServerPacket::EndOfSession => packet_type::END_OF_SESSION,
            ServerPacket::Debug(_) => packet_type::DEBUG,
        }
    }

    /// Bytes [`ServerPacket::encode`] writes, header included.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload_len()
    }

    fn payload_len(&self) -> usize {
        match self {
            ServerPacket::LoginAccepted(_) => LOGIN_ACCEPTED_LEN - 1,
            ServerPacket::LoginRejected(_) => LOGIN_REJECTED_LEN - 1,
            ServerPacket::SequencedData(data) | ServerPacket::Debug(data) => data.len(),
            ServerPacket::ServerHeartbeat | ServerPacket::EndOfSession => 0,
        }
    }

    fn write<S: Sink>(&self, out: &mut S) -> Result<(), ProtocolError> {
        put_header(out, self.packet_type(), self.payload_len())?;
        match self {
            ServerPacket::LoginAccepted(accepted) => {
                out.put(accepted.session.wire());
                out.put(&encode_numeric(accepted.sequence_number));
            }
            ServerPacket::LoginRejected(reason) => out.put_u8(reason.code()),
            ServerPacket::SequencedData(data) | ServerPacket::Debug(data) => out.put(data),
            ServerPacket::ServerHeartbeat | ServerPacket::EndOfSession => {}
        }
        Ok(())
    }

    /// Appends the packet. Fails (writing nothing) only for a payload over
    /// [`PAYLOAD_BYTES_MAX`].
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        self.write(out)
    }

    /// Writes the packet at the start of `out`, returning the bytes written.
    pub fn encode_into(&self, out: &mut [u8]) -> Result<usize, ProtocolError> {
        let mut sink = SliceSink::new(out, self.encoded_len())?;
        self.write(&mut sink)?;
        Ok(sink.written())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_round_trips_every_width() {
        for value in [0, 1, 9, 10, 12345, u64::from(u32::MAX), u64::MAX] {
            let wire = encode_numeric(value);
            assert_eq!(decode_numeric(&wire, "n"), Ok(value));
            let text = value.to_string();
            assert_eq!(&wire[20 - text.len()..], text.as_bytes());
            assert!(wire[..20 - text.len()].iter().all(|b| *b == b' '));
        }
    }

    #[test]
    fn numeric_is_strict() {
        let bad: [&[u8; 20]; 6] = [
            b"                    ",
            b"1                   ",
            b"         12 3       ",
            b"                 -12",
            b"                 +12",
            b"18446744073709551616",
        ];
        for wire in bad {
            assert!(decode_numeric(wire, "n").is_err(), "{wire:?}");
        }
        assert_eq!(decode_numeric(b"00000000000000000042", "n"), Ok(42));
        assert_eq!(decode_numeric(b"18446744073709551615", "n"), Ok(u64::MAX));
    }

    #[test]
    fn session_padding() {
        let s = SessionId::new("ABC").unwrap();
        assert_eq!(s.wire(), b"       ABC");
        assert_eq!(s.as_str(), "ABC");
        assert_eq!(SessionId::from_wire(b"ABC       ").unwrap(), s);
        assert_eq!(SessionId::from_wire(b"   ABC    ").unwrap(), s);
        assert!(SessionId::from_wire(b"          ").unwrap().is_blank());
        assert!(SessionId::from_wire(b"  A BC    ").is_err());
        assert!(SessionId::from_wire(b"  A-BC    ").is_err());
        assert!(SessionId::new("ABCDEFGHIJK").is_err());
        assert!(SessionId::new("A_B").is_err());
    }

    #[test]
    fn password_debug_is_redacted() {
        let p = Password::new("hunter2").unwrap();
        assert_eq!(format!("{p:?}"), "Password(<redacted>)");
        assert_eq!(p.as_str(), "hunter2");
    }

    #[test]
    fn early_rejection_before_the_body_arrives() {
        let d = FrameDecoder::default();
        assert_eq!(d.decode_client(&[]), Ok(None));
        assert_eq!(d.decode_client(&[0]), Ok(None));
        assert_eq!(d.decode_client(&[0, 0]), Err(ProtocolError::ZeroLength));
        assert_eq!(
            d.decode_client(&[0xff, 0xff]),
            Err(ProtocolError::PacketTooLong {
                len: 65535,
                max: 50
            })
        );
        assert_eq!(d.decode_client(&[0, 5]), Ok(None));
        assert_eq!(
            d.decode_client(&[0, 5, b'Q']),
            Err(ProtocolError::UnknownPacketType(b'Q'))
        );
        assert_eq!(
            d.decode_client(&[0, 2, b'R']),
            Err(ProtocolError::BadPacketLength {
                packet_type: b'R',
                len: 2,
                expected: 1
            })
        );
        // Server packet types are unknown to a server and vice versa.
        assert_eq!(
            d.decode_client(&[0, 1, b'H']),
            Err(ProtocolError::UnknownPacketType(b'H'))
        );
        assert_eq!(
            decode_server(&[0, 1, b'R']),
            Err(ProtocolError::UnknownPacketType(b'R'))
        );
    }

    #[test]
    fn limit_is_configurable_with_a_floor() {
        assert_eq!(FrameDecoder::new(0).max_packet_len(), 47);
        let d = FrameDecoder::new(100);
        let mut buf = Vec::new();
        encode_packet(&mut buf, b'U', &[b'x'; 99]).unwrap();
        assert!(d.decode_client(&buf).unwrap().is_some());
        buf.clear();
        encode_packet(&mut buf, b'U', &[b'x'; 100]).unwrap();
        assert_eq!(
            d.decode_client(&buf),
            Err(ProtocolError::PacketTooLong { len: 101, max: 100 })
        );
    }

    #[test]
    fn payload_limit_on_encode() {
        let big = vec![0u8; PAYLOAD_BYTES_MAX + 1];
        let mut out = Vec::new();
        assert!(matches!(
            ServerPacket::SequencedData(&big).encode(&mut out),
            Err(ProtocolError::PayloadTooLong { .. })
        ));
        assert!(out.is_empty());
        let max = vec![0u8; PAYLOAD_BYTES_MAX];
        ServerPacket::SequencedData(&max).encode(&mut out).unwrap();
        assert_eq!(&out[..3], &[0xff, 0xff, b'S']);
    }
}
