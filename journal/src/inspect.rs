//! Offline inspection of a journal directory no process is writing: what `keel journal
//! verify`, `dump`, `roots`, `sync-failure` and `clear-sync-failure` report (`repair` is
//! [`crate::repair`]). The functions here compute; printing is the caller's.

use std::path::Path;

use keel_engine::{Command, Engine, EngineConfig};

use crate::envelope::engine_command;
use crate::merkle::{Hash, MerkleFrontier};
use crate::recovery::{self, Scan};
use crate::sync_failure::{self, SyncFailure};
use crate::{offline_reader, snapshot, Error, Reader};

/// What [`verify`] found.
#[derive(Debug)]
pub struct Verification {
    /// The scan of every segment and record.
    pub scan: Scan,
    /// The journal Merkle root over every record; `None` when records before
    /// `scan.first_seq` were retired (no root from the start).
    pub journal_root: Option<Hash>,
    /// Number of snapshot files.
    pub snapshots: usize,
    /// Damage that recovery tolerates but verification reports, one description each
    /// (damaged durable-marker slots, then damaged snapshots); empty when the journal is
    /// sound.
    pub damage: Vec<String>,
}

/// Checks every segment, record and snapshot of `dir`. Corruption that recovery would
/// refuse is an error; damage recovery tolerates is listed in [`Verification::damage`].
pub fn verify(dir: &Path) -> Result<Verification, Error> {
    if !dir.is_dir() {
        return Err(Error::NotADirectory {
            path: dir.display().to_string(),
        });
    }
    let mut frontier = MerkleFrontier::new();
    let scan = recovery::scan(dir, |record| {
        // Only a contiguous run from the first record has a root.
        if frontier.len() + 1 == record.seq {
            frontier.push(record.bytes);
        }
    })?;
    let snapshots = snapshot::list_snapshots(dir)?;
    let mut bad_snapshots = Vec::new();
    for &seq in &snapshots {
        let path = dir.join(snapshot::snapshot_file_name(seq));
        if let Err(reason) = snapshot::decode(&std::fs::read(&path)?, EngineConfig::default()) {
            bad_snapshots.push(format!("{}: {reason}", path.display()));
        }
    }
    let journal_root = match scan.first_seq {
        Some(first) if first > 1 => None,
        _ => Some(frontier.root()),
    };
    // Recovery ignores a damaged marker slot (the other markers still bound the durable
    // point), but it is damage all the same.
    let mut damage: Vec<String> = scan
        .damaged_markers
        .iter()
        .map(|marker| {
            format!(
                "journal corrupt in segment {} at offset {}: damaged durable-marker slot",
                marker.segment, marker.offset
            )
        })
        .collect();
    if !bad_snapshots.is_empty() {
        damage.push(format!("damaged snapshot(s): {}", bad_snapshots.join("; ")));
    }
    // The records verify, but those after the last durable one are not to be trusted.
    match sync_failure::read(dir)? {
        None => {}
        Some(Ok(failure)) => damage.push(format!(
            "{failure}; `keel journal clear-sync-failure` cuts back to record {}",
            failure.last_durable_seq
        )),
        Some(Err(why)) => damage.push(format!("sync-failure record present: {why}")),
    }
    Ok(Verification {
        scan,
        journal_root,
        snapshots: snapshots.len(),
        damage,
    })
}

/// The journaled engine commands of a directory, in sequence order (`keel journal dump`).
/// Node records without an engine command (a session start) are skipped.
pub struct Commands {
    /// `None` when the journal holds no record.
    reader: Option<Reader>,
}

impl Commands {
    /// Opens `dir` at sequence number `from` (or its first record, if later).
    pub fn open(dir: &Path, from: u64) -> Result<Commands, Error> {
        let (reader, scan) = match offline_reader(dir, from) {
            Ok(opened) => opened,
            // A journal without any segment yet (a node killed before it made its first
            // one) has nothing to read, though no reader can be positioned in it.
            Err(Error::NoSuchRecord { .. }) if recovery::scan(dir, |_| {})?.records == 0 => {
                return Ok(Commands { reader: None })
            }
            Err(error) => return Err(error),
        };
        let reader = (scan.records > 0).then_some(reader);
        Ok(Commands { reader })
    }

