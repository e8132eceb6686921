#include "log.hpp"

#include <unistd.h>

#include <cerrno>

namespace ipc::daemon {

void log_line(priority p, std::string_view text) noexcept {
  try {
    std::string line = "<" + std::to_string(static_cast<int>(p)) + ">";
    line.append(text);
    line.push_back('\n');
    const char* d = line.data();
    std::size_t left = line.size();
    while (left > 0) {
      ssize_t n = ::write(2, d, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      d += n;
      left -= static_cast<std::size_t>(n);
    }
  } catch (...) {
    // Out of memory while logging: nothing sensible left to do.
  }
}

bool throttle::allow() noexcept {
  auto now = std::chrono::steady_clock::now();
  if (seen_ < burst_) {
    ++seen_;
    last_ = now;
    return true;
  }
  if (now - last_ >= period_) {
    last_ = now;
    return true;
  }
  ++suppressed_;
  return false;
}

}  // namespace ipc::daemon
