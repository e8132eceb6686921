// ipcctl: run the demo pairs locally and look after the kernel objects the toolkit makes.
// Exit status: 0 ok, 1 failure, 2 usage error, 3 launch saw a record lost, duplicated, reordered or corrupt.
#include "bench.hpp"
#include "launch.hpp"
#include "object_commands.hpp"
#include "objects.hpp"
#include "status.hpp"
#include "table.hpp"

#include <ipc/inspect.hpp>
#include <ipc/uri.hpp>

#include <unistd.h>

#include <charconv>
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr int exit_ok = 0, exit_failure = 1, exit_usage = 2;

constexpr std::string_view usage_text = R"(usage: ipcctl COMMAND [OPTIONS]

Commands:
  launch <pipe|fifo|msgq|sem|shm|all> [--duration S] [--rate R] [--size B] [--interval S] [--prefix NAME]
        Start producer/consumer pairs locally (no systemd), supervise them (a crashed daemon is
        restarted and counted), show a live table, stop them in order at the end and print a summary.
        --duration S   seconds to run, 0 = until SIGINT/SIGTERM (default 5)
        --rate R       records/s per producer, 0 = as fast as the channel goes (default 0)
        --size B       payload bytes per record (default 64)
        --interval S   stats and refresh interval in seconds (default 1)
        --prefix NAME  object names are NAME-fifo, NAME-msgq, NAME-sem, NAME-shm (default demo)
  status        Figures of the running daemons, from their status files (dead ones marked dead).
  list [--json] [--noheadings] [--raw] [--output COL,...] [--all-segments]
                Every object the toolkit made: kind, name, key/id, owner, perms, the processes that
                made, used or hold it and whether they run, attached count, what it holds (messages
                and bytes queued, ring records), and gc's verdict with its reason. Objects removed
                but still mapped show status "dest" (as in ipcs). --output picks columns (list
                --output help names them); --raw: no padding, one space between cells;
                --json: {"objects": [...]} with typed values.
  rm [KIND:]NAME
                Remove that object (and its key file), whatever it holds. KIND: msgq, sem, sembuf, shm,
                fifo, posix-shm, or a channel scheme (sem: also matches sembuf, shm: also posix-shm).
  gc [--dry-run] [--force] [--prefix NAME] [--all-segments]
                Remove what is provably abandoned and empty: every recorded user dead, nobody
                attached, waiting or holding it, no running daemon naming it, nothing queued; plus
                orphan key files and dead daemons' status files. An abandoned object that holds data
                (messages, ring records, a value) is kept and listed with why: --force removes it too.
                Objects in use are never removed. --dry-run prints each verdict and reason and removes
                nothing; --prefix only considers names starting with NAME.
  bench [--channels LIST] [--sizes LIST] [--duration S] [--json|--csv] [--plot FILE.png] [--check]
                Measure every channel (throughput with two processes, round-trip p50/p99) next to the
                raw syscalls of its mechanism and Boost message_queue, in the same run, with ratios
                (ipcctl bench --help for every option; docs/benchmarks.md).
  --help        This text.   --version   The version.

Objects live in the runtime directory: $IPC_RUNTIME_DIR, else $RUNTIME_DIRECTORY, else /run/ipc
for root, else $XDG_RUNTIME_DIR/ipc; POSIX segments are /dev/shm/libipc.* (list and gc cover this
user's; --all-segments reaches every one on the machine).

Exit status: 0 ok; 1 failure (an object could not be removed, a pair moved no record or a daemon
kept failing); 2 usage error; 3 launch saw a record lost, duplicated, reordered or corrupt.
)";

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

double parse_number(std::string_view opt, std::string_view v, double min, double max) {
  double d = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
  if (ec != std::errc{} || p != v.data() + v.size() || !std::isfinite(d) || d < min || d > max) {
    throw usage_error(std::string(opt) + ": '" + std::string(v) + "' is not a number in [" + std::to_string(min) +
                      ", " + std::to_string(max) + "]");
  }
  return d;
}

bool plain_name(std::string_view s) {
  if (s.empty() || s.size() > 100 || s == "." || s == "..") return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

int cmd_launch(const std::vector<std::string_view>& args) {
  const std::vector<std::string> all = {"pipe", "fifo", "msgq", "sem", "shm"};
  ipcctl::launch_options o;
  std::string which;
  for (std::size_t i = 0; i < args.size(); ++i) {
    auto a = args[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= args.size()) throw usage_error(std::string(a) + " needs a value");
      return args[++i];
    };
    if (a == "--duration") {
      o.duration_s = parse_number(a, value(), 0, 86400 * 365);
    } else if (a == "--rate") {
      const auto v = value();
      const double r = parse_number(a, v, 0, 1e9);
      if (r != std::floor(r)) throw usage_error("--rate: '" + std::string(v) + "' is not a whole number of records/s");
      o.rate = static_cast<std::uint64_t>(r);
    } else if (a == "--size") {
      o.size = static_cast<std::size_t>(parse_number(a, value(), 1, 1 << 20));
    } else if (a == "--interval") {
      o.interval_s = parse_number(a, value(), 0.1, 3600);
    } else if (a == "--prefix") {
      auto v = value();
      if (!plain_name(v)) throw usage_error("--prefix: '" + std::string(v) + "' is not a plain name ([A-Za-z0-9._-], 1..100)");
      o.prefix = v;
    } else if (a.starts_with("-")) {
      throw usage_error("launch: unknown option " + std::string(a));
    } else if (which.empty()) {
      which = a;
    } else {
      throw usage_error("launch: one channel (or all), got '" + which + "' and '" + std::string(a) + "'");
    }
  }
  if (which.empty()) throw usage_error("launch: which channel? pipe, fifo, msgq, sem, shm or all");
  if (which == "all") {
    o.kinds = all;
  } else if (std::find(all.begin(), all.end(), which) != all.end()) {
    o.kinds = {which};
  } else {
    throw usage_error("launch: unknown channel '" + which + "' (pipe, fifo, msgq, sem, shm or all)");
  }
  return ipcctl::launch(o);
}

