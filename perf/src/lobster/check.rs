//! Agreement checks: replays the converted commands through a Keel engine and compares
//! (a) the resting orders each aggressor filled with NASDAQ's type-4 rows and (b) Keel's top
//! levels with the orderbook file after every message. Every disagreement is classified.

use std::collections::BTreeMap;

use indicatif::ProgressBar;
use keel_engine::{Command, Engine, EngineConfig, Event, OrderId, Qty, Side};
use serde::{Deserialize, Serialize};

use super::convert::{ExpectedFill, Group, Origin, Replay, INSTRUMENT};
use super::parse::{BookRow, Level};

/// Examples kept per disagreement class.
const EXAMPLES_PER_CLASS: usize = 5;

/// Execution agreement (a).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ExecutionCheck {
    /// Type-4 rows whose resting order a type-1 row of the file entered.
    pub checkable: u64,
    /// Of those, rows for which Keel filled exactly the row's size against the same order,
    /// at the same place in the aggressor's fill sequence.
    pub matched: u64,
    /// `checkable - matched`.
    pub mismatched: u64,
    /// `matched / checkable`.
    #[serde(deserialize_with = "crate::json::f64")]
    pub match_share: f64,
    /// Mismatched rows by class.
    pub mismatch_classes: BTreeMap<String, u64>,
    /// Type-4 rows of orders predating the file that drew on a seed.
    pub seed_rows: u64,
    /// Of those, rows Keel filled against the same seed for the same size.
    pub seed_rows_matched: u64,
    /// Merged aggressors sent, and how many had more than one type-4 row.
    pub aggressors: u64,
    /// See `aggressors`.
    pub multi_row_aggressors: u64,
    /// First examples of each mismatch class.
    pub examples: BTreeMap<String, Vec<String>>,
}

/// Book agreement (b).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct BookCheck {
    /// Levels per side compared (the orderbook file's).
    pub levels: usize,
    /// Orderbook rows.
    pub rows: u64,
    /// Rows compared (all but those inside a merged aggressor).
    pub compared: u64,
    /// Rows inside a merged aggressor: Keel applies the aggressor at once, so it has no
    /// book between its fills.
    pub not_compared_inside_aggressor: u64,
    /// Compared rows where every level (price and size, both sides) is equal.
    pub equal: u64,
    /// `compared - equal`.
    pub differ: u64,
    /// `equal / compared`.
    #[serde(deserialize_with = "crate::json::f64")]
    pub equal_share: f64,
    /// The first compared row that differs, if any.
    pub first_differing_row: Option<usize>,
    /// Differing rows by class of their first difference (best level first, ask side first).
    pub differ_classes: BTreeMap<String, u64>,
    /// First examples of each class.
    pub examples: BTreeMap<String, Vec<String>>,
}

/// Everything the checks found.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckReport {
    /// (a) executions.
    pub executions: ExecutionCheck,
    /// (b) books.
    pub book: BookCheck,
    /// Type-1 orders that traded on entry in Keel (at NASDAQ a type-1 row never trades:
    /// it is the part of an order that rested), by what they hit.
    pub new_orders_traded_on_entry: BTreeMap<String, u64>,
    /// Engine events that say a command found nothing to act on, by kind.
    pub engine_refusals: BTreeMap<String, u64>,
}

fn add_example(examples: &mut BTreeMap<String, Vec<String>>, class: &str, text: String) {
    let list = examples.entry(class.to_string()).or_default();
    if list.len() < EXAMPLES_PER_CLASS {
        list.push(text);
    }
}

/// The checker's state.
struct Checker<'a> {
    replay: &'a Replay,
    engine: Engine,
    report: CheckReport,
}

