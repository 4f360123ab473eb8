//! Scanning a journal directory: checksums, sequence continuity, seals, and the one
//! distinction that matters — a torn tail versus corruption.
//!
//! A crash can only damage what had not been synced when it happened. After each sync the
//! flusher records the durable sequence number in a checksummed marker slot of the active
//! segment's header (the next sync persists it). So, at the first invalid record:
//! - if its sequence number is at or below the durable marker, a record that was on disk is
//!   damaged: *corruption*. The node refuses to start and names the segment and offset;
//!   `keel journal repair` may truncate there on request.
//! - if no valid record follows it anywhere, it is a *torn tail*: truncated and reported.
//! - if valid records follow it but it lies above the durable marker, the machine lost
//!   power with unsynced pages reaching the disk out of order. Nothing from there on was
//!   ever confirmed durable, so it is truncated as a torn tail too, and reported with the
//!   number of stray records dropped. A journal without any marker never completed a sync,
//!   so nothing in it was ever confirmed durable and the same rule applies.

use std::path::Path;

use memmap2::Mmap;

use crate::format::{
    parse_segment_header, read_record, record_span, RecordDefect, RecordType, RECORD_ALIGN_BYTES,
    RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};
use crate::segment;
use crate::Error;

/// One valid record (a command or an envelope) met during a scan.
#[derive(Clone, Copy, Debug)]
pub struct ScannedRecord<'a> {
    /// Its sequence number.
    pub seq: u64,
    /// Command or envelope.
    pub record_type: RecordType,
    /// Its payload (an encoded command or envelope).
    pub payload: &'a [u8],
    /// Header and payload: the Merkle leaf of this record.
    pub bytes: &'a [u8],
}

/// A torn tail: bytes after the last valid record that do not form a valid record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// Segment holding it.
    pub segment: u64,
    /// Offset of the first invalid byte (where the next record would start).
    pub offset: u64,
    /// Length of the damaged region, up to the last non-zero byte.
    pub len_bytes: u64,
    /// What was wrong with the record at `offset`.
    pub defect: RecordDefect,
    /// Whether valid (but never confirmed durable) records lay beyond the damage.
    pub stray_records_after: bool,
}

/// Where appending continues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndPosition {
    /// Last segment holding data.
    pub segment: u64,
    /// Offset just after its last valid record (or seal).
    pub offset: u64,
    /// Whether that segment ends with a seal (appending continues in the next one).
    pub sealed: bool,
}

/// A durable-marker slot that is neither empty nor a valid marker (see
/// [`crate::format::damaged_marker_slots`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DamagedMarker {
    /// Segment whose header holds the slot.
    pub segment: u64,
    /// Offset of the slot in the segment file.
    pub offset: u64,
}

/// The outcome of a scan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Sequence number of the first record, if any.
    pub first_seq: Option<u64>,
    /// Sequence number of the last valid record (0 if none).
    pub last_seq: u64,
    /// Number of valid records (commands and envelopes; seals are not counted).
    pub records: u64,
    /// Segments holding data, ascending.
    pub data_segments: Vec<u64>,
    /// The data segments a trusting scan did not read record by record (all of them hold
    /// only trusted records, synced before; empty for a full scan).
    pub trusted_segments: Vec<u64>,
    /// Segments after the data that hold no records (prepared spares).
    pub spare_segments: Vec<u64>,
    /// A torn tail, if the last write was cut short.
    pub torn: Option<TornTail>,
    /// The highest durable marker found in the segment headers (0: none).
    pub durable_marker: u64,
    /// Where appending continues; `None` for an empty directory.
    pub end: Option<EndPosition>,
    /// Damaged durable-marker slots. Recovery ignores them (the markers that remain still
    /// bound the durable point); verification reports them as corruption.
    pub damaged_markers: Vec<DamagedMarker>,
}

impl Scan {
    /// Sequence number the next record will get.
    pub fn next_seq(&self) -> u64 {
        match self.first_seq {
            Some(_) => self.last_seq + 1,
            None => 1,
        }
    }
}

