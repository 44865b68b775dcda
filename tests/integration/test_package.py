"""The Debian package as a packager and an admin meet it: dpkg-buildpackage builds it from a copy
of this checkout, lintian finds no error or warning in it, dpkg installs it, the installed
smtpd checks the installed configuration (smtpd -n), then runs from the installed paths (its
children from the installed libexec directory) with that configuration moved to loopback: it
answers SMTP, delivers a message into a Maildir and stops on SIGTERM. Purging the package
leaves the machine as it was: the same users, directories and /usr/sbin/sendmail.

Needs root and a machine without another MTA package (the package conflicts with
mail-transport-agent, as every MTA does; dpkg then refuses it and the test fails saying so).
An installed postern package is never touched: the test fails instead."""

import grp
import os
import pwd
import re
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
import unittest

from harness import BUILD_DIR, free_port, maildir_files, wait_for

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
# A fixed place inside the build tree, so that ccache finds the same compiler arguments (the
# build path is in Debian's -ffile-prefix-map) from one run to the next.
WORK = os.path.join(os.path.abspath(BUILD_DIR), "package-test")
SMTPD = "/usr/sbin/smtpd"
CONFIG = "/etc/postern/smtpd.yaml"

if os.geteuid() != 0:
    print("installing a package needs root")
    sys.exit(77)


def run(argv, timeout, **kwargs):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)


def machine_state():
    """What installing and purging may touch, to compare before and after."""
    state = {}
    for user in ("_smtpd", "_smtpq"):
        try:
            state["user " + user] = tuple(pwd.getpwnam(user))
        except KeyError:
            state["user " + user] = None
        try:
            state["group " + user] = grp.getgrnam(user).gr_gid
        except KeyError:
            state["group " + user] = None
    for path in ("/usr/sbin/sendmail", "/etc/postern", "/var/spool/postern", "/var/empty",
                 "/var/vmail", "/var/lib/postern", "/run/postern", SMTPD, "/usr/libexec/postern"):
        state[path] = os.path.realpath(path) if os.path.lexists(path) else None
    owner = run(["dpkg-query", "-S", "/usr/sbin/sendmail"], 30)
    state["sendmail package"] = owner.stdout.strip() if owner.returncode == 0 else None
    return state


def source_files():
    """The checkout's files as git sees them (tracked, and new ones not ignored): what a fresh
    clone with this change would hold, without build trees."""
    listed = run(["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others",
                  "--exclude-standard"], 60)
    if listed.returncode != 0:
        raise AssertionError("the package is built from a git checkout: " + listed.stderr)
    return [name for name in listed.stdout.split("\0")
            if name and os.path.isfile(os.path.join(ROOT, name))]


