//! Resumption tickets: a cheap credential a returning session presents instead of its
//! password, so that the login storm after a failover costs microseconds per session instead
//! of one argon2 verification (tens of milliseconds of CPU) each.
//!
//! A ticket is 10 base62 characters (it must fit SoupBinTCP's password field): 59 bits of
//! HMAC-SHA256 over the user name (lower-cased), the user's configured password hash and an
//! *expiry window* number, keyed by a key that is
//! - in a cluster, derived from the cluster secret (HMAC of a fixed label under the secret),
//!   so every node computes the same key with nothing to replicate: a ticket issued by one
//!   leader is accepted by the next;
//! - on a single node, random at each start (a restart invalidates tickets; clients fall
//!   back to their password).
//!
//! Binding the password hash means that changing a user's password in the configuration
//! revokes that user's tickets; rotating the cluster secret revokes every ticket.
//!
//! Expiry: time is cut into windows of `window_s` = max(ttl / 8, [`CLOCK_SKEW_S`]) seconds;
//! a ticket issued at `t` belongs to the window containing `t + ttl` and is accepted until
//! that window ends, so it lives between `ttl` and `ttl + window_s`. The verifier tries
//! every window a ticket issued at most `ttl` ago could name, widened by the clock skew
//! tolerance on both sides: at most [`CANDIDATES_MAX`] HMACs, a few microseconds. The
//! comparison runs over every candidate in constant time (no early exit).
//!
//! Security, in numbers: each guess matches one of at most [`CANDIDATES_MAX`] valid values
//! out of 2^59, so p ≤ 12 / 2^59 ≈ 2.1e-17 per guess. A guess is a login attempt, and a
//! failed one counts against the user's lockout (5 per 60 s per user name), so an online
//! attacker gets at most 7,200 guesses a day per user name: a success chance of about
//! 1.5e-13 per user per day, 5.5e-11 per year. (A wrong ticket is also checked as a
//! password, so the attacker gains nothing over guessing the password itself.)

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use keel_protocol::resume::{TicketNotice, TICKET_CHARS};
use keel_protocol::soupbin::Password;
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

type HmacSha256 = Hmac<Sha256>;

/// How far apart two nodes' clocks (or the issuing node's clock then and the verifying
/// node's now) may be without a valid ticket being refused, or an expired one being
/// accepted for longer than this.
pub const CLOCK_SKEW_S: u64 = 60;
/// Windows per time to live (the expiry's granularity is ttl / 8, at least the skew).
const WINDOWS_PER_TTL: u64 = 8;
/// Most windows a verification tries: (ttl + 2·skew) / window + 2 with window ≥ ttl / 8
/// and window ≥ skew, so at most 8 + 2 + 2.
pub const CANDIDATES_MAX: u64 = WINDOWS_PER_TTL + 4;
/// Bits of MAC in a ticket (62^10 ≈ 2^59.5, so 59 bits fit 10 base62 characters).
const MAC_BITS: u32 = 59;
/// Label under which the ticket key is derived from the cluster secret (domain separation
/// from the peer transport's use of the same secret).
const KEY_LABEL: &[u8] = b"keel resume ticket key v1";
/// Prefix of every MAC input.
const MAC_LABEL: &[u8] = b"keel-ticket-v1";
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Issues and verifies tickets under one key and time to live.
#[derive(Clone)]
pub struct TicketKey {
    /// The keyed HMAC state, cloned per ticket (saves rehashing the key).
    mac: HmacSha256,
    ttl_s: u64,
    window_s: u64,
}

impl std::fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("TicketKey")
            .field("ttl_s", &self.ttl_s)
            .finish_non_exhaustive()
    }
}

impl TicketKey {
    /// A key derived from the cluster's shared secret; `None` when `ttl_s` is 0 (tickets
    /// disabled).
    pub fn from_secret(secret: &[u8], ttl_s: u64) -> Option<TicketKey> {
        let mut derive = <HmacSha256 as Mac>::new_from_slice(secret).ok()?;
        derive.update(KEY_LABEL);
        let key = derive.finalize().into_bytes();
        TicketKey::from_key(&key, ttl_s)
    }

    /// A fresh random key (a single node: tickets live as long as the process).
    pub fn random(ttl_s: u64) -> Option<TicketKey> {
        use argon2::password_hash::rand_core::{OsRng, RngCore};
        let mut key = [0u8; 32];
        OsRng.try_fill_bytes(&mut key).ok()?;
        TicketKey::from_key(&key, ttl_s)
    }

    fn from_key(key: &[u8], ttl_s: u64) -> Option<TicketKey> {
        if ttl_s == 0 {
            return None;
        }
        Some(TicketKey {
            mac: <HmacSha256 as Mac>::new_from_slice(key).ok()?,
            ttl_s,
            window_s: (ttl_s / WINDOWS_PER_TTL).max(CLOCK_SKEW_S),
        })
    }

