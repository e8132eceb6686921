// What the daemons count and how they report it.
//
//   latency_histogram h;  h.add(ns);  h.percentile_ns(0.99);   // log-linear buckets, no sorting
//   sequence_tracker t;   t.add(session, seq);                  // lost / dup / reorder per session
//   stats_reporter r("consumer", uri, status_path);
//   r.report(figures, /*final=*/false);   // "<6>stats role=… records=… …" on stderr + status file
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace ipc::daemon {

/// Log-linear histogram of nanosecond values: 16 linear sub-buckets per power of two
/// (relative error <= 1/16), fixed size, O(1) add, no allocation.
class latency_histogram {
 public:
  void add(std::uint64_t ns) noexcept;
  /// The value below which a fraction p (0..1) of the samples lie (upper bound of that bucket); 0 when empty.
  [[nodiscard]] std::uint64_t percentile_ns(double p) const noexcept;
  [[nodiscard]] std::uint64_t count() const noexcept { return count_; }
  void reset() noexcept;

 private:
  static constexpr unsigned sub_bits = 4;
  static constexpr unsigned buckets = 64 << sub_bits;
  static unsigned index(std::uint64_t ns) noexcept;
  static std::uint64_t upper_bound(unsigned i) noexcept;
  std::array<std::uint32_t, buckets> counts_{};
  std::uint64_t count_ = 0;
};

/// Checks sequence numbers per producer session. The first record seen from a session is the
/// baseline (records sent before this consumer joined are not loss). After it: a gap counts as
/// lost; a record inside the 1024-record window that was counted lost is a reorder (and no
/// longer lost); one already seen, or older than the window, is a duplicate. A new session is
/// never loss. The last 8 sessions are remembered.
/// A consumer of a work queue (`shared`) sees only its share of each session: a gap is another
/// consumer's records, never loss; what it can still check is that each session's records come
/// once and in order - one seen before (or older than the window) is a duplicate, one below the
/// highest seen that was not seen is a reorder (a work queue hands one session's records to each
/// receiver in the order they were sent).
class sequence_tracker {
 public:
  enum class verdict { in_order, gap, duplicate, reordered };
  explicit sequence_tracker(bool shared = false) noexcept : shared_(shared) {}
  verdict add(std::uint64_t session, std::uint64_t sequence) noexcept;
  [[nodiscard]] std::uint64_t lost() const noexcept { return lost_; }
  [[nodiscard]] std::uint64_t duplicates() const noexcept { return dup_; }
  [[nodiscard]] std::uint64_t reordered() const noexcept { return reorder_; }
  [[nodiscard]] std::uint64_t sessions() const noexcept { return sessions_seen_; }
  /// The session of the latest record: its id, its first (baseline) and highest sequence seen.
  struct span_seen {
    std::uint64_t session = 0, first = 0, highest = 0;
  };
  /// Zeros before any record.
  [[nodiscard]] span_seen latest() const noexcept;

 private:
  static constexpr std::uint64_t window = 1024;
  struct session_state {
    std::uint64_t id = 0;
    std::uint64_t first = 0;  // the baseline
    std::uint64_t next = 0;   // one past the highest sequence seen
    std::uint64_t last_used = 0;
    std::array<std::uint64_t, window / 64> seen{};
    [[nodiscard]] bool test(std::uint64_t s) const noexcept { return (seen[(s % window) / 64] >> (s % 64)) & 1U; }
    void set(std::uint64_t s) noexcept { seen[(s % window) / 64] |= std::uint64_t{1} << (s % 64); }
    void clear(std::uint64_t s) noexcept { seen[(s % window) / 64] &= ~(std::uint64_t{1} << (s % 64)); }
  };
  session_state& find(std::uint64_t session, bool& fresh) noexcept;
  std::array<session_state, 8> sessions_{};
  std::uint64_t tick_ = 0;
  std::size_t latest_ = 0;  // index into sessions_ of the latest record's session
  bool any_ = false;
  bool shared_ = false;
  std::uint64_t lost_ = 0, dup_ = 0, reorder_ = 0, sessions_seen_ = 0;
};

/// Cumulative figures a daemon hands to the reporter.
struct figures {
  std::uint64_t records = 0;
  std::uint64_t bytes = 0;
  std::uint64_t lost = 0, dup = 0, reorder = 0, corrupt = 0;
  std::uint64_t restarts = 0;
  /// Sequence numbers of one producer session (0 = none yet): the producer's own, or the one of the
  /// consumer's latest record — its first (baseline) and highest. ipcctl counts loss across restarts from them.
  std::uint64_t session = 0, first_seq = 0, seq = 0;
  /// Messages the channel skipped (the consumer's channel_counters::messages_skipped, over every handle).
  std::uint64_t skipped = 0;
};

/// Formats and publishes the stats line (stderr + status file) and the STATUS= text.
class stats_reporter {
 public:
  /// status_file empty: no status file.
  stats_reporter(std::string role, std::string channel, std::filesystem::path status_file);
  /// Prints the stats line (stats_line.hpp) with "<6>" to stderr and writes it to the status file atomically
  /// (write_file_atomically: a status path that is not a regular file is never replaced - a warning, once);
  /// p50/p99 come from `latency` (which is then reset). Returns the line (without "<6>"). Never throws.
  std::string report(const figures& f, latency_histogram& latency, bool final) noexcept;
  /// "records=N rate=R/s lost=L p99=Xus" from the last report, for sd_notify STATUS=.
  [[nodiscard]] const std::string& status_text() const noexcept { return status_; }
  /// Removes the status file (at exit) if it is a regular file; anything else there is left alone. Never throws.
  void remove_status_file() noexcept;

 private:
  std::string role_, channel_;
  std::filesystem::path status_file_;
  std::uint64_t last_records_ = 0, last_bytes_ = 0;
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
  std::string status_;
  bool warned_ = false;
};

/// runtime_dir()/status/<kind>-<name>.<role>.status; for pipe URIs name is the producer's pid (the
/// producer's own, the consumer's parent), so concurrent pipe pairs do not collide; '/' in names
/// (fifo paths) become '_'. `per_process` (several daemons of one role on one channel: a work queue,
/// broadcast): <kind>-<name>.<role>.<pid>.status, one file each. Creates nothing. Throws std::system_error.
std::filesystem::path default_status_path(std::string_view channel_uri, std::string_view role, bool per_process = false);

}  // namespace ipc::daemon
