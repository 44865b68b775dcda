"""Runs one libFuzzer target for a short while as a meson test (suite fuzz): its seeds are read
from the checked-in corpus directories, and what it discovers goes to a temporary directory that
is removed afterwards, so a run never changes the checkout. Exits with the fuzzer's status: a
crash, a leak, a sanitizer report or a failed check in the target fails the test.

Usage: run_fuzz.py TARGET ARTIFACT_DIR [SEED_DIR...] [-- FUZZER_FLAG...]
POSTERN_FUZZ_SECONDS sets the run time (default 10)."""

import os
import subprocess
import sys
import tempfile


def main(argv):
    split = argv.index("--") if "--" in argv else len(argv)
    args, flags = argv[:split], argv[split + 1:]
    target, artifacts, seeds = args[0], args[1], args[2:]
    seconds = int(os.environ.get("POSTERN_FUZZ_SECONDS", "10"))
    os.makedirs(artifacts, exist_ok=True)
    name = os.path.basename(target)
    with tempfile.TemporaryDirectory(prefix=f"postern-{name}-") as found:
        command = [
            os.path.abspath(target),
            f"-max_total_time={seconds}",
            # One input that runs this long is a hang: report it rather than wait for meson.
            "-timeout=20",
            # A reproducer lands beside the build (its bytes are in the log as base64 too).
            f"-artifact_prefix={os.path.join(artifacts, name)}-",
            "-print_final_stats=1",
            # libFuzzer's own default for a finding is 77, which meson reads as a skipped
            # test: a crash must fail it.
            "-error_exitcode=1",
            *flags,
            found,  # the first directory is the one libFuzzer writes new inputs to
            *[s for s in seeds if os.path.isdir(s)],
        ]
        print(" ".join(command), flush=True)
        return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
