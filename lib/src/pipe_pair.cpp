#include <ipc/deadline.hpp>
#include <ipc/error.hpp>
#include <ipc/pipe_pair.hpp>

#include <poll.h>

#include <cerrno>
#include <string>

namespace ipc::detail {

bool wait_readable(int fd, std::chrono::nanoseconds timeout) {
  auto d = deadline::in(timeout);
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    int rc = ::poll(&p, 1, d.poll_timeout_ms());
    if (rc > 0) return true;  // POLLIN, or POLLHUP: recv() would not block either way
    if (rc < 0 && errno != EINTR) throw_errno(errno, "poll", "pipe_pair fd " + std::to_string(fd));
    if (d.expired()) return false;
  }
}

}  // namespace ipc::detail
