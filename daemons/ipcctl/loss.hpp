// ipcctl launch's loss accounting: what the producers of a pair say they sent and what its
// consumers say they received, per process (a restarted daemon starts its counters at zero),
// turned into exact totals from the sequence numbers.
//
//   ipcctl::role_reports sent, received;
//   sent.take(*ipc::daemon::stats_line::parse(producer_line));
//   received.take(*ipc::daemon::stats_line::parse(consumer_line));
//   auto t = ipcctl::account(sent, received, {.final = true});
//   // t.sent + t.dup == t.received + t.lost, when t.unverified is empty
#pragma once

#include "stats_line.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ipcctl {

using stats = ipc::daemon::stats_line;

/// A span of sequence numbers one process reported for one producer session.
struct span {
  std::uint64_t first = 0, highest = 0;
};

/// One process's reports: its last stats line and the span it reported for every session it saw.
struct process_report {
  stats last;
  std::map<std::uint64_t, span> sessions;
};

/// Every process of one role of a pair, in the order they first reported.
struct role_reports {
  std::vector<process_report> procs;
  /// Latency of the last interval that measured any (the final line after a drain often has none).
  std::optional<std::pair<double, double>> latency;

  /// Takes one stats line (a new pid starts a new process_report).
  void take(const stats& s);
  /// The latest process's last line, or nullptr.
  [[nodiscard]] const stats* current() const;
  /// Sum of a counter over every process's last line.
  [[nodiscard]] std::uint64_t sum(std::uint64_t stats::*field) const;
};

struct pair_totals {
  std::uint64_t sent = 0, received = 0, bytes = 0, lost = 0, dup = 0, reorder = 0, corrupt = 0, restarts = 0;
  std::string unverified;  ///< why the figures cannot be exact; empty when they are
};

struct account_options {
  bool final = false;                ///< after the drain: a shortfall behind the last record sent is lost
  bool producer_died = false;        ///< a producer was killed or failed: what it sent last is unknown
  std::uint64_t process_restarts = 0;  ///< restarts made by the supervisor (added to the consumers' own)
  bool count_producer_restarts = false;  ///< pipe: the producer's own restarts are its consumer's
};

/// Loss is counted from sequence numbers, not from counters: per producer session, the spans the
/// consumers reported (in the order they ran) must cover 1..last sent. A gap between one
/// consumer's highest and the next one's first record - what a killed consumer held, or handled
/// after its last stats line - is lost; an overlap is duplicated; inside a span the consumer
/// counted itself. Then sent + dup == received + lost holds exactly. Never throws but bad_alloc.
pair_totals account(const role_reports& sent, const role_reports& received, const account_options& o);

/// The running consumer has not yet reported the last record its producer reported sent.
bool consumer_behind(const role_reports& sent, const role_reports& received);

}  // namespace ipcctl
