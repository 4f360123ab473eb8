//! TCP connections from a chosen local address: on Linux every 127.x.y.z is loopback, so a
//! test binds 127.0.0.2 before connecting to act as a second source address (an attacker)
//! next to real users on 127.0.0.1.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};

/// A blocking TCP connection to `to` from `from` (any free port of it).
pub fn connect_from(from: Ipv4Addr, to: SocketAddrV4) -> io::Result<TcpStream> {
    // SAFETY: a plain socket(2) call; the descriptor is owned at once below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns; dropping it closes it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let local = sockaddr(SocketAddrV4::new(from, 0));
    let remote = sockaddr(to);
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: the addresses are valid `sockaddr_in`s of `len` bytes on this stack frame.
    if unsafe { libc::bind(fd, std::ptr::from_ref(&local).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::connect(fd, std::ptr::from_ref(&remote).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpStream::from(owned))
}

fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// `to` as IPv4 (the tests' nodes listen on 127.0.0.1).
pub fn v4(to: SocketAddr) -> io::Result<SocketAddrV4> {
    match to {
        SocketAddr::V4(v4) => Ok(v4),
        SocketAddr::V6(_) => Err(io::Error::new(io::ErrorKind::InvalidInput, "not IPv4")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

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
