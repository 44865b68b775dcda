"""smtpctl as an administrator and a script use it, against the real daemon: show queue's
filters, show envelope and show message, the queue's shape, --json against the golden schema
(tests/data/smtpctl/schema.json, documented in docs/smtpctl-json.md), exit codes, monitor,
holding one message or one domain, remove twice, the command log with the caller's uid,
encrypt, and a large queue listed in bounded pages."""

import json
import os
import pwd
import re
import smtplib
import socket
import subprocess
import sys
import tempfile
import unittest
import warnings

import jsonschema

with warnings.catch_warnings():
    # Python's crypt(3) binding (libxcrypt here): deprecated in 3.11, present until 3.13.
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

sys.path.insert(0, os.path.dirname(__file__))
from harness import (SMTPCTL, Daemon, maildir_files, quarantine_bounded_env,  # noqa: E402
                     sanitized_build, wait_for)

SCHEMA_PATH = os.path.join(os.path.dirname(__file__), "..", "data", "smtpctl", "schema.json")
with open(SCHEMA_PATH) as f:
    SCHEMA = json.load(f)


def check_schema(test, view, lines):
    """Every line one JSON object of the view's definition in the golden schema."""
    schema = {"$schema": SCHEMA["$schema"], "$defs": SCHEMA["$defs"], "$ref": f"#/$defs/{view}"}
    objects = []
    for line in lines:
        o = json.loads(line)
        try:
            jsonschema.validate(o, schema)
        except jsonschema.ValidationError as e:
            test.fail(f"{view}: {e.message} in {line}")
        objects.append(o)
    return objects


def send(d, sender, rcpts, body=b"Subject: hi\r\n\r\nHello.\r\n"):
    with smtplib.SMTP("127.0.0.1", d.port) as s:
        s.ehlo("client.example")
        s.mail(sender)
        for r in rcpts:
            code, _ = s.rcpt(r)
            assert code == 250, r
        code, text = s.data(body)
        assert code == 250
        return text.decode().split()[-1]


