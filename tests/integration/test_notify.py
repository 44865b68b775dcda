"""smtpd -F as systemd's Type=notify runs it: it stays the process that was started, and tells
the socket in NOTIFY_SOCKET (sd_notify) READY=1 only once every child is up, RELOADING=1 then
READY=1 around a SIGHUP, STOPPING=1 when it stops; every notification comes from that main
process (the unit's default NotifyAccess=main would ignore any other). The socket here is
played by the test, with the sender's credentials checked as systemd checks them."""

import os
import signal
import socket
import struct
import sys
import unittest

from harness import BUILD_DIR, CHILDREN, Daemon, can_connect

with open(os.path.join(BUILD_DIR, "postern_paths.h")) as header:
    if "#define POSTERN_HAVE_LIBSYSTEMD 1" not in header.read():
        print("built without libsystemd (-Dsystemd=disabled or no libsystemd-dev)")
        sys.exit(77)


class NotifyDaemon(Daemon):
    def command(self, *args):
        argv = super().command(*args)
        argv[argv.index("-d")] = "-F"
        return argv


class Notify(unittest.TestCase):
    def setUp(self):
        self.daemon = NotifyDaemon()
        self.path = os.path.join(self.daemon.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.settimeout(20)

    def tearDown(self):
        self.sock.close()
        self.daemon.__exit__(None, None, None)

    def receive(self):
        """The next notification's variables and the pid that sent it."""
        data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = None
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", payload[:12])[0]
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
        return fields, pid

    def test_ready_reloading_stopping_from_the_main_process(self):
        self.daemon.start(wait=False, env={"NOTIFY_SOCKET": self.path})
        main = self.daemon.proc.pid
        ready, sender = self.receive()
        self.assertEqual(ready.get("READY"), "1", ready)
        self.assertEqual(sender, main)
        # Ready means every child runs: smtp accepts and status shows the six with their pids.
        self.assertTrue(can_connect("127.0.0.1", self.daemon.port))
        table = self.daemon.status()
        self.assertTrue(table, "smtpctl show status failed after READY=1")
        self.assertEqual({role: table.get(role, {}).get("pid") is not None for role in CHILDREN},
                         {role: True for role in CHILDREN}, table)
        # Not daemonized: the process that was started is the daemon, and its pid file says so.
        with open(self.daemon.pid_file) as f:
            self.assertEqual(int(f.read()), main)

        self.daemon.signal(signal.SIGHUP)
        reloading, sender = self.receive()
        self.assertEqual((reloading.get("RELOADING"), sender), ("1", main), reloading)
        again, sender = self.receive()
        self.assertEqual((again.get("READY"), sender), ("1", main), again)

        self.daemon.signal(signal.SIGTERM)
        stopping, sender = self.receive()
        self.assertEqual((stopping.get("STOPPING"), sender), ("1", main), stopping)
        self.assertEqual(self.daemon.wait_exit(20), 0)


if __name__ == "__main__":
    unittest.main()
