//! Criterion micro-benchmarks of single engine operations on a book of ~1,000 resting
//! orders over 750 levels (see `keel_benches::scenarios`):
//!
//! - `engine/add`: a non-crossing GTC order joining an existing level;
//! - `engine/cancel`: cancelling such an order;
//! - `engine/replace`: moving a resting order to another level of its side (loses priority);
//! - `engine/sweep/N`: an IOC order that crosses and empties N levels (one order each).
//!
//! Run with `cargo bench -p keel-benches`. Figures are per operation. Each measurement times
//! a batch of up to 1,000 operations with one clock read on each side; the work that restores
//! the book (cancelling the added orders, re-adding the swept liquidity) is not timed. Events
//! go to one reusable `Vec<Event>` cleared before each command, so no allocation is measured.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use keel_benches::BookScenario;
use keel_engine::{Command, Engine, Event};

/// Operations timed together between two clock reads.
const BATCH: u64 = 1_000;
/// Seed of every scenario: the benches always see the same commands.
const SEED: u64 = 2;

/// An engine loaded with the scenario's base book, and the reusable event sink.
struct Bench {
    engine: Engine,
    scenario: BookScenario,
    sink: Vec<Event>,
}

impl Bench {
    fn new() -> Bench {
        let scenario = BookScenario::new(SEED);
        let mut bench = Bench {
            engine: Engine::default(),
            sink: Vec::with_capacity(1_024),
            scenario,
        };
        let setup = bench.scenario.setup();
        bench.untimed(&setup);
        bench
    }

    fn untimed(&mut self, commands: &[Command]) {
        for command in commands {
            self.sink.clear();
            self.engine.process(command, &mut self.sink);
        }
    }

    fn timed(&mut self, commands: &[Command]) -> Duration {
        let start = Instant::now();
        for command in commands {
            self.sink.clear();
            self.engine.process(black_box(command), &mut self.sink);
        }
        let elapsed = start.elapsed();
        black_box(&self.sink);
        elapsed
    }
}

/// Splits `iters` into batches of at most [`BATCH`] and sums what `run_batch` reports.
fn batched(iters: u64, mut run_batch: impl FnMut(usize) -> Duration) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let count = left.min(BATCH);
        // `count <= BATCH`, which fits in usize on every platform.
        total += run_batch(count as usize);
        left -= count;
    }
    total
}

fn add_and_cancel(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(1));

    let mut bench = Bench::new();
    group.bench_function("add", |b| {
        b.iter_custom(|iters| {
            batched(iters, |count| {
                let batch = bench.scenario.add_batch(count);
                let elapsed = bench.timed(&batch.adds);
                bench.untimed(&batch.cancels);
                elapsed
            })
        })
    });

    let mut bench = Bench::new();
    group.bench_function("cancel", |b| {
        b.iter_custom(|iters| {
            batched(iters, |count| {
                let batch = bench.scenario.add_batch(count);
                bench.untimed(&batch.adds);
                bench.timed(&batch.cancels)
            })
        })
    });
    group.finish();
}

fn replace(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(1));
    let mut bench = Bench::new();
    let cycle = bench.scenario.replace_cycle();
    let mut next = 0;
    group.bench_function("replace", |b| {
        b.iter_custom(|iters| {
            batched(iters, |count| {
                // Replaces must be applied in cycle order; take the next `count`, wrapping.
                let mut elapsed = Duration::ZERO;
                let mut left = count;
                while left > 0 {
                    let end = (next + left).min(cycle.len());
                    elapsed += bench.timed(&cycle[next..end]);
                    left -= end - next;
                    next = end % cycle.len();
                }
                elapsed
            })
        })
    });
    group.finish();
}

fn sweep(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine/sweep");
    group.throughput(Throughput::Elements(1));
    for levels in [1usize, 10, 100] {
        let mut bench = Bench::new();
        group.bench_with_input(
            BenchmarkId::from_parameter(levels),
            &levels,
            |b, &levels| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let batch = bench.scenario.sweep_batch(levels, 1_000);
                        let count = left.min(batch.sweeps.len() as u64) as usize;
                        bench.untimed(&batch.liquidity);
                        total += bench.timed(&batch.sweeps[..count]);
                        // Sweeps not timed still run, so the next batch starts from the base book.
                        bench.untimed(&batch.sweeps[count..]);
                        left -= count as u64;
                    }
                    total
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, add_and_cancel, replace, sweep);
criterion_main!(benches);
