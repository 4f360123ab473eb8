//! Opening a journal: recover, repair a torn tail, and start the appender and its threads.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::appender::Appender;
use crate::flusher::{self, SyncMethod};
use crate::format::{SEGMENT_HEADER_BYTES, SEGMENT_SIZE_BYTES_MIN};
use crate::reader::Reader;
use crate::recovery::{self, Scan};
use crate::segment;
use crate::watermarks::Watermarks;
use crate::Error;

/// When a command counts as acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Only once it is on stable storage (`fdatasync` completed). Survives power loss.
    #[default]
    Fsync,
    /// As soon as it is appended to the mapping. Survives a crash of the process (the page
    /// cache keeps it) but not of the machine: up to the last sync interval can be lost.
    Async,
}

/// How a journal is laid out and synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalConfig {
    /// Size of each segment file (default 64 MiB).
    pub segment_size_bytes: u64,
    /// What "acknowledged" means.
    pub durability: Durability,
    /// How the flusher syncs.
    pub sync_method: SyncMethod,
    /// Shortest time from the start of one sync round to the start of the next (default
    /// zero: the flusher syncs again as soon as anything new is appended).
    ///
    /// Only for a journal whose durable watermark nobody waits on — `Async` durability on a
    /// single node. There acknowledgements follow the appended watermark, so syncing flat
    /// out (a round every few tens of microseconds under load) buys nothing and costs the
    /// flusher and its io_uring worker a share of a core; pacing bounds that to one round per
    /// interval. The price: a kernel crash or power loss can take up to this long (plus one
    /// sync) of acknowledged flow. Under `Fsync`, or when replication waits for durability,
    /// leave it zero: every wait on the durable watermark would grow by up to the interval.
    /// A pause ends at once when someone asks for durability ([`Watermarks::wake_flusher`],
    /// hence [`Journal::wait_durable`]) or the journal closes: closing still syncs
    /// everything.
    pub sync_interval_min: Duration,
    /// Warn (log, and [`crate::JournalHealth::free_space_low_bytes`]) when the journal's file
    /// system has less free space than this, or than two segments if that is more (default
    /// 1 GiB). Measured by the preparer thread every few seconds and after each segment it
    /// prepares; never on the append path.
    pub free_space_warn_bytes: u64,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            segment_size_bytes: 64 << 20,
            durability: Durability::Fsync,
            sync_method: SyncMethod::Auto,
            sync_interval_min: Duration::ZERO,
            free_space_warn_bytes: 1 << 30,
        }
    }
}

/// What opening the journal found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// The scan of the directory as found.
    pub scan: Scan,
    /// Whether a torn tail was truncated.
    pub truncated_torn_tail: bool,
    /// The sync mechanism the flusher uses.
    pub sync_method: &'static str,
}

/// An open journal: the appender for the single writer plus its background threads.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    config: JournalConfig,
    appender: Appender,
    marks: Arc<Watermarks>,
    threads: Vec<JoinHandle<()>>,
}

impl Journal {
    /// Opens (creating if absent) the journal in `dir`, recovering it first: a torn tail is
    /// truncated, corruption is an error naming segment and offset.
    pub fn open(dir: &Path, config: JournalConfig) -> Result<(Journal, Recovery), Error> {
        Journal::open_trusting(dir, config, 0)
    }

