//! The drill's result: what each fault did, the outage table per fault kind, the checks,
//! the timeline (per second), as Markdown and JSON, plus the timeline plot.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::check::Check;
use super::client::History;
use super::nemesis::{Fault, Goal};
use super::proxy::LinkStats;
use super::{DrillArgs, Timings};
use crate::e2e;
use crate::report::{self, header_lines, median, Machine};

/// An outage above this counts in the table's "over 1 s" column.
const OUTAGE_LONG_MS: f64 = 1_000.0;

/// One fault as carried out.
#[derive(Clone, Debug, Serialize)]
pub struct FaultRecord {
    /// 1-based number in the schedule.
    pub number: usize,
    /// The fault.
    pub fault: Fault,
    /// In words.
    pub label: String,
    /// The leader (as the clients saw it) when the fault started.
    pub leader_node: usize,
    /// The node the fault hit (for a split, the minority's first node).
    pub target_node: usize,
    /// Directed links blocked (node ids).
    pub links: Vec<(usize, usize)>,
    /// Hold, ms.
    pub hold_ms: f64,
    /// Fault start, ms after the clients started.
    pub start_ms: f64,
    /// Heal, ms after the start of the clients.
    pub heal_ms: f64,
    /// When an order sent after the heal had been accepted, ms.
    pub recovered_ms: Option<f64>,
    /// The leader once recovered.
    pub leader_after_node: Option<usize>,
    /// Link changes of a flapping fault.
    pub flaps: usize,
    /// A disk fault: when the drill saw the node exit (polled every 2 ms), ms.
    pub failed_ms: Option<f64>,
    /// A disk fault: the node's exit status and last log line.
    pub exit: Option<String>,
    /// A failed sync: what `keel serve` (refusing), `keel journal sync-failure` and
    /// `keel journal clear-sync-failure` said.
    pub operator: Vec<String>,
    /// After the recovery, when every node's journal held what the leader's held once
    /// the cluster had recovered, ms after the heal.
    pub caught_up_ms: Option<f64>,
    /// **Outage**: fault → the first Order Accepted of an order sent after it, ms. A disk
    /// fault has no such moment (a full disk is harmless until the node needs a block, and a
    /// leader may lose its lease to the stalled disk before it exits): its outage is the
    /// larger of the node's exit → the first Order Accepted of an order sent after it, and
    /// the longest gap between Order Accepted arrivals (any client) from the fault's start
    /// to the recovery.
    pub outage_ms: Option<f64>,
    /// A disk fault, the two parts of its outage: the node's exit → the first Order
    /// Accepted of an order sent after it, ms.
    pub exit_outage_ms: Option<f64>,
    /// A disk fault: the longest gap between Order Accepted arrivals from the fault's start
    /// to the recovery, and where it began (ms after the fault's start).
    pub longest_gap: Option<Gap>,
    /// A slow disk: how many writes, syncs, flushes and allocations of the node's image
    /// waited for the delay while the fault held.
    pub delayed_ops: Option<u64>,
    /// Nodes that exited on their own during the fault or its recovery (crashes).
    pub node_exits: Vec<String>,
    /// What went wrong carrying it out, if anything.
    pub error: Option<String>,
}

impl FaultRecord {
    /// A fault not yet carried out.
    pub fn new(number: usize, fault: Fault) -> FaultRecord {
        FaultRecord {
            number,
            fault,
            label: fault.to_string(),
            leader_node: 0,
            target_node: 0,
            links: Vec::new(),
            hold_ms: 0.0,
            start_ms: 0.0,
            heal_ms: 0.0,
            recovered_ms: None,
            leader_after_node: None,
            flaps: 0,
            failed_ms: None,
            exit: None,
            operator: Vec::new(),
            caught_up_ms: None,
            outage_ms: None,
            exit_outage_ms: None,
            longest_gap: None,
            delayed_ops: None,
            node_exits: Vec::new(),
            error: None,
        }
    }

    /// When the fault took effect, ms: its start, or for a disk fault the node's exit.
    pub fn effective_ms(&self) -> f64 {
        match self.failed_ms {
            Some(failed) if self.fault.kind.is_disk() => failed,
            _ => self.start_ms,
        }
    }

