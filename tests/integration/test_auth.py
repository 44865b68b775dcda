"""SMTP AUTH (RFC 4954) as clients meet it: offered only under TLS unless a listener allows
plaintext, PLAIN and LOGIN against a crypt(3) table read by lookup, wrong passwords answered
late, relaying allowed once authenticated, submission and smtps closed to anyone else."""

import base64
import ctypes
import ctypes.util
import os
import smtplib
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import (Client, Daemon, free_port, make_certificate, sha512_hash,  # noqa: E402
                     wait_for)


def slow_sha512_hash(password, rounds):
    """sha512-crypt with many rounds (openssl passwd cannot set them), through libcrypt."""
    libcrypt = ctypes.CDLL(ctypes.util.find_library("crypt"))
    libcrypt.crypt.restype = ctypes.c_char_p
    libcrypt.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    return libcrypt.crypt(password.encode(), f"$6$rounds={rounds}$slowsalt$".encode()).decode()


class Auth(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        tmp = tempfile.mkdtemp(prefix="postern-auth-")
        cls.cert, cls.key = make_certificate(tmp)
        cls.table = os.path.join(tmp, "credentials")
        with open(cls.table, "w") as f:
            f.write("# test users\n")
            f.write(f"alice:{sha512_hash('wonderland')}\n")
            f.write(f"bob:{sha512_hash('builder')}\n")
            # About a second to check: lookup hashes on its worker thread meanwhile.
            f.write(f"carol:{slow_sha512_hash('patience', 1000000)}\n")
        os.chmod(cls.table, 0o600)  # root's alone: lookup reads it through the parent's fd
        cls.smtp_port, cls.sub_port = free_port(), free_port()
        cls.smtps_port, cls.plain_port = free_port(), free_port()
        cls.d = Daemon(
            listeners=[("smtp", f"127.0.0.1:{cls.smtp_port}"),
                       ("submission", f"127.0.0.1:{cls.sub_port}"),
                       ("smtps", f"127.0.0.1:{cls.smtps_port}")],
            extra=f"tls:\n  certificate: {cls.cert}\n  key: {cls.key}\n"
                  f"credentials: {cls.table}")
        cls.d.port = cls.smtp_port
        # One more listener that allows AUTH without TLS, written by hand (a listener key).
        text = cls.d.config_text() + (f'  - address: "127.0.0.1:{cls.plain_port}"\n'
                                      f"    role: submission\n    plaintext_auth: true\n")
        cls.d.write_config(text)
        cls.d.start()
        assert wait_for(lambda: "credentials" in cls.d.read_log(), 5)

    @classmethod
    def tearDownClass(cls):
        cls.d.__exit__(None, None, None)

    def ctx(self):
        return ssl.create_default_context(cafile=self.cert)

    def test_no_auth_without_tls(self):
        with smtplib.SMTP("localhost", self.sub_port) as s:
            s.ehlo("x")
            self.assertFalse(s.has_extn("auth"))
            self.assertEqual(s.docmd("AUTH", "PLAIN AGFsaWNlAHdvbmRlcmxhbmQ=")[0], 538)
            self.assertEqual(s.docmd("MAIL", "FROM:<alice@test.example>")[0], 530)

    def test_submission_after_starttls_and_plain(self):
        with smtplib.SMTP("localhost", self.sub_port) as s:
            s.starttls(context=self.ctx())
            s.ehlo("x")
            self.assertIn("PLAIN", s.esmtp_features["auth"].split())
            self.assertIn("LOGIN", s.esmtp_features["auth"].split())
            code, _ = s.login("alice", "wonderland")
            self.assertEqual(code, 235)
            s.ehlo("x")
            self.assertFalse(s.has_extn("auth"))  # not offered twice
            # Authenticated: relaying is allowed.
            refused = s.sendmail("alice@test.example", ["friend@remote.example"],
                                 b"Subject: relay\r\n\r\nhi\r\n")
            self.assertEqual(refused, {})
        newest = max(self.d.queued(), key=lambda i: os.path.getmtime(
            os.path.join(self.d.spool, "queue", i + ".msg")))
        self.assertIn("auth_user 5:alice\n", self.d.envelope_text(newest))
        data = self.d.message_bytes(newest)
        self.assertIn(b"with ESMTPSA id", data)
        self.assertIn(b"(authenticated as alice)", data)

    def test_login_mechanism_by_hand(self):
        c = Client(self.plain_port)
        c.reply()
        c.command("EHLO x")
        self.assertEqual(c.command("AUTH LOGIN"), (334, "VXNlcm5hbWU6"))
        self.assertEqual(c.command(base64.b64encode(b"bob").decode()), (334, "UGFzc3dvcmQ6"))
        self.assertEqual(c.command(base64.b64encode(b"builder").decode()),
                         (235, "2.7.0 Authentication successful"))
        self.assertEqual(c.command("AUTH PLAIN"), (503, "5.5.1 Already authenticated"))
        c.close()

    def test_wrong_password_is_answered_late(self):
        c = Client(self.plain_port)
        c.reply()
        c.command("EHLO x")
        started = time.monotonic()
        self.assertEqual(c.command("AUTH PLAIN " + base64.b64encode(b"\0alice\0wrong").decode()),
                         (535, "5.7.8 Authentication credentials invalid"))
        self.assertGreaterEqual(time.monotonic() - started, 0.9)
        # An unknown user gets exactly the same answer.
        self.assertEqual(c.command("AUTH PLAIN " + base64.b64encode(b"\0nobody\0x").decode())[0],
                         535)
        c.close()

    def test_slow_hash_does_not_hold_up_other_questions(self):
        a = Client(self.plain_port)
        a.reply()
        a.command("EHLO x")
        a.send("AUTH PLAIN " + base64.b64encode(b"\0carol\0patience").decode() + "\r\n")
        # Asked while carol's password is being hashed: a recipient check (smtp -> lookup).
        b = Client(self.smtp_port)
        b.reply()
        b.command("EHLO y")
        b.command("MAIL FROM:<x@example.org>")
        self.assertEqual(b.command("RCPT TO:<anyone@test.example>")[0], 250)
        # Answered while the AUTH is still waiting: lookup's loop was not blocked.
        a.sock.setblocking(False)
        with self.assertRaises(BlockingIOError):
            a.sock.recv(1)
        a.sock.setblocking(True)
        self.assertEqual(a.reply(), (235, "2.7.0 Authentication successful"))
        a.close()
        b.close()

    def test_protocol_errors(self):
        c = Client(self.plain_port)
        c.reply()
        c.command("EHLO x")
        self.assertEqual(c.command("AUTH CRAM-MD5"), (504, "5.5.4 Unrecognized authentication type"))
        self.assertEqual(c.command("AUTH PLAIN"), (334, ""))
        self.assertEqual(c.command("*"), (501, "5.0.0 Authentication cancelled"))
        self.assertEqual(c.command("AUTH PLAIN !!!!"), (501, "5.5.2 Cannot decode response"))
        # Acting for another user (authzid) is not supported.
        self.assertEqual(c.command("AUTH PLAIN " + base64.b64encode(
            b"bob\0alice\0wonderland").decode())[0], 535)
        c.close()

    def test_smtps_with_swaks(self):
        r = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(self.smtps_port),
                            "--tlsc", "--auth", "PLAIN", "--auth-user", "alice",
                            "--auth-password", "wonderland", "--from", "alice@test.example",
                            "--to", "someone@remote.example"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("<~  235 2.7.0 Authentication successful", r.stdout)
        self.assertRegex(r.stdout, r"<~  250 2\.0\.0 Ok: queued as")

    def test_mx_listener_relays_only_for_authenticated_clients(self):
        with smtplib.SMTP("localhost", self.smtp_port) as s:
            s.ehlo("x")
            s.mail("a@example.com")
            self.assertEqual(s.rcpt("x@remote.example")[0], 554)
            s.rset()
            s.starttls(context=self.ctx())
            s.ehlo("x")
            s.mail("a@example.com")
            self.assertEqual(s.docmd("AUTH", "PLAIN " + base64.b64encode(
                b"\0bob\0builder").decode()),
                (503, b"5.5.1 AUTH not permitted during a mail transaction"))
            s.rset()
            s.login("bob", "builder")
            s.mail("bob@test.example")
            self.assertEqual(s.rcpt("x@remote.example")[0], 250)

    def test_password_never_reaches_the_log(self):
        with smtplib.SMTP("localhost", self.sub_port) as s:
            s.starttls(context=self.ctx())
            s.ehlo("x")
            s.login("alice", "wonderland")
        self.assertNotIn("wonderland", self.d.read_log())


class Throttling(unittest.TestCase):
    """Password guessing slows down and then shuts out the guesser's address, never the
    account's owner coming from elsewhere."""

    def plain_auth(self, user, password):
        return "AUTH PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()).decode()

    def test_guesses_from_one_address_do_not_lock_the_owner_out(self):
        tmp = tempfile.mkdtemp(prefix="postern-auth-")
        table = os.path.join(tmp, "credentials")
        with open(table, "w") as f:
            f.write(f"alice:{sha512_hash('wonderland')}\n")
        os.chmod(table, 0o600)
        port = free_port()
        with Daemon(listeners=[("submission", f"127.0.0.1:{port}")],
                    extra=f"credentials: {table}") as d:
            d.write_config(d.config_text().replace(
                "    role: submission", "    role: submission\n    plaintext_auth: true"))
            d.start()
            self.assertTrue(wait_for(lambda: "credentials" in d.read_log(), 5))
            # 12 wrong passwords for alice from 127.0.0.1, sent at once on 12 connections.
            guessers = []
            for _ in range(12):
                c = Client(port)
                c.reply()
                c.command("EHLO attacker")
                c.send(self.plain_auth("alice", "guess") + "\r\n")
                guessers.append(c)
            answers = [c.reply()[0] for c in guessers]
            for c in guessers:
                c.close()
            self.assertEqual(set(answers) - {535, 421}, set(), answers)
            self.assertIn(535, answers)
            # The owner, from another address, with the right password: accepted (held back
            # a few seconds by her name's failures, never refused).
            with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0),
                              timeout=30) as s:
                s.ehlo("owner")
                code, _ = s.login("alice", "wonderland")
                self.assertEqual(code, 235)
            # The attacker's address stays shut out for alice, even with her password.
            c = Client(port)
            c.reply()
            c.command("EHLO attacker")
            self.assertEqual(c.command(self.plain_auth("alice", "wonderland"))[0], 421)
            c.close()
            log = d.read_log()
            self.assertIn("auth: too many failures from [127.0.0.1] (for alice); refused", log)
            # smtp logs the AUTH after answering it: the line may come after the next session.
            self.assertTrue(d.wait_log(r"event=auth, client=\[127\.0\.0\.2\], user=alice, "
                                       r"result=ok"), log)


class BadTable(unittest.TestCase):
    def test_plaintext_table_refuses_the_start(self):
        """A table lookup would refuse stops the start, naming it (smtpd -n says the same);
        AUTH without a table that was lost at run time is test_startup.py's."""
        tmp = tempfile.mkdtemp(prefix="postern-auth-")
        table = os.path.join(tmp, "credentials")
        with open(table, "w") as f:
            f.write("alice:secret\n")
        port = free_port()
        with Daemon(listeners=[("submission", f"127.0.0.1:{port}")],
                    extra=f"credentials: {table}") as d:
            d.start(wait=False)
            self.assertEqual(d.wait_exit(10), 1)
            self.assertRegex(d.read_log(), rf"{d.config}:\d+:\d+: credentials {table}:1: user "
                                           r"'alice': refused hash scheme: plaintext")
            self.assertNotIn("secret", d.read_log())
            self.assertEqual(d.descendants(), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
