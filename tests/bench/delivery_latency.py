#!/usr/bin/env python3
"""Chat latency (issue 4): single-recipient messages sent one after another; for each, the
time from the client's final "." to the file appearing in the user's Maildir new/.
Prints p50, p90, p99 and the maximum.

    tests/bench/delivery_latency.py [--messages 200]

Targets: p50 under 1.5 ms and p99 under 5 ms, with durable accept and fsynced Maildir
files (Postfix about 1.5-2 ms, OpenSMTPD 4-5 ms)."""

import argparse
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import Daemon, loadavg  # noqa: E402


def reply(f):
    while True:
        line = f.readline()
        if line[3:4] != b"-":
            return int(line[:3])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=200)
    args = ap.parse_args()
    d = Daemon()
    mail = os.path.join(d.dir, "mail")
    d.domains = [f"{{name: bench.example, maildir: {mail}/%u/Maildir}}"]
    print(f"# postern delivery latency: {args.messages} messages, one recipient each; "
          f"load average {loadavg()}")
    d.start()
    new = os.path.join(mail, "alice", "Maildir", "new")
    samples = []
    try:
        s = socket.create_connection(("127.0.0.1", d.port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = s.makefile("rb")
        reply(f)
        s.sendall(b"EHLO bench\r\n")
        reply(f)
        body = b"Subject: chat\r\n\r\n" + b"x" * 500 + b"\r\n"
        for i in range(args.messages + 1):
            before = len(os.listdir(new)) if os.path.isdir(new) else 0
            s.sendall(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<alice@bench.example>\r\nDATA\r\n")
            for _ in range(3):
                reply(f)
            s.sendall(body)
            started = time.perf_counter()
            s.sendall(b".\r\n")
            while not (os.path.isdir(new) and len(os.listdir(new)) > before):
                if time.perf_counter() - started > 10:
                    sys.exit("a message took more than 10 s")
            elapsed = time.perf_counter() - started
            if reply(f) != 250:
                sys.exit("refused")
            if i > 0:  # the first creates the Maildir
                samples.append(elapsed * 1000)
        s.sendall(b"QUIT\r\n")
    finally:
        d.stop()
    samples.sort()

    def pct(p):
        return samples[min(len(samples) - 1, int(len(samples) * p / 100))]

    print(f"final '.' to file in new/ (ms): p50 {pct(50):.2f}  p90 {pct(90):.2f}  "
          f"p99 {pct(99):.2f}  max {samples[-1]:.2f}")
    print(f"# load average after: {loadavg()}")


if __name__ == "__main__":
    main()
