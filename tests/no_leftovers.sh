#!/usr/bin/env bash
# Runs a program the suite starts directly (not through ipc-tests, whose main makes the same check)
# in a private IPC namespace and a private /dev/shm, and fails if it left any System V object or
# POSIX segment behind - whatever its name, and without seeing other runs on the machine. A segment
# already removed but still attached (SHM_DEST) is freed at its last detach and does not count.
# Needs root (as CI runs); anyone else gets a user namespace of their own (unshare --map-root-user).
#   no_leftovers.sh PROGRAM ARGS...
set -uo pipefail
[ $# -ge 1 ] || { echo "usage: no_leftovers.sh PROGRAM ARGS..." >&2; exit 2; }
as_root=()
[ "$(id -u)" -eq 0 ] || as_root=(--map-root-user)
exec unshare "${as_root[@]}" --ipc --mount --propagation private -- bash -c '
  mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm || { echo "FAILED: a private /dev/shm"; exit 2; }
  "$@"
  rc=$?
  left=$(ls -A /dev/shm; for k in msg sem; do tail -n +2 /proc/sysvipc/$k; done;
         tail -n +2 /proc/sysvipc/shm | awk "{ p = \$3; d = length(p) >= 4 ? substr(p, length(p) - 3, 1) : 0; if (int(d) % 2 == 0) print }")
  if [ -n "$left" ]; then
    echo "FAILED: left behind by $1:"
    echo "$left"
    exit 1
  fi
  exit $rc
' no_leftovers "$@"
