//! Journal benchmarks (issue 3): hot-path append, durable-ack latency under group commit,
//! recovery replay speed, Merkle hashing.
//!
//! `cargo run --release -p keel-benches --bin keel-journal-bench [-- --quick]`
//!
//! Writes to a temporary directory under `$TMPDIR` (the disk being measured).

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use keel_benches::{ExchangeCoreMix, Workload};
use keel_engine::EngineConfig;
use keel_journal::merkle::MerkleFrontier;
use keel_journal::snapshot::recover_state;
use keel_journal::{Durability, Journal, JournalConfig, SyncMethod};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(position) = args.iter().position(|a| a == "--callgrind-append") {
        let count = args
            .get(position + 1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(1_000_000);
        return callgrind_append(count);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    println!(
        "# keel journal benchmarks{}",
        if quick { " (quick)" } else { "" }
    );
    for size in [64usize, 256] {
        append(size, 20_000_000 / scale)?;
    }
    for method in [SyncMethod::IoUring, SyncMethod::Msync] {
        durable_ack(
            method,
            100_000,
            Duration::from_secs(if quick { 1 } else { 5 }),
        )?;
    }
    recovery(2_000_000 / scale as u64)?;
    merkle(5_000_000 / scale)?;
    Ok(())
}

fn config(durability: Durability, sync_method: SyncMethod) -> JournalConfig {
    JournalConfig {
        segment_size_bytes: 64 << 20,
        durability,
        sync_method,
        ..JournalConfig::default()
    }
}

fn print_histogram(label: &str, histogram: &Histogram<u64>) {
    println!(
        "{label}: p50 {} ns, p99 {} ns, p99.9 {} ns, p99.99 {} ns, max {} ns ({} samples)",
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.99),
        histogram.value_at_quantile(0.999),
        histogram.value_at_quantile(0.9999),
        histogram.max(),
        histogram.len()
    );
}

/// For `valgrind --tool=callgrind --toggle-collect='*append_measured*'`: user-space
/// instructions of `count` 64 B appends (page faults are kernel work and not counted).
fn callgrind_append(count: usize) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (mut journal, _) = Journal::open(dir.path(), config(Durability::Async, SyncMethod::Auto))?;
    let payload = [0x5au8; 40];
    append_measured(&mut journal, &payload, count)?;
    println!("appends {count}");
    journal.close()?;
    Ok(())
}

#[inline(never)]
fn append_measured(
    journal: &mut Journal,
    payload: &[u8],
    count: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    for _ in 0..count {
        journal.appender().append_payload(payload)?;
    }
    Ok(())
}

/// Hot-path append: throughput over `count` records, then per-append latency over as many.
fn append(record_bytes: usize, count: usize) -> Result<(), Box<dyn std::error::Error>> {
    let payload = vec![0x5au8; record_bytes - 24];
    let dir = tempfile::tempdir()?;
    let (mut journal, recovery) =
        Journal::open(dir.path(), config(Durability::Async, SyncMethod::Auto))?;
    let start = Instant::now();
    for _ in 0..count {
        journal.appender().append_payload(&payload)?;
    }
    let elapsed = start.elapsed();
    println!(
        "append {record_bytes} B records: {:.1} M records/s ({count} records, {:.2} s, {:.0} MB/s, sync {}, roll stalls {})",
        count as f64 / elapsed.as_secs_f64() / 1e6,
        elapsed.as_secs_f64(),
        (count * record_bytes) as f64 / elapsed.as_secs_f64() / 1e6,
        recovery.sync_method,
        journal.appender().roll_stalls()
    );
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    for _ in 0..count {
        let before = Instant::now();
        journal.appender().append_payload(&payload)?;
        histogram.record(before.elapsed().as_nanos() as u64)?;
    }
    print_histogram(
        &format!("append {record_bytes} B latency (incl. ~20 ns clock cost)"),
        &histogram,
    );
    journal.close()?;
    Ok(())
}

