"""The mta's TLS policies against real peers: a second Postern with a certificate from a test CA
made here with openssl (STARTTLS on its smtp listener, TLS from the first byte on its smtps
one), and a scripted server whose STARTTLS handshake is broken. What is shown: verify accepts
the right certificate and refuses one for another name (the mail waits, 4.7.5); smtps:// and
smtp+tls:// routes never go in the clear; opportunistic TLS falls back to plaintext only when
plaintext_fallback allows, saying so; the log line and the receiver's Received: header say
how each message travelled."""

import os
import re
import smtplib
import ssl
import subprocess
import tempfile
import unittest

from harness import Daemon, ThreadedServer, free_port, maildir_files, wait_for
from test_auth import sha512_hash


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(directory):
    key = os.path.join(directory, "ca.key")
    cert = os.path.join(directory, "ca.pem")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=Postern Test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def issue(directory, ca, name, san):
    """A server certificate signed by the test CA for subjectAltName san."""
    ca_cert, ca_key = ca
    key = os.path.join(directory, f"{name}.key")
    csr = os.path.join(directory, f"{name}.csr")
    cert = os.path.join(directory, f"{name}.pem")
    ext = os.path.join(directory, f"{name}.ext")
    with open(ext, "w") as f:
        f.write(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
    openssl("x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
            "-out", cert, "-days", "2", "-extfile", ext)
    os.chmod(key, 0o600)
    return cert, key


def send(d, rcpt, body=b"Subject: tls\r\n\r\nthrough TLS\r\n"):
    with smtplib.SMTP("127.0.0.1", d.port) as s:
        s.ehlo("client.example")
        s.mail("someone@example.com")
        assert s.rcpt(rcpt)[0] == 250
        code, text = s.data(body)
        assert code == 250
        return text.decode().split()[-1]


class ScriptedServer(ThreadedServer):
    """A scripted SMTP server. broken_starttls: it offers STARTTLS, answers 220 to it, waits for
    the ClientHello and answers bytes that are no TLS handshake; without STARTTLS it takes
    mail. implicit_tls (a certificate and key): TLS from the first byte (Python's ssl, that is
    OpenSSL), as an smtps relay. Counts connections and what it was given."""

    def __init__(self, broken_starttls=False, implicit_tls=None):
        self.broken_starttls = broken_starttls
        self.tls = None
        if implicit_tls:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(*implicit_tls)
        self.starttls = 0
        self.messages = []
        self.commands = []
        super().__init__()

    def session(self, conn):
        try:
            if self.tls:
                conn.settimeout(10)
                conn = self.tls.wrap_socket(conn, server_side=True)
            f = conn.makefile("rb")
            conn.sendall(b"220 scripted.test ESMTP\r\n")
            while True:
                line = f.readline()
                if not line:
                    return
                self.commands.append(line)
                verb = line[:4].upper()
                if verb in (b"EHLO", b"LHLO"):
                    starttls = b"250-STARTTLS\r\n" if self.broken_starttls else b""
                    conn.sendall(b"250-scripted.test\r\n" + starttls + b"250 PIPELINING\r\n")
                elif verb == b"STAR" and self.broken_starttls:
                    self.starttls += 1
                    conn.sendall(b"220 go ahead\r\n")
                    conn.recv(4096)  # the ClientHello
                    conn.sendall(b"this is not a TLS ServerHello\r\n" * 4)
                    return
                elif verb in (b"MAIL", b"RCPT", b"RSET"):
                    conn.sendall(b"250 ok\r\n")
                elif verb == b"DATA":
                    conn.sendall(b"354 go\r\n")
                    data = b""
                    while not data.endswith(b"\r\n.\r\n"):
                        chunk = f.readline()
                        if not chunk:
                            return
                        data += chunk
                    self.messages.append(data)
                    conn.sendall(b"250 2.0.0 taken\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"502 no\r\n")
        except (OSError, ssl.SSLError):
            return
        finally:
            conn.close()


class RelayOverTls(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.certdir = tempfile.mkdtemp(prefix="postern-mta-tls-")
        os.chmod(cls.certdir, 0o755)
        cls.ca = make_ca(cls.certdir)
        cls.good = issue(cls.certdir, cls.ca, "good", "IP:127.0.0.1,DNS:mx.relay.test")
        cls.wrong = issue(cls.certdir, cls.ca, "wrong", "DNS:other.test")

    def receiver(self, certificate=None, smtps=False, users=None):
        port = free_port()
        listeners = [("smtp", f"127.0.0.1:{port}")]
        if smtps:
            self.smtps_port = free_port()
            listeners.append(("smtps", f"127.0.0.1:{self.smtps_port}"))
        extra = ""
        if certificate:
            extra = f"tls:\n  certificate: {certificate[0]}\n  key: {certificate[1]}\n"
        if users:
            # A smarthost: its users relay mail from any sender (senders: off, by choice).
            table = os.path.join(self.certdir, f"credentials-{port}")
            with open(table, "w") as f:
                for login, password in users.items():
                    f.write(f"{login}:{sha512_hash(password)}\n")
            os.chmod(table, 0o600)
            extra += f"credentials: {table}\nsenders: off\n"
        d = Daemon(listeners=listeners, extra=extra)
        d.port = port
        self.mail = os.path.join(d.dir, "mail")
        domain = f"  - {{name: relay.test, users: [alice], maildir: {self.mail}/%u/Maildir}}"
        d.write_config(d.config_text().replace("domains: [test.example, localhost]",
                                               "domains:\n  - test.example\n" + domain))
        return d

    def sender(self, via, route_tls=None, relay_tls="", auth=None):
        route = f"  - match: relay.test\n    via: {via}\n"
        if route_tls:
            route += f"    tls: {route_tls}\n"
        if auth:
            path = os.path.join(self.certdir, f"relay-auth-{free_port()}")
            with open(path, "w") as f:
                f.write("# the smarthost's login\n" + auth + "\n")
            os.chmod(path, 0o600)
            route += f"    auth: {path}\n"
        return Daemon(extra=f"relay_domains: [relay.test]\nroutes:\n{route}"
                            f"relay_tls:\n  ca_file: {self.ca[0]}\n{relay_tls}")

    def delivered(self):
        files = maildir_files(self.mail, "alice")
        if len(files) != 1:
            return None
        with open(files[0], "rb") as f:
            return f.read()

    def test_verify_accepts_the_right_certificate(self):
        with self.receiver(self.good).start() as b, \
                self.sender(f"smtp://127.0.0.1:{b.port}", "verify").start() as a:
            queue_id = send(a, "alice@relay.test")
            self.assertTrue(wait_for(lambda: self.delivered(), 20), a.read_log() + b.read_log())
            self.assertTrue(a.wait_log(
                rf"{queue_id}: to=<alice@relay\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:{b.port}, "
                r"tls=\"TLSv1\.[23] \S+ \(verified 127\.0\.0\.1\)\", delay=\d+, delays=\d+\.\d\d/\d+\.\d\d/\d+\.\d\d/\d+\.\d\d, dsn=2\.\d\.\d, "
                r"status=sent"), a.read_log())
            # The receiver saw the message come through TLS.
            self.assertRegex(self.delivered(),
                             rb"^Return-Path: [^\r]*\r\nDelivered-To: [^\r]*\r\nReceived: [^\r]*"
                             rb"\r\n\t\(using TLSv1\.[23] [^\r]*\)\r\n\tby [^\r]* with ESMTPS ")

    def test_verify_refuses_a_certificate_for_another_name(self):
        with self.receiver(self.wrong).start() as b, \
                self.sender(f"smtp://127.0.0.1:{b.port}", "verify").start() as a:
            queue_id = send(a, "alice@relay.test")
            self.assertTrue(a.wait_log(rf"{queue_id}: to=<alice@relay\.test>, relay=none, "
                                       r"delay=\d+, delays=\d+\.\d\d/\d+\.\d\d/\d+\.\d\d/\d+\.\d\d, dsn=4\.7\.5, status=deferred \(TLS handshake "
                                       r"failed: [^)]*name", 20), a.read_log())
            self.assertRegex(a.read_log(), r"event=tls, .*, policy=verify, result=failed, "
                                           r"error=.*, then=deferred")
            self.assertIsNone(self.delivered())
            self.assertTrue(a.queued())  # it waits for a server that proves its name
            # The receiver got no message: the connection ended at the handshake.
            self.assertNotRegex(b.read_log(), r"accepted")

    def test_verify_refuses_a_self_signed_certificate(self):
        # A certificate no CA in the file signed: the chain does not verify.
        selfsigned = tempfile.mkdtemp(prefix="postern-mta-tls-")
        os.chmod(selfsigned, 0o755)
        from harness import make_certificate
        with self.receiver(make_certificate(selfsigned)).start() as b, \
                self.sender(f"smtp://127.0.0.1:{b.port}", "verify").start() as a:
            queue_id = send(a, "alice@relay.test")
            self.assertTrue(a.wait_log(rf"{queue_id}: to=<alice@relay\.test>, relay=none, "
                                       r"delay=\d+, delays=\d+\.\d\d/\d+\.\d\d/\d+\.\d\d/\d+\.\d\d, dsn=4\.7\.5, status=deferred", 20),
                            a.read_log())
            self.assertIsNone(self.delivered())

    def test_smtps_route_is_tls_from_the_first_byte(self):
        server = ScriptedServer(implicit_tls=self.good)
        try:
            with self.sender(f"smtps://127.0.0.1:{server.port}", "verify").start() as a:
                queue_id = send(a, "alice@relay.test")
                self.assertTrue(wait_for(lambda: server.messages, 20), a.read_log())
                self.assertTrue(a.wait_log(rf"{queue_id}: to=<alice@relay\.test>, "
                                           rf"relay=127\.0\.0\.1\[127\.0\.0\.1\]:{server.port}, "
                                           r"tls=\"TLSv1\.[23] \S+ \(verified 127\.0\.0\.1\)\", "),
                                a.read_log())
                self.assertIn(b"through TLS", server.messages[0])
        finally:
            server.close()

    def test_auth_to_a_smarthost_over_smtps(self):
        # A Postern submission service (smtps: TLS first, AUTH required) as the smarthost.
        with self.receiver(self.good, smtps=True, users={"relay": "s3cret:pass"}).start() as b, \
                self.sender(f"smtps://127.0.0.1:{self.smtps_port}", "verify",
                            auth="relay:s3cret:pass").start() as a:
            queue_id = send(a, "alice@relay.test")
            self.assertTrue(wait_for(lambda: self.delivered(), 20), a.read_log() + b.read_log())
            self.assertTrue(a.wait_log(rf"{queue_id}: to=<alice@relay\.test>, relay=\S+, "
                                       r"tls=\"TLSv1\.[23] \S+ \(verified 127\.0\.0\.1\)\", "
                                       r"delay=\d+, delays=\d+\.\d\d/\d+\.\d\d/\d+\.\d\d/\d+\.\d\d, dsn=2\.\d\.\d, status=sent"), a.read_log())
            self.assertRegex(b.read_log(), r"user=relay, result=ok")
            self.assertNotIn("s3cret", a.read_log() + b.read_log())

    def test_auth_refused_by_the_smarthost_waits(self):
        with self.receiver(self.good, smtps=True, users={"relay": "right"}).start() as b, \
                self.sender(f"smtps://127.0.0.1:{self.smtps_port}",
                            auth="relay:wrong").start() as a:
            queue_id = send(a, "alice@relay.test")
            self.assertTrue(a.wait_log(rf"{queue_id}: to=<alice@relay\.test>, relay=none, "
                                       r"delay=\d+, delays=\d+\.\d\d/\d+\.\d\d/\d+\.\d\d/\d+\.\d\d, dsn=4\.7\.8, status=deferred \(535 ", 20),
                            a.read_log())
            self.assertIsNone(self.delivered())
            self.assertTrue(a.queued())

    def test_opportunistic_by_default_uses_starttls_when_offered(self):
        with self.receiver(self.wrong).start() as b, \
                self.sender(f"smtp://127.0.0.1:{b.port}").start() as a:
            queue_id = send(a, "alice@relay.test")
            self.assertTrue(wait_for(lambda: self.delivered(), 20), a.read_log() + b.read_log())
            # Any certificate does for opportunistic TLS: encrypted, not authenticated.
            self.assertTrue(a.wait_log(rf"{queue_id}: to=<alice@relay\.test>, relay=\S+, "
                                       r"tls=\"TLSv1\.[23] \S+ \(not verified\)\", "), a.read_log())
            self.assertIn(b"with ESMTPS", self.delivered())

    def test_tls_required_and_not_offered_waits(self):
        with self.receiver().start() as b, \
                self.sender(f"smtp+tls://127.0.0.1:{b.port}").start() as a:
            queue_id = send(a, "alice@relay.test")
            self.assertTrue(a.wait_log(rf"{queue_id}: to=<alice@relay\.test>, relay=none, "
                                       r"delay=\d+, delays=\d+\.\d\d/\d+\.\d\d/\d+\.\d\d/\d+\.\d\d, dsn=4\.7\.10, status=deferred", 20),
                            a.read_log())
            self.assertIsNone(self.delivered())
            self.assertNotRegex(b.read_log(), r"MAIL|accepted")

    def test_a_server_without_dsn_gets_the_mail_and_the_sender_hears_relayed(self):
        # RFC 3461 4.2: NOTIFY=SUCCESS cannot be passed on to a server that does not offer
        # DSN, so the sender is told the message was relayed, once, by us.
        server = ScriptedServer()
        try:
            a = self.sender(f"smtp://127.0.0.1:{server.port}")
            mail = os.path.join(a.dir, "mail")
            a.write_config(a.config_text().replace(
                "domains: [test.example, localhost]",
                f"domains:\n  - {{name: test.example, users: [sender], "
                f"maildir: {mail}/%u/Maildir}}"))
            with a.start():
                with smtplib.SMTP("127.0.0.1", a.port) as s:
                    s.ehlo("client.example")
                    s.mail("sender@test.example")
                    self.assertEqual(s.rcpt("alice@relay.test", ["NOTIFY=SUCCESS"])[0], 250)
                    self.assertEqual(s.data(b"Subject: dsn\r\n\r\nbody\r\n")[0], 250)
                self.assertTrue(wait_for(lambda: server.messages, 20), a.read_log())
                dsn = wait_for(lambda: maildir_files(mail, "sender"), 20)
                self.assertTrue(dsn, a.read_log())
                with open(dsn[0], "rb") as f:
                    report = f.read()
                self.assertIn(b"Action: relayed\r\n", report)
                self.assertIn(b"Final-Recipient: rfc822; alice@relay.test\r\n", report)
                self.assertRegex(report, rb"Status: 2\.\d\.\d\r\n")
                self.assertIn(b"Remote-MTA: dns; 127.0.0.1\r\n", report)
                self.assertIn(b"X-Postern-TLS: none\r\n", report)
                self.assertIn(b"does not report deliveries", report)
                # The server was not asked for a DSN it does not offer.
                self.assertNotIn(b"NOTIFY", b"".join(server.commands))
        finally:
            server.close()

    def test_broken_starttls_falls_back_to_plaintext_and_says_so(self):
        server = ScriptedServer(broken_starttls=True)
        try:
            with self.sender(f"smtp://127.0.0.1:{server.port}").start() as a:
                queue_id = send(a, "alice@relay.test")
                self.assertTrue(wait_for(lambda: server.messages, 20), a.read_log())
                self.assertTrue(a.wait_log(rf"{queue_id}: to=<alice@relay\.test>, relay=\S+, "
                                           r"tls=none, delay=\d+, delays=\d+\.\d\d/\d+\.\d\d/\d+\.\d\d/\d+\.\d\d, dsn=2\.0\.0, status=sent"),
                                a.read_log())
                self.assertRegex(a.read_log(), r"event=tls, .*, policy=opportunistic, "
                                               r'result=failed, error="TLS handshake failed: .*", '
                                               r"then=plaintext")
                self.assertEqual(server.starttls, 1)
                self.assertEqual(server.connections, 2)
                self.assertIn(b"through TLS", server.messages[0])
        finally:
            server.close()

    def test_broken_starttls_without_fallback_waits(self):
        server = ScriptedServer(broken_starttls=True)
        try:
            with self.sender(f"smtp://127.0.0.1:{server.port}",
                             relay_tls="  plaintext_fallback: false\n").start() as a:
                queue_id = send(a, "alice@relay.test")
                self.assertTrue(a.wait_log(rf"{queue_id}: to=<alice@relay\.test>, relay=none, "
                                           r"delay=\d+, delays=\d+\.\d\d/\d+\.\d\d/\d+\.\d\d/\d+\.\d\d, dsn=4\.7\.5, status=deferred", 20),
                                a.read_log())
                self.assertRegex(a.read_log(), r"event=tls, .*, policy=opportunistic, "
                                               r"result=failed, error=.*, then=deferred")
                self.assertEqual(server.messages, [])
        finally:
            server.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
