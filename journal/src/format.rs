//! Byte layout of segment files and records (see `journal/FORMAT.md`, which this mirrors).
//!
//! All integers are little-endian. CRCs are CRC32C (Castagnoli).

/// First bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"KEELSEG\0";
/// Segment format version this code writes and reads.
pub const SEGMENT_VERSION: u32 = 1;
/// Bytes before the first record of a segment: the 64-byte fixed header, two 16-byte
/// durable-marker slots, and 32 reserved bytes.
pub const SEGMENT_HEADER_BYTES: usize = 128;
/// Offset of the first durable-marker slot; the second follows it.
pub const MARKER_SLOT_OFFSET: usize = 64;
/// Bytes of one durable-marker slot.
pub const MARKER_SLOT_BYTES: usize = 16;
/// Bytes of a record header; the payload follows.
pub const RECORD_HEADER_BYTES: usize = 24;
/// Records start at multiples of this.
pub const RECORD_ALIGN_BYTES: usize = 8;
/// Largest payload a record may carry.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 1 << 20;
/// Smallest segment size accepted (header, one largest record and a seal fit comfortably
/// in far less, but tiny segments only make sense in tests).
pub const SEGMENT_SIZE_BYTES_MIN: u64 = 4096;

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordType {
    /// An engine command (the payload is its canonical encoding). Dense sequence numbers.
    Command,
    /// The end of a segment; the next record is in the next segment. Its `seq` field holds
    /// the sequence number the next record will have; it is not itself a journal entry.
    Seal,
    /// A node input: an [`crate::envelope::Envelope`] (arrival time, user, order tokens and
    /// possibly an engine command). Dense sequence numbers, like commands.
    Envelope,
}

impl RecordType {
    /// The on-disk code.
    pub fn code(self) -> u16 {
        match self {
            RecordType::Command => 1,
            RecordType::Seal => 2,
            RecordType::Envelope => 3,
        }
    }

    /// Parses an on-disk code.
    pub fn from_code(code: u16) -> Option<RecordType> {
        match code {
            1 => Some(RecordType::Command),
            2 => Some(RecordType::Seal),
            3 => Some(RecordType::Envelope),
            _ => None,
        }
    }
}

/// A decoded record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Stored checksum.
    pub crc: u32,
    /// Payload length in bytes.
    pub payload_len: u32,
    /// Sequence number.
    pub seq: u64,
    /// Record type.
    pub record_type: RecordType,
}

/// Bytes a record of `payload_len` occupies, padding included.
#[inline]
pub fn record_span(payload_len: usize) -> usize {
    (RECORD_HEADER_BYTES + payload_len).next_multiple_of(RECORD_ALIGN_BYTES)
}

/// Writes a record (header, payload, zero padding) into the front of `buf` and returns the
/// span written. `buf` must be at least `record_span(payload.len())` long.
#[inline]
pub fn write_record(buf: &mut [u8], seq: u64, record_type: RecordType, payload: &[u8]) -> usize {
    write_record_with(buf, seq, record_type, payload.len(), |out| {
        out.copy_from_slice(payload)
    })
}

/// Like [`write_record`], but `fill` writes the `payload_len` payload bytes in place, so a
/// command is encoded straight into the mapping with no intermediate copy.
#[inline]
pub fn write_record_with(
    buf: &mut [u8],
    seq: u64,
    record_type: RecordType,
    payload_len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> usize {
    // Callers check the length first (it is an error for them, `Error::RecordTooLarge`).
    assert!(
        payload_len <= RECORD_PAYLOAD_BYTES_MAX,
        "record payload over the limit"
    );
    let span = record_span(payload_len);
    let end = RECORD_HEADER_BYTES + payload_len;
    // Payload length is bounded by RECORD_PAYLOAD_BYTES_MAX (1 MiB), so it fits u32.
    buf[4..8].copy_from_slice(&(payload_len as u32).to_le_bytes());
    buf[8..16].copy_from_slice(&seq.to_le_bytes());
    buf[16..18].copy_from_slice(&record_type.code().to_le_bytes());
    buf[18..24].fill(0);
    fill(&mut buf[RECORD_HEADER_BYTES..end]);
    buf[end..span].fill(0);
    let crc = crate::crc::crc32c(&buf[4..end]);
    buf[0..4].copy_from_slice(&crc.to_le_bytes());
    span
}

/// Why the bytes at some offset are not a valid record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordDefect {
    /// The header is all zero: nothing was ever written here.
    Empty,
    /// The header does not fit before the end of the segment.
    Truncated,
    /// Reserved bytes are not zero, the type is unknown or the length is out of range.
    BadHeader,
    /// The checksum does not match.
    BadChecksum,
    /// The zero padding after the payload is not zero (it is outside the checksum).
    BadPadding,
}

