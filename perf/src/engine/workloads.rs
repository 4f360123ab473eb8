//! The generated command streams `keel-perf engine` measures.
//!
//! Every workload is a function of its kind, seed and length: the streams come from
//! `keel-benches`' own xoshiro256** (never from a dependency's PRNG), so a recorded figure
//! stays comparable across dependency upgrades. [`digest`] fingerprints a stream so a
//! report can show that two runs measured the same commands.
//!
//! - **exchange-core**: [`keel_benches::ExchangeCoreMix`] unchanged (1,000 resting orders,
//!   ~82% moves; see `benches/src/exchange_core.rs` and BENCHMARKS.md).
//! - **deep-book**: 100,000 resting orders on about 3,000 levels; adds, cancels of
//!   orders anywhere in the book (uniformly among all live orders, so most touch cold
//!   memory), some moves and small IOC orders at the touch.
//! - **sweep-heavy**: a thin book (about 2,000 orders on ~110 levels) that IOC orders sweep
//!   about 12 trades deep while GTC orders refill it: close to one trade per command.
//! - **cancel-heavy-mm**: 20 market makers quoting post-only within 10 ticks of the mid and
//!   cancelling mostly their most recent quotes (order-to-trade ratios in the hundreds), a
//!   few takers' IOC orders, and some quantity reductions.
//!
//! The generators other than exchange-core keep a fixed mid price: buys rest below it and
//! sells above it, so only IOC orders (and a move that reaches the other side, which none
//! of these do) trade. Each generator replays what it generates through an engine to know
//! which orders are still live, as exchange-core's generator does.

use keel_benches::rng::Xoshiro256StarStar;
use keel_benches::{ExchangeCoreMix, Workload};
use keel_engine::{
    AccountId, Command, Engine, EngineConfig, Event, InstrumentId, NewOrder, OrderId, Price, Qty,
    SelfTradePrevention, Side, Symbol, TimeInForce,
};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// The instrument every generated order is for.
const INSTRUMENT: InstrumentId = 1;
/// The fixed mid price of the non-exchange-core workloads, in ticks.
const MID_TICKS: Price = 1_000_000;

/// Which workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// exchange-core's published mix (GTC, IOC, cancel, move; 1,000 resting orders).
    ExchangeCore,
    /// 100,000 resting orders; adds, cancels anywhere in the book, moves, small IOCs.
    DeepBook,
    /// A thin book swept several levels deep by IOC orders and refilled by GTC orders.
    SweepHeavy,
    /// Market makers' post-only quotes, cancelled soon after; few trades.
    #[value(name = "cancel-heavy-mm")]
    #[serde(rename = "cancel-heavy-mm")]
    CancelHeavyMm,
}

impl Kind {
    /// Every workload, in report order.
    pub const ALL: [Kind; 4] = [
        Kind::ExchangeCore,
        Kind::DeepBook,
        Kind::SweepHeavy,
        Kind::CancelHeavyMm,
    ];

    /// The workload's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::ExchangeCore => "exchange-core",
            Kind::DeepBook => "deep-book",
            Kind::SweepHeavy => "sweep-heavy",
            Kind::CancelHeavyMm => "cancel-heavy-mm",
        }
    }

    /// One sentence on what the workload exercises.
    pub fn description(self) -> &'static str {
        match self {
            Kind::ExchangeCore => {
                "exchange-core's benchmark mix: ~1,000 resting orders on ~750 levels, 82% moves, 9% GTC, 6% cancels, 3% IOC, 1,000 accounts"
            }
            Kind::DeepBook => {
                "100,000 resting orders on ~3,000 levels (both sides): adds, cancels of random live orders anywhere in the book, moves, small IOCs at the touch"
            }
            Kind::SweepHeavy => {
                "a thin book (~2,000 orders on ~110 levels) that IOC orders (7% of commands) sweep ~12 trades deep, refilled by GTC orders near the touch"
            }
            Kind::CancelHeavyMm => {
                "20 market makers' post-only quotes within 10 ticks of the mid, mostly cancelled soon after; ~2% taker IOCs, some reductions"
            }
        }
    }

    /// The engine configuration the workload runs on (the deep book preallocates room for
    /// its 100,000 orders, so the timed part does not measure slab growth).
    pub fn engine_config(self) -> EngineConfig {
        match self {
            Kind::DeepBook => EngineConfig {
                capacity_orders: 1 << 18,
                ..EngineConfig::default()
            },
            _ => EngineConfig::default(),
        }
    }
}

