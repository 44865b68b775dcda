"""Postfix's test programs (smtp-source, smtp-sink) for the benchmarks and the tests that
relay to a real Postfix peer: taken from PATH, or from the Debian postfix package unpacked
without installing it (apt-get download + dpkg -x) into $POSTERN_BENCH_POSTFIX_DIR (default
/tmp/postern-bench-postfix), fetched the first time one is asked for.

Run as a program, `python3 tests/postfix_tools.py smtp-sink` prints the program's path and,
on a second line, the directory its libraries need in LD_LIBRARY_PATH (empty when taken
from PATH); it exits non-zero when the program cannot be had."""

import glob
import os
import shutil
import subprocess
import sys
import tempfile


def unpacked_root():
    return os.environ.get("POSTERN_BENCH_POSTFIX_DIR", "/tmp/postern-bench-postfix")


def locate(name):
    """(path to the program, directory for LD_LIBRARY_PATH or "")."""
    found = shutil.which(name)
    if found:
        return found, ""
    root = unpack(name)
    return os.path.join(root, "usr", "sbin", name), os.path.join(root, "usr", "lib", "postfix")


def unpack(name="postfix"):
    """The directory the package is unpacked in (the whole package: the daemons too), fetched
    first when name, a program of its usr/sbin, is not there yet."""
    root = unpacked_root()
    binary = os.path.join(root, "usr", "sbin", name)
    if not os.path.exists(binary):
        print(f"# fetching {name}: apt-get download postfix; dpkg -x into {root}",
              file=sys.stderr, flush=True)
        download = tempfile.mkdtemp(prefix="postern-postfix-deb-")
        os.chmod(download, 0o777)  # apt's _apt user writes there when run as root
        try:
            # A fresh machine may have no package lists yet: read them once and try again.
            if subprocess.run(["apt-get", "download", "postfix"], cwd=download,
                              stdout=subprocess.DEVNULL).returncode != 0:
                subprocess.run(["apt-get", "update"], check=True, stdout=subprocess.DEVNULL)
                subprocess.run(["apt-get", "download", "postfix"], cwd=download, check=True,
                               stdout=subprocess.DEVNULL)
            debs = glob.glob(os.path.join(download, "postfix_*.deb"))
            if not debs:
                raise RuntimeError("apt-get download postfix produced no postfix_*.deb")
            os.makedirs(root, exist_ok=True)
            subprocess.run(["dpkg", "-x", debs[0], root], check=True)
        finally:
            shutil.rmtree(download, ignore_errors=True)
    return root


def tool(name, explicit=None):
    """(path, environment to run it with): explicit if given, else as locate finds it."""
    env = dict(os.environ)
    if explicit:
        return explicit, env
    binary, libdir = locate(name)
    if libdir:
        env["LD_LIBRARY_PATH"] = libdir + (":" + env["LD_LIBRARY_PATH"]
                                           if env.get("LD_LIBRARY_PATH") else "")
    return binary, env


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in ("smtp-sink", "smtp-source"):
        sys.exit("usage: postfix_tools.py smtp-sink|smtp-source")
    try:
        path, lib = locate(sys.argv[1])
    except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
        sys.exit(f"cannot get {sys.argv[1]}: {e}")
    print(path)
    print(lib)
