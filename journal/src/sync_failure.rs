//! The sync-failure record: a small file saying "a sync of this journal failed".
//!
//! After a failed `fdatasync`/`msync` the kernel may have dropped the pages it could not
//! write, or kept them and marked them clean; either way the page cache can no longer be
//! trusted to reflect the disk, and a later sync through a fresh handle can succeed without
//! writing them (PostgreSQL's "fsyncgate"). Records the page cache still shows would pass
//! their checksums and be called durable on the next start. So the flusher writes this
//! record before it stops, [`crate::Journal::open`] refuses a journal that carries it, and
//! only the operator's `keel journal clear-sync-failure` (which cuts the journal back to the
//! last sequence number known durable) removes it. Layout: `journal/FORMAT.md`.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::crc::crc32c;

/// File name of the record inside the journal directory.
pub const SYNC_FAILURE_FILE_NAME: &str = "sync-failure";

const MAGIC: [u8; 8] = *b"KEELSYNF";
const VERSION: u32 = 1;
const FIXED_BYTES: usize = 40;
/// Longest error text kept (longer text is cut at a character boundary).
const MESSAGE_BYTES_MAX: usize = 1024;

/// What a sync-failure record says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncFailure {
    /// When the sync failed, nanoseconds since the Unix epoch.
    pub time_unix_ns: u64,
    /// The last sequence number whose sync had succeeded: nothing after it is trusted.
    pub last_durable_seq: u64,
    /// The OS error number (`errno`), 0 when there was none.
    pub os_error: i32,
    /// The error as text.
    pub message: String,
}

impl std::fmt::Display for SyncFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sync failed at {} ns since the Unix epoch ({}, errno {}); durable up to record {}",
            self.time_unix_ns, self.message, self.os_error, self.last_durable_seq
        )
    }
}

/// Path of the record in journal `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(SYNC_FAILURE_FILE_NAME)
}

/// The record's bytes.
pub fn encode(failure: &SyncFailure) -> Vec<u8> {
    let mut end = failure.message.len().min(MESSAGE_BYTES_MAX);
    while !failure.message.is_char_boundary(end) {
        end -= 1;
    }
    let message = &failure.message.as_bytes()[..end];
    let mut bytes = Vec::with_capacity(FIXED_BYTES + message.len() + 4);
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&(message.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&failure.time_unix_ns.to_le_bytes());
    bytes.extend_from_slice(&failure.last_durable_seq.to_le_bytes());
    bytes.extend_from_slice(&failure.os_error.to_le_bytes());
    bytes.extend_from_slice(&[0; 4]);
    bytes.extend_from_slice(message);
    let crc = crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// Parses a record; says what is wrong with one that does not parse.
pub fn decode(bytes: &[u8]) -> Result<SyncFailure, &'static str> {
    let field = |at: usize, len: usize| bytes.get(at..at + len).ok_or("record too short");
    let u32_at = |at| field(at, 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let u64_at = |at| {
        field(at, 8).map(|b| {
            let mut array = [0u8; 8];
            array.copy_from_slice(b);
            u64::from_le_bytes(array)
        })
    };
    if field(0, 8)? != MAGIC {
        return Err("not a sync-failure record (bad magic)");
    }
    if u32_at(8)? != VERSION {
        return Err("unknown sync-failure record version");
    }
    let message_len = u32_at(12)? as usize;
    if message_len > MESSAGE_BYTES_MAX || bytes.len() != FIXED_BYTES + message_len + 4 {
        return Err("sync-failure record length does not match");
    }
    let crc_at = FIXED_BYTES + message_len;
    if crc32c(&bytes[..crc_at]) != u32_at(crc_at)? || u32_at(36)? != 0 {
        return Err("sync-failure record checksum mismatch");
    }
    let message = std::str::from_utf8(field(FIXED_BYTES, message_len)?)
        .map_err(|_| "sync-failure message is not UTF-8")?;
    Ok(SyncFailure {
        time_unix_ns: u64_at(16)?,
        last_durable_seq: u64_at(24)?,
        os_error: u32_at(32)? as i32,
        message: message.to_string(),
    })
}

/// What is in `dir`: `None` without a record; `Some(Err(why))` when a record is present but
/// unreadable (a crash while writing it: it still counts).
pub fn read(dir: &Path) -> std::io::Result<Option<Result<SyncFailure, &'static str>>> {
    match fs::read(path(dir)) {
        Ok(bytes) => Ok(Some(decode(&bytes))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Writes the record for `error` durably: created under its final name (a crash mid-write
/// leaves an unreadable record, which still refuses to open, whereas a temporary name would
/// be deleted at the next start), written, `fsync`ed, and the directory `fsync`ed.
pub(crate) fn record(
    dir: &Path,
    last_durable_seq: u64,
    error: &std::io::Error,
) -> std::io::Result<SyncFailure> {
    let failure = SyncFailure {
        time_unix_ns: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |t| u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)),
        last_durable_seq,
        os_error: error.raw_os_error().unwrap_or(0),
        message: error.to_string(),
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path(dir))?;
    file.write_all(&encode(&failure))?;
    file.sync_all()?;
    crate::segment::sync_dir(dir)?;
    Ok(failure)
}

/// Removes the record and syncs the directory.
pub(crate) fn remove(dir: &Path) -> std::io::Result<()> {
    fs::remove_file(path(dir))?;
    crate::segment::sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SyncFailure {
        SyncFailure {
            time_unix_ns: 1_700_000_000_000_000_000,
            last_durable_seq: 42,
            os_error: 5,
            message: "Input/output error (os error 5)".to_string(),
        }
    }

    #[test]
    fn a_record_round_trips() {
        assert_eq!(decode(&encode(&sample())), Ok(sample()));
    }

    #[test]
    fn every_damaged_or_cut_record_is_refused_without_panicking() {
        let bytes = encode(&sample());
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "cut at {len}");
        }
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            assert!(decode(&damaged).is_err(), "flipped byte {at}");
        }
    }

    #[test]
    fn a_long_message_is_cut_at_a_character_boundary() {
        let failure = SyncFailure {
            message: "é".repeat(MESSAGE_BYTES_MAX),
            ..sample()
        };
        let decoded = decode(&encode(&failure)).unwrap();
        assert!(decoded.message.len() <= MESSAGE_BYTES_MAX);
        assert!(failure.message.starts_with(&decoded.message));
    }

    #[test]
    fn record_read_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let written = record(dir.path(), 7, &std::io::Error::from_raw_os_error(5)).unwrap();
        assert_eq!(written.last_durable_seq, 7);
        assert_eq!(written.os_error, 5);
        assert_eq!(read(dir.path()).unwrap(), Some(Ok(written)));
        remove(dir.path()).unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
    }
}
