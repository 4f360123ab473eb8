//! Growable storage that never copies what it already holds.
//!
//! A user's message stream and token set grow for the whole trading session. `Vec` and
//! `HashSet` grow by reallocating and moving everything they hold: at a few hundred MiB that
//! is a 100 ms stall of the gateway thread, and every session waits behind it. These
//! containers grow by adding fixed-size chunks (or, for the set, a new generation of twice the
//! capacity), so the cost of any single insertion is bounded by the chunk size, not by the
//! session's history.

use foldhash::{HashSet, HashSetExt};
use std::hash::Hash;

/// Elements per chunk of a [`ChunkedVec`].
const ELEMENTS_PER_CHUNK: usize = 1 << 14;
/// Bytes per chunk of a [`ByteLog`]: far above any one message (OUCH messages are < 100 B).
const BYTES_PER_CHUNK: usize = 1 << 20;

/// An append-only vector stored in fixed-size chunks.
#[derive(Debug)]
pub struct ChunkedVec<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for ChunkedVec<T> {
    fn default() -> Self {
        ChunkedVec {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T: Copy> ChunkedVec<T> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Appends an element.
    pub fn push(&mut self, value: T) {
        if self.len % ELEMENTS_PER_CHUNK == 0 {
            self.chunks.push(Vec::with_capacity(ELEMENTS_PER_CHUNK));
        }
        // A chunk was pushed above whenever the last one was full, so one exists.
        if let Some(chunk) = self.chunks.last_mut() {
            debug_assert!(chunk.len() < ELEMENTS_PER_CHUNK);
            chunk.push(value);
            self.len += 1;
        }
    }

    /// Element `index` (must be below `len`).
    pub fn get(&self, index: usize) -> T {
        debug_assert!(index < self.len);
        self.chunks[index / ELEMENTS_PER_CHUNK][index % ELEMENTS_PER_CHUNK]
    }

    /// The first index whose element fails `predicate` (elements must be partitioned: all
    /// that pass come first), as `slice::partition_point`.
    pub fn partition_point(&self, predicate: impl Fn(T) -> bool) -> usize {
        let (mut low, mut high) = (0, self.len);
        while low < high {
            let mid = low + (high - low) / 2;
            if predicate(self.get(mid)) {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        low
    }
}

/// Variable-length messages appended one after another in fixed 1 MiB chunks; a message
/// never straddles two chunks.
#[derive(Debug, Default)]
pub struct ByteLog {
    chunks: Vec<Vec<u8>>,
    /// Start (chunk × chunk size + offset) and length of each message.
    spans: ChunkedVec<(u64, u32)>,
}

impl ByteLog {
    /// Number of messages.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Appends a message that `write` appends to the buffer it is given; it must write at
    /// most `len_max` bytes.
    pub fn push_with(&mut self, len_max: usize, write: impl FnOnce(&mut Vec<u8>)) {
        debug_assert!(len_max <= BYTES_PER_CHUNK);
        let fits = self
            .chunks
            .last()
            .is_some_and(|chunk| chunk.capacity() - chunk.len() >= len_max);
        if !fits {
            self.chunks.push(Vec::with_capacity(BYTES_PER_CHUNK));
        }
        let index = self.chunks.len() - 1;
        let chunk = &mut self.chunks[index];
        let start = chunk.len();
        write(chunk);
        debug_assert!(
            chunk.len() - start <= len_max,
            "message longer than announced"
        );
        let len = (chunk.len() - start) as u32;
        let position = (index * BYTES_PER_CHUNK + start) as u64;
        self.spans.push((position, len));
    }

    /// Message `index` (must be below `len`).
    pub fn get(&self, index: usize) -> &[u8] {
        let (position, len) = self.spans.get(index);
        let chunk = position as usize / BYTES_PER_CHUNK;
        let start = position as usize % BYTES_PER_CHUNK;
        &self.chunks[chunk][start..start + len as usize]
    }
}

/// A set that grows by generations (each twice the capacity of the last, allocated whole and
/// never rehashed), so an insertion never moves the elements already held. Lookups probe
/// every generation: about log2(len / 4096) of them.
#[derive(Debug)]
pub struct GenerationalSet<T> {
    generations: Vec<HashSet<T>>,
}

/// Capacity of a set's first generation.
const FIRST_GENERATION: usize = 4096;

impl<T> Default for GenerationalSet<T> {
    fn default() -> Self {
        GenerationalSet {
            generations: Vec::new(),
        }
    }
}

impl<T: Eq + Hash> GenerationalSet<T> {
    /// Whether `value` is in the set.
    pub fn contains(&self, value: &T) -> bool {
        self.generations.iter().rev().any(|set| set.contains(value))
    }

    /// Adds `value` (callers check [`GenerationalSet::contains`] first; a value is held once).
    pub fn insert(&mut self, value: T) {
        let full = self
            .generations
            .last()
            .is_none_or(|set| set.len() >= set.capacity());
        if full {
            let capacity = self
                .generations
                .last()
                .map_or(FIRST_GENERATION, |set| set.capacity() * 2);
            self.generations.push(HashSet::with_capacity(capacity));
        }
        if let Some(set) = self.generations.last_mut() {
            set.insert(value);
        }
    }

    /// Number of values held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.generations.iter().map(HashSet::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_containers_keep_every_element_across_chunks() {
        let mut vec = ChunkedVec::default();
        let mut log = ByteLog::default();
        let mut set = GenerationalSet::default();
        for i in 0..100_000u64 {
            vec.push(i * 3);
            let len = (i % 90 + 1) as usize;
            log.push_with(100, |out| {
                out.extend((0..len).map(|b| (b as u64 + i) as u8))
            });
            set.insert(i * 7);
        }
        assert_eq!(vec.len(), 100_000);
        assert_eq!(log.len(), 100_000);
        assert_eq!(set.len(), 100_000);
        for i in [0u64, 1, 16_383, 16_384, 54_321, 99_999] {
            assert_eq!(vec.get(i as usize), i * 3);
            let len = (i % 90 + 1) as usize;
            let expected: Vec<u8> = (0..len).map(|b| (b as u64 + i) as u8).collect();
            assert_eq!(log.get(i as usize), expected.as_slice());
            assert!(set.contains(&(i * 7)));
            assert!(!set.contains(&(i * 7 + 1)));
        }
        assert_eq!(vec.partition_point(|v| v < 300), 100);
        assert_eq!(vec.partition_point(|_| true), 100_000);
        assert_eq!(vec.partition_point(|_| false), 0);
    }
}
