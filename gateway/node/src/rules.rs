//! The gateway's time rules for connections, with time passed in as a value: the login
//! deadline, the silence timeout, server heartbeats and the login lockout. The I/O thread
//! reads the clock once per turn and asks these; the tests below drive them with synthetic
//! instants instead of waiting. (The per-session throttle, `throttle.rs`, works the same
//! way.)

use std::time::{Duration, Instant};

use std::net::IpAddr;

use foldhash::HashMap;

/// Server heartbeat after this long without sending anything.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// A connection is dropped after this long without receiving anything.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);
/// A connection that has not sent a complete Login Request this long after connecting is
/// dropped, even if it trickles bytes (which would otherwise hold one of the connection
/// slots forever), unless `server.login_deadline_ms` says otherwise. Short, because a
/// connection not logged in is what an attacker holds slots with; a client sends its Login
/// Request right after connecting, so 2 s leaves room for a slow network.
pub const LOGIN_DEADLINE_DEFAULT: Duration = Duration::from_secs(2);
/// Attempts without success per (user, source) tolerated within [`LOGIN_FAILURE_WINDOW`]
/// before [`Lockout`] refuses the pair.
pub const LOGIN_FAILURES_MAX: u32 = 5;
/// Window for counting failed logins.
pub const LOGIN_FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Where a connection stands in the login sequence, as far as timers care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No complete Login Request yet.
    AwaitingLogin,
    /// Its Login Request is being checked.
    Authenticating,
    /// Logged in.
    LoggedIn,
}

/// What a connection's timers say now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to do.
    Quiet,
    /// Send a Server Heartbeat.
    Heartbeat,
    /// Drop the connection, for this reason.
    Drop(&'static str),
}

/// When a connection connected, last received and last sent.
#[derive(Clone, Copy, Debug)]
pub struct Liveness {
    connected_at: Instant,
    last_received: Instant,
    last_sent: Instant,
}

impl Liveness {
    /// A connection accepted at `now`.
    pub fn new(now: Instant) -> Liveness {
        Liveness {
            connected_at: now,
            last_received: now,
            last_sent: now,
        }
    }

    /// Bytes arrived at `now`.
    pub fn received(&mut self, now: Instant) {
        self.last_received = self.last_received.max(now);
    }

    /// Bytes were written at `now`.
    pub fn sent(&mut self, now: Instant) {
        self.last_sent = self.last_sent.max(now);
    }

    /// The timers' verdict at `now`; `output_pending` says whether unsent output is queued
    /// (then a heartbeat would only wait behind it); a connection still awaiting its login
    /// is dropped `login_deadline` after connecting.
    pub fn verdict(
        &self,
        now: Instant,
        phase: Phase,
        output_pending: bool,
        login_deadline: Duration,
    ) -> Verdict {
        if now.saturating_duration_since(self.last_received) >= CLIENT_TIMEOUT {
            Verdict::Drop("no client traffic for 15 s")
        } else if phase == Phase::AwaitingLogin
            && now.saturating_duration_since(self.connected_at) >= login_deadline
        {
            Verdict::Drop("no login request before the login deadline")
        } else if phase == Phase::LoggedIn
            && !output_pending
            && now.saturating_duration_since(self.last_sent) >= HEARTBEAT_INTERVAL
        {
            Verdict::Heartbeat
        } else {
            Verdict::Quiet
        }
    }
}

/// First refusal of a (user, source) pair that used up its failures; each further lockout
/// within the window doubles it, up to [`LOCKOUT_MAX`].
pub const LOCKOUT_FIRST: Duration = Duration::from_secs(1);
/// The longest lockout.
pub const LOCKOUT_MAX: Duration = Duration::from_secs(300);
/// (user, source) pairs tracked at once; beyond it (only an attacker with that many
/// addresses gets there) a new pair's attempts are allowed untracked, and counted.
pub const LOCKOUT_PAIRS_MAX: usize = 65_536;

/// Who a login is for: a configured user (by index) or any name that is not one. Unknown
/// names share one key per source, so guessing them never counts against a real user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LoginName {
    /// A configured user.
    User(usize),
    /// A name no user has.
    Unknown,
}

/// One (user, source) pair's record.
#[derive(Clone, Copy, Debug)]
struct Attempts {
    /// Attempts that did not succeed (yet: counted when submitted) since the pair was last
    /// quiet for a whole window.
    count: u32,
    last_attempt: Instant,
    /// Refused until then.
    locked_until: Option<Instant>,
    /// The next lockout's length.
    next_lock: Duration,
}

impl Attempts {
    /// Whether the pair has been quiet for a whole window at `now`: no attempt, and no
    /// lockout running, for [`LOGIN_FAILURE_WINDOW`].
    fn quiet_at(&self, now: Instant) -> bool {
        let busy_until = self
            .locked_until
            .map_or(self.last_attempt, |until| until.max(self.last_attempt));
        now.saturating_duration_since(busy_until) >= LOGIN_FAILURE_WINDOW
    }
}