/// A short description of an engine order for examples.
fn describe(replay: &Replay, id: OrderId) -> String {
    match id
        .checked_sub(1)
        .and_then(|i| replay.origins.get(i as usize))
    {
        Some(Origin::Seed) => format!("seed#{id}"),
        Some(Origin::Lobster { order_id, row }) => format!("{order_id} (row {row})"),
        Some(Origin::Aggressor { group }) => format!("aggressor of group {group}"),
        None => format!("#{id}"),
    }
}

impl Checker<'_> {
    fn origin(&self, id: OrderId) -> Option<Origin> {
        id.checked_sub(1)
            .and_then(|i| self.replay.origins.get(i as usize))
            .copied()
    }

    /// The class of a Keel maker that NASDAQ did not fill at this point of an aggressor
    /// whose first type-4 row is `first_row`: an in-file order the file mentions again from
    /// `first_row` on (this aggressor's own rows included) was still resting at NASDAQ.
    fn foreign_maker_class(&self, maker: OrderId, first_row: usize) -> &'static str {
        match self.origin(maker) {
            Some(Origin::Seed) => "keel_filled_seed_liquidity_first",
            Some(Origin::Lobster { order_id, .. }) => {
                match self.replay.last_mention.get(&order_id) {
                    Some(&last) if last >= first_row => "keel_filled_order_nasdaq_still_had",
                    _ => "keel_filled_order_nasdaq_had_removed_unseen",
                }
            }
            _ => "keel_filled_unexpected_order",
        }
    }

    fn apply(&mut self, command: &Command, events: &mut Vec<Event>) {
        events.clear();
        let aggressor_group = match command {
            Command::New(order) => match self.origin(order.order_id) {
                Some(Origin::Aggressor { group }) => Some(group),
                _ => None,
            },
            _ => None,
        };
        // Which expected makers rest in Keel before the aggressor: for diagnosis.
        let before: Vec<Option<Qty>> = aggressor_group
            .and_then(|g| self.replay.groups.get(g))
            .map(|g| {
                g.expected
                    .iter()
                    .map(|f| self.engine.order(f.maker).map(|o| o.qty))
                    .collect()
            })
            .unwrap_or_default();
        self.engine.process(command, events);
        for event in events.iter() {
            let refusal = match event {
                Event::Rejected { reason, .. } => Some(format!("rejected_{}", reason.as_str())),
                Event::CancelRejected { .. } => Some(
                    match command {
                        Command::Reduce { .. } => "reduce_of_order_not_resting",
                        _ => "cancel_of_order_not_resting",
                    }
                    .to_string(),
                ),
                _ => None,
            };
            if let Some(refusal) = refusal {
                *self.report.engine_refusals.entry(refusal).or_default() += 1;
            }
        }
        if let Command::New(order) = command {
            if let Some(Origin::Lobster { .. }) = self.origin(order.order_id) {
                for event in events.iter() {
                    if let Event::Trade { maker_order_id, .. } = event {
                        let class = match self.origin(*maker_order_id) {
                            Some(Origin::Seed) => "hit_seed",
                            _ => "hit_in_file_order",
                        };
                        *self
                            .report
                            .new_orders_traded_on_entry
                            .entry(class.to_string())
                            .or_default() += 1;
                    }
                }
            }
        }
        if let Some(group) = aggressor_group.and_then(|g| self.replay.groups.get(g)) {
            self.compare_fills(group, &before, events);
        }
    }

    /// (a): aligns Keel's fills with the group's rows by cumulative quantity.
    fn compare_fills(&mut self, group: &Group, before: &[Option<Qty>], events: &[Event]) {
        let pieces: Vec<(OrderId, Qty)> = events
            .iter()
            .filter_map(|e| match e {
                Event::Trade {
                    maker_order_id,
                    qty,
                    ..
                } => Some((*maker_order_id, *qty)),
                _ => None,
            })
            .collect();
        let checks = &mut self.report.executions;
        checks.aggressors += 1;
        if group.expected.len() > 1 {
            checks.multi_row_aggressors += 1;
        }
        let mut piece = 0usize;
        let mut piece_left = pieces.first().map_or(0, |p| p.1);
        for (index, fill) in group.expected.iter().enumerate() {
            let mut need = fill.qty;
            let mut foreign: Option<OrderId> = None;
            while need > 0 && piece < pieces.len() {
                let take = need.min(piece_left);
                if pieces[piece].0 != fill.maker && foreign.is_none() {
                    foreign = Some(pieces[piece].0);
                }
                need -= take;
                piece_left -= take;
                if piece_left == 0 {
                    piece += 1;
                    piece_left = pieces.get(piece).map_or(0, |p| p.1);
                }
            }
            let matched = need == 0 && foreign.is_none();
            if !fill.in_file {
                self.report.executions.seed_rows += 1;
                self.report.executions.seed_rows_matched += u64::from(matched);
                continue;
            }
            self.report.executions.checkable += 1;
            if matched {
                self.report.executions.matched += 1;
                continue;
            }
            self.report.executions.mismatched += 1;
            let open_before = before.get(index).copied().flatten();
            self.record_mismatch(group, fill, foreign, open_before, &pieces);
        }
    }

    /// Classifies a row Keel did not fill as NASDAQ did (`foreign`: the first other maker
    /// Keel filled instead; `open_before`: the maker's open quantity in Keel before the
    /// group), and keeps an example.
    fn record_mismatch(
        &mut self,
        group: &Group,
        fill: &ExpectedFill,
        foreign: Option<OrderId>,
        open_before: Option<Qty>,
        pieces: &[(OrderId, Qty)],
    ) {
        // The maker's own state comes first: if Keel no longer had (all of) it, the
        // other orders the aggressor met are a consequence, not a cause.
        let class = match (foreign, open_before) {
            (_, None) => "maker_not_resting_in_keel",
            (_, Some(open)) if open < fill.qty => "maker_smaller_in_keel",
            (Some(maker), Some(_)) => self.foreign_maker_class(maker, group.first_row),
            (None, Some(_)) => "aggressor_ran_out",
        };
        let text = format!(
            "row {}: NASDAQ filled {} for {}; Keel filled {} (maker open before: {:?}); group rows {}..={}",
            fill.row,
            describe(self.replay, fill.maker),
            fill.qty,
            pieces
                .iter()
                .map(|(m, q)| format!("{} x{q}", describe(self.replay, *m)))
                .collect::<Vec<_>>()
                .join(", "),
            open_before,
            group.first_row,
            group.last_row
        );
        let checks = &mut self.report.executions;
        *checks
            .mismatch_classes
            .entry(class.to_string())
            .or_default() += 1;
        add_example(&mut checks.examples, class, text);
    }

    /// Keel's best `levels` levels of one side in LOBSTER prices, and the orders of the
    /// first `levels` levels (for diagnosis).
    fn top(&self, side: Side, levels: usize) -> Vec<(Level, Vec<OrderId>)> {
        let mut out: Vec<(Level, Vec<OrderId>)> = Vec::with_capacity(levels);
        let Some(orders) = self.engine.resting_orders(INSTRUMENT, side) else {
            return out;
        };
        for order in orders {
            let price = order.price * self.replay.tick;
            let full = out.len() == levels;
            match out.last_mut() {
                Some((level, ids)) if level.price == price => {
                    level.size += order.qty;
                    ids.push(order.order_id);
                }
                _ if full => break,
                _ => out.push((
                    Level {
                        price,
                        size: order.qty,
                    },
                    vec![order.order_id],
                )),
            }
        }
        out
    }

    /// (b): compares Keel's book with orderbook row `row` (1-based).
    fn compare_book(&mut self, row: usize, file: &BookRow, levels: usize) {
        let asks = self.top(Side::Sell, levels);
        let bids = self.top(Side::Buy, levels);
        self.report.book.compared += 1;
        let mut first_difference = None;
        'levels: for level in 0..levels {
            for (side, keel, nasdaq) in [
                (Side::Sell, &asks, &file.asks),
                (Side::Buy, &bids, &file.bids),
            ] {
                let k = keel.get(level);
                let n = nasdaq.get(level);
                if k.map(|(l, _)| l) != n {
                    first_difference = Some((side, level, k.cloned(), n.copied()));
                    break 'levels;
                }
            }
        }
        let Some((side, level, keel, nasdaq)) = first_difference else {
            self.report.book.equal += 1;
            return;
        };
        self.report.book.differ += 1;
        self.report.book.first_differing_row.get_or_insert(row);
        // Better price for this side: lower asks, higher bids.
        let better = |a: i64, b: i64| if side == Side::Sell { a < b } else { a > b };
        let keel_has_more = match (&keel, &nasdaq) {
            (Some(_), None) => true,
            (None, _) => false,
            (Some((k, _)), Some(n)) => {
                better(k.price, n.price) || (k.price == n.price && k.size > n.size)
            }
        };
        let class = if keel_has_more {
            // What Keel holds there that NASDAQ does not: seeds, or in-file orders NASDAQ
            // removed without the file saying so, or in-file orders it still has.
            let ids = keel.as_ref().map(|(_, ids)| ids.as_slice()).unwrap_or(&[]);
            let unseen_removal = ids.iter().any(|&id| match self.origin(id) {
                Some(Origin::Lobster { order_id, .. }) => self
                    .replay
                    .last_mention
                    .get(&order_id)
                    .is_none_or(|&last| last < row),
                _ => false,
            });
            let seed = ids.iter().any(|&id| self.origin(id) == Some(Origin::Seed));
            match (unseen_removal, seed) {
                (true, _) => "keel_has_more: in-file orders never mentioned again",
                (false, true) => "keel_has_more: seed liquidity",
                (false, false) => "keel_has_more: other",
            }
        } else {
            "nasdaq_has_more: orders Keel never received"
        };
        let class = format!("{class} (level {})", if level == 0 { "1" } else { "2+" });
        let text = format!(
            "row {row}: {} level {}: Keel {:?}, file {:?}",
            if side == Side::Sell { "ask" } else { "bid" },
            level + 1,
            keel.map(|(l, ids)| (l.price, l.size, ids.len())),
            nasdaq.map(|l| (l.price, l.size))
        );
        *self
            .report
            .book
            .differ_classes
            .entry(class.clone())
            .or_default() += 1;
        add_example(&mut self.report.book.examples, &class, text);
    }
}

