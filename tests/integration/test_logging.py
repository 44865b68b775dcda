"""Logs an admin can grep and a machine can parse (docs/logging.md): the real daemon serves
accepted, refused, TLS and failed-AUTH sessions, and every line it wrote (stderr with -d, a
unix datagram socket standing in for /dev/log, a JSON log file) is read back with a strict
key=value grammar, each event with its required keys. A client's bytes cannot forge a field
or a line; a missing syslog socket is said once and its lines are not lost."""

import base64
import json
import os
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Client, Daemon, free_port, make_certificate, wait_for  # noqa: E402

# The grammar of common/util/log_line.hpp, as strict: a line is fields and nothing else.
KEY = r"[a-z0-9_]+"
BARE = r'[!#-\'*-+\--\[\]-~]+'  # printable ASCII but SP " , ( ) \
QUOTED = r'"(?:\\["\\nrt]|\\x[0-9a-f]{2}|[^"\\\x00-\x1f\x7f-\x9f])*"'
FIELD = re.compile(rf"({KEY})=({BARE}|{QUOTED})")
PREFIX = re.compile(r"(?:(debug|warning|error|fatal): )?(?:([0-9a-fA-F]+|[a-z0-9_]+): )?")
COMMENT = re.compile(r" \(([^\x00-\x1f\x7f-\x9f]*)\)\Z")
STDERR_LINE = re.compile(r"\A(smtpd|smtpd-[a-z]+)\[(\d+)\]: (.*)\Z")
SYSLOG_LINE = re.compile(r"\A<(\d+)>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d "
                         r"(smtpd|smtpd-[a-z]+)\[(\d+)\]: (.*)\Z")
STATUSES = {"sent", "deferred", "bounced", "expired"}

# What each event of smtp and the queue must carry (docs/logging.md; test_logging_events.py has
# the other processes', whose connect and tls are the mta's own); lines of other events need
# only follow the grammar. A delivery line (Postfix's) has no event: it is the one with to= and
# status=.
REQUIRED = {
    "connect": {"session", "client", "listener"},
    "disconnect": {"session", "client", "tls", "auth", "messages"},
    "reject": {"session", "client", "command", "reply"},
    "auth": {"session", "client", "user", "result"},
    "tls": {"session", "result"},
    "accepted": {"session", "msgid", "from", "nrcpt"},
    "queued": {"from", "size", "nrcpt", "client"},
}
PROGRAM_OF = {"queued": "smtpd-queue"}  # the others are smtpd-smtp's


def unquote(value):
    if not value.startswith('"'):
        return value
    out = bytearray()
    inner = value[1:-1]
    i = 0
    while i < len(inner):
        c = inner[i]
        if c == "\\":
            e = inner[i + 1]
            if e == "x":
                out.append(int(inner[i + 2:i + 4], 16))
                i += 4
                continue
            out += {"n": b"\n", "r": b"\r", "t": b"\t"}.get(e, e.encode())
            i += 2
            continue
        out += c.encode()
        i += 1
    return out.decode(errors="replace")


def parse(text):
    """(level, subject, {key: value}, comment) of one line; AssertionError if it is not in
    the grammar or names a key twice."""
    m = PREFIX.match(text)
    level, subject = m.group(1) or "info", m.group(2)
    rest = text[m.end():]
    comment = None
    fields = {}
    pos = 0
    while True:
        f = FIELD.match(rest, pos)
        if not f:
            raise AssertionError(f"not a field at {pos}: {text!r}")
        if f.group(1) in fields:
            raise AssertionError(f"{f.group(1)} twice: {text!r}")
        fields[f.group(1)] = unquote(f.group(2))
        pos = f.end()
        if pos == len(rest):
            break
        # The comment starts where the fields end, not at the first " (" (a quoted value
        # may hold one: tls="TLSv1.3 ... (not verified)").
        c = COMMENT.match(rest, pos)
        if c:
            comment = c.group(1)
            break
        if rest[pos:pos + 2] != ", ":
            raise AssertionError(f"no ', ' at {pos}: {text!r}")
        pos += 2
    return level, subject, fields, comment


def check_event(fields, comment, text, program):
    event = fields.get("event")
    if event in REQUIRED and program == PROGRAM_OF.get(event, "smtpd-smtp"):
        missing = REQUIRED[event] - fields.keys()
        assert not missing, f"{event} without {missing}: {text!r}"
    if event is None and "status" in fields:
        missing = {"to", "relay", "delay", "dsn", "status"} - fields.keys()
        assert not missing, f"delivery without {missing}: {text!r}"
        assert fields["status"] in STATUSES, text
        assert comment is not None, text
    if event is None and "status" not in fields:
        assert "msg" in fields, f"neither an event nor a message: {text!r}"
    if "session" in fields:
        assert re.fullmatch(r"[0-9a-f]{16}", fields["session"]), text
    if "msgid" in fields:
        assert re.fullmatch(r"[0-9a-f]{16}", fields["msgid"]), text