    /// [`Journal::open`] of a journal this process closed cleanly a moment ago (a cluster
    /// node taking its journal back from its matching loop): records up to `trusted_seq`,
    /// which it checked or wrote itself and synced, are not read again, so only the
    /// segments holding later ones are scanned. Everything else (torn tail, markers,
    /// spares, the sync of every data segment) is as in `open`.
    pub fn open_trusting(
        dir: &Path,
        config: JournalConfig,
        trusted_seq: u64,
    ) -> Result<(Journal, Recovery), Error> {
        if config.segment_size_bytes < SEGMENT_SIZE_BYTES_MIN
            || config.segment_size_bytes % 4096 != 0
        {
            return Err(Error::InvalidConfig(
                "segment size must be a multiple of 4096 and at least 4096 bytes",
            ));
        }
        fs::create_dir_all(dir)?;
        refuse_after_sync_failure(dir)?;
        segment::remove_leftovers(dir)?;
        let scan = recovery::scan_trusting(dir, trusted_seq)?;
        for damaged in &scan.damaged_markers {
            tracing::warn!(
                segment = damaged.segment,
                offset = damaged.offset,
                "damaged durable-marker slot ignored (`keel journal verify` reports it)"
            );
        }
        if let Some(torn) = scan.torn {
            crate::truncation::zero_tail(dir, torn.segment, torn.offset)?;
            tracing::warn!(
                segment = torn.segment,
                offset = torn.offset,
                bytes = torn.len_bytes,
                defect = ?torn.defect,
                "truncated a torn journal tail"
            );
        }
        for &spare in &scan.spare_segments {
            fs::remove_file(segment::segment_path(dir, spare))?;
        }
        sync_recovered(dir, &scan)?;
        let (segment_index, offset) = match scan.end {
            None => (1, SEGMENT_HEADER_BYTES as u64),
            Some(end) if end.sealed => (end.segment + 1, SEGMENT_HEADER_BYTES as u64),
            Some(end) => (end.segment, end.offset),
        };
        if !segment::segment_path(dir, segment_index).exists() {
            segment::create(dir, segment_index, config.segment_size_bytes)?;
        }
        segment::sync_dir(dir)?;
        let marks = Arc::new(Watermarks::default());
        marks.publish_appended(scan.last_seq);
        marks.publish_durable(scan.last_seq);
        marks.set_active_segment(segment_index);
        let writable = segment::map_writable(dir, segment_index)?;
        let (spare_tx, spare_rx) = crossbeam_channel::bounded(1);
        let spare_request_pos = SEGMENT_HEADER_BYTES;
        let appender = Appender {
            dir: dir.to_path_buf(),
            segment: writable,
            write_pos: offset as usize,
            next_seq: scan.next_seq(),
            spare_request_pos,
            spare_requested: false,
            marks: marks.clone(),
            spares: spare_rx,
            roll_stalls: 0,
        };
        let preparer = crate::preparer::spawn(
            crate::preparer::PreparerConfig {
                dir: dir.to_path_buf(),
                segment_size_bytes: config.segment_size_bytes,
                free_space_warn_bytes: config
                    .free_space_warn_bytes
                    .max(config.segment_size_bytes.saturating_mul(2)),
            },
            marks.clone(),
            spare_tx,
        )?;
        let (flusher, sync_method) = flusher::spawn(
            dir.to_path_buf(),
            config.sync_method,
            config.sync_interval_min,
            marks.clone(),
        )?;
        let recovery = Recovery {
            truncated_torn_tail: scan.torn.is_some(),
            scan,
            sync_method,
        };
        let journal = Journal {
            dir: dir.to_path_buf(),
            config,
            appender,
            marks,
            threads: vec![preparer, flusher],
        };
        Ok((journal, recovery))
    }

    /// The appender; only the single writer may use it.
    pub fn appender(&mut self) -> &mut Appender {
        &mut self.appender
    }

    /// The shared watermarks.
    pub fn watermarks(&self) -> &Arc<Watermarks> {
        &self.marks
    }

    /// Highest sequence number acknowledged under this journal's durability policy.
    pub fn acknowledged(&self) -> u64 {
        match self.config.durability {
            Durability::Fsync => self.marks.durable(),
            Durability::Async => self.marks.appended(),
        }
    }

    /// Waits (spinning politely) until everything appended so far is durable. For tools
    /// and shutdown; the matching loop never calls this.
    pub fn wait_durable(&self) -> Result<(), Error> {
        let target = self.marks.appended();
        self.marks.wake_flusher();
        while self.marks.durable() < target {
            if self.marks.failed() {
                return Err(Error::SyncFailed);
            }
            std::thread::yield_now();
        }
        Ok(())
    }

    /// A reader starting at `from_seq`.
    pub fn reader(&self, from_seq: u64) -> Result<Reader, Error> {
        Reader::open(&self.dir, self.marks.clone(), from_seq)
    }

