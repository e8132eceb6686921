#!/usr/bin/env python3
"""Runs one example program and checks its output against NAME.expected.

Usage: check_example.py PROGRAM EXPECTED

Each line of EXPECTED is a regular expression that must match the whole corresponding line of
the program's stdout (same number of lines, in order); the program must exit 0 within 120 s.
The program runs with its own fresh IPC_RUNTIME_DIR, removed afterwards, so examples never
collide with each other or leave files behind.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile


def main() -> int:
    program, expected_path = sys.argv[1], sys.argv[2]
    with open(expected_path, encoding="utf-8") as f:
        patterns = [line.rstrip("\n") for line in f if line.strip()]
    runtime = tempfile.mkdtemp(prefix="ipc-example-")
    try:
        env = dict(os.environ, IPC_RUNTIME_DIR=runtime)
        try:
            done = subprocess.run([program], env=env, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            print(f"{program}: did not finish within 120 s")
            return 1
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        print(f"{program}: exit status {done.returncode}")
        return 1
    lines = done.stdout.splitlines()
    if len(lines) != len(patterns):
        print(f"{program}: {len(lines)} lines of output, expected {len(patterns)}")
        return 1
    for number, (line, pattern) in enumerate(zip(lines, patterns), 1):
        if not re.fullmatch(pattern, line):
            print(f"{program}: line {number} {line!r} does not match {pattern!r}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
