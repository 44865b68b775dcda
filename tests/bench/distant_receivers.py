#!/usr/bin/env python3
"""Distant receivers (issue 17): Postern relays to a sink 50 ms away. This kernel has no
netem, so the delay lives in the sink (benchlib.Sink): what the client sends is handled 25 ms
after it arrived and every reply leaves 25 ms after it was made, a 50 ms round trip. The sink
counts the round trips the client waited for. For each allowed concurrency (a shaping rule's
`connections:` for the route's domain) it prints round trips per message and msg/s beside the
ideal, concurrency / (2 round trips x 50 ms).

    tests/bench/distant_receivers.py [--concurrency 1,2,5,10,20] [--seconds 10]
                                     [--delay-ms 25] [--size 1024]

Prints figures only; see README in this folder."""

import argparse
import os
import signal
import subprocess
import sys
import time

import benchlib
from relay_throughput import body_of, inject


def measure(concurrency, messages, sink, args, body):
    """One daemon allowed concurrency connections to the sink: the messages are injected
    while mta is paused, then timed from `resume mta` until the sink has them all."""
    d = benchlib.Daemon(limits={"sessions": 200, "sessions_per_ip": 200},
                        extra=f"""relay_domains: [relay.test]
routes:
  - match: [relay.test]
    via: smtp://127.0.0.1:{sink.port}
shaping:
  - match: [relay.test]
    connections: {concurrency}
""")
    try:
        d.start()
        if d.smtpctl("pause", "mta").returncode != 0:
            d.fail("smtpctl pause mta failed")
        errors = inject(d.port, [[f"u{i}@relay.test"] for i in range(messages)], 4, body)
        if errors:
            d.fail(f"injection failed: {errors[:3]}")
        sink.reset()
        sink.peak_open = sink.open_now
        opened = sink.opened
        mta = d.pids()["mta"]
        meter = benchlib.CpuMeter({"mta": mta, "queue": d.pids()["queue"]})
        started = time.monotonic()
        d.smtpctl("resume", "mta")
        done = benchlib.wait_for(lambda: sink.received() >= messages, timeout=600, stall=30,
                                 progress=sink.received)
        meter.stop()
        time.sleep(2 * args.delay_ms / 1000 + 0.1)  # the last replies are still on their way
        arrivals = sorted(t for t, _ in sink.arrivals)
        got = len(arrivals)
        seconds = (arrivals[-1] - started) if arrivals else 0.0
        rate = got / seconds if seconds else 0.0
        # Steady state: after the first tenth arrived (connections open by then).
        tenth = arrivals[got // 10] if got >= 20 else None
        steady = ((got - got // 10 - 1) / (arrivals[-1] - tenth)
                  if tenth and arrivals[-1] > tenth else 0.0)
        trips = dict(sink.round_trips)
        connections = sink.opened - opened
        ideal = concurrency / (2 * 2 * args.delay_ms / 1000)
        print(f"{concurrency:>5} {got:>6} {seconds:>7.2f} {rate:>7.1f} {steady:>7.1f} "
              f"{ideal:>6.1f} {rate / ideal:>6.2f} {trips['message'] / max(1, got):>6.2f} "
              f"{(trips['message'] + trips['setup']) / max(1, got):>6.2f} "
              f"{connections:>5} {sink.peak_open:>5}  load {benchlib.loadavg()}"
              + ("" if done else "  (stalled: not every message arrived)"), flush=True)
        print(f"#   cpu: {meter.figures(max(seconds, 0.001))}", flush=True)
        problems = d.problems()
        if problems:
            print(f"#   daemon log: {len(problems)} warnings/errors, first: {problems[0]}")
    finally:
        d.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="1,2,5,10,20",
                        help="connections allowed to the sink, one run each (default "
                        "1,2,5,10,20)")
    parser.add_argument("--seconds", type=float, default=10,
                        help="each run's length at the ideal rate, which sizes it (at least "
                        "100 messages; default 10)")
    parser.add_argument("--delay-ms", type=float, default=25,
                        help="one-way delay, each direction (default 25: a 50 ms round trip)")
    parser.add_argument("--size", type=int, default=1024, help="body bytes (default 1024)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    benchlib.raise_fd_limit(4096)
    levels = [int(x) for x in args.concurrency.split(",") if x]
    rtt = 2 * args.delay_ms / 1000
    body = body_of(args.size)
    sink = benchlib.Sink(delay=args.delay_ms / 1000)
    sink.port = sink.listen()
    print(f"# distant receivers: sink on :{sink.port} holds input and replies {args.delay_ms:g} "
          f"ms each (round trip {rtt * 1000:g} ms); single-recipient {args.size}-byte messages "
          f"to relay.test, injected while mta is paused, timed from `resume mta`; "
          f"{os.cpu_count()} CPUs; load average {benchlib.loadavg()}", flush=True)
    print(f"# ideal = concurrency / (2 round trips x {rtt * 1000:g} ms); rt/msg: round trips "
          f"the client waited for after MAIL/RCPT/DATA/dot replies, per message; +setup adds "
          f"those after the greeting and EHLO (the TCP handshake is not delayed)")
    print(f"{'conc':>5} {'msgs':>6} {'secs':>7} {'msg/s':>7} {'steady':>7} {'ideal':>6} "
          f"{'ratio':>6} {'rt/msg':>6} {'+setup':>6} {'conns':>5} {'peak':>5}", flush=True)
    try:
        for concurrency in levels:
            messages = max(100, int(round(concurrency / (2 * rtt) * args.seconds)))
            measure(concurrency, messages, sink, args, body)
    except subprocess.SubprocessError as e:
        print(f"# failed: {e}")
    finally:
        sink.stop()
    print(f"# load average after: {benchlib.loadavg()}")


if __name__ == "__main__":
    main()
