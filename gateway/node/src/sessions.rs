//! The gateway's deterministic state: users, their order tokens, their live orders, and each
//! user's sequenced stream of outbound OUCH messages.
//!
//! Sans-IO and clock-free. Two entry points:
//! - [`SessionBook::intake`] turns a user's OUCH message into the node input the matching
//!   loop journals (resolving tokens to engine order ids, assigning ids to new orders, and
//!   deciding gateway-level rejects such as a reused token or an unknown stock);
//! - [`SessionBook::outcome`] turns a journaled input and its engine events into outbound
//!   messages appended to the users' streams.
//!
//! Both are also what recovery runs, record by record, over the journal: so after a restart
//! every stream is rebuilt message for message, and a client resuming from sequence number
//! N receives exactly what it would have received had nothing happened. Timestamps come
//! from the journaled arrival time (nanoseconds since UTC midnight of that time).

use foldhash::{HashMap, HashMapExt};

use keel_engine::{AccountId, Command, Event, InstrumentId, OrderId, SelfTradePrevention};
use keel_journal::envelope::{Envelope, Origin};

use super::chunked::{ByteLog, ChunkedVec, GenerationalSet};
use crate::config::Config;
use keel_protocol::mapping::{self, CancelIntent, OrderContext, PriceScale};
use keel_protocol::ouch::{
    BboWeightIndicator, BuySellIndicator, CancelReason, CancelReject, Capacity, CrossType,
    DisplayType, EnterOrder, EventCode, InboundMessage, IntermarketSweepEligibility, OrderAccepted,
    OrderCanceled, OrderExecuted, OrderModified, OrderRejected, OrderReplaced, OrderState,
    OutboundMessage, Price, RejectReason, SystemEvent, TimeInForce,
};
use keel_protocol::{Firm, OrderToken, Stock};

/// The envelope's reject code for a cancel or modify answered with Cancel Reject.
const CANCEL_REJECT_CODE: u8 = b'I';
const NS_PER_DAY: u64 = 86_400 * 1_000_000_000;

/// One user's sequenced outbound messages (SoupBinTCP sequence number = index + 1), stored
/// in fixed chunks so that growing never stalls the gateway (see `node/chunked.rs`).
#[derive(Debug, Default)]
pub struct Stream {
    messages: ByteLog,
    /// Journal sequence number of the input that produced each message (non-decreasing).
    seqs: ChunkedVec<u64>,
}

/// Longest outbound OUCH message, in bytes (Order Replaced, 80), with room to spare.
const OUTBOUND_MESSAGE_BYTES_MAX: usize = 128;

impl Stream {
    /// Number of messages.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether there are no messages.
    pub fn is_empty(&self) -> bool {
        self.messages.len() == 0
    }

    /// Message `index` (0-based).
    pub fn message(&self, index: usize) -> &[u8] {
        self.messages.get(index)
    }

    /// How many messages were produced by inputs at or below `seq` (those may be released).
    pub fn released_len(&self, seq: u64) -> usize {
        self.seqs.partition_point(|s| s <= seq)
    }

    fn push(&mut self, seq: u64, message: &OutboundMessage) {
        debug_assert!(message.encoded_len() <= OUTBOUND_MESSAGE_BYTES_MAX);
        self.messages
            .push_with(OUTBOUND_MESSAGE_BYTES_MAX, |out| message.encode(out));
        self.seqs.push(seq);
    }
}

/// A configured user.
#[derive(Debug)]
pub struct User {
    /// User name as configured.
    pub name: String,
    /// Engine account.
    pub account: AccountId,
    /// Self-trade prevention for the user's orders.
    pub stp: SelfTradePrevention,
    /// Whether a disconnect cancels the account's orders.
    pub cancel_on_disconnect: bool,
    /// Outbound messages.
    pub stream: Stream,
    /// Every order token the user has used this session (tokens are single-use).
    used_tokens: GenerationalSet<OrderToken>,
    /// Current token → live order.
    live_tokens: HashMap<OrderToken, OrderId>,
}

