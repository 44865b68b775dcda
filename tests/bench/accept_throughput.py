#!/usr/bin/env python3
"""Accepted messages per second: a private Postern daemon on a free loopback port takes
1 KiB messages to rcpt@bench.example from Postfix's smtp-source with 1, 10 and 50 parallel
sessions, each session sending message after message over one connection (smtp-source -d:
MAIL, RCPT, DATA, repeated). The daemon answers 250 only once a message is fsynced, and
smtp-source stops at the first reply that is not the expected one, so a run that exits 0
had every message answered 250; the queue's own `queued` counter is printed beside it.

Each configuration gets a fresh daemon and an empty spool: a short probe run estimates
the rate, the daemon is stopped, and a new one with a new spool takes the measured run,
sized to last about --duration seconds (run up to twice more if it came out much
shorter). Old spools are removed only at the end (see FINISHED below for why). --tmpdir
chooses the file system the spools, and so the fsyncs, are on.

smtp-source comes from the Debian postfix package, unpacked without installing it
(apt-get download + dpkg -x) into $POSTERN_BENCH_POSTFIX_DIR (default
/tmp/postern-bench-postfix) by tests/postfix_tools.py, unless --smtp-source or a smtp-source
on PATH is given.

Prints figures only; see README in this folder."""

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import benchlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import postfix_tools  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def find_smtp_source(explicit):
    """(path to smtp-source, environment to run it with)."""
    return postfix_tools.tool("smtp-source", explicit)


class ThreadStateSampler(threading.Thread):
    """Samples the state of every thread of one process every few milliseconds; reports
    the largest share of samples any one thread spent in D (uninterruptible, i.e. waiting
    for the disk: the queue's committer in fdatasync/fsync)."""

    def __init__(self, pid, interval=0.002):
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.stop_flag = threading.Event()
        self.samples = {}  # tid -> [samples, in D]

    def run(self):
        task_dir = f"/proc/{self.pid}/task"
        while not self.stop_flag.is_set():
            try:
                tids = os.listdir(task_dir)
            except OSError:
                return
            for tid in tids:
                try:
                    with open(f"{task_dir}/{tid}/stat") as f:
                        state = f.read().rsplit(")", 1)[1].split()[0]
                except OSError:
                    continue
                counts = self.samples.setdefault(tid, [0, 0])
                counts[0] += 1
                counts[1] += state == "D"
            time.sleep(self.interval)

    def max_d_share(self):
        shares = [d / n for n, d in self.samples.values() if n]
        return max(shares) if shares else 0.0


def run_load(smtp_source, env, port, sessions, messages, size, profile_pids=None):
    """Runs smtp-source to completion; returns a dict with seconds, rc, stderr and, when
    profile_pids ({name: pid}) is given, CPU use of those processes during the run."""
    argv = [smtp_source, "-d", "-s", str(sessions), "-m", str(messages), "-l", str(size),
            "-f", "a@example.com", "-t", "rcpt@bench.example", f"127.0.0.1:{port}"]
    before = {name: benchlib.cpu_ticks(pid) for name, pid in (profile_pids or {}).items()}
    sys_before = benchlib.system_cpu()
    sampler = None
    if profile_pids and "queue" in profile_pids:
        sampler = ThreadStateSampler(profile_pids["queue"])
        sampler.start()
    start = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    source_ticks = None
    # Poll so that smtp-source's own CPU time can be read before it is reaped.
    while proc.poll() is None:
        ticks = benchlib.cpu_ticks(proc.pid)
        if ticks is not None:
            source_ticks = ticks
        time.sleep(0.05)
    seconds = time.monotonic() - start
    stderr = proc.stderr.read()
    result = {"seconds": seconds, "rc": proc.returncode, "stderr": stderr, "argv": argv}
    if profile_pids:
        if sampler:
            sampler.stop_flag.set()
            sampler.join()
            result["queue_disk_wait"] = sampler.max_d_share()
        cpu = {}
        for name, pid in profile_pids.items():
            after = benchlib.cpu_ticks(pid)
            if after is not None and before[name] is not None:
                cpu[name] = (after - before[name]) / CLK_TCK / seconds
        if source_ticks is not None:
            cpu["smtp-source"] = source_ticks / CLK_TCK / seconds
        busy0, iowait0, total0 = sys_before
        busy1, iowait1, total1 = benchlib.system_cpu()
        ncpu = os.cpu_count() or 1
        span = max(total1 - total0, 1)
        cpu["machine busy"] = (busy1 - busy0) / span * ncpu
        cpu["machine iowait"] = (iowait1 - iowait0) / span * ncpu
        result["cpu"] = cpu
    return result


# Spool directories of finished runs, removed only at the very end: on ext4 without a
# journal, inodes freed less than a minute ago (five when their block is still dirty) are
# skipped, one by one, by every inode allocation in their group, so removing a run's
# thousands of files just before the next run would slow that run's file creation down.
FINISHED = []


def fresh_daemon(limits, args):
    daemon = benchlib.Daemon(limits=limits, base_dir=args.tmpdir)
    daemon.start()
    return daemon


def stop(daemon):
    daemon.stop(remove=False)
    FINISHED.append(daemon.dir)


