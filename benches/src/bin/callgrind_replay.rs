//! `keel-callgrind-replay`: a fixed exchange-core-mix replay for instruction counting.
//!
//! Generates the workload (seed 1, 1,000,000 measured commands unless given
//! `--commands N` / `--seed S`), applies the warm-up, then processes the measured commands
//! inside [`replay_measured`], which is never inlined so that callgrind can restrict counting
//! to it: `valgrind --tool=callgrind --toggle-collect='*replay_measured*' ...`.
//! `benches/callgrind.sh` does that and prints instructions per command.

use std::process::ExitCode;

use keel_benches::ExchangeCoreMix;
use keel_engine::{Command, Engine, Event};

/// Processes `commands` in order with one reusable sink; returns the number of events.
/// The only code callgrind counts when run with `--toggle-collect='*replay_measured*'`.
#[inline(never)]
fn replay_measured(engine: &mut Engine, commands: &[Command], sink: &mut Vec<Event>) -> u64 {
    let mut events = 0;
    for command in commands {
        sink.clear();
        engine.process(command, sink);
        events += sink.len() as u64;
    }
    events
}

/// The warm-up, outside the counted function.
#[inline(never)]
fn warm_up(engine: &mut Engine, commands: &[Command], sink: &mut Vec<Event>) {
    for command in commands {
        sink.clear();
        engine.process(command, sink);
    }
}

fn main() -> ExitCode {
    let mut mix = ExchangeCoreMix {
        commands: 1_000_000,
        ..ExchangeCoreMix::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .and_then(|v| v.replace('_', "").parse::<u64>().ok());
        match (flag.as_str(), value) {
            ("--commands", Some(n)) => mix.commands = usize::try_from(n).unwrap_or(usize::MAX),
            ("--seed", Some(seed)) => mix.seed = seed,
            _ => {
                eprintln!("usage: keel-callgrind-replay [--commands N] [--seed S]");
                return ExitCode::from(2);
            }
        }
    }
    let workload = mix.generate();
    let mut engine = Engine::default();
    let mut sink: Vec<Event> = Vec::with_capacity(4_096);
    warm_up(&mut engine, &workload.warmup, &mut sink);
    let events = replay_measured(&mut engine, &workload.measured, &mut sink);
    std::hint::black_box(&engine);
    println!(
        "seed {} warmup {} commands {} events {}",
        mix.seed,
        workload.warmup.len(),
        workload.measured.len(),
        events
    );
    ExitCode::SUCCESS
}
