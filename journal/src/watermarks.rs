//! Sequence-number watermarks shared between the appender and the threads that follow it.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Called by the flusher after the durable watermark advances (off the hot path).
pub type DurableHook = Box<dyn Fn() + Send + Sync>;

/// Progress of the journal, readable from any thread without locks.
///
/// The appender is the only writer of `appended` and `active_segment`; the flusher the only
/// writer of `durable`. Each store is a release, each load an acquire, so a thread that sees
/// `appended >= n` also sees the bytes of record `n` in the mapping.
pub struct Watermarks {
    appended: AtomicU64,
    durable: AtomicU64,
    active_segment: AtomicU64,
    /// Index of the segment the appender wants prepared next (0: none yet).
    spare_wanted: AtomicU64,
    stopping: AtomicBool,
    failed: AtomicBool,
    snapshotter_stopping: AtomicBool,
    durable_hook: OnceLock<DurableHook>,
    /// The flusher thread, to wake it from its idle park.
    flusher: OnceLock<std::thread::Thread>,
    /// Set by `wake_flusher`: the flusher syncs without pausing and stays in its fast poll
    /// for a while after it.
    wake_requested: AtomicBool,
    /// Sync rounds that advanced the durable watermark.
    sync_rounds: AtomicU64,
    /// Why syncing failed, and whether the sync-failure record reached the disk.
    sync_failure: OnceLock<(String, bool)>,
    /// Milliseconds since the Unix epoch of the first of the current run of failed segment
    /// preparations (0: the last preparation succeeded).
    preparer_failing_since_ms: AtomicU64,
    /// The preparer's last error (cleared on success).
    preparer_error: Mutex<Option<String>>,
    /// Free bytes on the journal's file system when last measured below the warning
    /// threshold (u64::MAX: above it, or not measured).
    free_space_low_bytes: AtomicU64,
    /// Fault injection: how many of the next syncs and preparations fail with EIO.
    injected_sync_failures: AtomicU32,
    injected_prepare_failures: AtomicU32,
}

/// The journal's background threads as the node sees them: whether it can still take
/// orders. A snapshot, taken by [`Watermarks::health`]; cheap (a few atomic loads and one
/// uncontended lock), meant to be polled off the matching loop, e.g. every few ms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalHealth {
    /// A sync failed with this error: the durable watermark is frozen for good and nothing
    /// more will be acknowledged under the fsync policy. The node must stop taking orders
    /// and stop; restarting is refused until an operator runs `keel journal
    /// clear-sync-failure`.
    pub sync_failure: Option<String>,
    /// Whether the sync-failure record reached the disk. If not (the disk failed that write
    /// too), a restart would not know about the failure: the node must stop and must not be
    /// restarted on this journal before the disk is checked.
    pub sync_failure_recorded: bool,
    /// Segment preparation has failed since this time (and is being retried with backoff).
    /// The current segment still takes records; once it is full, appends fail with
    /// [`crate::Error::PreparerFailing`] until a preparation succeeds.
    pub preparer_failing_since: Option<SystemTime>,
    /// The preparer's last error, while it is failing.
    pub preparer_error: Option<String>,
    /// Free space on the journal's file system when last measured, if below the warning
    /// threshold (`JournalConfig::free_space_warn_bytes`).
    pub free_space_low_bytes: Option<u64>,
}

impl JournalHealth {
    /// Whether the journal can still make records durable: no sync failure and no failing
    /// preparer. A low-space warning alone does not count.
    pub fn is_ok(&self) -> bool {
        self.sync_failure.is_none() && self.preparer_failing_since.is_none()
    }
}

impl std::fmt::Debug for Watermarks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watermarks")
            .field("appended", &self.appended())
            .field("durable", &self.durable())
            .field("active_segment", &self.active_segment())
            .field("failed", &self.failed())
            .finish_non_exhaustive()
    }
}

impl Default for Watermarks {
    fn default() -> Self {
        Watermarks {
            appended: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            active_segment: AtomicU64::new(0),
            spare_wanted: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            snapshotter_stopping: AtomicBool::new(false),
            durable_hook: OnceLock::new(),
            flusher: OnceLock::new(),
            wake_requested: AtomicBool::new(false),
            sync_rounds: AtomicU64::new(0),
            sync_failure: OnceLock::new(),
            preparer_failing_since_ms: AtomicU64::new(0),
            preparer_error: Mutex::new(None),
            free_space_low_bytes: AtomicU64::new(u64::MAX),
            injected_sync_failures: AtomicU32::new(0),
            injected_prepare_failures: AtomicU32::new(0),
        }
    }
}

