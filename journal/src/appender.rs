//! The single writer's append path: bounds check, copy into the mapping, release-store.

use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use keel_engine::Command;

use crate::envelope::Envelope;
use crate::format::{
    record_span, write_record, write_record_with, RecordType, RECORD_ALIGN_BYTES,
    RECORD_HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX, SEGMENT_HEADER_BYTES,
};
use crate::segment::WritableSegment;
use crate::watermarks::Watermarks;
use crate::Error;

/// Appends records for the journal's one writer (the matching loop).
///
/// An append does no system call, takes no lock and allocates nothing: it checks the space
/// left, writes the record into the memory-mapped segment and publishes the new tail with a
/// release store. The next segment is created and mapped ahead of time by the preparer
/// thread; only if that thread has fallen behind does a roll wait (counted in
/// [`Appender::roll_stalls`]).
#[derive(Debug)]
pub struct Appender {
    pub(crate) dir: PathBuf,
    pub(crate) segment: WritableSegment,
    pub(crate) write_pos: usize,
    pub(crate) next_seq: u64,
    /// Write position from which the next segment is requested from the preparer.
    pub(crate) spare_request_pos: usize,
    pub(crate) spare_requested: bool,
    pub(crate) marks: Arc<Watermarks>,
    pub(crate) spares: Receiver<WritableSegment>,
    pub(crate) roll_stalls: u64,
}

impl Appender {
    /// Appends an engine command and returns its sequence number.
    #[inline]
    pub fn append_command(&mut self, command: &Command) -> Result<u64, Error> {
        self.append_with(RecordType::Command, command.encoded_len(), |buf| {
            command.encode_into(buf);
        })
    }

    /// Appends a command record whose payload is `payload` (already encoded).
    #[inline]
    pub fn append_payload(&mut self, payload: &[u8]) -> Result<u64, Error> {
        self.append_with(RecordType::Command, payload.len(), |buf| {
            buf.copy_from_slice(payload)
        })
    }

    /// Appends a node input record and returns its sequence number.
    #[inline]
    pub fn append_envelope(&mut self, envelope: &Envelope) -> Result<u64, Error> {
        self.append_with(RecordType::Envelope, envelope.encoded_len(), |buf| {
            envelope.encode_into(buf);
        })
    }

    /// Appends a copy of a record taken from another journal (a replica's leader): `bytes`
    /// holds one record (header and payload, as [`crate::Record::bytes`], padding optional).
    /// The header's sequence number must be this journal's next, so the copy is byte for
    /// byte the original. Returns its sequence number.
    pub fn append_copy(&mut self, bytes: &[u8]) -> Result<u64, Error> {
        let (header, payload) =
            crate::format::read_record(bytes).map_err(|defect| Error::Corrupt {
                segment: self.segment.index,
                offset: self.write_pos as u64,
                reason: format!("copied record does not verify: {defect:?}"),
            })?;
        if header.record_type == RecordType::Seal || header.seq != self.next_seq {
            return Err(Error::Corrupt {
                segment: self.segment.index,
                offset: self.write_pos as u64,
                reason: format!(
                    "copied record {} ({:?}) where {} was expected",
                    header.seq, header.record_type, self.next_seq
                ),
            });
        }
        self.append_with(header.record_type, payload.len(), |buf| {
            buf.copy_from_slice(payload)
        })
    }

    /// Appends a record of `payload_len` bytes that `fill` writes in place.
    #[inline]
    fn append_with(
        &mut self,
        record_type: RecordType,
        payload_len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<u64, Error> {
        if payload_len > RECORD_PAYLOAD_BYTES_MAX {
            return Err(Error::RecordTooLarge { payload_len });
        }
        let span = record_span(payload_len);
        // Keep room for the seal that ends every full segment.
        if self.write_pos + span + RECORD_HEADER_BYTES > self.segment.map.len() {
            self.roll(span)?;
            // Off the hot path, where the condition above already guarantees it: the record
            // and the seal after it fit in the fresh segment.
            assert!(
                self.write_pos + span + RECORD_HEADER_BYTES <= self.segment.map.len(),
                "record outside its segment"
            );
        }
        let seq = self.next_seq;
        let end = self.write_pos + span;
        // Paired with the reader, which checks each record's sequence number against the one
        // it expects: this writer numbers records densely (it alone publishes `appended`)
        // and starts each record on the alignment.
        assert!(
            seq == self.marks.appended_by_writer() + 1 && self.write_pos % RECORD_ALIGN_BYTES == 0,
            "sequence numbers not dense or record misaligned"
        );
        let buf = &mut self.segment.map[self.write_pos..end];
        write_record_with(buf, seq, record_type, payload_len, fill);
        self.write_pos = end;
        self.next_seq += 1;
        self.marks.publish_appended(seq);
        if !self.spare_requested && self.write_pos >= self.spare_request_pos {
            self.request_spare();
        }
        Ok(seq)
    }

    fn request_spare(&mut self) {
        self.marks.want_spare(self.segment.index + 1);
        self.spare_requested = true;
    }

    /// Seals the current segment and moves to the prepared next one.
    #[cold]
    fn roll(&mut self, span: usize) -> Result<(), Error> {
        if SEGMENT_HEADER_BYTES + span + RECORD_HEADER_BYTES > self.segment.map.len() {
            return Err(Error::RecordTooLarge {
                payload_len: span - RECORD_HEADER_BYTES,
            });
        }
        if !self.spare_requested {
            self.request_spare();
        }
        let next = match self.spares.try_recv() {
            Ok(prepared) => prepared,
            Err(TryRecvError::Empty) => self.wait_for_spare()?,
            Err(TryRecvError::Disconnected) => return Err(Error::PreparerGone),
        };
        assert_eq!(
            next.index,
            self.segment.index + 1,
            "prepared the wrong segment"
        );
        let seal_at = self.write_pos;
        write_record(
            &mut self.segment.map[seal_at..],
            self.next_seq,
            RecordType::Seal,
            &[],
        );
        // Announce the new segment before any record lands in it, so the flusher, which
        // reads `appended` then `active_segment`, always syncs every segment holding data.
        self.marks.set_active_segment(next.index);
        self.segment = next;
        self.write_pos = SEGMENT_HEADER_BYTES;
        self.spare_requested = false;
        // Ask for the next segment straight away: preparing one (zero-filling and syncing
        // 64 MiB) takes ~200 ms here, longer than a busy writer needs to fill half of one.
        self.spare_request_pos = SEGMENT_HEADER_BYTES;
        Ok(())
    }

    /// Waits for the preparer to hand over the next segment, unless it is failing: then
    /// the append fails (nothing is written; a later append tries the roll again) rather
    /// than blocking the writer for as long as the disk stays full.
    #[cold]
    fn wait_for_spare(&mut self) -> Result<WritableSegment, Error> {
        self.roll_stalls += 1;
        loop {
            if self.marks.preparer_failing() {
                let error = self.marks.health().preparer_error.unwrap_or_default();
                return Err(Error::PreparerFailing(error));
            }
            match self
                .spares
                .recv_timeout(std::time::Duration::from_millis(10))
            {
                Ok(prepared) => return Ok(prepared),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(Error::PreparerGone),
            }
        }
    }

    /// Sequence number the next append will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// How many segment rolls had to wait for the preparer thread.
    pub fn roll_stalls(&self) -> u64 {
        self.roll_stalls
    }

    /// The journal directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}