def measure(smtp_source, env, sessions, args, limits):
    """Probe, then a measured run on a clean daemon; returns the row to print."""
    probe_messages = max(20, 4 * sessions)
    daemon = fresh_daemon(limits, args)
    try:
        probe = run_load(smtp_source, env, daemon.port, sessions, probe_messages, args.size)
    finally:
        stop(daemon)
    if probe["rc"] != 0:
        sys.exit(f"probe with {sessions} sessions failed (rc {probe['rc']}): "
                 f"{' '.join(probe['argv'])}\n{probe['stderr']}")
    rate = probe_messages / probe["seconds"]
    for _attempt in range(3):
        per_session = int(math.ceil(rate * args.duration / sessions))
        messages = max(probe_messages, per_session * sessions)
        daemon = fresh_daemon(limits, args)
        try:
            pids = daemon.pids()
            profile = {name: pids[name] for name in ("smtp", "queue", "lookup", "parent")
                       if name in pids}
            run = run_load(smtp_source, env, daemon.port, sessions, messages, args.size,
                           profile_pids=profile)
            status = daemon.status() or {}
        finally:
            stop(daemon)
        if run["rc"] != 0:
            sys.exit(f"run with {sessions} sessions failed (rc {run['rc']}): "
                     f"{' '.join(run['argv'])}\n{run['stderr']}")
        rate = messages / run["seconds"]
        if run["seconds"] >= 0.75 * args.duration:
            break
    queue = status.get("queue", {}).get("details", {})
    return {
        "sessions": sessions,
        "messages": messages,
        "seconds": run["seconds"],
        "rate": rate,
        "queued": queue.get("queued", "?"),
        "commit_batches": queue.get("commit_batches", "?"),
        "largest_batch": queue.get("largest_batch", "?"),
        "cpu": run.get("cpu", {}),
        "disk_wait": run.get("queue_disk_wait"),
        "argv": run["argv"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", default="1,10,50",
                        help="comma-separated parallel session counts (default 1,10,50)")
    parser.add_argument("--duration", type=float, default=6.0,
                        help="target seconds of load per configuration (default 6)")
    parser.add_argument("--size", type=int, default=1024,
                        help="message body bytes, smtp-source -l (default 1024)")
    parser.add_argument("--smtp-source", help="path to smtp-source (default: fetched)")
    parser.add_argument("--tmpdir", help="directory under which each run's spool is made: "
                        "the file system measured (default $POSTERN_BENCH_TMPDIR or /tmp)")
    args = parser.parse_args()
    sessions_list = [int(s) for s in args.sessions.split(",") if s]
    limits = {"sessions": 2000, "sessions_per_ip": 2000}

    smtp_source, env = find_smtp_source(args.smtp_source)
    benchlib.raise_fd_limit(4096)
    print(f"# postern accept throughput: {args.size}-byte bodies, one connection per session, "
          f"~{args.duration:g} s per run, fresh spool per run")
    print(f"# smtpd {benchlib.SMTPD}; load generator {smtp_source}")
    print(f"# {os.cpu_count()} CPUs; load average before: {benchlib.loadavg()}", flush=True)

    spool_fs = subprocess.run(["df", "--output=source,fstype,target",
                               args.tmpdir or tempfile.gettempdir()],
                              capture_output=True, text=True).stdout.splitlines()[-1:]
    print(f"# spools under {args.tmpdir or tempfile.gettempdir()}: {' '.join(spool_fs)}")
    rows = []
    try:
        for sessions in sessions_list:
            row = measure(smtp_source, env, sessions, args, limits)
            rows.append(row)
            print(f"# done: {sessions} sessions: {' '.join(row['argv'][1:])}", flush=True)
    finally:
        for directory in FINISHED:
            shutil.rmtree(directory, ignore_errors=True)

    print()
    header = (f"{'sessions':>8} {'messages':>8} {'seconds':>8} {'msg/s':>8} "
              f"{'queued':>7} {'commit_batches':>14} {'largest_batch':>13} {'msgs/batch':>10}")
    print(header)
    for r in rows:
        try:
            per_batch = f"{int(r['queued']) / max(int(r['commit_batches']), 1):.1f}"
        except ValueError:
            per_batch = "?"
        print(f"{r['sessions']:>8} {r['messages']:>8} {r['seconds']:>8.2f} {r['rate']:>8.1f} "
              f"{r['queued']:>7} {r['commit_batches']:>14} {r['largest_batch']:>13} "
              f"{per_batch:>10}")

    print()
    print("CPU during each measured run, % of one core (machine: % of one core summed over "
          "all CPUs);")
    print("disk wait: share of samples the queue's busiest-in-D thread (the committer's "
          "commit or task thread) was in D state")
    names = ["smtp", "queue", "lookup", "parent", "smtp-source", "machine busy",
             "machine iowait"]
    print(f"{'sessions':>8} " + " ".join(f"{n:>14}" for n in names) + f" {'disk wait':>10}")
    for r in rows:
        cells = [f"{100 * r['cpu'][n]:>13.0f}%" if n in r["cpu"] else f"{'?':>14}"
                 for n in names]
        wait = f"{100 * r['disk_wait']:>9.0f}%" if r["disk_wait"] is not None else f"{'?':>10}"
        print(f"{r['sessions']:>8} " + " ".join(cells) + f" {wait}")
    print(f"\n# load average after: {benchlib.loadavg()}")
    for r in rows:
        if str(r["queued"]) != str(r["messages"]):
            print(f"# NOTE: {r['sessions']} sessions: smtp-source sent {r['messages']} but the "
                  f"queue counted {r['queued']} committed")


if __name__ == "__main__":
    main()
