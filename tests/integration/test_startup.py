"""Start-up and reload an admin can trust: smtpd -n checks the files, accounts and
directories a start would use and names file:line:column; a table lookup cannot read at run
time answers 4xx, never 5xx; smtpctl reload says whether the new file was taken (its exit
status too); smtpctl finds the daemon without reading a broken configuration."""

import os
import signal
import smtplib
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import (IS_ROOT, SMTPCTL, SMTPD, Daemon, free_port, make_certificate,  # noqa: E402
                     sha512_hash, wait_for, write_file)

PLAIN_REFUSED = ("refused hash scheme: plaintext passwords are not accepted "
                 "(use bcrypt, sha512-crypt or yescrypt)")
SYSUSERS_HINT = ("(create it, e.g. with systemd-sysusers and Postern's sysusers.d file, "
                 "or useradd --system)")


def write(path, text, mode=0o644):
    return write_file(path, text, mode)


def position(text, needle):
    """(line, column) of needle's first occurrence in text, 1-based as editors count."""
    before = text[:text.index(needle)]
    return before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1


def check(config):
    return subprocess.run([SMTPD, "-n", "-f", config], capture_output=True, text=True,
                          timeout=30)


def with_domains(d, domains, extra=""):
    """The daemon's configuration with its domains line replaced (and extra keys added)."""
    return d.config_text().replace("domains: [test.example, localhost]\n", domains) + extra


