// Child processes: fork a callable or exec a program, wait with a deadline, signal without
// pid-reuse races (pidfd). The worker pool is in <ipc/process_pool.hpp>.
//
//   auto p = ipc::process::fork([] { return compute() ? 0 : 1; });
//   ipc::exit_status s = p.join();                     // s.code == 0, or s.signal != 0
//
//   ipc::exec_options o;  o.stdout_fd = log_fd.get();  o.cwd = "/tmp";
//   auto sleeper = ipc::process::exec({"/bin/sleep", "5"}, o);   // throws "execve(/bin/sleep): …"
//   if (!sleeper.join_for(100ms)) sleeper.kill(SIGTERM);         // nullopt: still running
//
// A process that is still running when its handle is destroyed is SIGKILLed and reaped (never a
// zombie) unless detach() was called. A handle is used by one thread at a time (like std::thread);
// share pidfd() for waiting elsewhere. See docs/process.md.
#pragma once

#include <ipc/config.hpp>
#include <ipc/unique_fd.hpp>

#include <sys/types.h>

#include <array>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace ipc {

/// How a child ended: exited with `code`, or was killed by `signal`.
struct IPC_API exit_status {
  int code = -1;             ///< exit code (0..255) when it exited, else -1
  int signal = 0;            ///< terminating signal when killed, else 0
  bool core_dumped = false;  ///< killed by a signal that dumped core

  [[nodiscard]] bool exited() const noexcept { return signal == 0; }
  [[nodiscard]] bool success() const noexcept { return signal == 0 && code == 0; }
  /// "exited with code 3" / "killed by signal 9 (SIGKILL)".
  [[nodiscard]] std::string to_string() const;
  /// Decodes a waitid() siginfo (si_code CLD_EXITED / CLD_KILLED / CLD_DUMPED, si_status).
  static exit_status from_waitid(int child_code, int child_status) noexcept;
  friend bool operator==(const exit_status&, const exit_status&) = default;
};

/// What exec() sets up in the child between fork and execve.
struct exec_options {
  /// The child's whole environment ("K=V" strings); nullopt inherits this process's environ.
  std::optional<std::vector<std::string>> env;
  /// Directory to chdir() into before execve; empty keeps ours.
  std::string cwd;
  /// fds (owned by the caller, any flags) to become the child's 0, 1, 2; -1 inherits ours.
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
  /// More fds to hand over: {child fd, our fd}, e.g. {3, pipe_end} for "pipe:fd=3".
  std::vector<std::pair<int, int>> pass_fds;
  /// Names removed from the child's environment (e.g. "NOTIFY_SOCKET": a child that is not the
  /// unit's main process must not talk to systemd for it). Applied to `env` or to ours.
  std::vector<std::string> unset_env;
  /// "K=V" entries added to (or replacing K in) the child's environment, after unset_env.
  std::vector<std::string> set_env;
  /// The child leads a new process group (setpgid(0, 0)): a terminal's Ctrl-C reaches only us.
  bool new_process_group = false;
  /// The child leads a new session (setsid); implies a new process group.
  bool new_session = false;
  /// Signal the kernel sends the child when this thread's process dies (PR_SET_PDEATHSIG); 0 none.
  /// A parent that died before the child armed it is caught too: the child then exits at once.
  int parent_death_signal = 0;
};

/// What process::fork sets up in the child before running the callable (the subset of
/// exec_options that has a meaning without execve).
struct fork_options {
  bool new_process_group = false;  ///< as exec_options::new_process_group
  bool new_session = false;        ///< as exec_options::new_session
  int parent_death_signal = 0;     ///< as exec_options::parent_death_signal
};

