#!/usr/bin/env python3
"""Relay throughput, Postern beside Postfix in one run: both relay mail for r0.relay.test ...
r99.relay.test to the same Postfix smtp-sink on loopback, in alternating rounds.

    tests/bench/relay_throughput.py [--rounds 2] [--messages 20] [--recipients 1000]
                                    [--domains 100] [--size 1024] [--inject-sessions 4]
                                    [--no-postfix]

Each round injects --messages messages of --recipients recipients (spread evenly over the
--domains domains, every address distinct) with pipelined SMTP (MAIL, every RCPT and DATA
written at once) over --inject-sessions connections, and times from the first connection
until the last recipient is reported delivered: for Postern, the queue's `delivered`
counter (smtpctl show status) has grown by the recipients and `queued` is 0; for Postfix,
its queue directories hold no message and its log has a status=sent line for every
recipient. The sink appends every transaction to a file (smtp-sink -D): its X-Rcpt-Args
lines count the recipients it received, its X-Mail-Args lines the transactions.

Postern is a private daemon (benchlib) with `relay_domains: ["*.relay.test", relay.test]`
and a route to the sink. Postfix is the real daemon from the Debian package that
tests/postfix_tools.py unpacks (no installation), run as a private instance (postfixlib.py,
shared with throttled_receivers.py): its own
config, queue and data directories in a temporary directory, smtpd on a free loopback
port, `relay_domains = relay.test .relay.test`, `relayhost = [127.0.0.1]:SINK`, no chroot,
no TLS, default concurrency and recipient limits, logging through postlogd into a file
(maillog_file). It needs the user `postfix` and the group `postdrop`: they are created
(useradd/groupadd --system) when missing, and the program says so.

Prints figures only; see README in this folder."""

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import benchlib
import postfixlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import postfix_tools  # noqa: E402

STALL_SECONDS = 20  # a round in which nothing more is delivered for this long is stuck


