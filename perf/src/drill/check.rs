//! The checks at the end, like Jepsen's set-full and Kafka checkers, on every replica's
//! journal read offline once every node has stopped cleanly.
//!
//! A user's sequenced message stream is a pure function of the journal: the node rebuilds
//! it at every start by replaying the journal into its session book. The drill does the
//! same, in process, with the node's own code (`keel_node::startup::apply_record` into a
//! `keel_node::sessions::SessionBook` built from the node's configuration file), for every
//! replica, and then checks:
//!
//! - **acknowledged orders**: every order a client saw accepted is accepted exactly once in
//!   that user's final stream, on every replica;
//! - **received messages**: every message a client received is byte-identical to the
//!   message at its sequence number in the final stream, on every replica;
//! - **no token twice**: no token is accepted twice, and no token has more shares executed
//!   than it was accepted for, on any replica;
//! - **replicas agree**: every replica's streams are identical, and `keel journal roots`
//!   (journal and state roots) is the same line for every replica;
//! - **clients**: no client saw a sequence gap on resume, or gave up.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use keel_engine::{Engine, Event};
use keel_journal::envelope::Envelope;
use keel_node::config::Config;
use keel_node::sessions::SessionBook;
use keel_node::startup::{apply_record, RecordSink, Replayed};
use keel_protocol::ouch::OutboundMessage;
use serde::Serialize;

use super::client::History;

/// Evidence lines kept per check (the first ones; the count says how many there were).
const EVIDENCE_MAX: usize = 10;

/// One check's outcome.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it held.
    pub ok: bool,
    /// Cases looked at.
    pub cases: u64,
    /// Violations found.
    pub violations: u64,
    /// The first violations, in words.
    pub evidence: Vec<String>,
}

impl Check {
    fn new(name: &str) -> Check {
        Check {
            name: name.to_string(),
            ok: true,
            ..Check::default()
        }
    }

    fn case(&mut self, ok: bool, evidence: impl FnOnce() -> String) {
        self.cases += 1;
        if !ok {
            self.ok = false;
            self.violations += 1;
            if self.evidence.len() < EVIDENCE_MAX {
                self.evidence.push(evidence());
            }
        }
    }
}

/// One replica's user streams, rebuilt from its journal: user name → messages (index =
/// sequence number − 1).
pub struct Replica {
    /// Node id.
    pub node: usize,
    /// Messages per user.
    pub streams: BTreeMap<String, Vec<Vec<u8>>>,
    /// Records replayed.
    pub records: u64,
}

struct Sink<'a>(&'a mut SessionBook);

impl RecordSink for Sink<'_> {
    fn record(&mut self, seq: u64, envelope: &Envelope, events: &[Event]) {
        self.0.replay(seq, envelope, events);
    }
}

/// Replays the journal in `data_dir` (a stopped node's) with the node's configuration
/// `config`, and returns the streams of `users`.
pub fn replay_replica(
    node: usize,
    config: &Path,
    data_dir: &Path,
    users: &[String],
) -> anyhow::Result<Replica> {
    let config = Config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut book = SessionBook::new(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (mut reader, scan) = keel_journal::offline_reader(data_dir, 1)
        .with_context(|| format!("cannot read the journal in {}", data_dir.display()))?;
    let mut engine = Engine::default();
    let mut replayed = Replayed::default();
    let mut events = Vec::new();
    if scan.records > 0 {
        anyhow::ensure!(
            reader.next_seq() == 1,
            "node{node}'s journal does not start at record 1"
        );
        while let Some(record) = reader.next()? {
            apply_record(
                &mut engine,
                &mut Sink(&mut book),
                &mut replayed,
                &mut events,
                (record.seq, record.record_type, record.payload),
            )
            .map_err(|e| anyhow::anyhow!("node{node}, record {}: {e}", record.seq))?;
        }
    }
    let mut streams = BTreeMap::new();
    for user in users {
        let index = book
            .user_index(user)
            .with_context(|| format!("no user {user} in node{node}'s configuration"))?;
        let stream = &book.user(index).stream;
        let messages = (0..stream.len())
            .map(|i| stream.message(i).to_vec())
            .collect();
        streams.insert(user.clone(), messages);
    }
    Ok(Replica {
        node,
        streams,
        records: replayed.last_seq,
    })
}

/// Every check over the clients' histories, the replicas' streams and their roots lines.
pub fn run_checks(histories: &[History], replicas: &[Replica], roots: &[String]) -> Vec<Check> {
    let mut checks = vec![
        acknowledged_once(histories, replicas),
        received_identical(histories, replicas),
        no_token_twice(histories, replicas),
        replicas_agree(replicas, roots),
        clients_clean(histories),
    ];
    for check in &mut checks {
        check.ok = check.violations == 0;
    }
    checks
}

fn token_of(bytes: &[u8]) -> Option<(char, String, u32)> {
    match OutboundMessage::decode(bytes).ok()? {
        OutboundMessage::OrderAccepted(m) => {
            Some(('A', m.order_token.as_str().trim().into(), m.shares))
        }
        OutboundMessage::OrderExecuted(m) => {
            Some(('E', m.order_token.as_str().trim().into(), m.executed_shares))
        }
        _ => None,
    }
}

/// Accepted counts per token in one stream.
fn accepted_counts(stream: &[Vec<u8>]) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    for message in stream {
        if let Some(('A', token, _)) = token_of(message) {
            *counts.entry(token).or_default() += 1;
        }
    }
    counts
}

