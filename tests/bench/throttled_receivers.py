#!/usr/bin/env python3
"""Throttled receivers (issue 17): a sink that allows 5 connections per site and R messages a
second, answering above that with `421 4.7.28 ... rate limited` (to MAIL, then closing, as
Gmail does; a sixth connection gets 421 at the greeting). Postern relays N single-recipient
messages to it through a route, then Postfix (postfixlib: the real daemon, default
concurrency, relayhost the sink) relays the same to a fresh sink; printed for each: goodput
/ R after the first tenth arrived (adapted), and 4xx replies per delivered message, overall
and once adapted; then the two side by side.

    tests/bench/throttled_receivers.py [--rate 20] [--messages 600] [--shaping RATE_PER_MIN]
                                       [--no-postfix] [--postfix-default-timers]

--shaping gives the site a static rate (smtpd.yaml `shaping:`); without it the site is
unlimited and only the reply rules (gmail-rate: halve on 421 4.7.28, then recover) shape it.
Postern retries after 5 s (retry_first), and so does Postfix (minimal_backoff_time and
queue_run_delay 5s, maximal_backoff_time 30s, as Postern's retry_max) unless
--postfix-default-timers leaves it at 300 s. Targets: goodput >= 0.9 R and < 0.05
rejections per delivered message once adapted."""

import argparse
import asyncio
import os
import signal
import smtplib
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
import postfixlib  # noqa: E402


