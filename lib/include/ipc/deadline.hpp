// Monotonic deadlines: computed once, then every retry asks for the time left.
//
//   auto d = ipc::deadline::in(250ms);
//   while (!ready()) { if (d.expired()) return false; ::poll(&p, 1, d.poll_timeout_ms()); }
//
// The clock is std::chrono::steady_clock, which is CLOCK_MONOTONIC on Linux:
// wall-clock jumps never shorten or stretch a timeout, and an EINTR retry
// waits only for what is left.
#pragma once

#include <chrono>
#include <climits>
#include <ctime>

namespace ipc {

class deadline {
 public:
  using clock = std::chrono::steady_clock;

  /// A deadline that never expires (blocking calls).
  static constexpr deadline never() noexcept { return deadline{clock::time_point::max()}; }
  /// A deadline that has already expired (try_ calls).
  static deadline now() noexcept { return deadline{clock::now()}; }
  /// A deadline `timeout` from now; negative timeouts are treated as zero.
  static deadline in(std::chrono::nanoseconds timeout) noexcept {
    if (timeout <= std::chrono::nanoseconds::zero()) return now();
    auto t = clock::now();
    if (timeout >= clock::time_point::max() - t) return never();
    return deadline{t + timeout};
  }
  static constexpr deadline at(clock::time_point t) noexcept { return deadline{t}; }

  [[nodiscard]] constexpr bool is_never() const noexcept { return at_ == clock::time_point::max(); }
  [[nodiscard]] bool expired() const noexcept { return !is_never() && clock::now() >= at_; }
  [[nodiscard]] constexpr clock::time_point time_point() const noexcept { return at_; }

  /// Time left, never negative; nanoseconds::max() for never().
  [[nodiscard]] std::chrono::nanoseconds remaining() const noexcept {
    if (is_never()) return std::chrono::nanoseconds::max();
    auto left = at_ - clock::now();
    return left > clock::duration::zero() ? std::chrono::duration_cast<std::chrono::nanoseconds>(left)
                                          : std::chrono::nanoseconds::zero();
  }

  /// For poll(2): -1 when never, else the time left rounded up to whole milliseconds.
  [[nodiscard]] int poll_timeout_ms() const noexcept {
    if (is_never()) return -1;
    auto ns = remaining().count();
    auto ms = (ns + 999'999) / 1'000'000;
    return ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
  }

  /// Time left as a relative timespec (semtimedop, futex without ABSTIME).
  [[nodiscard]] timespec remaining_timespec() const noexcept { return to_timespec(remaining()); }

  /// The deadline as an absolute CLOCK_MONOTONIC timespec (pthread_*_clocklock, clock_nanosleep).
  [[nodiscard]] timespec monotonic_timespec() const noexcept {
    return to_timespec(std::chrono::duration_cast<std::chrono::nanoseconds>(at_.time_since_epoch()));
  }

 private:
  constexpr explicit deadline(clock::time_point t) noexcept : at_(t) {}
  static timespec to_timespec(std::chrono::nanoseconds ns) noexcept {
    timespec ts{};
    ts.tv_sec = static_cast<time_t>(ns.count() / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(ns.count() % 1'000'000'000);
    return ts;
  }
  clock::time_point at_;
};

}  // namespace ipc
