//! Free loopback ports: asked of the kernel (bind port 0), then released for a node to take.
//! A port taken by someone else in between makes that node's start fail; it is never
//! silently shared.

use std::io;
use std::net::{SocketAddr, TcpListener};

/// A loopback port the kernel says is free right now.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `n` distinct free loopback ports (all bound at once, then released).
pub fn free_ports(n: usize) -> io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|listener| Ok(listener.local_addr()?.port()))
        .collect()
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_free() -> io::Result<()> {
        let ports = free_ports(8)?;
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 8);
        for port in ports {
            TcpListener::bind(loopback(port))?;
        }
        assert_ne!(free_port()?, 0);
        Ok(())
    }
}