class Sink:
    """Postfix's smtp-sink on a free loopback port, as nobody, appending every transaction to
    one dump file (-D: one file, not one per transaction, so that tens of thousands of
    messages do not create and later delete as many inodes beside the spools); counts what
    arrived since the last mark()."""

    def __init__(self, base_dir):
        self.program, self.env = postfix_tools.tool("smtp-sink")
        self.dir = tempfile.mkdtemp(prefix="postern-bench-sink-", dir=base_dir)
        os.chmod(self.dir, 0o777)  # written by smtp-sink as nobody
        self.dump = os.path.join(self.dir, "dump")
        self.port = benchlib.free_port()
        self.offset = 0
        self.proc = None

    def start(self):
        # 256: the listen backlog. -u nobody: the privileges it takes once listening.
        self.proc = subprocess.Popen([self.program, "-u", "nobody", "-D", self.dump,
                                      f"127.0.0.1:{self.port}", "256"], env=self.env,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        if not benchlib.wait_listening(self.port, 10):
            self.stop()
            sys.exit("smtp-sink did not start listening")

    def mark(self):
        self.offset = os.path.getsize(self.dump) if os.path.exists(self.dump) else 0

    def count(self):
        """(transactions, recipients) dumped since mark(): each transaction starts with
        X-Client-Addr, X-Client-Proto, X-Helo-Args, X-Mail-Args and an X-Rcpt-Args line
        per recipient."""
        try:
            with open(self.dump, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return 0, 0
        return data.count(b"\nX-Mail-Args: "), data.count(b"\nX-Rcpt-Args: ")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def recipients_of(message, per_message, domains):
    """per_message distinct addresses spread evenly over the domains."""
    return [f"u{message}-{i // domains}@r{i % domains}.relay.test" for i in range(per_message)]


def body_of(size):
    line = b"x" * 78 + b"\r\n"
    text = (line * (size // len(line) + 1))[:size - 2] + b"\r\n"
    return b"From: a@example.com\r\nSubject: relay bench\r\n\r\n" + text


def inject(port, messages, sessions, body):
    """Sends each (recipients) message pipelined over sessions connections in parallel;
    returns the error strings (empty when every message got its 250)."""
    errors = []
    shares = [messages[i::sessions] for i in range(sessions)]

    def session(share):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                replies = benchlib.Replies(s)
                if replies.reply()[0] != 220:
                    raise RuntimeError("no 220 greeting")
                s.sendall(b"EHLO bench.client\r\n")
                if replies.reply()[0] != 250:
                    raise RuntimeError("EHLO refused")
                for rcpts in share:
                    s.sendall(b"MAIL FROM:<a@example.com>\r\n" +
                              b"".join(b"RCPT TO:<%s>\r\n" % r.encode() for r in rcpts) +
                              b"DATA\r\n")
                    codes = [replies.reply() for _ in range(len(rcpts) + 2)]
                    bad = [c for c in codes[:-1] if c[0] != 250]
                    if bad or codes[-1][0] != 354:
                        raise RuntimeError(f"refused: {(bad or codes[-1:])[0][1][:120]!r}")
                    s.sendall(body + b".\r\n")
                    code, line = replies.reply()
                    if code != 250:
                        raise RuntimeError(f"end of data refused: {line[:120]!r}")
                s.sendall(b"QUIT\r\n")
        except (OSError, RuntimeError, ConnectionError) as e:
            errors.append(str(e))

    threads = [threading.Thread(target=session, args=(share,)) for share in shares if share]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def smtp_source_pool(port, sessions, messages, domains, size):
    """Workload 2: messages single-recipient messages, to u@r0.relay.test ... u@rN.relay.test
    in equal shares, sent by smtp-source over sessions connections at a time. smtp-source
    sends to one address per process, so every domain's share is one smtp-source -s 1 -d
    (one connection, message after message) and sessions of them run at once; returns the
    error strings (smtp-source exits non-zero at the first reply it did not expect)."""
    program, env = postfix_tools.tool("smtp-source")
    jobs = [(d, messages // domains + (1 if d < messages % domains else 0))
            for d in range(domains)]
    jobs = [job for job in jobs if job[1]]
    errors = []
    lock = threading.Lock()

    def slot():
        while True:
            with lock:
                if not jobs:
                    return
                domain, count = jobs.pop()
            r = subprocess.run([program, "-d", "-s", "1", "-m", str(count), "-l", str(size),
                                "-f", "a@example.com", "-t", f"u@r{domain}.relay.test",
                                f"127.0.0.1:{port}"], env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if r.returncode != 0:
                with lock:
                    errors.append(f"r{domain}: {r.stderr.strip()[:200]}")

    threads = [threading.Thread(target=slot) for _ in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


class PosternTarget:
    """The private Postern daemon as a round sees it: its port, its queue's counters (what
    it delivered, deferred and bounced so far; idle when it holds no message) and the CPU
    of its busiest processes."""

    name = "postern"

    def __init__(self, daemon):
        self.d = daemon
        self.port = daemon.port

    def counters(self):
        queue = (self.d.status() or {}).get("queue", {}).get("details", {})
        return {key: int(queue.get(key, 0))
                for key in ("delivered", "deferred", "bounced", "queued")}

    def meter(self, sink_pid):
        return benchlib.CpuMeter({**{role: pid for role, pid in self.d.pids().items()
                                     if role in ("smtp", "queue", "mta")}, "sink": sink_pid})

    def stuck(self):
        relays = self.d.smtpctl("show", "relays").stdout.strip()
        queue = self.d.smtpctl("show", "queue").stdout.splitlines()
        held = [line.strip() for line in queue if line.startswith("    ")]
        print(f"#   mta (smtpctl show relays): {relays[:500]}")
        print(f"#   recipients in the queue: {len(held)}, of which "
              f"{sum('(in delivery)' in line for line in held)} 'in delivery'; first: "
              f"{held[:3]}")


class PostfixTarget:
    """The Postfix instance as a round sees it: its log's status=sent, deferred and bounced
    lines so far; idle when its queue directories hold no message. Its CPU is not split by
    process (a few dozen short-lived ones): the meter has the sink's and the machine's."""

    name = "postfix"

    def __init__(self, pf):
        self.pf = pf
        self.port = pf.port

    def counters(self):
        counts = self.pf.update_counts()
        return {"delivered": counts["sent"], "deferred": counts["deferred"],
                "bounced": counts["bounced"], "queued": self.pf.queued()}

    @staticmethod
    def meter(sink_pid):
        return benchlib.CpuMeter({"sink": sink_pid})

    def stuck(self):
        pass


def run_round(target, sink, total, send, label):
    """One measured run: send(port) injects total recipients; timed from its start until
    the target has reported every one delivered and holds no more messages than before
    the run (mail an earlier run left stuck stays). A run in which nothing more is
    delivered for STALL_SECONDS is reported stuck, and timed until its last delivery."""
    before = target.counters()
    sink.mark()
    meter = target.meter(sink.proc.pid)
    started = time.monotonic()
    errors = send(target.port)
    accepted = time.monotonic() - started
    progress, last_change = None, time.monotonic()
    while True:
        now = target.counters()
        if now["delivered"] - before["delivered"] >= total and now["queued"] <= before["queued"]:
            break
        if (now["delivered"], now["queued"]) != progress:
            progress, last_change = (now["delivered"], now["queued"]), time.monotonic()
        if errors or time.monotonic() - last_change > STALL_SECONDS:
            print(f"# {target.name} stuck: nothing delivered for {STALL_SECONDS} s; counters "
                  f"{now} (before the run {before}); injection errors {errors[:3]}")
            target.stuck()
            break
        time.sleep(0.02)
    metered = time.monotonic() - started
    meter.stop()
    seconds = (metered + started if now["queued"] <= before["queued"] else last_change) - started
    counts = {k: now[k] - before[k] for k in ("delivered", "deferred", "bounced")}
    # The sink writes its dump at the end of each transaction: give the last one a moment.
    deadline = time.monotonic() + 3
    transactions, received = sink.count()
    while received < counts["delivered"] and time.monotonic() < deadline:
        time.sleep(0.05)
        transactions, received = sink.count()
    row = {"mta": target.name, "label": label, "total": total, "accepted": accepted,
           "seconds": seconds, "rate": counts["delivered"] / seconds, **counts,
           "sink_txns": transactions, "sink_rcpts": received, "errors": len(errors)}
    print(f"{target.name:>8} {label:>6} {total:>7} {accepted:>8.2f} {total / accepted:>8.0f} "
          f"{seconds:>8.2f} {row['rate']:>8.0f} {counts['delivered']:>7} "
          f"{counts['deferred']:>5} {counts['bounced']:>6} {transactions:>6} {received:>7}  "
          f"load {benchlib.loadavg()}", flush=True)
    print(f"#   cpu: {meter.figures(metered)}" +
          (f"; injection errors: {errors[:3]}" if errors else ""), flush=True)
    return row


HEADER = (f"{'mta':>8} {'run':>6} {'rcpts':>7} {'accept_s':>8} {'accept/s':>8} {'total_s':>8} "
          f"{'relay/s':>8} {'sent':>7} {'defer':>5} {'bounce':>6} {'s_txns':>6} {'s_rcpts':>7}")


def settle(seconds):
    """Waits for the file system to forget the files the last run removed. On ext4 without a
    journal (this machine's root) an inode freed in the last 30 s, or longer while its
    inode table block is dirty, is skipped one by one by every allocation after it: a run
    right after one that removed 50,000 spool files pays for them, whichever daemon made
    them. sync writes those blocks out; the wait lets the 30 s pass."""
    if seconds > 0:
        os.sync()
        time.sleep(seconds)


def print_summary(rows, groups):
    """Per workload (rows whose run label starts with the group), the median relayed and
    accepted rates of each daemon and the ratio Postern / Postfix."""
    for group in groups:
        median = {}
        for name in ("postern", "postfix"):
            mine = [r for r in rows if r["mta"] == name and r["label"].split(".")[0] == group]
            if mine:
                median[name] = (statistics.median(r["rate"] for r in mine),
                                statistics.median(r["total"] / r["accepted"] for r in mine),
                                len(mine))
        parts = [f"{name} {relayed:.0f}/s relayed, {accepted:.0f}/s accepted ({n} runs)"
                 for name, (relayed, accepted, n) in median.items()]
        if len(median) == 2:
            parts.append(f"ratio {median['postern'][0] / median['postfix'][0]:.2f}")
        if parts:
            print(f"# {group}: " + "; ".join(parts))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating rounds of the first workload (default 3)")
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--recipients", type=int, default=1000,
                        help="recipients per message (default 1000)")
    parser.add_argument("--domains", type=int, default=100)
    parser.add_argument("--size", type=int, default=1024, help="body bytes (default 1024)")
    parser.add_argument("--inject-sessions", type=int, default=4,
                        help="parallel injecting connections, first workload (default 4)")
    parser.add_argument("--single", type=int, default=50000,
                        help="single-recipient messages of the second workload, 0 for none "
                        "(default 50000)")
    parser.add_argument("--single-rounds", type=int, default=2,
                        help="alternating rounds of the second workload (default 2)")
    parser.add_argument("--settle", type=float, default=35,
                        help="seconds to wait (after sync) before each run of the second "
                        "workload, so that the files the run before removed do not slow "
                        "this one (default 35)")
    parser.add_argument("--single-sessions", default="10,50",
                        help="smtp-source sessions of the second workload (default 10,50)")
    parser.add_argument("--no-postfix", action="store_true", help="measure Postern alone")
    parser.add_argument("--limit", action="append", default=[], metavar="KEY=VALUE",
                        help="a Postern `limits:` entry, for experiments (repeatable)")
    parser.add_argument("--source", metavar="ADDRESS",
                        help="the route's source address for Postern's mail, to see what "
                        "binding costs")
    parser.add_argument("--tmpdir", help="directory for spools, queue and sink dump "
                        "(default $POSTERN_BENCH_TMPDIR or /tmp)")
    args = parser.parse_args()
    base_dir = args.tmpdir or os.environ.get("POSTERN_BENCH_TMPDIR")
    benchlib.raise_fd_limit(4096)
    # A SIGTERM (timeout(1), say) stops the daemons and the sink too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))

    messages = [recipients_of(i, args.recipients, args.domains) for i in range(args.messages)]
    body = body_of(args.size)
    print(f"# relay throughput; {os.cpu_count()} CPUs; load average before: "
          f"{benchlib.loadavg()}", flush=True)
    if args.limit:
        print(f"# postern limits: {', '.join(args.limit)}")
    if args.source:
        print(f"# postern mail leaves from {args.source}")

    sink = Sink(base_dir)
    sink.start()
    limits = {"sessions": 2000, "sessions_per_ip": 2000}
    limits.update(item.split("=", 1) for item in args.limit)
    d = benchlib.Daemon(limits=limits, base_dir=base_dir,
                        extra=f"""relay_domains: ["*.relay.test", relay.test]
routes:
  - match: [relay.test, "*.relay.test"]
    via: smtp://127.0.0.1:{sink.port}
""" + (f"    source: {args.source}\n" if args.source else ""))
    pf = None
    rows = []
    try:
        d.start()
        targets = [PosternTarget(d)]
        if not args.no_postfix:
            created = postfixlib.ensure_postfix_accounts()
            if created:
                print(f"# created for Postfix: {', '.join(created)}")
            pf = postfixlib.PostfixInstance(sink.port, base_dir)
            try:
                pf.start()
                targets.append(PostfixTarget(pf))
            except RuntimeError as e:
                print(f"# Postfix did not start, Postern alone: {e}")
                pf.stop()
                pf = None
        print(f"# smtp-sink {sink.program} on :{sink.port}; postern :{d.port}" +
              (f"; postfix :{pf.port} ({pf.dir})" if pf else ""))
        total = sum(len(m) for m in messages)
        print(f"# 1: {args.messages} messages x {args.recipients} recipients over "
              f"{args.domains} domains, {args.size}-byte body, injected pipelined over "
              f"{args.inject_sessions} sessions; {args.rounds} alternating rounds")
        print(HEADER, flush=True)
        for n in range(args.rounds):
            for target in targets:
                rows.append(run_round(target, sink, total, lambda port: inject(
                    port, messages, args.inject_sessions, body), f"1.{n + 1}"))
        single_sessions = [int(x) for x in args.single_sessions.split(",") if x]
        if args.single:
            print(f"# 2: {args.single} single-recipient messages over {args.domains} domains "
                  f"(smtp-source -s 1 -d per domain, that many at once), {args.size}-byte "
                  f"body; {args.single_rounds} alternating rounds, each run after sync and "
                  f"{args.settle:g} s")
            print(HEADER, flush=True)
            for n, sessions in ((n, s) for n in range(args.single_rounds)
                                for s in single_sessions):
                for target in targets:
                    settle(args.settle)
                    rows.append(run_round(target, sink, args.single,
                                          lambda port: smtp_source_pool(
                                              port, sessions, args.single, args.domains,
                                              args.size), f"s{sessions}.{n + 1}"))
        d.print_problems()
        if pf:
            warnings = [l for l in pf.read_log().splitlines()
                        if "warning:" in l and "postfix-script" not in l]
            print(f"postfix log: {len(warnings)} warnings (not counting postfix check's)")
            for line in warnings[:5]:
                print(f"  {line}")
    finally:
        d.stop()
        if pf:
            pf.stop()
        sink.stop()

    print_summary(rows, ["1"] + ([f"s{n}" for n in single_sessions] if args.single else []))
    print("# targets: 1, postern >= 4x postfix and >= 10,000 recipients/s; 2, postern relayed "
          ">= its accept rate and >= 3x postfix")
    print(f"# load average after: {benchlib.loadavg()}")


if __name__ == "__main__":
    main()
