//! Segment files: creation (zero-filled, synced, renamed into place) and mapping.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapMut, MmapOptions};

use crate::format::{segment_file_name, segment_header, SEGMENT_HEADER_BYTES};

/// Path of segment `index` in `dir`.
pub(crate) fn segment_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(segment_file_name(index))
}

/// Creates segment `index` of `size_bytes`: header, then zeros to the end, written through
/// (not a sparse file) and synced under a temporary name, then renamed into place and the
/// directory synced. Zero-filling up front means later `fdatasync`s write data only, never
/// allocation metadata, and that a crash can never leave a half-made segment under a real
/// name. Runs on the preparer thread, never on the matching loop.
pub(crate) fn create(dir: &Path, index: u64, size_bytes: u64) -> io::Result<()> {
    let path = segment_path(dir, index);
    let tmp = path.with_extension("seg.tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    file.write_all(&segment_header(index, size_bytes))?;
    let zeros = vec![0u8; 1 << 20];
    let mut remaining = size_bytes - SEGMENT_HEADER_BYTES as u64;
    while remaining > 0 {
        let chunk = remaining.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..chunk])?;
        remaining -= chunk as u64;
    }
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, &path)?;
    sync_dir(dir)
}

/// Makes directory entries (creations, renames, deletions) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A segment mapped for writing.
pub(crate) struct WritableSegment {
    pub index: u64,
    pub map: MmapMut,
}

impl std::fmt::Debug for WritableSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WritableSegment({})", self.index)
    }
}

/// Maps segment `index` read-write, with its pages populated so the first appends do not
/// have to read them in.
pub(crate) fn map_writable(dir: &Path, index: u64) -> io::Result<WritableSegment> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(segment_path(dir, index))?;
    // SAFETY: the journal directory belongs to this node; only this process's single
    // appender writes segment files, so the mapping is not changed behind our back.
    let map = unsafe { MmapOptions::new().populate().map_mut(&file)? };
    Ok(WritableSegment { index, map })
}

/// Maps segment `index` read-only (readers, recovery, verification).
pub(crate) fn map_readonly(dir: &Path, index: u64) -> io::Result<Mmap> {
    let file = File::open(segment_path(dir, index))?;
    // SAFETY: as for `map_writable`; readers only look at bytes below the published tail
    // (or, offline, at a journal no process is writing), and validate every record's CRC.
    unsafe { Mmap::map(&file) }
}

/// Segment indices present in `dir`, ascending. Leftover temporary files are ignored.
pub(crate) fn list(dir: &Path) -> io::Result<Vec<u64>> {
    let mut indices = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(index) = name
            .to_str()
            .and_then(crate::format::parse_segment_file_name)
        {
            indices.push(index);
        }
    }
    indices.sort_unstable();
    Ok(indices)
}

/// Removes temporary files a crash may have left behind.
pub(crate) fn remove_leftovers(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.ends_with(".tmp"))
        {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}
