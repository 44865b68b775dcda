"""A client that pipelines commands and never reads the replies (the attack of issue 15:
40 MB of HELP grew smtp to 600 MB): smtp stops reading that client once its replies back up,
so the process stays small, other sessions are served meanwhile, and the stalled session picks
up where it stopped as soon as the client reads. In plain text and inside TLS."""

import os
import socket
import ssl
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import (Client, Daemon, make_certificate, proc_status, quarantine_bounded_env,  # noqa: E402
                     sanitized_build, wait_for)

FLOOD = 50 * 1024 * 1024
PATTERN = b"NOOP\r\nHELP\r\n"
# No progress for this long means the server has stopped taking the client's bytes.
STALLED = 3.0
PAUSED_LOG = (r"session=[0-9a-f]{16}, (?:msgid=[0-9a-f]{16}, )?event=pause, "
              r"client=\[127\.0\.0\.1\], pending=\d+, "
              r"reason=\"reads no replies\"")


def rss_kib(pid):
    return int(proc_status(pid)["VmRSS"].split()[0])


class Flood:
    """Sends `total` bytes of a pipelined pattern of commands from a thread, never reading,
    until all are out or the server has taken nothing for stalled_after seconds."""

    def __init__(self, sock, total, stalled_after=STALLED, pattern=PATTERN):
        self.sock, self.total, self.stalled_after = sock, total, stalled_after
        self.pattern = pattern
        self.sent = 0
        self.stalled = False
        self.error = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        chunk = self.pattern * (65536 // len(self.pattern))
        self.sock.settimeout(self.stalled_after)
        try:
            while self.sent < self.total and not self.stop.is_set():
                offset = self.sent % len(chunk)  # whole commands however send() splits them
                self.sent += self.sock.send(chunk[offset:])
        except (socket.timeout, TimeoutError):
            self.stalled = True
        except OSError as e:
            self.error = e

    def done(self):
        return not self.thread.is_alive()


class Backpressure(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.certdir = tempfile.mkdtemp(prefix="postern-flood-")
        cls.cert, cls.key = make_certificate(cls.certdir)

    def daemon(self, extra=""):
        return Daemon(extra=f"tls:\n  certificate: {self.cert}\n  key: {self.key}\n" + extra)

    def rss_limit_kib(self, baseline):
        # 20 MB for the process as built for use; a sanitizer's shadow memory and quarantine
        # make the absolute figure meaningless, so there the allowance is over the baseline.
        return baseline + 16 * 1024 if sanitized_build() else 20 * 1024

    def flood_never_reading(self, connect, pattern=PATTERN):
        with self.daemon().start(env=quarantine_bounded_env()) as d:
            smtp = d.status()["smtp"]["pid"]
            limit = self.rss_limit_kib(rss_kib(smtp))
            sock = connect(d)
            flood = Flood(sock, FLOOD, pattern=pattern)
            peak = 0
            while not flood.done():
                peak = max(peak, rss_kib(smtp))
                if peak >= limit:  # the old behaviour: stop before it eats the machine
                    flood.stop.set()
                time.sleep(0.05)
            peak = max(peak, rss_kib(smtp))
            self.assertIsNone(flood.error)
            self.assertLess(peak, limit, f"smtp grew to {peak} KiB; {flood.sent} octets sent")
            # The server stopped reading: the client could not send it all.
            self.assertTrue(flood.stalled, f"{flood.sent} octets sent")
            self.assertLess(flood.sent, FLOOD)
            self.assertTrue(d.wait_log(PAUSED_LOG), d.read_log()[-2000:])
            # Another session is served meanwhile.
            other = Client(d.port, timeout=10)
            self.assertEqual(other.reply()[0], 220)
            self.assertEqual(other.command("EHLO other.example")[0], 250)
            self.assertEqual(other.command("NOOP"), (250, "2.0.0 Ok"))
            self.assertEqual(other.command("QUIT")[0], 221)
            other.close()
            self.assertLess(rss_kib(smtp), limit)
            self.assertEqual(d.status()["smtp"]["pid"], smtp)
            sock.close()

    def client(self, d, *commands):
        """A greeted client that said each of commands and got a 2xx or 3xx for it."""
        c = Client(d.port)
        self.assertEqual(c.reply()[0], 220)
        for command in commands:
            code, text = c.command(command)
            self.assertLess(code, 400, (command, text))
        return c

    def test_plaintext_flood_that_never_reads(self):
        self.flood_never_reading(lambda d: self.client(d).sock)

    def test_bdat_flood_that_never_reads(self):
        # Tiny chunks, each answered "250 2.0.0 N octets received", in one endless message.
        self.flood_never_reading(
            lambda d: self.client(d, "EHLO flood.example", "MAIL FROM:<a@example.com>",
                                  "RCPT TO:<alice@test.example>").sock,
            pattern=b"BDAT 4\r\nabcd")

    def test_tls_flood_that_never_reads(self):
        def connect(d):
            c = self.client(d, "EHLO flood.example", "STARTTLS")
            ctx = ssl.create_default_context(cafile=self.cert)
            return ctx.wrap_socket(c.sock, server_hostname="localhost")
        self.flood_never_reading(connect)

    def test_stalled_session_resumes_when_the_client_reads(self):
        # 30,000 pipelined EHLOs (240 KB) ask for 6 MB of replies, more than the socket buffers
        # hold: the server pauses. The client then reads slowly, so the server keeps pausing
        # down to its last commands, which it has read in already with nothing more to come:
        # each must still be answered, in order.
        commands = 30_000
        with self.daemon().start() as d:
            c = self.client(d)
            payload = b"EHLO x\r\n" * commands + b"QUIT\r\n"
            sender = threading.Thread(target=c.sock.sendall, args=(payload,), daemon=True)
            sender.start()
            self.assertTrue(d.wait_log(PAUSED_LOG, 30), d.read_log()[-2000:])
            last_line = b"250 STARTTLS\r\n"  # the last line of each EHLO reply
            answers, rest, whole = 0, b"", b""
            while b"221 " not in whole:
                time.sleep(0.001)
                chunk = c.sock.recv(16384)
                self.assertTrue(chunk, f"closed after {answers} answers")
                data = rest + chunk
                cut = data.rfind(b"\r\n") + 2
                whole, rest = data[:cut], data[cut:]
                answers += whole.count(last_line)
            sender.join(10)
            self.assertEqual(answers, commands)
            self.assertTrue(whole.endswith(b"221 2.0.0 Bye\r\n"), whole[-100:])
            c.close()

    def test_client_that_never_reads_is_dropped_after_the_timeout(self):
        # Its replies do not move for command_timeout: the session ends (a paused session
        # must not wait for ever for an output that libevent has stopped writing).
        with self.daemon(extra="limits:\n  command_timeout: 2\n").start() as d:
            c = self.client(d)
            flood = Flood(c.sock, FLOOD, stalled_after=30)
            self.assertTrue(d.wait_log(PAUSED_LOG, 10), d.read_log()[-2000:])
            self.assertTrue(d.wait_log(r"session=[0-9a-f]{16}, (?:msgid=[0-9a-f]{16}, )?event=timeout, "
                                       r"reason=\"the client reads nothing\"",
                                       15), d.read_log()[-2000:])
            self.assertTrue(wait_for(lambda: d.status()["smtp"]["details"]["sessions"] == "0",
                                     5), d.status()["smtp"])
            flood.thread.join(30)
            # The server closed with replies unread: the client's sends fail.
            self.assertIsInstance(flood.error, (ConnectionResetError, BrokenPipeError),
                                  (flood.error, flood.sent, flood.stalled))
            c.close()

if __name__ == "__main__":
    unittest.main(verbosity=2)
