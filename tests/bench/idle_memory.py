#!/usr/bin/env python3
"""Memory per idle SMTP connection: starts a private Postern daemon, measures the smtp
process (Pss and Rss from /proc/PID/smaps_rollup) and the whole process tree with no
connection open, then opens --connections (default 1000) connections, reads the 220
greeting on each and holds them idle, measures again and prints the added KiB per
connection (--ehlo: an EHLO exchange first). Then sends NOOP on a few of them (expecting
250), checks that none was closed, closes them all and measures once more.

The baseline is taken after one short session (the readiness check connects, reads the
greeting and says QUIT), so one-time lazy set-up is not charged to the connections.
Kernel socket buffers are not process memory; the TCP "mem" figure of /proc/net/sockstat
is printed beside, for both ends of each loopback connection together.

Prints figures only; see README in this folder."""

import argparse
import os
import select
import socket
import sys
import time

import benchlib


def read_reply(sock, buffer=b""):
    """Reads one whole SMTP reply; returns (code, rest of the buffer)."""
    while True:
        while b"\r\n" not in buffer:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed by the server")
            buffer += chunk
        line, buffer = buffer.split(b"\r\n", 1)
        if len(line) < 4 or line[3:4] != b"-":
            return int(line[:3]), buffer


def tcp_mem_kib():
    """Kernel TCP socket memory (all sockets on the machine), in KiB."""
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                parts = line.split()
                return int(parts[parts.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    return 0


def snapshot(daemon):
    """{"smtp": {...}, "tree": {...}, "sessions": n, "tcp_mem": KiB}."""
    status = daemon.status() or {}
    pids = {role: row["pid"] for role, row in status.items() if row["pid"]}
    smtp_pid = pids["smtp"]
    smtp = benchlib.smaps_rollup(smtp_pid)
    smtp["fds"] = len(os.listdir(f"/proc/{smtp_pid}/fd"))
    tree = {"Rss": 0, "Pss": 0, "processes": 0}
    for pid in set(pids.values()):
        try:
            rollup = benchlib.smaps_rollup(pid)
        except OSError:
            continue
        tree["Rss"] += rollup.get("Rss", 0)
        tree["Pss"] += rollup.get("Pss", 0)
        tree["processes"] += 1
    sessions = status.get("smtp", {}).get("details", {}).get("sessions", "?")
    return {"smtp": smtp, "tree": tree, "sessions": sessions, "tcp_mem": tcp_mem_kib(),
            "smtp_pid": smtp_pid}


def wait_sessions(daemon, wanted, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = daemon.status() or {}
        if status.get("smtp", {}).get("details", {}).get("sessions") == str(wanted):
            return True
        time.sleep(0.1)
    return False


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000,
                        help="idle connections to open (default 1000)")
    parser.add_argument("--noop", type=int, default=10,
                        help="connections to send NOOP on afterwards (default 10)")
    parser.add_argument("--ehlo", action="store_true",
                        help="send EHLO on each connection (and read the reply) before "
                             "holding it idle, instead of only reading the greeting")
    args = parser.parse_args()
    n = args.connections

    limit = benchlib.raise_fd_limit(n + 1024)  # the daemon inherits it
    cap = max(2000, n + 100)
    daemon = benchlib.Daemon(limits={"sessions": cap, "sessions_per_ip": cap})
    connections = []
    try:
        daemon.start()
        print(f"# postern idle memory: {n} idle connections "
              f"({'EHLO sent' if args.ehlo else 'greeting read, nothing sent'}) to "
              f"127.0.0.1:{daemon.port}; "
              f"fd limit {limit}; limits sessions/sessions_per_ip {cap}")
        print(f"# smtpd {benchlib.SMTPD}; load average {benchlib.loadavg()}", flush=True)
        time.sleep(0.5)
        before = snapshot(daemon)

        started = time.monotonic()
        failures = 0
        for _ in range(n):
            try:
                sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
                code, rest = read_reply(sock)
                if code != 220:
                    raise ConnectionError(f"greeting {code}")
                if args.ehlo:
                    sock.sendall(b"EHLO client.bench.example\r\n")
                    code, rest = read_reply(sock, rest)
                    if code != 250:
                        raise ConnectionError(f"EHLO answered {code}")
                connections.append((sock, rest))
            except OSError as e:
                failures += 1
                if failures <= 3:
                    print(f"# connection {len(connections) + failures} failed: {e}")
        opened = time.monotonic() - started
        settled = wait_sessions(daemon, len(connections))
        time.sleep(1.0)
        during = snapshot(daemon)

        # Still alive? Nothing should be readable on an idle connection (no 421, no EOF).
        socks = [s for s, _ in connections]
        poller = select.poll()  # select() cannot take descriptors above 1023
        for sock in socks:
            poller.register(sock, select.POLLIN)
        readable = poller.poll(0)
        picks = sorted({round(i * (len(connections) - 1) / max(args.noop - 1, 1))
                        for i in range(args.noop)}) if connections else []
        noop_ok = 0
        for i in picks:
            sock, rest = connections[i]
            try:
                sock.sendall(b"NOOP\r\n")
                code, rest = read_reply(sock, rest)
                connections[i] = (sock, rest)
                noop_ok += code == 250
            except OSError:
                pass

        for sock, _ in connections:
            sock.close()
        connections = []
        wait_sessions(daemon, 0)
        time.sleep(0.5)
        after = snapshot(daemon)
    finally:
        for sock, _ in connections:
            sock.close()
        daemon.stop()

    held = len(socks)
    print(f"# opened {held} connections in {opened:.2f} s ({failures} failed); "
          f"smtpctl sessions={during['sessions']}"
          f"{'' if settled else ' (did not reach the count)'}")
    print()
    print(f"{'':28} {'Rss KiB':>9} {'Pss KiB':>9} {'Pss_Anon':>9} {'Priv_Dirty':>10} "
          f"{'fds':>5} {'tree Rss':>9} {'tree Pss':>9} {'TCP mem':>8}")
    for label, s in ((f"0 connections", before), (f"{held} idle connections", during),
                     ("after closing them all", after)):
        m = s["smtp"]
        print(f"{label:28} {m.get('Rss', 0):>9} {m.get('Pss', 0):>9} "
              f"{m.get('Pss_Anon', 0):>9} {m.get('Private_Dirty', 0):>10} {m['fds']:>5} "
              f"{s['tree']['Rss']:>9} {s['tree']['Pss']:>9} {s['tcp_mem']:>8}")
    print(f"(smtp pid {during['smtp_pid']}; tree = {during['tree']['processes']} processes: "
          f"parent and children; TCP mem = kernel socket memory, whole machine)")
    print()
    if held:
        def per(key, group="smtp"):
            return (during[group].get(key, 0) - before[group].get(key, 0)) / held
        print(f"added per connection, smtp process: Pss {per('Pss'):.1f} KiB, "
              f"Rss {per('Rss'):.1f} KiB, Pss_Anon {per('Pss_Anon'):.1f} KiB")
        print(f"added per connection, whole tree:   Pss {per('Pss', 'tree'):.1f} KiB, "
              f"Rss {per('Rss', 'tree'):.1f} KiB")
        print(f"kernel TCP memory per connection (both ends): "
              f"{(during['tcp_mem'] - before['tcp_mem']) / held:.1f} KiB")
    print(f"liveness: NOOP on {len(picks)} of {held} connections: {noop_ok} answered 250; "
          f"{len(readable)} of {held} were closed or had unsolicited data before the NOOPs")
    print(f"# load average after: {benchlib.loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