/// What the gateway remembers about a live order, to answer in OUCH terms.
#[derive(Clone, Copy, Debug)]
struct LiveOrder {
    user: usize,
    token: OrderToken,
    side: BuySellIndicator,
    stock: Stock,
    instrument: InstrumentId,
    price: Price,
    time_in_force: TimeInForce,
    firm: Firm,
    display: DisplayType,
    capacity: Capacity,
    intermarket_sweep: IntermarketSweepEligibility,
    minimum_quantity: u32,
    cross_type: CrossType,
    /// Open quantity as of the last event processed.
    open: u64,
}

/// Configured instrument as the gateway sees it.
#[derive(Clone, Copy, Debug)]
struct Listing {
    instrument: InstrumentId,
    stock: Stock,
    scale: PriceScale,
}

/// All of the gateway's deterministic state.
#[derive(Debug)]
pub struct SessionBook {
    users: Vec<User>,
    /// Lower-cased user name → index.
    by_name: HashMap<String, usize>,
    /// Lower-cased journaled user field (the name, space padded to 6) → index: looked up for
    /// every input and outcome, so without building a string.
    by_wire: HashMap<[u8; 6], usize>,
    by_stock: HashMap<Stock, Listing>,
    by_instrument: HashMap<InstrumentId, Listing>,
    orders: HashMap<OrderId, LiveOrder>,
    next_order_id: OrderId,
}

impl SessionBook {
    /// A book for the configured users and instruments, before any input.
    pub fn new(config: &Config) -> Result<SessionBook, crate::Error> {
        let mut by_stock = HashMap::new();
        let mut by_instrument = HashMap::new();
        for instrument in &config.instruments {
            let listing = Listing {
                instrument: instrument.id,
                stock: Stock::new(&instrument.symbol).map_err(|e| {
                    crate::Error::Config(format!("instrument {}: {e}", instrument.id))
                })?,
                scale: PriceScale::new(instrument.price_scale)
                    .ok_or_else(|| crate::Error::Config("price_scale must be at least 1".into()))?,
            };
            by_stock.insert(listing.stock, listing);
            by_instrument.insert(listing.instrument, listing);
        }
        let users: Vec<User> = config
            .users
            .iter()
            .map(|user| User {
                name: user.username.clone(),
                account: user.account,
                stp: user.stp.into(),
                cancel_on_disconnect: user.cancel_on_disconnect,
                stream: Stream::default(),
                used_tokens: GenerationalSet::default(),
                live_tokens: HashMap::new(),
            })
            .collect();
        let by_name = users
            .iter()
            .enumerate()
            .map(|(index, user)| (user.name.to_ascii_lowercase(), index))
            .collect();
        let by_wire = users
            .iter()
            .enumerate()
            .map(|(index, user)| (lower_wire(user_wire(&user.name)), index))
            .collect();
        Ok(SessionBook {
            users,
            by_name,
            by_wire,
            by_stock,
            by_instrument,
            orders: HashMap::new(),
            next_order_id: 1,
        })
    }

    /// The user with this name (case-insensitive).
    pub fn user_index(&self, name: &str) -> Option<usize> {
        self.by_name
            .get(&name.trim_end().to_ascii_lowercase())
            .copied()
    }

    /// User `index`.
    pub fn user(&self, index: usize) -> &User {
        &self.users[index]
    }

    /// The node input for OUCH message `message` (already validated by the caller: it
    /// decodes) from user `user`, received at `now_ns`. Updates token bookkeeping exactly as
    /// replaying the returned envelope does.
    pub fn intake(&mut self, user: usize, now_ns: u64, message: &[u8]) -> Option<Envelope> {
        let decoded = InboundMessage::decode(message).ok()?;
        self.intake_decoded(user, now_ns, &decoded, message)
    }

