//! Simulated power loss: storage that forgets what was never synced.
//!
//! Each seed runs a real journal, records the *disk image* at a completed sync (everything
//! appended so far is durable and the durable marker is on disk), appends more without
//! waiting, and then "loses power": the crash image is the synced image plus a random subset
//! of 512-byte sectors of the later, unsynced writes (kernels write dirty pages back in any
//! order, so any subset can have reached the disk). Segment headers keep their synced bytes:
//! a newer durable marker only reaches the disk with a sync, which this crash pre-empts.
//!
//! Recovery of every crash image must succeed (never "corruption"), keep every record up to
//! the durable watermark intact, and yield a prefix of what was appended.
//!
//! Seeds: `KEEL_SIM_SEEDS` (default 60 for CI; run e.g. `KEEL_SIM_SEEDS=3000 cargo test
//! --release -p keel-journal --test storage_simulation` locally); `KEEL_SIM_SEED=n` replays one.

// Test helpers unwrap: a failure there is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;

use keel_journal::format::{read_marker, MARKER_SLOT_OFFSET, SEGMENT_HEADER_BYTES};
use keel_journal::{offline_reader, Journal, JournalConfig};
use keel_testkit::rng::Rng;

const SECTOR_BYTES: usize = 512;

fn payload(seq: u64) -> Vec<u8> {
    let len = 1 + (seq * 13 % 200) as usize;
    (0..len).map(|i| (seq as u8) ^ (i as u8)).collect()
}

type Image = BTreeMap<String, Vec<u8>>;

