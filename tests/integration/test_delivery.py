"""Local delivery, first step of the delivery issue: what the queue commits for a local
domain lands in its users' Maildirs (tmp/ then new/), byte-exact after the trace headers,
with one log line per recipient; the message leaves the spool once every recipient is done,
and what could not be delivered stays, with its state, for a retry."""

import grp
import os
import pwd
import re
import select
import shutil
import signal
import socket
import smtplib
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import IS_ROOT, Daemon, Dovecot, free_port, maildir_files, wait_for  # noqa: E402


class Maildir(unittest.TestCase):
    def daemon(self, maildir=True):
        d = Daemon()
        self.mail = os.path.join(d.dir, "mail")
        domain = "  - {name: localhost, users: [alice, bob]"
        domain += f", maildir: {self.mail}/%u/Maildir}}" if maildir else "}"
        d.write_config(d.config_text().replace("domains: [test.example, localhost]",
                                               "domains:\n  - test.example\n" + domain))
        return d

    def send(self, d, rcpts, body=b"Subject: hi\r\n\r\nHello.\r\n"):
        with smtplib.SMTP("127.0.0.1", d.port) as s:
            s.ehlo("client.example")
            s.mail("sender@example.com")
            for r in rcpts:
                self.assertEqual(s.rcpt(r)[0], 250, r)
            code, text = s.data(body)
            self.assertEqual(code, 250)
            return text.decode().split()[-1]

    def test_one_recipient_lands_byte_exact_and_leaves_the_queue(self):
        with self.daemon().start() as d:
            body = b"Subject: exact\r\n\r\ncaf\xc3\xa9\r\n.dot\r\n" + b"z" * 998 + b"\r\n"
            queue_id = self.send(d, ["alice@localhost"], body)
            files = wait_for(lambda: maildir_files(self.mail, "alice"), 5)
            self.assertTrue(files, d.read_log())
            with open(files[0], "rb") as f:
                data = f.read()
            self.assertTrue(data.startswith(b"Return-Path: <sender@example.com>\r\n"
                                            b"Delivered-To: alice@localhost\r\nReceived: "))
            self.assertTrue(data.endswith(b"\r\n" + body), data[-200:])
            self.assertEqual(os.stat(files[0]).st_mode & 0o777, 0o600)
            self.assertEqual(os.listdir(os.path.join(self.mail, "alice", "Maildir", "tmp")), [])
            self.assertTrue(d.wait_log(
                rf"{queue_id}: to=<alice@localhost>, relay=local, delay=\d+, dsn=2\.0\.0, "
                r"status=sent \(delivered to maildir\)"))
            self.assertTrue(wait_for(lambda: queue_id not in d.queued(), 5))
            self.assertTrue(d.wait_log(rf"{queue_id}: event=removed, reason=done"))
            self.assertEqual(d.smtpctl("show", "queue").stdout, "0 messages\n")

    def test_only_the_committed_bytes_are_delivered(self):
        # The envelope's size says where the message ends: bytes written into the spool file
        # after the commit (by a process that kept the file open) are never delivered.
        with self.daemon().start() as d:
            self.assertEqual(d.smtpctl("pause", "mda").stdout, "mda paused\n")
            body = b"Subject: sized\r\n\r\nthe end\r\n"
            queue_id = self.send(d, ["alice@localhost", "postmaster@localhost"], body)
            path = os.path.join(d.spool, "queue", queue_id + ".msg")
            with open(path, "ab") as f:
                f.write(b"appended after the commit\r\n")
            self.assertEqual(d.smtpctl("resume", "mda").stdout, "mda resumed\n")
            for user in ("alice", "postmaster"):
                files = wait_for(lambda u=user: maildir_files(self.mail, u), 5)
                self.assertTrue(files, d.read_log())
                with open(files[0], "rb") as f:
                    self.assertTrue(f.read().endswith(b"\r\n" + body), user)

    def test_fanout_to_two_users_is_one_job(self):
        with self.daemon().start() as d:
            self.send(d, ["alice@localhost", "bob@localhost", "postmaster@localhost"])
            for user in ("alice", "bob", "postmaster"):
                self.assertTrue(wait_for(lambda u=user: maildir_files(self.mail, u), 5), user)
            self.assertTrue(wait_for(lambda: d.queued() == set(), 5))

    def test_undeliverable_recipient_stays_with_its_state(self):
        with self.daemon().start() as d:
            # test.example has no mailbox configured: deferred, kept for a retry.
            queue_id = self.send(d, ["alice@localhost", "carol@test.example"])
            self.assertTrue(wait_for(lambda: maildir_files(self.mail, "alice"), 5))
            self.assertTrue(d.wait_log(rf"{queue_id}: to=<carol@test.example>, relay=local, "
                                       r".*status=deferred \(no mailbox configured"))
            shown = wait_for(lambda: (r := d.smtpctl("show", "envelope", queue_id).stdout)
                             and "alice@localhost delivered" in r and r, 5)
            self.assertIn("recipient: carol@test.example pending attempts=1 last_error=4.3.0 "
                          "no mailbox configured", shown)
            carol = (r"^    carol@test\.example  pending  {} attempts?  next try in (\d+s|\dm)  "
                     r"\(4\.3\.0 no mailbox configured[^)]*\)$")
            queue = d.smtpctl("show", "queue").stdout
            self.assertRegex(queue, re.compile(carol.format(1), re.M))
            self.assertRegex(queue, re.compile(r"^    alice@localhost  delivered  1 attempt$", re.M))
            # States, attempts and the retry time survive a restart: alice is not delivered
            # twice, and carol waits for her retry instead of being tried again at once.
            self.assertTrue(wait_for(lambda: "state 9:delivered" in d.envelope_text(queue_id), 5))
            d.signal(signal.SIGTERM)
            d.wait_exit(5)
            d.start()
            time.sleep(0.5)
            self.assertEqual(d.read_log().count(f"{queue_id}: to=<carol@test.example>"), 1)
            self.assertRegex(d.smtpctl("show", "queue").stdout, re.compile(carol.format(1), re.M))
            # smtpctl schedule does not wait: tried again, and the next delay doubles.
            d.smtpctl("schedule", queue_id, check=True)
            self.assertTrue(d.wait_log(r"status=deferred.*\n(.|\n)*status=deferred"))
            shown = wait_for(lambda: re.search(carol.format(2), d.smtpctl("show", "queue").stdout,
                                               re.M), 5)
            self.assertTrue(shown)
            # 2 x retry_first (60 s) from now
            self.assertTrue(shown.group(1) == "2m" or int(shown.group(1)[:-1]) > 60, shown.group(0))
            self.assertEqual(len(maildir_files(self.mail, "alice")), 1)

    def test_mail_queued_while_undeliverable_goes_out_after_restart(self):
        with self.daemon(maildir=False).start() as d:
            queue_id = self.send(d, ["bob@localhost"])
            self.assertTrue(d.wait_log(rf"{queue_id}: to=<bob@localhost>.*status=deferred"))
            d.signal(signal.SIGTERM)
            d.wait_exit(5)
            fixed = self.daemon()
            with open(fixed.config) as f:
                d.write_config(f.read().replace(fixed.dir, d.dir)
                               .replace(str(fixed.port), str(d.port)))
            self.mail = os.path.join(d.dir, "mail")
            d.start()
            # Its retry is a minute away; smtpctl schedule all sends what waits now.
            self.assertRegex(d.smtpctl("show", "queue").stdout,
                             r"bob@localhost  pending  1 attempt  next try in \d+s")
            d.smtpctl("schedule", "all", check=True)
            self.assertTrue(wait_for(lambda: maildir_files(self.mail, "bob"), 5), d.read_log())
            self.assertTrue(wait_for(lambda: d.queued() == set(), 5))

    def test_deferred_recipients_are_retried_with_backoff(self):
        d = Daemon(extra="limits:\n  retry_first: 1s\n  retry_max: 2s")
        d.write_config(d.config_text())  # test.example has no mailbox: always deferred
        with d.start():
            queue_id = self.send(d, ["carol@test.example"])
            # Attempts at about 0 s, 1 s, 3 s, 5 s: retried by itself, the gap capped at 2 s.
            self.assertTrue(wait_for(lambda: d.read_log().count(
                f"{queue_id}: to=<carol@test.example>") >= 4, 8), d.read_log())

    def test_a_thousand_long_failures_are_all_reported(self):
        # Each result carries its error text with a long path: together far more than one
        # frame holds, so the report goes in several (it was dropped, the recipients left in
        # flight for good).
        d = Daemon()
        blocker = os.path.join(d.dir, "x" * 150)
        d.write_config(d.config_text().replace(
            "domains: [test.example, localhost]",
            f"domains:\n  - test.example\n  - {{name: localhost, maildir: {blocker}/%u/Maildir}}"))
        with d.start():
            # (smtpd makes the folder at start; a file takes its place.)
            os.rmdir(blocker)
            with open(blocker, "w") as f:
                f.write("a file where the Maildirs would go\n")
            queue_id = self.send(d, [f"user{i}@localhost" for i in range(1000)])
            self.assertTrue(wait_for(lambda: d.read_log().count(
                f"{queue_id}: to=<") == 1000, 20), d.read_log()[-2000:])
            log = d.read_log()
            self.assertEqual(log.count("status=deferred (create " + blocker), 1000, log[-2000:])
            self.assertNotIn("cannot report deliveries", log)
            # Recorded, not left in flight: the next attempt is scheduled.
            self.assertTrue(wait_for(lambda: re.search(
                r"recipient: user999@localhost pending attempts=1 last_error=4\.3\.0 create",
                d.smtpctl("show", "envelope", queue_id).stdout), 5))

    def fanout_daemon(self):
        """Any local part of localhost has a Maildir; up to 2,000 recipients a message."""
        d = Daemon(extra="limits:\n  recipients: 2000")
        self.mail = os.path.join(d.dir, "mail")
        d.write_config(d.config_text().replace(
            "domains: [test.example, localhost]",
            f"domains:\n  - {{name: localhost, maildir: {self.mail}/%u/Maildir}}"))
        return d

    def test_mda_killed_in_the_middle_of_a_fanout(self):
        users = 1000
        d = self.fanout_daemon()
        with d.start():
            mda = d.status()["mda"]["pid"]
            queue_id = self.send(d, [f"u{i}@localhost" for i in range(users)])
            os.kill(mda, signal.SIGKILL)
            self.assertTrue(wait_for(lambda: queue_id not in d.queued(), 30), d.read_log())
            counts = [len(maildir_files(self.mail, f"u{i}")) for i in range(users)]
            # Everyone has it; only what mda had in hand when killed may be there twice.
            self.assertEqual(min(counts), 1)
            self.assertLessEqual(max(counts), 2)
            self.assertTrue(d.wait_log(r"mda \(pid \d+\) was killed by signal 9"))

    def test_a_thousand_long_addresses_are_delivered(self):
        # 1,000 addresses of 74 bytes do not fit one frame to mda (64 KiB): the queue cuts
        # the job by size as well as by count.
        users = [f"{i:04d}" + "x" * 60 for i in range(1000)]
        d = self.fanout_daemon()
        with d.start():
            queue_id = self.send(d, [f"{u}@localhost" for u in users])
            self.assertTrue(wait_for(lambda: queue_id not in d.queued(), 30), d.read_log())
            self.assertEqual([len(maildir_files(self.mail, u)) for u in users], [1] * 1000)
            self.assertNotIn("cannot hand the message to mda", d.read_log())

    def test_killed_mda_is_restarted_and_mail_still_delivered(self):
        with self.daemon().start() as d:
            os.kill(d.status()["mda"]["pid"], signal.SIGKILL)
            self.assertTrue(wait_for(lambda: d.fully_wired(d.status()), 3))
            self.send(d, ["alice@localhost"])
            self.assertTrue(wait_for(lambda: maildir_files(self.mail, "alice"), 5))


