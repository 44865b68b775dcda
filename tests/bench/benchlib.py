"""Shared by the benchmarks in this folder: runs a private Postern daemon (temporary
directory, free loopback port, its own spool and control socket), reads its status
through smtpctl, and measures processes through /proc.

Nothing here asserts anything: the benchmarks print figures; a daemon that will not
start is reported with its log and the program exits non-zero."""

import asyncio
import collections
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
BUILD_DIR = os.path.abspath(os.environ.get("POSTERN_BUILD_DIR") or os.path.join(ROOT, "build"))
SMTPD = os.path.join(BUILD_DIR, "smtpd", "smtpd")
SMTPCTL = os.path.join(BUILD_DIR, "smtpctl")
ROLES = ("parent", "smtp", "mda", "mta", "lookup", "queue", "control")


def free_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_listening(port, timeout, host="127.0.0.1"):
    """True once something accepts connections on the port, False after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def raise_fd_limit(wanted):
    """Raises RLIMIT_NOFILE (soft, and hard when root) to at least wanted; returns the
    soft limit in force. Children started afterwards (the daemon) inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            wanted = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def flush_ms(directory, samples=50):
    """The disk's own figure: median milliseconds of writing 512 bytes to a new file in
    directory and fdatasync()ing it, as a commit does. On a virtual disk this moves from
    minute to minute; printed beside a latency, it tells the daemon's share from the disk's."""
    times = []
    for i in range(samples):
        path = os.path.join(directory, f".flush-probe-{i}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"x" * 512)
            started = time.perf_counter()
            os.fdatasync(fd)
            times.append((time.perf_counter() - started) * 1000)
        finally:
            os.close(fd)
            os.unlink(path)
    times.sort()
    return times[len(times) // 2]


class Daemon:
    """One smtpd with its own directory. start() waits until every child is up and the
    listener answers with 220; stop() ends the whole tree (SIGTERM, then SIGKILL)."""

    def __init__(self, limits=None, hostname="bench.example", domains=("bench.example",),
                 base_dir=None, extra="", listener=""):
        # extra: YAML written at the top level of the configuration (trusted_networks, dns,
        # ...); listener: YAML keys added to the listener's entry (checks, ...).
        # base_dir (or $POSTERN_BENCH_TMPDIR): the file system the spool is measured on.
        self.dir = tempfile.mkdtemp(prefix="postern-bench-",
                                    dir=base_dir or os.environ.get("POSTERN_BENCH_TMPDIR"))
        os.chmod(self.dir, 0o755)
        self.spool = os.path.join(self.dir, "spool")
        self.empty = os.path.join(self.dir, "empty")
        self.socket = os.path.join(self.dir, "run", "smtpd.sock")
        self.config = os.path.join(self.dir, "smtpd.yaml")
        self.log_path = os.path.join(self.dir, "smtpd.log")
        self.port = free_port()
        self.hostname = hostname
        self.domains = list(domains)
        self.limits = dict(limits or {})
        self.extra = extra
        self.listener = listener
        self.proc = None
        self.log = None

    def config_text(self):
        lines = [
            f"hostname: {self.hostname}",
            f"domains: [{', '.join(self.domains)}]",
            f"spool: {self.spool}",
            f"empty_dir: {self.empty}",
            f"run_dir: {os.path.join(self.dir, 'run')}",  # its own pid file: benches side by side
            "control:",
            f"  socket: {self.socket}",
        ]
        if self.limits:
            lines.append("limits:")
            lines += [f"  {key}: {value}" for key, value in self.limits.items()]
        if self.extra:
            lines += self.extra.rstrip("\n").splitlines()
        lines += ["listeners:", f'  - address: "127.0.0.1:{self.port}"', "    role: smtp"]
        lines += ["    " + line for line in self.listener.rstrip("\n").splitlines()]
        return "\n".join(lines) + "\n"

    def start(self, timeout=15):
        self.write_config()
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([SMTPD, "-d", "-x", BUILD_DIR, "-f", self.config],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self.fail(f"smtpd exited with status {self.proc.returncode}")
            table = self.status()
            if table and self._wired(table) and self._greets():
                return table
            if time.monotonic() > deadline:
                self.fail(f"daemon not ready within {timeout} s")
            time.sleep(0.05)

    def write_config(self):
        with open(self.config, "w") as f:
            f.write(self.config_text())
        os.chmod(self.config, 0o644)

    def fail(self, why):
        log = self.read_log()
        self.stop(remove=False)
        sys.exit(f"{why}; directory {self.dir}; log:\n{log}")

    @staticmethod
    def _wired(table):
        for role in ROLES:
            row = table.get(role)
            if not row or row["pid"] is None:
                return False
            if ":down" in row["details"].get("peers", ""):
                return False
        return True

    def _greets(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                ok = s.recv(512).startswith(b"220")
                s.sendall(b"QUIT\r\n")
                return ok
        except OSError:
            return False

    def status(self):
        """smtpctl show status as {role: {pid, details: {key: value}}}, or None."""
        if not os.path.exists(self.socket):
            return None
        try:
            result = subprocess.run([SMTPCTL, "-s", self.socket, "show", "status"],
                                    capture_output=True, text=True, timeout=10)
        except subprocess.TimeoutExpired:
            return None
        if result.returncode != 0:
            return None
        table = {}
        for line in result.stdout.splitlines()[1:]:
            cols = line.split(None, 4)
            if len(cols) < 4:
                continue
            details = {}
            for item in (cols[4].split() if len(cols) > 4 else []):
                key, _, value = item.partition("=")
                details[key] = value
            table[cols[0]] = {"pid": None if cols[1] == "down" else int(cols[1]),
                              "details": details}
        return table

    def smtpctl(self, *args):
        """Runs smtpctl against this daemon's control socket; the CompletedProcess."""
        return subprocess.run([SMTPCTL, "-s", self.socket, *args], capture_output=True,
                              text=True, timeout=10)

    def stats(self):
        """smtpctl show stats as {heading: text}, such as {"recipient checks": "12 (12 local
        users found, 0 unknown)", "client checks": "...", ...}; {} when not answered."""
        result = self.smtpctl("show", "stats")
        if result.returncode != 0:
            return {}
        out = {}
        for line in result.stdout.splitlines():
            key, sep, value = line.partition(": ")
            if sep:
                out[key] = value
        return out

    def pids(self):
        """{role: pid} of the running tree, from smtpctl."""
        table = self.status() or {}
        return {role: row["pid"] for role, row in table.items() if row["pid"]}

    def descendants(self):
        """Pids of every live process below the parent, found through /proc."""
        if not self.proc:
            return []
        children = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if stat[0] != "Z":
                children.setdefault(int(stat[1]), []).append(int(entry))
        out, todo = [], [self.proc.pid]
        while todo:
            for child in children.get(todo.pop(), []):
                out.append(child)
                todo.append(child)
        return out

    def stop(self, remove=True):
        if self.proc and self.proc.poll() is None:
            below = self.descendants()
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
            for pid in below:  # children that left the process group, if any
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.log:
            self.log.close()
            self.log = None
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def problems(self):
        """The daemon's log lines that are warnings, errors or fatal."""
        return [line for line in self.read_log().splitlines()
                if re.search(r"\]: (warning|error|fatal): ", line)]

    def print_problems(self, shown=10):
        """Prints how many warnings and errors the daemon logged, and the first few."""
        lines = self.problems()
        print(f"daemon log: {len(lines)} warnings/errors" + (":" if lines else ""))
        for line in lines[:shown]:
            print(f"  {line}")
        if len(lines) > shown:
            print(f"  ... and {len(lines) - shown} more (log: {self.log_path})")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def cpu_ticks(pid):
    """utime + stime of a process (all its threads), in clock ticks; None once gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError):
        return None


def system_cpu():
    """(busy, iowait, total) jiffies over all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq + steal
    return busy, iowait, busy + idle + iowait


class CpuMeter:
    """CPU time used by some processes ({name: pid}) and by the whole machine, from its
    creation to stop()."""

    def __init__(self, pids):
        self.pids = dict(pids)
        self.ticks = {name: cpu_ticks(pid) for name, pid in self.pids.items()}
        self.busy = system_cpu()[0]
        self.used = {}
        self.machine = 0.0

    def stop(self):
        clk = os.sysconf("SC_CLK_TCK")
        self.used = {name: ((cpu_ticks(pid) or 0) - (self.ticks[name] or 0)) / clk
                     for name, pid in self.pids.items()}
        self.machine = (system_cpu()[0] - self.busy) / clk
        return self

    def figures(self, seconds, extra=None):
        """"smtp 68%, lookup 35%, ..., everything else 1% (2 CPUs)": % of one core over
        seconds; extra adds {name: CPU seconds} measured otherwise (client processes).
        "everything else" is the rest of the machine's busy time: well above a few %,
        something else was running."""
        used = {**self.used, **(extra or {})}
        others = max(0.0, self.machine - sum(used.values()))
        parts = [f"{name} {value / seconds:.0%}" for name, value in used.items()]
        return ", ".join(parts + [f"everything else {others / seconds:.0%}"]) + \
            f" ({os.cpu_count()} CPUs)"


def smaps_rollup(pid):
    """{field: KiB} from /proc/PID/smaps_rollup (Rss, Pss, Private_Dirty, ...)."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[-1] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1])
    return out


def first_number(text):
    """The first whole number in text (such as a stats line's count), or None."""
    match = re.search(r"\d+", text or "")
    return int(match.group()) if match else None


class Replies:
    """Reads SMTP replies from a socket. With quickack the client acknowledges what it
    receives at once (TCP_QUICKACK after every read) instead of letting the kernel delay
    the ACK (up to 40 ms on Linux): a server that writes pipelined replies one by one
    without TCP_NODELAY (Nagle) holds back every reply after the first until that ACK."""

    def __init__(self, sock, quickack=False):
        self.sock = sock
        self.quickack = quickack
        self.buffer = b""

    def reply(self):
        """(code, last line) of the next whole reply, continuation lines included."""
        while True:
            end = self.buffer.find(b"\r\n")
            while end < 0:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed by the server")
                if self.quickack:
                    self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
                self.buffer += chunk
                end = self.buffer.find(b"\r\n")
            line, self.buffer = self.buffer[:end], self.buffer[end + 2:]
            if line[3:4] != b"-":
                return int(line[:3]), line


def percentile(values, p):
    """The p-th percentile of values sorted ascending (nearest rank, as the other
    benchmarks count it)."""
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def latency_figures(values):
    """"p50 ..  p90 ..  p99 ..  max .." of millisecond samples."""
    values = sorted(values)
    return (f"p50 {percentile(values, 50):.2f}  p90 {percentile(values, 90):.2f}  "
            f"p99 {percentile(values, 99):.2f}  max {values[-1]:.2f}")


def dns_server():
    """A DnsServer of ../integration/dns_server.py, not started: unbound on a free loopback
    port answering only its local zones (client.test, dnsbl.test, dnsbl2.test, and
    127.in-addr.arpa, where every name it does not list does not exist)."""
    integration = os.path.join(ROOT, "tests", "integration")
    if integration not in sys.path:
        sys.path.insert(0, integration)  # dns_server imports harness from there
    from dns_server import DnsServer
    return DnsServer()


class SinkSession(asyncio.Protocol):
    """One SMTP session of a Sink: accepts everything (MAIL, RCPT, DATA), never closes on its
    own, and with a delay holds what the client sends and what it answers, each for delay
    seconds (a one-way network delay in each direction: a round trip costs 2 x delay).

    Round trips are counted where the client waits: replies go out while nothing the client
    sent is left unanswered, and the next round trip can only begin once the client sends
    again (replies released one after another with no input between them are one wait).
    They are counted by the reply that began the wait: "setup" (the greeting, EHLO/HELO,
    RSET, NOOP), "message" (MAIL, RCPT, DATA, the final dot) or "quit"."""

    def __init__(self, sink):
        self.sink = sink
        self.transport = None
        self.buffer = b""
        self.in_data = False
        self.recipients = []
        self.inbound = collections.deque()   # (due, bytes) held on the way in
        self.outbound = collections.deque()  # (due, bytes, kind) held on the way out
        self.in_handle = None
        self.out_handle = None
        self.waiting = False  # replies went out and the client has sent nothing since

    # --- the wire, with the delays ------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        self.sink.sessions.add(self)
        self.sink.opened += 1
        self.sink.open_now += 1
        self.sink.peak_open = max(self.sink.peak_open, self.sink.open_now)
        self.answer(b"220 sink.bench ESMTP\r\n", "setup")

    def connection_lost(self, exc):
        self.sink.sessions.discard(self)
        self.sink.open_now -= 1
        for handle in (self.in_handle, self.out_handle):
            if handle:
                handle.cancel()

    def data_received(self, data):
        self.waiting = False
        if not self.sink.delay:
            return self.process(data)
        self.inbound.append((self.sink.loop.time() + self.sink.delay, data))
        if not self.in_handle:
            self.in_handle = self.sink.loop.call_at(self.inbound[0][0], self.take_inbound)

    def take_inbound(self):
        self.in_handle = None
        now = self.sink.loop.time()
        while self.inbound and self.inbound[0][0] <= now:
            self.process(self.inbound.popleft()[1])
        if self.inbound:
            self.in_handle = self.sink.loop.call_at(self.inbound[0][0], self.take_inbound)

    def answer(self, reply, kind):
        if not self.sink.delay:
            self.transport.write(reply)
            self.count_wait(kind)
            return
        self.outbound.append((self.sink.loop.time() + self.sink.delay, reply, kind))
        if not self.out_handle:
            self.out_handle = self.sink.loop.call_at(self.outbound[0][0], self.release)

    def count_wait(self, kind):
        # Input still on its way in (held by the delay) or unprocessed: the client did not
        # wait for these replies.
        if self.waiting or self.inbound or self.unanswered():
            return
        self.waiting = True
        self.sink.round_trips[kind] += 1

    def unanswered(self):
        return not self.in_data and b"\r\n" in self.buffer

    def release(self):
        self.out_handle = None
        now = self.sink.loop.time()
        while self.outbound and self.outbound[0][0] <= now:
            _, reply, kind = self.outbound.popleft()
            if not self.transport.is_closing():
                self.transport.write(reply)
            self.count_wait(kind)
        if self.outbound:
            self.out_handle = self.sink.loop.call_at(self.outbound[0][0], self.release)

    # --- SMTP -------------------------------------------------------------------------------

    def process(self, data):
        self.buffer += data
        replies = []
        kind = "setup"
        while True:
            if self.in_data:
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    # Keep a possible start of the end marker.
                    if len(self.buffer) > 4:
                        self.buffer = self.buffer[-4:]
                    break
                self.buffer = self.buffer[end + 5:]
                self.in_data = False
                self.sink.delivered(self.recipients)
                self.recipients = []
                replies.append(b"250 2.0.0 ok\r\n")
                kind = "message"
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                break
            line, self.buffer = self.buffer[:end], self.buffer[end + 2:]
            verb = line[:4].upper()
            if verb == b"MAIL":
                self.recipients = []
                replies.append(b"250 2.1.0 ok\r\n")
                kind = "message"
            elif verb == b"RCPT":
                self.recipients.append(line[8:].strip(b"<> ").split(b">")[0])
                replies.append(b"250 2.1.5 ok\r\n")
                kind = "message"
            elif verb == b"DATA":
                replies.append(b"354 go ahead\r\n")
                self.in_data = True
                self.buffer = b"\r\n" + self.buffer  # the marker may end the very first line
                kind = "message"
            elif verb in (b"EHLO", b"LHLO"):
                replies.append(b"250-sink.bench\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                               b"250-SIZE 104857600\r\n250 ENHANCEDSTATUSCODES\r\n")
                kind = "setup"
            elif verb == b"QUIT":
                replies.append(b"221 2.0.0 bye\r\n")
                kind = "quit"
            else:  # HELO, RSET, NOOP
                replies.append(b"250 2.0.0 ok\r\n")
                kind = "setup"
        if replies:
            self.answer(b"".join(replies), kind)


class Sink:
    """An asyncio SMTP sink on its own thread, listening on any number of loopback ports
    (listen()); every session is a SinkSession. Counts connections, transactions and
    recipients (with the time each arrived and its domain), and the round trips clients
    waited for."""

    def __init__(self, delay=0.0):
        self.delay = delay
        self.loop = asyncio.new_event_loop()
        self.servers = []
        self.sessions = set()
        self.transactions = 0
        self.arrivals = []  # (monotonic time, domain) per recipient
        self.round_trips = {"setup": 0, "message": 0, "quit": 0}
        self.opened = 0
        self.open_now = 0
        self.peak_open = 0
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def reset(self):
        """Forgets what arrived so far and the round trips (not the connections); on the
        sink's thread, between two of its callbacks."""
        def clear():
            self.transactions = 0
            self.arrivals = []
            self.round_trips = {"setup": 0, "message": 0, "quit": 0}
        self.loop.call_soon_threadsafe(clear)
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), self.loop).result(timeout=10)

    def listen(self, host="127.0.0.1", port=0):
        """Starts listening (backlog 1024); returns the port."""
        async def start():
            return await self.loop.create_server(lambda: SinkSession(self), host, port,
                                                 backlog=1024, reuse_address=True)
        server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(timeout=10)
        self.servers.append(server)
        return server.sockets[0].getsockname()[1]

    def delivered(self, recipients):
        now = time.monotonic()
        self.transactions += 1
        self.arrivals.extend((now, r.rpartition(b"@")[2].decode(errors="replace").lower())
                             for r in recipients)

    def received(self):
        return len(self.arrivals)

    def close_all(self):
        """Closes every open session from the sink's side (the client sees the connection
        end, as when a server's idle timer fires)."""
        def close():
            for session in list(self.sessions):
                session.transport.close()
        self.loop.call_soon_threadsafe(close)

    def stop(self):
        def close():
            for server in self.servers:
                server.close()
            self.loop.stop()
        self.loop.call_soon_threadsafe(close)
        self.thread.join(timeout=5)


def wait_for(condition, timeout, stall=None, progress=None, interval=0.05):
    """Polls condition() until true or timeout seconds pass; with stall and progress, gives up
    too when progress() has not changed for stall seconds. True when condition() held."""
    deadline = time.monotonic() + timeout
    last, changed = None, time.monotonic()
    while not condition():
        now = time.monotonic()
        if now > deadline:
            return False
        if progress:
            value = progress()
            if value != last:
                last, changed = value, now
            elif stall and now - changed > stall:
                return False
        time.sleep(interval)
    return True


def vm_rss_kib(pid):
    """VmRSS of a process in KiB (0 once gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def open_fds(pid):
    """How many descriptors a process has open (0 once gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


class RssSampler:
    """Samples a process's VmRSS (KiB) and open descriptors every interval seconds on a
    thread until stop(): peak and last of each."""

    def __init__(self, pid, interval=0.1):
        self.pid = pid
        self.interval = interval
        self.peak = self.last = vm_rss_kib(pid)
        self.peak_fds = open_fds(pid)
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            self.last = vm_rss_kib(self.pid)
            self.peak = max(self.peak, self.last)
            self.peak_fds = max(self.peak_fds, open_fds(self.pid))
            time.sleep(self.interval)

    def stop(self):
        self.running = False
        self.thread.join()
        return self
