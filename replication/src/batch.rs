//! Raft entry payloads: a batch of journal records, byte for byte.
//!
//! An entry's data is a run of consecutive journal records, each exactly as the journal
//! stores it (24-byte header, payload, zero padding to 8 bytes), so a follower appends the
//! very bytes the leader wrote and both journals hold identical records at identical
//! sequence numbers. Every record is checked (checksum, padding, sequence continuity) before
//! anything is appended: a damaged batch is refused whole.

use keel_journal::format::{read_record, record_span, RecordType, RECORD_HEADER_BYTES};

use crate::Error;

/// Where a batch's records sit in the journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqRange {
    /// Sequence number of the first record (for an empty batch: the next one).
    pub first_seq: u64,
    /// Number of records.
    pub count: u32,
}

impl SeqRange {
    /// Sequence number of the last record, or `first_seq - 1` for an empty batch.
    pub fn last_seq(&self) -> u64 {
        self.first_seq + u64::from(self.count) - 1
    }
}

/// Appends one record (header and payload, as the journal's reader returns it) to a batch,
/// with the zero padding the journal stores after it.
pub fn push_record(batch: &mut Vec<u8>, record_bytes: &[u8]) {
    debug_assert!(record_bytes.len() >= RECORD_HEADER_BYTES);
    let span = record_span(record_bytes.len() - RECORD_HEADER_BYTES);
    batch.extend_from_slice(record_bytes);
    batch.resize(batch.len() + span - record_bytes.len(), 0);
}

/// Checks every record of a batch and returns its range. `expected_first_seq` is the
/// sequence number the first record must carry (the one after the previous entry's last).
pub fn parse(data: &[u8], expected_first_seq: u64) -> Result<SeqRange, Error> {
    let mut pos = 0;
    let mut count: u32 = 0;
    for_each(data, |offset, seq, _record_type, _record| {
        if seq != expected_first_seq + u64::from(count) {
            return Err(Error::BadBatch(format!(
                "record {seq} at byte {offset} where {} was expected",
                expected_first_seq + u64::from(count)
            )));
        }
        count = count
            .checked_add(1)
            .ok_or_else(|| Error::BadBatch("too many records".into()))?;
        pos = offset;
        Ok(())
    })?;
    let _ = pos;
    Ok(SeqRange {
        first_seq: expected_first_seq,
        count,
    })
}

/// Calls `visit(offset, seq, type, record_bytes_with_padding)` for every record of a batch,
/// after checking it; stops at the first error.
pub fn for_each(
    data: &[u8],
    mut visit: impl FnMut(usize, u64, RecordType, &[u8]) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut pos = 0;
    while pos < data.len() {
        let rest = &data[pos..];
        let (header, payload) = read_record(rest)
            .map_err(|defect| Error::BadBatch(format!("record at byte {pos}: {defect:?}")))?;
        if header.record_type == RecordType::Seal {
            return Err(Error::BadBatch(format!("seal record at byte {pos}")));
        }
        let span = record_span(payload.len());
        let record = rest
            .get(..span)
            .ok_or_else(|| Error::BadBatch(format!("record at byte {pos} is cut short")))?;
        visit(pos, header.seq, header.record_type, record)?;
        pos += span;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_journal::format::write_record;

    fn record(seq: u64, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; record_span(payload.len())];
        write_record(&mut buf, seq, RecordType::Command, payload);
        buf.truncate(RECORD_HEADER_BYTES + payload.len());
        buf
    }

    #[test]
    fn batches_round_trip_and_damage_is_refused() {
        let mut batch = Vec::new();
        for seq in 5..9 {
            push_record(&mut batch, &record(seq, &vec![seq as u8; seq as usize]));
        }
        assert_eq!(
            parse(&batch, 5).unwrap(),
            SeqRange {
                first_seq: 5,
                count: 4
            }
        );
        assert_eq!(parse(&[], 7).unwrap().count, 0);
        assert!(parse(&batch, 6).is_err(), "wrong first sequence number");
        for i in 0..batch.len() {
            let mut bad = batch.clone();
            bad[i] ^= 0x40;
            assert!(parse(&bad, 5).is_err(), "flip at byte {i} accepted");
        }
        assert!(parse(&batch[..batch.len() - 1], 5).is_err());
    }
}
