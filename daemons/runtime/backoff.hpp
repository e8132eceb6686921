// The channel-loss back-off of every daemon, one policy whether the retry waits on an Asio timer
// (reopener, daemon.hpp) or on a blocking thread (ipc-bridge's forwarder): the delay doubles from
// 10 ms to 1 s and starts over only when data flows again (progress()), not when an open succeeds -
// a channel whose peer is absent often opens fine and fails at once, and must not become a busy
// loop; the lines about it go through one throttle (3, then one per 10 s), also reset by progress().
//
//   backoff b;
//   if (b.may_log()) log(priority::warning, "lost: ", why, "; reopening in ", b.delay().count(), " ms");
//   wait(b.next());        // 10, 20, 40 … 1000, 1000 ms
//   b.progress();          // a message moved: 10 ms again
#pragma once

#include "log.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace ipc::daemon {

class backoff {
 public:
  static constexpr std::chrono::milliseconds first{10};
  static constexpr std::chrono::milliseconds ceiling{1000};

  /// Counts one attempt and returns the delay to wait before it; the next delay doubles, up to
  /// `ceiling`. Never blocks.
  std::chrono::milliseconds next() noexcept {
    const auto d = delay_;
    delay_ = std::min(delay_ * 2, ceiling);
    ++attempts_;
    return d;
  }
  /// Makes the next delay at least d (a quarantine waits longer than a loss); the delay
  /// after it is again at most `ceiling`. Never blocks.
  void at_least(std::chrono::milliseconds d) noexcept { delay_ = std::max(delay_, d); }
  /// The delay next() returns next.
  [[nodiscard]] std::chrono::milliseconds delay() const noexcept { return delay_; }
  /// Data moved: the delay starts over at `first` and the throttle forgets.
  void progress() noexcept {
    if (attempts_ == 0) return;
    attempts_ = 0;
    delay_ = first;
    throttle_.reset();
  }
  /// Whether a line about the loss may be logged now (the throttle).
  [[nodiscard]] bool may_log() noexcept { return throttle_.allow(); }
  /// Lines held back by the throttle since the last one let through.
  [[nodiscard]] std::uint64_t suppressed() const noexcept { return throttle_.suppressed(); }
  /// next() calls since the last progress().
  [[nodiscard]] std::uint64_t attempts() const noexcept { return attempts_; }

 private:
  std::chrono::milliseconds delay_ = first;
  std::uint64_t attempts_ = 0;
  throttle throttle_;
};

}  // namespace ipc::daemon
