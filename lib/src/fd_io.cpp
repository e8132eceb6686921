#include <ipc/fd_io.hpp>

#include <ipc/error.hpp>

#include <poll.h>
#include <unistd.h>

#include <cerrno>

namespace ipc {
namespace {

// Waits until fd is ready for `events` (after EAGAIN on a non-blocking fd).
void wait_ready(int fd, short events, const char* call, std::string_view object) {
  pollfd p{fd, events, 0};
  while (::poll(&p, 1, -1) < 0) {
    if (errno != EINTR) throw_errno(errno, call, object, "poll");
  }
}

}  // namespace

void write_all(int fd, std::span<const std::byte> data, std::string_view object) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        wait_ready(fd, POLLOUT, "write", object);
        continue;
      }
      throw_errno(errno, "write", object);
    }
    data = data.subspan(static_cast<std::size_t>(n));
  }
}

void write_all(int fd, std::string_view text, std::string_view object) {
  write_all(fd, std::as_bytes(std::span(text.data(), text.size())), object);
}

std::size_t read_full(int fd, std::span<std::byte> out, std::string_view object) {
  std::size_t got = 0;
  while (got < out.size()) {
    const ssize_t n = ::read(fd, out.data() + got, out.size() - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        wait_ready(fd, POLLIN, "read", object);
        continue;
      }
      throw_errno(errno, "read", object);
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  return got;
}

std::string read_all(int fd, std::string_view object) {
  std::string text;
  char buf[4096];
  for (;;) {
    const std::size_t n = read_full(fd, std::as_writable_bytes(std::span(buf)), object);
    text.append(buf, n);
    if (n < sizeof buf) return text;
  }
}

}  // namespace ipc
