//! The open-loop load generator: one thread, many SoupBinTCP sessions, no busy waiting.
//!
//! Message `i` of a run has the intended send time `t0 + i / R`. The thread sleeps in
//! `epoll_wait` on the sessions' sockets and a `timerfd` armed for the next intended send
//! time (nanosecond deadline, no timer slack), so it wakes either to send what is due or
//! to read responses. When it wakes late, or has fallen behind, it sends everything that is
//! due at once (batched per session into one `write`), so the offered load never depends
//! on the server's responses: a slow server cannot slow the generator down and hide its
//! own queueing (no coordinated omission). Every latency is measured from the intended send
//! time; the gap between intended and actual send time (the *send lag*) is reported on its
//! own, so a generator that could not keep up is visible as such.
//!
//! Latencies recorded (messages whose intended time falls in the measured window, i.e.
//! after the warm-up):
//! - **accepted**: Enter Order → Order Accepted (every new order, resting or IOC);
//! - **executed**: crossing IOC Enter Order → its first Order Executed;
//! - **canceled**: Cancel Order → Order Canceled.
//!
//! Order Accepted carries the gateway's arrival timestamp for the order (real-time clock,
//! nanoseconds since midnight, taken when the I/O thread decoded it), which splits the
//! accepted latency into an *inbound* leg (actual send → gateway intake) and an *outbound*
//! leg (gateway intake → Order Accepted read by the generator); both clocks are this
//! machine's, so the split is exact to within clock-read costs.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use keel_protocol::ouch::{
    CancelReason, LiquidityFlag, OrderAccepted, OrderCanceled, OrderExecuted, OutboundMessage,
};
use keel_protocol::soupbin::{
    packet_type, ClientPacket, FrameDecoder, LoginRequest, Password, ServerPacket, SessionId,
    SERVER_PACKET_BYTES_MAX_DEFAULT as DEFAULT_MAX_SERVER_PACKET_LEN,
};
use keel_protocol::{OrderToken, ProtocolError, Stock, Username};
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::flow::{Encoder, Kind, Mix, Rng, Tokens, TOKEN_LEN};
use crate::recorder::Recorder;
use crate::sys::{self, ThreadTimes, TimerFd};

const TIMER: Token = Token(usize::MAX - 1);
const NS_PER_S: u64 = 1_000_000_000;
const NS_PER_DAY: u64 = 86_400 * NS_PER_S;
/// Most messages emitted before the loop looks at the sockets again.
const MAX_BATCH: u64 = 4096;
/// A client heartbeat goes out on a session idle this long (the server drops at 15 s).
const HEARTBEAT_NS: u64 = NS_PER_S;
/// Per-session read buffer.
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// Per-message state bits (low nibble: [`Kind`]).
const ANSWERED: u8 = 0x10;
const EXECUTED: u8 = 0x20;
/// Worst latencies kept per run.
const WORST_KEPT: usize = 10;
/// A cancel whose order was filled completely while the cancel was in flight.
const MOOT: u8 = 0x40;

/// What one run does.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Offered messages per second, all sessions together.
    pub rate: f64,
    /// Warm-up before the measured window (sent, not recorded).
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// How long to wait for outstanding responses after the last send.
    pub drain_timeout: Duration,
    /// The order flow.
    pub mix: Mix,
    /// The instrument's OUCH symbol.
    pub stock: Stock,
    /// Seeds the per-session generators and the token prefix.
    pub seed: u64,
    /// Process whose threads' CPU time is sampled over the measured window, if any.
    pub server_pid: Option<u32>,
    /// The other members of a cluster (followers): their threads' CPU time is sampled too
    /// and reported as process `follower`, not lumped into the rest of the machine.
    pub follower_pids: Vec<u32>,
    /// Minimum interval between two sending wake-ups (0: wake for every message's
    /// intended time). A tick batches messages (fewer system calls per message on both
    /// sides) at the cost of up to one tick of send lag, which the latencies include.
    pub tick: Duration,
    /// Pin every thread of the server but its matching loop to these cores (after login,
    /// and again just before the measured window, for threads started meanwhile).
    pub pin_server_threads: Option<Vec<usize>>,
}

/// Where and as whom to connect.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Gateway address.
    pub addr: SocketAddr,
    /// `(username, password)` per session.
    pub users: Vec<(String, String)>,
}

/// Summary of one latency histogram, in microseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Mean.
    #[serde(deserialize_with = "crate::json::f64")]
    pub mean_us: f64,
    /// Percentiles.
    #[serde(deserialize_with = "crate::json::f64")]
    pub p50_us: f64,
    /// 99th percentile.
    #[serde(deserialize_with = "crate::json::f64")]
    pub p99_us: f64,
    /// 99.9th percentile.
    #[serde(deserialize_with = "crate::json::f64")]
    pub p99_9_us: f64,
    /// 99.99th percentile.
    #[serde(deserialize_with = "crate::json::f64")]
    pub p99_99_us: f64,
    /// Largest sample.
    #[serde(deserialize_with = "crate::json::f64")]
    pub max_us: f64,
    /// `(percentile, µs)` points for a percentile plot (HdrHistogram style, log ticks).
    pub distribution: Vec<(f64, f64)>,
}

impl Latency {
    fn of(histogram: &Histogram<u64>, with_distribution: bool) -> Latency {
        if histogram.is_empty() {
            return Latency::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        let distribution = if with_distribution {
            histogram
                .iter_quantiles(2)
                .map(|v| (v.quantile_iterated_to() * 100.0, us(v.value_iterated_to())))
                .collect()
        } else {
            Vec::new()
        };
        Latency {
            count: histogram.len(),
            mean_us: histogram.mean() / 1000.0,
            p50_us: us(histogram.value_at_quantile(0.5)),
            p99_us: us(histogram.value_at_quantile(0.99)),
            p99_9_us: us(histogram.value_at_quantile(0.999)),
            p99_99_us: us(histogram.value_at_quantile(0.9999)),
            max_us: us(histogram.max()),
            distribution,
        }
    }
}

/// One of the worst Order Accepted latencies of a run, split at the gateway's intake.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Worst {
    /// Intended send time, ms after the run's start (warm-up included).
    #[serde(deserialize_with = "crate::json::f64")]
    pub intended_ms: f64,
    /// Order → Accepted, µs.
    #[serde(deserialize_with = "crate::json::f64")]
    pub latency_us: f64,
    /// Of which: intended → actual send.
    #[serde(deserialize_with = "crate::json::f64")]
    pub send_lag_us: f64,
    /// Actual send → gateway intake.
    #[serde(deserialize_with = "crate::json::f64")]
    pub inbound_us: f64,
    /// Gateway intake → Accepted read.
    #[serde(deserialize_with = "crate::json::f64")]
    pub outbound_us: f64,
}

