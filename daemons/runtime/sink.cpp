#include "sink.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stdio_ext.h>

#include <cerrno>

namespace ipc::daemon {

sink::sink(std::string target) : target_(std::move(target)) { open(); }

sink::~sink() { close(); }

void sink::fail(int err, const char* call, std::string_view detail) {
  // What is still buffered can never be written: drop it, so that neither a later flush nor exit
  // tries again (and the failure is reported once).
  if (file_ != nullptr) ::__fpurge(file_);
  broken_ = true;
  std::string what = std::string(call) + "(sink " + target_ + ")";
  if (!detail.empty()) what.append(": ").append(detail);
  throw sink_error(err, std::system_category(), what);
}

void sink::write(std::span<const std::byte> payload) {
  if (file_ == nullptr || broken_) return;
  if (std::fwrite(payload.data(), 1, payload.size(), file_) != payload.size() || std::fputc('\n', file_) == EOF) {
    fail(errno, "write");
  }
}

void sink::flush() {
  if (file_ != nullptr && !broken_ && std::fflush(file_) != 0) fail(errno, "write");
}

void sink::reopen() {
  if (target_ == "-" || target_ == "null") return flush();
  flush();
  close();
  broken_ = false;
  open();
}

void sink::open() {
  if (target_ == "null") return;
  if (target_ == "-") {
    file_ = stdout;
  } else {
    // Appended, never truncated or renamed over: whatever is there keeps its contents. Links are
    // followed (/dev/stdout is one) and FIFOs and character devices are legitimate sinks; a block
    // device (a disk) never is (docs/daemons.md, "The sink").
    const int fd = ::open(target_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) fail(errno, "open");
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      ::close(fd);
      fail(err, "fstat");
    }
    if (S_ISBLK(st.st_mode)) {
      ::close(fd);
      fail(EPERM, "open", "a block device is never a sink");
    }
    file_ = ::fdopen(fd, "a");
    if (file_ == nullptr) {
      const int err = errno;
      ::close(fd);
      fail(err, "fdopen");
    }
  }
  std::setvbuf(file_, nullptr, _IOFBF, 64 * 1024);
}

void sink::close() noexcept {
  if (file_ == nullptr) return;
  if (file_ != stdout) std::fclose(file_);  // a failing flush here was reported by flush() already
  file_ = nullptr;
}

}  // namespace ipc::daemon
