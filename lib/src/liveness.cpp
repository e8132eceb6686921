#include "detail/liveness.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace ipc::detail {

proc_status read_proc(pid_t pid) noexcept {
  proc_status st;
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
  if (n <= 0) return st;  // the process went away between open and read
  buf[n] = '\0';
  st.exists = true;
  // "pid (comm) S ppid ..." — comm may hold spaces and parentheses, so parse after the last ')'.
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

bool alive(pid_t pid, std::uint64_t start_time) noexcept {
  if (pid <= 0) return false;
  auto st = read_proc(pid);
  if (!st.exists || st.zombie) return false;
  return start_time == 0 || st.start_time == 0 || st.start_time == start_time;
}

bool maps_segment(pid_t pid, const segment_id& seg) noexcept {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/maps", static_cast<int>(pid));
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno != ENOENT;
  // Lines: "start-end perms offset major:minor inode path". Read in chunks, keep a partial line.
  char buf[8192];
  std::size_t have = 0;
  bool found = false, read_any = false;
  for (;;) {
    ssize_t n = ::read(fd, buf + have, sizeof buf - 1 - have);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    read_any = true;
    have += static_cast<std::size_t>(n);
    buf[have] = '\0';
    char* line = buf;
    char* nl;
    while ((nl = std::strchr(line, '\n')) != nullptr) {
      *nl = '\0';
      unsigned maj = 0, min = 0;
      unsigned long long ino = 0;
      if (std::sscanf(line, "%*s %*s %*s %x:%x %llu", &maj, &min, &ino) == 3 && ino == seg.ino &&
          ::makedev(maj, min) == seg.dev) {
        found = true;
        break;
      }
      line = nl + 1;
    }
    if (found) break;
    have = static_cast<std::size_t>(buf + have - line);
    if (have == sizeof buf - 1) have = 0;  // an absurdly long line: drop it
    std::memmove(buf, line, have);
  }
  ::close(fd);
  return found || !read_any;
}

}  // namespace ipc::detail
