"""Accepting mail to relay (docs/privsep.md, "Relay check"), against the real daemon on
loopback: relay_domains are open to any client ("*." covers the names below), a trusted
network relays only when trusted_networks_relay says so, everything else is refused at RCPT,
and an authenticated user sends only as the addresses it owns. Then the attacks: a hostile
program installed as smtpd-smtp starts like the real one and forges commits that name remote
recipients, for a session lookup never saw, for a real connection that never authenticated,
with a relay domain first and another domain behind it, and as another user's address once
logged in; the queue asks lookup, lookup refuses, and nothing reaches the queue. A local
message, a relay-domain message and a message with the user's own address from the same
program are the controls."""

import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import (BUILD_DIR, Daemon, free_port, sha512_hash, wait_for,  # noqa: E402
                     write_file)

HOSTILE = os.path.join(BUILD_DIR, "tests", "integration", "hostile-smtp")
COMMITTED, TEMPORARY, RELAY_DENIED = 0, 1, 3
RCPT_RELAY_DENIED = 2


def hostile_exec_dir(d):
    """A copy of the build's exec dir whose smtpd-smtp is the hostile program."""
    exec_dir = os.path.join(d.dir, "exec")
    os.makedirs(exec_dir)
    for name in os.listdir(BUILD_DIR):
        path = os.path.join(BUILD_DIR, name)
        if name.startswith("smtpd-") and name != "smtpd-smtp" and os.access(path, os.X_OK):
            os.symlink(path, os.path.join(exec_dir, name))
    os.symlink(HOSTILE, os.path.join(exec_dir, "smtpd-smtp"))
    return exec_dir


class HostileSmtp(unittest.TestCase):
    def files_named(self, root, queue_id):
        return [os.path.join(top, n) for top, _, names in os.walk(root) for n in names
                if queue_id in n]

    def test_forged_envelopes_asking_to_relay_are_refused(self):
        tmp = tempfile.mkdtemp(prefix="postern-relay-")
        # The user and password hostile_smtp.cpp logs in with (through lookup, for real).
        credentials = write_file(os.path.join(tmp, "credentials"),
                                 f"dave@virt.test:{sha512_hash('hostile-password')}\n")
        d = Daemon(extra=f"relay_domains: [relay.test]\ncredentials: {credentials}")
        d.exec_dir = hostile_exec_dir(d)
        with d.start():
            self.assertTrue(d.wait_log(r"hostile: waiting for a connection"), d.read_log())
            # The connection lookup will see: from 127.0.0.1, never authenticated.
            with socket.create_connection(("127.0.0.1", d.port), timeout=5):
                self.assertTrue(d.wait_log(r"hostile: done", 10), d.read_log())
            log = d.read_log()
            # lookup judges RCPT from its own record of the session, not smtp's flag.
            self.assertIn(f"hostile: rcpt claims-auth: decision {RCPT_RELAY_DENIED}", log)
            outcomes = {name: (queue_id, int(outcome)) for name, queue_id, outcome in re.findall(
                r"hostile: (\S+): message ([0-9a-f]{16}) outcome (\d)", log)}
            self.assertEqual({name: o for name, (_, o) in outcomes.items()},
                             {"unknown-session": TEMPORARY, "claims-auth": RELAY_DENIED,
                              "no-auth": RELAY_DENIED, "other-client": RELAY_DENIED,
                              "relay-domain": COMMITTED, "relay-domain-first": RELAY_DENIED,
                              "local": COMMITTED, "forged-sender": RELAY_DENIED,
                              "own-sender": COMMITTED}, log)
            self.assertIn("hostile: auth as dave@virt.test: outcome 0", log)  # accepted
            forged = [outcomes[n][0]
                      for n in ("unknown-session", "claims-auth", "no-auth", "other-client",
                                "relay-domain-first", "forged-sender")]
            self.assertEqual(log.count('reason="relay check: '), 6, log)
            self.assertIn("the session did not authenticate", log)
            self.assertIn("the session is unknown to lookup", log)
            self.assertIn("client [10.0.0.1] is not the session's [127.0.0.1]", log)
            self.assertIn("no relaying to [192.0.2.1] for this session", log)
            # Every remote domain is asked about, not only the first.
            self.assertIn("no relaying to remote.example for this session", log)
            self.assertIn("user dave@virt.test does not own <alice@example.test>", log)
            for control in ("relay-domain", "local", "own-sender"):
                self.assertIn(outcomes[control][0], d.queued())
            self.assertRegex(log, r"relay to remote\.example refused for session 0+1 "
                                  r"\(client \[127\.0\.0\.1\] at 127\.0\.0\.1:\d+\)")
            queue = d.smtpctl("show", "queue", check=True).stdout
            for queue_id in forged:
                self.assertNotIn(queue_id, d.queued())
                self.assertNotIn(queue_id, queue)
                self.assertEqual(self.files_named(d.spool, queue_id), [])
                self.assertNotRegex(log, rf"{queue_id}: from=<spammer@evil\.example>.*queued")
            self.assertNotIn("victim@", queue)
            self.assertIn("friend@relay.test", queue)
            self.assertIn("friend@remote.example", queue)


