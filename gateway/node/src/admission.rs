//! Who gets one of the order-entry port's connection slots. Pure bookkeeping (no sockets),
//! so its rules are tested without a network.
//!
//! Why: the slots ([`crate::server::CONNECTIONS_MAX`]) are the port's one scarce resource,
//! and a connection costs nothing to open. Without these rules anyone who can reach the
//! port fills every slot with idle connections and real users cannot log in.
//!
//! - A source address may hold at most `per_source_max` connections *not yet logged in*
//!   (waiting for their Login Request or for its password check); more are closed at once.
//!   Logged-in sessions do not count: there is at most one per configured user, so they
//!   cannot be multiplied by an attacker, and many users behind one address (a firm's
//!   gateway, a NAT) must not be limited by it.
//! - When every slot is taken, a new connection evicts the oldest not-yet-logged-in
//!   connection of the source holding the most of them. An attacker's sources can then
//!   only ever evict each other's (or, at worst, a real user's) *unfinished* logins, never
//!   keep a newcomer out; a real user whose login was evicted reconnects and evicts the
//!   attacker's in turn. Logged-in sessions are never evicted: if every slot is one, the
//!   newcomer is closed.
//!
//! Every map here is bounded by the slots: an entry exists only for a source with a
//! not-yet-logged-in connection, and each such connection holds a slot.

use std::collections::VecDeque;
use std::net::IpAddr;

use foldhash::{HashMap, HashMapExt};
use mio::Token;

/// What to do with a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Take it: a slot is free.
    Yes,
    /// Take it after closing this not-yet-logged-in connection (every slot is taken).
    Evict(Token),
    /// Close it: its source already holds this many not-yet-logged-in connections.
    SourceFull(usize),
    /// Close it: every slot is a logged-in session.
    AllLoggedIn,
}

/// Connection slots and, per source address, the connections not yet logged in.
#[derive(Debug)]
pub struct Admission {
    slots_max: usize,
    per_source_max: usize,
    /// Open connections (logged in or not).
    open: usize,
    /// Not-yet-logged-in connections by source, oldest first (tokens only grow, so this is
    /// also token order). No entry for a source without any.
    pre_login: HashMap<IpAddr, VecDeque<Token>>,
}

impl Admission {
    /// `slots_max` connections at once, at most `per_source_max` of one source not yet
    /// logged in (both at least 1).
    pub fn new(slots_max: usize, per_source_max: usize) -> Admission {
        Admission {
            slots_max: slots_max.max(1),
            per_source_max: per_source_max.max(1),
            open: 0,
            pre_login: HashMap::new(),
        }
    }

    /// Open connections.
    pub fn open(&self) -> usize {
        self.open
    }

    /// The decision on a new connection from `source`. Nothing changes until the caller
    /// reports what it did ([`Admission::opened`], [`Admission::closed`]).
    pub fn admit(&self, source: IpAddr) -> Admit {
        let held = self.pre_login.get(&source).map_or(0, VecDeque::len);
        if held >= self.per_source_max {
            return Admit::SourceFull(held);
        }
        if self.open < self.slots_max {
            return Admit::Yes;
        }
        // The source holding the most; among equals the one whose oldest is oldest, so the
        // choice does not depend on the map's order.
        let victim = self
            .pre_login
            .values()
            .filter_map(|queue| queue.front().map(|oldest| (queue.len(), *oldest)))
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1 .0.cmp(&a.1 .0)));
        match victim {
            Some((_, token)) => Admit::Evict(token),
            None => Admit::AllLoggedIn,
        }
    }

    /// A connection from `source` took a slot (not logged in yet).
    pub fn opened(&mut self, source: IpAddr, token: Token) {
        self.open += 1;
        self.pre_login.entry(source).or_default().push_back(token);
    }

    /// The connection logged in: it no longer counts against its source.
    pub fn logged_in(&mut self, source: IpAddr, token: Token) {
        self.forget_pre_login(source, token);
    }

    /// The connection closed, logged in or not: its slot is free.
    pub fn closed(&mut self, source: IpAddr, token: Token) {
        self.open = self.open.saturating_sub(1);
        self.forget_pre_login(source, token);
    }

    fn forget_pre_login(&mut self, source: IpAddr, token: Token) {
        let Some(queue) = self.pre_login.get_mut(&source) else {
            return;
        };
        // At most `per_source_max` entries to look through.
        if let Some(at) = queue.iter().position(|t| *t == token) {
            queue.remove(at);
        }
        if queue.is_empty() {
            self.pre_login.remove(&source);
        }
    }
}

/// Sources whose log lines are being limited at once; beyond it lines are only counted.
const LOG_SOURCES_MAX: usize = 4096;

/// Log lines about one source's refused or evicted connections, limited to one per
/// `interval` per source: a flood must not become a flood of log lines (disk, and the
/// operator's attention). What is held back is counted and reported, with the source, on
/// its next line or by [`LogLimit::expired`] once its interval is over.
#[derive(Debug)]
pub struct LogLimit {
    interval: std::time::Duration,
    /// When the source's last line was written, and the events held back since.
    by_source: HashMap<IpAddr, (std::time::Instant, u64)>,
    /// Events neither logged nor counted per source (the map was full).
    uncounted: u64,
}

impl LogLimit {
    /// One line per source per `interval`.
    pub fn new(interval: std::time::Duration) -> LogLimit {
        LogLimit {
            interval,
            by_source: HashMap::new(),
            uncounted: 0,
        }
    }

