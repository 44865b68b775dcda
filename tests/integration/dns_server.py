"""A real DNS server for the integration tests: Debian's unbound, started on a free loopback
port with only local zones, so nothing ever leaves the machine. Names under slow.test are
dropped without an answer (local-zone deny): asking them times out."""

import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time

from harness import free_port

# Clients are 127.0.0.x; the test config trusts only 127.0.0.1, so the others are checked.
ZONE_DATA = """
  local-zone: "127.in-addr.arpa." static
  local-zone: "client.test." static
  local-zone: "dnsbl.test." static
  # A second blocklist, listing nobody (tests/bench/greeting_latency.py asks both).
  local-zone: "dnsbl2.test." static
  local-zone: "mx.test." static
  local-zone: "aonly.test." static
  local-zone: "nullmx.test." static
  local-zone: "cname.test." static
  local-zone: "chain.test." static
  local-zone: "slow.test." deny

  # 127.0.0.10: forward-confirmed
  local-data: "10.0.0.127.in-addr.arpa. 300 IN PTR good.client.test."
  local-data: "good.client.test. 300 IN A 127.0.0.10"
  # 127.0.0.11: a PTR whose name maps elsewhere
  local-data: "11.0.0.127.in-addr.arpa. 300 IN PTR liar.client.test."
  local-data: "liar.client.test. 300 IN A 127.0.0.99"
  # 127.0.0.12: no PTR at all
  # 127.0.0.13: forward-confirmed, listed with a code that counts
  local-data: "13.0.0.127.in-addr.arpa. 300 IN PTR listed.client.test."
  local-data: "listed.client.test. 300 IN A 127.0.0.13"
  local-data: "13.0.0.127.dnsbl.test. 300 IN A 127.0.0.2"
  # 127.0.0.14: forward-confirmed, listed with a code that does not count
  local-data: "14.0.0.127.in-addr.arpa. 300 IN PTR other.client.test."
  local-data: "other.client.test. 300 IN A 127.0.0.14"
  local-data: "14.0.0.127.dnsbl.test. 300 IN A 127.0.0.10"

  # MX sets: equal preferences, A only, null MX, a CNAME chain to mx.test
  local-data: "mx.test. 300 IN MX 10 a.mx.test."
  local-data: "mx.test. 300 IN MX 10 b.mx.test."
  local-data: "mx.test. 300 IN MX 20 c.mx.test."
  local-data: "a.mx.test. 300 IN A 127.0.1.1"
  local-data: "b.mx.test. 300 IN A 127.0.1.2"
  local-data: "b.mx.test. 300 IN AAAA 2001:db8::2"
  local-data: "c.mx.test. 300 IN A 127.0.1.3"
  local-data: "aonly.test. 300 IN A 127.0.2.1"
  local-data: "nullmx.test. 300 IN MX 0 ."
  local-data: "cname.test. 300 IN CNAME chain.test."
  local-data: "chain.test. 300 IN CNAME mx.test."
"""


def _answers(port):
    """True once something answers a DNS question on 127.0.0.1:port."""
    query = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    query += b"".join(bytes([len(p)]) + p for p in (b"good", b"client", b"test")) + b"\0"
    query += struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        try:
            s.sendto(query, ("127.0.0.1", port))
            return len(s.recv(512)) > 12
        except OSError:
            return False


class DnsServer:
    def __init__(self, zone_data=ZONE_DATA):
        """zone_data: unbound server clauses (local-zone, local-data) that make the zones."""
        self.zone_data = zone_data
        self.unbound = shutil.which("unbound") or "/usr/sbin/unbound"
        self.dir = tempfile.mkdtemp(prefix="postern-dns-")
        self.port = free_port(socket.AF_INET)
        self.proc = None

    @property
    def forwarder(self):
        return f"127.0.0.1@{self.port}"

    def start(self):
        conf = os.path.join(self.dir, "unbound.conf")
        with open(conf, "w") as f:
            f.write(f"""server:
  interface: 127.0.0.1
  port: {self.port}
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "{self.dir}"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  num-threads: 1
  do-ip6: no
  do-not-query-address: 0.0.0.0/0
  do-not-query-address: ::/0
  local-zone: "." refuse
{self.zone_data}""")
        self.log = open(os.path.join(self.dir, "unbound.log"), "wb")
        self.proc = subprocess.Popen([self.unbound, "-d", "-c", conf], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not _answers(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                with open(os.path.join(self.dir, "unbound.log")) as f:
                    raise RuntimeError("unbound did not start: " + f.read())
            time.sleep(0.05)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        if self.proc:
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
