//! Scheduling settings for the node's threads (Linux), shared by the journal's own threads
//! and the node's. Failures are ignored: a thread then just keeps the defaults.

/// Lets short sleeps of the calling thread end within microseconds instead of the default
/// 50 µs timer slack (for the flusher's and the matching loop's idle polling).
pub fn reduce_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and affects only this thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
}

/// Runs the calling thread at the lowest scheduling priority (nice 19), for bulk or
/// deliberately expensive work (segment preparation, password checks) that must never
/// compete with the threads serving orders.
pub fn lower_priority() {
    // SAFETY: setpriority on the calling thread (who = 0) with a constant.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
}
