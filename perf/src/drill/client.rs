//! The drill's clients: one thread per user, each logged in through the client library with
//! every node's order-entry address, sending limit orders open loop at a fixed rate and
//! recording everything: each order (first send, resends), each acknowledgement (Order
//! Accepted / Executed / Canceled / Rejected) with its time and sequence number, and every
//! sequenced message received with its sequence number and bytes.
//!
//! Orders are 1–3 shares on both sides a few ticks around the mid, so the two users trade
//! with each other and with themselves (no self-trade prevention) and the book stays
//! small. A slot that comes while the client is disconnected is refused by the library
//! and its order goes out at the next slot, as `keel-perf failover` does. After a
//! reconnect, every order not answered yet is sent again with its own token: Keel must
//! reject a token it already took (`O`), so an order can never count twice — which the
//! checks verify on every replica.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use keel_client::{Client, ClientEvent, ClientOptions, OrderBuilder};
use keel_protocol::ouch::{OutboundMessage, Price};
use keel_protocol::OrderToken;
use serde::Serialize;

use crate::flow::{Rng, MID_TICKS};
use crate::server;

/// Orders and messages one client may record; a run that would need more stops with an
/// error rather than grow without bound (about 20 minutes at 1,000 orders/s).
pub const HISTORY_RECORDS_MAX: usize = 1_200_000;
/// Ticks around the mid that orders are priced within.
const PRICE_BAND_TICKS: u64 = 3;

/// What one client is asked to do.
#[derive(Clone, Debug)]
pub struct Plan {
    /// User name (and so session stream).
    pub user: String,
    /// Token prefix, unique per client.
    pub prefix: String,
    /// Orders per second.
    pub rate: f64,
    /// Seed of the orders' sides, prices and sizes.
    pub seed: u64,
    /// How long to wait for answers once told to stop sending.
    pub drain: Duration,
}

/// What the nemesis and the recovery waits read while the client runs.
#[derive(Debug, Default)]
pub struct Status {
    /// The endpoint the client is logged into (the last one while reconnecting).
    pub endpoint: Mutex<Option<SocketAddr>>,
    /// Whether it is logged in now.
    pub connected: AtomicBool,
    /// First-send time (µs after the drill's start) of the latest-sent order accepted so
    /// far: an order sent after a moment was accepted iff this is past it.
    pub accepted_sent_us: AtomicU64,
    /// Told to stop sending (then drain and log out).
    pub stop: AtomicBool,
}

impl Status {
    /// The endpoint, if connected.
    pub fn connected_endpoint(&self) -> Option<SocketAddr> {
        if !self.connected.load(Ordering::SeqCst) {
            return None;
        }
        *self.endpoint.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One order and what became of it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Order {
    /// Its token.
    pub token: String,
    /// Buy (true) or sell.
    pub buy: bool,
    /// Limit price, ticks.
    pub price_ticks: u32,
    /// Shares.
    pub shares: u32,
    /// First send, ms after the drill's start.
    pub sent_ms: f64,
    /// Times sent (resends after reconnects included).
    pub sends: u32,
    /// Order Accepted received, ms after the start.
    pub accepted_ms: Option<f64>,
    /// The first answer of any kind (Accepted, Rejected), ms after the start.
    pub answered_ms: Option<f64>,
    /// Order Rejected received (a resend of a token already taken gets `O`).
    pub rejected: bool,
}

/// One acknowledgement received.
#[derive(Clone, Debug, Serialize)]
pub struct Ack {
    /// The order's token.
    pub token: String,
    /// `A` accepted, `E` executed, `C` canceled, `J` rejected.
    pub kind: char,
    /// Its sequence number in the session stream.
    pub seq: u64,
    /// When it was received, ms after the start.
    pub at_ms: f64,
}

/// Everything one client did and saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct History {
    /// User name.
    pub user: String,
    /// Every order, by token number.
    #[serde(skip)]
    pub orders: Vec<Order>,
    /// Every acknowledgement, in arrival order.
    #[serde(skip)]
    pub acks: Vec<Ack>,
    /// Every sequenced message received: sequence number and bytes (the decoded message
    /// encoded again; the codec round-trips exactly, and undecodable ones keep their bytes).
    #[serde(skip)]
    pub received: Vec<(u64, Vec<u8>)>,
    /// Disconnects and reconnects: ms after the start and what happened.
    pub connection_events: Vec<(f64, String)>,
    /// Resumes that skipped messages.
    pub sequence_gaps: Vec<String>,
    /// Slots refused by the library while disconnected.
    pub refused: usize,
    /// Resends after reconnects.
    pub resends: usize,
    /// Why the client stopped early, if it did (gave up, history full, login failed).
    pub error: Option<String>,
}

/// The drill's clock: ms after its start.
#[derive(Clone, Copy, Debug)]
pub struct Clock(pub Instant);

impl Clock {
    /// ms from the start to `at`.
    pub fn ms(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.0).as_secs_f64() * 1e3
    }

