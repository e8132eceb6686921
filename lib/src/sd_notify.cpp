#include <ipc/sd_notify.hpp>

#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace ipc {

sd_notifier::sd_notifier(std::string_view socket) noexcept {
  if (socket.empty()) {
    const char* env = std::getenv("NOTIFY_SOCKET");
    socket = env != nullptr ? env : "";
  }
  if (socket.empty() || (socket[0] != '/' && socket[0] != '@') || socket.size() >= sizeof addr_.sun_path) return;
  addr_.sun_family = AF_UNIX;
  std::memcpy(addr_.sun_path, socket.data(), socket.size());
  if (socket[0] == '@') addr_.sun_path[0] = '\0';  // abstract namespace: leading NUL, no terminator counted
  addr_len_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket.size() + (socket[0] == '@' ? 0 : 1));
  fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
}

bool sd_notifier::notify(std::string_view state) noexcept {
  if (!fd_) return false;
  for (;;) {
    ssize_t n = ::sendto(fd_.get(), state.data(), state.size(), MSG_NOSIGNAL | MSG_DONTWAIT,
                         reinterpret_cast<const sockaddr*>(&addr_), addr_len_);
    if (n >= 0) return true;
    if (errno != EINTR) return false;
  }
}

std::optional<std::chrono::microseconds> sd_notifier::watchdog_usec() noexcept {
  const char* usec = std::getenv("WATCHDOG_USEC");
  if (usec == nullptr || *usec < '0' || *usec > '9') return std::nullopt;
  errno = 0;
  char* end = nullptr;
  unsigned long long v = std::strtoull(usec, &end, 10);
  if (errno != 0 || *end != '\0' || v == 0 || v > static_cast<unsigned long long>(INT64_MAX / 1000)) return std::nullopt;
  if (const char* pid = std::getenv("WATCHDOG_PID"); pid != nullptr && *pid != '\0') {
    char* pend = nullptr;
    long long p = std::strtoll(pid, &pend, 10);
    if (*pend != '\0' || p != static_cast<long long>(::getpid())) return std::nullopt;
  }
  return std::chrono::microseconds(static_cast<std::int64_t>(v));
}

}  // namespace ipc