/// Replays `replay` through a fresh engine and runs both checks.
pub fn check(
    replay: &Replay,
    book: &[BookRow],
    levels: usize,
    progress: &ProgressBar,
) -> anyhow::Result<CheckReport> {
    let mut checker = Checker {
        replay,
        engine: Engine::new(EngineConfig::default())?,
        report: CheckReport::default(),
    };
    checker.report.book.levels = levels;
    checker.report.book.rows = book.len() as u64;
    checker.report.book.not_compared_inside_aggressor = replay.rows_inside_aggressor;
    let mut events = Vec::with_capacity(64);
    let mut applied = 0usize;
    for &(end, row) in &replay.checkpoints {
        for command in &replay.commands[applied..end] {
            checker.apply(command, &mut events);
        }
        applied = end;
        let file = book
            .get(row - 1)
            .ok_or_else(|| anyhow::anyhow!("no orderbook row {row}"))?;
        checker.compare_book(row, file, levels);
        if row % 1024 == 0 {
            progress.set_position(row as u64);
        }
    }
    for command in &replay.commands[applied..] {
        checker.apply(command, &mut events);
    }
    let mut report = checker.report;
    let share = |part: u64, whole: u64| {
        if whole == 0 {
            f64::NAN
        } else {
            part as f64 / whole as f64
        }
    };
    report.executions.match_share = share(report.executions.matched, report.executions.checkable);
    report.book.equal_share = share(report.book.equal, report.book.compared);
    Ok(report)
}
