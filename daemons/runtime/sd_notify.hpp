// The daemons' view of systemd notification: ipc::sd_notifier (lib/include/ipc/sd_notify.hpp)
// plus logging — a malformed NOTIFY_SOCKET and the first failed send are logged once — and the
// watchdog period the event loop pings at.
//
//   sd_notifier n;                          // reads NOTIFY_SOCKET / WATCHDOG_USEC / WATCHDOG_PID
//   n.notify("READY=1");                    // no-op outside systemd
//   if (auto p = n.watchdog_period()) ...;  // WATCHDOG_USEC/2, when the watchdog is for us
#pragma once

#include <ipc/sd_notify.hpp>

#include <chrono>
#include <optional>
#include <string_view>

namespace ipc::daemon {

class sd_notifier {
 public:
  /// Reads the environment; never throws (a bad NOTIFY_SOCKET is logged once and disables it).
  sd_notifier() noexcept;
  /// True when NOTIFY_SOCKET names a usable socket.
  [[nodiscard]] bool enabled() const noexcept { return socket_.enabled(); }
  /// Sends one datagram ("READY=1", "STATUS=…", "WATCHDOG=1", "STOPPING=1"); never blocks, never throws.
  void notify(std::string_view state) noexcept;
  /// Half of WATCHDOG_USEC when it is set (and WATCHDOG_PID, if set, is this process).
  [[nodiscard]] std::optional<std::chrono::microseconds> watchdog_period() const noexcept { return watchdog_; }

 private:
  ipc::sd_notifier socket_;
  bool failed_once_ = false;
  std::optional<std::chrono::microseconds> watchdog_;
};

}  // namespace ipc::daemon
