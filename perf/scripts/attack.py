#!/usr/bin/env python3
"""Issue 13's attack on the order-entry port, measured: do real users still get in and trade?

    attack.py [--keel target/release/keel] [--runs 3] [--seconds 10] [--nice 19]
              [--durability fsync|async]

Per run: starts `keel serve` (a temporary data directory, users alice, bob and carol),
then measures for --seconds unattacked and for --seconds attacked, from 127.0.0.1:

- logins: alice (the attacked user) and carol log in with their passwords, log out, again,
  every 100 ms: latency from connect to Login Accepted, and any refusal;
- orders: bob, logged in throughout, sends a resting order and cancels it, every 2 ms:
  latency from send to Order Accepted (p50, p99).

The attack runs in another process (at `nice --nice`, standing in for other machines; 0
makes it compete with the node for the CPU as an attacker on the same host would) from
127.0.0.2: 1,100 idle connections kept open (reopened as they are closed), login floods
for unknown user names and for alice with wrong passwords, and garbage connections. After
the attack, one more login and order check that the node serves normally.

Prints one line per run and the medians over the runs. Loopback on Linux only.
"""
import argparse, os, random, socket, subprocess, sys, tempfile, threading, time

from soupbin import cancel, enter, next_packet, pkt

ATTACKER = "127.0.0.2"
USERS = {"alice": "alicepass", "bob": "bobpass", "carol": "carolpass"}


def login(user, password, seq=0):
    return pkt(b"L", user.ljust(6).encode()[:6] + password.ljust(10).encode()[:10] + b" " * 10
               + str(seq).rjust(20).encode())


class Conn:
    def __init__(self, port, source="127.0.0.1", timeout=10.0):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.bind((source, 0))
        self.s.connect(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def packet(self):
        """(type, payload) of the next packet; (b"closed", b"") at the end."""
        kind, payload, self.buf = next_packet(self.s, self.buf)
        return kind, payload

    def login(self, user, password):
        """The answer to a login, skipping Debug packets: b"A", b"J" + code, or b"closed"."""
        self.s.sendall(login(user, password))
        while True:
            k, m = self.packet()
            if k == b"+":
                continue
            return k if k != b"J" else b"J" + m[:1]

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def pct(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


# --- the attacker (run as a separate process) ---------------------------------------------

def attack_idle(port, stop):
    held = []
    while not stop.is_set():
        try:
            held.append(Conn(port, ATTACKER, timeout=1.0))
        except OSError:
            time.sleep(0.01)
        if len(held) > 1100:
            held.pop(0).close()
    for c in held:
        c.close()


def attack_logins(port, stop, user_of):
    n = 0
    while not stop.is_set():
        n += 1
        try:
            c = Conn(port, ATTACKER, timeout=5.0)
            c.login(user_of(n), "guess%d" % n)
            c.close()
        except OSError:
            time.sleep(0.01)


def attack_garbage(port, stop):
    rng = random.Random(13)
    while not stop.is_set():
        try:
            c = Conn(port, ATTACKER, timeout=1.0)
            c.s.sendall(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))))
            c.close()
        except OSError:
            time.sleep(0.01)


def attacker(port):
    stop = threading.Event()
    threads = [threading.Thread(target=attack_idle, args=(port, stop))]
    for _ in range(4):
        threads.append(threading.Thread(target=attack_logins, args=(port, stop, lambda n: "zz%d" % n)))
        threads.append(threading.Thread(target=attack_logins, args=(port, stop, lambda n: "alice")))
    threads.append(threading.Thread(target=attack_garbage, args=(port, stop)))
    for t in threads:
        t.daemon = True
        t.start()
    while True:
        time.sleep(3600)


# --- the real users ---------------------------------------------------------------------

def real_logins(port, seconds, out):
    """alice and carol log in and out in turn; out gets (latency s, answer) per attempt."""
    end = time.time() + seconds
    i = 0
    while time.time() < end:
        user = "alice" if i % 2 == 0 else "carol"
        i += 1
        t0 = time.perf_counter()
        try:
            c = Conn(port)
            answer = c.login(user, USERS[user])
            c.s.sendall(pkt(b"O"))
            c.close()
        except OSError as e:
            answer = ("error %s" % e).encode()
        out.append((time.perf_counter() - t0, answer))
        time.sleep(0.1)


ORDER_TOKENS = iter(range(1, 1 << 62))


def real_orders(port, seconds, out):
    c = Conn(port)
    assert c.login("bob", USERS["bob"]) == b"A", "bob not logged in"
    end = time.time() + seconds
    while time.time() < end:
        # Unique over the node's life: a reused token is ignored (OUCH).
        i = next(ORDER_TOKENS)
        tok = "R%d" % i
        t0 = time.perf_counter()
        c.s.sendall(enter(tok, b"B", 1, 1000 + i % 500))
        while True:
            k, m = c.packet()
            if k == b"S" and m[:1] == b"A":
                break
            if k == b"closed" or (k == b"S" and m[:1] == b"J"):
                raise SystemExit("bob's session was closed")
        out.append(time.perf_counter() - t0)
        c.s.sendall(cancel(tok))
        while True:
            k, m = c.packet()
            if k == b"S" and m[:1] in (b"C", b"I", b"J"):
                break
            if k == b"closed":
                raise SystemExit("bob's session was closed")
        time.sleep(0.002)
    c.s.sendall(pkt(b"O"))
    c.close()


