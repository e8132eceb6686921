#include "log.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ipc::daemon {

void log_line(priority p, std::string_view text) noexcept {
  try {
    std::string line = "<" + std::to_string(static_cast<int>(p)) + ">";
    const std::string_view name = program_name();
    if (p <= priority::warning && !name.empty() &&
        !(text.size() > name.size() + 1 && text.substr(0, name.size()) == name && text.substr(name.size(), 2) == ": ")) {
      line.append(name).append(": ");
    }
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

std::string_view program_name() noexcept {
  // glibc sets it from argv[0] before main: right even for a failure before any option is parsed.
  return ::program_invocation_short_name != nullptr ? std::string_view(::program_invocation_short_name) : std::string_view();
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
