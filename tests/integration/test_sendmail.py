"""sendmail, mailq and newaliases (smtpctl under those names): local submission through the
spool's offline area, with the daemon running and stopped; the sender's identity is the
submitting user's uid; crafted files in the offline area are refused with a log line."""

import os
import pwd
import re
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import IS_ROOT, SMTPCTL, Daemon, maildir_files, wait_for  # noqa: E402

MESSAGE = b"To: Alice <alice@localhost>\nBcc: bob@localhost\nSubject: from cron\n\nbackup done\n"


def as_user(user, argv, stdin=b""):
    """argv run as user (a name, or a uid with no account), without the caller's groups."""
    if isinstance(user, int):
        ids = [f"--reuid={user}", f"--regid={user}"]
    else:
        pw = pwd.getpwnam(user)
        ids = [f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}"]
    return subprocess.run(["setpriv", *ids, "--clear-groups", *argv], input=stdin,
                          capture_output=True, timeout=30)


@unittest.skipUnless(IS_ROOT, "submitting as other users needs root")
class Sendmail(unittest.TestCase):
    def setUp(self):
        # The three names, as an install makes them (control/meson.build).
        self.bin = tempfile.mkdtemp(prefix="postern-bin-")
        os.chmod(self.bin, 0o755)
        for name in ("sendmail", "mailq", "newaliases"):
            os.symlink(SMTPCTL, os.path.join(self.bin, name))
        self.addCleanup(subprocess.run, ["rm", "-rf", self.bin])

    def daemon(self, aliases=True):
        d = Daemon()
        self.mail = os.path.join(d.dir, "mail")
        self.aliases = os.path.join(d.dir, "aliases")
        with open(self.aliases, "w") as f:
            f.write("postmaster: alice\n")
        domain = (f"  - {{name: localhost, users: [alice, bob], maildir: {self.mail}/%u/Maildir"
                  + (f", aliases: {self.aliases}}}" if aliases else "}"))
        d.write_config(d.config_text().replace("domains: [test.example, localhost]",
                                               "domains:\n  - test.example\n" + domain))
        return d

    def tool(self, name, *args, user="root", stdin=b""):
        return as_user(user, [os.path.join(self.bin, name), *args], stdin)

    def sendmail(self, d, *args, user="root", stdin=MESSAGE):
        return self.tool("sendmail", "-C", d.config, *args, user=user, stdin=stdin)

    def delivered(self, user, count=1):
        files = wait_for(lambda: len(maildir_files(self.mail, user)) >= count
                         and maildir_files(self.mail, user), 10)
        self.assertTrue(files, f"nothing delivered to {user}")
        with open(files[-1], "rb") as f:
            return f.read()

    def offline(self, d):
        return os.path.join(d.spool, "offline")

    def test_sendmail_t_from_a_script_with_the_daemon_running(self):
        nobody = pwd.getpwnam("nobody")
        with self.daemon().start() as d:
            r = self.sendmail(d, "-t", "-oi", "-odi", "-oem", "-v", user="nobody")
            self.assertEqual((r.returncode, r.stderr), (0, b""))
            data = self.delivered("alice")
            header, _, body = data.partition(b"\r\n\r\n")
            self.assertEqual(body, b"backup done\r\n")
            self.assertIn(b"Return-Path: <nobody@test.example>\r\n", header)
            self.assertIn(f"Received: by test.example (Postern, from userid {nobody.pw_uid} "
                          "nobody)".encode(), header)
            self.assertRegex(header, rb"\r\nMessage-ID: <\d{14}\.[0-9a-f]{16}@test\.example>\r\n")
            self.assertRegex(header, rb"\r\nDate: \w{3}, \d+ \w{3} \d{4} ")
            self.assertIn(b"\r\nFrom: nobody@test.example\r\n", header)
            self.assertIn(b"\r\nTo: Alice <alice@localhost>\r\n", header)
            # Bcc: is a recipient, and is taken out of the message.
            self.assertNotIn(b"Bcc:", header)
            self.assertNotIn(b"Bcc:", self.delivered("bob"))
            self.assertNotIn(b"X-Authentication-Warning", header)
            self.assertTrue(d.wait_log(r"offline/[0-9a-f]{32}: queued as [0-9a-f]{16}"))
            self.assertEqual(os.listdir(self.offline(d)), [])

    def test_the_offline_message_is_delivered_after_start(self):
        with self.daemon() as d:
            d.start()  # the first start makes the offline area
            d.kill()
            r = self.sendmail(d, "alice@localhost", user="nobody",
                              stdin=b"Subject: while down\n\nqueued offline\n.\nnot sent\n")
            self.assertEqual((r.returncode, r.stderr), (0, b""))
            waiting = os.listdir(self.offline(d))
            self.assertEqual(len(waiting), 1)
            st = os.stat(os.path.join(self.offline(d), waiting[0]))
            self.assertEqual((st.st_uid, st.st_mode & 0o777), (pwd.getpwnam("nobody").pw_uid,
                                                               0o600))
            self.assertEqual(maildir_files(self.mail, "alice"), [])
            d.start()
            data = self.delivered("alice")
            # Without -i a line of one dot ends the message.
            self.assertTrue(data.endswith(b"\r\n\r\nqueued offline\r\n"), data)
            self.assertIn(b"Subject: while down\r\n", data)
            self.assertEqual(os.listdir(self.offline(d)), [])

    def test_f_from_an_untrusted_user_is_recorded(self):
        with self.daemon().start() as d:
            r = self.sendmail(d, "-f", "boss@example.com", "-F", 'The "Boss"', "alice@localhost",
                              user="nobody", stdin=b"Subject: pay rise\n\nyes\n")
            self.assertEqual(r.returncode, 0, r.stderr)
            data = self.delivered("alice")
            self.assertIn(b"Return-Path: <boss@example.com>\r\n", data)
            self.assertIn(b"X-Authentication-Warning: test.example: nobody set sender to "
                          b"boss@example.com using -f\r\n", data)
            self.assertIn(b"From: \"The \\\"Boss\\\"\" <boss@example.com>\r\n", data)
            self.assertIn(b"from userid 65534 nobody", data)
            self.assertTrue(d.wait_log(r"uid 65534 \(nobody\) set sender to <boss@example\.com> "
                                       r"using -f, not trusted to"))
            # root is trusted: no warning.
            r = self.sendmail(d, "-fboss@example.com", "bob@localhost",
                              stdin=b"Subject: from root\n\nok\n")
            self.assertEqual(r.returncode, 0, r.stderr)
            data = self.delivered("bob")
            self.assertIn(b"Return-Path: <boss@example.com>\r\n", data)
            self.assertNotIn(b"X-Authentication-Warning", data)

    def test_mailq_lists_the_queue_and_q_runs_it(self):
        with self.daemon().start() as d:
            d.smtpctl("pause", "mda", check=True)
            r = self.sendmail(d, "alice@localhost", stdin=b"Subject: waits\n\nx\n")
            self.assertEqual(r.returncode, 0, r.stderr)
            m = d.wait_log(r"offline/[0-9a-f]{32}: queued as ([0-9a-f]{16})")
            self.assertTrue(m, d.read_log())
            queue_id = m.group(1)
            for listing in (self.tool("mailq", "-C", d.config),
                            self.sendmail(d, "-bp", stdin=b"")):
                self.assertEqual(listing.returncode, 0, listing.stderr)
                self.assertIn(queue_id.encode(), listing.stdout)
                self.assertIn(b"alice@localhost", listing.stdout)
            d.smtpctl("resume", "mda", check=True)
            r = self.sendmail(d, "-q", stdin=b"")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.delivered("alice")
        with Daemon() as stopped:  # never started: mailq says so
            r = self.tool("mailq", "-C", stopped.config)
            self.assertEqual(r.returncode, 3)  # smtpctl(8): 3, no daemon
            self.assertIn(b"smtpd is not running", r.stderr)

    def test_newaliases_reloads_the_aliases(self):
        with self.daemon().start() as d:
            with open(self.aliases, "a") as f:
                f.write("backups: bob\n")
            r = self.tool("newaliases", "-C", d.config)
            self.assertEqual(r.returncode, 0, r.stderr)
            r = self.sendmail(d, "backups@localhost", stdin=b"Subject: alias\n\nx\n")
            self.assertEqual(r.returncode, 0, r.stderr)
            # backups is no user: only the reloaded alias brings it to bob.
            data = self.delivered("bob")
            self.assertIn(b"Delivered-To: bob@localhost\r\n", data)
            self.assertIn(b"Subject: alias\r\n", data)
            # A user may not reload tables: the control socket is root's.
            r = self.tool("newaliases", "-C", d.config, user="nobody")
            self.assertNotEqual(r.returncode, 0)
        with self.daemon(aliases=False) as d:
            r = self.tool("newaliases", "-C", d.config)
            self.assertEqual((r.returncode, r.stderr),
                             (78, b"newaliases: no aliases file in the configuration\n"))

    def test_bs_speaks_smtp_on_stdin(self):
        session = (b"EHLO me\r\nMAIL FROM:<app@example.com>\r\nRCPT TO:<bob@localhost>\r\n"
                   b"RCPT TO:<alice@localhost>\r\nDATA\r\nSubject: bs\r\n\r\n..stuffed\r\n.\r\n"
                   b"RCPT TO:<x@y>\r\nFROB\r\nQUIT\r\n")
        with self.daemon().start() as d:
            r = self.sendmail(d, "-bs", user="nobody", stdin=session)
            self.assertEqual(r.returncode, 0, r.stderr)
            codes = [line[:3] for line in r.stdout.decode().split("\r\n") if line]
            self.assertEqual(codes, ["220", "250", "250", "250", "250", "354", "250", "503",
                                     "502", "221"])
            for user in ("alice", "bob"):
                data = self.delivered(user)
                self.assertIn(b"Return-Path: <app@example.com>\r\n", data)
                self.assertIn(b"X-Authentication-Warning: test.example: nobody set sender to "
                              b"app@example.com using -f\r\n", data)
                self.assertTrue(data.endswith(b"Subject: bs\r\n\r\n.stuffed\r\n"), data)

    def test_usage_errors(self):
        with self.daemon() as d:
            r = self.sendmail(d, "-bt")
            self.assertEqual((r.returncode, r.stderr), (64, b"sendmail: -bt is not supported\n"))
            r = self.sendmail(d, "-t", stdin=b"Subject: nobody to\n\nx\n")
            self.assertEqual(r.returncode, 64)
            self.assertIn(b"no recipients", r.stderr)
            r = self.sendmail(d, "alice@localhost")  # never started: no offline area yet
            self.assertEqual(r.returncode, 75)
            self.assertIn(b"cannot open the offline area", r.stderr)
            r = self.tool("sendmail", "-C", "/nonexistent.yaml", "alice@localhost")
            self.assertEqual(r.returncode, 78)

    def test_crafted_offline_files_are_refused(self):
        """What a local user (or a daemon user) can put into the offline area: none of it is
        delivered or crashes anything, each is moved aside with a log line, and the next real
        submission goes through."""
        with self.daemon().start() as d:
            area = self.offline(d)
            queue_pid = d.status()["queue"]["pid"]
            valid = (b"postern-submission 1\nrcpt alice@localhost\nsize 11\n\nSubject: x\n")
            # nobody: a link to a file it cannot read, a hard link to its own submission, garbage,
            # a FIFO, and a submission that lies about its size.
            craft = f"""
import os
os.chdir({area!r})
os.symlink("/etc/shadow", "symlink")
with open(".h", "wb") as f:
    f.write({valid!r})
os.link(".h", "hard1")
os.link(".h", "hard2")
os.unlink(".h")
with open("garbage", "wb") as f:
    f.write(os.urandom(4096))
os.mkfifo("fifo")
with open("short", "wb") as f:
    f.write({valid!r}[:-3])
"""
            r = as_user("nobody", [sys.executable, "-c", craft])
            self.assertEqual(r.returncode, 0, r.stderr)
            # A daemon's own user, and a uid without an account.
            for who, name in (("_smtpq", "queue-user"), (54321, "no-account")):
                r = as_user(who, [sys.executable, "-c",
                                  f"open({os.path.join(area, name)!r}, 'wb').write({valid!r})"])
                self.assertEqual(r.returncode, 0, r.stderr)
            reasons = {
                "symlink": r"a symbolic link",
                "hard1": r"a file with \d links",
                "hard2": r"a file with \d links",
                "garbage": r"the queue says: not a submission file",
                "fifo": r"not a regular file",
                "short": r"the queue says: message of 8 octets, 11 announced",
                "queue-user": r"owned by uid \d+, one of the daemon's own users",
                "no-account": r"owned by uid 54321, which has no account",
            }
            for name, reason in reasons.items():
                self.assertTrue(d.wait_log(rf"offline/{name}: refused: {reason}; moved to "
                                           rf"corrupt/offline-\d+-{name}\"?$", 10),
                                f"{name}:\n{d.read_log()}")
            self.assertEqual(os.listdir(area), [])
            self.assertEqual(maildir_files(self.mail, "alice"), [])
            self.assertEqual(d.status()["queue"]["pid"], queue_pid)
            self.assertNotIn("queued as", d.read_log())
            # Too big, said before the file is read (the limit plus the header's allowance).
            d.kill()
            with open(d.config, "a") as f:
                f.write("limits:\n  message_size: 1000\n")
            d.start()
            r = as_user("nobody", [sys.executable, "-c",
                                   f"open({os.path.join(area, 'huge')!r}, 'wb')"
                                   f".truncate(2 * 1024 * 1024)"])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertTrue(d.wait_log(r"offline/huge: refused: 2097152 octets, more than "
                                       r"1049576; moved to", 10), d.read_log())
            r = self.sendmail(d, "alice@localhost", user="nobody", stdin=b"Subject: ok\n\nx\n")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(b"Subject: ok", self.delivered("alice"))


if __name__ == "__main__":
    unittest.main()