class Package(unittest.TestCase):
    def setUp(self):
        installed = run(["dpkg-query", "-W", "-f", "${Status}", "postern"], 30)
        if installed.returncode == 0 and "installed" in installed.stdout.split():
            self.fail("a postern package is installed on this machine: remove it first, "
                      "this test installs and purges its own")
        self.before = machine_state()
        self.installed = False
        self.daemon = None
        self.tmp = tempfile.mkdtemp(prefix="postern-package-")
        os.chmod(self.tmp, 0o755)

    def tearDown(self):
        if self.daemon and self.daemon.poll() is None:
            self.daemon.kill()
            self.daemon.wait()
        if self.installed:
            run(["dpkg", "--purge", "postern"], 300)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def build(self):
        shutil.rmtree(WORK, ignore_errors=True)
        source = os.path.join(WORK, "postern")
        for name in source_files():
            target = os.path.join(source, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, name), target, follow_symlinks=False)
        # debhelper 13 gives the build a HOME of its own, where ccache would start an empty
        # cache on every run: name the machine's cache instead.
        env = dict(os.environ)
        if shutil.which("ccache") and "CCACHE_DIR" not in env:
            cache_dir = run(["ccache", "-k", "cache_dir"], 30).stdout.strip()
            if cache_dir:
                env["CCACHE_DIR"] = cache_dir
        # What this test checks is the packaging (files, lint, maintainer scripts, the installed
        # daemon), not the optimizer: Debian's noopt (Policy 4.9.1) builds it in less time, and
        # noautodbgsym skips a debug package nobody installs here.
        env["DEB_BUILD_OPTIONS"] = "noopt noautodbgsym"
        started = time.monotonic()
        built = run(["dpkg-buildpackage", "-us", "-uc", "-b", "-j2"], 2400, cwd=source, env=env)
        seconds = time.monotonic() - started
        self.assertEqual(built.returncode, 0,
                         "dpkg-buildpackage failed:\n" + built.stdout[-6000:] + built.stderr[-3000:])
        print(f"DEB_BUILD_OPTIONS=\"noopt noautodbgsym\" dpkg-buildpackage -us -uc -b -j2: {seconds:.0f} s")
        debs = [n for n in os.listdir(WORK) if re.fullmatch(r"postern_[^_]+_[^_]+\.deb", n)]
        self.assertEqual(len(debs), 1, os.listdir(WORK))
        return os.path.join(WORK, debs[0])

    def lint(self, deb):
        started = time.monotonic()
        linted = run(["lintian", "--fail-on", "error,warning", deb], 600)
        print(f"lintian: {time.monotonic() - started:.0f} s")
        self.assertEqual(linted.returncode, 0, "lintian:\n" + linted.stdout + linted.stderr)
        self.assertNotRegex(linted.stdout, r"(?m)^[EW]: ", linted.stdout)

    def install(self, deb):
        self.installed = True  # from here on, tearDown purges whatever dpkg left
        done = run(["dpkg", "-i", deb], 300)
        self.assertEqual(done.returncode, 0, "dpkg -i:\n" + done.stdout + done.stderr)
        files = run(["dpkg", "-L", "postern"], 30).stdout.split("\n")
        for path in ("/usr/sbin/smtpd", "/usr/sbin/smtpctl", "/usr/sbin/sendmail",
                     "/usr/lib/sendmail", "/usr/bin/mailq", "/usr/bin/newaliases",
                     "/usr/libexec/postern/smtpd-smtp",
                     "/usr/libexec/postern/smtpd-deliver", "/etc/postern/smtpd.yaml",
                     "/usr/share/man/man8/smtpd.8.gz", "/usr/share/man/man5/smtpd.yaml.5.gz",
                     "/usr/share/man/man8/smtpctl.8.gz", "/lib/systemd/system/postern.service",
                     "/usr/lib/sysusers.d/postern.conf", "/usr/lib/tmpfiles.d/postern.conf",
                     "/usr/share/doc/postern/examples/smtpd.yaml"):
            self.assertIn(path, files)
        conffiles = run(["dpkg-query", "-W", "-f", "${Conffiles}", "postern"], 30).stdout
        self.assertIn(CONFIG, conffiles)
        # The installed man page names the installed configuration file.
        man = run(["sh", "-c", "zcat /usr/share/man/man8/smtpd.8.gz"], 30).stdout
        self.assertIn(CONFIG, man)
        self.assertNotIn("/usr/local", man)
        # postinst made the users and the directories the configuration names.
        queue_user = pwd.getpwnam("_smtpq")
        pwd.getpwnam("_smtpd")
        spool = os.stat("/var/spool/postern")
        self.assertEqual((spool.st_uid, spool.st_mode & 0o7777), (queue_user.pw_uid, 0o711))
        offline = os.stat("/var/spool/postern/offline")
        self.assertEqual((offline.st_uid, offline.st_mode & 0o7777), (0, 0o1733))
        self.assertTrue(os.path.isdir("/var/empty"))

    def run_daemon(self):
        checked = run([SMTPD, "-n", "-f", CONFIG], 60)
        self.assertEqual((checked.returncode, checked.stdout.strip()), (0, "configuration OK"),
                         checked.stderr)
        # The installed configuration, moved to loopback: a free port, mailboxes and the run
        # directory in a temporary directory, and a resolver where nothing answers (no question
        # leaves the machine). The spool and the empty directory are the installed ones.
        with open(CONFIG) as f:
            text = f.read()
        vmail = os.path.join(self.tmp, "vmail")
        run_dir = os.path.join(self.tmp, "run")
        text, count = re.subn(r"(?m)^    maildir: /var/vmail/%u/Maildir",
                              f"    maildir: {vmail}/%u/Maildir", text)
        self.assertEqual(count, 1, "maildir in " + CONFIG)
        text, count = re.subn(r"(?m)^  socket: /run/postern/smtpd.sock$",
                              f"  socket: {run_dir}/smtpd.sock", text)
        self.assertEqual(count, 1, "control socket in " + CONFIG)
        head, listeners, _ = text.partition("\nlisteners:\n")
        self.assertTrue(listeners, "listeners in " + CONFIG)
        port = free_port()
        config = os.path.join(self.tmp, "smtpd.yaml")
        with open(config, "w") as f:
            f.write(head + f"\nrun_dir: {run_dir}\n"
                    f"dns:\n  resolvers: [\"127.0.0.1@{free_port()}\"]\n  timeout: 1\n"
                    f"listeners:\n  - name: mx\n    role: smtp\n    address: 127.0.0.1:{port}\n")
        log_path = os.path.join(self.tmp, "smtpd.log")
        with open(log_path, "wb") as log:
            # No -x: the children come from the installed libexec directory.
            self.daemon = subprocess.Popen([SMTPD, "-d", "-f", config], stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)

        def log_text():
            with open(log_path, errors="replace") as f:
                return f.read()

        def answers():
            if self.daemon.poll() is not None:
                raise AssertionError("smtpd exited:\n" + log_text())
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=5) as s:
                    code, _ = s.ehlo("client.example")
                    if code != 250:
                        return False
                    s.mail("someone@example.com")
                    code, reply = s.rcpt("postmaster@example.org")
                    self.assertEqual(code, 250, reply)
                    code, reply = s.data(b"Subject: package\r\n\r\ninstalled\r\n")
                    self.assertEqual(code, 250, reply)
                    return True
            except OSError:
                return None

        self.assertTrue(wait_for(answers, 30, interval=0.2), "no SMTP answer:\n" + log_text())
        delivered = wait_for(lambda: maildir_files(vmail, "postmaster"), 30)
        self.assertTrue(delivered, "not delivered:\n" + log_text())
        with open(delivered[0], "rb") as f:
            self.assertIn(b"installed", f.read())
        self.daemon.terminate()
        self.assertEqual(self.daemon.wait(timeout=30), 0, log_text())

    def purge(self):
        done = run(["dpkg", "--purge", "postern"], 300)
        self.installed = False
        self.assertEqual(done.returncode, 0, "dpkg --purge:\n" + done.stdout + done.stderr)
        self.assertEqual(machine_state(), self.before)

    def test_build_lint_install_run_purge(self):
        deb = self.build()
        self.lint(deb)
        self.install(deb)
        self.run_daemon()
        self.purge()


if __name__ == "__main__":
    unittest.main()
