//! The flusher thread: makes appended records durable and publishes the durable watermark.
//!
//! Group commit falls out of the loop: each round syncs everything appended since the last
//! round with one `fdatasync` per touched segment, however many records that is. With a
//! minimum interval between rounds (`JournalConfig::sync_interval_min`, for a journal nobody
//! waits on) the flusher parks until the interval since the last round's start has passed,
//! unless someone asks for durability or the journal stops.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use io_uring::{opcode, types, IoUring};
use memmap2::MmapMut;

use crate::format::{marker_slot, MARKER_SLOT_BYTES, MARKER_SLOT_OFFSET};
use crate::segment::segment_path;
use crate::watermarks::Watermarks;

/// How the flusher makes data durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncMethod {
    /// io_uring `fdatasync` if the kernel allows it, else `msync`.
    #[default]
    Auto,
    /// Require io_uring.
    IoUring,
    /// `msync(MS_SYNC)` over each segment mapping.
    Msync,
}

/// The sync mechanism actually in use.
enum Syncer {
    // Boxed: the ring is large and the enum lives for the thread's whole life anyway.
    Uring(Box<IoUring>),
    Msync,
}

impl Syncer {
    fn name(&self) -> &'static str {
        match self {
            Syncer::Uring(_) => "io_uring fdatasync",
            Syncer::Msync => "msync",
        }
    }
}

/// Files (and, for msync, mappings) of segments the flusher syncs.
struct Target {
    file: File,
    map: Option<MmapMut>,
}

/// How long a busy flusher sleeps between looks at the appended watermark.
const FLUSHER_IDLE_SLEEP: Duration = Duration::from_micros(20);
/// After this long without anything to sync the flusher stops polling and parks (for at most
/// [`IDLE_PARK`], or until [`Watermarks::wake_flusher`]): several journals on one machine
/// (a cluster on loopback) polling every 20 µs each would otherwise keep a core busy.
const HOT_WINDOW: Duration = Duration::from_millis(2);
/// Longest idle park.
const IDLE_PARK: Duration = Duration::from_millis(1);
/// Idle time after which a written-but-unsynced marker is synced on its own.
const MARKER_SYNC_IDLE: Duration = Duration::from_millis(1);

/// Picks the sync mechanism, logging which one is used.
fn choose(method: SyncMethod) -> std::io::Result<Syncer> {
    let syncer = match method {
        SyncMethod::Msync => Syncer::Msync,
        SyncMethod::IoUring => Syncer::Uring(Box::new(IoUring::new(8)?)),
        SyncMethod::Auto => match IoUring::new(8) {
            Ok(ring) => Syncer::Uring(Box::new(ring)),
            Err(error) => {
                tracing::warn!(%error, "io_uring unavailable, falling back to msync");
                Syncer::Msync
            }
        },
    };
    tracing::info!(method = syncer.name(), "journal durability");
    Ok(syncer)
}

pub(crate) fn spawn(
    dir: PathBuf,
    method: SyncMethod,
    interval_min: Duration,
    marks: Arc<Watermarks>,
) -> std::io::Result<(JoinHandle<()>, &'static str)> {
    let syncer = choose(method)?;
    let name = syncer.name();
    if !interval_min.is_zero() {
        tracing::info!(
            interval_us = interval_min.as_micros(),
            "journal sync rounds paced"
        );
    }
    let handle = std::thread::Builder::new()
        .name("keel-journal-sync".into())
        .spawn(move || run(&dir, syncer, &marks, interval_min))?;
    Ok((handle, name))
}

/// How much longer the flusher must wait before its next sync round: `None` when it may
/// start one now (no minimum interval, no round yet or a wake request since, or the
/// interval since the last round's start has passed).
fn pause_left(last_round_start: Option<Instant>, interval_min: Duration) -> Option<Duration> {
    if interval_min.is_zero() {
        return None;
    }
    let elapsed = last_round_start?.elapsed();
    interval_min
        .checked_sub(elapsed)
        .filter(|left| !left.is_zero())
}

