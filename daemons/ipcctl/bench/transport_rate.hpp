// Internal to the benchmark: one-way latency at a fixed rate, not at saturation. The child sends
// 64-byte messages at `rate` per second for `seconds`, each stamped with steady_clock (CLOCK_MONOTONIC,
// the same clock in both processes) just before send(); the parent takes them with receive() and
// records receive time − stamp. A message is due at start + k / rate; a late sender catches up
// without bursts beyond what fell behind.
//
//   rate_figures f = measure_rate(*make_transport("msgq", "libipc", prefix), 20000, 1.0);
#pragma once

#include "transport.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace ipc::bench {

struct rate_figures {
  std::uint64_t messages = 0;
  double p50_us = 0;
  double p99_us = 0;
};

/// Measures one channel at `rate` messages per second for `seconds`. Throws on any failure.
rate_figures measure_rate(transport& t, double rate, double seconds);

struct rate_row {
  std::string channel;
  std::string impl;
  rate_figures figures;
  std::string error;  ///< set when the measurement failed
};
/// The fixed-rate section of the table. Never throws.
std::string rate_table(const std::vector<rate_row>& rows, double rate, double seconds);

}  // namespace ipc::bench
