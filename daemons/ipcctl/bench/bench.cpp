#include "bench.hpp"

#include "report.hpp"
#include "runner.hpp"
#include "transport.hpp"
#include "transport_idle.hpp"
#include "transport_modes.hpp"
#include "transport_zero_copy.hpp"
#include "transport_rate.hpp"

#include "atomic_file.hpp"
#include "cli.hpp"

#include <ipc/size.hpp>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <initializer_list>
#include <cstdlib>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace ipc::bench {
namespace {

constexpr std::size_t min_size = 8;  // room for the sequence number
constexpr std::size_t max_size = std::size_t{16} << 20;

std::vector<std::string> split(std::string_view s) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  for (;;) {
    const std::size_t comma = s.find(',', start);
    parts.emplace_back(s.substr(start, comma - start));
    if (comma == std::string_view::npos) return parts;
    start = comma + 1;
  }
}

// Returns std::nullopt when parsed, else the exit status (2 for bad options, 0 after --help).
std::optional<int> parse(int argc, char** argv, config& cfg) {
  const char* prog = argc > 0 ? argv[0] : "ipc-bench";
  cfg.prog = prog;
  cfg.sizes = {64, 1024, 16384};
  for (auto c : channel_names) cfg.channels.emplace_back(c);
  CLI::App app{"Measures every libipc channel between two processes: one-way throughput (msgs/s, MB/s) and\n"
               "round-trip latency (p50, p99), next to each mechanism done with plain syscalls (raw) and to\n"
               "Boost.Interprocess message_queue, and prints the ratios. Every message is checked.",
               prog};
  app.footer("Sizes above a channel's largest message are skipped and shown as \"—\".\n"
             "Ratios: ×raw = libipc ÷ raw and ×boost = this row ÷ boost_mq, for throughput (above 1: faster)\n"
             "and for p50 latency (above 1: slower). Also run as: ipcctl bench [options].");
  ipc::daemon::add_common(app);
  ipc::daemon::add_seconds(app, "--duration", cfg.seconds, 0.001, 60, "seconds per table cell, split into 3 rounds interleaved with the raw twin's, the best kept (default 0.5; the default run takes ~40 s)");
  std::string sizes, channels;
  app.add_option("--sizes", sizes, "message sizes, e.g. 64,1K,16K (default); each " + std::to_string(min_size) + " B .. 16M")
      ->type_name("LIST");
  app.add_option("--channels", channels, "any of pipe,fifo,msgq,sem,shm (default: all); boost_mq always runs")->type_name("LIST");
  bool json = false, csv = false;
  auto* j = app.add_flag("--json", json, "print the results (every section) as JSON instead of the tables");
  app.add_flag("--csv", csv, "print the results (every section) as one CSV table instead of the tables")->excludes(j);
  app.add_option("--plot", cfg.plot_file, "also draw throughput and latency with gnuplot")->type_name("FILE.png");
  app.add_flag("--check", cfg.check, "exit 1 unless every channel, baseline, boost_mq and section row has its figures");
  app.add_flag("--quiet", cfg.quiet, "no progress lines on stderr");
  ipc::daemon::add_seconds(app, "--idle", cfg.idle_seconds, 0.001, 60, "also watch a receiver blocked on each idle channel (libipc, raw, and the shm modes) for S seconds");
  std::uint64_t rate = 0;  // a whole count, as every other --rate: "nan" or "1e400" is refused, not skipped
  ipc::daemon::add_count(app, "--rate", rate, 10, 10'000'000,
                         "also measure one-way latency at N msg/s of 64 B for --duration (e.g. 20000)");
  app.add_flag("--modes", cfg.modes, "also measure the shm modes with several processes (SPSC 1→1, MPMC 1→1 and 2→2, broadcast 1→1 and 1→4) next to Boost message_queue 1→1 and 2→2; and zero-copy against copying at 64 KiB and 1 MiB");
  if (auto rc = ipc::daemon::parse(app, argc, argv)) return rc;
  cfg.rate = static_cast<double>(rate);
  if (json) cfg.format = output_format::json;
  if (csv) cfg.format = output_format::csv;
  if (!sizes.empty()) {
    cfg.sizes.clear();
    for (const auto& p : split(sizes)) {
      const auto n = ipc::parse_size(p);
      if (!n) return ipc::daemon::usage_error(app, "--sizes: '" + p + "' is not a size (e.g. 64, 4K, 1M)");
      if (*n < min_size || *n > max_size) {
        return ipc::daemon::usage_error(app, "--sizes: " + p + " is outside " + std::to_string(min_size) + " B .. 16M");
      }
      cfg.sizes.push_back(static_cast<std::size_t>(*n));
    }
  }
  if (!channels.empty()) {
    cfg.channels.clear();
    for (const auto& p : split(channels)) {
      bool known = false;
      for (auto c : channel_names) known = known || c == p;
      if (!known) return ipc::daemon::usage_error(app, "--channels: unknown channel '" + p + "' (pipe, fifo, msgq, sem, shm)");
      cfg.channels.push_back(p);
    }
  }
  if (app.count("--plot") > 0 && cfg.plot_file.empty()) return ipc::daemon::usage_error(app, "--plot needs a file name, e.g. bench.png");
  if (!cfg.plot_file.empty()) {
    try {
      ipc::daemon::check_replaceable(cfg.plot_file);  // before a minute of measuring, not after
    } catch (const std::system_error& e) {
      return ipc::daemon::usage_error(app, std::string("--plot: ") + e.what());
    }
  }
  return std::nullopt;
}

