//! Sequence-number watermarks shared between the appender and the threads that follow it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

/// Called by the flusher after the durable watermark advances (off the hot path).
pub type DurableHook = Box<dyn Fn() + Send + Sync>;

/// Progress of the journal, readable from any thread without locks.
///
/// The appender is the only writer of `appended` and `active_segment`; the flusher the only
/// writer of `durable`. Each store is a release, each load an acquire, so a thread that sees
/// `appended >= n` also sees the bytes of record `n` in the mapping.
#[derive(Default)]
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
}

impl std::fmt::Debug for Watermarks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watermarks")
            .field("appended", &self.appended())
            .field("durable", &self.durable())
            .field("active_segment", &self.active_segment())
            .finish_non_exhaustive()
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

    pub(crate) fn fail(&self) {
        self.failed.store(true, Ordering::Release);
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