def plain(user, password):
    return "AUTH PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()).decode()


class Logging(unittest.TestCase):
    FORGED_USER = 'mallory", result=ok, user=alice\nsmtpd[1]: fake'

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="postern-logging-")
        cls.cert, cls.key = make_certificate(cls.tmp)
        cls.table = os.path.join(cls.tmp, "credentials")
        hashed = subprocess.run(["openssl", "passwd", "-6", "wonderland"], capture_output=True,
                                text=True, check=True).stdout.strip()
        with open(cls.table, "w") as f:
            f.write(f"alice:{hashed}\n")
        os.chmod(cls.table, 0o600)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def daemon(self, log=""):
        d = Daemon(listeners=[("smtp", f"127.0.0.1:{free_port()}"),
                              ("submission", f"127.0.0.1:{free_port()}")],
                   extra=f"tls:\n  certificate: {self.cert}\n  key: {self.key}\n"
                         f"credentials: {self.table}\n" + log)
        self.mail = os.path.join(d.dir, "mail")
        d.write_config(d.config_text().replace(
            "domains: [test.example, localhost]",
            f"domains:\n  - test.example\n  - {{name: localhost, users: [alice], "
            f"maildir: {self.mail}/%u/Maildir}}"))
        d.smtp_port = int(d.listeners[0][1].rsplit(":", 1)[1])
        d.sub_port = int(d.listeners[1][1].rsplit(":", 1)[1])
        return d

    def drive(self, d):
        """Sessions of every kind; returns the queue id of the accepted message."""
        ctx = ssl.create_default_context(cafile=self.cert)
        # Accepted over STARTTLS, with a refused recipient (unknown user, 550 5.1.1) and one
        # refused for relaying (554 5.7.1) in the same transaction.
        with smtplib.SMTP("localhost", d.smtp_port, timeout=10) as s:
            s.starttls(context=ctx)
            s.ehlo("client.example")
            s.mail("sender@example.com")
            self.assertEqual(s.rcpt("alice@localhost")[0], 250)
            self.assertEqual(s.rcpt("nobody@localhost")[0], 550)
            self.assertEqual(s.rcpt('victim@remote.example')[0], 554)
            code, text = s.data(b"Subject: hi\r\n\r\nHello.\r\n")
            self.assertEqual(code, 250)
            queue_id = text.decode().split()[-1]
        # A failed AUTH under TLS, with a user name that tries to forge fields and a line.
        with smtplib.SMTP("localhost", d.sub_port, timeout=10) as s:
            s.starttls(context=ctx)
            s.ehlo("x")
            self.assertEqual(s.docmd(plain(self.FORGED_USER, "s3cret-guess"))[0], 535)
            self.assertEqual(s.docmd(plain("alice", "wonderland"))[0], 235)
        # A client whose command line tries the same.
        c = Client(d.smtp_port)
        c.reply()
        c.command("EHLO x")
        c.command('MAIL FROM:<a@b.example>')
        self.assertEqual(c.command('RCPT TO:<x", status=sent@remote.example>')[0] // 100, 5)
        c.command("QUIT")
        c.close()
        return queue_id

    def check_lines(self, lines, queue_id):
        """Parses every line; checks the facts the sessions must have left."""
        self.assertTrue(lines)
        events = []
        for program, pid, text in lines:
            level, subject, fields, comment = parse(text)
            check_event(fields, comment, text, program)
            events.append((program, subject, fields, comment))
        by_event = {}
        for program, subject, fields, comment in events:
            by_event.setdefault(fields.get("event"), []).append((program, subject, fields, comment))
        rejects = [f for _, _, f, _ in by_event.get("reject", [])]
        replies = {f["reply"][:9] for f in rejects}
        self.assertIn("550 5.1.1", replies)
        self.assertIn("554 5.7.1", replies)
        self.assertIn("535 5.7.8", replies)
        # The AUTH command is logged without its credentials.
        self.assertIn("AUTH PLAIN", {f["command"] for f in rejects})
        # The forged value stayed one value, whole.
        failed = [f for _, _, f, _ in by_event["auth"] if f["result"] == "failed"]
        self.assertEqual([f["user"] for f in failed], [self.FORGED_USER])
        self.assertTrue(any(f["user"] == "alice" and f["result"] == "ok"
                            for _, _, f, _ in by_event["auth"]))
        self.assertTrue(any(f["command"].endswith('status=sent@remote.example>')
                            for f in rejects))
        # TLS and AUTH facts on the way out.
        leaving = [f for _, _, f, _ in by_event["disconnect"]]
        self.assertTrue(any(f["tls"].startswith("TLSv1.") and f["auth"] == "alice"
                            for f in leaving), leaving)
        self.assertTrue(any(f["tls"] == "no" and f["auth"] == "no" for f in leaving), leaving)
        self.assertTrue(any(f["tls"].startswith("TLSv1.") and f["messages"] == "1"
                            for f in leaving), leaving)
        # The message: accepted by smtp (session and id), queued, delivered.
        accepted = [f for _, _, f, _ in by_event["accepted"] if f["msgid"] == queue_id]
        self.assertEqual(len(accepted), 1)
        self.assertTrue(any(s == queue_id for _, s, _, _ in by_event["queued"]))
        delivered = [(f, c) for _, s, f, c in by_event.get(None, [])
                     if s == queue_id and "status" in f]
        self.assertEqual([(f["to"], f["status"], c) for f, c in delivered],
                         [("<alice@localhost>", "sent", "delivered to maildir")])
        # Every program's lines came through, the chrooted ones too.
        programs = {p for p, _, _ in lines}
        self.assertTrue({"smtpd", "smtpd-smtp", "smtpd-queue"} <= programs, programs)
        return events

    def wait_delivered(self, read, queue_id):
        return wait_for(lambda: re.search(rf"{queue_id}: to=<alice@localhost>.*status=sent",
                                          read()), 10)

    def stderr_lines(self, d):
        lines = []
        for raw in d.read_log().splitlines():
            m = STDERR_LINE.match(raw)
            if m:
                lines.append((m.group(1), int(m.group(2)), m.group(3)))
            elif raw.startswith("smtpd: warning: "):
                continue  # said on the terminal before logging starts
            else:
                self.fail(f"not a log line: {raw!r}")
        return lines

    def test_stderr_lines_follow_the_grammar(self):
        with self.daemon() as d:
            d.start()
            queue_id = self.drive(d)
            self.assertTrue(self.wait_delivered(d.read_log, queue_id), d.read_log())
            d.smtpctl("stop")
            d.wait_exit(10)
            self.check_lines(self.stderr_lines(d), queue_id)
            self.assertNotIn("s3cret-guess", d.read_log())
            self.assertNotIn("wonderland", d.read_log())

    def test_syslog_socket_gets_every_line_and_can_come_later(self):
        path = os.path.join(self.tmp, f"log-{os.getpid()}.sock")
        with self.daemon(f"log:\n  to: syslog\n  syslog_socket: {path}\n") as d:
            # No socket yet: said once on stderr, the lines go there meanwhile.
            d.start()
            self.assertTrue(d.wait_log(rf"syslog socket {re.escape(path)}: No such file"),
                            d.read_log())
            self.assertEqual(d.read_log().count(f"syslog socket {path}:"), 1, d.read_log())
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(path)
            os.chmod(path, 0o666)
            received = []
            stop = threading.Event()

            def collect():
                sock.settimeout(0.2)
                while not stop.is_set():
                    try:
                        received.append(sock.recv(65536))
                    except socket.timeout:
                        continue

            reader = threading.Thread(target=collect)
            reader.start()
            try:
                # The parent tries the socket again at most once a second.
                time.sleep(1.1)
                queue_id = self.drive(d)
                text = lambda: "\n".join(r.decode(errors="replace") for r in received)
                self.assertTrue(self.wait_delivered(text, queue_id), text())
                d.smtpctl("stop")
                d.wait_exit(10)
            finally:
                stop.set()
                reader.join()
                sock.close()
                os.unlink(path)
        lines = []
        for datagram in received:
            m = SYSLOG_LINE.match(datagram.decode())
            self.assertTrue(m, datagram)
            self.assertEqual(int(m.group(1)) >> 3, 2, datagram)  # facility mail
            lines.append((m.group(2), int(m.group(3)), m.group(4)))
        self.check_lines(lines, queue_id)
        self.assertTrue(any(t == 'msg="syslog answers again"' for _, _, t in lines))

    def test_json_lines_in_a_file(self):
        path = os.path.join(self.tmp, f"json-{os.getpid()}.log")
        with self.daemon(f"log:\n  to: file\n  file: {path}\n  format: json\n") as d:
            d.start()
            queue_id = self.drive(d)

            def read():
                if not os.path.exists(path):
                    return ""
                with open(path) as f:
                    return f.read()

            self.assertTrue(wait_for(lambda: f'"id":"{queue_id}","to":"<alice@localhost>"'
                                     in read(), 10), read())
            d.smtpctl("stop")
            d.wait_exit(10)
            text = read()
        objects = [json.loads(line) for line in text.splitlines()]
        for o in objects:
            self.assertRegex(o["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertIn(o["level"], {"debug", "info", "warning", "error", "fatal"})
            self.assertIsInstance(o["pid"], int)
            self.assertTrue(o["process"].startswith("smtpd"), o)
            self.assertNotIn("malformed", o)
        sent = [o for o in objects if o.get("id") == queue_id and o.get("status") == "sent"]
        self.assertEqual(len(sent), 1, objects)
        self.assertEqual(sent[0]["text"], "delivered to maildir")
        failed = [o for o in objects if o.get("event") == "auth" and o["result"] == "failed"]
        self.assertEqual([o["user"] for o in failed], [self.FORGED_USER])


if __name__ == "__main__":
    unittest.main()