    /// [`SessionBook::intake`] for a message the caller already decoded from `message`.
    pub fn intake_decoded(
        &mut self,
        user: usize,
        now_ns: u64,
        decoded: &InboundMessage,
        message: &[u8],
    ) -> Option<Envelope> {
        let (origin, reject, command) = self.decide(user, decoded);
        let envelope = Envelope::new(
            origin,
            now_ns,
            user_wire(&self.users[user].name),
            reject,
            message,
            command,
        )?;
        self.apply_intake_decoded(user, decoded, envelope.command);
        Some(envelope)
    }

    /// The node input for a disconnect of `user` with cancel-on-disconnect set.
    pub fn disconnect_input(&self, user: usize, now_ns: u64) -> Option<Envelope> {
        let user_state = &self.users[user];
        Envelope::new(
            Origin::CancelOnDisconnect,
            now_ns,
            user_wire(&user_state.name),
            0,
            &[],
            Some(Command::MassCancel {
                account: user_state.account,
                instrument: None,
            }),
        )
    }

    fn decide(&self, user: usize, message: &InboundMessage) -> (Origin, u8, Option<Command>) {
        let state = &self.users[user];
        match message {
            InboundMessage::EnterOrder(enter) => {
                let verdict = self.enter_command(state, enter);
                match verdict {
                    Ok(command) => (Origin::EnterOrder, 0, Some(command)),
                    Err(reason) => (Origin::EnterOrder, reason.code(), None),
                }
            }
            InboundMessage::ReplaceOrder(replace) => {
                let existing = state.live_tokens.get(&replace.existing_order_token);
                let verdict = match existing.and_then(|id| self.orders.get(id).map(|o| (*id, o))) {
                    _ if state.used_tokens.contains(&replace.replacement_order_token) => {
                        Err(RejectReason::Other)
                    }
                    None => Err(RejectReason::Other),
                    Some((order_id, order)) => {
                        let scale = self.scale(order.instrument);
                        mapping::replace_order_price_qty(replace, scale).map(|(price, qty)| {
                            Command::Replace {
                                order_id,
                                account: state.account,
                                price,
                                qty,
                            }
                        })
                    }
                };
                match verdict {
                    Ok(command) => (Origin::ReplaceOrder, 0, Some(command)),
                    Err(reason) => (Origin::ReplaceOrder, reason.code(), None),
                }
            }
            InboundMessage::CancelOrder(cancel) => {
                let intent = Some(mapping::cancel_intent(cancel));
                self.amend(state, Origin::CancelOrder, &cancel.order_token, intent)
            }
            InboundMessage::ModifyOrder(modify) => {
                let current = state
                    .live_tokens
                    .get(&modify.order_token)
                    .and_then(|id| self.orders.get(id));
                let intent = current.and_then(|order| mapping::modify_intent(modify, order.side));
                self.amend(state, Origin::ModifyOrder, &modify.order_token, intent)
            }
        }
    }

    fn enter_command(&self, state: &User, enter: &EnterOrder) -> Result<Command, RejectReason> {
        if state.used_tokens.contains(&enter.order_token) {
            return Err(RejectReason::Other);
        }
        let listing = self
            .by_stock
            .get(&enter.stock)
            .ok_or(RejectReason::InvalidStock)?;
        let context = OrderContext {
            order_id: self.next_order_id,
            account: state.account,
            instrument: listing.instrument,
            scale: listing.scale,
            stp: state.stp,
        };
        mapping::enter_order_to_new_order(enter, &context).map(Command::New)
    }

    /// Cancel and Modify: a full cancel, or a reduce that can never grow the order.
    fn amend(
        &self,
        state: &User,
        origin: Origin,
        token: &OrderToken,
        intent: Option<CancelIntent>,
    ) -> (Origin, u8, Option<Command>) {
        let (Some(&order_id), Some(intent)) = (state.live_tokens.get(token), intent) else {
            return (origin, CANCEL_REJECT_CODE, None);
        };
        let command = match intent {
            CancelIntent::CancelAll => Command::Cancel {
                order_id,
                account: state.account,
            },
            CancelIntent::ReduceTo(qty) => Command::Reduce {
                order_id,
                account: state.account,
                qty,
            },
        };
        (origin, 0, Some(command))
    }

