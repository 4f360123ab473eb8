//! `keel-perf report`: runs the whole benchmark suite with reduced settings and rewrites
//! `BENCHMARKS.md` from what it measured.
//!
//! Every piece is a separate process started with the exact command the report prints
//! beside its figures (so a figure is reproduced by pasting its command), run from the
//! workspace root with its output in `--results` (default `perf/results/suite/`) and its
//! terminal output in `<results>/logs/<step>.log`:
//!
//! | step | command |
//! |---|---|
//! | engine | `keel-perf engine --quick` |
//! | e2e-async, e2e-fsync | `keel-perf e2e --durability … --rate 20000 --duration 5 --warmup 1 --runs 3` |
//! | cluster | `keel-perf e2e --cluster 3 --compare-single --rate 20000 …` |
//! | failover | `keel-perf failover --trials 5` |
//! | lobster | `keel-perf lobster --runs 3` |
//! | peers | `keel-peers --commands 1000000 --runs 3` |
//! | callgrind | `valgrind --tool=callgrind … keel-callgrind-replay --commands 1000000` |
//!
//! The report builds nothing: `keel-peers`, `keel-callgrind-replay` and `keel` must sit
//! beside this executable (`cargo build --release --workspace`). A step whose program is
//! missing, that fails or that outlives `--step-timeout-s` is reported as "not measured"
//! with the reason, and the rest goes on. `suite.json` in the results folder records every
//! step (command, status, duration), so `--render-only` can rewrite the report (after
//! editing `perf/notes.md`, say) without measuring again.

pub mod markdown;

use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use crate::report::{self, workspace_root, Machine};

/// `keel-perf report` options.
#[derive(Clone, Debug, clap::Args)]
pub struct ReportArgs {
    /// Folder for the suite's result files and logs, relative to the workspace root
    /// (default `perf/results/suite`).
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// The report to write (default `BENCHMARKS.md` at the workspace root).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Hand-written analysis included verbatim (default `perf/notes.md`).
    #[arg(long)]
    pub notes: Option<PathBuf>,
    /// Folder for the SVG plots (default `perf/plots`).
    #[arg(long)]
    pub plots: Option<PathBuf>,
    /// Do not measure: rewrite the report from the results already in --results.
    #[arg(long)]
    pub render_only: bool,
    /// Steps to leave out (comma separated: engine, e2e-async, e2e-fsync, cluster,
    /// failover, lobster, peers, callgrind); they are reported as not measured.
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
    /// A step still running after this many seconds is stopped (its process group gets
    /// SIGTERM, then SIGKILL) and reported as not measured.
    #[arg(long, default_value_t = 240)]
    pub step_timeout_s: u64,
}

/// One step of the suite as recorded in `suite.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepRecord {
    /// Short name (`engine`, `e2e-async`, ...).
    pub name: String,
    /// The command as a user types it from the workspace root.
    pub command: String,
    /// `ok`, or `not measured`.
    pub status: String,
    /// Why not measured, if so.
    pub reason: Option<String>,
    /// Wall-clock seconds the step took.
    pub duration_s: f64,
    /// Its terminal output, relative to the workspace root.
    pub log: String,
}

impl StepRecord {
    /// Whether the step produced its results.
    pub fn ok(&self) -> bool {
        self.status == "ok"
    }
}

/// `suite.json`: what ran, when, on what.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// Machine line fields, as detected when the suite started.
    pub machine: MachineInfo,
    /// The command that ran the suite.
    pub command: String,
    /// Where the binaries were taken from.
    pub binaries: String,
    /// Wall-clock seconds for the whole suite.
    pub duration_s: f64,
    /// 1-minute load average when the suite started.
    pub load_before: f64,
    /// And when it ended.
    pub load_after: f64,
    /// Every step, in order.
    pub steps: Vec<StepRecord>,
}

/// The machine and source the figures come from (a deserialisable copy of
/// [`Machine`]'s fields, plus what only the report needs).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MachineInfo {
    /// CPU model.
    pub cpu: String,
    /// Online cores.
    pub cores: usize,
    /// Kernel release.
    pub kernel: String,
    /// Memory, GiB.
    pub memory_gib: f64,
    /// Commit (`+dirty` with uncommitted changes).
    pub commit: String,
    /// ISO 8601 date-time the suite started.
    pub date: String,
    /// `rustc --version`, if rustc is on the PATH.
    pub rustc: String,
}

impl MachineInfo {
    fn from(machine: &Machine) -> MachineInfo {
        let rustc = Command::new("rustc")
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".to_string());
        MachineInfo {
            cpu: machine.cpu.clone(),
            cores: machine.cores,
            kernel: machine.kernel.clone(),
            memory_gib: machine.memory_gib,
            commit: machine.commit.clone(),
            date: machine.date.clone(),
            rustc,
        }
    }
}

