"""Runs a real Postern daemon for integration tests: writes a configuration with free
loopback ports under a temporary directory, starts build/smtpd/smtpd in the foreground,
and reads its state back through smtpctl and /proc."""

import json
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import threading
import time

BUILD_DIR = os.environ.get("POSTERN_BUILD_DIR") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build")
SMTPD = os.path.join(BUILD_DIR, "smtpd", "smtpd")
SMTPCTL = os.path.join(BUILD_DIR, "smtpctl")
CHILDREN = {
    "smtp": "smtpd-smtp",
    "queue": "smtpd-queue",
    "mda": "smtpd-mda",
    "mta": "smtpd-mta",
    "lookup": "smtpd-lookup",
    "control": "smtpd-control",
}
# Who talks to whom (DESIGN.md); status shows each of these peers' pids.
PEERS = {
    "smtp": {"queue", "lookup", "control"},
    "queue": {"smtp", "mda", "mta", "lookup", "control"},
    "mda": {"queue", "lookup", "control"},
    "mta": {"queue", "lookup", "control"},
    "lookup": {"smtp", "queue", "mda", "mta", "control"},
    "control": {"smtp", "queue", "mda", "mta", "lookup"},
}
IS_ROOT = os.geteuid() == 0


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def can_connect(host, port, family=socket.AF_INET, timeout=2.0):
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect((host, port))
            return True
    except OSError:
        return False


def maildir_files(root, user):
    """The files in new/ of a user's Maildir under root, sorted; [] while there is none."""
    new = os.path.join(root, user, "Maildir", "new")
    return sorted(os.path.join(new, n) for n in os.listdir(new)) if os.path.isdir(new) else []