/// Parses and checks the record at the front of `bytes` (the rest of the segment).
/// Returns the header and the payload.
pub fn read_record(bytes: &[u8]) -> Result<(RecordHeader, &[u8]), RecordDefect> {
    let header = bytes
        .get(..RECORD_HEADER_BYTES)
        .ok_or(RecordDefect::Truncated)?;
    if header.iter().all(|&b| b == 0) {
        return Err(RecordDefect::Empty);
    }
    let crc = u32::from_le_bytes(array(&header[0..4]));
    let payload_len = u32::from_le_bytes(array(&header[4..8]));
    let seq = u64::from_le_bytes(array(&header[8..16]));
    let record_type = RecordType::from_code(u16::from_le_bytes(array(&header[16..18])))
        .ok_or(RecordDefect::BadHeader)?;
    if header[18..24].iter().any(|&b| b != 0)
        || payload_len as usize > RECORD_PAYLOAD_BYTES_MAX
        || (record_type == RecordType::Seal && payload_len != 0)
    {
        return Err(RecordDefect::BadHeader);
    }
    let end = RECORD_HEADER_BYTES + payload_len as usize;
    let body = bytes.get(4..end).ok_or(RecordDefect::Truncated)?;
    if crate::crc::crc32c(body) != crc {
        return Err(RecordDefect::BadChecksum);
    }
    let span_end = record_span(payload_len as usize).min(bytes.len());
    if bytes[end..span_end].iter().any(|&b| b != 0) {
        return Err(RecordDefect::BadPadding);
    }
    let header = RecordHeader {
        crc,
        payload_len,
        seq,
        record_type,
    };
    Ok((header, &bytes[RECORD_HEADER_BYTES..end]))
}

/// A durable-marker slot saying "records up to `seq` were synced".
pub fn marker_slot(seq: u64) -> [u8; MARKER_SLOT_BYTES] {
    let mut slot = [0u8; MARKER_SLOT_BYTES];
    slot[0..8].copy_from_slice(&seq.to_le_bytes());
    let crc = crate::crc::crc32c(&slot[0..8]);
    slot[8..12].copy_from_slice(&crc.to_le_bytes());
    slot
}

/// The highest valid durable marker in a segment header (a torn or never-written slot has
/// a bad checksum and is ignored; all-zero slots are never valid).
pub fn read_marker(header: &[u8]) -> Option<u64> {
    (0..2)
        .filter_map(|slot| marker_slot_bytes(header, slot).and_then(marker_value))
        .max()
}

/// Offsets of the marker slots in a segment header that are neither empty (all zero) nor a
/// valid marker. A slot is rewritten whole, inside the file's first sector, so such a slot
/// is damage; recovery ignores it (the other slots still bound the durable point) and
/// verification reports it.
pub fn damaged_marker_slots(header: &[u8]) -> Vec<usize> {
    (0..2)
        .filter(|&slot| {
            marker_slot_bytes(header, slot)
                .is_some_and(|bytes| bytes.iter().any(|&b| b != 0) && marker_value(bytes).is_none())
        })
        .map(|slot| MARKER_SLOT_OFFSET + slot * MARKER_SLOT_BYTES)
        .collect()
}

fn marker_slot_bytes(header: &[u8], slot: usize) -> Option<&[u8]> {
    let start = MARKER_SLOT_OFFSET + slot * MARKER_SLOT_BYTES;
    header.get(start..start + MARKER_SLOT_BYTES)
}

/// The sequence number in a valid marker slot.
fn marker_value(bytes: &[u8]) -> Option<u64> {
    let crc = u32::from_le_bytes(array(&bytes[8..12]));
    let valid = crate::crc::crc32c(&bytes[0..8]) == crc && bytes[12..16] == [0; 4];
    valid.then(|| u64::from_le_bytes(array(&bytes[0..8])))
}

