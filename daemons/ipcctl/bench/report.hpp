// Internal to the benchmark: the result set and its four renderings (table, JSON, CSV, gnuplot
// PNG), and --check, which reads the JSON back and checks that every figure is there. The sections
// after the table (--idle, --rate, --modes) print their own tables (transport_*.cpp); their JSON and
// CSV are written here, from their rows, so a new row is in every output without more code.
#pragma once

#include "runner.hpp"
#include "transport_idle.hpp"
#include "transport_modes.hpp"
#include "transport_rate.hpp"
#include "transport_zero_copy.hpp"

#include <cstddef>
#include <string>
#include <vector>

namespace ipc::bench {

enum class output_format { table, json, csv };


struct config {
  std::string prog = "ipc-bench";
  double seconds = 0.5;
  std::vector<std::size_t> sizes;
  std::vector<std::string> channels;
  output_format format = output_format::table;
  std::string plot_file;
  bool check = false;
  bool quiet = false;
  double idle_seconds = 0;  ///< --idle: seconds a blocked receiver is watched per channel (0: not run)
  double rate = 0;          ///< --rate: messages per second of the fixed-rate latency section (0: not run)
  bool modes = false;       ///< --modes: the shm modes section (SPSC vs MPMC, several processes)
};

struct machine_info {
  long cpus = 0;
  std::string cpu_model;
  std::string kernel;
  double load_before = 0;  ///< 1-minute load average when the run started
  double load_after = 0;
};

struct cell_result {
  std::string channel;  ///< pipe, fifo, msgq, sem, shm, boost_mq
  std::string impl;     ///< libipc, raw, boost
  std::size_t size = 0;
  bool skipped = false;
  std::string reason;  ///< why skipped
  throughput_figures throughput;
  latency_figures latency;

  [[nodiscard]] double msgs_per_s() const noexcept {
    return throughput.seconds > 0 ? static_cast<double>(throughput.messages) / throughput.seconds : 0;
  }
  [[nodiscard]] double mb_per_s() const noexcept { return msgs_per_s() * static_cast<double>(size) / 1e6; }
};

/// The sections after the table, each empty when not asked for.
struct sections {
  std::vector<idle_row> idle;
  std::vector<rate_row> rate;
  std::vector<mode_row> modes;
  std::vector<zero_copy_row> zero_copy;  ///< with --modes: the zero-copy section's rows
  /// "idle pipe/raw: <error>" for every failed row, in order.
  [[nodiscard]] std::vector<std::string> failures() const;
};

/// "64 B", "16 KiB", "1 MiB".
std::string size_label(std::size_t n);

/// CPUs, CPU model, kernel release and load average of this machine. Never throws.
machine_info probe_machine() noexcept;

std::string to_table(const config& cfg, const machine_info& m, const std::vector<cell_result>& r);
/// The whole run as one JSON document: "results" (the table's cells), then "idle", "rate", "modes"
/// and "zero_copy" when those sections ran (docs/benchmarks.md lists the fields).
std::string to_json(const config& cfg, const machine_info& m, const std::vector<cell_result>& r, const sections& more);
/// The whole run as one CSV table, a row per cell and per section row; the first column says which
/// section ("table", "idle", "rate", "modes", "zero_copy"), a column a section does not fill is empty.
std::string to_csv(const config& cfg, const std::vector<cell_result>& r, const sections& more);

/// gnuplot's path from $PATH, or "" when it is not installed.
std::string find_gnuplot();
/// Draws msgs/s and p50 latency against message size into `file` (PNG) with gnuplot, replacing it
/// only if it is a regular file or absent (atomic_file.hpp). Blocks until gnuplot is done. Throws
/// std::system_error when gnuplot cannot run or fails, or naming "replace" for a `file` that is a
/// link, a device or anything but a regular file.
void plot(const config& cfg, const machine_info& m, const std::vector<cell_result>& r, const std::string& file);

/// Parses `json` back (nlohmann-json) and lists what is missing or wrong: every selected
/// channel's libipc and raw rows and boost_mq must have, for at least one size, a measured cell,
/// and every measured cell non-zero msgs/s, round trips and latency; with --idle, --rate, --modes
/// every section row its figures (idle: a row per channel and impl, wake-ups and CPU ≥ 0; rate:
/// messages, p50 > 0, p99 ≥ p50; modes: rows at every size, each with senders, receivers, sent and received messages, msg/s, per-receiver
/// msg/s and ×spsc > 0; zero_copy: the copy and zero-copy rows at 64 KiB and 1 MiB, each with messages,
/// msg/s and ×copy > 0) and no error. Empty when all is well.
std::vector<std::string> check_json(const std::string& json, const config& cfg);

}  // namespace ipc::bench