class MailboxRoots(unittest.TestCase):
    """smtpd prepares virtual users' mailbox roots without taking over what exists: the
    shipped configuration once made /var/mail the daemon's own at every start."""

    @unittest.skipUnless(IS_ROOT, "owners and groups need root")
    def test_existing_root_keeps_owner_and_mode_and_missing_parts_are_made(self):
        d = Daemon()
        mail_gid = grp.getgrnam("mail").gr_gid
        existing = os.path.join(d.dir, "var-mail")  # as Debian's /var/mail: root:mail 2775
        os.mkdir(existing)
        os.chown(existing, 0, mail_gid)
        os.chmod(existing, 0o2775)
        fresh = os.path.join(d.dir, "srv", "vmail")  # neither part exists yet
        d.write_config(d.config_text().replace(
            "domains: [test.example, localhost]",
            "domains:\n  - test.example\n"
            f"  - {{name: localhost, users: [alice], maildir: {existing}/%u/Maildir}}\n"
            f"  - {{name: virtual.example, users: [bob], maildir: {fresh}/%d/%u}}"))

        def unchanged():
            st = os.stat(existing)
            self.assertEqual((st.st_uid, st.st_gid, st.st_mode & 0o7777), (0, mail_gid, 0o2775))

        with d.start():
            unchanged()
            self.assertTrue(d.wait_log(rf"mailbox root {existing} \(owner 0, group {mail_gid}, "
                                       r"mode 2775\) is not writable by the virtual user"))
            virtual = pwd.getpwnam("_smtpd")
            above, root = os.stat(os.path.dirname(fresh)), os.stat(fresh)
            self.assertEqual((above.st_uid, above.st_mode & 0o7777), (0, 0o755))
            self.assertEqual((root.st_uid, root.st_gid, root.st_mode & 0o7777),
                             (virtual.pw_uid, virtual.pw_gid, 0o700))
            # Mail for the root the virtual user cannot write waits in the queue; the other
            # root works.
            m = Maildir()
            queue_id = m.send(d, ["alice@localhost"])
            m.send(d, ["bob@virtual.example"])
            bob = os.path.join(fresh, "virtual.example", "bob", "new")
            self.assertTrue(wait_for(lambda: os.path.isdir(bob) and os.listdir(bob), 5),
                            d.read_log())
            self.assertTrue(d.wait_log(rf"{queue_id}: to=<alice@localhost>.*status=deferred"))
            self.assertIn(queue_id, d.queued())
            d.signal(signal.SIGHUP)
            self.assertTrue(d.wait_log(r"configuration reloaded"))
            unchanged()