/// Login lockout per (user, source address), with exponential backoff: once a pair has
/// [`LOGIN_FAILURES_MAX`] attempts without success, none of them [`LOGIN_FAILURE_WINDOW`]
/// or more after the one before, it is refused for [`LOCKOUT_FIRST`]; each further attempt
/// locks it for twice as long as the last time, up to [`LOCKOUT_MAX`], until the pair has
/// been quiet (no attempt, no lockout running) for a whole window. Attempts count when they are
/// *submitted* for checking (a success clears the pair), so a flood cannot get more checks
/// in by racing ahead of its verdicts; guesses from one address never lock the user out
/// from another.
#[derive(Debug, Default)]
pub struct Lockout {
    pairs: HashMap<(LoginName, IpAddr), Attempts>,
    /// Attempts allowed untracked because the map was full.
    untracked: u64,
}

impl Lockout {
    /// Nothing recorded.
    pub fn new() -> Lockout {
        Lockout::default()
    }

    /// Whether `name` from `source` is refused at `now`.
    pub fn locked(&self, name: LoginName, source: IpAddr, now: Instant) -> bool {
        self.pairs
            .get(&(name, source))
            .and_then(|attempts| attempts.locked_until)
            .is_some_and(|until| now < until)
    }

    /// An attempt of `name` from `source` submitted at `now` (not locked); returns the
    /// attempts counted in its window.
    pub fn attempted(&mut self, name: LoginName, source: IpAddr, now: Instant) -> u32 {
        let key = (name, source);
        if !self.pairs.contains_key(&key) && self.pairs.len() >= LOCKOUT_PAIRS_MAX {
            self.prune(now);
            if self.pairs.len() >= LOCKOUT_PAIRS_MAX {
                self.untracked += 1;
                return 0;
            }
        }
        let attempts = self.pairs.entry(key).or_insert(Attempts {
            count: 0,
            last_attempt: now,
            locked_until: None,
            next_lock: LOCKOUT_FIRST,
        });
        if attempts.quiet_at(now) {
            // A quiet window: start over, backoff too.
            *attempts = Attempts {
                count: 0,
                last_attempt: now,
                locked_until: None,
                next_lock: LOCKOUT_FIRST,
            };
        }
        attempts.last_attempt = attempts.last_attempt.max(now);
        attempts.count = attempts.count.saturating_add(1);
        if attempts.count >= LOGIN_FAILURES_MAX {
            attempts.locked_until = Some(now + attempts.next_lock);
            attempts.next_lock = (attempts.next_lock * 2).min(LOCKOUT_MAX);
        }
        attempts.count
    }

    /// `name` from `source` logged in: its record is cleared.
    pub fn succeeded(&mut self, name: LoginName, source: IpAddr) {
        self.pairs.remove(&(name, source));
    }

    /// Forgets the pairs neither locked nor in a window at `now`.
    pub fn prune(&mut self, now: Instant) {
        self.pairs.retain(|_, attempts| !attempts.quiet_at(now));
    }

