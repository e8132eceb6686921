// Internal to the benchmark: the shm channel's modes with several processes on one object, which
// the two-process cells cannot show. N senders and M receivers (each its own forked process,
// through ipc::process) open one URI; the senders send `size`-byte messages for `seconds`, then
// leave; the receivers take until the channel says closed. Figures: total messages received per
// second, from the common start to the last receiver's end, every message's size checked.
//
//   mode_figures f = measure_mode("shm:x?mode=mpmc&slots=1024&max_message=64", 2, 2, 64, 1.0);
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ipc::bench {

struct mode_figures {
  std::uint64_t messages = 0;  ///< received by all receivers
  double seconds = 0;          ///< from the start signal to the last receiver's end
  [[nodiscard]] double rate() const { return seconds > 0 ? static_cast<double>(messages) / seconds : 0; }
};

/// Runs one configuration; removes the object afterwards. Throws on any failure (a child that
/// failed, a message of the wrong size, a run that did not end within seconds + 30 s).
mode_figures measure_mode(const std::string& uri, unsigned senders, unsigned receivers, std::size_t size,
                          double seconds);

/// One row of the modes section.
struct mode_row {
  std::string label;      ///< "spsc 1→1", "mpmc 2→2", "broadcast 1→4", ...
  std::size_t size = 0;
  mode_figures figures;
  double vs_spsc = 0;     ///< this row's msg/s ÷ the SPSC row's at the same size (broadcast: per subscriber)
  std::string error;      ///< set when the measurement failed
  unsigned receivers = 1;
  bool broadcast = false; ///< every receiver gets every message: the rate that matters is per receiver
  /// Messages per second each receiver got: the total divided among the receivers.
  [[nodiscard]] double per_receiver_rate() const { return receivers > 0 ? figures.rate() / receivers : 0; }
};

/// The --modes section: at each size, shm SPSC 1→1 (the ring), MPMC 1→1, MPMC 2→2, and broadcast
/// (policy=block) 1→1 and 1→4. Never throws.
std::vector<mode_row> measure_mode_rows(const std::vector<std::size_t>& sizes, double seconds, const std::string& prefix);
std::string mode_table(const std::vector<mode_row>& rows, double seconds);

}  // namespace ipc::bench
