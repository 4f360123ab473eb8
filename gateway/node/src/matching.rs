//! The matching loop: the only writer of engine state, on its own pinned core.
//!
//! For each node input, in arrival order: append it to the journal (its position there is its
//! sequence number), apply its engine command, and pass the events back to the gateway,
//! followed by a `Done` carrying the sequence number. No lock, no system call, no allocation
//! per command: the queues are bounded arrays, the journal append is a copy into a mapping,
//! and the events buffer is reused. The gateway — not this loop — waits for durability
//! before releasing anything to a client.
//!
//! The loop stops at the first fault, its own or another thread's (the node's
//! [`supervisor`](crate::supervisor) latch, one atomic load per input): an append error,
//! a failed journal sync, or any other thread's end. It then journals and matches nothing
//! more: an order it cannot journal durably must not trade.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use keel_engine::{Engine, Event};
use keel_journal::envelope::Envelope;
use keel_journal::Journal;

use crate::supervisor::{self, Fault, FaultKind};

/// The matching thread's name (and the name its faults carry).
pub const THREAD: &str = "keel-matching";
/// The journal flusher's thread name, named in the fault when its sync failed.
const FLUSHER_THREAD: &str = "keel-journal-sync";

/// What the matching loop reports for each input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// One event of the current input.
    Event(Event),
    /// The current input is journaled under this sequence number and fully applied.
    Done {
        /// Its journal sequence number.
        seq: u64,
    },
}

/// How long the loop spins on an empty queue before it starts to sleep briefly. Under any
/// real flow it never sleeps; after this much silence it stops burning its core.
const SPIN_BEFORE_SLEEP: Duration = Duration::from_millis(100);
/// The idle sleep (with the thread's timer slack cut to 1 µs, so it is about this long);
/// bounds the latency of the first command after a quiet period.
const IDLE_SLEEP: Duration = Duration::from_micros(20);

/// The fault of an append that failed (a full disk, an I/O error: the next segment could
/// not be prepared, or the preparer is gone). The input was not journaled.
fn append_failed(error: keel_journal::Error) -> crate::Error {
    let mut message = format!("cannot append to the journal: {error}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    crate::Error::Fatal(Fault::new(THREAD, FaultKind::Journal, message))
}

/// The fault of a journal whose sync failed.
fn flusher_failed() -> crate::Error {
    crate::Error::Fatal(Fault::new(
        FLUSHER_THREAD,
        FaultKind::Journal,
        "journal sync failed; the durable watermark is frozen",
    ))
}

/// Everything the matching thread owns.
pub struct MatchingLoop {
    /// The engine, recovered from the journal.
    pub engine: Engine,
    /// The journal; only this thread appends.
    pub journal: Journal,
    /// Inputs from the gateway.
    pub inbound: Receiver<Envelope>,
    /// Events and completions back to the gateway.
    pub outbound: Sender<Outcome>,
    /// Set by the node to stop the loop once the inbound queue is drained.
    pub stop: Arc<AtomicBool>,
    /// Core to pin to, if any.
    pub core: Option<usize>,
}

impl MatchingLoop {
    /// Runs the loop on a new thread named [`THREAD`] ([`MatchingLoop::run`]); an error
    /// it ends with trips the node's latch.
    pub fn spawn(self) -> std::io::Result<std::thread::JoinHandle<Result<Engine, crate::Error>>> {
        std::thread::Builder::new()
            .name(THREAD.into())
            .spawn(move || self.run())
    }

    /// Runs until stopped, then syncs and closes the journal. Returns the engine. Ends with
    /// an error at the first fault (see the module's documentation), leaving the journal
    /// unsynced: whatever it holds beyond the durable watermark was never acknowledged. The
    /// error trips the node's latch before the journal is dropped (dropping it joins the
    /// journal's threads, which a failing disk can hold up).
    pub fn run(mut self) -> Result<Engine, crate::Error> {
        self.pin();
        keel_journal::threads::reduce_timer_slack();
        if let Err(error) = self.serve_inputs() {
            supervisor::node().trip(Fault::from_error(THREAD, &error));
            return Err(error);
        }
        self.journal.close()?;
        Ok(self.engine)
    }

    /// The loop itself: until stopped, or the first fault.
    fn serve_inputs(&mut self) -> Result<(), crate::Error> {
        let mut events: Vec<Event> = Vec::with_capacity(4096);
        let mut idle_since: Option<Instant> = None;
        loop {
            match self.inbound.try_recv() {
                Ok(envelope) => {
                    idle_since = None;
                    self.check_health()?;
                    Self::injected_faults()?;
                    let seq = self
                        .journal
                        .appender()
                        .append_envelope(&envelope)
                        .map_err(append_failed)?;
                    events.clear();
                    if let Some(command) = &envelope.command {
                        self.engine.process(command, &mut events);
                    }
                    let handed = events.iter().all(|event| self.send(Outcome::Event(*event)))
                        && self.send(Outcome::Done { seq });
                    if !handed {
                        // The gateway returned: a stop that gave up waiting for answers (a
                        // gateway that failed has tripped the latch already). Not a fault:
                        // the journal is closed as in any stop; the unanswered inputs are
                        // journaled and their answers are in the streams after a restart.
                        tracing::warn!(
                            seq,
                            "the gateway stopped with inputs unanswered; matching loop stops"
                        );
                        return Ok(());
                    }
                }
                Err(TryRecvError::Empty) => {
                    self.check_health()?;
                    if self.stop.load(Ordering::Acquire) {
                        return Ok(());
                    }
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    if since.elapsed() < SPIN_BEFORE_SLEEP {
                        std::hint::spin_loop();
                    } else {
                        std::thread::sleep(IDLE_SLEEP);
                    }
                }
                Err(TryRecvError::Disconnected) => return Ok(()),
            }
        }
    }

    /// Fails if the node is stopping on a fault, or the journal can no longer make records
    /// durable (its flusher's sync failed: the durable watermark is frozen, so nothing
    /// matched from now on could be acknowledged). Two atomic loads.
    #[inline]
    fn check_health(&self) -> Result<(), crate::Error> {
        if let Some(fault) = supervisor::node().fault() {
            return Err(crate::Error::Fatal(fault.clone()));
        }
        if self.journal.watermarks().failed() {
            return Err(flusher_failed());
        }
        Ok(())
    }

    /// The test seam (feature `fault-injection`; nothing otherwise): this thread fails, or
    /// the flusher is taken to have failed.
    #[inline]
    fn injected_faults() -> Result<(), crate::Error> {
        crate::fault::check("flusher").map_err(|_| flusher_failed())?;
        crate::fault::check("matching")
    }

    /// Hands an outcome to the gateway; false if the gateway is gone. The queue is sized so
    /// that it is never full in normal operation; if the gateway thread stalls, this waits
    /// rather than drop an event (dropping would desynchronise the sessions from the
    /// journal).
    #[inline]
    fn send(&self, outcome: Outcome) -> bool {
        self.outbound.send(outcome).is_ok()
    }

    fn pin(&self) {
        let Some(core) = self.core else {
            tracing::info!("matching loop not pinned");
            return;
        };
        // By id, not by looking it up among this thread's allowed cores: the node keeps its
        // other threads (this one's parent included) off this very core.
        let pinned = core_affinity::set_for_current(core_affinity::CoreId { id: core });
        if pinned {
            tracing::info!(core, "matching loop pinned");
        } else {
            tracing::warn!(core, "could not pin the matching loop to this core");
        }
    }
}