/// The segment header for segment `index` of `size_bytes` (marker slots empty).
pub fn segment_header(index: u64, size_bytes: u64) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut header = [0u8; SEGMENT_HEADER_BYTES];
    header[0..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    // SEGMENT_HEADER_BYTES is 128: fits u32.
    header[12..16].copy_from_slice(&(SEGMENT_HEADER_BYTES as u32).to_le_bytes());
    header[16..24].copy_from_slice(&index.to_le_bytes());
    header[24..32].copy_from_slice(&size_bytes.to_le_bytes());
    let crc = crate::crc::crc32c(&header[0..60]);
    header[60..64].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Checks a segment header; returns `(index, size_bytes)`.
pub fn parse_segment_header(bytes: &[u8]) -> Result<(u64, u64), &'static str> {
    let header = bytes
        .get(..SEGMENT_HEADER_BYTES)
        .ok_or("segment shorter than its header")?;
    if header[0..8] != SEGMENT_MAGIC {
        return Err("bad segment magic");
    }
    if crate::crc::crc32c(&header[0..60]) != u32::from_le_bytes(array(&header[60..64])) {
        return Err("segment header checksum mismatch");
    }
    if u32::from_le_bytes(array(&header[8..12])) != SEGMENT_VERSION {
        return Err("unsupported segment version");
    }
    let reserved_end = MARKER_SLOT_OFFSET + 2 * MARKER_SLOT_BYTES;
    if u32::from_le_bytes(array(&header[12..16])) as usize != SEGMENT_HEADER_BYTES
        || header[32..60].iter().any(|&b| b != 0)
        || header[reserved_end..].iter().any(|&b| b != 0)
    {
        return Err("bad segment header");
    }
    let index = u64::from_le_bytes(array(&header[16..24]));
    let size = u64::from_le_bytes(array(&header[24..32]));
    Ok((index, size))
}

/// The file name of segment `index`.
pub fn segment_file_name(index: u64) -> String {
    format!("{index:016}.seg")
}

/// Parses a segment file name back to its index.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 16 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_and_every_bit_flip_is_detected() {
        let payload = b"hello journal";
        let mut buf = vec![0u8; 128];
        let span = write_record(&mut buf, 42, RecordType::Command, payload);
        assert_eq!(span, 40);
        let (header, body) = read_record(&buf).unwrap();
        assert_eq!(header.seq, 42);
        assert_eq!(header.record_type, RecordType::Command);
        assert_eq!(body, payload);
        for byte in 0..span {
            for bit in 0..8 {
                let mut flipped = buf.clone();
                flipped[byte] ^= 1 << bit;
                assert!(read_record(&flipped).is_err(), "flip at {byte}:{bit}");
            }
        }
    }

    #[test]
    fn defects_are_classified() {
        assert_eq!(read_record(&[0u8; 64]).unwrap_err(), RecordDefect::Empty);
        assert_eq!(read_record(&[1u8; 8]).unwrap_err(), RecordDefect::Truncated);
        let mut buf = vec![0u8; 64];
        write_record(&mut buf, 1, RecordType::Command, &[7; 30]);
        assert_eq!(
            read_record(&buf[..40]).unwrap_err(),
            RecordDefect::Truncated
        );
    }

    #[test]
    fn segment_header_round_trip() {
        let header = segment_header(7, 1 << 20);
        assert_eq!(parse_segment_header(&header), Ok((7, 1 << 20)));
        let mut bad = header;
        bad[20] ^= 1;
        assert!(parse_segment_header(&bad).is_err());
        assert_eq!(parse_segment_file_name(&segment_file_name(7)), Some(7));
        assert_eq!(parse_segment_file_name("7.seg"), None);
    }

    #[test]
    fn markers_take_the_highest_valid_slot() {
        let mut header = segment_header(1, 1 << 20).to_vec();
        assert_eq!(read_marker(&header), None);
        assert!(damaged_marker_slots(&header).is_empty());
        header[MARKER_SLOT_OFFSET..MARKER_SLOT_OFFSET + 16].copy_from_slice(&marker_slot(10));
        header[MARKER_SLOT_OFFSET + 16..MARKER_SLOT_OFFSET + 32].copy_from_slice(&marker_slot(12));
        assert_eq!(read_marker(&header), Some(12));
        assert!(damaged_marker_slots(&header).is_empty());
        header[MARKER_SLOT_OFFSET + 17] ^= 1; // torn second slot
        assert_eq!(read_marker(&header), Some(10));
        assert_eq!(damaged_marker_slots(&header), [MARKER_SLOT_OFFSET + 16]);
        assert_eq!(parse_segment_header(&header), Ok((1, 1 << 20)));
    }
}
