#include "detail/liveness.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace ipc::detail {
namespace {

struct proc_stat {
  bool exists = false;
  bool zombie = false;
  std::uint64_t start_time = 0;
};

// Parses /proc/PID/stat without allocating; falls back to kill(pid, 0) when /proc is unreadable.
proc_stat read_stat(pid_t pid) noexcept {
  proc_stat st;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    st.exists = !(::kill(pid, 0) == -1 && errno == ESRCH);
    return st;
  }
  char buf[1024];
  ssize_t n;
  do {
    n = ::read(fd, buf, sizeof buf - 1);
  } while (n < 0 && errno == EINTR);
  ::close(fd);
  if (n <= 0) return st;  // gone between open and read
  buf[n] = '\0';
  st.exists = true;
  // "pid (comm) S ppid ...": comm may hold spaces and parentheses, so parse after the last ')'.
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr) return st;
  ++p;
  int field = 2;
  while (*p != '\0') {
    while (*p == ' ') ++p;
    if (*p == '\0') break;
    ++field;
    if (field == 3) st.zombie = (*p == 'Z' || *p == 'X' || *p == 'x');
    if (field == 22) {
      st.start_time = std::strtoull(p, nullptr, 10);
      break;
    }
    while (*p != ' ' && *p != '\0') ++p;
  }
  return st;
}

}  // namespace

std::uint64_t process_start_time(pid_t pid) noexcept { return read_stat(pid).start_time; }

bool process_alive(pid_t pid, std::uint64_t start_time) noexcept {
  if (pid <= 0) return false;
  auto st = read_stat(pid);
  if (!st.exists || st.zombie) return false;
  return start_time == 0 || st.start_time == 0 || st.start_time == start_time;
}

}  // namespace ipc::detail
