#!/usr/bin/env bash
# Runs the FIFO example: a reader, the writer program, then a plain shell writer.
set -euo pipefail
prog=$1
dir=${IPC_RUNTIME_DIR:?}
fifo=$dir/tutorial.fifo
"$prog" reader "$fifo" 3 &
reader=$!
for _ in $(seq 500); do [ -p "$fifo" ] && break; sleep 0.01; done
"$prog" writer "$fifo" "hello from a program" "and a second line"
echo "hello from the shell" > "$fifo"
wait "$reader"
