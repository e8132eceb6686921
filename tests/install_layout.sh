#!/usr/bin/env bash
# Installs the build into a scratch directory and checks every path meson says it installs (meson
# introspect --installed): all inside the prefix, units/tmpfiles/sysusers where systemd looks,
# nothing of the daemons with -Ddaemons=false, programs with a RUNPATH to the library; then builds
# and runs a CMake consumer (find_package(libipc CONFIG), libipc::ipc) and a pkg-config consumer.
set -euo pipefail
src=$1 build=$2
work=$(mktemp -d /tmp/ipc-install-XXXXXX)
trap 'rm -rf "$work"' EXIT
meson introspect "$build" --buildoptions > "$work/options.json"
opt() { python3 -c 'import json,sys; print(next(o["value"] for o in json.load(open(sys.argv[1])) if o["name"]==sys.argv[2]))' "$work/options.json" "$1"; }
prefix=$(opt prefix) libdir=$(opt libdir) bindir=$(opt bindir) includedir=$(opt includedir) mandir=$(opt mandir)
daemons=$(opt daemons)
unitdir=$prefix/lib/systemd/system
if pkg-config --exists systemd; then
  unitdir=$(pkg-config --define-variable=rootprefix="$prefix" --variable=systemdsystemunitdir systemd)
fi
meson introspect "$build" --installed > "$work/installed.json"
meson install -C "$build" --destdir "$work/dest" --no-rebuild --quiet > /dev/null

python3 - "$work/installed.json" "$work/dest" "$prefix" "$libdir" "$bindir" "$includedir" "$mandir" "$daemons" "$unitdir" <<'PY'
import json, os, sys
installed, dest, prefix, libdir, bindir, includedir, mandir, daemons, unitdir = sys.argv[1:]
daemons = daemons in ("true", "True", "1")
paths = sorted(set(json.load(open(installed)).values()))
bad = []
for p in paths:
    if not p.startswith(prefix + "/"): bad.append(f"outside the prefix {prefix}: {p}")
    if "=" in p: bad.append(f"'=' in an installed path: {p}")
    if not os.path.lexists(dest + p): bad.append(f"listed but not installed: {p}")
def rel(d): return d if d.startswith("/") else prefix + "/" + d
expect = [f"{rel(libdir)}/libipc.so.0.1.0", f"{rel(libdir)}/pkgconfig/libipc.pc",
          f"{rel(libdir)}/cmake/libipc/libipcConfig.cmake", f"{rel(libdir)}/cmake/libipc/libipcConfigVersion.cmake"]
expect += [f"{rel(includedir)}/ipc/{h}.hpp" for h in ("channel", "error", "fd_io", "inspect", "shm_ring", "asio")]
daemon_files = [f"{rel(bindir)}/{p}" for p in ("ipc-producer", "ipc-consumer", "ipc-bridge", "ipcctl")]
daemon_files += [f"{rel(mandir)}/man1/{p}.1" for p in ("ipc-producer", "ipc-consumer", "ipc-bridge", "ipcctl")]
daemon_files += [f"{unitdir}/{u}" for u in ("ipc-producer@.service", "ipc-consumer@.service", "ipc.target",
                                             "ipc-producer@pipe.service.d/pipe.conf")]
daemon_files += [f"{prefix}/lib/tmpfiles.d/ipc.conf", f"{prefix}/lib/sysusers.d/ipc.conf"]
for e in expect + (daemon_files if daemons else []):
    if e not in paths: bad.append(f"not installed: {e}")
if not daemons:
    for p in paths:
        if "systemd" in p or "tmpfiles.d" in p or "sysusers.d" in p or p.startswith(rel(bindir) + "/") or "/man1/" in p:
            bad.append(f"installed with -Ddaemons=false: {p}")
for b in bad: print(b)
print(f"{len(paths)} installed paths checked")
sys.exit(1 if bad else 0)
PY

root=$work/dest$prefix
case $libdir in /*) libpath=$work/dest$libdir ;; *) libpath=$root/$libdir ;; esac
if [ "$daemons" = true ]; then
  # The man pages are help2man's rendering of each program's --help and --version.
  case $mandir in /*) man1=$work/dest$mandir/man1 ;; *) man1=$root/$mandir/man1 ;; esac
  version=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])' < <(meson introspect "$build" --projectinfo))
  for p in ipc-producer ipc-consumer ipc-bridge ipcctl; do
    grep -q "^\.TH .* \"$p $version\"" "$man1/$p.1" || { echo "$man1/$p.1: no .TH line naming '$p $version'"; exit 1; }
    grep -q -- '\\-\\-version' "$man1/$p.1" || { echo "$man1/$p.1: no --version in OPTIONS"; exit 1; }
  done
fi
if [ "$daemons" = true ] && [ "$prefix" != /usr ]; then
  for p in ipc-producer ipc-consumer ipc-bridge ipcctl; do
    runpath=$(readelf -d "$root/$bindir/$p" | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p')
    [ "$runpath" = "$prefix/$libdir" ] || { echo "$p: RUNPATH '$runpath', expected '$prefix/$libdir'"; exit 1; }
  done
fi

# pkg-config: the .pc says what a consumer needs.
export PKG_CONFIG_PATH=$libpath/pkgconfig
[ "$(pkg-config --variable=cxx_std libipc)" = c++20 ] || { echo "libipc.pc: no cxx_std=c++20"; exit 1; }
pkg-config --variable=boost_version libipc | grep -q 1.74 || { echo "libipc.pc: no boost_version"; exit 1; }
pkg-config --cflags libipc | grep -q -- -pthread || { echo "libipc.pc: Cflags without -pthread"; exit 1; }

# A CMake consumer, against the staged prefix (the package is relocatable).
mkdir "$work/cmake-consumer"
cp "$src/tests/consumers/cmake/CMakeLists.txt" "$src/examples/hello.cpp" "$work/cmake-consumer/"
cmake -S "$work/cmake-consumer" -B "$work/cmake-build" -DCMAKE_PREFIX_PATH="$root" -DCMAKE_CXX_COMPILER=g++ > "$work/cmake.log" 2>&1 ||
  { cat "$work/cmake.log"; exit 1; }
cmake --build "$work/cmake-build" > "$work/cmake-build.log" 2>&1 || { cat "$work/cmake-build.log"; exit 1; }
out=$(IPC_RUNTIME_DIR=$work/run LD_LIBRARY_PATH=$libpath "$work/cmake-build/hello")
echo "cmake consumer: $out"
[[ "$out" == "hello from pid "* ]]