    fn scale(&self, instrument: InstrumentId) -> PriceScale {
        self.by_instrument
            .get(&instrument)
            .map_or_else(PriceScale::default, |listing| listing.scale)
    }

    /// Token bookkeeping implied by an input, before the engine's verdict: tokens are
    /// consumed on use, and a new order is registered under its token.
    fn apply_intake(&mut self, envelope: &Envelope) {
        let Some(user) = self.user_of(envelope) else {
            return;
        };
        let Ok(message) = InboundMessage::decode(envelope.client_message()) else {
            return;
        };
        self.apply_intake_decoded(user, &message, envelope.command);
    }

    /// [`SessionBook::apply_intake`] for the input's decoded client message and command.
    fn apply_intake_decoded(
        &mut self,
        user: usize,
        message: &InboundMessage,
        command: Option<Command>,
    ) {
        match (*message, command) {
            (InboundMessage::EnterOrder(enter), command) => {
                self.users[user].used_tokens.insert(enter.order_token);
                if let Some(Command::New(order)) = command {
                    self.next_order_id = self.next_order_id.max(order.order_id + 1);
                    let Some(listing) = self.by_instrument.get(&order.instrument).copied() else {
                        return;
                    };
                    self.orders.insert(
                        order.order_id,
                        LiveOrder {
                            user,
                            token: enter.order_token,
                            side: enter.side,
                            stock: listing.stock,
                            instrument: order.instrument,
                            price: enter.price,
                            time_in_force: enter.time_in_force,
                            firm: enter.firm,
                            display: enter.display,
                            capacity: enter.capacity,
                            intermarket_sweep: enter.intermarket_sweep,
                            minimum_quantity: enter.minimum_quantity,
                            cross_type: enter.cross_type,
                            open: 0,
                        },
                    );
                    self.users[user]
                        .live_tokens
                        .insert(enter.order_token, order.order_id);
                }
            }
            (InboundMessage::ReplaceOrder(replace), _) => {
                self.users[user]
                    .used_tokens
                    .insert(replace.replacement_order_token);
            }
            _ => {}
        }
    }

    fn user_of(&self, envelope: &Envelope) -> Option<usize> {
        self.by_wire.get(&lower_wire(envelope.user)).copied()
    }

    /// Replays one journaled input during recovery: the same bookkeeping as `intake`, then
    /// the outcome.
    pub fn replay(&mut self, seq: u64, envelope: &Envelope, events: &[Event]) {
        if matches!(
            envelope.origin,
            Origin::EnterOrder | Origin::ReplaceOrder | Origin::CancelOrder | Origin::ModifyOrder
        ) {
            self.apply_intake(envelope);
        }
        self.outcome(seq, envelope, events);
    }

    /// Appends the outbound messages for journaled input `seq` and its engine events.
    pub fn outcome(&mut self, seq: u64, envelope: &Envelope, events: &[Event]) {
        let message = InboundMessage::decode(envelope.client_message()).ok();
        self.outcome_decoded(seq, envelope, message, events);
    }

    /// [`SessionBook::outcome`] for an input whose client message the caller already
    /// decoded (`None`: there is none, or it does not decode).
    pub fn outcome_decoded(
        &mut self,
        seq: u64,
        envelope: &Envelope,
        message: Option<InboundMessage>,
        events: &[Event],
    ) {
        debug_assert_eq!(
            message,
            InboundMessage::decode(envelope.client_message()).ok()
        );
        let timestamp = envelope.timestamp_ns % NS_PER_DAY;
        if envelope.origin == Origin::SessionStart {
            let message = OutboundMessage::SystemEvent(SystemEvent {
                timestamp,
                event_code: EventCode::StartOfDay,
            });
            for user in &mut self.users {
                user.stream.push(seq, &message);
            }
            return;
        }
        if envelope.reject != 0 {
            self.gateway_reject(seq, envelope, message, timestamp);
            return;
        }
        let sender = self.user_of(envelope);
        for event in events {
            self.event(
                seq,
                envelope.origin,
                sender,
                message.as_ref(),
                timestamp,
                event,
            );
        }
    }