    /// ms from the start to now.
    pub fn now_ms(&self) -> f64 {
        self.ms(Instant::now())
    }
}

/// The library's settings for the drill: its defaults (reconnect pauses, answer timeout),
/// so the outages are what a user of the library sees, but reconnecting for as long as any
/// fault may last.
pub fn options(server_timeout: Duration) -> ClientOptions {
    ClientOptions {
        connect_attempts: 400,
        reconnect_attempts: 5_000,
        server_timeout,
        ..ClientOptions::default()
    }
}

/// Runs one client until told to stop and drained; returns its history (with `error`
/// set if it stopped early).
pub fn run(
    plan: &Plan,
    endpoints: &[SocketAddr],
    options: ClientOptions,
    clock: Clock,
    status: &Status,
) -> History {
    let mut state = State {
        history: History {
            user: plan.user.clone(),
            ..History::default()
        },
        retry: Vec::new(),
        prefix_len: plan.prefix.len(),
        clock,
    };
    if let Err(error) = drive(plan, endpoints, options, status, &mut state) {
        state.history.error = Some(format!("{error:#}"));
    }
    status.connected.store(false, Ordering::SeqCst);
    state.history
}

struct State {
    history: History,
    /// Orders to send again (indexes), after a reconnect.
    retry: Vec<usize>,
    /// Length of the token prefix (the order's number follows it).
    prefix_len: usize,
    clock: Clock,
}

fn drive(
    plan: &Plan,
    endpoints: &[SocketAddr],
    options: ClientOptions,
    status: &Status,
    state: &mut State,
) -> anyhow::Result<()> {
    let client = Client::connect(endpoints, &plan.user, server::PASSWORD, options)
        .with_context(|| format!("{}: no node accepted the login", plan.user))?;
    *status
        .endpoint
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = client.endpoint();
    status.connected.store(true, Ordering::SeqCst);
    let mut rng = Rng::new(plan.seed);
    let period = Duration::from_secs_f64(1.0 / plan.rate);
    let mut next_send = Instant::now();
    let mut drain_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if drain_until.is_none() && status.stop.load(Ordering::SeqCst) {
            drain_until = Some(now + plan.drain);
        }
        match drain_until {
            Some(until) if now >= until || state.all_answered() => break,
            Some(_) => {}
            None if now >= next_send => {
                state.resend(&client);
                state.send_new(&client, plan, &mut rng)?;
                next_send += period;
                if next_send + period < now {
                    // Behind (a stall of this thread): go on from now rather than burst.
                    next_send = now + period;
                }
            }
            None => {}
        }
        let wake = if drain_until.is_some() {
            now + Duration::from_millis(20)
        } else {
            next_send
        };
        if let Some(event) = client.next_event(wake.saturating_duration_since(Instant::now())) {
            state.handle(event, status)?;
            while let Some(event) = client.try_next_event() {
                state.handle(event, status)?;
            }
        }
    }
    logout(&client, state, status)
}

/// Logs out, still recording what arrives until the server closes.
fn logout(client: &Client, state: &mut State, status: &Status) -> anyhow::Result<()> {
    let _ = client.logout();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match client.next_event(Duration::from_millis(100)) {
            Some(ClientEvent::LoggedOut | ClientEvent::GaveUp { .. }) => break,
            Some(event) => state.handle(event, status)?,
            None if client.is_finished() => break,
            None => {}
        }
    }
    Ok(())
}

impl State {
    fn all_answered(&self) -> bool {
        self.history.orders.iter().all(|o| o.answered_ms.is_some())
    }

    fn token_index(&self, token: &OrderToken) -> Option<usize> {
        token.as_str().trim().get(self.prefix_len..)?.parse().ok()
    }

    fn check_room(&self) -> anyhow::Result<()> {
        let h = &self.history;
        if h.orders.len().max(h.acks.len()).max(h.received.len()) >= HISTORY_RECORDS_MAX {
            anyhow::bail!(
                "{}: more than {HISTORY_RECORDS_MAX} records: run shorter or slower",
                h.user
            );
        }
        Ok(())
    }

