#!/usr/bin/env python3
"""Runs one tutorial example and checks its output.

usage: check_output.py EXPECTED COMMAND [ARG...]

EXPECTED holds one regular expression per line of the example's standard output, matched in order
against the whole line. The example runs with a runtime directory of its own (IPC_RUNTIME_DIR),
a 120 s deadline, and must exit 0. Whatever it leaves in /dev/shm under libipc.tutorial-* fails
the check.
"""
import glob
import os
import re
import subprocess
import sys
import tempfile


def main() -> int:
    expected_file, command = sys.argv[1], sys.argv[2:]
    with open(expected_file, encoding="utf-8") as f:
        patterns = [line.rstrip("\n") for line in f if line.strip()]
    before = set(glob.glob("/dev/shm/libipc.tutorial-*"))
    with tempfile.TemporaryDirectory(prefix="ipc-example-") as run_dir:
        env = dict(os.environ, IPC_RUNTIME_DIR=run_dir)
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired as e:
            print(f"{command[0]}: still running after 120 s\n{e.stdout or ''}")
            return 1
    lines = done.stdout.splitlines()
    print(done.stdout, end="")
    if done.stderr:
        print("stderr:\n" + done.stderr, end="")
    if done.returncode != 0:
        print(f"FAIL: exit status {done.returncode}")
        return 1
    if len(lines) != len(patterns):
        print(f"FAIL: {len(lines)} lines, expected {len(patterns)}")
        return 1
    for n, (line, pattern) in enumerate(zip(lines, patterns), 1):
        if not re.fullmatch(pattern, line):
            print(f"FAIL: line {n} {line!r} does not match {pattern!r}")
            return 1
    left = set(glob.glob("/dev/shm/libipc.tutorial-*")) - before
    if left:
        print(f"FAIL: left behind {sorted(left)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
