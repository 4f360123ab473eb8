//! `keel-perf`: Keel's performance suite.
//!
//! - `keel-perf e2e`: the end-to-end order-entry benchmark: a `keel serve` node (started by
//!   the tool, or an existing one), many SoupBinTCP/OUCH sessions on loopback driven open
//!   loop at a fixed offered rate by one frugal thread, latencies corrected for coordinated
//!   omission; `--sweep` searches for the highest rate sustained without the queue growing.
//! - `keel-perf e2e --cluster 3`: the same load against the leader of a 3-node Raft
//!   cluster; `--compare-single` alternates it with the single node and reports the ratio.
//! - `keel-perf failover`: kill -9 of a 3-node cluster's leader under steady order entry:
//!   time until a client has an order accepted by the new leader, and nothing acknowledged
//!   lost.
//! - `keel-perf drill`: a Jepsen-style fault drill: a 3-node cluster whose peer links run
//!   through a fault-injecting proxy, open-loop clients, a seeded schedule of kills,
//!   pauses and partitions, and checks of every replica's journal at the end.
//! - `keel-perf relogin`: the login storm after a failover: N sessions logged into a
//!   3-node cluster, the leader killed, time until all are logged in again on the new
//!   leader, with resumption tickets and without.
//! - `keel-perf stepdown`: a 3-node cluster on a journal of 10M commands; the leader is
//!   deposed: time until it answers Raft again, and until its state is rebuilt behind that.
//! - `keel-perf echo-server`: a do-nothing OUCH server; `e2e --echo` runs the same load
//!   against it to show the floor that loopback TCP and the generator set on this machine.
//! - `keel-perf lobster`: replays real NASDAQ order flow from LOBSTER files through the
//!   engine, timing it and checking executions and books against the exchange's.
//!
//! - `keel-perf engine`: in-process engine throughput and per-command latency on seeded
//!   workloads (exchange-core's mix, a 100k-order book, sweeps, market makers' cancels).
//! - `keel-perf report`: the whole suite with reduced settings (under 10 minutes on 2
//!   cores), rewriting `BENCHMARKS.md` and the plots in `perf/plots/`.
//!
//! Results go to `perf/results/` as JSON (everything measured) and Markdown.

mod cluster;
mod drill;
mod driver;
mod e2e;
mod echo;
mod engine;
mod failover;
mod flow;
mod json;
mod lobster;
mod plots;
mod recorder;
mod relogin;
mod report;
mod server;
mod stepdown;
mod suite;
mod sys;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Keel's performance suite.
#[derive(Debug, Parser)]
#[command(name = "keel-perf", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// End-to-end order entry through `keel serve`: open-loop load at a fixed rate over many
    /// sessions, latency order → Accepted / Executed with coordinated-omission correction;
    /// `--sweep` finds the highest rate sustained.
    E2e(Box<e2e::E2eArgs>),
    /// A do-nothing OUCH server (answers every order at once) for `e2e --echo`: the floor
    /// of loopback TCP, wake-ups and the generator on this machine.
    EchoServer(echo::EchoArgs),
    /// Kill -9 the leader of a 3-node cluster under steady order entry, `--trials` times:
    /// time until the client has an order accepted by the new leader; nothing acknowledged
    /// may be lost.
    Failover(Box<failover::FailoverArgs>),
    /// Jepsen-style drill: kill -9, SIGSTOP, isolation, splits, one-way partitions and
    /// flapping links against a 3-node cluster under open-loop order entry (`--faults N` or
    /// a script, `--seed`); outage per fault kind, a timeline plot, and checks of every
    /// replica's journal (non-zero exit on a violation).
    Drill(Box<drill::DrillArgs>),
    /// Log `--sessions` sessions into a 3-node cluster, kill -9 the leader, and time until
    /// every session is logged in again on the new one (with resumption tickets, without).
    Relogin(relogin::ReloginArgs),
    /// A 3-node cluster on a journal of `--records` commands: depose the leader and time
    /// its step-down to follower (answering Raft) and the background rebuild of its state.
    Stepdown(stepdown::StepdownArgs),
    /// Replay LOBSTER (NASDAQ) message/orderbook files through the engine: commands/s, and
    /// agreement of executions and books with the exchange (see perf/LOBSTER.md).
    Lobster(lobster::LobsterArgs),
    /// In-process engine throughput (commands/s) and per-command latency on seeded
    /// workloads; results in perf/results/engine.{json,md}.
    Engine(Box<engine::EngineArgs>),
    /// Run the whole suite with reduced settings and rewrite BENCHMARKS.md and perf/plots/
    /// (build first: `cargo build --release --workspace`).
    Report(suite::ReportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Commands::E2e(args) => e2e::main(*args),
        Commands::EchoServer(args) => echo::main(&args),
        Commands::Failover(args) => failover::main(&args),
        Commands::Drill(args) => drill::main(&args),
        Commands::Relogin(args) => relogin::main(&args),
        Commands::Stepdown(args) => stepdown::main(&args),
        Commands::Lobster(args) => lobster::main(&args),
        Commands::Engine(args) => engine::main(&args),
        Commands::Report(args) => suite::main(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("keel-perf: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
