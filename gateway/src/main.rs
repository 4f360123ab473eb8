//! `keel`: the operator's command-line tool. This binary parses arguments, prints and
//! dispatches; the work is done by `keel-node` (`serve`, `replay`, `cluster`), `keel-client`
//! (`client`) and `keel-journal` (`journal verify|dump|roots|repair|sync-failure|
//! clear-sync-failure`).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use keel_client::DEMO_USERS;
use keel_journal::inspect;
use keel_journal::{Durability, Journal, JournalConfig, SyncMethod};
use keel_node::config::{Config, DurabilityConfig};
use keel_node::local_cluster::{self, LocalCluster};
use keel_node::replay;
use keel_node::supervisor;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

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
    Replay(ReplayArgs),
    /// Inspect or repair a journal directory.
    #[command(subcommand)]
    Journal(JournalCommand),
    /// Run a node: the OUCH 4.2 / SoupBinTCP 4.0 gateway, the matching loop and the journal.
    Serve {
        /// Node configuration (TOML); the embedded demo configuration when absent.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Read a password on standard input and print its salted argon2id hash for a
    /// `[[user]]` entry's `password_hash`.
    Passwd,
    /// Place, replace and cancel orders, or watch a user's messages, over OUCH 4.2.
    Client(keel_client::cli::Args),
    /// Run a local Raft cluster of `keel serve` nodes on loopback (a demo for newcomers):
    /// configurations and data in subfolders of one directory, logs prefixed by node.
    Cluster(LocalCluster),
}