/// Open loop: appends 64 B records at `rate_per_s` for `duration`, each at its intended time,
/// and records for every record the time from its intended append to the moment it was seen
/// durable (so a late producer counts against the latency: coordinated omission corrected).
/// One thread both produces and watches: on a 2-core machine a second spinning thread would
/// starve the flusher and measure the scheduler instead of the disk.
fn durable_ack(
    method: SyncMethod,
    rate_per_s: u64,
    duration: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (mut journal, recovery) = Journal::open(dir.path(), config(Durability::Fsync, method))?;
    let marks = journal.watermarks().clone();
    let interval_ns = 1_000_000_000 / rate_per_s;
    let total = rate_per_s * duration.as_secs();
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let payload = [0x42u8; 40];
    let start = Instant::now();
    let mut seen = 0u64;
    let observe = |histogram: &mut Histogram<u64>,
                   seen: &mut u64|
     -> Result<(), Box<dyn std::error::Error>> {
        let durable = marks.durable();
        if durable > *seen {
            let now = start.elapsed().as_nanos() as u64;
            for seq in *seen + 1..=durable {
                histogram.record(now.saturating_sub((seq - 1) * interval_ns).max(1))?;
            }
            *seen = durable;
        }
        Ok(())
    };
    for seq in 1..=total {
        let intended = Duration::from_nanos((seq - 1) * interval_ns);
        while start.elapsed() < intended {
            observe(&mut histogram, &mut seen)?;
        }
        journal.appender().append_payload(&payload)?;
    }
    while seen < total {
        observe(&mut histogram, &mut seen)?;
    }
    print_histogram(
        &format!(
            "durable ack at {rate_per_s} records/s, {} ({})",
            recovery.sync_method,
            match method {
                SyncMethod::IoUring => "io_uring",
                SyncMethod::Msync => "msync",
                SyncMethod::Auto => "auto",
            }
        ),
        &histogram,
    );
    journal.close()?;
    Ok(())
}

/// Recovery: journal `count` exchange-core-mix commands, then time rebuilding the engine
/// from the journal (scan, checksum, decode, apply, Merkle frontier).
fn recovery(count: u64) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let workload: Workload = ExchangeCoreMix {
        commands: count as usize,
        ..ExchangeCoreMix::default()
    }
    .generate();
    {
        let (mut journal, _) =
            Journal::open(dir.path(), config(Durability::Async, SyncMethod::Auto))?;
        for command in workload.warmup.iter().chain(&workload.measured) {
            journal.appender().append_command(command)?;
        }
        journal.close()?;
    }
    let start = Instant::now();
    let (journal, _) = Journal::open(dir.path(), config(Durability::Async, SyncMethod::Auto))?;
    let opened = start.elapsed();
    let state = recover_state(
        dir.path(),
        journal.watermarks().clone(),
        EngineConfig::default(),
    )?;
    let elapsed = start.elapsed();
    println!(
        "recovery: {} commands in {:.2} s = {:.2} M commands/s (open and scan {:.2} s; replay incl. Merkle frontier {:.2} s)",
        state.seq,
        elapsed.as_secs_f64(),
        state.seq as f64 / elapsed.as_secs_f64() / 1e6,
        opened.as_secs_f64(),
        (elapsed - opened).as_secs_f64()
    );
    journal.close()?;
    // The same records decoded and applied to an engine without the Merkle frontier (what
    // a node needs at start), each record's checksum verified again by the reader.
    let start = Instant::now();
    let (mut reader, _) = keel_journal::offline_reader(dir.path(), 1)?;
    let mut engine = keel_engine::Engine::default();
    let mut events = Vec::new();
    let mut applied = 0u64;
    while let Some(record) = reader.next()? {
        if let Some(command) =
            keel_journal::envelope::engine_command(record.record_type, record.payload)?
        {
            events.clear();
            engine.process(&command, &mut events);
        }
        applied += 1;
    }
    let elapsed = start.elapsed();
    println!(
        "replay into the engine only (scan, checksums, decode, apply; no Merkle): {applied} commands in {:.2} s = {:.2} M commands/s",
        elapsed.as_secs_f64(),
        applied as f64 / elapsed.as_secs_f64() / 1e6
    );
    Ok(())
}

/// Merkle: leaf-hashing throughput of 64 B records into the frontier.
fn merkle(count: usize) -> Result<(), Box<dyn std::error::Error>> {
    let record = [0x33u8; 64];
    let mut frontier = MerkleFrontier::new();
    let start = Instant::now();
    for _ in 0..count {
        frontier.push(&record);
    }
    let root = frontier.root();
    let elapsed = start.elapsed();
    println!(
        "merkle: {:.2} M leaves/s of 64 B ({:.0} MB/s of records; root {:02x}{:02x}..)",
        count as f64 / elapsed.as_secs_f64() / 1e6,
        (count * 64) as f64 / elapsed.as_secs_f64() / 1e6,
        root[0],
        root[1]
    );
    Ok(())
}