fn acknowledged_once(histories: &[History], replicas: &[Replica]) -> Check {
    let mut check =
        Check::new("every acknowledged order is accepted exactly once on every replica");
    for replica in replicas {
        for history in histories {
            let stream = replica
                .streams
                .get(&history.user)
                .map_or(&[][..], Vec::as_slice);
            let counts = accepted_counts(stream);
            for order in history.orders.iter().filter(|o| o.accepted_ms.is_some()) {
                let count = counts.get(&order.token).copied().unwrap_or(0);
                check.case(count == 1, || {
                    format!(
                        "node{}: {} (user {}, acknowledged at {:.0} ms) accepted {count} times",
                        replica.node,
                        order.token,
                        history.user,
                        order.accepted_ms.unwrap_or(f64::NAN)
                    )
                });
            }
        }
    }
    check
}

fn received_identical(histories: &[History], replicas: &[Replica]) -> Check {
    let mut check = Check::new(
        "every message a client received is byte-identical at its sequence number on every replica",
    );
    for replica in replicas {
        for history in histories {
            let stream = replica
                .streams
                .get(&history.user)
                .map_or(&[][..], Vec::as_slice);
            for (seq, bytes) in &history.received {
                let index = usize::try_from(*seq).unwrap_or(usize::MAX).wrapping_sub(1);
                let there = stream.get(index);
                check.case(there == Some(bytes), || match there {
                    Some(other) => format!(
                        "node{}: user {} message #{seq}: received {}, the journal gives {}",
                        replica.node,
                        history.user,
                        describe(bytes),
                        describe(other)
                    ),
                    None => format!(
                        "node{}: user {} received message #{seq} ({}), the journal's stream has only {}",
                        replica.node,
                        history.user,
                        describe(bytes),
                        stream.len()
                    ),
                });
            }
        }
    }
    check
}

fn describe(bytes: &[u8]) -> String {
    match OutboundMessage::decode(bytes) {
        Ok(message) => keel_client::display::describe(&message),
        Err(_) => format!("{} undecodable bytes", bytes.len()),
    }
}

fn no_token_twice(histories: &[History], replicas: &[Replica]) -> Check {
    let mut check =
        Check::new("no token accepted twice or executed beyond its shares, on any replica");
    for replica in replicas {
        for history in histories {
            let stream = replica
                .streams
                .get(&history.user)
                .map_or(&[][..], Vec::as_slice);
            // token → (times accepted, shares accepted, shares executed)
            let mut tokens: BTreeMap<String, (u32, u64, u64)> = BTreeMap::new();
            for message in stream {
                match token_of(message) {
                    Some(('A', token, shares)) => {
                        let entry = tokens.entry(token).or_default();
                        entry.0 += 1;
                        entry.1 += u64::from(shares);
                    }
                    Some((_, token, shares)) => {
                        tokens.entry(token).or_default().2 += u64::from(shares)
                    }
                    None => {}
                }
            }
            for (token, (accepted, shares, executed)) in &tokens {
                let ok = *accepted <= 1 && executed <= shares;
                check.case(ok, || {
                    format!(
                        "node{}: user {} token {token}: accepted {accepted} times for {shares} shares, {executed} shares executed",
                        replica.node, history.user
                    )
                });
            }
        }
    }
    check
}

fn replicas_agree(replicas: &[Replica], roots: &[String]) -> Check {
    let mut check = Check::new("replicas hold identical streams and equal journal roots");
    if let Some(first) = replicas.first() {
        for replica in &replicas[1..] {
            check.case(replica.streams == first.streams, || {
                format!(
                    "node{}'s streams differ from node{}'s",
                    replica.node, first.node
                )
            });
        }
    }
    if let Some(first) = roots.first() {
        for (i, line) in roots.iter().enumerate().skip(1) {
            check.case(line.trim() == first.trim(), || {
                format!(
                    "node{} roots `{}` ≠ node1 roots `{}`",
                    i + 1,
                    line.trim(),
                    first.trim()
                )
            });
        }
    }
    check
}

fn clients_clean(histories: &[History]) -> Check {
    let mut check = Check::new("no client saw a sequence gap or gave up");
    for history in histories {
        check.case(history.sequence_gaps.is_empty(), || {
            format!(
                "user {}: sequence gaps: {}",
                history.user,
                history.sequence_gaps.join("; ")
            )
        });
        check.case(history.error.is_none(), || {
            format!(
                "user {}: {}",
                history.user,
                history.error.clone().unwrap_or_default()
            )
        });
    }
    check
}
