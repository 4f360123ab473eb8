//! Password checks off the I/O thread: a small pool of threads verifying argon2 hashes,
//! fed by a bounded queue, with rules that keep a login storm (every session of a failed
//! leader logging in again at once) or a flood from one address from starving others or
//! piling up:
//!
//! - the queue is fair per source address: each address has its own queue, and the threads
//!   take one check from each address in turn ([`FairQueue`]), so a flood of guesses from
//!   one address waits behind itself, while a real user's login from another address is
//!   next but one whatever the flood's length;
//! - a check whose connection has closed before a thread takes it is dropped unchecked
//!   (each request carries its connection's cancel flag, set when the connection is
//!   dropped), so clients that gave up and retried cost one check, not one per attempt;
//! - the queue holds [`CHECKS_QUEUED_PER_THREAD`] checks per thread; beyond it a login is
//!   refused at once with Login Rejected `S` (a transient refusal: clients try again), and
//!   one source address may hold at most half of the queue, so a flood from one address
//!   cannot lock out everyone else;
//! - the threads run at normal priority. The matching loop is protected by its pinned
//!   core, which these threads never use (they inherit the node's mask that keeps every
//!   thread but the matching loop off that core); they share the other cores with the I/O
//!   and replication threads as equals. At the lowest priority (nice 19) they got about 1.5%
//!   of a busy core, and on a loaded machine a new leader answered no login for over 10 s.
//!   Their total cost is bounded instead: at most `login_threads` cores' worth at once, and
//!   with resumption tickets (`ticket.rs`) returning sessions skip them altogether.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use foldhash::{HashMap, HashMapExt};
use mio::{Token, Waker};

/// Checks queued per checking thread before logins are refused as busy. At ~25 ms a check
/// (argon2id, default parameters, on this project's 2-core machine) that is under 2 s of
/// waiting, well within a client's 10 s login timeout.
pub const CHECKS_QUEUED_PER_THREAD: usize = 64;

/// Sets its connection's cancel flag when dropped: a [`Connection`](super::server) holds one
/// while its login is checked, so however the connection goes away, its queued check is
/// dropped unchecked.
#[derive(Debug)]
pub struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// A login waiting for the password check.
pub struct LoginCheck {
    /// Connection asking.
    pub token: Token,
    /// Where it connected from.
    pub peer: SocketAddr,
    /// Index of the user, if the name is known.
    pub user: Option<usize>,
    /// The password as sent.
    pub password: String,
    /// The user's hash (a dummy for unknown users, so timing does not reveal names).
    pub hash: String,
    /// Requested sequence number.
    pub requested_seq: u64,
}

/// A check as queued: the request and its connection's cancel flag.
struct Queued {
    check: LoginCheck,
    cancelled: Arc<AtomicBool>,
}

/// The verdict on a [`LoginCheck`].
pub struct Verdict {
    /// Connection that asked.
    pub token: Token,
    /// Its user, if the name is known.
    pub user: Option<usize>,
    /// Whether the password matched (always false for an unknown user). `None`: the check
    /// was dropped because the connection had closed.
    pub ok: Option<bool>,
    /// Requested sequence number.
    pub requested_seq: u64,
    /// How long the check took (zero if dropped): locked-out logins are answered after as
    /// long, so that the answer's timing tells nothing.
    pub took: Duration,
    source: IpAddr,
}

/// Why a check was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Busy {
    /// The queue is full: this many checks wait.
    Queue(usize),
    /// This source address already has this many checks waiting (the most one may).
    Source(usize),
    /// The checking threads are gone (the node is stopping).
    Stopped,
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Busy::Queue(n) => write!(f, "password checks queue full ({n} waiting)"),
            Busy::Source(n) => write!(
                f,
                "{n} password checks already waiting from this address (the most one address may have)"
            ),
            Busy::Stopped => write!(f, "password checker stopped"),
        }
    }
}

/// The I/O thread's side of the pool.
pub struct LoginChecker {
    requests: Arc<Requests>,
    verdicts: Receiver<Verdict>,
    /// Checks queued or running, by source address (entries removed at zero).
    pending: HashMap<IpAddr, usize>,
    pending_total: usize,
    queue_max: usize,
    per_source_max: usize,
    threads: Vec<JoinHandle<()>>,
    /// Checks dropped because their connection had closed (shared with the threads).
    dropped: Arc<AtomicU64>,
}

impl LoginChecker {
    /// Starts `threads` checking threads (at least 1); each verdict wakes `waker`.
    pub fn start(threads: usize, waker: Arc<Waker>) -> std::io::Result<LoginChecker> {
        let threads = threads.max(1);
        let queue_max = threads * CHECKS_QUEUED_PER_THREAD;
        let requests = Arc::new(Requests::default());
        // Room for every queued and running check's verdict: a thread never waits to answer.
        let (verdict_tx, verdict_rx) = crossbeam_channel::bounded(queue_max + threads);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut handles = Vec::with_capacity(threads);
        for index in 0..threads {
            let (requests, verdicts) = (requests.clone(), verdict_tx.clone());
            let (waker, dropped) = (waker.clone(), dropped.clone());
            let handle = std::thread::Builder::new()
                .name(format!("keel-auth-{index}"))
                .spawn(move || check_loop(&requests, &verdicts, &waker, &dropped))?;
            handles.push(handle);
        }
        Ok(LoginChecker {
            requests,
            verdicts: verdict_rx,
            pending: HashMap::new(),
            pending_total: 0,
            queue_max,
            per_source_max: (queue_max / 2).max(1),
            threads: handles,
            dropped,
        })
    }