    /// One line for the terminal.
    pub fn one_line(&self) -> String {
        format!(
            "fault {}: {} (node{}, leader node{}) at {:.0} ms{}, held {:.0} ms, recovered {} ms after the heal, leader now {}, caught up {} ms after the heal{}",
            self.number,
            self.label,
            self.target_node,
            self.leader_node,
            self.start_ms,
            self.failed_ms.map_or(String::new(), |f| format!(
                ", node exited {:.0} ms later",
                f - self.start_ms
            )),
            self.hold_ms,
            self.recovered_ms
                .map_or("–".to_string(), |r| format!("{:.0}", r - self.heal_ms)),
            self.leader_after_node
                .map_or("?".to_string(), |n| format!("node{n}")),
            ms(self.caught_up_ms),
            self.error
                .as_ref()
                .map_or(String::new(), |e| format!("; ERROR: {e}"))
        )
    }
}

/// One row of the outage table.
#[derive(Clone, Debug, Serialize)]
pub struct OutageRow {
    /// The fault, in words.
    pub fault: String,
    /// The goal it is held to.
    pub goal: Goal,
    /// Faults of this kind.
    pub count: usize,
    /// Of which without any acknowledged order sent after the fault.
    pub unrecovered: usize,
    /// Median outage, ms.
    pub outage_ms_p50: f64,
    /// Largest outage, ms (infinite if one never recovered).
    pub outage_ms_max: f64,
    /// Outages above 1 s.
    pub over_1s: usize,
    /// Whether the goal is met (`None`: no goal).
    pub goal_met: Option<bool>,
}

/// One second of the timeline.
#[derive(Clone, Debug, Serialize)]
pub struct Second {
    /// Seconds after the clients started.
    pub second: u64,
    /// Orders accepted in this second.
    pub accepted: u64,
    /// p99 of order → Accepted of those, ms (NaN when none).
    pub latency_ms_p99: f64,
}

/// The output file.
#[derive(Clone, Debug, Serialize)]
pub struct DrillReport {
    /// `drill`.
    pub kind: String,
    /// The command line.
    pub command: String,
    /// Machine, commit, date.
    pub machine: Machine,
    /// Options.
    pub args: DrillArgs,
    /// The seed (also in `args`): rerun with `--seed` and the same `--faults`.
    pub seed: u64,
    /// Timings used.
    pub timings: Timings,
    /// The `keel` binary.
    pub keel_binary: Option<String>,
    /// Every fault.
    pub faults: Vec<FaultRecord>,
    /// The outage table.
    pub outages: Vec<OutageRow>,
    /// The checks.
    pub checks: Vec<Check>,
    /// Problems outside the checks (convergence, clean stop, replay).
    pub problems: Vec<String>,
    /// Every replica's `keel journal roots` line.
    pub roots: Vec<String>,
    /// Records replayed per replica.
    pub records: Vec<u64>,
    /// Per-client figures (orders, resends, connection events).
    pub clients: Vec<ClientSummary>,
    /// Per second: accepted orders and p99 latency.
    pub timeline: Vec<Second>,
    /// Bytes forwarded per peer link.
    pub links: Vec<LinkStats>,
    /// Length of the run, ms.
    pub duration_ms: f64,
    /// Why the run stopped early.
    pub aborted: Option<String>,
    /// How this run was set up where it matters (disks, the fault-injection build) and
    /// fault kinds skipped here, with why.
    pub notes: Vec<String>,
    /// What the drill does not do yet.
    pub todo: Vec<String>,
    /// The histories (not written out).
    #[serde(skip)]
    pub histories: Vec<History>,
}

/// A client's figures.
#[derive(Clone, Debug, Serialize)]
pub struct ClientSummary {
    /// User.
    pub user: String,
    /// Orders sent (first sends).
    pub orders: usize,
    /// Orders accepted.
    pub accepted: usize,
    /// Orders rejected.
    pub rejected: usize,
    /// Orders never answered.
    pub unanswered: usize,
    /// Resends after reconnects.
    pub resends: usize,
    /// Slots refused while disconnected.
    pub refused: usize,
    /// Messages received.
    pub received: usize,
    /// Disconnects and reconnects.
    pub connection_events: Vec<(f64, String)>,
    /// Why it stopped early.
    pub error: Option<String>,
}

