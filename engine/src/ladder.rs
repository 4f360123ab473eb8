//! One side of an order book: price levels, each a FIFO queue of resting orders.
//!
//! Levels are addressed by a *key* in which lower is always better: asks use `key = price`,
//! bids `key = -price` (limit prices are `>= 1`, so the negation cannot overflow). One
//! ladder type then serves both sides, and "best" is always the smallest key.
//!
//! Most activity happens within a few thousand ticks of the best price, so the ladder keeps
//! a window of `2^window_bits` keys as a flat array of levels with a two-level occupancy
//! bitmap (QuantCup style): creating, finding and removing a level there is O(1), and the
//! next-best level after the best empties is a couple of `trailing_zeros`. Keys outside the
//! window go to an ordered `BTreeMap` so any `i64` price works. The window is re-centred
//! when it is empty or when most levels have drifted outside it. The layout never affects
//! results, only speed: every query returns the same answer either way.

use std::collections::BTreeMap;

use crate::slab::{Slab, NIL};
use crate::types::{Price, Side};

/// Converts a price to the ladder key of a side (lower key = better price).
#[inline]
pub(crate) fn key_of(side: Side, price: Price) -> i64 {
    // Validated where prices enter (new orders, replaces, restored state). Debug only: this
    // runs several times per command, and a bad price here would break no structure.
    debug_assert!(price >= 1, "limit prices are positive");
    match side {
        Side::Buy => -price,
        Side::Sell => price,
    }
}

/// Converts a ladder key back to a price.
#[inline]
pub(crate) fn price_of(side: Side, key: i64) -> Price {
    match side {
        Side::Buy => -key,
        Side::Sell => key,
    }
}

/// A price level: the FIFO queue of its orders. Empty when `head == NIL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Level {
    pub head: u32,
    pub tail: u32,
}

impl Level {
    const EMPTY: Level = Level {
        head: NIL,
        tail: NIL,
    };
}

/// One side of a book.
#[derive(Clone, Debug)]
pub(crate) struct Ladder {
    /// Key of window slot 0. Invariant: `base <= i64::MAX - window_len`.
    base: i64,
    /// Levels for keys `base .. base + window_len`.
    window: Box<[Level]>,
    /// Bit `i` set iff `window[i]` is non-empty.
    occupied: Box<[u64]>,
    /// Bit `j` set iff `occupied[j] != 0`.
    summary: Box<[u64]>,
    window_levels: usize,
    /// Non-empty levels whose keys fall outside the window.
    overflow: BTreeMap<i64, Level>,
    /// Smallest non-empty key, cached so best-price access is O(1).
    best: Option<i64>,
}

impl Ladder {
    /// Makes an empty ladder whose window spans `2^window_bits` keys (6 ..= 24).
    pub fn new(window_bits: u32) -> Ladder {
        // `EngineConfig` is validated by `Engine::new`.
        assert!((6..=24).contains(&window_bits), "window bits out of range");
        let window_len = 1usize << window_bits;
        let words = window_len / 64;
        Ladder {
            base: 0,
            window: vec![Level::EMPTY; window_len].into_boxed_slice(),
            occupied: vec![0; words].into_boxed_slice(),
            summary: vec![0; words.div_ceil(64)].into_boxed_slice(),
            window_levels: 0,
            overflow: BTreeMap::new(),
            best: None,
        }
    }

    #[inline]
    fn window_len(&self) -> u64 {
        self.window.len() as u64
    }

    /// The window offset of `key`, if it falls inside the window.
    #[inline]
    fn offset(&self, key: i64) -> Option<usize> {
        // Two's-complement distance: for key < base it wraps to >= 2^63, beyond any window.
        let off = (key as u64).wrapping_sub(self.base as u64);
        (off < self.window_len()).then_some(off as usize)
    }

    /// The best (smallest) non-empty key.
    #[inline]
    pub fn best(&self) -> Option<i64> {
        self.best
    }