    /// The ticket for `user` (whose configured hash is `password_hash`) issued at `now_s`
    /// (Unix seconds).
    pub fn issue(&self, user: &str, password_hash: &str, now_s: u64) -> TicketNotice {
        let window = now_s.saturating_add(self.ttl_s) / self.window_s;
        let value = self.mac_value(user, password_hash, window);
        TicketNotice {
            ticket: encode(value),
            expires_unix_s: window.saturating_add(1).saturating_mul(self.window_s),
        }
    }

    /// Whether `presented` is a ticket of `user` (with `password_hash`) still valid at
    /// `now_s`. Text that cannot be a ticket is refused without computing anything.
    pub fn verify(&self, user: &str, password_hash: &str, presented: &str, now_s: u64) -> bool {
        let Some(value) = decode(presented) else {
            return false;
        };
        // Windows still open (allowing the verifier's clock to run ahead by the skew) ...
        let first = now_s.saturating_sub(CLOCK_SKEW_S) / self.window_s;
        // ... up to the latest a ticket issued by now could name (the issuer's clock may
        // have run ahead by the skew).
        let last = now_s
            .saturating_add(self.ttl_s)
            .saturating_add(CLOCK_SKEW_S)
            / self.window_s;
        let mut matched = Choice::from(0);
        for window in first..=last.min(first + CANDIDATES_MAX - 1) {
            matched |= self.mac_value(user, password_hash, window).ct_eq(&value);
        }
        matched.into()
    }

    /// The top 59 bits of HMAC(key, label ‖ len ‖ user ‖ len ‖ hash ‖ window).
    fn mac_value(&self, user: &str, password_hash: &str, window: u64) -> u64 {
        let mut mac = self.mac.clone();
        mac.update(MAC_LABEL);
        let user = user.to_ascii_lowercase();
        for field in [user.as_bytes(), password_hash.as_bytes()] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field);
        }
        mac.update(&window.to_be_bytes());
        let digest = mac.finalize().into_bytes();
        let mut top = [0u8; 8];
        top.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(top) >> (64 - MAC_BITS)
    }
}

/// Seconds since the Unix epoch by this machine's clock (0 if it is before 1970).
pub fn unix_now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// `value` (< 2^59) as exactly 10 base62 digits, most significant first.
fn encode(mut value: u64) -> Password {
    let mut text = [b'0'; TICKET_CHARS];
    for slot in text.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    // Ten base62 digits are ASCII alphanumerics, which a password field always takes.
    match std::str::from_utf8(&text)
        .ok()
        .and_then(|t| Password::new(t).ok())
    {
        Some(password) => password,
        None => unreachable!("base62 digits are a valid password"),
    }
}

