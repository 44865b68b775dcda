"""A full disk is a temporary failure the client hears about, never a half-written message:
the spool lives on a small tmpfs the test fills up."""

import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import IS_ROOT, Client, Daemon  # noqa: E402



def can_mount_tmpfs():
    import tempfile
    where = tempfile.mkdtemp(prefix="postern-mount-")
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", where],
                        capture_output=True).returncode == 0
    if ok:
        subprocess.run(["umount", where])
    os.rmdir(where)
    return ok


if not IS_ROOT or not can_mount_tmpfs():
    print("these tests mount a small tmpfs, which needs root and permission to mount")
    sys.exit(77)


class DiskFull(unittest.TestCase):
    def setUp(self):
        self.d = Daemon()
        self.mount = os.path.join(self.d.dir, "spoolfs")
        os.makedirs(self.mount)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", self.mount],
                           capture_output=True, text=True)
        if r.returncode != 0:
            self.d.__exit__(None, None, None)
            raise RuntimeError("cannot mount a tmpfs here: " + r.stderr)
        self.d.spool = os.path.join(self.mount, "spool")
        self.d.write_config()

    def tearDown(self):
        self.d.kill()
        subprocess.run(["umount", "-l", self.mount], check=False)
        self.d.__exit__(None, None, None)

    def send(self, body):
        c = Client(self.d.port)
        c.reply()
        c.command("EHLO x")
        c.command("MAIL FROM:<a@example.com>")
        c.command("RCPT TO:<alice@test.example>")
        self.assertEqual(c.command("DATA")[0], 354)
        c.send(body + b".\r\n")
        result = c.reply()
        self.assertEqual(c.command("NOOP")[0], 250)  # the session goes on
        c.close()
        return result

    def test_message_that_does_not_fit_is_refused_temporarily(self):
        self.d.start()
        filler = os.path.join(self.mount, "filler")
        # Leave about 300 KiB free.
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1024", "count=3700"],
                       capture_output=True)
        line = b"x" * 998 + b"\r\n"
        code, text = self.send(b"Subject: big\r\n\r\n" + line * 1000)  # about 1 MB
        self.assertEqual((code, text), (452, "4.3.1 Insufficient system storage"))
        self.assertEqual(self.d.queued(), set())
        # smtp tells the queue to drop it right after answering: gone a moment later.
        self.assertTrue(wait_incoming_empty(self.d), self.d.incoming())
        self.assertTrue(self.d.wait_log(r"msgid=[0-9a-f]{16}, event=write, result=failed, error=\"No space left on device\""))
        # Space again: mail flows again, no restart needed.
        os.unlink(filler)
        code, text = self.send(b"Subject: small\r\n\r\nok\r\n")
        self.assertEqual(code, 250, text)
        self.assertEqual(len(self.d.queued()), 1)
        self.assertEqual(self.d.status()["queue"]["restarts"], 0)
        self.assertEqual(self.d.status()["smtp"]["restarts"], 0)

    def test_full_disk_at_commit_time(self):
        self.d.start()
        filler = os.path.join(self.mount, "filler")
        # Fill to the last block: the data (small) may still fit in a partial page, the
        # envelope may not; whichever write fails, the answer is a 4xx and nothing is queued.
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4096"], capture_output=True)
        code, text = self.send(b"Subject: tiny\r\n\r\nx\r\n")
        self.assertIn(code, (451, 452), text)
        self.assertEqual(self.d.queued(), set())
        self.assertTrue(wait_incoming_empty(self.d))
        os.unlink(filler)
        self.assertEqual(self.send(b"Subject: tiny\r\n\r\nx\r\n")[0], 250)


def wait_incoming_empty(d):
    from harness import wait_for
    return wait_for(lambda: d.incoming() == [], 5)


if __name__ == "__main__":
    unittest.main(verbosity=2)
