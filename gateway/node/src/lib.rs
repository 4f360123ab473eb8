//! Keel's node: what `keel serve` runs, and the `keel replay` contract.
//!
//! The running node is the gateway I/O thread, the matching loop on its pinned core, and
//! the journal's threads, wired with bounded queues ([`run`]):
//!
//! ```text
//!  clients ─SoupBinTCP/OUCH─▶ I/O thread (mio) ──envelopes──▶ matching loop (pinned core)
//!                              ▲   SessionBook                 journal append, engine
//!                              └──────── events, Done{seq} ◀───┘
//!  flusher (io_uring fdatasync) ── durable watermark ──▶ wakes the I/O thread, which
//!  releases each response once its input is acknowledged (durable under `fsync`).
//! ```
//!
//! The modules: [`config`] (the node's TOML configuration and password hashes),
//! [`sessions`] (SoupBinTCP sessions and OUCH ↔ engine translation), [`server`] (the
//! order-entry I/O thread), [`matching`] (the matching loop), [`startup`] (journal recovery
//! and the node's clock), [`cluster`] (a Raft cluster node's replication I/O),
//! [`local_cluster`] (`keel cluster`: a demo cluster of `keel serve` processes on loopback),
//! [`supervisor`] (no zombie nodes: the first fault of any thread stops the whole node),
//! [`limits`] (the open-file limit against the configured capacity)
//! and [`replay`] (the `keel replay` JSON-lines contract). The wire codecs are
//! `keel-protocol`; the client library is `keel-client`.
#![deny(missing_docs)]

mod admission;
mod auth;
mod chunked;
pub mod cluster;
pub mod config;
mod error;
mod fault;
pub mod limits;
pub mod local_cluster;
pub mod matching;
pub mod replay;
pub mod rules;
pub mod server;
pub mod sessions;
pub mod startup;
pub mod supervisor;
mod throttle;
mod ticket;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use keel_engine::Event;
use keel_journal::envelope::Envelope;
use mio::net::TcpListener;
use mio::Poll;

use crate::config::Config;
pub use error::Error;
use keel_protocol::soupbin::SessionId;
use matching::MatchingLoop;
use server::{Server, ServerParts};
use sessions::SessionBook;
use startup::RecordSink;

/// Capacity of the queue into the matching loop (above `server::INPUTS_IN_FLIGHT_MAX`).
const MATCHING_INPUTS_QUEUED_MAX: usize = 32 * 1024;
/// Capacity of the queue out of the matching loop: events plus one `Done` per input. Sized
/// so a full in-flight window of sweeping orders fits without the loop ever waiting.
const MATCHING_OUTCOMES_QUEUED_MAX: usize = 1 << 20;

struct Replay<'a>(&'a mut SessionBook);

impl RecordSink for Replay<'_> {
    fn record(&mut self, seq: u64, envelope: &Envelope, events: &[Event]) {
        self.0.replay(seq, envelope, events);
    }
}

/// What the node chose at start, for the operator.
#[derive(Debug)]
pub struct StartInfo {
    /// Listening address.
    pub listen: std::net::SocketAddr,
    /// SoupBinTCP session name.
    pub session: String,
    /// Core of the matching loop, if pinned.
    pub matching_core: Option<usize>,
    /// Records recovered from the journal.
    pub recovered_records: u64,
}

/// Runs a node until `shutdown` is set. `started` is called once the node listens.
///
/// Returns [`Error::Fatal`] if the node stopped on a fault (see [`supervisor`]); the caller
/// should exit with the fault's status. Panics of the node's threads are reported the same
/// way ([`supervisor::install_panic_hook`], installed here); a panic of the calling thread
/// still unwinds out of this function, and [`supervisor::node`] then holds its fault.
pub fn run(
    config: &Config,
    shutdown: &AtomicBool,
    started: impl FnOnce(&StartInfo),
) -> Result<(), Error> {
    supervisor::install_panic_hook();
    fault::announce();
    limits::ensure_open_files(config)?;
    if config.cluster.is_some() {
        supervisor::set_role(cluster::THREAD);
        return cluster::run(config, shutdown, started);
    }
    supervisor::set_role(server::THREAD);
    let core = matching_core(config);
    // Before any thread exists: every thread of the node (and the kernel's io_uring workers,
    // which inherit the mask) stays off the matching core; only the matching loop pins
    // itself there. Otherwise the scheduler spills I/O work onto that core and preempts
    // the loop thousands of times a second under load.
    if let Some(core) = core {
        keep_off_core(core);
    }
    let mut book = SessionBook::new(config)?;
    let recovered = startup::recover(config, &mut Replay(&mut book))?;
    serve(config, recovered, book, core, shutdown, None, started)
}

