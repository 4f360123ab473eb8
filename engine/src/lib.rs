//! Keel's matching engine.
//!
//! A pure, deterministic state machine: [`Engine::process`] takes a [`Command`] and writes
//! [`Event`]s. It does no I/O, reads no clock, starts no thread and uses no floating point,
//! so the same commands always produce byte-identical events and state on every replica.
//! Prices are `i64` ticks, quantities `u64` lots.
//!
//! Commands have one canonical byte encoding ([`Command::encode_into`], [`Command::decode`]),
//! which is what the journal stores and replicas replay; the whole state has one canonical
//! sequence of leaves ([`Engine::visit_state_leaves`], [`Engine::from_state_leaves`]), which
//! is what snapshots hold and state roots hash. After every command, in release builds too,
//! an O(1) check confirms that quantity is conserved ([`Ledger`]); debug builds also check
//! that no book is crossed, and [`Engine::check_invariants`] walks the whole state.
//!
//! ```
//! use keel_engine::*;
//! let mut engine = Engine::default();
//! let mut events = Vec::new();
//! engine.process(&Command::DefineInstrument { instrument: 1, symbol: Symbol::new("BTC-PERP")? }, &mut events);
//! let order = |order_id, side, price| Command::New(NewOrder {
//!     order_id, account: order_id, instrument: 1, side, price: Some(price), qty: 10,
//!     tif: TimeInForce::Gtc, post_only: false, stp: SelfTradePrevention::None,
//! });
//! engine.process(&order(1, Side::Sell, 100), &mut events);
//! engine.process(&order(2, Side::Buy, 101), &mut events);
//! assert!(events.iter().any(|e| matches!(e, Event::Trade { price: 100, qty: 10, .. })));
//! # Ok::<(), keel_engine::Error>(())
//! ```
#![deny(missing_docs)]

mod codec;
mod command;
mod engine;
mod error;
mod event;
mod ids;
mod ladder;
mod slab;
mod types;

pub use codec::COMMAND_BYTES_MAX;
pub use command::{Command, NewOrder};
pub use engine::{Engine, EngineConfig, Ledger, RestingOrder, STATE_LEAF_BYTES_MAX, STATE_VERSION};
pub use error::Error;
pub use event::{Event, EventSink};
pub use types::{
    AccountId, AmendRejectReason, CancelReason, InstrumentId, InstrumentRejectReason, OrderId,
    Price, Qty, RejectReason, SelfTradePrevention, Side, Symbol, TimeInForce, SYMBOL_BYTES_MAX,
};
