//! Corruption tests through the real `keel` binary: damage a journal written by
//! `keel replay --journal` (a flipped bit, a zeroed page, a truncated file) and check that
//! `keel journal verify` refuses it and names where, that recovery falls back from a damaged
//! snapshot, and that `keel journal repair` cuts a damaged journal back to a clean prefix.
//!
//! The journal is written with a clean exit, so its durable marker covers every record: any
//! damaged record is corruption, never a torn tail. The one exception is the never-written
//! zero area after the journal's end, where a stray byte looks exactly like the remains of an
//! interrupted write: verify may call that a torn tail (exit 0), but it must say so.
//!
//! The test reads segment files itself, from `journal/FORMAT.md` alone (128-byte header,
//! 24-byte record headers with the payload length at offset 4 and the type at 16, records
//! aligned to 8 bytes, a seal of type 2 ending a full segment), to know where every record
//! starts and so which offset verify must name.

// A failed unwrap or assertion in a test is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Output, Stdio};

use keel_engine::{Command, NewOrder, SelfTradePrevention, Side, Symbol, TimeInForce};
use keel_journal::format;
use keel_node::replay;

const COMMANDS: u64 = 5_300;
const SEGMENT_SIZE: &str = "65536";
const SNAPSHOT_EVERY: &str = "500";
const SEGMENT_HEADER_BYTES: usize = 128;
const RECORD_HEADER_BYTES: usize = 24;
const MARKER_SLOTS: std::ops::Range<usize> = 64..96;
/// Snapshot files start with a 128-byte header (its own checksum in the last four bytes).
const SNAPSHOT_HEADER_BYTES: usize = 128;

fn keel() -> Process {
    Process::new(env!("CARGO_BIN_EXE_keel"))
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A deterministic order flow: two instruments, then new orders with dense ids over a narrow
/// price range (so they trade), cancels and replaces of recent orders, some mass cancels.
fn input() -> String {
    let mut out = Vec::new();
    let mut write = |command: &Command| replay::write_command(&mut out, command).unwrap();
    for (instrument, symbol) in [(1, "BTC-PERP"), (2, "ETH-PERP")] {
        write(&Command::DefineInstrument {
            instrument,
            symbol: Symbol::new(symbol).unwrap(),
        });
    }
    let mut orders = 0u64;
    for i in 2..COMMANDS {
        let h = mix(i);
        let account = 1 + (h >> 4) % 5;
        let price = 95 + (h >> 8) as i64 % 11;
        let qty = 1 + (h >> 16) % 20;
        let target = orders.saturating_sub((h >> 24) % 64).max(1);
        let command = match h % 16 {
            0..=9 => {
                orders += 1;
                Command::New(NewOrder {
                    order_id: orders,
                    account,
                    instrument: 1 + ((h >> 32) & 1) as u32,
                    side: if (h >> 33) & 1 == 0 {
                        Side::Buy
                    } else {
                        Side::Sell
                    },
                    price: Some(price),
                    qty,
                    tif: if (h >> 34) % 8 == 0 {
                        TimeInForce::Ioc
                    } else {
                        TimeInForce::Gtc
                    },
                    post_only: false,
                    stp: if (h >> 37) % 4 == 0 {
                        SelfTradePrevention::CancelOldest
                    } else {
                        SelfTradePrevention::None
                    },
                })
            }
            10..=12 => Command::Cancel {
                order_id: target,
                account,
            },
            13..=14 => Command::Replace {
                order_id: target,
                account,
                price,
                qty,
            },
            _ => Command::MassCancel {
                account,
                instrument: Some(1 + ((h >> 32) & 1) as u32),
            },
        };
        write(&command);
    }
    String::from_utf8(out).unwrap()
}

/// One segment file as the format describes it.
#[derive(Clone, Debug)]
struct Segment {
    index: u64,
    path: PathBuf,
    len: usize,
    /// (offset, span) of every record, the seal included.
    records: Vec<(usize, usize)>,
    /// Offset just past the last record (or the seal).
    data_end: usize,
    sealed: bool,
}

impl Segment {
    fn read(path: &Path) -> Segment {
        let bytes = fs::read(path).unwrap();
        let index = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse().ok())
            .unwrap();
        let mut records = Vec::new();
        let mut pos = SEGMENT_HEADER_BYTES;
        let mut sealed = false;
        while pos + RECORD_HEADER_BYTES <= bytes.len() {
            let header = &bytes[pos..pos + RECORD_HEADER_BYTES];
            if header.iter().all(|&b| b == 0) {
                break;
            }
            let payload_len = u32::from_le_bytes(header[4..8].try_into().unwrap()) as usize;
            let record_type = u16::from_le_bytes(header[16..18].try_into().unwrap());
            let span = (RECORD_HEADER_BYTES + payload_len).next_multiple_of(8);
            records.push((pos, span));
            pos += span;
            if record_type == 2 {
                sealed = true;
                break;
            }
        }
        Segment {
            index,
            path: path.to_path_buf(),
            len: bytes.len(),
            records,
            data_end: pos,
            sealed,
        }
    }

    /// Offset of the record holding byte `pos`.
    fn record_at(&self, pos: usize) -> usize {
        self.records
            .iter()
            .find(|&&(start, span)| (start..start + span).contains(&pos))
            .map(|&(start, _)| start)
            .unwrap_or_else(|| panic!("no record at {pos} in segment {}", self.index))
    }
}