impl DrillReport {
    /// An empty report for these options.
    pub fn new(args: &DrillArgs, machine: Machine, timings: Timings, keel: Option<String>) -> Self {
        DrillReport {
            kind: "drill".to_string(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            machine,
            args: args.clone(),
            seed: args.seed,
            timings,
            keel_binary: keel,
            faults: Vec::new(),
            outages: Vec::new(),
            checks: Vec::new(),
            problems: Vec::new(),
            roots: Vec::new(),
            records: Vec::new(),
            clients: Vec::new(),
            timeline: Vec::new(),
            links: Vec::new(),
            duration_ms: 0.0,
            aborted: None,
            notes: Vec::new(),
            todo: Vec::new(),
            histories: Vec::new(),
        }
    }

    /// The first failure, in words (`None`: the run passed). Outage goals are reported,
    /// not failures.
    pub fn first_failure(&self) -> Option<String> {
        if let Some(aborted) = &self.aborted {
            return Some(format!("stopped early: {aborted}"));
        }
        if let Some(problem) = self.problems.first() {
            return Some(problem.clone());
        }
        if let Some((fault, exit)) = self
            .faults
            .iter()
            .find_map(|f| f.node_exits.first().map(|e| (f, e)))
        {
            return Some(format!(
                "during fault {} ({}): {exit}",
                fault.number, fault.label
            ));
        }
        if self.checks.is_empty() {
            return Some("no check ran".to_string());
        }
        self.checks.iter().find(|c| !c.ok).map(|c| {
            format!(
                "check failed: {} ({} violations); first: {}",
                c.name,
                c.violations,
                c.evidence.first().cloned().unwrap_or_default()
            )
        })
    }
}

/// Fault start → the first Order Accepted (any client) of an order first sent after it.
fn outage_ms(start_ms: f64, histories: &[History]) -> Option<f64> {
    histories
        .iter()
        .flat_map(|h| h.orders.iter())
        .filter(|o| o.sent_ms >= start_ms)
        .filter_map(|o| o.accepted_ms)
        .map(|a| a - start_ms)
        .min_by(f64::total_cmp)
}

/// A pause of the acknowledgements.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Gap {
    /// Its length, ms.
    pub length_ms: f64,
    /// When it began, ms after the fault's start.
    pub after_start_ms: f64,
}

/// The longest time between Order Accepted arrivals (any client) from `from_ms` to
/// `to_ms` (counting from `from_ms`).
fn longest_gap(from_ms: f64, to_ms: f64, histories: &[History]) -> Gap {
    let mut times: Vec<f64> = histories
        .iter()
        .flat_map(|h| h.orders.iter())
        .filter_map(|o| o.accepted_ms)
        .filter(|a| *a >= from_ms && *a <= to_ms)
        .collect();
    times.sort_by(f64::total_cmp);
    let mut last = from_ms;
    let mut longest = Gap {
        length_ms: 0.0,
        after_start_ms: 0.0,
    };
    for at in times {
        if at - last > longest.length_ms {
            longest = Gap {
                length_ms: at - last,
                after_start_ms: last - from_ms,
            };
        }
        last = at;
    }
    longest
}

/// Fills the outages, the outage table, the timeline and the client figures.
pub fn analyse(report: &mut DrillReport) {
    for fault in &mut report.faults {
        let after_effect = outage_ms(fault.effective_ms(), &report.histories);
        fault.outage_ms = match (fault.fault.kind.is_disk(), fault.recovered_ms) {
            (true, Some(recovered)) => {
                let gap = longest_gap(fault.start_ms, recovered, &report.histories);
                fault.exit_outage_ms = after_effect;
                fault.longest_gap = Some(gap);
                after_effect.map(|o| o.max(gap.length_ms))
            }
            _ => after_effect,
        };
    }
    report.outages = outage_table(&report.faults);
    report.timeline = timeline(&report.histories);
    report.clients = report.histories.iter().map(summary).collect();
}

fn summary(h: &History) -> ClientSummary {
    ClientSummary {
        user: h.user.clone(),
        orders: h.orders.len(),
        accepted: h.orders.iter().filter(|o| o.accepted_ms.is_some()).count(),
        rejected: h.orders.iter().filter(|o| o.rejected).count(),
        unanswered: h.orders.iter().filter(|o| o.answered_ms.is_none()).count(),
        resends: h.resends,
        refused: h.refused,
        received: h.received.len(),
        connection_events: h.connection_events.clone(),
        error: h.error.clone(),
    }
}

