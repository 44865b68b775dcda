"""The process tree under supervision: all seven processes up with the right programs,
restarts with re-wiring after kill -9, a crash loop stopping the daemon, clean stops."""

import os
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import CHILDREN, PEERS, Daemon, free_port, pid_alive, wait_for  # noqa: E402


class ProcessTree(unittest.TestCase):
    def test_seven_processes_with_their_programs(self):
        with Daemon().start() as d:
            table = d.status()
            self.assertEqual(set(table), {"parent", *CHILDREN})
            self.assertEqual(table["parent"]["pid"], d.proc.pid)
            with open(f"/proc/{d.proc.pid}/comm") as f:
                self.assertEqual(f.read().strip(), "smtpd")
            self.assertEqual(sorted(d.descendants()),
                             sorted(table[role]["pid"] for role in CHILDREN))
            for role, program in CHILDREN.items():
                pid = table[role]["pid"]
                self.assertEqual(os.path.basename(os.readlink(f"/proc/{pid}/exe")), program)
                with open(f"/proc/{pid}/comm") as f:
                    self.assertEqual(f.read().strip(), program)
                self.assertEqual(table[role]["restarts"], 0)
                self.assertEqual(set(d.peers_of(table[role])), PEERS[role])

    def test_children_get_the_descriptor_limit_raised(self):
        # A service's soft limit is often 1024: a 10,000-user fanout then failed in mda.
        import resource
        saved = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, saved[1]))  # the hard one stays
        infinite = saved[1] == resource.RLIM_INFINITY
        want = 65536 if infinite else min(saved[1], 65536)
        hard = "unlimited" if infinite else str(saved[1])
        try:
            d = Daemon().start()
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, saved)
        with d:
            table = d.status()
            for role in CHILDREN:
                with open(f"/proc/{table[role]['pid']}/limits") as f:
                    line = next(l for l in f if l.startswith("Max open files"))
                self.assertEqual(line.split()[3:5], [str(want), hard], (role, line))
            if want < 4096:
                self.assertIn("file descriptors allowed", d.read_log())

    def test_each_killed_child_is_back_within_two_seconds_and_rewired(self):
        with Daemon().start() as d:
            for role in CHILDREN:
                before = d.status()
                old = before[role]["pid"]
                os.kill(old, signal.SIGKILL)
                started = time.monotonic()
                table = wait_for(lambda: (t := d.status()) and t[role]["pid"] not in (None, old)
                                 and d.fully_wired(t) and t, 2.0)
                self.assertIsNotNone(table, f"{role} not back and re-wired within 2 s")
                self.assertLess(time.monotonic() - started, 2.0)
                self.assertFalse(pid_alive(old))
                self.assertEqual(table[role]["restarts"], 1)
                # Every peer now holds a channel to the new process.
                for peer in PEERS[role]:
                    self.assertEqual(d.peers_of(table[peer])[role], table[role]["pid"])
                    self.assertEqual(table[peer]["pid"], before[peer]["pid"])
                self.assertTrue(d.wait_log(
                    rf"{role} \(pid {old}\) was killed by signal 9 \(SIGKILL\); restarting"))

    def test_crash_loop_stops_the_daemon(self):
        with Daemon().start() as d:
            all_pids = set(d.descendants())
            victim = d.status()["mta"]["pid"]
            for _ in range(5):
                os.kill(victim, signal.SIGKILL)
                all_pids.add(victim)

                def next_mta():
                    if d.proc.poll() is not None:
                        return -1
                    table = d.status()
                    pid = table and table["mta"]["pid"]
                    return pid if pid and pid != victim else None
                nxt = wait_for(next_mta, 5)
                if nxt == -1 or nxt is None:
                    break
                victim = nxt
            self.assertEqual(d.wait_exit(10), 1, d.read_log())
            self.assertRegex(d.read_log(), r"mta \(pid \d+\) was killed by signal 9 \(SIGKILL\); "
                                           r"it died 5 times within 60 s, stopping Postern")
            self.assertEqual([p for p in all_pids if pid_alive(p)], [])
            self.assertFalse(os.path.exists(d.socket))

    def test_sigterm_stops_everything(self):
        with Daemon().start() as d:
            pids = list(d.descendants())
            self.assertEqual(len(pids), 6)
            d.signal(signal.SIGTERM)
            self.assertEqual(d.wait_exit(5), 0)
            self.assertEqual([p for p in pids if pid_alive(p)], [])
            self.assertFalse(os.path.exists(d.socket))
            self.assertFalse(os.path.exists(d.pid_file))
            self.assertIn("stopped", d.read_log())

    def test_sigint_stops_everything(self):
        with Daemon().start() as d:
            pids = list(d.descendants())
            d.signal(signal.SIGINT)
            self.assertEqual(d.wait_exit(5), 0)
            self.assertEqual([p for p in pids if pid_alive(p)], [])

    def test_killed_parent_leaves_no_orphans(self):
        with Daemon().start() as d:
            pids = list(d.descendants())
            d.signal(signal.SIGKILL)
            d.proc.wait()
            # Each child sees its parent channel close and exits on its own.
            self.assertTrue(wait_for(lambda: not any(pid_alive(p) for p in pids), 5),
                            [p for p in pids if pid_alive(p)])

    def test_second_daemon_on_the_same_spool_is_refused(self):
        with Daemon().start() as first:
            second = Daemon(directory=first.dir)
            second.config = os.path.join(first.dir, "second.yaml")
            second.log_path = os.path.join(first.dir, "second.log")
            second.socket = os.path.join(first.dir, "run2", "smtpd.sock")
            second.write_config(second.config_text(listeners=[("smtp", f"127.0.0.1:{free_port()}")]))
            second.start(wait=False)
            self.assertEqual(second.wait_exit(5), 1)
            self.assertIn(f"another smtpd (pid {first.proc.pid}) is running on spool "
                          f"{first.spool}", second.read_log())
            self.assertTrue(first.fully_wired(first.status()))


class Daemonized(unittest.TestCase):
    def test_without_d_it_detaches_and_records_its_pid(self):
        with Daemon() as d:
            argv = [a for a in d.command() if a != "-d"]
            launcher = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            self.assertEqual(launcher.returncode, 0, launcher.stderr)
            pid_file = d.pid_file
            pid = wait_for(lambda: os.path.exists(pid_file) and open(pid_file).read().strip(), 5)
            self.assertTrue(pid)
            pid = int(pid)
            try:
                table = wait_for(lambda: (t := d.status()) and d.fully_wired(t) and t, 10)
                self.assertIsNotNone(table)
                self.assertEqual(table["parent"]["pid"], pid)
                # A new session, away from the terminal that started it.
                self.assertEqual(os.getsid(pid), pid)
                children = [table[role]["pid"] for role in CHILDREN]
                os.kill(pid, signal.SIGTERM)
                self.assertTrue(wait_for(lambda: not pid_alive(pid), 5))
                self.assertEqual([p for p in children if pid_alive(p)], [])
                self.assertFalse(os.path.exists(pid_file))
            finally:
                if pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    unittest.main(verbosity=2)