extern "C" void on_stop_signal(int) { stop_requested.store(true); }

// Installs the ^C / SIGTERM handler and ignores SIGPIPE (a raw write to a dead peer must fail
// with EPIPE, not kill us) for the run; the caller's dispositions come back afterwards.
class signal_scope {
 public:
  signal_scope() {
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESTART;
    ::sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, &old_int_);
    ::sigaction(SIGTERM, &sa, &old_term_);
    struct sigaction ign {};
    ign.sa_handler = SIG_IGN;
    ::sigemptyset(&ign.sa_mask);
    ::sigaction(SIGPIPE, &ign, &old_pipe_);
  }
  ~signal_scope() {
    ::sigaction(SIGINT, &old_int_, nullptr);
    ::sigaction(SIGTERM, &old_term_, nullptr);
    ::sigaction(SIGPIPE, &old_pipe_, nullptr);
  }
  signal_scope(const signal_scope&) = delete;
  signal_scope& operator=(const signal_scope&) = delete;

 private:
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
  struct sigaction old_pipe_ {};
};

// The channels of the --idle and --rate sections: every selected channel, libipc and raw, then
// the uri_channels whose scheme is selected (libipc only).
std::vector<std::pair<std::string, std::string>> section_rows(const config& cfg) {
  std::vector<std::pair<std::string, std::string>> rows;
  for (const auto& ch : cfg.channels) {
    for (const char* impl : {"libipc", "raw"}) rows.emplace_back(ch, impl);
  }
  for (const auto& u : uri_channels) {
    for (const auto& ch : cfg.channels) {
      if (ch == u.scheme) rows.emplace_back(u.label, "libipc");
    }
  }
  return rows;
}

// Measures one section: one row per section_rows() entry, each in its own transport. Never throws
// (a failed row says why).
template <class Row, class Measure>
std::vector<Row> measure_section(const config& cfg, const char* what, bool progress, unsigned& counter, Measure measure) {
  std::vector<Row> rows;
  for (const auto& [ch, impl] : section_rows(cfg)) {
    Row r{ch, impl, {}, {}};
    if (progress) std::fprintf(stderr, "\r\033[K  %s/%s %s ...", ch.c_str(), impl.c_str(), what);
    try {
      r.figures = measure(*make_transport(ch, impl, "ipc-bench." + std::to_string(::getpid()) + "." + std::to_string(++counter)));
    } catch (const std::exception& e) {
      r.error = e.what();
    }
    rows.push_back(std::move(r));
    if (stop_requested.load()) return rows;
  }
  return rows;
}

