//! Criterion group comparing Keel's engine with the peer order books of
//! `keel_benches::peers` (matchcore, orderbook-rs, lobster) on the exchange-core mix.
//!
//! `peers/exchange_core_mix/<engine>`: one iteration applies the same 100,000 measured
//! commands (seed 1, after the generator's warm-up) to a fresh book of that engine; the
//! fresh book and the warm-up are not timed. Figures are per command (criterion's
//! throughput is elements = commands). `keel-peers` is the fuller comparison (longer
//! stream, interleaved runs, trade and end-book checks); this group is the quick,
//! criterion-tracked version of it.
//!
//! Run alone with `cargo bench -p keel-benches --bench peers`.

use std::time::Duration;

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use keel_benches::peers::{
    keel::KeelBook, lobster::LobsterBook, matchcore::MatchcoreBook, orderbook_rs::OrderbookRsBook,
    run_once, PeerBook,
};
use keel_benches::{ExchangeCoreMix, Workload};

/// Measured commands per iteration: long enough for the book to settle into the mix's
/// steady state, short enough that the slowest peer takes well under a second.
const COMMANDS: usize = 100_000;

fn bench_peer<B: PeerBook>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    workload: &Workload,
) {
    group.bench_with_input(
        BenchmarkId::from_parameter(B::INFO.name),
        workload,
        |b, workload| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| Duration::from_secs_f64(run_once::<B>(workload).seconds))
                    .sum()
            })
        },
    );
}

fn peers(c: &mut Criterion) {
    let workload = ExchangeCoreMix {
        commands: COMMANDS,
        ..ExchangeCoreMix::default()
    }
    .generate();
    let mut group = c.benchmark_group("peers/exchange_core_mix");
    group.throughput(Throughput::Elements(COMMANDS as u64));
    // Each iteration is a whole pass (milliseconds for Keel, a third of a second for the
    // slowest peer): flat sampling and few samples keep the slowest peer to a few seconds
    // (linear sampling would need 55 passes).
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    bench_peer::<KeelBook>(&mut group, &workload);
    bench_peer::<MatchcoreBook>(&mut group, &workload);
    bench_peer::<OrderbookRsBook>(&mut group, &workload);
    bench_peer::<LobsterBook>(&mut group, &workload);
    group.finish();
}

criterion_group!(benches, peers);
criterion_main!(benches);
