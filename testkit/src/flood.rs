//! An idle-connection flood: what an attacker without the cluster secret can do to a port
//! that holds unauthenticated connections. Threads each hold one connection open, sending
//! nothing, and open the next as soon as the server closes it.

use std::io::{ErrorKind, Read};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::source::connect_from;

/// How long a flooding thread blocks in one read before checking whether to stop.
const POLL_MS: u64 = 50;
/// Pause after a failed connect (nothing listens yet), so a closed port is not spun on.
const RETRY_MS: u64 = 5;

/// A running flood; stopped (and its threads joined) by [`IdleFlood::stop`] or on drop.
pub struct IdleFlood {
    stop: Arc<AtomicBool>,
    opened: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<()>>,
}

impl IdleFlood {
    /// Starts `threads` flooding threads per source address in `from`, against `to`.
    pub fn start(to: SocketAddrV4, from: &[Ipv4Addr], threads: usize) -> IdleFlood {
        let stop = Arc::new(AtomicBool::new(false));
        let opened = Arc::new(AtomicUsize::new(0));
        let threads = from
            .iter()
            .flat_map(|&source| std::iter::repeat_n(source, threads))
            .map(|source| {
                let stop = Arc::clone(&stop);
                let opened = Arc::clone(&opened);
                std::thread::spawn(move || hold_connections(to, source, &stop, &opened))
            })
            .collect();
        IdleFlood {
            stop,
            opened,
            threads,
        }
    }

    /// Connections opened so far.
    pub fn opened(&self) -> usize {
        self.opened.load(Ordering::Relaxed)
    }

    /// Stops the flood; returns the connections it opened.
    pub fn stop(mut self) -> usize {
        self.halt();
        self.opened()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for IdleFlood {
    fn drop(&mut self) {
        self.halt();
    }
}

fn hold_connections(to: SocketAddrV4, from: Ipv4Addr, stop: &AtomicBool, opened: &AtomicUsize) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = connect_from(from, to) else {
            std::thread::sleep(Duration::from_millis(RETRY_MS));
            continue;
        };
        opened.fetch_add(1, Ordering::Relaxed);
        if stream
            .set_read_timeout(Some(Duration::from_millis(POLL_MS)))
            .is_err()
        {
            continue;
        }
        let mut byte = [0u8; 1];
        // Held until the server closes it (a read of 0, or an error other than the
        // timeout), or the flood stops.
        while !stop.load(Ordering::Relaxed) {
            match stream.read(&mut byte) {
                Err(error)
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                _ => break,
            }
        }
    }
}
