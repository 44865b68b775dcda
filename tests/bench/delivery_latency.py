#!/usr/bin/env python3
"""Chat latency (issue 4): single-recipient messages sent one after another; for each, the
time from the client's final "." to the file appearing in the user's Maildir new/.
Prints p50, p90, p99 and the maximum, and what one fdatasync costs on the disk before and
after (two flushes come before each file shows: the commit's and the Maildir file's).

    tests/bench/delivery_latency.py [--messages 200]

Targets: p50 under 1.5 ms and p99 under 5 ms, with durable accept and fsynced Maildir
files (Postfix about 1.5-2 ms, OpenSMTPD 4-5 ms)."""

import argparse
import ctypes
import os
import select
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import Daemon, flush_ms, loadavg  # noqa: E402


def reply(f):
    while True:
        line = f.readline()
        if line[3:4] != b"-":
            return int(line[:3])


IN_MOVED_TO = 0x80
IN_CREATE = 0x100


class DirWatch:
    """Waits for a file to appear in a folder with inotify, sleeping in poll() rather
    than listing the folder in a loop: a busy client would take a CPU from the daemon on
    a small machine and the figure would measure the contention."""

    def __init__(self, path):
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0 or libc.inotify_add_watch(self.fd, path.encode(),
                                                 IN_MOVED_TO | IN_CREATE) < 0:
            sys.exit(f"inotify on {path}: {os.strerror(ctypes.get_errno())}")
        self.poll = select.poll()
        self.poll.register(self.fd, select.POLLIN)

    def wait(self, timeout_ms):
        """True once an entry was created or moved into the folder."""
        if not self.poll.poll(timeout_ms):
            return False
        data = os.read(self.fd, 65536)
        while data:
            _, mask, _, length = struct.unpack_from("iIII", data)
            if mask & (IN_MOVED_TO | IN_CREATE):
                return True
            data = data[16 + length:]
        return False


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
    flush_before = flush_ms(d.dir)
    new = os.path.join(mail, "alice", "Maildir", "new")
    samples = []
    accepts = []
    try:
        s = socket.create_connection(("127.0.0.1", d.port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = s.makefile("rb")
        reply(f)
        s.sendall(b"EHLO bench\r\n")
        reply(f)
        body = b"Subject: chat\r\n\r\n" + b"x" * 500 + b"\r\n"
        watch = None
        for i in range(args.messages + 1):
            s.sendall(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<alice@bench.example>\r\nDATA\r\n")
            for _ in range(3):
                reply(f)
            s.sendall(body)
            started = time.perf_counter()
            s.sendall(b".\r\n")
            # The 250 comes once the message is durable in the spool, before the delivery;
            # inotify keeps the file's event meanwhile.
            if reply(f) != 250:
                sys.exit("refused")
            queued = time.perf_counter()
            if watch is None:  # the first message creates the Maildir; it is not counted
                while not (os.path.isdir(new) and os.listdir(new)):
                    if time.perf_counter() - started > 10:
                        sys.exit("the first message took more than 10 s")
                    time.sleep(0.001)
                watch = DirWatch(new)
            elif not watch.wait(10000):
                sys.exit("a message took more than 10 s")
            else:
                samples.append((time.perf_counter() - started) * 1000)
                accepts.append((queued - started) * 1000)
        s.sendall(b"QUIT\r\n")
        flush_after = flush_ms(d.dir)
    finally:
        d.stop()
    def figures(values):
        values = sorted(values)

        def pct(p):
            return values[min(len(values) - 1, int(len(values) * p / 100))]

        return (f"p50 {pct(50):.2f}  p90 {pct(90):.2f}  p99 {pct(99):.2f}  "
                f"max {values[-1]:.2f}")

    print(f"final '.' to file in new/ (ms): {figures(samples)}")
    print(f"final '.' to 250 (ms):          {figures(accepts)}")
    # A commit takes one flush and a Maildir delivery one more before the file shows.
    print(f"# the disk: one fdatasync p50 {flush_before:.2f} ms before, {flush_after:.2f} ms after")
    print(f"# load average after: {loadavg()}")


if __name__ == "__main__":
    main()