    /// Number of non-empty levels.
    #[cfg(test)]
    pub fn level_count(&self) -> usize {
        self.window_levels + self.overflow.len()
    }

    /// The first order of the level at `key`, or `NIL` if that level is empty.
    #[inline]
    pub fn head(&self, key: i64) -> u32 {
        match self.offset(key) {
            Some(off) => self.window[off].head,
            None => self.overflow.get(&key).map_or(NIL, |level| level.head),
        }
    }

    /// The smallest non-empty key `>= from`.
    pub fn first_at_or_after(&self, from: i64) -> Option<i64> {
        let window_end = self.base + self.window_len() as i64;
        let window_from = if from < self.base {
            if let Some((&key, _)) = self.overflow.range(from..self.base).next() {
                return Some(key);
            }
            0
        } else if let Some(off) = self.offset(from) {
            off
        } else {
            return self.overflow.range(from..).next().map(|(&key, _)| key);
        };
        if let Some(off) = self.first_occupied_from(window_from) {
            return Some(self.base + off as i64);
        }
        self.overflow
            .range(window_end..)
            .next()
            .map(|(&key, _)| key)
    }

    /// The smallest non-empty key strictly after `key`.
    #[inline]
    pub fn next_after(&self, key: i64) -> Option<i64> {
        key.checked_add(1)
            .and_then(|from| self.first_at_or_after(from))
    }

    /// Appends order `slot` (whose key is `key`) at the back of its level's queue.
    pub fn push_back(&mut self, key: i64, slot: u32, orders: &mut Slab) {
        if self.offset(key).is_none() && self.should_recentre(key) {
            self.recentre(key);
        }
        let level = match self.offset(key) {
            Some(off) => {
                if self.window[off].head == NIL {
                    self.mark_occupied(off);
                }
                &mut self.window[off]
            }
            None => self.overflow.entry(key).or_insert(Level::EMPTY),
        };
        let tail = level.tail;
        if tail == NIL {
            level.head = slot;
        } else {
            orders.get_mut(tail).next = slot;
        }
        level.tail = slot;
        let order = orders.get_mut(slot);
        order.prev = tail;
        order.next = NIL;
        if self.best.is_none_or(|best| key < best) {
            self.best = Some(key);
        }
    }

    /// Removes order `slot` (whose key is `key`) from its level, dropping the level if it
    /// empties and moving the cached best on if that was the best level.
    pub fn unlink(&mut self, key: i64, slot: u32, orders: &mut Slab) {
        let (prev, next) = {
            let order = orders.get(slot);
            (order.prev, order.next)
        };
        if prev != NIL {
            orders.get_mut(prev).next = next;
        }
        if next != NIL {
            orders.get_mut(next).prev = prev;
        }
        let emptied = match self.offset(key) {
            Some(off) => {
                let level = &mut self.window[off];
                Self::unlink_ends(level, slot, prev, next);
                let emptied = level.head == NIL;
                if emptied {
                    self.mark_vacant(off);
                }
                emptied
            }
            None => {
                let level = self.overflow.get_mut(&key);
                // A resting order's level exists until its last order leaves it.
                assert!(level.is_some(), "unlinking from a missing level");
                let Some(level) = level else { return };
                Self::unlink_ends(level, slot, prev, next);
                let emptied = level.head == NIL;
                if emptied {
                    self.overflow.remove(&key);
                }
                emptied
            }
        };
        if emptied && self.best == Some(key) {
            self.best = self.next_after(key);
        }
    }

    #[inline]
    fn unlink_ends(level: &mut Level, slot: u32, prev: u32, next: u32) {
        if level.head == slot {
            level.head = next;
        }
        if level.tail == slot {
            level.tail = prev;
        }
    }

    #[inline]
    fn mark_occupied(&mut self, off: usize) {
        let word = off / 64;
        self.occupied[word] |= 1 << (off % 64);
        self.summary[word / 64] |= 1 << (word % 64);
        self.window_levels += 1;
    }

