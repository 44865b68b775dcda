#!/usr/bin/env python3
"""A campaign (issue 17): 100,000 recipients in 1,000 domains (d0.relay.test ...
d999.relay.test) with a limit of 100 messages a minute to each domain, relayed to one
counting sink (benchlib.Sink). Prints the time to finish beside the least the limits allow,
recipients/s, how closely each domain's limit was kept (at the sink), and the mta process's
memory (VmRSS sampled during the run, and VmHWM, the kernel's own peak).

    tests/bench/campaign.py [--scale 1.0] [--recipients 100] [--domains 1000] [--rate 100]
                            [--size 1024] [--inject-sessions 4] [--limit KEY=VALUE]

Shape: a newsletter of 1,000 messages of 100 recipients each (a common cap on recipients per
message at submission), message m to one address in each of the domains m*100 ... m*100+99
(mod 1000), so that every domain receives 100 single-recipient transactions, one from each of
100 different messages. --scale multiplies the messages (0.1: 100 messages, 10,000
recipients, 10 transactions a domain).

The limit must apply per domain, and mta keys destinations by route: one route for
"*.relay.test" would make all 1,000 domains one destination with one budget. So each domain
has a route of its own (routes: 1,000 entries, all to the sink), and
`limits: destination_rate` gives each its 100 a minute. The connection cache is looked up by
server address, so the domains share the connections to the one sink (at most
limits.relay_connections, 500 by default).

Prints figures only; see README in this folder."""

import argparse
import bisect
import os
import signal
import sys
import time

import benchlib
from relay_throughput import body_of, inject


def config(domains, sink_port):
    routes = "".join(f"  - match: [d{i}.relay.test]\n    via: smtp://127.0.0.1:{sink_port}\n"
                     for i in range(domains))
    return f'relay_domains: ["*.relay.test"]\nroutes:\n{routes}'


def worst_minute(times):
    """The most arrivals within any 60 s of one domain's sorted arrival times."""
    most = 0
    for i, t in enumerate(times):
        most = max(most, bisect.bisect_left(times, t + 60.0, i) - i)
    return most