    /// Queues a check; the guard cancels it when dropped (keep it with the connection).
    pub fn submit(&mut self, check: LoginCheck) -> Result<CancelOnDrop, Busy> {
        let source = check.peer.ip();
        let from_source = self.pending.get(&source).copied().unwrap_or(0);
        if from_source >= self.per_source_max {
            return Err(Busy::Source(from_source));
        }
        if self.pending_total >= self.queue_max {
            return Err(Busy::Queue(self.pending_total));
        }
        let cancelled = Arc::new(AtomicBool::new(false));
        let queued = Queued {
            check,
            cancelled: cancelled.clone(),
        };
        // Bounded by the two checks above: `pending` counts every queued check.
        if !self.requests.push(source, queued) {
            return Err(Busy::Stopped);
        }
        *self.pending.entry(source).or_insert(0) += 1;
        self.pending_total += 1;
        Ok(CancelOnDrop(cancelled))
    }

    /// The next verdict, if one is ready.
    pub fn try_verdict(&mut self) -> Option<Verdict> {
        let verdict = self.verdicts.try_recv().ok()?;
        self.pending_total = self.pending_total.saturating_sub(1);
        if let Some(count) = self.pending.get_mut(&verdict.source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.pending.remove(&verdict.source);
            }
        }
        Some(verdict)
    }

    /// Checks dropped so far because their connection had closed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for LoginChecker {
    fn drop(&mut self) {
        // Closing the queue ends each thread after its current check.
        self.requests.close();
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}

/// Checks waiting, fair per source, shared by the I/O thread and the checking threads.
struct Requests {
    state: Mutex<RequestsState>,
    ready: Condvar,
}

struct RequestsState {
    queue: FairQueue<Queued>,
    closed: bool,
}

impl Default for Requests {
    fn default() -> Requests {
        Requests {
            state: Mutex::new(RequestsState {
                queue: FairQueue::new(),
                closed: false,
            }),
            ready: Condvar::new(),
        }
    }
}

impl Requests {
    /// Queues a check; false if closed.
    fn push(&self, source: IpAddr, queued: Queued) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        if state.closed {
            return false;
        }
        state.queue.push(source, queued);
        drop(state);
        self.ready.notify_one();
        true
    }

    /// The next check, waiting for one; `None` once closed (queued checks are not made: the
    /// server asking for them is gone).
    fn pop(&self) -> Option<Queued> {
        let mut state = self.state.lock().ok()?;
        loop {
            if state.closed {
                return None;
            }
            if let Some(queued) = state.queue.pop() {
                return Some(queued);
            }
            state = self.ready.wait(state).ok()?;
        }
    }

    /// Ends the threads, each after its current check.
    fn close(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.closed = true;
        }
        self.ready.notify_all();
    }
}

/// Items queued per source address, taken one per source in turn: an address with a
/// thousand items waiting delays another address's item by at most one of its own. Bounded
/// by its user (the checker counts what each source has queued).
#[derive(Debug)]
pub struct FairQueue<T> {
    by_source: HashMap<IpAddr, VecDeque<T>>,
    /// Sources with items, in the order they are served.
    turn: VecDeque<IpAddr>,
}

impl<T> FairQueue<T> {
    /// Empty.
    pub fn new() -> FairQueue<T> {
        FairQueue {
            by_source: HashMap::new(),
            turn: VecDeque::new(),
        }
    }

    /// Adds `item` of `source` behind that source's others.
    pub fn push(&mut self, source: IpAddr, item: T) {
        let queue = self.by_source.entry(source).or_default();
        if queue.is_empty() {
            self.turn.push_back(source);
        }
        queue.push_back(item);
    }

    /// The oldest item of the source whose turn it is.
    pub fn pop(&mut self) -> Option<T> {
        let source = self.turn.pop_front()?;
        let queue = self.by_source.get_mut(&source)?;
        let item = queue.pop_front();
        if queue.is_empty() {
            self.by_source.remove(&source);
        } else {
            self.turn.push_back(source);
        }
        item
    }
}

/// One checking thread: takes queued checks until the queue closes.
fn check_loop(requests: &Requests, verdicts: &Sender<Verdict>, waker: &Waker, dropped: &AtomicU64) {
    while let Some(Queued { check, cancelled }) = requests.pop() {
        let started = Instant::now();
        let ok = if cancelled.load(Ordering::Acquire) {
            let total = dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::info!(
                peer = %check.peer,
                dropped_total = total,
                "password check dropped: the connection closed while it waited"
            );
            None
        } else {
            Some(
                crate::config::verify_password(&check.password, &check.hash)
                    && check.user.is_some(),
            )
        };
        let verdict = Verdict {
            token: check.token,
            user: check.user,
            ok,
            requested_seq: check.requested_seq,
            took: started.elapsed(),
            source: check.peer.ip(),
        };
        if verdicts.send(verdict).is_err() {
            return;
        }
        let _ = waker.wake();
    }
}