    #[inline]
    fn mark_vacant(&mut self, off: usize) {
        let word = off / 64;
        self.occupied[word] &= !(1 << (off % 64));
        if self.occupied[word] == 0 {
            self.summary[word / 64] &= !(1 << (word % 64));
        }
        self.window_levels -= 1;
    }

    /// The smallest occupied window offset `>= from`.
    #[inline]
    fn first_occupied_from(&self, from: usize) -> Option<usize> {
        let word = from / 64;
        if word >= self.occupied.len() {
            return None;
        }
        let bits = self.occupied[word] & (u64::MAX << (from % 64));
        if bits != 0 {
            return Some(word * 64 + bits.trailing_zeros() as usize);
        }
        // Scan the summary for the next non-empty word after `word`.
        let mut summary_index = (word + 1) / 64;
        let mut mask = u64::MAX << ((word + 1) % 64);
        while summary_index < self.summary.len() {
            let summary_bits = self.summary[summary_index] & mask;
            if summary_bits != 0 {
                let next_word = summary_index * 64 + summary_bits.trailing_zeros() as usize;
                let bits = self.occupied[next_word];
                assert!(bits != 0, "summary bit set for an empty word");
                return Some(next_word * 64 + bits.trailing_zeros() as usize);
            }
            summary_index += 1;
            mask = u64::MAX;
        }
        None
    }

    /// Re-centre when the window holds nothing, or when a new best level falls outside a
    /// window that most levels have drifted away from. The second rule needs the overflow to
    /// hold four times the window's levels, which bounds how often re-centring can repeat.
    fn should_recentre(&self, key: i64) -> bool {
        if self.window_levels == 0 {
            return true;
        }
        let new_best = self.best.is_none_or(|best| key < best);
        new_best && self.window_levels * 4 <= self.overflow.len()
    }

    /// Moves the window so `key` sits one eighth in (room for better prices below it and
    /// for the depth of the book above it), migrating levels between window and overflow.
    fn recentre(&mut self, key: i64) {
        let window_len = self.window_len() as i64;
        let base = key
            .saturating_sub(window_len / 8)
            .min(i64::MAX - window_len);
        // Move every window level out to the overflow map.
        let mut off = self.first_occupied_from(0);
        while let Some(current) = off {
            let level = self.window[current];
            self.overflow.insert(self.base + current as i64, level);
            self.window[current] = Level::EMPTY;
            self.mark_vacant(current);
            off = self.first_occupied_from(current + 1);
        }
        assert_eq!(
            self.window_levels, 0,
            "window levels left after emptying it"
        );
        self.base = base;
        // Pull the overflow levels that fall inside the new window into it.
        let inside: Vec<(i64, Level)> = self
            .overflow
            .range(base..base + window_len)
            .map(|(&k, &level)| (k, level))
            .collect();
        for (k, level) in inside {
            self.overflow.remove(&k);
            let off = (k - base) as usize;
            self.window[off] = level;
            self.mark_occupied(off);
        }
    }

