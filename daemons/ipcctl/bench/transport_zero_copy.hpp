// Internal to the benchmark: the shm ring's zero-copy path against its copying path, one sender
// and one receiver process on one ring, for large messages (64 KiB and 1 MiB).
//
//   copy       the sender builds the message in its own buffer and send()s it (a copy into the
//              ring); the receiver receive()s it into a vector (a copy out) and checks it there
//   zero-copy  the sender loan()s the space, builds the message in place and commit()s; the
//              receiver receive_view()s it, checks it in place and releases it
//
// Both build and check the same bytes: "ends" = the sequence number in the first and last 8 bytes
// (a producer that writes a header and a trailer; the payload comes from elsewhere, e.g. a device),
// "all" = every 8-byte word written and checked (a producer that computes the whole payload).
//
//   zero_copy_report r = measure_zero_copy(1.0, "ipc-bench.1234.zc");
//   std::fputs(r.table.c_str(), stdout);  if (r.failed) ...
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ipc::bench {

struct zero_copy_row {
  std::string path;       ///< "copy" or "zero-copy"
  std::size_t size = 0;   ///< bytes per message
  bool touch_all = false; ///< every word written and checked (else the two end words)
  std::uint64_t messages = 0;
  double seconds = 0;     ///< from the start signal to the receiver's end
  double vs_copy = 0;     ///< this row's msg/s ÷ the copy row's with the same size and touch
  std::string error;      ///< set when the measurement failed
  [[nodiscard]] double rate() const { return seconds > 0 ? static_cast<double>(messages) / seconds : 0; }
  /// "copy ends", "zero-copy all", ...: the row's name in JSON and CSV.
  [[nodiscard]] std::string label() const { return path + (touch_all ? " all" : " ends"); }
};

struct zero_copy_report {
  std::vector<zero_copy_row> rows;
  std::string table;  ///< the printed section
  bool failed = false;
};

/// Measures every row for `seconds` each (8 rows); ring names start with `prefix` and are removed.
/// Never throws: a failed row carries its error and sets `failed`.
zero_copy_report measure_zero_copy(double seconds, const std::string& prefix);

}  // namespace ipc::bench
