"""Mail leaves by MX and by an LMTP route, to real peers. One unbound (dns_server.py) serves a
zone for the test domains; the sending Postern's lookup asks it, and its mta sends to the MX
hosts it names: two receiving Posterns, each bound to port 25 of its own 127/8 address, since
mta reaches MX hosts on port 25 as RFC 5321 says (which is why these tests need root).
Preference order, fallback past a host that refuses connections, null MX, implicit MX and a
domain that does not exist are judged by where the mail lands and by the bounces the sender
receives. Then an `lmtp://` route into a real Dovecot."""

import os
import random
import re
import smtplib
import socket
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from dns_server import DnsServer  # noqa: E402
from harness import Daemon, Dovecot, maildir_files, wait_for  # noqa: E402

ZONE = "mxt.test"
# The local part each test sends to; every receiver knows them all, in every test domain, so
# that mail sent to the wrong host would be delivered there, not refused.
USERS = ["one", "two", "fall", "null", "implicit", "lost"]
DOMAINS = [f"{name}.{ZONE}" for name in ("prefer-one", "prefer-two", "fallback", "nullmx",
                                         "aonly", "gone")]
SENDER = "sender@test.example"


def port_25_address(taken):
    """A 127/8 address other than those taken where this process can bind port 25 (so nothing
    listens there now), picked at random so that concurrent test runs do not meet."""
    if os.geteuid() != 0:
        raise AssertionError("MX hosts are reached on port 25, which only root may bind")
    rng = random.SystemRandom()
    for _ in range(100):
        address = f"127.{rng.randint(64, 254)}.{rng.randint(0, 255)}.{rng.randint(2, 254)}"
        if address in taken:
            continue
        try:
            with socket.socket() as s:
                s.bind((address, 25))
            return address
        except OSError:
            continue
    raise AssertionError("no loopback address with port 25 free")


def zone_data(one, two, dead):
    """A static zone: a name with no data in it is NXDOMAIN (gone.mxt.test)."""
    return f"""
  local-zone: "{ZONE}." static
  local-data: "mx-one.{ZONE}. 300 IN A {one}"
  local-data: "mx-two.{ZONE}. 300 IN A {two}"
  local-data: "mx-dead.{ZONE}. 300 IN A {dead}"
  # The same two hosts with the preferences the other way round.
  local-data: "prefer-one.{ZONE}. 300 IN MX 20 mx-two.{ZONE}."
  local-data: "prefer-one.{ZONE}. 300 IN MX 10 mx-one.{ZONE}."
  local-data: "prefer-two.{ZONE}. 300 IN MX 10 mx-two.{ZONE}."
  local-data: "prefer-two.{ZONE}. 300 IN MX 20 mx-one.{ZONE}."
  # The preferred host refuses connections: nothing listens on port 25 of its address.
  local-data: "fallback.{ZONE}. 300 IN MX 10 mx-dead.{ZONE}."
  local-data: "fallback.{ZONE}. 300 IN MX 20 mx-two.{ZONE}."
  local-data: "nullmx.{ZONE}. 300 IN MX 0 ."
  local-data: "aonly.{ZONE}. 300 IN A {one}"
"""


def with_sender_mailbox(d, mail):
    """d's configuration with SENDER's local Maildir under mail, where the bounces land."""
    return d.config_text().replace(
        "domains: [test.example, localhost]",
        f"domains:\n  - {{name: test.example, users: [sender], maildir: {mail}/%u/Maildir}}")


def send(d, recipient, body):
    """One message from SENDER through d; returns its queue id."""
    with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
        s.ehlo("client.example")
        s.mail(SENDER)
        code, text = s.rcpt(recipient)
        if code != 250:
            raise AssertionError(f"RCPT {recipient}: {code} {text!r}")
        code, text = s.data(body)
        if code != 250:
            raise AssertionError(f"DATA: {code} {text!r}")
        return text.decode().split()[-1]


def read(path):
    with open(path, "rb") as f:
        return f.read()