class Mbox(unittest.TestCase):
    def daemon(self):
        """A daemon whose localhost users have mbox files in the returned directory."""
        d = Daemon()
        boxes = os.path.join(d.dir, "mbox")
        d.write_config(d.config_text().replace(
            "domains: [test.example, localhost]",
            f"domains:\n  - test.example\n  - {{name: localhost, mbox: {boxes}/%u}}"))
        return d, boxes

    def test_mbox_with_a_from_line_in_the_body(self):
        import mailbox
        d, boxes = self.daemon()
        with d.start():
            m = Maildir()
            body = b"Subject: mbox\r\n\r\nFrom the beginning\r\n>From quoted\r\nend\r\n"
            for _ in range(2):
                m.send(d, ["bob@localhost"], body)
            path = os.path.join(boxes, "bob")
            self.assertTrue(wait_for(lambda: d.read_log().count("delivered to mbox") == 2, 5),
                            d.read_log())
            with open(path, "rb") as f:
                raw = f.read()
            self.assertIn(b"\n>From the beginning\n>>From quoted\n", raw)
            box = mailbox.mbox(path)
            messages = list(box)
            self.assertEqual(len(messages), 2)
            self.assertEqual(messages[0]["Subject"], "mbox")
            self.assertEqual(messages[0]["Delivered-To"], "bob@localhost")
            self.assertTrue(messages[0].get_from().startswith("sender@example.com "))
            self.assertFalse(os.path.exists(path + ".lock"))
            self.assertTrue(wait_for(lambda: d.queued() == set(), 5))

    def test_mailboxes_that_are_not_the_recipients_own_are_deferred(self):
        """A hostile local user plants a mailbox for a recipient: their own file, a second
        name for a file mda may write, a link to elsewhere. Each delivery is deferred, the
        planted file untouched, and the message stays queued."""
        d, boxes = self.daemon()
        with d.start():
            # smtpd made the mailbox root for the virtual user; the attacker may write in it
            # (a shared group, say): here root plants the files in the attacker's place.
            self.assertTrue(os.path.isdir(boxes))
            virtual = os.stat(boxes)
            nobody = pwd.getpwnam("nobody")
            foreign = os.path.join(boxes, "alice")
            with open(foreign, "wb") as f:
                f.write(b"someone else's file\n")
            os.chmod(foreign, 0o666)
            os.chown(foreign, nobody.pw_uid, nobody.pw_gid)
            victim = os.path.join(boxes, "victim")
            with open(victim, "wb") as f:
                f.write(b"the virtual user's other file\n")
            os.chown(victim, virtual.st_uid, virtual.st_gid)
            os.link(victim, os.path.join(boxes, "bob"))
            target = os.path.join(d.dir, "elsewhere")
            with open(target, "wb") as f:
                f.write(b"not a mailbox\n")
            os.chown(target, virtual.st_uid, virtual.st_gid)
            os.symlink(target, os.path.join(boxes, "carol"))
            m = Maildir()
            ids = [m.send(d, [f"{user}@localhost"]) for user in ("alice", "bob", "carol")]
            for queue_id, why in ((ids[0], r"is owned by uid \d+, not by the recipient"),
                                  (ids[1], r"has 2 links, not 1"),
                                  (ids[2], r"is a symbolic link")):
                self.assertTrue(d.wait_log(rf"{queue_id}: to=<\w+@localhost>.*"
                                           rf"status=deferred \(.*{why}"), (why, d.read_log()))
            for path, text in ((foreign, b"someone else's file\n"),
                               (victim, b"the virtual user's other file\n"),
                               (target, b"not a mailbox\n")):
                with open(path, "rb") as f:
                    self.assertEqual(f.read(), text)
            self.assertEqual(d.queued(), set(ids))
            # Once the mailbox is the recipient's own, the queued message is delivered.
            os.unlink(foreign)
            d.smtpctl("schedule", "all")
            def delivered():
                if not os.path.exists(foreign):
                    return False
                with open(foreign, "rb") as f:
                    return b"Subject: hi" in f.read()
            self.assertTrue(wait_for(delivered, 10), d.read_log())
            self.assertEqual(os.stat(foreign).st_uid, virtual.st_uid)