    /// Pairs tracked, and attempts allowed untracked so far.
    pub fn sizes(&self) -> (usize, u64) {
        (self.pairs.len(), self.untracked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINE: Duration = LOGIN_DEADLINE_DEFAULT;
    /// A login deadline that never comes into play.
    const LONG: Duration = Duration::from_secs(3_600);

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn a_connection_without_a_login_request_is_dropped_at_the_login_deadline() {
        let t0 = Instant::now();
        let mut live = Liveness::new(t0);
        // Trickling bytes keeps the silence timer quiet, not the login deadline.
        live.received(at(t0, 1_900));
        assert_eq!(
            live.verdict(at(t0, 1_999), Phase::AwaitingLogin, false, DEADLINE),
            Verdict::Quiet
        );
        assert_eq!(
            live.verdict(at(t0, 2_000), Phase::AwaitingLogin, false, DEADLINE),
            Verdict::Drop("no login request before the login deadline")
        );
        // A login under way or done is not held to the login deadline.
        assert_eq!(
            live.verdict(at(t0, 2_000), Phase::Authenticating, false, DEADLINE),
            Verdict::Quiet
        );
        // The deadline is the configured one.
        assert_eq!(
            live.verdict(at(t0, 2_000), Phase::AwaitingLogin, false, 5 * DEADLINE),
            Verdict::Quiet
        );
    }

    #[test]
    fn a_silent_connection_is_dropped_after_15_seconds_whatever_its_phase() {
        let t0 = Instant::now();
        let mut live = Liveness::new(t0);
        live.received(at(t0, 1_000));
        live.sent(at(t0, 15_500));
        for phase in [Phase::AwaitingLogin, Phase::Authenticating, Phase::LoggedIn] {
            assert_ne!(
                live.verdict(at(t0, 15_999), phase, true, LONG),
                Verdict::Drop("no client traffic for 15 s")
            );
            assert_eq!(
                live.verdict(at(t0, 16_000), phase, true, LONG),
                Verdict::Drop("no client traffic for 15 s")
            );
        }
    }

    #[test]
    fn a_logged_in_session_gets_a_heartbeat_after_a_second_without_output() {
        let t0 = Instant::now();
        let mut live = Liveness::new(t0);
        live.sent(at(t0, 500));
        live.received(at(t0, 1_400));
        assert_eq!(
            live.verdict(at(t0, 1_499), Phase::LoggedIn, false, LONG),
            Verdict::Quiet
        );
        assert_eq!(
            live.verdict(at(t0, 1_500), Phase::LoggedIn, false, LONG),
            Verdict::Heartbeat
        );
        // Output already queued goes first; a login not finished gets no heartbeat.
        assert_eq!(
            live.verdict(at(t0, 1_500), Phase::LoggedIn, true, LONG),
            Verdict::Quiet
        );
        assert_eq!(
            live.verdict(at(t0, 1_500), Phase::Authenticating, false, LONG),
            Verdict::Quiet
        );
        live.sent(at(t0, 1_500));
        assert_eq!(
            live.verdict(at(t0, 1_600), Phase::LoggedIn, false, LONG),
            Verdict::Quiet
        );
    }

    #[test]
    fn times_never_move_back() {
        let t0 = Instant::now();
        let mut live = Liveness::new(at(t0, 5_000));
        live.received(t0);
        live.sent(t0);
        assert_eq!(
            live.verdict(at(t0, 19_999), Phase::LoggedIn, true, LONG),
            Verdict::Quiet
        );
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn five_attempts_lock_the_pair_out_for_a_second_then_twice_as_long_each_time() {
        let t0 = Instant::now();
        let mut lockout = Lockout::new();
        let alice = LoginName::User(0);
        for i in 0..LOGIN_FAILURES_MAX {
            assert!(!lockout.locked(alice, ip(2), at(t0, u64::from(i))));
            assert_eq!(lockout.attempted(alice, ip(2), at(t0, u64::from(i))), i + 1);
        }
        // Counted when submitted: locked before any verdict came back.
        let fifth = at(t0, 4);
        assert!(lockout.locked(alice, ip(2), fifth));
        assert!(lockout.locked(
            alice,
            ip(2),
            fifth + LOCKOUT_FIRST - Duration::from_millis(1)
        ));
        assert!(!lockout.locked(alice, ip(2), fifth + LOCKOUT_FIRST));
        // The next attempt locks it for 2 s, then 4 s...
        let mut now = fifth + LOCKOUT_FIRST;
        let mut lock = 2 * LOCKOUT_FIRST;
        for _ in 0..20 {
            lockout.attempted(alice, ip(2), now);
            assert!(lockout.locked(alice, ip(2), now + lock - Duration::from_millis(1)));
            assert!(!lockout.locked(alice, ip(2), now + lock));
            now += lock;
            // ...up to the cap (it starts over only after a quiet window).
            lock = (lock * 2).min(LOCKOUT_MAX);
        }
        assert_eq!(lock, LOCKOUT_MAX);
    }

    #[test]
    fn guesses_from_one_address_never_lock_a_user_out_from_another() {
        let t0 = Instant::now();
        let mut lockout = Lockout::new();
        let alice = LoginName::User(0);
        for i in 0..100 {
            lockout.attempted(alice, ip(2), at(t0, i));
            lockout.attempted(LoginName::Unknown, ip(2), at(t0, i));
        }
        assert!(lockout.locked(alice, ip(2), at(t0, 100)));
        assert!(lockout.locked(LoginName::Unknown, ip(2), at(t0, 100)));
        // alice from her own address, and other users, are untouched.
        assert!(!lockout.locked(alice, ip(1), at(t0, 100)));
        assert!(!lockout.locked(LoginName::User(1), ip(2), at(t0, 100)));
        assert!(!lockout.locked(LoginName::Unknown, ip(1), at(t0, 100)));
    }

    #[test]
    fn a_success_clears_the_pair_and_a_quiet_window_starts_over() {
        let t0 = Instant::now();
        let mut lockout = Lockout::new();
        let bob = LoginName::User(1);
        for i in 0..LOGIN_FAILURES_MAX - 1 {
            lockout.attempted(bob, ip(1), at(t0, u64::from(i)));
        }
        lockout.succeeded(bob, ip(1));
        assert_eq!(lockout.attempted(bob, ip(1), at(t0, 10)), 1);
        // Attempts a window apart never lock out.
        for i in 0..20u64 {
            lockout.attempted(bob, ip(3), at(t0, i * 60_000));
            assert!(!lockout.locked(bob, ip(3), at(t0, i * 60_000)));
        }
        // Pruning forgets what no longer matters.
        lockout.prune(at(t0, 20 * 60_000));
        assert_eq!(lockout.sizes(), (0, 0));
    }
}