    fn gateway_reject(
        &mut self,
        seq: u64,
        envelope: &Envelope,
        message: Option<InboundMessage>,
        timestamp: u64,
    ) {
        let (Some(user), Some(message)) = (self.user_of(envelope), message) else {
            return;
        };
        let reply = match message {
            InboundMessage::EnterOrder(enter) => {
                reject(timestamp, enter.order_token, envelope.reject)
            }
            InboundMessage::ReplaceOrder(replace) => {
                reject(timestamp, replace.replacement_order_token, envelope.reject)
            }
            InboundMessage::CancelOrder(cancel) => cancel_reject(timestamp, cancel.order_token),
            InboundMessage::ModifyOrder(modify) => cancel_reject(timestamp, modify.order_token),
        };
        self.users[user].stream.push(seq, &reply);
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &mut self,
        seq: u64,
        origin: Origin,
        sender: Option<usize>,
        message: Option<&InboundMessage>,
        timestamp: u64,
        event: &Event,
    ) {
        match *event {
            Event::Accepted { order_id } => self.accepted(seq, timestamp, order_id, message),
            Event::Rejected { order_id, reason } => {
                if let Some(order) = self.forget(order_id) {
                    let code = mapping::reject_reason(reason).code();
                    self.users[order.user]
                        .stream
                        .push(seq, &reject(timestamp, order.token, code));
                }
            }
            Event::Trade {
                price,
                qty,
                taker_order_id,
                maker_order_id,
                match_id,
                ..
            } => {
                for (order_id, is_taker) in [(taker_order_id, true), (maker_order_id, false)] {
                    self.executed(seq, timestamp, order_id, is_taker, price, qty, match_id);
                }
            }
            Event::Canceled {
                order_id,
                qty,
                reason,
            } => self.canceled(seq, origin, message, timestamp, order_id, qty, reason),
            Event::Replaced {
                order_id,
                price: _,
                qty,
            } => {
                if let Some(InboundMessage::ReplaceOrder(replace)) = message {
                    self.replaced(seq, timestamp, order_id, replace, qty);
                }
            }
            Event::CancelRejected { order_id, .. } => {
                self.cancel_rejected(seq, timestamp, order_id, sender, message);
            }
            Event::ReplaceRejected { order_id, .. } => {
                self.replace_rejected(seq, timestamp, order_id, sender, message);
            }
            Event::InstrumentRejected { .. } => {}
        }
    }

    /// Order Accepted for a new order, with the shares its Enter Order asked for.
    fn accepted(
        &mut self,
        seq: u64,
        timestamp: u64,
        order_id: OrderId,
        message: Option<&InboundMessage>,
    ) {
        let Some(order) = self.orders.get_mut(&order_id) else {
            return;
        };
        let shares = match message {
            Some(InboundMessage::EnterOrder(enter)) => enter.shares,
            _ => 0,
        };
        order.open = u64::from(shares);
        let accepted = OutboundMessage::OrderAccepted(OrderAccepted {
            timestamp,
            order_token: order.token,
            side: order.side,
            shares,
            stock: order.stock,
            price: order.price,
            time_in_force: order.time_in_force,
            firm: order.firm,
            display: order.display,
            order_reference_number: order_id,
            capacity: order.capacity,
            intermarket_sweep: order.intermarket_sweep,
            minimum_quantity: order.minimum_quantity,
            cross_type: order.cross_type,
            order_state: OrderState::Live,
            bbo_weight_indicator: BboWeightIndicator::Unspecified,
        });
        let user = order.user;
        self.users[user].stream.push(seq, &accepted);
    }

