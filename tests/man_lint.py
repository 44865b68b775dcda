#!/usr/bin/env python3
"""mandoc -Tlint over every man page of the tree: any message fails, except a reference to a
page this machine has not installed (Postern's own pages, before an install, or a library's
page) and mandoc's note about its own database."""

import glob
import os
import subprocess
import sys

MAN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "man")
IGNORED = ("referenced manual not found", "outdated mandoc.db")

pages = sorted(glob.glob(os.path.join(MAN_DIR, "*.[1-8]")))
if not pages:
    sys.exit("no man pages under " + MAN_DIR)
run = subprocess.run(["mandoc", "-Tlint", "-Wstyle", *pages], capture_output=True, text=True)
found = [line for line in (run.stdout + run.stderr).splitlines()
         if line.strip() and not any(text in line for text in IGNORED)]
for line in found:
    print(line)
print(f"mandoc -Tlint: {len(pages)} pages, {len(found)} messages")
sys.exit(1 if found else 0)