/// One second of the measured window (by intended send time).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Second {
    /// Seconds since the start of the measured window.
    pub second: u32,
    /// Order Accepted latencies recorded for orders intended in this second.
    pub accepted: u64,
    /// Their median, µs.
    #[serde(deserialize_with = "crate::json::f64")]
    pub p50_us: f64,
    /// Their 99th percentile, µs.
    #[serde(deserialize_with = "crate::json::f64")]
    pub p99_us: f64,
    /// Their maximum, µs.
    #[serde(deserialize_with = "crate::json::f64")]
    pub max_us: f64,
    /// Largest send lag of a message intended in this second, µs.
    #[serde(deserialize_with = "crate::json::f64")]
    pub max_send_lag_us: f64,
}

/// CPU used by one thread over the measured window.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ThreadCpu {
    /// `server` (the node, or a cluster's leader), `follower`, `generator` or `other`.
    pub process: String,
    /// Thread name.
    pub thread: String,
    /// CPU seconds per wall-clock second (1.0 = one full core).
    #[serde(deserialize_with = "crate::json::f64")]
    pub cores: f64,
    /// CPU microseconds per message sent in the window.
    #[serde(deserialize_with = "crate::json::f64")]
    pub us_per_message: f64,
    /// Voluntary context switches per message.
    #[serde(deserialize_with = "crate::json::f64")]
    pub voluntary_per_message: f64,
    /// Involuntary context switches (preemptions) per second.
    #[serde(deserialize_with = "crate::json::f64")]
    pub preemptions_per_s: f64,
}

/// Everything one run measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunResult {
    /// Offered rate, messages/s.
    #[serde(deserialize_with = "crate::json::f64")]
    pub offered_rate: f64,
    /// Sessions.
    pub sessions: usize,
    /// Messages sent in the measured window.
    pub measured_messages: u64,
    /// Of which Enter Orders that rest, crossing IOCs, cancels.
    pub measured_rest: u64,
    /// Crossing IOC orders in the measured window.
    pub measured_ioc: u64,
    /// Cancels in the measured window.
    pub measured_cancel: u64,
    /// Messages per second actually sent over the measured window.
    #[serde(deserialize_with = "crate::json::f64")]
    pub achieved_rate: f64,
    /// Send lag (actual − intended send time) over the measured window.
    pub send_lag: Latency,
    /// Send lag of the last message, µs: large means the generator ended behind.
    #[serde(deserialize_with = "crate::json::f64")]
    pub final_send_lag_us: f64,
    /// Enter Order → Order Accepted.
    pub accepted: Latency,
    /// Crossing IOC → first Order Executed.
    pub executed: Latency,
    /// Cancel Order → Order Canceled.
    pub canceled: Latency,
    /// Actual send → gateway intake timestamp (from Order Accepted).
    pub inbound_leg: Latency,
    /// Gateway intake timestamp → Order Accepted read.
    pub outbound_leg: Latency,
    /// Per-second view of the measured window.
    pub per_second: Vec<Second>,
    /// The worst Order Accepted latencies (one per 10 ms stall), split at the intake.
    pub worst: Vec<Worst>,
    /// Messages without their answer when the run ended (after the drain timeout).
    pub unanswered: u64,
    /// Those by kind, with a few examples (`index kind session token`), for diagnosis.
    pub unanswered_by_kind: std::collections::BTreeMap<String, u64>,
    /// A few unanswered messages: `index/kind/session/token`.
    pub unanswered_examples: Vec<String>,
    /// Messages sent but not answered at the moment the last one was sent.
    pub in_flight_at_end: u64,
    /// Order Rejected received (should be 0).
    pub rejected: u64,
    /// Their reasons (OUCH reject codes) and counts.
    pub reject_reasons: std::collections::BTreeMap<char, u64>,
    /// Cancel Reject received (a cancel racing a fill; expected to be rare).
    pub cancel_rejected: u64,
    /// Order Executed received (both sides).
    pub executions: u64,
    /// IOC remainders canceled by the engine.
    pub ioc_remainders_canceled: u64,
    /// Responses whose token was not this run's.
    pub foreign_responses: u64,
    /// Cancels whose order was filled completely while the cancel was in flight (counted
    /// as answered by the fill, and left out of the cancel latency).
    pub moot_cancels: u64,
    /// Of those, how many the node answered with Cancel Reject, as OUCH requires.
    pub moot_cancels_rejected: u64,
    /// Why a session ended early, if one did.
    pub session_errors: Vec<String>,
    /// Thread CPU over the measured window (server threads when the server is managed).
    pub cpu: Vec<ThreadCpu>,
    /// With --pin-server-threads: what was pinned before the measured window.
    pub pinned_server_threads: Vec<String>,
}

struct View {
    live: VecDeque<u64>,
    remaining: FxHashMap<u64, u32>,
    /// Resting orders with a cancel in flight: target → (cancel's index, open shares).
    canceling: FxHashMap<u64, (u64, u32)>,
    rng: Rng,
}

struct Session {
    name: String,
    stream: TcpStream,
    wbuf: Vec<u8>,
    /// Fixed-size read buffer; `rbuf[..rlen]` holds bytes not yet decoded.
    rbuf: Vec<u8>,
    rlen: usize,
    view: View,
    last_sent_ns: u64,
    error: Option<String>,
}

/// Per-message state and the recorders.
struct Ledger {
    tokens: Tokens,
    t0: u64,
    period_ns: f64,
    first_measured: u64,
    /// `intended(first_measured)`, the start of the measured window.
    measured_start: u64,
    sent_ns: Vec<u64>,
    meta: Vec<u8>,
    sent: u64,
    answered: u64,
    real_offset: i128,
    // The latency histograms, recorded cheaply and turned into HdrHistograms at the end
    // (the same histograms as recording into them directly: see `recorder`).
    accepted: Recorder,
    executed: Recorder,
    canceled: Recorder,
    inbound: Recorder,
    outbound: Recorder,
    send_lag: Recorder,
    /// Per measured second: Order Accepted latencies, largest send lag.
    seconds: Vec<(Recorder, u64)>,
    rejected: u64,
    reject_reasons: std::collections::BTreeMap<char, u64>,
    cancel_rejected: u64,
    executions: u64,
    ioc_remainders: u64,
    foreign: u64,
    moot_cancels: u64,
    moot_cancels_rejected: u64,
    worst: Vec<Worst>,
}

fn histogram(sigfig: u8) -> anyhow::Result<Histogram<u64>> {
    // 1 ns to 1 hour.
    Histogram::new_with_bounds(1, 3_600 * NS_PER_S, sigfig).context("histogram bounds")
}

fn recorder(sigfig: u8) -> anyhow::Result<Recorder> {
    Recorder::new(histogram(sigfig)?)
}

impl Ledger {
    fn intended(&self, index: u64) -> u64 {
        self.t0 + (index as f64 * self.period_ns) as u64
    }

    fn measured(&self, index: u64) -> bool {
        index >= self.first_measured
    }

    /// The second of the measured window a message intended at `intended` falls in.
    fn second_at(&self, intended: u64) -> usize {
        (intended.saturating_sub(self.measured_start) / NS_PER_S) as usize
    }

    /// Latency of message `index` answered at `recv_ns`, if it is measured.
    fn latency(&self, index: u64, recv_ns: u64) -> Option<u64> {
        self.measured(index)
            .then(|| recv_ns.saturating_sub(self.intended(index)).max(1))
    }

