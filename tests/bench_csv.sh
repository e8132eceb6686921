#!/usr/bin/env bash
# The benchmark's --csv read back: one rectangular table (every row as many cells as the header),
# every section there (table, idle, rate, modes, zero_copy), every row with its figures and no error.
# Asserts no performance level.
#   bench_csv.sh IPC_BENCH
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: bench_csv.sh IPC_BENCH" >&2; exit 2; }
csv=$("$1" --duration 0.02 --sizes 64 --channels pipe,shm --idle 0.05 --rate 2000 --modes --csv --quiet)
printf '%s\n' "$csv" | awk -F, '
  NR == 1 { cells = NF; for (i = 1; i <= NF; i++) col[$i] = i; next }
  function fail(why) { print "bench_csv: " why ": " $0; bad = 1 }
  NF != cells { fail("row " NR " has " NF " cells, the header " cells) }
  { seen[$1]++ }
  $(col["error"]) != "" { fail("failed row") }
  $1 == "table" && $(col["skipped"]) == "0" && !($(col["msgs_per_s"]) > 0 && $(col["p50_us"]) > 0) { fail("table row without figures") }
  $1 == "idle" && !($(col["wakeups_per_s"]) >= 0 && $(col["cpu_ms_per_s"]) >= 0 && $(col["cpu_ms_per_s"]) != "") { fail("idle row without figures") }
  $1 == "rate" && !($(col["messages"]) > 0 && $(col["p50_us"]) > 0 && $(col["p99_us"]) >= $(col["p50_us"])) { fail("rate row without figures") }
  $1 == "table" && $(col["skipped"]) == "0" && !($(col["cpu_ns_per_msg"]) > 0) { fail("table row without its CPU figure") }
  $1 == "zero_copy" && !($(col["messages"]) > 0 && $(col["msgs_per_s"]) > 0 && $(col["ratio_copy"]) > 0) { fail("zero_copy row without figures") }
  $1 == "modes" && !($(col["sent"]) > 0 && $(col["msgs_per_s"]) > 0 && $(col["per_receiver_msgs_per_s"]) > 0 && $(col["ratio_spsc"]) > 0) { fail("modes row without figures") }
  END {
    # pipe and shm, libipc and raw, boost_mq; idle and rate add the shm work queue; modes 5 rows at 64 B;
    # zero_copy: copy and zero-copy, ends and all, at 64 KiB and 1 MiB.
    if (cells != 28) { print "bench_csv: the header has " cells " columns, the docs list 28"; bad = 1 }
    if (seen["table"] < 5 || seen["idle"] < 5 || seen["rate"] < 5 || seen["modes"] < 5 || seen["zero_copy"] != 8) {
      print "bench_csv: rows per section: table " seen["table"] ", idle " seen["idle"] ", rate " seen["rate"] ", modes " seen["modes"] ", zero_copy " seen["zero_copy"] " (want at least 5 each, zero_copy 8)"
      bad = 1
    }
    if (!bad) print "bench_csv: ok (" NR - 1 " rows, " cells " columns)"
    exit bad
  }'
