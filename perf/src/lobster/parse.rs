//! Bounded parsing of LOBSTER message and orderbook CSV files.
//!
//! Both files are plain comma-separated integers (the message time is a decimal). Lines and
//! field counts are capped so that a wrong or hostile file fails fast with an error naming
//! `file:line` instead of exhausting memory; every number is parsed strictly (no floats,
//! no silent truncation).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{bail, Context};

/// Longest line accepted, bytes. A 200-level orderbook row (LOBSTER's deepest offer) is
/// about 800 fields of at most 11 characters, under 10 KiB.
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// Most orderbook levels accepted (4 fields each).
pub const MAX_LEVELS: usize = 200;
/// Most rows accepted per file: a busy full trading day is a few tens of millions.
pub const MAX_ROWS: usize = 100_000_000;

/// One message-file row: an event that changed the visible book.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    /// 1-based row number in the message file; orderbook row `row` is the book after it.
    pub row: usize,
    /// Seconds after midnight as integer nanoseconds (the file has up to 9 decimals).
    pub time_ns: u64,
    /// Event type: 1 new, 2 partial cancel, 3 delete, 4 visible execution, 5 hidden
    /// execution, 6 cross trade, 7 trading halt indicator.
    pub kind: u8,
    /// NASDAQ order reference number (0 for hidden executions).
    pub order_id: u64,
    /// Shares.
    pub size: u64,
    /// Dollars × 10000 (for type 7: -1 halt, 0 quoting resumes, 1 trading resumes).
    pub price: i64,
    /// 1 buy limit order, -1 sell limit order; for executions the resting order's side.
    pub direction: i8,
}

/// One price level of one side: price (dollars × 10000) and aggregate visible size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    /// Dollars × 10000.
    pub price: i64,
    /// Shares.
    pub size: u64,
}

/// One orderbook-file row: the top levels of both sides after the same-numbered message.
/// Empty levels (size 0, dummy price) are left out, so `asks.len() <= levels`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BookRow {
    /// Best (lowest) first.
    pub asks: Vec<Level>,
    /// Best (highest) first.
    pub bids: Vec<Level>,
}

/// Reads `path` line by line with the line cap, calling `each(line_number, line)`.
fn for_each_line(
    path: &Path,
    mut each: impl FnMut(usize, &str) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = BufReader::new(file);
    let mut buf = Vec::with_capacity(256);
    let mut line_number = 0usize;
    loop {
        buf.clear();
        // Read at most one byte past the cap: enough to tell an oversize line from a full one.
        let read = reader
            .by_ref()
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("{}:{}: read error", path.display(), line_number + 1))?;
        if read == 0 {
            return Ok(());
        }
        line_number += 1;
        if line_number > MAX_ROWS {
            bail!("{}: more than {MAX_ROWS} rows", path.display());
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        } else if buf.len() > MAX_LINE_BYTES {
            bail!(
                "{}:{line_number}: line longer than {MAX_LINE_BYTES} bytes",
                path.display()
            );
        }
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        let line = std::str::from_utf8(&buf)
            .map_err(|_| anyhow::anyhow!("{}:{line_number}: not UTF-8", path.display()))?;
        each(line_number, line)?;
    }
}

/// Parses a strict decimal integer (optional leading `-`, digits only).
fn int(field: &str, what: &str) -> Result<i64, String> {
    let digits = field.strip_prefix('-').unwrap_or(field);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what} {field:?} is not an integer"));
    }
    field
        .parse::<i64>()
        .map_err(|_| format!("{what} {field:?} is out of range"))
}

/// Parses a non-negative strict decimal integer.
fn uint(field: &str, what: &str) -> Result<u64, String> {
    if field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what} {field:?} is not a non-negative integer"));
    }
    field
        .parse::<u64>()
        .map_err(|_| format!("{what} {field:?} is out of range"))
}

/// Parses `seconds[.fraction]` (at most 9 decimals) into integer nanoseconds, without
/// floating point so that equal timestamps compare equal exactly.
fn time_ns(field: &str) -> Result<u64, String> {
    let bad = || format!("time {field:?} is not seconds with at most 9 decimals");
    let (secs, frac) = field.split_once('.').unwrap_or((field, ""));
    if secs.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let secs = uint(secs, "time").map_err(|_| bad())?;
    let mut nanos = 0u64;
    for position in 0..9 {
        let digit = frac
            .as_bytes()
            .get(position)
            .map_or(0, |b| u64::from(b - b'0'));
        nanos = nanos * 10 + digit;
    }
    secs.checked_mul(1_000_000_000)
        .and_then(|ns| ns.checked_add(nanos))
        .ok_or_else(bad)
}

/// Parses one message row (6 fields).
fn message(row: usize, line: &str) -> Result<Message, String> {
    let fields: Vec<&str> = line.splitn(8, ',').collect();
    if fields.len() != 6 {
        return Err(format!(
            "expected 6 comma-separated fields (time,type,order id,size,price,direction), found {}",
            if fields.len() > 6 {
                "more".to_string()
            } else {
                fields.len().to_string()
            }
        ));
    }
    let kind = uint(fields[1], "event type")?;
    if !(1..=7).contains(&kind) {
        return Err(format!("event type {kind} is not 1..=7"));
    }
    let direction = int(fields[5], "direction")?;
    if direction != 1 && direction != -1 {
        return Err(format!("direction {direction} is not 1 or -1"));
    }
    Ok(Message {
        row,
        time_ns: time_ns(fields[0])?,
        kind: kind as u8, // checked 1..=7 above
        order_id: uint(fields[2], "order id")?,
        size: uint(fields[3], "size")?,
        price: int(fields[4], "price")?,
        direction: direction as i8, // checked ±1 above
    })
}

