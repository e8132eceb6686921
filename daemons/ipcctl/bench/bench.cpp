#include "bench.hpp"

#include "report.hpp"
#include "runner.hpp"
#include "transport.hpp"
#include "transport_idle.hpp"
#include "transport_rate.hpp"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

namespace ipc::bench {
namespace {

constexpr std::size_t min_size = 8;  // room for the sequence number
constexpr std::size_t max_size = std::size_t{16} << 20;

void usage(std::FILE* out, const char* prog) {
  std::fprintf(out,
               "usage: %s [options]            (also: ipcctl bench [options])\n"
               "Measures every libipc channel between two processes: one-way throughput (msgs/s, MB/s) and\n"
               "round-trip latency (p50, p99), next to each mechanism done with plain syscalls (raw) and to\n"
               "Boost.Interprocess message_queue, and prints the ratios. Every message is checked.\n"
               "\n"
               "  --duration S       seconds per measurement (default 0.5; the default run takes ~40 s)\n"
               "  --sizes LIST       message sizes, e.g. 64,1K,16K (default); each %zu B .. 16M\n"
               "  --channels LIST    any of pipe,fifo,msgq,sem,shm (default: all); boost_mq always runs\n"
               "  --json             print the results as JSON instead of the table\n"
               "  --csv              print the results as CSV instead of the table\n"
               "  --plot FILE.png    also draw throughput and latency with gnuplot\n"
               "  --check            exit 1 unless every channel, baseline and boost_mq has a figure\n"
               "  --quiet            no progress lines on stderr\n"
               "  --idle S           also watch a receiver blocked on each idle channel for S seconds\n"
               "  --rate N           also measure one-way latency at N msg/s of 64 B (e.g. 20000)\n"
               "  -h, --help         this text\n"
               "\n"
               "Sizes above a channel's largest message are skipped and shown as \"—\".\n"
               "Ratios: ×raw = libipc ÷ raw and ×boost = this row ÷ boost_mq, for throughput (above 1: faster)\n"
               "and for p50 latency (above 1: slower).\n",
               prog, min_size);
}

bool parse_size(std::string_view s, std::size_t& out) {
  if (s.empty()) return false;
  std::size_t mult = 1;
  const char last = s.back();
  if (last == 'K' || last == 'k') mult = 1024;
  if (last == 'M' || last == 'm') mult = std::size_t{1} << 20;
  if (mult != 1) s.remove_suffix(1);
  if (s.empty() || s.size() > 9) return false;
  std::size_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<std::size_t>(c - '0');
  }
  out = v * mult;
  return true;
}

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

// Returns 0 when parsed, else the exit code (2 for bad options, 0 after --help).
int parse(int argc, char** argv, config& cfg, bool& done) {
  const char* prog = argc > 0 ? argv[0] : "ipc-bench";
  cfg.prog = prog;
  auto bad = [&](const std::string& what) {
    std::fprintf(stderr, "%s: %s\n(see %s --help)\n", prog, what.c_str(), prog);
    return 2;
  };
  cfg.sizes = {64, 1024, 16384};
  for (auto c : channel_names) cfg.channels.emplace_back(c);
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (a == "-h" || a == "--help") {
      usage(stdout, prog);
      done = true;
      return 0;
    }
    if (a == "--json") {
      cfg.format = output_format::json;
    } else if (a == "--csv") {
      cfg.format = output_format::csv;
    } else if (a == "--check") {
      cfg.check = true;
    } else if (a == "--quiet") {
      cfg.quiet = true;
    } else if (a == "--duration") {
      const char* v = value();
      if (v == nullptr) return bad("--duration needs a number of seconds");
      char* end = nullptr;
      const double d = std::strtod(v, &end);
      if (end == v || *end != '\0' || !(d > 0) || d > 60) return bad(std::string("--duration '") + v + "': expected seconds in (0, 60]");
      cfg.seconds = d;
    } else if (a == "--idle") {
      const char* v = i + 1 < argc ? argv[++i] : nullptr;
      char* end = nullptr;
      const double d = v != nullptr ? std::strtod(v, &end) : 0;
      if (v == nullptr || end == v || *end != '\0' || !(d > 0) || d > 60) return bad("--idle: expected seconds in (0, 60]");
      cfg.idle_seconds = d;
    } else if (a == "--rate") {
      const char* v = i + 1 < argc ? argv[++i] : nullptr;
      char* end = nullptr;
      const double r = v != nullptr ? std::strtod(v, &end) : 0;
      if (v == nullptr || end == v || *end != '\0' || !(r >= 10) || r > 1e7) return bad("--rate: expected messages per second in [10, 1e7]");
      cfg.rate = r;
    } else if (a == "--sizes") {
      const char* v = value();
      if (v == nullptr) return bad("--sizes needs a list, e.g. 64,1K,16K");
      cfg.sizes.clear();
      for (const auto& p : split(v)) {
        std::size_t n = 0;
        if (!parse_size(p, n)) return bad("--sizes: '" + p + "' is not a size (e.g. 64, 4K, 1M)");
        if (n < min_size || n > max_size) {
          return bad("--sizes: " + p + " is outside " + std::to_string(min_size) + " B .. 16M");
        }
        cfg.sizes.push_back(n);
      }
    } else if (a == "--channels") {
      const char* v = value();
      if (v == nullptr) return bad("--channels needs a list, e.g. pipe,shm");
      cfg.channels.clear();
      for (const auto& p : split(v)) {
        bool known = false;
        for (auto c : channel_names) known = known || c == p;
        if (!known) return bad("--channels: unknown channel '" + p + "' (pipe, fifo, msgq, sem, shm)");
        cfg.channels.push_back(p);
      }
    } else if (a == "--plot") {
      const char* v = value();
      if (v == nullptr || *v == '\0') return bad("--plot needs a file name, e.g. bench.png");
      cfg.plot_file = v;
    } else {
      return bad("unknown option '" + std::string(a) + "'");
    }
  }
  return 0;
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

// The --idle section: every channel, libipc and raw, one blocked receiver each.
std::vector<idle_row> measure_idle_rows(const config& cfg, bool progress, unsigned& counter) {
  std::vector<idle_row> rows;
  for (const auto& ch : cfg.channels) {
    for (std::string_view impl : {"libipc", "raw"}) {
      idle_row r{ch, std::string(impl), {}, {}};
      if (progress) std::fprintf(stderr, "\r\033[K  %s/%s idle ...", ch.c_str(), r.impl.c_str());
      try {
        r.figures = measure_idle(*make_transport(ch, impl, "ipc-bench." + std::to_string(::getpid()) + "." + std::to_string(++counter)),
                                 cfg.idle_seconds);
      } catch (const std::exception& e) {
        r.error = e.what();
      }
      rows.push_back(std::move(r));
      if (stop_requested.load()) return rows;
    }
  }
  return rows;
}

// The --rate section: every channel, libipc and raw, at the fixed rate for --duration.
std::vector<rate_row> measure_rate_rows(const config& cfg, bool progress, unsigned& counter) {
  std::vector<rate_row> rows;
  for (const auto& ch : cfg.channels) {
    for (std::string_view impl : {"libipc", "raw"}) {
      rate_row r{ch, std::string(impl), {}, {}};
      if (progress) std::fprintf(stderr, "\r\033[K  %s/%s rate ...", ch.c_str(), r.impl.c_str());
      try {
        r.figures = measure_rate(*make_transport(ch, impl, "ipc-bench." + std::to_string(::getpid()) + "." + std::to_string(++counter)),
                                 cfg.rate, cfg.seconds);
      } catch (const std::exception& e) {
        r.error = e.what();
      }
      rows.push_back(std::move(r));
      if (stop_requested.load()) return rows;
    }
  }
  return rows;
}

int run(const config& cfg) {
  const bool progress = !cfg.quiet && ::isatty(STDERR_FILENO) == 1;
  machine_info machine = probe_machine();
  std::vector<cell_result> results;
  unsigned counter = 0;
  // Measures one cell; returns false (after saying why) when it failed: a broken channel posts no figure.
  auto measure = [&](std::string_view channel, std::string_view impl, std::size_t size) {
    cell_result c;
    c.channel = channel;
    c.impl = impl;
    c.size = size;
    const message_limit lim = max_message(channel, impl);
    if (size > lim.bytes) {
      c.skipped = true;
      c.reason = size_label(size) + " > " + lim.why;
      results.push_back(std::move(c));
      return true;
    }
    const std::string label = std::string(channel) + "/" + std::string(impl) + " " + size_label(size);
    if (progress) std::fprintf(stderr, "\r\033[K  %s ...", label.c_str());
    auto prefix = [&] { return "ipc-bench." + std::to_string(::getpid()) + "." + std::to_string(++counter); };
    const char* what = "throughput";
    try {
      c.throughput = measure_throughput(*make_transport(channel, impl, prefix()), size, cfg.seconds);
      what = "latency";
      c.latency = measure_latency(*make_transport(channel, impl, prefix()), size, cfg.seconds);
    } catch (const std::exception& e) {
      if (progress) std::fprintf(stderr, "\r\033[K");
      std::fprintf(stderr, "%s: %s, %s: %s\n", cfg.prog.c_str(), label.c_str(), what, e.what());
      return false;
    }
    results.push_back(std::move(c));
    return true;
  };
  for (std::size_t size : cfg.sizes) {
    for (const auto& ch : cfg.channels) {
      if (!measure(ch, "libipc", size) || !measure(ch, "raw", size)) return stop_requested.load() ? 130 : 1;
    }
    if (!measure(boost_channel, boost_impl, size)) return stop_requested.load() ? 130 : 1;
  }
  std::vector<idle_row> idle;
  if (cfg.idle_seconds > 0) idle = measure_idle_rows(cfg, progress, counter);
  std::vector<rate_row> rated;
  if (cfg.rate > 0) rated = measure_rate_rows(cfg, progress, counter);
  if (progress) std::fprintf(stderr, "\r\033[K");
  machine.load_after = probe_machine().load_before;

  const std::string json = to_json(cfg, machine, results);
  if (cfg.format == output_format::json) std::fputs(json.c_str(), stdout);
  else if (cfg.format == output_format::csv) std::fputs(to_csv(results).c_str(), stdout);
  else std::fputs((to_table(cfg, machine, results) + (idle.empty() ? "" : idle_table(idle, cfg.idle_seconds)) +
                   (rated.empty() ? "" : rate_table(rated, cfg.rate, cfg.seconds))).c_str(), stdout);
  std::fflush(stdout);
  if (!cfg.plot_file.empty()) plot(cfg, machine, results, cfg.plot_file);
  if (cfg.check) {
    const std::vector<std::string> problems = check_json(json, cfg);
    for (const auto& p : problems) std::fprintf(stderr, "ipc-bench: check: %s\n", p.c_str());
    if (!problems.empty()) return 1;
    std::fprintf(stderr, "ipc-bench: check: ok (%zu results, every channel, baseline and boost_mq measured)\n",
                 results.size());
  }
  return 0;
}

}  // namespace

int ipc_bench_main(int argc, char** argv) {
  const char* prog = argc > 0 ? argv[0] : "ipc-bench";
  try {
    config cfg;
    bool done = false;
    if (int rc = parse(argc, argv, cfg, done); rc != 0 || done) return rc;
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
