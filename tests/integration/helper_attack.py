#!/usr/bin/env python3
"""A hostile delivery command for test_helpers.py: run by smtpd-deliver as the recipient's own
user, it tries to take its helper's descriptors (/proc/PID/fd, readlink, pidfd_getfd on every
number 0..64) and writes what it got to argv[1] as JSON. Then it reads its message."""

import ctypes
import errno
import json
import os
import sys

SYS_PIDFD_GETFD = 438  # x86_64 and every architecture with the common syscall table


def parent_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    return int(stat[stat.rindex(")") + 2:].split()[1])


def comm(pid):
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


def error_name(err):
    return "error:" + errno.errorcode.get(err, str(err))


def attack(report):
    pid = os.getpid()
    while pid > 1:
        pid = parent_of(pid)
        if comm(pid) == "smtpd-deliver":
            break
    else:
        return
    report["helper"] = pid
    with open(f"/proc/{pid}/status") as f:
        report["status"] = [line.strip() for line in f
                            if line.startswith(("Uid:", "Gid:", "Groups:"))]
    try:
        report["listdir"] = os.listdir(f"/proc/{pid}/fd")
    except OSError as e:
        report["listdir"] = error_name(e.errno)
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    for fd in range(65):
        try:
            report["readlink"][fd] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError as e:
            report["readlink"][fd] = error_name(e.errno)
        taken = libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
        if taken < 0:
            report["pidfd_getfd"][fd] = error_name(ctypes.get_errno())
        else:
            report["pidfd_getfd"][fd] = os.readlink(f"/proc/self/fd/{taken}")
            os.close(taken)
    os.close(pidfd)


def main():
    report = {"uid": os.getuid(), "helper": None, "readlink": {}, "pidfd_getfd": {}}
    try:
        attack(report)
    finally:
        with open(sys.argv[1] + ".tmp", "w") as f:
            json.dump(report, f)
        os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    sys.stdin.buffer.read()


if __name__ == "__main__":
    main()