    /// Cancel Reject for a Cancel or Modify Order the engine refused.
    fn cancel_rejected(
        &mut self,
        seq: u64,
        timestamp: u64,
        order_id: OrderId,
        sender: Option<usize>,
        message: Option<&InboundMessage>,
    ) {
        // The order may be gone from these books already (an IOC remainder, a fill) when a
        // cancel sent right behind it was decided before its end was known; the cancel is
        // still answered, naming the token it named.
        let target = match (self.orders.get(&order_id), message) {
            (Some(order), _) => Some((order.user, order.token)),
            (None, Some(InboundMessage::CancelOrder(cancel))) => {
                sender.map(|user| (user, cancel.order_token))
            }
            (None, Some(InboundMessage::ModifyOrder(modify))) => {
                sender.map(|user| (user, modify.order_token))
            }
            (None, _) => None,
        };
        if let Some((user, token)) = target {
            let reply = cancel_reject(timestamp, token);
            self.users[user].stream.push(seq, &reply);
        }
    }

    /// Order Rejected (replacement token) for a Replace Order the engine refused.
    fn replace_rejected(
        &mut self,
        seq: u64,
        timestamp: u64,
        order_id: OrderId,
        sender: Option<usize>,
        message: Option<&InboundMessage>,
    ) {
        // As for cancels: the replaced order may be gone already; answer the sender.
        let user = self
            .orders
            .get(&order_id)
            .map(|order| order.user)
            .or(sender);
        if let (Some(user), Some(InboundMessage::ReplaceOrder(replace))) = (user, message) {
            let reply = reject(
                timestamp,
                replace.replacement_order_token,
                RejectReason::Other.code(),
            );
            self.users[user].stream.push(seq, &reply);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn executed(
        &mut self,
        seq: u64,
        timestamp: u64,
        order_id: OrderId,
        is_taker: bool,
        price: i64,
        qty: u64,
        match_id: u64,
    ) {
        let Some(order) = self.orders.get_mut(&order_id) else {
            return;
        };
        order.open = order.open.saturating_sub(qty);
        let (user, token, instrument, open) =
            (order.user, order.token, order.instrument, order.open);
        let execution_price = self.scale(instrument).to_price(price).unwrap_or(Price(0));
        let executed = OutboundMessage::OrderExecuted(OrderExecuted {
            timestamp,
            order_token: token,
            // OUCH share fields are 32-bit; orders enter with 32-bit shares, so fills fit.
            executed_shares: u32::try_from(qty).unwrap_or(u32::MAX),
            execution_price,
            liquidity_flag: mapping::liquidity_flag(is_taker),
            match_number: match_id,
        });
        self.users[user].stream.push(seq, &executed);
        if open == 0 {
            // Fully filled: nothing will name this order again.
            self.forget(order_id);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn canceled(
        &mut self,
        seq: u64,
        origin: Origin,
        message: Option<&InboundMessage>,
        timestamp: u64,
        order_id: OrderId,
        qty: u64,
        reason: keel_engine::CancelReason,
    ) {
        let Some(order) = self.orders.get_mut(&order_id) else {
            return;
        };
        order.open = order.open.saturating_sub(qty);
        let (user, token, side, open) = (order.user, order.token, order.side, order.open);
        let modified_here = matches!(message, Some(InboundMessage::ModifyOrder(m)) if m.order_token == token)
            && origin == Origin::ModifyOrder;
        let reply = if modified_here {
            OutboundMessage::OrderModified(OrderModified {
                timestamp,
                order_token: token,
                side,
                shares: u32::try_from(open).unwrap_or(u32::MAX),
            })
        } else {
            let reason = match (origin, reason) {
                (Origin::CancelOnDisconnect, _) => CancelReason::SystemCancel,
                (_, reason) => mapping::cancel_reason(reason),
            };
            OutboundMessage::OrderCanceled(OrderCanceled {
                timestamp,
                order_token: token,
                decrement_shares: u32::try_from(qty).unwrap_or(u32::MAX),
                reason,
            })
        };
        self.users[user].stream.push(seq, &reply);
        if open == 0 {
            self.forget(order_id);
        }
    }

    fn replaced(
        &mut self,
        seq: u64,
        timestamp: u64,
        order_id: OrderId,
        replace: &keel_protocol::ouch::ReplaceOrder,
        qty: u64,
    ) {
        let Some(order) = self.orders.get_mut(&order_id) else {
            return;
        };
        let previous = order.token;
        order.token = replace.replacement_order_token;
        order.price = replace.price;
        order.time_in_force = replace.time_in_force;
        order.display = replace.display;
        order.intermarket_sweep = replace.intermarket_sweep;
        order.minimum_quantity = replace.minimum_quantity;
        order.open = qty;
        let order = *order;
        let user = &mut self.users[order.user];
        user.live_tokens.remove(&previous);
        user.live_tokens.insert(order.token, order_id);
        let replaced = OutboundMessage::OrderReplaced(OrderReplaced {
            timestamp,
            replacement_order_token: order.token,
            side: order.side,
            shares: u32::try_from(qty).unwrap_or(u32::MAX),
            stock: order.stock,
            price: order.price,
            time_in_force: order.time_in_force,
            firm: order.firm,
            display: order.display,
            order_reference_number: order_id,
            capacity: order.capacity,
            intermarket_sweep: order.intermarket_sweep,
            minimum_quantity: order.minimum_quantity,
            cross_type: order.cross_type,
            order_state: OrderState::Live,
            previous_order_token: previous,
            bbo_weight_indicator: BboWeightIndicator::Unspecified,
        });
        user.stream.push(seq, &replaced);
    }

    /// Drops a finished order from the live maps (its token stays used).
    fn forget(&mut self, order_id: OrderId) -> Option<LiveOrder> {
        let order = self.orders.remove(&order_id)?;
        self.users[order.user].live_tokens.remove(&order.token);
        Some(order)
    }
}

fn reject(timestamp: u64, order_token: OrderToken, code: u8) -> OutboundMessage {
    OutboundMessage::OrderRejected(OrderRejected {
        timestamp,
        order_token,
        reason: RejectReason::from_code(code).unwrap_or(RejectReason::Other),
    })
}

fn cancel_reject(timestamp: u64, order_token: OrderToken) -> OutboundMessage {
    OutboundMessage::CancelReject(CancelReject {
        timestamp,
        order_token,
    })
}

/// A journaled user field with ASCII letters lower-cased (user names compare
/// case-insensitively).
fn lower_wire(mut wire: [u8; 6]) -> [u8; 6] {
    wire.make_ascii_lowercase();
    wire
}

/// A user name as the envelope stores it: ASCII, right-padded with spaces to 6 bytes.
pub fn user_wire(name: &str) -> [u8; 6] {
    let mut wire = [b' '; 6];
    for (slot, byte) in wire.iter_mut().zip(name.bytes()) {
        *slot = byte;
    }
    wire
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_engine::Engine;
    use keel_protocol::ouch::{
        CancelOrder, CustomerType, EnterOrder, ReplaceOrder, TimeInForce as OuchTif,
    };

    fn enter(token: &str, side: BuySellIndicator, shares: u32, price: u32) -> Vec<u8> {
        let message = InboundMessage::EnterOrder(EnterOrder {
            order_token: OrderToken::new(token).unwrap(),
            side,
            shares,
            stock: Stock::new("BTC-PERP").unwrap(),
            price: Price(price),
            time_in_force: OuchTif::SYSTEM_HOURS,
            firm: Firm::new("FIRM").unwrap(),
            display: DisplayType::Anonymous,
            capacity: Capacity::Agency,
            intermarket_sweep: IntermarketSweepEligibility::NotEligible,
            minimum_quantity: 0,
            cross_type: CrossType::NoCross,
            customer_type: CustomerType::NotRetailDesignated,
        });
        let mut bytes = Vec::new();
        message.encode(&mut bytes);
        bytes
    }

    fn encode(message: InboundMessage) -> Vec<u8> {
        let mut bytes = Vec::new();
        message.encode(&mut bytes);
        bytes
    }

    /// Runs inputs live (intake → engine → outcome) and returns the journal it implies.
    fn run_live(
        book: &mut SessionBook,
        engine: &mut Engine,
        inputs: &[(usize, Vec<u8>)],
    ) -> Vec<(u64, Envelope, Vec<Event>)> {
        let mut journal = Vec::new();
        let mut seq = 0;
        let start = Envelope::new(Origin::SessionStart, 1_000, [b' '; 6], 0, &[], None).unwrap();
        let mut define = |envelope: Envelope,
                          engine: &mut Engine,
                          book: &mut SessionBook,
                          journal: &mut Vec<_>| {
            seq += 1;
            let mut events = Vec::new();
            if let Some(command) = &envelope.command {
                engine.process(command, &mut events);
            }
            book.outcome(seq, &envelope, &events);
            journal.push((seq, envelope, events));
        };
        define(start, engine, book, &mut journal);
        let instrument = Envelope::new(
            Origin::Configuration,
            2_000,
            [b' '; 6],
            0,
            &[],
            Some(Command::DefineInstrument {
                instrument: 1,
                symbol: keel_engine::Symbol::new("BTC-PERP").unwrap(),
            }),
        )
        .unwrap();
        define(instrument, engine, book, &mut journal);
        for (index, (user, message)) in inputs.iter().enumerate() {
            let envelope = book.intake(*user, 10_000 + index as u64, message).unwrap();
            define(envelope, engine, book, &mut journal);
        }
        journal
    }

    fn streams(book: &SessionBook) -> Vec<Vec<Vec<u8>>> {
        book.users
            .iter()
            .map(|u| {
                (0..u.stream.len())
                    .map(|i| u.stream.message(i).to_vec())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn replaying_the_journal_rebuilds_identical_streams() {
        let config = Config::embedded_default();
        let mut live = SessionBook::new(&config).unwrap();
        let mut engine = Engine::default();
        let (alice, bob) = (0, 1);
        let inputs = vec![
            (alice, enter("A1", BuySellIndicator::Sell, 10, 1_002_500)),
            (bob, enter("B1", BuySellIndicator::Buy, 4, 1_003_000)),
            (bob, enter("B1", BuySellIndicator::Buy, 4, 1_003_000)), // reused token
            (
                alice,
                encode(InboundMessage::CancelOrder(CancelOrder {
                    order_token: OrderToken::new("A1").unwrap(),
                    shares: 3,
                })),
            ),
            (
                alice,
                encode(InboundMessage::ReplaceOrder(ReplaceOrder {
                    existing_order_token: OrderToken::new("A1").unwrap(),
                    replacement_order_token: OrderToken::new("A2").unwrap(),
                    shares: 5,
                    price: Price(1_002_000),
                    time_in_force: OuchTif::SYSTEM_HOURS,
                    display: DisplayType::Anonymous,
                    intermarket_sweep: IntermarketSweepEligibility::NotEligible,
                    minimum_quantity: 0,
                })),
            ),
            (bob, enter("B2", BuySellIndicator::Buy, 9, 1_002_000)),
            (
                alice,
                encode(InboundMessage::CancelOrder(CancelOrder {
                    order_token: OrderToken::new("A1").unwrap(), // replaced away: unknown now
                    shares: 0,
                })),
            ),
        ];
        let journal = run_live(&mut live, &mut engine, &inputs);
        let mut replayed = SessionBook::new(&config).unwrap();
        for (seq, envelope, events) in &journal {
            replayed.replay(*seq, envelope, events);
        }
        assert_eq!(streams(&replayed), streams(&live));
        // The streams say what happened: alice's are S, A, E, C(3), U, E, I.
        let types: Vec<u8> = streams(&live)[alice].iter().map(|m| m[0]).collect();
        assert_eq!(types, b"SAECUEI".to_vec());
        let bob_types: Vec<u8> = streams(&live)[bob].iter().map(|m| m[0]).collect();
        assert_eq!(bob_types, b"SAEJAE".to_vec());
        // Replay also restores token bookkeeping: the same reuse is refused again.
        let again = replayed.intake(bob, 99, &inputs[1].1).unwrap();
        assert!(again.command.is_none() && again.reject == RejectReason::Other.code());
    }
}
