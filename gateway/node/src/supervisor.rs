//! Supervision: no zombie nodes.
//!
//! A node whose matching loop, journal or replication has stopped must not stay up: clients
//! would keep sending orders nobody answers, and a cluster leader would keep heartbeating so
//! that no other node is elected. So every long-lived thread of the node reports its end to
//! one process-wide [`Latch`]: an error it returns, a panic (the [`install_panic_hook`]
//! hook names the thread), or the journal's failed sync (seen by the threads that watch the
//! journal). The first fault trips the latch; every loop of the node checks it:
//!
//! - the gateway stops reading, releases what is already acknowledged (never more), tells
//!   every logged-in client End of Session and closes;
//! - the matching loop stops before it appends or matches anything else;
//! - a cluster node's replication loop returns, so the process exits and stops
//!   heartbeating: the followers elect another leader within an election timeout;
//! - the process exits with one line on standard error naming the thread and the error, and
//!   the status of the fault's kind ([`EXIT_THREAD_FAILED`], [`EXIT_JOURNAL_FAILED`]).
//!
//! If that orderly stop does not finish within [`ORDERLY_STOP_MAX`] (a thread stuck in a
//! system call on a dead disk, say), a watchdog started by the first fault prints the same
//! line and exits the process regardless. Restarting recovers from the journal like any
//! other restart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use mio::Waker;

/// Exit status of a node one of whose threads died or failed (a panic, an internal error,
/// a thread that ended on its own): `EX_SOFTWARE` of sysexits.h.
pub const EXIT_THREAD_FAILED: u8 = 70;
/// Exit status of a node whose journal failed (an append, a segment's preparation or a
/// sync: a full disk, an I/O error): `EX_IOERR` of sysexits.h.
pub const EXIT_JOURNAL_FAILED: u8 = 74;
/// How long the orderly stop after a fault may take before the watchdog exits the process.
pub const ORDERLY_STOP_MAX: Duration = Duration::from_secs(3);

/// What kind of fault stopped the node; decides the exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The journal cannot take or keep records: nothing more can be acknowledged.
    Journal,
    /// A thread panicked, failed or ended on its own.
    Thread,
}

/// The fault that stopped the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The thread (or its role, e.g. `keel-gateway` for the main thread of a single node).
    pub thread: String,
    /// Its kind.
    pub kind: FaultKind,
    /// What happened, one line.
    pub message: String,
}

impl Fault {
    /// A fault of `kind` in `thread`.
    pub fn new(thread: &str, kind: FaultKind, message: impl Into<String>) -> Fault {
        Fault {
            thread: thread.to_string(),
            kind,
            // One line on standard error, whatever the error's text holds.
            message: message.into().replace('\n', " "),
        }
    }

    /// `thread` returned `error`: a journal error is a journal fault, anything else a
    /// thread fault.
    pub fn from_error(thread: &str, error: &crate::Error) -> Fault {
        let kind = match error {
            crate::Error::Fatal(fault) => return fault.clone(),
            crate::Error::Journal(_) | crate::Error::JournalClose(_) => FaultKind::Journal,
            _ => FaultKind::Thread,
        };
        Fault::new(thread, kind, error_chain(error))
    }

    /// The process's exit status for this fault.
    pub fn exit_status(&self) -> u8 {
        match self.kind {
            FaultKind::Journal => EXIT_JOURNAL_FAILED,
            FaultKind::Thread => EXIT_THREAD_FAILED,
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.kind {
            FaultKind::Journal => "journal failure",
            FaultKind::Thread => "thread failure",
        };
        write!(f, "{what} in thread {}: {}", self.thread, self.message)
    }
}

/// An error and its sources, on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Tripped once, by the first fault; read by every loop of the node.
pub struct Latch {
    tripped: AtomicBool,
    fault: OnceLock<Fault>,
    /// Event loops to wake when the latch trips (the gateway's poll).
    wakers: Mutex<Vec<Arc<Waker>>>,
    /// The watchdog's deadline: `None` for a latch that must not end the process (tests).
    exit_after: Option<Duration>,
}

impl Latch {
    /// An open latch; once tripped, the process exits after `exit_after` unless it has
    /// exited already (`None`: never; for tests).
    pub const fn new(exit_after: Option<Duration>) -> Latch {
        Latch {
            tripped: AtomicBool::new(false),
            fault: OnceLock::new(),
            wakers: Mutex::new(Vec::new()),
            exit_after,
        }
    }

