"""The relay check (docs/privsep.md): a compromised smtp cannot make the daemon relay. A
hostile program installed as smtpd-smtp starts like the real one, then forges commits that
name remote recipients, for a session lookup never saw and for a real connection that never
authenticated; the queue asks lookup, lookup refuses, and nothing reaches the queue. The
legitimate paths (authenticated submission, local mail) are in test_auth.py and
test_delivery.py; here a local message from the same program is the control."""

import os
import re
import socket
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import BUILD_DIR, Daemon  # noqa: E402

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
        d = Daemon()
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
                              "local": COMMITTED}, log)
            forged = [outcomes[n][0]
                      for n in ("unknown-session", "claims-auth", "no-auth", "other-client")]
            self.assertEqual(log.count("envelope from smtp refused by the relay check"), 4, log)
            self.assertIn("the session did not authenticate", log)
            self.assertIn("the session is unknown to lookup", log)
            self.assertIn("client [10.0.0.1] is not the session's [127.0.0.1]", log)
            self.assertRegex(log, r"relay to remote\.example refused for session 0+1 "
                                  r"\(client \[127\.0\.0\.1\] at 127\.0\.0\.1:\d+\)")
            queue = d.smtpctl("show", "queue", check=True).stdout
            for queue_id in forged:
                self.assertNotIn(queue_id, d.queued())
                self.assertNotIn(queue_id, queue)
                self.assertEqual(self.files_named(d.spool, queue_id), [])
                self.assertNotRegex(log, rf"{queue_id}: from=<spammer@evil\.example>.*queued")
            self.assertNotIn("victim@", queue)


if __name__ == "__main__":
    unittest.main(verbosity=2)