fn run(dir: &Path, mut syncer: Syncer, marks: &Watermarks, interval_min: Duration) {
    crate::threads::reduce_timer_slack();
    marks.set_flusher(std::thread::current());
    let mut targets: BTreeMap<u64, Target> = BTreeMap::new();
    let mut durable = marks.durable();
    let mut marker_slot = 0usize;
    // When a marker was written but not yet synced (None: the marker is on disk).
    let mut marker_unsynced_since: Option<Instant> = None;
    let mut last_activity = Instant::now();
    // When the last sync round started, for the minimum interval between rounds (None: no
    // round yet, or someone asked for durability since: the next round must not wait).
    let mut last_round_start: Option<Instant> = None;
    loop {
        let stopping = marks.stopping();
        // Read `appended` before `active_segment`: every record up to `appended` then lies
        // in a segment at or below `active_segment` (see Appender::roll).
        let appended = marks.appended();
        if appended > durable {
            if let Some(left) = pause_left(last_round_start, interval_min).filter(|_| !stopping) {
                // Too soon after the last round, and nobody waits for this one. No marker-only
                // sync meanwhile: the next round persists the marker with the records.
                if marks.take_wake_request() {
                    // Now somebody waits (`wait_durable`, close): sync at once.
                    last_round_start = None;
                    last_activity = Instant::now();
                } else {
                    // `wake_flusher` (also called on stop, after `stopping` is set) unparks.
                    std::thread::park_timeout(left);
                }
                continue;
            }
            last_round_start = Some(Instant::now());
            let active = marks.active_segment();
            let first = targets.keys().next().copied().unwrap_or(active).min(active);
            if let Err(error) = sync(dir, &mut syncer, &mut targets, first, active, marks) {
                // A failed fsync may have dropped the data it was meant to save; retrying
                // could report success for lost writes. Stop advancing: nothing more is
                // acknowledged under the fsync policy, and the node must be restarted.
                fail(dir, marks, durable, &error);
                return;
            }
            // Sealed segments below the active one are complete and now durable.
            targets.retain(|&index, _| index >= active);
            durable = appended;
            marks.count_sync_round();
            marks.publish_durable(durable);
            // Record the durable point on disk; the next sync (this loop's next round, or
            // the idle sync below) persists it.
            if let Err(error) = write_marker(&mut targets, active, durable, &mut marker_slot) {
                tracing::error!(%error, "cannot write the journal's durable marker");
            }
            marker_unsynced_since = Some(Instant::now());
            last_activity = Instant::now();
            continue;
        }
        let marker_due = marker_unsynced_since.is_some_and(|t| t.elapsed() >= MARKER_SYNC_IDLE);
        if stopping || marker_due {
            // Persist the last marker, so after a quiet period (or a clean stop) recovery
            // knows exactly how far the journal was durable.
            if marker_unsynced_since.is_some() {
                let active = marks.active_segment();
                if let Err(error) = sync(dir, &mut syncer, &mut targets, active, active, marks) {
                    fail(dir, marks, durable, &error);
                    return;
                }
            }
            marker_unsynced_since = None;
            if stopping {
                return;
            }
            continue;
        }
        if last_activity.elapsed() < HOT_WINDOW || marker_unsynced_since.is_some() {
            std::thread::sleep(FLUSHER_IDLE_SLEEP);
        } else {
            std::thread::park_timeout(IDLE_PARK);
            if marks.take_wake_request() {
                // Someone is about to append or waits for durability: poll fast a while, and
                // do not pause before the next round.
                last_activity = Instant::now();
                last_round_start = None;
            }
        }
    }
}

/// Syncs segments `first..=last` (see [`sync_segments`]), unless a failure was injected.
fn sync(
    dir: &Path,
    syncer: &mut Syncer,
    targets: &mut BTreeMap<u64, Target>,
    first: u64,
    last: u64,
    marks: &Watermarks,
) -> std::io::Result<()> {
    if marks.take_injected_sync_failure() {
        return Err(std::io::Error::from_raw_os_error(libc::EIO));
    }
    sync_segments(dir, syncer, targets, first, last)
}