fn outage_table(faults: &[FaultRecord]) -> Vec<OutageRow> {
    let mut groups: BTreeMap<Fault, Vec<&FaultRecord>> = BTreeMap::new();
    for fault in faults {
        groups.entry(fault.fault).or_default().push(fault);
    }
    groups
        .into_iter()
        .map(|(fault, records)| {
            let mut outages: Vec<f64> = records.iter().filter_map(|r| r.outage_ms).collect();
            outages.sort_by(f64::total_cmp);
            let unrecovered = records.len() - outages.len();
            let max = if unrecovered > 0 {
                f64::INFINITY
            } else {
                outages.last().copied().unwrap_or(f64::NAN)
            };
            let p50 = median(&outages);
            let goal = fault.goal();
            OutageRow {
                fault: fault.to_string(),
                goal,
                count: records.len(),
                unrecovered,
                outage_ms_p50: p50,
                outage_ms_max: max,
                over_1s: outages.iter().filter(|o| **o > OUTAGE_LONG_MS).count() + unrecovered,
                goal_met: match goal {
                    Goal::Leader => Some(p50 <= 500.0 && max <= 1_000.0),
                    Goal::Follower => Some(max <= 100.0),
                    Goal::None => None,
                },
            }
        })
        .collect()
}

fn timeline(histories: &[History]) -> Vec<Second> {
    let mut seconds: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for order in histories.iter().flat_map(|h| h.orders.iter()) {
        if let Some(accepted) = order.accepted_ms {
            seconds
                .entry((accepted / 1e3) as u64)
                .or_default()
                .push(accepted - order.sent_ms);
        }
    }
    let last = seconds.keys().next_back().copied().unwrap_or(0);
    (0..=last)
        .map(|second| {
            let mut latencies = seconds.remove(&second).unwrap_or_default();
            latencies.sort_by(f64::total_cmp);
            let p99 = if latencies.is_empty() {
                f64::NAN
            } else {
                latencies[((latencies.len() as f64 * 0.99).ceil() as usize)
                    .clamp(1, latencies.len())
                    - 1]
            };
            Second {
                second,
                accepted: latencies.len() as u64,
                latency_ms_p99: p99,
            }
        })
        .collect()
}

fn ms(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v:.0}"),
        Some(v) if v.is_infinite() => "∞".to_string(),
        _ => "–".to_string(),
    }
}

/// The outage table (Markdown), also for BENCHMARKS.md.
pub fn outage_markdown(report: &DrillReport) -> String {
    let mut out = String::from(
        "| fault | count | outage p50 (ms) | outage max (ms) | over 1 s | goal | met |\n|---|---|---|---|---|---|---|\n",
    );
    for row in &report.outages {
        let goal = match row.goal {
            Goal::Leader => "p50 ≤ 500, max ≤ 1,000",
            Goal::Follower => "max ≤ 100",
            Goal::None => "–",
        };
        let met = match row.goal_met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {goal} | {met} |",
            row.fault,
            row.count,
            ms(Some(row.outage_ms_p50)),
            ms(Some(row.outage_ms_max)),
            row.over_1s
        );
    }
    out
}

/// The whole Markdown summary.
pub fn markdown(report: &DrillReport, plot: Option<&str>) -> String {
    let mut out = String::from("# keel-perf drill\n\n");
    header_lines(
        &mut out,
        &report.machine,
        &report.command,
        report.keel_binary.as_deref(),
    );
    let a = &report.args;
    let t = &report.timings;
    let _ = writeln!(
        out,
        "- **seed {}** (rerun: `keel-perf drill --seed {} --faults {}{}`)\n- cluster: {} `keel serve` nodes, durability {}, every peer link through the drill's fault-injecting proxy\n- clients: {} sessions through the client library, {} orders/s in all, open loop; unanswered orders are resent with their own token after a reconnect\n- faults held {}–{} ms, then healed; {} ms of calm after each recovery\n- **outage** = fault start → the first Order Accepted (any client) of an order sent after the fault; for `full-disk` and `sync-fail` (no such moment: a full disk is harmless until the node needs a block, a leader may lose its lease to the stalled disk before it exits) the larger of the node's exit (status 74) → that first Order Accepted, and the longest gap between Order Accepted arrivals from the fault's start to the recovery\n",
        report.seed,
        report.seed,
        a.faults,
        if a.quick { " --quick" } else { "" },
        a.nodes,
        format!("{:?}", a.durability).to_lowercase(),
        a.clients,
        a.rate,
        t.hold_min_ms,
        t.hold_max_ms,
        t.quiet_ms
    );
    for note in &report.notes {
        let _ = writeln!(out, "- note: {note}");
    }
    if !report.notes.is_empty() {
        out.push('\n');
    }
    match report.first_failure() {
        None => out.push_str("**Result: every check passed.**\n\n"),
        Some(failure) => {
            let _ = writeln!(out, "**Result: FAILED** — {}\n", failure.replace('|', "/"));
        }
    }
    out.push_str("## Outage per fault kind\n\n");
    out.push_str(&outage_markdown(report));
    if let Some(plot) = plot {
        let _ = writeln!(out, "\n![timeline]({plot})\n");
    }
    checks_section(&mut out, report);
    faults_section(&mut out, report);
    if !report.todo.is_empty() {
        out.push_str("\n## Not done yet\n\n");
        for todo in &report.todo {
            let _ = writeln!(out, "- TODO: {todo}");
        }
    }
    out
}

