// Internal to the benchmark: what a receiver blocked on an idle channel costs. The child tells the
// parent its pid and blocks in receive(); the parent lets it settle for 0.2 s, then counts its
// voluntary context switches (/proc/PID/status: each one a sleep it ended to look again) over
// `seconds`, sends one message to end the wait, and the child reports its CPU time for the wait.
//
//   idle_figures f = measure_idle(*make_transport("msgq", "libipc", prefix), 2.0);
//   // f.wakeups_per_s == 0 for a receiver that sleeps in the kernel until the message
#pragma once

#include "transport.hpp"

#include <string>
#include <vector>

namespace ipc::bench {

struct idle_figures {
  double wakeups_per_s = 0;  ///< voluntary context switches per second while idle
  double cpu_ms_per_s = 0;   ///< user + system CPU per second of waiting
};

/// Measures one channel's idle receiver over `seconds`. Throws on any failure.
idle_figures measure_idle(transport& t, double seconds);

/// The idle section of the table: one row per channel and implementation. Never throws.
struct idle_row {
  std::string channel;
  std::string impl;
  idle_figures figures;
  std::string error;  ///< set when the measurement failed
};
std::string idle_table(const std::vector<idle_row>& rows, double seconds);

}  // namespace ipc::bench
