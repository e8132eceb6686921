// A watchdog: a timestamp that must be kicked; a monitor thread calls on_expiry when it is not.
//
//   ipc::watchdog wd(2s, ipc::watchdog::abort_process);     // not kicked for 2 s → log + abort()
//   for (;;) { do_one_iteration(); wd.kick(); }             // kick: one clock read + one atomic store
//
//   // Feeding systemd (Type=notify, WatchdogSec=): WATCHDOG=1 goes to $NOTIFY_SOCKET every
//   // WATCHDOG_USEC/2 for as long as the loop keeps kicking; a stuck loop stops the pings.
//   ipc::watchdog::options o;  o.notify_systemd = true;
//   ipc::watchdog wd(std::chrono::duration_cast<std::chrono::nanoseconds>(
//                        ipc::watchdog::systemd_interval().value_or(10s)),
//                    [] { std::cerr << "stuck\n"; }, o);
//
// on_expiry runs on the monitor thread, once per expiry; the watchdog re-arms on the next kick.
// See docs/process.md.
#pragma once

#include <ipc/config.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace ipc {

/// How a watchdog feeds systemd (see watchdog::options).
struct watchdog_options {
  /// Send "WATCHDOG=1" to the notify socket every notify_interval while not expired.
  bool notify_systemd = false;
  /// Ping period; zero means systemd_interval()/2 when set, else timeout/2.
  std::chrono::nanoseconds notify_interval{0};
  /// The notify socket ("/path" or "@abstract"); empty means $NOTIFY_SOCKET (unset: no pings).
  std::string notify_socket;
};

class IPC_API watchdog {
 public:
  using options = watchdog_options;

  /// Starts the monitor thread; construction counts as the first kick. Throws std::system_error
  /// (EINVAL naming watchdog) for a timeout ≤ 0 or an empty on_expiry, or if the thread cannot start.
  watchdog(std::chrono::nanoseconds timeout, std::function<void()> on_expiry, options opts = {});
  /// stop(). Safe even from inside on_expiry (the monitor thread then finishes on its own).
  ~watchdog();
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;

  /// Never blocks, never throws, any thread: records "alive now" (CLOCK_MONOTONIC).
  void kick() noexcept;
  /// Stops and joins the monitor promptly (it waits on a condition variable). Idempotent.
  /// From inside on_expiry it only asks the monitor to stop after the callback returns.
  void stop() noexcept;
  /// True when the last kick is older than the timeout.
  [[nodiscard]] bool expired() const noexcept;
  /// How many times on_expiry has been called.
  [[nodiscard]] std::uint64_t expiries() const noexcept;
  /// WATCHDOG=1 datagrams sent so far.
  [[nodiscard]] std::uint64_t pings_sent() const noexcept;
  /// The timeout given to the constructor.
  [[nodiscard]] std::chrono::nanoseconds timeout() const noexcept;

  /// A ready-made on_expiry: writes "ipc::watchdog: … aborting" to stderr and calls abort().
  [[noreturn]] static void abort_process() noexcept;
  /// WATCHDOG_USEC when it is set to a positive number and WATCHDOG_PID is unset or is this
  /// process; else std::nullopt. Never throws.
  static std::optional<std::chrono::microseconds> systemd_interval() noexcept;
  /// Sends one sd_notify datagram (e.g. "READY=1") to `socket` (empty: $NOTIFY_SOCKET). Never
  /// blocks or throws; false when there is no socket or the send failed.
  static bool sd_notify(std::string_view state, std::string_view socket = {}) noexcept;

 private:
  struct impl;
  std::shared_ptr<impl> impl_;  // shared with the monitor thread
};

}  // namespace ipc
