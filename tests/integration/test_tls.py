"""TLS as clients meet it: STARTTLS (RFC 3207) and implicit TLS (RFC 8314) with a certificate
made at test time, TLS 1.2 as the floor, plaintext pipelined after STARTTLS discarded, and the
trace of TLS in the Received header and the envelope."""

import os
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Client, Daemon, free_port, make_certificate  # noqa: E402


def context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = True
    return ctx


class Tls(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.certdir = tempfile.mkdtemp(prefix="postern-tls-")
        cls.cert, cls.key = make_certificate(cls.certdir)
        cls.smtps_port = free_port()
        port = free_port()
        cls.d = Daemon(listeners=[("smtp", f"127.0.0.1:{port}"),
                                  ("smtps", f"127.0.0.1:{cls.smtps_port}")],
                       extra=f"tls:\n  certificate: {cls.cert}\n  key: {cls.key}")
        cls.d.port = port
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        cls.d.__exit__(None, None, None)

    def test_starttls_then_mail(self):
        with smtplib.SMTP("localhost", self.d.port) as s:
            s.ehlo("tls.client")
            self.assertTrue(s.has_extn("starttls"))
            code, _ = s.starttls(context=context(self.cert))
            self.assertEqual(code, 220)
            s.ehlo("tls.client")
            self.assertFalse(s.has_extn("starttls"))  # never offered again inside TLS
            code, text = s.sendmail("a@example.com", ["alice@test.example"],
                                    b"Subject: tls\r\n\r\nsecret\r\n") or (250, b"")
            self.assertEqual(code, 250)
        queue_id = sorted(self.d.queued(), key=lambda i: os.path.getmtime(
            os.path.join(self.d.spool, "queue", i + ".msg")))[-1]
        data = self.d.message_bytes(queue_id)
        self.assertIn(b"with ESMTPS id " + queue_id.encode(), data)
        self.assertRegex(data.decode(errors="replace"), r"\(using TLSv1\.[23] \S+\)")
        self.assertRegex(self.d.envelope_text(queue_id), r"\ntls \d+:TLSv1\.[23] ")

    def test_implicit_tls(self):
        with smtplib.SMTP_SSL("localhost", self.smtps_port, context=context(self.cert)) as s:
            code, _ = s.ehlo("x")
            self.assertEqual(code, 250)
            self.assertFalse(s.has_extn("starttls"))
            self.assertEqual(s.noop()[0], 250)

    def test_smtps_listener_speaks_no_plaintext(self):
        with socket.create_connection(("127.0.0.1", self.smtps_port), timeout=5) as s:
            s.sendall(b"EHLO x\r\n")
            data = s.recv(100)
            self.assertFalse(data.startswith(b"220"), data)

    def test_plaintext_pipelined_after_starttls_is_discarded(self):
        c = Client(self.d.port)
        c.reply()
        c.command("EHLO x")
        # The MAIL and RCPT sit behind STARTTLS in one packet: an attacker's injection.
        c.send("STARTTLS\r\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<alice@test.example>\r\n")
        self.assertEqual(c.reply(), (220, "2.0.0 Ready to start TLS"))
        tls = context(self.cert).wrap_socket(c.sock, server_hostname="localhost")
        tls.sendall(b"RCPT TO:<alice@test.example>\r\n")
        reply = tls.recv(1000).decode()
        # Nothing from before TLS counts: no HELO, no MAIL.
        self.assertTrue(reply.startswith("503 5.5.1"), reply)
        self.assertRegex(self.d.read_log(), r"event=discard, octets=\d+, reason=\"pipelined after STARTTLS\"")
        tls.close()

    def test_starttls_twice_and_with_argument(self):
        with smtplib.SMTP("localhost", self.d.port) as s:
            s.ehlo("x")
            self.assertEqual(s.docmd("STARTTLS", "now")[0], 501)
            s.starttls(context=context(self.cert))
            s.ehlo("x")
            self.assertEqual(s.docmd("STARTTLS")[0], 503)

    def test_tls_1_1_is_refused(self):
        r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{self.smtps_port}",
                            "-tls1_1", "-CAfile", self.cert],
                           input=b"", capture_output=True, timeout=20)
        self.assertNotEqual(r.returncode, 0)
        r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{self.smtps_port}",
                            "-tls1_2", "-CAfile", self.cert],
                           input=b"QUIT\r\n", capture_output=True, timeout=20)
        self.assertIn(b"Protocol  : TLSv1.2", r.stdout)
        self.assertIn(b"220 test.example ESMTP Postern", r.stdout)

    def swaks(self, *args):
        return subprocess.run(["swaks", "--server", "127.0.0.1", "--to", "alice@test.example",
                               "--from", "a@example.com", *args],
                              capture_output=True, text=True, timeout=30)

    def test_swaks_starttls(self):
        r = self.swaks("--port", str(self.d.port), "--tls")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("=== TLS started with cipher", r.stdout)
        self.assertRegex(r.stdout, r"<~  250 2\.0\.0 Ok: queued as")

    def test_swaks_smtps_needs_authentication(self):
        r = self.swaks("--port", str(self.smtps_port), "--tlsc")
        self.assertIn("=== TLS started with cipher", r.stdout)
        self.assertIn("<~* 530 5.7.0 Authentication required", r.stdout)

    def test_broken_handshake_does_not_hurt_the_server(self):
        with socket.create_connection(("127.0.0.1", self.smtps_port), timeout=5) as s:
            s.sendall(b"\x16\x03\x01\x02\x00" + os.urandom(600))
            try:
                s.recv(100)
            except OSError:
                pass
        with smtplib.SMTP_SSL("localhost", self.smtps_port, context=context(self.cert)) as s:
            self.assertEqual(s.noop()[0], 250)
        self.assertEqual(self.d.status()["smtp"]["restarts"], 0)


class WithoutCertificate(unittest.TestCase):
    def test_no_starttls_offered_and_bad_key_refused_at_start(self):
        with Daemon().start() as d:
            with smtplib.SMTP("127.0.0.1", d.port) as s:
                s.ehlo("x")
                self.assertFalse(s.has_extn("starttls"))
                self.assertEqual(s.docmd("STARTTLS"), (454, b"4.7.0 TLS not available"))
        certdir = tempfile.mkdtemp(prefix="postern-tls-")
        cert, _ = make_certificate(certdir)
        _, other_key = make_certificate(tempfile.mkdtemp(prefix="postern-tls-"))
        with Daemon(extra=f"tls:\n  certificate: {cert}\n  key: {other_key}") as d:
            r = subprocess.run(d.command("-n"), capture_output=True, text=True)
            self.assertEqual(r.returncode, 1)
            self.assertIn("tls:", r.stderr)
            self.assertIn(cert, r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