    fn answer(&mut self, index: u64) -> bool {
        let Some(meta) = self.meta.get_mut(index as usize) else {
            return false;
        };
        if *meta & ANSWERED != 0 || self.sent_ns[index as usize] == 0 {
            return false;
        }
        *meta |= ANSWERED;
        self.answered += 1;
        true
    }

    /// Whether an Order Accepted latency of `latency_us` would be left out of the worst
    /// kept: there are [`WORST_KEPT`] already and none is smaller. Lets the caller skip
    /// building the sample, the common case.
    fn worst_is_full_above(&self, latency_us: f64) -> bool {
        self.worst.len() == WORST_KEPT
            && self
                .worst
                .last()
                .is_some_and(|w| w.latency_us >= latency_us)
    }

    /// Keeps the worst Order Accepted latencies, one per 10 ms of intended time (so one
    /// stall shows once), at most [`WORST_KEPT`].
    fn note_worst(&mut self, sample: Worst) {
        if self.worst_is_full_above(sample.latency_us) {
            return;
        }
        if let Some(same) = self
            .worst
            .iter_mut()
            .find(|w| (w.intended_ms - sample.intended_ms).abs() < 10.0)
        {
            if same.latency_us < sample.latency_us {
                *same = sample;
            }
        } else {
            self.worst.push(sample);
        }
        self.worst
            .sort_by(|a, b| b.latency_us.total_cmp(&a.latency_us));
        self.worst.truncate(WORST_KEPT);
    }

    fn kind(&self, index: u64) -> Option<Kind> {
        self.meta
            .get(index as usize)
            .and_then(|m| Kind::from_u8(m & 0x0f))
    }
}

/// Logs in every session. Blocking, with a generous timeout: the server checks passwords
/// with argon2, one at a time.
fn login(endpoint: &Endpoint, count: usize) -> anyhow::Result<Vec<Session>> {
    if endpoint.users.len() < count {
        bail!(
            "{count} sessions need {count} users, only {} given",
            endpoint.users.len()
        );
    }
    let decoder = FrameDecoder::new(DEFAULT_MAX_SERVER_PACKET_LEN);
    let mut sessions = Vec::with_capacity(count);
    for (index, (user, password)) in endpoint.users.iter().take(count).enumerate() {
        let (stream, buf) = log_in(endpoint.addr, user, password, &decoder)?;
        stream.set_read_timeout(None)?;
        stream.set_nonblocking(true)?;
        let mut rbuf = vec![0u8; READ_BUFFER_BYTES];
        let rlen = buf.len().min(READ_BUFFER_BYTES);
        rbuf[..rlen].copy_from_slice(&buf[..rlen]);
        sessions.push(Session {
            name: user.clone(),
            stream: TcpStream::from_std(stream),
            wbuf: Vec::with_capacity(64 * 1024),
            rbuf,
            rlen,
            view: View {
                live: VecDeque::new(),
                remaining: FxHashMap::default(),
                canceling: FxHashMap::default(),
                rng: Rng::new(0x5EED ^ (index as u64 + 1).wrapping_mul(0x1234_5678_9ABC_DEF1)),
            },
            last_sent_ns: sys::mono_ns(),
            error: None,
        });
    }
    Ok(sessions)
}