class CheckMode(unittest.TestCase):
    def assert_refused(self, r, *errors):
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertNotIn("configuration OK", r.stdout)
        for e in errors:
            self.assertIn(e + "\n", r.stderr)

    def assert_missing_table(self, d, label, domain):
        """domain: the domains list with {} where the table's path goes."""
        path = os.path.join(d.dir, "mistyped")
        text = with_domains(d, "domains:\n" + domain.format(path) + "\n")
        d.write_config(text)
        line, col = position(text, path)
        self.assert_refused(check(d.config), f"{d.config}:{line}:{col}: {label} {path}: "
                                             "No such file or directory")

    def test_mistyped_aliases_path(self):
        with Daemon() as d:
            self.assert_missing_table(d, "aliases", "  - name: test.example\n    aliases: {}")

    def test_missing_users_table(self):
        with Daemon() as d:
            self.assert_missing_table(d, "users table", "  - {{name: test.example, users: {}}}")

    def test_plaintext_credentials(self):
        with Daemon() as d:
            table = write(os.path.join(d.dir, "credentials"),
                          f"alice:{sha512_hash('fine')}\nbob:hunter2-secret!\n", 0o600)
            text = d.config_text() + f"credentials: {table}\n"
            d.write_config(text)
            line, col = position(text, table)
            r = check(d.config)
            self.assert_refused(r, f"{d.config}:{line}:{col}: credentials {table}:2: user 'bob': "
                                   f"{PLAIN_REFUSED}")
            self.assertNotIn("hunter2", r.stdout + r.stderr)

    def test_bad_aliases_and_senders_content_name_both_files(self):
        with Daemon() as d:
            aliases = write(os.path.join(d.dir, "aliases"), "postmaster: alice\nno colon here\n")
            senders = write(os.path.join(d.dir, "senders"), "alice\n")
            text = with_domains(d, f"domains:\n  - {{name: test.example, aliases: {aliases}}}\n",
                                f"senders: {senders}\n")
            d.write_config(text)
            r = check(d.config)
            line, col = position(text, aliases)
            self.assert_refused(r)
            self.assertRegex(r.stderr, rf"{d.config}:{line}:{col}: aliases {aliases}:2: .+")
            line, col = position(text, senders)
            self.assertIn(f"{d.config}:{line}:{col}: senders table {senders}:1: no address for "
                          "'alice' (expected login address...)\n", r.stderr)

    def test_symlinked_table_is_refused_as_lookup_would(self):
        with Daemon() as d:
            real = write(os.path.join(d.dir, "aliases.real"), "postmaster: root\n")
            link = os.path.join(d.dir, "aliases")
            os.symlink(real, link)
            text = with_domains(d, f"domains:\n  - {{name: test.example, aliases: {link}}}\n")
            d.write_config(text)
            line, col = position(text, link)
            self.assert_refused(check(d.config), f"{d.config}:{line}:{col}: aliases {link}: Too "
                                                 "many levels of symbolic links (tables are never "
                                                 "opened through a symbolic link)")

    def test_certificate_and_key_must_match(self):
        with Daemon() as d:
            one = os.path.join(d.dir, "one")
            two = os.path.join(d.dir, "two")
            os.mkdir(one)
            os.mkdir(two)
            cert, _ = make_certificate(one)
            _, key = make_certificate(two)
            text = d.config_text() + f"tls:\n  certificate: {cert}\n  key: {key}\n"
            d.write_config(text)
            line, col = position(text, cert)
            r = check(d.config)
            self.assert_refused(r)
            self.assertIn(f"{d.config}:{line}:{col}: tls: {cert} and {key}: ", r.stderr)
            self.assertIn(": certificate or key: failed to load private key\n", r.stderr)

    @unittest.skipUnless(IS_ROOT, "the daemon's users are looked up when smtpd runs as root")
    def test_missing_users_and_group(self):
        with Daemon() as d:
            text = d.config_text() + ("user: no_such_user_x\nqueue_user: no_such_user_y\n"
                                      "virtual_user: root\n")
            text = text.replace("control:\n", "control:\n  group: no_such_group_z\n")
            d.write_config(text)
            r = check(d.config)
            self.assert_refused(
                r,
                f"{d.config}:{position(text, 'no_such_user_x')[0]}:7: user 'no_such_user_x' "
                f"does not exist {SYSUSERS_HINT}",
                f"{d.config}:{position(text, 'no_such_user_y')[0]}:13: queue_user "
                f"'no_such_user_y' does not exist {SYSUSERS_HINT}",
                f"{d.config}:{position(text, 'virtual_user: root')[0]}:15: virtual_user 'root' "
                "must not have uid or gid 0",
                f"{d.config}:{position(text, 'no_such_group_z')[0]}:10: control group "
                "'no_such_group_z' does not exist")

    def test_unusable_spool(self):
        with Daemon() as d:
            write(d.spool, "not a directory\n")
            line, col = position(d.config_text(), d.spool)
            self.assert_refused(check(d.config),
                                f"{d.config}:{line}:{col}: spool {d.spool} is not a directory")

    def test_every_problem_is_reported_in_file_order(self):
        with Daemon() as d:
            aliases = os.path.join(d.dir, "aliasess")
            credentials = write(os.path.join(d.dir, "credentials"), "bob:plain\n", 0o600)
            text = with_domains(d, f"domains:\n  - {{name: test.example, aliases: {aliases}}}\n",
                                f"credentials: {credentials}\n")
            d.write_config(text)
            r = check(d.config)
            self.assert_refused(r)
            errors = r.stderr.splitlines()
            self.assertEqual(len(errors), 2, r.stderr)
            self.assertTrue(errors[0].startswith(f"{d.config}:{position(text, aliases)[0]}:"))
            self.assertTrue(errors[1].startswith(f"{d.config}:{position(text, credentials)[0]}:"))

    def test_good_files_pass(self):
        with Daemon() as d:
            aliases = write(os.path.join(d.dir, "aliases"), "postmaster: alice\n")
            users = write(os.path.join(d.dir, "users"), "carol\n")
            credentials = write(os.path.join(d.dir, "credentials"),
                                f"alice:{sha512_hash('x')}\n", 0o600)
            d.write_config(with_domains(
                d, f"domains:\n  - {{name: test.example, users: [alice], aliases: {aliases}}}\n"
                   f"  - {{name: table.example, users: {users}}}\n",
                f"credentials: {credentials}\n"))
            r = check(d.config)
            self.assertEqual((r.returncode, r.stdout, r.stderr), (0, "configuration OK\n", ""))

    def test_start_refuses_what_the_check_refuses(self):
        with Daemon() as d:
            typo = os.path.join(d.dir, "aliasess")
            text = with_domains(d, f"domains:\n  - {{name: test.example, aliases: {typo}}}\n")
            d.write_config(text)
            d.start(wait=False)
            self.assertEqual(d.wait_exit(10), 1)
            line, col = position(text, typo)
            self.assertIn(f"{d.config}:{line}:{col}: aliases {typo}: No such file or directory",
                          d.read_log())
            self.assertEqual(d.descendants(), [])
            self.assertFalse(os.path.exists(d.socket))


