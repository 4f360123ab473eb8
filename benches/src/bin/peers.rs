//! `keel-peers`: Keel's engine side by side with other order-book crates on the same
//! exchange-core command stream.
//!
//! ```text
//! cargo run --release -p keel-benches --bin keel-peers -- [--commands N] [--seed S]
//!     [--runs R] [--out DIR] [--peers keel,matchcore,...]
//! ```
//!
//! Generates the exchange-core mix once (untimed; `keel_benches::ExchangeCoreMix`, same
//! generator and seed as the exchange-core workload of `keel-perf engine`), then runs it `R` times through every engine,
//! interleaved (run r visits the engines in an order rotated by r, so none is always first
//! or last), each time on a fresh book: warm-up untimed, measured commands timed as one
//! block. Prints a table of commands/s (median, min–max), the Keel/peer ratio (median and
//! range of the per-run ratios: both engines of a ratio ran minutes apart at most, in the
//! same run), and what each engine produced (trades, traded quantity, refusals, emulated and
//! skipped commands, end-of-run book) against Keel's, and writes the same as `peers.json`
//! and `peers.md` into `--out` (default `perf/results/`).
//!
//! Everything runs on one thread; nothing is pinned (`taskset -c 1` in front pins it).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use keel_benches::cli::{self, as_usize, parse_flags};
use keel_benches::date::iso_date;
use keel_benches::peers::report::{
    EndBook, EngineResult, PeersMachine, PeersReport, RunSpread, Shares, TallyInfo, WorkloadInfo,
};
use keel_benches::peers::{self, BookState, PeerInfo, RunResult, Tally, PEER_NAMES};
use keel_benches::{measure_mix, ExchangeCoreMix, MixStats, Workload};

const USAGE: &str = "usage: keel-peers [--commands N] [--seed S] [--runs R] [--out DIR] \
                     [--peers keel,matchcore,orderbook-rs,lobster]";

struct Options {
    mix: ExchangeCoreMix,
    runs: usize,
    out: PathBuf,
    peers: Vec<&'static str>,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        mix: ExchangeCoreMix {
            commands: 1_000_000,
            ..ExchangeCoreMix::default()
        },
        runs: 5,
        out: PathBuf::from("perf/results"),
        peers: PEER_NAMES.to_vec(),
    };
    parse_flags(USAGE, |flag, value| {
        let number = || cli::number(flag, value, USAGE);
        match flag {
            "--commands" => options.mix.commands = as_usize(number()?)?.max(1),
            "--seed" => options.mix.seed = number()?,
            "--runs" => options.runs = as_usize(number()?)?.max(1),
            "--out" => options.out = PathBuf::from(value),
            "--peers" => {
                let mut chosen = Vec::new();
                for name in value.split(',').filter(|n| !n.is_empty()) {
                    let known = PEER_NAMES
                        .iter()
                        .find(|known| **known == name)
                        .ok_or_else(|| format!("unknown peer {name}; known: {PEER_NAMES:?}"))?;
                    chosen.push(*known);
                }
                // Keel is the reference every ratio is taken against: always run it.
                if !chosen.contains(&PEER_NAMES[0]) {
                    chosen.insert(0, PEER_NAMES[0]);
                }
                options.peers = chosen;
            }
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
        Ok(())
    })?;
    Ok(options)
}

/// Everything measured for one engine.
struct PeerRuns {
    info: PeerInfo,
    runs: Vec<RunResult>,
}

impl PeerRuns {
    fn rates(&self) -> Vec<f64> {
        self.runs.iter().map(|r| r.commands_per_s).collect()
    }
    fn tally(&self) -> Tally {
        self.runs.first().map(|r| r.tally).unwrap_or_default()
    }
    fn state(&self) -> BookState {
        self.runs.first().map(|r| r.state).unwrap_or_default()
    }
}

