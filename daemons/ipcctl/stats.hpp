// The daemons' stats lines (see DAEMON-CONTRACT.md), parsed:
//
//   auto s = ipcctl::parse_stats("<6>stats role=consumer channel=msgq:demo pid=42 records=10 ... final=0");
//   if (s && s->role == "consumer") total += s->records;
//
// The same text, without the "<6>" prefix, is what a daemon's status file holds.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ipcctl {

struct stats {
  std::string role;     ///< "producer" or "consumer"
  std::string channel;  ///< the channel URI
  pid_t pid = 0;
  std::uint64_t records = 0, bytes = 0;
  double rate = 0, mbps = 0;  ///< over the last interval
  std::uint64_t lost = 0, dup = 0, reorder = 0, corrupt = 0;
  double p50_us = 0, p99_us = 0;
  std::uint64_t restarts = 0;
  /// Producer session the sequence figures belong to (0: none reported): the producer's own
  /// session and last sequence sent, or the consumer's latest session, its first and highest sequence.
  std::uint64_t session = 0, first_seq = 0, seq = 0;
  bool final = false;
};

/// Parses one stats line (with or without an sd-daemon "<N>" prefix); std::nullopt when the line is
/// not a stats line or a value is malformed. Unknown keys are ignored (the contract may grow).
std::optional<stats> parse_stats(std::string_view line);

/// Strips a leading "<N>" sd-daemon priority prefix.
std::string_view strip_priority(std::string_view line) noexcept;

}  // namespace ipcctl