/// A journal written by `keel replay --journal` with a clean exit, and what it holds.
struct Fixture {
    temp: tempfile::TempDir,
    /// The journal as written; never modified.
    pristine: PathBuf,
    /// A copy the checks damage and restore.
    work: PathBuf,
    /// Where a whole copy is needed (recovery, repair).
    scratch: PathBuf,
    /// Segments holding records, ascending, then spares.
    data_segments: Vec<Segment>,
    spare_segments: Vec<Segment>,
    /// Snapshot files, newest first.
    snapshots: Vec<PathBuf>,
    /// The input the journal was written from.
    input: String,
    /// `book` and `roots` lines of a fresh replay of the whole input.
    books: Vec<String>,
    /// `keel journal dump` of the pristine journal.
    dump: String,
}

fn describe(output: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn book_lines(stdout: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| l.contains(r#""type":"book""#) || l.contains(r#""type":"roots""#))
        .map(str::to_owned)
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    if to.exists() {
        fs::remove_dir_all(to).unwrap();
    }
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn verify(dir: &Path) -> Output {
    keel()
        .args(["journal", "verify"])
        .arg(dir)
        .output()
        .unwrap()
}

/// The last sequence number `keel journal verify` printed.
fn last_seq(verify_output: &Output) -> u64 {
    String::from_utf8_lossy(&verify_output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("last sequence number:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no last sequence number\n{}", describe(verify_output)))
}

fn dump(dir: &Path) -> String {
    let output = keel().args(["journal", "dump"]).arg(dir).output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    String::from_utf8(output.stdout).unwrap()
}

/// `keel replay --journal DIR --book < /dev/null`.
fn recover(dir: &Path) -> Output {
    keel()
        .args(["replay", "--book", "--journal"])
        .arg(dir)
        .args(["--segment-size", SEGMENT_SIZE])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

impl Fixture {
    fn new() -> Fixture {
        let temp = tempfile::tempdir().unwrap();
        let input = input();
        let input_path = temp.path().join("input.jsonl");
        fs::write(&input_path, &input).unwrap();
        let pristine = temp.path().join("journal");
        let output = keel()
            .args(["replay", "--journal"])
            .arg(&pristine)
            .args(["--segment-size", SEGMENT_SIZE])
            .args(["--snapshot-every", SNAPSHOT_EVERY])
            .arg(&input_path)
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", describe(&output));
        let fresh = keel()
            .args(["replay", "--book"])
            .arg(&input_path)
            .output()
            .unwrap();
        assert!(fresh.status.success(), "{}", describe(&fresh));
        let books = book_lines(&fresh.stdout);

        let mut segments = Vec::new();
        let mut snapshots = Vec::new();
        for entry in fs::read_dir(&pristine).unwrap() {
            let path = entry.unwrap().path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("seg") => segments.push(Segment::read(&path)),
                Some("snap") => snapshots.push(path),
                _ => panic!("unexpected file {}", path.display()),
            }
        }
        segments.sort_by_key(|s| s.index);
        snapshots.sort();
        snapshots.reverse();
        let (data_segments, mut spare_segments): (Vec<_>, Vec<_>) =
            segments.into_iter().partition(|s| !s.records.is_empty());
        if spare_segments.is_empty() {
            // Whether the preparer had made the next segment before the clean exit is a
            // matter of timing; make sure there is one to damage, exactly as it makes them.
            let last = data_segments.last().unwrap();
            let index = last.index + 1;
            let mut bytes = format::segment_header(index, last.len as u64).to_vec();
            bytes.resize(last.len, 0);
            let path = pristine.join(format::segment_file_name(index));
            fs::write(&path, bytes).unwrap();
            spare_segments.push(Segment::read(&path));
        }
        println!(
            "journal layout: data {:?}, spare {:?}, snapshots {snapshots:?}",
            data_segments
                .iter()
                .map(|s| (s.index, s.records.len(), s.data_end, s.sealed))
                .collect::<Vec<_>>(),
            spare_segments.iter().map(|s| s.index).collect::<Vec<_>>()
        );
        // The layout the checks rely on: a sealed segment, then the open one.
        assert!(data_segments.len() >= 2, "{data_segments:#?}");
        assert!(data_segments[..data_segments.len() - 1]
            .iter()
            .all(|s| s.sealed));
        assert!(!data_segments.last().unwrap().sealed);
        assert_eq!(snapshots.len(), 2, "{snapshots:?}");

        let work = temp.path().join("work");
        copy_dir(&pristine, &work);
        let output = verify(&work);
        assert!(output.status.success(), "{}", describe(&output));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(!stdout.contains("torn"), "{stdout}");
        let fixture = Fixture {
            scratch: temp.path().join("scratch"),
            dump: dump(&pristine),
            temp,
            pristine,
            work,
            data_segments,
            spare_segments,
            snapshots,
            input,
            books,
        };
        // A clean recovery gives the fresh replay's books: the baseline for the fallbacks.
        copy_dir(&fixture.pristine, &fixture.scratch);
        let output = recover(&fixture.scratch);
        assert!(output.status.success(), "{}", describe(&output));
        assert_eq!(book_lines(&output.stdout), fixture.books);
        fixture
    }

    /// `book` and `roots` lines of `keel replay --book` over the first `n` input lines.
    fn fresh_books(&self, n: u64) -> Vec<String> {
        let path = self.temp.path().join("prefix.jsonl");
        let prefix: String = self.input.split_inclusive('\n').take(n as usize).collect();
        fs::write(&path, prefix).unwrap();
        let output = keel()
            .args(["replay", "--book"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", describe(&output));
        book_lines(&output.stdout)
    }

    /// The work copy of a file of the pristine journal.
    fn work_path(&self, pristine_path: &Path) -> PathBuf {
        self.work.join(pristine_path.file_name().unwrap())
    }

    /// Runs `check` on the work copy with `file` changed by `damage`, then restores it.
    fn with_damage<T>(
        &self,
        file: &Path,
        damage: impl FnOnce(&mut Vec<u8>),
        check: impl FnOnce(&Path) -> T,
    ) -> T {
        let path = self.work_path(file);
        let original = fs::read(&path).unwrap();
        let mut damaged = original.clone();
        damage(&mut damaged);
        assert_ne!(damaged, original, "the damage changed nothing");
        fs::write(&path, &damaged).unwrap();
        let result = check(&self.work);
        fs::write(&path, &original).unwrap();
        result
    }

    /// Asserts that verify fails on the work copy with `file` damaged, naming `segment` and
    /// `offset`.
    fn assert_detected(
        &self,
        file: &Path,
        damage: impl FnOnce(&mut Vec<u8>),
        segment: u64,
        offset: usize,
        what: &str,
    ) {
        let output = self.with_damage(file, damage, verify);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "{what}: verify did not fail\n{}",
            describe(&output)
        );
        let place = format!("segment {segment} at offset {offset}");
        assert!(
            stderr.contains(&place),
            "{what}: verify does not name {place}\n{}",
            describe(&output)
        );
    }
}

fn flip(pos: usize) -> impl FnOnce(&mut Vec<u8>) {
    move |bytes| bytes[pos] ^= 1 << (pos % 8)
}

/// About `count` positions spread evenly over `range`, plus its first and last byte.
fn spread(range: std::ops::Range<usize>, count: usize) -> Vec<usize> {
    let step = (range.len() / count).max(1);
    let mut positions: Vec<usize> = range.clone().step_by(step).collect();
    // Offset the samples within records a little so they do not all hit the same field.
    for (k, p) in positions.iter_mut().enumerate() {
        *p = (*p + (k * 7) % step).min(range.end - 1);
    }
    positions.push(range.end - 1);
    positions.dedup();
    positions
}

#[test]
fn every_segment_header_byte_is_checked() {
    let fixture = Fixture::new();
    for segment in fixture.data_segments.iter().chain(&fixture.spare_segments) {
        for pos in 0..SEGMENT_HEADER_BYTES {
            // A marker slot is its own unit: verify names the damaged slot.
            let offset = if MARKER_SLOTS.contains(&pos) {
                pos - (pos - MARKER_SLOTS.start) % 16
            } else {
                0
            };
            fixture.assert_detected(
                &segment.path,
                flip(pos),
                segment.index,
                offset,
                &format!("segment {} header byte {pos}", segment.index),
            );
        }
    }
}

#[test]
fn flips_in_the_record_area_are_detected_where_they_are() {
    let fixture = Fixture::new();
    for segment in &fixture.data_segments {
        for pos in spread(SEGMENT_HEADER_BYTES..segment.data_end, 150) {
            fixture.assert_detected(
                &segment.path,
                flip(pos),
                segment.index,
                segment.record_at(pos),
                &format!("segment {} byte {pos}", segment.index),
            );
        }
    }
}

#[test]
fn stray_bytes_after_the_data_are_reported() {
    let fixture = Fixture::new();
    let last = fixture.data_segments.len() - 1;
    for (k, segment) in fixture.data_segments.iter().enumerate() {
        for pos in spread(segment.data_end..segment.len, 25) {
            let what = format!("segment {} byte {pos} after the data", segment.index);
            let output = fixture.with_damage(&segment.path, flip(pos), verify);
            if k < last {
                // Nothing is ever written after a seal.
                assert!(!output.status.success(), "{what}\n{}", describe(&output));
                let place = format!("segment {} at offset {pos}", segment.index);
                assert!(
                    String::from_utf8_lossy(&output.stderr).contains(&place),
                    "{what}: does not name {place}\n{}",
                    describe(&output)
                );
            } else {
                // After the journal's end: corruption, or at least a reported torn tail.
                let reported = if output.status.success() {
                    String::from_utf8_lossy(&output.stdout).contains("torn tail")
                } else {
                    String::from_utf8_lossy(&output.stderr)
                        .contains(&format!("segment {}", segment.index))
                };
                assert!(reported, "{what}: not reported\n{}", describe(&output));
            }
        }
    }
    for segment in &fixture.spare_segments {
        for pos in spread(SEGMENT_HEADER_BYTES..segment.len, 25) {
            let what = format!("spare segment {} byte {pos}", segment.index);
            let output = fixture.with_damage(&segment.path, flip(pos), verify);
            let reported = if output.status.success() {
                String::from_utf8_lossy(&output.stdout).contains("torn tail")
            } else {
                String::from_utf8_lossy(&output.stderr)
                    .contains(&format!("segment {}", segment.index))
            };
            assert!(reported, "{what}: not reported\n{}", describe(&output));
        }
    }
}

#[test]
fn zeroed_pages_and_truncated_files_are_detected() {
    let fixture = Fixture::new();
    for segment in &fixture.data_segments {
        // A zeroed 4 KiB page in the middle of the records. Verify names the first record
        // it changes (one that straddles the page start may only lose zero padding).
        let page = (segment.data_end / 2) / 4096 * 4096;
        let bytes = fs::read(&segment.path).unwrap();
        let first_damaged = segment
            .records
            .iter()
            .find(|&&(start, span)| {
                let overlap = start.max(page)..(start + span).min(page + 4096);
                bytes
                    .get(overlap)
                    .is_some_and(|b| b.iter().any(|&x| x != 0))
            })
            .map(|&(start, _)| start)
            .unwrap();
        fixture.assert_detected(
            &segment.path,
            move |bytes| bytes[page..page + 4096].fill(0),
            segment.index,
            first_damaged,
            &format!("segment {} page at {page} zeroed", segment.index),
        );
    }
    for segment in fixture.data_segments.iter().chain(&fixture.spare_segments) {
        for len in [
            0,
            1,
            8,
            64,
            100,
            SEGMENT_HEADER_BYTES - 1,
            segment.len / 2,
            segment.len - 8,
        ] {
            fixture.assert_detected(
                &segment.path,
                move |bytes| bytes.truncate(len),
                segment.index,
                0,
                &format!("segment {} truncated to {len} bytes", segment.index),
            );
        }
    }
}

#[test]
fn every_snapshot_header_byte_and_a_sample_of_the_rest_is_checked() {
    let fixture = Fixture::new();
    for snapshot in &fixture.snapshots {
        let len = fs::metadata(snapshot).unwrap().len() as usize;
        let header = 0..SNAPSHOT_HEADER_BYTES.min(len);
        let body = spread(SNAPSHOT_HEADER_BYTES..len, 72);
        let name = snapshot.file_name().unwrap().to_string_lossy().into_owned();
        for pos in header.chain(body) {
            let output = fixture.with_damage(snapshot, flip(pos), verify);
            assert!(
                !output.status.success(),
                "{name} byte {pos}: verify did not fail\n{}",
                describe(&output)
            );
            assert!(
                String::from_utf8_lossy(&output.stderr).contains(&name),
                "{name} byte {pos}: verify does not name the snapshot\n{}",
                describe(&output)
            );
        }
        for len in [
            0,
            1,
            SNAPSHOT_HEADER_BYTES - 1,
            SNAPSHOT_HEADER_BYTES,
            len / 2,
            len - 1,
        ] {
            let output = fixture.with_damage(snapshot, move |b| b.truncate(len), verify);
            assert!(
                !output.status.success(),
                "{name} truncated to {len} bytes: verify did not fail\n{}",
                describe(&output)
            );
        }
    }
}

#[test]
fn recovery_falls_back_from_a_damaged_newest_snapshot() {
    let fixture = Fixture::new();
    let newest = &fixture.snapshots[0];
    let len = fs::metadata(newest).unwrap().len() as usize;
    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    let damages: Vec<(String, Damage)> = vec![
        ("magic".into(), Box::new(|b: &mut Vec<u8>| b[0] ^= 1)),
        (
            "sequence number".into(),
            Box::new(|b: &mut Vec<u8>| b[16] ^= 1),
        ),
        (
            "state root".into(),
            Box::new(|b: &mut Vec<u8>| b[50] ^= 0x80),
        ),
        (
            "header checksum".into(),
            Box::new(|b: &mut Vec<u8>| b[125] ^= 4),
        ),
        (
            "first body byte".into(),
            Box::new(|b: &mut Vec<u8>| b[SNAPSHOT_HEADER_BYTES] ^= 1),
        ),
        (
            "middle of the body".into(),
            Box::new(move |b: &mut Vec<u8>| b[(SNAPSHOT_HEADER_BYTES + len) / 2] ^= 0x10),
        ),
        (
            "body checksum".into(),
            Box::new(move |b: &mut Vec<u8>| b[len - 1] ^= 1),
        ),
        (
            "truncated to half".into(),
            Box::new(move |b: &mut Vec<u8>| b.truncate(len / 2)),
        ),
        ("emptied".into(), Box::new(|b: &mut Vec<u8>| b.clear())),
    ];
    let name = newest.file_name().unwrap();
    for (what, damage) in &damages {
        copy_dir(&fixture.pristine, &fixture.scratch);
        let path = fixture.scratch.join(name);
        let mut bytes = fs::read(&path).unwrap();
        damage(&mut bytes);
        fs::write(&path, bytes).unwrap();
        let output = recover(&fixture.scratch);
        assert!(
            output.status.success(),
            "newest snapshot {what}: recovery failed\n{}",
            describe(&output)
        );
        assert_eq!(
            book_lines(&output.stdout),
            fixture.books,
            "newest snapshot {what}: recovered books/roots differ"
        );
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("damaged snapshot"),
            "newest snapshot {what}: the fallback is not logged\n{}",
            describe(&output)
        );
    }
}

#[test]
fn repair_cuts_a_mid_journal_flip_back_to_a_prefix() {
    let fixture = Fixture::new();
    let original: Vec<&str> = fixture.dump.lines().collect();
    for segment in &fixture.data_segments {
        let pos = (SEGMENT_HEADER_BYTES + segment.data_end) / 2;
        let cut = segment.record_at(pos);
        copy_dir(&fixture.pristine, &fixture.scratch);
        let path = fixture.scratch.join(segment.path.file_name().unwrap());
        let mut bytes = fs::read(&path).unwrap();
        bytes[pos] ^= 0x20;
        fs::write(&path, bytes).unwrap();
        let what = format!("segment {} byte {pos}", segment.index);

        let output = verify(&fixture.scratch);
        assert!(!output.status.success(), "{what}: {}", describe(&output));
        // The node refuses to start on it, naming the place, and changes nothing.
        let output = recover(&fixture.scratch);
        assert!(!output.status.success(), "{what}: {}", describe(&output));
        let place = format!("segment {} at offset {cut}", segment.index);
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(&place),
            "{what}: recovery does not name {place}\n{}",
            describe(&output)
        );

        let output = keel()
            .args(["journal", "repair"])
            .arg(&fixture.scratch)
            .output()
            .unwrap();
        assert!(output.status.success(), "{what}: {}", describe(&output));
        let said = String::from_utf8_lossy(&output.stdout);
        assert!(
            said.contains(&format!("segment {} offset {cut}", segment.index)),
            "{what}: repair does not say where it cut\n{}",
            describe(&output)
        );
        let output = verify(&fixture.scratch);
        assert!(
            output.status.success(),
            "{what}: verify still fails after repair\n{}",
            describe(&output)
        );
        let repaired = dump(&fixture.scratch);
        let repaired: Vec<&str> = repaired.lines().collect();
        assert!(
            repaired.len() < original.len() && original.starts_with(&repaired),
            "{what}: the repaired journal ({} commands) is not a proper prefix of the original ({})",
            repaired.len(),
            original.len()
        );
        // And the node starts again from it (snapshots past the cut are gone), with the
        // state of that prefix of the input.
        let last = last_seq(&output);
        let output = recover(&fixture.scratch);
        assert!(
            output.status.success(),
            "{what}: recovery after repair failed\n{}",
            describe(&output)
        );
        assert_eq!(
            book_lines(&output.stdout),
            fixture.fresh_books(last),
            "{what}: recovered books/roots differ from a fresh replay of {last} commands"
        );
    }
}
