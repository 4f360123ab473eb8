//! Simulated trading clients: what they send, and how they wait and retry.
//!
//! Every new order carries an order id unique over the whole run; that id is the client's
//! command id (like an OUCH Order Token), so a retry of an order the cluster may already
//! have taken is recognisable. Cancels, replaces, reduces and mass cancels are sent once and
//! never retried or tracked: they only make the books (and so the state roots) richer.

use std::collections::VecDeque;

use keel_engine::{Command, NewOrder, SelfTradePrevention, Side, TimeInForce};

use keel_testkit::rng::Rng;

/// Instruments every leader defines (from its "configuration") before serving.
pub const INSTRUMENTS: [(u32, &str); 2] = [(1, "BTC-PERP"), (2, "ETH-PERP")];

/// Time a client waits for an acknowledgement before sending the same order again.
pub const RETRY_AFTER: u64 = 400;

/// How a tracked order ended for its client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged at this sequence number.
    Acked(u64),
    /// A retry was refused as a reused order id: the cluster had already taken it, but
    /// the acknowledgement was lost with a deposed leader.
    Duplicate,
}

/// What a client is doing.
#[derive(Clone, Copy, Debug)]
pub enum State {
    /// Sends its next command at this time.
    Idle { at: u64 },
    /// Waits for the acknowledgement of `order`; resends it at `retry_at`.
    Waiting { order: NewOrder, retry_at: u64 },
    /// Has sent everything.
    Done,
}

/// One client.
pub struct Client {
    /// Index in the cluster's client list.
    pub index: usize,
    plan: VecDeque<Command>,
    /// What it is doing.
    pub state: State,
    /// The node it believes leads (0: unknown).
    pub leader_hint: u64,
    think: (u64, u64),
}

impl Client {
    /// A client with `orders` planned commands drawn from `rng`.
    pub fn new(index: usize, orders: usize, rng: &mut Rng) -> Client {
        let account = index as u64 + 1;
        let mut plan = VecDeque::new();
        let mut mine: Vec<u64> = Vec::new();
        for k in 0..orders as u64 {
            // A new order most of the time; otherwise work on one of our earlier orders.
            if mine.is_empty() || rng.chance(700) {
                let order_id = (index as u64 + 1) * 1_000_000 + k;
                mine.push(order_id);
                let side = if rng.chance(500) {
                    Side::Buy
                } else {
                    Side::Sell
                };
                // Prices straddle 1000 so that orders both rest and cross; the wide tail
                // lands outside small price windows (the engine's fallback path).
                let offset = if rng.chance(100) {
                    rng.range(0, 400) as i64
                } else {
                    rng.range(0, 30) as i64
                };
                let towards = if rng.chance(600) { -offset } else { offset };
                let price = match side {
                    Side::Buy => 1000 + towards,
                    Side::Sell => 1000 - towards,
                };
                let market = rng.chance(50);
                let tif = match rng.below(10) {
                    0 => TimeInForce::Ioc,
                    1 => TimeInForce::Fok,
                    _ => TimeInForce::Gtc,
                };
                plan.push_back(Command::New(NewOrder {
                    order_id,
                    // Two accounts per client, so self-trade prevention has work to do.
                    account: account + 100 * rng.below(2),
                    instrument: 1 + rng.below(2) as u32,
                    side,
                    price: if market { None } else { Some(price.max(1)) },
                    qty: rng.range(1, 20),
                    tif,
                    post_only: !market && tif == TimeInForce::Gtc && rng.chance(100),
                    stp: match rng.below(8) {
                        0 => SelfTradePrevention::CancelNewest,
                        1 => SelfTradePrevention::CancelOldest,
                        2 => SelfTradePrevention::CancelBoth,
                        _ => SelfTradePrevention::None,
                    },
                }));
            } else {
                let order_id = mine[rng.below(mine.len() as u64) as usize];
                let owner = account + 100 * rng.below(2);
                plan.push_back(match rng.below(10) {
                    0..=3 => Command::Cancel {
                        order_id,
                        account: owner,
                    },
                    4..=5 => Command::Replace {
                        order_id,
                        account: owner,
                        price: 990 + rng.range(0, 20) as i64,
                        qty: rng.range(1, 20),
                    },
                    6..=8 => Command::Reduce {
                        order_id,
                        account: owner,
                        qty: rng.range(0, 10),
                    },
                    _ => Command::MassCancel {
                        account: owner,
                        instrument: if rng.chance(500) { Some(1) } else { None },
                    },
                });
            }
        }
        let think_max = rng.range(3, 40);
        Client {
            index,
            plan,
            state: State::Idle {
                at: rng.range(0, 50),
            },
            leader_hint: 0,
            think: (1, think_max),
        }
    }

    /// A pause before the next command.
    pub fn think(&self, rng: &mut Rng) -> u64 {
        rng.range(self.think.0, self.think.1)
    }

    /// The next planned command, if any.
    pub fn next_command(&mut self) -> Option<Command> {
        self.plan.pop_front()
    }

    /// Whether the client has nothing left to send or wait for.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }
}