class IPC_API process {
 public:
  /// Forks; the child runs body() (returning int or void → 0) and _exits with it (low 8 bits).
  /// An exception escaping body → its what() on stderr and exit code 70. Stdio is flushed before
  /// fork and before the child's _exit; no atexit handlers or static destructors run in the child.
  /// Throws std::system_error naming fork / pidfd_open. Never blocks.
  template <typename F>
  static process fork(F&& body) {
    return fork_impl([&body]() -> int {
      if constexpr (std::is_void_v<std::invoke_result_t<F&>>) {
        std::invoke(body);
        return 0;
      } else {
        return static_cast<int>(std::invoke(body));
      }
    });
  }

  /// As fork(body), with the child first set up by `options` (process group, session, death signal).
  /// Throws as fork(body). A step that fails in the child (or a parent that died before the death
  /// signal was armed) makes the child write the failed call on stderr and exit 127 without body().
  template <typename F>
  static process fork(const fork_options& options, F&& body) {
    return fork_with(options, [&body]() -> int {
      if constexpr (std::is_void_v<std::invoke_result_t<F&>>) {
        std::invoke(body);
        return 0;
      } else {
        return static_cast<int>(std::invoke(body));
      }
    });
  }

  /// fork + execve(argv[0], argv) with `options`. argv[0] without a '/' is searched in PATH (the
  /// child's, else ours). Blocks until execve succeeded or failed; a failure (exec, chdir, dup2) is
  /// reported by the child through a CLOEXEC pipe and thrown here as std::system_error naming the
  /// call and the path ("execve(/no/such): No such file or directory"); the child is reaped.
  /// Empty argv or a bad fd mapping throws EINVAL naming process::exec.
  static process exec(const std::vector<std::string>& argv, const exec_options& options = {});

  /// An empty handle (no process).
  process() noexcept = default;
  /// Takes over other's child; other becomes empty. Never blocks.
  process(process&& other) noexcept;
  /// Like the destructor for the child held so far (SIGKILL + reap), then takes over other's.
  process& operator=(process&& other) noexcept;
  process(const process&) = delete;
  process& operator=(const process&) = delete;
  /// A running, non-detached child is SIGKILLed and reaped (blocks until it is gone).
  ~process();

  /// The child's pid (-1 for an empty handle); stays valid as an id after join.
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  /// A pidfd that polls readable once the child has ended (-1 when empty or detached).
  [[nodiscard]] int pidfd() const noexcept { return pidfd_.get(); }
  /// True when the handle owns a child that has not been joined or detached.
  [[nodiscard]] bool joinable() const noexcept { return static_cast<bool>(pidfd_) && !status_; }

  /// Blocks until the child ends; reaps it and returns how it ended (again on later calls).
  /// Throws std::system_error naming waitid (e.g. ECHILD when someone else reaped it) or, on an
  /// empty/detached handle, EINVAL.
  exit_status join();
  /// Waits at most `timeout` (poll on the pidfd); std::nullopt when still running. Throws as join().
  std::optional<exit_status> join_for(std::chrono::nanoseconds timeout);
  /// Never blocks: reaps and returns the status if the child has ended, else std::nullopt.
  std::optional<exit_status> try_join();
  /// Never blocks: false once the child has ended (reaping it). Throws as join().
  bool running();
  /// Sends `sig` through the pidfd (no pid-reuse race). Returns false when the child has already
  /// been reaped. Throws std::system_error naming pidfd_send_signal otherwise.
  bool kill(int sig);
  /// Lets the child run on after this handle is gone; a library reaper thread reaps it when it
  /// ends, so it never lingers as a zombie. The handle becomes empty (pid() kept). Never blocks.
  void detach();

 private:
  process(pid_t pid, unique_fd pidfd) noexcept : pid_(pid), pidfd_(std::move(pidfd)) {}
  static process fork_impl(const std::function<int()>& body);
  static process fork_with(const fork_options& options, const std::function<int()>& body);
  void kill_and_reap() noexcept;

  pid_t pid_ = -1;
  unique_fd pidfd_;
  std::optional<exit_status> status_;
};

}  // namespace ipc