def print_stuck(d):
    """What mta and the queue hold when the campaign stopped moving."""
    relays = d.smtpctl("show", "relays").stdout.splitlines()
    waiting = [line for line in relays if " deliveries waiting" in line
               and not line.split(", ")[1].startswith("0 ")]
    print(f"# stuck: smtpctl show relays lists {len(relays)} lines, {len(waiting)} "
          f"destinations with deliveries waiting; first: {waiting[:3] or relays[:3]}")
    queue = d.smtpctl("show", "queue").stdout.splitlines()
    held = [line.strip() for line in queue if line.startswith("    ")]
    print(f"# stuck: {len(held)} recipients in the queue, "
          f"{sum('(in delivery)' in line for line in held)} of them 'in delivery'; first: "
          f"{held[:3]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiplies the messages (default 1.0: 1,000 messages)")
    parser.add_argument("--recipients", type=int, default=100,
                        help="recipients per message (default 100)")
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=100,
                        help="messages a minute to each domain (default 100)")
    parser.add_argument("--size", type=int, default=1024, help="body bytes (default 1024)")
    parser.add_argument("--inject-sessions", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1,
                        help="campaigns one after the other through the same daemon (a "
                        "second shows whether mta's memory keeps growing; default 1)")
    parser.add_argument("--stall", type=float, default=120,
                        help="give up when nothing arrived for this long (default 120 s)")
    parser.add_argument("--limit", action="append", default=[], metavar="KEY=VALUE",
                        help="another `limits:` entry (repeatable)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    benchlib.raise_fd_limit(8192)

    count = max(1, round(1000 * args.scale))
    messages = [[f"u{m}@d{(m * args.recipients + j) % args.domains}.relay.test"
                 for j in range(args.recipients)] for m in range(count)]
    total = count * args.recipients
    per_domain = {}
    for rcpts in messages:
        for r in rcpts:
            domain = r.split("@", 1)[1]
            per_domain[domain] = per_domain.get(domain, 0) + 1
    most = max(per_domain.values())
    capacity = max(1.0, args.rate / 60.0)  # the token bucket starts full (mta/shaping.cpp)
    least = max(0.0, (most - capacity) * 60.0 / args.rate)

    sink = benchlib.Sink()
    port = sink.listen()
    limits = {"sessions": 200, "sessions_per_ip": 200, "destination_rate": args.rate}
    limits.update(item.split("=", 1) for item in args.limit)
    d = benchlib.Daemon(limits=limits, extra=config(args.domains, port))
    print(f"# campaign: {count} messages x {args.recipients} recipients = {total} recipients "
          f"in {len(per_domain)} domains (up to {most} single-recipient transactions each), "
          f"{args.size}-byte body, {args.rate} messages a minute per domain; sink :{port}; "
          f"{os.cpu_count()} CPUs; load average {benchlib.loadavg()}", flush=True)
    print(f"# limits: {', '.join(f'{k}={v}' for k, v in limits.items())}; "
          f"{args.domains} routes, one per domain")
    try:
        d.start()
        mta = d.pids()["mta"]
        print(f"# mta VmRSS before: {benchlib.vm_rss_kib(mta) / 1024:.1f} MiB")
        for n in range(args.rounds):
            run(d, sink, messages, args, least, capacity, f"round {n + 1}: ")
        d.print_problems()
    finally:
        d.stop()
        sink.stop()


def run(d, sink, messages, args, least, capacity, label):
    """One campaign through the running daemon; prints its figures."""
    total = sum(len(m) for m in messages)
    pids = d.pids()
    mta = pids["mta"]
    sampler = benchlib.RssSampler(mta)
    meter = benchlib.CpuMeter({role: pids[role] for role in ("smtp", "queue", "mta")})
    sink.reset()
    opened, sink.peak_open = sink.opened, sink.open_now
    started = time.monotonic()
    errors = inject(d.port, messages, args.inject_sessions, body_of(args.size))
    injected = time.monotonic() - started
    if errors:
        print(f"# {label}injection errors: {errors[:3]}")
    print(f"# {label}injected in {injected:.1f} s ({total / injected:.0f} recipients/s, "
          f"{len(messages) / injected:.0f} msg/s); the least the limits allow from the first "
          f"delivery: {least:.1f} s", flush=True)
    done = benchlib.wait_for(lambda: sink.received() >= total,
                             timeout=max(900, 5 * least), stall=args.stall,
                             progress=sink.received, interval=0.2)
    sampler.stop()
    meter.stop()
    if not done:
        print_stuck(d)
    arrivals = sorted(sink.arrivals)
    got = len(arrivals)
    first, last = (arrivals[0][0], arrivals[-1][0]) if arrivals else (started, started)
    seconds = last - started
    # The queue records the last results a moment after the sink has them.
    benchlib.wait_for(lambda: (d.status() or {}).get("queue", {}).get("details", {})
                      .get("queued") == "0", 10)
    queue = (d.status() or {}).get("queue", {}).get("details", {})
    with open(f"/proc/{mta}/status") as f:
        hwm = next((int(line.split()[1]) for line in f if line.startswith("VmHWM:")), 0)
    by_domain = {}
    for t, domain in arrivals:
        by_domain.setdefault(domain, []).append(t)
    worst = max((worst_minute(times) for times in by_domain.values()), default=0)
    finish = max((times[-1] - times[0] for times in by_domain.values()), default=0)
    print(f"{label}received {got}/{total} recipients in {sink.transactions} transactions"
          + ("" if done else " (stalled: not all arrived)"))
    print(f"{label}time: {seconds:.1f} s from the first injection to the last delivery "
          f"({last - first:.1f} s from the first delivery); least the limits allow "
          f"{least:.1f} s; slowest domain, its first to its last: {finish:.1f} s; ratio "
          f"{(last - first) / least if least else 0:.2f}")
    print(f"{label}rate: {got / seconds if seconds else 0:.0f} recipients/s overall; most in "
          f"any 60 s to one domain: {worst} (limit {args.rate}, plus the bucket's "
          f"{capacity:.2f} at the start)")
    print(f"{label}mta memory: VmRSS peak sampled {sampler.peak / 1024:.1f} MiB, VmHWM "
          f"{hwm / 1024:.1f} MiB (since it started), at the end "
          f"{benchlib.vm_rss_kib(mta) / 1024:.1f} MiB (target <= 50 MiB); at most "
          f"{sampler.peak_fds} descriptors open")
    print(f"{label}queue: delivered {queue.get('delivered')}, deferred {queue.get('deferred')}, "
          f"bounced {queue.get('bounced')}, queued {queue.get('queued')} (counters since "
          f"start); sink: {sink.opened - opened} connections, at most {sink.peak_open} at once")
    print(f"# {label}cpu: {meter.figures(max(seconds, 0.001))}; load average "
          f"{benchlib.loadavg()}", flush=True)

if __name__ == "__main__":
    main()
