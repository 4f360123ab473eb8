#!/usr/bin/env python3
"""Does one abusive session delay another session's acknowledgements?

    flood_interference.py PORT PASSWORD

A healthy session (bob) sends one resting order every 2 ms and measures send -> Order
Accepted. Conditions: baseline; alice floods valid orders (reading her answers); alice floods
and never reads (a slow reader, cut off by the server); garbage connections in a loop.
Prints p50/p99/max per condition.
"""
import socket, struct, sys, threading, time

from soupbin import cancel, enter, next_packet, pkt

PORT, PW = int(sys.argv[1]), sys.argv[2]

def login(u, seq=0):
    return pkt(b"L", u.ljust(6).encode() + PW.ljust(10).encode() + b" " * 10 + str(seq).rjust(20).encode())

class Conn:
    def __init__(self, user):
        self.s = socket.create_connection(("127.0.0.1", PORT))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.s.sendall(login(user)); self.buf = b""
        while self.packet()[0] != b"A": pass
    def packet(self):
        kind, payload, self.buf = next_packet(self.s, self.buf)
        return kind, payload

def healthy(seconds, label, results):
    c = Conn("bob"); lat = []; i = 0
    end = time.time() + seconds
    while time.time() < end:
        i += 1; tok = f"H{label[:3]}{i}"
        t0 = time.perf_counter_ns()
        c.s.sendall(enter(tok, b"B", 1, 1000 + (i % 500)))
        while True:
            k, m = c.packet()
            if k == b"S" and m[:1] == b"A": break
            if k == b"closed": raise SystemExit("healthy session closed")
        lat.append((time.perf_counter_ns() - t0) / 1000)
        c.s.sendall(cancel(tok))
        while True:
            k, m = c.packet()
            if k == b"S" and m[:1] in (b"C", b"I"): break
        time.sleep(0.002)
    c.s.sendall(pkt(b"O")); c.s.close()
    lat.sort(); n = len(lat)
    results[label] = (lat[n // 2], lat[int(n * 0.99)], lat[-1], n)

def flood_reading(stop):
    c = Conn("alice"); i = 0
    def reader():
        while not stop.is_set():
            try:
                if not c.s.recv(1 << 20): break
            except OSError: break
    threading.Thread(target=reader, daemon=True).start()
    while not stop.is_set():
        batch = b"".join(enter(f"F{i + j}", b"S", 1, 900000 + ((i + j) % 1000)) for j in range(200))
        batch += b"".join(cancel(f"F{i + j}") for j in range(200))
        i += 200
        try: c.s.sendall(batch)
        except OSError: break
    c.s.close()

def flood_not_reading(stop):
    while not stop.is_set():
        try:
            c = Conn("carol"); i = 0
            c.s.settimeout(1.0)
            while not stop.is_set():
                i += 1
                c.s.sendall(b"".join(enter(f"N{i}x{j}", b"S", 1, 800000) for j in range(100)))
        except OSError:
            time.sleep(0.01)

def garbage(stop):
    while not stop.is_set():
        try:
            s = socket.create_connection(("127.0.0.1", PORT)); s.sendall(b"\xff\xff" + b"garbage" * 100); s.close()
        except OSError: pass

ABUSERS = {"flood": flood_reading, "slow": flood_not_reading, "garbage": garbage}
if len(sys.argv) > 3 and sys.argv[3] == "abuse":
    stop = threading.Event()
    ABUSERS[sys.argv[4]](stop)
    raise SystemExit(0)

import subprocess
results = {}
for label, abuser in [("baseline", None), ("valid-order flood (reading)", flood_reading),
                      ("slow reader flood (never reads)", flood_not_reading), ("garbage connections", garbage)]:
    child = None
    if abuser:
        # A separate process at the lowest priority: a stand-in for a client on another
        # machine, so that what is measured is the server, not CPU the abuser takes.
        kind = [k for k, f in ABUSERS.items() if f is abuser][0]
        child = subprocess.Popen(["nice", "-n", "19", sys.executable, sys.argv[0], str(PORT), PW, "abuse", kind])
        time.sleep(0.5)
    healthy(5, label, results)
    if child: child.kill(); child.wait()
    time.sleep(0.5)
for label, (p50, p99, mx, n) in results.items():
    print(f"{label:34s} p50 {p50:8.1f} us  p99 {p99:8.1f} us  max {mx:9.1f} us  ({n} orders)")
