//! The canonical encoding of the whole engine state, as a sequence of *leaves*.
//!
//! A snapshot is exactly these leaves, and the state root is the RFC 9162 Merkle hash over
//! them, so "same state" means "same bytes" means "same root" on every replica. Each leaf
//! starts with a tag byte; all integers are little-endian:
//!
//! | tag | leaf | body |
//! |---|---|---|
//! | 1 | header | `version u16` (1), `next_match_id u64` |
//! | 2 | instrument | `instrument u32`, `symbol_len u8`, `symbol` |
//! | 3 | resting order | `order_id u64`, `account u64`, `side u8`, `stp u8`, `price i64`, `open u64` |
//! | 4 | used order ids | `first u64`, `last u64` (an inclusive range) |
//!
//! Order: the header; then per instrument in ascending id, its instrument leaf followed by
//! its bids (best price first, time priority within a price) and then its asks; then the
//! used-id ranges in ascending order. Hash maps and memory layout never show through.

use super::{Engine, EngineConfig, Flows};
use crate::codec::{side_code, side_from_code, stp_code, stp_from_code};
use crate::ladder::key_of;
use crate::slab::{Order, NIL};
use crate::types::{Side, Symbol, SYMBOL_BYTES_MAX};
use crate::Error;

/// Version of the state encoding written in the header leaf.
pub const STATE_VERSION: u16 = 1;

const TAG_HEADER: u8 = 1;
const TAG_INSTRUMENT: u8 = 2;
const TAG_ORDER: u8 = 3;
const TAG_USED_IDS: u8 = 4;

/// Longest leaf, in bytes (a resting order: 1 + 8 + 8 + 1 + 1 + 8 + 8).
pub const STATE_LEAF_BYTES_MAX: usize = 35;

impl Engine {
    /// Calls `visit` with every leaf of the canonical state encoding, in order.
    pub fn visit_state_leaves(&self, mut visit: impl FnMut(&[u8])) {
        let mut leaf = Vec::with_capacity(STATE_LEAF_BYTES_MAX);
        leaf.push(TAG_HEADER);
        leaf.extend_from_slice(&STATE_VERSION.to_le_bytes());
        leaf.extend_from_slice(&self.next_match_id.to_le_bytes());
        visit(&leaf);
        for (instrument, symbol) in self.instruments() {
            leaf.clear();
            leaf.push(TAG_INSTRUMENT);
            leaf.extend_from_slice(&instrument.to_le_bytes());
            let text = symbol.as_str().as_bytes();
            // At most SYMBOL_BYTES_MAX (32): fits a u8.
            leaf.push(text.len() as u8);
            leaf.extend_from_slice(text);
            visit(&leaf);
            for side in [Side::Buy, Side::Sell] {
                for order in self.resting_orders(instrument, side).into_iter().flatten() {
                    leaf.clear();
                    leaf.push(TAG_ORDER);
                    leaf.extend_from_slice(&order.order_id.to_le_bytes());
                    leaf.extend_from_slice(&order.account.to_le_bytes());
                    leaf.push(side_code(order.side));
                    leaf.push(stp_code(order.stp));
                    leaf.extend_from_slice(&order.price.to_le_bytes());
                    leaf.extend_from_slice(&order.qty.to_le_bytes());
                    visit(&leaf);
                }
            }
        }
        for (first, last) in self.used_ids.ranges() {
            leaf.clear();
            leaf.push(TAG_USED_IDS);
            leaf.extend_from_slice(&first.to_le_bytes());
            leaf.extend_from_slice(&last.to_le_bytes());
            visit(&leaf);
        }
    }

    /// Rebuilds an engine from the leaves [`Engine::visit_state_leaves`] produced.
    ///
    /// Strict: anything that is not exactly a canonical encoding of a consistent state
    /// (unknown tags, bad lengths, misordered leaves, a crossed or misordered book, an order
    /// id outside the used ranges, ...) is an error, so a restored engine always satisfies
    /// [`Engine::check_invariants`] and re-encodes to the same leaves.
    pub fn from_state_leaves<'a>(
        config: EngineConfig,
        leaves: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Engine, Error> {
        let mut engine = Engine::new(config)?;
        let mut builder = Builder::default();
        for leaf in leaves {
            builder.apply(&mut engine, leaf)?;
        }
        if !builder.seen_header {
            return Err(Error::Decode("state has no header"));
        }
        for &order_id in engine.live.keys() {
            if !engine.used_ids.contains(order_id) {
                return Err(Error::Decode("resting order id not among the used ids"));
            }
        }
        // The restored orders entered as they are: nothing has flowed yet.
        let resting: u128 = engine
            .live
            .values()
            .map(|&slot| u128::from(engine.orders.get(slot).open))
            .sum();
        engine.flows = Flows {
            entered: resting,
            // Truncation is the point: the low 64 bits, as the order slots sum them.
            resting_low: resting as u64,
            ..Flows::default()
        };
        engine
            .check_invariants()
            .map_err(|_| Error::Decode("state is inconsistent"))?;
        Ok(engine)
    }
}