/// Settings the suite runs each piece with (reduced so the whole suite stays under 10
/// minutes on a 2-core machine). The report prints them.
pub mod settings {
    /// Offered rate of the end-to-end runs, messages/s.
    pub const E2E_RATE: u32 = 20_000;
    /// Measured seconds per end-to-end run.
    pub const E2E_DURATION_S: u32 = 5;
    /// Warm-up seconds per end-to-end run.
    pub const E2E_WARMUP_S: u32 = 1;
    /// Runs per end-to-end configuration.
    pub const E2E_RUNS: u32 = 3;
    /// Failover trials.
    pub const FAILOVER_TRIALS: u32 = 5;
    /// LOBSTER timed replays.
    pub const LOBSTER_RUNS: u32 = 3;
    /// Commands of the peers comparison and of the callgrind replay.
    pub const PEERS_COMMANDS: u32 = 1_000_000;
    /// Runs of the peers comparison.
    pub const PEERS_RUNS: u32 = 3;
    /// Commands of the callgrind replay.
    pub const CALLGRIND_COMMANDS: u32 = 1_000_000;
}

/// A step to run: its name and argv (program first), workspace-relative.
struct Planned {
    name: &'static str,
    /// The program as a user names it (`target/release/keel-perf`, `valgrind`).
    program: String,
    /// Where it actually is (absolute), or `None` if it is a PATH command.
    path: Option<PathBuf>,
    args: Vec<String>,
}

