#!/usr/bin/env python3
"""Fanout file layouts (issue 4, point 7): one message into many Maildirs, written three ways,
with the same durability, without the daemon, to decide which mda should use.

    tests/bench/fanout_layouts.py [--users 10000] [--size 1024] [--dir DIR]

  copies  one file per recipient: created in its tmp/, written (Return-Path:, Delivered-To:
          and the message), one syncfs for all, renamed into new/, one syncfs for the
          renames; this is what mda does for a few deliveries.
  unnamed the same files made without a name in new/ (O_TMPFILE), one syncfs, then linked
          in through /proc/self/fd, one syncfs: nothing is added to or removed from tmp/;
          this is what mda does for a fanout (stage_maildirs, on up to 4 threads).
  links   one file for everyone (Return-Path: and the message, no Delivered-To:, since a
          shared file cannot name each recipient), written and fsynced once, then hard-
          linked into every new/, one syncfs for the links, the staged name removed.

All run one after the other in one thread, each into its own fresh set of existing
Maildirs under DIR (default: a new folder in $TMPDIR or /tmp), so the difference is the
layout, not the threads. Prints seconds and the disk space the delivered files take
(blocks allocated, from st_blocks, counting a shared file once).
"""

import argparse
import ctypes
import os
import shutil
import sys
import tempfile
import time

libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
AT_SYMLINK_FOLLOW = 0x400


def syncfs(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if libc.syncfs(fd) != 0:
            sys.exit(f"syncfs: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


def make_maildirs(root, users):
    for i in range(users):
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(root, f"u{i}", "Maildir", sub), mode=0o700)
    syncfs(root)


def space(paths):
    """Bytes allocated to the files, each inode once."""
    seen = set()
    total = 0
    for p in paths:
        st = os.stat(p)
        if st.st_ino in seen:
            continue
        seen.add(st.st_ino)
        total += st.st_blocks * 512
    return total


def own_copy(root, i, message):
    """User i's Maildir, a unique name for the delivery, and the bytes of its own copy."""
    maildir = os.path.join(root, f"u{i}", "Maildir")
    name = f"{time.time():.0f}.M{i}P{os.getpid()}.bench"
    header = b"Return-Path: <a@example.com>\r\nDelivered-To: u%d@bench.example\r\n" % i
    return maildir, name, header + message


def copies(root, users, message):
    started = time.perf_counter()
    staged = []
    for i in range(users):
        maildir, name, data = own_copy(root, i, message)
        tmp = os.path.join(maildir, "tmp", name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, data)
        os.close(fd)
        staged.append((tmp, os.path.join(maildir, "new", name)))
    syncfs(root)
    for tmp, new in staged:
        os.rename(tmp, new)
    syncfs(root)
    return time.perf_counter() - started, [new for _, new in staged]


def unnamed(root, users, message):
    started = time.perf_counter()
    staged = []
    for i in range(users):
        maildir, name, data = own_copy(root, i, message)
        fd = os.open(os.path.join(maildir, "new"), os.O_WRONLY | os.O_TMPFILE, 0o600)
        os.write(fd, data)
        staged.append((fd, os.path.join(maildir, "new", name)))
    syncfs(root)
    for fd, new in staged:
        if libc.linkat(AT_FDCWD, f"/proc/self/fd/{fd}".encode(), AT_FDCWD, new.encode(),
                       AT_SYMLINK_FOLLOW) != 0:
            sys.exit(f"linkat: {os.strerror(ctypes.get_errno())}")
        os.close(fd)
    syncfs(root)
    return time.perf_counter() - started, [new for _, new in staged]


def links(root, users, message):
    started = time.perf_counter()
    name = f"{time.time():.0f}.M0P{os.getpid()}.bench"
    shared = os.path.join(root, "u0", "Maildir", "tmp", name)
    fd = os.open(shared, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"Return-Path: <a@example.com>\r\n" + message)
    os.fsync(fd)
    os.close(fd)
    delivered = []
    for i in range(users):
        new = os.path.join(root, f"u{i}", "Maildir", "new", name)
        os.link(shared, new)
        delivered.append(new)
    syncfs(root)
    os.unlink(shared)
    return time.perf_counter() - started, delivered


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--dir")
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="postern-fanout-layouts-", dir=args.dir)
    message = (b"Received: from bench by bench.example\r\nSubject: fanout\r\n\r\n" +
               (b"x" * 78 + b"\r\n") * max(1, args.size // 80))
    print(f"# {args.users} users, a message of {len(message)} bytes, in {base}; "
          f"load average {' '.join(open('/proc/loadavg').read().split()[:3])}")
    try:
        print("layout    seconds    disk used")
        for layout, deliver in (("copies", copies), ("unnamed", unnamed), ("links", links)):
            root = os.path.join(base, layout)
            os.mkdir(root)
            make_maildirs(root, args.users)
            seconds, files = deliver(root, args.users, message)
            used = space(files)
            missing = sum(1 for f in files if not os.path.exists(f))
            print(f"{layout:8} {seconds:8.3f}  {used / 1024:10.0f} KiB"
                  f"{'' if not missing else f'  ({missing} missing!)'}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
