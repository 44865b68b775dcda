"""A hostile server as the peer of a real Postern's route: mail accepted by the daemon goes out
through its sandboxed mta to a scripted server that attacks (a reply of mixed codes after the
final dot, 10 MB replies, the connection dropped in the middle of the message, a final reply sent
with the 354, a reply that never ends). Every recipient is deferred and its message stays in the
queue, the log says why, the mta is neither restarted nor grown, and the next message goes out
to a well-behaved server."""

import re
import unittest

from harness import Daemon, ThreadedServer, proc_status, submit

TEN_MB = 10 << 20


class ScriptedServer(ThreadedServer):
    """A loopback listener that runs script(sock, reader) on each connection, in a thread; the
    script can be changed between messages."""

    def __init__(self, script):
        self.script = script
        super().__init__(16)

    def session(self, conn):
        self._serve(conn, self.script)

    @staticmethod
    def _serve(sock, script):
        with sock:
            try:
                script(sock, sock.makefile("rb"))
            except OSError:
                pass



EHLO_REPLY = b"250-server.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"


def take_transaction(sock, reader, read_message=True):
    """The server's side of MAIL, the RCPTs and DATA (pipelined, as the mta sends them), all
    taken; then the message to its dot. False when the client did otherwise or went."""
    if not reader.readline().startswith(b"MAIL FROM:"):
        return False
    replies = b"250 2.1.0 ok\r\n"
    line = reader.readline()
    while line.startswith(b"RCPT TO:"):
        replies += b"250 2.1.5 ok\r\n"
        line = reader.readline()
    if line != b"DATA\r\n":
        return False
    sock.sendall(replies + b"354 go ahead\r\n")
    while read_message:
        line = reader.readline()
        if not line:
            return False
        if line == b".\r\n":
            break
    return True


def hello(sock, reader):
    sock.sendall(b"220 server.test ESMTP\r\n")
    if not reader.readline():
        return False
    sock.sendall(EHLO_REPLY)
    return True


class HostileServerTest(unittest.TestCase):
    def setUp(self):
        self.delivered = 0
        self.good = ScriptedServer(self.serve_well)
        self.hostile = ScriptedServer(None)
        self.addCleanup(self.good.close)
        self.addCleanup(self.hostile.close)

    def serve_well(self, sock, reader):
        if not hello(sock, reader):
            return
        while take_transaction(sock, reader):
            self.delivered += 1
            sock.sendall(b"250 2.0.0 queued\r\n")

    def sender(self):
        # A reply that never ends waits out relay_timeouts.data_end, made short here.
        return Daemon(extra=f"""relay_domains: [hostile.test, good.test]
relay_timeouts:
  data_end: 2s
routes:
  - match: [hostile.test]
    via: [smtp://127.0.0.1:{self.hostile.port}]
  - match: [good.test]
    via: [smtp://127.0.0.1:{self.good.port}]
""")

    def test_attacks_defer_and_the_next_message_goes_out(self):
        big = b"Subject: big\r\n\r\n" + b"a line of a message beyond socket buffers\r\n" * 90000

        def reply_after_dot(reply):
            def script(sock, reader):
                if hello(sock, reader) and take_transaction(sock, reader):
                    sock.sendall(reply)
                    reader.read(1 << 20)  # until the client goes
            return script

        def flood(start, repeated):
            def script(sock, reader):
                if hello(sock, reader) and take_transaction(sock, reader):
                    sock.sendall(start)
                    sent = 0
                    chunk = repeated * (65536 // len(repeated))
                    while sent < TEN_MB:
                        sock.sendall(chunk)
                        sent += len(chunk)
            return script

        def drop_mid_message(sock, reader):
            if hello(sock, reader) and take_transaction(sock, reader, read_message=False):
                reader.read(64 * 1024)  # part of the message, then the connection goes

        def final_reply_with_354(sock, reader):
            if hello(sock, reader) and reader.readline().startswith(b"MAIL"):
                while reader.readline().startswith(b"RCPT"):
                    pass
                sock.sendall(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 2.0.0 queued\r\n")
                reader.read(1 << 20)

        def never_ending_reply(sock, reader):
            # Continuation lines, one every half second, never the last one.
            if hello(sock, reader) and take_transaction(sock, reader):
                sock.settimeout(0.5)
                for _ in range(40):
                    sock.sendall(b"250-2.0.0 still thinking\r\n")
                    try:
                        if not sock.recv(4096):
                            return  # the client went
                    except TimeoutError:
                        pass

        end = r"\(in reply to the end of the message\)"
        attacks = [
            (reply_after_dot(b"250-2.0.0 queued\r\n550 5.7.1 refused\r\n"), None,
             r"malformed reply: reply code changed within a reply " + end),
            (flood(b"250 ", b"x"), None, r"reply line too long " + end),
            (flood(b"", b"250-2.0.0 x\r\n"), None,
             r"malformed reply: reply of too many lines " + end),
            (drop_mid_message, big, r"(the connection was closed|connection error: .*) "
                                    r"\(while sending the message\)"),
            (final_reply_with_354, None, r"the server replied out of turn " + end),
            (never_ending_reply, None, r"timed out " + end),
        ]
        with self.sender().start() as d:
            mta = d.status()["mta"]["pid"]
            submit(d.port, ["x@good.test"])  # the connection machinery warm before the figure
            self.assertTrue(d.wait_log(r"to=<x@good\.test>.*status=sent", 20), d.read_log())
            peak_before = int(proc_status(mta)["VmHWM"].split()[0])
            for n, (script, body, why) in enumerate(attacks):
                with self.subTest(why=why):
                    self.hostile.script = script
                    rcpts = [f"a{n}@hostile.test", f"b{n}@hostile.test"]
                    queue_id = submit(d.port, rcpts, body or b"Subject: x\r\n\r\nhello\r\n")
                    for rcpt in rcpts:
                        self.assertTrue(d.wait_log(
                            rf"{queue_id}: to=<{re.escape(rcpt)}>, "
                            rf"relay=127\.0\.0\.1\[127\.0\.0\.1\]:{self.hostile.port}, "
                            rf"tls=none, delay=\d+, delays=\d+\.\d\d/\d+\.\d\d/\d+\.\d\d/\d+\.\d\d, "
                            rf"dsn=4\.\d+\.\d+, status=deferred \({why}\)$", 30),
                            d.read_log()[-3000:])
                    # Still queued, for a later try; never reported sent.
                    self.assertIn(queue_id, d.queued())
                    self.assertNotRegex(d.read_log(), rf"{queue_id}: .*status=sent")
                    # The next message goes out.
                    good = f"after{n}@good.test"
                    submit(d.port, [good])
                    self.assertTrue(d.wait_log(rf"to=<{re.escape(good)}>.*status=sent", 20),
                                    d.read_log()[-3000:])
            self.assertEqual(self.delivered, len(attacks) + 1)
            status = d.status()["mta"]
            self.assertEqual((status["pid"], status["restarts"]), (mta, 0))
            peak_after = int(proc_status(mta)["VmHWM"].split()[0])
            print(f"mta VmHWM {peak_before} KiB before two 10 MB floods, {peak_after} KiB after")
            # Each flood could have cost 10 MB; under 4 MiB in all allows for a sanitizer build.
            self.assertLess(peak_after - peak_before, 4096)


if __name__ == "__main__":
    unittest.main(verbosity=2)
