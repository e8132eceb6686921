#include "sd_notify.hpp"

#include "log.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

namespace ipc::daemon {

sd_notifier::sd_notifier() noexcept {
  if (const char* w = std::getenv("WATCHDOG_USEC"); w != nullptr && *w != '\0') {
    char* end = nullptr;
    unsigned long long usec = std::strtoull(w, &end, 10);
    bool for_us = true;
    if (const char* p = std::getenv("WATCHDOG_PID"); p != nullptr && *p != '\0') {
      for_us = std::strtoll(p, nullptr, 10) == static_cast<long long>(::getpid());
    }
    if (*end == '\0' && usec > 0 && for_us) watchdog_ = std::chrono::microseconds(static_cast<long long>(usec / 2));
  }
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || *path == '\0') return;
  const std::size_t len = std::strlen(path);
  if ((path[0] != '/' && path[0] != '@') || len >= sizeof addr_.sun_path) {
    log(priority::warning, "NOTIFY_SOCKET='", path, "' is neither an absolute path nor @abstract: not notifying");
    return;
  }
  addr_.sun_family = AF_UNIX;
  std::memcpy(addr_.sun_path, path, len);
  if (path[0] == '@') addr_.sun_path[0] = '\0';  // abstract namespace: leading NUL, no terminator
  addr_len_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len + (path[0] == '@' ? 0 : 1));
  fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd_) log(priority::warning, "socket(AF_UNIX, NOTIFY_SOCKET=", path, "): ", std::strerror(errno));
}

void sd_notifier::notify(std::string_view state) noexcept {
  if (!fd_) return;
  for (;;) {
    ssize_t n = ::sendto(fd_.get(), state.data(), state.size(), MSG_NOSIGNAL | MSG_DONTWAIT,
                         reinterpret_cast<const sockaddr*>(&addr_), addr_len_);
    if (n >= 0) return;
    if (errno == EINTR) continue;
    if (!failed_once_) {
      failed_once_ = true;
      log(priority::warning, "sendto(NOTIFY_SOCKET): ", std::strerror(errno), " (further failures not logged)");
    }
    return;
  }
}

}  // namespace ipc::daemon
