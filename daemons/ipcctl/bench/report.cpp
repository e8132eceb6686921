#include "report.hpp"

#include "numbers.hpp"
#include "transport.hpp"

#include <ipc/error.hpp>

#include "atomic_file.hpp"
#include "table.hpp"

#include <ipc/fd_io.hpp>
#include <ipc/process.hpp>
#include <ipc/unique_fd.hpp>

#include <fcntl.h>

#include <nlohmann/json.hpp>

#include <sys/utsname.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>

namespace ipc::bench {
namespace {

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  const int n = std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return n < 0 ? std::string() : std::string(buf, std::min(static_cast<std::size_t>(n), sizeof buf - 1));
}

struct ratios {
  std::optional<double> raw_throughput, raw_p50, boost_throughput, boost_p50, raw_cpu;
};

const cell_result* find(const std::vector<cell_result>& all, std::string_view channel, std::string_view impl,
                        std::size_t size) {
  for (const auto& c : all) {
    if (c.channel == channel && c.impl == impl && c.size == size && !c.skipped) return &c;
  }
  return nullptr;
}

std::optional<double> quotient(double a, double b) {
  if (!(a > 0) || !(b > 0)) return std::nullopt;
  return a / b;
}

ratios ratios_of(const cell_result& c, const std::vector<cell_result>& all) {
  ratios r;
  if (c.skipped || c.impl == boost_impl) return r;
  if (c.impl == "libipc") {
    if (const auto* raw = find(all, c.channel, "raw", c.size)) {
      r.raw_throughput = quotient(c.msgs_per_s(), raw->msgs_per_s());
      r.raw_p50 = quotient(c.latency.p50_us, raw->latency.p50_us);
      r.raw_cpu = quotient(c.throughput.cpu_ns_per_msg, raw->throughput.cpu_ns_per_msg);
    }
  }
  if (const auto* b = find(all, boost_channel, boost_impl, c.size)) {
    r.boost_throughput = quotient(c.msgs_per_s(), b->msgs_per_s());
    r.boost_p50 = quotient(c.latency.p50_us, b->latency.p50_us);
  }
  return r;
}

}  // namespace

std::string size_label(std::size_t n) {
  if (n >= (std::size_t{1} << 20) && n % (std::size_t{1} << 20) == 0) return std::to_string(n >> 20) + " MiB";
  if (n >= 1024 && n % 1024 == 0) return std::to_string(n >> 10) + " KiB";
  return std::to_string(n) + " B";
}

machine_info probe_machine() noexcept {
  machine_info m;
  try {
    m.cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
    std::ifstream cpu("/proc/cpuinfo");
    for (std::string line; std::getline(cpu, line);) {
      if (line.rfind("model name", 0) == 0) {
        const auto colon = line.find(':');
        if (colon != std::string::npos) m.cpu_model = line.substr(line.find_first_not_of(" \t", colon + 1));
        break;
      }
    }
    utsname u{};
    if (::uname(&u) == 0) m.kernel = std::string(u.sysname) + " " + u.release;
    std::ifstream load("/proc/loadavg");
    load >> m.load_before;
  } catch (...) {  // NOLINT(bugprone-empty-catch): machine facts are decoration; the run goes on
  }
  m.load_after = m.load_before;
  return m;
}

std::string to_table(const config& cfg, const machine_info& m, const std::vector<cell_result>& r) {
  std::string out;
  out += format("libipc benchmark: %ld CPUs (%s), %s, %.2f s per measurement, load %.2f -> %.2f\n", m.cpus,
                m.cpu_model.c_str(), m.kernel.c_str(), cfg.seconds, m.load_before, m.load_after);
  out += "throughput: the child sends, the parent receives and checks every message; latency: ping-pong round trip.\n";
  out += "×raw = libipc ÷ raw, ×boost = row ÷ boost_mq; for throughput above 1× is faster, for CPU and latency above 1× is slower.\n";
  out += format("CPU ns/msg: both processes' CPU time per message. Each cell is the best of %u rounds interleaved with its raw twin's.\n", cell_rounds);
  for (std::size_t size : cfg.sizes) {
    out += "\n" + size_label(size) + ": one-way throughput | round-trip latency\n";
    daemon::table t({"channel", "impl", "msgs/s", "MB/s", "×raw", "×boost", "CPU ns/msg", "×raw", "|", "p50 µs", "p99 µs", "×raw", "×boost", ""},
                    {false, false, true, true, true, true, true, true, false, true, true, true, true, false});
    for (const auto& c : r) {
      if (c.size != size) continue;
      if (c.skipped) {
        t.add({c.channel, c.impl, "—", "—", "", "", "—", "", "|", "—", "—", "", "", "(" + c.reason + ")"});
        continue;
      }
      const ratios q = ratios_of(c, r);
      t.add({c.channel, c.impl, rate_label(c.msgs_per_s()), format("%.1f", c.mb_per_s()), times(q.raw_throughput),
             times(q.boost_throughput), format("%.0f", c.throughput.cpu_ns_per_msg), times(q.raw_cpu), "|",
             format("%.1f", c.latency.p50_us), format("%.1f", c.latency.p99_us),
             times(q.raw_p50), times(q.boost_p50), ""});
    }
    out += t.render();
  }
  return out;
}

