"""Delivery helpers hold only what their user may read, and the parent starts one only for a
destination lookup routed a recipient to. Two attacks: a compromised mda (hostile_mda.cpp, in
smtpd-mda's place) asks for helpers it has no right to; a delivery command, running as the
recipient, tries to take its helper's descriptors (helper_attack.py)."""

import json
import os
import pwd
import shutil
import smtplib
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import BUILD_DIR, CHILDREN, IS_ROOT, Daemon, wait_for  # noqa: E402

HOSTILE_MDA = os.path.join(BUILD_DIR, "tests", "integration", "hostile-mda")
HOSTILE_LOOKUP = os.path.join(BUILD_DIR, "tests", "integration", "hostile-lookup")
ATTACK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "helper_attack.py")


@unittest.skipUnless(IS_ROOT, "delivery helpers run as other users only under root")
class Helpers(unittest.TestCase):
    accounts = 0

    def setUp(self):
        # An ordinary account (uid >= 1000, as min_uid wants) with a home of its own.
        # A name of its own for each test: a helper or command still exiting when one test
        # ends (slow under a sanitizer) must not keep the next test from making its user.
        Helpers.accounts += 1
        self.user = "postern-h%d-%d" % (os.getpid() % 100000, Helpers.accounts)
        self.home = tempfile.mkdtemp(prefix="postern-home-")
        subprocess.run(["useradd", "--home-dir", self.home, "--no-create-home",
                        "--shell", "/usr/sbin/nologin", self.user], check=True)
        self.addCleanup(shutil.rmtree, self.home, ignore_errors=True)
        self.addCleanup(self.remove_user)
        self.pw = pwd.getpwnam(self.user)
        self.assertGreaterEqual(self.pw.pw_uid, 1000)
        os.chown(self.home, self.pw.pw_uid, self.pw.pw_gid)
        os.chmod(self.home, 0o700)

    def remove_user(self):
        """userdel refuses while a process of the user runs: give any still exiting a moment,
        then kill what is left, so that no account is left behind."""
        uid = str(self.pw.pw_uid)
        if not wait_for(lambda: subprocess.run(["pgrep", "-U", uid], capture_output=True)
                        .returncode != 0, 10):
            subprocess.run(["pkill", "-KILL", "-U", uid], check=False)
            wait_for(lambda: subprocess.run(["pgrep", "-U", uid], capture_output=True)
                     .returncode != 0, 5)
        subprocess.run(["userdel", self.user], check=False)

    def daemon(self, domain):
        d = Daemon()
        d.write_config(d.config_text().replace(
            "domains: [test.example, localhost]",
            "domains:\n  - localhost\n  - " + domain + "\n"))
        return d

    def start_with_hostile_mda(self, d, env, program="smtpd-mda", hostile=HOSTILE_MDA):
        """smtpd runs its children from -x DIR: the build's, with program (mda) replaced by
        hostile; env is for the hostile child."""
        exec_dir = os.path.join(d.dir, "libexec")
        os.mkdir(exec_dir, 0o755)
        for name in list(CHILDREN.values()) + ["smtpd-deliver"]:
            os.symlink(os.path.join(os.path.abspath(BUILD_DIR), name),
                       os.path.join(exec_dir, name))
        os.remove(os.path.join(exec_dir, program))
        os.symlink(os.path.abspath(hostile), os.path.join(exec_dir, program))
        d.exec_dir = exec_dir
        env = dict(env, POSTERN_HOSTILE_USER=self.user, POSTERN_HOSTILE_DOMAIN="users.example")
        os.environ.update(env)
        try:
            d.start()
        finally:
            for name in env:
                del os.environ[name]

    def test_a_hostile_lookup_opens_no_forward_file_but_a_users_own(self):
        """lookup asks the parent for a ~/.forward by user name alone: a compromised lookup
        cannot name a path, root, a system account or a stranger, and gets only the user's own
        file, opened as the user."""
        with open(os.path.join(self.home, ".forward"), "w") as f:
            f.write("the-users-own@example.org\n")
        os.chown(os.path.join(self.home, ".forward"), self.pw.pw_uid, self.pw.pw_gid)
        d = self.daemon("{name: users.example, users: system, maildir: ~/Maildir}")
        self.start_with_hostile_mda(d, {}, "smtpd-lookup", HOSTILE_LOOKUP)
        with d:
            self.assertTrue(d.wait_log(r"hostile lookup: done", 10), d.read_log())
            log = d.read_log()
            for name in ("traversal", "slash", "dotdot"):
                self.assertIn(f"hostile lookup: {name}: refused not a user name", log)
            self.assertRegex(log, r"hostile lookup: root: refused \S")
            self.assertRegex(log, r"hostile lookup: system: refused \S")
            self.assertIn("hostile lookup: unknown: refused no such system user", log)
            # The parent logs each refusal with the name it was asked for.
            for account in ("../../etc", "root", "daemon", "postern-no-such-user"):
                self.assertIn(f"~/.forward of {account} refused: ", log)
            self.assertNotRegex(log, r"hostile lookup: (?!granted)\w+: found")
            # The user's own file is the one answer with a descriptor.
            self.assertIn("hostile lookup: granted: found  read the-users-own@example.org", log)

    def test_a_hostile_mda_gets_no_helper_it_has_no_right_to(self):
        d = self.daemon("{name: users.example, users: system, maildir: ~/Maildir}")
        marker = os.path.join(d.dir, "marker")
        os.chmod(d.dir, 0o777)  # a forged command, were one run, could create the marker
        self.start_with_hostile_mda(d, {"POSTERN_HOSTILE_MARKER": marker,
                                        "POSTERN_HOSTILE_HOME": self.home})
        with d:
            self.assertTrue(d.wait_log(r"hostile mda: done", 10), d.read_log())
            log = d.read_log()
            for name in ("smtpq", "daemon", "unresolved", "command", "path", "other-recipient",
                         "unsealed"):
                self.assertRegex(log, rf"hostile mda: {name}: refused: ", name)
            self.assertIn("hostile mda: unsealed: refused: the message is not a sealed memfd",
                          log)
            # The parent says whom it refused.
            for account in ("_smtpq", "daemon", "never-routed", self.user):
                self.assertRegex(log, rf"delivery helper for {account} refused: ", account)
            # Nothing ran: no command, no file of mda's choosing.
            self.assertFalse(os.path.exists(marker))
            # The request lookup confirms is granted: the parent was not refusing everything.
            self.assertRegex(log, r"hostile mda: granted: result 2\.0\.0 delivered to maildir")
            new = os.path.join(self.home, "Maildir", "new")
            self.assertEqual(len(os.listdir(new)), 1)
            self.assertEqual(os.stat(os.path.join(new, os.listdir(new)[0])).st_uid,
                             self.pw.pw_uid)

    def test_a_flood_of_requests_never_runs_more_than_16_helpers(self):
        command = "sleep 1"
        d = self.daemon(f"{{name: users.example, users: system, command: \"{command}\"}}")
        requests = 100
        self.start_with_hostile_mda(d, {"POSTERN_HOSTILE_FLOOD": str(requests),
                                        "POSTERN_HOSTILE_COMMAND": command})
        with d:
            most = 0

            def count_helpers():
                nonlocal most
                running = 0
                for pid in d.descendants():
                    try:
                        with open(f"/proc/{pid}/comm") as f:
                            running += f.read().strip() == "smtpd-deliver"
                    except OSError:
                        pass
                most = max(most, running)
                return "hostile mda: done" in d.read_log()

            self.assertTrue(wait_for(count_helpers, 60, interval=0.05), d.read_log())
            log = d.read_log()
        refused = log.count("hostile mda: flood: refused: too many deliveries waiting")
        delivered = log.count("hostile mda: flood: result 2.0.0")
        # Beyond 64 waiting (16 of which then run) the parent refuses; the rest are delivered,
        # never more than 16 at once.
        self.assertGreaterEqual(refused, requests - 64 - 16, log)
        self.assertLessEqual(refused, requests - 64, log)
        self.assertEqual(refused + delivered, requests, log)
        self.assertGreater(most, 1)
        self.assertLessEqual(most, 16)

    def test_mda_waits_for_helpers_instead_of_flooding_the_parent(self):
        # 100 recipients whose mail goes to a command: mda keeps 16 requests in flight, so
        # the parent never has to refuse one for lack of room, and all are delivered.
        users = ", ".join(f"r{i}" for i in range(100))
        d = self.daemon(f"{{name: many.example, users: [{users}], "
                        "command: \"cat > /dev/null; sleep 0.2\"}")
        with d.start():
            with smtplib.SMTP("127.0.0.1", d.port) as s:
                s.sendmail("sender@example.com", [f"r{i}@many.example" for i in range(100)],
                           b"Subject: many\r\n\r\nbody\r\n")
            self.assertTrue(wait_for(lambda: d.read_log().count("status=sent") == 100, 60),
                            d.read_log())
            self.assertNotIn("too many deliveries waiting", d.read_log())

    def test_a_command_cannot_take_its_helpers_descriptors(self):
        report = os.path.join(self.home, "report.json")
        d = self.daemon("{name: users.example, users: system, "
                        f"command: \"/usr/bin/python3 {ATTACK} {report}\"}}")
        with d.start():
            with smtplib.SMTP("127.0.0.1", d.port) as s:
                s.sendmail("secret-bcc-sender@example.com",
                           [f"{self.user}@users.example", "postmaster@localhost"],
                           b"Subject: attack\r\n\r\nbody\r\n")
            self.assertTrue(d.wait_log(rf"to=<{self.user}@users\.example>.*status=sent", 10),
                            d.read_log())
            with open(report) as f:
                got = json.load(f)
        self.assertEqual(got["uid"], self.pw.pw_uid)
        self.assertIsNotNone(got["helper"], got)
        # The helper runs as the user (every id, no other group)...
        uid, gid = str(self.pw.pw_uid), str(self.pw.pw_gid)
        self.assertEqual(got["status"], [f"Uid:\t{uid}\t{uid}\t{uid}\t{uid}",
                                         f"Gid:\t{gid}\t{gid}\t{gid}\t{gid}", "Groups:"])
        # ...yet the user's own processes cannot look into it: it is not dumpable.
        self.assertEqual(got["listdir"], "error:EACCES", got)
        spool = os.path.realpath(d.spool)
        for fd in range(65):
            for how in ("readlink", "pidfd_getfd"):
                self.assertFalse(got[how][str(fd)].startswith(spool), (how, fd, got[how]))
            self.assertEqual(got["pidfd_getfd"][str(fd)], "error:EPERM", (fd, got))
            self.assertTrue(got["readlink"][str(fd)].startswith("error:"), (fd, got))


if __name__ == "__main__":
    unittest.main(verbosity=2)
