//! Shared helpers for the full-disk tests: a small ext4 image loop-mounted (as root), a
//! filler that takes its space, and sessions that stream orders until the node stops.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keel_protocol::ouch::{BuySellIndicator, OutboundMessage};

use crate::serve_support::{enter, token_of, Client, End, Packet, IOC};

const SECOND: Duration = Duration::from_secs(1);
/// Size of each loop-mounted file system.
pub const IMAGE_BYTES: u64 = 64 << 20;
/// Space the filler leaves free: less than one journal segment (1 MiB).
pub const LEFT_FREE_BYTES: u64 = 256 << 10;

/// A loop mount, or why the test cannot run: it fails (naming the reason) unless
/// `KEEL_SKIP_LOOP_MOUNT=1`, in which case `None` says to skip.
pub fn mount_or_skip(image: &Path, dir: &Path) -> Option<LoopMount> {
    match LoopMount::new(image, dir) {
        Ok(mount) => Some(mount),
        Err(why) if std::env::var("KEEL_SKIP_LOOP_MOUNT").as_deref() == Ok("1") => {
            eprintln!("full-disk test SKIPPED (KEEL_SKIP_LOOP_MOUNT=1): cannot loop-mount: {why}");
            None
        }
        Err(why) => panic!(
            "the full-disk test needs root and a loop device to mount a small ext4 and could \
             not: {why}\n(set KEEL_SKIP_LOOP_MOUNT=1 to skip it)"
        ),
    }
}

/// A small ext4 image mounted through a loop device; unmounted (and the loop device
/// detached) on drop.
pub struct LoopMount {
    /// The mount point.
    pub dir: PathBuf,
}

impl LoopMount {
    /// Makes an `IMAGE_BYTES` ext4 image at `image` and mounts it on `dir` (created if
    /// absent); says why if it cannot.
    pub fn new(image: &Path, dir: &Path) -> Result<LoopMount, String> {
        File::create(image)
            .and_then(|file| file.set_len(IMAGE_BYTES))
            .map_err(|e| format!("cannot create the image: {e}"))?;
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(image))?;
        fs::create_dir_all(dir).map_err(|e| format!("cannot create the mount point: {e}"))?;
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(image)
            .arg(dir))?;
        Ok(LoopMount {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        // `-d`: detach the loop device too (util-linux also sets autoclear for `-o loop`).
        let unmounted = Command::new("umount").arg("-d").arg(&self.dir).status();
        if !unmounted.is_ok_and(|status| status.success()) {
            // Still busy (a process not yet reaped): detach it from the tree at least.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Runs `command`; its standard error if it fails.
fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Fills the file system at `dir` with `dir/filler` until it is full, then frees
/// `LEFT_FREE_BYTES` of it. Returns the filler's path.
pub fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = File::create(&path).unwrap();
    let chunk = vec![0xA5u8; 1 << 20];
    let mut written: u64 = 0;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => {
                assert_eq!(error.raw_os_error(), Some(28), "filling: {error}");
                break;
            }
        }
    }
    file.sync_all().unwrap();
    file.set_len(written.saturating_sub(LEFT_FREE_BYTES))
        .unwrap();
    file.sync_all().unwrap();
    path
}

/// What one client saw.
#[derive(Default)]
pub struct Seen {
    /// Every Sequenced Data message, in order.
    pub messages: Vec<Vec<u8>>,
    /// Tokens of the orders it saw accepted.
    pub accepted: BTreeSet<String>,
    /// Tokens it sent.
    pub sent: BTreeSet<String>,
    /// Whether it was told End of Session.
    pub end_of_session: bool,
}

/// One session: a writer thread streams IOC orders (TCP pushes back when the node stops
/// reading), this thread reads every answer until End of Session or a closed connection.
pub fn stream_orders(addr: std::net::SocketAddr, user: &'static str) -> Seen {
    stream_orders_counting(addr, user, &Arc::new(AtomicUsize::new(0)))
}

/// [`stream_orders`], adding every Order Accepted to `accepted_total` as it arrives (so a
/// test can wait for acknowledgements before it fills the disk).
#[allow(dead_code)]
pub fn stream_orders_counting(
    addr: std::net::SocketAddr,
    user: &'static str,
    accepted_total: &Arc<AtomicUsize>,
) -> Seen {
    let (mut client, _) = Client::logged_in(addr, user, 1);
    let mut writer = client.stream.try_clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sent = BTreeSet::new();
            let letter = user[..1].to_uppercase();
            for i in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let token = format!("{letter}{i:09}");
                let mut bytes = Vec::new();
                enter(&token, BuySellIndicator::Buy, 1, "BTC-PERP", 100, IOC)
                    .encode_unsequenced(&mut bytes);
                if writer.write_all(&bytes).is_err() {
                    break;
                }
                sent.insert(token);
            }
            sent
        })
    };
    let mut seen = Seen::default();
    loop {
        match client.recv(30 * SECOND) {
            Ok(Packet::Data(bytes)) => {
                let message = OutboundMessage::decode(&bytes).unwrap();
                if let OutboundMessage::OrderAccepted(_) = message {
                    seen.accepted.insert(token_of(&message));
                    accepted_total.fetch_add(1, Ordering::Relaxed);
                }
                seen.messages.push(bytes);
            }
            Ok(Packet::Heartbeat) => {}
            Ok(Packet::End) => {
                seen.end_of_session = true;
                let mut after = Vec::new();
                assert!(
                    client.wait_closed(20 * SECOND, &mut after),
                    "{user}: open after End of Session"
                );
                assert!(after.is_empty(), "{user}: packets after End: {after:?}");
                break;
            }
            Ok(other) => panic!("{user}: unexpected {other:?}"),
            Err(End::Closed) => break,
            Err(End::Timeout) => {
                panic!("{user}: nothing for 30 s on an open connection (a zombie node)")
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = client.stream.shutdown(std::net::Shutdown::Both);
    seen.sent = sender.join().unwrap();
    seen
}
