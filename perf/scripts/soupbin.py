"""SoupBinTCP 4.0 / OUCH 4.2 packets for the measurement scripts (raw sockets, no client
library, so that a script measures the server and nothing else)."""
import struct


def pkt(t, p=b""):
    """A SoupBinTCP packet of type `t` carrying `p`."""
    return struct.pack(">H", len(p) + 1) + t + p


def enter(tok, side, shares, price):
    """An Enter Order for BTC-PERP that rests (time in force 99999)."""
    return pkt(b"U", b"O" + tok.ljust(14).encode() + side + struct.pack(">I", shares) + b"BTC-PERP"
               + struct.pack(">I", price) + struct.pack(">I", 99999) + b"FIRMYAN"
               + struct.pack(">I", 0) + b"NN")


def cancel(tok):
    """A Cancel Order of all that is left of `tok`."""
    return pkt(b"U", b"X" + tok.ljust(14).encode() + struct.pack(">I", 0))


def next_packet(sock, buf):
    """(type, payload, rest of buf) of the next packet read from `sock` after `buf`;
    type b"closed" when the connection ends (or fails)."""
    while True:
        if len(buf) >= 2:
            n = struct.unpack(">H", buf[:2])[0]
            if len(buf) >= 2 + n:
                return buf[2:3], buf[3:2 + n], buf[2 + n:]
        try:
            d = sock.recv(65536)
        except OSError:
            return b"closed", b"", buf
        if not d:
            return b"closed", b"", buf
        buf += d
