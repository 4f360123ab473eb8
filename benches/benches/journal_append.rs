//! Criterion micro-benchmarks of the journal's hot path: one append through
//! `keel_journal::Appender` into a journal in a temporary directory (`$TMPDIR`), as the
//! matching loop does it (async durability: the flusher syncs off the hot path).
//!
//! - `journal_appender/command`: an encoded exchange-core replace command (the mix's most
//!   common command) via `append_command`, encoding included;
//! - `journal_appender/payload_bytes/N`: an already-encoded payload making an N-byte
//!   record (24 bytes of header and checksum included) via `append_payload`.
//!
//! What is measured includes what the hot path really pays on this machine: first-write
//! page faults on the memory-mapped segment (one per 4 KiB page) and, when appends outrun
//! the segment preparer, waits at segment rolls. Figures therefore depend on the disk and on
//! the machine's load; `keel-journal-bench` has the percentiles and callgrind instruction
//! counts. Each benchmark writes a few hundred MB to `$TMPDIR`, removed when it ends.
//!
//! Group names differ from keel-journal's own `journal_append` group so the two do not
//! share criterion baselines.

// Benchmarks unwrap freely: a failed open or append is a broken benchmark, and the panic
// says which.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use keel_engine::Command;
use keel_journal::{Durability, Journal, JournalConfig};

/// Journal set-up as the node runs it, except that durability is asynchronous: an `Fsync`
/// journal's append is the same code, the difference is only when acknowledgements go out.
fn open(dir: &std::path::Path) -> Journal {
    let config = JournalConfig {
        durability: Durability::Async,
        ..JournalConfig::default()
    };
    Journal::open(dir, config).unwrap().0
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("journal_appender");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));

    let command = Command::Replace {
        order_id: 123_456,
        account: 789,
        price: 100_250,
        qty: 17,
    };
    {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = open(dir.path());
        group.bench_function("command", |b| {
            b.iter(|| {
                journal
                    .appender()
                    .append_command(std::hint::black_box(&command))
                    .unwrap()
            })
        });
        journal.close().unwrap();
    }

    for record_bytes in [64usize, 256] {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = open(dir.path());
        // 24 bytes of the record are the journal's own header and checksum.
        let payload = vec![0x5a; record_bytes - 24];
        group.bench_with_input(
            BenchmarkId::new("payload_bytes", record_bytes),
            &payload,
            |b, payload| {
                b.iter(|| {
                    journal
                        .appender()
                        .append_payload(std::hint::black_box(payload))
                        .unwrap()
                })
            },
        );
        journal.close().unwrap();
    }
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
