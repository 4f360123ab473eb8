//! `keel-throughput`: single-threaded throughput and per-command latency of the matching
//! engine on exchange-core's benchmark mix.
//!
//! ```text
//! cargo run --release -p keel-benches --bin keel-throughput -- [--commands N] [--seed S]
//!     [--runs R] [--latency-commands N] [--accounts A] [--target-orders T]
//!     [--central-price P]
//! ```
//!
//! Generates the workload once (untimed), prints the mix it actually produces, then runs it
//! `R` times through a fresh engine, timing the measured commands as one block, and reports
//! commands/s per run and the median with min/max. A separate run then times every command
//! on its own with `Instant` into an HDR histogram. Pin it to a core with `taskset -c 1`
//! if you like; nothing here does.

use std::process::ExitCode;
use std::time::Instant;

use hdrhistogram::Histogram;
use keel_benches::cli::{self, as_usize, parse_flags};
use keel_benches::{measure_mix, process_all, ExchangeCoreMix, Workload};
use keel_engine::{Command, Engine, Event};

struct Options {
    mix: ExchangeCoreMix,
    runs: usize,
    latency_commands: usize,
}

const USAGE: &str = "usage: keel-throughput [--commands N] [--seed S] [--runs R] \
                     [--latency-commands N] [--accounts A] [--target-orders T] \
                     [--central-price P]";

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        mix: ExchangeCoreMix {
            commands: 10_000_000,
            ..ExchangeCoreMix::default()
        },
        runs: 5,
        latency_commands: usize::MAX,
    };
    parse_flags(USAGE, |flag, value| {
        let number = || cli::number(flag, value, USAGE);
        match flag {
            "--commands" => options.mix.commands = as_usize(number()?)?,
            "--seed" => options.mix.seed = number()?,
            "--runs" => options.runs = as_usize(number()?)?.max(1),
            "--latency-commands" => options.latency_commands = as_usize(number()?)?,
            "--accounts" => options.mix.accounts = number()?.max(1),
            "--target-orders" => options.mix.target_orders = as_usize(number()?)?,
            "--central-price" => {
                options.mix.central_price =
                    i64::try_from(number()?).map_err(|err| format!("--central-price: {err}"))?
            }
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
        Ok(())
    })?;
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let mix = options.mix;
    println!(
        "keel-throughput: exchange-core mix, seed {}, {} measured commands, target {} resting \
         orders, {} accounts, central price {}",
        mix.seed, mix.commands, mix.target_orders, mix.accounts, mix.central_price
    );
    let started = Instant::now();
    let workload = mix.generate();
    println!(
        "generated {} warm-up + {} measured commands in {:.2} s ({} bytes per command)",
        workload.warmup.len(),
        workload.measured.len(),
        started.elapsed().as_secs_f64(),
        std::mem::size_of::<Command>()
    );

    let stats = measure_mix(&workload);
    println!("mix actually produced (measured part, run through a fresh engine):");
    for line in stats.to_string().lines() {
        println!("  {line}");
    }

    println!(
        "throughput: {} runs, each a fresh engine, warm-up untimed, measured commands timed \
         as one block",
        options.runs
    );
    let mut rates = Vec::with_capacity(options.runs);
    let mut first_events = None;
    for run in 1..=options.runs {
        let (rate, seconds, events) = throughput_run(&workload);
        println!("  run {run}: {rate:>12.0} commands/s ({seconds:.3} s, {events} events)");
        match first_events {
            None => first_events = Some(events),
            Some(expected) if expected != events => {
                eprintln!("error: run {run} emitted {events} events, run 1 emitted {expected}");
                return ExitCode::FAILURE;
            }
            Some(_) => {}
        }
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    let (min, max) = (rates[0], rates[rates.len() - 1]);
    println!(
        "  median {:.0} commands/s (min {:.0}, max {:.0}; spread -{:.1}% / +{:.1}%)",
        median,
        min,
        max,
        100.0 * (median - min) / median,
        100.0 * (max - median) / median
    );

    let latency_commands = options.latency_commands.min(workload.measured.len());
    if latency_commands > 0 {
        latency_run(&workload, latency_commands);
    }
    ExitCode::SUCCESS
}

/// One timed pass over the measured commands on a fresh engine: (commands/s, seconds, events).
fn throughput_run(workload: &Workload) -> (f64, f64, u64) {
    let mut engine = Engine::default();
    let mut sink: Vec<Event> = Vec::with_capacity(4_096);
    process_all(&mut engine, &workload.warmup, &mut sink);
    let start = Instant::now();
    let events = process_all(&mut engine, &workload.measured, &mut sink);
    let seconds = start.elapsed().as_secs_f64();
    std::hint::black_box(&engine);
    (workload.measured.len() as f64 / seconds, seconds, events)
}

/// Times each of the first `count` measured commands on its own and prints percentiles.
fn latency_run(workload: &Workload, count: usize) {
    let histogram = || Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3);
    let (Ok(mut latency), Ok(mut clock)) = (histogram(), histogram()) else {
        eprintln!("error: could not create histograms");
        return;
    };
    // The cost of the measurement itself: two back-to-back clock reads.
    for _ in 0..1_000_000 {
        let start = Instant::now();
        let nanos = start.elapsed().as_nanos();
        clock.saturating_record(u64::try_from(nanos).unwrap_or(u64::MAX).max(1));
    }

    let mut engine = Engine::default();
    let mut sink: Vec<Event> = Vec::with_capacity(4_096);
    process_all(&mut engine, &workload.warmup, &mut sink);
    for command in &workload.measured[..count] {
        sink.clear();
        let start = Instant::now();
        engine.process(command, &mut sink);
        let nanos = start.elapsed().as_nanos();
        latency.saturating_record(u64::try_from(nanos).unwrap_or(u64::MAX).max(1));
    }
    std::hint::black_box(&engine);

    println!(
        "latency: {count} commands, each timed alone with std::time::Instant (a fresh engine, \
         warm-up untimed)"
    );
    println!(
        "  per command (ns): p50 {}  p99 {}  p99.9 {}  p99.99 {}  max {}  mean {:.1}",
        latency.value_at_quantile(0.50),
        latency.value_at_quantile(0.99),
        latency.value_at_quantile(0.999),
        latency.value_at_quantile(0.9999),
        latency.max(),
        latency.mean()
    );
    println!(
        "  note: these include the clock's own cost; two back-to-back Instant::now() reads \
         take p50 {} ns, p99 {} ns here",
        clock.value_at_quantile(0.50),
        clock.value_at_quantile(0.99)
    );
}