class Lmtp(unittest.TestCase):
    """LMTP into a real Dovecot, read back over IMAP."""

    def test_delivery_into_dovecot_with_per_recipient_answers(self):
        import imaplib
        d = Daemon()
        dovecot = Dovecot(d.dir, {"alice": "wonderland", "bob": "builder"})
        try:
            d.write_config(d.config_text().replace(
                "domains: [test.example, localhost]",
                f"domains:\n  - test.example\n  - {{name: localhost, "
                f"lmtp: 127.0.0.1:{dovecot.lmtp_port}}}"))
            with d.start():
                m = Maildir()
                body = b"Subject: via lmtp\r\n\r\n.leading dot\r\nthe body\r\n"
                queue_id = m.send(d, ["alice@localhost", "bob@localhost", "carol@localhost"],
                                  body)
                # One transaction, one answer each: Dovecot knows alice and bob, not carol.
                self.assertTrue(d.wait_log(rf"{queue_id}: to=<alice@localhost>, relay=local, "
                                           r".*dsn=2\.0\.0, status=sent \(delivered over LMTP\)"),
                                d.read_log())
                self.assertTrue(d.wait_log(rf"{queue_id}: to=<bob@localhost>.*status=sent"))
                self.assertTrue(d.wait_log(rf"{queue_id}: to=<carol@localhost>.*dsn=5\.1\.1, "
                                           r"status=bounced \(LMTP RCPT refused"))
                imap = imaplib.IMAP4("127.0.0.1", dovecot.imap_port)
                imap.login("alice", "wonderland")
                imap.select("INBOX")
                _, ids = imap.search(None, "ALL")
                self.assertEqual(len(ids[0].split()), 1)
                _, data = imap.fetch(ids[0].split()[0], "(RFC822)")
                fetched = data[0][1]
                imap.logout()
                self.assertTrue(fetched.startswith(b"Return-Path: <sender@example.com>\r\n"),
                                fetched[:200])
                self.assertTrue(fetched.endswith(body), fetched[-200:])
        finally:
            dovecot.stop()

    def test_stuck_lmtp_server_does_not_hold_maildir_deliveries(self):
        # Takes connections (the kernel completes them) and never answers: an LMTP delivery
        # waits for its 60 s timeout.
        stuck = socket.socket()
        stuck.bind(("127.0.0.1", 0))
        stuck.listen(8)
        d = Daemon()
        mail = os.path.join(d.dir, "mail")
        d.write_config(d.config_text().replace(
            "domains: [test.example, localhost]",
            f"domains:\n  - {{name: slow.example, lmtp: 127.0.0.1:{stuck.getsockname()[1]}}}\n"
            f"  - {{name: localhost, users: [alice], maildir: {mail}/%u/Maildir}}"))
        try:
            with d.start():
                m = Maildir()
                waiting = m.send(d, ["bob@slow.example"])
                # mda has connected (the listening socket turns readable) and waits.
                self.assertTrue(select.select([stuck], [], [], 5)[0], d.read_log())
                fast = m.send(d, ["alice@localhost"])
                self.assertTrue(d.wait_log(rf"{fast}: to=<alice@localhost>.*status=sent"),
                                d.read_log())
                self.assertEqual(len(maildir_files(mail, "alice")), 1)
                self.assertNotIn(f"{waiting}: to=", d.read_log())  # still talking to the server
        finally:
            stuck.close()

    def test_stuck_lmtp_server_holds_neither_mbox_nor_other_lmtp_deliveries(self):
        """LMTP runs on mda's event loop: twelve messages for a server that takes connections
        and never answers open ten connections (the per-server bound) and wait; meanwhile mbox
        deliveries, which keep their own thread, and a well-behaved LMTP server get their mail.
        When the stuck server goes, its messages are deferred, none lost."""
        stuck = SilentServer()
        good = LmtpServer()
        d = Daemon()
        boxes = os.path.join(d.dir, "mbox")
        d.write_config(d.config_text().replace(
            "domains: [test.example, localhost]",
            f"domains:\n  - {{name: slow.example, lmtp: 127.0.0.1:{stuck.port}}}\n"
            f"  - {{name: well.example, lmtp: 127.0.0.1:{good.port}}}\n"
            f"  - {{name: localhost, users: [alice, bob], mbox: {boxes}/%u}}"))
        try:
            with d.start():
                m = Maildir()
                slow = [m.send(d, [f"user{i}@slow.example"]) for i in range(12)]
                # Every connection up at once, up to the bound; the other two transactions wait.
                self.assertTrue(wait_for(lambda: stuck.count() == 10, 10),
                                (stuck.count(), d.read_log()))
                fast = [m.send(d, ["alice@localhost", "bob@localhost"]) for _ in range(3)]
                well = m.send(d, ["carol@well.example"])
                for queue_id in fast:
                    for user in ("alice", "bob"):
                        self.assertTrue(d.wait_log(rf"{queue_id}: to=<{user}@localhost>, .*"
                                                   r"status=sent \(delivered to mbox\)"),
                                        d.read_log())
                self.assertTrue(d.wait_log(rf"{well}: to=<carol@well\.example>, .*"
                                           r"status=sent \(delivered over LMTP\)"), d.read_log())
                self.assertEqual(good.messages, 1)
                import mailbox
                for user in ("alice", "bob"):
                    box = mailbox.mbox(os.path.join(boxes, user))
                    self.assertEqual(len(box), 3)
                    box.close()
                # Ordering, not timing: all of that while the stuck server's mail is unanswered
                # and no eleventh connection was opened.
                log = d.read_log()
                for queue_id in slow:
                    self.assertNotIn(f"{queue_id}: to=", log)
                self.assertEqual(stuck.count(), 10)
                # The server goes: each of its messages is deferred for a retry.
                stuck.close()
                for i, queue_id in enumerate(slow):
                    self.assertTrue(d.wait_log(rf"{queue_id}: to=<user{i}@slow\.example>, .*"
                                               r"status=deferred"), d.read_log())
                self.assertEqual(d.queued() & set(slow), set(slow))
        finally:
            stuck.close()
            good.stop()

    def test_lmtp_server_down_defers(self):
        d = Daemon()
        d.write_config(d.config_text().replace(
            "domains: [test.example, localhost]",
            f"domains:\n  - {{name: localhost, lmtp: 127.0.0.1:{free_port()}}}"))
        with d.start():
            queue_id = Maildir().send(d, ["alice@localhost"])
            self.assertTrue(d.wait_log(rf"{queue_id}: to=<alice@localhost>, .*dsn=4\.4\.1, "
                                       r"status=deferred \(cannot connect"))


class SilentServer:
    """Takes connections on a free loopback port and never says a word; counts them."""

    def __init__(self):
        import threading
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            with self.lock:
                self.conns.append(conn)

    def count(self):
        with self.lock:
            return len(self.conns)

    def close(self):
        if self.stopping:
            return
        self.stopping = True
        self.thread.join(5)
        self.sock.close()
        with self.lock:
            for conn in self.conns:
                conn.close()


class LmtpServer:
    """An LMTP server (asyncio, on its own thread) that answers RCPT with rcpt_reply and a
    message, after data_delay seconds, with 250; it counts the messages it took."""

    def __init__(self, rcpt_reply=b"250 2.1.5 Ok\r\n", data_delay=0.0):
        import asyncio
        import threading
        self.loop = asyncio.new_event_loop()
        self.messages = 0
        self.data_started = threading.Event()
        started = threading.Event()

        async def session(reader, writer):
            writer.write(b"220 test LMTP\r\n")
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb == b"DATA":
                    writer.write(b"354 go ahead\r\n")
                    await writer.drain()
                    while (await reader.readline()) not in (b".\r\n", b""):
                        pass
                    self.data_started.set()
                    await asyncio.sleep(data_delay)
                    self.messages += 1
                    writer.write(b"250 2.0.0 Ok\r\n")
                else:
                    writer.write({b"LHLO": b"250 test\r\n", b"MAIL": b"250 2.1.0 Ok\r\n",
                                  b"RCPT": rcpt_reply, b"RSET": b"250 2.0.0 Ok\r\n",
                                  b"QUIT": b"221 bye\r\n"}.get(verb, b"502 5.5.2 no\r\n"))
                await writer.drain()
                if verb == b"QUIT":
                    break
            writer.close()

        async def serve():
            self.server = await asyncio.start_server(session, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]
            started.set()

        self.thread = threading.Thread(
            target=lambda: (self.loop.run_until_complete(serve()), self.loop.run_forever()),
            daemon=True)
        self.thread.start()
        started.wait(5)

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def lmtp_daemon(port):
    """A daemon whose localhost mail goes to the LMTP server on port."""
    d = Daemon()
    d.write_config(d.config_text().replace(
        "domains: [test.example, localhost]",
        f"domains:\n  - {{name: localhost, lmtp: 127.0.0.1:{port}}}"))
    return d


class OrderlyStop(unittest.TestCase):
    def test_a_delivery_under_way_at_sigterm_is_made_once(self):
        """SIGTERM while an LMTP server takes 1.5 s to accept a message: mda finishes the
        transaction and reports it, the queue (stopped last) records it, and the restart
        does not deliver it again."""
        server = LmtpServer(data_delay=1.5)
        d = lmtp_daemon(server.port)
        try:
            with d.start():
                queue_id = Maildir().send(d, ["alice@localhost"])
                self.assertTrue(server.data_started.wait(10), d.read_log())
                d.signal(signal.SIGTERM)
                d.wait_exit(8)
                self.assertEqual(server.messages, 1, d.read_log())
                self.assertIn(f"{queue_id}: to=<alice@localhost>", d.read_log())
                d.start()
                self.assertTrue(wait_for(lambda: d.queued() == set(), 5), d.read_log())
                time.sleep(0.5)
                self.assertEqual(server.messages, 1, d.read_log())
        finally:
            server.stop()