    /// An event of `source` at `now`: `Some(held back before it)` if it is to be logged
    /// (with that count), `None` if it is only counted.
    pub fn note(&mut self, source: IpAddr, now: std::time::Instant) -> Option<u64> {
        if let Some((logged_at, held)) = self.by_source.get_mut(&source) {
            if now.saturating_duration_since(*logged_at) < self.interval {
                *held += 1;
                return None;
            }
            let before = std::mem::take(held);
            *logged_at = now;
            return Some(before);
        }
        if self.by_source.len() >= LOG_SOURCES_MAX {
            self.uncounted += 1;
            return None;
        }
        self.by_source.insert(source, (now, 0));
        Some(0)
    }

    /// Sources whose interval is over, with the events held back since their last line
    /// (only those with some); forgets every source whose interval is over. Also returns,
    /// under no source, the events not counted per source.
    pub fn expired(&mut self, now: std::time::Instant) -> (Vec<(IpAddr, u64)>, u64) {
        let mut out = Vec::new();
        let interval = self.interval;
        self.by_source.retain(|source, (logged_at, held)| {
            let over = now.saturating_duration_since(*logged_at) >= interval;
            if over && *held > 0 {
                out.push((*source, *held));
            }
            !over
        });
        (out, std::mem::take(&mut self.uncounted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn a_source_holds_at_most_its_share_of_connections_not_logged_in() {
        let mut admission = Admission::new(100, 3);
        for t in 0..3 {
            assert_eq!(admission.admit(ip(2)), Admit::Yes);
            admission.opened(ip(2), Token(t));
        }
        assert_eq!(admission.admit(ip(2)), Admit::SourceFull(3));
        // Other sources are not affected.
        assert_eq!(admission.admit(ip(1)), Admit::Yes);
        // A login frees its place; a logged-in session never counts.
        admission.logged_in(ip(2), Token(0));
        assert_eq!(admission.admit(ip(2)), Admit::Yes);
        admission.opened(ip(2), Token(3));
        assert_eq!(admission.admit(ip(2)), Admit::SourceFull(3));
        // So does a close.
        admission.closed(ip(2), Token(1));
        assert_eq!(admission.admit(ip(2)), Admit::Yes);
        assert_eq!(admission.open(), 3);
    }

    #[test]
    fn when_full_the_oldest_unfinished_login_of_the_biggest_source_goes() {
        let mut admission = Admission::new(6, 10);
        admission.opened(ip(1), Token(1));
        for t in 2..5 {
            admission.opened(ip(2), Token(t));
        }
        admission.opened(ip(3), Token(5));
        admission.opened(ip(3), Token(6));
        // 127.0.0.2 holds the most: its oldest goes, whoever is knocking.
        assert_eq!(admission.admit(ip(1)), Admit::Evict(Token(2)));
        assert_eq!(admission.admit(ip(2)), Admit::Evict(Token(2)));
        admission.closed(ip(2), Token(2));
        admission.opened(ip(1), Token(7));
        // Now 127.0.0.1, .2 and .3 hold 2 each: the oldest of them all goes.
        assert_eq!(admission.admit(ip(4)), Admit::Evict(Token(1)));
    }

    #[test]
    fn logged_in_sessions_are_never_evicted() {
        let mut admission = Admission::new(2, 10);
        admission.opened(ip(1), Token(1));
        admission.opened(ip(2), Token(2));
        admission.logged_in(ip(1), Token(1));
        assert_eq!(admission.admit(ip(3)), Admit::Evict(Token(2)));
        admission.logged_in(ip(2), Token(2));
        assert_eq!(admission.admit(ip(3)), Admit::AllLoggedIn);
        admission.closed(ip(2), Token(2));
        assert_eq!(admission.admit(ip(3)), Admit::Yes);
    }

    #[test]
    fn an_attackers_idle_connections_never_keep_a_new_source_out() {
        // Every slot taken by four attacking sources, each at its limit.
        let mut admission = Admission::new(8, 2);
        let mut token = 0;
        for source in 2..6 {
            for _ in 0..2 {
                admission.opened(ip(source), Token(token));
                token += 1;
            }
        }
        for _ in 0..20 {
            // A real user from 127.0.0.1 always gets a slot (one of theirs goes)...
            let Admit::Evict(victim) = admission.admit(ip(1)) else {
                panic!("not admitted")
            };
            let source = (2..6)
                .map(ip)
                .find(|s| {
                    admission
                        .pre_login
                        .get(s)
                        .is_some_and(|q| q.contains(&victim))
                })
                .unwrap();
            admission.closed(source, victim);
            admission.opened(ip(1), Token(token));
            admission.logged_in(ip(1), Token(token));
            token += 1;
            // ...and the attackers reconnect; the user logged out again.
            admission.closed(ip(1), Token(token - 1));
            assert_eq!(admission.admit(source), Admit::Yes);
            admission.opened(source, Token(token));
            token += 1;
        }
    }

    #[test]
    fn log_lines_are_limited_per_source_and_what_is_held_back_is_reported() {
        let t0 = std::time::Instant::now();
        let at = |ms| t0 + std::time::Duration::from_millis(ms);
        let mut limit = LogLimit::new(std::time::Duration::from_secs(1));
        assert_eq!(limit.note(ip(2), at(0)), Some(0));
        for ms in 1..=10 {
            assert_eq!(limit.note(ip(2), at(ms)), None);
        }
        // Another source has its own line.
        assert_eq!(limit.note(ip(3), at(5)), Some(0));
        assert_eq!(limit.expired(at(999)), (vec![], 0));
        // The next line of the source carries the count...
        assert_eq!(limit.note(ip(2), at(1_000)), Some(10));
        assert_eq!(limit.note(ip(2), at(1_001)), None);
        // ...or, if it goes quiet, the summary once its interval is over.
        assert_eq!(limit.expired(at(2_000)), (vec![(ip(2), 1)], 0));
        assert!(limit.by_source.is_empty());
    }
}
