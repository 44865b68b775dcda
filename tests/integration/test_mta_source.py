"""Source addresses of outgoing mail: the real daemon relays over two routes whose mail must
leave from 127.0.0.2 (the route's own `source`) and 127.0.0.3 (its shaping rule's) to a second
Postern, whose Received: header records the address each message came from; and a source
address this machine does not have (192.0.2.1, TEST-NET-1) defers the mail with the reason,
and the mail stays in the queue."""

import os
import re
import unittest

from harness import Daemon, maildir_files, submit, wait_for


class SourceAddresses(unittest.TestCase):
    USERS = {"alice": "a", "carol": "a", "bob": "b", "dave": "c"}

    def receiver(self):
        d = Daemon()
        self.mail = os.path.join(d.dir, "mail")
        domains = "".join(f"  - {{name: {n}.relay.test, "
                          f"users: [{', '.join(u for u, d in self.USERS.items() if d == n)}], "
                          f"maildir: {self.mail}/%u/Maildir}}\n" for n in "abc")
        d.write_config(d.config_text().replace("domains: [test.example, localhost]",
                                               "domains:\n  - test.example\n" + domains))
        return d

    def sender(self, port):
        via = f"smtp://127.0.0.1:{port}"
        return Daemon(extra=f"""relay_domains: ["*.relay.test"]
relay_source: "::1"
routes:
  - match: a.relay.test
    via: {via}
    source: 127.0.0.2
  - match: b.relay.test
    via: {via}
  - match: c.relay.test
    via: {via}
    source: [192.0.2.1]
shaping:
  - match: [a.relay.test, b.relay.test]
    source: [127.0.0.3, "::1"]
""")

    def came_from(self, user):
        """The client address in the receiver's Received: header of user's one message."""
        files = maildir_files(self.mail, user)
        if len(files) != 1:
            return None
        with open(files[0], "rb") as f:
            match = re.search(rb"^Received: from \S+ \(\S+ \[([0-9a-f.:]+)\]\)", f.read(), re.M)
        return match.group(1).decode() if match else "no Received: header"

    def test_each_route_leaves_from_its_configured_address(self):
        with self.receiver().start() as b, self.sender(b.port).start() as a:
            # One message, two destinations: a.relay.test from its route's own address (which
            # wins over the shaping rule's), b.relay.test from its shaping rule's. relay_source
            # has no IPv4 address, and would not apply anyway.
            queue_id = submit(a.port, ["alice@a.relay.test", "bob@b.relay.test",
                                       "carol@a.relay.test"])
            expected = {"alice": "127.0.0.2", "carol": "127.0.0.2", "bob": "127.0.0.3"}
            self.assertTrue(wait_for(lambda: all(self.came_from(u) for u in expected), 20),
                            a.read_log() + "\n---\n" + b.read_log())
            self.assertEqual({u: self.came_from(u) for u in expected}, expected)
            for source in ("127.0.0.2", "127.0.0.3"):
                self.assertIn(f"event=connect, client=[{source}]", b.read_log())
            self.assertTrue(wait_for(lambda: not a.queued(), 10), a.read_log())
            log = a.read_log()
            for user, source in expected.items():
                rcpt = f"{user}@{self.USERS[user]}.relay.test"
                self.assertRegex(log, rf"{queue_id}: to=<{re.escape(rcpt)}>, "
                                      rf"relay=127\.0\.0\.1\[127\.0\.0\.1\]:{b.port}, "
                                      rf"source={re.escape(source)}, tls=none, delay=\d+, "
                                      rf".*status=sent")

    def test_a_source_this_machine_does_not_have_defers_and_keeps_the_mail(self):
        with self.receiver().start() as b, self.sender(b.port).start() as a:
            queue_id = submit(a.port, ["dave@c.relay.test"])
            reason = "cannot bind source address 192.0.2.1: Cannot assign requested address"
            self.assertTrue(a.wait_log(rf"{queue_id}: to=<dave@c\.relay\.test>, relay=none, "
                                       rf"delay=\d+, .*dsn=4\.4\.1, "
                                       rf"status=deferred \({re.escape(reason)}\)", 20),
                            a.read_log())
            self.assertNotIn("event=connect", b.read_log())
            # Said at start too, as a warning: the address may come up later.
            self.assertIn(f"{reason}; mail that must leave from it is deferred until it can",
                          a.read_log())
            self.assertEqual(a.queued(), {queue_id})
            shown = a.smtpctl("show", "queue", check=True).stdout
            self.assertRegex(shown, rf"dave@c\.relay\.test  pending  1 attempt  next try .*"
                                    rf"\(4\.4\.1 {re.escape(reason)}\)")


if __name__ == "__main__":
    unittest.main(verbosity=2)
