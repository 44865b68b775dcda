"""Everyday local delivery to the accounts of this host (users: system): plus addressing,
where user+tag@ lands in user's Maildir and an unknown nobody+x@ is still refused; and
~/.forward, where a working file forwards and every file an attacker could plant or point
elsewhere (a symbolic link, another owner, group-writable, a hard link, a command the policy
refuses) is ignored with a log line and the mail lands in the user's own Maildir."""

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
from test_logging_events import Sink  # noqa: E402


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

    def daemon(self, domain_extra="", extra=""):
        d = Daemon(extra=extra)
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

    @staticmethod
    def write_forward(pw, text, mode=0o600, owner=None):
        """pw's ~/.forward, owned by owner (a passwd entry; pw itself by default)."""
        path = os.path.join(pw.pw_dir, ".forward")
        with open(path, "w") as f:
            f.write(text)
        owner = owner or pw
        os.chown(path, owner.pw_uid, owner.pw_gid)
        os.chmod(path, mode)
        return path

    def send(self, d, rcpts, subject):
        with smtplib.SMTP("127.0.0.1", d.port) as s:
            s.sendmail("sender@example.com", rcpts,
                       f"Subject: {subject}\r\n\r\nbody\r\n".encode())

    def test_a_forward_sends_to_another_user_and_keeps_a_copy(self):
        alice, bob, carol, dave = (self.make_user() for _ in range(4))
        # alice: to bob and a copy in her own mailbox; carol and dave name themselves, bare
        # and with a backslash: their mailbox, no loop.
        self.write_forward(alice, f"{bob.pw_name}, \\{alice.pw_name}\n")
        self.write_forward(carol, f"# me\n{carol.pw_name}\n", mode=0o644)
        self.write_forward(dave, f"\\{dave.pw_name}\n")
        d = self.daemon()
        with d.start():
            self.send(d, [f"{u.pw_name}@users.example" for u in (alice, carol, dave)], "fwd")
            for pw in (alice, bob, carol, dave):
                self.assertTrue(wait_for(lambda pw=pw: len(self.delivered(pw)) == 1, 10),
                                pw.pw_name + "\n" + d.read_log())
            log = d.read_log()
        self.assertNotIn("loop", log)
        self.assertNotIn("ignored", log)
        # bob's copy is alice's message, delivered as to bob (as through an alias).
        self.assertIn(b"Subject: fwd", self.delivered(bob)[0])
        self.assertIn(f"Delivered-To: {bob.pw_name}@users.example".encode(),
                      self.delivered(bob)[0])
        self.assertEqual(os.stat(os.path.join(bob.pw_dir, "Maildir")).st_uid, bob.pw_uid)

    def test_unusable_forward_files_are_ignored_for_the_mailbox(self):
        target = self.make_user()  # where each bad file would send the mail
        with_link, foreign, writable, hard, command = (self.make_user() for _ in range(5))
        targets_file = self.write_forward(target, f"{target.pw_name}\n", mode=0o644)
        # A symbolic link to another user's file.
        os.symlink(targets_file, os.path.join(with_link.pw_dir, ".forward"))
        # Owned by another user.
        self.write_forward(foreign, f"{target.pw_name}\n", mode=0o644, owner=target)
        # Group-writable.
        self.write_forward(writable, f"{target.pw_name}\n", mode=0o664)
        # A hard link to a file of someone else's (root's, here).
        root_file = os.path.join(hard.pw_dir, "roots")
        with open(root_file, "w") as f:
            f.write(f"{target.pw_name}\n")
        os.chmod(root_file, 0o644)
        os.link(root_file, os.path.join(hard.pw_dir, ".forward"))
        # A command, which alias_commands (by default [aliases]) does not allow.
        marker = os.path.join(command.pw_dir, "ran")
        self.write_forward(command, f"\"|/usr/bin/touch {marker}\", {target.pw_name}\n")
        cases = {
            with_link: "symbolic link",
            foreign: f"owned by uid {target.pw_uid}, neither the user nor root",
            writable: "writable by its group or by everyone",
            hard: "hard link to a file the user does not own",
            command: "alias_commands does not allow them",
        }
        d = self.daemon()
        with d.start():
            self.send(d, [f"{u.pw_name}@users.example" for u in cases], "bad")
            for pw in cases:
                self.assertTrue(wait_for(lambda pw=pw: len(self.delivered(pw)) == 1, 10),
                                pw.pw_name + "\n" + d.read_log())
            log = d.read_log()
        for pw, reason in cases.items():
            self.assertRegex(log, rf"~/\.forward of {pw.pw_name} ignored \(.*{reason}", pw.pw_name)
        self.assertEqual(self.delivered(target), [])
        self.assertFalse(os.path.exists(marker))

    def test_a_forward_to_a_remote_address_goes_to_the_mta(self):
        sink = Sink()
        self.addCleanup(sink.close)
        pw = self.make_user()
        self.write_forward(pw, "friend@remote.test\n")
        d = self.daemon(extra=f"""routes:
  - match: [remote.test]
    via: [smtp://127.0.0.1:{sink.port}]
""")
        with d.start():
            self.send(d, [f"{pw.pw_name}@users.example"], "away")
            self.assertTrue(wait_for(lambda: sink.messages == 1, 15), d.read_log())
            self.assertTrue(d.wait_log(r"to=<friend@remote\.test>.*status=sent", 10),
                            d.read_log())
        self.assertEqual(self.delivered(pw), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