def wait_for(predicate, timeout, interval=0.02):
    """Polls predicate until it returns something true; returns that, or None on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def submit(port, rcpts, body=b"Subject: x\r\n\r\nhello\r\n", sender="someone@example.com"):
    """Sends one message to a daemon's SMTP port with smtplib; its queue id, the last word of
    the 250. A refused recipient or message fails the test (AssertionError)."""
    with smtplib.SMTP("127.0.0.1", port) as s:
        s.ehlo("client.example")
        s.mail(sender)
        for r in rcpts:
            code = s.rcpt(r)[0]
            if code != 250:
                raise AssertionError(f"RCPT {r}: {code}")
        code, text = s.data(body)
        if code != 250:
            raise AssertionError(f"DATA: {code} {text!r}")
        return text.decode().split()[-1]


class Client:
    """A raw SMTP client for what smtplib will not send: exact bytes, pipelining, garbage."""

    def __init__(self, port, host="127.0.0.1", timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def reply(self):
        """One whole reply (all its lines) as (code, text of the last line)."""
        while True:
            while b"\r\n" not in self.buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed by server; had " + repr(self.buffer))
                self.buffer += chunk
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            text = line.decode(errors="replace")
            if len(text) < 4 or text[3] != "-":
                return int(text[:3]), text[4:]

    def command(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def closed(self):
        """True when the server has closed the connection (after any pending replies)."""
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, socket.timeout):
            return False


def pid_alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def proc_status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def quarantine_bounded_env(megabytes=4):
    """AddressSanitizer keeps freed memory in a quarantine of 256 MB before reusing it, so a
    process that answers a flood grows by what it frees whatever it keeps. A small quarantine
    makes its RSS show what it holds; use-after-free is still caught within it (0: only
    what the allocator's caches keep)."""
    if not sanitized_build():
        return None
    options = os.environ.get("ASAN_OPTIONS", "")
    return {"ASAN_OPTIONS": (options + ":" if options else "") + f"quarantine_size_mb={megabytes}"}


def sanitized_build():
    try:
        with open(os.path.join(BUILD_DIR, "meson-info", "intro-buildoptions.json")) as f:
            options = json.load(f)
    except OSError:
        return False
    return any(o["name"] == "b_sanitize" and o["value"] not in ("none", "", [])
               for o in options)



class Daemon:
    """One smtpd under test. Use as a context manager; it is always killed afterwards."""

    def __init__(self, listeners=None, extra="", directory=None, run_as=None):
        self.owns_dir = directory is None
        self.dir = directory or tempfile.mkdtemp(prefix="postern-test-")
        os.chmod(self.dir, 0o755)
        self.run_as = run_as  # a user name: start smtpd as that user (needs root)
        self.exec_dir = BUILD_DIR  # where smtpd finds its children (-x)
        self.spool = os.path.join(self.dir, "spool")
        self.empty = os.path.join(self.dir, "empty")
        self.run_dir = os.path.join(self.dir, "run")
        self.socket = os.path.join(self.run_dir, "smtpd.sock")
        self.pid_file = os.path.join(self.run_dir, "smtpd.pid")
        self.config = os.path.join(self.dir, "smtpd.yaml")
        self.log_path = os.path.join(self.dir, "smtpd.log")
        self.port = free_port()
        # No DNS server listens here (config_text).
        self.silent_dns_port = free_port()
        if listeners is None:
            listeners = [("smtp", f"127.0.0.1:{self.port}")]
        self.listeners = listeners
        self.extra = extra
        self.proc = None
        self.log = None
        self.write_config()

    def config_text(self, listeners=None, extra=None, dns=True):
        """dns: add a resolver on a loopback port where nothing answers, unless the extra
        text has its own: the mta asks for the MX of every remote domain, and a test's
        questions never leave the machine (mail to such a domain is deferred, 4.4.3)."""
        listeners = self.listeners if listeners is None else listeners
        lines = [
            "hostname: test.example",
            "domains: [test.example, localhost]",
            f"spool: {self.spool}",
            f"empty_dir: {self.empty}",
            f"run_dir: {self.run_dir}",
            "control:",
            f"  socket: {self.socket}",
        ]
        extra_text = self.extra if extra is None else extra
        lines += extra_text.splitlines()
        if dns and not re.search(r"^dns:", extra_text, re.M):
            lines += ["dns:", f'  resolvers: ["127.0.0.1@{self.silent_dns_port}"]', "  timeout: 1"]
        lines.append("listeners:")
        for role, address in listeners:
            lines += [f'  - address: "{address}"', f"    role: {role}"]
        return "\n".join(lines) + "\n"

    def write_config(self, text=None):
        with open(self.config, "w") as f:
            f.write(self.config_text() if text is None else text)
        os.chmod(self.config, 0o644)

    def command(self, *args):
        argv = [SMTPD, "-d", "-x", self.exec_dir, "-f", self.config, *args]
        if self.run_as:
            argv = ["setpriv", f"--reuid={self.run_as}",
                    f"--regid={pwd.getpwnam(self.run_as).pw_gid}", "--clear-groups"] + argv
        return argv

    def start(self, wait=True, env=None):
        """env: variables for the daemon on top of this process's."""
        extra = env
        if self.log:  # a restart: the earlier run's handle
            self.log.close()
        self.log = open(self.log_path, "ab")
        env = dict(os.environ)
        # LeakSanitizer cannot work in chrooted, no_new_privs children; the caller's other
        # options stay (the last setting of an option wins).
        env["ASAN_OPTIONS"] = ":".join(filter(None, [env.get("ASAN_OPTIONS"), "detect_leaks=0"]))
        # In sanitizer builds undefined behaviour must fail the test, not scroll by in a log.
        env.setdefault("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
        env.update(extra or {})
        self.proc = subprocess.Popen(self.command(), stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True, env=env)
        if wait:
            self.wait_ready()
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        if self.log:
            self.log.close()
        if self.owns_dir and not exc[0]:
            shutil.rmtree(self.dir, ignore_errors=True)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        # Children that escaped the process group would show up here.
        for pid in self.descendants():
            os.kill(pid, signal.SIGKILL)

    def descendants(self):
        """Pids of live processes whose parent is this daemon's parent process."""
        if not self.proc:
            return []
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(stat[1]) == self.proc.pid and stat[0] != "Z":
                out.append(int(entry))
        return out

    def smtpctl(self, *args, check=False):
        result = subprocess.run([SMTPCTL, "-s", self.socket, *args], capture_output=True,
                                text=True, timeout=30)
        if check and result.returncode != 0:
            raise AssertionError(f"smtpctl {' '.join(args)} failed: {result.stderr}")
        return result

    def status(self):
        """smtpctl show status as {process: {pid, restarts, details: {key: value}}}."""
        result = self.smtpctl("show", "status")
        if result.returncode != 0:
            return None
        table = {}
        for line in result.stdout.splitlines()[1:]:
            cols = line.split(None, 4)
            details = {}
            for item in (cols[4].split() if len(cols) > 4 else []):
                key, _, value = item.partition("=")
                details[key] = value
            table[cols[0]] = {
                "pid": None if cols[1] == "down" else int(cols[1]),
                "restarts": None if cols[3] == "-" else int(cols[3]),
                "details": details,
            }
        return table

    @staticmethod
    def peers_of(row):
        """{peer: pid or None} from a status row."""
        peers = {}
        for item in row["details"].get("peers", "").split(","):
            if item:
                name, _, pid = item.partition(":")
                peers[name] = None if pid == "down" else int(pid)
        return peers

    def fully_wired(self, table):
        """True when every child runs and every peer channel reports the peer's current pid."""
        if not table or any(table.get(role, {}).get("pid") is None for role in CHILDREN):
            return False
        for role, peers in PEERS.items():
            seen = self.peers_of(table[role])
            if set(seen) != peers:
                return False
            if any(seen[p] != table[p]["pid"] for p in peers):
                return False
        return True

    def wait_ready(self, timeout=10):
        table = wait_for(lambda: self._ready_table(), timeout)
        if not table:
            raise AssertionError(f"daemon not ready within {timeout} s; log:\n{self.read_log()}")
        return table

    def _ready_table(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"smtpd exited with {self.proc.returncode}; log:\n"
                                 f"{self.read_log()}")
        if not os.path.exists(self.socket):
            return None
        table = self.status()
        return table if self.fully_wired(table) else None

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_log(self, pattern, timeout=5):
        return wait_for(lambda: re.search(pattern, self.read_log(), re.M), timeout)

    COMMIT_FOOTER = re.compile(rb"postern-commit ([0-9a-f]{16}) [0-9a-f]{8}\n\Z")

    def spool_messages(self):
        """{id: (message bytes, envelope text or None)} of the data files in queue/. The
        envelope is queue/<id>.env once a delivery changed it, else the commit record's (after
        the message in the data file); None when the file ends in no commit footer: a message
        being received, or a spare made ahead of need. The footer is only recognised here, not
        checked: the daemon checks it at start."""
        area = os.path.join(self.spool, "queue")
        if not os.path.isdir(area):
            return {}
        found = {}
        for name in os.listdir(area):
            if not name.endswith(".msg"):
                continue
            try:
                with open(os.path.join(area, name), "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                continue
            footer = self.COMMIT_FOOTER.search(data[-41:])
            if not footer:
                found[name[:-4]] = (data, None)
                continue
            size = int(footer.group(1), 16)
            envelope = data[size:-41]
            try:
                with open(os.path.join(area, name[:-4] + ".env"), "rb") as f:
                    envelope = f.read() or envelope
            except FileNotFoundError:
                pass
            found[name[:-4]] = (data[:size], envelope.decode(errors="replace"))
        return found

    def queued(self):
        """Ids of committed messages (their data file ends in a commit record)."""
        return {i for i, (_, env) in self.spool_messages().items() if env is not None}

    def message_bytes(self, queue_id):
        return self.spool_messages()[queue_id][0]

    def envelope_text(self, queue_id):
        return self.spool_messages()[queue_id][1]

    def incoming(self):
        """Ids of messages being received: data in queue/ without a commit record (spares,
        with no data either, are not messages)."""
        return sorted(i for i, (data, env) in self.spool_messages().items()
                      if env is None and data)

    def signal(self, signo):
        os.kill(self.proc.pid, signo)

    def wait_exit(self, timeout=10):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None


def read_data(f):
    """Reads a message's lines from a scripted server's file up to the final dot (not
    unstuffed); False when the connection ended first."""
    while True:
        line = f.readline()
        if not line:
            return False
        if line == b".\r\n":
            return True


class ThreadedServer:
    """A TCP listener on a free 127.0.0.1 port for a scripted peer: each connection runs
    self.session(conn) in its own thread; connections counts them. A subclass sets what its
    sessions use before calling this __init__, which starts accepting."""

    def __init__(self, backlog=64):
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self.accepted(conn)
            threading.Thread(target=self.session, args=(conn,), daemon=True).start()

    def accepted(self, conn):
        """Runs in the accepting thread, in the order connections came, before session:
        where a server decides what a connection gets, as a real one does at accept()."""

    def session(self, conn):
        raise NotImplementedError

    def close(self):
        # Shut down first, which ends the accept() in progress, and wait for that thread:
        # closed under it, the descriptor's number goes to the next server's socket, and this
        # thread would take that server's connections.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.acceptor.join(5)
        self.sock.close()


def sha512_hash(password):
    """A sha512-crypt hash for a credentials table."""
    return subprocess.run(["openssl", "passwd", "-6", password], capture_output=True, text=True,
                          check=True).stdout.strip()


def write_file(path, text, mode=0o600):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def make_certificate(directory):
    """A throw-away self-signed certificate for localhost/127.0.0.1, as TOOLCHAIN.md says."""
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


class Dovecot:
    """A private Dovecot (LMTP and IMAP on free loopback ports) for delivery tests, as
    TOOLCHAIN.md describes; users live in a passwd-file with the given plain passwords."""

    def __init__(self, directory, users):
        self.dir = os.path.join(directory, "dovecot")
        self.mail = os.path.join(self.dir, "mail")
        for sub in ("run", "state", "mail"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        os.chmod(self.mail, 0o777)
        self.lmtp_port, self.imap_port = free_port(), free_port()
        nobody = pwd.getpwnam("nobody")
        with open(os.path.join(self.dir, "users"), "w") as f:
            for user, password in users.items():
                f.write(f"{user}:{{PLAIN}}{password}:{nobody.pw_uid}:{nobody.pw_gid}::"
                        f"{self.mail}/{user}::\n")
        self.config = os.path.join(self.dir, "dovecot.conf")
        with open(self.config, "w") as f:
            f.write(f"""base_dir = {self.dir}/run
state_dir = {self.dir}/state
log_path = {self.dir}/dovecot.log
protocols = lmtp imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
auth_username_format = %Ln
passdb {{
  driver = passwd-file
  args = {self.dir}/users
}}
userdb {{
  driver = passwd-file
  args = {self.dir}/users
}}
mail_location = maildir:{self.mail}/%n/Maildir
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.lmtp_port}
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
""")
        # Dovecot reports a bad configuration on stderr, before its log_path is open.
        self.output = os.path.join(self.dir, "dovecot.out")
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(["dovecot", "-F", "-c", self.config], stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        if not wait_for(lambda: can_connect("127.0.0.1", self.lmtp_port, timeout=0.2), 10):
            self.stop()
            raise AssertionError(f"dovecot did not start (exit {self.proc.returncode}):\n"
                                 f"{self.read_log()}")

    def read_log(self):
        """What Dovecot said: its output, then its log file."""
        text = ""
        for path in (self.output, os.path.join(self.dir, "dovecot.log")):
            if os.path.exists(path):
                with open(path, "rb") as f:
                    text += f.read().decode(errors="replace")
        return text

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