class Smtpctl(unittest.TestCase):
    def maildir_daemon(self, extra=""):
        d = Daemon(extra=extra)
        self.mail = os.path.join(d.dir, "mail")
        d.write_config(d.config_text().replace(
            "domains: [test.example, localhost]",
            "domains:\n  - test.example\n  - {name: localhost, users: [alice, bob], "
            f"maildir: {self.mail}/%u/Maildir}}"))
        return d

    def json_lines(self, d, *args):
        r = d.smtpctl("--json", *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.splitlines()

    def test_show_queue_filters(self):
        with self.maildir_daemon().start() as d:
            self.assertEqual(d.smtpctl("pause", "mda").returncode, 0)
            a = send(d, "alice@senders.example", ["bob@localhost", "x@test.example"])
            b = send(d, "Bob@Other.example", ["alice@localhost"])
            c = send(d, "carol@senders.example", ["y@test.example"])

            def ids(*filters):
                r = d.smtpctl("show", "queue", *filters)
                self.assertEqual(r.returncode, 0, r.stderr)
                return {line.split()[0] for line in r.stdout.splitlines() if re.match(r"^[0-9a-f]{16} ", line)}

            self.assertEqual(ids(), {a, b, c})
            self.assertEqual(ids("from", "senders.example"), {a, c})
            self.assertEqual(ids("from", "bob@other"), {b})  # case ignored
            self.assertEqual(ids("to", "alice@"), {b})
            self.assertEqual(ids("domain", "test.example"), {a, c})
            self.assertEqual(ids("domain", "localhost", "from", "carol"), set())
            self.assertEqual(ids("state", "pending"), {a, b, c})
            self.assertEqual(ids("state", "delivered"), set())
            self.assertEqual(ids("older", "1h"), set())
            self.assertEqual(ids("newer", "1h"), {a, b, c})
            r = d.smtpctl("show", "queue", "from", "senders.example")
            self.assertEqual(r.stdout.splitlines()[-1], "2 messages")
            # The same selection as JSON lines.
            objects = check_schema(self, "queue", self.json_lines(d, "show", "queue", "domain", "localhost"))
            self.assertEqual({o["id"] for o in objects}, {a, b})
            held = [rc for o in objects for rc in o["recipients"] if rc["address"].endswith("@localhost")]
            self.assertEqual({rc["wait"] for rc in held}, {"paused"})
            r = d.smtpctl("show", "queue", "state", "lost")
            self.assertEqual(r.returncode, 2)
            self.assertIn("state is pending, delivered or failed", r.stderr)

    def test_show_envelope_and_message(self):
        with self.maildir_daemon().start() as d:
            d.smtpctl("pause", "mda", check=True)
            body = b"Subject: bytes\r\n\r\ncaf\xc3\xa9 \x1b[31mred\r\n"
            queue_id = send(d, "sender@example.com", ["alice@localhost"], body)
            r = d.smtpctl("show", "envelope", queue_id)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(f"id: {queue_id}\n", r.stdout)
            self.assertRegex(r.stdout, r"\narrival: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(\d+s ago\)\n")
            self.assertIn("\nrecipient: alice@localhost pending wait=paused (smtpctl resume mda)\n", r.stdout)
            # What the message does not have is a "-", never a blank.
            self.assertIn("\nauth: -\ntls: -\n", r.stdout)
            self.assertNotRegex(r.stdout, r"(?m) $")
            # show message: the spool's bytes, as postcat -q (piped: as they are).
            r = subprocess.run([SMTPCTL, "-s", d.socket, "show", "message", queue_id], capture_output=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, d.message_bytes(queue_id))
            self.assertTrue(r.stdout.endswith(body))
            [line] = self.json_lines(d, "show", "message", queue_id)
            [o] = check_schema(self, "message", [line])
            self.assertEqual(o["data"].encode(), d.message_bytes(queue_id))
            [line] = self.json_lines(d, "show", "envelope", queue_id)
            [o] = check_schema(self, "envelope", [line])
            self.assertEqual((o["id"], o["sender"], o["recipients"][0]["address"]),
                             (queue_id, "sender@example.com", "alice@localhost"))
            for what in ("envelope", "message"):
                r = d.smtpctl("show", what, "0000000000000000")
                self.assertEqual(r.returncode, 1)
                self.assertIn("no message 0000000000000000", r.stderr)

    def test_json_of_every_show(self):
        with self.maildir_daemon().start() as d:
            d.smtpctl("pause", "mda", check=True)
            send(d, "sender@example.com", ["alice@localhost", "x@test.example"])
            status = check_schema(self, "status", self.json_lines(d, "show", "status"))
            self.assertEqual({o["process"] for o in status},
                             {"parent", "smtp", "queue", "mda", "mta", "lookup", "control"})
            queue = next(o for o in status if o["process"] == "queue")
            self.assertEqual(queue["counters"]["queued"], 1)
            check_schema(self, "queue", self.json_lines(d, "show", "queue"))
            shape = check_schema(self, "shape", self.json_lines(d, "show", "shape"))
            self.assertEqual(shape[0]["domain"], None)
            self.assertEqual(shape[0]["total"], 1)
            self.assertEqual({o["domain"]: o["total"] for o in shape[1:]},
                             {"localhost": 1, "test.example": 1})
            for view in ("stats", "relays", "hosts", "routes"):
                [o] = check_schema(self, "text_view", self.json_lines(d, "show", view))
                self.assertEqual(o["view"], view)
            # --json after the command, as with postqueue -j habits.
            r = d.smtpctl("show", "status", "--json")
            self.assertEqual(r.returncode, 0, r.stderr)
            check_schema(self, "status", r.stdout.splitlines())
            r = d.smtpctl("--json", "remove", "all")
            self.assertEqual(r.returncode, 2)

    def test_shape(self):
        with self.maildir_daemon().start() as d:
            d.smtpctl("pause", "mda", check=True)
            send(d, "s@example.com", ["alice@localhost", "bob@localhost"])
            send(d, "s@example.com", ["bob@localhost", "x@test.example"])
            send(d, "s@example.com", ["y@test.example"])
            r = d.smtpctl("show", "shape")
            self.assertEqual(r.returncode, 0, r.stderr)
            lines = r.stdout.splitlines()
            self.assertEqual(lines[0].split(), ["T", "5", "10", "20", "40", "80", "160", "320", "640", "1280", "1280+"])
            rows = {line.split()[0]: [int(v) for v in line.split()[1:]] for line in lines[1:]}
            self.assertEqual(rows["TOTAL"], [3, 3] + [0] * 9)
            # A message counts once per destination domain it waits for.
            self.assertEqual(rows["localhost"], [2, 2] + [0] * 9)
            self.assertEqual(rows["test.example"], [2, 2] + [0] * 9)

    def test_exit_codes(self):
        with Daemon().start() as d:
            self.assertEqual(d.smtpctl("show", "status").returncode, 0)
            self.assertEqual(d.smtpctl("remove", "0000000000000000").returncode, 1)
            self.assertEqual(d.smtpctl("frobnicate").returncode, 2)
            self.assertEqual(d.smtpctl("show", "queue", "older").returncode, 2)
        with Daemon() as d:
            r = d.smtpctl("show", "status")
            self.assertEqual(r.returncode, 3)
            self.assertIn("smtpd is not running", r.stderr)
        # A socket where nothing answers: no answer, 4 (after smtpctl's 10 s wait).
        with tempfile.TemporaryDirectory(prefix="postern-test-") as directory, \
                socket.socket(socket.AF_UNIX) as silent:
            path = os.path.join(directory, "silent.sock")
            silent.bind(path)
            silent.listen(1)
            r = subprocess.run([SMTPCTL, "-s", path, "show", "status"], capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 4, r.stderr)
            self.assertIn("no answer from smtpd", r.stderr)

    def test_monitor(self):
        with self.maildir_daemon().start() as d:
            r = d.smtpctl("monitor", "3")
            self.assertEqual(r.returncode, 0, r.stderr)
            lines = r.stdout.splitlines()
            self.assertEqual(lines[0].split(), ["sessions", "conn/s", "recv/s", "queued", "mda", "mta",
                                                "sent/s", "defer/s", "bounce/s", "expire/s"])
            self.assertEqual(len(lines), 4, r.stdout)
            for line in lines[1:]:
                self.assertRegex(line, r"^(\s+\d+){10}$")
            # What happened in the second is counted in the line after it.
            with subprocess.Popen([SMTPCTL, "-s", d.socket, "monitor", "4"], stdout=subprocess.PIPE,
                                  text=True) as proc:
                first = proc.stdout.readline() + proc.stdout.readline()
                send(d, "s@example.com", ["alice@localhost"])
                rest = proc.stdout.read()
                self.assertEqual(proc.wait(10), 0)
            out = (first + rest).splitlines()
            received = [int(line.split()[2]) for line in out[1:]]
            self.assertEqual(sum(received), 1, out)

    def test_hold_an_envelope_and_a_domain(self):
        with self.maildir_daemon().start() as d:
            d.smtpctl("pause", "mda", check=True)
            one = send(d, "s@example.com", ["alice@localhost"])
            two = send(d, "s@example.com", ["bob@localhost"])
            self.assertEqual(d.smtpctl("pause", "envelope", one).stdout, f"{one} held\n")
            self.assertEqual(d.smtpctl("resume", "mda").stdout, "mda resumed\n")
            self.assertTrue(wait_for(lambda: maildir_files(self.mail, "bob"), 5), d.read_log())
            self.assertEqual(maildir_files(self.mail, "alice"), [])
            self.assertIn(f"next try after smtpctl resume envelope {one} (held)", d.smtpctl("show", "queue").stdout)
            self.assertEqual(d.smtpctl("resume", "envelope", one).stdout, f"{one} resumed\n")
            self.assertTrue(wait_for(lambda: maildir_files(self.mail, "alice"), 5), d.read_log())
            # A destination domain: held for every message until resumed.
            self.assertEqual(d.smtpctl("pause", "domain", "LocalHost").stdout, "localhost held\n")
            three = send(d, "s@example.com", ["alice@localhost"])
            self.assertTrue(d.wait_log(rf"{three}: event=queued, from=\"?<s@example.com>"))
            r = d.smtpctl("--json", "show", "envelope", three)
            self.assertEqual(json.loads(r.stdout)["recipients"][0]["wait"], "held")
            self.assertEqual(len(maildir_files(self.mail, "alice")), 1)
            self.assertEqual(d.smtpctl("resume", "domain", "localhost").stdout, "localhost resumed\n")
            self.assertTrue(wait_for(lambda: len(maildir_files(self.mail, "alice")) == 2, 5), d.read_log())
            r = d.smtpctl("pause", "envelope", "0000000000000000")
            self.assertEqual((r.returncode, r.stderr), (1, "smtpctl: no message 0000000000000000\n"))

    def test_remove_twice_counts_once(self):
        with self.maildir_daemon().start() as d:
            d.smtpctl("pause", "mda", check=True)
            ids = [send(d, "s@example.com", ["alice@localhost"]) for _ in range(20)]
            # Back to back: the second comes while the first's removals are being written.
            first = subprocess.run([SMTPCTL, "-s", d.socket, "remove", "all"], capture_output=True, text=True)
            second = subprocess.run([SMTPCTL, "-s", d.socket, "remove", "all"], capture_output=True, text=True)
            self.assertEqual(first.stdout, "20 removed\n")
            self.assertEqual(second.stdout, "0 removed\n")
            r = d.smtpctl("remove", ids[0])
            self.assertEqual((r.returncode, r.stderr), (1, f"smtpctl: no message {ids[0]}\n"))
            self.assertEqual(d.smtpctl("show", "queue").stdout, "0 messages\n")

    def test_a_remote_recipient_waits_for_mta_not_mda(self):
        with Daemon(extra="relay_domains: [relay.test]").start() as d:
            d.smtpctl("pause", "mta", check=True)
            queue_id = send(d, "s@example.com", ["far@relay.test"])
            self.assertTrue(d.wait_log(rf"{queue_id}: event=queued, from="))
            shown = d.smtpctl("show", "queue").stdout
            self.assertIn("far@relay.test  pending  0 attempts  next try after smtpctl resume mta (paused)", shown)
            self.assertNotIn("mda", shown)
            d.smtpctl("resume", "mta", check=True)
            d.smtpctl("pause", "mda", check=True)
            self.assertEqual(d.smtpctl("schedule", queue_id).stdout, "1 scheduled\n")

    def test_every_command_is_logged_with_the_callers_uid(self):
        with Daemon().start() as d:
            d.smtpctl("show", "queue", check=True)
            d.smtpctl("remove", "0000000000000000")
            uid = os.geteuid()
            self.assertTrue(d.wait_log(rf"smtpd-control\[\d+\]: event=command, "
                                       rf"command=ctl_show_queue, uid={uid}, pid=\d+, client=\d+"))
            self.assertTrue(d.wait_log(rf"event=command, command=ctl_remove, uid={uid}, pid=\d+"))
            # And how each ended, where its answer says.
            self.assertTrue(d.wait_log(r"event=result, command=ctl_show_queue, client=\d+, "
                                       r"result=ok"))

    def test_encrypt(self):
        r = subprocess.run([SMTPCTL, "encrypt", "s3cret"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        hashed = r.stdout.strip()
        self.assertRegex(hashed, r"^\$(y|2b|6)\$")
        self.assertEqual(crypt.crypt("s3cret", hashed), hashed)
        self.assertNotEqual(crypt.crypt("other", hashed), hashed)
        # From standard input (a script), a fresh salt each time.
        r = subprocess.run([SMTPCTL, "encrypt"], input="s3cret\n", capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(crypt.crypt("s3cret", r.stdout.strip()), r.stdout.strip())
        self.assertNotEqual(r.stdout.strip(), hashed)
        r = subprocess.run([SMTPCTL, "encrypt"], input="", capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)

    def test_a_large_queue_is_listed_in_bounded_pages(self):
        # About 5 MB of listing, more than the queue's channel to control may hold queued
        # (4 MiB): one answer holding it all could not be sent. Pages keep control's memory
        # flat: its peak (VmHWM) grows by far less than the listing.
        messages, per_message = 400, 100
        local = "r" * 50
        # Under AddressSanitizer freed memory waits in a quarantine before reuse, so the peak
        # would count every page control ever sent: without one, it counts what control holds.
        with self.maildir_daemon().start(env=quarantine_bounded_env(0)) as d:
            d.smtpctl("pause", "mda", check=True)
            with socket.create_connection(("127.0.0.1", d.port)) as s:
                f = s.makefile("rb")
                f.readline()
                s.sendall(b"EHLO client.example\r\n")
                while not f.readline().startswith(b"250 "):
                    pass
                for m in range(messages):
                    batch = b"MAIL FROM:<s@example.com>\r\n" + b"".join(
                        f"RCPT TO:<{local}{m:04d}x{i:03d}@test.example>\r\n".encode() for i in range(per_message)) + b"DATA\r\n"
                    s.sendall(batch)
                    for _ in range(per_message + 2):
                        self.assertIn(f.readline()[:3], (b"250", b"354"))
                    s.sendall(b"Subject: many\r\n\r\nx\r\n.\r\n")
                    self.assertEqual(f.readline()[:3], b"250")
            control = d.status()["control"]["pid"]

            def hwm():
                with open(f"/proc/{control}/status") as st:
                    return int(re.search(r"VmHWM:\s+(\d+) kB", st.read()).group(1)) * 1024

            before = hwm()
            r = subprocess.run([SMTPCTL, "-s", d.socket, "show", "queue"], capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr)
            listing = len(r.stdout)
            lines = r.stdout.splitlines()
            self.assertEqual(lines[-1], f"{messages} messages")
            self.assertEqual(sum(1 for line in lines if line.startswith(f"    {local}")), messages * per_message)
            self.assertGreater(listing, 4 * 1024 * 1024)
            grown = hwm() - before
            print(f"\nlisting {listing} bytes; control's VmHWM grew by {grown} bytes", file=sys.stderr)
            # Holding the listing would grow it by more than the listing. AddressSanitizer's
            # shadow and allocator caches add their own (1.7 MB of 5.6 MB measured there).
            self.assertLess(grown, listing // 2 if sanitized_build() else listing // 8)
            r = subprocess.run([SMTPCTL, "-s", d.socket, "--json", "show", "queue"], capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(len(r.stdout.splitlines()), messages)


def as_nobody(*argv):
    """argv run as nobody, without root's groups: a local user with no right to the daemon."""
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           *argv], capture_output=True, text=True, timeout=30)


@unittest.skipUnless(os.geteuid() == 0, "acting as another local user needs root")
class PublicViews(unittest.TestCase):
    """control.public: the views it names, and nothing else, for every local user."""

    def daemon(self, views):
        d = Daemon()
        self.mail = os.path.join(d.dir, "mail")
        text = d.config_text().replace(
            "domains: [test.example, localhost]",
            "domains:\n  - test.example\n  - {name: localhost, users: [alice], "
            f"maildir: {self.mail}/%u/Maildir}}")
        if views:
            text = text.replace(f"  socket: {d.socket}\n",
                                f"  socket: {d.socket}\n  public: [{views}]\n")
        d.write_config(text)
        return d

    def test_opened_views_and_nothing_else(self):
        with self.daemon("status, queue").start() as d:
            public = os.path.join(d.run_dir, "smtpd-public.sock")
            st = os.stat(public)
            self.assertEqual((st.st_uid, st.st_mode & 0o777), (0, 0o666))
            self.assertEqual(os.stat(d.socket).st_mode & 0o777, 0o600)
            d.smtpctl("pause", "mda", check=True)
            queue_id = send(d, "sender@example.com", ["alice@localhost"])
            # The opened views: smtpctl turns to the public socket by itself.
            r = as_nobody(SMTPCTL, "-s", d.socket, "show", "status")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("queue", r.stdout)
            r = as_nobody(SMTPCTL, "-s", d.socket, "show", "queue")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(queue_id, r.stdout)
            self.assertIn("alice@localhost", r.stdout)
            # A view not opened, and every command, sent straight to the public socket (what a
            # hostile local user would do): refused, logged with the uid, nothing done.
            nobody = pwd.getpwnam("nobody").pw_uid
            for words in (["show", "stats"], ["show", "message", queue_id],
                          ["show", "envelope", queue_id], ["remove", queue_id],
                          ["resume", "mda"], ["log", "verbose"], ["reload"], ["stop"]):
                r = as_nobody(SMTPCTL, "-s", public, *words)
                self.assertEqual(r.returncode, 1, (words, r.stdout, r.stderr))
                self.assertIn("not open to every user", r.stderr)
                self.assertNotIn("Hello.", r.stdout)
            self.assertTrue(d.wait_log(rf"uid {nobody}\) asked the public socket for more than "
                                       r"control.public opens; refused"))
            self.assertTrue(d.wait_log(rf"event=command, command=ctl_stop, uid={nobody}, "
                                       r"pid=\d+, client=\d+, socket=public"))
            self.assertTrue(d.wait_log(r'event=result, command=ctl_stop, client=\d+, '
                                       r'result=failed, reason="not open to every user'))
            # The same commands on the control socket: the kernel turns nobody away.
            r = as_nobody(SMTPCTL, "-s", d.socket, "remove", queue_id)
            self.assertEqual(r.returncode, 3, r.stderr)
            self.assertIn("Permission denied", r.stderr)
            # Nothing happened: the daemon runs, the message waits, mda is still paused.
            self.assertIsNone(d.proc.poll())
            r = d.smtpctl("show", "queue", check=True)
            self.assertIn(queue_id, r.stdout)
            self.assertEqual(maildir_files(self.mail, "alice"), [])
            d.smtpctl("resume", "mda", check=True)
            self.assertTrue(wait_for(lambda: maildir_files(self.mail, "alice"), 10))
        self.assertFalse(os.path.lexists(public), "the public socket outlived the daemon")

    def test_nothing_is_open_by_default(self):
        with self.daemon("").start() as d:
            self.assertFalse(os.path.lexists(os.path.join(d.run_dir, "smtpd-public.sock")))
            r = as_nobody(SMTPCTL, "-s", d.socket, "show", "status")
            self.assertEqual(r.returncode, 3, r.stderr)
            self.assertIn("Permission denied", r.stderr)
            self.assertEqual(d.smtpctl("show", "status").returncode, 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
