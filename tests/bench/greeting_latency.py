#!/usr/bin/env python3
"""Connection-to-greeting latency added by the client checks: FCrDNS and two DNSBL zones,
asked by lookup through libunbound of a local unbound (tests/integration/dns_server.py:
local zones only, nothing leaves the machine), on a listener with
`checks: {fcrdns: tag, dnsbl: tag, zones: [dnsbl.test, dnsbl2.test]}` and
`trusted_networks: [127.0.0.1/32]`.

    tests/bench/greeting_latency.py [--count 300] [--parallel 50] [--seconds 3]

Sequential connections, each bound to a loopback source address, timed from connect()
to the whole 220 line, then QUIT:
  (a) from 127.0.0.1, trusted, so not checked: the baseline;
  (b) from 127.0.0.10, which has a forward-confirmed PTR: after the first connection every
      answer is in libunbound's cache;
  (c) from a new address each time (127.0.3.1, 127.0.3.2, ...): nothing in libunbound's
      cache, unbound answers the PTR and both blocklists from its local zones (the name
      does not exist).
Then throughput: --parallel connections at a time for --seconds, from new addresses and
from 127.0.0.10, counting the client checks lookup made per second.

Target: under 5 ms added (p99 of b and c minus the p50 of a)."""

import argparse
import os
import re
import selectors
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (CpuMeter, Daemon, Replies, dns_server, latency_figures,  # noqa: E402
                      loadavg, percentile)

CACHED = "127.0.0.10"
# Lets connect() choose the port, so one source address can have many connections to
# different servers; on Linux since 4.2.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def fresh_addresses():
    """127.0.3.1, 127.0.3.2, ... 127.0.255.254, 127.1.0.1, ...: addresses nothing in the
    DNS server's zones mentions (127.0.0.x are the test clients, 127.0.1-2.x MX hosts)."""
    for a in range(256):
        for b in range(3 if a == 0 else 0, 256):
            for c in range(1, 255):
                yield f"127.{a}.{b}.{c}"


def bound_socket(source):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.bind((source, 0))
    return s


def greet(source, port):
    """Connects from source; returns (ms from connect() to the whole greeting, its code)."""
    with bound_socket(source) as s:
        s.settimeout(30)
        started = time.perf_counter()
        s.connect(("127.0.0.1", port))
        replies = Replies(s)
        code, _ = replies.reply()
        elapsed = (time.perf_counter() - started) * 1000
        s.sendall(b"QUIT\r\n")
        replies.reply()
        return elapsed, code


def check_stats(d):
    """(client checks, their mean ms, dns questions asked) from smtpctl show stats."""
    stats = d.stats()
    checks = re.match(r"(\d+), ([\d.]+) ms on average", stats.get("client checks", ""))
    asked = re.match(r"(\d+) asked", stats.get("dns questions", ""))
    return (int(checks.group(1)) if checks else 0, float(checks.group(2)) if checks else 0.0,
            int(asked.group(1)) if asked else 0)


def lookup_delta(before, after):
    """What lookup saw between two check_stats: '(n checks, mean x ms in lookup, q DNS
    questions)'."""
    n = after[0] - before[0]
    if n <= 0:
        return f"(no client checks in lookup, {after[2] - before[2]} DNS questions)"
    mean = (after[0] * after[1] - before[0] * before[1]) / n
    return (f"({n} client checks, {mean:.2f} ms on average in lookup, "
            f"{(after[2] - before[2]) / n:.1f} DNS questions each)")


def sequential(d, sources, count, warmup):
    """Greets from each source in turn (warmup first, not counted); (ms samples, codes
    other than 220, lookup_delta text)."""
    for _ in range(warmup):
        greet(next(sources), d.port)
    before = check_stats(d)
    samples, bad = [], []
    for _ in range(count):
        ms, code = greet(next(sources), d.port)
        samples.append(ms)
        if code != 220:
            bad.append(code)
    return samples, bad, lookup_delta(before, check_stats(d))


class Slot:
    __slots__ = ("sock", "started", "buffer", "quitting")