/// Decoding progress: where in the leaf order we are.
#[derive(Default)]
struct Builder {
    seen_header: bool,
    /// Index of the current instrument's book, once an instrument leaf was seen.
    book: Option<u32>,
    /// The current book's last order (side and key), to check book order.
    last_order: Option<(Side, i64)>,
    /// Whether range leaves have started (after which no other leaf may follow).
    in_ranges: bool,
    last_range_end: Option<u64>,
}

impl Builder {
    fn apply(&mut self, engine: &mut Engine, leaf: &[u8]) -> Result<(), Error> {
        let (&tag, body) = leaf.split_first().ok_or(Error::Decode("empty leaf"))?;
        if !self.seen_header && tag != TAG_HEADER {
            return Err(Error::Decode("state must start with its header"));
        }
        match tag {
            TAG_HEADER => self.header(engine, body),
            TAG_INSTRUMENT if !self.in_ranges => self.instrument(engine, body),
            TAG_ORDER if !self.in_ranges => self.order(engine, body),
            TAG_USED_IDS => self.used_ids(engine, body),
            _ => Err(Error::Decode("unknown or misplaced state leaf")),
        }
    }

    fn header(&mut self, engine: &mut Engine, body: &[u8]) -> Result<(), Error> {
        if self.seen_header || body.len() != 10 {
            return Err(Error::Decode("bad state header"));
        }
        let version = u16::from_le_bytes([body[0], body[1]]);
        if version != STATE_VERSION {
            return Err(Error::Decode("unsupported state version"));
        }
        engine.next_match_id = le_u64(&body[2..10]);
        if engine.next_match_id == 0 {
            return Err(Error::Decode("match ids start at 1"));
        }
        self.seen_header = true;
        Ok(())
    }

    fn instrument(&mut self, engine: &mut Engine, body: &[u8]) -> Result<(), Error> {
        if body.len() < 6 {
            return Err(Error::Decode("instrument leaf truncated"));
        }
        let instrument = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
        let len = usize::from(body[4]);
        if len == 0 || len > SYMBOL_BYTES_MAX || body.len() != 5 + len {
            return Err(Error::Decode("bad instrument symbol length"));
        }
        let text =
            std::str::from_utf8(&body[5..]).map_err(|_| Error::Decode("symbol not UTF-8"))?;
        if engine
            .instruments_sorted
            .last()
            .is_some_and(|&last| last >= instrument)
        {
            return Err(Error::Decode("instruments out of order"));
        }
        let mut sink = Vec::new();
        engine.define_instrument(instrument, Symbol::new(text)?, &mut sink);
        // Ids were checked ascending just above, so this one is new: no rejection event.
        assert!(sink.is_empty(), "restored instrument rejected");
        self.book = engine.book_index.get(&instrument).copied();
        self.last_order = None;
        Ok(())
    }

    fn order(&mut self, engine: &mut Engine, body: &[u8]) -> Result<(), Error> {
        let book = self
            .book
            .ok_or(Error::Decode("order before any instrument"))?;
        if body.len() != 34 {
            return Err(Error::Decode("bad order leaf length"));
        }
        let order_id = le_u64(&body[0..8]);
        let account = le_u64(&body[8..16]);
        let side = side_from_code(body[16]).ok_or(Error::Decode("unknown side"))?;
        let stp = stp_from_code(body[17]).ok_or(Error::Decode("unknown self-trade prevention"))?;
        let price = i64::from_le_bytes(arr8(&body[18..26]));
        let open = le_u64(&body[26..34]);
        if price < 1 || open == 0 {
            return Err(Error::Decode("resting order with bad price or quantity"));
        }
        let key = key_of(side, price);
        // Bids then asks; within a side keys never decrease (best first, FIFO within price).
        let in_order = match self.last_order {
            None => true,
            Some((Side::Buy, _)) if side == Side::Sell => true,
            Some((last_side, last_key)) => last_side == side && last_key <= key,
        };
        if !in_order {
            return Err(Error::Decode("resting orders out of book order"));
        }
        if engine.live.contains_key(&order_id) {
            return Err(Error::Decode("duplicate resting order id"));
        }
        self.last_order = Some((side, key));
        engine.insert_resting(Order {
            id: order_id,
            account,
            price,
            open,
            prev: NIL,
            next: NIL,
            acct_prev: NIL,
            acct_next: NIL,
            book,
            side,
            stp,
        });
        Ok(())
    }

    fn used_ids(&mut self, engine: &mut Engine, body: &[u8]) -> Result<(), Error> {
        if body.len() != 16 {
            return Err(Error::Decode("bad used-id leaf length"));
        }
        let first = le_u64(&body[0..8]);
        let last = le_u64(&body[8..16]);
        // Ranges are ascending, disjoint and not adjacent (adjacent ones would be merged).
        let follows = self
            .last_range_end
            .is_none_or(|end| end.checked_add(1).is_some_and(|next| first > next));
        if first > last || !follows {
            return Err(Error::Decode("used-id ranges not canonical"));
        }
        self.in_ranges = true;
        self.last_range_end = Some(last);
        engine.used_ids.push_range_above(first, last);
        Ok(())
    }
}

