#!/usr/bin/env python3
"""Accept and deliver (issue 4): messages per second from the first connection until every
message is in its Maildir's new/ and removed from the queue, with 10 and 50 parallel
sessions (Postfix's smtp-source, as accept_throughput.py fetches it).

    tests/bench/deliver_throughput.py [--sessions 10,50] [--messages 4000]

Targets: at least 800 msg/s delivered at 10 sessions and 1,000 at 50, with durable accept
and fsynced Maildir files (Postfix about 300 / 510, OpenSMTPD about 300 / 250)."""

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from accept_throughput import find_smtp_source  # noqa: E402


def delivered(d):
    table = d.status() or {}
    queue = table.get("queue", {}).get("details", {})
    return int(queue.get("delivered", 0)), int(queue.get("queued", -1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", default="10,50")
    ap.add_argument("--messages", type=int, default=4000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--smtp-source")
    args = ap.parse_args()
    smtp_source, env = find_smtp_source(args.smtp_source)
    print(f"# postern accept+deliver: {args.messages} messages of {args.size} bytes to one "
          f"Maildir user; load average {benchlib.loadavg()}")
    print(f"{'sessions':>8} {'messages':>8} {'seconds':>8} {'msg/s':>8}")
    for sessions in [int(s) for s in args.sessions.split(",")]:
        d = benchlib.Daemon(limits={"sessions": 2000, "sessions_per_ip": 2000})
        mail = os.path.join(d.dir, "mail")
        d.domains = [f"{{name: bench.example, maildir: {mail}/%u/Maildir}}"]
        d.start()
        try:
            started = time.monotonic()
            r = subprocess.run([smtp_source, "-d", "-s", str(sessions), "-m",
                                str(args.messages), "-l", str(args.size), "-f",
                                "a@example.com", "-t", "rcpt@bench.example",
                                f"127.0.0.1:{d.port}"], env=env, capture_output=True,
                               text=True)
            if r.returncode != 0:
                sys.exit(f"smtp-source failed: {r.stderr}")
            while True:
                done, queued = delivered(d)
                if done >= args.messages and queued == 0:
                    break
                if time.monotonic() - started > 300:
                    sys.exit(f"only {done} delivered after 300 s")
                time.sleep(0.02)
            seconds = time.monotonic() - started
            print(f"{sessions:>8} {args.messages:>8} {seconds:>8.2f} "
                  f"{args.messages / seconds:>8.1f}", flush=True)
        finally:
            d.stop()
    print(f"# load average after: {benchlib.loadavg()}")


if __name__ == "__main__":
    main()
