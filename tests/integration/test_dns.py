"""lookup against a real DNS server (unbound on a free loopback port, see dns_server.py):
client checks before the greeting from different 127.0.0.x addresses (FCrDNS, a DNSBL with
a code that counts and one that does not, tagging, a zone that never answers), the verified
name in Received, MX routes as mta is told them (smtpctl show mx), a users table reloaded
with smtpctl update table, and lookup's counters (smtpctl show stats)."""

import glob
import os
import re
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from dns_server import DnsServer  # noqa: E402
from harness import Client, Daemon, free_port, wait_for  # noqa: E402


def client_from(source, port):
    """A Client whose connection comes from the loopback address source."""
    c = Client.__new__(Client)
    c.sock = socket.create_connection(("127.0.0.1", port), timeout=10,
                                      source_address=(source, 0))
    c.buffer = b""
    return c


class Dns(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dns = DnsServer().start()
        cls.d = Daemon()
        cls.mail = os.path.join(cls.d.dir, "mail")
        cls.users = os.path.join(cls.d.dir, "users")
        with open(cls.users, "w") as f:
            f.write("alice\n")
        cls.strict, cls.tagging, cls.slow = free_port(), free_port(), free_port()
        text = cls.d.config_text(listeners=[], dns=False)
        text = text.replace(
            "domains: [test.example, localhost]",
            f"domains:\n  - {{name: test.example, users: {cls.users}, "
            f"maildir: {cls.mail}/%u/Maildir}}")
        text = text.replace("listeners:\n", "")
        text += f"""trusted_networks: ["127.0.0.1/32"]
dns:
  resolvers: ["{cls.dns.forwarder}"]
  timeout: 1
listeners:
  - address: "127.0.0.1:{cls.strict}"
    role: smtp
    name: strict
    checks:
      fcrdns: refuse
      dnsbl: refuse
      zones:
        - {{zone: dnsbl.test, codes: [127.0.0.2]}}
  - address: "127.0.0.1:{cls.tagging}"
    role: smtp
    name: tagging
    checks: {{fcrdns: tag, dnsbl: tag, zones: [dnsbl.test]}}
  - address: "127.0.0.1:{cls.slow}"
    role: smtp
    name: slow
    checks: {{fcrdns: tag, dnsbl: refuse, zones: [slow.test]}}
"""
        cls.d.write_config(text)
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        cls.d.__exit__(None, None, None)
        cls.dns.stop()

    def greeting(self, source, port):
        c = client_from(source, port)
        return c, c.reply()

    def send_mail(self, source, port, subject):
        """Sends one message to alice from source; returns the delivered file's text."""
        c, (code, text) = self.greeting(source, port)
        self.assertEqual(code, 220, text)
        for line, want in ((f"EHLO helo.{subject}", 250), ("MAIL FROM:<a@example.org>", 250),
                           ("RCPT TO:<alice@test.example>", 250), ("DATA", 354)):
            code, text = c.command(line)
            self.assertEqual(code, want, f"{line}: {text}")
        code, text = c.command(f"Subject: {subject}\r\n\r\nbody\r\n.")
        self.assertEqual(code, 250, text)
        c.command("QUIT")
        c.close()

        def delivered():
            for path in glob.glob(os.path.join(self.mail, "alice", "Maildir", "new", "*")):
                with open(path, errors="replace") as f:
                    content = f.read()
                if f"Subject: {subject}\n" in content:
                    return content
            return None
        content = wait_for(delivered, 10)
        self.assertIsNotNone(content, f"message {subject} not delivered")
        return content

    # --- client checks ----------------------------------------------------------------------

    def test_forward_confirmed_client_is_greeted_and_named_in_received(self):
        content = self.send_mail("127.0.0.10", self.strict, "verified")
        received = content.split("\n\n", 1)[0]
        self.assertRegex(received, r"Received: from helo\.verified \(good\.client\.test "
                                   r"\[127\.0\.0\.10\]\)")
        self.assertNotIn("X-Postern-Checks", received)

    def test_client_without_forward_confirmed_name_is_refused(self):
        for source in ("127.0.0.11", "127.0.0.12"):  # PTR mapping elsewhere; no PTR
            c, (code, text) = self.greeting(source, self.strict)
            self.assertEqual(code, 554, text)
            self.assertIn("5.7.1", text)
            self.assertIn("forward-confirmed", text)
            # RFC 5321 3.1: nothing but QUIT until the client leaves.
            self.assertEqual(c.command("EHLO x")[0], 503)
            self.assertEqual(c.command("MAIL FROM:<a@example.org>")[0], 503)
            self.assertEqual(c.command("QUIT")[0], 221)
            c.close()

    def test_listed_client_is_refused_naming_the_list(self):
        c, (code, text) = self.greeting("127.0.0.13", self.strict)
        self.assertEqual(code, 554, text)
        self.assertIn("5.7.1", text)
        self.assertIn("dnsbl.test", text)
        c.close()
        self.assertTrue(self.d.wait_log(r"client 127\.0\.0\.13: .*refused"))

    def test_listing_with_a_code_that_does_not_count_is_no_listing(self):
        c, (code, text) = self.greeting("127.0.0.14", self.strict)
        self.assertEqual(code, 220, text)
        c.command("QUIT")
        c.close()

    def test_trusted_client_is_not_checked(self):
        before = self.stats()
        c, (code, text) = self.greeting("127.0.0.1", self.strict)
        self.assertEqual(code, 220, text)
        c.command("QUIT")
        c.close()
        self.assertEqual(self.stats()["dns"], before["dns"])

    def test_tagging_listener_adds_a_header_instead_of_refusing(self):
        listed = self.send_mail("127.0.0.13", self.tagging, "tagged-listed")
        self.assertIn("X-Postern-Checks: dnsbl=1/1 (dnsbl.test=127.0.0.2)\n", listed)
        self.assertIn("(listed.client.test [127.0.0.13])", listed)
        liar = self.send_mail("127.0.0.11", self.tagging, "tagged-liar")
        self.assertIn("X-Postern-Checks: fcrdns=fail\n", liar)
        self.assertIn("(unknown [127.0.0.11])", liar)

    def test_dns_that_never_answers_does_not_refuse(self):
        # The zone's server never answers: our timer (dns timeout 1 s) or libunbound, once it
        # has seen that server time out, gives up; either way the client is greeted.
        c, (code, text) = self.greeting("127.0.0.10", self.slow)
        self.assertEqual(code, 220, text)
        c.command("QUIT")
        c.close()
        self.assertTrue(self.d.wait_log(r"client 127\.0\.0\.10: .*fail-open: slow\.test"))

    # --- MX routes, through mta ---------------------------------------------------------------

    def show_mx(self, domain):
        r = self.d.smtpctl("show", "mx", domain)
        return r.returncode, r.stdout + r.stderr

    def test_mx_hosts_come_by_preference(self):
        code, text = self.show_mx("mx.test")
        self.assertEqual(code, 0, text)
        hosts = re.findall(r"^\s*(\d+)\s+(\S+)\s+(.*)$", text, re.M)
        self.assertEqual([p for p, _, _ in hosts], ["10", "10", "20"], text)
        self.assertEqual({h for _, h, _ in hosts[:2]}, {"a.mx.test", "b.mx.test"})
        self.assertEqual(hosts[2][1], "c.mx.test")
        b = next(a for _, h, a in hosts if h == "b.mx.test")
        self.assertEqual(b.split(), ["2001:db8::2", "127.0.1.2"])  # IPv6 first, then IPv4

    def test_equal_preferences_are_shuffled(self):
        firsts = set()
        for _ in range(30):
            _, text = self.show_mx("mx.test")
            firsts.add(re.findall(r"^\s*10\s+(\S+)", text, re.M)[0])
            if len(firsts) == 2:
                break
        self.assertEqual(firsts, {"a.mx.test", "b.mx.test"})

    def test_domain_with_only_an_address_is_its_own_mx(self):
        code, text = self.show_mx("aonly.test")
        self.assertEqual(code, 0, text)
        self.assertIn("no MX records", text)
        self.assertRegex(text, r"(?m)^\s*0\s+aonly\.test\s+127\.0\.2\.1$")

    def test_null_mx_is_permanent(self):
        code, text = self.show_mx("nullmx.test")
        self.assertNotEqual(code, 0)
        self.assertIn("null MX (permanent)", text)

    def test_cname_chain_is_followed(self):
        code, text = self.show_mx("cname.test")
        self.assertEqual(code, 0, text)
        self.assertIn("c.mx.test", text)

    def test_dns_timeout_is_temporary(self):
        code, text = self.show_mx("slow.test")
        self.assertNotEqual(code, 0)
        self.assertIn("temporary", text)

    # --- tables and counters ------------------------------------------------------------------

    def rcpt(self, address):
        c, _ = self.greeting("127.0.0.1", self.strict)
        c.command("EHLO x")
        c.command("MAIL FROM:<a@example.org>")
        code, _ = c.command(f"RCPT TO:<{address}>")
        c.command("QUIT")
        c.close()
        return code

    def test_table_update_changes_the_verdict_and_a_bad_file_keeps_the_old(self):
        self.assertEqual(self.rcpt("bob@test.example"), 550)
        with open(self.users, "w") as f:
            f.write("alice\nbob\n")
        r = self.d.smtpctl("update", "table", self.users)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(self.rcpt("bob@test.example"), 250)

        with open(self.users, "w") as f:
            f.write("alice\ncarol maildir:\n")  # a delivery without its target: line 2
        r = self.d.smtpctl("update", "table", self.users)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(f"{self.users}:2", r.stdout + r.stderr)
        self.assertEqual(self.rcpt("bob@test.example"), 250)  # the old table is in force
        self.assertEqual(self.rcpt("carol@test.example"), 550)

        r = self.d.smtpctl("update", "table", "/no/such/table")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no table /no/such/table", r.stdout + r.stderr)

    def stats(self):
        r = self.d.smtpctl("show", "stats")
        self.assertEqual(r.returncode, 0, r.stderr)
        asked = re.search(r"dns questions: (\d+) asked", r.stdout)
        checks = re.search(r"client checks: (\d+)", r.stdout)
        self.assertTrue(asked and checks, r.stdout)
        return {"dns": int(asked.group(1)), "checks": int(checks.group(1)), "text": r.stdout}

    def test_stats_count_client_checks_and_dns_questions(self):
        before = self.stats()
        c, _ = self.greeting("127.0.0.14", self.strict)
        c.close()
        after = self.stats()
        self.assertEqual(after["checks"], before["checks"] + 1, after["text"])
        self.assertGreater(after["dns"], before["dns"])
        self.assertIn("recipient checks:", after["text"])
        self.assertIn("ms on average", after["text"])
        # The same client again: its questions are answered from libunbound's cache. (Once
        # no question of an earlier test is in flight, so that none is answered meanwhile.)
        deadline = time.monotonic() + 5
        while " 0 in flight" not in after["text"] and time.monotonic() < deadline:
            time.sleep(0.1)
            after = self.stats()
        cached = re.search(r"\((\d+) from the cache, (\d+) asked of a server", after["text"])
        self.assertTrue(cached, after["text"])
        c, _ = self.greeting("127.0.0.14", self.strict)
        c.close()
        again = self.stats()["text"]
        cached_again = re.search(r"\((\d+) from the cache, (\d+) asked of a server", again)
        self.assertGreater(int(cached_again.group(1)), int(cached.group(1)), again)
        self.assertEqual(int(cached_again.group(2)), int(cached.group(2)), again)


if __name__ == "__main__":
    unittest.main(verbosity=2)