/// The default number of checking threads: one per core the matching loop does not use,
/// at most 4 (argon2 is CPU-bound; more threads than cores only add waiting). On a 2-core
/// machine with the matching loop pinned: 1.
pub fn default_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.saturating_sub(1).clamp(1, 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::Poll;

    fn check(token: usize, peer: &str, hash: &str) -> LoginCheck {
        LoginCheck {
            token: Token(token),
            peer: peer.parse().unwrap(),
            user: Some(0),
            password: "secret".into(),
            hash: hash.into(),
            requested_seq: 0,
        }
    }

    fn verdicts(checker: &mut LoginChecker, count: usize) -> Vec<Verdict> {
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while out.len() < count && std::time::Instant::now() < deadline {
            match checker.try_verdict() {
                Some(verdict) => out.push(verdict),
                None => std::thread::sleep(std::time::Duration::from_millis(1)),
            }
        }
        out
    }

    #[test]
    fn checks_of_closed_connections_are_dropped_and_others_answered() {
        let poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(1)).unwrap());
        let hash = crate::config::hash_password("secret").unwrap();
        let mut checker = LoginChecker::start(1, waker).unwrap();
        // The first keeps the one thread busy while the next ones wait behind it.
        let keep = checker.submit(check(10, "10.0.0.1:1", &hash)).unwrap();
        let mut guards: Vec<CancelOnDrop> = (11..15)
            .map(|t| checker.submit(check(t, "10.0.0.2:1", &hash)).unwrap())
            .collect();
        let last = guards.pop().unwrap();
        drop(guards); // connections 11..=13 close
        let got = verdicts(&mut checker, 5);
        assert_eq!(got.len(), 5);
        let by_token = |t: usize| got.iter().find(|v| v.token == Token(t)).unwrap();
        assert_eq!(by_token(10).ok, Some(true));
        assert_eq!(by_token(14).ok, Some(true));
        // The first of them may have been taken before its connection closed; the others
        // waited behind a whole argon2 check.
        let dropped = (11..14).filter(|t| by_token(*t).ok.is_none()).count();
        assert!(dropped >= 2, "{dropped} dropped");
        assert_eq!(checker.dropped(), dropped as u64);
        drop((keep, last));
        assert!(checker.pending.is_empty() && checker.pending_total == 0);
    }

    #[test]
    fn one_address_gets_at_most_half_the_queue_and_the_queue_is_bounded() {
        let poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(1)).unwrap());
        let mut checker = LoginChecker::start(1, waker).unwrap();
        // Not PHC strings: each check fails at once, but none is answered before we read.
        let mut guards = Vec::new();
        let half = CHECKS_QUEUED_PER_THREAD / 2;
        for t in 0..half {
            guards.push(checker.submit(check(t, "10.0.0.1:5", "x")).unwrap());
        }
        assert_eq!(
            checker.submit(check(99, "10.0.0.1:6", "x")).unwrap_err(),
            Busy::Source(half)
        );
        for t in 0..half {
            guards.push(
                checker
                    .submit(check(100 + t, &format!("10.0.1.{t}:5"), "x"))
                    .unwrap(),
            );
        }
        assert_eq!(
            checker.submit(check(999, "10.0.2.1:5", "x")).unwrap_err(),
            Busy::Queue(CHECKS_QUEUED_PER_THREAD)
        );
        // Answers free the places again.
        assert_eq!(verdicts(&mut checker, 2 * half).len(), 2 * half);
        assert!(checker.submit(check(1000, "10.0.0.1:7", "x")).is_ok());
    }

    #[test]
    fn the_fair_queue_serves_sources_in_turn_whatever_their_backlog() {
        let mut queue = FairQueue::new();
        let (flood, alice, bob) = (
            "10.0.0.2".parse::<IpAddr>().unwrap(),
            "10.0.0.1".parse::<IpAddr>().unwrap(),
            "10.0.0.3".parse::<IpAddr>().unwrap(),
        );
        for n in 0..1_000 {
            queue.push(flood, ("flood", n));
        }
        queue.push(alice, ("alice", 0));
        queue.push(alice, ("alice", 1));
        assert_eq!(queue.pop(), Some(("flood", 0)));
        queue.push(bob, ("bob", 0));
        // alice waited behind one of the flood's, not a thousand; bob, who came later,
        // behind alice's first and one more of the flood's.
        assert_eq!(queue.pop(), Some(("alice", 0)));
        assert_eq!(queue.pop(), Some(("flood", 1)));
        assert_eq!(queue.pop(), Some(("bob", 0)));
        assert_eq!(queue.pop(), Some(("alice", 1)));
        // Each source's own items stay in order.
        for n in 2..1_000 {
            assert_eq!(queue.pop(), Some(("flood", n)));
        }
        assert_eq!(queue.pop(), None);
        assert!(queue.by_source.is_empty() && queue.turn.is_empty());
    }
}