fn checks_section(out: &mut String, report: &DrillReport) {
    out.push_str("\n## Checks\n\n| check | cases | violations | result |\n|---|---|---|---|\n");
    for c in &report.checks {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            c.name,
            c.cases,
            c.violations,
            if c.ok { "ok" } else { "**FAILED**" }
        );
    }
    for c in report.checks.iter().filter(|c| !c.ok) {
        let _ = writeln!(out, "\nEvidence, {}:\n", c.name);
        for line in &c.evidence {
            let _ = writeln!(out, "- {line}");
        }
    }
    for problem in &report.problems {
        let _ = writeln!(out, "\n**Problem:** {problem}");
    }
    let _ = writeln!(
        out,
        "\nReplicas' `keel journal roots`: {}\n",
        report
            .roots
            .iter()
            .map(|r| format!("`{r}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for c in &report.clients {
        let _ = writeln!(
            out,
            "- {}: {} orders, {} accepted, {} rejected, {} never answered, {} resent, {} slots refused while disconnected, {} messages, {} connection events{}",
            c.user,
            c.orders,
            c.accepted,
            c.rejected,
            c.unanswered,
            c.resends,
            c.refused,
            c.received,
            c.connection_events.len(),
            c.error.as_ref().map_or(String::new(), |e| format!("; stopped: {e}"))
        );
    }
}

fn faults_section(out: &mut String, report: &DrillReport) {
    out.push_str("\n## Faults\n\n| # | fault | node | leader before | at (ms) | node exited after (ms) | held (ms) | outage (ms) | recovered after heal (ms) | caught up after heal (ms) | leader after | note |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for f in &report.faults {
        let _ = writeln!(
            out,
            "| {} | {} | node{} | node{} | {:.0} | {} | {:.0} | {} | {} | {} | {} | {} |",
            f.number,
            f.label,
            f.target_node,
            f.leader_node,
            f.start_ms,
            ms(f.failed_ms.map(|x| x - f.start_ms)),
            f.hold_ms,
            ms(f.outage_ms),
            ms(f.recovered_ms.map(|r| r - f.heal_ms)),
            ms(f.caught_up_ms),
            f.leader_after_node
                .map_or("?".to_string(), |n| format!("node{n}")),
            f.error
                .iter()
                .chain(&disk_parts(f))
                .chain(&slow_part(f, report.args.slow_disk_ms))
                .chain(&f.exit)
                .chain(&f.operator)
                .chain(&f.node_exits)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
                .replace('|', "/")
        );
    }
    if let Some(aborted) = &report.aborted {
        let _ = writeln!(out, "\n**Stopped early:** {aborted}");
    }
}

/// A disk fault's outage in its parts, for the note column.
fn disk_parts(f: &FaultRecord) -> Option<String> {
    let gap = f.longest_gap?;
    Some(format!(
        "exit → accepted {} ms, longest gap {:.0} ms from {:.0} ms after the start",
        ms(f.exit_outage_ms),
        gap.length_ms,
        gap.after_start_ms
    ))
}

/// A slow disk's delayed operations, for the note column.
fn slow_part(f: &FaultRecord, delay_ms: u64) -> Option<String> {
    f.delayed_ops.map(|ops| {
        format!("{ops} writes/syncs of the node's disk image delayed {delay_ms} ms each")
    })
}

/// Analyses, draws the plot, writes the JSON and Markdown, and prints the summary.
pub fn publish(args: &DrillArgs, report: &mut DrillReport) -> anyhow::Result<()> {
    analyse(report);
    let dir = args.results.clone().unwrap_or_else(e2e::default_results);
    std::fs::create_dir_all(&dir)?;
    let plot_name = format!("{}-timeline.svg", args.label);
    let plot = match super::plot::timeline(&dir.join(&plot_name), report) {
        Ok(true) => Some(plot_name.as_str()),
        Ok(false) => None,
        Err(error) => {
            eprintln!("keel-perf drill: no plot: {error:#}");
            None
        }
    };
    let markdown = markdown(report, plot);
    report::publish(
        "drill",
        &dir,
        &args.label,
        report,
        &report.machine,
        &markdown,
    )
}