/// Reads a whole LOBSTER message file.
pub fn read_messages(path: &Path) -> anyhow::Result<Vec<Message>> {
    let mut messages = Vec::new();
    for_each_line(path, |row, line| {
        let parsed =
            message(row, line).map_err(|e| anyhow::anyhow!("{}:{row}: {e}", path.display()))?;
        messages.push(parsed);
        Ok(())
    })?;
    Ok(messages)
}

/// Parses one orderbook row of `4 * levels` fields.
fn book_row(line: &str, levels: usize) -> Result<BookRow, String> {
    let mut row = BookRow::default();
    let mut fields = line.split(',');
    for level in 1..=levels {
        let mut next = |what: &str| {
            fields
                .next()
                .ok_or_else(|| {
                    format!(
                        "expected {} fields ({levels} levels), found fewer",
                        4 * levels
                    )
                })
                .and_then(|f| int(f, &format!("{what} {level}")))
        };
        let (ask_price, ask_size, bid_price, bid_size) = (
            next("ask price")?,
            next("ask size")?,
            next("bid price")?,
            next("bid size")?,
        );
        for (price, size, side, list) in [
            (ask_price, ask_size, "ask", &mut row.asks),
            (bid_price, bid_size, "bid", &mut row.bids),
        ] {
            let size =
                u64::try_from(size).map_err(|_| format!("{side} size {level} is negative"))?;
            if size == 0 {
                continue; // an empty level: its price is a dummy
            }
            if list.len() + 1 != level {
                return Err(format!("{side} level {level} follows an empty level"));
            }
            list.push(Level { price, size });
        }
    }
    if fields.next().is_some() {
        return Err(format!(
            "expected {} fields ({levels} levels), found more",
            4 * levels
        ));
    }
    Ok(row)
}

/// Reads a whole LOBSTER orderbook file; returns the number of levels (from the first row's
/// field count, which every row must share) and the rows.
pub fn read_orderbook(path: &Path) -> anyhow::Result<(usize, Vec<BookRow>)> {
    let mut levels = 0usize;
    let mut rows = Vec::new();
    for_each_line(path, |row, line| {
        if levels == 0 {
            // Count commas without splitting: the line is bounded, so this is too.
            let fields = line.bytes().filter(|&b| b == b',').count() + 1;
            if fields % 4 != 0 || fields / 4 > MAX_LEVELS {
                bail!(
                    "{}:{row}: an orderbook row has 4 fields per level and at most {MAX_LEVELS} levels; found {fields} fields",
                    path.display()
                );
            }
            levels = fields / 4;
        }
        let parsed =
            book_row(line, levels).map_err(|e| anyhow::anyhow!("{}:{row}: {e}", path.display()))?;
        rows.push(parsed);
        Ok(())
    })?;
    Ok((levels, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_exact_integers() {
        assert_eq!(time_ns("34200.015105074"), Ok(34_200_015_105_074));
        assert_eq!(time_ns("34200.0599"), Ok(34_200_059_900_000));
        assert_eq!(time_ns("5"), Ok(5_000_000_000));
        assert!(time_ns("1.0000000001").is_err());
        assert!(time_ns("1e3").is_err());
        assert!(time_ns("-1.5").is_err());
    }

    #[test]
    fn messages_are_strict() {
        let m = message(3, "34200.1,4,15818974,300,5794000,1").unwrap();
        assert_eq!(
            m,
            Message {
                row: 3,
                time_ns: 34_200_100_000_000,
                kind: 4,
                order_id: 15_818_974,
                size: 300,
                price: 5_794_000,
                direction: 1
            }
        );
        assert!(message(1, "1,1,1,1,1").unwrap_err().contains("found 5"));
        assert!(message(1, "1,1,1,1,1,1,1")
            .unwrap_err()
            .contains("found more"));
        assert!(message(1, "1,8,1,1,1,1").unwrap_err().contains("not 1..=7"));
        assert!(message(1, "1,1,1,1.5,1,1").unwrap_err().contains("size"));
        assert!(message(1, "1,1,1,1,1,0").unwrap_err().contains("direction"));
        assert!(message(1, "1,1,1,1,99999999999999999999,1")
            .unwrap_err()
            .contains("out of range"));
    }

    #[test]
    fn book_rows_drop_empty_levels() {
        let row = book_row("101,5,99,7,9999999999,0,-9999999999,0", 2).unwrap();
        assert_eq!(
            row.asks,
            vec![Level {
                price: 101,
                size: 5
            }]
        );
        assert_eq!(row.bids, vec![Level { price: 99, size: 7 }]);
        assert!(book_row("101,5,99", 1).unwrap_err().contains("fewer"));
        assert!(book_row("9999999999,0,99,7,105,1,98,1", 2)
            .unwrap_err()
            .contains("follows an empty level"));
    }
}
