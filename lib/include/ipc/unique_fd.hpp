// A move-only owning file descriptor.
//
//   ipc::unique_fd fd{::open(path, O_RDONLY | O_CLOEXEC)};
//   if (!fd) ...;                 // -1 means "no fd"
//   ::read(fd.get(), buf, n);     // borrowed fds are plain ints
//   int raw = fd.release();       // caller now owns raw
//
// close() is never retried on EINTR: on Linux the fd is released even then,
// and a retry could close an fd another thread has just been given.
#pragma once

#include <ipc/config.hpp>

#include <utility>

namespace ipc {

class IPC_API unique_fd {
 public:
  constexpr unique_fd() noexcept = default;
  constexpr explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(unique_fd&& other) noexcept : fd_(other.release()) {}
  unique_fd& operator=(unique_fd&& other) noexcept {
    reset(other.release());
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { reset(); }

  /// The fd, still owned by this handle (-1 when empty).
  [[nodiscard]] constexpr int get() const noexcept { return fd_; }
  /// Gives up ownership and returns the fd.
  [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }
  /// Closes the owned fd (if any, never retried) and takes fd.
  void reset(int fd = -1) noexcept;
  constexpr explicit operator bool() const noexcept { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

}  // namespace ipc
