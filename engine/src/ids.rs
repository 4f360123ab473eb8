//! The set of order ids ever used, kept as disjoint ranges.
//!
//! "An order id may be used once ever" means remembering every id, not just the resting
//! ones. Gateways hand out ids in increasing order, so the set is kept as ranges of
//! consecutive ids: the common case (a new id one above the highest) extends the top range
//! in O(1) and memory stays proportional to the number of gaps, not the number of orders.
//! Out-of-order ids fall back to an ordered map of ranges, O(log ranges).

use std::collections::BTreeMap;

use crate::types::OrderId;

/// Disjoint, non-adjacent inclusive ranges of used ids.
#[derive(Clone, Debug, Default)]
pub(crate) struct IdSet {
    /// The range holding the highest id, kept out of the map for the fast path.
    top: Option<(OrderId, OrderId)>,
    /// All other ranges: start → inclusive end. Every range here lies below `top`
    /// and is separated from its neighbours by at least one unused id.
    below: BTreeMap<OrderId, OrderId>,
}

impl IdSet {
    /// Marks `id` used. Returns `false` if it already was.
    #[inline]
    pub fn insert(&mut self, id: OrderId) -> bool {
        let Some((start, end)) = self.top else {
            self.top = Some((id, id));
            return true;
        };
        if id > end {
            if id == end + 1 {
                self.top = Some((start, id));
            } else {
                self.below.insert(start, end);
                self.top = Some((id, id));
            }
            return true;
        }
        if id >= start {
            return false;
        }
        self.insert_below(id, start)
    }

    /// Slow path: `id` is below the top range starting at `top_start`.
    fn insert_below(&mut self, id: OrderId, top_start: OrderId) -> bool {
        let before = self.below.range(..=id).next_back().map(|(&s, &e)| (s, e));
        if let Some((_, end)) = before {
            if end >= id {
                return false;
            }
        }
        // `id` is unused. Merge with the range ending just below and/or starting just above.
        let joins_before = before.filter(|&(_, end)| end + 1 == id);
        let after_start = id + 1;
        let joins_top = after_start == top_start;
        let after = if joins_top {
            None
        } else {
            self.below.get(&after_start).map(|&end| (after_start, end))
        };
        let new_start = joins_before.map_or(id, |(start, _)| start);
        if joins_top {
            if let Some((start, _)) = joins_before {
                self.below.remove(&start);
            }
            if let Some((_, top_end)) = self.top {
                self.top = Some((new_start, top_end));
            }
            return true;
        }
        let new_end = match after {
            Some((start, end)) => {
                self.below.remove(&start);
                end
            }
            None => id,
        };
        self.below.insert(new_start, new_end);
        true
    }

    /// Adds the range `first..=last`, which must lie above every range already present and
    /// not touch the highest one (used when restoring canonical, ascending ranges).
    pub fn push_range_above(&mut self, first: OrderId, last: OrderId) {
        // The state decoder checks both before calling (restored ranges are input there).
        assert!(first <= last, "empty used-id range");
        assert!(
            self.top
                .is_none_or(|(_, end)| end < first && end + 1 < first),
            "range not above the top one"
        );
        if let Some((start, end)) = self.top {
            self.below.insert(start, end);
        }
        self.top = Some((first, last));
    }

    /// Whether `id` was used.
    pub fn contains(&self, id: OrderId) -> bool {
        match self.top {
            None => false,
            Some((start, end)) if id >= start => id <= end,
            Some(_) => self
                .below
                .range(..=id)
                .next_back()
                .is_some_and(|(_, &end)| end >= id),
        }
    }

    /// The used ranges in ascending order (for snapshots and tests).
    pub fn ranges(&self) -> impl Iterator<Item = (OrderId, OrderId)> + '_ {
        self.below
            .iter()
            .map(|(&start, &end)| (start, end))
            .chain(self.top)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn sequential_ids_stay_one_range() {
        let mut set = IdSet::default();
        for id in 1..=1000 {
            assert!(set.insert(id));
        }
        assert!(!set.insert(500));
        assert_eq!(set.ranges().collect::<Vec<_>>(), vec![(1, 1000)]);
    }

    #[test]
    fn gaps_fill_and_merge() {
        let mut set = IdSet::default();
        for id in [10, 12, 5, 11, 6, 4, 13] {
            assert!(set.insert(id), "{id}");
        }
        assert_eq!(set.ranges().collect::<Vec<_>>(), vec![(4, 6), (10, 13)]);
        assert!(set.contains(5) && !set.contains(7) && !set.contains(9));
        for id in [7, 8, 9] {
            assert!(set.insert(id));
        }
        assert_eq!(set.ranges().collect::<Vec<_>>(), vec![(4, 13)]);
    }

    #[test]
    fn extremes() {
        let mut set = IdSet::default();
        assert!(set.insert(u64::MAX));
        assert!(set.insert(0));
        assert!(!set.insert(u64::MAX));
        assert!(!set.insert(0));
        assert!(set.insert(u64::MAX - 1));
        assert_eq!(
            set.ranges().collect::<Vec<_>>(),
            vec![(0, 0), (u64::MAX - 1, u64::MAX)]
        );
    }

    proptest! {
        #[test]
        fn behaves_like_a_set(ids in proptest::collection::vec(0u64..64, 0..200)) {
            let mut set = IdSet::default();
            let mut model = BTreeSet::new();
            for id in ids {
                prop_assert_eq!(set.insert(id), model.insert(id));
                for probe in 0..64 {
                    prop_assert_eq!(set.contains(probe), model.contains(&probe));
                }
            }
            // Ranges are disjoint, sorted and non-adjacent.
            let ranges: Vec<_> = set.ranges().collect();
            for pair in ranges.windows(2) {
                prop_assert!(pair[0].1 + 1 < pair[1].0);
            }
        }
    }
}
