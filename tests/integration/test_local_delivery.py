"""Everyday local delivery to the accounts of this host (users: system): plus addressing,
where user+tag@ lands in user's Maildir and an unknown nobody+x@ is still refused."""

import os
import pwd
import shutil
import smtplib
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import IS_ROOT, Daemon, wait_for  # noqa: E402


@unittest.skipUnless(IS_ROOT, "system users' mail is delivered as them only under root")
class LocalDelivery(unittest.TestCase):
    accounts = 0

    def make_user(self):
        """An ordinary account (uid >= 1000, as min_uid wants) with a home of its own, mode
        0700, removed after the test."""
        LocalDelivery.accounts += 1
        user = "postern-l%d-%d" % (os.getpid() % 100000, LocalDelivery.accounts)
        home = tempfile.mkdtemp(prefix="postern-home-")
        subprocess.run(["useradd", "--home-dir", home, "--no-create-home",
                        "--shell", "/usr/sbin/nologin", user], check=True)
        self.addCleanup(shutil.rmtree, home, ignore_errors=True)
        self.addCleanup(self.remove_user, user)
        pw = pwd.getpwnam(user)
        self.assertGreaterEqual(pw.pw_uid, 1000)
        os.chown(home, pw.pw_uid, pw.pw_gid)
        os.chmod(home, 0o700)
        return pw

    @staticmethod
    def remove_user(user):
        """userdel refuses while a process of the user runs: wait for helpers to exit."""
        uid = str(pwd.getpwnam(user).pw_uid)
        wait_for(lambda: subprocess.run(["pgrep", "-U", uid], capture_output=True)
                 .returncode != 0, 10)
        subprocess.run(["userdel", user], check=False)

    def daemon(self, domain_extra=""):
        d = Daemon()
        d.write_config(d.config_text().replace(
            "domains: [test.example, localhost]",
            "domains:\n  - localhost\n  - {name: users.example, users: system, "
            f"maildir: ~/Maildir{domain_extra}}}\n"))
        return d

    @staticmethod
    def delivered(pw):
        """The messages in pw's Maildir/new, as bytes."""
        new = os.path.join(pw.pw_dir, "Maildir", "new")
        if not os.path.isdir(new):
            return []
        out = []
        for name in sorted(os.listdir(new)):
            with open(os.path.join(new, name), "rb") as f:
                out.append(f.read())
        return out

    def test_plus_address_lands_in_the_users_maildir(self):
        pw = self.make_user()
        d = self.daemon()
        with d.start():
            with smtplib.SMTP("127.0.0.1", d.port) as s:
                s.sendmail("sender@example.com", [f"{pw.pw_name}+lists@users.example"],
                           b"Subject: plus\r\n\r\nplus body\r\n")
                # Neither nobody+x nor nobody exists: refused during the session.
                s.mail("sender@example.com")
                code, reply = s.rcpt("nobody-here+x@users.example")
                self.assertEqual(code, 550, reply)
                self.assertIn(b"5.1.1", reply)
                s.rset()
            self.assertTrue(wait_for(lambda: len(self.delivered(pw)) == 1, 10), d.read_log())
            self.assertTrue(d.wait_log(
                rf"to=<{pw.pw_name}\+lists@users\.example>.*status=sent", 10), d.read_log())
        message = self.delivered(pw)[0]
        self.assertIn(f"Delivered-To: {pw.pw_name}+lists@users.example".encode(), message)
        self.assertTrue(message.endswith(b"plus body\r\n") or message.endswith(b"plus body\n"))
        new = os.path.join(pw.pw_dir, "Maildir", "new")
        self.assertEqual(os.stat(os.path.join(new, os.listdir(new)[0])).st_uid, pw.pw_uid)

    def test_an_empty_delimiter_turns_plus_addressing_off(self):
        pw = self.make_user()
        d = self.daemon(', recipient_delimiter: ""')
        with d.start():
            with smtplib.SMTP("127.0.0.1", d.port) as s:
                s.ehlo()
                s.mail("sender@example.com")
                code, reply = s.rcpt(f"{pw.pw_name}+lists@users.example")
                self.assertEqual(code, 550, reply)
                code, reply = s.rcpt(f"{pw.pw_name}@users.example")
                self.assertEqual(code, 250, reply)


if __name__ == "__main__":
    unittest.main(verbosity=2)
