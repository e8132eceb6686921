#include <ipc/unique_fd.hpp>

#include <unistd.h>

namespace ipc {

void unique_fd::reset(int fd) noexcept {
  int old = std::exchange(fd_, fd);
  // Never retry close(): on Linux the descriptor is gone even when close reports EINTR.
  if (old >= 0) ::close(old);
}

}  // namespace ipc