#[derive(Debug, clap::Args)]
struct ReplayArgs {
    /// After the last command, print every instrument's book and the Merkle roots.
    #[arg(long)]
    book: bool,
    /// Journal directory: recover it (creating it if absent), then append every new command
    /// to it before applying it.
    #[arg(long, value_name = "DIR")]
    journal: Option<PathBuf>,
    /// When events may be printed: once the command is on disk (fsync) or once appended.
    #[arg(long, value_enum, default_value = "fsync")]
    durability: DurabilityArg,
    /// How the journal syncs: io_uring when available (auto), io_uring only, or msync.
    #[arg(long, value_enum, default_value = "auto")]
    sync: SyncArg,
    /// Journal segment size in bytes (a multiple of 4096).
    #[arg(long, default_value_t = 64 << 20)]
    segment_size: u64,
    /// Take a snapshot every this many commands (0: never).
    #[arg(long, default_value_t = 1_000_000)]
    snapshot_every: u64,
    /// Command file (JSON lines); standard input when absent.
    file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum JournalCommand {
    /// Check every segment, record and snapshot; print record count, last sequence number
    /// and the journal Merkle root. Exits non-zero on corruption.
    Verify {
        /// Journal directory.
        dir: PathBuf,
    },
    /// Print the journaled commands as `keel replay` input lines.
    Dump {
        /// Journal directory.
        dir: PathBuf,
        /// First sequence number to print.
        #[arg(long, default_value_t = 1)]
        from: u64,
    },
    /// Replay the journal into an engine and print one JSON line with the last sequence
    /// number, the journal Merkle root and the engine state root (replicas that hold the
    /// same records print the same line).
    Roots {
        /// Journal directory.
        dir: PathBuf,
    },
    /// Truncate the journal at its first corruption, discarding everything after it.
    Repair {
        /// Journal directory.
        dir: PathBuf,
    },
    /// Show the journal's sync-failure record, if a sync failed (the journal then refuses
    /// to open until `clear-sync-failure`). Exits non-zero when there is one.
    SyncFailure {
        /// Journal directory.
        dir: PathBuf,
    },
    /// After checking the disk: verify the journal, cut it back to the last record known
    /// durable before the sync failure, and remove the sync-failure record.
    ClearSyncFailure {
        /// Journal directory.
        dir: PathBuf,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DurabilityArg {
    Fsync,
    Async,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum SyncArg {
    Auto,
    IoUring,
    Msync,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(if matches!(cli.command, Commands::Serve { .. }) {
        "info"
    } else {
        "warn"
    });
    let result = match cli.command {
        Commands::Serve { config } => return serve_supervised(config.as_deref()),
        Commands::Passwd => passwd(),
        Commands::Client(args) => keel_client::cli::run(args).map_err(Into::into),
        Commands::Replay(args) => run_replay(&args),
        Commands::Journal(JournalCommand::Verify { dir }) => verify(&dir),
        Commands::Journal(JournalCommand::Dump { dir, from }) => dump(&dir, from),
        Commands::Journal(JournalCommand::Repair { dir }) => repair(&dir),
        Commands::Journal(JournalCommand::Roots { dir }) => roots(&dir),
        Commands::Journal(JournalCommand::SyncFailure { dir }) => show_sync_failure(&dir),
        Commands::Journal(JournalCommand::ClearSyncFailure { dir }) => clear_sync_failure(&dir),
        Commands::Cluster(args) => cluster(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("keel: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to standard error (standard output carries the event stream); `RUST_LOG`
/// overrides the default level.
fn init_logging(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&io::stderr()))
        .with_target(false)
        .init();
}

/// `keel serve`, with its exit status: 0 after a clean stop, 1 if it cannot start (or
/// another error), and the fault's status if the node stopped on a fault
/// ([`supervisor::EXIT_THREAD_FAILED`], [`supervisor::EXIT_JOURNAL_FAILED`]), with one
/// line on standard error naming the thread and the error.
fn serve_supervised(config_path: Option<&Path>) -> ExitCode {
    // A panic of this thread (the single node's gateway, the cluster node's replication
    // loop) has tripped the latch in the panic hook; it is reported like any other fault.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| serve(config_path)));
    if let Some(fault) = supervisor::node().fault() {
        // Not `eprintln!`: a thread stopped in a panic may hold the standard error lock.
        supervisor::write_stderr(&format!(
            "keel serve: fatal: {fault} (exit status {})\n",
            fault.exit_status()
        ));
        return ExitCode::from(fault.exit_status());
    }
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(error)) => {
            eprintln!("keel: error: {error:#}");
            ExitCode::FAILURE
        }
        Err(_) => ExitCode::from(supervisor::EXIT_THREAD_FAILED),
    }
}

fn serve(config_path: Option<&Path>) -> anyhow::Result<()> {
    let config = match config_path {
        Some(path) => Config::load(path)?,
        None => {
            let config = Config::embedded_default();
            let users: Vec<String> = DEMO_USERS
                .iter()
                .map(|(name, password)| format!("{name}/{password}"))
                .collect();
            eprintln!(
                "keel serve: no --config given; using the embedded demo configuration:\n  \
                 listen {} (loopback only), data in {}, durability {}\n  \
                 instruments {}\n  demo users (name/password) {}",
                config.server.listen,
                config.server.data_dir.display(),
                match config.server.durability {
                    DurabilityConfig::Fsync => "fsync",
                    DurabilityConfig::Async => "async",
                },
                config
                    .instruments
                    .iter()
                    .map(|i| format!("{}={} (price_scale {})", i.id, i.symbol, i.price_scale))
                    .collect::<Vec<_>>()
                    .join(", "),
                users.join(", ")
            );
            config
        }
    };
    let shutdown = shutdown_on_signals()?;
    keel_node::run(&config, &shutdown, |info| {
        tracing::info!(
            listen = %info.listen,
            session = %info.session,
            matching_core = ?info.matching_core,
            recovered_records = info.recovered_records,
            "keel serve: ready"
        );
        eprintln!(
            "keel serve: listening on {} (session {}), matching loop on core {}, journal at record {}; Ctrl-C to stop",
            info.listen,
            info.session,
            info.matching_core.map_or_else(|| "unpinned".to_string(), |c| c.to_string()),
            info.recovered_records
        );
    })?;
    eprintln!("keel serve: stopped cleanly (journal synced)");
    Ok(())
}

/// A flag set on SIGINT or SIGTERM.
fn shutdown_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    let shutdown = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, shutdown.clone())
            .context("cannot install signal handler")?;
    }
    Ok(shutdown)
}

fn cluster(args: &LocalCluster) -> anyhow::Result<()> {
    let shutdown = shutdown_on_signals()?;
    let exe = std::env::current_exe()?;
    local_cluster::run(args, &exe, &shutdown)?;
    Ok(())
}

fn passwd() -> anyhow::Result<()> {
    let mut line = String::new();
    io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() || password.len() > 10 {
        bail!("SoupBinTCP passwords are 1 to 10 characters");
    }
    println!("{}", keel_node::config::hash_password(password)?);
    Ok(())
}

fn open_input(file: Option<&Path>) -> anyhow::Result<BufReader<Box<dyn Read>>> {
    let reader: Box<dyn Read> = match file {
        Some(path) => {
            Box::new(File::open(path).with_context(|| format!("cannot open {}", path.display()))?)
        }
        None => Box::new(io::stdin()),
    };
    Ok(BufReader::with_capacity(1 << 16, reader))
}

fn run_replay(args: &ReplayArgs) -> anyhow::Result<()> {
    let mut input = open_input(args.file.as_deref())?;
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    match &args.journal {
        None => replay::run_unjournaled(&mut input, &mut out, args.book)?,
        Some(dir) => {
            let journal = open_journal(args, dir)?;
            replay::run_journaled(
                journal,
                dir,
                args.snapshot_every,
                args.book,
                &mut input,
                &mut out,
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Opens (recovers) the journal `keel replay --journal` appends to, reporting a torn tail
/// that recovery cut.
fn open_journal(args: &ReplayArgs, dir: &Path) -> anyhow::Result<Journal> {
    let config = JournalConfig {
        segment_size_bytes: args.segment_size,
        durability: match args.durability {
            DurabilityArg::Fsync => Durability::Fsync,
            DurabilityArg::Async => Durability::Async,
        },
        sync_method: match args.sync {
            SyncArg::Auto => SyncMethod::Auto,
            SyncArg::IoUring => SyncMethod::IoUring,
            SyncArg::Msync => SyncMethod::Msync,
        },
        ..JournalConfig::default()
    };
    let (journal, recovery) = Journal::open(dir, config)
        .with_context(|| format!("cannot open journal {}", dir.display()))?;
    if let Some(torn) = recovery.scan.torn {
        eprintln!(
            "keel: journal: truncated a torn tail in segment {} at offset {} ({} bytes)",
            torn.segment, torn.offset, torn.len_bytes
        );
    }
    Ok(journal)
}

fn verify(dir: &Path) -> anyhow::Result<()> {
    let found = inspect::verify(dir)?;
    let scan = &found.scan;
    println!("records: {}", scan.records);
    println!("first sequence number: {}", scan.first_seq.unwrap_or(0));
    println!("last sequence number: {}", scan.last_seq);
    println!("segments: {}", scan.data_segments.len());
    match (found.journal_root, scan.first_seq) {
        (Some(root), _) => println!("journal root: {}", replay::hex(&root)),
        (None, first) => println!(
            "journal root: unavailable (records before {} were retired; see the snapshots)",
            first.unwrap_or(0)
        ),
    }
    println!("snapshots: {}", found.snapshots);
    if let Some(torn) = scan.torn {
        println!(
            "torn tail: segment {} offset {} ({} bytes, {:?}); recovery will truncate it",
            torn.segment, torn.offset, torn.len_bytes, torn.defect
        );
    }
    if !found.damage.is_empty() {
        bail!("{}", found.damage.join("; "));
    }
    Ok(())
}

fn dump(dir: &Path, from: u64) -> anyhow::Result<()> {
    let mut commands = inspect::Commands::open(dir, from)?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    while let Some(command) = commands.next_command()? {
        replay::write_command(&mut out, &command)?;
    }
    out.flush()?;
    Ok(())
}

fn roots(dir: &Path) -> anyhow::Result<()> {
    let roots = inspect::roots(dir)?;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    replay::write_roots(
        &mut out,
        roots.last_seq,
        &roots.journal_root,
        &roots.state_root,
    )?;
    out.flush()?;
    Ok(())
}

fn repair(dir: &Path) -> anyhow::Result<()> {
    match keel_journal::repair(dir)? {
        None => println!("journal is not corrupt; nothing changed"),
        Some((segment, offset, reason)) => println!(
            "truncated at segment {segment} offset {offset} ({reason}); everything after it was discarded"
        ),
    }
    Ok(())
}

fn show_sync_failure(dir: &Path) -> anyhow::Result<()> {
    match inspect::sync_failure(dir)? {
        None => {
            println!("no sync failure recorded");
            Ok(())
        }
        Some(Ok(failure)) => bail!(
            "{failure}; records after {} are not trusted. Check the disk, then run \
             `keel journal clear-sync-failure {}`",
            failure.last_durable_seq,
            dir.display()
        ),
        Some(Err(why)) => bail!(
            "sync-failure record present ({why}); check the disk, then run \
             `keel journal clear-sync-failure {}`",
            dir.display()
        ),
    }
}

fn clear_sync_failure(dir: &Path) -> anyhow::Result<()> {
    match inspect::clear_sync_failure(dir)? {
        None => println!("no sync failure recorded; nothing changed"),
        Some(cleared) => {
            if let Err(why) = cleared.record {
                println!("the record was unreadable ({why}); used the durable marker");
            }
            println!(
                "journal verified; kept records up to {}, discarded {} after it; \
                 sync-failure record removed",
                cleared.last_kept_seq, cleared.discarded
            );
        }
    }
    Ok(())
}
