//! `keel-perf`: Keel's performance suite.
//!
//! - `keel-perf e2e`: the end-to-end order-entry benchmark: a `keel serve` node (started by
//!   the tool, or an existing one), many SoupBinTCP/OUCH sessions on loopback driven open
//!   loop at a fixed offered rate by one frugal thread, latencies corrected for coordinated
//!   omission; `--sweep` searches for the highest rate sustained without the queue growing.
//! - `keel-perf echo-server`: a do-nothing OUCH server; `e2e --echo` runs the same load
//!   against it to show the floor that loopback TCP and the generator set on this machine.
//!
//! Results go to `perf/results/` as JSON (everything measured) and Markdown.

mod driver;
mod e2e;
mod echo;
mod flow;
mod report;
mod server;
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Commands::E2e(args) => e2e::main(*args),
        Commands::EchoServer(args) => echo::main(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("keel-perf: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