int cmd_status(const std::vector<std::string_view>& args) {
  if (!args.empty()) throw usage_error("status takes no arguments");
  const auto dir = ipc::runtime_dir();
  auto entries = ipcctl::read_status(dir);
  if (entries.empty()) {
    std::cout << "no daemon status files in " << (dir / "status").string() << '\n';
    return exit_ok;
  }
  ipcctl::table t({"channel", "role", "pid", "state", "records", "rec/s", "MB/s", "lost", "corrupt", "p50 us", "p99 us",
                   "restarts", "age s"},
                  {false, false, true, false, true, true, true, true, true, true, true, true, true});
  for (const auto& e : entries) {
    if (!e.figures) {
      t.add({e.file.filename().string(), "?", "-", "unreadable"});
      continue;
    }
    const auto& s = *e.figures;
    t.add({s.channel, s.role, std::to_string(s.pid), e.alive ? (s.final ? "exiting" : "running") : "dead",
           std::to_string(s.records), ipcctl::fmt(s.rate, 0), ipcctl::fmt(s.mbps, 2), std::to_string(s.lost),
           std::to_string(s.corrupt), ipcctl::fmt(s.p50_us, 1), ipcctl::fmt(s.p99_us, 1), std::to_string(s.restarts),
           std::to_string(e.age_seconds)});
  }
  std::cout << t.render();
  return exit_ok;
}

std::vector<std::string> split_columns(std::string_view v) {
  std::vector<std::string> cols;
  while (!v.empty()) {
    const auto comma = v.find(',');
    cols.emplace_back(v.substr(0, comma));
    if (cols.back().empty()) throw usage_error("list --output: empty column name in '" + std::string(v) + "'");
    v = comma == std::string_view::npos ? std::string_view() : v.substr(comma + 1);
  }
  return cols;
}

int cmd_list(const std::vector<std::string_view>& args) {
  ipcctl::list_options o;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto a = args[i];
    if (a == "--json" || a == "-J") {
      o.json = true;
    } else if (a == "--noheadings" || a == "-n") {
      o.noheadings = true;
    } else if (a == "--raw" || a == "-r") {
      o.raw = true;
    } else if (a == "--all-segments") {
      o.all_segments = true;
    } else if (a == "--output" || a == "-o") {
      if (i + 1 >= args.size()) throw usage_error("list --output needs a value: COL,... (list --output help)");
      const auto v = args[++i];
      if (v == "help") {
        for (const auto& c : ipcctl::list_columns()) std::cout << c << '\n';
        return exit_ok;
      }
      o.columns = split_columns(v);
    } else {
      throw usage_error("list: unknown argument " + std::string(a));
    }
  }
  if (o.json && o.raw) throw usage_error("list: --json and --raw exclude each other");
  try {
    return ipcctl::run_list(o, std::cout);
  } catch (const std::invalid_argument& e) {
    throw usage_error(e.what());
  }
}

std::string describe(const ipcctl::object_info& o) {
  std::string s = o.kind + " " + o.family + ":" + o.name;
  if (!o.key.empty()) s += " (key " + o.key + ", id " + std::to_string(o.id) + ")";
  else s += " (" + o.path.string() + ")";
  return s;
}

int cmd_rm(const std::vector<std::string_view>& args) {
  if (args.size() != 1) throw usage_error("rm needs exactly one [KIND:]NAME");
  auto group = ipcctl::select(ipc::list_objects({.runtime_dir = ipc::runtime_dir(), .all_segments = true}), args[0]);
  ipcctl::remove_group(group);
  for (const auto& o : group) std::cout << "removed " << describe(o) << '\n';
  return exit_ok;
}

int cmd_gc(const std::vector<std::string_view>& args) {
  ipcctl::gc_options o;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--dry-run") {
      o.dry_run = true;
    } else if (args[i] == "--force") {
      o.force = true;
    } else if (args[i] == "--all-segments") {
      o.all_segments = true;
    } else if (args[i] == "--prefix" && i + 1 < args.size()) {
      o.prefix = args[++i];
    } else {
      throw usage_error("gc: unknown argument " + std::string(args[i]));
    }
  }
  return ipcctl::run_gc(o, std::cout, std::cerr);
}

}  // namespace

int main(int argc, char* argv[]) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::cerr << usage_text;
    return exit_usage;
  }
  const auto cmd = args.front();
  const std::vector<std::string_view> rest(args.begin() + 1, args.end());
  try {
    if (cmd == "--help" || cmd == "-h" || cmd == "help") {
      std::cout << usage_text;
      return exit_ok;
    }
    if (cmd == "--version") {
      std::cout << "ipcctl " << IPCCTL_VERSION << '\n';
      return exit_ok;
    }
    if (cmd == "launch") return cmd_launch(rest);
    if (cmd == "status") return cmd_status(rest);
    if (cmd == "list") return cmd_list(rest);
    if (cmd == "rm") return cmd_rm(rest);
    if (cmd == "gc") return cmd_gc(rest);
    if (cmd == "bench") return ipc::bench::ipc_bench_main(argc - 1, argv + 1);
    throw usage_error("unknown command '" + std::string(cmd) + "'");
  } catch (const usage_error& e) {
    std::cerr << "ipcctl: " << e.what() << "\n(ipcctl --help shows the usage)\n";
    return exit_usage;
  } catch (const std::exception& e) {
    std::cerr << "ipcctl: " << e.what() << '\n';
    return exit_failure;
  }
}