fn corrupt(segment: u64, offset: usize, reason: impl Into<String>) -> Error {
    Error::Corrupt {
        segment,
        offset: offset as u64,
        reason: reason.into(),
    }
}

/// Scans every segment in `dir`, calling `visit` for each valid command record in order.
/// Read-only: a torn tail is reported, not repaired.
pub fn scan(dir: &Path, visit: impl FnMut(ScannedRecord<'_>)) -> Result<Scan, Error> {
    scan_with(dir, true, 0, visit)
}

/// A scan that disregards durable markers (used by repair after cutting the journal).
pub(crate) fn scan_ignoring_markers(dir: &Path) -> Result<Scan, Error> {
    scan_with(dir, false, 0, |_| {})
}

/// [`scan`], except that segments holding only records up to `trusted_seq` are not read
/// record by record (their headers and durable markers still are): for a journal this
/// process closed cleanly, whose records up to `trusted_seq` it checked or wrote itself
/// and synced, so that reopening it (a cluster node taking its journal back after a
/// step-down) costs the tail segment, not the whole journal. What a crash can leave is
/// only ever above the durable marker, so the scan of the tail finds it as before.
pub(crate) fn scan_trusting(dir: &Path, trusted_seq: u64) -> Result<Scan, Error> {
    scan_with(dir, true, trusted_seq, |_| {})
}

fn scan_with(
    dir: &Path,
    use_markers: bool,
    trusted_seq: u64,
    mut visit: impl FnMut(ScannedRecord<'_>),
) -> Result<Scan, Error> {
    let indices = segment::list(dir)?;
    for pair in indices.windows(2) {
        if pair[1] != pair[0] + 1 {
            return Err(corrupt(pair[0] + 1, 0, "segment file missing"));
        }
    }
    let maps = indices
        .iter()
        .map(|&index| open_checked(dir, index))
        .collect::<Result<Vec<_>, _>>()?;
    let mut scan = Scan {
        durable_marker: maps
            .iter()
            .filter(|_| use_markers)
            .filter_map(|map| crate::format::read_marker(map))
            .max()
            .unwrap_or(0),
        damaged_markers: indices
            .iter()
            .zip(&maps)
            .flat_map(|(&segment, map)| {
                crate::format::damaged_marker_slots(map)
                    .into_iter()
                    .map(move |offset| DamagedMarker {
                        segment,
                        offset: offset as u64,
                    })
            })
            .collect(),
        ..Scan::default()
    };
    let mut expected: Option<u64> = None;
    for (position, (&index, map)) in indices.iter().zip(&maps).enumerate() {
        let later = &maps[position + 1..];
        if let Some((first_seq, next_seq)) = trusted_span(map, later, trusted_seq) {
            check_continuity(index, SEGMENT_HEADER_BYTES, expected, first_seq)?;
            scan.first_seq.get_or_insert(first_seq);
            scan.last_seq = next_seq - 1;
            scan.records += next_seq - first_seq;
            scan.data_segments.push(index);
            scan.trusted_segments.push(index);
            expected = Some(next_seq);
            continue;
        }
        let outcome = scan_segment(index, map, later, &mut expected, &mut scan, &mut visit)?;
        match outcome {
            SegmentEnd::NoData => {
                scan.spare_segments.extend(&indices[position..]);
                break;
            }
            SegmentEnd::Sealed(offset) | SegmentEnd::Open(offset) => {
                scan.data_segments.push(index);
                let sealed = matches!(outcome, SegmentEnd::Sealed(_));
                scan.end = Some(EndPosition {
                    segment: index,
                    offset: offset as u64,
                    sealed,
                });
                if !sealed {
                    // Nothing valid may follow an unsealed segment (checked in scan_segment).
                    scan.spare_segments.extend(&indices[position + 1..]);
                    break;
                }
            }
        }
    }
    if scan.durable_marker > scan.last_seq {
        let (segment, offset) = scan.end.map_or((0, 0), |end| (end.segment, end.offset));
        return Err(Error::Corrupt {
            segment,
            offset,
            reason: format!(
                "records up to {} were durable but the journal ends at {}",
                scan.durable_marker, scan.last_seq
            ),
        });
    }
    Ok(scan)
}

/// The first record of segment `map` and of the segment after it, when that one starts at
/// or before `trusted_seq + 1`: `map` then holds only trusted records (dense numbering).
fn trusted_span(map: &Mmap, later: &[Mmap], trusted_seq: u64) -> Option<(u64, u64)> {
    let first_seq = first_record_seq(map)?;
    let next_seq = first_record_seq(later.first()?)?;
    (next_seq > first_seq && next_seq <= trusted_seq.saturating_add(1))
        .then_some((first_seq, next_seq))
}

/// The sequence number of a segment's first record, if it holds one.
fn first_record_seq(map: &Mmap) -> Option<u64> {
    match read_record(&map[SEGMENT_HEADER_BYTES..]) {
        Ok((header, _)) if header.record_type != RecordType::Seal => Some(header.seq),
        _ => None,
    }
}

enum SegmentEnd {
    /// The segment holds no records at all.
    NoData,
    /// The segment ends with a seal at this offset (end of the seal).
    Sealed(usize),
    /// Data ends at this offset without a seal (the journal's end).
    Open(usize),
}

fn open_checked(dir: &Path, index: u64) -> Result<Mmap, Error> {
    let map = segment::map_readonly(dir, index)?;
    let (header_index, size) =
        parse_segment_header(&map).map_err(|reason| corrupt(index, 0, reason))?;
    if header_index != index || size != map.len() as u64 {
        return Err(corrupt(index, 0, "segment header does not match its file"));
    }
    Ok(map)
}

fn scan_segment(
    index: u64,
    map: &Mmap,
    later: &[Mmap],
    expected: &mut Option<u64>,
    scan: &mut Scan,
    visit: &mut impl FnMut(ScannedRecord<'_>),
) -> Result<SegmentEnd, Error> {
    let mut pos = SEGMENT_HEADER_BYTES;
    let mut any = false;
    loop {
        let (header, payload) = match read_record(&map[pos..]) {
            Ok(record) => record,
            Err(defect) => {
                // No valid record at `pos`: the journal's data ends here, one way or another.
                let torn_here = end_of_data(index, map, later, pos, defect, *expected, scan)?;
                return Ok(if any || pos > SEGMENT_HEADER_BYTES || torn_here {
                    SegmentEnd::Open(pos)
                } else {
                    SegmentEnd::NoData
                });
            }
        };
        check_continuity(index, pos, *expected, header.seq)?;
        let span = record_span(payload.len());
        if header.record_type == RecordType::Seal {
            check_zero_after_seal(index, map, pos + span)?;
            *expected = Some(header.seq);
            return Ok(SegmentEnd::Sealed(pos + span));
        }
        any = true;
        scan.first_seq.get_or_insert(header.seq);
        scan.last_seq = header.seq;
        scan.records += 1;
        *expected = Some(header.seq + 1);
        visit(ScannedRecord {
            seq: header.seq,
            record_type: header.record_type,
            payload,
            bytes: &map[pos..pos + RECORD_HEADER_BYTES + payload.len()],
        });
        pos += span;
    }
}

/// A valid record at `pos` must carry the sequence number `expected` (once one is known).
fn check_continuity(index: u64, pos: usize, expected: Option<u64>, seq: u64) -> Result<(), Error> {
    match expected {
        Some(expected_seq) if expected_seq != seq => Err(corrupt(
            index,
            pos,
            format!("sequence number {seq} where {expected_seq} was expected"),
        )),
        _ => Ok(()),
    }
}

/// Nothing is ever written after a seal: any non-zero byte from `seal_end` on is damage.
fn check_zero_after_seal(index: u64, map: &[u8], seal_end: usize) -> Result<(), Error> {
    match map[seal_end..].iter().position(|&b| b != 0) {
        Some(stray) => Err(corrupt(
            index,
            seal_end + stray,
            "non-zero byte after the seal",
        )),
        None => Ok(()),
    }
}

/// The data of segment `index` ends at `pos`, where the record that should come next has
/// `defect`. A damaged durable record is corruption; otherwise the torn tail, if there is
/// one, is recorded in `scan`. Returns whether damage lies in this segment (at or after
/// `pos`).
fn end_of_data(
    index: u64,
    map: &[u8],
    later: &[Mmap],
    pos: usize,
    defect: RecordDefect,
    expected: Option<u64>,
    scan: &mut Scan,
) -> Result<bool, Error> {
    let missing_seq = expected.unwrap_or(1);
    if missing_seq <= scan.durable_marker {
        return Err(corrupt(
            index,
            pos,
            format!(
                "record {missing_seq} is damaged ({defect:?}) although records up to {} were durable",
                scan.durable_marker
            ),
        ));
    }
    let seq_min = expected.unwrap_or(0);
    let stray = first_valid_at_or_after(map, pos + RECORD_ALIGN_BYTES, seq_min).is_some()
        || later
            .iter()
            .any(|m| first_valid_at_or_after(m, SEGMENT_HEADER_BYTES, seq_min).is_some());
    // Any non-zero byte from here on is the remains of interrupted, unsynced writes.
    let damaged_end = last_nonzero_end(map);
    let torn_here = damaged_end > pos || stray;
    scan.torn = if torn_here {
        Some(TornTail {
            segment: index,
            offset: pos as u64,
            len_bytes: (damaged_end.max(pos) - pos) as u64,
            defect,
            stray_records_after: stray,
        })
    } else {
        torn_in_later(index, later)
    };
    Ok(torn_here)
}

/// The first damage in the segments after `index`, which hold no records. A non-zero byte
/// in one is the same kind of remains (a record begun in a prepared segment whose
/// predecessor's seal never reached the disk), or damage. Either way it is reported;
/// recovery deletes them.
fn torn_in_later(index: u64, later: &[Mmap]) -> Option<TornTail> {
    later.iter().zip(index + 1..).find_map(|(map, segment)| {
        let body = &map[SEGMENT_HEADER_BYTES..];
        let first = first_nonzero(body)?;
        let offset = (SEGMENT_HEADER_BYTES + first) / RECORD_ALIGN_BYTES * RECORD_ALIGN_BYTES;
        Some(TornTail {
            segment,
            offset: offset as u64,
            len_bytes: (last_nonzero_end(map) - offset) as u64,
            defect: read_record(&map[offset..])
                .err()
                .unwrap_or(RecordDefect::BadHeader),
            stray_records_after: false,
        })
    })
}

/// The first offset at or after `from` (8-byte aligned) holding a valid record whose
/// sequence number is at least `seq_min`.
fn first_valid_at_or_after(map: &[u8], from: usize, seq_min: u64) -> Option<usize> {
    let mut pos = from.next_multiple_of(RECORD_ALIGN_BYTES);
    while pos + RECORD_HEADER_BYTES <= map.len() {
        // Most of a segment past its end is zero: skip to the next block when every header
        // that could start before it lies in zeros (an all-zero header is never a record).
        let block_end = (pos / ZERO_BLOCK_BYTES + 1) * ZERO_BLOCK_BYTES;
        if is_zero(&map[pos..(block_end + RECORD_HEADER_BYTES).min(map.len())]) {
            pos = block_end;
            continue;
        }
        // Cheap pre-check before the CRC: zero headers are by far the common case.
        if map[pos..pos + RECORD_HEADER_BYTES].iter().any(|&b| b != 0) {
            if let Ok((header, _)) = read_record(&map[pos..]) {
                if header.seq >= seq_min {
                    return Some(pos);
                }
            }
        }
        pos += RECORD_ALIGN_BYTES;
    }
    None
}

/// Offset just past the last non-zero byte, rounded up to the record alignment.
pub(crate) fn last_nonzero_end(map: &[u8]) -> usize {
    let mut end = map.len();
    while end > 0 {
        let start = (end - 1) / ZERO_BLOCK_BYTES * ZERO_BLOCK_BYTES;
        if !is_zero(&map[start..end]) {
            break;
        }
        end = start;
    }
    let end = map[..end]
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i + 1);
    end.next_multiple_of(RECORD_ALIGN_BYTES).min(map.len())
}

/// The index of the first non-zero byte, found a zero block at a time.
fn first_nonzero(bytes: &[u8]) -> Option<usize> {
    let mut start = 0;
    while start < bytes.len() {
        let end = (start + ZERO_BLOCK_BYTES).min(bytes.len());
        if !is_zero(&bytes[start..end]) {
            return bytes[start..end]
                .iter()
                .position(|&b| b != 0)
                .map(|i| start + i);
        }
        start = end;
    }
    None
}

/// Block by which the scans above skip zeros.
const ZERO_BLOCK_BYTES: usize = 4096;

/// Whether every byte is zero. A whole-slice OR, which the compiler vectorises (a byte-wise
/// search with an early exit does not): a mostly empty 64 MiB segment is scanned in
/// milliseconds rather than the hundreds a step-down spent on it (it reopens the journal).
pub(crate) fn is_zero(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    let folded = words.by_ref().fold(0u64, |acc, word| {
        // `chunks_exact(8)` yields 8 bytes; the fallback is never taken.
        acc | u64::from_ne_bytes(<[u8; 8]>::try_from(word).unwrap_or([0xff; 8]))
    });
    folded == 0 && words.remainder().iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::{
        first_nonzero, first_valid_at_or_after, is_zero, last_nonzero_end, ZERO_BLOCK_BYTES,
    };
    use crate::format::{write_record, RecordType, RECORD_ALIGN_BYTES};

    fn naive_end(map: &[u8]) -> usize {
        let end = map.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        end.next_multiple_of(RECORD_ALIGN_BYTES).min(map.len())
    }

    #[test]
    fn the_block_scans_agree_with_a_byte_by_byte_search() {
        let len = 5 * ZERO_BLOCK_BYTES + 13;
        let edges = [
            0,
            1,
            7,
            8,
            ZERO_BLOCK_BYTES - 1,
            ZERO_BLOCK_BYTES,
            3 * ZERO_BLOCK_BYTES + 5,
        ];
        for &at in edges.iter().chain([len - 1, len - 13].iter()) {
            let mut map = vec![0u8; len];
            assert!(is_zero(&map));
            assert_eq!(last_nonzero_end(&map), 0);
            map[at] = 0x5a;
            assert!(!is_zero(&map), "byte {at}");
            assert_eq!(last_nonzero_end(&map), naive_end(&map), "byte {at}");
            assert_eq!(first_nonzero(&map), Some(at), "byte {at}");
            assert!(is_zero(&map[..at]), "byte {at}");
        }
    }

    #[test]
    fn a_record_after_zero_blocks_or_across_a_block_edge_is_found() {
        let len = 6 * ZERO_BLOCK_BYTES;
        for at in [
            ZERO_BLOCK_BYTES - 8,
            ZERO_BLOCK_BYTES,
            3 * ZERO_BLOCK_BYTES + 16,
            5 * ZERO_BLOCK_BYTES - 24,
        ] {
            let mut map = vec![0u8; len];
            write_record(&mut map[at..], 42, RecordType::Command, b"payload");
            assert_eq!(
                first_valid_at_or_after(&map, 8, 0),
                Some(at),
                "record at {at}"
            );
            assert_eq!(first_valid_at_or_after(&map, 8, 43), None, "record at {at}");
        }
    }
}
