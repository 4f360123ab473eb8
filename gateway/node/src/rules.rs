//! The gateway's time rules for connections, with time passed in as a value: the login
//! deadline, the silence timeout, server heartbeats and the login lockout. The I/O thread
//! reads the clock once per turn and asks these; the tests below drive them with synthetic
//! instants instead of waiting. (The per-session throttle, `throttle.rs`, works the same
//! way.)

use std::time::{Duration, Instant};

use foldhash::{HashMap, HashMapExt};

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
/// Failed logins per user name tolerated within [`LOGIN_FAILURE_WINDOW`].
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

/// Failed logins per user name (lower-cased), counted in windows of
/// [`LOGIN_FAILURE_WINDOW`] from a window's first failure.
#[derive(Debug, Default)]
pub struct LoginFailures {
    by_user: HashMap<String, (u32, Instant)>,
}

impl LoginFailures {
    /// No failures yet.
    pub fn new() -> LoginFailures {
        LoginFailures {
            by_user: HashMap::new(),
        }
    }

    /// Whether `user` has used up its failures in the current window at `now`.
    pub fn locked_out(&self, user: &str, now: Instant) -> bool {
        self.by_user
            .get(user.to_ascii_lowercase().as_str())
            .is_some_and(|(count, since)| {
                *count >= LOGIN_FAILURES_MAX
                    && now.saturating_duration_since(*since) < LOGIN_FAILURE_WINDOW
            })
    }

    /// Counts a failure of `user` at `now`; returns the failures in its current window.
    pub fn record(&mut self, user: &str, now: Instant) -> u32 {
        let entry = self
            .by_user
            .entry(user.to_ascii_lowercase())
            .or_insert((0, now));
        if now.saturating_duration_since(entry.1) >= LOGIN_FAILURE_WINDOW {
            *entry = (0, now);
        }
        entry.0 += 1;
        entry.0
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

    #[test]
    fn five_failures_within_a_minute_lock_a_user_name_out_until_the_window_ends() {
        let t0 = Instant::now();
        let mut failures = LoginFailures::new();
        for i in 0..LOGIN_FAILURES_MAX {
            assert!(!failures.locked_out("alice", at(t0, u64::from(i) * 1_000)));
            assert_eq!(
                failures.record("Alice", at(t0, u64::from(i) * 1_000)),
                i + 1
            );
        }
        // Names are compared without case; other names are not affected.
        assert!(failures.locked_out("ALICE", at(t0, 5_000)));
        assert!(failures.locked_out("alice", at(t0, 59_999)));
        assert!(!failures.locked_out("bob", at(t0, 5_000)));
        // The window counts from its first failure.
        assert!(!failures.locked_out("alice", at(t0, 60_000)));
        assert_eq!(failures.record("alice", at(t0, 60_000)), 1);
    }

    #[test]
    fn failures_spread_over_more_than_a_window_never_lock_out() {
        let t0 = Instant::now();
        let mut failures = LoginFailures::new();
        for i in 0..20u64 {
            failures.record("bob", at(t0, i * 15_000));
            assert!(!failures.locked_out("bob", at(t0, i * 15_000)));
        }
    }
}
