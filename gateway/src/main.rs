//! `keel`: the operator's command-line tool.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use keel_engine::Engine;
use keel_gateway::replay;

/// Keel: an exchange matching engine.
#[derive(Debug, Parser)]
#[command(name = "keel", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Run JSON-lines commands through the engine and print its events as JSON lines.
    Replay {
        /// After the last command, print every instrument's book.
        #[arg(long)]
        book: bool,
        /// Command file (JSON lines); standard input when absent.
        file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Commands::Replay { book, file } => run_replay(book, file),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("keel: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_replay(book: bool, file: Option<PathBuf>) -> anyhow::Result<()> {
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut engine = Engine::default();
    let result = match &file {
        Some(path) => {
            let file =
                File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            replay::replay(&mut engine, &mut BufReader::new(file), &mut out)
        }
        None => replay::replay(&mut engine, &mut io::stdin().lock(), &mut out),
    };
    // The events of every line before a bad one are part of the contract: flush them first.
    let flushed = out.flush();
    result.context("replay stopped")?;
    flushed?;
    if book {
        replay::write_books(&mut out, &engine)?;
        out.flush()?;
    }
    Ok(())
}
