"""The process tree under supervision: all seven processes up with the right programs,
restarts with re-wiring after kill -9, a crash loop throttled (never stopping the daemon),
a peer's report not counted as a crash, the others serving while one is down, clean stops."""

import ctypes
import os
import re
import signal
import smtplib
import struct
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import CHILDREN, PEERS, Client, Daemon, free_port, pid_alive, wait_for  # noqa: E402

KILLED = r"was killed by signal 9 \(SIGKILL\)"


def kill_repeatedly(d, role, times):
    """kill -9 of role `times` times, each time as soon as the parent has started it again;
    returns the pids killed. The last one is left down, waiting for its restart."""
    killed = []
    pid = d.status()[role]["pid"]
    for i in range(times):
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
        if i + 1 == times:
            break
        pid = wait_for(lambda: (t := d.status()) and t[role]["pid"] not in (None, pid)
                       and t[role]["pid"], 10)
        assert pid, f"{role} not restarted after kill {i + 1}:\n{d.read_log()}"
    return killed


def local_delivery(d):
    """Configures d to deliver localhost's alice and bob into Maildirs; returns their root."""
    mail = os.path.join(d.dir, "mail")
    d.write_config(d.config_text().replace(
        "domains: [test.example, localhost]",
        f"domains:\n  - test.example\n  - {{name: localhost, users: [alice, bob], "
        f"maildir: {mail}/%u/Maildir}}"))
    return mail


def delivered(mail, user):
    """The queue ids of the messages in user's Maildir (from their Received headers), with
    repeats: a crash may deliver a message twice, never lose it."""
    new = os.path.join(mail, user, "Maildir", "new")
    ids = []
    for name in (os.listdir(new) if os.path.isdir(new) else []):
        with open(os.path.join(new, name), "rb") as f:
            found = re.search(rb"with E?SMTP id ([0-9a-f]{16})", f.read())
        ids.append(found.group(1).decode() if found else None)
    return ids


def send(d, rcpt="alice@localhost"):
    """Sends a message; returns the queue id of its 250."""
    with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
        s.ehlo("client.example")
        s.mail("sender@example.com")
        assert s.rcpt(rcpt)[0] == 250
        code, text = s.data(b"Subject: hi\r\n\r\nHello.\r\n")
        assert code == 250, (code, text)
        return text.decode().split()[-1]


def inject_bad_frame(pid):
    """Does what a compromised process could: writes a frame of no known type into one of
    pid's channels to its peers (taken with pidfd_getfd). The peer reports pid's fault to the
    parent. Returns False when pid has no such channel yet."""
    with open("/proc/net/unix") as f:
        unix = {line.split()[6] for line in list(f)[1:]}
    libc = ctypes.CDLL(None, use_errno=True)
    for fd in sorted(os.listdir(f"/proc/{pid}/fd"), key=int):
        if int(fd) in (3, 4):  # the channel to the parent, the log relay to it
            continue
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if not link.startswith("socket:[") or link[8:-1] not in unix:
            continue
        pidfd = os.pidfd_open(pid)
        try:
            stolen = libc.syscall(438, pidfd, int(fd), 0)  # pidfd_getfd
            if stolen < 0:
                raise OSError(ctypes.get_errno(), "pidfd_getfd")
        finally:
            os.close(pidfd)
        try:
            # type 0xffff, no flags, empty payload, request 0, sender pid 0
            os.write(stolen, struct.pack("<HHIII", 0xFFFF, 0, 0, 0, 0))
        finally:
            os.close(stolen)
        return True
    return False


