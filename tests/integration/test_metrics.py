"""The metrics endpoint (smtpd.yaml metrics): the real daemon serves Prometheus text from its
control process; mail sent through it shows in the figures, promtool accepts the text, a real
Prometheus server scrapes it, and hostile scrapers (one that never reads, one that sends a huge request, many connections) stop
neither SMTP nor the next scrape."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, free_port, maildir_files, submit, wait_for  # noqa: E402

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def parse(text):
    """{(name, labels text): value} for every sample line."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            raise AssertionError(f"not a sample line: {line!r}")
        samples[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return samples


class Metrics(unittest.TestCase):
    def daemon(self, host="127.0.0.1"):
        self.metrics_port = free_port(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        self.metrics_host = host
        address = f"[{host}]:{self.metrics_port}" if ":" in host else f"{host}:{self.metrics_port}"
        self.dead = free_port()
        d = Daemon(extra=f"""metrics: {{listen: "{address}"}}
relay_domains: [relay.test]
routes:
  - match: relay.test
    via: smtp://127.0.0.1:{self.dead}
""")
        self.mail = os.path.join(d.dir, "mail")
        domain = f"  - {{name: localhost, users: [alice], maildir: {self.mail}/%u/Maildir}}"
        d.write_config(d.config_text().replace("domains: [test.example, localhost]",
                                               "domains:\n  - test.example\n" + domain))
        return d

    def url(self, path="/metrics"):
        host = f"[{self.metrics_host}]" if ":" in self.metrics_host else self.metrics_host
        return f"http://{host}:{self.metrics_port}{path}"

    def scrape(self, timeout=10):
        with urllib.request.urlopen(self.url(), timeout=timeout) as r:
            self.assertEqual(r.status, 200)
            self.assertTrue(r.headers["Content-Type"].startswith("text/plain; version=0.0.4"))
            return r.read().decode()

    def assert_promtool_accepts(self, text):
        if not PROMTOOL:
            self.fail("promtool is not installed (scripts/setup installs prometheus)")
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr + "\n" + text)

    def test_mail_shows_in_the_figures_and_promtool_accepts_them(self):
        with self.daemon().start() as d:
            before = parse(self.scrape())
            self.assertEqual(before[("postern_up", '{process="control"}')], 1)
            for process in ("parent", "smtp", "queue", "mda", "mta", "lookup", "control"):
                self.assertEqual(before[("postern_up", f'{{process="{process}"}}')], 1, process)
            local = ("postern_deliveries_total", '{method="local",status="delivered"}')
            self.assertEqual(before.get(local, 0), 0)
            submit(d.port, ["alice@localhost"])
            submit(d.port, ["alice@localhost"])
            submit(d.port, ["bob@relay.test"])
            with self.assertRaises(AssertionError):  # 550 5.1.1
                submit(d.port, ["nobody@localhost"])
            self.assertTrue(wait_for(lambda: len(maildir_files(self.mail, "alice")) == 2, 10))
            remote = ("postern_deliveries_total", '{method="remote",status="deferred"}')
            after = wait_for(lambda: (s := parse(self.scrape())).get(local, 0) == 2 and
                             s.get(remote, 0) >= 1 and s, 15)
            self.assertTrue(after, self.scrape())
            self.assertEqual(after[("postern_smtp_messages_accepted_total", "")], 3)
            self.assertEqual(after[("postern_smtp_refusals_total", '{code="5.1.1"}')], 1)
            self.assertGreaterEqual(
                after[("postern_smtp_connections_total", '{result="accepted"}')], 4)
            self.assertGreaterEqual(after[("postern_relay_results_total",
                                           '{destination="relay.test",status="deferred"}')], 1)
            # The deferred message waits in the queue, and is young.
            self.assertEqual(after[("postern_queue_messages", '{state="queued"}')], 1)
            self.assertEqual(after[("postern_queue_messages_by_age", '{age="lt_5m"}')], 1)
            self.assertEqual(after[("postern_process_restarts_total", '{process="mda"}')], 0)
            self.assertIn(("postern_dns_answer_seconds_count", ""), after)
            text = self.scrape()
            for line in text.splitlines():
                if line.startswith("# TYPE "):
                    self.assertTrue(line.split()[2].startswith("postern_"), line)
            self.assert_promtool_accepts(text)

    def test_a_real_prometheus_scrapes_it(self):
        """Debian's Prometheus server, on loopback, scrapes the endpoint every second; its own
        view of the target (health up, no scrape error) and a query of a figure the mail moved
        show that a real scraper reads what control serves."""
        if not PROMETHEUS:
            self.fail("prometheus is not installed (scripts/setup installs it)")
        with self.daemon().start() as d, \
                tempfile.TemporaryDirectory(prefix="postern-prometheus-") as work:
            config = os.path.join(work, "prometheus.yml")
            with open(config, "w") as f:
                f.write("global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
                        "scrape_configs:\n  - job_name: postern\n    static_configs:\n"
                        f"      - targets: ['127.0.0.1:{self.metrics_port}']\n")
            web = free_port()
            log = open(os.path.join(work, "prometheus.log"), "wb")
            server = subprocess.Popen(
                [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={work}/data",
                 f"--web.listen-address=127.0.0.1:{web}"], stdout=log, stderr=subprocess.STDOUT)
            self.addCleanup(log.close)
            self.addCleanup(server.wait, 30)
            self.addCleanup(server.terminate)

            def api(path, **params):
                url = f"http://127.0.0.1:{web}/api/v1/{path}?" + urllib.parse.urlencode(params)
                try:
                    with urllib.request.urlopen(url, timeout=5) as r:
                        return json.load(r)["data"]
                except (OSError, ValueError):
                    return None

            submit(d.port, ["alice@localhost"])
            self.assertTrue(wait_for(lambda: maildir_files(self.mail, "alice"), 10))

            def target():
                found = api("targets")
                active = found and found["activeTargets"]
                return active and active[0]["health"] == "up" and active[0]

            up = wait_for(target, 60, interval=0.5)
            with open(os.path.join(work, "prometheus.log"), errors="replace") as f:
                self.assertTrue(up, "Prometheus never scraped the endpoint:\n" + f.read()[-3000:])
            self.assertEqual(up["lastError"], "")

            def delivered():
                found = api("query", query='postern_deliveries_total{method="local",'
                                           'status="delivered"}')
                return found and found["result"] and found["result"][0]["value"][1]

            self.assertEqual(wait_for(delivered, 30, interval=0.5), "1")
            families = api("label/__name__/values")
            self.assertIn("postern_smtp_messages_accepted_total", families)
            self.assertTrue(all(n.startswith(("postern_", "up", "scrape_")) for n in families),
                            families)

    def test_a_killed_child_is_down_then_counted_as_restarted(self):
        with self.daemon().start() as d:
            submit(d.port, ["alice@localhost"])
            local = ("postern_deliveries_total", '{method="local",status="delivered"}')
            self.assertTrue(wait_for(lambda: parse(self.scrape()).get(local) == 1, 10))
            mda = [p for p in d.descendants() if comm(p) == "smtpd-mda"]
            self.assertEqual(len(mda), 1)
            os.kill(mda[0], 9)
            restarted = wait_for(lambda: (s := parse(self.scrape())).get(
                ("postern_process_restarts_total", '{process="mda"}')) == 1 and
                s[("postern_up", '{process="mda"}')] == 1 and s, 15)
            self.assertTrue(restarted, d.read_log())
            # The new mda counts from zero; the figure does not go back.
            self.assertEqual(restarted[local], 1)
            submit(d.port, ["alice@localhost"])
            self.assertTrue(wait_for(lambda: parse(self.scrape()).get(local) == 2, 10))

    def test_ipv6_and_other_paths(self):
        if not ipv6_loopback():
            self.skipTest("no IPv6 loopback here")
        with self.daemon("::1").start():
            self.assertIn("postern_up", self.scrape())
            with self.assertRaises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(self.url("/other"), timeout=10)
            self.assertEqual(e.exception.code, 404)
            req = urllib.request.Request(self.url(), method="DELETE")
            with self.assertRaises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(req, timeout=10)
            self.assertEqual(e.exception.code, 501)  # evhttp: method not allowed

    def test_hostile_scrapers_stop_neither_smtp_nor_the_next_scrape(self):
        with self.daemon().start() as d:
            target = ("127.0.0.1", self.metrics_port)
            # Asks, never reads (a small receive buffer), again and again on one connection.
            lazy = socket.create_connection(target)
            lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            lazy.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 50)
            # A request line with megabytes of headers.
            huge = socket.create_connection(target)
            huge.settimeout(10)
            try:
                huge.sendall(b"GET /metrics HTTP/1.1\r\n" + b"X-Pad: " + b"a" * (1 << 20))
            except OSError:
                pass  # closed on us already: the point
            answer = b""
            try:
                while chunk := huge.recv(65536):
                    answer += chunk
            except OSError:
                pass
            self.assertFalse(answer.startswith(b"HTTP/1.1 200"), answer[:100])
            # Many idle connections: more than the endpoint serves at once.
            idle = [socket.create_connection(target) for _ in range(100)]
            # SMTP is served meanwhile.
            submit(d.port, ["alice@localhost"])
            # Once the idle ones go (closed here; or evhttp's timeout), a scrape is answered.
            for s in idle:
                s.close()
            started = time.monotonic()
            text = wait_for(lambda: scrape_quietly(self.url()), 30)
            self.assertTrue(text, d.read_log())
            self.assertIn("postern_up", text)
            lazy.close()
            huge.close()
            self.assertLess(time.monotonic() - started, 30)
            # And every process is still the one that started.
            self.assertEqual(parse(text)[("postern_process_restarts_total",
                                          '{process="control"}')], 0)


def comm(pid):
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


def scrape_quietly(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read().decode()
    except OSError:
        return None


def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


if __name__ == "__main__":
    unittest.main()