class LogInjection(unittest.TestCase):
    def test_remote_reply_with_bare_lf_cannot_forge_a_log_line(self):
        # The RCPT reply carries a bare LF and, after it, text made to look like a log line.
        server = LmtpServer(rcpt_reply=b"452 4.2.2 full\nstatus=sent to=<x>\r\n")
        d = lmtp_daemon(server.port)
        try:
            with d.start():
                queue_id = Maildir().send(d, ["alice@localhost"])
                self.assertTrue(d.wait_log(rf"{queue_id}: to=<alice@localhost>, .*dsn=4\.2\.2, "
                                           r"status=deferred \(LMTP RCPT refused: 4\.2\.2 full"
                                           r"\\nstatus=sent to=<x>\)"), d.read_log())
                lines = d.read_log().splitlines()
                self.assertEqual([l for l in lines if l.startswith("status=sent")], [])
                self.assertEqual([l for l in lines if "status=sent" in l and queue_id in l
                                  and "deferred" not in l], [])
        finally:
            server.stop()


class Bounces(unittest.TestCase):
    def daemon(self, extra=""):
        d = Daemon(extra=extra)
        self.mail = os.path.join(d.dir, "mail")
        aliases = os.path.join(d.dir, "aliases")
        with open(aliases, "w") as f:
            # A command that refuses the message: a permanent failure.
            f.write('broken: "|echo no mailbox for this one; exit 1"\n'
                    # An alias to several destinations, and one to a single address elsewhere.
                    "team: alice, bob, pal@remote.example\n"
                    "fwd: friend@remote.example\n")
        d.write_config(d.config_text().replace(
            "domains: [test.example, localhost]",
            f"domains:\n  - test.example\n  - {{name: localhost, aliases: {aliases}, "
            f"maildir: {self.mail}/%u/Maildir}}"))
        return d

    def send(self, d, sender, rcpts, params=()):
        with smtplib.SMTP("127.0.0.1", d.port) as s:
            s.ehlo("x")
            s.mail(sender, list(params))
            for r in rcpts:
                s.rcpt(r[0], r[1]) if isinstance(r, tuple) else s.rcpt(r)
            return s.data(b"Subject: original\r\nX-Marker: orig\r\n\r\nthe body\r\n")[1].decode().split()[-1]

    def notification(self, d, queue_id, kind, user):
        """The one notification of this kind about queue_id, as delivered to user's Maildir."""
        self.assertTrue(d.wait_log(rf"{queue_id}: event=notify, kind={kind}, result=queued, notification=[0-9a-f]{{16}}"),
                        d.read_log())
        files = wait_for(lambda: maildir_files(self.mail, user), 5)
        self.assertEqual(len(files), 1, d.read_log())
        with open(files[0], "rb") as f:
            return f.read()

    def test_permanent_failure_bounces_to_the_sender(self):
        with self.daemon().start() as d:
            queue_id = self.send(d, "alice@localhost", ["broken@localhost"], ["ENVID=E42"])
            self.assertTrue(d.wait_log(rf"{queue_id}: to=<broken@localhost>, .*dsn=5\.3\.0, "
                                       r"status=bounced \(command exited with status 1: "
                                       r"no mailbox for this one\)"))
            bounce = self.notification(d, queue_id, "non-delivery", "alice")
            self.assertTrue(bounce.startswith(b"Return-Path: <>\r\nDelivered-To: alice@localhost\r\n"))
            self.assertIn(b"Content-Type: multipart/report; report-type=delivery-status", bounce)
            self.assertIn(b"Final-Recipient: rfc822; broken@localhost\r\nAction: failed\r\n"
                          b"Status: 5.3.0\r\n", bounce)
            self.assertIn(b"Original-Envelope-Id: E42\r\n", bounce)
            self.assertIn(b"X-Marker: orig\r\n\r\nthe body\r\n", bounce)  # RET default: full
            # Both the original and the delivered bounce leave the queue.
            self.assertTrue(wait_for(lambda: d.queued() == set(), 5))

    def test_no_bounce_to_the_null_sender_or_when_notify_says_no(self):
        with self.daemon().start() as d:
            first = self.send(d, "", ["broken@localhost"])
            self.assertTrue(d.wait_log(rf"{first}: event=notify, kind=non-delivery, result=skipped, reason=\"null sender\""))
            second = self.send(d, "alice@localhost", [("broken@localhost", ["NOTIFY=NEVER"])])
            self.assertTrue(d.wait_log(rf"{second}: to=<broken@localhost>.*status=bounced"))
            self.assertTrue(wait_for(lambda: d.queued() == set(), 5))
            self.assertEqual(maildir_files(self.mail, "alice"), [])
            self.assertNotIn("kind=non-delivery, result=queued", d.read_log())

    def test_notify_success_reports_deliveries_and_expansions(self):
        with self.daemon().start() as d:
            queue_id = self.send(d, "carol@localhost", [
                ("alice@localhost", ["NOTIFY=SUCCESS", "ORCPT=rfc822;Alice@localhost"]),
                ("team@localhost", ["NOTIFY=SUCCESS,FAILURE"]),
                ("fwd@localhost", ["NOTIFY=SUCCESS"]),
                "bob@localhost"], ["RET=FULL", "ENVID=S1"])
            dsn = self.notification(d, queue_id, "delivery", "carol")
            self.assertIn(b"Subject: Successful Mail Delivery Report\r\n", dsn)
            self.assertIn(b"Original-Envelope-Id: S1\r\n", dsn)
            self.assertIn(b"Final-Recipient: rfc822; alice@localhost\r\n"
                          b"Original-Recipient: rfc822; Alice@localhost\r\n"
                          b"Action: delivered\r\nStatus: 2.0.0\r\n", dsn)
            self.assertIn(b"Final-Recipient: rfc822; team@localhost\r\n"
                          b"Action: expanded\r\nStatus: 2.0.0\r\n", dsn)
            # bob did not ask; fwd's one address elsewhere reports from the next hop; only
            # the headers come back, whatever RET said.
            self.assertEqual(dsn.count(b"Final-Recipient:"), 2, dsn)
            self.assertIn(b"Content-Type: text/rfc822-headers\r\n", dsn)
            self.assertIn(b"X-Marker: orig\r\n", dsn)
            self.assertNotIn(b"the body", dsn)
            # The forwards wait for mta: fwd's keeps its NOTIFY, team's members do not report
            # success again.
            shown = d.smtpctl("show", "envelope", queue_id, check=True).stdout
            self.assertIn("recipient: friend@remote.example pending notify=success", shown)
            self.assertIn("recipient: pal@remote.example pending notify=failure", shown)

    def test_no_delivery_notification_to_the_null_sender(self):
        with self.daemon().start() as d:
            queue_id = self.send(d, "", [("alice@localhost", ["NOTIFY=SUCCESS"])])
            self.assertTrue(d.wait_log(rf"{queue_id}: event=notify, kind=delivery, result=skipped, reason=\"null sender\""))
            self.assertTrue(wait_for(lambda: d.queued() == set(), 5))
            self.assertEqual(len(maildir_files(self.mail, "alice")), 1)

    def test_delay_reported_once_to_those_who_asked(self):
        with self.daemon(extra="limits:\n  delay_warning: 1s").start() as d:
            # test.example has no mailbox: deferred at every attempt.
            queue_id = self.send(d, "alice@localhost", [
                ("carol@test.example", ["NOTIFY=DELAY,FAILURE"]),
                "dave@test.example", ("erin@test.example", ["NOTIFY=FAILURE"])], ["RET=FULL"])
            self.assertTrue(d.wait_log(rf"{queue_id}: to=<erin@test.example>.*deferred"))
            self.assertNotIn("kind=delay, result=queued", d.read_log())  # not yet 1 s
            time.sleep(1.2)
            d.smtpctl("schedule", queue_id, check=True)
            dsn = self.notification(d, queue_id, "delay", "alice")
            self.assertIn(b"Subject: Delayed Mail (still being retried)\r\n", dsn)
            self.assertRegex(dsn, rb"Final-Recipient: rfc822; carol@test\.example\r\n"
                                  rb"Action: delayed\r\nStatus: 4\.\d\.\d\r\n"
                                  rb"Diagnostic-Code: X-Postern; .+\r\n"
                                  rb"Will-Retry-Until: .+ [+-]\d{4}\r\n")
            self.assertEqual(dsn.count(b"Final-Recipient:"), 1, dsn)  # only carol asked
            self.assertIn(b"Content-Type: text/rfc822-headers\r\n", dsn)
            self.assertNotIn(b"the body", dsn)
            # Recorded by an envelope update, which may come a few ms after the notification.
            self.assertTrue(wait_for(
                lambda: "delay_reported 1:1\n" in d.envelope_text(queue_id), 5))
            # Once per message, across a restart too.
            d.signal(signal.SIGTERM)
            d.wait_exit(5)
            d.start()
            d.smtpctl("schedule", queue_id, check=True)
            self.assertTrue(wait_for(lambda: d.read_log().count(
                f"{queue_id}: to=<carol@test.example>") >= 3, 5), d.read_log())
            time.sleep(0.3)
            self.assertEqual(d.read_log().count("kind=delay, result=queued"), 1, d.read_log())
            self.assertEqual(len(maildir_files(self.mail, "alice")), 1)

    def test_expired_message_bounces(self):
        # Ages are whole seconds: with an expiry of 1 s the first attempt could already see
        # the message as expired when it settles across a second boundary. With 3 s the first
        # attempt (milliseconds after the 250) defers, and only the scheduled one expires.
        with self.daemon(extra="limits:\n  expire: 3s").start() as d:
            # test.example has no mailbox: deferred until it expires.
            queue_id = self.send(d, "alice@localhost", ["carol@test.example"], ["RET=HDRS"])
            self.assertTrue(d.wait_log(rf"{queue_id}: to=<carol@test.example>.*deferred"))
            import time
            time.sleep(3.1)
            d.smtpctl("schedule", queue_id, check=True)
            self.assertTrue(d.wait_log(rf"{queue_id}: to=<carol@test.example>, relay=local, "
                                       r"dsn=4\.4\.7, status=expired \(message expired"))
            files = wait_for(lambda: maildir_files(self.mail, "alice"), 5)
            self.assertTrue(files, d.read_log())
            with open(files[0], "rb") as f:
                bounce = f.read()
            self.assertIn(b"Status: 4.4.7\r\n", bounce)
            self.assertIn(b"Content-Type: text/rfc822-headers", bounce)
            self.assertNotIn(b"the body", bounce)
            self.assertTrue(wait_for(lambda: d.queued() == set(), 5))