/// The matching core: configured, or the last one.
fn matching_core(config: &Config) -> Option<usize> {
    config
        .server
        .matching_core
        .or_else(|| core_affinity::get_core_ids().and_then(|ids| ids.iter().map(|id| id.id).max()))
}

/// The SoupBinTCP session name: configured, or made from the session's start time.
fn session_of(config: &Config, session_start_ns: u64) -> Result<(String, SessionId), Error> {
    let session = match &config.server.session {
        Some(name) => name.clone(),
        None => default_session_name(session_start_ns),
    };
    let session_id =
        SessionId::new(&session).map_err(|e| Error::Config(format!("server.session: {e}")))?;
    Ok((session, session_id))
}

/// Serves order entry from a recovered journal, engine and sessions until `shutdown` is set:
/// the matching loop on its core, the gateway on this thread.
fn serve(
    config: &Config,
    recovered: startup::Recovered,
    book: SessionBook,
    core: Option<usize>,
    shutdown: &AtomicBool,
    cluster: Option<server::ClusterLink>,
    started: impl FnOnce(&StartInfo),
) -> Result<(), Error> {
    let (session, session_id) = session_of(config, recovered.session_start_ns)?;
    let poll = Poll::new()?;
    let waker = server::waker(&poll)?;
    if let Some(link) = &cluster {
        let _ = link.waker.set(waker.clone());
    }
    supervisor::node().register_waker(waker.clone());
    let marks = recovered.journal.watermarks().clone();
    let durable_waker = waker.clone();
    marks.set_durable_hook(Box::new(move || {
        let _ = durable_waker.wake();
    }));
    let listener = TcpListener::bind(config.server.listen)?;
    widen_listen_backlog(std::os::fd::AsRawFd::as_raw_fd(&listener), "order entry");
    let listen = listener.local_addr()?;
    let (inbound_tx, inbound_rx) = crossbeam_channel::bounded(MATCHING_INPUTS_QUEUED_MAX);
    let (outcome_tx, outcome_rx) = crossbeam_channel::bounded(MATCHING_OUTCOMES_QUEUED_MAX);
    let logins = auth::LoginChecker::start(config.login_threads(), waker)?;
    let stop = Arc::new(AtomicBool::new(false));
    let matching = MatchingLoop {
        engine: recovered.engine,
        journal: recovered.journal,
        inbound: inbound_rx,
        outbound: outcome_tx,
        stop: stop.clone(),
        core,
    }
    .spawn()?;
    let mut server = Server::new(ServerParts {
        listener,
        poll,
        session: session_id,
        book,
        hashes: config.password_hashes(),
        throttles: config.throttles(),
        default_throttle: config.default_throttle(),
        inbound: inbound_tx,
        outcomes: outcome_rx,
        marks,
        durability: config.server.durability.journal(),
        last_seq: recovered.last_seq,
        logins,
        tickets: ticket_key(config),
        outbound_limit_bytes: config.server.outbound_buffer_bytes,
        cluster,
        connections_per_source_max: config.server.connections_per_source_max,
        login_deadline: Duration::from_millis(config.server.login_deadline_ms),
    })?;
    started(&StartInfo {
        listen,
        session,
        matching_core: core,
        recovered_records: recovered.last_seq,
    });
    let served = server.run(shutdown);
    drop(server);
    stop.store(true, std::sync::atomic::Ordering::Release);
    join_serving_threads(served, matching)
}

