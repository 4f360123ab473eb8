#!/usr/bin/env python3
"""An order-entry client written from the public SoupBinTCP 4.0 and OUCH 4.2 specifications,
independently of Keel's Rust code, used as a conformance check of a running `keel serve`.

    independent_client.py PORT PCAP_OUT [ALICE_PASSWORD BOB_PASSWORD]

Logs in as alice and bob (the demo users), rests and crosses orders, cancels and replaces,
drops alice's connection and resumes from her last sequence number + 1 (checking for gaps and
duplicates), and writes every byte exchanged, both directions, into a pcap so that tshark can
check it. Exits non-zero with a message on the first violation.
"""

import socket
import struct
import sys
import time

HOST = "127.0.0.1"
ALICE_PW, BOB_PW = "alicepass", "bobpass"  # the demo users of `keel serve` without --config


def fail(message):
    print("independent client: FAIL:", message)
    sys.exit(1)


# ---- SoupBinTCP 4.0: 2-byte big-endian length (type + payload), 1-byte packet type ----------

def packet(kind, payload=b""):
    return struct.pack(">H", len(payload) + 1) + kind + payload


def login_request(user, password, session=b"", seq=1):
    # Username 6 alpha (right-padded), Password 10 alpha (right-padded), Requested Session 10
    # alphanumeric (left-padded with spaces, blank = current), Requested Sequence Number 20
    # numeric (left-padded with spaces).
    return packet(b"L", user.ljust(6).encode() + password.ljust(10).encode()
                  + session.rjust(10) + str(seq).rjust(20).encode())


def unsequenced(message):
    return packet(b"U", message)


# ---- OUCH 4.2 inbound messages (integers big-endian, alpha right-padded) --------------------

def enter_order(token, side, shares, stock, price, tif=99999, display=b"Y", min_qty=0):
    return (b"O" + token.ljust(14).encode() + side + struct.pack(">I", shares)
            + stock.ljust(8).encode() + struct.pack(">I", price) + struct.pack(">I", tif)
            + b"FIRM" + display + b"A" + b"N" + struct.pack(">I", min_qty) + b"N" + b"N")


def replace_order(existing, replacement, shares, price):
    return (b"U" + existing.ljust(14).encode() + replacement.ljust(14).encode()
            + struct.pack(">I", shares) + struct.pack(">I", price) + struct.pack(">I", 99999)
            + b"Y" + b"N" + struct.pack(">I", 0))


def cancel_order(token, shares=0):
    return b"X" + token.ljust(14).encode() + struct.pack(">I", shares)


OUTBOUND_LENGTHS = {b"S": 10, b"A": 66, b"U": 80, b"C": 28, b"E": 40, b"J": 24, b"I": 23,
                    b"M": 28, b"D": 37, b"B": 32, b"P": 23, b"T": 36}


class Capture:
    """Every byte exchanged on every connection, for a pcap."""

    def __init__(self):
        self.records = []  # (time, client_port, to_server, bytes)

    def add(self, port, to_server, data):
        if data:
            self.records.append((time.time(), port, to_server, data))

    def write_pcap(self, path, server_port):
        out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
        seqs = {}
        for stamp, port, to_server, data in self.records:
            # Synthetic TCP: sequence numbers per direction per connection; no handshake is
            # needed for tshark's "decode as" on the port.
            key = (port, to_server)
            seq = seqs.get(key, 1000)
            seqs[key] = seq + len(data)
            ack = seqs.get((port, not to_server), 1000)
            src, dst = (port, server_port) if to_server else (server_port, port)
            tcp = struct.pack(">HHIIBBHHH", src, dst, seq, ack, 5 << 4, 0x18, 65535, 0, 0)
            total = 20 + len(tcp) + len(data)
            ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, 64, 6, 0,
                             bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
            checksum = 0
            for i in range(0, 20, 2):
                checksum += (ip[i] << 8) + ip[i + 1]
            while checksum >> 16:
                checksum = (checksum & 0xFFFF) + (checksum >> 16)
            ip = ip[:10] + struct.pack(">H", ~checksum & 0xFFFF) + ip[12:]
            frame = b"\x00" * 12 + b"\x08\x00" + ip + tcp + data
            seconds = int(stamp)
            out.append(struct.pack("<IIII", seconds, int((stamp - seconds) * 1e6),
                                   len(frame), len(frame)))
            out.append(frame)
        with open(path, "wb") as f:
            f.write(b"".join(out))


class Session:
    def __init__(self, port, capture, user, password, seq=1):
        self.sock = socket.create_connection((HOST, port))
        self.port = self.sock.getsockname()[1]
        self.capture = capture
        self.buf = b""
        self.send(login_request(user, password, seq=seq))
        kind, payload = self.read_packet(5.0)
        if kind != b"A":
            fail(f"{user}: expected Login Accepted, got {kind!r} {payload!r}")
        if len(payload) != 30:
            fail(f"{user}: Login Accepted payload is {len(payload)} bytes, not 30")
        self.session = payload[:10]
        self.next_seq = int(payload[10:].decode().strip())

    def send(self, data):
        self.capture.add(self.port, True, data)
        self.sock.sendall(data)

    def read_packet(self, timeout):
        deadline = time.time() + timeout
        while True:
            if len(self.buf) >= 2:
                length = struct.unpack(">H", self.buf[:2])[0]
                if length == 0:
                    fail("zero-length packet from the server")
                if len(self.buf) >= 2 + length:
                    frame, self.buf = self.buf[:2 + length], self.buf[2 + length:]
                    return frame[2:3], frame[3:]
            remaining = deadline - time.time()
            if remaining <= 0:
                return None, None
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return None, None
            if not data:
                return b"closed", b""
            self.capture.add(self.port, False, data)
            self.buf += data

    def messages(self, quiet=0.5):
        """Sequenced messages until `quiet` seconds pass without one: [(seq, message)]."""
        out = []
        while True:
            kind, payload = self.read_packet(quiet)
            if kind is None or kind == b"closed":
                return out
            if kind in (b"H", b"+"):
                # Heartbeats, and Debug packets, which the specification lets either side
                # send at any time (Keel announces a resumption ticket in one).
                continue
            if kind != b"S":
                fail(f"unexpected packet type {kind!r}")
            expected = OUTBOUND_LENGTHS.get(payload[:1])
            if expected is None or len(payload) != expected:
                fail(f"OUCH message {payload[:1]!r} of {len(payload)} bytes")
            out.append((self.next_seq, payload))
            self.next_seq += 1

    def close(self):
        self.sock.close()