/// The value of a 10-character base62 ticket, if `text` is one (and below 2^59).
fn decode(text: &str) -> Option<u64> {
    if text.len() != TICKET_CHARS {
        return None;
    }
    let mut value: u64 = 0;
    for byte in text.bytes() {
        let digit = match byte {
            b'0'..=b'9' => byte - b'0',
            b'A'..=b'Z' => byte - b'A' + 10,
            b'a'..=b'z' => byte - b'a' + 36,
            _ => return None,
        };
        value = value.checked_mul(62)?.checked_add(u64::from(digit))?;
    }
    (value < 1 << MAC_BITS).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
    const HOUR_S: u64 = 3_600;
    const NOW_S: u64 = 1_764_000_000;

    fn key(ttl_s: u64) -> TicketKey {
        TicketKey::from_secret(b"a cluster secret, 16+", ttl_s).unwrap()
    }

    #[test]
    fn base62_round_trips_at_the_edges() {
        for value in [0, 1, 61, 62, (1 << MAC_BITS) - 1, 123_456_789_012_345] {
            let text = encode(value);
            assert_eq!(text.as_str().len(), TICKET_CHARS);
            assert_eq!(decode(text.as_str()), Some(value));
        }
        // 2^59 and above, wrong lengths and other characters are not tickets.
        assert_eq!(decode("zzzzzzzzzz"), None);
        assert_eq!(decode("000000000"), None);
        assert_eq!(decode("00000000000"), None);
        assert_eq!(decode("00000-0000"), None);
        assert_eq!(decode("0000 00000"), None);
    }

    #[test]
    fn a_ticket_verifies_for_its_user_on_every_node_of_the_cluster() {
        let issued = key(8 * HOUR_S).issue("alice", HASH, NOW_S);
        let ticket = issued.ticket.as_str();
        // Another node derives the same key from the same secret.
        let other_node = key(8 * HOUR_S);
        assert!(other_node.verify("alice", HASH, ticket, NOW_S));
        // User names are case-insensitive, as logins are.
        assert!(other_node.verify("ALICE", HASH, ticket, NOW_S + 1));
        assert!(issued.expires_unix_s >= NOW_S + 8 * HOUR_S);
        assert!(issued.expires_unix_s <= NOW_S + 9 * HOUR_S);
    }

    #[test]
    fn a_ticket_is_refused_for_another_user_another_password_or_another_secret() {
        let key = key(8 * HOUR_S);
        let ticket = key.issue("alice", HASH, NOW_S).ticket;
        assert!(!key.verify("bob", HASH, ticket.as_str(), NOW_S));
        assert!(!key.verify("alice2", HASH, ticket.as_str(), NOW_S));
        // A changed password (a new hash in the configuration) revokes the user's tickets.
        assert!(!key.verify("alice", "$argon2id$other", ticket.as_str(), NOW_S));
        // A rotated secret revokes every ticket.
        let rotated = TicketKey::from_secret(b"the next cluster secret", 8 * HOUR_S).unwrap();
        assert!(!rotated.verify("alice", HASH, ticket.as_str(), NOW_S));
        // A random single-node key accepts only its own tickets.
        let single = TicketKey::random(8 * HOUR_S).unwrap();
        assert!(!single.verify("alice", HASH, ticket.as_str(), NOW_S));
        let own = single.issue("alice", HASH, NOW_S).ticket;
        assert!(single.verify("alice", HASH, own.as_str(), NOW_S));
    }

    #[test]
    fn a_tampered_ticket_is_refused() {
        let key = key(8 * HOUR_S);
        let ticket = key.issue("alice", HASH, NOW_S).ticket;
        let text = ticket.as_str().as_bytes().to_vec();
        for position in 0..TICKET_CHARS {
            for replacement in [b'0', b'z', b'M'] {
                let mut tampered = text.clone();
                if tampered[position] == replacement {
                    continue;
                }
                tampered[position] = replacement;
                let tampered = String::from_utf8(tampered).unwrap();
                assert!(
                    !key.verify("alice", HASH, &tampered, NOW_S),
                    "{tampered} accepted for {}",
                    ticket.as_str()
                );
            }
        }
        // The password field's trimming would make a shorter string: never a ticket.
        assert!(!key.verify("alice", HASH, &ticket.as_str()[..9], NOW_S));
    }

    #[test]
    fn a_ticket_expires_after_its_time_to_live_within_one_window_and_the_skew() {
        let ttl_s = 8 * HOUR_S;
        let key = key(ttl_s);
        let issued = key.issue("alice", HASH, NOW_S);
        let ticket = issued.ticket.as_str();
        let window_s = ttl_s / 8;
        // Valid through its life, up to the announced expiry plus the skew tolerance ...
        for at in [NOW_S, NOW_S + ttl_s, issued.expires_unix_s - 1] {
            assert!(key.verify("alice", HASH, ticket, at), "refused at {at}");
        }
        assert!(key.verify(
            "alice",
            HASH,
            ticket,
            issued.expires_unix_s + CLOCK_SKEW_S - 1
        ));
        // ... and refused from then on.
        for at in [
            issued.expires_unix_s + CLOCK_SKEW_S,
            NOW_S + ttl_s + window_s + CLOCK_SKEW_S,
            NOW_S + 10 * ttl_s,
        ] {
            assert!(!key.verify("alice", HASH, ticket, at), "accepted at {at}");
        }
        // A ticket that claims a window further ahead than any issued up to now (plus the
        // skew) could name is refused: a node's clock running ahead cannot mint tickets
        // living longer than the ttl elsewhere.
        let future = key.issue("alice", HASH, NOW_S + window_s + 2 * CLOCK_SKEW_S);
        assert!(!key.verify("alice", HASH, future.ticket.as_str(), NOW_S));
        // Within the skew it is accepted.
        let skewed = key.issue("alice", HASH, NOW_S + CLOCK_SKEW_S / 2);
        assert!(key.verify("alice", HASH, skewed.ticket.as_str(), NOW_S));
    }

    #[test]
    fn short_lives_are_rounded_up_to_the_skew_and_zero_disables() {
        assert!(TicketKey::from_secret(b"a cluster secret, 16+", 0).is_none());
        assert!(TicketKey::random(0).is_none());
        let key = key(10);
        let issued = key.issue("alice", HASH, NOW_S);
        assert!(issued.expires_unix_s <= NOW_S + 10 + CLOCK_SKEW_S);
        assert!(key.verify("alice", HASH, issued.ticket.as_str(), NOW_S + 10));
        assert!(!key.verify(
            "alice",
            HASH,
            issued.ticket.as_str(),
            NOW_S + 10 + 3 * CLOCK_SKEW_S
        ));
    }

    #[test]
    fn verification_tries_a_bounded_number_of_windows() {
        for ttl_s in [1, 59, 60, 61, 600, HOUR_S, 8 * HOUR_S, 7 * 24 * HOUR_S] {
            let window_s = (ttl_s / WINDOWS_PER_TTL).max(CLOCK_SKEW_S);
            let now = NOW_S;
            let first = (now - CLOCK_SKEW_S) / window_s;
            let last = (now + ttl_s + CLOCK_SKEW_S) / window_s;
            assert!(
                last - first < CANDIDATES_MAX,
                "ttl {ttl_s}: {}",
                last - first + 1
            );
        }
    }
}
