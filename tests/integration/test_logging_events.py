"""The events of mta, control, lookup and mda (docs/logging.md, Events) as the real daemon
writes them: mail relayed to scripted servers on loopback (one with STARTTLS, one whose port is
closed, one hostile), smtpctl commands, a table reloaded and one refused. Every line is read
with the strict grammar of test_logging.py, and each event must carry its documented keys. A
server's greeting and replies, untrusted input, cannot add a field or a line."""

import os
import re
import shutil
import socket
import ssl
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, ThreadedServer, free_port, make_certificate, submit, wait_for  # noqa: E402
from test_logging import STDERR_LINE, check_event, parse  # noqa: E402

# What each event of these processes must carry (docs/logging.md), by program and event.
REQUIRED = {
    ("smtpd-mta", "connect"): {"conn", "domain", "relay", "reused", "tls"},
    ("smtpd-mta", "tls"): {"conn", "domain", "relay", "policy", "result"},
    ("smtpd-mta", "close"): {"conn", "domain", "relay", "result", "reason", "messages"},
    ("smtpd-mta", "connect_failed"): {"conn", "domain", "relay", "reason", "next"},
    ("smtpd-mta", "held"): {"domain", "reason", "until", "deliveries"},
    ("smtpd-mta", "resolve_failed"): {"domain", "result", "dsn", "reason"},
    ("smtpd-mta", "shaping"): {"site", "action", "rule"},
    ("smtpd-control", "command"): {"command", "uid", "pid", "client"},
    ("smtpd-control", "result"): {"command", "client", "result"},
    ("smtpd-lookup", "table"): {"table", "kind", "result"},
    ("smtpd-lookup", "dns_failure"): {"check", "reason", "action"},
    ("smtpd-mda", "helper_refused"): {"user", "reason"},
}
UNTIL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
# Tries to end its value, add fields and start a line of its own.
FORGED = b'", status=sent, to=<x@y>\rsmtpd-mta[1]: event=forged, status=sent'


class Sink(ThreadedServer):
    """Takes every message; with a certificate it offers STARTTLS and requires it."""

    def __init__(self, cert=None, key=None):
        self.messages = 0
        self.context = None
        if cert:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(cert, key)
        super().__init__()

    def session(self, conn):
        try:
            self.serve(conn)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def serve(self, sock):
        """The server's side of one connection; a TLS socket it makes is closed here."""
        with sock:
            self.converse(sock)

    def converse(self, sock):
        reader = sock.makefile("rb")
        sock.sendall(b"220 sink.test ESMTP\r\n")
        if not reader.readline():
            return
        if self.context:
            sock.sendall(b"250-sink.test\r\n250-STARTTLS\r\n250 8BITMIME\r\n")
            if reader.readline() != b"STARTTLS\r\n":
                return
            sock.sendall(b"220 go ahead\r\n")
            with self.context.wrap_socket(sock, server_side=True) as tls:
                reader = tls.makefile("rb")
                if reader.readline():
                    self.transactions(tls, reader)
            return
        self.transactions(sock, reader)

    def transactions(self, sock, reader):
        sock.sendall(b"250-sink.test\r\n250 8BITMIME\r\n")
        while True:
            line = reader.readline()
            if line.startswith(b"QUIT") or not line:
                sock.sendall(b"221 bye\r\n")
                return
            if line.startswith(b"MAIL") or line.startswith(b"RCPT") or line.startswith(b"RSET"):
                sock.sendall(b"250 ok\r\n")
            elif line == b"DATA\r\n":
                sock.sendall(b"354 go\r\n")
                while reader.readline() not in (b".\r\n", b""):
                    pass
                self.messages += 1
                sock.sendall(b"250 2.0.0 queued\r\n")
            else:
                sock.sendall(b"500 what\r\n")


class Hostile(ThreadedServer):
    """The first connection is refused at the greeting, the others are dropped with a 421 to
    MAIL; both replies carry FORGED."""

    def session(self, conn):
        with conn:
            try:
                reader = conn.makefile("rb")
                if self.connections == 1:
                    conn.sendall(b"554 5.7.1 go away" + FORGED + b"\r\n")
                    reader.readline()
                    return
                conn.sendall(b"220 hostile.test ESMTP\r\n")
                reader.readline()
                conn.sendall(b"250-hostile.test\r\n250 8BITMIME\r\n")
                reader.readline()
                conn.sendall(b"421 4.7.0 closing" + FORGED + b"\r\n")
                # What the client pipelined is read before closing: unread, it would turn the
                # close into a reset that loses the 421.
                conn.settimeout(5)
                conn.shutdown(socket.SHUT_WR)
                while conn.recv(4096):
                    pass
            except OSError:
                pass


