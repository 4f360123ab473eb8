//! Tailing readers: follow the appender without locks, for replication, snapshots, market
//! data, and offline tools.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use crate::format::{
    read_record, record_span, RecordType, RECORD_ALIGN_BYTES, RECORD_HEADER_BYTES,
    SEGMENT_HEADER_BYTES,
};
use crate::segment;
use crate::watermarks::Watermarks;
use crate::Error;

/// One record: an engine command or a node input envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Its sequence number.
    pub seq: u64,
    /// Command or envelope.
    pub record_type: RecordType,
    /// Its payload (an encoded command or envelope).
    pub payload: &'a [u8],
    /// Header and payload: the Merkle leaf of this record.
    pub bytes: &'a [u8],
}

/// Reads records in sequence order up to the appended watermark.
///
/// Each reader maps segments read-only on its own; the appender's release store of the
/// watermark and the reader's acquire load make the record bytes visible, so no lock is
/// shared. Every record's checksum and sequence number are checked again as it is read.
#[derive(Debug)]
pub struct Reader {
    dir: PathBuf,
    marks: Arc<Watermarks>,
    segment: u64,
    map: Mmap,
    pos: usize,
    next_seq: u64,
}

impl Reader {
    /// A reader whose first record will be `from_seq` (clamped to the journal's first).
    pub fn open(dir: &Path, marks: Arc<Watermarks>, from_seq: u64) -> Result<Reader, Error> {
        let indices = segment::list(dir)?;
        // The last segment whose first record is at or before `from_seq`.
        let mut start = None;
        for &index in &indices {
            let map = segment::map_readonly(dir, index)?;
            match read_record(&map[SEGMENT_HEADER_BYTES..]) {
                Ok((header, _)) if header.seq <= from_seq || start.is_none() => {
                    start = Some((index, map, header.seq));
                }
                _ => break,
            }
        }
        let (segment, map, first_seq) = match (start, indices.last()) {
            (Some(start), _) => start,
            // No records yet: wait at the start of the newest segment for record 1.
            (None, Some(&last)) if from_seq <= 1 => (last, segment::map_readonly(dir, last)?, 1),
            (None, _) => return Err(Error::NoSuchRecord { seq: from_seq }),
        };
        let mut reader = Reader {
            dir: dir.to_path_buf(),
            marks,
            segment,
            map,
            pos: SEGMENT_HEADER_BYTES,
            next_seq: first_seq,
        };
        while reader.next_seq < from_seq {
            if reader.next()?.is_none() {
                break;
            }
        }
        Ok(reader)
    }

    /// A reader over records `1..=upto_seq` only, for a journal that another thread of this
    /// process may be appending to, or cutting after `upto_seq`, meanwhile: a cluster
    /// node's committed prefix, replayed off its replication thread. It starts at the first
    /// segment and maps a later one only when a seal leads to it, so it never looks at
    /// segments that hold nothing of the prefix (spares being prepared, segments a cut
    /// removes, which [`Reader::open`] would list and map); and its own watermark stops
    /// it at `upto_seq`. The caller guarantees those records exist and are never cut
    /// (committed ones are not); every record is checked as it is read.
    pub fn open_prefix(dir: &Path, upto_seq: u64) -> Result<Reader, Error> {
        let first = segment::list(dir)?
            .first()
            .copied()
            .ok_or(Error::NoSuchRecord { seq: 1 })?;
        let map = segment::map_readonly(dir, first)?;
        let first_seq = match read_record(&map[SEGMENT_HEADER_BYTES..]) {
            Ok((header, _)) => header.seq,
            Err(_) if upto_seq == 0 => 1,
            Err(_) => return Err(Error::NoSuchRecord { seq: 1 }),
        };
        let marks = Arc::new(Watermarks::default());
        marks.publish_appended(upto_seq);
        Ok(Reader {
            dir: dir.to_path_buf(),
            marks,
            segment: first,
            map,
            pos: SEGMENT_HEADER_BYTES,
            next_seq: first_seq,
        })
    }

    /// Segment and byte offset where the next record (or a seal) starts.
    pub(crate) fn position(&self) -> (u64, u64) {
        (self.segment, self.pos as u64)
    }

    /// Sequence number of the next record this reader returns.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The next record, or `None` when the reader has caught up with the appender.
    // Not `Iterator::next`: records borrow from the reader's mapping (a lending iterator).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Record<'_>>, Error> {
        let appended = self.marks.appended();
        self.next_until(appended)
    }

    /// The next record if its sequence number is at most `seq_max` (which must not exceed
    /// the appended watermark; the durable watermark never does).
    pub fn next_until(&mut self, seq_max: u64) -> Result<Option<Record<'_>>, Error> {
        // Paired with the appender's dense numbering. Bytes above the appended watermark may
        // not be published yet, so no caller may ask for them; and the reader's own position
        // stays on the record alignment. What the bytes say is checked below, as errors:
        // they are input (a checksum is verified before any field is used).
        assert!(
            seq_max <= self.marks.appended(),
            "reading past the appended watermark"
        );
        assert!(
            self.pos % RECORD_ALIGN_BYTES == 0,
            "reader off the record alignment"
        );
        if self.next_seq > seq_max {
            return Ok(None);
        }
        let (start, payload_len, record_type) = loop {
            let (header, payload) =
                read_record(&self.map[self.pos..]).map_err(|defect| Error::Corrupt {
                    segment: self.segment,
                    offset: self.pos as u64,
                    reason: format!("unreadable record below the appended watermark: {defect:?}"),
                })?;
            if header.seq != self.next_seq {
                return Err(Error::Corrupt {
                    segment: self.segment,
                    offset: self.pos as u64,
                    reason: format!(
                        "sequence {} where {} was expected",
                        header.seq, self.next_seq
                    ),
                });
            }
            if header.record_type == RecordType::Seal {
                self.segment += 1;
                self.map = segment::map_readonly(&self.dir, self.segment)?;
                self.pos = SEGMENT_HEADER_BYTES;
                continue;
            }
            break (self.pos, payload.len(), header.record_type);
        };
        self.pos = start + record_span(payload_len);
        let seq = self.next_seq;
        self.next_seq += 1;
        let bytes = &self.map[start..start + RECORD_HEADER_BYTES + payload_len];
        Ok(Some(Record {
            seq,
            record_type,
            payload: &bytes[RECORD_HEADER_BYTES..],
            bytes,
        }))
    }
}