    /// Sends the next new order; a refused slot (disconnected) keeps it for the next.
    fn send_new(&mut self, client: &Client, plan: &Plan, rng: &mut Rng) -> anyhow::Result<()> {
        self.check_room()?;
        let buy = rng.chance(500);
        let offset = rng.below(2 * PRICE_BAND_TICKS + 1) as u32;
        // Buys reach up to BAND - 1 above the mid and sells as far below: some cross.
        let price_ticks = if buy {
            MID_TICKS + offset - PRICE_BAND_TICKS as u32 - 1
        } else {
            MID_TICKS - offset + PRICE_BAND_TICKS as u32 + 1
        };
        let order = Order {
            token: format!("{}{:09}", plan.prefix, self.history.orders.len()),
            buy,
            price_ticks,
            shares: 1 + rng.below(3) as u32,
            ..Order::default()
        };
        let sent_ms = self.clock.now_ms();
        if submit(client, &order).is_ok() {
            self.history.orders.push(Order {
                sent_ms,
                sends: 1,
                ..order
            });
        } else {
            self.history.refused += 1;
        }
        Ok(())
    }

    /// Sends again every order queued by the last reconnect that is still unanswered.
    fn resend(&mut self, client: &Client) {
        if self.retry.is_empty() || !client.is_connected() {
            return;
        }
        for index in std::mem::take(&mut self.retry) {
            let Some(order) = self.history.orders.get_mut(index) else {
                continue;
            };
            if order.answered_ms.is_none() && submit(client, order).is_ok() {
                order.sends += 1;
                self.history.resends += 1;
            }
        }
    }

    fn handle(&mut self, event: ClientEvent, status: &Status) -> anyhow::Result<()> {
        let now_ms = self.clock.now_ms();
        match event {
            ClientEvent::Message { seq, message } => {
                self.check_room()?;
                let mut bytes = Vec::with_capacity(message.encoded_len());
                message.encode(&mut bytes);
                self.history.received.push((seq, bytes));
                self.acknowledged(seq, &message, now_ms, status);
            }
            ClientEvent::Undecodable { seq, payload, .. } => {
                self.history.received.push((seq, payload));
            }
            ClientEvent::Disconnected { endpoint, reason } => {
                status.connected.store(false, Ordering::SeqCst);
                let what = format!("disconnected from {endpoint}: {reason}");
                self.history.connection_events.push((now_ms, what));
            }
            ClientEvent::Reconnected { endpoint, .. } => {
                *status
                    .endpoint
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(endpoint);
                status.connected.store(true, Ordering::SeqCst);
                let what = format!("reconnected to {endpoint}");
                self.history.connection_events.push((now_ms, what));
                self.retry = (0..self.history.orders.len())
                    .filter(|&i| self.history.orders[i].answered_ms.is_none())
                    .collect();
            }
            ClientEvent::SequenceGap { expected, next } => self
                .history
                .sequence_gaps
                .push(format!("expected {expected}, the server resumed at {next}")),
            ClientEvent::GaveUp { reason } => anyhow::bail!("the client gave up: {reason}"),
            _ => {}
        }
        Ok(())
    }

    /// Records an acknowledgement (and the order's answer).
    fn acknowledged(&mut self, seq: u64, message: &OutboundMessage, at_ms: f64, status: &Status) {
        let (kind, token) = match message {
            OutboundMessage::OrderAccepted(m) => ('A', m.order_token),
            OutboundMessage::OrderExecuted(m) => ('E', m.order_token),
            OutboundMessage::OrderCanceled(m) => ('C', m.order_token),
            OutboundMessage::OrderRejected(m) => ('J', m.order_token),
            _ => return,
        };
        self.history.acks.push(Ack {
            token: token.as_str().trim().to_string(),
            kind,
            seq,
            at_ms,
        });
        let Some(order) = self
            .token_index(&token)
            .and_then(|i| self.history.orders.get_mut(i))
        else {
            return;
        };
        if matches!(kind, 'A' | 'J') && order.answered_ms.is_none() {
            order.answered_ms = Some(at_ms);
        }
        if kind == 'J' {
            order.rejected = true;
        }
        if kind == 'A' && order.accepted_ms.is_none() {
            order.accepted_ms = Some(at_ms);
            let sent_us = (order.sent_ms * 1e3) as u64;
            status.accepted_sent_us.fetch_max(sent_us, Ordering::SeqCst);
        }
    }
}

fn submit(client: &Client, order: &Order) -> anyhow::Result<()> {
    let price = Price(order.price_ticks * server::PRICE_SCALE);
    let builder = if order.buy {
        OrderBuilder::buy(server::SYMBOL, order.shares, price)?
    } else {
        OrderBuilder::sell(server::SYMBOL, order.shares, price)?
    };
    client.submit(&builder.token(OrderToken::new(&order.token)?))?;
    Ok(())
}