class ProcessTree(unittest.TestCase):
    def test_seven_processes_with_their_programs(self):
        with Daemon().start() as d:
            table = d.status()
            self.assertEqual(set(table), {"parent", *CHILDREN})
            self.assertEqual(table["parent"]["pid"], d.proc.pid)
            with open(f"/proc/{d.proc.pid}/comm") as f:
                self.assertEqual(f.read().strip(), "smtpd")
            self.assertEqual(sorted(d.descendants()),
                             sorted(table[role]["pid"] for role in CHILDREN))
            for role, program in CHILDREN.items():
                pid = table[role]["pid"]
                self.assertEqual(os.path.basename(os.readlink(f"/proc/{pid}/exe")), program)
                with open(f"/proc/{pid}/comm") as f:
                    self.assertEqual(f.read().strip(), program)
                self.assertEqual(table[role]["restarts"], 0)
                self.assertEqual(set(d.peers_of(table[role])), PEERS[role])

    def test_children_get_the_descriptor_limit_raised(self):
        # A service's soft limit is often 1024: a 10,000-user fanout then failed in mda.
        import resource
        saved = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, saved[1]))  # the hard one stays
        infinite = saved[1] == resource.RLIM_INFINITY
        want = 65536 if infinite else min(saved[1], 65536)
        hard = "unlimited" if infinite else str(saved[1])
        try:
            d = Daemon().start()
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, saved)
        with d:
            table = d.status()
            for role in CHILDREN:
                with open(f"/proc/{table[role]['pid']}/limits") as f:
                    line = next(l for l in f if l.startswith("Max open files"))
                self.assertEqual(line.split()[3:5], [str(want), hard], (role, line))
            if want < 4096:
                self.assertIn("file descriptors allowed", d.read_log())

    def test_each_killed_child_is_back_within_two_seconds_and_rewired(self):
        with Daemon().start() as d:
            for role in CHILDREN:
                before = d.status()
                old = before[role]["pid"]
                os.kill(old, signal.SIGKILL)
                started = time.monotonic()
                table = wait_for(lambda: (t := d.status()) and t[role]["pid"] not in (None, old)
                                 and d.fully_wired(t) and t, 2.0)
                self.assertIsNotNone(table, f"{role} not back and re-wired within 2 s")
                self.assertLess(time.monotonic() - started, 2.0)
                self.assertFalse(pid_alive(old))
                self.assertEqual(table[role]["restarts"], 1)
                # Every peer now holds a channel to the new process.
                for peer in PEERS[role]:
                    self.assertEqual(d.peers_of(table[peer])[role], table[role]["pid"])
                    self.assertEqual(table[peer]["pid"], before[peer]["pid"])
                self.assertTrue(d.wait_log(
                    rf"{role} \(pid {old}\) was killed by signal 9 \(SIGKILL\); restarting"))

    def test_crash_loop_is_throttled_and_never_stops_the_daemon(self):
        with Daemon().start() as d:
            before = d.status()
            killed = kill_repeatedly(d, "mta", 6)
            # The restart waits twice as long after each crash in a row, loudly.
            for n, (pid, delay) in enumerate(zip(killed, [100, 200, 400, 800, 1600, 3200]), 1):
                tail = "" if n == 1 else f": {n} crashes in a row, throttled"
                self.assertTrue(d.wait_log(rf"^smtpd\[\d+\]: error: msg=\"mta \(pid {pid}\) {KILLED}; "
                                           rf"restarting it in {delay} ms{re.escape(tail)}\"$"),
                                d.read_log())
            # smtpctl says it is down, throttled, and when it comes back.
            row = d.status()["mta"]
            self.assertIsNone(row["pid"])
            self.assertIn("throttled", row["details"])
            self.assertEqual(row["details"]["crashes"], "6")
            self.assertRegex(row["details"]["restart_in"], r"^[0-3]\.\d+s$")
            # The daemon and the others carry on meanwhile.
            self.assertIsNone(d.proc.poll())
            table = d.status()
            for role in set(CHILDREN) - {"mta"}:
                self.assertEqual(table[role]["pid"], before[role]["pid"], role)
            c = Client(d.port)
            self.assertEqual(c.reply()[0], 220)
            self.assertEqual(c.command("NOOP")[0], 250)
            c.close()
            table = wait_for(lambda: (t := d.status()) and d.fully_wired(t) and t, 10)
            self.assertIsNotNone(table, d.read_log())
            self.assertEqual(table["mta"]["restarts"], 6)
            self.assertEqual(table["mta"]["details"]["crashes"], "6")
            self.assertNotIn("stopping", d.read_log())

    def test_smtp_killed_six_times_in_a_minute(self):
        # A client that can crash smtp at will must not stop the mail: smtp is throttled, the
        # daemon runs on, mail queued before is delivered meanwhile, smtp comes back.
        d = Daemon()
        mail = local_delivery(d)
        with d.start():
            self.assertEqual(d.smtpctl("pause", "mda").stdout, "mda paused\n")
            accepted = [send(d) for _ in range(3)]
            self.assertEqual(d.queued(), set(accepted))
            started = time.monotonic()
            killed = kill_repeatedly(d, "smtp", 6)
            self.assertLess(time.monotonic() - started, 60)
            row = d.status()["smtp"]
            self.assertIsNone(row["pid"])
            self.assertIn("throttled", row["details"])
            self.assertEqual(row["details"]["crashes"], "6")
            self.assertIn("restart_in", row["details"])
            self.assertTrue(d.wait_log(rf"error: msg=\"smtp \(pid {killed[-1]}\) {KILLED}; restarting "
                                       r"it in 3200 ms: 6 crashes in a row, throttled"))
            self.assertEqual(d.smtpctl("resume", "mda").stdout, "mda resumed\n")
            self.assertTrue(wait_for(lambda: sorted(delivered(mail, "alice")) == sorted(accepted),
                                     10), d.read_log())
            table = wait_for(lambda: (t := d.status()) and d.fully_wired(t) and t, 10)
            self.assertIsNotNone(table, d.read_log())
            self.assertEqual(table["smtp"]["restarts"], 6)
            self.assertIsNone(d.proc.poll())
            accepted.append(send(d))
            self.assertTrue(wait_for(lambda: sorted(delivered(mail, "alice")) == sorted(accepted),
                                     10), d.read_log())

    def test_while_the_queue_is_down_smtp_answers_451_and_nothing_is_lost(self):
        d = Daemon()
        mail = local_delivery(d)
        with d.start():
            # Paused, so that deliveries are still to come when the queue is killed (a new
            # queue process starts unpaused).
            self.assertEqual(d.smtpctl("pause", "mda").stdout, "mda paused\n")
            accepted = {"alice": [send(d)], "bob": [send(d, "bob@localhost")]}
            kill_repeatedly(d, "queue", 6)  # the last restart waits 3.2 s
            self.assertIn("throttled", d.status()["queue"]["details"])
            c = Client(d.port)
            self.assertEqual(c.reply()[0], 220)
            self.assertEqual(c.command("EHLO client.example")[0], 250)
            self.assertEqual(c.command("MAIL FROM:<sender@example.com>")[0], 250)
            self.assertEqual(c.command("RCPT TO:<alice@localhost>")[0], 250)
            self.assertEqual(c.command("DATA"), (451, "4.3.0 Queue unavailable, try again later"))
            table = wait_for(lambda: (t := d.status()) and d.fully_wired(t) and t, 10)
            self.assertIsNotNone(table, d.read_log())
            # The client tries again and the message is taken.
            self.assertEqual(c.command("RSET")[0], 250)
            self.assertEqual(c.command("MAIL FROM:<sender@example.com>")[0], 250)
            self.assertEqual(c.command("RCPT TO:<alice@localhost>")[0], 250)
            self.assertEqual(c.command("DATA")[0], 354)
            code, text = c.command("Subject: again\r\n\r\nHello.\r\n.")
            self.assertEqual(code, 250)
            accepted["alice"].append(text.split()[-1])
            c.close()
            d.smtpctl("resume", "mda", check=True)
            # Every message answered 250 arrives (a kill during a delivery may repeat it).
            self.assertTrue(wait_for(lambda: all(set(delivered(mail, user)) == set(ids)
                                                 for user, ids in accepted.items()), 10),
                            d.read_log())
            self.assertTrue(wait_for(lambda: d.queued() == set(), 5))

    def test_peer_fault_restarts_the_accused_without_counting_a_crash(self):
        with Daemon().start() as d:
            for n in range(1, 7):
                pid = d.status()["smtp"]["pid"]
                self.assertTrue(inject_bad_frame(pid))
                table = wait_for(lambda: (t := d.status()) and t["smtp"]["pid"] not in (None, pid)
                                 and d.fully_wired(t) and t, 10)
                self.assertIsNotNone(table, d.read_log())
                self.assertEqual(table["smtp"]["restarts"], n)
                self.assertTrue(d.wait_log(
                    rf"killing smtp \(pid {pid}\): \w+ received a bad message from it"))
                self.assertTrue(d.wait_log(
                    rf"smtp \(pid {pid}\) {KILLED}; restarting it in 100 ms \(killed for a "
                    r"fault a peer reported; not counted as a crash\)"))
            # Six in a row, and still never throttled: none was its own crash.
            self.assertNotIn("crashes", d.status()["smtp"]["details"])
            self.assertNotRegex(d.read_log(), r"smtp \(pid \d+\).*crashes in a row")

    def test_sigterm_stops_everything(self):
        with Daemon().start() as d:
            pids = list(d.descendants())
            self.assertEqual(len(pids), 6)
            d.signal(signal.SIGTERM)
            self.assertEqual(d.wait_exit(5), 0)
            self.assertEqual([p for p in pids if pid_alive(p)], [])
            self.assertFalse(os.path.exists(d.socket))
            self.assertFalse(os.path.exists(d.pid_file))
            self.assertIn("stopped", d.read_log())

    def test_sigint_stops_everything(self):
        with Daemon().start() as d:
            pids = list(d.descendants())
            d.signal(signal.SIGINT)
            self.assertEqual(d.wait_exit(5), 0)
            self.assertEqual([p for p in pids if pid_alive(p)], [])

    def test_killed_parent_leaves_no_orphans(self):
        with Daemon().start() as d:
            pids = list(d.descendants())
            d.signal(signal.SIGKILL)
            d.proc.wait()
            # Each child sees its parent channel close and exits on its own.
            self.assertTrue(wait_for(lambda: not any(pid_alive(p) for p in pids), 5),
                            [p for p in pids if pid_alive(p)])

    def test_second_daemon_on_the_same_spool_is_refused(self):
        with Daemon().start() as first:
            second = Daemon(directory=first.dir)
            second.config = os.path.join(first.dir, "second.yaml")
            second.log_path = os.path.join(first.dir, "second.log")
            second.socket = os.path.join(first.dir, "run2", "smtpd.sock")
            second.write_config(second.config_text(listeners=[("smtp", f"127.0.0.1:{free_port()}")]))
            second.start(wait=False)
            self.assertEqual(second.wait_exit(5), 1)
            self.assertIn(f"another smtpd (pid {first.proc.pid}) is running on spool "
                          f"{first.spool}", second.read_log())
            self.assertTrue(first.fully_wired(first.status()))


class Daemonized(unittest.TestCase):
    def test_without_d_it_detaches_and_records_its_pid(self):
        with Daemon() as d:
            argv = [a for a in d.command() if a != "-d"]
            launcher = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            self.assertEqual(launcher.returncode, 0, launcher.stderr)
            pid_file = d.pid_file
            pid = wait_for(lambda: os.path.exists(pid_file) and open(pid_file).read().strip(), 5)
            self.assertTrue(pid)
            pid = int(pid)
            try:
                table = wait_for(lambda: (t := d.status()) and d.fully_wired(t) and t, 10)
                self.assertIsNotNone(table)
                self.assertEqual(table["parent"]["pid"], pid)
                # A new session, away from the terminal that started it.
                self.assertEqual(os.getsid(pid), pid)
                children = [table[role]["pid"] for role in CHILDREN]
                os.kill(pid, signal.SIGTERM)
                self.assertTrue(wait_for(lambda: not pid_alive(pid), 5))
                self.assertEqual([p for p in children if pid_alive(p)], [])
                self.assertFalse(os.path.exists(pid_file))
            finally:
                if pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    unittest.main(verbosity=2)
