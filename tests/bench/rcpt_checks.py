#!/usr/bin/env python3
"""Recipient checks per second through IPC: parallel sessions send pipelined batches of
RCPT TO for the users of a virtual users table (loaded in lookup's memory), and each
RCPT is one question from smtp to lookup and its answer. Prints the checks counted by the
clients, the seconds, the checks per second, and lookup's own `recipient checks` counter
(smtpctl show stats) before and after, which must have grown by the same number.

    tests/bench/rcpt_checks.py [--sessions 4] [--duration 5] [--batch 100]
                               [--users 10000] [--unknown 0.0] [--quick-acks]

Each session, in a process of its own: EHLO, then MAIL FROM, --batch RCPT TO and RSET
written at once, every reply read and compared with the one expected (250 for a user of
the table, 550 for an unknown one), repeated for --duration seconds. --unknown is the
share of each batch sent to users the table does not have; those replies count as
errors, which close a session after `limits: errors` (at most 1000), so a session
reconnects before it gets there.

The clients let their kernel delay ACKs, as ordinary clients do; --quick-acks makes them
acknowledge every read at once (TCP_QUICKACK). The two differ only if smtp's replies wait
for ACKs (Nagle's algorithm, which its listeners turn off with TCP_NODELAY): a probe before
the run prints what one small pipelined batch takes both ways, about 1 ms each.

Target: 20,000 checks/s."""

import argparse
import multiprocessing
import os
import random
import re
import resource
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import CpuMeter, Daemon, Replies, first_number, loadavg  # noqa: E402

DOMAIN = b"bench.example"
ERRORS_LIMIT = 1000  # the largest limits: errors the configuration accepts


def connect(port, quickack):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    replies = Replies(s, quickack)
    replies.reply()
    s.sendall(b"EHLO bench\r\n")
    replies.reply()
    return s, replies