    /// Syncs everything, stops the background threads and closes the journal.
    pub fn close(mut self) -> Result<(), Error> {
        let synced = self.wait_durable();
        self.marks.stop();
        self.marks.wake_flusher();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        synced
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.marks.stop();
        self.marks.wake_flusher();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Makes recovered records durable before calling them durable: after a process crash they
/// may sit only in the page cache. A failed sync is recorded as the flusher records one, so
/// the journal is not trusted again until an operator has checked.
///
/// Trusted segments (a trusting scan's) were synced before the clean close that preceded
/// it, so they are skipped: a sync of a clean file still costs a disk cache flush, tens of
/// milliseconds each on a busy disk.
fn sync_recovered(dir: &Path, scan: &Scan) -> Result<(), Error> {
    let untrusted = scan
        .data_segments
        .iter()
        .filter(|index| !scan.trusted_segments.contains(index));
    for &index in untrusted {
        let synced = File::open(segment::segment_path(dir, index))?.sync_data();
        if let Err(error) = synced {
            if let Err(record_error) = crate::sync_failure::record(dir, scan.durable_marker, &error)
            {
                tracing::error!(%record_error, "cannot record the sync failure on disk");
            }
            refuse_after_sync_failure(dir)?;
            return Err(Error::Io(error));
        }
    }
    Ok(())
}

/// Refuses a journal carrying a sync-failure record (readable or not: a record cut short by
/// a crash still means a sync failed).
fn refuse_after_sync_failure(dir: &Path) -> Result<(), Error> {
    let detail = match crate::sync_failure::read(dir)? {
        None => return Ok(()),
        Some(Ok(failure)) => failure.to_string(),
        Some(Err(why)) => format!("record present but unreadable: {why}"),
    };
    Err(Error::SyncFailureRecorded {
        dir: dir.display().to_string(),
        detail,
    })
}

/// A reader over a journal no process is writing (verification, dump).
pub fn offline_reader(dir: &Path, from_seq: u64) -> Result<(Reader, Scan), Error> {
    let scan = recovery::scan(dir, |_| {})?;
    let marks = Arc::new(Watermarks::default());
    marks.publish_appended(scan.last_seq);
    let reader = Reader::open(dir, marks, from_seq.max(scan.first_seq.unwrap_or(1)))?;
    Ok((reader, scan))
}

/// Explicit repair: truncates the journal at the first corruption, discarding everything
/// from there on (including later segments and the snapshots past the cut). Returns the
/// corruption that was cut, if any.
pub fn repair(dir: &Path) -> Result<Option<(u64, u64, String)>, Error> {
    match recovery::scan(dir, |_| {}) {
        Ok(scan) if scan.damaged_markers.is_empty() => Ok(None),
        Ok(scan) => {
            // Only marker slots are damaged; the records all verify, so the journal is durable
            // up to its last record: rewrite every slot to say exactly that.
            let first = &scan.damaged_markers[0];
            let cut = (
                first.segment,
                first.offset,
                "damaged durable-marker slot rewritten".to_string(),
            );
            reset_markers(dir, scan.last_seq)?;
            Ok(Some(cut))
        }
        Err(Error::Corrupt {
            segment,
            offset,
            reason,
        }) => {
            let offset = offset.max(SEGMENT_HEADER_BYTES as u64);
            // Markers first (as in `truncate_after`): a crash during the cut then leaves a
            // journal whose damage is either still there (repair again) or a torn tail.
            crate::truncation::lower_markers(dir, 0, &mut |_| {})?;
            crate::truncation::remove_segments_after(dir, segment, &mut |_| {})?;
            let path = segment::segment_path(dir, segment);
            if path.exists() && recovery_header_ok(dir, segment) {
                crate::truncation::zero_tail(dir, segment, offset)?;
            } else if path.exists() {
                fs::remove_file(&path)?;
            }
            segment::sync_dir(dir)?;
            // The durable markers may point past the cut: lower them to the new end.
            let scan = recovery::scan_ignoring_markers(dir)?;
            reset_markers(dir, scan.last_seq)?;
            // Snapshots past the cut describe commands that are now gone; recovery would
            // (rightly) refuse to start from them, so they are discarded too.
            for seq in crate::snapshot::list_snapshots(dir)? {
                if seq > scan.last_seq {
                    fs::remove_file(dir.join(crate::snapshot::snapshot_file_name(seq)))?;
                }
            }
            segment::sync_dir(dir)?;
            Ok(Some((segment, offset, reason)))
        }
        Err(other) => Err(other),
    }
}

/// Rewrites every segment's marker slots to say "durable up to `seq`".
fn reset_markers(dir: &Path, seq: u64) -> Result<(), Error> {
    use crate::format::{marker_slot, MARKER_SLOT_BYTES, MARKER_SLOT_OFFSET};
    use std::os::unix::fs::FileExt;
    for index in segment::list(dir)? {
        let file = fs::OpenOptions::new()
            .write(true)
            .open(segment::segment_path(dir, index))?;
        // The records first: a marker must never claim what only the page cache holds.
        file.sync_data()?;
        let mut slots = [0u8; 2 * MARKER_SLOT_BYTES];
        slots[..MARKER_SLOT_BYTES].copy_from_slice(&marker_slot(seq));
        file.write_all_at(&slots, MARKER_SLOT_OFFSET as u64)?;
        file.sync_data()?;
    }
    Ok(())
}

fn recovery_header_ok(dir: &Path, index: u64) -> bool {
    segment::map_readonly(dir, index)
        .ok()
        .is_some_and(|map| crate::format::parse_segment_header(&map).is_ok())
}