/// Connects to `addr` and logs `user` in (blocking, 30 s per read); the stream and
/// whatever arrived after the Login Accepted.
fn log_in(
    addr: SocketAddr,
    user: &str,
    password: &str,
    decoder: &FrameDecoder,
) -> anyhow::Result<(std::net::TcpStream, Vec<u8>)> {
    let mut stream =
        std::net::TcpStream::connect(addr).with_context(|| format!("connect to {addr}"))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let request = ClientPacket::LoginRequest(LoginRequest {
        username: Username::new(user).context("user name (at most 6 characters)")?,
        password: Password::new(password).context("password (at most 10 characters)")?,
        requested_session: SessionId::BLANK,
        requested_sequence_number: 0,
    });
    let mut out = Vec::new();
    request.encode(&mut out)?;
    stream.write_all(&out)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    loop {
        if let Some((packet, used)) = decoder.decode_server(&buf)? {
            match packet {
                ServerPacket::LoginAccepted(_) => {
                    buf.drain(..used);
                    break;
                }
                ServerPacket::LoginRejected(reason) => {
                    bail!("login of {user} rejected: {reason:?}")
                }
                _ => {
                    buf.drain(..used);
                    continue;
                }
            }
        }
        let n = stream
            .read(&mut chunk)
            .with_context(|| format!("waiting for the login of {user}"))?;
        if n == 0 {
            bail!("server closed the connection during the login of {user}");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok((stream, buf))
}

/// Runs one open-loop run against `endpoint` and returns what it measured.
pub fn run(
    endpoint: &Endpoint,
    sessions_count: usize,
    plan: &Plan,
    progress: &ProgressBar,
) -> anyhow::Result<RunResult> {
    let mut sessions = login(endpoint, sessions_count)?;
    for (session, rng_seed) in sessions.iter_mut().zip(0u64..) {
        session.view.rng = Rng::new(plan.seed ^ (rng_seed + 1).wrapping_mul(0x9E37_79B9));
    }
    let mut poll = Poll::new()?;
    let mut timer = register(&mut poll, &mut sessions)?;
    let mut runner = Runner::new(plan, sessions)?;
    pin_server(plan);
    let total_ns = runner.ledger.intended(runner.total) - runner.start;
    progress.set_length(total_ns / 1_000_000);
    runner.event_loop(&mut poll, &mut timer, progress)?;
    progress.set_position(progress.length().unwrap_or(0));
    Ok(runner.finish())
}

/// Registers every session's stream and a timer (returned) with `poll`.
fn register(poll: &mut Poll, sessions: &mut [Session]) -> anyhow::Result<TimerFd> {
    for (index, session) in sessions.iter_mut().enumerate() {
        poll.registry().register(
            &mut session.stream,
            Token(index),
            Interest::READABLE | Interest::WRITABLE,
        )?;
    }
    let timer = TimerFd::new()?;
    let timer_fd = std::os::fd::AsRawFd::as_raw_fd(&timer);
    poll.registry()
        .register(&mut SourceFd(&timer_fd), TIMER, Interest::READABLE)?;
    Ok(timer)
}

/// A CPU sample of the generator, the server and its followers, after `sent` messages.
fn cpu_snapshot(plan: &Plan, sent: u64) -> CpuSample {
    (
        sys::mono_ns(),
        sent,
        sys::machine_busy_s(),
        plan.server_pid
            .map(|pid| sys::thread_times(&pid.to_string()))
            .unwrap_or_default(),
        sys::thread_times("self"),
        plan.follower_pids
            .iter()
            .flat_map(|pid| sys::thread_times(&pid.to_string()))
            .collect::<Vec<_>>(),
    )
}

/// With `--pin-server-threads`: pins the server's threads but its matching core; what was
/// pinned.
fn pin_server(plan: &Plan) -> Vec<String> {
    match (&plan.pin_server_threads, plan.server_pid) {
        (Some(cores), Some(pid)) => sys::pin_threads_except(pid, "keel-matching", cores),
        _ => Vec::new(),
    }
}

/// A ledger for `len` messages, the first `warm` of them warm-up, starting at `start`.
fn new_ledger(plan: &Plan, warm: u64, len: usize, start: u64) -> anyhow::Result<Ledger> {
    let measured_seconds = plan.duration.as_secs() as usize + 1;
    let mut seconds = Vec::with_capacity(measured_seconds);
    for _ in 0..measured_seconds {
        seconds.push((recorder(2)?, 0));
    }
    // Real time = monotonic + offset (sampled back to back; error ~ tens of ns).
    let real_offset = {
        let a = sys::mono_ns();
        let r = sys::real_ns();
        let b = sys::mono_ns();
        i128::from(r) - i128::from(a / 2 + b / 2)
    };
    let mut ledger = Ledger {
        tokens: Tokens::new(plan.seed ^ start),
        t0: start,
        period_ns: NS_PER_S as f64 / plan.rate,
        first_measured: warm,
        measured_start: 0,
        sent_ns: vec![0; len],
        meta: vec![0; len],
        sent: 0,
        answered: 0,
        real_offset,
        accepted: recorder(3)?,
        executed: recorder(3)?,
        canceled: recorder(3)?,
        inbound: recorder(3)?,
        outbound: recorder(3)?,
        send_lag: recorder(3)?,
        seconds,
        rejected: 0,
        reject_reasons: std::collections::BTreeMap::new(),
        cancel_rejected: 0,
        executions: 0,
        ioc_remainders: 0,
        foreign: 0,
        moot_cancels: 0,
        moot_cancels_rejected: 0,
        worst: Vec::new(),
    };
    ledger.measured_start = ledger.intended(warm);
    Ok(ledger)
}

/// One run in progress: the sessions, the ledger and the send schedule.
struct Runner<'a> {
    plan: &'a Plan,
    sessions: Vec<Session>,
    ledger: Ledger,
    encoder: Encoder,
    decoder: FrameDecoder,
    /// Monotonic ns of message 0's intended send time.
    start: u64,
    /// Warm-up messages, then all messages.
    warm: u64,
    total: u64,
    /// The next message to send, and `ledger.intended(next)`, kept up to date with it.
    next: u64,
    next_due: u64,
    /// Sessions written to since the last flush.
    dirty: Vec<bool>,
    last_progress: u64,
    last_heartbeat_check: u64,
    /// When the last message was sent.
    send_end: Option<u64>,
    tick_ns: u64,
    last_send_wake: u64,
    in_flight_at_end: u64,
    final_lag: u64,
    /// CPU samples: taken a little before the measured window (at message `cpu_mark`)
    /// and after its last send.
    cpu_mark: u64,
    cpu_start: Option<CpuSample>,
    cpu_end: Option<CpuSample>,
    pinned_threads: Vec<String>,
}

impl<'a> Runner<'a> {
    fn new(plan: &'a Plan, sessions: Vec<Session>) -> anyhow::Result<Runner<'a>> {
        let warm = (plan.warmup.as_secs_f64() * plan.rate).round() as u64;
        let total = warm + (plan.duration.as_secs_f64() * plan.rate).round() as u64;
        let len = usize::try_from(total).context("run too long")?;
        let start = sys::mono_ns() + 20_000_000;
        let ledger = new_ledger(plan, warm, len, start)?;
        let encoder = Encoder::new(ledger.tokens, plan.stock, &plan.mix)?;
        let next_due = ledger.intended(0);
        Ok(Runner {
            plan,
            dirty: vec![false; sessions.len()],
            sessions,
            ledger,
            encoder,
            decoder: FrameDecoder::new(DEFAULT_MAX_SERVER_PACKET_LEN),
            start,
            warm,
            total,
            next: 0,
            next_due,
            last_progress: 0,
            last_heartbeat_check: start,
            send_end: None,
            tick_ns: plan.tick.as_nanos() as u64,
            last_send_wake: 0,
            in_flight_at_end: 0,
            final_lag: 0,
            cpu_mark: warm.saturating_sub((plan.rate * 0.2) as u64),
            cpu_start: None,
            cpu_end: None,
            pinned_threads: Vec::new(),
        })
    }

    /// Sends, does the housekeeping and waits for the next send time or responses, until
    /// everything sent is answered (or the drain times out, or every session failed).
    fn event_loop(
        &mut self,
        poll: &mut Poll,
        timer: &mut TimerFd,
        progress: &ProgressBar,
    ) -> anyhow::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = sys::mono_ns();
            // 1. Send everything due (never early).
            if self.next < self.total
                && now >= self.next_due
                && now >= self.last_send_wake + self.tick_ns
            {
                self.send_due(now);
            }
            // 2. Housekeeping: progress, heartbeats, the end.
            self.housekeeping(now, progress);
            if self.done(now) {
                return Ok(());
            }
            // 3. Wait for the next send time or for responses.
            let timeout = if self.next < self.total {
                timer.arm_at(self.next_due.max(self.last_send_wake + self.tick_ns))?;
                None
            } else {
                Some(Duration::from_millis(10))
            };
            match poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => return Err(error.into()),
            }
            self.dispatch(&events, timer);
        }
    }

    /// Sends every message due at `now` (at most [`MAX_BATCH`], at least one).
    fn send_due(&mut self, now: u64) {
        self.last_send_wake = now;
        let period_ns = self.ledger.period_ns;
        let due = (((now - self.start) as f64 / period_ns) as u64 + 1).min(self.total);
        let batch_end = due.min(self.next + MAX_BATCH).max(self.next + 1);
        // Message i goes to session i mod S.
        let mut session = (self.next % self.sessions.len() as u64) as usize;
        for index in self.next..batch_end {
            if self.cpu_start.is_none() && index >= self.cpu_mark {
                self.pinned_threads = pin_server(self.plan);
                self.cpu_start = Some(cpu_snapshot(self.plan, self.ledger.sent));
            }
            emit(
                &mut self.sessions[session],
                &mut self.ledger,
                self.plan,
                &self.encoder,
                index,
                now,
            );
            self.dirty[session] = true;
            session += 1;
            if session == self.sessions.len() {
                session = 0;
            }
        }
        self.next = batch_end;
        self.next_due = self.ledger.intended(self.next);
        for (session, flag) in self.sessions.iter_mut().zip(self.dirty.iter_mut()) {
            if std::mem::take(flag) {
                flush(session, now);
            }
        }
        if self.next == self.total {
            self.send_end = Some(now);
            self.final_lag = now.saturating_sub(self.ledger.intended(self.total - 1));
            self.in_flight_at_end = self.ledger.sent - self.ledger.answered;
            self.cpu_end = Some(cpu_snapshot(self.plan, self.ledger.sent));
        }
    }

    /// Progress every 100 ms, heartbeats on idle sessions every 200 ms.
    fn housekeeping(&mut self, now: u64, progress: &ProgressBar) {
        if now.saturating_sub(self.last_progress) >= 100_000_000 {
            self.last_progress = now;
            progress.set_position(now.saturating_sub(self.start) / 1_000_000);
            let lag = if self.next < self.total && self.next > 0 {
                now.saturating_sub(self.ledger.intended(self.next - 1)) as f64 / 1000.0
            } else {
                0.0
            };
            progress.set_message(format!(
                "sent {} answered {} lag {:.0} µs",
                self.ledger.sent, self.ledger.answered, lag
            ));
        }
        if now.saturating_sub(self.last_heartbeat_check) >= 200_000_000 {
            self.last_heartbeat_check = now;
            for session in &mut self.sessions {
                if now.saturating_sub(session.last_sent_ns) >= HEARTBEAT_NS {
                    let _ = ClientPacket::ClientHeartbeat.encode(&mut session.wbuf);
                    flush(session, now);
                }
            }
        }
    }

    /// Whether the run is over: all sent and answered, or the drain timed out, or every
    /// session failed.
    fn done(&self, now: u64) -> bool {
        if let Some(end) = self.send_end {
            if self.ledger.answered >= self.ledger.sent
                || now.saturating_sub(end) >= self.plan.drain_timeout.as_nanos() as u64
            {
                return true;
            }
        }
        self.sessions.iter().all(|s| s.error.is_some())
    }

    /// Reads and writes the sessions `events` name.
    fn dispatch(&mut self, events: &Events, timer: &mut TimerFd) {
        for event in events.iter() {
            let token = event.token();
            if token == TIMER {
                timer.fired();
                continue;
            }
            let Some(session) = self.sessions.get_mut(token.0) else {
                continue;
            };
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                receive(session, &mut self.ledger, &self.decoder);
            }
            if event.is_writable() && !session.wbuf.is_empty() {
                flush(session, sys::mono_ns());
            }
        }
    }

    /// Logs out politely and turns the ledger into the run's result.
    fn finish(mut self) -> RunResult {
        for session in &mut self.sessions {
            let _ = ClientPacket::LogoutRequest.encode(&mut session.wbuf);
            flush(session, sys::mono_ns());
        }
        let session_errors: Vec<String> = self
            .sessions
            .iter()
            .filter_map(|s| s.error.as_ref().map(|e| format!("{}: {e}", s.name)))
            .collect();
        let (unanswered_by_kind, unanswered_examples) = self.unanswered();
        let (warm, ledger) = (self.warm, &self.ledger);
        let measured = self.total - warm;
        let (rest, ioc, cancel) = measured_kinds(ledger, warm);
        let first_sent = ledger.sent_ns.get(warm as usize).copied().unwrap_or(0);
        let last_sent = ledger.sent_ns.last().copied().unwrap_or(0);
        let span = last_sent.saturating_sub(first_sent) as f64 / NS_PER_S as f64;
        let achieved_rate = if span > 0.0 {
            (measured.saturating_sub(1)) as f64 / span
        } else {
            0.0
        };
        let cpu = match (&self.cpu_start, &self.cpu_end) {
            (Some(a), Some(b)) => cpu_delta(a, b),
            _ => Vec::new(),
        };
        RunResult {
            offered_rate: self.plan.rate,
            sessions: self.sessions.len(),
            measured_messages: measured,
            measured_rest: rest,
            measured_ioc: ioc,
            measured_cancel: cancel,
            achieved_rate,
            send_lag: Latency::of(&ledger.send_lag.histogram(), false),
            final_send_lag_us: self.final_lag as f64 / 1000.0,
            accepted: Latency::of(&ledger.accepted.histogram(), true),
            executed: Latency::of(&ledger.executed.histogram(), true),
            canceled: Latency::of(&ledger.canceled.histogram(), false),
            inbound_leg: Latency::of(&ledger.inbound.histogram(), false),
            outbound_leg: Latency::of(&ledger.outbound.histogram(), false),
            per_second: per_second(ledger),
            worst: ledger.worst.clone(),
            unanswered: ledger.sent - ledger.answered,
            unanswered_by_kind,
            unanswered_examples,
            in_flight_at_end: self.in_flight_at_end,
            rejected: ledger.rejected,
            reject_reasons: ledger.reject_reasons.clone(),
            cancel_rejected: ledger.cancel_rejected,
            executions: ledger.executions,
            ioc_remainders_canceled: ledger.ioc_remainders,
            foreign_responses: ledger.foreign,
            moot_cancels: ledger.moot_cancels,
            moot_cancels_rejected: ledger.moot_cancels_rejected,
            session_errors,
            cpu,
            pinned_server_threads: std::mem::take(&mut self.pinned_threads),
        }
    }

    /// Messages sent but never answered: counts by kind, and up to 8 examples.
    fn unanswered(&self) -> (std::collections::BTreeMap<String, u64>, Vec<String>) {
        let ledger = &self.ledger;
        let mut by_kind = std::collections::BTreeMap::new();
        let mut examples = Vec::new();
        for (index, meta) in ledger.meta.iter().enumerate() {
            if ledger.sent_ns[index] != 0 && meta & ANSWERED == 0 {
                let kind = format!("{:?}", Kind::from_u8(meta & 0x0f));
                if examples.len() < 8 {
                    examples.push(format!(
                        "{index}/{kind}/{}/{}",
                        self.sessions[index % self.sessions.len()].name,
                        ledger.tokens.token(index as u64)
                    ));
                }
                *by_kind.entry(kind).or_insert(0) += 1;
            }
        }
        (by_kind, examples)
    }
}