    /// Records `fault` if it is the first; returns whether it was. Wakes the registered
    /// event loops and starts the watchdog. Later faults are only logged (they are usually
    /// consequences of the first).
    pub fn trip(&self, fault: Fault) -> bool {
        if self.fault.set(fault.clone()).is_err() {
            // The first fault reported again on its way out (a thread's error passed up to
            // the thread that joins it) is not news.
            if self.fault.get() != Some(&fault) {
                tracing::warn!(%fault, "further fault while stopping");
            }
            return false;
        }
        self.tripped.store(true, Ordering::Release);
        if let Ok(wakers) = self.wakers.lock() {
            for waker in wakers.iter() {
                let _ = waker.wake();
            }
        }
        // The watchdog before the log line: logging takes the standard error lock, which a
        // thread stopped in a panic could hold.
        if let Some(grace) = self.exit_after {
            start_watchdog(grace, fault.clone());
        }
        tracing::error!(%fault, "fatal: stopping the node");
        true
    }

    /// Whether a fault has tripped the latch. One atomic load: cheap enough for the
    /// matching loop to check per command.
    #[inline]
    pub fn is_tripped(&self) -> bool {
        self.tripped.load(Ordering::Acquire)
    }

    /// The first fault, once tripped.
    pub fn fault(&self) -> Option<&Fault> {
        self.fault.get()
    }

    /// Wakes `waker` when the latch trips (at once if it has tripped already).
    pub fn register_waker(&self, waker: Arc<Waker>) {
        if let Ok(mut wakers) = self.wakers.lock() {
            wakers.push(waker.clone());
        }
        if self.is_tripped() {
            let _ = waker.wake();
        }
    }
}

/// Ends the process `grace` after the fault if the orderly stop has not done so: a node
/// that cannot stop cleanly still must not stay up.
fn start_watchdog(grace: Duration, fault: Fault) {
    let reported = fault.clone();
    let started = std::thread::Builder::new()
        .name("keel-watchdog".into())
        .spawn(move || {
            std::thread::sleep(grace);
            write_stderr(&format!(
                "keel serve: fatal: {fault} (the orderly stop took longer than {} ms; exiting; \
                 exit status {})\n",
                grace.as_millis(),
                fault.exit_status()
            ));
            std::process::exit(i32::from(fault.exit_status()));
        });
    if started.is_err() {
        // No thread for the watchdog: stop now rather than risk hanging.
        write_stderr(&format!(
            "keel serve: fatal: {reported} (no watchdog thread; exiting; exit status {})\n",
            reported.exit_status()
        ));
        std::process::exit(i32::from(reported.exit_status()));
    }
}

/// Writes `text` to file descriptor 2 directly, without the standard error lock (a thread
/// stopped in a panic, or stuck, may hold it: the last words must not wait for it).
pub fn write_stderr(text: &str) {
    let mut bytes = text.as_bytes();
    while !bytes.is_empty() {
        // SAFETY: write(2) reads `bytes.len()` bytes from a live slice; no memory is written.
        let written = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
        let Ok(written) = usize::try_from(written) else {
            return;
        };
        if written == 0 {
            return;
        }
        bytes = &bytes[written.min(bytes.len())..];
    }
}

/// The node's latch (one node per process).
static NODE: Latch = Latch::new(Some(ORDERLY_STOP_MAX));

/// The node's latch.
#[inline]
pub fn node() -> &'static Latch {
    &NODE
}

