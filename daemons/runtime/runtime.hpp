// The small daemon runtime shared by ipc-producer and ipc-consumer (and ipcctl):
// exit codes, the options every daemon takes, a periodic timer on the Asio loop,
// and the two daemon bodies, so that each main is one line.
//
//   int main(int argc, char** argv) { return ipc::daemon::run_consumer(argc, argv); }
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <functional>
#include <string>

namespace ipc::daemon {

/// Exit codes shared by the daemons (see docs/daemons.md).
enum exit_code : int { exit_ok = 0, exit_failure = 1, exit_usage = 2, exit_anomalies = 3 };

inline constexpr const char* version_text = "0.1.0";

/// Calls fn every `period` on the loop (drift-free; a late tick does not cause a burst).
class periodic_timer {
 public:
  explicit periodic_timer(boost::asio::io_context& io) : timer_(io) {}
  /// (Re)starts the timer. Never blocks.
  void start(std::chrono::steady_clock::duration period, std::function<void()> fn) {
    period_ = period;
    fn_ = std::move(fn);
    active_ = true;
    next_ = std::chrono::steady_clock::now() + period_;
    arm();
  }
  /// Stops it; a tick already queued is dropped. Never throws.
  void cancel() noexcept {
    active_ = false;
    timer_.cancel();
  }

 private:
  void arm() {
    timer_.expires_at(next_);
    timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec || !active_) return;
      fn_();
      const auto now = std::chrono::steady_clock::now();
      next_ += period_;
      if (next_ <= now) next_ = now + period_;
      if (active_) arm();
    });
  }
  boost::asio::steady_timer timer_;
  std::chrono::steady_clock::duration period_{};
  std::chrono::steady_clock::time_point next_{};
  std::function<void()> fn_;
  bool active_ = false;
};

/// Exponential back-off for reopen attempts: 10 ms doubling to 1 s; reset() after a success.
class backoff {
 public:
  std::chrono::milliseconds next() noexcept {
    auto d = delay_;
    delay_ = std::min(delay_ * 2, std::chrono::milliseconds(1000));
    return d;
  }
  void reset() noexcept { delay_ = std::chrono::milliseconds(10); }

 private:
  std::chrono::milliseconds delay_{10};
};

/// The directory of this executable (/proc/self/exe), where the sibling daemons live.
std::string own_directory();

/// ipc-producer's body. Returns the exit code.
int run_producer(int argc, char** argv) noexcept;
/// ipc-consumer's body. Returns the exit code.
int run_consumer(int argc, char** argv) noexcept;

}  // namespace ipc::daemon
