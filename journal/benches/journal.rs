//! criterion micro-benchmarks: hot-path append and Merkle hashing.
//!
//! `cargo bench -p keel-journal`

// Benchmarks unwrap freely: a failure is a broken benchmark, reported by the panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use keel_journal::merkle::{leaf_hash, MerkleFrontier};
use keel_journal::{Durability, Journal, JournalConfig};

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("journal_append");
    for size in [64usize, 256] {
        let dir = tempfile::tempdir().unwrap();
        let config = JournalConfig {
            segment_size_bytes: 1 << 30,
            durability: Durability::Async,
            ..JournalConfig::default()
        };
        let (mut journal, _) = Journal::open(dir.path(), config).unwrap();
        let payload = vec![0x5a; size - 24];
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::new("record_bytes", size), &size, |b, _| {
            b.iter(|| journal.appender().append_payload(&payload).unwrap())
        });
        journal.close().unwrap();
    }
    group.finish();
}

fn merkle(c: &mut Criterion) {
    let mut group = c.benchmark_group("merkle");
    let record = [0x11u8; 64];
    group.throughput(Throughput::Elements(1));
    group.bench_function("leaf_hash_64B", |b| b.iter(|| leaf_hash(&record)));
    let mut frontier = MerkleFrontier::new();
    group.bench_function("frontier_push_64B", |b| b.iter(|| frontier.push(&record)));
    group.bench_function("frontier_root", |b| b.iter(|| frontier.root()));
    group.finish();
}

criterion_group!(benches, append, merkle);
criterion_main!(benches);
