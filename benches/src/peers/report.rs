//! `peers.json`, typed: what `keel-peers` writes and what `keel-perf report` reads back,
//! with the one place each is rendered ([`PeersReport::summary_table`] for
//! `BENCHMARKS.md`; `keel-peers` renders `peers.md` from the same struct).
//!
//! Fields are declared in byte order of their names: the file was first written from a
//! `serde_json::json!` map, whose keys come out sorted, and keeps that layout.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::fmt::{fig, ratio_spread, spread};

/// The whole of `peers.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PeersReport {
    /// The command line.
    pub command: String,
    /// One entry per engine, in the order they were given.
    pub engines: Vec<EngineResult>,
    /// Always `peers`.
    pub kind: String,
    /// 1-minute load average after the runs, as `/proc/loadavg` prints it.
    pub load_average_after: Option<String>,
    /// And before.
    pub load_average_before: Option<String>,
    /// What the figures were taken on.
    pub machine: PeersMachine,
    /// How the runs were made, in words.
    pub method: String,
    /// Runs per engine.
    pub runs: usize,
    /// Keel against each peer, one line each.
    pub verdict: String,
    /// The command stream.
    pub workload: WorkloadInfo,
}

/// Median, min and max of a figure over the runs, and every run's value.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunSpread {
    /// Largest.
    pub max: f64,
    /// Median.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Every run's value, in run order.
    pub per_run: Vec<f64>,
}

/// Everything measured for one engine.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineResult {
    /// Commands/s over the measured commands.
    pub commands_per_s: RunSpread,
    /// Crate and version.
    #[serde(rename = "crate")]
    pub krate: String,
    /// The book after the last command.
    pub end_book: EndBook,
    /// Where the comparison is unfair, in either direction.
    pub fairness: Vec<String>,
    /// Keel's rate over this engine's, per run (none without a Keel run).
    pub keel_over_peer: Option<RunSpread>,
    /// How each Keel command is mapped.
    pub mapping: Vec<String>,
    /// Short name (`keel`, `matchcore`, ...).
    pub name: String,
    /// Seconds each run took.
    pub seconds_per_run: Vec<f64>,
    /// What the engine produced (first run).
    pub tally: TallyInfo,
    /// How its output compares with Keel's, in words.
    pub vs_keel: String,
}

/// The book an engine ends with.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EndBook {
    /// Best ask price in ticks.
    pub best_ask: Option<i64>,
    /// Best bid price in ticks.
    pub best_bid: Option<i64>,
    /// Resting orders, where the engine's API can count them.
    pub resting_orders: Option<u64>,
    /// Open quantity resting on both sides, in lots.
    pub resting_qty: u64,
}

/// What one engine produced over the measured commands (see `peers::Tally`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TallyInfo {
    /// Commands handed to the adapter.
    pub commands: u64,
    /// Commands carried out as several calls.
    pub emulated: u64,
    /// Commands refused.
    pub refused: u64,
    /// Commands the engine cannot express, not applied.
    pub skipped: u64,
    /// Quantity traded, in lots.
    pub traded_qty: u64,
    /// Trades.
    pub trades: u64,
}

/// The machine the figures were taken on.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PeersMachine {
    /// Online cores.
    pub cores: usize,
    /// CPU model, if `/proc/cpuinfo` names it.
    pub cpu: Option<String>,
    /// ISO 8601 date-time of the run.
    pub date: String,
    /// Kernel release.
    pub kernel: Option<String>,
    /// Seconds since the Unix epoch.
    pub unix_time: u64,
}

/// The command stream the engines ran.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkloadInfo {
    /// Accounts of the mix.
    pub accounts: u64,
    /// Central price of the mix, ticks.
    pub central_price: i64,
    /// The generator (`keel_benches::ExchangeCoreMix`).
    pub generator: String,
    /// Mean price levels (both sides) over the measured commands.
    pub mean_levels: f64,
    /// Mean resting orders over the measured commands.
    pub mean_resting_orders: f64,
    /// Measured commands.
    pub measured_commands: usize,
    /// Seed.
    pub seed: u64,
    /// Share of each command kind in the measured part.
    pub share: Shares,
    /// Resting orders the mix aims at.
    pub target_orders: usize,
    /// Warm-up commands.
    pub warmup_commands: usize,
}

/// Share of each command kind.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Shares {
    /// Cancels.
    pub cancel: f64,
    /// GTC orders.
    pub gtc: f64,
    /// IOC orders.
    pub ioc: f64,
    /// Replaces (moves).
    pub replace: f64,
}

impl PeersReport {
    /// The table `BENCHMARKS.md` shows: each engine's commands/s, Keel's ratio over it and
    /// its trades.
    pub fn summary_table(&self) -> String {
        let mut out = String::from(
            "| engine | crate | commands/s | Keel ÷ this (per-run ratios) | trades |\n|---|---|---|---|---|\n",
        );
        for e in &self.engines {
            let c = &e.commands_per_s;
            let ratio = e
                .keel_over_peer
                .as_ref()
                .map_or("–".to_string(), |r| ratio_spread(r.median, r.min, r.max));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                e.name,
                e.krate,
                spread(c.median, c.min, c.max),
                ratio,
                fig(e.tally.trades as f64)
            );
        }
        out
    }
}
