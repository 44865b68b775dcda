"""Traffic shaping as a receiving server sees it: the real daemon relays through a `routes:`
entry to a scripted sink on loopback, which stamps each message's arrival, counts the
connections it has open at once and answers as a big receiver does when it wants less (Gmail's
421 4.7.28 to MAIL, a greeting that refuses a third connection, Yahoo's [TSS04]). What the
mta decided is read back through smtpctl (show relays, show queue) and the log."""

import re
import socket
import smtplib
import threading
import time
import unittest

from harness import Daemon, ThreadedServer, read_data, wait_for

GMAIL_421 = (b"421 4.7.28 [127.0.0.1] Our system has detected an unusual rate of unsolicited "
             b"mail originating from your IP address; rate limited\r\n")
YAHOO_TSS04 = (b"421 4.7.0 [TSS04] Messages from 127.0.0.1 temporarily deferred due to "
               b"unexpected volume or user complaints\r\n")


class ShapingSink(ThreadedServer):
    """A pipelining SMTP server. refuse_mail(n): the reply to the n-th MAIL (from 0), or None
    to accept it; a refusal is sent, then the connection closed, as Gmail and Yahoo do.
    max_open: a connection beyond that many open at once gets 421 at the greeting (counted in
    refused), decided in the order connections came. hold: seconds the reply to the final dot
    waits. Each message's arrival (when its final dot came) and recipients are kept, and when
    each accepted MAIL came; peak is the most connections open at once."""

    def __init__(self, refuse_mail=None, max_open=None, hold=0.0):
        self.refuse_mail = refuse_mail or (lambda n: None)
        self.max_open = max_open
        self.hold = hold
        self.lock = threading.Lock()
        self.open = 0
        self.peak = 0
        self.refused = 0
        self.mails = 0
        self.started = []
        self.arrivals = []
        self.turned_away = set()
        self.recipients = []
        super().__init__()

    def accepted(self, conn):
        with self.lock:
            if self.max_open is not None and self.open >= self.max_open:
                self.refused += 1
                self.turned_away.add(conn)
            else:
                self.open += 1
                self.peak = max(self.peak, self.open)

    def session(self, conn):
        with self.lock:
            full = conn in self.turned_away
            self.turned_away.discard(conn)
        try:
            if full:
                conn.sendall(b"421 4.7.0 sink.test too many connections from your IP\r\n")
                self.linger(conn)
                return
            self.converse(conn)
        except OSError:
            pass
        finally:
            if not full:
                with self.lock:
                    self.open -= 1
            conn.close()

    @staticmethod
    def linger(conn):
        """Closes our side and reads what the client still sends until it closes, so that the
        last reply is read before the connection goes (no reset over unread input)."""
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(10)
        try:
            while conn.recv(4096):
                pass
        except OSError:
            pass

    def converse(self, conn):
        f = conn.makefile("rb")
        conn.sendall(b"220 sink.test ESMTP\r\n")
        rcpts = []
        while True:
            line = f.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                conn.sendall(b"250-sink.test\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n")
            elif verb == b"MAIL":
                with self.lock:
                    refusal = self.refuse_mail(self.mails)
                    self.mails += 1
                if refusal:
                    conn.sendall(refusal)
                    self.linger(conn)
                    return
                rcpts = []
                with self.lock:
                    self.started.append(time.monotonic())
                conn.sendall(b"250 2.1.0 ok\r\n")
            elif verb == b"RCPT":
                rcpts.append(line[8:].strip().strip(b"<>").decode())
                conn.sendall(b"250 2.1.5 ok\r\n")
            elif verb == b"DATA":
                conn.sendall(b"354 go ahead\r\n")
                if not read_data(f):
                    return
                with self.lock:
                    self.arrivals.append(time.monotonic())
                    self.recipients += rcpts
                time.sleep(self.hold)
                conn.sendall(b"250 2.0.0 queued\r\n")
            elif verb == b"RSET":
                conn.sendall(b"250 2.0.0 ok\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"221 2.0.0 bye\r\n")
                return
            else:
                conn.sendall(b"502 5.5.1 no\r\n")

    def mail_times(self):
        with self.lock:
            return sorted(self.started)

    def arrived(self):
        with self.lock:
            return list(self.arrivals), list(self.recipients)


def config(sink, more=""):
    return (f"relay_domains: [relay.test]\n"
            f"routes:\n  - match: [relay.test]\n    via: smtp://127.0.0.1:{sink.port}\n" + more)


def queue_all(d, recipients):
    """Every message in the queue before the mta sees any: one message per recipient over one
    session while the mta is paused, then the mta resumed."""
    d.smtpctl("pause", "mta", check=True)
    with smtplib.SMTP("127.0.0.1", d.port) as s:
        for i, rcpt in enumerate(recipients):
            s.sendmail("sender@test.example", [rcpt], f"Subject: {i}\r\n\r\nbody {i}\r\n")
    d.smtpctl("resume", "mta", check=True)


def relays(d):
    return d.smtpctl("show", "relays").stdout


class Shaping(unittest.TestCase):
    def test_a_static_rate_and_connection_limit_hold_at_the_sink(self):
        rate = 120  # a minute: 2 a second; the bucket holds one second's worth, 2 messages
        # Each message holds a connection 0.6 s: one connection cannot keep up 2 a second, so
        # without its limit the mta would open more than 2.
        sink = ShapingSink(hold=0.6)
        count = 16
        try:
            with Daemon(extra=config(sink, f"shaping:\n  - match: [relay.test]\n"
                                           f"    rate: {rate}\n    connections: 2\n")).start() as d:
                everyone = [f"u{i}@relay.test" for i in range(count)]
                queue_all(d, everyone)
                self.assertTrue(wait_for(lambda: len(sink.arrived()[0]) == count, 30),
                                f"{len(sink.arrived()[0])} of {count} over {sink.connections} "
                                f"connections\n" + d.read_log()[-3000:])
                recipients = sink.arrived()[1]
                self.assertEqual(sorted(recipients), sorted(everyone))
                # The token bucket: in any T seconds at most rate/60 * T transactions, plus
                # the second's worth it holds. The sink stamps each MAIL as its thread reads
                # it, which the mta writes as it takes a token; how late that thread runs
                # varies with the scheduling of a busy machine, so the window is widened by
                # 0.3 s (not even one message at this rate).
                per_second = rate / 60
                burst = max(1, per_second)
                started = sink.mail_times()
                self.assertEqual(len(started), count)
                for i in range(count):
                    for j in range(i + 1, count):
                        window = started[j] - started[i]
                        self.assertLessEqual(
                            j - i + 1, per_second * (window + 0.3) + burst,
                            f"{j - i + 1} messages in {window:.2f} s: "
                            f"{[round(t - started[0], 2) for t in started]}")
                self.assertEqual(sink.peak, 2, "connections open at once at the sink")
                self.assertIn("site shaping 0 (relay.test): rate 120/min (configured 120/min), "
                              "connections 2 (configured 2)", relays(d))
                self.assertTrue(wait_for(lambda: not d.queued(), 10), d.read_log()[-3000:])
        finally:
            sink.close()

    def test_a_gmail_421_slows_the_site_then_it_recovers(self):
        # The first MAIL gets Gmail's reply; every later one is taken.
        sink = ShapingSink(refuse_mail=lambda n: GMAIL_421 if n == 0 else None)
        # The list replaces the shipped one: gmail-rate itself, held 4 s, then a step a second.
        rules = ("reply_rules:\n"
                 "  - {name: gmail-rate, code: 421, status: \"4.7.28\", action: slow_rate, "
                 "duration: 4s, recover: 1s}\n")
        # Idle connections stay 30 s: the site is still listed once it has recovered.
        more = ("shaping:\n  - match: [relay.test]\n    rate: 120\n" + rules +
                "limits:\n  connection_idle: 30s\n")
        try:
            with Daemon(extra=config(sink, more)).start() as d:
                queue_all(d, ["a@relay.test"])
                slowed = wait_for(lambda: re.search(r"^site shaping 0 \(relay\.test\): .*"
                                                    r"slowed by rule gmail-rate.*$",
                                                    relays(d), re.M), 10)
                self.assertTrue(slowed, relays(d) + d.read_log()[-3000:])
                # Fewer than four messages accepted to measure from: half the rate.
                self.assertIn("rate 60/min (configured 120/min)", slowed.group(0))
                # The refused message was not refused for good: it goes once more from the
                # mta (a second connection, the first was closed), not back to the queue.
                self.assertTrue(wait_for(lambda: sink.arrived()[1] == ["a@relay.test"], 10),
                                d.read_log()[-3000:])
                self.assertEqual(sink.mails, 2)
                self.assertEqual(sink.connections, 2)
                self.assertTrue(wait_for(lambda: not d.queued(), 10), d.read_log()[-3000:])
                log = d.read_log()
                self.assertRegex(log, r"rule gmail-rate triggered by .*421 4\.7\.28")
                self.assertRegex(log, r"to=<a@relay\.test>, .*status=sent")
                self.assertNotIn("status=deferred", log)
                # 4 s held, then 60 -> 120 by 12 a second: back in about 9 s.
                shown = wait_for(lambda: (lambda t: "slowed" not in t and t)(relays(d)), 30)
                self.assertTrue(shown, relays(d) + d.read_log()[-3000:])
                self.assertIn("site shaping 0 (relay.test): rate 120/min (configured 120/min)",
                              shown)
                self.assertTrue(d.wait_log(r'event=shaping, site="shaping 0 \(relay\.test\)", '
                                           r"action=recovered, rule=gmail-rate"),
                                d.read_log()[-3000:])
        finally:
            sink.close()

    def test_too_many_connections_lowers_the_site_to_what_the_server_lets_in(self):
        sink = ShapingSink(max_open=2)
        count = 30
        try:
            # The shipped reply rules: too-many-connections (3 in 60 s) lowers the site.
            with Daemon(extra=config(sink, "limits:\n  destination_connections: 10\n")
                        ).start() as d:
                everyone = [f"u{i}@relay.test" for i in range(count)]
                queue_all(d, everyone)
                self.assertTrue(wait_for(lambda: len(sink.arrived()[0]) == count, 30),
                                f"{len(sink.arrived()[0])} of {count} over {sink.connections} "
                                f"connections\n" + d.read_log()[-3000:])
                self.assertEqual(sorted(sink.arrived()[1]), sorted(everyone))
                shown = relays(d)
                self.assertRegex(shown, r"site route 0 \(relay\.test\): .*connections 2 "
                                        r"\(configured 10\).*slowed by rule too-many-connections",
                                 d.read_log()[-3000:])
                self.assertRegex(d.read_log(), r"rule too-many-connections triggered by .*"
                                               r"421 4\.7\.0 .*too many connections")
                # The first burst opens at most destination_connections (10), of which the
                # sink refuses all but 2; once lowered the site opens no more than 2, and a
                # refusal while others are up holds the next connection back a while.
                print(f"\n{count} messages over {sink.connections} connections, "
                      f"{sink.refused} refused at the greeting")
                self.assertGreaterEqual(sink.refused, 3, "the rule needs three refusals")
                self.assertLessEqual(sink.refused, 10)
                self.assertTrue(wait_for(lambda: not d.queued(), 10), d.read_log()[-3000:])
        finally:
            sink.close()

    def test_a_tss04_suspends_the_site_without_connecting(self):
        sink = ShapingSink(refuse_mail=lambda n: YAHOO_TSS04 if n == 0 else None)
        suspension = 8
        more = ("reply_rules:\n"
                f"  - {{name: yahoo-tss04, text: \"[TSS04]\", action: suspend, "
                f"duration: {suspension}s}}\n"
                "limits:\n  retry_first: 1s\n")
        try:
            with Daemon(extra=config(sink, more)).start() as d:
                queue_all(d, ["first@relay.test"])
                self.assertTrue(wait_for(lambda: "suspended by rule yahoo-tss04" in relays(d), 10),
                                relays(d) + d.read_log()[-3000:])
                self.assertRegex(relays(d), r"site route 0 \(relay\.test\): .*suspended by rule "
                                            r"yahoo-tss04, \d+ s left")
                # Mail for the site meanwhile is deferred by the mta with the time left, which
                # the queue takes as its next try.
                queue_all(d, ["second@relay.test"])
                line = re.compile(r"^\s+second@relay\.test\s+pending\s+1 attempt\s+next try in "
                                  r"(\d+)s\s+\(4\.7\.0 site suspended by rule yahoo-tss04 for "
                                  r"(\d+) s more\)$", re.M)
                seen = wait_for(lambda: line.search(d.smtpctl("show", "queue").stdout), 10)
                self.assertTrue(seen, d.smtpctl("show", "queue").stdout + d.read_log()[-3000:])
                self.assertLessEqual(int(seen.group(1)), suspension)
                self.assertLessEqual(int(seen.group(2)), suspension)
                self.assertRegex(d.smtpctl("show", "queue").stdout,
                                 r"first@relay\.test\s+pending\s+\d+ attempts?\s+next try .*"
                                 r"\((4\.7\.0 421 4\.7\.0 \[TSS04\]|4\.7\.0 site suspended)")
                # No connection reaches the sink while the site is suspended: the count (and
                # the time) is read before show relays says it still is.
                during = []

                def over():
                    seen = (time.monotonic(), sink.connections)
                    if "suspended" in relays(d):
                        during.append(seen)
                        return False
                    return True

                self.assertTrue(wait_for(over, suspension + 10, interval=0.2), relays(d))
                self.assertTrue(during)
                self.assertEqual({n for _, n in during}, {1}, "connections while suspended")
                # Over: the queue's next tries reach the sink, after the suspension.
                self.assertTrue(wait_for(lambda: sorted(sink.arrived()[1]) ==
                                         ["first@relay.test", "second@relay.test"], 15),
                                f"{sink.arrived()} {sink.connections} connections\n" +
                                d.smtpctl("show", "queue").stdout + d.read_log()[-3000:])
                self.assertGreater(min(sink.arrived()[0]), during[-1][0])
                self.assertTrue(d.wait_log(r'event=shaping, site="route 0 \(relay\.test\)", '
                                           r"action=resume, rule=yahoo-tss04"), d.read_log()[-3000:])
        finally:
            sink.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