class TableLostAtRunTime(unittest.TestCase):
    """Files removed after the start, then lookup restarted (a crash): what lookup cannot read
    is answered 4xx until it can, never refused for good."""

    def setUp(self):
        self.d = Daemon()
        self.addCleanup(self.d.__exit__, None, None, None)
        d = self.d
        self.aliases = write(os.path.join(d.dir, "aliases"), "postmaster: alice\n")
        self.users = write(os.path.join(d.dir, "users"), "bob\n")
        self.credentials = write(os.path.join(d.dir, "credentials"),
                                 f"alice:{sha512_hash('wonderland')}\n", 0o600)
        self.senders = write(os.path.join(d.dir, "senders"), "alice shared@test.example\n")
        self.sub_port = free_port()
        d.write_config(with_domains(
            d, f"domains:\n  - {{name: test.example, users: [alice], aliases: {self.aliases}}}\n"
               f"  - {{name: table.example, users: {self.users}}}\n"
               f"credentials: {self.credentials}\nsenders: {self.senders}\n")
            + f'  - address: "127.0.0.1:{self.sub_port}"\n    role: submission\n'
              "    plaintext_auth: true\n")
        d.start()

    def lose(self, *paths):
        """Moves the files away and kills lookup; returns once a new lookup is wired in."""
        for p in paths:
            os.rename(p, p + ".gone")
        old = self.d.status()["lookup"]["pid"]
        os.kill(old, signal.SIGKILL)
        self.assertTrue(wait_for(lambda: (lambda t: self.d.fully_wired(t) and
                                          t["lookup"]["pid"] != old)(self.d.status()), 10),
                        self.d.read_log())
        for p in paths:
            self.assertTrue(self.d.wait_log(rf"table {p}: No such file or directory"),
                            self.d.read_log())

    def rcpt(self, address):
        with smtplib.SMTP("127.0.0.1", self.d.port, timeout=10) as s:
            s.ehlo("client.example")
            s.mail("someone@example.com")
            return s.rcpt(address)

    def mail_as_alice(self, sender):
        with smtplib.SMTP("127.0.0.1", self.sub_port, timeout=10) as s:
            s.ehlo("client.example")
            s.login("alice", "wonderland")
            return s.mail(sender)

    def test_aliases_users_and_credentials(self):
        self.assertEqual(self.rcpt("postmaster@test.example")[0], 250)
        self.assertEqual(self.rcpt("bob@table.example")[0], 250)
        self.assertEqual(self.rcpt("nobody@test.example")[0], 550)
        self.lose(self.aliases, self.users, self.credentials)
        for address in ("postmaster@test.example", "alice@test.example", "nobody@test.example",
                        "bob@table.example", "postmaster@table.example"):
            code, text = self.rcpt(address)
            self.assertEqual((code, text[:5]), (451, b"4.3.0"), address)
        with smtplib.SMTP("127.0.0.1", self.sub_port, timeout=10) as s:
            s.ehlo("client.example")
            with self.assertRaises(smtplib.SMTPAuthenticationError) as refused:
                s.login("alice", "wonderland")
            self.assertEqual(refused.exception.smtp_code, 454)

    def test_senders_table(self):
        self.assertEqual(self.mail_as_alice("shared@test.example")[0], 250)
        self.lose(self.senders)
        self.assertEqual(self.mail_as_alice("alice@test.example")[0], 250)
        code, text = self.mail_as_alice("shared@test.example")
        self.assertEqual((code, text[:5]), (451, b"4.3.0"))
        # Whoever the table never named is still refused for good once it is back.
        os.rename(self.senders + ".gone", self.senders)
        r = self.d.smtpctl("update", "table", self.senders)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.mail_as_alice("shared@test.example")[0], 250)
        self.assertEqual(self.mail_as_alice("other@test.example")[0], 553)


