"""Privilege separation as seen from /proc: as root every child runs as its system user,
chrooted where DESIGN.md says, with no capability, no_new_privs and a seccomp filter;
missing users are named; an ordinary user runs the same tree without chroot and is told so
once."""

import grp
import os
import pwd
import stat
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import CHILDREN, IS_ROOT, Daemon, proc_status  # noqa: E402

if not IS_ROOT:
    print("these checks need root (CI runs as root)")
    sys.exit(77)

ZERO_CAPS = "0000000000000000"


class AsRoot(unittest.TestCase):
    def test_children_drop_everything(self):
        smtpd_user = pwd.getpwnam("_smtpd")
        queue_user = pwd.getpwnam("_smtpq")
        with Daemon().start() as d:
            table = d.status()
            jail = {"smtp": d.empty, "mta": d.empty, "control": d.empty, "queue": d.spool,
                    "mda": "/", "lookup": "/"}
            for role in CHILDREN:
                pid = table[role]["pid"]
                st = proc_status(pid)
                user = queue_user if role == "queue" else smtpd_user
                self.assertEqual(st["Uid"].split(), [str(user.pw_uid)] * 4, role)
                self.assertEqual(st["Gid"].split(), [str(user.pw_gid)] * 4, role)
                self.assertNotEqual(user.pw_uid, 0)
                self.assertEqual(st["Groups"], "", role)
                for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
                    self.assertEqual(st[caps], ZERO_CAPS, f"{role} {caps}")
                self.assertEqual(st["NoNewPrivs"], "1", role)
                self.assertEqual(st["Seccomp"], "2", f"{role} has no seccomp filter")
                self.assertEqual(os.readlink(f"/proc/{pid}/root"), os.path.realpath(jail[role]),
                                 role)
            # The parent stays root: it alone binds, spawns and supervises.
            self.assertEqual(proc_status(d.proc.pid)["Uid"].split()[0], "0")
            self.assertNotIn("without root", d.read_log())

    def test_spool_and_jail_ownership(self):
        with Daemon().start() as d:
            st = os.stat(d.spool)
            self.assertEqual(st.st_uid, pwd.getpwnam("_smtpq").pw_uid)
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o711)
            st = os.stat(os.path.join(d.spool, "offline"))
            self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (0, 0o1733))
            st = os.stat(d.empty)
            self.assertEqual(st.st_uid, 0)
            self.assertEqual(st.st_mode & 0o022, 0)

    def assert_refuses_to_start(self, d, message):
        d.start(wait=False)
        self.assertEqual(d.wait_exit(5), 1)
        self.assertIn(message, d.read_log())

    def test_writable_jail_is_refused(self):
        with Daemon() as d:
            os.makedirs(d.empty)
            os.chmod(d.empty, 0o777)
            self.assert_refuses_to_start(d, f"empty_dir {d.empty} must be a directory owned by "
                                            "root and writable by no one else")

    def test_existing_directory_is_not_taken_over_as_the_spool(self):
        with Daemon() as d:
            # A mistake such as "spool: /var/mail": someone else's directory.
            os.makedirs(d.spool)
            os.chmod(d.spool, 0o2775)
            self.assert_refuses_to_start(
                d, f"spool {d.spool} exists and belongs to uid 0, not to the queue user")
            st = os.stat(d.spool)
            self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (0, 0o2775))

    def test_missing_system_users_are_named(self):
        with Daemon(extra="user: _postern_nosuch\nqueue_user: _postern_nosuchq") as d:
            d.start(wait=False)
            self.assertEqual(d.wait_exit(5), 1)
            lines = d.config_text().splitlines()
            for key, name in (("user", "_postern_nosuch"), ("queue_user", "_postern_nosuchq")):
                line = lines.index(f"{key}: {name}") + 1
                self.assertIn(f"{d.config}:{line}:{len(key) + 3}: {key} '{name}' does not exist "
                              "(create it", d.read_log())
            self.assertEqual(d.descendants(), [])

    def test_control_group_may_use_the_socket(self):
        group = grp.getgrnam("mail")
        with Daemon() as d:
            d.write_config(d.config_text().replace(
                f"  socket: {d.socket}", f"  socket: {d.socket}\n  group: mail"))
            d.start()
            st = os.stat(d.socket)
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)
            self.assertEqual((st.st_uid, st.st_gid), (0, group.gr_gid))