class Routing(unittest.TestCase):
    """Aliases (recursive, :include:, commands, files, forwards, loops), a virtual users table
    with per-user deliveries, and system users delivered as themselves."""

    def daemon(self, aliases, users_table="", extra_domains="", localhost=""):
        d = Daemon()
        self.mail = os.path.join(d.dir, "mail")
        # Commands run as mda's user: give them somewhere to write.
        self.out = os.path.join(d.dir, "out")
        os.makedirs(self.out, mode=0o777)
        # Sticky, as /tmp: mbox files of aliases may not sit where anyone may rename them.
        os.chmod(self.out, 0o1777)
        self.aliases = os.path.join(d.dir, "aliases")
        with open(self.aliases, "w") as f:
            f.write(aliases.format(out=self.out, dir=d.dir))
        table = os.path.join(d.dir, "virtual-users")
        with open(table, "w") as f:
            f.write(users_table.format(out=self.out, dir=d.dir))
        d.write_config(d.config_text().replace(
            "domains: [test.example, localhost]",
            "domains:\n  - test.example\n"
            f"  - {{name: localhost, users: [alice, bob, carol], aliases: {self.aliases}, "
            f"maildir: {self.mail}/%u/Maildir{localhost}}}\n"
            f"  - {{name: virtual.example, users: {table}, maildir: {self.mail}/%d/%u}}\n"
            + extra_domains))
        return d

    def send(self, d, rcpts, sender="sender@example.com", body=b"Subject: r\r\n\r\nbody\r\n"):
        with smtplib.SMTP("127.0.0.1", d.port) as s:
            s.ehlo("client.example")
            s.mail(sender)
            for r in rcpts:
                self.assertEqual(s.rcpt(r)[0], 250, (r, d.read_log()))
            code, text = s.data(body)
            self.assertEqual(code, 250)
            return text.decode().split()[-1]

    def send_expecting(self, d, replies, body=b"Subject: r\r\n\r\nbody\r\n"):
        """RCPT for each (address, reply code it must get), then the message."""
        with smtplib.SMTP("127.0.0.1", d.port) as s:
            s.ehlo("client.example")
            s.mail("sender@example.com")
            for rcpt, code in replies:
                self.assertEqual(s.rcpt(rcpt)[0], code, (rcpt, d.read_log()))
            self.assertEqual(s.data(body)[0], 250)

    def read(self, path):
        with open(path, "rb") as f:
            return f.read()

    def test_command_delivery_exit_0_75_and_1(self):
        with self.daemon(
                'ok: "|cat > {out}/ok"\n'
                'later: "|test -e {out}/ready || exit 75; cat > {out}/later"\n'
                'broken: "|echo refused by the filter; exit 1"\n').start() as d:
            body = b"Subject: cmd\r\n\r\nline one\r\n.dot line\r\n"
            queue_id = self.send(d, ["ok@localhost", "later@localhost", "broken@localhost"],
                                 sender="alice@localhost", body=body)
            # Exit 0: delivered, the message on stdin with LF line ends.
            ok = os.path.join(self.out, "ok")
            self.assertTrue(wait_for(lambda: os.path.exists(ok) and self.read(ok).endswith(
                b"line one\n.dot line\n"), 5), d.read_log())
            data = self.read(ok)
            self.assertTrue(data.startswith(b"Return-Path: <alice@localhost>\n"
                                            b"Delivered-To: ok@localhost\nReceived: "), data)
            self.assertNotIn(b"\r", data)
            self.assertTrue(d.wait_log(rf"{queue_id}: to=<ok@localhost>, .*dsn=2\.0\.0, "
                                       r"status=sent"))
            # Exit 75: deferred, and delivered once it can be.
            self.assertTrue(d.wait_log(rf"{queue_id}: to=<later@localhost>, .*dsn=4\.3\.0, "
                                       r"status=deferred \(command exited with status 75"))
            # Exit 1: bounced to the sender, with what the command said.
            self.assertTrue(d.wait_log(rf"{queue_id}: to=<broken@localhost>, .*dsn=5\.3\.0, "
                                       r"status=bounced \(command exited with status 1: "
                                       r"refused by the filter\)"))
            bounces = wait_for(lambda: maildir_files(self.mail, "alice"), 5)
            self.assertEqual(len(bounces), 1, d.read_log())
            self.assertIn(b"Final-Recipient: rfc822; broken@localhost", self.read(bounces[0]))
            open(os.path.join(self.out, "ready"), "w").close()
            d.smtpctl("schedule", queue_id, check=True)
            later = os.path.join(self.out, "later")
            self.assertTrue(wait_for(lambda: os.path.exists(later) and self.read(later).endswith(
                b".dot line\n"), 5), d.read_log())
            self.assertTrue(wait_for(lambda: queue_id not in d.queued(), 5))
            # "ok" ran once: not again at the retry.
            self.assertEqual(len(re.findall(rf"{queue_id}: to=<ok@localhost>", d.read_log())), 1)

    def test_alias_loops_and_unknown_users_are_refused_at_rcpt(self):
        with self.daemon("loop1: loop2\nloop2: loop3\nloop3: loop1\n"
                         "fine: alice\n").start() as d:
            with smtplib.SMTP("127.0.0.1", d.port) as s:
                s.ehlo("x")
                s.mail("sender@example.com")
                code, text = s.rcpt("loop2@localhost")
                self.assertEqual((code, text), (550, b"5.4.6 Alias loop"))
                code, text = s.rcpt("nobody@localhost")
                self.assertEqual((code, text), (550, b"5.1.1 User unknown"))
                self.assertEqual(s.rcpt("fine@localhost")[0], 250)
                self.assertEqual(s.rcpt("nobody@virtual.example")[0], 550)

    def test_aliases_expand_through_includes_files_and_forwards(self):
        members = "{dir}/members"
        d = self.daemon(
                "postmaster: alice\n"
                "team: bob, :include:" + members + ", staff\n"
                "staff: carol, alice@localhost, /{out}/archive.mbox, friend@remote.example\n"
                "carol: carol, bob\n")
        with open(os.path.join(d.dir, "members"), "w") as f:
            f.write("# people\nalice\n")
        os.chmod(os.path.join(d.dir, "members"), 0o644)
        with d.start():
            queue_id = self.send(d, ["team@localhost", "Postmaster@localhost"])
            # alice (named by both recipients: delivered once), bob, carol; an mbox file.
            for user, count in (("alice", 1), ("bob", 1), ("carol", 1)):
                self.assertTrue(wait_for(lambda: len(maildir_files(self.mail, user)) == count, 5),
                                (user, d.read_log()))
            files = maildir_files(self.mail, "alice")
            tos = sorted(self.read(f).split(b"\r\n")[1] for f in files)
            self.assertEqual(tos, [b"Delivered-To: alice@localhost"])
            mbox = os.path.join(self.out, "archive.mbox")
            self.assertTrue(wait_for(lambda: os.path.exists(mbox), 5))
            self.assertTrue(self.read(mbox).startswith(b"From sender@example.com "))
            # The remote address becomes a recipient of the message, for mta.
            self.assertTrue(d.wait_log(rf"{queue_id}: event=forward, to=<team@localhost>, "
                                       r"forward_to=<friend@remote.example>"))
            self.assertTrue(wait_for(lambda: "friend@remote.example" in
                                     d.smtpctl("show", "envelope", queue_id).stdout, 5))

    def test_include_files_of_others_name_no_commands_or_files(self):
        """A local user who can write an :include: file (or whose group can) makes it name a
        command and a file: refused at RCPT, nothing runs. A root-owned 0644 one is
        honoured where the domain allows it."""
        lists = {"trusted": (0, 0o644), "foreign": (pwd.getpwnam("nobody").pw_uid, 0o644),
                 "shared": (0, 0o664)}
        d = self.daemon("".join(f"{name}: :include:{{dir}}/{name}\n" for name in lists),
                        localhost=", alias_commands: [aliases, include], "
                                  "alias_files: [aliases, include]")
        for name, (owner, mode) in lists.items():
            path = os.path.join(d.dir, name)
            with open(path, "w") as f:
                f.write(f'"|touch {self.out}/{name}-ran"\n{self.out}/{name}.mbox\n')
            os.chown(path, owner, -1)
            os.chmod(path, mode)
        with d.start():
            self.send_expecting(d, [("foreign@localhost", 550), ("shared@localhost", 550),
                                    ("trusted@localhost", 250)])
            self.assertTrue(wait_for(lambda: os.path.exists(f"{self.out}/trusted-ran") and
                                     os.path.exists(f"{self.out}/trusted.mbox"), 10),
                            d.read_log())
            self.assertTrue(wait_for(lambda: d.queued() == set(), 5))
            log = d.read_log()
            self.assertRegex(log, rf"command for foreign@localhost in {d.dir}/foreign refused: "
                                  r"owned by uid \d+, neither root nor the aliases file's owner")
            self.assertIn(f"command for shared@localhost in {d.dir}/shared refused: writable "
                          "by its group or by everyone", log)
        for name in ("foreign", "shared"):
            self.assertFalse(os.path.exists(f"{self.out}/{name}-ran"))
            self.assertFalse(os.path.exists(f"{self.out}/{name}.mbox"))

    def test_include_files_name_no_commands_by_default(self):
        d = self.daemon("list: :include:{dir}/list\nrobot: \"|touch {out}/robot-ran\"\n")
        path = os.path.join(d.dir, "list")
        with open(path, "w") as f:
            f.write(f'"|touch {self.out}/list-ran"\n')
        os.chmod(path, 0o644)
        with d.start():
            # The aliases file itself may name commands.
            self.send_expecting(d, [("list@localhost", 550), ("robot@localhost", 250)])
            self.assertTrue(wait_for(lambda: os.path.exists(f"{self.out}/robot-ran"), 10))
            self.assertIn(f"command for list@localhost in {path} refused: alias_commands does "
                          "not allow :include: files", d.read_log())
        self.assertFalse(os.path.exists(f"{self.out}/list-ran"))

    def test_a_mailbox_named_by_two_recipients_gets_one_copy(self):
        # Duplicates are eliminated after alias expansion, per message and final destination
        # (a Maildir, a command as one user), and each recipient is reported delivered.
        with self.daemon('postmaster: alice\n'
                         'hook1: "|cat >> {out}/hook"\n'
                         'hook2: "|cat >> {out}/hook"\n').start() as d:
            queue_id = self.send(d, ["alice@localhost", "postmaster@localhost",
                                     "hook1@localhost", "hook2@localhost"])
            for rcpt in ("alice", "postmaster", "hook1", "hook2"):
                self.assertTrue(d.wait_log(rf"{queue_id}: to=<{rcpt}@localhost>, relay=local, "
                                           r".*dsn=2\.0\.0, status=sent"), (rcpt, d.read_log()))
            self.assertTrue(wait_for(lambda: queue_id not in d.queued(), 5))
            files = maildir_files(self.mail, "alice")
            self.assertEqual(len(files), 1, d.read_log())
            self.assertIn(b"\r\nDelivered-To: alice@localhost\r\n", self.read(files[0]))
            self.assertEqual(self.read(os.path.join(self.out, "hook")).count(b"body\n"), 1)

    def test_virtual_users_table_with_own_deliveries(self):
        with self.daemon("", users_table="erin\nfrank mbox:{out}/frank.mbox\n"
                         "gus command:cat > {out}/gus\n").start() as d:
            self.send(d, ["erin@virtual.example", "frank@virtual.example", "Gus@virtual.example"])
            erin = os.path.join(self.mail, "virtual.example", "erin", "new")
            self.assertTrue(wait_for(lambda: os.path.isdir(erin) and os.listdir(erin), 5),
                            d.read_log())
            self.assertTrue(wait_for(lambda: os.path.exists(os.path.join(self.out, "frank.mbox")), 5))
            gus = os.path.join(self.out, "gus")
            self.assertTrue(wait_for(lambda: os.path.exists(gus) and b"body" in self.read(gus), 5))
            self.assertIn(b"Delivered-To: gus@virtual.example\n", self.read(gus))

    @unittest.skipUnless(IS_ROOT, "delivering as a system user needs root")
    def test_system_user_mail_is_owned_by_the_user(self):
        name = "postern-t%d" % (os.getpid() % 100000)
        home = tempfile.mkdtemp(prefix="postern-home-")
        # Not --system: system accounts (below min_uid, 1000) are no mailboxes.
        subprocess.run(["useradd", "--home-dir", home, "--no-create-home",
                        "--shell", "/usr/sbin/nologin", name], check=True)
        try:
            pw = pwd.getpwnam(name)
            os.chown(home, pw.pw_uid, pw.pw_gid)
            os.chmod(home, 0o700)
            extra = (f"  - {{name: users.example, users: system, aliases: {{dir}}/sys-aliases, "
                     f"maildir: ~/Maildir}}\n")
            d = self.daemon("", extra_domains=extra.replace("{dir}", "DIR"))
            with open(d.config) as f:
                d.write_config(f.read().replace("DIR", d.dir))
            with open(os.path.join(d.dir, "sys-aliases"), "w") as f:
                f.write(f"root: {name}\npostmaster: root\n")
            with d.start():
                self.send(d, [f"{name}@users.example", "postmaster@users.example"])
                new = os.path.join(home, "Maildir", "new")
                # postmaster -> root -> the user: one Maildir, one copy for both recipients.
                self.assertTrue(wait_for(lambda: os.path.isdir(new) and len(os.listdir(new)) == 1,
                                         5), d.read_log())
                for entry in os.listdir(new) + [""]:
                    st = os.stat(os.path.join(new, entry))
                    self.assertEqual((st.st_uid, st.st_gid), (pw.pw_uid, pw.pw_gid), entry)
                # The helper ran as the user, and mda never as root. The files reach new/
                # before mda reports them and the queue logs the delivery.
                self.assertTrue(d.wait_log(r"to=<postmaster@users\.example>.*status=sent"),
                                d.read_log())
                with smtplib.SMTP("127.0.0.1", d.port) as s:
                    s.ehlo("x")
                    s.mail("sender@example.com")
                    self.assertEqual(s.rcpt("no-such-account@users.example")[0], 550, d.read_log())
                # Accounts come from lookup's cache after the first question: the user was asked
                # for at RCPT, again through postmaster -> root -> user, and again at delivery.
                stats = d.smtpctl("show", "stats", check=True).stdout
                self.assertRegex(stats, r"system users: [1-9]\d* cache hits, [23] misses")
        finally:
            subprocess.run(["userdel", name], check=False)
            shutil.rmtree(home, ignore_errors=True)


    def test_system_accounts_and_the_daemons_users_are_unknown_at_rcpt(self):
        for account in ("_smtpq", "daemon", "bin"):
            if not self.has_account(account):
                self.skipTest(f"the test needs the {account} account")
        d = self.daemon("", extra_domains=(
            "  - {name: users.example, users: system, maildir: ~/Maildir}\n"
            "  - {name: low.example, users: system, min_uid: 1, maildir: ~/Maildir}\n"))
        with d.start():
            with smtplib.SMTP("127.0.0.1", d.port) as s:
                s.ehlo("x")
                s.mail("sender@example.com")
                for local in ("_smtpq", "_smtpd", "daemon", "bin", "root", "nobody"):
                    if self.has_account(local):
                        self.assertEqual(s.rcpt(f"{local}@users.example"),
                                         (550, b"5.1.1 User unknown"), local)
                # min_uid is honoured: at 1, bin is a mailbox; the daemon's users and root
                # still are not.
                self.assertEqual(s.rcpt("bin@low.example")[0], 250, d.read_log())
                for local in ("_smtpq", "root"):
                    self.assertEqual(s.rcpt(f"{local}@low.example"),
                                     (550, b"5.1.1 User unknown"), local)

    @staticmethod
    def has_account(name):
        try:
            pwd.getpwnam(name)
            return True
        except KeyError:
            return False


