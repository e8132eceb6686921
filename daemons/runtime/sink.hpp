// The consumer's sink: where payloads go, one per line - a file (appended), stdout ("-") or
// nowhere ("null"). The sink is part of the consumer's contract: a failed write (EPIPE when the
// reader of stdout went away, ENOSPC, EIO …) throws sink_error, and the consumer then stops
// receiving at once and exits with exit_sink (docs/daemons.md).
//
//   sink s("-");
//   s.write(payload);   // buffered
//   s.flush();          // after each batch: a dead reader is noticed before more is taken
#pragma once

#include <cstddef>
#include <cstdio>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

namespace ipc::daemon {

/// A sink write, flush or open failed; code() is the errno.
struct sink_error : std::system_error {
  using std::system_error::system_error;
};

class sink {
 public:
  /// Opens the target ("-", "null" or a path: appended, created 0600 if absent, never truncated; a
  /// FIFO blocks here until it has a reader). Throws sink_error naming open (EPERM for a block device).
  explicit sink(std::string target);
  ~sink();
  sink(const sink&) = delete;
  sink& operator=(const sink&) = delete;

  /// Buffers payload + '\n' (nothing after a failure). Throws sink_error naming write and the target. Never blocks on the
  /// channel; may block on a slow file or reader (as a pipeline does).
  void write(std::span<const std::byte> payload);
  /// Writes out what is buffered. Throws sink_error naming write and the target.
  void flush();
  /// SIGHUP: a rotated log file gets a fresh one (stdout and null stay). Throws sink_error.
  void reopen();
  [[nodiscard]] const std::string& target() const noexcept { return target_; }

 private:
  void open();
  void close() noexcept;
  [[noreturn]] void fail(int err, const char* call, std::string_view detail = {});
  std::string target_;
  bool broken_ = false;  // a write failed: nothing more is written
  std::FILE* file_ = nullptr;
};

}  // namespace ipc::daemon