    /// Every non-empty key in best-first order (for book output and invariant checks).
    pub fn keys(&self) -> impl Iterator<Item = i64> + '_ {
        let mut next = self.best;
        std::iter::from_fn(move || {
            let key = next?;
            next = self.next_after(key);
            Some(key)
        })
    }

    /// Checks the ladder's internal consistency. O(window + levels); for tests and debugging.
    pub fn check(&self) -> Result<(), String> {
        let mut counted = 0;
        for (word_index, &word) in self.occupied.iter().enumerate() {
            let summary_bit = self.summary[word_index / 64] >> (word_index % 64) & 1;
            if (word != 0) != (summary_bit == 1) {
                return Err(format!("summary bit wrong for word {word_index}"));
            }
            for bit in 0..64 {
                let off = word_index * 64 + bit;
                let set = word >> bit & 1 == 1;
                if set != (self.window[off].head != NIL) {
                    return Err(format!("occupancy bit wrong at window offset {off}"));
                }
                counted += usize::from(set);
            }
        }
        if counted != self.window_levels {
            return Err("window level count wrong".into());
        }
        for key in self.overflow.keys() {
            if self.offset(*key).is_some() {
                return Err(format!("overflow key {key} lies inside the window"));
            }
        }
        let first = self.first_at_or_after(i64::MIN);
        if first != self.best {
            return Err(format!("cached best {:?} != actual {first:?}", self.best));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slab::Order;
    use crate::types::SelfTradePrevention;

    fn add(ladder: &mut Ladder, orders: &mut Slab, key: i64) -> u32 {
        let slot = orders.insert(Order {
            id: 0,
            account: 0,
            price: key.abs(),
            open: 1,
            prev: NIL,
            next: NIL,
            acct_prev: NIL,
            acct_next: NIL,
            book: 0,
            side: Side::Sell,
            stp: SelfTradePrevention::None,
        });
        ladder.push_back(key, slot, orders);
        slot
    }

    #[test]
    fn best_tracks_inserts_and_removals_across_window_and_overflow() {
        let mut orders = Slab::with_capacity(16);
        let mut ladder = Ladder::new(6);
        let a = add(&mut ladder, &mut orders, 100);
        let b = add(&mut ladder, &mut orders, 1_000_000);
        let c = add(&mut ladder, &mut orders, 90);
        let d = add(&mut ladder, &mut orders, -5_000_000);
        ladder.check().unwrap();
        assert_eq!(ladder.best(), Some(-5_000_000));
        assert_eq!(
            ladder.keys().collect::<Vec<_>>(),
            vec![-5_000_000, 90, 100, 1_000_000]
        );
        ladder.unlink(-5_000_000, d, &mut orders);
        assert_eq!(ladder.best(), Some(90));
        ladder.unlink(90, c, &mut orders);
        ladder.unlink(100, a, &mut orders);
        assert_eq!(ladder.best(), Some(1_000_000));
        ladder.unlink(1_000_000, b, &mut orders);
        assert_eq!(ladder.best(), None);
        ladder.check().unwrap();
    }

    #[test]
    fn fifo_within_a_level() {
        let mut orders = Slab::with_capacity(4);
        let mut ladder = Ladder::new(6);
        let a = add(&mut ladder, &mut orders, 7);
        let b = add(&mut ladder, &mut orders, 7);
        let c = add(&mut ladder, &mut orders, 7);
        assert_eq!(ladder.head(7), a);
        ladder.unlink(7, b, &mut orders);
        assert_eq!(orders.get(a).next, c);
        ladder.unlink(7, a, &mut orders);
        assert_eq!(ladder.head(7), c);
        assert_eq!(ladder.best(), Some(7));
    }

    #[test]
    fn extreme_keys_do_not_overflow() {
        let mut orders = Slab::with_capacity(4);
        let mut ladder = Ladder::new(6);
        add(&mut ladder, &mut orders, i64::MAX);
        add(&mut ladder, &mut orders, -i64::MAX);
        add(&mut ladder, &mut orders, 1);
        ladder.check().unwrap();
        assert_eq!(
            ladder.keys().collect::<Vec<_>>(),
            vec![-i64::MAX, 1, i64::MAX]
        );
    }

    #[test]
    fn drifting_prices_recentre_the_window() {
        let mut orders = Slab::with_capacity(1024);
        let mut ladder = Ladder::new(6);
        add(&mut ladder, &mut orders, 1_000);
        // Prices march down (better) far beyond the window: they should end up windowed.
        for step in 0..200 {
            add(&mut ladder, &mut orders, -step * 1_000);
            ladder.check().unwrap();
        }
        assert!(ladder.overflow.len() < ladder.level_count());
        assert_eq!(ladder.best(), Some(-199_000));
        assert_eq!(ladder.level_count(), 201);
    }
}
