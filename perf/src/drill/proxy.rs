//! A fault-injecting TCP proxy on the cluster's peer links.
//!
//! Every node's configuration lists each *other* node at a proxy address (its own entry
//! stays its real Raft address, which is where it listens). Keel's peer transport dials one
//! connection per peer for its own outbound traffic and only accepts inbound connections to
//! receive (`replication/src/transport.rs`), so the connections node `from` dials to the
//! proxy listener of link `from → to` carry exactly the traffic from `from` to `to`: one
//! listener per directed link gives one-way partitions for free.
//!
//! A link either passes or is **blocked**. Blocked means silent, as a cut cable or a
//! firewall dropping packets is: bytes already in flight are held, not forwarded and not
//! discarded; connections stay open (no reset the node could notice); new connections are
//! accepted but not forwarded upstream. Unblocking forwards what was held, in order, and
//! connects the held new connections upstream (what TCP's retransmissions would do after
//! a short partition). The proxy forwards bytes untouched, so the nodes' authenticated
//! handshake and frame MACs work through it.
//!
//! Why hand-written: the fault has to be switched per directed link, at an exact moment
//! the drill knows (the outage is timed from it), from inside this process, and without
//! root, namespaces or `tc`/`iptables` state to clean up after a crash; the TCP proxy crates
//! (and toxiproxy, which is a separate Go server) either have no per-direction blackhole
//! that holds bytes, or are driven over HTTP with no way to know when a toxic took effect.
//! Threads and blocking std sockets are enough for six links of Raft traffic.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;

/// Connections one link carries at once; further ones are closed on accept (the transport
/// keeps at most one per peer, plus a redial or two while an old one dies).
const LINK_CONNECTIONS_MAX: usize = 16;
/// Bytes one pump reads at a time (its only buffer: a blocked link holds at most this per
/// direction and connection in the proxy; the rest waits in the kernel's socket buffers).
const PUMP_BUFFER_BYTES: usize = 64 * 1024;
/// How often a held pump or connection looks again whether its link is unblocked.
const HELD_POLL: Duration = Duration::from_millis(2);
/// Connecting upstream (to the real node) gives up after this; the dialer then redials.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A write the receiving node does not take within this fails the connection (a node
/// stopped with SIGSTOP stops reading; its peers' transports time out the same way).
const UPSTREAM_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// One directed link `from → to` (node indexes).
struct Link {
    from: usize,
    to: usize,
    upstream: SocketAddr,
    listen: SocketAddr,
    blocked: AtomicBool,
    connections: AtomicUsize,
    bytes_forwarded: AtomicU64,
}

/// State shared by the proxy's threads.
#[derive(Default)]
struct Shared {
    stopping: AtomicBool,
    /// Every open socket by id, so that [`Proxy::stop`] can unblock every thread.
    sockets: Mutex<BTreeMap<u64, TcpStream>>,
    next_socket: AtomicU64,
}

impl Shared {
    fn register(&self, stream: &TcpStream) -> Option<u64> {
        let clone = stream.try_clone().ok()?;
        let id = self.next_socket.fetch_add(1, Ordering::Relaxed);
        self.sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, clone);
        Some(id)
    }

    fn forget(&self, id: u64) {
        self.sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }
}

/// The proxy: its links and their threads. Dropping it stops everything.
pub struct Proxy {
    shared: Arc<Shared>,
    links: Vec<Arc<Link>>,
    threads: Vec<JoinHandle<()>>,
}

/// A link's figures, for the report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LinkStats {
    /// Node id that dials (sends).
    pub from_node: usize,
    /// Node id it reaches.
    pub to_node: usize,
    /// Bytes forwarded, both directions.
    pub bytes_forwarded: u64,
}

impl Proxy {
    /// A proxy with no link yet.
    pub fn new() -> Proxy {
        Proxy {
            shared: Arc::new(Shared::default()),
            links: Vec::new(),
            threads: Vec::new(),
        }
    }