int run(const config& cfg) {
  const bool progress = !cfg.quiet && ::isatty(STDERR_FILENO) == 1;
  machine_info machine = probe_machine();
  std::vector<cell_result> results;
  unsigned counter = 0;
  // One cell per (channel, impl, size). A libipc row and its raw twin are measured in `rounds`
  // interleaved rounds of --duration ÷ rounds each (libipc, raw, libipc, raw, ...), and each keeps its
  // best round: the machine's load swings within seconds, so a ratio of two runs taken at different
  // moments says more about the load than about the library (docs/benchmarks.md, "Fair ratios").
  auto prefix = [&] { return "ipc-bench." + std::to_string(::getpid()) + "." + std::to_string(++counter); };
  constexpr unsigned rounds = cell_rounds;
  const double round_seconds = cfg.seconds / rounds;
  // Measures the cells of `impls` for one channel and size; returns false (after saying why) when
  // one failed: a broken channel posts no figure.
  auto measure = [&](std::string_view channel, std::initializer_list<std::string_view> impls, std::size_t size) {
    std::vector<cell_result> cells;
    for (std::string_view impl : impls) {
      cell_result c;
      c.channel = channel;
      c.impl = impl;
      c.size = size;
      const message_limit lim = max_message(channel, impl);
      if (size > lim.bytes) {
        c.skipped = true;
        c.reason = size_label(size) + " > " + lim.why;
      }
      cells.push_back(std::move(c));
    }
    for (unsigned round = 0; round < rounds; ++round) {
      for (const char* what : {"throughput", "latency"}) {
        for (auto& c : cells) {
          if (c.skipped) continue;
          const std::string label = c.channel + "/" + c.impl + " " + size_label(size);
          if (progress) std::fprintf(stderr, "\r\033[K  %s %s %u/%u ...", label.c_str(), what, round + 1, rounds);
          try {
            if (what[0] == 't') {
              const throughput_figures f = measure_throughput(*make_transport(c.channel, c.impl, prefix()), size, round_seconds);
              const double rate = f.seconds > 0 ? static_cast<double>(f.messages) / f.seconds : 0;
              const double cpu = c.throughput.cpu_ns_per_msg;
              if (round == 0 || rate > c.msgs_per_s()) c.throughput = f;
              c.throughput.cpu_ns_per_msg = round == 0 ? f.cpu_ns_per_msg : std::min(cpu, f.cpu_ns_per_msg);
            } else {
              const latency_figures f = measure_latency(*make_transport(c.channel, c.impl, prefix()), size, round_seconds);
              if (round == 0 || f.p50_us < c.latency.p50_us) c.latency = f;
            }
          } catch (const std::exception& e) {
            if (progress) std::fprintf(stderr, "\r\033[K");
            std::fprintf(stderr, "%s: %s, %s: %s\n", cfg.prog.c_str(), label.c_str(), what, e.what());
            return false;
          }
        }
      }
    }
    for (auto& c : cells) results.push_back(std::move(c));
    return true;
  };
  for (std::size_t size : cfg.sizes) {
    for (const auto& ch : cfg.channels) {
      if (!measure(ch, {"libipc", "raw"}, size)) return stop_requested.load() ? 130 : 1;
    }
    if (!measure(boost_channel, {boost_impl}, size)) return stop_requested.load() ? 130 : 1;
  }
  sections more;
  auto& [idle, rated, modes, zero_copy_rows] = more;
  if (cfg.idle_seconds > 0) {
    idle = measure_section<idle_row>(cfg, "idle", progress, counter,
                                     [&](transport& t) { return measure_idle(t, cfg.idle_seconds); });
  }
  if (cfg.rate > 0) {
    rated = measure_section<rate_row>(cfg, "rate", progress, counter,
                                      [&](transport& t) { return measure_rate(t, cfg.rate, cfg.seconds); });
  }
  zero_copy_report zero_copy;
  if (cfg.modes) {
    if (progress) std::fprintf(stderr, "\r\033[K  shm modes ...");
    modes = measure_mode_rows(cfg.sizes, cfg.seconds, "ipc-bench." + std::to_string(::getpid()) + ".modes");
    zero_copy = measure_zero_copy(cfg.seconds, "ipc-bench." + std::to_string(::getpid()) + ".zc");
    zero_copy_rows = zero_copy.rows;
  }
  if (progress) std::fprintf(stderr, "\r\033[K");
  if (stop_requested.load()) return 130;
  machine.load_after = probe_machine().load_before;

  const std::string json = to_json(cfg, machine, results, more);
  if (cfg.format == output_format::json) std::fputs(json.c_str(), stdout);
  else if (cfg.format == output_format::csv) std::fputs(to_csv(cfg, results, more).c_str(), stdout);
  else std::fputs((to_table(cfg, machine, results) + (idle.empty() ? "" : idle_table(idle, cfg.idle_seconds)) +
                   (rated.empty() ? "" : rate_table(rated, cfg.rate, cfg.seconds)) +
                   (modes.empty() ? "" : mode_table(modes, cfg.seconds)) + zero_copy.table).c_str(), stdout);
  std::fflush(stdout);
  if (!cfg.plot_file.empty()) plot(cfg, machine, results, cfg.plot_file);
  for (const std::string& failed : more.failures()) {
    std::fprintf(stderr, "%s: %s\n", cfg.prog.c_str(), failed.c_str());  // a broken channel posts no figure
  }
  if (!more.failures().empty()) return 1;
  if (cfg.check) {
    const std::vector<std::string> problems = check_json(json, cfg);
    for (const auto& p : problems) std::fprintf(stderr, "ipc-bench: check: %s\n", p.c_str());
    if (!problems.empty()) return 1;
    std::fprintf(stderr, "ipc-bench: check: ok (%zu results, every channel, baseline and boost_mq measured; "
                 "%zu idle, %zu rate, %zu modes, %zu zero-copy rows with figures)\n",
                 results.size(), idle.size(), rated.size(), modes.size(), zero_copy_rows.size());
  }
  return 0;
}

}  // namespace

int ipc_bench_main(int argc, char** argv) {
  const char* prog = argc > 0 ? argv[0] : "ipc-bench";
  try {
    config cfg;
    if (auto rc = parse(argc, argv, cfg)) return *rc;
    if (!cfg.plot_file.empty() && find_gnuplot().empty()) {
      std::fprintf(stderr, "%s: --plot needs gnuplot, which is not installed: apt-get install gnuplot-nox\n", prog);
      return 2;
    }
    stop_requested.store(false);
    signal_scope signals;
    try {
      return run(cfg);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: %s\n", prog, e.what());
      return stop_requested.load() ? 130 : 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", prog, e.what());
    return 1;
  }
}

}  // namespace ipc::bench
