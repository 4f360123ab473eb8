//! Preallocated order storage with intrusive links.
//!
//! Every resting order lives in one slot, addressed by a dense `u32` index. Each slot carries
//! two doubly linked lists: its price level's FIFO queue and its account's list of resting
//! orders. Freed slots go on a free list and are reused, so after warm-up adding an order
//! allocates nothing, and unlinking one (cancel, fill, replace) is O(1).

use crate::types::{AccountId, OrderId, Price, Qty, SelfTradePrevention, Side};

/// "No slot": the end of a list, or an empty level.
pub(crate) const NIL: u32 = u32::MAX;

/// A resting order.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Order {
    pub id: OrderId,
    pub account: AccountId,
    pub price: Price,
    /// Open (unfilled) quantity; always `>= 1` while the order rests.
    pub open: Qty,
    /// Previous / next order in the price level's FIFO queue.
    pub prev: u32,
    pub next: u32,
    /// Previous / next resting order of the same account.
    pub acct_prev: u32,
    pub acct_next: u32,
    /// Index of the order's book (instrument) in the engine.
    pub book: u32,
    pub side: Side,
    pub stp: SelfTradePrevention,
}

impl Order {
    const VACANT: Order = Order {
        id: 0,
        account: 0,
        price: 0,
        open: 0,
        prev: NIL,
        next: NIL,
        acct_prev: NIL,
        acct_next: NIL,
        book: NIL,
        side: Side::Buy,
        stp: SelfTradePrevention::None,
    };
}

/// The order slots and their free list.
#[derive(Clone, Debug)]
pub(crate) struct Slab {
    slots: Vec<Order>,
    /// Head of the free list, threaded through `Order::next` of vacant slots.
    free_head: u32,
    live_count: usize,
    /// Sum of `open` over the live slots, modulo 2^64. Kept here, apart from the engine's
    /// ledger, so the two can be checked against each other after every command; so `open`
    /// of a live slot changes only through [`Slab::set_open`].
    open_sum: u64,
}

impl Slab {
    /// Preallocates `capacity_orders` slots so the first that many resting orders allocate nothing.
    pub fn with_capacity(capacity_orders: usize) -> Slab {
        Slab {
            slots: Vec::with_capacity(capacity_orders),
            free_head: NIL,
            live_count: 0,
            open_sum: 0,
        }
    }

    /// Number of resting orders.
    pub fn live_count(&self) -> usize {
        self.live_count
    }

    /// Open quantity summed over the live slots, modulo 2^64.
    #[inline]
    pub fn open_sum(&self) -> u64 {
        self.open_sum
    }

    /// Sets the open quantity of live order `slot`.
    #[inline]
    pub fn set_open(&mut self, slot: u32, open: Qty) {
        let cell = &mut self.slots[slot as usize];
        self.open_sum = self.open_sum.wrapping_sub(cell.open).wrapping_add(open);
        cell.open = open;
    }

    /// Takes a slot for `order` and returns its index.
    #[inline]
    pub fn insert(&mut self, order: Order) -> u32 {
        self.live_count += 1;
        self.open_sum = self.open_sum.wrapping_add(order.open);
        if self.free_head != NIL {
            let slot = self.free_head;
            let cell = &mut self.slots[slot as usize];
            self.free_head = cell.next;
            *cell = order;
            return slot;
        }
        let slot = self.slots.len();
        // Slot indices are u32 with NIL reserved; 4 billion resting orders is far beyond
        // any memory this runs on, so exceeding it is a broken invariant, not input.
        assert!(slot < NIL as usize, "order slab exhausted");
        self.slots.push(order);
        slot as u32
    }

    /// Returns a slot to the free list. The caller has already unlinked it everywhere.
    #[inline]
    pub fn remove(&mut self, slot: u32) {
        let cell = &mut self.slots[slot as usize];
        // A live order has `open >= 1`; a vacant slot has 0. Freeing one twice would corrupt
        // the free list.
        assert!(cell.open > 0, "freeing a vacant slot");
        self.live_count -= 1;
        self.open_sum = self.open_sum.wrapping_sub(cell.open);
        *cell = Order::VACANT;
        cell.next = self.free_head;
        self.free_head = slot;
    }

    #[inline]
    pub fn get(&self, slot: u32) -> &Order {
        &self.slots[slot as usize]
    }

    #[inline]
    pub fn get_mut(&mut self, slot: u32) -> &mut Order {
        &mut self.slots[slot as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(id: u64) -> Order {
        Order {
            id,
            open: 1,
            ..Order::VACANT
        }
    }

    #[test]
    fn slots_are_reused_after_removal() {
        let mut slab = Slab::with_capacity(4);
        let a = slab.insert(order(1));
        let b = slab.insert(order(2));
        assert_eq!(slab.live_count(), 2);
        slab.remove(a);
        let c = slab.insert(order(3));
        assert_eq!(c, a, "freed slot is reused first");
        assert_eq!(slab.get(b).id, 2);
        assert_eq!(slab.get(c).id, 3);
        assert_eq!(slab.live_count(), 2);
    }
}
