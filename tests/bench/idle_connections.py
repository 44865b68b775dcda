#!/usr/bin/env python3
"""Memory of the mta process with idle cached connections (issue 17): makes mta open
--connections (default 1000) connections to sinks and keep them, idle, in its connection
cache, and measures it (smaps_rollup and descriptors) with the first (the warm-up's), with
them all, and after the sinks closed them; prints the added KiB per connection.

    tests/bench/idle_connections.py [--connections 1000] [--reuse 10]

The connection cache is keyed by server address, so one domain per connection, each routed
to a sink port of its own: the domains i0.idle.test ... i998.idle.test, each with a route
(`routes:` holds at most 1,000) to its own listening port of one asyncio sink
(benchlib.Sink), which answers at once and never closes a connection itself. One message to
each domain makes mta open its connection; `limits: connection_idle: 1h` keeps them and
`relay_connections` is raised above the count (500 by default). Before the baseline as
many messages go to a domain of its own (warm.idle.test) over one connection (a shaping
rule allows it one), so that one-time set-up and the heap that handling the messages
takes are not charged to the connections. Then --reuse more messages to as many of the
domains must go over the cached connections (no new connection at the sinks). Kernel
socket buffers are not process memory; /proc/net/sockstat's TCP figure is printed beside
(both ends of every loopback connection, whole machine: only a hint).

Prints figures only; see README in this folder."""

import argparse
import os
import signal
import sys
import time

import benchlib
from idle_memory import tcp_mem_kib
from relay_throughput import body_of, inject


def measure(pid):
    rollup = benchlib.smaps_rollup(pid)
    rollup["VmRSS"] = benchlib.vm_rss_kib(pid)
    rollup["fds"] = benchlib.open_fds(pid)
    rollup["tcp_mem"] = tcp_mem_kib()
    return rollup


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000,
                        help="idle connections mta holds in the end, the warm-up's included "
                        "(2 to 1000; default 1000)")
    parser.add_argument("--reuse", type=int, default=10,
                        help="messages sent afterwards over cached connections (default 10)")
    args = parser.parse_args()
    # Routes hold at most 1,000, one of them the warm-up's; n are measured.
    n = max(1, min(args.connections, 1000) - 1)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    limit = benchlib.raise_fd_limit(3 * n + 1024)  # the sink's listeners and sessions, and mta

    sink = benchlib.Sink()
    warm_port = sink.listen()
    ports = [sink.listen() for _ in range(n)]
    routes = [f"  - match: [warm.idle.test]\n    via: smtp://127.0.0.1:{warm_port}\n"]
    routes += [f"  - match: [i{i}.idle.test]\n    via: smtp://127.0.0.1:{port}\n"
               for i, port in enumerate(ports)]
    cap = n + 100
    d = benchlib.Daemon(limits={"sessions": 200, "sessions_per_ip": 200,
                                "relay_connections": cap, "connection_idle": "1h"},
                        extra='relay_domains: ["*.idle.test"]\nroutes:\n' + "".join(routes) +
                        "shaping:\n  - match: [warm.idle.test]\n    connections: 1\n")
    body = body_of(1024)
    try:
        d.start()
        mta = d.pids()["mta"]
        print(f"# mta idle connections: {n} domains, each routed to a sink port of its own; "
              f"limits relay_connections {cap}, connection_idle 1h; fd limit {limit}; "
              f"{os.cpu_count()} CPUs; load average {benchlib.loadavg()}", flush=True)
        if inject(d.port, [[f"w{i}@warm.idle.test"] for i in range(n)], 4, body):
            d.fail("the warm-up messages were refused")
        if not benchlib.wait_for(lambda: sink.received() >= n and sink.open_now == 1, 60):
            d.fail("the warm-up messages did not arrive")
        time.sleep(1.0)
        before = measure(mta)

        started = time.monotonic()
        errors = inject(d.port, [[f"a@i{i}.idle.test"] for i in range(n)], 4, body)
        if errors:
            print(f"# injection errors: {errors[:3]}")
        arrived = benchlib.wait_for(lambda: sink.received() >= 2 * n and
                                    sink.open_now >= n + 1, 120, stall=30,
                                    progress=lambda: (sink.received(), sink.open_now))
        opened = time.monotonic() - started
        time.sleep(2.0)  # every transaction's report is back, every connection parked
        during = measure(mta)
        still_open = sink.open_now

        opened_before = sink.opened
        received_before = sink.received()
        picks = sorted({round(i * (n - 1) / max(args.reuse - 1, 1)) for i in range(args.reuse)})
        errors = inject(d.port, [[f"b@i{i}.idle.test"] for i in picks], 1, body)
        benchlib.wait_for(lambda: sink.received() >= received_before + len(picks), 30)
        reused = sink.received() - received_before
        new_connections = sink.opened - opened_before

        sink.close_all()
        benchlib.wait_for(lambda: benchlib.open_fds(mta) <= before["fds"] - 1, 30)
        time.sleep(1.0)
        after = measure(mta)
        d.print_problems()
    finally:
        d.stop()
        sink.stop()

    print(f"# {n} messages delivered and their connections parked in {opened:.1f} s"
          + ("" if arrived else " (not all arrived or opened)")
          + f"; sink: {still_open} connections open, {sink.opened} opened in all")
    print()
    print(f"{'mta':30} {'VmRSS':>8} {'Rss':>8} {'Pss':>8} {'Pss_Anon':>9} {'Priv_Dirty':>10} "
          f"{'fds':>5} {'TCP mem':>8}")
    for label, m in (("warm-up's connection only", before),
                     (f"{n + 1} idle connections", during),
                     ("after the sinks closed them", after)):
        print(f"{label:30} {m['VmRSS']:>8} {m.get('Rss', 0):>8} {m.get('Pss', 0):>8} "
              f"{m.get('Pss_Anon', 0):>9} {m.get('Private_Dirty', 0):>10} {m['fds']:>5} "
              f"{m['tcp_mem']:>8}")
    print("(KiB; mta pid " + str(mta) + "; TCP mem: kernel socket memory, whole machine)")
    print()
    per = {key: (during[key] - before[key]) / n
           for key in ("VmRSS", "Pss", "Pss_Anon", "Private_Dirty", "tcp_mem")}
    print(f"added per idle connection: VmRSS {per['VmRSS']:.1f} KiB, Pss {per['Pss']:.1f} KiB, "
          f"Pss_Anon {per['Pss_Anon']:.1f} KiB, Private_Dirty {per['Private_Dirty']:.1f} KiB; "
          f"kernel TCP (both ends) {per['tcp_mem']:.1f} KiB")
    print(f"given back once closed: VmRSS {(during['VmRSS'] - after['VmRSS']) / n:.1f} KiB per "
          f"connection (the rest stays in the allocator's free lists, or was the messages')")
    print(f"reuse: {reused} of {len(picks)} further messages to cached domains arrived; "
          f"{new_connections} new connections for them"
          + (f"; injection errors {errors[:2]}" if errors else ""))
    print(f"# load average after: {benchlib.loadavg()}")


if __name__ == "__main__":
    main()