def parallel(d, sources, width, seconds, pids):
    """Keeps width connections in progress for seconds (connect, 220, QUIT, 221, close);
    returns (greetings, codes other than 220, errors, elapsed s, ms samples, lookup delta,
    client checks per second counted by lookup, CpuMeter of pids meanwhile)."""
    sel = selectors.DefaultSelector()
    cpu = CpuMeter(pids)
    greetings, bad, errors, samples = 0, [], [], []
    before = check_stats(d)
    started = time.perf_counter()
    deadline = started + seconds

    def open_one():
        slot = Slot()
        slot.sock = bound_socket(next(sources))
        slot.sock.setblocking(False)
        slot.buffer = b""
        slot.quitting = False
        slot.started = time.perf_counter()
        slot.sock.connect_ex(("127.0.0.1", d.port))
        sel.register(slot.sock, selectors.EVENT_READ, slot)

    def close(slot):
        sel.unregister(slot.sock)
        slot.sock.close()
        if time.perf_counter() < deadline:
            open_one()

    for _ in range(width):
        open_one()
    while sel.get_map():
        events = sel.select(timeout=10)
        if not events:
            errors += ["no answer within 10 s"] * len(sel.get_map())
            for key in list(sel.get_map().values()):
                sel.unregister(key.fileobj)
                key.fileobj.close()
            break
        for key, _ in events:
            slot = key.data
            try:
                data = slot.sock.recv(4096)
            except OSError as e:
                errors.append(repr(e))
                close(slot)
                continue
            if not data:
                if not slot.quitting:
                    errors.append("closed before the greeting")
                close(slot)
                continue
            slot.buffer += data
            if not slot.buffer.endswith(b"\r\n"):
                continue
            last = slot.buffer.rstrip(b"\r\n").rsplit(b"\r\n", 1)[-1]
            if last[3:4] == b"-":
                continue  # a multi-line reply goes on
            if slot.quitting:  # the 221
                close(slot)
                continue
            samples.append((time.perf_counter() - slot.started) * 1000)
            greetings += 1
            if not last.startswith(b"220"):
                bad.append(int(last[:3]))
            slot.buffer = b""
            slot.quitting = True
            slot.sock.send(b"QUIT\r\n")
    elapsed = time.perf_counter() - started
    cpu.stop()
    after = check_stats(d)
    return (greetings, bad, errors, elapsed, samples, lookup_delta(before, after),
            (after[0] - before[0]) / elapsed, cpu)


def repeat(address):
    while True:
        yield address


def run(dns, args):
    d = Daemon(
        # connection_rate 0: what is measured here is the checks, not the rate limit.
        limits={"sessions": max(1000, 2 * args.parallel + 10),
                "sessions_per_ip": max(50, 2 * args.parallel + 10), "connection_rate": 0},
        extra=f'trusted_networks: ["127.0.0.1/32"]\n'
              f'dns:\n  resolvers: ["{dns.forwarder}"]\n',
        listener="checks: {fcrdns: tag, dnsbl: tag, zones: [dnsbl.test, dnsbl2.test]}")
    print(f"# postern greeting latency: fcrdns + dnsbl.test + dnsbl2.test against unbound on "
          f"{dns.forwarder}; {args.count} sequential connections per case; "
          f"load average {loadavg()}", flush=True)
    d.start()
    try:
        fresh = fresh_addresses()
        cases = [
            ("(a) 127.0.0.1, trusted", repeat("127.0.0.1"), 5),
            (f"(b) {CACHED}, cached", repeat(CACHED), 5),
            ("(c) new address each", fresh, 5),
        ]
        print("connect() to the whole 220 line (ms):")
        results = {}
        for name, sources, warmup in cases:
            samples, bad, seen = sequential(d, sources, args.count, warmup)
            results[name[:3]] = sorted(samples)
            print(f"  {name:<24} {latency_figures(samples)}  {seen}")
            if bad:
                print(f"    {len(bad)} greetings were not 220: {sorted(set(bad))}")
        base = percentile(results["(a)"], 50)
        print(f"added to the baseline p50 ({base:.2f} ms)                target: under 5 ms")
        for key, what in (("(b)", "cached"), ("(c)", "uncached")):
            values = results[key]
            print(f"  {key} {what:<9} p50 +{percentile(values, 50) - base:.2f} ms   "
                  f"p99 +{percentile(values, 99) - base:.2f} ms")

        print(f"throughput, {args.parallel} connections at a time for {args.seconds:g} s "
              "(connect, 220, QUIT, 221):")
        pids = d.pids()
        pids = {"smtp": pids["smtp"], "lookup": pids["lookup"], "unbound": dns.proc.pid,
                "this client": os.getpid()}
        for name, sources in (("new addresses (uncached)", fresh),
                              (f"{CACHED} (cached)", repeat(CACHED))):
            greetings, bad, errors, elapsed, samples, seen, rate, cpu = parallel(
                d, sources, args.parallel, args.seconds, pids)
            print(f"  {name:<26} {rate:>6.0f} client checks/s; {greetings} greetings in "
                  f"{elapsed:.2f} s; connect() to 220 (ms) {latency_figures(samples)}")
            print(f"    {seen}")
            print(f"    CPU (% of one core): {cpu.figures(elapsed)}")
            if bad:
                print(f"    {len(bad)} greetings were not 220: {sorted(set(bad))}")
            if errors:
                print(f"    {len(errors)} connections failed, such as {errors[0]}")
        stats = d.stats()
        for key in ("client checks", "dns questions"):
            print(f"smtpctl show stats: {key}: {stats.get(key)}")
        d.print_problems()
    finally:
        d.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=300, help="sequential connections per case")
    ap.add_argument("--parallel", type=int, default=50,
                    help="connections at a time for the throughput figures")
    ap.add_argument("--seconds", type=float, default=3.0,
                    help="duration of each throughput run")
    args = ap.parse_args()

    dns = dns_server().start()
    try:
        run(dns, args)
    finally:
        dns.stop()
    print(f"# load average after: {loadavg()}")


if __name__ == "__main__":
    main()