thread_local! {
    /// The role this thread plays when its name does not say it (the main thread).
    static ROLE: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

/// Names the calling thread's role for fault messages (the main thread serves as the
/// single node's gateway or the cluster node's replication loop).
pub fn set_role(role: &'static str) {
    ROLE.with(|cell| cell.set(Some(role)));
}

/// The calling thread's role, or its name.
pub fn current_thread() -> String {
    ROLE.with(std::cell::Cell::get).map_or_else(
        || {
            std::thread::current()
                .name()
                .unwrap_or("unnamed")
                .to_string()
        },
        str::to_string,
    )
}

/// Installs (once) a panic hook that trips the node's latch with the panicking thread's
/// name and message, after the default report. In a build that unwinds (tests), the thread
/// then ends and the node stops in order. In a build that aborts on panic (release), the
/// abort is held off: the main thread exits at once (nobody else would stop the node in
/// order), any other thread waits for the orderly stop or the watchdog to end the process,
/// so that clients are told End of Session either way.
pub fn install_panic_hook() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            let thread = current_thread();
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            let location = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let fault = Fault::new(
                &thread,
                FaultKind::Thread,
                format!("panicked{location}: {message}"),
            );
            node().trip(fault.clone());
            hold_off_abort(&fault);
        }));
    });
}

#[cfg(panic = "abort")]
fn hold_off_abort(fault: &Fault) {
    if ROLE.with(std::cell::Cell::get).is_some() {
        write_stderr(&format!(
            "keel serve: fatal: {fault} (exit status {})\n",
            fault.exit_status()
        ));
        std::process::exit(i32::from(fault.exit_status()));
    }
    loop {
        std::thread::park();
    }
}

#[cfg(not(panic = "abort"))]
fn hold_off_abort(_: &Fault) {}

/// Waits up to `timeout` for `thread` to finish; joins it if it did. A thread stuck after a
/// fault is left behind (the process is about to exit), never waited for without bound.
pub fn join_within<T>(
    thread: std::thread::JoinHandle<T>,
    timeout: Duration,
) -> Option<std::thread::Result<T>> {
    let deadline = std::time::Instant::now() + timeout;
    while !thread.is_finished() {
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Some(thread.join())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_fault_wins_and_sets_the_status() {
        let latch = Latch::new(None);
        assert!(!latch.is_tripped());
        assert!(latch.fault().is_none());
        let journal = Fault::new("keel-matching", FaultKind::Journal, "disk\nfull");
        assert!(latch.trip(journal.clone()));
        assert!(!latch.trip(Fault::new("keel-gateway", FaultKind::Thread, "later")));
        assert!(latch.is_tripped());
        assert_eq!(latch.fault(), Some(&journal));
        assert_eq!(journal.exit_status(), EXIT_JOURNAL_FAILED);
        assert_eq!(
            journal.to_string(),
            "journal failure in thread keel-matching: disk full"
        );
        let thread = Fault::new("keel-leader", FaultKind::Thread, "ended");
        assert_eq!(thread.exit_status(), EXIT_THREAD_FAILED);
    }

    /// Run as a child process by the test below: trips a latch whose orderly stop never
    /// comes. Does nothing in a normal test run.
    #[test]
    fn watchdog_child() {
        if std::env::var_os("KEEL_WATCHDOG_CHILD").is_none() {
            return;
        }
        static LATCH: Latch = Latch::new(Some(Duration::from_millis(100)));
        LATCH.trip(Fault::new("keel-test", FaultKind::Journal, "stuck"));
        // The orderly stop hangs: only the watchdog can end the process.
        std::thread::sleep(Duration::from_secs(60));
        panic!("the watchdog did not end the process");
    }

    #[test]
    fn the_watchdog_ends_a_process_whose_orderly_stop_hangs() {
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "supervisor::tests::watchdog_child",
                "--nocapture",
            ])
            .env("KEEL_WATCHDOG_CHILD", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(74), "{stderr}");
        assert!(
            stderr.contains(
                "keel serve: fatal: journal failure in thread keel-test: stuck (the orderly stop"
            ),
            "{stderr}"
        );
    }

    #[test]
    fn errors_are_classified_by_their_source() {
        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device");
        let journal = crate::Error::Journal(keel_journal::Error::Io(io));
        let fault = Fault::from_error("keel-matching", &journal);
        assert_eq!(fault.kind, FaultKind::Journal);
        assert!(fault.message.contains("No space left"), "{}", fault.message);
        let node = crate::Error::Node("gateway thread stopped".into());
        assert_eq!(
            Fault::from_error("keel-matching", &node).kind,
            FaultKind::Thread
        );
        let fatal = crate::Error::Fatal(Fault::new("keel-journal-sync", FaultKind::Journal, "x"));
        assert_eq!(
            Fault::from_error("keel-leader", &fatal).thread,
            "keel-journal-sync"
        );
    }
}
