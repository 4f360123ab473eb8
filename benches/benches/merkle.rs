//! Criterion micro-benchmarks of `keel_journal::merkle` (RFC 9162 Merkle trees over the
//! journal's records, SHA-256):
//!
//! - `merkle_hashing/leaf_hash_64B`: one leaf hash of a 64-byte record;
//! - `merkle_hashing/node_hash`: one interior node hash (65 bytes in);
//! - `merkle_hashing/frontier_push_64B`: appending a 64-byte record to the incremental
//!   frontier (its leaf hash plus, amortised, one node hash);
//! - `merkle_hashing/frontier_root/L`: the root of a frontier of 2^L − 1 leaves (L subtree
//!   roots to fold, the most a frontier of that size holds);
//! - `merkle_hashing/inclusion_proof/N`: building the inclusion proof of the middle leaf of
//!   N leaves from their leaf hashes (O(N) hashing by design: it recomputes subtree roots);
//! - `merkle_hashing/verify_inclusion/N`: checking that proof against the root (O(log N)).
//!
//! Group names differ from keel-journal's own `merkle` group so the two do not share
//! criterion baselines.

// Benchmarks unwrap freely: a wrong proof is a broken benchmark, and the panic says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use keel_journal::merkle::{
    inclusion_proof, leaf_hash, node_hash, root_of, verify_inclusion, Hash, MerkleFrontier,
};

/// Leaf hashes of `n` distinct 64-byte records.
fn leaves(n: usize) -> Vec<Hash> {
    (0..n)
        .map(|i| {
            let mut record = [0x11u8; 64];
            record[..8].copy_from_slice(&(i as u64).to_le_bytes());
            leaf_hash(&record)
        })
        .collect()
}

fn hashing(c: &mut Criterion) {
    let mut group = c.benchmark_group("merkle_hashing");
    group.throughput(Throughput::Elements(1));
    group.sample_size(30);
    group.warm_up_time(Duration::from_millis(300));
    group.measurement_time(Duration::from_secs(1));

    let record = [0x11u8; 64];
    group.bench_function("leaf_hash_64B", |b| {
        b.iter(|| leaf_hash(black_box(&record)))
    });
    let (left, right) = (leaf_hash(b"left"), leaf_hash(b"right"));
    group.bench_function("node_hash", |b| {
        b.iter(|| node_hash(black_box(&left), black_box(&right)))
    });
    let mut frontier = MerkleFrontier::new();
    group.bench_function("frontier_push_64B", |b| {
        b.iter(|| frontier.push(black_box(&record)))
    });

    for levels in [20u32, 32] {
        // A frontier restored from parts: any hashes do, only their number matters to the
        // fold, and this avoids hashing 2^32 leaves to get there.
        let len = (1u64 << levels) - 1;
        let nodes = vec![leaf_hash(b"subtree"); levels as usize];
        let frontier = MerkleFrontier::from_parts(len, nodes).unwrap();
        group.bench_with_input(
            BenchmarkId::new("frontier_root", levels),
            &frontier,
            |b, frontier| b.iter(|| black_box(frontier).root()),
        );
    }

    for n in [1_024usize, 16_384] {
        let hashes = leaves(n);
        let index = (n / 2) as u64;
        group.bench_with_input(BenchmarkId::new("inclusion_proof", n), &hashes, |b, h| {
            b.iter(|| inclusion_proof(black_box(index), h).unwrap())
        });
        let root = root_of(&hashes);
        let proof = inclusion_proof(index, &hashes).unwrap();
        let leaf = hashes[n / 2];
        group.bench_with_input(BenchmarkId::new("verify_inclusion", n), &proof, |b, p| {
            b.iter(|| verify_inclusion(black_box(index), n as u64, &leaf, p, &root).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, hashing);
criterion_main!(benches);