class Smtpctl(unittest.TestCase):
    def test_pause_resume_schedule_remove(self):
        m = Maildir()
        with m.daemon().start() as d:
            self.assertEqual(d.smtpctl("pause", "mda").stdout, "mda paused\n")
            queue_id = m.send(d, ["alice@localhost"])
            self.assertFalse(wait_for(lambda: maildir_files(m.mail, "alice"), 1))
            self.assertEqual(d.smtpctl("resume", "mda").stdout, "mda resumed\n")
            self.assertTrue(wait_for(lambda: maildir_files(m.mail, "alice"), 5))

            # Deferred (no mailbox for test.example): schedule retries at once.
            deferred = m.send(d, ["carol@test.example"])
            self.assertTrue(d.wait_log(rf"{deferred}: to=<carol@test.example>.*deferred"))
            r = d.smtpctl("schedule", deferred)
            self.assertEqual((r.returncode, r.stdout), (0, "1 scheduled\n"))
            self.assertTrue(wait_for(lambda: d.read_log().count(
                f"{deferred}: to=<carol@test.example>") == 2, 5))
            r = d.smtpctl("schedule", "0123456789abcdef")
            self.assertEqual(r.returncode, 1)
            self.assertIn("no message 0123456789abcdef", r.stderr)

            r = d.smtpctl("remove", deferred)
            self.assertEqual((r.returncode, r.stdout), (0, "1 removed\n"))
            self.assertTrue(wait_for(lambda: deferred not in d.queued(), 5))
            self.assertTrue(d.wait_log(rf"{deferred}: event=removed, reason=smtpctl"))
            m.send(d, ["dave@test.example"])
            m.send(d, ["erin@test.example"])
            self.assertEqual(d.smtpctl("remove", "all").stdout, "2 removed\n")
            self.assertTrue(wait_for(lambda: d.queued() == set(), 5))

    def test_pause_smtp(self):
        import socket
        with Daemon().start() as d:
            self.assertEqual(d.smtpctl("pause", "smtp").stdout, "smtp paused\n")
            s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
            s.settimeout(1)
            with self.assertRaises(socket.timeout):
                s.recv(100)  # waits in the backlog, not greeted
            self.assertEqual(d.smtpctl("resume", "smtp").stdout, "smtp resumed\n")
            s.settimeout(5)
            self.assertTrue(s.recv(100).startswith(b"220 "))
            s.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
