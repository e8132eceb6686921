// Daemon logging: one line per call on stderr, prefixed with an sd-daemon priority
// ("<3>" error, "<4>" warning, "<6>" info, "<7>" debug) so journald files it right. After the
// priority, every error and warning line starts with the program's name ("<3>ipc-consumer: …"),
// as util-linux tools do; the name is the one the program was run as, so it holds from the first
// line on, before any option is parsed.
//
//   ipc::daemon::log(ipc::daemon::priority::warning, "reopen ", uri, ": ", e.what());
//   ipc::daemon::throttle t;                  // bounded noise for retry loops
//   if (t.allow()) log(...);                  // first 3, then one per 10 s (with a "suppressed N" note)
#pragma once

#include <chrono>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>

namespace ipc::daemon {

enum class priority { error = 3, warning = 4, info = 6, debug = 7 };

/// Writes "<N>text\n" to stderr in one write(2) (lines from two processes never interleave); an error or
/// warning text that does not start with "program_name(): " gets that prefix. Never throws.
void log_line(priority p, std::string_view text) noexcept;

/// The name the program was run as (argv[0]'s last component): "ipc-consumer". Never throws.
std::string_view program_name() noexcept;

template <typename... Args>
void log(priority p, const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  log_line(p, os.str());
}

/// Lets the first `burst` events through, then one per `period`; counts what it held back.
class throttle {
 public:
  explicit throttle(unsigned burst = 3, std::chrono::seconds period = std::chrono::seconds(10)) noexcept
      : burst_(burst), period_(period) {}
  /// True when this event may be logged. Never blocks.
  bool allow() noexcept;
  /// Events held back since the last allowed one.
  [[nodiscard]] std::uint64_t suppressed() const noexcept { return suppressed_; }
  /// Forget the history (after a success).
  void reset() noexcept {
    seen_ = 0;
    suppressed_ = 0;
  }

 private:
  unsigned burst_;
  std::chrono::seconds period_;
  unsigned seen_ = 0;
  std::uint64_t suppressed_ = 0;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace ipc::daemon
