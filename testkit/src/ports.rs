//! Free loopback ports: asked of the kernel (bind port 0), then released for a node to take.
//! A port taken by someone else in between makes that node's start fail; it is never
//! silently shared.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

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

/// A TCP connection to `to` from the IPv4 address `from` (port chosen by the kernel), such
/// as `127.0.0.2`: a second loopback address stands for another host, e.g. an attacker
/// that is not a configured peer. std cannot bind before connecting, hence libc.
pub fn connect_from(from: Ipv4Addr, to: SocketAddrV4) -> io::Result<TcpStream> {
    let sockaddr = |addr: SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor this function owns (closed by `OwnedFd`
    // on every error path); the address structs outlive the calls that read them.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let local = sockaddr(SocketAddrV4::new(from, 0));
        if libc::bind(fd.as_raw_fd(), (&raw const local).cast(), len) != 0 {
            return Err(io::Error::last_os_error());
        }
        let remote = sockaddr(to);
        if libc::connect(fd.as_raw_fd(), (&raw const remote).cast(), len) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(TcpStream::from(fd))
    }
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

    #[test]
    fn connections_come_from_the_chosen_address() -> io::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let SocketAddr::V4(to) = listener.local_addr()? else {
            return Err(io::Error::other("not IPv4"));
        };
        let _stream = connect_from(Ipv4Addr::new(127, 0, 0, 2), to)?;
        let (_, peer) = listener.accept()?;
        assert_eq!(peer.ip(), std::net::IpAddr::from([127, 0, 0, 2]));
        Ok(())
    }
}
