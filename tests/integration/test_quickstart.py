"""The quick start as README shows it: etc/quickstart.yaml and the files it names, copied into a
temporary checkout-like tree with free ports, run by the real daemon beside scripts/sink. Local
mail lands in var/mail/, mail for sink.test is relayed to the sink and kept in var/sink/, and
smtpctl -f with the same file answers show routes. Only what a test must change is changed:
the ports, a run_dir (the default as root is /run/postern, shared by every test) and a DNS
resolver that keeps questions on this machine."""

import os
import re
import shutil
import subprocess
import sys
import unittest

from harness import SMTPCTL, Daemon, free_port, maildir_files, submit, wait_for

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


class QuickStart(unittest.TestCase):
    def setUp(self):
        self.daemon = Daemon()  # its directory, log and process handling; the config is ours
        top = self.daemon.dir
        etc = os.path.join(top, "etc")
        os.makedirs(etc)
        for name in ("quickstart-aliases", "quickstart-credentials"):
            shutil.copy(os.path.join(ROOT, "etc", name), etc)
        tls = os.path.join(top, "var", "tls")
        os.makedirs(tls)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                        os.path.join(tls, "key.pem"), "-out", os.path.join(tls, "cert.pem"),
                        "-days", "2", "-subj", "/CN=localhost"],
                       check=True, capture_output=True)
        self.ports = {old: free_port() for old in (2525, 2587, 2465, 2526, 9587)}
        with open(os.path.join(ROOT, "etc", "quickstart.yaml")) as f:
            text = f.read()
        for old, new in self.ports.items():
            text, count = re.subn(rf"127\.0\.0\.1:{old}\b", f"127.0.0.1:{new}", text)
            self.assertEqual(count, 1, f"port {old} in etc/quickstart.yaml")
        text += (f"run_dir: {os.path.join(top, 'run')}\n"
                 f"dns:\n  resolvers: [\"127.0.0.1@{free_port()}\"]\n  timeout: 1\n")
        self.config = os.path.join(etc, "quickstart.yaml")
        with open(self.config, "w") as f:
            f.write(text)
        os.chmod(self.config, 0o644)
        self.daemon.config = self.config
        self.daemon.socket = os.path.join(top, "var", "run", "smtpd.sock")
        self.daemon.port = self.ports[2525]
        self.sink_dir = os.path.join(top, "var", "sink")
        self.sink = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "scripts", "sink"), "--listen",
             f"127.0.0.1:{self.ports[2526]}", "--dir", self.sink_dir],
            stdout=subprocess.PIPE, text=True)
        self.assertIn("listening", self.sink.stdout.readline())
        self.mail = os.path.join(top, "var", "mail")

    def tearDown(self):
        self.sink.kill()
        self.sink.wait()
        self.sink.stdout.close()
        self.daemon.__exit__(None, None, None)

    def sunk(self):
        return sorted(os.listdir(self.sink_dir)) if os.path.isdir(self.sink_dir) else []

    def test_local_mail_and_mail_relayed_to_the_sink(self):
        d = self.daemon.start()
        submit(self.ports[2525], ["alice@localhost"])
        self.assertTrue(wait_for(lambda: maildir_files(self.mail, "alice"), 20), d.read_log())
        body = b"Subject: out\r\n\r\nto the sink\r\n.dot\r\n"
        queue_id = submit(self.ports[2525], ["bob@sink.test"], body)
        self.assertTrue(wait_for(self.sunk, 20), d.read_log())
        with open(os.path.join(self.sink_dir, self.sunk()[0]), "rb") as f:
            kept = f.read()
        self.assertTrue(kept.startswith(b"X-Sink-From: <someone@example.com>\r\n"
                                        b"X-Sink-To: <bob@sink.test>\r\n"), kept[:200])
        self.assertTrue(kept.endswith(b"\r\n" + body), kept[-200:])
        self.assertRegex(d.read_log(), rf"{queue_id}: to=<bob@sink\.test>, relay=127\.0\.0\.1"
                                       rf"\[127\.0\.0\.1\]:{self.ports[2526]}, .*status=sent")
        # Anyone may send to sink.test (relay_domains); not to another remote domain.
        with self.assertRaises(AssertionError):
            submit(self.ports[2525], ["carol@example.org"])
        shown = subprocess.run([SMTPCTL, "-f", self.config, "show", "routes"],
                               capture_output=True, text=True, timeout=30)
        self.assertEqual(shown.returncode, 0, shown.stderr)
        self.assertEqual(shown.stdout,
                         f"route 0: sink.test, *.sink.test -> smtp://127.0.0.1:{self.ports[2526]} "
                         "(tls opportunistic)\nother remote mail: by MX, tls opportunistic\n")


if __name__ == "__main__":
    unittest.main()
