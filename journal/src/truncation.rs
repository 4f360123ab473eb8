//! Cutting records off a journal's end, crash-safely at every step.
//!
//! Recovery refuses a journal whose durable marker names a record that is missing (it
//! cannot tell that from lost data), so the order is what makes a cut safe:
//!
//! 1. lower every durable-marker slot above the cut and sync each segment holding one;
//! 2. remove the snapshots past the cut (a snapshot must never be ahead of its journal),
//!    then sync the directory;
//! 3. zero the cut segment from the cut on and sync it;
//! 4. remove the later segments, highest index first, syncing the directory after each (so
//!    a crash never leaves a gap in the segment indices).
//!
//! Each step is synced before the next starts, so a crash leaves the disk as it was after
//! some step plus part of the next one, and every such state recovers: before step 3 the
//! records are all there under lower markers; after it the records past the cut are a torn
//! tail (or stray records in spare segments) above every marker, which recovery drops. Running
//! the cut again after a crash finishes it. `journal/FORMAT.md` documents the same order.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use crate::format::{marker_slot, read_marker, MARKER_SLOT_BYTES, MARKER_SLOT_OFFSET};
use crate::reader::Reader;
use crate::recovery;
use crate::segment;
use crate::watermarks::Watermarks;
use crate::Error;

/// A point in [`truncate_after_with_steps`] at which everything done so far is synced; a
/// crash test copies the directory at each one.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TruncationStep {
    /// The marker slots of this segment were lowered and the segment synced.
    MarkerLowered(u64),
    /// The snapshot at this sequence number was removed and the directory synced.
    SnapshotRemoved(u64),
    /// The cut segment was zeroed from the cut on and synced.
    TailZeroed(u64),
    /// This later segment was removed and the directory synced.
    SegmentRemoved(u64),
}

/// Discards every record after `last_kept_seq` from a journal no process has open (a
/// replica whose log diverged from its leader's): lowers the durable markers, removes the
/// snapshots past the cut, zeroes the rest of the segment holding record `last_kept_seq +
/// 1` and removes later segments, in that order (see the module documentation: a crash at
/// any point leaves a journal that opens). Returns how many records were discarded.
pub fn truncate_after(dir: &Path, last_kept_seq: u64) -> Result<u64, Error> {
    cut(dir, last_kept_seq, 0, &mut |_| {})
}

/// [`truncate_after`] on a journal this process closed cleanly a moment ago: records up to
/// `trusted_seq` (checked or written by this process, and synced) are not read again (see
/// [`crate::Journal::open_trusting`]). The cut itself, and its order, are the same.
pub fn truncate_after_trusting(
    dir: &Path,
    last_kept_seq: u64,
    trusted_seq: u64,
) -> Result<u64, Error> {
    cut(dir, last_kept_seq, trusted_seq, &mut |_| {})
}

/// [`truncate_after`], calling `step` after each synced step (for crash tests).
#[doc(hidden)]
pub fn truncate_after_with_steps(
    dir: &Path,
    last_kept_seq: u64,
    step: &mut dyn FnMut(TruncationStep),
) -> Result<u64, Error> {
    cut(dir, last_kept_seq, 0, step)
}

fn cut(
    dir: &Path,
    last_kept_seq: u64,
    trusted_seq: u64,
    step: &mut dyn FnMut(TruncationStep),
) -> Result<u64, Error> {
    let scan = recovery::scan_trusting(dir, trusted_seq)?;
    let Some(first) = scan.first_seq else {
        return Ok(0);
    };
    if last_kept_seq >= scan.last_seq {
        return Ok(0);
    }
    if last_kept_seq + 1 < first {
        return Err(Error::NoSuchRecord {
            seq: last_kept_seq + 1,
        });
    }
    let marks = Arc::new(Watermarks::default());
    marks.publish_appended(scan.last_seq);
    let reader = Reader::open(dir, marks, last_kept_seq + 1)?;
    let (cut_segment, cut_offset) = reader.position();
    drop(reader);
    // Never raise a marker: records up to the old marker were synced, later ones maybe not.
    lower_markers(dir, scan.durable_marker.min(last_kept_seq), step)?;
    for seq in crate::snapshot::list_snapshots(dir)? {
        if seq > last_kept_seq {
            fs::remove_file(dir.join(crate::snapshot::snapshot_file_name(seq)))?;
            segment::sync_dir(dir)?;
            step(TruncationStep::SnapshotRemoved(seq));
        }
    }
    zero_tail(dir, cut_segment, cut_offset)?;
    step(TruncationStep::TailZeroed(cut_segment));
    remove_segments_after(dir, cut_segment, step)?;
    Ok(scan.last_seq - last_kept_seq)
}

