//! Per-session message throttle: a token bucket the I/O thread consults before it handles
//! each client packet.
//!
//! Why: one I/O thread serves every session, so a session sending as fast as TCP allows
//! would otherwise take all of that thread's time, and every other session's orders would
//! wait behind it. A throttled session is not cut off and nothing of it is dropped or
//! reordered: the gateway simply stops reading its socket until the bucket refills, TCP's
//! flow control pushes back on the sender, and its packets are handled later in order.
//!
//! Pure (time is passed in), so it is tested without sleeping.

use std::time::{Duration, Instant};

const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// A token bucket of packets: `rate_per_second_max` tokens a second, at most
/// `burst_max` banked.
#[derive(Clone, Debug)]
pub struct Throttle {
    tokens: u64,
    burst_max: u64,
    rate_per_second_max: u64,
    /// The instant up to which refills are accounted for.
    refilled_at: Instant,
}

impl Throttle {
    /// A full bucket. `rate_per_second_max` and `burst_max` are at least 1 (the
    /// configuration checks this; smaller values are raised to 1).
    pub fn new(rate_per_second_max: u64, burst_max: u64, now: Instant) -> Throttle {
        let burst_max = burst_max.max(1);
        Throttle {
            tokens: burst_max,
            burst_max,
            rate_per_second_max: rate_per_second_max.max(1),
            refilled_at: now,
        }
    }

    /// Takes one token if there is one at `now`. The bucket is brought up to date on every
    /// take: refilling only when it looked empty would count time spent full as earned and
    /// let a second burst through after a quiet spell.
    #[inline]
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }

    /// When the bucket will hold `wanted` tokens (capped at its size) — the time to look at
    /// a throttled session again. Waiting for a batch rather than one token keeps a
    /// throttled session from costing one wake-up per packet.
    pub fn ready_at(&self, wanted: u64) -> Instant {
        let wanted = wanted.clamp(1, self.burst_max);
        let missing = wanted.saturating_sub(self.tokens);
        // Rounded up: at the instant returned, `refill` has earned every missing token.
        let nanos =
            (u128::from(missing) * NANOS_PER_SECOND).div_ceil(u128::from(self.rate_per_second_max));
        self.refilled_at + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled_at).as_nanos();
        let earned = elapsed * u128::from(self.rate_per_second_max) / NANOS_PER_SECOND;
        if earned == 0 {
            return;
        }
        let room = self.burst_max - self.tokens;
        if earned >= u128::from(room) {
            // Full: time spent full earns nothing, so the account restarts now.
            self.tokens = self.burst_max;
            self.refilled_at = now;
            return;
        }
        // `earned < room ≤ burst_max`, so it fits in u64. Advance the account by exactly the
        // time those tokens took, carrying the remainder to the next refill.
        let earned = earned as u64;
        self.tokens += earned;
        let spent_nanos =
            u128::from(earned) * NANOS_PER_SECOND / u128::from(self.rate_per_second_max);
        self.refilled_at += Duration::from_nanos(u64::try_from(spent_nanos).unwrap_or(u64::MAX));
        debug_assert!(self.tokens <= self.burst_max);
        debug_assert!(self.refilled_at <= now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take_all(throttle: &mut Throttle, now: Instant) -> u64 {
        let mut taken = 0;
        while throttle.try_take(now) {
            taken += 1;
        }
        taken
    }

    #[test]
    fn a_full_bucket_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut throttle = Throttle::new(1_000, 50, start);
        assert_eq!(take_all(&mut throttle, start), 50);
        // 1,000 a second: 10 more after 10 ms, not 11.
        assert_eq!(
            take_all(&mut throttle, start + Duration::from_millis(10)),
            10
        );
        assert_eq!(
            take_all(&mut throttle, start + Duration::from_millis(10)),
            0
        );
    }

    #[test]
    fn fractions_of_a_token_are_carried_not_lost() {
        let start = Instant::now();
        let mut throttle = Throttle::new(3, 10, start);
        assert_eq!(take_all(&mut throttle, start), 10);
        // A third of a second per token: after 1 s exactly 3, in any slicing of time.
        let mut taken = 0;
        for step in 1..=100 {
            taken += take_all(&mut throttle, start + Duration::from_millis(10 * step));
        }
        assert_eq!(taken, 3);
    }

    #[test]
    fn idle_time_banks_at_most_the_burst() {
        let start = Instant::now();
        let mut throttle = Throttle::new(100, 5, start);
        assert_eq!(take_all(&mut throttle, start), 5);
        assert_eq!(take_all(&mut throttle, start + Duration::from_secs(60)), 5);
    }

    #[test]
    fn ready_at_says_when_a_batch_is_available() {
        let start = Instant::now();
        let mut throttle = Throttle::new(1_000, 100, start);
        assert_eq!(take_all(&mut throttle, start), 100);
        let at = throttle.ready_at(32);
        assert_eq!(at, start + Duration::from_millis(32));
        assert_eq!(take_all(&mut throttle, at), 32);
        // Asking for more than the bucket holds waits for a full bucket, no longer.
        assert_eq!(throttle.ready_at(1_000), at + Duration::from_millis(100));
    }

    #[test]
    fn time_spent_full_or_partly_full_earns_nothing_beyond_the_burst() {
        let start = Instant::now();
        // Idle with a full bucket, then a burst: the burst, not twice it.
        let mut throttle = Throttle::new(100, 5, start);
        assert_eq!(take_all(&mut throttle, start + Duration::from_secs(60)), 5);
        // Partly used, then idle: back to full, no more.
        let mut throttle = Throttle::new(100, 5, start);
        assert!(throttle.try_take(start));
        assert!(throttle.try_take(start));
        assert_eq!(take_all(&mut throttle, start + Duration::from_secs(60)), 5);
        // A burst shortly after the bucket was created: the burst plus what the time earned.
        let mut throttle = Throttle::new(20, 5, start);
        assert_eq!(
            take_all(&mut throttle, start + Duration::from_millis(120)),
            5
        );
    }

    #[test]
    fn ready_at_is_never_early() {
        let start = Instant::now();
        for rate in [1, 3, 7, 1_000, 20_000, 999_983] {
            let mut throttle = Throttle::new(rate, 1, start);
            assert!(throttle.try_take(start));
            let at = throttle.ready_at(1);
            assert!(throttle.try_take(at), "rate {rate}: no token at ready_at");
        }
    }
}
