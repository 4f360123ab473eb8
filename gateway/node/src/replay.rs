//! `keel replay`: the JSON-lines contract for driving the engine from a file.
//!
//! Input is one command per line (blank lines are skipped); output is one event per line,
//! in the order the engine emits them. The field names and values are a public contract,
//! documented in the README; extra fields and event types may be added, existing ones never
//! change. Parsing is strict: an unknown field or value stops the replay, because silently
//! ignoring a misspelt `post_only` could send a real order across the book.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use keel_engine::{
    Command, Engine, EngineConfig, Event, NewOrder, SelfTradePrevention, Side, Symbol, TimeInForce,
};
use keel_journal::format;
use keel_journal::merkle::{Hash, MerkleFrontier};
use keel_journal::{snapshot, Journal};
use serde::Deserialize;

use crate::Error;

/// Longest accepted input line. Longer lines are an error, so a runaway input cannot make
/// the replay buffer unbounded memory.
pub const LINE_BYTES_MAX: usize = 64 * 1024;

/// One command line as it appears in the input.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum JsonCommand {
    Instrument {
        instrument: u32,
        symbol: String,
    },
    New {
        order_id: u64,
        account: u64,
        instrument: u32,
        side: JsonSide,
        #[serde(default)]
        price: Option<i64>,
        qty: u64,
        #[serde(default)]
        tif: JsonTif,
        #[serde(default)]
        post_only: bool,
        #[serde(default)]
        stp: JsonStp,
    },
    Cancel {
        order_id: u64,
        account: u64,
    },
    Replace {
        order_id: u64,
        account: u64,
        price: i64,
        qty: u64,
    },
    Reduce {
        order_id: u64,
        account: u64,
        qty: u64,
    },
    MassCancel {
        account: u64,
        #[serde(default)]
        instrument: Option<u32>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum JsonSide {
    Buy,
    Sell,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum JsonTif {
    #[default]
    Gtc,
    Ioc,
    Fok,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum JsonStp {
    #[default]
    None,
    CancelNewest,
    CancelOldest,
    CancelBoth,
}

impl JsonCommand {
    fn into_command(self) -> Result<Command, String> {
        Ok(match self {
            JsonCommand::Instrument { instrument, symbol } => Command::DefineInstrument {
                instrument,
                symbol: Symbol::new(&symbol).map_err(|error| error.to_string())?,
            },
            JsonCommand::New {
                order_id,
                account,
                instrument,
                side,
                price,
                qty,
                tif,
                post_only,
                stp,
            } => Command::New(NewOrder {
                order_id,
                account,
                instrument,
                side: match side {
                    JsonSide::Buy => Side::Buy,
                    JsonSide::Sell => Side::Sell,
                },
                price,
                qty,
                tif: match tif {
                    JsonTif::Gtc => TimeInForce::Gtc,
                    JsonTif::Ioc => TimeInForce::Ioc,
                    JsonTif::Fok => TimeInForce::Fok,
                },
                post_only,
                stp: match stp {
                    JsonStp::None => SelfTradePrevention::None,
                    JsonStp::CancelNewest => SelfTradePrevention::CancelNewest,
                    JsonStp::CancelOldest => SelfTradePrevention::CancelOldest,
                    JsonStp::CancelBoth => SelfTradePrevention::CancelBoth,
                },
            }),
            JsonCommand::Cancel { order_id, account } => Command::Cancel { order_id, account },
            JsonCommand::Replace {
                order_id,
                account,
                price,
                qty,
            } => Command::Replace {
                order_id,
                account,
                price,
                qty,
            },
            JsonCommand::Reduce {
                order_id,
                account,
                qty,
            } => Command::Reduce {
                order_id,
                account,
                qty,
            },
            JsonCommand::MassCancel {
                account,
                instrument,
            } => Command::MassCancel {
                account,
                instrument,
            },
        })
    }
}

/// Parses one input line into a command. `line_number` (1-based) only labels errors.
pub fn parse_command(line: &str, line_number: u64) -> Result<Command, Error> {
    let parsed: JsonCommand = serde_json::from_str(line).map_err(|error| Error::BadLine {
        line: line_number,
        message: describe_json_error(&error),
    })?;
    parsed.into_command().map_err(|message| Error::BadLine {
        line: line_number,
        message,
    })
}

/// serde_json's message ends with " at line L column C" counted within our single line;
/// restate it as a column so the error names the input line number unambiguously.
fn describe_json_error(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    match text.strip_suffix(&suffix) {
        Some(message) => format!("{message} (column {})", error.column()),
        None => text,
    }
}

/// Writes one event as a JSON line.
pub fn write_event(out: &mut impl Write, event: &Event) -> std::io::Result<()> {
    match *event {
        Event::Accepted { order_id } => {
            writeln!(out, r#"{{"type":"accepted","order_id":{order_id}}}"#)
        }
        Event::Rejected { order_id, reason } => writeln!(
            out,
            r#"{{"type":"rejected","order_id":{order_id},"reason":"{}"}}"#,
            reason.as_str()
        ),
        Event::Trade {
            instrument,
            price,
            qty,
            taker_order_id,
            maker_order_id,
            taker_side,
            match_id,
        } => writeln!(
            out,
            r#"{{"type":"trade","instrument":{instrument},"price":{price},"qty":{qty},"taker_order_id":{taker_order_id},"maker_order_id":{maker_order_id},"taker_side":"{}","match_id":{match_id}}}"#,
            taker_side.as_str()
        ),
        Event::Canceled {
            order_id,
            qty,
            reason,
        } => writeln!(
            out,
            r#"{{"type":"canceled","order_id":{order_id},"qty":{qty},"reason":"{}"}}"#,
            reason.as_str()
        ),
        Event::Replaced {
            order_id,
            price,
            qty,
        } => writeln!(
            out,
            r#"{{"type":"replaced","order_id":{order_id},"price":{price},"qty":{qty}}}"#
        ),
        Event::CancelRejected { order_id, reason } => writeln!(
            out,
            r#"{{"type":"cancel_rejected","order_id":{order_id},"reason":"{}"}}"#,
            reason.as_str()
        ),
        Event::ReplaceRejected { order_id, reason } => writeln!(
            out,
            r#"{{"type":"replace_rejected","order_id":{order_id},"reason":"{}"}}"#,
            reason.as_str()
        ),
        Event::InstrumentRejected { instrument, reason } => writeln!(
            out,
            r#"{{"type":"instrument_rejected","instrument":{instrument},"reason":"{}"}}"#,
            reason.as_str()
        ),
    }
}

/// Writes one `book` line per defined instrument, ascending by id: each side best price
/// first, time priority within a price, as `[order_id, price, qty]` triples.
pub fn write_books(out: &mut impl Write, engine: &Engine) -> std::io::Result<()> {
    for (instrument, symbol) in engine.instruments() {
        let symbol = serde_json::to_string(symbol.as_str()).unwrap_or_default();
        write!(
            out,
            r#"{{"type":"book","instrument":{instrument},"symbol":{symbol},"bids":["#
        )?;
        write_side(out, engine, instrument, Side::Buy)?;
        write!(out, r#"],"asks":["#)?;
        write_side(out, engine, instrument, Side::Sell)?;
        writeln!(out, "]}}")?;
    }
    Ok(())
}

fn write_side(
    out: &mut impl Write,
    engine: &Engine,
    instrument: u32,
    side: Side,
) -> std::io::Result<()> {
    let Some(orders) = engine.resting_orders(instrument, side) else {
        return Ok(());
    };
    for (index, order) in orders.enumerate() {
        let separator = if index == 0 { "" } else { "," };
        write!(
            out,
            "{separator}[{},{},{}]",
            order.order_id, order.price, order.qty
        )?;
    }
    Ok(())
}

/// Reads the next line into `buf` (without its line ending). Returns `false` at end of input.
fn read_line(input: &mut impl BufRead, buf: &mut Vec<u8>, line: u64) -> Result<bool, Error> {
    buf.clear();
    let limit = LINE_BYTES_MAX as u64 + 1;
    let read = (&mut *input).take(limit).read_until(b'\n', buf)?;
    if read == 0 {
        return Ok(false);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    } else if buf.len() > LINE_BYTES_MAX {
        return Err(Error::LineTooLong {
            line,
            limit_bytes: LINE_BYTES_MAX,
        });
    }
    Ok(true)
}

/// What a replay did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Commands applied.
    pub commands: u64,
    /// Events written.
    pub events: u64,
}

/// `keel replay` without a journal: applies every command of `input` to a fresh engine,
/// printing its events; the journal root is computed over the records a journal would
/// hold. With `book`, prints every book and the roots after the last command.
pub fn run_unjournaled<R: Read>(
    input: &mut BufReader<R>,
    out: &mut impl Write,
    book: bool,
) -> Result<(), Error> {
    let mut engine = Engine::default();
    let mut frontier = MerkleFrontier::new();
    let mut log = CommandLog::None {
        frontier: &mut frontier,
        next_seq: 1,
    };
    let summary = replay(&mut engine, input, out, &mut log)
        .map_err(|error| Error::ReplayStopped(Box::new(error)))?;
    if book {
        write_books(out, &engine)?;
        write_roots(
            out,
            summary.commands,
            &frontier.root(),
            &snapshot::state_root(&engine),
        )?;
    }
    Ok(())
}

/// `keel replay --journal DIR` on a journal the caller opened (recovered) in `dir`: rebuilds
/// the engine from it, then appends every command of `input` before applying it, taking a
/// snapshot every `snapshot_every` commands (0: never). The snapshotter follows with its
/// own engine copy, and its final state must equal the replay's (a determinism check).
/// With `book`, prints every book and the roots after the last command. Closes the journal.
pub fn run_journaled<R: Read>(
    mut journal: Journal,
    dir: &Path,
    snapshot_every: u64,
    book: bool,
    input: &mut BufReader<R>,
    out: &mut impl Write,
) -> Result<(), Error> {
    let recovered =
        snapshot::recover_state(dir, journal.watermarks().clone(), EngineConfig::default())
            .map_err(Error::Recover)?;
    let mut engine = recovered.engine.clone();
    // The snapshotter follows the journal with its own engine copy: snapshots never pause
    // this loop, and its final state doubles as a determinism check.
    let snapshotter = snapshot::spawn_snapshotter(
        dir.to_path_buf(),
        journal.watermarks().clone(),
        recovered,
        snapshot_every,
    )?;
    let mut log = CommandLog::Journal(&mut journal);
    let replayed = replay(&mut engine, input, out, &mut log);
    let finished = snapshotter.finish();
    let closed = journal.close();
    replayed.map_err(|error| Error::ReplayStopped(Box::new(error)))?;
    let follower = finished.map_err(Error::Snapshotter)?;
    closed.map_err(Error::JournalClose)?;
    let root = snapshot::state_root(&engine);
    if root != follower.state_root() {
        return Err(Error::Determinism);
    }
    if book {
        write_books(out, &engine)?;
        write_roots(out, follower.seq, &follower.journal_root(), &root)?;
    }
    Ok(())
}

/// Held-back output is released at least this often, so a long replay's memory stays bounded.
const PENDING_OUTPUT_BYTES_MAX: usize = 1 << 20;

/// Where replayed commands are recorded before they are applied.
pub enum CommandLog<'a> {
    /// Not recorded; the journal root is still computed over the records a journal would
    /// hold, so it matches what `--journal` reports for the same commands.
    None {
        /// Merkle frontier over those virtual records.
        frontier: &'a mut MerkleFrontier,
        /// Sequence number the next command would get.
        next_seq: u64,
    },
    /// Appended to a journal; events are printed once acknowledged under its policy.
    Journal(&'a mut Journal),
}

impl CommandLog<'_> {
    /// Records `command`, returning its sequence number.
    fn append(&mut self, command: &Command, scratch: &mut Vec<u8>) -> Result<u64, Error> {
        match self {
            CommandLog::None { frontier, next_seq } => {
                let seq = *next_seq;
                scratch.clear();
                scratch.resize(format::record_span(command.encoded_len()), 0);
                format::write_record_with(
                    scratch,
                    seq,
                    format::RecordType::Command,
                    command.encoded_len(),
                    |buf| {
                        command.encode_into(buf);
                    },
                );
                let leaf_len = format::RECORD_HEADER_BYTES + command.encoded_len();
                frontier.push(&scratch[..leaf_len]);
                *next_seq += 1;
                Ok(seq)
            }
            CommandLog::Journal(journal) => Ok(journal.appender().append_command(command)?),
        }
    }

    /// Blocks until `seq` is acknowledged (durable under the `fsync` policy).
    fn wait_acknowledged(&mut self, seq: u64) -> Result<(), Error> {
        if let CommandLog::Journal(journal) = self {
            while journal.acknowledged() < seq {
                if journal.watermarks().failed() {
                    return Err(keel_journal::Error::SyncFailed.into());
                }
                std::thread::yield_now();
            }
        }
        Ok(())
    }
}

/// Applies every command line of `input` to `engine`, recording each in `log` first, and
/// writes the events to `out` — but only once their commands are acknowledged: output is
/// released whenever the input has nothing more buffered (group commit for a live feed)
/// and when the held-back output grows past a bound.
///
/// On a bad line, the events of all earlier lines are written (and flushed) first, then the
/// error names the line.
pub fn replay<R: std::io::Read>(
    engine: &mut Engine,
    input: &mut BufReader<R>,
    out: &mut impl Write,
    log: &mut CommandLog<'_>,
) -> Result<ReplaySummary, Error> {
    let mut summary = ReplaySummary::default();
    let mut line = Vec::with_capacity(256);
    let mut scratch = Vec::with_capacity(128);
    let mut events = Vec::with_capacity(64);
    let mut pending = Vec::with_capacity(64 * 1024);
    let mut last_seq = 0;
    let mut line_number = 0u64;
    let result = loop {
        match read_line(input, &mut line, line_number + 1) {
            Ok(true) => {}
            Ok(false) => break Ok(()),
            Err(error) => break Err(error),
        }
        line_number += 1;
        let command = match parse_line(&line, line_number) {
            Ok(Some(command)) => command,
            Ok(None) => continue,
            Err(error) => break Err(error),
        };
        last_seq = log.append(&command, &mut scratch)?;
        events.clear();
        engine.process(&command, &mut events);
        for event in &events {
            write_event(&mut pending, event)?;
        }
        summary.commands += 1;
        summary.events += events.len() as u64;
        if input.buffer().is_empty() || pending.len() >= PENDING_OUTPUT_BYTES_MAX {
            release(log, last_seq, &mut pending, out)?;
        }
    };
    release(log, last_seq, &mut pending, out)?;
    result.map(|()| summary)
}

/// Writes held-back output once everything up to `seq` is acknowledged.
fn release(
    log: &mut CommandLog<'_>,
    seq: u64,
    pending: &mut Vec<u8>,
    out: &mut impl Write,
) -> Result<(), Error> {
    if pending.is_empty() {
        return Ok(());
    }
    log.wait_acknowledged(seq)?;
    out.write_all(pending)?;
    out.flush()?;
    pending.clear();
    Ok(())
}

/// Parses one raw line: `None` for a blank line.
fn parse_line(line: &[u8], line_number: u64) -> Result<Option<Command>, Error> {
    let text = std::str::from_utf8(line).map_err(|_| Error::BadLine {
        line: line_number,
        message: "not valid UTF-8".into(),
    })?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    parse_command(text, line_number).map(Some)
}

/// Writes the `roots` line: the journal root over records `1..=seq` and the state root.
pub fn write_roots(
    out: &mut impl Write,
    seq: u64,
    journal_root: &Hash,
    state_root: &Hash,
) -> std::io::Result<()> {
    writeln!(
        out,
        r#"{{"type":"roots","seq":{seq},"journal_root":"{}","state_root":"{}"}}"#,
        hex(journal_root),
        hex(state_root)
    )
}

/// Lower-case hex of a hash.
pub fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a command as a `keel replay` input line (the inverse of [`parse_command`]).
pub fn write_command(out: &mut impl Write, command: &Command) -> std::io::Result<()> {
    match *command {
        Command::DefineInstrument { instrument, symbol } => writeln!(
            out,
            r#"{{"type":"instrument","instrument":{instrument},"symbol":{}}}"#,
            serde_json::to_string(symbol.as_str()).unwrap_or_default()
        ),
        Command::New(order) => {
            let price = order
                .price
                .map_or_else(|| "null".to_string(), |p| p.to_string());
            writeln!(
                out,
                r#"{{"type":"new","order_id":{},"account":{},"instrument":{},"side":"{}","price":{price},"qty":{},"tif":"{}","post_only":{},"stp":"{}"}}"#,
                order.order_id,
                order.account,
                order.instrument,
                order.side.as_str(),
                order.qty,
                order.tif.as_str(),
                order.post_only,
                order.stp.as_str()
            )
        }
        Command::Cancel { order_id, account } => writeln!(
            out,
            r#"{{"type":"cancel","order_id":{order_id},"account":{account}}}"#
        ),
        Command::Replace {
            order_id,
            account,
            price,
            qty,
        } => writeln!(
            out,
            r#"{{"type":"replace","order_id":{order_id},"account":{account},"price":{price},"qty":{qty}}}"#
        ),
        Command::Reduce {
            order_id,
            account,
            qty,
        } => writeln!(
            out,
            r#"{{"type":"reduce","order_id":{order_id},"account":{account},"qty":{qty}}}"#
        ),
        Command::MassCancel {
            account,
            instrument: Some(instrument),
        } => writeln!(
            out,
            r#"{{"type":"mass_cancel","account":{account},"instrument":{instrument}}}"#
        ),
        Command::MassCancel {
            account,
            instrument: None,
        } => writeln!(out, r#"{{"type":"mass_cancel","account":{account}}}"#),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_on(engine: &mut Engine, input: &str) -> (Result<ReplaySummary, Error>, String) {
        let mut out = Vec::new();
        let mut frontier = MerkleFrontier::new();
        let mut log = CommandLog::None {
            frontier: &mut frontier,
            next_seq: 1,
        };
        let result = replay(
            engine,
            &mut BufReader::new(input.as_bytes()),
            &mut out,
            &mut log,
        );
        (result, String::from_utf8(out).unwrap())
    }

    fn run(input: &str) -> (Result<ReplaySummary, Error>, String) {
        run_on(&mut Engine::default(), input)
    }

    #[test]
    fn defaults_apply_and_events_are_exact() {
        let (result, out) = run(concat!(
            r#"{"type":"instrument","instrument":1,"symbol":"BTC-PERP"}"#,
            "\n",
            r#"{"type":"new","order_id":7,"account":3,"instrument":1,"side":"sell","price":1005,"qty":10}"#,
            "\n\n",
            r#"{"type":"new","order_id":8,"account":4,"instrument":1,"side":"buy","price":null,"qty":3,"tif":"ioc"}"#,
            "\r\n",
        ));
        assert_eq!(
            result.unwrap(),
            ReplaySummary {
                commands: 3,
                events: 3
            }
        );
        assert_eq!(
            out,
            concat!(
                "{\"type\":\"accepted\",\"order_id\":7}\n",
                "{\"type\":\"accepted\",\"order_id\":8}\n",
                "{\"type\":\"trade\",\"instrument\":1,\"price\":1005,\"qty\":3,\"taker_order_id\":8,\"maker_order_id\":7,\"taker_side\":\"buy\",\"match_id\":1}\n",
            )
        );
    }

    #[test]
    fn bad_lines_name_their_line_number() {
        let (result, out) = run(concat!(
            r#"{"type":"instrument","instrument":1,"symbol":"X"}"#,
            "\n",
            r#"{"type":"new","order_id":1,"account":1,"instrument":1,"side":"buy","price":5,"qty":1}"#,
            "\n",
            r#"{"type":"new","order_id":2,"account":1,"instrument":1,"side":"buyy","price":5,"qty":1}"#,
            "\n",
        ));
        let error = result.unwrap_err().to_string();
        assert!(error.starts_with("line 3:"), "{error}");
        assert!(error.contains("buyy"), "{error}");
        assert_eq!(out, "{\"type\":\"accepted\",\"order_id\":1}\n");
    }

    #[test]
    fn strictness() {
        for (line, needle) in [
            (
                r#"{"type":"cancel","order_id":1,"account":1,"qyt":3}"#,
                "qyt",
            ),
            (r#"{"type":"cancel","order_id":-1,"account":1}"#, "-1"),
            (r#"{"type":"explode"}"#, "explode"),
            (
                r#"{"type":"replace","order_id":1,"account":1,"qty":3}"#,
                "price",
            ),
            (
                r#"{"type":"instrument","instrument":1,"symbol":""}"#,
                "empty",
            ),
            (r#"not json"#, "expected"),
            (
                r#"{"type":"new","order_id":1,"account":1,"instrument":1,"side":"buy","price":1.5,"qty":1}"#,
                "1.5",
            ),
        ] {
            let error = parse_command(line, 9).unwrap_err().to_string();
            assert!(error.starts_with("line 9:"), "{error}");
            assert!(error.contains(needle), "{line}: {error}");
        }
    }

    #[test]
    fn written_commands_parse_back_to_themselves() {
        let input = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/quickstart.jsonl"
        ))
        .unwrap();
        for (index, line) in input.lines().enumerate() {
            let command = parse_command(line, index as u64 + 1).unwrap();
            let mut written = Vec::new();
            write_command(&mut written, &command).unwrap();
            let text = String::from_utf8(written).unwrap();
            assert_eq!(
                parse_command(text.trim_end(), 1).unwrap(),
                command,
                "{text}"
            );
        }
    }

    #[test]
    fn overlong_lines_are_refused() {
        let long = format!("{}\n", " ".repeat(LINE_BYTES_MAX + 1));
        let (result, _) = run(&long);
        assert!(matches!(result, Err(Error::LineTooLong { line: 1, .. })));
        // Exactly at the limit is fine (and blank).
        let ok = format!("{}\n", " ".repeat(LINE_BYTES_MAX));
        assert!(run(&ok).0.is_ok());
    }

    #[test]
    fn books_are_printed_best_first_in_time_priority() {
        let mut engine = Engine::default();
        let mut out = Vec::new();
        let input = [
            r#"{"type":"instrument","instrument":2,"symbol":"ETH"}"#,
            r#"{"type":"instrument","instrument":1,"symbol":"BTC"}"#,
            r#"{"type":"new","order_id":1,"account":1,"instrument":1,"side":"buy","price":99,"qty":1}"#,
            r#"{"type":"new","order_id":2,"account":1,"instrument":1,"side":"buy","price":100,"qty":2}"#,
            r#"{"type":"new","order_id":3,"account":1,"instrument":1,"side":"buy","price":100,"qty":3}"#,
            r#"{"type":"new","order_id":4,"account":1,"instrument":1,"side":"sell","price":102,"qty":4}"#,
            r#"{"type":"new","order_id":5,"account":1,"instrument":1,"side":"sell","price":101,"qty":5}"#,
        ]
        .join("\n");
        run_on(&mut engine, &input).0.unwrap();
        write_books(&mut out, &engine).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            concat!(
                "{\"type\":\"book\",\"instrument\":1,\"symbol\":\"BTC\",\"bids\":[[2,100,2],[3,100,3],[1,99,1]],\"asks\":[[5,101,5],[4,102,4]]}\n",
                "{\"type\":\"book\",\"instrument\":2,\"symbol\":\"ETH\",\"bids\":[],\"asks\":[]}\n",
            )
        );
    }
}