impl Planned {
    fn command_line(&self) -> String {
        std::iter::once(self.program.clone())
            .chain(self.args.iter().map(|a| shell_quote(a)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn shell_quote(arg: &str) -> String {
    if arg
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=,:".contains(c))
    {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// `list` as owned strings.
fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// `e2e` with the suite's rate, window, runs and results folder after `lead`.
fn e2e_args(results: &str, lead: &[&str], label: &str) -> Vec<String> {
    use settings::*;
    let mut args = strings(&["e2e"]);
    args.extend(strings(lead));
    args.extend(strings(&[
        "--rate",
        &E2E_RATE.to_string(),
        "--duration",
        &E2E_DURATION_S.to_string(),
        "--warmup",
        &E2E_WARMUP_S.to_string(),
        "--runs",
        &E2E_RUNS.to_string(),
        "--results",
        results,
        "--label",
        label,
    ]));
    args
}

/// The steps of the suite, in order, with results in `results` (workspace-relative).
fn plan(results: &str, bin_dir: &Path) -> Vec<Planned> {
    use settings::*;
    let perf = |name: &'static str, args: Vec<String>| Planned {
        name,
        program: "target/release/keel-perf".to_string(),
        path: Some(bin_dir.join("keel-perf")),
        args,
    };
    let e2e = |lead: &[&str], label: &str| e2e_args(results, lead, label);
    vec![
        perf(
            "engine",
            strings(&["engine", "--quick", "--results", results]),
        ),
        perf(
            "e2e-async",
            e2e(&["--durability", "async"], &format!("e2e-async-{E2E_RATE}")),
        ),
        perf(
            "e2e-fsync",
            e2e(&["--durability", "fsync"], &format!("e2e-fsync-{E2E_RATE}")),
        ),
        perf(
            "cluster",
            e2e(
                &["--cluster", "3", "--compare-single"],
                "e2e-cluster3-vs-single",
            ),
        ),
        perf(
            "failover",
            strings(&[
                "failover",
                "--trials",
                &FAILOVER_TRIALS.to_string(),
                "--results",
                results,
            ]),
        ),
        perf(
            "lobster",
            strings(&[
                "lobster",
                "--runs",
                &LOBSTER_RUNS.to_string(),
                "--out",
                results,
            ]),
        ),
        Planned {
            name: "peers",
            program: "target/release/keel-peers".to_string(),
            path: Some(bin_dir.join("keel-peers")),
            args: strings(&[
                "--commands",
                &PEERS_COMMANDS.to_string(),
                "--runs",
                &PEERS_RUNS.to_string(),
                "--out",
                results,
            ]),
        },
        Planned {
            name: "callgrind",
            program: "valgrind".to_string(),
            path: None,
            args: strings(&[
                "--tool=callgrind",
                "--toggle-collect=*replay_measured*",
                &format!("--callgrind-out-file={results}/callgrind.out"),
                "target/release/keel-callgrind-replay",
                "--commands",
                &CALLGRIND_COMMANDS.to_string(),
                "--seed",
                "1",
            ]),
        },
    ]
}

/// Every step name, in order.
pub const STEP_NAMES: [&str; 8] = [
    "engine",
    "e2e-async",
    "e2e-fsync",
    "cluster",
    "failover",
    "lobster",
    "peers",
    "callgrind",
];

/// Runs `keel-perf report`.
pub fn main(args: &ReportArgs) -> anyhow::Result<()> {
    for name in &args.skip {
        if !STEP_NAMES.contains(&name.as_str()) {
            bail!(
                "--skip {name}: unknown step (known: {})",
                STEP_NAMES.join(", ")
            );
        }
    }
    let root = workspace_root();
    let results_rel = args
        .results
        .clone()
        .unwrap_or_else(|| PathBuf::from("perf/results/suite"));
    let results = root.join(&results_rel);
    let out = args
        .out
        .clone()
        .map_or_else(|| root.join("BENCHMARKS.md"), |p| absolute(&p));
    let notes = args
        .notes
        .clone()
        .map_or_else(|| root.join("perf/notes.md"), |p| absolute(&p));
    let plots = args
        .plots
        .clone()
        .map_or_else(|| root.join("perf/plots"), |p| absolute(&p));
    let manifest = if args.render_only {
        let path = results.join("suite.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("--render-only: cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
    } else {
        let manifest = measure(args, &root, &results, &results_rel)?;
        std::fs::write(
            results.join("suite.json"),
            serde_json::to_string_pretty(&manifest)?,
        )?;
        manifest
    };
    let inputs = markdown::Inputs::load(&manifest, &results, &results_rel, &notes)?;
    std::fs::create_dir_all(&plots)
        .with_context(|| format!("cannot create {}", plots.display()))?;
    let plot_files = crate::plots::draw_all(&inputs, &plots)?;
    let plots_rel: Vec<(String, String)> = plot_files
        .iter()
        .map(|(title, path)| {
            (
                title.clone(),
                relative_to(path, out.parent().unwrap_or(&root)),
            )
        })
        .collect();
    let text = markdown::render(&inputs, &plots_rel);
    std::fs::write(&out, text).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!(
        "keel-perf report: wrote {} ({} plots in {}); suite took {:.0} s",
        out.display(),
        plot_files.len(),
        plots.display(),
        manifest.duration_s
    );
    Ok(())
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    }
}

/// `path` relative to `base` when it lies under it, else absolute (as a string).
fn relative_to(path: &Path, base: &Path) -> String {
    let base = base.canonicalize().unwrap_or_else(|_| base.to_path_buf());
    let full = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    full.strip_prefix(&base)
        .map_or_else(|_| full.display().to_string(), |p| p.display().to_string())
}

/// Runs every step not skipped and returns the manifest.
fn measure(
    args: &ReportArgs,
    root: &Path,
    results: &Path,
    results_rel: &Path,
) -> anyhow::Result<Manifest> {
    let started = Instant::now();
    let machine = Machine::detect();
    eprintln!("keel-perf report: {}", machine.line());
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let bin_dir = exe
        .parent()
        .map(Path::to_path_buf)
        .context("this executable has no folder")?;
    std::fs::create_dir_all(results.join("logs"))
        .with_context(|| format!("cannot create {}", results.display()))?;
    let results_arg = results_rel.display().to_string();
    let steps = plan(&results_arg, &bin_dir);
    let load_before = crate::sys::load_average()[0];
    let mut records = Vec::new();
    let bar = progress(steps.len() as u64);
    for step in &steps {
        bar.set_message(step.name);
        let record = run_planned(step, args, root, &bin_dir, &results_arg);
        bar.suspend(|| {
            eprintln!(
                "keel-perf report: {} {} in {:.0} s{}",
                record.name,
                record.status,
                record.duration_s,
                record
                    .reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            )
        });
        records.push(record);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(Manifest {
        machine: MachineInfo::from(&machine),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        binaries: bin_dir.display().to_string(),
        duration_s: started.elapsed().as_secs_f64(),
        load_before,
        load_after: crate::sys::load_average()[0],
        steps: records,
    })
}

/// Runs one step (unless `--skip` names it), its output into its log; what happened.
fn run_planned(
    step: &Planned,
    args: &ReportArgs,
    root: &Path,
    bin_dir: &Path,
    results_arg: &str,
) -> StepRecord {
    let log_rel = format!("{}/logs/{}.log", results_arg, step.name);
    let command = step.command_line();
    let step_started = Instant::now();
    let outcome = if args.skip.iter().any(|s| s == step.name) {
        Err("skipped (--skip)".to_string())
    } else {
        run_step(
            step,
            root,
            bin_dir,
            &root.join(&log_rel),
            args.step_timeout_s,
        )
    };
    StepRecord {
        name: step.name.to_string(),
        command,
        status: if outcome.is_ok() {
            "ok"
        } else {
            "not measured"
        }
        .to_string(),
        reason: outcome.err(),
        duration_s: step_started.elapsed().as_secs_f64(),
        log: log_rel,
    }
}

fn progress(len: u64) -> ProgressBar {
    report::progress_bar(
        len,
        "report [{bar:20}] {pos}/{len} steps, {elapsed} elapsed; running {msg}",
        Some(Duration::from_millis(500)),
    )
}

/// Runs one step from the workspace root, its output into `log`; `Err(reason)` when it
/// could not run, failed or timed out.
fn run_step(
    step: &Planned,
    root: &Path,
    bin_dir: &Path,
    log: &Path,
    timeout_s: u64,
) -> Result<(), String> {
    let (program, args) = resolve(step, bin_dir)?;
    let file = File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let err_file = file
        .try_clone()
        .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
    let mut child = match Command::new(&program)
        .args(&args)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err_file)
        // Its own process group, so a timed-out step can be stopped with everything it
        // started (e.g. `keel serve` nodes) and nothing else.
        .process_group(0)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => return Err(format!("cannot start {}: {e}", program.display())),
    };
    wait_for(&mut child, log, timeout_s)
}

/// The program to start and its arguments, sibling binaries named by their usual place
/// pointed at the real ones; `Err(reason)` if one is not built.
fn resolve(step: &Planned, bin_dir: &Path) -> Result<(PathBuf, Vec<String>), String> {
    let program = match &step.path {
        Some(path) if !path.is_file() => {
            return Err(format!(
                "{} is not built (run `cargo build --release --workspace`)",
                path.display()
            ))
        }
        Some(path) => path.clone(),
        None => PathBuf::from(&step.program),
    };
    // Arguments naming a sibling binary by its usual place are pointed at the real one.
    let args: Vec<String> = step
        .args
        .iter()
        .map(|a| match a.strip_prefix("target/release/") {
            Some(name) => {
                let real = bin_dir.join(name);
                real.display().to_string()
            }
            None => a.clone(),
        })
        .collect();
    for arg in &args {
        let path = Path::new(arg);
        if path.is_absolute() && path.starts_with(bin_dir) && !path.is_file() {
            return Err(format!(
                "{arg} is not built (run `cargo build --release --workspace`)"
            ));
        }
    }
    Ok((program, args))
}

/// Waits for the step to end; stops its process group after `timeout_s`.
fn wait_for(child: &mut std::process::Child, log: &Path, timeout_s: u64) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(timeout_s);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                return Err(format!(
                    "{status}; last line of its output: {}",
                    last_line(log)
                ))
            }
            Ok(None) if Instant::now() >= deadline => {
                stop_group(child);
                return Err(format!(
                    "still running after {timeout_s} s (--step-timeout-s); stopped"
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("waiting for it: {e}")),
        }
    }
}

/// SIGTERM to the child's process group, SIGKILL after 10 s.
fn stop_group(child: &mut std::process::Child) {
    let Ok(pgid) = i32::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill(2) with a negative pid signals that process group only; the group is the
    // one this process created for the child.
    unsafe {
        libc::kill(-pgid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: as above.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
    let _ = child.wait();
}

fn last_line(log: &Path) -> String {
    std::fs::read_to_string(log)
        .ok()
        .and_then(|text| {
            text.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(|l| l.trim().chars().take(300).collect())
        })
        .unwrap_or_else(|| "(none)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_to_end_steps_run_the_published_commands() {
        let steps = plan("perf/results/suite", Path::new("/bin"));
        let command = |name: &str| {
            let step = steps.iter().find(|step| step.name == name).unwrap();
            format!("{} {}", step.program, step.args.join(" "))
        };
        let tail = "--rate 20000 --duration 5 --warmup 1 --runs 3 --results perf/results/suite";
        assert_eq!(
            command("e2e-async"),
            format!(
                "target/release/keel-perf e2e --durability async {tail} --label e2e-async-20000"
            )
        );
        assert_eq!(
            command("e2e-fsync"),
            format!(
                "target/release/keel-perf e2e --durability fsync {tail} --label e2e-fsync-20000"
            )
        );
        assert_eq!(
            command("cluster"),
            format!(
                "target/release/keel-perf e2e --cluster 3 --compare-single {tail} --label e2e-cluster3-vs-single"
            )
        );
    }
}