    /// The next command; `None` after the last record.
    pub fn next_command(&mut self) -> Result<Option<Command>, Error> {
        let Some(reader) = &mut self.reader else {
            return Ok(None);
        };
        while let Some(record) = reader.next()? {
            if let Some(command) = decode(record.seq, record.record_type, record.payload)? {
                return Ok(Some(command));
            }
        }
        Ok(None)
    }
}

/// What [`roots`] computed: replicas that hold the same records compute the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roots {
    /// The last record's sequence number (0: none).
    pub last_seq: u64,
    /// The journal Merkle root over every record.
    pub journal_root: Hash,
    /// The state root of an engine that applied every command.
    pub state_root: Hash,
}

/// Replays every record of `dir` into a fresh engine (`keel journal roots`). Fails when
/// records before the first one were retired, since no root from the start exists then.
pub fn roots(dir: &Path) -> Result<Roots, Error> {
    let mut engine = Engine::default();
    let mut frontier = MerkleFrontier::new();
    let mut last_seq = 0;
    let scan = recovery::scan(dir, |_| {})?;
    if scan.records > 0 {
        let (mut reader, _) = offline_reader(dir, 1)?;
        if reader.next_seq() != 1 {
            return Err(Error::Retired {
                first_seq: reader.next_seq(),
            });
        }
        let mut events = Vec::new();
        while let Some(record) = reader.next()? {
            frontier.push(record.bytes);
            if let Some(command) = decode(record.seq, record.record_type, record.payload)? {
                events.clear();
                engine.process(&command, &mut events);
            }
            last_seq = record.seq;
        }
    }
    Ok(Roots {
        last_seq,
        journal_root: frontier.root(),
        state_root: snapshot::state_root(&engine),
    })
}

/// The sync-failure record of `dir` (`keel journal sync-failure`): `None` without one,
/// `Some(Err(why))` when one is present but unreadable.
pub fn sync_failure(dir: &Path) -> Result<Option<Result<SyncFailure, &'static str>>, Error> {
    if !dir.is_dir() {
        return Err(Error::NotADirectory {
            path: dir.display().to_string(),
        });
    }
    Ok(sync_failure::read(dir)?)
}

/// What [`clear_sync_failure`] did.
#[derive(Debug)]
pub struct ClearedSyncFailure {
    /// The record that was removed (`Err`: it was unreadable; the durable marker was used).
    pub record: Result<SyncFailure, &'static str>,
    /// The last record kept: the last one known durable.
    pub last_kept_seq: u64,
    /// How many records after it were discarded.
    pub discarded: u64,
}

/// `keel journal clear-sync-failure`: after the operator has checked the disk, verifies the
/// journal (checksums, sequence density, as [`verify`]), cuts it back to the last record
/// known durable (the record's `last_durable_seq`; the journal's durable marker if the record
/// is unreadable), since nothing after it is trusted, and only then removes the record.
/// Returns `None` when there is no record. Corruption, or a journal that ends before its
/// last durable record, is an error and leaves the record in place.
pub fn clear_sync_failure(dir: &Path) -> Result<Option<ClearedSyncFailure>, Error> {
    let Some(record) = sync_failure(dir)? else {
        return Ok(None);
    };
    let scan = verify(dir)?.scan;
    let last_kept_seq = match &record {
        Ok(failure) => failure.last_durable_seq,
        Err(_) => scan.durable_marker,
    };
    if scan.last_seq < last_kept_seq {
        let (segment, offset) = scan.end.map_or((0, 0), |end| (end.segment, end.offset));
        return Err(Error::Corrupt {
            segment,
            offset,
            reason: format!(
                "records up to {last_kept_seq} were durable before the sync failure but the \
                 journal ends at {}; the sync-failure record stays",
                scan.last_seq
            ),
        });
    }
    let discarded = crate::truncate_after(dir, last_kept_seq)?;
    sync_failure::remove(dir)?;
    Ok(Some(ClearedSyncFailure {
        record,
        last_kept_seq,
        discarded,
    }))
}

fn decode(
    seq: u64,
    record_type: crate::format::RecordType,
    payload: &[u8],
) -> Result<Option<Command>, Error> {
    engine_command(record_type, payload).map_err(|source| Error::UndecodableRecord {
        seq,
        source: Box::new(source),
    })
}