/// Resting orders, IOC orders and cancels among the measured messages.
fn measured_kinds(ledger: &Ledger, warm: u64) -> (u64, u64, u64) {
    let (mut rest, mut ioc, mut cancel) = (0, 0, 0);
    for meta in ledger.meta.iter().skip(warm as usize) {
        match Kind::from_u8(meta & 0x0f) {
            Some(Kind::Rest) => rest += 1,
            Some(Kind::Ioc) => ioc += 1,
            Some(Kind::Cancel) => cancel += 1,
            None => {}
        }
    }
    (rest, ioc, cancel)
}

/// Order Accepted latencies and the largest send lag of each measured second.
fn per_second(ledger: &Ledger) -> Vec<Second> {
    ledger
        .seconds
        .iter()
        .enumerate()
        .map(|(second, (recorder, lag))| (second, recorder.histogram(), lag))
        .filter(|(_, h, _)| !h.is_empty())
        .map(|(second, h, lag)| Second {
            second: second as u32,
            accepted: h.len(),
            p50_us: h.value_at_quantile(0.5) as f64 / 1000.0,
            p99_us: h.value_at_quantile(0.99) as f64 / 1000.0,
            max_us: h.max() as f64 / 1000.0,
            max_send_lag_us: *lag as f64 / 1000.0,
        })
        .collect()
}

