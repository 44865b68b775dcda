"""Receiving mail as clients see it: RFC 5321 replies and state machine, extensions,
relay refusal however the address is dressed up, limits, strict DATA line endings (no
smuggling), byte-exact spooling, and crash safety of every 250."""

import os
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Client, Daemon, free_port, wait_for  # noqa: E402

BODY = b"Subject: test\r\n\r\nHello.\r\n"


def received_split(data):
    """(Received header, the rest) of a spooled message."""
    assert data.startswith(b"Received: "), data[:80]
    end = 0
    lines = data.split(b"\r\n")
    i = 1
    while lines[i].startswith(b"\t"):
        i += 1
    header = b"\r\n".join(lines[:i]) + b"\r\n"
    return header, data[len(header):]


class Session(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(extra="limits:\n  recipients: 5\n  errors: 12").start()

    @classmethod
    def tearDownClass(cls):
        cls.d.__exit__(None, None, None)

    def client(self):
        c = Client(self.d.port)
        code, text = c.reply()
        self.assertEqual(code, 220)
        self.assertIn("test.example ESMTP Postern", text)
        return c

    def test_smtplib_message_is_spooled_byte_exact(self):
        with smtplib.SMTP("127.0.0.1", self.d.port) as s:
            s.ehlo("client.example")
            body = (b"Subject: 8bit and long lines\r\n\r\ncaf\xc3\xa9 \xff\r\n" + b"x" * 998 +
                    b"\r\n.leading dot\r\n..two dots\r\n\r\n")
            code, text = s.mail("sender@example.com", ["BODY=8BITMIME"])
            self.assertEqual(code, 250)
            self.assertEqual(s.rcpt("alice@test.example")[0], 250)
            code, text = s.data(body)
            self.assertEqual(code, 250)
            text = text.decode()
            self.assertRegex(text, r"^2\.0\.0 Ok: queued as [0-9a-f]{16}$")
            queue_id = text.split()[-1]
        self.assertIn(queue_id, self.d.queued())
        header, rest = received_split(self.d.message_bytes(queue_id))
        self.assertEqual(rest, body)
        self.assertIn(b"from client.example (unknown [127.0.0.1])", header)
        self.assertIn(b"by test.example (Postern) with ESMTP id " + queue_id.encode(), header)
        self.assertIn(b"for <alice@test.example>", header)
        env = self.d.envelope_text(queue_id)
        self.assertIn("sender 18:sender@example.com\n", env)
        self.assertIn("rcpt 18:alice@test.example\n", env)
        self.assertIn("body_8bit 1:1\n", env)
        self.assertIn("helo 14:client.example\n", env)
        self.assertEqual(self.d.incoming(), [])

    def test_swaks(self):
        r = subprocess.run(["swaks", "--server", f"127.0.0.1:{self.d.port}", "--from",
                            "bob@example.com", "--to", "alice@localhost", "--helo", "swaks.test"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"<-  250 2\.0\.0 Ok: queued as [0-9a-f]{16}")

    def test_ehlo_lists_the_extensions(self):
        with smtplib.SMTP("127.0.0.1", self.d.port) as s:
            code, _ = s.ehlo("x")
            self.assertEqual(code, 250)
            for ext in ("pipelining", "size", "8bitmime", "smtputf8", "enhancedstatuscodes",
                        "dsn", "chunking"):
                self.assertTrue(s.has_extn(ext), ext)
            self.assertEqual(s.esmtp_features["size"], str(35 * 1024 * 1024))
            self.assertFalse(s.has_extn("starttls"))  # no certificate configured

    def test_state_machine_and_reply_codes(self):
        c = self.client()
        self.assertEqual(c.command("MAIL FROM:<a@example.com>"), (503, "5.5.1 Send HELO or EHLO first"))
        self.assertEqual(c.command("RCPT TO:<alice@test.example>")[0], 503)
        self.assertEqual(c.command("NOOP"), (250, "2.0.0 Ok"))
        self.assertEqual(c.command("helo x")[0], 250)
        self.assertEqual(c.command("RCPT TO:<alice@test.example>"), (503, "5.5.1 Need MAIL before RCPT"))
        self.assertEqual(c.command("DATA"), (503, "5.5.1 Need MAIL before DATA"))
        self.assertEqual(c.command("mail from:<a@example.com>"), (250, "2.1.0 Ok"))
        self.assertEqual(c.command("MAIL FROM:<a@example.com>"), (503, "5.5.1 Nested MAIL command"))
        self.assertEqual(c.command("DATA"), (554, "5.5.1 No valid recipients"))
        self.assertEqual(c.command("RSET"), (250, "2.0.0 Ok"))
        self.assertEqual(c.command("VRFY alice")[0], 252)
        self.assertEqual(c.command("HELP")[0], 214)
        self.assertEqual(c.command("FROB"), (500, "5.5.1 Command unrecognized"))
        self.assertEqual(c.command("MAIL FROM:bogus")[0], 501)
        self.assertEqual(c.command("MAIL FROM:<not an address>"), (501, "5.1.7 Bad sender address syntax"))
        self.assertEqual(c.command("QUIT"), (221, "2.0.0 Bye"))
        self.assertTrue(c.closed())

    def test_params_need_ehlo_and_unknown_params_are_refused(self):
        c = self.client()
        c.command("HELO x")
        self.assertEqual(c.command("MAIL FROM:<a@example.com> BODY=8BITMIME")[0], 555)
        c.command("EHLO x")
        self.assertEqual(c.command("MAIL FROM:<a@example.com> FROB=1"),
                         (555, "5.5.4 Unsupported parameter FROB"))
        self.assertEqual(c.command("MAIL FROM:<a@example.com> RET=HDRS ENVID=QQ+2B1 SMTPUTF8")[0], 250)
        self.assertEqual(c.command("RCPT TO:<alice@test.example> NOTIFY=SUCCESS,FAILURE "
                                   "ORCPT=rfc822;alice+40test.example")[0], 250)
        self.assertEqual(c.command("RCPT TO:<bob@test.example> NOTIFY=NEVER,SUCCESS")[0], 501)
        c.close()

    def test_dsn_parameters_are_stored_with_the_envelope(self):
        c = self.client()
        c.command("EHLO x")
        c.command("MAIL FROM:<a@example.com> RET=HDRS ENVID=QQ+2B1")
        c.command("RCPT TO:<alice@test.example> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;Alice+40test.example")
        self.assertEqual(c.command("DATA")[0], 354)
        code, text = c.command("Subject: dsn\r\n\r\nx\r\n.")
        self.assertEqual(code, 250)
        env = self.d.envelope_text(text.split()[-1])
        self.assertIn("ret 7:headers\n", env)
        self.assertIn("envid 4:QQ+1\n", env)
        self.assertIn("notify 13:success,delay\n", env)
        self.assertIn("orcpt_type 6:rfc822\n", env)
        self.assertIn("orcpt 18:Alice@test.example\n", env)
        c.close()

    def test_unknown_users_of_a_listed_domain_are_refused(self):
        with Daemon(extra="limits:\n  errors: 20") as d:
            d.write_config(d.config_text().replace(
                "domains: [test.example, localhost]",
                "domains:\n  - test.example\n  - {name: localhost, users: [alice, bob]}"))
            d.start()
            c = Client(d.port)
            c.reply()
            c.command("EHLO x")
            c.command("MAIL FROM:<a@example.com>")
            self.assertEqual(c.command("RCPT TO:<alice@localhost>")[0], 250)
            self.assertEqual(c.command("RCPT TO:<BOB@LocalHost>")[0], 250)
            self.assertEqual(c.command("RCPT TO:<carol@localhost>"), (550, "5.1.1 User unknown"))
            self.assertEqual(c.command("RCPT TO:<postmaster@localhost>")[0], 250)
            self.assertEqual(c.command("RCPT TO:<anyone@test.example>")[0], 250)
            c.close()

    def test_postmaster_is_always_accepted(self):
        c = self.client()
        c.command("EHLO x")
        c.command("MAIL FROM:<>")
        self.assertEqual(c.command("RCPT TO:<postmaster>")[0], 250)
        self.assertEqual(c.command("RCPT TO:<PostMaster>")[0], 250)
        c.close()

    def test_relaying_is_refused_however_dressed_up(self):
        c = self.client()
        c.command("EHLO x")
        c.command("MAIL FROM:<a@example.com>")
        refused = {
            "<victim@remote.example>": (554, "5.7.1 Relay access denied"),
            "<victim%remote.example@test.example>": (550, "5.1.1 User unknown"),
            "<remote.example!victim@test.example>": (550, "5.1.1 User unknown"),
            "<@test.example:victim@remote.example>": (554, "5.7.1 Relay access denied"),
            '<"victim@remote.example"@test.example>': (550, "5.1.1 User unknown"),
            "<victim@[127.0.0.1]>": (554, "5.7.1 Relay access denied"),
            "<victim@remote.example.>": (554, "5.7.1 Relay access denied"),
            "<victim@test.example.evil>": (554, "5.7.1 Relay access denied"),
            "<victim@sub.test.example>": (554, "5.7.1 Relay access denied"),
        }
        for path, expected in refused.items():
            self.assertEqual(c.command(f"RCPT TO:{path}"), expected, path)
        # Our own domain however written is ours.
        for path in ("<alice@TEST.Example>", "<alice@test.example.>", "<@relay.example:alice@test.example>"):
            self.assertEqual(c.command(f"RCPT TO:{path}")[0], 250, path)
        c.close()

    def test_pipelined_batch_answers_in_order(self):
        c = self.client()
        c.command("EHLO x")
        batch = ["MAIL FROM:<a@example.com>"] + [f"RCPT TO:<u{i}@test.example>" for i in range(5)]
        batch += ["RCPT TO:<u5@test.example>", "RCPT TO:<x@remote.example>", "DATA"]
        c.send("".join(line + "\r\n" for line in batch))
        replies = [c.reply() for _ in batch]
        self.assertEqual(replies[0][0], 250)
        self.assertEqual([r[0] for r in replies[1:6]], [250] * 5)
        self.assertEqual(replies[6], (452, "4.5.3 Too many recipients"))
        self.assertEqual(replies[7], (452, "4.5.3 Too many recipients"))
        self.assertEqual(replies[8][0], 354)
        c.send("Subject: pipelined\r\n\r\nbody\r\n.\r\nMAIL FROM:<b@example.com>\r\nRSET\r\nQUIT\r\n")
        code, text = c.reply()
        self.assertEqual(code, 250)
        self.assertEqual(c.reply()[0], 250)
        self.assertEqual(c.reply()[0], 250)
        self.assertEqual(c.reply(), (221, "2.0.0 Bye"))
        env = self.d.envelope_text(text.split()[-1])
        self.assertEqual(env.count("\nrcpt "), 5)

    def test_many_sessions_pipelining_many_messages(self):
        def one_session(results):
            c = Client(self.d.port)
            c.reply()
            c.command("EHLO x")
            script = ""
            for i in range(20):
                script += ("MAIL FROM:<a@example.com>\r\nRCPT TO:<alice@test.example>\r\nDATA\r\n")
                script += f"Subject: {i}\r\n\r\nbody {i}\r\n.\r\n"
            c.send(script + "QUIT\r\n")
            for i in range(20):
                codes = [c.reply()[0] for _ in range(4)]
                results.append(codes)
            c.close()
        results = []
        threads = [threading.Thread(target=one_session, args=(results,)) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(len(results), 100)
        self.assertTrue(all(codes == [250, 250, 354, 250] for codes in results), results[:3])

    def test_bdat_chunks_arrive_byte_exact(self):
        c = self.client()
        c.command("EHLO x")
        c.command("MAIL FROM:<a@example.com> BODY=8BITMIME")
        c.command("RCPT TO:<alice@test.example>")
        part1 = b"Subject: chunks\r\n\r\n.not stuffed\r\n"
        part2 = b"\xff binary-ish \r\n.\r\n" * 3
        # Pipelined: two chunks and their commands in one write.
        c.send(b"BDAT %d\r\n" % len(part1) + part1 + b"BDAT %d LAST\r\n" % len(part2) + part2)
        self.assertEqual(c.reply(), (250, f"2.0.0 {len(part1)} octets received"))
        code, text = c.reply()
        self.assertEqual(code, 250, text)
        _, rest = received_split(self.d.message_bytes(text.split()[-1]))
        self.assertEqual(rest, part1 + part2)
        self.assertEqual(c.command("NOOP")[0], 250)
        c.close()

    def test_bdat_refusals_still_read_the_chunk(self):
        c = self.client()
        c.command("EHLO x")
        before = self.d.queued()
        # No MAIL yet: refused, but the 20 octets (which look like commands) are skipped.
        c.send(b"BDAT 20 LAST\r\n" + b"MAIL FROM:<e@x>\r\nXXX")
        self.assertEqual(c.reply(), (503, "5.5.1 Need MAIL before BDAT"))
        self.assertEqual(c.command("NOOP")[0], 250)
        c.command("MAIL FROM:<a@example.com>")
        c.command("RCPT TO:<alice@test.example>")
        c.send(b"BDAT 5\r\nhello")
        self.assertEqual(c.reply()[0], 250)
        self.assertEqual(c.command("DATA"), (503, "5.5.1 DATA after BDAT"))
        self.assertEqual(c.command("BDAT x"), (501, "5.5.4 Bad BDAT size"))
        self.assertTrue(c.closed())
        self.assertEqual(self.d.queued(), before)

    def test_bdat_over_the_size_limit(self):
        with Daemon(extra="limits:\n  message_size: 1K").start() as d:
            c = Client(d.port)
            c.reply()
            c.command("EHLO x")
            c.command("MAIL FROM:<a@example.com>")
            c.command("RCPT TO:<alice@test.example>")
            c.send(b"BDAT 800\r\n" + b"a" * 800)
            self.assertEqual(c.reply()[0], 250)
            c.send(b"BDAT 800 LAST\r\n" + b"b" * 800)
            self.assertEqual(c.reply(), (552, "5.3.4 Message size exceeds fixed maximum message size"))
            self.assertEqual(c.command("NOOP")[0], 250)
            self.assertEqual(d.queued(), set())
            c.close()

    def test_aborted_transactions_leave_nothing_behind(self):
        before = self.d.queued()
        # Dropped in the middle of DATA.
        c = self.client()
        c.command("EHLO x")
        c.command("MAIL FROM:<a@example.com>")
        c.command("RCPT TO:<alice@test.example>")
        self.assertEqual(c.command("DATA")[0], 354)
        # More than smtp buffers before it writes to the spool file (kSpoolChunk).
        c.send("Subject: half\r\n\r\n" + "half a message\r\n" * 10000)
        self.assertTrue(wait_for(lambda: self.d.incoming() != [], 3))
        c.close()
        self.assertTrue(wait_for(lambda: self.d.incoming() == [], 3), self.d.incoming())
        # RSET in the middle of BDAT.
        c = self.client()
        c.command("EHLO x")
        c.command("MAIL FROM:<a@example.com>")
        c.command("RCPT TO:<alice@test.example>")
        c.send(b"BDAT 4\r\nhalf")
        self.assertEqual(c.reply()[0], 250)
        self.assertEqual(c.command("RSET")[0], 250)
        self.assertTrue(wait_for(lambda: self.d.incoming() == [], 3), self.d.incoming())
        c.close()
        self.assertEqual(self.d.queued(), before)

    def test_command_line_too_long(self):
        c = self.client()
        c.command("EHLO x")
        self.assertEqual(c.command("NOOP " + "x" * 600), (500, "5.5.2 Line too long"))
        self.assertEqual(c.command("NOOP"), (250, "2.0.0 Ok"))
        c.close()

    def test_message_too_big_is_refused_at_mail_and_after_data(self):
        with Daemon(extra="limits:\n  message_size: 1K").start() as d:
            c = Client(d.port)
            c.reply()
            c.command("EHLO x")
            self.assertEqual(c.command("MAIL FROM:<a@example.com> SIZE=2000"),
                             (552, "5.3.4 Message size exceeds fixed maximum message size"))
            c.command("MAIL FROM:<a@example.com>")
            c.command("RCPT TO:<alice@test.example>")
            self.assertEqual(c.command("DATA")[0], 354)
            c.send(("x" * 100 + "\r\n") * 20 + ".\r\n")
            self.assertEqual(c.reply(), (552, "5.3.4 Message size exceeds fixed maximum message size"))
            self.assertEqual(c.command("NOOP")[0], 250)  # still in step with the client
            self.assertEqual(d.queued(), set())
            self.assertTrue(wait_for(lambda: d.incoming() == [], 3))
            c.close()

    def test_text_line_over_1000_octets_is_refused(self):
        c = self.client()
        c.command("EHLO x")
        c.command("MAIL FROM:<a@example.com>")
        c.command("RCPT TO:<alice@test.example>")
        before = self.d.queued()
        c.command("DATA")
        c.send("Subject: long\r\n\r\n" + "y" * 999 + "\r\n.\r\n")
        self.assertEqual(c.reply()[0:1], (500,))
        self.assertEqual(self.d.queued(), before)
        c.close()

    def test_bare_lf_and_bare_cr_refuse_the_message(self):
        for body in (b"Subject: lf\n\nbare LF\r\n", b"Subject: cr\r\n\r\nbare\rCR\r\n"):
            c = self.client()
            c.command("EHLO x")
            c.command("MAIL FROM:<a@example.com>")
            c.command("RCPT TO:<alice@test.example>")
            before = self.d.queued()
            c.command("DATA")
            c.send(body + b".\r\n")
            code, text = c.reply()
            self.assertEqual(code, 550, text)
            self.assertIn("5.6.0", text)
            self.assertEqual(self.d.queued(), before)
            c.close()

    def test_smuggled_commands_are_not_executed(self):
        c = self.client()
        c.command("EHLO x")
        c.command("MAIL FROM:<a@example.com>")
        c.command("RCPT TO:<alice@test.example>")
        before = self.d.queued()
        c.command("DATA")
        # "\n.\r\n" is no end of data: the MAIL/RCPT/DATA after it are message text.
        c.send(b"Subject: smuggle\r\n\r\nx\n.\r\nMAIL FROM:<evil@example.com>\r\n"
               b"RCPT TO:<bob@test.example>\r\nDATA\r\nSubject: smuggled\r\n\r\n.\r\n")
        code, text = c.reply()
        self.assertEqual(code, 550)  # the whole thing was one message with a bare LF
        self.assertEqual(self.d.queued(), before)
        self.assertEqual(c.command("NOOP")[0], 250)
        c.close()

    def test_too_many_errors_close_the_session(self):
        c = self.client()
        replies = [c.command("FROB") for _ in range(11)]
        self.assertTrue(all(r[0] == 500 for r in replies))
        c.send("FROB\r\n")
        self.assertEqual(c.reply()[0], 500)
        self.assertEqual(c.reply(), (421, "4.7.0 test.example Too many errors, closing connection"))
        self.assertTrue(c.closed())

    def test_garbage_does_not_hurt_the_server(self):
        c = Client(self.d.port)
        c.reply()
        c.send(bytes(range(256)) * 8 + b"\r\n" + os.urandom(4096) + b"\r\n")
        c.close()
        with socket.create_connection(("127.0.0.1", self.d.port)) as s:
            s.sendall(b"\x00\xff" * 70000)
        c = self.client()
        self.assertEqual(c.command("NOOP")[0], 250)
        c.close()
        self.assertEqual(self.d.status()["smtp"]["restarts"], 0)


class Listeners(unittest.TestCase):
    def test_submission_requires_authentication(self):
        with Daemon(listeners=[("submission", f"127.0.0.1:{free_port()}")]).start() as d:
            port = int(d.listeners[0][1].rsplit(":", 1)[1])
            c = Client(port)
            c.reply()
            c.command("EHLO x")
            self.assertEqual(c.command("MAIL FROM:<a@example.com>"),
                             (530, "5.7.0 Authentication required"))
            c.close()

    def test_connection_limits(self):
        with Daemon(extra="limits:\n  sessions_per_ip: 2").start() as d:
            a, b = Client(d.port), Client(d.port)
            self.assertEqual(a.reply()[0], 220)
            self.assertEqual(b.reply()[0], 220)
            c = Client(d.port)
            self.assertEqual(c.reply(), (421, "4.7.0 test.example Too many connections from your "
                                              "address, try again later"))
            a.command("QUIT")
            self.assertTrue(a.closed())
            ok = wait_for(lambda: (x := Client(d.port)).reply()[0] == 220, 3)
            self.assertTrue(ok)
        with Daemon(extra="limits:\n  sessions: 1").start() as d:
            a = Client(d.port)
            self.assertEqual(a.reply()[0], 220)
            self.assertEqual(Client(d.port).reply(),
                             (421, "4.7.0 test.example Too many connections, try again later"))

    def test_connection_rate_delays_then_refuses(self):
        # 127.0.0.2 is not trusted; no DNS checks, so nothing but the rate decides.
        d = Daemon(extra='trusted_networks: ["127.0.0.1/32"]\nlimits:\n  connection_rate: 10')
        d.write_config(d.config_text(listeners=[]) +
                       f'  - address: "127.0.0.1:{d.port}"\n    role: smtp\n'
                       "    checks: {fcrdns: off}\n")
        with d.start():
            def connect(source="127.0.0.2"):
                c = Client.__new__(Client)
                c.sock = socket.create_connection(("127.0.0.1", d.port), timeout=15,
                                                  source_address=(source, 0))
                c.buffer = b""
                return c
            for _ in range(10):  # up to the limit: greeted at once
                c = connect()
                self.assertEqual(c.reply()[0], 220)
                c.command("QUIT")
                c.close()
            # The 11th is a tenth over: its greeting waits a tenth of 10 s. The next ones wait
            # longer; they are left waiting while the 21st, over twice the limit, is refused.
            started = time.monotonic()
            eleventh = connect()
            waiting = [connect() for _ in range(9)]
            refused = connect()
            self.assertEqual(refused.reply(), (421, "4.7.0 Too many connections from your "
                                                    "address, try later"))
            self.assertTrue(refused.closed())
            self.assertEqual(eleventh.reply()[0], 220)
            self.assertGreaterEqual(time.monotonic() - started, 0.9)
            # The trusted address is never counted; another untrusted one has its own count.
            for source in ("127.0.0.1", "127.0.0.3"):
                c = connect(source)
                self.assertEqual(c.reply()[0], 220, source)
                c.close()
            stats = d.smtpctl("show", "stats", check=True).stdout
            self.assertRegex(stats, r"connection rate: 10 greetings delayed, 1 clients refused, "
                                    r"2 addresses counted")
            for c in [refused, eleventh] + waiting:
                c.close()

    def test_idle_session_times_out(self):
        with Daemon(extra="limits:\n  command_timeout: 1").start() as d:
            c = Client(d.port)
            c.reply()
            started = time.monotonic()
            self.assertEqual(c.reply(), (421, "4.4.2 test.example Timeout, closing connection"))
            self.assertGreaterEqual(time.monotonic() - started, 0.9)
            self.assertTrue(c.closed())


class Durability(unittest.TestCase):
    def send_many(self, port, accepted, refused, stop):
        while not stop.is_set():
            try:
                c = Client(port, timeout=5)
                c.reply()
                c.command("EHLO x")
                while not stop.is_set():
                    c.command("MAIL FROM:<a@example.com>")
                    c.command("RCPT TO:<alice@test.example>")
                    if c.command("DATA")[0] != 354:
                        break
                    code, text = c.command("Subject: load\r\n\r\nbody\r\n.")
                    if code == 250:
                        accepted.append(text.split()[-1])
                    else:
                        refused.append(code)
            except (OSError, ConnectionError):
                time.sleep(0.01)

    SESSIONS = 8

    def assert_recovered(self, d, accepted):
        """Every 250 survived. Besides, at most one message per session may be there without
        its 250: committed at the instant of the kill, its answer lost with the process (the
        client retries: at least once, never lost). Nothing half-received remains."""
        queued = d.queued()
        self.assertEqual(set(accepted) - queued, set())
        self.assertLessEqual(len(queued - set(accepted)), self.SESSIONS)
        self.assertEqual(d.incoming(), [])
        for queue_id in queued:
            self.assertTrue(d.message_bytes(queue_id).startswith(b"Received: "))
            self.assertTrue(d.envelope_text(queue_id).startswith("postern-envelope 3\n"))

    def run_load_and_kill(self, d, kill):
        accepted, refused, stop = [], [], threading.Event()
        threads = [threading.Thread(target=self.send_many, args=(d.port, accepted, refused, stop))
                   for _ in range(self.SESSIONS)]
        for t in threads:
            t.start()
        self.assertTrue(wait_for(lambda: len(accepted) >= 50, 20), "no load got through")
        kill()
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(30)
        return accepted

    def test_kill_queue_mid_load_loses_no_accepted_message(self):
        with Daemon().start() as d:
            accepted = self.run_load_and_kill(
                d, lambda: os.kill(d.status()["queue"]["pid"], signal.SIGKILL))
            self.assertTrue(wait_for(lambda: d.fully_wired(d.status()), 5))
            self.assert_recovered(d, accepted)
            self.assertRegex(d.read_log(), r"spool .*: \d+ messages queued")

    def test_kill_whole_daemon_mid_load_loses_no_accepted_message(self):
        with Daemon().start() as d:
            def kill_all():
                os.killpg(d.proc.pid, signal.SIGKILL)
            accepted = self.run_load_and_kill(d, kill_all)
            d.proc.wait()
            self.assertTrue(wait_for(lambda: not d.descendants(), 5))
            d.start()
            self.assert_recovered(d, accepted)
            self.assertRegex(d.read_log(), rf"spool .*: {len(d.queued())} messages queued")


if __name__ == "__main__":
    unittest.main(verbosity=2)