fn read_image(dir: &Path) -> Image {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .map(|p| {
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

fn max_marker(image: &Image) -> u64 {
    image
        .values()
        .filter_map(|b| read_marker(b))
        .max()
        .unwrap_or(0)
}

/// The synced image, with each sector of later writes independently reaching the disk
/// with probability `keep_per_mille`/1000. Headers stay as synced.
fn crash_image(synced: &Image, current: &Image, keep_per_mille: u64, rng: &mut Rng) -> Image {
    let mut out = Image::new();
    for (name, now) in current {
        // A segment created after the synced image was created synced (zero-filled with its
        // header); only its later writes are at risk.
        let mut bytes = synced.get(name).cloned().unwrap_or_else(|| {
            // Created with empty marker slots; markers written later are unsynced too.
            let mut fresh = vec![0u8; now.len()];
            fresh[..MARKER_SLOT_OFFSET].copy_from_slice(&now[..MARKER_SLOT_OFFSET]);
            fresh
        });
        for start in (0..now.len()).step_by(SECTOR_BYTES) {
            let end = (start + SECTOR_BYTES).min(now.len());
            if bytes[start..end] != now[start..end] && rng.below(1000) < keep_per_mille {
                let from = start.max(SEGMENT_HEADER_BYTES);
                bytes[from..end].copy_from_slice(&now[from..end]);
            }
        }
        out.insert(name.clone(), bytes);
    }
    out
}

fn run_seed(seed: u64) {
    let mut rng = Rng::new(seed);
    let live = tempfile::tempdir().unwrap();
    let config = JournalConfig {
        segment_size_bytes: 4096 * (2 + rng.below(3)),
        ..JournalConfig::default()
    };
    let (mut journal, _) = Journal::open(live.path(), config).unwrap();
    let mut next = 1u64;
    let mut append = |journal: &mut Journal, count: u64| {
        for _ in 0..count {
            assert_eq!(
                journal.appender().append_payload(&payload(next)).unwrap(),
                next
            );
            next += 1;
        }
    };
    for _ in 0..1 + rng.below(4) {
        let count = rng.below(60);
        append(&mut journal, count);
    }
    // A completed sync, with its marker on disk: this is what the disk is guaranteed to hold.
    journal.wait_durable().unwrap();
    let durable = journal.watermarks().durable();
    let synced = loop {
        let image = read_image(live.path());
        if durable == 0 || max_marker(&image) >= durable {
            break image;
        }
        std::thread::yield_now();
    };
    // More appends that the crash will (partly) lose.
    let count = rng.below(120);
    append(&mut journal, count);
    let current = read_image(live.path());
    drop(journal);

    let keep = [0, 10, 500, 990, 1000][rng.below(5) as usize];
    let crashed = tempfile::tempdir().unwrap();
    for (name, bytes) in crash_image(&synced, &current, keep, &mut rng) {
        std::fs::write(crashed.path().join(name), bytes).unwrap();
    }
    let (journal, recovery) = Journal::open(crashed.path(), config)
        .unwrap_or_else(|e| panic!("seed {seed}: recovery refused a crash image: {e}"));
    journal.close().unwrap();
    let last = recovery.scan.last_seq;
    assert!(
        last >= durable,
        "seed {seed}: durable records lost ({last} < {durable})"
    );
    let (mut reader, _) = offline_reader(crashed.path(), 1).unwrap();
    let mut seen = 0;
    while let Some(record) = reader.next().unwrap() {
        seen += 1;
        assert_eq!(record.seq, seen, "seed {seed}");
        assert_eq!(
            record.payload,
            payload(seen).as_slice(),
            "seed {seed}: record {seen}"
        );
    }
    assert_eq!(seen, last, "seed {seed}");
    assert!(last < next, "seed {seed}: recovered records never appended");
}

#[test]
fn power_loss_never_loses_durable_records() {
    if let Some(seed) = std::env::var("KEEL_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        run_seed(seed);
        return;
    }
    let seeds: u64 = std::env::var("KEEL_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    for seed in 0..seeds {
        run_seed(seed);
    }
}

/// Every file of a journal directory (segments and snapshots), by name.
fn read_dir_image(dir: &Path) -> Image {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// A crash between two synced states: each file is present as before or as after (an
/// unsynced creation or removal may or may not have reached the disk), and each sector of a
/// file present in both is the old or the new one.
fn mixed_image(before: &Image, after: &Image, rng: &mut Rng) -> Image {
    let mut out = Image::new();
    let names: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for name in names {
        let bytes = match (before.get(name), after.get(name)) {
            (Some(old), Some(new)) if old.len() == new.len() => {
                let mut bytes = old.clone();
                for start in (0..new.len()).step_by(SECTOR_BYTES) {
                    let end = (start + SECTOR_BYTES).min(new.len());
                    if rng.below(2) == 0 {
                        bytes[start..end].copy_from_slice(&new[start..end]);
                    }
                }
                Some(bytes)
            }
            (old, new) => {
                if rng.below(2) == 0 {
                    old.cloned()
                } else {
                    new.cloned()
                }
            }
        };
        if let Some(bytes) = bytes {
            out.insert(name.clone(), bytes);
        }
    }
    out
}

/// Opens a crash image the way a restarting node does and checks it: recovery succeeds,
/// records 1..=`last_kept` are intact, nothing past the original end appears, no snapshot is
/// ahead of the journal, and redoing the cut ends at exactly `last_kept`.
fn check_truncation_crash_image(
    image: &Image,
    config: JournalConfig,
    last_kept: u64,
    last: u64,
    what: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in image {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let (journal, recovery) = Journal::open(dir.path(), config)
        .unwrap_or_else(|e| panic!("{what}: recovery refused a crash image: {e}"));
    journal.close().unwrap();
    let recovered = recovery.scan.last_seq;
    assert!(
        (last_kept..=last).contains(&recovered),
        "{what}: recovered {recovered} records, kept {last_kept} of {last}"
    );
    let snapshots = keel_journal::snapshot::list_snapshots(dir.path()).unwrap();
    assert!(
        snapshots.iter().all(|&seq| seq <= recovered),
        "{what}: snapshot {snapshots:?} ahead of the journal's end {recovered}"
    );
    keel_journal::truncate_after(dir.path(), last_kept).unwrap();
    let (mut reader, scan) = offline_reader(dir.path(), 1).unwrap();
    assert_eq!(scan.last_seq, last_kept, "{what}");
    let mut seen = 0;
    while let Some(record) = reader.next().unwrap() {
        seen += 1;
        assert_eq!(
            record.payload,
            payload(seen).as_slice(),
            "{what}: record {seen}"
        );
    }
    assert_eq!(seen, last_kept, "{what}");
}

/// Crashes `truncate_after` at every step and between every two steps.
///
/// The cut runs on a real journal; the step hook copies the directory after each synced
/// step. A crash image is one of those copies, or (a crash during a step) a random mix of
/// the copies before and after that step, sector by sector and file by file: storage that
/// forgets whatever the step wrote but had not synced yet. This models the implementation
/// only as far as its steps really sync before the hook runs (they do: each step ends with
/// `fdatasync`/`msync` of what it wrote or a directory `fsync`).
fn run_truncation_seed(seed: u64) {
    let mut rng = Rng::new(seed);
    let live = tempfile::tempdir().unwrap();
    let config = JournalConfig {
        segment_size_bytes: 4096 * (2 + rng.below(2)),
        ..JournalConfig::default()
    };
    let (mut journal, _) = Journal::open(live.path(), config).unwrap();
    let last = 20 + rng.below(150);
    for seq in 1..=last {
        journal.appender().append_payload(&payload(seq)).unwrap();
    }
    // Close syncs everything and persists the marker: it says `last`, above the cut.
    journal.close().unwrap();
    let last_kept = rng.below(last);
    // Snapshot files on both sides of the cut (only their names matter to the journal).
    for seq in [last_kept / 2, last_kept + 1 + rng.below(last - last_kept)] {
        let name = keel_journal::snapshot::snapshot_file_name(seq);
        std::fs::write(live.path().join(name), b"snapshot stand-in").unwrap();
    }
    let mut images = vec![read_dir_image(live.path())];
    let mut steps = Vec::new();
    let dir = live.path().to_path_buf();
    let dropped = keel_journal::truncate_after_with_steps(&dir, last_kept, &mut |step| {
        steps.push(step);
        images.push(read_dir_image(&dir));
    })
    .unwrap();
    assert_eq!(dropped, last - last_kept, "seed {seed}");
    for (k, pair) in images.windows(2).enumerate() {
        let what = format!(
            "seed {seed}, cut after {last_kept} of {last}, step {k} {:?}",
            steps[k]
        );
        check_truncation_crash_image(&pair[1], config, last_kept, last, &what);
        for mix in 0..4 {
            let image = mixed_image(&pair[0], &pair[1], &mut rng);
            check_truncation_crash_image(
                &image,
                config,
                last_kept,
                last,
                &format!("{what}, mix {mix}"),
            );
        }
    }
    assert!(
        matches!(
            steps.first(),
            Some(keel_journal::TruncationStep::MarkerLowered(_))
        ),
        "seed {seed}: markers not lowered first: {steps:?}"
    );
}

#[test]
fn truncation_survives_a_crash_at_every_step() {
    if let Some(seed) = std::env::var("KEEL_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        run_truncation_seed(seed);
        return;
    }
    let seeds: u64 = std::env::var("KEEL_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    for seed in 0..seeds {
        run_truncation_seed(seed);
    }
}