def token_of(message):
    kind = message[:1]
    if kind == b"S":
        return None
    return message[9:23].decode().strip()


def main():
    port, pcap = int(sys.argv[1]), sys.argv[2]
    global ALICE_PW, BOB_PW
    if len(sys.argv) >= 5:
        ALICE_PW, BOB_PW = sys.argv[3], sys.argv[4]
    capture = Capture()
    alice = Session(port, capture, "alice", ALICE_PW)
    bob = Session(port, capture, "bob", BOB_PW)
    if alice.session != bob.session:
        fail("two users got different sessions")
    received = alice.messages()  # start of day
    if [m[:1] for _, m in received] != [b"S"]:
        fail(f"alice's stream does not start with a System Event: {received}")
    bob.messages()

    # alice rests 10 @ 100.25; bob buys 4 @ 100.30: one execution at 100.25 on both sides.
    alice.send(unsequenced(enter_order("IA1", b"S", 10, "BTC-PERP", 1002500)))
    received += alice.messages()
    bob.send(unsequenced(enter_order("IB1", b"B", 4, "BTC-PERP", 1003000)))
    bob_msgs = bob.messages()
    received += alice.messages()
    kinds = [m[:1] for _, m in received]
    if kinds != [b"S", b"A", b"E"]:
        fail(f"alice expected S A E, got {kinds}")
    alice_exec = received[2][1]
    bob_exec = [m for _, m in bob_msgs if m[:1] == b"E"]
    if len(bob_exec) != 1:
        fail(f"bob expected one execution: {bob_msgs}")
    # Order Executed: type, timestamp 8, token 14, shares 4, price 4, liquidity 1, match 8.
    a_shares, a_price = struct.unpack(">II", alice_exec[23:31])
    b_shares, b_price = struct.unpack(">II", bob_exec[0][23:31])
    if (a_shares, a_price, b_shares, b_price) != (4, 1002500, 4, 1002500):
        fail("execution shares/prices wrong")
    if alice_exec[31:32] != b"A" or bob_exec[0][31:32] != b"R":
        fail("liquidity flags wrong")
    if alice_exec[32:40] != bob_exec[0][32:40]:
        fail("match numbers differ between the two sides")

    # alice replaces to 5 @ 100.20 under a new token, then drops her connection abruptly.
    alice.send(unsequenced(replace_order("IA1", "IA2", 5, 1002000)))
    replaced = alice.messages()
    if [m[:1] for _, m in replaced] != [b"U"]:
        fail(f"expected Order Replaced, got {replaced}")
    received += replaced
    last_seen = alice.next_seq - 1
    alice.close()

    # While she is away bob takes 2 of her 5, then she resumes from last + 1.
    bob.send(unsequenced(enter_order("IB2", b"B", 2, "BTC-PERP", 1002000)))
    bob.messages()
    time.sleep(0.2)
    alice = Session(port, capture, "alice", ALICE_PW, seq=last_seen + 1)
    if alice.next_seq != last_seen + 1:
        fail(f"resume: asked for {last_seen + 1}, server starts at {alice.next_seq}")
    resumed = alice.messages()
    if [m[:1] for _, m in resumed] != [b"E"] or token_of(resumed[0][1]) != "IA2":
        fail(f"resume: expected exactly the missed execution of IA2, got {resumed}")
    received += resumed

    # Cancel the rest; a cancel of an unknown token gets Cancel Reject; a reused token and an
    # unknown stock are rejected.
    alice.send(unsequenced(cancel_order("IA2")))
    alice.send(unsequenced(cancel_order("NOSUCH")))
    alice.send(unsequenced(enter_order("IA1", b"B", 1, "BTC-PERP", 1000000)))
    alice.send(unsequenced(enter_order("IA3", b"B", 1, "NOPE", 1000000)))
    tail = alice.messages()
    kinds = [m[:1] for _, m in tail]
    if kinds != [b"C", b"I", b"J", b"J"]:
        fail(f"expected C I J J, got {kinds}")
    if struct.unpack(">I", tail[0][1][23:27])[0] != 3:
        fail("cancel should remove the 3 shares left")
    received += tail

    # A full replay from 1 is byte-identical to everything received, with no gap.
    alice.send(packet(b"O"))
    alice.close()
    replay = Session(port, capture, "alice", ALICE_PW, seq=1)
    again = replay.messages()
    if again != received:
        fail("replay from 1 differs from what was received live")
    seqs = [seq for seq, _ in again]
    if seqs != list(range(1, len(again) + 1)):
        fail(f"sequence numbers not dense: {seqs}")
    replay.send(packet(b"O"))
    bob.send(packet(b"O"))
    time.sleep(0.2)
    replay.close()
    bob.close()
    capture.write_pcap(pcap, port)
    print(f"independent client: OK ({len(again)} messages for alice, pcap {pcap})")


if __name__ == "__main__":
    main()