/// Joins the matching loop once the gateway has returned (`served`; the password checkers
/// were joined when the server dropped them). After a fault the join is bounded and the
/// fault is the result.
fn join_serving_threads(
    served: std::io::Result<()>,
    matching: std::thread::JoinHandle<Result<keel_engine::Engine, Error>>,
) -> Result<(), Error> {
    let latch = supervisor::node();
    if let Err(error) = &served {
        latch.trip(supervisor::Fault::new(
            &supervisor::current_thread(),
            supervisor::FaultKind::Thread,
            format!("gateway I/O failed: {error}"),
        ));
    }
    if let Some(fault) = latch.fault() {
        // The matching thread may be stuck (e.g. in a system call on a failing disk): give
        // it a moment to let go of the journal, never more.
        let _ = supervisor::join_within(matching, Duration::from_secs(1));
        return Err(Error::Fatal(fault.clone()));
    }
    let engine = matching
        .join()
        .map_err(|_| Error::Node("matching loop panicked".into()))?;
    served?;
    engine.map(|_| ())
}

/// The resumption ticket key: derived from the cluster secret (the same on every node, so
/// nothing needs replicating), or random for a single node; `None` when tickets are off.
fn ticket_key(config: &Config) -> Option<ticket::TicketKey> {
    let ttl_s = config.server.resume_ticket_ttl_s;
    match &config.cluster {
        Some(cluster) => ticket::TicketKey::from_secret(cluster.secret.as_bytes(), ttl_s),
        None => ticket::TicketKey::random(ttl_s),
    }
}

/// Restricts the calling thread (and so every thread it starts afterwards) to all online
/// cores but `core`. With a single core there is nothing to keep off, and nothing is done.
fn keep_off_core(core: usize) {
    let Some(ids) = core_affinity::get_core_ids() else {
        return;
    };
    let others: Vec<usize> = ids
        .iter()
        .map(|id| id.id)
        .filter(|&id| id != core)
        .collect();
    if others.is_empty() {
        return;
    }
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write inside it, and
    // sched_setaffinity(0, ..) reads it for the calling thread.
    let applied = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        for id in &others {
            libc::CPU_SET(*id, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    };
    if applied {
        tracing::info!(matching_core = core, other_cores = ?others, "node threads kept off the matching core");
    } else {
        tracing::warn!(
            matching_core = core,
            "could not keep node threads off the matching core"
        );
    }
}

/// `KEEL` and the session's start date as `YYMMDD` (UTC).
fn default_session_name(start_ns: u64) -> String {
    let days = i64::try_from(start_ns / 86_400_000_000_000).unwrap_or(0);
    let (year, month, day) = civil_from_days(days);
    format!("KEEL{:02}{:02}{:02}", year % 100, month, day)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Connections the kernel queues on an order-entry port before the node accepts them. After
/// a failover every session of the old leader connects at once, to the new leader and to
/// the followers' doors; connections beyond the backlog are dropped at the SYN, and the
/// clients' kernels retry only 1 s, 3 s and 7 s later (seen: half of 1,000 sessions came
/// back a second late with mio's 1,024). Linux caps it at `net.core.somaxconn` (4,096 by
/// default since 5.4).
const LISTEN_BACKLOG: libc::c_int = 8192;

/// Raises the listen backlog of the listening socket `fd` to [`LISTEN_BACKLOG`] (Linux takes
/// a second `listen` as a new backlog). On failure the socket keeps its backlog.
pub(crate) fn widen_listen_backlog(fd: std::os::fd::RawFd, what: &str) {
    // SAFETY: listen(2) on a file descriptor of a socket the caller owns and that is bound,
    // with a plain integer.
    let status = unsafe { libc::listen(fd, LISTEN_BACKLOG) };
    if status != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), what, "cannot widen the listen backlog");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_carry_the_utc_date() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_413), (2025, 11, 21));
        assert_eq!(
            default_session_name(1_763_683_200_000_000_000),
            "KEEL251121"
        );
    }
}