impl Watermarks {
    /// Highest sequence number appended (visible to readers); 0 before the first record.
    #[inline]
    pub fn appended(&self) -> u64 {
        self.appended.load(Ordering::Acquire)
    }

    /// Highest sequence number known to be on stable storage.
    #[inline]
    pub fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// `appended` as its only writer, the appender, sees it: its own last store, so no
    /// ordering is needed (a relaxed load leaves the compiler free around it).
    #[inline]
    pub(crate) fn appended_by_writer(&self) -> u64 {
        self.appended.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn publish_appended(&self, seq: u64) {
        self.appended.store(seq, Ordering::Release);
    }

    pub(crate) fn publish_durable(&self, seq: u64) {
        self.durable.store(seq, Ordering::Release);
        if let Some(hook) = self.durable_hook.get() {
            hook();
        }
    }

    /// Registers a function the flusher calls each time the durable watermark advances (for
    /// example to wake an event loop waiting to release acknowledgements). Only the first
    /// registration takes effect; returns whether this one did.
    pub fn set_durable_hook(&self, hook: DurableHook) -> bool {
        self.durable_hook.set(hook).is_ok()
    }

    /// Wakes the flusher if it is parked after a quiet spell. Whoever is about to append (or
    /// waits for durability) after a pause calls this so the first sync is not late by the
    /// flusher's idle park; under steady flow the flusher polls and this is unnecessary.
    /// It also ends a pause between sync rounds (`JournalConfig::sync_interval_min`): the
    /// next round starts at once. A system call: never from the matching loop.
    pub fn wake_flusher(&self) {
        self.wake_requested.store(true, Ordering::Release);
        if let Some(thread) = self.flusher.get() {
            thread.unpark();
        }
    }

    /// Whether a wake was requested since the last call.
    pub(crate) fn take_wake_request(&self) -> bool {
        self.wake_requested.swap(false, Ordering::AcqRel)
    }

    /// How many sync rounds the flusher has completed that advanced the durable watermark
    /// (each one `fdatasync` per touched segment; the marker-only sync after a quiet spell is
    /// not counted). After reading `durable() >= n`, the count includes the round that made
    /// `n` durable.
    pub fn sync_rounds(&self) -> u64 {
        self.sync_rounds.load(Ordering::Relaxed)
    }

    /// Counts a sync round; called by the flusher before it publishes the round's watermark.
    pub(crate) fn count_sync_round(&self) {
        self.sync_rounds.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_flusher(&self, thread: std::thread::Thread) {
        let _ = self.flusher.set(thread);
    }

    pub(crate) fn active_segment(&self) -> u64 {
        self.active_segment.load(Ordering::Acquire)
    }

    pub(crate) fn set_active_segment(&self, index: u64) {
        self.active_segment.store(index, Ordering::Release);
    }

    pub(crate) fn spare_wanted(&self) -> u64 {
        self.spare_wanted.load(Ordering::Acquire)
    }

    pub(crate) fn want_spare(&self, index: u64) {
        self.spare_wanted.store(index, Ordering::Release);
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Whether syncing failed; the durable watermark no longer advances.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Records that a sync failed (`error`), and whether the sync-failure record reached
    /// the disk; from now on `failed()` is true and the durable watermark never moves.
    pub(crate) fn fail_sync(&self, error: String, recorded: bool) {
        let _ = self.sync_failure.set((error, recorded));
        self.failed.store(true, Ordering::Release);
    }

    /// The health of the journal's background threads (see [`JournalHealth`]).
    pub fn health(&self) -> JournalHealth {
        let since_ms = self.preparer_failing_since_ms.load(Ordering::Acquire);
        let free = self.free_space_low_bytes.load(Ordering::Acquire);
        let (sync_failure, sync_failure_recorded) = match self.sync_failure.get() {
            Some((error, recorded)) => (Some(error.clone()), *recorded),
            None if self.failed() => (Some("sync failed".to_string()), false),
            None => (None, false),
        };
        JournalHealth {
            sync_failure,
            sync_failure_recorded,
            preparer_failing_since: (since_ms != 0)
                .then(|| UNIX_EPOCH + Duration::from_millis(since_ms)),
            preparer_error: self
                .preparer_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            free_space_low_bytes: (free != u64::MAX).then_some(free),
        }
    }

    /// Whether segment preparation is failing (one atomic load; for the appender's roll).
    pub(crate) fn preparer_failing(&self) -> bool {
        self.preparer_failing_since_ms.load(Ordering::Acquire) != 0
    }

    /// The preparer's outcome: `Some(error)` after a failed preparation, `None` after a
    /// successful one.
    pub(crate) fn set_preparer_outcome(&self, error: Option<String>) {
        let mut last = self
            .preparer_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match error {
            Some(error) => {
                if self.preparer_failing_since_ms.load(Ordering::Acquire) == 0 {
                    let now_ms = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(1, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
                    self.preparer_failing_since_ms
                        .store(now_ms.max(1), Ordering::Release);
                }
                *last = Some(error);
            }
            None => {
                self.preparer_failing_since_ms.store(0, Ordering::Release);
                *last = None;
            }
        }
    }

    /// Free space measured on the journal's file system: `Some(bytes)` when below the
    /// warning threshold, `None` when above it.
    pub(crate) fn set_free_space_low(&self, bytes: Option<u64>) {
        self.free_space_low_bytes
            .store(bytes.unwrap_or(u64::MAX), Ordering::Release);
    }

    /// Fault injection for tests and drills: the next `count` syncs of the flusher fail
    /// with EIO, exactly as a failing disk would make them (the failure is recorded and the
    /// journal refuses to open again until cleared). Never called in production.
    #[doc(hidden)]
    pub fn inject_sync_failures(&self, count: u32) {
        self.injected_sync_failures.store(count, Ordering::Release);
    }

    /// Fault injection: the next `count` segment preparations fail with EIO.
    #[doc(hidden)]
    pub fn inject_prepare_failures(&self, count: u32) {
        self.injected_prepare_failures
            .store(count, Ordering::Release);
    }

    /// Consumes one injected sync failure, if any is pending.
    pub(crate) fn take_injected_sync_failure(&self) -> bool {
        take_one(&self.injected_sync_failures)
    }

    /// Consumes one injected preparation failure, if any is pending.
    pub(crate) fn take_injected_prepare_failure(&self) -> bool {
        take_one(&self.injected_prepare_failures)
    }

    pub(crate) fn snapshotter_stopping(&self) -> bool {
        self.snapshotter_stopping.load(Ordering::Acquire)
    }

    pub(crate) fn stop_snapshotter(&self) {
        self.snapshotter_stopping.store(true, Ordering::Release);
    }

    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }
}

/// Decrements `counter` unless it is zero; whether it did.
fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_follows_preparer_outcomes_and_a_sync_failure() {
        let marks = Watermarks::default();
        assert!(marks.health().is_ok());
        assert_eq!(marks.health(), JournalHealth::default());
        marks.set_preparer_outcome(Some("No space left on device".into()));
        let since = marks.health().preparer_failing_since;
        assert!(since.is_some() && marks.preparer_failing() && !marks.health().is_ok());
        // A second failure keeps the time of the first and updates the error.
        marks.set_preparer_outcome(Some("Input/output error".into()));
        let health = marks.health();
        assert_eq!(health.preparer_failing_since, since);
        assert_eq!(health.preparer_error.as_deref(), Some("Input/output error"));
        marks.set_preparer_outcome(None);
        assert!(marks.health().is_ok() && !marks.preparer_failing());
        marks.set_free_space_low(Some(1234));
        assert_eq!(marks.health().free_space_low_bytes, Some(1234));
        assert!(marks.health().is_ok(), "low space alone is a warning");
        marks.fail_sync("EIO".into(), true);
        let health = marks.health();
        assert!(marks.failed() && !health.is_ok() && health.sync_failure_recorded);
        assert_eq!(health.sync_failure.as_deref(), Some("EIO"));
    }

    #[test]
    fn injected_failures_are_consumed_one_by_one() {
        let marks = Watermarks::default();
        assert!(!marks.take_injected_sync_failure());
        marks.inject_sync_failures(2);
        assert!(marks.take_injected_sync_failure());
        assert!(marks.take_injected_sync_failure());
        assert!(!marks.take_injected_sync_failure());
        marks.inject_prepare_failures(1);
        assert!(marks.take_injected_prepare_failure());
        assert!(!marks.take_injected_prepare_failure());
    }
}
