"""kill -9 of the mta in the middle of a 10,000-recipient campaign: every recipient still
reaches the receiving server, and what it gets twice stays within what was in flight at the
kill. The sender is the real daemon (the supervisor restarts the mta; the queue hands it
again only what it had out); the receiver is a scripted server that counts each recipient of
each transaction it acknowledged, and answers the end of each message a little late so the
kill lands mid-campaign."""

import collections
import os
import signal
import smtplib
import threading
import time
import unittest

from harness import Daemon, ThreadedServer, read_data, wait_for

MESSAGES = 100
RECIPIENTS = 100  # per message: 10,000 in all
IN_RELAY = 4      # limits.in_relay: messages at the mta at once


class CountingSink(ThreadedServer):
    """Takes pipelined SMTP; a transaction's recipients count once its 250 after the dot
    has been sent."""

    def __init__(self, delay=0.05):
        self.delay = delay
        self.lock = threading.Lock()
        self.delivered = collections.Counter()
        self.transactions = 0
        super().__init__()

    def session(self, conn):
        f = conn.makefile("rb")
        rcpts = []
        try:
            conn.sendall(b"220 sink.test ESMTP\r\n")
            while True:
                line = f.readline()
                if not line:
                    return
                verb = line[:4].upper()
                if verb == b"EHLO":
                    conn.sendall(b"250-sink.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                elif verb in (b"MAIL", b"RSET"):
                    rcpts = []
                    conn.sendall(b"250 ok\r\n")
                elif verb == b"RCPT":
                    rcpts.append(line[8:].strip().strip(b"<>").decode())
                    conn.sendall(b"250 ok\r\n")
                elif verb == b"DATA":
                    conn.sendall(b"354 go\r\n")
                    if not read_data(f):
                        return  # cut mid-message: nothing counts
                    time.sleep(self.delay)
                    conn.sendall(b"250 2.0.0 taken\r\n")
                    with self.lock:
                        self.delivered.update(rcpts)
                        self.transactions += 1
                    rcpts = []
                elif verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"502 no\r\n")
        except OSError:
            return
        finally:
            conn.close()

    def count(self):
        with self.lock:
            return self.transactions, sum(self.delivered.values()), len(self.delivered)


class CampaignKill(unittest.TestCase):
    def test_kill_9_of_the_mta_mid_campaign_loses_nothing(self):
        sink = CountingSink()
        try:
            with Daemon(extra=f"relay_domains: [\"*.relay.test\"]\n"
                              f"routes:\n  - match: \"*.relay.test\"\n"
                              f"    via: smtp://127.0.0.1:{sink.port}\n"
                              f"limits:\n  in_relay: {IN_RELAY}\n").start() as d:
                # Everything is queued first, the mta paused, so the kill finds a campaign
                # under way rather than a trickle.
                d.smtpctl("pause", "mta", check=True)
                everyone = set()
                with smtplib.SMTP("127.0.0.1", d.port) as s:
                    s.ehlo("campaign.example")
                    for m in range(MESSAGES):
                        s.mail("campaign@test.example")
                        for r in range(RECIPIENTS):
                            address = f"u{m}-{r}@r{r % 10}.relay.test"
                            everyone.add(address)
                            self.assertEqual(s.rcpt(address)[0], 250)
                        self.assertEqual(s.data(b"Subject: news\r\n\r\nhello\r\n")[0], 250)
                self.assertEqual(len(everyone), MESSAGES * RECIPIENTS)
                d.smtpctl("resume", "mta", check=True)

                self.assertTrue(wait_for(lambda: sink.count()[0] >= 10, 60), d.read_log())
                old = d.status()["mta"]["pid"]
                os.kill(old, signal.SIGKILL)
                at_kill = sink.count()
                self.assertLess(at_kill[2], len(everyone), "the campaign ended before the kill")

                self.assertTrue(wait_for(lambda: sink.count()[2] == len(everyone), 120),
                                f"{sink.count()} of {len(everyone)}\n" + d.read_log()[-3000:])
                self.assertTrue(wait_for(lambda: not d.queued(), 30), d.read_log()[-3000:])
                status = d.status()["mta"]
                self.assertNotEqual(status["pid"], old)
                self.assertGreaterEqual(status["restarts"], 1)

                transactions, total, distinct = sink.count()
                duplicates = total - distinct
                # Only what the queue had handed to the killed mta can go twice: at most
                # IN_RELAY messages of RECIPIENTS each.
                bound = IN_RELAY * RECIPIENTS
                print(f"\nkill -9 of the mta after {at_kill[0]} transactions "
                      f"({at_kill[2]} recipients): {distinct} recipients delivered, "
                      f"{duplicates} twice (bound {bound}), {transactions} transactions")
                self.assertEqual(set(sink.delivered), everyone)
                self.assertLessEqual(duplicates, bound)
        finally:
            sink.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
