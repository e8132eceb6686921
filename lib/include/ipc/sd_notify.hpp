// The sd_notify datagram protocol, in-tree (no libsystemd): one datagram per state change to the
// AF_UNIX socket named by $NOTIFY_SOCKET — a path, or '@name' for the abstract namespace. The
// protocol is documented as stable by systemd (sd_notify(3)).
//
//   ipc::sd_notifier n;                               // $NOTIFY_SOCKET; disabled outside systemd
//   n.notify("READY=1");                              // never blocks, never throws
//   if (auto usec = ipc::sd_notifier::watchdog_usec()) ping_every(*usec / 2);
#pragma once

#include <ipc/config.hpp>
#include <ipc/unique_fd.hpp>

#include <sys/socket.h>
#include <sys/un.h>

#include <chrono>
#include <optional>
#include <string_view>

namespace ipc {

class IPC_API sd_notifier {
 public:
  /// Targets `socket` ("/path" or "@abstract"); empty means $NOTIFY_SOCKET. Never throws: with no
  /// socket, a malformed name or no fd left, the notifier is disabled and notify() does nothing.
  explicit sd_notifier(std::string_view socket = {}) noexcept;
  /// True when a socket is set and usable.
  [[nodiscard]] bool enabled() const noexcept { return static_cast<bool>(fd_); }
  /// Sends one datagram ("READY=1", "STATUS=…", "WATCHDOG=1", "STOPPING=1"). Never blocks or throws;
  /// false when disabled or the send failed (errno tells why).
  bool notify(std::string_view state) noexcept;
  /// WATCHDOG_USEC when it is a positive number and WATCHDOG_PID is unset or this process; the
  /// service should ping at half of it. Never throws.
  static std::optional<std::chrono::microseconds> watchdog_usec() noexcept;

 private:
  unique_fd fd_;
  sockaddr_un addr_{};
  socklen_t addr_len_ = 0;
};

}  // namespace ipc
