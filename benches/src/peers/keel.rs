//! Keel's own engine behind the [`PeerBook`] interface: the reference the peers are
//! measured against, driven exactly as `keel-perf engine` drives it (one reusable event
//! sink, cleared before each command), plus a scan of the events for the tally.

use keel_engine::{Command, Engine, Event, Side};

use super::{BookState, PeerBook, PeerInfo, Tally};

/// Keel's [`Engine`] with its event sink and tally.
pub struct KeelBook {
    engine: Engine,
    sink: Vec<Event>,
    tally: Tally,
    /// The one instrument seen defined, for [`PeerBook::book_state`].
    instrument: Option<keel_engine::InstrumentId>,
}

impl PeerBook for KeelBook {
    const INFO: PeerInfo = PeerInfo {
        name: "keel",
        krate: "keel-engine (this workspace)",
        mapping: &["every command native (the stream is Keel's)"],
        fairness: &[
            "does more per command than any peer here: per-account ownership checks on \
             cancel/replace, self-trade prevention check (off in this mix), order-id \
             reuse detection, quantity ledger, and an event per outcome (accepted, \
             trade, canceled, replaced) written to a sink",
            "the tally scan of the events (to count trades) is inside the timed loop, as \
             every peer's trade counting is",
        ],
    };

    fn new() -> Self {
        KeelBook {
            engine: Engine::default(),
            sink: Vec::with_capacity(4_096),
            tally: Tally::default(),
            instrument: None,
        }
    }

    fn apply(&mut self, command: &Command) {
        if let Command::DefineInstrument { instrument, .. } = command {
            self.instrument = Some(*instrument);
        } else {
            self.tally.commands += 1;
        }
        self.sink.clear();
        self.engine.process(command, &mut self.sink);
        for event in &self.sink {
            match event {
                Event::Trade { qty, .. } => {
                    self.tally.trades += 1;
                    self.tally.traded_qty += qty;
                }
                Event::Rejected { .. }
                | Event::CancelRejected { .. }
                | Event::ReplaceRejected { .. } => self.tally.refused += 1,
                _ => {}
            }
        }
    }

    fn tally(&self) -> Tally {
        self.tally
    }

    fn reset_tally(&mut self) {
        self.tally = Tally::default();
    }

    fn book_state(&self) -> BookState {
        let Some(instrument) = self.instrument else {
            return BookState::default();
        };
        let (best_bid, best_ask) = self.engine.best_prices(instrument).unwrap_or((None, None));
        let mut resting_qty = 0;
        let mut resting_orders = 0;
        for side in [Side::Buy, Side::Sell] {
            for order in self
                .engine
                .resting_orders(instrument, side)
                .into_iter()
                .flatten()
            {
                resting_qty += order.qty;
                resting_orders += 1;
            }
        }
        BookState {
            best_bid,
            best_ask,
            resting_qty,
            resting_orders: Some(resting_orders),
        }
    }
}