/// (monotonic ns, messages sent, machine busy s, server threads, generator threads,
/// follower threads)
type CpuSample = (
    u64,
    u64,
    f64,
    Vec<ThreadTimes>,
    Vec<ThreadTimes>,
    Vec<ThreadTimes>,
);

fn cpu_delta(start: &CpuSample, end: &CpuSample) -> Vec<ThreadCpu> {
    let wall = end.0.saturating_sub(start.0) as f64 / NS_PER_S as f64;
    let messages = end.1.saturating_sub(start.1).max(1) as f64;
    let mut out = Vec::new();
    let mut ours = 0.0;
    for (process, before, after) in [
        ("server", &start.3, &end.3),
        ("follower", &start.5, &end.5),
        ("generator", &start.4, &end.4),
    ] {
        for thread in after {
            let Some(old) = before.iter().find(|t| t.tid == thread.tid) else {
                continue;
            };
            let cpu = thread.cpu_s - old.cpu_s;
            ours += cpu;
            let voluntary = thread
                .voluntary_switches
                .saturating_sub(old.voluntary_switches);
            let involuntary = thread
                .involuntary_switches
                .saturating_sub(old.involuntary_switches);
            if cpu <= 0.0 && voluntary == 0 && involuntary == 0 {
                continue;
            }
            out.push(ThreadCpu {
                process: process.to_string(),
                thread: thread.name.clone(),
                cores: if wall > 0.0 { cpu / wall } else { 0.0 },
                us_per_message: cpu * 1e6 / messages,
                voluntary_per_message: voluntary as f64 / messages,
                preemptions_per_s: if wall > 0.0 {
                    involuntary as f64 / wall
                } else {
                    0.0
                },
            });
        }
    }
    // Everything else the machine did meanwhile: other people's builds and tests, kernel
    // threads, interrupts not charged to a thread.
    let busy = end.2 - start.2;
    out.push(ThreadCpu {
        process: "other".to_string(),
        thread: "(rest of the machine)".to_string(),
        cores: if wall > 0.0 {
            ((busy - ours) / wall).max(0.0)
        } else {
            0.0
        },
        us_per_message: ((busy - ours) * 1e6 / messages).max(0.0),
        voluntary_per_message: 0.0,
        preemptions_per_s: 0.0,
    });
    out
}

/// Decides and queues message `index` on its session.
fn emit(
    session: &mut Session,
    ledger: &mut Ledger,
    plan: &Plan,
    encoder: &Encoder,
    index: u64,
    now: u64,
) {
    let view = &mut session.view;
    let mix = &plan.mix;
    let mut kind = if view.rng.below(100) < u64::from(mix.ioc_pct) {
        Kind::Ioc
    } else if view.remaining.len() >= mix.resting_per_session {
        Kind::Cancel
    } else {
        Kind::Rest
    };
    loop {
        match kind {
            Kind::Cancel => {
                let mut target = None;
                while let Some(candidate) = view.live.pop_front() {
                    if let Some(open) = view.remaining.remove(&candidate) {
                        target = Some((candidate, open));
                        break;
                    }
                }
                match target {
                    Some((target, open)) => {
                        view.canceling.insert(target, (index, open));
                        encoder.cancel_order(&mut session.wbuf, target);
                        break;
                    }
                    None => kind = Kind::Rest,
                }
            }
            Kind::Rest | Kind::Ioc => {
                let shares = encoder.enter_order(&mut session.wbuf, index, kind, &mut view.rng);
                if kind == Kind::Rest {
                    view.live.push_back(index);
                    view.remaining.insert(index, shares);
                }
                break;
            }
        }
    }
    let slot = index as usize;
    ledger.sent_ns[slot] = now;
    ledger.meta[slot] = kind as u8;
    ledger.sent += 1;
    if ledger.measured(index) {
        let intended = ledger.intended(index);
        let lag = now.saturating_sub(intended);
        ledger.send_lag.record(lag.max(1));
        let second = ledger.second_at(intended);
        if let Some(entry) = ledger.seconds.get_mut(second) {
            entry.1 = entry.1.max(lag);
        }
    }
}

/// Writes what the session has queued, as far as the socket takes it.
fn flush(session: &mut Session, now: u64) {
    if session.error.is_some() {
        session.wbuf.clear();
        return;
    }
    let mut written = 0;
    while written < session.wbuf.len() {
        match session.stream.write(&session.wbuf[written..]) {
            Ok(0) => break,
            Ok(n) => written += n,
            Err(error) if error.kind() == ErrorKind::WouldBlock => break,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => {
                session.error = Some(format!("write: {error}"));
                break;
            }
        }
    }
    if written > 0 {
        if written == session.wbuf.len() {
            session.wbuf.clear();
        } else {
            session.wbuf.drain(..written);
        }
        session.last_sent_ns = now;
    }
}

/// Reads everything available on a session and handles each response.
fn receive(session: &mut Session, ledger: &mut Ledger, decoder: &FrameDecoder) {
    if session.error.is_some() {
        return;
    }
    loop {
        if session.rlen == session.rbuf.len() {
            // A full buffer always holds complete packets (a packet is < 1 KiB), so this
            // only happens if decoding below stopped on an error.
            return;
        }
        let space = session.rbuf.len() - session.rlen;
        let read = session.stream.read(&mut session.rbuf[session.rlen..]);
        // One clock read per read(): every response this read returned had arrived by the
        // time it returned, so this instant is the receive time of each of them (latency =
        // this − the message's intended send time).
        let recv_ns = sys::mono_ns();
        // A short read drained the socket: with edge-triggered readiness, any byte arriving
        // later raises a new event, so there is no need for a read that says WouldBlock.
        let drained = match read {
            Ok(0) => {
                session.error = Some("server closed the connection".into());
                return;
            }
            Ok(n) => {
                session.rlen += n;
                n < space
            }
            Err(error) => match error.kind() {
                ErrorKind::WouldBlock => return,
                ErrorKind::Interrupted => continue,
                _ => {
                    session.error = Some(format!("read: {error}"));
                    return;
                }
            },
        };
        let Session {
            rbuf,
            rlen,
            view,
            error,
            ..
        } = session;
        let consumed = decode_all(&rbuf[..*rlen], view, ledger, error, decoder, recv_ns);
        rbuf.copy_within(consumed..*rlen, 0);
        *rlen -= consumed;
        if error.is_some() || drained {
            return;
        }
    }
}