class ThrottledSink:
    """An asyncio SMTP sink: at most `connections` at once, `rate` messages a second (a token
    bucket holding one second's worth)."""

    def __init__(self, rate, connections=5):
        self.rate = rate
        self.max_connections = connections
        self.open = 0
        self.tokens = float(rate)
        self.last = time.monotonic()
        self.delivered = []  # arrival times
        self.rejected = []  # times of 4xx replies
        self.refused = []  # of those, connections refused at the greeting
        self.port = benchlib.free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self.ready.wait()

    def _run(self):
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self.serve, "127.0.0.1", self.port))
        self.ready.set()
        self.loop.run_until_complete(server.serve_forever())

    def take(self):
        now = time.monotonic()
        self.tokens = min(float(self.rate), self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    async def serve(self, reader, writer):
        if self.open >= self.max_connections:
            self.rejected.append(time.monotonic())
            self.refused.append(time.monotonic())
            writer.write(b"421 4.7.0 too many connections from your IP\r\n")
            await writer.drain()
            writer.close()
            return
        self.open += 1
        try:
            await self.session(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def session(self, reader, writer):
        writer.write(b"220 sink ESMTP\r\n")
        while True:
            line = (await reader.readline()).rstrip(b"\r\n").upper()
            if not line:
                return
            if line.startswith((b"EHLO", b"HELO")):
                writer.write(b"250-sink\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n")
            elif line.startswith(b"MAIL"):
                if not self.take():
                    self.rejected.append(time.monotonic())
                    writer.write(b"421 4.7.28 Our system has detected an unusual rate of "
                                 b"unsolicited mail; rate limited\r\n")
                    await writer.drain()
                    return
                writer.write(b"250 2.1.0 ok\r\n")
            elif line.startswith(b"RCPT"):
                writer.write(b"250 2.1.5 ok\r\n")
            elif line == b"DATA":
                writer.write(b"354 go\r\n")
                await writer.drain()
                while (await reader.readline()) not in (b".\r\n", b""):
                    pass
                self.delivered.append(time.monotonic())
                writer.write(b"250 2.0.0 ok\r\n")
            elif line == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()


def inject(port, messages):
    """The workload: messages single-recipient messages to u0@relay.test ... over one SMTP
    session."""
    with smtplib.SMTP("127.0.0.1", port) as s:
        for i in range(messages):
            s.sendmail("a@example.com", [f"u{i}@relay.test"],
                       f"Subject: {i}\r\n\r\n" + ("x" * 72 + "\r\n") * 13)


def measure(name, port, sink, args):
    """Injects the workload into the daemon on port and waits until the sink has every
    message (or --timeout); prints its line and returns (goodput / R, 4xx per delivered once
    adapted, 4xx per delivered overall, delivered)."""
    started = time.monotonic()
    inject(port, args.messages)
    while len(sink.delivered) < args.messages:
        if time.monotonic() - started > args.timeout:
            break
        time.sleep(0.2)
    seconds = time.monotonic() - started
    delivered = len(sink.delivered)
    times = sorted(sink.delivered)
    # Adapted: from the first second after the first tenth was delivered to the end.
    tail = times[len(times) // 10:] if len(times) > 20 else times
    span = (tail[-1] - tail[0]) if len(tail) > 1 else 0
    goodput = (len(tail) - 1) / span if span > 0 else 0
    rejected = len(sink.rejected)
    late = sum(1 for t in sink.rejected if tail and t >= tail[0])
    late_refused = sum(1 for t in sink.refused if tail and t >= tail[0])
    print(f"{name}: delivered {delivered}/{args.messages} in {seconds:.1f} s; "
          f"goodput {goodput:.1f} msg/s = {goodput / args.rate:.2f} R; "
          f"4xx {rejected} = {rejected / max(1, delivered):.3f} per delivered "
          f"({late / max(1, len(tail)):.3f} once adapted, of which {late_refused} "
          f"connections refused at the greeting); "
          f"load average {benchlib.loadavg()}", flush=True)
    return (goodput / args.rate, late / max(1, len(tail)), rejected / max(1, delivered),
            delivered)


def run_postern(args):
    sink = ThrottledSink(args.rate)
    extra = ["relay_domains: [relay.test]",
             "routes:",
             "  - match: [relay.test]",
             f"    via: smtp://127.0.0.1:{sink.port}"]
    if args.shaping:
        extra += ["shaping:", "  - match: [relay.test]", f"    rate: {args.shaping}",
                  "    connections: 5"]
    d = benchlib.Daemon(limits={"sessions": 200, "retry_first": "5s", "retry_max": "30s"},
                        extra="\n".join(extra))
    d.start()
    try:
        return measure("postern", d.port, sink, args)
    finally:
        d.stop(remove=not os.environ.get("POSTERN_BENCH_KEEP"))
        if os.environ.get("POSTERN_BENCH_KEEP"):
            print(f"# kept {d.dir}")


# Postfix defers what the sink refuses and retries it from the deferred queue: after 300 s
# at the earliest by default, longer than the whole run. These are Postern's retry_first
# and retry_max of the same run; queue_run_delay may not exceed minimal_backoff_time.
POSTFIX_TIMERS = """minimal_backoff_time = 5s
maximal_backoff_time = 30s
queue_run_delay = 5s
"""


def run_postfix(args):
    created = postfixlib.ensure_postfix_accounts()
    if created:
        print(f"# created for Postfix: {', '.join(created)}")
    sink = ThrottledSink(args.rate)
    pf = postfixlib.PostfixInstance(
        sink.port, os.environ.get("POSTERN_BENCH_TMPDIR"),
        extra="" if args.postfix_default_timers else POSTFIX_TIMERS)
    try:
        pf.start()
    except RuntimeError as e:
        print(f"# Postfix did not start: {e}")
        pf.stop()
        return None
    try:
        figures = measure("postfix", pf.port, sink, args)
        counts = pf.update_counts()
        print(f"#   postfix log: {counts['sent']} sent, {counts['deferred']} deferred "
              f"(status= lines)")
        return figures
    finally:
        pf.stop(remove=not os.environ.get("POSTERN_BENCH_KEEP"))
        if os.environ.get("POSTERN_BENCH_KEEP"):
            print(f"# kept {pf.dir}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=20)
    ap.add_argument("--messages", type=int, default=600)
    ap.add_argument("--shaping", type=int, default=0, help="a static rate a minute for the site")
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--no-postfix", action="store_true", help="measure Postern alone")
    ap.add_argument("--postfix-default-timers", action="store_true",
                    help="leave Postfix's back-off and queue-run timers at their defaults")
    args = ap.parse_args()
    # A SIGTERM (timeout(1), say) stops the daemons too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    print(f"# throttled receivers: R = {args.rate} msg/s, {args.messages} messages, "
          f"shaping {args.shaping or 'none'}; load average {benchlib.loadavg()}", flush=True)
    postern = run_postern(args)
    postfix = None if args.no_postfix else run_postfix(args)
    if postfix:
        print(f"# postern / postfix: goodput {postern[0]:.2f} R / {postfix[0]:.2f} R = "
              f"{postern[0] / max(postfix[0], 1e-9):.2f}; 4xx per delivered "
              f"{postern[2]:.3f} / {postfix[2]:.3f} (once adapted {postern[1]:.3f} / "
              f"{postfix[1]:.3f})" +
              ("" if args.postfix_default_timers else
               "; Postfix with minimal_backoff_time 5s, maximal_backoff_time 30s, "
               "queue_run_delay 5s"))
    print(f"# load average after: {benchlib.loadavg()}")


if __name__ == "__main__":
    main()