std::vector<std::string> sections::failures() const {
  std::vector<std::string> out;
  for (const auto& r : idle) {
    if (!r.error.empty()) out.push_back("idle " + r.channel + "/" + r.impl + ": " + r.error);
  }
  for (const auto& r : rate) {
    if (!r.error.empty()) out.push_back("rate " + r.channel + "/" + r.impl + ": " + r.error);
  }
  for (const auto& r : modes) {
    if (!r.error.empty()) out.push_back("modes " + r.label + " " + size_label(r.size) + ": " + r.error);
  }
  for (const auto& r : zero_copy) {
    if (!r.error.empty()) out.push_back("zero_copy " + r.label() + " " + size_label(r.size) + ": " + r.error);
  }
  return out;
}

std::string to_json(const config& cfg, const machine_info& m, const std::vector<cell_result>& r, const sections& more) {
  using json = nlohmann::ordered_json;
  auto number = [](const std::optional<double>& v) { return v ? json(*v) : json(nullptr); };
  auto error = [](const std::string& e) { return e.empty() ? json(nullptr) : json(e); };
  json results = json::array();
  for (const auto& c : r) {
    json cell = {{"channel", c.channel}, {"impl", c.impl}, {"size", c.size}, {"skipped", c.skipped}};
    if (c.skipped) {
      cell["reason"] = c.reason;
    } else {
      const ratios q = ratios_of(c, r);
      cell["throughput"] = {{"messages", c.throughput.messages},
                            {"seconds", c.throughput.seconds},
                            {"msgs_per_s", c.msgs_per_s()},
                            {"mb_per_s", c.mb_per_s()},
                            {"cpu_ns_per_msg", c.throughput.cpu_ns_per_msg}};
      cell["latency"] = {{"round_trips", c.latency.round_trips}, {"p50_us", c.latency.p50_us}, {"p99_us", c.latency.p99_us}};
      cell["ratio_vs_raw"] = {{"throughput", number(q.raw_throughput)}, {"latency_p50", number(q.raw_p50)},
                              {"cpu_per_msg", number(q.raw_cpu)}};
      cell["ratio_vs_boost"] = {{"throughput", number(q.boost_throughput)}, {"latency_p50", number(q.boost_p50)}};
    }
    results.push_back(std::move(cell));
  }
  json doc = {{"tool", "ipc-bench"},
              {"machine",
               {{"cpus", m.cpus},
                {"cpu_model", m.cpu_model},
                {"kernel", m.kernel},
                {"load_before", m.load_before},
                {"load_after", m.load_after}}},
              {"config",
               {{"duration_s", cfg.seconds},
                {"rounds", cell_rounds},
                {"sizes", cfg.sizes},
                {"channels", cfg.channels},
                {"idle_s", cfg.idle_seconds},
                {"rate", cfg.rate},
                {"modes", cfg.modes}}},
              {"results", std::move(results)}};
  // A failed row keeps its place, with null figures and its error.
  if (cfg.idle_seconds > 0) {
    json rows = json::array();
    for (const auto& i : more.idle) {
      const bool ok = i.error.empty();
      rows.push_back({{"channel", i.channel},
                      {"impl", i.impl},
                      {"wakeups_per_s", ok ? json(i.figures.wakeups_per_s) : json(nullptr)},
                      {"cpu_ms_per_s", ok ? json(i.figures.cpu_ms_per_s) : json(nullptr)},
                      {"error", error(i.error)}});
    }
    doc["idle"] = {{"seconds", cfg.idle_seconds}, {"rows", std::move(rows)}};
  }
  if (cfg.rate > 0) {
    json rows = json::array();
    for (const auto& t : more.rate) {
      const bool ok = t.error.empty();
      rows.push_back({{"channel", t.channel},
                      {"impl", t.impl},
                      {"messages", ok ? json(t.figures.messages) : json(nullptr)},
                      {"p50_us", ok ? json(t.figures.p50_us) : json(nullptr)},
                      {"p99_us", ok ? json(t.figures.p99_us) : json(nullptr)},
                      {"error", error(t.error)}});
    }
    doc["rate"] = {{"msgs_per_s", cfg.rate}, {"size", 64}, {"seconds", cfg.seconds}, {"rows", std::move(rows)}};
  }
  if (cfg.modes) {
    json rows = json::array();
    for (const auto& x : more.modes) {
      const bool ok = x.error.empty();
      auto fig = [ok](double v) { return ok ? json(v) : json(nullptr); };
      rows.push_back({{"label", x.label},
                      {"size", x.size},
                      {"senders", x.senders},
                      {"receivers", x.receivers},
                      {"broadcast", x.broadcast},
                      {"sent", ok ? json(x.figures.sent) : json(nullptr)},
                      {"messages", ok ? json(x.figures.messages) : json(nullptr)},
                      {"seconds", fig(x.figures.seconds)},
                      {"msgs_per_s", fig(x.figures.rate())},
                      {"per_receiver_msgs_per_s", fig(x.per_receiver_rate())},
                      {"mb_per_s", fig(x.figures.rate() * static_cast<double>(x.size) / 1e6)},
                      {"ratio_spsc", ok && x.vs_spsc > 0 ? json(x.vs_spsc) : json(nullptr)},
                      {"error", error(x.error)}});
    }
    doc["modes"] = {{"seconds", cfg.seconds}, {"rows", std::move(rows)}};
    json zc = json::array();
    for (const auto& x : more.zero_copy) {
      const bool ok = x.error.empty();
      auto fig = [ok](double v) { return ok ? json(v) : json(nullptr); };
      zc.push_back({{"label", x.label()},
                    {"path", x.path},
                    {"touched", x.touch_all ? "all" : "ends"},
                    {"size", x.size},
                    {"messages", ok ? json(x.messages) : json(nullptr)},
                    {"seconds", fig(x.seconds)},
                    {"msgs_per_s", fig(x.rate())},
                    {"mb_per_s", fig(x.rate() * static_cast<double>(x.size) / 1e6)},
                    {"ratio_copy", ok && x.vs_copy > 0 ? json(x.vs_copy) : json(nullptr)},
                    {"error", error(x.error)}});
    }
    doc["zero_copy"] = {{"seconds", cfg.seconds}, {"rows", std::move(zc)}};
  }
  return doc.dump(2) + "\n";
}