/// Generates `commands` measured commands of workload `kind` from `seed`, after the warm-up
/// that builds its book.
pub fn generate(kind: Kind, seed: u64, commands: usize) -> anyhow::Result<Workload> {
    match kind {
        Kind::ExchangeCore => Ok(ExchangeCoreMix {
            seed,
            commands,
            ..ExchangeCoreMix::default()
        }
        .generate()),
        Kind::DeepBook => Generator::new(kind, seed)?.run(&DEEP_BOOK, commands),
        Kind::SweepHeavy => Generator::new(kind, seed)?.run(&SWEEP_HEAVY, commands),
        Kind::CancelHeavyMm => Generator::new(kind, seed)?.run(&CANCEL_HEAVY_MM, commands),
    }
}

/// FNV-1a (64-bit) over the journal encoding of every command, warm-up first, as 16 hex
/// digits: equal streams give equal digests.
pub fn digest(workload: &Workload) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut buf = [0u8; 128];
    for command in workload.warmup.iter().chain(&workload.measured) {
        let len = command.encoded_len().min(buf.len());
        let written = command.encode_into(&mut buf[..len]);
        for byte in &buf[..written] {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// The shape of one of the fixed-mid workloads. Probabilities are per mille and are
/// chosen by whether the book is below its target size.
struct Recipe {
    /// Resting orders the book is kept near.
    target_orders: usize,
    /// GTC orders rest this many ticks or more from the mid…
    min_distance_ticks: Price,
    /// …and at most this many.
    max_distance_ticks: Price,
    /// GTC order size range, lots.
    qty_lots: (u64, u64),
    /// IOC order size range, lots.
    ioc_qty_lots: (u64, u64),
    /// How far past the mid an IOC order's limit reaches, ticks.
    ioc_reach_ticks: Price,
    /// Accounts that place GTC orders.
    makers: u64,
    /// Accounts that place IOC orders (numbered after the makers).
    takers: u64,
    /// Whether GTC orders are post-only.
    post_only: bool,
    /// Cancels pick among the most recent this-many orders placed (0: among all live).
    cancel_recent: usize,
    /// Per mille below target: add, cancel, move, IOC; reduce is the rest.
    below: [u32; 4],
    /// Per mille at or above target.
    above: [u32; 4],
}

const DEEP_BOOK: Recipe = Recipe {
    target_orders: 100_000,
    min_distance_ticks: 1,
    max_distance_ticks: 2_000,
    qty_lots: (1, 100),
    ioc_qty_lots: (1, 200),
    ioc_reach_ticks: 5,
    makers: 1_000,
    takers: 100,
    post_only: false,
    cancel_recent: 0,
    below: [550, 350, 50, 50],
    above: [400, 500, 50, 50],
};

const SWEEP_HEAVY: Recipe = Recipe {
    target_orders: 2_000,
    min_distance_ticks: 1,
    max_distance_ticks: 200,
    qty_lots: (1, 100),
    ioc_qty_lots: (100, 1_000),
    ioc_reach_ticks: 400,
    makers: 100,
    takers: 100,
    post_only: false,
    cancel_recent: 0,
    below: [900, 60, 0, 40],
    above: [700, 150, 0, 150],
};

const CANCEL_HEAVY_MM: Recipe = Recipe {
    target_orders: 4_000,
    min_distance_ticks: 1,
    max_distance_ticks: 10,
    qty_lots: (1, 50),
    ioc_qty_lots: (1, 50),
    ioc_reach_ticks: 2,
    makers: 20,
    takers: 100,
    post_only: true,
    cancel_recent: 256,
    below: [520, 440, 10, 20],
    above: [460, 500, 10, 20],
};

/// A live order as the generator knows it.
#[derive(Clone, Copy, Debug)]
struct Live {
    /// Position in `Generator::live_ids`.
    index: usize,
    account: AccountId,
    side: Side,
    open: Qty,
}

/// State of a fixed-mid generator: the PRNG, an engine replaying what was generated, and
/// the live orders (with a vector for uniform picks).
struct Generator {
    rng: Xoshiro256StarStar,
    engine: Engine,
    events: Vec<Event>,
    live: FxHashMap<OrderId, Live>,
    live_ids: Vec<OrderId>,
    /// The most recent orders placed, oldest first (a ring of `cancel_recent`).
    recent: std::collections::VecDeque<OrderId>,
    next_order_id: OrderId,
}

impl Generator {
    fn new(kind: Kind, seed: u64) -> anyhow::Result<Generator> {
        Ok(Generator {
            // Each kind gets its own stream even for the same seed.
            rng: Xoshiro256StarStar::seed_from_u64(seed ^ (kind as u64).wrapping_mul(0x9e37)),
            engine: Engine::new(kind.engine_config())?,
            events: Vec::with_capacity(1_024),
            live: FxHashMap::default(),
            live_ids: Vec::new(),
            recent: std::collections::VecDeque::new(),
            next_order_id: 1,
        })
    }

    fn run(mut self, recipe: &Recipe, commands: usize) -> anyhow::Result<Workload> {
        let symbol = Symbol::new("BENCH").map_err(|e| anyhow::anyhow!("symbol: {e:?}"))?;
        let define = Command::DefineInstrument {
            instrument: INSTRUMENT,
            symbol,
        };
        self.apply(&define);
        let mut warmup = Vec::with_capacity(recipe.target_orders + 1);
        warmup.push(define);
        while self.live.len() < recipe.target_orders {
            let command = self.add(recipe);
            self.apply(&command);
            warmup.push(command);
        }
        let mut measured = Vec::with_capacity(commands);
        while measured.len() < commands {
            let weights = if self.live.len() < recipe.target_orders {
                recipe.below
            } else {
                recipe.above
            };
            let roll = self.rng.below(1_000) as u32;
            let command = if roll < weights[0] || self.live.is_empty() {
                self.add(recipe)
            } else if roll < weights[0] + weights[1] {
                self.cancel(recipe)
            } else if roll < weights[0] + weights[1] + weights[2] {
                self.move_order(recipe)
            } else if roll < weights[0] + weights[1] + weights[2] + weights[3] {
                self.ioc(recipe)
            } else {
                self.reduce()
            };
            self.apply(&command);
            measured.push(command);
        }
        Ok(Workload { warmup, measured })
    }

    fn side(&mut self) -> Side {
        if self.rng.chance(1, 2) {
            Side::Buy
        } else {
            Side::Sell
        }
    }

    fn qty(&mut self, range: (u64, u64)) -> Qty {
        range.0 + self.rng.below(range.1 - range.0 + 1)
    }

    /// A resting price on `side`: distances skewed towards the mid (square of a uniform),
    /// so levels near the touch are fuller, as in real books.
    fn resting_price(&mut self, recipe: &Recipe, side: Side) -> Price {
        let span = (recipe.max_distance_ticks - recipe.min_distance_ticks + 1) as u64;
        let u = self.rng.below(span);
        let skewed = (u * u / span) as Price;
        let distance = recipe.min_distance_ticks + skewed;
        match side {
            Side::Buy => MID_TICKS - distance,
            Side::Sell => MID_TICKS + distance,
        }
    }

    fn add(&mut self, recipe: &Recipe) -> Command {
        let side = self.side();
        let price = self.resting_price(recipe, side);
        let qty = self.qty(recipe.qty_lots);
        let account = 1 + self.rng.below(recipe.makers);
        let order_id = self.take_order_id();
        if recipe.cancel_recent > 0 {
            if self.recent.len() == recipe.cancel_recent {
                self.recent.pop_front();
            }
            self.recent.push_back(order_id);
        }
        Command::New(NewOrder {
            order_id,
            account,
            instrument: INSTRUMENT,
            side,
            price: Some(price),
            qty,
            tif: TimeInForce::Gtc,
            post_only: recipe.post_only,
            stp: SelfTradePrevention::None,
        })
    }

    fn ioc(&mut self, recipe: &Recipe) -> Command {
        let side = self.side();
        let price = match side {
            Side::Buy => MID_TICKS + recipe.ioc_reach_ticks,
            Side::Sell => MID_TICKS - recipe.ioc_reach_ticks,
        };
        let qty = self.qty(recipe.ioc_qty_lots);
        let account = recipe.makers + 1 + self.rng.below(recipe.takers);
        Command::New(NewOrder {
            order_id: self.take_order_id(),
            account,
            instrument: INSTRUMENT,
            side,
            price: Some(price),
            qty,
            tif: TimeInForce::Ioc,
            post_only: false,
            stp: SelfTradePrevention::None,
        })
    }

    /// A live order: among the most recent placed (if the recipe says so and one of them
    /// is still live), else uniformly among all live orders.
    fn pick(&mut self, recipe: &Recipe) -> (OrderId, Live) {
        if recipe.cancel_recent > 0 && !self.recent.is_empty() {
            // Most recent first: a market maker pulls the quote it just placed.
            let tries = self.recent.len().min(8);
            for _ in 0..tries {
                let back = self.rng.below(self.recent.len() as u64) as usize;
                let index = self.recent.len() - 1 - back / 4;
                if let Some(&id) = self.recent.get(index) {
                    if let Some(&live) = self.live.get(&id) {
                        return (id, live);
                    }
                }
            }
        }
        let index = self.rng.below(self.live_ids.len() as u64) as usize;
        let id = self.live_ids[index];
        // `live_ids` and `live` are kept in step by `sync`.
        let live = self.live.get(&id).copied().unwrap_or(Live {
            index,
            account: 0,
            side: Side::Buy,
            open: 1,
        });
        (id, live)
    }

    fn cancel(&mut self, recipe: &Recipe) -> Command {
        let (order_id, live) = self.pick(recipe);
        Command::Cancel {
            order_id,
            account: live.account,
        }
    }

    fn move_order(&mut self, recipe: &Recipe) -> Command {
        let (order_id, live) = self.pick(recipe);
        let price = self.resting_price(recipe, live.side);
        Command::Replace {
            order_id,
            account: live.account,
            price,
            qty: live.open,
        }
    }

    fn reduce(&mut self) -> Command {
        let index = self.rng.below(self.live_ids.len() as u64) as usize;
        let order_id = self.live_ids[index];
        let live = self.live.get(&order_id).copied();
        let (account, open) = live.map_or((0, 1), |l| (l.account, l.open));
        Command::Reduce {
            order_id,
            account,
            qty: open / 2,
        }
    }

    fn take_order_id(&mut self) -> OrderId {
        let id = self.next_order_id;
        self.next_order_id += 1;
        id
    }

    /// Applies `command` to the generator's engine and brings the live set up to date for
    /// every order the command's events name.
    fn apply(&mut self, command: &Command) {
        self.events.clear();
        self.engine.process(command, &mut self.events);
        let mut touched: Vec<OrderId> = Vec::new();
        for event in &self.events {
            match *event {
                Event::Accepted { order_id }
                | Event::Canceled { order_id, .. }
                | Event::Replaced { order_id, .. } => touched.push(order_id),
                Event::Trade {
                    taker_order_id,
                    maker_order_id,
                    ..
                } => {
                    touched.push(taker_order_id);
                    touched.push(maker_order_id);
                }
                _ => {}
            }
        }
        for order_id in touched {
            self.sync(order_id);
        }
    }

    /// Makes the live set agree with the engine about `order_id`.
    fn sync(&mut self, order_id: OrderId) {
        match self.engine.order(order_id) {
            Some(resting) => {
                if let Some(live) = self.live.get_mut(&order_id) {
                    live.open = resting.qty;
                    live.side = resting.side;
                } else {
                    self.live.insert(
                        order_id,
                        Live {
                            index: self.live_ids.len(),
                            account: resting.account,
                            side: resting.side,
                            open: resting.qty,
                        },
                    );
                    self.live_ids.push(order_id);
                }
            }
            None => {
                if let Some(gone) = self.live.remove(&order_id) {
                    self.live_ids.swap_remove(gone.index);
                    if let Some(&moved) = self.live_ids.get(gone.index) {
                        if let Some(entry) = self.live.get_mut(&moved) {
                            entry.index = gone.index;
                        }
                    }
                }
            }
        }
    }
}
