"""Configuration as an admin meets it: smtpd -n, a bad file refused with file:line:column at
start, SIGHUP reloads that apply listener changes and refuse a broken file."""

import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import SMTPD, Daemon, can_connect, free_port, wait_for  # noqa: E402


class CheckMode(unittest.TestCase):
    def test_good_configuration_ok(self):
        with Daemon() as d:
            r = subprocess.run([SMTPD, "-n", "-f", d.config], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, "configuration OK\n")

    def test_bad_configuration_names_file_line_and_column(self):
        with Daemon() as d:
            d.write_config(d.config_text() + "listenres: []\n")
            r = subprocess.run([SMTPD, "-n", "-f", d.config], capture_output=True, text=True)
            self.assertEqual(r.returncode, 1)
            line = len(d.config_text().splitlines()) + 1
            self.assertIn(f"{d.config}:{line}:1: unknown key 'listenres'", r.stderr)
            self.assertNotIn("configuration OK", r.stdout)

    def test_every_error_is_reported(self):
        with Daemon() as d:
            d.write_config("spool: [1]\nlisteners:\n  - address: 300.1.1.1:25\n"
                           "  - address: 127.0.0.1:25\n    role: smpt\n")
            r = subprocess.run([SMTPD, "-n", "-f", d.config], capture_output=True, text=True)
            self.assertEqual(r.returncode, 1)
            self.assertIn(f"{d.config}:1:8: 'spool' must be a string", r.stderr)
            self.assertIn(f"{d.config}:3:14: bad listener address '300.1.1.1:25'", r.stderr)
            self.assertIn(f"{d.config}:5:11: unknown listener role 'smpt'", r.stderr)

    def test_shipped_example_is_valid(self):
        example = os.path.join(os.path.dirname(__file__), "..", "..", "etc", "smtpd.yaml")
        r = subprocess.run([SMTPD, "-n", "-f", example], capture_output=True, text=True)
        self.assertEqual((r.returncode, r.stdout), (0, "configuration OK\n"), r.stderr)

    def test_shipped_example_takes_mail_only_for_the_users_it_names(self):
        """A remote sender naming any local part must not make a folder appear under the
        mailbox root: the example's domains, run as they are (the root moved to a
        temporary directory), refuse a name nobody listed."""
        example = os.path.join(os.path.dirname(__file__), "..", "..", "etc", "smtpd.yaml")
        with open(example) as f:
            text = f.read()
        start = text.index("\ndomains:\n") + 1
        end = re.search(r"^\S", text[start + len("domains:\n"):], re.M).start()
        domains = text[start:start + len("domains:\n") + end]
        with Daemon() as d:
            root = os.path.join(d.dir, "vmail")
            self.assertIn("/var/vmail/", domains)
            d.write_config(d.config_text().replace("domains: [test.example, localhost]\n",
                                                   domains.replace("/var/vmail/", root + "/")))
            d.start()
            with smtplib.SMTP("127.0.0.1", d.port) as s:
                s.ehlo("stranger.example")
                s.mail("someone@stranger.example")
                self.assertEqual(s.rcpt("random-name@example.org")[0], 550)
                self.assertEqual(s.rcpt("postmaster@example.org")[0], 250)
                self.assertEqual(s.data(b"Subject: hi\r\n\r\nhello\r\n")[0], 250)
            self.assertTrue(wait_for(lambda: os.path.isdir(os.path.join(root, "postmaster")), 5),
                            d.read_log())
            self.assertEqual(os.listdir(root), ["postmaster"])

    def test_missing_file(self):
        r = subprocess.run([SMTPD, "-n", "-f", "/nonexistent/smtpd.yaml"], capture_output=True,
                           text=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn("/nonexistent/smtpd.yaml: cannot open: No such file or directory",
                      r.stderr)

    def test_daemon_refuses_to_start_with_a_bad_file(self):
        with Daemon() as d:
            d.write_config(d.config_text().replace("listeners:", "listeners: 5\nx:"))
            d.start(wait=False)
            self.assertEqual(d.wait_exit(5), 1)
            self.assertRegex(d.read_log(), rf"{d.config}:\d+:\d+: 'listeners' must be a list")
            self.assertEqual(d.descendants(), [])

    def test_busy_port_is_a_start_up_error(self):
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            with Daemon(listeners=[("smtp", f"127.0.0.1:{port}")]) as d:
                d.start(wait=False)
                self.assertEqual(d.wait_exit(5), 1)
                self.assertIn(f"cannot listen on 127.0.0.1:{port}: Address already in use",
                              d.read_log())


class Listeners(unittest.TestCase):
    def test_ipv4_and_ipv6_listeners_are_bound(self):
        p4, p6 = free_port(), free_port(socket.AF_INET6, "::1")
        with Daemon(listeners=[("smtp", f"127.0.0.1:{p4}"),
                               ("submission", f"[::1]:{p6}")]).start() as d:
            self.assertTrue(can_connect("127.0.0.1", p4))
            self.assertTrue(can_connect("::1", p6, socket.AF_INET6))
            self.assertEqual(d.status()["smtp"]["details"]["listeners"], "2")

    def test_listeners_survive_an_smtp_restart(self):
        with Daemon().start() as d:
            os.kill(d.status()["smtp"]["pid"], signal.SIGKILL)
            d.wait_log(r"smtp \(pid \d+\) was killed")
            self.assertTrue(wait_for(lambda: d.fully_wired(d.status()), 3))
            self.assertEqual(d.status()["smtp"]["details"]["listeners"], "1")
            self.assertTrue(can_connect("127.0.0.1", d.port))


class Reload(unittest.TestCase):
    def test_broken_file_keeps_the_running_configuration(self):
        with Daemon().start() as d:
            before = d.status()
            good = d.config_text()
            d.write_config(good + "  - address: nowhere\n")
            d.signal(signal.SIGHUP)
            line = len(good.splitlines()) + 1
            self.assertTrue(d.wait_log(
                rf"reload: {d.config}:{line}:14: bad listener address 'nowhere'"), d.read_log())
            self.assertTrue(d.wait_log(r"reload of .* refused; the running configuration "
                                       r"stays in force"))
            after = d.status()
            self.assertTrue(d.fully_wired(after))
            self.assertEqual({r: after[r]["pid"] for r in after},
                             {r: before[r]["pid"] for r in before})
            self.assertTrue(can_connect("127.0.0.1", d.port))
            self.assertIsNone(d.proc.poll())

    def test_listener_changes_apply(self):
        with Daemon().start() as d:
            old_port = d.port
            new_port = free_port()
            d.write_config(d.config_text(listeners=[("submission", f"127.0.0.1:{new_port}")]))
            d.signal(signal.SIGHUP)
            self.assertTrue(d.wait_log(r"configuration reloaded from"), d.read_log())
            self.assertTrue(wait_for(lambda: can_connect("127.0.0.1", new_port), 3))
            self.assertTrue(wait_for(lambda: not can_connect("127.0.0.1", old_port), 3))
            self.assertEqual(d.status()["smtp"]["details"]["listeners"], "1")
            # The new set survives an smtp restart.
            os.kill(d.status()["smtp"]["pid"], signal.SIGKILL)
            self.assertTrue(wait_for(lambda: d.fully_wired(d.status()), 3))
            self.assertTrue(can_connect("127.0.0.1", new_port))
            self.assertFalse(can_connect("127.0.0.1", old_port))

    def test_restart_only_settings_are_reported_not_applied(self):
        with Daemon().start() as d:
            d.write_config(d.config_text().replace(d.spool, d.spool + "2"))
            d.signal(signal.SIGHUP)
            self.assertTrue(d.wait_log(r"reload: 'spool' changed; restart smtpd to apply it"))
            self.assertTrue(d.wait_log(r"configuration reloaded"))
            self.assertTrue(os.path.exists(d.pid_file))
            self.assertFalse(os.path.exists(d.spool + "2"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