def pipelining_probe(port, quickack, rounds=9):
    """Median ms from writing MAIL FROM, 10 RCPT TO and RSET at once to the last reply."""
    s, replies = connect(port, quickack)
    batch = (b"MAIL FROM:<sender@example.com>\r\n" + b"RCPT TO:<u0@%s>\r\n" % DOMAIN * 10 +
             b"RSET\r\n")
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        s.sendall(batch)
        for _ in range(12):
            replies.reply()
        times.append((time.perf_counter() - started) * 1000)
    s.sendall(b"QUIT\r\n")
    replies.reply()
    s.close()
    return sorted(times)[rounds // 2]


def run_session(index, port, args, start_at, out):
    """One session's loop; sends back {checks, known, unknown, mismatches, examples,
    connections, started, finished, cpu seconds, and error if any}."""
    rng = random.Random(index)
    quickack = args.quick_acks
    unknown_per_batch = round(args.batch * args.unknown)
    result = {"checks": 0, "known": 0, "unknown": 0, "mismatches": 0, "examples": [],
              "connections": 0}
    try:
        s, replies = connect(port, quickack)
        result["connections"] += 1
        errors = 0
        while time.monotonic() < start_at:
            time.sleep(0.001)
        result["started"] = time.monotonic()
        deadline = result["started"] + args.duration
        serial = 0
        while time.monotonic() < deadline:
            if errors + unknown_per_batch >= ERRORS_LIMIT:
                s.sendall(b"QUIT\r\n")
                replies.reply()
                s.close()
                s, replies = connect(port, quickack)
                result["connections"] += 1
                errors = 0
            expected = [550] * unknown_per_batch + [250] * (args.batch - unknown_per_batch)
            rng.shuffle(expected)
            commands = [b"MAIL FROM:<sender@example.com>\r\n"]
            for code in expected:
                if code == 250:
                    user = b"u%d" % rng.randrange(args.users)
                else:
                    serial += 1
                    user = b"nobody%d-%d" % (index, serial)
                commands.append(b"RCPT TO:<%s@%s>\r\n" % (user, DOMAIN))
            commands.append(b"RSET\r\n")
            s.sendall(b"".join(commands))
            for want, command in zip([250] + expected + [250], commands):
                code, line = replies.reply()
                if code != want:
                    result["mismatches"] += 1
                    if len(result["examples"]) < 5:
                        result["examples"].append(
                            f"{command.decode().strip()} -> {line.decode().strip()} "
                            f"(expected {want})")
            result["checks"] += len(expected)
            result["known"] += args.batch - unknown_per_batch
            result["unknown"] += unknown_per_batch
            errors += unknown_per_batch
        result["finished"] = time.monotonic()
        s.sendall(b"QUIT\r\n")
        replies.reply()
        s.close()
    except (OSError, ValueError) as e:
        result["error"] = f"session {index}: {e!r}"
        result.setdefault("started", time.monotonic())
        result["finished"] = time.monotonic()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu"] = usage.ru_utime + usage.ru_stime
    out.send(result)
    out.close()


def lookup_counts(d):
    """(checks, local users found, unknown) from lookup's `recipient checks` line."""
    text = d.stats().get("recipient checks", "")
    match = re.match(r"(\d+) \((\d+) local users found, (\d+) unknown\)", text)
    return tuple(int(g) for g in match.groups()) if match else (first_number(text), None, None)


def run_sessions(d, args):
    """Starts the sessions together, waits for them; (results, CpuMeter of smtp and lookup
    meanwhile)."""
    pids = d.pids()
    ctx = multiprocessing.get_context("fork")
    start_at = time.monotonic() + 0.5  # every session connected before the clock runs
    workers = []
    for i in range(args.sessions):
        receive, send = ctx.Pipe(duplex=False)
        p = ctx.Process(target=run_session, args=(i, d.port, args, start_at, send))
        p.start()
        send.close()
        workers.append((p, receive))
    while time.monotonic() < start_at:
        time.sleep(0.001)
    cpu = CpuMeter({role: pids[role] for role in ("smtp", "lookup")})
    results = []
    for p, receive in workers:
        try:
            results.append(receive.recv())
        except EOFError:
            results.append({"error": f"session process {p.pid} died", "checks": 0})
        p.join()
    return results, cpu.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--batch", type=int, default=100, help="RCPT TO per pipelined batch")
    ap.add_argument("--users", type=int, default=10000, help="users in the table")
    ap.add_argument("--unknown", type=float, default=0.0,
                    help="share of each batch sent to unknown users (0 to 1)")
    ap.add_argument("--quick-acks", action="store_true",
                    help="acknowledge every read at once (TCP_QUICKACK)")
    args = ap.parse_args()
    if not 0 <= args.unknown <= 1 or round(args.batch * args.unknown) >= ERRORS_LIMIT:
        sys.exit("--unknown must be within 0-1, and under 1000 unknown users per batch")

    d = Daemon(limits={"recipients": args.batch + 10, "errors": ERRORS_LIMIT,
                       "sessions_per_ip": max(50, args.sessions + 10)})
    users = os.path.join(d.dir, "users")
    with open(users, "w") as f:
        f.write("".join(f"u{i}\n" for i in range(args.users)))
    os.chmod(users, 0o644)
    mail = os.path.join(d.dir, "mail")
    d.domains = [f"{{name: {DOMAIN.decode()}, users: {users}, maildir: {mail}/%u/Maildir}}"]
    acks = "ACKs at once" if args.quick_acks else "delayed ACKs"
    print(f"# postern recipient checks: {args.sessions} sessions, batches of {args.batch} "
          f"RCPT TO ({args.unknown:.0%} unknown) against a table of {args.users} users, "
          f"{args.duration:g} s, clients sending {acks}; load average {loadavg()}", flush=True)
    d.start()
    try:
        print(f"probe: MAIL FROM + 10 RCPT TO + RSET written at once, until the last reply: "
              f"{pipelining_probe(d.port, False):.2f} ms with delayed ACKs, "
              f"{pipelining_probe(d.port, True):.2f} ms with ACKs at once", flush=True)
        before = lookup_counts(d)
        results, cpu = run_sessions(d, args)
        after = lookup_counts(d)

        done = [r for r in results if "started" in r]
        seconds = (max(r["finished"] for r in done) - min(r["started"] for r in done)
                   if done else 0)
        checks = sum(r["checks"] for r in results)
        rate = checks / seconds if seconds else 0
        print(f"{'checks':>10} {'seconds':>8} {'checks/s':>10}   target")
        print(f"{checks:>10} {seconds:>8.2f} {rate:>10.0f}   20,000/s")
        known = sum(r.get("known", 0) for r in results)
        unknown = sum(r.get("unknown", 0) for r in results)
        connections = sum(r.get("connections", 0) for r in results)
        print(f"sent: {known} to users of the table, {unknown} to unknown users, over "
              f"{connections} connections")

        def show(counts):
            return f"{counts[0]} ({counts[1]} found, {counts[2]} unknown)"

        grown = after[0] - before[0] if None not in (after[0], before[0]) else None
        print(f"lookup's recipient checks: before {show(before)}, after {show(after)}: "
              f"+{grown} ({'the same as' if grown == checks else 'NOT the same as'} the "
              f"clients' {checks})")
        mismatches = sum(r.get("mismatches", 0) for r in results)
        print(f"replies other than expected: {mismatches}")
        for r in results:
            for example in r.get("examples", []):
                print(f"  {example}")
            if "error" in r:
                print(f"  {r['error']}")
        if checks:
            print(f"per session: {rate / args.sessions:.0f} checks/s, "
                  f"{seconds * args.sessions / checks * 1e6:.0f} us per RCPT")
        if seconds:
            clients = {f"the {args.sessions} clients": sum(r.get("cpu", 0) for r in results)}
            print(f"CPU during the run (% of one core): {cpu.figures(seconds, clients)}")
        d.print_problems()
    finally:
        d.stop()
    print(f"# load average after: {loadavg()}")


if __name__ == "__main__":
    main()
