#!/usr/bin/env bash
# A meson project with libipc as a subproject: dependency('libipc') is satisfied by the
# subproject's meson.override_dependency. The subproject is configured with -Ddaemons=false
# -Dtests=false, so this also builds the library alone. Then the whole project is configured with
# -Ddaemons=false and the tests on, which must succeed (tests/meson.build without the daemons).
set -euo pipefail
src=$1
work=$(mktemp -d /tmp/ipc-subproject-XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/consumer/subprojects"
cp "$src/tests/consumers/meson/meson.build" "$src/examples/hello.cpp" "$work/consumer/"
ln -s "$src" "$work/consumer/subprojects/libipc"
meson setup "$work/build" "$work/consumer" > "$work/setup.log" 2>&1 || { cat "$work/setup.log"; exit 1; }
ninja -C "$work/build" > "$work/build.log" 2>&1 || { tail -50 "$work/build.log"; exit 1; }
out=$(IPC_RUNTIME_DIR=$work/run "$work/build/hello")
echo "meson subproject consumer: $out"
[[ "$out" == "hello from pid "* ]]

meson setup "$work/nodaemons" "$src" -Ddaemons=false > "$work/nodaemons.log" 2>&1 || { cat "$work/nodaemons.log"; exit 1; }
meson introspect "$work/nodaemons" --targets | python3 -c '
import json, sys
names = {t["name"] for t in json.load(sys.stdin)}
bad = names & {"ipc-producer", "ipc-consumer", "ipcctl", "ipc-bench"}
sys.exit(f"daemon targets with -Ddaemons=false: {sorted(bad)}" if bad else 0)'
echo "-Ddaemons=false configures with the tests on, without daemon targets"
