#!/usr/bin/env python3
"""One message to many virtual users in one transaction (issue 4's fanout figure): prints
the seconds from the 250 until every user's Maildir has it, and the disk space used.

    tests/bench/fanout.py [--users 10000] [--size 1024]

Target: all 10,000 delivered within 1 s of the 250, every file fsynced."""

import argparse
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import Daemon, loadavg  # noqa: E402


def reply(f):
    while True:
        line = f.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            return int(line[:3]), line


def count_delivered(root):
    total = 0
    for user in os.listdir(root) if os.path.isdir(root) else []:
        new = os.path.join(root, user, "Maildir", "new")
        if os.path.isdir(new):
            total += len(os.listdir(new))
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=2,
                    help="messages sent one after another; the first creates every Maildir")
    args = ap.parse_args()
    d = Daemon(limits={"recipients": args.users + 10})
    mail = os.path.join(d.dir, "mail")
    d.domains = [f"{{name: bench.example, maildir: {mail}/%u/Maildir}}"]
    print(f"# postern fanout: 1 message of {args.size} bytes to {args.users} users; "
          f"load average {loadavg()}")
    d.start()
    try:
        for round_no in range(1, args.rounds + 1):
            s = socket.create_connection(("127.0.0.1", d.port))
            f = s.makefile("rb")
            reply(f)
            s.sendall(b"EHLO bench\r\n")
            reply(f)
            rcpts = b"".join(b"RCPT TO:<u%d@bench.example>\r\n" % i for i in range(args.users))
            started = time.monotonic()
            s.sendall(b"MAIL FROM:<a@example.com>\r\n" + rcpts)
            codes = [reply(f)[0] for _ in range(args.users + 1)]
            if any(c != 250 for c in codes):
                sys.exit(f"refused: {[c for c in codes if c != 250][:5]}")
            rcpt_seconds = time.monotonic() - started
            body = b"Subject: fanout\r\n\r\n" + (b"x" * 78 + b"\r\n") * max(1, args.size // 80)
            s.sendall(b"DATA\r\n")
            reply(f)
            s.sendall(body + b".\r\n")
            code, line = reply(f)
            accepted = time.monotonic()
            if code != 250:
                sys.exit(f"DATA refused: {line}")
            # Done when the queue removes the message: every recipient delivered and the
            # states on disk. (Listing 10,000 folders to find out would steal the CPU.)
            queue_id = line.split()[-1].decode()
            # Reads only what the log gained: reading all of it (10,000 delivery lines a
            # round) every 5 ms took a CPU from the daemon on a small machine.
            marker = f"{queue_id}: removed".encode()
            with open(d.log_path, "rb") as log:
                seen = b""
                while True:
                    seen = seen[-len(marker):] + log.read()
                    if marker in seen:
                        break
                    if time.monotonic() - accepted > 300:
                        sys.exit("not all delivered after 300 s")
                    time.sleep(0.005)
            delivered = time.monotonic()
            want = args.users * round_no
            if count_delivered(mail) != want:
                sys.exit(f"{count_delivered(mail)} files in new/, expected {want}")
            s.sendall(b"QUIT\r\n")
            s.close()
            what = "creating every Maildir" if round_no == 1 else "Maildirs existing"
            print(f"round {round_no} ({what}): RCPT phase {rcpt_seconds:.2f} s (pipelined, each "
                  f"checked by lookup); 250 to all {args.users} delivered and the message "
                  f"removed from the queue: {delivered - accepted:.3f} s")
        du = subprocess.run(["du", "-sk", mail], capture_output=True, text=True).stdout.split()[0]
        print(f"disk used by the Maildirs: {int(du) / 1024:.1f} MiB")
    finally:
        d.stop()
    print(f"# load average after: {loadavg()}")


if __name__ == "__main__":
    main()