class PidFile(unittest.TestCase):
    """The parent's pid file is written as root: a local user who could plant a link there
    would make root truncate and write any file. It lives in a root-owned run directory and
    is written only when it is root's own regular file with one link."""

    def victim(self, d):
        path = os.path.join(d.dir, "victim")
        with open(path, "w") as f:
            f.write("precious\n")
        return path

    def assert_refused_and_untouched(self, d, victim, message):
        d.start(wait=False)
        self.assertEqual(d.wait_exit(5), 1, d.read_log())
        self.assertIn(message, d.read_log())
        with open(victim) as f:
            self.assertEqual(f.read(), "precious\n")
        self.assertEqual(d.descendants(), [])

    def test_pid_file_in_a_fresh_root_owned_run_dir(self):
        with Daemon().start() as d:
            st = os.lstat(d.run_dir)
            self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (0, 0o755))
            st = os.lstat(d.pid_file)
            self.assertTrue(stat.S_ISREG(st.st_mode))
            self.assertEqual((st.st_uid, st.st_nlink), (0, 1))
            with open(d.pid_file) as f:
                self.assertEqual(int(f.read()), d.proc.pid)
            self.assertFalse(os.path.exists(os.path.join(d.spool, "smtpd.pid")))

    def test_symlink_planted_at_the_pid_file_is_not_followed(self):
        with Daemon() as d:
            victim = self.victim(d)
            os.makedirs(d.run_dir, mode=0o755)
            os.symlink(victim, d.pid_file)
            self.assert_refused_and_untouched(d, victim, f"cannot open pid file {d.pid_file}")

    def test_hard_link_planted_at_the_pid_file_is_not_written(self):
        with Daemon() as d:
            victim = self.victim(d)
            os.makedirs(d.run_dir, mode=0o755)
            os.link(victim, d.pid_file)
            self.assert_refused_and_untouched(
                d, victim, f"pid file {d.pid_file} is not a regular file of this user with one "
                           "link; refusing to write it")

    def test_run_dir_others_may_write_is_refused(self):
        with Daemon() as d:
            victim = self.victim(d)
            os.makedirs(d.run_dir)
            os.chmod(d.run_dir, 0o1777)
            self.assert_refused_and_untouched(
                d, victim, f"run_dir {d.run_dir} must be a directory owned by root and writable "
                           "by no one else")
            nobody = pwd.getpwnam("nobody")
            os.chmod(d.run_dir, 0o755)
            os.chown(d.run_dir, nobody.pw_uid, nobody.pw_gid)
            self.assert_refused_and_untouched(
                d, victim, f"run_dir {d.run_dir} must be a directory owned by root")
            self.assertEqual(d.read_log().count(f"run_dir {d.run_dir} must be"), 2)


class AsOrdinaryUser(unittest.TestCase):
    def test_same_tree_without_chroot_or_user_switch(self):
        nobody = pwd.getpwnam("nobody")
        with Daemon(run_as="nobody") as d:
            os.chown(d.dir, nobody.pw_uid, nobody.pw_gid)
            os.chown(d.config, nobody.pw_uid, nobody.pw_gid)
            d.start()
            table = d.status()
            self.assertEqual(proc_status(d.proc.pid)["Uid"].split()[0], str(nobody.pw_uid))
            for role in CHILDREN:
                pid = table[role]["pid"]
                st = proc_status(pid)
                self.assertEqual(st["Uid"].split()[0], str(nobody.pw_uid), role)
                self.assertEqual(os.readlink(f"/proc/{pid}/root"), "/", role)
                self.assertEqual(st["NoNewPrivs"], "1", role)
                self.assertEqual(st["Seccomp"], "2", role)
            # Without root the pid file is the user's, in the run directory the config names.
            self.assertEqual(os.lstat(d.pid_file).st_uid, nobody.pw_uid)
            log = d.read_log()
            self.assertEqual(log.count("without root"), 1, log)
            self.assertIn(f"running as uid {nobody.pw_uid} without root: children keep this user "
                          "and are not chrooted", log)


if __name__ == "__main__":
    unittest.main(verbosity=2)
