#!/usr/bin/env bash
# The README's example must compile against the *installed* library through
# pkg-config and run: install into a scratch prefix, compile the code block
# the README shows (extracted from README.md itself), run it.
set -euo pipefail
src_root=$1 build_root=$2
work=$(mktemp -d /tmp/ipc-readme-XXXXXX)
trap 'rm -rf "$work"' EXIT
meson install -C "$build_root" --destdir "$work/dest" --no-rebuild --quiet >/dev/null
prefix=$(meson introspect "$build_root" --buildoptions | python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"]=="prefix"))')
libdir=$(meson introspect "$build_root" --buildoptions | python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"]=="libdir"))')
root="$work/dest$prefix"
# Extract the ```cpp block that follows the <!-- example: hello --> marker.
awk '/<!-- example: hello -->/{f=1;next} f&&/^```cpp/{p=1;next} p&&/^```/{exit} p' "$src_root/README.md" > "$work/hello.cpp"
[ -s "$work/hello.cpp" ] || { echo "README example block not found"; exit 1; }
cmp -s "$work/hello.cpp" "$src_root/examples/hello.cpp" || { echo "README example differs from examples/hello.cpp"; diff "$work/hello.cpp" "$src_root/examples/hello.cpp"; exit 1; }
export PKG_CONFIG_PATH="$root/$libdir/pkgconfig"
# The .pc file names the final prefix; point the compiler at the staged copy.
cflags=$(pkg-config --define-variable=prefix="$root" --cflags libipc)
libs=$(pkg-config --define-variable=prefix="$root" --libs libipc)
# A sanitized library (the ASan+UBSan run of scripts/test) needs a sanitized program: same flags.
sanitize=$(meson introspect "$build_root" --buildoptions | python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"]=="b_sanitize"))')
san_flags=()
[ "$sanitize" != none ] && san_flags=(-fsanitize="$sanitize" -fno-omit-frame-pointer)
g++ -std=c++20 -Wall -Werror "${san_flags[@]}" "$work/hello.cpp" $cflags $libs -o "$work/hello"
export IPC_RUNTIME_DIR="$work/run"
out=$(LD_LIBRARY_PATH="$root/$libdir" "$work/hello")
echo "$out"
[[ "$out" == "hello from pid "* ]]
