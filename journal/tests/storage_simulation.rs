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