fn arr8(bytes: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(bytes);
    out
}

fn le_u64(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(arr8(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Command, Event, NewOrder, TimeInForce};
    use proptest::prelude::*;

    /// A small deterministic command stream that leaves orders resting on two books.
    fn commands(seed: u64, count: usize) -> Vec<Command> {
        let mut state = seed;
        let mut next = move || {
            // splitmix64
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let mut out = vec![
            Command::DefineInstrument {
                instrument: 2,
                symbol: Symbol::new("ETH").unwrap(),
            },
            Command::DefineInstrument {
                instrument: 1,
                symbol: Symbol::new("BTC").unwrap(),
            },
        ];
        for id in 1..=count as u64 {
            let roll = next();
            let command = match roll % 10 {
                0 => Command::Cancel {
                    order_id: next() % id.max(1) + 1,
                    account: next() % 3,
                },
                1 => Command::Replace {
                    order_id: next() % id.max(1) + 1,
                    account: next() % 3,
                    price: 95 + (next() % 11) as i64,
                    qty: 1 + next() % 5,
                },
                _ => Command::New(NewOrder {
                    order_id: if roll % 7 == 0 { id * 3 } else { id },
                    account: next() % 3,
                    instrument: 1 + (next() % 2) as u32,
                    side: if next() % 2 == 0 {
                        Side::Buy
                    } else {
                        Side::Sell
                    },
                    price: Some(95 + (next() % 11) as i64),
                    qty: 1 + next() % 5,
                    tif: TimeInForce::Gtc,
                    post_only: false,
                    stp: crate::SelfTradePrevention::CancelOldest,
                }),
            };
            out.push(command);
        }
        out
    }

    fn leaves(engine: &Engine) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        engine.visit_state_leaves(|leaf| out.push(leaf.to_vec()));
        out
    }

    fn run(engine: &mut Engine, commands: &[Command]) -> Vec<Event> {
        let mut events = Vec::new();
        for command in commands {
            engine.process(command, &mut events);
        }
        events
    }

    #[test]
    fn restored_engine_re_encodes_identically_and_behaves_identically() {
        let all = commands(7, 3_000);
        let (before, after) = all.split_at(2_000);
        let mut original = Engine::default();
        run(&mut original, before);
        assert!(
            original.resting_count() > 10,
            "the test needs a non-trivial book"
        );
        let encoded = leaves(&original);
        let mut restored =
            Engine::from_state_leaves(EngineConfig::default(), encoded.iter().map(Vec::as_slice))
                .unwrap();
        assert_eq!(leaves(&restored), encoded);
        assert_eq!(run(&mut original, after), run(&mut restored, after));
        assert_eq!(leaves(&restored), leaves(&original));
        restored.check_invariants().unwrap();
    }

    #[test]
    fn misordered_or_inconsistent_state_is_refused() {
        let mut engine = Engine::default();
        run(&mut engine, &commands(3, 500));
        let encoded = leaves(&engine);
        let decode = |leaves: &[Vec<u8>]| {
            Engine::from_state_leaves(EngineConfig::default(), leaves.iter().map(Vec::as_slice))
        };
        // Dropping the used-id ranges leaves resting ids unaccounted for.
        let without_ranges: Vec<_> = encoded
            .iter()
            .filter(|l| l[0] != TAG_USED_IDS)
            .cloned()
            .collect();
        assert!(decode(&without_ranges).is_err());
        // Swapping two orders of one side breaks book order whenever their prices differ.
        let orders: Vec<usize> = (0..encoded.len())
            .filter(|&i| encoded[i][0] == TAG_ORDER)
            .collect();
        let mut swapped = encoded.clone();
        let (a, b) = (orders[0], orders[orders.len() / 4]);
        swapped.swap(a, b);
        if encoded[a][17..27] != encoded[b][17..27] {
            assert!(decode(&swapped).is_err());
        }
        // No header.
        assert!(decode(&encoded[1..]).is_err());
        // Duplicated instrument leaf.
        let mut twice = encoded.clone();
        twice.insert(1, encoded[1].clone());
        assert!(decode(&twice).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn corrupted_leaves_never_panic(index in 0usize..1000, byte in 0usize..40, value: u8) {
            let mut engine = Engine::default();
            run(&mut engine, &commands(11, 300));
            let mut encoded = leaves(&engine);
            let index = index % encoded.len();
            let leaf = &mut encoded[index];
            let byte = byte % leaf.len();
            leaf[byte] = value;
            if let Ok(restored) = Engine::from_state_leaves(
                EngineConfig::default(),
                encoded.iter().map(Vec::as_slice),
            ) {
                restored.check_invariants().unwrap();
                prop_assert_eq!(leaves(&restored), encoded);
            }
        }
    }
}