def bounce_for(mail, recipient):
    """The bounce in SENDER's Maildir that reports on recipient, or None."""
    for path in maildir_files(mail, "sender"):
        data = read(path)
        if f"Final-Recipient: rfc822; {recipient}\r\n".encode() in data:
            return data
    return None


class MxRouting(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.one = port_25_address(set())
        cls.two = port_25_address({cls.one})
        cls.dead = port_25_address({cls.one, cls.two})
        cls.dns = DnsServer(zone_data(cls.one, cls.two, cls.dead)).start()
        cls.daemons = []
        try:
            cls.mx_one, cls.mail_one = cls.receiver(cls.one)
            cls.mx_two, cls.mail_two = cls.receiver(cls.two)
            cls.sender = cls.make_sender()
            cls.bounces = os.path.join(cls.sender.dir, "mail")
            for d in cls.daemons:
                d.start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def make_sender(cls):
        """A Postern that relays the test domains by MX, asking the test's DNS server, with
        SENDER's Maildir under <its dir>/mail."""
        d = Daemon(extra=f"""relay_domains: ["*.{ZONE}"]
dns:
  resolvers: ["{cls.dns.forwarder}"]
  timeout: 1
""")
        cls.daemons.append(d)
        d.write_config(with_sender_mailbox(d, os.path.join(d.dir, "mail")))
        return d

    @classmethod
    def receiver(cls, address):
        """A Postern on address:25 that delivers every USER of every test domain to a Maildir
        under <its dir>/mail/<domain>/<user>."""
        d = Daemon(listeners=[("smtp", f"{address}:25")])
        cls.daemons.append(d)
        mail = os.path.join(d.dir, "mail")
        users = ", ".join(USERS)
        domains = "".join(f"\n  - {{name: {domain}, users: [{users}], "
                          f"maildir: {mail}/%d/%u/Maildir}}" for domain in DOMAINS)
        d.write_config(d.config_text().replace("domains: [test.example, localhost]",
                                               "domains:" + domains))
        return d, mail

    @classmethod
    def tearDownClass(cls):
        for d in cls.daemons:
            d.__exit__(None, None, None)
        cls.dns.stop()

    def logs(self, sender=None):
        return "\n".join(f"--- {name}:\n{d.read_log()}" for name, d in (
            ("sender", sender or self.sender), ("mx-one", self.mx_one), ("mx-two", self.mx_two)))

    def delivered(self, mail, recipient):
        """The files recipient's Maildir under mail holds ([] while none)."""
        user, domain = recipient.split("@")
        return maildir_files(os.path.join(mail, domain), user)

    def wait_delivered(self, mail, recipient):
        """The one file delivered for recipient into the Maildirs under mail."""
        files = wait_for(lambda: self.delivered(mail, recipient), 15)
        self.assertTrue(files, f"nothing delivered to {recipient}\n{self.logs()}")
        self.assertEqual(len(files), 1, files)
        return read(files[0])

    def sent_line(self, queue_id, recipient, sender=None):
        """The sender's one delivery line for recipient: it is sent, in a single attempt."""
        sender = sender or self.sender
        self.assertTrue(wait_for(lambda: queue_id not in sender.queued(), 15), self.logs(sender))
        lines = re.findall(rf"^.*{queue_id}: to=<{re.escape(recipient)}>.*$",
                           sender.read_log(), re.M)
        self.assertEqual(len(lines), 1, self.logs(sender))
        self.assertRegex(lines[0], r"dsn=2\.\d\.\d+, status=sent")
        return lines[0]

    def assert_nowhere(self, recipient):
        """Neither receiver was offered recipient, nor delivered anything to it."""
        for name, d, mail in (("mx-one", self.mx_one, self.mail_one),
                              ("mx-two", self.mx_two, self.mail_two)):
            self.assertEqual(self.delivered(mail, recipient), [], name)
            self.assertNotIn(recipient, d.read_log(), name)

    def test_mail_goes_to_the_most_preferred_mx(self):
        # Both hosts are up: each domain's mail goes to the host it prefers, whichever order
        # the zone lists its records in. A sender of its own, so that no earlier test left a
        # connection in its cache: prefer-two's mail leaves one to mx-two idle, which must
        # not carry prefer-one's mail past mx-one (RFC 5321 5.1: in order of preference).
        sender = self.make_sender().start()
        for recipient, mail, host, address, other in (
                (f"two@prefer-two.{ZONE}", self.mail_two, "mx-two", self.two, self.mx_one),
                (f"one@prefer-one.{ZONE}", self.mail_one, "mx-one", self.one, self.mx_two)):
            queue_id = send(sender, recipient, b"Subject: preferred\r\n\r\nhello\r\n")
            data = self.wait_delivered(mail, recipient)
            self.assertIn(b"id " + queue_id.encode(), data)  # the sender's Received: line
            line = self.sent_line(queue_id, recipient, sender)
            self.assertIn(f"relay={host}.{ZONE}[{address}]:25,", line)
            self.assertNotIn(recipient, other.read_log())
        self.assertEqual(self.delivered(self.mail_one, f"two@prefer-two.{ZONE}"), [])
        self.assertEqual(self.delivered(self.mail_two, f"one@prefer-one.{ZONE}"), [])

    def test_a_refused_connection_falls_back_to_the_next_mx_byte_exact(self):
        recipient = f"fall@fallback.{ZONE}"
        body = (b"Subject: fallback\r\nX-Test: kept\r\n\r\n.leading dot\r\n..two dots\r\n"
                + b"z" * 990 + b"\r\n\r\nlast line\r\n")
        queue_id = send(self.sender, recipient, body)
        data = self.wait_delivered(self.mail_two, recipient)
        self.assertTrue(data.endswith(b"\r\n" + body), data[-400:])
        self.assertIn(b"Return-Path: <" + SENDER.encode() + b">", data)
        self.assertIn(b"id " + queue_id.encode(), data)
        line = self.sent_line(queue_id, recipient)
        self.assertIn(f"relay=mx-two.{ZONE}[{self.two}]:25,", line)
        log = self.sender.read_log()
        # The first host was tried and refused, within the same attempt.
        self.assertRegex(log, rf"event=connect_failed, conn=\d+, domain=\S+, "
                              rf"relay=mx-dead\.mxt\.test\[{re.escape(self.dead)}\]:25, "
                              r"reason=.*, next=yes")
        self.assertNotRegex(log, rf"to=<{re.escape(recipient)}>.*status=deferred")
        self.assertRegex(self.mx_two.read_log(),
                         rf"to=<{re.escape(recipient)}>, relay=local, .*status=sent")
        self.assertEqual(self.delivered(self.mail_one, recipient), [])

    def assert_bounced(self, recipient, status, diagnostic):
        """recipient's message bounced with status, and SENDER got a DSN that says why."""
        queue_id = send(self.sender, recipient, b"Subject: to bounce\r\n\r\nbody\r\n")
        dsn = wait_for(lambda: bounce_for(self.bounces, recipient), 15)
        self.assertTrue(dsn, self.logs())
        self.assertIn(b"Subject: Undelivered Mail Returned to Sender\r\n", dsn)
        self.assertIn(b"Action: failed\r\n", dsn)
        self.assertIn(f"Status: {status}\r\n".encode(), dsn)
        self.assertRegex(dsn, rb"Diagnostic-Code: X-Postern; [^\r\n]*" + diagnostic)
        self.assertNotIn(b"Remote-MTA:", dsn)  # no server was spoken to
        self.assertIn(b"id " + queue_id.encode(), dsn)  # the returned message
        self.assertRegex(self.sender.read_log(),
                         rf"{queue_id}: to=<{re.escape(recipient)}>, relay=none, delay=\d+, delays=\d+\.\d\d/\d+\.\d\d/\d+\.\d\d/\d+\.\d\d, "
                         rf"dsn={re.escape(status)}, status=bounced")
        self.assertTrue(wait_for(lambda: not self.sender.queued(), 10), self.logs())
        self.assert_nowhere(recipient)

    def test_null_mx_bounces_with_5_1_10(self):
        self.assert_bounced(f"null@nullmx.{ZONE}", "5.1.10", rb"null MX")

    def test_a_domain_with_only_an_address_is_its_own_mx(self):
        recipient = f"implicit@aonly.{ZONE}"
        queue_id = send(self.sender, recipient, b"Subject: implicit\r\n\r\nhello\r\n")
        data = self.wait_delivered(self.mail_one, recipient)
        self.assertIn(b"id " + queue_id.encode(), data)
        self.assertIn(f"relay=aonly.{ZONE}[{self.one}]:25,", self.sent_line(queue_id, recipient))
        self.assertEqual(self.delivered(self.mail_two, recipient), [])

    def test_a_domain_that_does_not_exist_bounces_with_5_1_2(self):
        self.assert_bounced(f"lost@gone.{ZONE}", "5.1.2", rb"does not exist")


class LmtpRoute(unittest.TestCase):
    """A route to `lmtp://` hands the message to a real Dovecot, which stores it for its user
    and answers per recipient: a user it does not know bounces, quoting its reply."""

    def test_a_route_delivers_into_dovecot(self):
        with Daemon() as d:
            # Stopped before the daemon's directory, which holds its own, is removed.
            dovecot = Dovecot(d.dir, {"carol": "secret"})
            try:
                self.deliver_into(d, dovecot)
            finally:
                dovecot.stop()

    def deliver_into(self, d, dovecot):
        bounces = os.path.join(d.dir, "mail")
        d.extra = f"""relay_domains: [dovecot.test]
routes:
  - match: dovecot.test
    via: lmtp://127.0.0.1:{dovecot.lmtp_port}
"""
        d.write_config(with_sender_mailbox(d, bounces))
        d.start()
        body = (b"Subject: over lmtp\r\nX-Test: mine\r\n\r\n.leading dot\r\n"
                + b"w" * 900 + b"\r\nend\r\n")
        with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
            s.ehlo("client.example")
            s.mail(SENDER)
            self.assertEqual(s.rcpt("carol@dovecot.test")[0], 250)
            self.assertEqual(s.rcpt("nobody@dovecot.test")[0], 250)
            code, text = s.data(body)
            self.assertEqual(code, 250, text)
            queue_id = text.decode().split()[-1]

        def logs():
            return d.read_log() + "\n--- dovecot:\n" + dovecot.read_log()
        files = wait_for(lambda: maildir_files(dovecot.mail, "carol"), 15)
        self.assertTrue(files, logs())
        self.assertEqual(len(files), 1, files)
        data = read(files[0])
        # Dovecot stores lines with LF and adds its own headers on top (Return-Path,
        # Delivered-To, Received); ours and the body arrive unchanged.
        self.assertTrue(data.endswith(b"\n" + body.replace(b"\r\n", b"\n")), data[-300:])
        self.assertIn(b"Return-Path: <" + SENDER.encode() + b">\n", data)
        self.assertIn(b"id " + queue_id.encode(), data)  # the sender's Received: line
        self.assertTrue(d.wait_log(rf"{queue_id}: to=<carol@dovecot\.test>, "
                                   rf"relay=127\.0\.0\.1\[127\.0\.0\.1\]:"
                                   rf"{dovecot.lmtp_port}, tls=none, delay=\d+, delays=\d+\.\d\d/\d+\.\d\d/\d+\.\d\d/\d+\.\d\d, dsn=2\.\d\.\d+, "
                                   r"status=sent", 10), logs())
        self.assertTrue(wait_for(lambda: re.search(r"lmtp\(carol\).*saved mail to INBOX",
                                                   dovecot.read_log()), 5), logs())
        # Dovecot refused the other recipient at RCPT; the bounce quotes its reply.
        dsn = wait_for(lambda: bounce_for(bounces, "nobody@dovecot.test"), 15)
        self.assertTrue(dsn, logs())
        self.assertIn(b"Status: 5.1.1\r\n", dsn)
        self.assertRegex(dsn, rb"Remote-MTA: dns; 127\.0\.0\.1")
        self.assertRegex(dsn, rb"Diagnostic-Code: smtp; 550 5\.1\.1 ")
        self.assertEqual(maildir_files(dovecot.mail, "nobody"), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
