#include "detail/reserve_pages.hpp"

#include <ipc/error.hpp>

#include <fcntl.h>

#include <cerrno>
#include <string>

namespace ipc::detail {

void reserve_pages(int fd, std::size_t size, std::string_view object) {
  int err = 0;
  // posix_fallocate returns the error instead of setting errno; EINTR (a signal during a large
  // reservation) restarts it: pages already reserved stay reserved.
  do {
    err = ::posix_fallocate(fd, 0, static_cast<off_t>(size));
  } while (err == EINTR);
  if (err != 0) {
    throw_errno(err, "posix_fallocate", std::string(object) + ", " + std::to_string(size) + " bytes");
  }
}

}  // namespace ipc::detail