/// After a failed sync: records the failure durably in the journal directory (so the next
/// start refuses to trust the page cache) and freezes the durable watermark at `durable`,
/// the last sequence number whose sync succeeded. If even the record cannot be written, the
/// health state says so: the node must stop and not be restarted before the disk is checked.
fn fail(dir: &Path, marks: &Watermarks, durable: u64, error: &std::io::Error) {
    tracing::error!(%error, durable, "journal sync failed; durable watermark frozen");
    let recorded = match crate::sync_failure::record(dir, durable, error) {
        Ok(_) => true,
        Err(record_error) => {
            tracing::error!(
                %record_error,
                "cannot record the journal sync failure on disk; stop the node and check the \
                 disk before restarting it"
            );
            false
        }
    };
    marks.fail_sync(error.to_string(), recorded);
}

/// Writes "durable up to `seq`" into the next of the active segment's two marker slots
/// (alternating, so a write torn by a crash leaves the other slot intact).
fn write_marker(
    targets: &mut BTreeMap<u64, Target>,
    active: u64,
    seq: u64,
    slot: &mut usize,
) -> std::io::Result<()> {
    let Some(target) = targets.get(&active) else {
        return Ok(());
    };
    let offset = MARKER_SLOT_OFFSET + *slot * MARKER_SLOT_BYTES;
    target.file.write_all_at(&marker_slot(seq), offset as u64)?;
    *slot ^= 1;
    Ok(())
}

fn sync_segments(
    dir: &Path,
    syncer: &mut Syncer,
    targets: &mut BTreeMap<u64, Target>,
    first: u64,
    last: u64,
) -> std::io::Result<()> {
    for index in first..=last {
        if let std::collections::btree_map::Entry::Vacant(slot) = targets.entry(index) {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(segment_path(dir, index))?;
            let map = match syncer {
                // SAFETY: mapped only to msync it; the flusher never reads or writes it.
                Syncer::Msync => Some(unsafe { MmapMut::map_mut(&file)? }),
                Syncer::Uring(_) => None,
            };
            slot.insert(Target { file, map });
        }
    }
    let range = targets.range(first..=last);
    match syncer {
        Syncer::Msync => {
            for (_, target) in range {
                if let Some(map) = &target.map {
                    map.flush()?;
                }
            }
            Ok(())
        }
        Syncer::Uring(ring) => uring_fdatasync(ring, range.map(|(_, t)| &t.file)),
    }
}

/// Submits one `fdatasync` per file and waits for all of them.
fn uring_fdatasync<'a>(
    ring: &mut IoUring,
    files: impl Iterator<Item = &'a File>,
) -> std::io::Result<()> {
    let mut submitted = 0usize;
    for file in files {
        let entry = opcode::Fsync::new(types::Fd(file.as_raw_fd()))
            .flags(types::FsyncFlags::DATASYNC)
            .build();
        // SAFETY: the fd stays open (owned by `targets`) until the completion is reaped
        // below, before this function returns.
        let pushed = unsafe { ring.submission().push(&entry) };
        if pushed.is_err() {
            ring.submit_and_wait(submitted)?;
            drain(ring)?;
            submitted = 0;
            // SAFETY: as above; the queue was just emptied.
            unsafe { ring.submission().push(&entry) }
                .map_err(|_| std::io::Error::other("io_uring submission queue full"))?;
        }
        submitted += 1;
    }
    ring.submit_and_wait(submitted)?;
    drain(ring)
}

fn drain(ring: &mut IoUring) -> std::io::Result<()> {
    for completion in ring.completion() {
        if completion.result() < 0 {
            return Err(std::io::Error::from_raw_os_error(-completion.result()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_left_paces_only_with_an_interval_and_a_previous_round() {
        let hour = Duration::from_secs(3600);
        let now = Instant::now();
        // No interval: never pause (the flusher's behaviour without pacing).
        assert_eq!(pause_left(Some(now), Duration::ZERO), None);
        // No round yet, or a wake request since: start one at once.
        assert_eq!(pause_left(None, hour), None);
        // Just after a round: wait for (nearly) the whole interval.
        let left = pause_left(Some(now), hour).unwrap();
        assert!(left > Duration::from_secs(3000) && left <= hour, "{left:?}");
        // The interval has passed: no pause.
        let long_ago = now.checked_sub(Duration::from_secs(2)).unwrap();
        assert_eq!(pause_left(Some(long_ago), Duration::from_secs(1)), None);
    }
}