class LoggingEvents(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="postern-events-")
        cls.cert, cls.key = make_certificate(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.plain = Sink()
        self.tls = Sink(self.cert, self.key)
        self.hostile = Hostile()
        for server in (self.plain, self.tls, self.hostile):
            self.addCleanup(server.close)
        self.closed_port = free_port()  # nothing listens there

    def daemon(self):
        d = Daemon(extra=f"""relay_domains: [plain.test, tls.test, hostile.test, closed.test,
  nowhere.test]
routes:
  - match: [plain.test]
    via: [smtp://127.0.0.1:{self.plain.port}]
  - match: [tls.test]
    via: [smtp://127.0.0.1:{self.tls.port}]
  - match: [hostile.test]
    via: [smtp://127.0.0.1:{self.hostile.port}]
  - match: [closed.test]
    via: [smtp://127.0.0.1:{self.closed_port}]
limits:
  connection_idle: 2s
""")
        self.aliases = os.path.join(d.dir, "aliases")
        with open(self.aliases, "w") as f:
            f.write("postmaster: root\n")
        d.write_config(d.config_text().replace(
            "domains: [test.example, localhost]",
            f"domains:\n  - test.example\n  - {{name: localhost, aliases: {self.aliases}}}"))
        return d

    def events(self, d):
        """Every line of the daemon's log, parsed; (program, subject, fields) of each."""
        out = []
        self.comments = []
        for raw in d.read_log().splitlines():
            m = STDERR_LINE.match(raw)
            if not m:
                self.assertTrue(raw.startswith("smtpd: warning: "), f"not a log line: {raw!r}")
                continue
            _, subject, fields, comment = parse(m.group(3))
            check_event(fields, comment, m.group(3), m.group(1))
            event = (m.group(1), fields.get("event"))
            if event in REQUIRED:
                missing = REQUIRED[event] - fields.keys()
                self.assertFalse(missing, f"{event} without {missing}: {raw!r}")
            out.append((m.group(1), subject, fields))
            self.comments.append((m.group(1), subject, fields, comment))
        return out

    def of(self, events, program, event, **keys):
        return [(s, f) for p, s, f in events if p == program and f.get("event") == event
                and all(f.get(k) == v for k, v in keys.items())]

    def test_events_of_mta_control_lookup(self):
        with self.daemon().start() as d:
            relay = lambda port: f"127.0.0.1[127.0.0.1]:{port}"  # noqa: E731
            sent = {}
            # The second goes on the first's connection, idle in the cache by then.
            for rcpt in ("a@plain.test", "b@plain.test", "c@tls.test"):
                sent[rcpt] = submit(d.port, [rcpt])
                self.assertTrue(d.wait_log(rf"{sent[rcpt]}: to=<{re.escape(rcpt)}>.*status=sent",
                                           20), d.read_log()[-3000:])
            first, second, over_tls = sent.values()
            # A closed port twice: the server is down, then what waits is held.
            unreachable = submit(d.port, ["d@closed.test"])
            self.assertTrue(d.wait_log(rf"{unreachable}: to=<d@closed\.test>.*status=deferred",
                                       20), d.read_log()[-3000:])
            held = submit(d.port, ["e@closed.test"])
            self.assertTrue(d.wait_log(rf"{held}: to=<e@closed\.test>.*status=deferred", 20),
                            d.read_log()[-3000:])
            # No server found (the test's resolver does not answer).
            lost = submit(d.port, ["f@nowhere.test"])
            self.assertTrue(d.wait_log(rf"{lost}: to=<f@nowhere\.test>.*status=deferred", 20),
                            d.read_log()[-3000:])
            # The hostile server: refused at the greeting, then 421 on a ready connection.
            for n in range(2):
                queue_id = hostile_id = submit(d.port, [f"h{n}@hostile.test"])
                self.assertTrue(d.wait_log(rf"{queue_id}: to=<h{n}@hostile\.test>.*"
                                           r"status=deferred", 20), d.read_log()[-3000:])
            # smtpctl, and tables: reloaded, then refused.
            self.assertEqual(d.smtpctl("show", "queue").returncode, 0)
            self.assertEqual(d.smtpctl("update", "table", self.aliases).returncode, 0)
            with open(self.aliases, "w") as f:
                f.write("postmaster root with no colon\n")
            self.assertNotEqual(d.smtpctl("update", "table", self.aliases).returncode, 0)
            self.assertTrue(d.wait_log(r"event=table, .*result=refused", 10), d.read_log())
            # The sinks' connections end when idle.
            for port in (self.plain.port, self.tls.port):
                self.assertTrue(d.wait_log(rf"event=close, .*relay={re.escape(relay(port))}, "
                                           r"result=closed, reason=idle", 10), d.read_log())
            d.smtpctl("stop")
            d.wait_exit(10)
            events = self.events(d)
        mta = "smtpd-mta"
        # A connection per destination, reused for the second message.
        connects = {s: f for s, f in self.of(events, mta, "connect")}
        self.assertEqual((connects[first]["relay"], connects[first]["reused"],
                          connects[first]["tls"]), (relay(self.plain.port), "no", "no"))
        self.assertEqual((connects[second]["reused"], connects[second]["conn"]),
                         ("yes", connects[first]["conn"]))
        self.assertTrue(connects[over_tls]["tls"].startswith("TLSv1."), connects[over_tls])
        # TLS to the sink: established, encrypted but not verified (opportunistic).
        tls = self.of(events, mta, "tls", relay=relay(self.tls.port))
        self.assertEqual([(f["result"], f["policy"], f["verify"]) for _, f in tls],
                         [("ok", "opportunistic", "no")])
        self.assertEqual(tls[0][1]["conn"], connects[over_tls]["conn"])
        # Closed when idle, saying how many messages went over each.
        closes = {f["conn"]: f for _, f in self.of(events, mta, "close")}
        self.assertEqual(closes[connects[first]["conn"]]["messages"], "2")
        self.assertEqual(closes[connects[over_tls]["conn"]]["messages"], "1")
        # The closed port: the server is down for a while; the next message is held.
        failed = self.of(events, mta, "connect_failed", relay=relay(self.closed_port))
        self.assertEqual(len(failed), 1, failed)
        self.assertEqual((failed[0][1]["next"], failed[0][1]["domain"]), ("no", "route 3 (closed.test)"))
        self.assertGreater(int(failed[0][1]["down_for"]), 0)
        holds = self.of(events, mta, "held", domain="route 3 (closed.test)")
        self.assertEqual([f["deliveries"] for _, f in holds], ["1"])
        self.assertTrue(holds[0][1]["reason"].startswith("every server is down"), holds)
        self.assertRegex(holds[0][1]["until"], UNTIL)
        resolved = self.of(events, mta, "resolve_failed", domain="nowhere.test")
        self.assertTrue(resolved, events)
        self.assertEqual((resolved[0][1]["result"], resolved[0][1]["dsn"]), ("temporary", "4.4.3"))
        # The hostile server's replies stayed one value each, whole; nothing was forged.
        forged = FORGED.decode()
        refused = self.of(events, mta, "connect_failed", relay=relay(self.hostile.port))
        self.assertEqual(len(refused), 1, refused)
        self.assertIn("554 5.7.1 go away" + forged, refused[0][1]["reason"])
        self.assertEqual(set(refused[0][1]), {"event", "conn", "domain", "relay", "reason",
                                              "next"})
        lost_421 = self.of(events, mta, "close", relay=relay(self.hostile.port))
        self.assertEqual([(f["result"], f["messages"]) for _, f in lost_421], [("lost", "0")])
        # (The session ends as the connection closes; the 421 is the recipient's result.)
        deferred = [(f, c) for p, s, f, c in self.comments if s == hostile_id and "status" in f]
        self.assertEqual([(f["status"], c) for f, c in deferred],
                         [("deferred", "421 4.7.0 closing" + forged.replace("\r", "\\r")
                           + " (in reply to MAIL)")])
        self.assertFalse([f for _, _, f in events if f.get("event") == "forged"])
        self.assertFalse([f for _, _, f in events
                          if f.get("status") == "sent" and "hostile" in f.get("to", "")])
        # control: every command with the caller's uid and pid, and how it ended.
        uid = str(os.geteuid())
        commands = self.of(events, "smtpd-control", "command", uid=uid)
        names = {f["command"] for _, f in commands}
        self.assertTrue({"ctl_show_queue", "ctl_update_table", "ctl_stop"} <= names, names)
        self.assertTrue(all(f["pid"].isdigit() and f["pid"] != "0" for _, f in commands))
        results = {(f["command"], f["result"])
                   for _, f in self.of(events, "smtpd-control", "result")}
        self.assertTrue({("ctl_show_queue", "ok"), ("ctl_update_table", "ok"),
                         ("ctl_update_table", "failed")} <= results, results)
        # lookup: the aliases table loaded (at start and again), then refused.
        tables = self.of(events, "smtpd-lookup", "table", table=self.aliases)
        self.assertEqual([(f["kind"], f["result"], f.get("entries")) for _, f in tables],
                         [("aliases", "loaded", "1")] * 2 + [("aliases", "refused", None)])
        self.assertIn(self.aliases, tables[-1][1]["error"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
