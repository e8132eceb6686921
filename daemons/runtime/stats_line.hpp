// The stats contract: the one line a daemon prints on stderr (with an sd-daemon "<6>" prefix) every
// stats interval and at exit, and writes (without the prefix) to its status file. ipcctl (launch,
// status) and the tests read it back with parse(). The fields are documented in docs/daemons.md
// ("The stats line"); new fields may be added at the end, readers ignore keys they do not know.
//
//   ipc::daemon::stats_line s;  s.role = "consumer";  s.channel = "msgq:demo";  s.pid = 42;
//   std::string text = s.format();        // "stats role=consumer channel=msgq:demo pid=42 records=0 …"
//   auto back = ipc::daemon::stats_line::parse("<6>" + text);   // == s (rate/mbps as printed)
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ipc::daemon {

struct stats_line {
  std::string role;     ///< "producer" or "consumer" (another daemon: its own role name)
  std::string channel;  ///< the channel URI
  pid_t pid = 0;
  std::uint64_t records = 0, bytes = 0;       ///< cumulative for this process
  double rate = 0, mbps = 0;                  ///< over the last interval (printed as %.0f and %.3f)
  std::uint64_t lost = 0, dup = 0, reorder = 0, corrupt = 0;
  std::uint64_t p50_us = 0, p99_us = 0;       ///< latency of the last interval (consumer)
  std::uint64_t restarts = 0;                 ///< reopens (and, for the pipe producer, consumer restarts)
  /// Producer session the sequence figures belong to (0: none): the producer's own session and the
  /// last sequence sent, or the consumer's latest session with its first and highest sequence seen.
  std::uint64_t session = 0, first_seq = 0, seq = 0;
  /// Messages the consumer's channel could not deliver whole and skipped, the stream going on after
  /// them (channel_counters::messages_skipped, summed over every handle of the run): a fifo line longer
  /// than max_message, a frame torn by a fifo writer that died mid-frame. Not records lost: none was sent whole.
  std::uint64_t skipped = 0;
  bool final = false;  ///< the last line, printed at exit

  /// "stats role=… final=0|1" (no priority prefix, no newline). Never throws but bad_alloc.
  [[nodiscard]] std::string format() const;
  /// Parses a line (an sd-daemon "<N>" prefix and a trailing newline are allowed); std::nullopt when
  /// it is not a stats line, a value is malformed, or role or pid is missing. Unknown keys are ignored.
  static std::optional<stats_line> parse(std::string_view line);

  friend bool operator==(const stats_line&, const stats_line&) = default;
};

/// Strips a leading "<N>" sd-daemon priority prefix.
std::string_view strip_priority(std::string_view line) noexcept;

}  // namespace ipc::daemon