/// Removes every segment above `index`, highest first, syncing the directory after each
/// removal: unsynced removals may reach the disk in any order, and a missing index between
/// two present segments is corruption.
pub(crate) fn remove_segments_after(
    dir: &Path,
    index: u64,
    step: &mut dyn FnMut(TruncationStep),
) -> Result<(), Error> {
    let mut later: Vec<u64> = segment::list(dir)?
        .into_iter()
        .filter(|&i| i > index)
        .collect();
    later.sort_unstable_by(|a, b| b.cmp(a));
    for removed in later {
        fs::remove_file(segment::segment_path(dir, removed))?;
        segment::sync_dir(dir)?;
        step(TruncationStep::SegmentRemoved(removed));
    }
    Ok(())
}

/// Rewrites, in every segment whose marker slots say more than `seq`, slot A to `seq` and
/// slot B to empty, and syncs that segment before going on. Slots at or below `seq` stay.
pub(crate) fn lower_markers(
    dir: &Path,
    seq: u64,
    step: &mut dyn FnMut(TruncationStep),
) -> Result<(), Error> {
    for index in segment::list(dir)? {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(segment::segment_path(dir, index))?;
        let mut header = [0u8; MARKER_SLOT_OFFSET + 2 * MARKER_SLOT_BYTES];
        // A file too short to hold the slots has no marker (repair removes it).
        match file.read_exact_at(&mut header, 0) {
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => continue,
            read => read?,
        }
        if read_marker(&header).is_none_or(|marker| marker <= seq) {
            continue;
        }
        let mut slots = [0u8; 2 * MARKER_SLOT_BYTES];
        slots[..MARKER_SLOT_BYTES].copy_from_slice(&marker_slot(seq));
        // Both slots in one write inside the first sector: a crash keeps the old pair or
        // the new one (or leaves a damaged slot, which recovery ignores).
        file.write_all_at(&slots, MARKER_SLOT_OFFSET as u64)?;
        file.sync_data()?;
        step(TruncationStep::MarkerLowered(index));
    }
    Ok(())
}

/// Zeroes segment `index` from `offset` to its end and syncs it.
///
/// Only up to the last non-zero byte: segments are created zero-filled and synced, and the
/// journal never writes zeros over data except here (synced), so bytes that read as zero
/// are zero on disk too. Filling them again would dirty (and write back) the whole
/// preallocated rest of the segment, tens of megabytes, for every cut.
pub(crate) fn zero_tail(dir: &Path, index: u64, offset: u64) -> Result<(), Error> {
    // Found through a read-only map and zeroed with plain writes: a writable map of the
    // whole segment is populated up front, which cost tens of ms per step-down.
    let map = segment::map_readonly(dir, index)?;
    let start = usize::try_from(offset)
        .ok()
        .filter(|&start| start <= map.len())
        .ok_or(Error::Corrupt {
            segment: index,
            offset,
            reason: "cut beyond the segment's end".to_string(),
        })?;
    let end = recovery::last_nonzero_end(&map).max(start);
    drop(map);
    if end == start {
        return Ok(());
    }
    let file = OpenOptions::new()
        .write(true)
        .open(segment::segment_path(dir, index))?;
    let mut at = start;
    while at < end {
        let len = (end - at).min(ZEROS.len());
        file.write_all_at(&ZEROS[..len], at as u64)?;
        at += len;
    }
    file.sync_data()?;
    Ok(())
}

/// Zeros written per call by [`zero_tail`].
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
