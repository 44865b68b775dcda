"""A private instance of the real Postfix daemon for the benchmarks that compare with it
(relay_throughput.py, throttled_receivers.py): the Debian package unpacked by
../postfix_tools.py (no installation), its own config, queue and data directories in a
temporary directory, smtpd on a free loopback port, relaying relay.test and *.relay.test to
one server (relayhost) with its default concurrency and recipient limits. README in this
folder says how it is set up and why."""

import grp
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import benchlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import postfix_tools  # noqa: E402


def ensure_postfix_accounts():
    """Creates the user postfix and the group postdrop when missing (Postfix's mail_owner
    and setgid_group); returns what it created."""
    created = []
    try:
        grp.getgrnam("postdrop")
    except KeyError:
        subprocess.run(["groupadd", "--system", "postdrop"], check=True)
        created.append("group postdrop")
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", "--user-group", "postfix"], check=True)
        created.append("user postfix")
    return created


class PostfixInstance:
    """The real Postfix daemon from the unpacked package, with its own config_directory,
    queue_directory and data_directory under one temporary directory."""

    def __init__(self, sink_port, base_dir, extra=""):
        """extra: main.cf lines added at the end (a later setting overrides an earlier)."""
        # Always the unpacked package, even where Postfix is installed: the instance names
        # its daemons and libraries there.
        self.root = postfix_tools.unpack()
        lib = os.path.join(self.root, "usr", "lib", "postfix")
        self.postfix = os.path.join(self.root, "usr", "sbin", "postfix")
        self.env = dict(os.environ, LD_LIBRARY_PATH=lib)
        self.dir = tempfile.mkdtemp(prefix="postern-bench-postfix-", dir=base_dir)
        os.chmod(self.dir, 0o755)
        self.conf = os.path.join(self.dir, "conf")
        self.queue = os.path.join(self.dir, "queue")
        self.data = os.path.join(self.dir, "data")
        self.maillog = os.path.join(self.dir, "maillog")
        self.port = benchlib.free_port()
        self.sink_port = sink_port
        self.extra = extra
        self.log_offset = 0
        self.counts = {"sent": 0, "deferred": 0, "bounced": 0, "removed": 0}

    def write_config(self):
        for d in (self.conf, self.queue, self.data):
            os.makedirs(d)
        os.chown(self.data, pwd.getpwnam("postfix").pw_uid, grp.getgrnam("postdrop").gr_gid)
        lib = os.path.join(self.root, "usr", "lib", "postfix")
        main_cf = f"""compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {self.data}
daemon_directory = {lib}/sbin
command_directory = {self.root}/usr/sbin
shlib_directory = {lib}
meta_directory = {self.root}/etc/postfix
mail_owner = postfix
setgid_group = postdrop
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C POSTLOG_SERVICE POSTLOG_HOSTNAME LD_LIBRARY_PATH={lib}
myhostname = postfix-bench.example
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = relay.test .relay.test
relayhost = [127.0.0.1]:{self.sink_port}
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtpd_peername_lookup = no
alias_maps =
alias_database =
biff = no
maillog_file = {self.maillog}
maillog_file_prefixes = {self.dir}
{self.extra}"""
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write(main_cf)
        # master.cf from the package, with smtpd on our port, the postlog service (for
        # maillog_file) enabled and every service out of chroot.
        lines = []
        with open(os.path.join(self.root, "usr", "share", "postfix", "master.cf.dist")) as f:
            for line in f:
                fields = line.split()
                if line.startswith("smtp ") and len(fields) > 1 and fields[1] == "inet":
                    line = f"127.0.0.1:{self.port} inet n - n - - smtpd\n"
                elif line.startswith("#postlog"):
                    line = line[1:]
                elif (line[:1].isalnum() and len(fields) >= 8 and
                      fields[1] in ("unix", "inet", "fifo", "pass", "unix-dgram")):
                    fields[4] = "n"
                    line = " ".join(fields) + "\n"
                lines.append(line)
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.writelines(lines)

    def run_postfix(self, command):
        # postfix writes its messages to a terminal or to the log only: the log tells why.
        return subprocess.run([self.postfix, "-c", self.conf, command], env=self.env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True)

    def start(self):
        self.write_config()
        result = self.run_postfix("start")
        if result.returncode != 0 or not benchlib.wait_listening(self.port, 15):
            raise RuntimeError(f"postfix -c {self.conf} start: status {result.returncode}; "
                               f"{result.stdout}{result.stderr}\nlog:\n{self.read_log()}")

    def master_pid(self):
        try:
            with open(os.path.join(self.queue, "pid", "master.pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self, remove=True):
        pid = self.master_pid()
        self.run_postfix("stop")
        deadline = time.monotonic() + 10
        while pid and time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)

    def read_log(self):
        try:
            with open(self.maillog, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def update_counts(self):
        """Adds the log's lines since the last call to self.counts."""
        try:
            with open(self.maillog, "rb") as f:
                f.seek(self.log_offset)
                data = f.read()
        except OSError:
            return self.counts
        end = data.rfind(b"\n") + 1  # a line still being written waits for next time
        self.log_offset += end
        data = data[:end]
        for word in ("sent", "deferred", "bounced"):
            self.counts[word] += data.count(b", status=" + word.encode() + b" ")
        self.counts["removed"] += data.count(b": removed\n")
        return self.counts

    def queued(self):
        """Messages in the queue directories."""
        return sum(len(files) for sub in ("maildrop", "incoming", "active", "deferred", "hold")
                   for _, _, files in os.walk(os.path.join(self.queue, sub)))