class Reload(unittest.TestCase):
    def test_taken_reload_says_what_changed(self):
        with Daemon().start() as d:
            r = d.smtpctl("reload")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, f"configuration reloaded from {d.config}; nothing changed "
                                       "(files named in it read again)\n")
            port = free_port()
            d.write_config(d.config_text(listeners=d.listeners + [("submission",
                                                                   f"127.0.0.1:{port}")])
                           + "limits:\n  expire: 2d\n")
            r = d.smtpctl("reload")
            self.assertEqual((r.returncode, r.stdout, r.stderr),
                             (0, f"configuration reloaded from {d.config}; changed: limits, "
                                 "listeners\n", ""))
            self.assertTrue(d.wait_log(rf"configuration reloaded from {d.config}; changed: "
                                       r"limits, listeners\b"))
            self.assertIn("reload requested through smtpctl", d.read_log())

    def test_refused_reload_fails_with_the_errors(self):
        with Daemon().start() as d:
            before = d.status()
            good = d.config_text()
            d.write_config(good + "  - address: nowhere\n")
            r = d.smtpctl("reload")
            line = len(good.splitlines()) + 1
            self.assertEqual(r.returncode, 1)
            self.assertEqual(r.stdout, "")
            self.assertEqual(r.stderr,
                             f"smtpctl: {d.config}:{line}:14: bad listener address 'nowhere' "
                             "(expected IP:port or [IPv6]:port)\n"
                             f"reload of {d.config} refused; the running configuration stays in "
                             "force\n")
            after = d.status()
            self.assertTrue(d.fully_wired(after))
            self.assertEqual({k: v["pid"] for k, v in after.items()},
                             {k: v["pid"] for k, v in before.items()})

    def test_reload_naming_a_missing_table_is_refused(self):
        with Daemon() as d:
            aliases = write(os.path.join(d.dir, "aliases"), "postmaster: alice\n")
            domains = "domains:\n  - {name: test.example, users: [alice], aliases: %s}\n"
            d.write_config(with_domains(d, domains % aliases))
            d.start()
            typo = aliases + "x"
            text = with_domains(d, domains % typo)
            d.write_config(text)
            r = d.smtpctl("reload")
            line, col = position(text, typo)
            self.assertEqual(r.returncode, 1)
            self.assertIn(f"{d.config}:{line}:{col}: aliases {typo}: No such file or directory\n",
                          r.stderr)
            # The running aliases still answer.
            with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
                s.ehlo("client.example")
                s.mail("someone@example.com")
                self.assertEqual(s.rcpt("postmaster@test.example")[0], 250)


class SmtpctlWithABrokenConfiguration(unittest.TestCase):
    def test_typo_in_the_file_does_not_hide_the_daemon(self):
        with Daemon().start() as d:
            d.write_config(d.config_text() + "limits:\n  expiry: 5d\nlistenres: []\n")
            self.assertNotEqual(check(d.config).returncode, 0)
            r = subprocess.run([SMTPCTL, "-f", d.config, "show", "status"], capture_output=True,
                               text=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("control", r.stdout)
            r = subprocess.run([SMTPCTL, "-f", d.config, "stop"], capture_output=True,
                               text=True, timeout=30)
            self.assertEqual((r.returncode, r.stdout), (0, "stopping\n"), r.stderr)
            self.assertEqual(d.wait_exit(10), 0)

    def test_relative_socket_is_taken_from_the_file_directory(self):
        with Daemon() as d:
            text = d.config_text().replace(f"  socket: {d.socket}\n", "  socket: run/smtpd.sock\n")
            d.write_config(text + "bogus_key: 1\n")
            r = subprocess.run([SMTPCTL, "-f", d.config, "show", "status"], capture_output=True,
                               text=True, timeout=30)
            self.assertEqual(r.returncode, 3)  # smtpctl(8): 3, no daemon
            self.assertIn(f"smtpd is not running (no daemon on {d.socket})", r.stderr)

    def test_file_that_is_no_yaml_says_to_use_s(self):
        with Daemon() as d:
            d.write_config("control: [\n")
            r = subprocess.run([SMTPCTL, "-f", d.config, "stop"], capture_output=True, text=True,
                               timeout=30)
            self.assertEqual(r.returncode, 3)  # smtpctl(8): 3, unreadable configuration
            self.assertRegex(r.stderr, rf"smtpctl: {d.config}:\d+:\d+: ")
            self.assertTrue(r.stderr.endswith(
                "smtpctl: cannot find the control socket there; name it with -s\n"), r.stderr)

    def test_without_options_the_fixed_socket_is_used(self):
        """No -f, no -s: the default socket, whatever /etc/postern/smtpd.yaml says."""
        if os.path.exists("/run/postern/smtpd.sock"):
            self.skipTest("a daemon owns the default socket on this machine")
        r = subprocess.run([SMTPCTL, "show", "status"], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, 3)  # smtpctl(8): 3, no daemon
        self.assertEqual(r.stderr,
                         "smtpctl: smtpd is not running (no daemon on /run/postern/smtpd.sock)\n")


if __name__ == "__main__":
    unittest.main(verbosity=2)
