// ipcctl: run the demo pairs locally and look after the kernel objects the toolkit makes.
// Exit status: 0 ok, 1 failure, 2 usage error, 3 launch saw a record lost, duplicated, reordered or corrupt.
#include "bench.hpp"
#include "cli.hpp"
#include "exit_status.hpp"
#include "launch.hpp"
#include "limits.hpp"
#include "object_commands.hpp"
#include "objects.hpp"
#include "status.hpp"
#include "table.hpp"

#include <ipc/inspect.hpp>
#include <ipc/record.hpp>
#include <ipc/uri.hpp>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using ipc::daemon::exit_failure;
using ipc::daemon::exit_ok;
using ipc::daemon::exit_usage;

constexpr const char* footer = R"(
Objects live in the runtime directory: $IPC_RUNTIME_DIR, else $RUNTIME_DIRECTORY, else /run/ipc
for root, else $XDG_RUNTIME_DIR/ipc; POSIX segments are /dev/shm/libipc.* (list and gc cover this
user's; --all-segments reaches every one on the machine).

Exit status: 0 ok; 1 failure (an object could not be removed, a pair moved no record or a daemon
kept failing); 2 usage error (nothing was started or created); 3 launch saw a record lost,
duplicated, reordered or corrupt. See docs/ipcctl.md.)";

bool plain_name(std::string_view s) {
  if (s.empty() || s.size() > 100 || s == "." || s == "..") return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

int cmd_status() {
  const auto dir = ipc::runtime_dir();
  auto entries = ipcctl::read_status(dir);
  if (entries.empty()) {
    std::cout << "no daemon status files in " << (dir / "status").string() << '\n';
    return exit_ok;
  }
  ipcctl::table t({"channel", "role", "pid", "state", "records", "rec/s", "MB/s", "lost", "corrupt", "skipped", "p50 us",
                   "p99 us", "restarts", "age s"},
                  {false, false, true, false, true, true, true, true, true, true, true, true, true, true});
  for (const auto& e : entries) {
    if (!e.figures) {
      t.add({e.file.filename().string(), "?", "-", "unreadable"});
      continue;
    }
    const auto& s = *e.figures;
    t.add({s.channel, s.role, std::to_string(s.pid), e.alive ? (s.final ? "exiting" : "running") : "dead",
           std::to_string(s.records), ipcctl::fmt(s.rate, 0), ipcctl::fmt(s.mbps, 2), std::to_string(s.lost),
           std::to_string(s.corrupt), std::to_string(s.skipped), std::to_string(s.p50_us), std::to_string(s.p99_us), std::to_string(s.restarts),
           std::to_string(e.age_seconds)});
  }
  // Several running daemons of one role on one channel (a work queue's consumers, a broadcast's
  // publishers): one total row each, so what they received together can be set against what was sent.
  struct total {
    std::size_t n = 0;
    std::uint64_t records = 0, lost = 0, corrupt = 0, skipped = 0, restarts = 0;
    double rate = 0, mbps = 0;
  };
  std::map<std::pair<std::string, std::string>, total> totals;
  for (const auto& e : entries) {
    if (!e.figures || !e.alive) continue;
    auto& g = totals[{e.figures->channel, e.figures->role}];
    ++g.n;
    g.records += e.figures->records;
    g.lost += e.figures->lost;
    g.corrupt += e.figures->corrupt;
    g.skipped += e.figures->skipped;
    g.restarts += e.figures->restarts;
    g.rate += e.figures->rate;
    g.mbps += e.figures->mbps;
  }
  for (const auto& [key, g] : totals) {
    if (g.n < 2) continue;
    t.add({key.first, key.second, "-", "total of " + std::to_string(g.n), std::to_string(g.records), ipcctl::fmt(g.rate, 0),
           ipcctl::fmt(g.mbps, 2), std::to_string(g.lost), std::to_string(g.corrupt), std::to_string(g.skipped), "-", "-",
           std::to_string(g.restarts), "-"});
  }
  std::cout << t.render();
  return exit_ok;
}

std::string describe(const ipcctl::object_info& o) {
  std::string s = o.kind + " " + o.family + ":" + o.name;
  if (!o.key.empty()) s += " (key " + o.key + ", id " + std::to_string(o.id) + ")";
  else s += " (" + o.path.string() + ")";
  return s;
}

int cmd_rm(const std::string& spec) {
  // rm names one object deliberately: every segment on the machine is in reach, whatever it holds.
  auto group = ipcctl::select(ipc::list_objects({.runtime_dir = ipc::runtime_dir(), .all_segments = true}), spec);
  ipcctl::remove_group(group);
  for (const auto& o : group) std::cout << "removed " << describe(o) << '\n';
  return exit_ok;
}

}  // namespace