/// Handles every complete packet at the start of `buf` (received at `recv_ns`), noting a
/// bad packet or the end of the session in `error`; returns the bytes consumed.
fn decode_all(
    buf: &[u8],
    view: &mut View,
    ledger: &mut Ledger,
    error: &mut Option<String>,
    decoder: &FrameDecoder,
    recv_ns: u64,
) -> usize {
    let mut consumed = 0;
    while consumed < buf.len() {
        let rest = &buf[consumed..];
        // The common case, parsed in place: a Sequenced Data packet (2-byte length, type
        // `S`, payload) within the decoder's length limit. The checks are the decoder's
        // own for this packet type; anything else goes through the decoder below.
        if let [len_hi, len_lo, packet_type::SEQUENCED_DATA, ..] = *rest {
            let len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
            if len != 0 && len <= usize::from(DEFAULT_MAX_SERVER_PACKET_LEN) {
                let Some(payload) = rest.get(3..2 + len) else {
                    break; // Incomplete: the rest comes with a later read.
                };
                consumed += 2 + len;
                if let Err(bad) = on_message(view, ledger, payload, recv_ns) {
                    *error = Some(format!("bad OUCH message: {bad}"));
                }
                continue;
            }
        }
        match decoder.decode_server(rest) {
            Ok(Some((packet, used))) => {
                consumed += used;
                match packet {
                    ServerPacket::SequencedData(payload) => {
                        if let Err(bad) = on_message(view, ledger, payload, recv_ns) {
                            *error = Some(format!("bad OUCH message: {bad}"));
                        }
                    }
                    ServerPacket::EndOfSession => {
                        *error = Some("server sent End of Session".into());
                    }
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(bad) => {
                *error = Some(format!("bad SoupBinTCP packet: {bad}"));
                break;
            }
        }
    }
    consumed
}

/// What the generator needs from a response about one of its orders.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Reply {
    /// Order Accepted, with the gateway's intake timestamp (ns since midnight).
    Accepted { timestamp: u64 },
    /// Order Rejected, with its reason code.
    Rejected { reason: u8 },
    /// Order Executed: shares, and whether this side removed liquidity.
    Executed { shares: u32, removed: bool },
    /// Order Canceled: whether the user asked for it (otherwise an IOC remainder).
    Canceled { user_requested: bool },
    /// Cancel Reject.
    CancelReject,
    /// Anything else about an order (Replaced, Broken Trade, ...): ignored.
    Other,
}

/// Handles one OUCH message (a Sequenced Data payload); an error if it does not decode.
fn on_message(
    view: &mut View,
    ledger: &mut Ledger,
    payload: &[u8],
    recv_ns: u64,
) -> Result<(), ProtocolError> {
    if let Some((index, reply)) = parse_reply(&ledger.tokens, payload) {
        apply(view, ledger, index, reply, recv_ns);
        return Ok(());
    }
    let message = OutboundMessage::decode(payload)?;
    handle(view, ledger, &message, recv_ns);
    Ok(())
}

/// Parses the frequent responses in place: Order Accepted, Order Executed and Order
/// Canceled of this run's tokens, with the right length and valid codes in the fields
/// read. `None` sends the message through the full decoder ([`OutboundMessage::decode`]
/// and [`handle`]), which deals with everything else (other types, foreign tokens,
/// malformed messages) as before. Fields the generator does not read (stock, price, ...
/// of Order Accepted) are not validated here.
fn parse_reply(tokens: &Tokens, payload: &[u8]) -> Option<(u64, Reply)> {
    let (&message_type, _) = payload.split_first()?;
    let len = match message_type {
        OrderAccepted::TYPE => OrderAccepted::LEN,
        OrderExecuted::TYPE => OrderExecuted::LEN,
        OrderCanceled::TYPE => OrderCanceled::LEN,
        _ => return None,
    };
    if payload.len() != len {
        return None;
    }
    // Each of these is type (1), timestamp (8), Order Token (14), then its own fields.
    let token: &[u8; TOKEN_LEN] = payload.get(9..9 + TOKEN_LEN)?.try_into().ok()?;
    let index = tokens.index_of_wire(token)?;
    let reply = match message_type {
        OrderAccepted::TYPE => Reply::Accepted {
            timestamp: u64::from_be_bytes(payload.get(1..9)?.try_into().ok()?),
        },
        OrderExecuted::TYPE => Reply::Executed {
            shares: u32::from_be_bytes(payload.get(23..27)?.try_into().ok()?),
            removed: LiquidityFlag::from_code(*payload.get(31)?).ok()? == LiquidityFlag::Removed,
        },
        _ => Reply::Canceled {
            user_requested: CancelReason::from_code(*payload.get(27)?).ok()?
                == CancelReason::UserRequested,
        },
    };
    Some((index, reply))
}

/// Applies one decoded response to the session's view and the recorders.
fn handle(view: &mut View, ledger: &mut Ledger, message: &OutboundMessage, recv_ns: u64) {
    let Some((token, reply)) = decoded_reply(message) else {
        return;
    };
    let Some(index) = ledger.tokens.index(&token) else {
        ledger.foreign += 1;
        return;
    };
    apply(view, ledger, index, reply, recv_ns);
}

/// The order a decoded response is about and what the generator needs from it (`None`
/// for a message about no order, i.e. System Event).
fn decoded_reply(message: &OutboundMessage) -> Option<(OrderToken, Reply)> {
    let token = message.order_token()?;
    let reply = match message {
        OutboundMessage::OrderAccepted(accepted) => Reply::Accepted {
            timestamp: accepted.timestamp,
        },
        OutboundMessage::OrderRejected(rejected) => Reply::Rejected {
            reason: rejected.reason.code(),
        },
        OutboundMessage::OrderExecuted(executed) => Reply::Executed {
            shares: executed.executed_shares,
            removed: executed.liquidity_flag == LiquidityFlag::Removed,
        },
        OutboundMessage::OrderCanceled(canceled) => Reply::Canceled {
            user_requested: canceled.reason == CancelReason::UserRequested,
        },
        OutboundMessage::CancelReject(_) => Reply::CancelReject,
        _ => Reply::Other,
    };
    Some((token, reply))
}

/// Applies one response about message `index` to the session's view and the recorders.
fn apply(view: &mut View, ledger: &mut Ledger, index: u64, reply: Reply, recv_ns: u64) {
    match reply {
        Reply::Accepted { timestamp } => on_accepted(ledger, index, timestamp, recv_ns),
        Reply::Rejected { reason } => {
            ledger.rejected += 1;
            *ledger.reject_reasons.entry(char::from(reason)).or_insert(0) += 1;
            ledger.answer(index);
            view.remaining.remove(&index);
        }
        Reply::Executed { shares, removed } => {
            on_executed(view, ledger, index, shares, removed, recv_ns)
        }
        Reply::Canceled { user_requested } => {
            if user_requested {
                if let Some((cancel, _)) = view.canceling.remove(&index) {
                    if ledger.answer(cancel) {
                        if let Some(latency) = ledger.latency(cancel, recv_ns) {
                            ledger.canceled.record(latency);
                        }
                    }
                }
            } else {
                ledger.ioc_remainders += 1;
                view.remaining.remove(&index);
            }
        }
        Reply::CancelReject => {
            ledger.cancel_rejected += 1;
            if let Some((cancel, _)) = view.canceling.remove(&index) {
                if ledger.meta[cancel as usize] & MOOT != 0 {
                    ledger.moot_cancels_rejected += 1;
                } else {
                    ledger.answer(cancel);
                }
            }
        }
        Reply::Other => {}
    }
}

/// Order Accepted for message `index`: its latency, split at the gateway's intake
/// `timestamp` (ns since UTC midnight) into the inbound and outbound legs.
fn on_accepted(ledger: &mut Ledger, index: u64, timestamp: u64, recv_ns: u64) {
    if !ledger.answer(index) || !ledger.measured(index) {
        return;
    }
    let intended = ledger.intended(index);
    let latency = recv_ns.saturating_sub(intended).max(1);
    ledger.accepted.record(latency);
    let second = ledger.second_at(intended);
    if let Some(entry) = ledger.seconds.get_mut(second) {
        entry.0.record(latency);
    }
    // Split at the gateway's intake timestamp (ns since UTC midnight).
    let sent_ns = ledger.sent_ns[index as usize];
    let sent_real = i128::from(sent_ns) + ledger.real_offset;
    let recv_real = i128::from(recv_ns) + ledger.real_offset;
    let day = i128::from(NS_PER_DAY);
    let midnight = match u64::try_from(recv_real) {
        // The same as below for any time after 1970, in 64-bit arithmetic.
        Ok(real) => i128::from(real - real % NS_PER_DAY),
        Err(_) => recv_real - recv_real.rem_euclid(day),
    };
    let mut stamp = midnight + i128::from(timestamp);
    if stamp > recv_real + day / 2 {
        stamp -= day;
    }
    let inbound = (stamp - sent_real).max(1);
    let outbound = (recv_real - stamp).max(1);
    let latency_us = latency as f64 / 1000.0;
    if !ledger.worst_is_full_above(latency_us) {
        ledger.note_worst(Worst {
            intended_ms: (intended - ledger.t0) as f64 / 1e6,
            latency_us,
            send_lag_us: (sent_ns - intended) as f64 / 1000.0,
            inbound_us: inbound as f64 / 1000.0,
            outbound_us: outbound as f64 / 1000.0,
        });
    }
    ledger
        .inbound
        .record(u64::try_from(inbound).unwrap_or(u64::MAX));
    ledger
        .outbound
        .record(u64::try_from(outbound).unwrap_or(u64::MAX));
}

/// Order Executed for message `index`: an IOC's first execution is its latency; a resting
/// order's open shares go down, and a fill racing a cancel can make that cancel moot.
fn on_executed(
    view: &mut View,
    ledger: &mut Ledger,
    index: u64,
    shares: u32,
    removed: bool,
    recv_ns: u64,
) {
    ledger.executions += 1;
    if removed && ledger.kind(index) == Some(Kind::Ioc) {
        let slot = index as usize;
        if ledger.meta[slot] & EXECUTED == 0 {
            ledger.meta[slot] |= EXECUTED;
            if let Some(latency) = ledger.latency(index, recv_ns) {
                ledger.executed.record(latency);
            }
        }
    } else if let Some(open) = view.remaining.get_mut(&index) {
        *open = open.saturating_sub(shares);
        if *open == 0 {
            view.remaining.remove(&index);
        }
    } else if let Some((cancel, open)) = view.canceling.get_mut(&index) {
        // A fill racing the cancel: if it fills the order, the cancel is moot. OUCH
        // answers it with Cancel Reject; count whether that really arrives.
        *open = open.saturating_sub(shares);
        if *open == 0 {
            let cancel = *cancel;
            ledger.moot_cancels += 1;
            if ledger.answer(cancel) {
                ledger.meta[cancel as usize] |= MOOT;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use keel_protocol::ouch::{
        BboWeightIndicator, BuySellIndicator, Capacity, CrossType, DisplayType,
        IntermarketSweepEligibility, OrderState, Price, TimeInForce,
    };
    use keel_protocol::Firm;

    use super::*;

    fn accepted(token: OrderToken, timestamp: u64) -> OutboundMessage {
        OutboundMessage::OrderAccepted(OrderAccepted {
            timestamp,
            order_token: token,
            side: BuySellIndicator::Sell,
            shares: 42,
            stock: Stock::new("PERF").unwrap(),
            price: Price(1_000_100),
            time_in_force: TimeInForce::SYSTEM_HOURS,
            firm: Firm::BLANK,
            display: DisplayType::Anonymous,
            order_reference_number: 77,
            capacity: Capacity::Agency,
            intermarket_sweep: IntermarketSweepEligibility::NotEligible,
            minimum_quantity: 0,
            cross_type: CrossType::NoCross,
            order_state: OrderState::Live,
            bbo_weight_indicator: BboWeightIndicator::Weight0,
        })
    }

    /// The in-place parser agrees with the full decoder on every message it takes, and
    /// leaves the rest (foreign tokens, other types, bad lengths or codes) to it.
    #[test]
    fn in_place_parse_agrees_with_the_decoder() {
        let tokens = Tokens::new(99);
        let foreign = Tokens::new(98);
        let mut messages = Vec::new();
        for index in [
            0u64,
            1,
            35,
            36,
            1295,
            1296,
            123_456_789,
            3_656_158_440_062_975,
        ] {
            for token in [tokens.token(index), foreign.token(index)] {
                messages.push(accepted(token, 12_345_678_901_234));
                for flag in LiquidityFlag::ALL {
                    messages.push(OutboundMessage::OrderExecuted(OrderExecuted {
                        timestamp: 5,
                        order_token: token,
                        executed_shares: 17,
                        execution_price: Price(1_000_300),
                        liquidity_flag: *flag,
                        match_number: 9,
                    }));
                }
                for reason in CancelReason::ALL {
                    messages.push(OutboundMessage::OrderCanceled(OrderCanceled {
                        timestamp: 6,
                        order_token: token,
                        decrement_shares: 3,
                        reason: *reason,
                    }));
                }
            }
        }
        let mut taken = 0;
        for message in &messages {
            let mut wire = Vec::new();
            message.encode(&mut wire);
            let expected = decoded_reply(message)
                .and_then(|(token, reply)| tokens.index(&token).map(|index| (index, reply)));
            match parse_reply(&tokens, &wire) {
                Some(parsed) => {
                    taken += 1;
                    assert_eq!(Some(parsed), expected, "{message:?}");
                }
                None => assert!(expected.is_none(), "{message:?}"),
            }
        }
        assert_eq!(
            taken,
            8 * (1 + LiquidityFlag::ALL.len() + CancelReason::ALL.len())
        );
        // Not taken: wrong length, unlisted code, a digit that is not base 36.
        let mut wire = Vec::new();
        accepted(tokens.token(5), 1).encode(&mut wire);
        assert!(parse_reply(&tokens, &wire[..wire.len() - 1]).is_none());
        let mut bad_digit = wire.clone();
        bad_digit[9 + TOKEN_LEN - 1] = b'a';
        assert!(parse_reply(&tokens, &bad_digit).is_none());
        let mut executed = Vec::new();
        OutboundMessage::OrderExecuted(OrderExecuted {
            timestamp: 5,
            order_token: tokens.token(5),
            executed_shares: 17,
            execution_price: Price(1_000_300),
            liquidity_flag: LiquidityFlag::Removed,
            match_number: 9,
        })
        .encode(&mut executed);
        executed[31] = b'?';
        assert!(parse_reply(&tokens, &executed).is_none());
        assert!(OutboundMessage::decode(&executed).is_err());
    }
}
