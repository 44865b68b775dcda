"""Mail leaves: a message for a relay domain, accepted by one Postern, goes out through its mta
over a `routes:` entry to a second Postern, which delivers it to a Maildir. Both are the real
daemon on loopback; the first one's questions to DNS go nowhere (harness.config_text)."""

import os
import re
import unittest

from harness import Daemon, free_port, maildir_files, submit, wait_for


class RelayToASecondPostern(unittest.TestCase):
    def receiver(self):
        d = Daemon()
        self.mail = os.path.join(d.dir, "mail")
        domain = f"  - {{name: relay.test, users: [alice, bob], maildir: {self.mail}/%u/Maildir}}"
        d.write_config(d.config_text().replace("domains: [test.example, localhost]",
                                               "domains:\n  - test.example\n" + domain))
        return d

    def sender(self, receiver_port):
        self.dead = free_port()
        return Daemon(extra=f"""relay_domains: [relay.test, "*.relay.test"]
routes:
  - match: [relay.test, "*.relay.test"]
    via: [smtp://127.0.0.1:{self.dead}, smtp://127.0.0.1:{receiver_port}]
""")

    def send(self, d, rcpts, body):
        return submit(d.port, rcpts, body)

    def test_relayed_through_a_route_with_failover_byte_exact(self):
        with self.receiver().start() as b, self.sender(b.port).start() as a:
            body = b"Subject: out\r\n\r\nline\r\n.dot\r\n" + b"y" * 900 + b"\r\n"
            queue_id = self.send(a, ["alice@relay.test", "bob@relay.test"], body)
            # The first server of the route refuses connections: the second one takes both
            # recipients, and the sender's queue lets the message go.
            self.assertTrue(wait_for(lambda: len(maildir_files(self.mail, "alice")) == 1 and
                                     len(maildir_files(self.mail, "bob")) == 1, 20),
                            a.read_log() + "\n---\n" + b.read_log())
            self.assertTrue(wait_for(lambda: not a.queued(), 10), a.read_log())
            with open(maildir_files(self.mail, "alice")[0], "rb") as f:
                data = f.read()
            self.assertTrue(data.endswith(b"\r\n" + body), data[-300:])
            # Two Received: lines: the receiver's on top, then the one the sender wrote.
            received = re.findall(rb"^Received: .*?(?=^\S)", data, re.M | re.S)
            self.assertEqual(len(received), 2, data[:600])
            self.assertIn(b"id " + queue_id.encode(), received[1])
            self.assertIn(b"Return-Path: <someone@example.com>", data)
            log = a.read_log()
            for rcpt in ("alice@relay.test", "bob@relay.test"):
                self.assertRegex(log, rf"{queue_id}: to=<{re.escape(rcpt)}>, "
                                      rf"relay=127\.0\.0\.1\[127\.0\.0\.1\]:{b.port}, "
                                      rf"tls=none, delay=\d+, delays=\d+\.\d\d/\d+\.\d\d/\d+\.\d\d/\d+\.\d\d, dsn=2\.\d\.\d, status=sent")
            # One transaction carried both recipients: the receiver queued them as one message.
            ids = set()
            for user in ("alice", "bob"):
                with open(maildir_files(self.mail, user)[0], "rb") as f:
                    ids.add(re.search(rb"^Received: .*?id ([0-9a-f]{16})", f.read(),
                                      re.M | re.S).group(1))
            self.assertEqual(len(ids), 1, ids)
            # What the mta knows, as an admin asks: the route, the first server down, the
            # second one that took the message.
            routes = a.smtpctl("show", "routes", check=True).stdout
            self.assertEqual(routes,
                             f"route 0: relay.test, *.relay.test -> smtp://127.0.0.1:{self.dead} "
                             f"(tls opportunistic), smtp://127.0.0.1:{b.port} (tls opportunistic)\n"
                             "other remote mail: by MX, tls opportunistic\n")
            hosts = a.smtpctl("show", "hosts", check=True).stdout
            self.assertRegex(hosts, rf"127\.0\.0\.1\[127\.0\.0\.1\]:{self.dead}: 0 connections "
                                    rf"\(0 ready, 0 idle\), 0 messages; down for \d+ s more after "
                                    rf"1 failures: cannot connect to 127\.0\.0\.1:{self.dead}")
            self.assertRegex(hosts, rf"127\.0\.0\.1\[127\.0\.0\.1\]:{b.port}: \d connections "
                                    rf"\(\d ready, \d idle\), 1 messages\n")

    def test_a_refusal_bounces_to_the_sender_quoting_the_server(self):
        with self.receiver().start() as b, self.sender(b.port).start() as a:
            self.send(a, ["nobody@relay.test"], b"Subject: x\r\n\r\nx\r\n")
            # The receiver refuses the unknown user at RCPT (550 5.1.1): the sender's queue
            # bounces to someone@example.com, whose domain DNS cannot find (so the bounce
            # waits in the queue), and the bounce quotes the receiver's reply.
            def bounce():
                for i in a.queued():
                    text = a.envelope_text(i)
                    if "sender 0:\n" in text:
                        return a.message_bytes(i)
                return None
            data = wait_for(bounce, 20)
            self.assertTrue(data, a.read_log())
            self.assertIn(b"Diagnostic-Code: smtp; 550 5.1.1", data)
            self.assertRegex(data, rb"Remote-MTA: dns; 127\.0\.0\.1")
            self.assertIn(b"X-Postern-TLS: none", data)
            self.assertRegex(a.read_log(), r"to=<nobody@relay\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]"
                                           r":\d+, tls=none, delay=\d+, delays=\d+\.\d\d/\d+\.\d\d/\d+\.\d\d/\d+\.\d\d, dsn=5\.1\.1, status=bounced")


if __name__ == "__main__":
    unittest.main(verbosity=2)