namespace {

// One CSV row by column name; write() puts the cells in `csv_columns` order, quoted where needed.
constexpr const char* csv_columns[] = {
    "section", "channel", "impl", "label", "size", "skipped", "messages", "seconds", "msgs_per_s", "mb_per_s",
    "ratio_raw_throughput", "ratio_boost_throughput", "cpu_ns_per_msg", "ratio_raw_cpu", "round_trips", "p50_us", "p99_us", "ratio_raw_p50",
    "ratio_boost_p50", "senders", "receivers", "sent", "per_receiver_msgs_per_s", "ratio_spsc", "ratio_copy", "wakeups_per_s",
    "cpu_ms_per_s", "error"};

std::string csv_cell(const std::string& v) {
  if (v.find_first_of(",\"\n\r") == std::string::npos) return v;
  std::string q = "\"";
  for (char ch : v) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return q + "\"";
}

std::string csv_row(const std::map<std::string, std::string>& cells) {
  std::string out;
  for (const char* col : csv_columns) {
    if (col != csv_columns[0]) out += ",";
    if (auto it = cells.find(col); it != cells.end()) out += csv_cell(it->second);
  }
  return out + "\n";
}

}  // namespace

std::string to_csv(const config& cfg, const std::vector<cell_result>& r, const sections& more) {
  std::string out;
  for (const char* col : csv_columns) out += std::string(col == csv_columns[0] ? "" : ",") + col;
  out += "\n";
  auto opt = [](const std::optional<double>& v) { return v ? format("%.4f", *v) : std::string(); };
  for (const auto& c : r) {
    std::map<std::string, std::string> row = {{"section", "table"}, {"channel", c.channel}, {"impl", c.impl},
                                               {"size", std::to_string(c.size)}, {"skipped", c.skipped ? "1" : "0"}};
    if (!c.skipped) {
      const ratios q = ratios_of(c, r);
      row.insert({{"messages", std::to_string(c.throughput.messages)},
                  {"seconds", format("%.6f", c.throughput.seconds)},
                  {"msgs_per_s", format("%.1f", c.msgs_per_s())},
                  {"mb_per_s", format("%.3f", c.mb_per_s())},
                  {"ratio_raw_throughput", opt(q.raw_throughput)},
                  {"ratio_boost_throughput", opt(q.boost_throughput)},
                  {"cpu_ns_per_msg", format("%.1f", c.throughput.cpu_ns_per_msg)},
                  {"ratio_raw_cpu", opt(q.raw_cpu)},
                  {"round_trips", std::to_string(c.latency.round_trips)},
                  {"p50_us", format("%.3f", c.latency.p50_us)},
                  {"p99_us", format("%.3f", c.latency.p99_us)},
                  {"ratio_raw_p50", opt(q.raw_p50)},
                  {"ratio_boost_p50", opt(q.boost_p50)}});
    }
    out += csv_row(row);
  }
  for (const auto& i : more.idle) {
    std::map<std::string, std::string> row = {{"section", "idle"}, {"channel", i.channel}, {"impl", i.impl},
                                              {"size", "64"}, {"seconds", format("%.3f", cfg.idle_seconds)}, {"error", i.error}};
    if (i.error.empty()) {
      row.insert({{"wakeups_per_s", format("%.3f", i.figures.wakeups_per_s)}, {"cpu_ms_per_s", format("%.4f", i.figures.cpu_ms_per_s)}});
    }
    out += csv_row(row);
  }
  for (const auto& t : more.rate) {
    // msgs_per_s and seconds: the rate asked for and how long it was held.
    std::map<std::string, std::string> row = {{"section", "rate"}, {"channel", t.channel}, {"impl", t.impl},
                                              {"size", "64"}, {"msgs_per_s", format("%.1f", cfg.rate)},
                                              {"seconds", format("%.3f", cfg.seconds)}, {"error", t.error}};
    if (t.error.empty()) {
      row.insert({{"messages", std::to_string(t.figures.messages)},
                  {"p50_us", format("%.3f", t.figures.p50_us)},
                  {"p99_us", format("%.3f", t.figures.p99_us)}});
    }
    out += csv_row(row);
  }
  for (const auto& x : more.modes) {
    std::map<std::string, std::string> row = {{"section", "modes"},
                                              {"label", x.label},
                                              {"size", std::to_string(x.size)},
                                              {"senders", std::to_string(x.senders)},
                                              {"receivers", std::to_string(x.receivers)},
                                              {"error", x.error}};
    if (x.error.empty()) {
      row.insert({{"messages", std::to_string(x.figures.messages)},
                  {"sent", std::to_string(x.figures.sent)},
                  {"seconds", format("%.6f", x.figures.seconds)},
                  {"msgs_per_s", format("%.1f", x.figures.rate())},
                  {"mb_per_s", format("%.3f", x.figures.rate() * static_cast<double>(x.size) / 1e6)},
                  {"per_receiver_msgs_per_s", format("%.1f", x.per_receiver_rate())},
                  {"ratio_spsc", x.vs_spsc > 0 ? format("%.4f", x.vs_spsc) : std::string()}});
    }
    out += csv_row(row);
  }
  for (const auto& x : more.zero_copy) {
    std::map<std::string, std::string> row = {{"section", "zero_copy"}, {"channel", "shm"}, {"label", x.label()},
                                              {"size", std::to_string(x.size)}, {"error", x.error}};
    if (x.error.empty()) {
      row.insert({{"messages", std::to_string(x.messages)},
                  {"seconds", format("%.6f", x.seconds)},
                  {"msgs_per_s", format("%.1f", x.rate())},
                  {"mb_per_s", format("%.3f", x.rate() * static_cast<double>(x.size) / 1e6)},
                  {"ratio_copy", x.vs_copy > 0 ? format("%.4f", x.vs_copy) : std::string()}});
    }
    out += csv_row(row);
  }
  return out;
}

