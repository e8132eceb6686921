#!/usr/bin/env bash
# The benchmark's usage errors: every malformed or out-of-range number (NaN, infinities, fractions of a
# count, values outside the documented range, empty list items) exits 2 naming the option, and runs
# nothing. Asserts no performance level.
#   bench_usage.sh IPC_BENCH
set -uo pipefail
[ $# -eq 1 ] || { echo "usage: bench_usage.sh IPC_BENCH" >&2; exit 2; }
bad=0
refuse() {  # refuse OPTION VALUE
  local err rc
  err=$("$1" --channels pipe --quiet "$2" "$3" 2>&1 >/dev/null)  # a value wrongly taken runs one short pipe bench
  rc=$?
  if [ "$rc" -ne 2 ] || [[ "$err" != *"$2"* ]]; then
    echo "bench_usage: $2 '$3' gave exit $rc: $err"
    bad=1
  fi
}
for v in nan inf -inf 5 20000.5 1e400 -1 ''; do refuse "$1" --rate "$v"; done
for v in nan inf 0 61 -1 x ''; do refuse "$1" --duration "$v"; done
for v in nan inf 0 61 x; do refuse "$1" --idle "$v"; done
for v in 0 7 17M 64,,1K x; do refuse "$1" --sizes "$v"; done
exit $bad