    /// Adds the link `from → to` forwarding to `upstream` (node `to`'s real Raft address);
    /// returns the address node `from` must dial instead.
    pub fn add_link(
        &mut self,
        from: usize,
        to: usize,
        upstream: SocketAddr,
    ) -> anyhow::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").context("proxy: cannot bind")?;
        let listen = listener.local_addr()?;
        let link = Arc::new(Link {
            from,
            to,
            upstream,
            listen,
            blocked: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            bytes_forwarded: AtomicU64::new(0),
        });
        let shared = self.shared.clone();
        let accepting = link.clone();
        let thread = std::thread::Builder::new()
            .name(format!("drill-proxy-{}-{}", from + 1, to + 1))
            .spawn(move || accept_loop(&shared, &accepting, &listener))
            .context("proxy: cannot start a thread")?;
        self.threads.push(thread);
        self.links.push(link);
        Ok(listen)
    }

    fn link(&self, from: usize, to: usize) -> Option<&Arc<Link>> {
        self.links.iter().find(|l| l.from == from && l.to == to)
    }

    /// Blocks (`true`) or unblocks the link `from → to`; takes effect before it returns
    /// for every byte not yet read from the sender's connection.
    pub fn set_blocked(&self, from: usize, to: usize, blocked: bool) {
        if let Some(link) = self.link(from, to) {
            link.blocked.store(blocked, Ordering::SeqCst);
        }
    }

    /// Whether the link `from → to` is blocked.
    #[cfg(test)]
    pub fn is_blocked(&self, from: usize, to: usize) -> bool {
        self.link(from, to)
            .is_some_and(|l| l.blocked.load(Ordering::SeqCst))
    }

    /// Unblocks every link.
    pub fn heal(&self) {
        for link in &self.links {
            link.blocked.store(false, Ordering::SeqCst);
        }
    }

    /// Every link's figures.
    pub fn stats(&self) -> Vec<LinkStats> {
        self.links
            .iter()
            .map(|l| LinkStats {
                from_node: l.from + 1,
                to_node: l.to + 1,
                bytes_forwarded: l.bytes_forwarded.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Stops every thread: closes every socket and wakes every accept loop.
    pub fn stop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.heal();
        for socket in self
            .shared
            .sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            let _ = socket.shutdown(Shutdown::Both);
        }
        for link in &self.links {
            // Wakes the blocking accept; the loop then sees `stopping`.
            let _ = TcpStream::connect_timeout(&link.listen, Duration::from_millis(200));
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(shared: &Arc<Shared>, link: &Arc<Link>, listener: &TcpListener) {
    // Connection threads are detached: each ends when its sockets close, which `stop`
    // forces through the registry.
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok((stream, _)) = accepted else {
            std::thread::sleep(HELD_POLL);
            continue;
        };
        if link.connections.load(Ordering::SeqCst) >= LINK_CONNECTIONS_MAX {
            continue; // dropped: closed
        }
        link.connections.fetch_add(1, Ordering::SeqCst);
        let (shared, link) = (shared.clone(), link.clone());
        let spawned = std::thread::Builder::new()
            .name("drill-proxy-conn".into())
            .spawn(move || {
                serve_connection(&shared, &link, stream);
                link.connections.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            eprintln!("keel-perf drill: proxy: cannot start a connection thread");
        }
    }
}

/// Holds a new connection while its link is blocked, then connects it upstream and pumps
/// both directions until either side closes.
fn serve_connection(shared: &Arc<Shared>, link: &Arc<Link>, downstream: TcpStream) {
    let Some(down_id) = shared.register(&downstream) else {
        return;
    };
    while link.blocked.load(Ordering::SeqCst) && !shared.stopping.load(Ordering::SeqCst) {
        std::thread::sleep(HELD_POLL);
    }
    let upstream = match TcpStream::connect_timeout(&link.upstream, UPSTREAM_CONNECT_TIMEOUT) {
        Ok(upstream) if !shared.stopping.load(Ordering::SeqCst) => upstream,
        _ => {
            shared.forget(down_id);
            return;
        }
    };
    let Some(up_id) = shared.register(&upstream) else {
        shared.forget(down_id);
        return;
    };
    for stream in [&downstream, &upstream] {
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(UPSTREAM_WRITE_TIMEOUT));
    }
    let reverse = match (downstream.try_clone(), upstream.try_clone()) {
        (Ok(down), Ok(up)) => {
            let (shared, link) = (shared.clone(), link.clone());
            std::thread::Builder::new()
                .name("drill-proxy-back".into())
                .spawn(move || pump(&shared, &link, up, down))
                .ok()
        }
        _ => None,
    };
    if reverse.is_some() {
        pump(shared, link, downstream, upstream);
    }
    if let Some(reverse) = reverse {
        let _ = reverse.join();
    }
    shared.forget(down_id);
    shared.forget(up_id);
}

/// Copies `from` to `to` until either fails or closes; while the link is blocked, bytes
/// read are held (not written) until it is unblocked. Ends both sockets when done.
fn pump(shared: &Shared, link: &Link, mut from: TcpStream, mut to: TcpStream) {
    let mut buffer = vec![0u8; PUMP_BUFFER_BYTES];
    let result: io::Result<()> = (|| loop {
        let n = from.read(&mut buffer)?;
        if n == 0 {
            return Ok(());
        }
        while link.blocked.load(Ordering::SeqCst) {
            if shared.stopping.load(Ordering::SeqCst) {
                return Ok(());
            }
            std::thread::sleep(HELD_POLL);
        }
        to.write_all(&buffer[..n])?;
        link.bytes_forwarded.fetch_add(n as u64, Ordering::Relaxed);
    })();
    let _ = result;
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream that echoes every byte back.
    fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 || stream.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn read_exact_within(stream: &mut TcpStream, len: usize, wait: Duration) -> Vec<u8> {
        stream.set_read_timeout(Some(wait)).unwrap();
        let mut out = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match stream.read(&mut out[got..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        out.truncate(got);
        out
    }

    #[test]
    fn a_blocked_link_holds_bytes_and_forwards_them_in_order_once_unblocked() {
        let mut proxy = Proxy::new();
        let addr = proxy.add_link(0, 1, echo_server()).unwrap();
        let mut client = TcpStream::connect(addr).unwrap();
        client.write_all(b"one").unwrap();
        assert_eq!(
            read_exact_within(&mut client, 3, Duration::from_secs(5)),
            b"one"
        );
        proxy.set_blocked(0, 1, true);
        assert!(proxy.is_blocked(0, 1));
        client.write_all(b"two").unwrap();
        // Nothing crosses while blocked (the echo would come straight back otherwise).
        assert_eq!(
            read_exact_within(&mut client, 3, Duration::from_millis(300)),
            b""
        );
        proxy.heal();
        assert_eq!(
            read_exact_within(&mut client, 3, Duration::from_secs(5)),
            b"two"
        );
        // Each pump counts a chunk after writing it, so the count can trail the bytes the
        // client already read by a moment.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while proxy.stats()[0].bytes_forwarded < 12 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(proxy.stats()[0].bytes_forwarded, 12);
        proxy.stop();
    }

    #[test]
    fn a_connection_made_while_blocked_is_held_then_forwarded() {
        let mut proxy = Proxy::new();
        let addr = proxy.add_link(2, 0, echo_server()).unwrap();
        proxy.set_blocked(2, 0, true);
        // The other direction of the pair is a different link and stays open.
        assert!(!proxy.is_blocked(0, 2));
        let mut client = TcpStream::connect(addr).unwrap();
        client.write_all(b"held").unwrap();
        assert_eq!(
            read_exact_within(&mut client, 4, Duration::from_millis(300)),
            b""
        );
        proxy.set_blocked(2, 0, false);
        assert_eq!(
            read_exact_within(&mut client, 4, Duration::from_secs(5)),
            b"held"
        );
        proxy.stop();
    }
}