int main(int argc, char* argv[]) {
  CLI::App app{"Runs the demo pairs locally and looks after the kernel objects the toolkit makes.", "ipcctl"};
  app.footer(footer);
  ipc::daemon::add_common(app);
  app.require_subcommand(1);

  // launch
  ipcctl::launch_options lo;
  std::string which;
  std::uint64_t rate = 0, size = lo.size;
  auto* launch = app.add_subcommand("launch",
                                    "Start producer/consumer pairs locally (no systemd), supervise them (a crashed daemon is\n"
                                    "restarted with back-off, a usage error never), show a live table, stop them in order and\n"
                                    "print a summary.");
  launch->add_option("channel", which, "pipe, fifo, msgq, sem, shm or all")
      ->required()
      ->check(CLI::IsMember({"pipe", "fifo", "msgq", "sem", "shm", "all"}));
  ipc::daemon::add_seconds(*launch, "--duration", lo.duration_s, 0, 86400.0 * 365, "seconds to run, 0 = until SIGINT/SIGTERM (default 5)");
  ipc::daemon::add_count(*launch, "--rate", rate, 0, 1'000'000'000, "records/s per producer, 0 = as fast as the channel goes");
  ipc::daemon::add_size(*launch, "--size", size, 1, 1 << 20, "payload bytes per record");
  ipc::daemon::add_seconds(*launch, "--interval", lo.interval_s, 0.1, 3600, "stats and refresh interval in seconds (default 1)");
  launch->add_option("--prefix", lo.prefix, "object names are NAME-fifo, NAME-msgq, NAME-sem, NAME-shm")
      ->capture_default_str()
      ->type_name("NAME");

  auto* status = app.add_subcommand("status", "Figures of the running daemons, from their status files (dead ones marked dead).");

  ipcctl::list_options list_opts;
  std::vector<std::string> list_columns;
  auto* list = app.add_subcommand("list",
                                  "Every object the toolkit made: kind, name, key/id, owner, perms, the processes that made,\n"
                                  "used or hold it and whether they run, attached count, what it holds (messages and bytes\n"
                                  "queued, ring records), and gc's verdict with its reason. Objects removed but still mapped\n"
                                  "show status \"dest\" (as in ipcs).");
  auto* list_json = list->add_flag("-J,--json", list_opts.json, "one JSON document {\"objects\": [...]} with typed values");
  list->add_flag("-n,--noheadings", list_opts.noheadings, "no header line");
  auto* list_raw = list->add_flag("-r,--raw", list_opts.raw, "no padding: cells one space apart, blanks escaped as \\xHH");
  list_json->excludes(list_raw);
  list->add_option("-o,--output", list_columns, "columns to show, in order (list --output help names them)")
      ->delimiter(',')
      ->type_name("COL,...");
  list->add_flag("--all-segments", list_opts.all_segments, "every /dev/shm/libipc.* on the machine, not only this user's");

  std::string rm_spec;
  auto* rm = app.add_subcommand("rm",
                                "Remove that object (and its key file), whatever it holds. KIND: msgq, sem, sembuf, shm, fifo,\n"
                                "posix-shm, or a channel scheme (sem: also matches sembuf, shm: also posix-shm).");
  rm->add_option("object", rm_spec, "[KIND:]NAME")->required()->type_name("[KIND:]NAME");

  ipcctl::gc_options gc_opts;
  auto* gc = app.add_subcommand("gc",
                                "Remove what is provably abandoned and empty: every recorded user dead, nobody attached,\n"
                                "waiting or holding it, no running daemon naming it, nothing queued; plus orphan key files and\n"
                                "dead daemons' status files. An abandoned object that holds data (messages, ring records, a\n"
                                "value) is kept and listed with why; --force removes it too. Objects in use are never removed.");
  gc->add_flag("--dry-run", gc_opts.dry_run, "print every verdict and its reason, remove nothing");
  gc->add_flag("--force", gc_opts.force, "also remove abandoned objects that hold data");
  gc->add_option("--prefix", gc_opts.prefix, "only objects whose name starts with NAME")->type_name("NAME");
  gc->add_flag("--all-segments", gc_opts.all_segments, "every /dev/shm/libipc.* on the machine, not only this user's");

  auto* bench = app.add_subcommand("bench",
                                   "Measure every channel next to the raw syscalls of its mechanism and Boost message_queue\n"
                                   "(ipcctl bench --help for its options; docs/benchmarks.md).");
  bench->prefix_command();  // everything after "bench" is the bench's own, --help included
  bench->set_help_flag();

  if (argc > 1 && argv[1][0] != '-') {
    const std::string_view cmd = argv[1];
    const auto subs = app.get_subcommands([](CLI::App*) { return true; });
    if (std::none_of(subs.begin(), subs.end(), [&](const CLI::App* a) { return a->get_name() == cmd; })) {
      return ipc::daemon::usage_error(app, "unknown command '" + std::string(cmd) + "'");
    }
  }
  if (auto rc = ipc::daemon::parse(app, argc, argv)) return *rc;
  try {
    if (*launch) {
      if (!plain_name(lo.prefix)) return ipc::daemon::usage_error(app, "--prefix: '" + lo.prefix + "' is not a plain name ([A-Za-z0-9._-], 1..100)");
      lo.rate = rate;
      lo.size = static_cast<std::size_t>(size);
      lo.kinds = which == "all" ? std::vector<std::string>{"pipe", "fifo", "msgq", "sem", "shm"} : std::vector<std::string>{which};
      // Validate before create: a record must fit every channel launched, known from the URIs alone.
      for (const auto& kind : lo.kinds) {
        const auto uri = ipc::channel_uri::parse(ipcctl::launch_uri(kind, lo.prefix));
        const std::size_t max = ipc::daemon::max_message_before_open(uri);
        if (ipc::encoded_size(lo.size) > max) {
          return ipc::daemon::usage_error(app, "--size " + std::to_string(lo.size) + ": a record of " +
                                                   std::to_string(ipc::encoded_size(lo.size)) + " bytes exceeds " + kind +
                                                   "'s largest message, " + std::to_string(max) + " bytes");
        }
      }
      return ipcctl::launch(lo);
    }
    if (*status) return cmd_status();
    if (*list) {
      if (list_columns.size() == 1 && list_columns.front() == "help") {
        for (const auto& c : ipcctl::list_columns()) std::cout << c << '\n';
        return exit_ok;
      }
      list_opts.columns = list_columns;
      try {
        return ipcctl::run_list(list_opts, std::cout);
      } catch (const std::invalid_argument& e) {
        return ipc::daemon::usage_error(app, e.what());
      }
    }
    if (*rm) return cmd_rm(rm_spec);
    if (*gc) return ipcctl::run_gc(gc_opts, std::cout, std::cerr);
    if (*bench) {
      std::vector<std::string> rest = bench->remaining();
      std::vector<char*> args{const_cast<char*>("ipcctl bench")};
      for (auto& a : rest) args.push_back(a.data());
      args.push_back(nullptr);
      return ipc::bench::ipc_bench_main(static_cast<int>(args.size() - 1), args.data());
    }
  } catch (const std::exception& e) {
    std::cerr << "ipcctl: " << e.what() << '\n';
    return exit_failure;
  }
  return exit_usage;
}
