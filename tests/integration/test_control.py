"""smtpctl against a running daemon, and against none."""

import os
import re
import stat
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import CHILDREN, SMTPCTL, Daemon, pid_alive, wait_for  # noqa: E402


class Smtpctl(unittest.TestCase):
    def test_show_status_lists_every_process(self):
        with Daemon().start() as d:
            r = d.smtpctl("show", "status")
            self.assertEqual(r.returncode, 0, r.stderr)
            lines = r.stdout.splitlines()
            self.assertEqual(lines[0].split(), ["PROCESS", "PID", "UPTIME", "RESTARTS", "DETAILS"])
            names = [line.split()[0] for line in lines[1:]]
            self.assertEqual(sorted(names), sorted(["parent", *CHILDREN]))
            pids = {line.split()[0]: int(line.split()[1]) for line in lines[1:]}
            self.assertEqual(pids["parent"], d.proc.pid)
            self.assertEqual(sorted(pids[c] for c in CHILDREN), sorted(d.descendants()))

    def test_log_verbose_and_brief_reach_every_process(self):
        with Daemon().start() as d:
            r = d.smtpctl("log", "verbose")
            self.assertEqual((r.returncode, r.stdout), (0, "log level verbose\n"))
            for program in ["smtpd", *CHILDREN.values()]:
                self.assertTrue(d.wait_log(rf"^{program}\[\d+\]: msg=\"log level verbose\"$"), program)
            # Verbose means debug lines appear, e.g. for the next smtpctl connection.
            d.smtpctl("show", "status", check=True)
            self.assertTrue(d.wait_log(r"^smtpd-control\[\d+\]: debug: "))
            r = d.smtpctl("log", "brief")
            self.assertEqual((r.returncode, r.stdout), (0, "log level brief\n"))
            for program in ["smtpd", *CHILDREN.values()]:
                self.assertTrue(d.wait_log(rf"^{program}\[\d+\]: msg=\"log level brief\"$"), program)
            mark = len(d.read_log())
            d.smtpctl("show", "status", check=True)
            d.smtpctl("show", "status", check=True)
            self.assertNotIn("debug:", d.read_log()[mark:])

    def test_stop(self):
        with Daemon().start() as d:
            pids = d.descendants()
            r = d.smtpctl("stop")
            self.assertEqual((r.returncode, r.stdout), (0, "stopping\n"), r.stderr)
            self.assertEqual(d.wait_exit(5), 0)
            self.assertEqual([p for p in pids if pid_alive(p)], [])
            self.assertIn("stop requested through smtpctl", d.read_log())

    def test_not_running_is_said_plainly(self):
        with Daemon() as d:
            r = d.smtpctl("show", "status")
            self.assertEqual(r.returncode, 3)  # smtpctl(8) EXIT STATUS: no daemon
            self.assertEqual(r.stdout, "")
            self.assertIn(f"smtpd is not running (no daemon on {d.socket})", r.stderr)

    def test_help_and_unknown_commands(self):
        r = subprocess.run([SMTPCTL, "-h"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0)
        for command in ("show status", "show queue", "show envelope", "show message", "schedule", "remove",
                        "pause mda|mta|smtp", "resume mda|mta|smtp", "log verbose", "log brief", "stop"):
            self.assertIn(command, r.stdout)
        r = subprocess.run([SMTPCTL, "-s", "/nonexistent", "frobnicate"], capture_output=True,
                           text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown command: frobnicate", r.stderr)

    def test_socket_path_from_the_configuration(self):
        with Daemon().start() as d:
            r = subprocess.run([SMTPCTL, "-f", d.config, "show", "status"], capture_output=True,
                               text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("control", r.stdout)

    def test_pause_and_resume_mta(self):
        # The queue holds remote hand-offs; smtpctl names what it paused.
        with Daemon().start() as d:
            self.assertEqual(d.smtpctl("pause", "mta").stdout, "mta paused\n")
            self.assertTrue(d.wait_log(r"remote deliveries paused"))
            self.assertEqual(d.smtpctl("resume", "mta").stdout, "mta resumed\n")
            self.assertTrue(d.wait_log(r"remote deliveries resumed"))

    def test_show_queue_and_show_envelope(self):
        import smtplib
        with Daemon().start() as d:
            r = d.smtpctl("show", "queue")
            self.assertEqual((r.returncode, r.stdout), (0, "0 messages\n"), r.stderr)
            ids = []
            with smtplib.SMTP("127.0.0.1", d.port) as s:
                s.ehlo("x")
                for i in range(3):
                    s.mail("sender@example.com", ["RET=HDRS", "ENVID=E" + str(i)])
                    s.rcpt("alice@test.example", ["NOTIFY=FAILURE"])
                    s.rcpt("bob@test.example")
                    code, text = s.data(b"Subject: q\r\n\r\nbody\r\n")
                    ids.append(text.decode().split()[-1])
            r = d.smtpctl("show", "queue")
            self.assertEqual(r.returncode, 0, r.stderr)
            lines = r.stdout.splitlines()
            self.assertEqual(lines[-1], "3 messages")
            for queue_id in ids:
                head = [line for line in lines if line.startswith(queue_id)]
                self.assertEqual(len(head), 1, r.stdout)
                self.assertRegex(head[0], rf"^{queue_id}\s+\d+s\s+\d+\s+<sender@example.com>$")
            # test.example has no mailbox: each was tried once at most so far and waits.
            self.assertEqual(sum(1 for line in lines if re.fullmatch(
                r"    alice@test\.example  pending  (0 attempts  next try now|"
                r"1 attempt  next try (now \(in delivery\)|in \d+s  \(4\.3\.0 [^)]*\)))",
                line)), 3, r.stdout)
            r = d.smtpctl("show", "envelope", ids[1])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(f"id: {ids[1]}\n", r.stdout)
            self.assertIn("sender: <sender@example.com>\n", r.stdout)
            self.assertIn("envid: E1\n", r.stdout)
            self.assertIn("ret: hdrs\n", r.stdout)
            tried = (r"( attempts=1 last_error=4\.3\.0 no mailbox configured for domain test\.example)?"
                     r" wait=(due|delivering|retry until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC)")
            self.assertRegex(r.stdout, rf"\nrecipient: alice@test\.example pending notify=failure{tried}\n")
            self.assertRegex(r.stdout, rf"\nrecipient: bob@test\.example pending{tried}\n")
            self.assertRegex(r.stdout, r"\nnext try: (now|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(in \d+[smhd]\))\n")
            r = d.smtpctl("show", "envelope", "0000000000000000")
            self.assertEqual(r.returncode, 1)
            self.assertIn("no message 0000000000000000", r.stderr)
            # After a restart the queue still lists them: it rebuilt its state from the spool.
            d.signal(15)
            d.wait_exit(5)
            d.start()
            self.assertEqual(d.smtpctl("show", "queue").stdout.splitlines()[-1], "3 messages")

    def test_socket_is_private_to_its_owner(self):
        with Daemon().start() as d:
            st = os.stat(d.socket)
            self.assertTrue(stat.S_ISSOCK(st.st_mode))
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
            self.assertEqual(st.st_uid, os.geteuid())

    def test_garbage_on_the_socket_closes_only_that_client(self):
        import socket
        with Daemon().start() as d:
            control = d.status()["control"]["pid"]
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(d.socket)
                s.sendall(b"\xff" * 64)  # not a frame
                s.settimeout(5)
                self.assertEqual(s.recv(100), b"")  # closed by control
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(d.socket)
                # A well-formed frame of a type clients may not send (peer_hello = 4).
                s.sendall(bytes([4, 0, 0, 0]) + bytes(12))
                s.settimeout(5)
                self.assertEqual(s.recv(100), b"")
            self.assertTrue(d.wait_log(r"smtpctl client \d+: client may not send peer_hello"))
            table = d.status()
            self.assertEqual(table["control"]["pid"], control)
            self.assertEqual(table["control"]["restarts"], 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