def measure(port, seconds):
    logins, orders = [], []
    t = threading.Thread(target=real_logins, args=(port, seconds, logins))
    t.start()
    real_orders(port, seconds, orders)
    t.join()
    return logins, orders


# --- a run ------------------------------------------------------------------------------

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def hash_of(keel, password):
    return subprocess.run([keel, "passwd"], input=password.encode(), capture_output=True,
                          check=True).stdout.decode().strip()


def start_node(keel, directory, hashes, durability):
    port = free_port()
    config = os.path.join(directory, "keel.toml")
    with open(config, "w") as f:
        f.write('[server]\nlisten = "127.0.0.1:%d"\ndata_dir = "%s"\ndurability = "%s"\n\n'
                % (port, os.path.join(directory, "data"), durability))
        f.write('[[instrument]]\nid = 1\nsymbol = "BTC-PERP"\nprice_scale = 1\n\n')
        for account, (user, h) in enumerate(hashes.items(), 1):
            f.write('[[user]]\nusername = "%s"\npassword_hash = "%s"\naccount = %d\n\n'
                    % (user, h, account))
    log = open(os.path.join(directory, "node.log"), "w")
    node = subprocess.Popen([keel, "serve", "--config", config], stdout=log, stderr=log)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return node, port
        except OSError:
            time.sleep(0.1)
    node.kill()
    raise SystemExit("the node did not start; see %s" % log.name)


def summary(logins, orders):
    ok = [t for t, a in logins if a == b"A"]
    late = sum(1 for t in ok if t > 1.0)
    refused = [a for _, a in logins if a != b"A"]
    return {
        "logins": len(logins), "accepted": len(ok), "late": late,
        "refused": sorted(set(x.decode(errors="replace") for x in refused)),
        "login_max_ms": max(ok) * 1e3 if ok else float("nan"),
        "orders": len(orders), "p50_us": pct(orders, 0.5) * 1e6, "p99_us": pct(orders, 0.99) * 1e6,
    }


def run(args, hashes, index):
    with tempfile.TemporaryDirectory(prefix="keel-attack-") as directory:
        node, port = start_node(args.keel, directory, hashes, args.durability)
        try:
            measure(port, 1)  # warm up
            calm = summary(*measure(port, args.seconds))
            attack = subprocess.Popen(["nice", "-n", str(args.nice), sys.executable, sys.argv[0],
                                       "--attacker", str(port)])
            time.sleep(2)
            attacked = summary(*measure(port, args.seconds))
            attack.kill()
            attack.wait()
            time.sleep(1)
            after = summary(*measure(port, 2))
            alive = node.poll() is None
        except SystemExit:
            with open(os.path.join(directory, "node.log")) as log:
                sys.stderr.write("".join(log.readlines()[-30:]))
            raise
        finally:
            node.terminate()
            node.wait()
    print("run %d: unattacked p50 %.0f us p99 %.0f us (%d orders), logins %d/%d, max %.0f ms | "
          "attacked p50 %.0f us p99 %.0f us (%d orders), logins %d/%d accepted, %d over 1 s, "
          "max %.0f ms, refused %s | after: logins %d/%d, node up %s"
          % (index, calm["p50_us"], calm["p99_us"], calm["orders"], calm["accepted"], calm["logins"],
             calm["login_max_ms"], attacked["p50_us"], attacked["p99_us"], attacked["orders"],
             attacked["accepted"], attacked["logins"], attacked["late"], attacked["login_max_ms"],
             attacked["refused"], after["accepted"], after["logins"], alive), flush=True)
    return calm, attacked, after, alive


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keel", default="target/release/keel")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--nice", type=int, default=19)
    parser.add_argument("--durability", default="fsync", choices=["fsync", "async"])
    parser.add_argument("--attacker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.attacker:
        attacker(args.attacker)
        return
    hashes = {user: hash_of(args.keel, password) for user, password in USERS.items()}
    results = [run(args, hashes, i + 1) for i in range(args.runs)]
    median = lambda xs: sorted(xs)[len(xs) // 2]
    calm_p99 = median([r[0]["p99_us"] for r in results])
    attacked_p99 = median([r[1]["p99_us"] for r in results])
    logins_ok = all(r[1]["accepted"] == r[1]["logins"] and r[1]["late"] == 0 for r in results)
    print("median order p99: unattacked %.0f us, attacked %.0f us (x%.2f); every real login "
          "accepted within 1 s: %s; node up after every run: %s"
          % (calm_p99, attacked_p99, attacked_p99 / calm_p99, logins_ok,
             all(r[3] for r in results)))


if __name__ == "__main__":
    main()