std::string find_gnuplot() {
  const char* path = std::getenv("PATH");
  std::string_view dirs = path != nullptr ? path : "/usr/bin:/bin";
  while (!dirs.empty()) {
    const auto colon = dirs.find(':');
    const std::string dir(dirs.substr(0, colon));
    dirs = colon == std::string_view::npos ? std::string_view() : dirs.substr(colon + 1);
    if (dir.empty()) continue;
    const std::string candidate = dir + "/gnuplot";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

void plot(const config& cfg, const machine_info& m, const std::vector<cell_result>& r, const std::string& file) {
  const std::string gnuplot = find_gnuplot();
  if (gnuplot.empty()) throw_error(errc::closed, "plot", file, "gnuplot is not installed: apt-get install gnuplot-nox");
  // One data block per (channel, impl) series, in table order: size, msgs/s, p50 µs.
  std::vector<std::string> series;
  std::map<std::string, std::string> blocks;
  for (const auto& c : r) {
    if (c.skipped) continue;
    const std::string key = c.channel + " " + c.impl;
    if (!blocks.count(key)) series.push_back(key);
    blocks[key] += format("%zu %.3f %.3f\n", c.size, c.msgs_per_s(), c.latency.p50_us);
  }
  char dir_template[] = "/tmp/ipc-bench-plot.XXXXXX";
  if (::mkdtemp(dir_template) == nullptr) ipc::throw_errno(errno, "mkdtemp", dir_template);
  const std::filesystem::path dir(dir_template);
  struct remove_dir {
    std::filesystem::path p;
    ~remove_dir() {
      std::error_code ec;
      std::filesystem::remove_all(p, ec);
    }
  } cleanup{dir};
  {
    std::ofstream data(dir / "data");
    for (const auto& s : series) data << "# " << s << "\n" << blocks[s] << "\n\n";
    std::ofstream script(dir / "plot.gp");
    auto quoted = [](const std::string& s) {
      std::string q = "'";
      for (char ch : s) q += ch == '\'' ? std::string("''") : std::string(1, ch);
      return q + "'";
    };
    // gnuplot truncates whatever its output names: it draws into our directory, and the picture
    // reaches `file` by write_file_atomically (a regular file or nothing is ever replaced).
    script << "set terminal pngcairo size 1400,600 noenhanced\n"
           << "set output " << quoted((dir / "plot.png").string()) << "\n"
           << "set multiplot layout 1,2 title " << quoted(format("libipc benchmark: %ld CPUs, %s, %.2f s per measurement", m.cpus, m.kernel.c_str(), cfg.seconds)) << "\n"
           << "set logscale xy\nset grid\nset key outside bottom center horizontal maxrows 4\n"
           << "set xlabel 'message size (bytes)'\n";
    const std::string data_file = quoted((dir / "data").string());
    for (int panel = 0; panel < 2; ++panel) {
      script << (panel == 0 ? "set title 'throughput, one way'\nset ylabel 'messages/s'\n"
                            : "set title 'round-trip latency, p50'\nset ylabel 'microseconds'\n");
      script << "plot ";
      for (std::size_t i = 0; i < series.size(); ++i) {
        // One colour per channel; solid for libipc, dashed for raw.
        const std::string channel = series[i].substr(0, series[i].find(' '));
        std::size_t colour = 0;
        while (colour < std::size(channel_names) && channel_names[colour] != channel) ++colour;
        const bool raw = series[i].find(" raw") != std::string::npos;
        script << (i ? ", " : "") << data_file << " index " << i << " using 1:" << (panel == 0 ? 2 : 3)
               << " with linespoints lw 2 lc " << colour + 1 << " dt " << (raw ? 2 : 1) << " title " << quoted(series[i]);
      }
      script << "\n";
    }
    script << "unset multiplot\n";
    if (!script || !data) ipc::throw_errno(EIO, "write", dir.string());
  }
  const std::string script_path = (dir / "plot.gp").string();
  const exit_status st = process::exec({gnuplot, script_path}).join();
  if (!st.success()) {
    throw_error(errc::corrupt, "gnuplot", file, "gnuplot " + st.to_string() + "; see its messages above");
  }
  const std::string png_path = (dir / "plot.png").string();
  const unique_fd png{ipc::check_unix(::open(png_path.c_str(), O_RDONLY | O_CLOEXEC), "open", png_path)};
  ipc::daemon::write_file_atomically(file, ipc::read_all(png.get(), png_path));
}

namespace {

// --check for the sections after the table: each ran as asked, and every row has its figures.
void check_sections(const nlohmann::json& root, const config& cfg, std::vector<std::string>& problems) {
  // The section's rows, or null (and a problem) when the section is missing or empty.
  auto rows_of = [&](const char* section, bool asked) -> const nlohmann::json* {
    if (!asked) {
      if (root.contains(section)) problems.push_back(std::string(section) + ": present but not asked for");
      return nullptr;
    }
    if (!root.contains(section) || !root[section].contains("rows") || root[section]["rows"].empty()) {
      problems.push_back(std::string(section) + ": no rows");
      return nullptr;
    }
    return &root[section]["rows"];
  };
  // Every selected channel's libipc and raw row (and the uri_channels rows) in --idle and --rate.
  auto check_channels = [&](const char* section, const nlohmann::json& rows) {
    std::map<std::string, int> want;
    for (const auto& ch : cfg.channels) {
      ++want[ch + "/libipc"];
      ++want[ch + "/raw"];
      for (const auto& u : uri_channels) {
        if (u.scheme == ch) ++want[std::string(u.label) + "/libipc"];
      }
    }
    for (const auto& v : rows) --want[v.at("channel").get<std::string>() + "/" + v.at("impl").get<std::string>()];
    for (const auto& [key, n] : want) {
      if (n != 0) problems.push_back(std::string(section) + " " + key + ": " + (n > 0 ? "missing" : "more than one row"));
    }
  };
  try {
    if (const auto* rows = rows_of("idle", cfg.idle_seconds > 0)) {
      check_channels("idle", *rows);
      for (const auto& v : *rows) {
        const std::string where = "idle " + v.at("channel").get<std::string>() + "/" + v.at("impl").get<std::string>();
        if (!v.at("error").is_null()) problems.push_back(where + ": failed: " + v.at("error").get<std::string>());
        else if (!(v.at("wakeups_per_s").get<double>() >= 0) || !(v.at("cpu_ms_per_s").get<double>() >= 0)) {
          problems.push_back(where + ": no wake-up or CPU figure");
        }
      }
    }
    if (const auto* rows = rows_of("rate", cfg.rate > 0)) {
      check_channels("rate", *rows);
      for (const auto& v : *rows) {
        const std::string where = "rate " + v.at("channel").get<std::string>() + "/" + v.at("impl").get<std::string>();
        if (!v.at("error").is_null()) {
          problems.push_back(where + ": failed: " + v.at("error").get<std::string>());
        } else if (v.at("messages").get<std::uint64_t>() == 0 || !(v.at("p50_us").get<double>() > 0) ||
                   v.at("p99_us").get<double>() < v.at("p50_us").get<double>()) {
          problems.push_back(where + ": no latency figure (or p99 below p50)");
        }
      }
    }
    if (const auto* rows = rows_of("modes", cfg.modes)) {
      std::map<std::size_t, std::size_t> per_size;
      for (const auto& size : cfg.sizes) per_size[size] = 0;
      for (const auto& v : *rows) {
        const auto size = v.at("size").get<std::size_t>();
        const std::string where = "modes " + v.at("label").get<std::string>() + " " + std::to_string(size) + " B";
        if (per_size.count(size) == 0) problems.push_back(where + ": not a selected size");
        ++per_size[size];
        if (!v.at("error").is_null()) {
          problems.push_back(where + ": failed: " + v.at("error").get<std::string>());
        } else if (v.at("senders").get<unsigned>() == 0 || v.at("receivers").get<unsigned>() == 0 ||
                   v.at("sent").get<std::uint64_t>() == 0 || v.at("messages").get<std::uint64_t>() == 0 ||
                   !(v.at("msgs_per_s").get<double>() > 0) ||
                   !(v.at("per_receiver_msgs_per_s").get<double>() > 0) || v.at("ratio_spsc").is_null() ||
                   !(v.at("ratio_spsc").get<double>() > 0)) {
          problems.push_back(where + ": no figures (senders, receivers, sent, messages, msg/s, per receiver, ×spsc)");
        }
      }
      for (const auto& [size, n] : per_size) {
        if (n == 0) problems.push_back("modes: no row at " + std::to_string(size) + " B");
      }
    }
    if (const auto* rows = rows_of("zero_copy", cfg.modes)) {
      // Every path at every size and touch: copy and zero-copy, 64 KiB and 1 MiB, ends and all.
      std::map<std::string, int> want;
      for (const char* path : {"copy", "zero-copy"}) {
        for (const char* touched : {"ends", "all"}) {
          for (const char* size : {"65536", "1048576"}) want[std::string(path) + " " + touched + " " + size] = 1;
        }
      }
      for (const auto& v : *rows) {
        const std::string where = "zero_copy " + v.at("label").get<std::string>() + " " +
                                  std::to_string(v.at("size").get<std::size_t>()) + " B";
        --want[v.at("label").get<std::string>() + " " + std::to_string(v.at("size").get<std::size_t>())];
        if (!v.at("error").is_null()) {
          problems.push_back(where + ": failed: " + v.at("error").get<std::string>());
        } else if (v.at("messages").get<std::uint64_t>() == 0 || !(v.at("msgs_per_s").get<double>() > 0) ||
                   v.at("ratio_copy").is_null() || !(v.at("ratio_copy").get<double>() > 0)) {
          problems.push_back(where + ": no figures (messages, msg/s, ×copy)");
        }
      }
      for (const auto& [key, n] : want) {
        if (n != 0) problems.push_back("zero_copy " + key + " B: " + (n > 0 ? "missing" : "more than one row"));
      }
    }
  } catch (const std::exception& e) {
    problems.push_back(std::string("the JSON output lacks a section field: ") + e.what());
  }
}

}  // namespace

std::vector<std::string> check_json(const std::string& text, const config& cfg) {
  std::vector<std::string> problems;
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    problems.push_back(std::string("the JSON output does not parse: ") + e.what());
    return problems;
  }
  struct tally {
    std::size_t entries = 0;
    std::size_t measured = 0;
  };
  std::map<std::string, tally> rows;
  for (const auto& ch : cfg.channels) {
    rows[ch + "/libipc"];
    rows[ch + "/raw"];
  }
  rows[std::string(boost_channel) + "/" + std::string(boost_impl)];
  try {
    for (const auto& v : root.at("results")) {
      const std::string key = v.at("channel").get<std::string>() + "/" + v.at("impl").get<std::string>();
      const std::string where = key + " " + std::to_string(v.at("size").get<std::size_t>()) + " B";
      auto it = rows.find(key);
      if (it == rows.end()) {
        problems.push_back(where + ": not a selected channel");
        continue;
      }
      ++it->second.entries;
      if (v.at("skipped").get<bool>()) continue;
      ++it->second.measured;
      const auto& tp = v.at("throughput");
      if (!(tp.at("msgs_per_s").get<double>() > 0) || tp.at("messages").get<std::uint64_t>() == 0) {
        problems.push_back(where + ": no throughput figure");
      }
      const auto& lat = v.at("latency");
      if (lat.at("round_trips").get<std::uint64_t>() == 0 || !(lat.at("p50_us").get<double>() > 0) ||
          lat.at("p99_us").get<double>() < lat.at("p50_us").get<double>()) {
        problems.push_back(where + ": no latency figure (or p99 below p50)");
      }
    }
  } catch (const std::exception& e) {
    problems.push_back(std::string("the JSON output lacks a field: ") + e.what());
  }
  for (const auto& [key, t] : rows) {
    if (t.entries != cfg.sizes.size()) {
      problems.push_back(key + ": " + std::to_string(t.entries) + " results for " + std::to_string(cfg.sizes.size()) + " sizes");
    }
    if (t.measured == 0) problems.push_back(key + ": not measured at any size");
  }
  check_sections(root, cfg, problems);
  return problems;
}

}  // namespace ipc::bench
