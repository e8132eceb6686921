// Helpers for tests that fork real processes.
//
// A forked child never uses Catch macros (a failing REQUIRE in a child is
// lost): it runs its code, writes a report to a pipe and _exits with a code.
// The parent waits with a deadline, kills on expiry, and asserts on the
// exit status and the report.
//
//   auto c = ipc::test::fork_child([&](ipc::test::reporter& r) {
//     r.say("got ", n);
//     return n == 3 ? 0 : 1;
//   });
//   auto res = c.wait(5s);
//   REQUIRE(res.exit_code == 0);
#pragma once

#include <ipc/unique_fd.hpp>

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace ipc::test {

/// A name unique to this test process: "<prefix>-<pid>-<n>".
std::string unique_name(std::string_view prefix);

/// The child's side of the report pipe.
class reporter {
 public:
  explicit reporter(int fd) : fd_(fd) {}
  template <typename... Args>
  void say(const Args&... args) {
    std::ostringstream os;
    (os << ... << args);
    write_line(os.str());
  }
  void write_line(const std::string& line);
  [[nodiscard]] int fd() const { return fd_; }

 private:
  int fd_;
};

struct child_result {
  bool timed_out = false;  ///< killed by us at the deadline
  int exit_code = -1;      ///< when it exited normally
  int signal = 0;          ///< when it was killed by a signal
  std::string report;      ///< everything the child wrote to its reporter
};

class child {
 public:
  child(pid_t pid, unique_fd report) : pid_(pid), report_(std::move(report)) {}
  child(child&& o) noexcept : pid_(std::exchange(o.pid_, -1)), report_(std::move(o.report_)) {}
  child& operator=(child&&) = delete;
  ~child();  // kills and reaps a child that was never waited for

  [[nodiscard]] pid_t pid() const { return pid_; }
  /// Waits until the child exits or `timeout` passes (then SIGKILLs it); always reaps.
  child_result wait(std::chrono::milliseconds timeout);
  /// Sends sig; returns false if the child is already gone.
  bool kill(int sig);
  /// Reads report lines until one equals `line` or the timeout passes.
  bool wait_for_line(std::string_view line, std::chrono::milliseconds timeout);

 private:
  pid_t pid_;
  unique_fd report_;
  std::string buffered_;
};

/// Forks; the child runs body(reporter) and _exits with its return value (99 on an exception,
/// whose what() goes into the report).
child fork_child(const std::function<int(reporter&)>& body);

/// Forks and execs argv[0] (a path) with argv; stdout+stderr go into the report.
child spawn(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env = {});

/// Path of a program built in this build tree, e.g. build_path("daemons/ipc-producer").
std::string build_path(std::string_view relative);

/// Runs `remove` when the scope ends, whatever happened, and swallows what it throws: a test's kernel
/// objects are removed at its end, and a failed removal never hides the test's own failure.
///
///   auto gone = ipc::test::on_exit([&] { ipc::sem_buffer::remove(name); });
class on_exit {
 public:
  explicit on_exit(std::function<void()> remove) : remove_(std::move(remove)) {}
  ~on_exit() {
    try {
      remove_();
    } catch (...) {  // NOLINT(bugprone-empty-catch): best effort at test exit
    }
  }
  on_exit(const on_exit&) = delete;
  on_exit& operator=(const on_exit&) = delete;

 private:
  std::function<void()> remove_;
};

}  // namespace ipc::test