def send(port, sender, recipients, source=None, login=None):
    """One message over SMTP; returns (MAIL reply code, {recipient: RCPT reply code}, DATA
    reply code or None)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10,
                      source_address=(source, 0) if source else None) as s:
        s.ehlo("client.test")
        if login:
            s.login(*login)
        code, _ = s.mail(sender)
        if code != 250:
            return code, {}, None
        rcpts = {r: s.rcpt(r)[0] for r in recipients}
        if not any(c == 250 for c in rcpts.values()):
            return code, rcpts, None
        data, _ = s.data(b"Subject: relay test\r\n\r\nhello\r\n")
        return code, rcpts, data


class RelayPolicy(unittest.TestCase):
    """The real daemon's answers to clients that ask it to relay."""

    def test_relay_domains_are_open_to_anyone_and_nothing_else_is(self):
        # 127.0.0.1 is not trusted here: a stranger's address.
        extra = 'trusted_networks: []\nrelay_domains: [relay.test, "*.sub.relay.test"]'
        with Daemon(extra=extra) as d:
            d.start()
            code, rcpts, data = send(d.port, "someone@elsewhere.example",
                                     ["a@relay.test", "b@x.sub.relay.test", "c@y.x.sub.relay.test",
                                      "d@sub.relay.test", "e@remote.example", "f@relay.test.evil",
                                      "g@[192.0.2.1]", "postmaster@test.example"])
            self.assertEqual(code, 250)
            self.assertEqual(rcpts, {"a@relay.test": 250, "b@x.sub.relay.test": 250,
                                     "c@y.x.sub.relay.test": 250, "d@sub.relay.test": 554,
                                     "e@remote.example": 554, "f@relay.test.evil": 554,
                                     "g@[192.0.2.1]": 554, "postmaster@test.example": 250})
            self.assertEqual(data, 250)
            [queue_id] = d.queued()
            envelope = d.envelope_text(queue_id)
            for accepted in ("a@relay.test", "b@x.sub.relay.test", "c@y.x.sub.relay.test"):
                self.assertIn(accepted, envelope)
            self.assertNotIn("remote.example", envelope)
            self.assertRegex(d.read_log(), r'event=reject, client=\[127\.0\.0\.1\], command="(?i:rcpt) '
                                          r'TO:<e@remote\.example>[^"]*", reply="554 5\.7\.1 Relay access denied"')

    def test_a_trusted_network_relays_only_when_allowed(self):
        with Daemon(extra="trusted_networks: [127.0.0.2/32]") as d:
            d.start()
            # Trusted, but not allowed to relay: the default.
            self.assertEqual(send(d.port, "a@lan.test", ["x@remote.example"],
                                  source="127.0.0.2")[1], {"x@remote.example": 554})
            d.extra += "\ntrusted_networks_relay: true"
            d.write_config()
            d.signal(signal.SIGHUP)
            self.assertTrue(d.wait_log(r"configuration reloaded", 10), d.read_log())
            # lookup takes the new configuration a moment after the parent logs it.
            self.assertTrue(wait_for(lambda: send(d.port, "a@lan.test", ["x@remote.example"],
                                                  source="127.0.0.2")[2] == 250, 5), d.read_log())
            # The permission is the network's: another loopback address is a stranger.
            self.assertEqual(send(d.port, "a@lan.test", ["x@remote.example"],
                                  source="127.0.0.1")[1], {"x@remote.example": 554})
            self.assertEqual(len(d.queued()), 1)

    def test_an_authenticated_user_sends_only_as_its_own_addresses(self):
        tmp = tempfile.mkdtemp(prefix="postern-relay-")
        credentials = write_file(os.path.join(tmp, "credentials"),
                                 f"dave@virt.test:{sha512_hash('secret')}\n"
                                 f"alice:{sha512_hash('wonderland')}\n")
        senders = write_file(os.path.join(tmp, "senders"),
                             "# login  addresses it may use besides its own\n"
                             "dave@virt.test  sales@virt.test, @team.test\n")
        sub_port = free_port()
        d = Daemon(listeners=[("submission", f"127.0.0.1:{sub_port}")],
                   extra=f"credentials: {credentials}")
        # Local domains example.test and virt.test; AUTH without TLS (a listener key).
        text = d.config_text().replace("domains: [test.example, localhost]",
                                       "domains: [example.test, virt.test]")
        text += "    plaintext_auth: true\n"
        d.write_config(text)
        with d:
            d.start()
            dave = ("dave@virt.test", "secret")
            remote = ["friend@remote.example"]
            # Without a senders table: himself only, never alice.
            self.assertEqual(send(sub_port, "alice@example.test", remote, login=dave)[0], 553)
            self.assertEqual(send(sub_port, "dave@virt.test", remote, login=dave),
                             (250, {"friend@remote.example": 250}, 250))
            self.assertEqual(send(sub_port, "sales@virt.test", remote, login=dave)[0], 553)
            # A bare login sends as itself at the local domains.
            alice = ("alice", "wonderland")
            self.assertEqual(send(sub_port, "alice@example.test", remote, login=alice)[0], 250)
            self.assertEqual(send(sub_port, "dave@virt.test", remote, login=alice)[0], 553)
            with smtplib.SMTP("127.0.0.1", sub_port, timeout=10) as s:
                s.ehlo("client.test")
                s.login(*dave)
                self.assertEqual(s.mail("alice@example.test"), (
                    553, b"5.7.1 <alice@example.test>: Sender address rejected: "
                         b"not owned by user dave@virt.test"))
                self.assertEqual(s.mail("")[0], 250)  # the null sender
            # The table grants more, after a reload.
            d.write_config(text.replace("listeners:", f"senders: {senders}\nlisteners:", 1))
            d.signal(signal.SIGHUP)
            self.assertTrue(d.wait_log(rf"event=table, table={re.escape(senders)}, kind=senders, result=loaded, entries=\d+", 10), d.read_log())
            self.assertEqual(send(sub_port, "sales@virt.test", remote, login=dave)[0], 250)
            self.assertEqual(send(sub_port, "anyone@team.test", remote, login=dave)[0], 250)
            self.assertEqual(send(sub_port, "alice@example.test", remote, login=dave)[0], 553)
            log = d.read_log()
            self.assertRegex(log, r'event=reject, client=\[127\.0\.0\.1\], auth=dave@virt\.test, '
                                 r'command="(?i:mail) FROM:<alice@example\.test>[^"]*", '
                                 r'reply="553 5\.7\.1 <alice@example\.test>: Sender address rejected: '
                                 r'not owned by user dave@virt\.test"')


if __name__ == "__main__":
    unittest.main(verbosity=2)