/// Median, min and max of `values` (which must not be empty).
fn summary(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    (median, sorted[0], sorted[n - 1])
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let command_line = std::iter::once("keel-peers".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let mix = options.mix;
    let load_before = load_average();
    println!(
        "keel-peers: exchange-core mix, seed {}, {} measured commands, {} runs, engines: {}",
        mix.seed,
        mix.commands,
        options.runs,
        options.peers.join(", ")
    );
    let (workload, stats) = generate(&mix);
    let results = match run_interleaved(&options, &workload) {
        Ok(results) => results,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let load_after = load_average();
    let consistent = runs_agree(&results);
    let report = Report {
        command_line,
        mix,
        warmup_commands: workload.warmup.len(),
        stats,
        runs: options.runs,
        load_before,
        load_after,
        results,
    };
    print!("{}", report.table());
    let verdict = report.verdict();
    println!("{verdict}");

    if let Err(err) = report.write(&options.out) {
        eprintln!("error: writing results to {}: {err}", options.out.display());
        return ExitCode::FAILURE;
    }
    println!(
        "wrote {} and {}",
        options.out.join("peers.json").display(),
        options.out.join("peers.md").display()
    );
    if consistent {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Generates the stream (untimed) and prints what its measured part does.
fn generate(mix: &ExchangeCoreMix) -> (Workload, MixStats) {
    let started = Instant::now();
    let workload = mix.generate();
    println!(
        "generated {} warm-up + {} measured commands in {:.2} s",
        workload.warmup.len(),
        workload.measured.len(),
        started.elapsed().as_secs_f64()
    );
    let stats = measure_mix(&workload);
    println!("mix (measured part, as Keel sees it):");
    for line in stats.to_string().lines() {
        println!("  {line}");
    }
    (workload, stats)
}

/// `--runs` runs through every engine, run r visiting them in an order rotated by r.
fn run_interleaved(options: &Options, workload: &Workload) -> Result<Vec<PeerRuns>, String> {
    let mut results: Vec<PeerRuns> = options
        .peers
        .iter()
        .filter_map(|name| peers::info(name))
        .map(|info| PeerRuns {
            info,
            runs: Vec::with_capacity(options.runs),
        })
        .collect();
    for run in 0..options.runs {
        let mut line = format!("run {}:", run + 1);
        for k in 0..results.len() {
            let index = (k + run) % results.len();
            let name = results[index].info.name;
            let Some(result) = peers::run_named(name, workload) else {
                return Err(format!("error: unknown peer {name}"));
            };
            let _ = write!(line, "  {name} {}/s", group(result.commands_per_s));
            results[index].runs.push(result);
        }
        println!("{line}");
    }
    Ok(results)
}

/// Whether each engine produced the same thing every run (printing each difference): the
/// stream and the engines are deterministic, so a difference means an adapter or an
/// engine is broken.
fn runs_agree(results: &[PeerRuns]) -> bool {
    let mut agree = true;
    for peer in results {
        for (run, result) in peer.runs.iter().enumerate() {
            if result.tally != peer.tally() || result.state != peer.state() {
                eprintln!(
                    "error: {} run {} produced {:?} / {:?}, run 1 produced {:?} / {:?}",
                    peer.info.name,
                    run + 1,
                    result.tally,
                    result.state,
                    peer.tally(),
                    peer.state()
                );
                agree = false;
            }
        }
    }
    agree
}

struct Report {
    command_line: String,
    mix: ExchangeCoreMix,
    warmup_commands: usize,
    stats: MixStats,
    runs: usize,
    load_before: Option<String>,
    load_after: Option<String>,
    results: Vec<PeerRuns>,
}

impl Report {
    fn keel(&self) -> Option<&PeerRuns> {
        self.results
            .iter()
            .find(|peer| peer.info.name == PEER_NAMES[0])
    }

    /// Per-run Keel/peer ratios (run r of Keel over run r of the peer).
    fn ratios(&self, peer: &PeerRuns) -> Vec<f64> {
        let Some(keel) = self.keel() else {
            return Vec::new();
        };
        keel.runs
            .iter()
            .zip(&peer.runs)
            .map(|(k, p)| k.commands_per_s / p.commands_per_s)
            .collect()
    }

    /// How `peer`'s output compares with Keel's, in words.
    fn agreement(&self, peer: &PeerRuns) -> String {
        let Some(keel) = self.keel() else {
            return String::new();
        };
        if std::ptr::eq(keel, peer) {
            return "reference".to_string();
        }
        let (k, p) = (keel.tally(), peer.tally());
        let (ks, ps) = (keel.state(), peer.state());
        let mut notes = Vec::new();
        if k.trades == p.trades && k.traded_qty == p.traded_qty {
            notes.push("same trades and volume".to_string());
        } else {
            notes.push(format!(
                "trades {:+}, volume {:+} vs Keel",
                p.trades as i64 - k.trades as i64,
                p.traded_qty as i64 - k.traded_qty as i64
            ));
        }
        if ks.best_bid == ps.best_bid
            && ks.best_ask == ps.best_ask
            && ks.resting_qty == ps.resting_qty
        {
            notes.push("same end book (best bid/ask, resting qty)".to_string());
        } else {
            notes.push("end book differs".to_string());
        }
        notes.join("; ")
    }

    fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n| engine | commands/s median (min–max) | Keel/peer median (min–max) | trades | \
             traded qty | refused | emulated | skipped | end book: bid / ask / resting qty \
             (orders) | vs Keel |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
        for peer in &self.results {
            let (median, min, max) = summary(&peer.rates());
            let ratios = self.ratios(peer);
            let ratio = if peer.info.name == PEER_NAMES[0] || ratios.is_empty() {
                "1".to_string()
            } else {
                let (r, lo, hi) = summary(&ratios);
                format!("**{r:.2}×** ({lo:.2}–{hi:.2})")
            };
            let t = peer.tally();
            let s = peer.state();
            let price = |p: Option<i64>| p.map_or("-".to_string(), |p| p.to_string());
            let _ = writeln!(
                out,
                "| {} | **{}** ({}–{}) | {} | {} | {} | {} | {} | {} | {} / {} / {}{} | {} |",
                peer.info.name,
                group(median),
                group(min),
                group(max),
                ratio,
                group(t.trades as f64),
                group(t.traded_qty as f64),
                group(t.refused as f64),
                group(t.emulated as f64),
                group(t.skipped as f64),
                price(s.best_bid),
                price(s.best_ask),
                group(s.resting_qty as f64),
                s.resting_orders
                    .map_or(String::new(), |n| format!(" ({})", group(n as f64))),
                self.agreement(peer)
            );
        }
        out
    }

    fn verdict(&self) -> String {
        let Some(keel) = self.keel() else {
            return "no Keel run: no verdict".to_string();
        };
        let (keel_median, ..) = summary(&keel.rates());
        let mut lines = Vec::new();
        for peer in self.results.iter().filter(|p| !std::ptr::eq(*p, keel)) {
            let (median, ..) = summary(&peer.rates());
            let (_, ratio_min, _) = summary(&self.ratios(peer));
            lines.push(if keel_median > median && ratio_min > 1.0 {
                format!(
                    "Keel beats {} in every run (slowest per-run ratio {ratio_min:.2}×)",
                    peer.info.name
                )
            } else if keel_median > median {
                format!(
                    "Keel beats {} on the median but not in every run (slowest per-run \
                     ratio {ratio_min:.2}×)",
                    peer.info.name
                )
            } else {
                format!("Keel does NOT beat {} on this run", peer.info.name)
            });
        }
        lines.join("\n")
    }

    /// Everything measured, as written to `peers.json`.
    fn result(&self) -> PeersReport {
        let engines = self
            .results
            .iter()
            .map(|peer| self.engine_result(peer))
            .collect();
        let st = &self.stats;
        PeersReport {
            kind: "peers".to_string(),
            command: self.command_line.clone(),
            machine: machine(),
            load_average_before: self.load_before.clone(),
            load_average_after: self.load_after.clone(),
            workload: WorkloadInfo {
                generator: "keel_benches::ExchangeCoreMix".to_string(),
                seed: self.mix.seed,
                measured_commands: self.mix.commands,
                warmup_commands: self.warmup_commands,
                target_orders: self.mix.target_orders,
                accounts: self.mix.accounts,
                central_price: self.mix.central_price,
                share: Shares {
                    gtc: st.fraction(st.gtc),
                    ioc: st.fraction(st.ioc),
                    cancel: st.fraction(st.cancel),
                    replace: st.fraction(st.replace),
                },
                mean_resting_orders: st.mean_resting_orders(),
                mean_levels: st.mean_levels(),
            },
            method: "one thread; each run: fresh book per engine, warm-up untimed, measured \
                     commands timed as one block; engines interleaved, order rotated by run"
                .to_string(),
            runs: self.runs,
            engines,
            verdict: self.verdict(),
        }
    }

    /// One engine's entry of `peers.json`.
    fn engine_result(&self, peer: &PeerRuns) -> EngineResult {
        let spread = |values: &[f64]| {
            let (median, min, max) = summary(values);
            RunSpread {
                median,
                min,
                max,
                per_run: values.to_vec(),
            }
        };
        let ratios = self.ratios(peer);
        let t = peer.tally();
        let s = peer.state();
        let lines = |lines: &[&str]| lines.iter().map(|l| l.to_string()).collect();
        EngineResult {
            name: peer.info.name.to_string(),
            krate: peer.info.krate.to_string(),
            commands_per_s: spread(&peer.rates()),
            seconds_per_run: peer.runs.iter().map(|r| r.seconds).collect(),
            keel_over_peer: (!ratios.is_empty()).then(|| spread(&ratios)),
            tally: TallyInfo {
                commands: t.commands,
                trades: t.trades,
                traded_qty: t.traded_qty,
                refused: t.refused,
                emulated: t.emulated,
                skipped: t.skipped,
            },
            end_book: EndBook {
                best_bid: s.best_bid,
                best_ask: s.best_ask,
                resting_qty: s.resting_qty,
                resting_orders: s.resting_orders,
            },
            vs_keel: self.agreement(peer),
            mapping: lines(peer.info.mapping),
            fairness: lines(peer.info.fairness),
        }
    }

    fn markdown(&self) -> String {
        let st = &self.stats;
        let machine = machine();
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# keel-peers: Keel and other order books on one stream\n"
        );
        let _ = writeln!(
            md,
            "- machine: {}, {} cores, Linux {}, {}; 1-min load {} before, {} after \
             (a shared machine: other jobs ran; treat figures as noisy)",
            machine.cpu.as_deref().unwrap_or("?"),
            machine.cores,
            machine.kernel.as_deref().unwrap_or("?"),
            machine.date,
            self.load_before.as_deref().unwrap_or("?"),
            self.load_after.as_deref().unwrap_or("?"),
        );
        let _ = writeln!(md, "- command: `{}`", self.command_line);
        let _ = writeln!(
            md,
            "- stream: exchange-core mix (`keel_benches::ExchangeCoreMix`), seed {}, {} \
             warm-up + {} measured commands: GTC {:.2}%, IOC {:.2}%, cancel {:.2}%, \
             replace (move) {:.2}%; mean {:.0} resting orders on {:.0} levels",
            self.mix.seed,
            group(self.warmup_commands as f64),
            group(self.mix.commands as f64),
            100.0 * st.fraction(st.gtc),
            100.0 * st.fraction(st.ioc),
            100.0 * st.fraction(st.cancel),
            100.0 * st.fraction(st.replace),
            st.mean_resting_orders(),
            st.mean_levels()
        );
        let _ = writeln!(
            md,
            "- method: one thread; {} runs; in each, every engine gets a fresh book, the \
             warm-up untimed and the measured commands timed as one block; engines \
             interleaved, their order rotated each run. Ratios are Keel's rate over the \
             peer's within the same run.",
            self.runs
        );
        let _ = writeln!(md, "\n## Results\n{}", self.table());
        let _ = writeln!(md, "{}\n", self.verdict());
        let _ = writeln!(
            md,
            "Trades and traded quantity are what each engine reported for the measured \
             commands (Keel: `Trade` events; peers: their fill reports). `refused`: commands \
             the engine refused; `emulated`: commands done with several calls; `skipped`: \
             commands the peer cannot express. The end book is read after the last command."
        );
        self.peer_sections(&mut md);
        self.runs_table(&mut md);
        md
    }

    /// `## How each peer is driven`: each adapter's mapping and fairness notes.
    fn peer_sections(&self, md: &mut String) {
        let _ = writeln!(md, "\n## How each peer is driven, and where it is unfair\n");
        for peer in &self.results {
            let _ = writeln!(md, "### {} ({})\n", peer.info.name, peer.info.krate);
            for line in peer.info.mapping {
                let _ = writeln!(md, "- {line}");
            }
            for line in peer.info.fairness {
                let _ = writeln!(md, "- fairness: {line}");
            }
            let _ = writeln!(md);
        }
    }

    /// `## Runs`: every run's commands/s per engine.
    fn runs_table(&self, md: &mut String) {
        let _ = writeln!(md, "## Runs (commands/s)\n");
        let _ = write!(md, "| run |");
        for peer in &self.results {
            let _ = write!(md, " {} |", peer.info.name);
        }
        let _ = writeln!(md);
        let _ = writeln!(md, "|---|{}", "---|".repeat(self.results.len()));
        for run in 0..self.runs {
            let _ = write!(md, "| {} |", run + 1);
            for peer in &self.results {
                let rate = peer.runs.get(run).map_or(0.0, |r| r.commands_per_s);
                let _ = write!(md, " {} |", group(rate));
            }
            let _ = writeln!(md);
        }
    }

    fn write(&self, dir: &std::path::Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let json = serde_json::to_string_pretty(&self.result()).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("peers.json"), json + "\n")?;
        std::fs::write(dir.join("peers.md"), self.markdown())
    }
}

/// `1234567.8` as `1,234,568` (with its sign).
fn group(value: f64) -> String {
    let rounded = value.round();
    let digits = keel_benches::fmt::group(rounded.abs() as u64);
    if rounded < 0.0 {
        format!("-{digits}")
    } else {
        digits
    }
}

/// The 1-minute load average, as `/proc/loadavg` prints it.
fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next().map(str::to_string)
}

/// What the figures were taken on.
fn machine() -> PeersMachine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|name| name.trim().to_string())
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|text| text.trim().to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let unix_time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    PeersMachine {
        cpu,
        cores,
        kernel,
        unix_time,
        date: iso_date(unix_time),
    }
}
