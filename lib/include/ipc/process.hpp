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
//   ipc::process worker({.name = "worker-1"}, [&] { crunch(); });   // Python's Process(target=…)
//   worker.start();                                                  // forks now
//   worker.is_alive();  worker.join();  worker.status();             // status(): nullopt while running
//
//   // The child set-up travels with the options: dies with us, kept from our terminal's Ctrl-C.
//   ipc::process helper({.name = "helper", .daemon = true,
//                        .setup = {.new_process_group = true, .parent_death_signal = SIGKILL}}, body);
//   helper.start();
//
// A fork()/exec() handle (daemon) that is still running when destroyed is SIGKILLed and reaped
// (never a zombie) unless detach() was called; a process made with process_options{.daemon = false}
// (the default for the constructor) is joined instead — its destructor waits for it. A handle is
// used by one thread at a time (like std::thread); share pidfd() for waiting elsewhere.
// See docs/process.md.
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
#include <string_view>
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

/// What a forked child (process::fork, process::start) sets up before running its callable: the
/// subset of exec_options that has a meaning without execve. A step that fails in the child (or a
/// parent that died before the death signal was armed) makes the child write the failed call on
/// stderr ("ipc::process NAME (pid N): setpgid: …") and exit 127 without running the callable.
struct fork_options {
  bool new_process_group = false;  ///< as exec_options::new_process_group
  bool new_session = false;        ///< as exec_options::new_session
  int parent_death_signal = 0;     ///< as exec_options::parent_death_signal
};

/// Python's Process(name=…, daemon=…) for the constructor that takes a target, plus the child's
/// set-up: `process p({.name = "w", .daemon = true, .setup = {.parent_death_signal = SIGKILL}}, f)`.
struct process_options {
  /// Shown in errors and in the child's uncaught-exception message: "worker-1 (pid 42)".
  std::string name{};
  /// true: the handle's destructor SIGKILLs a running child (what fork()/exec() handles do);
  /// false: the destructor waits for the child to end (Python joins non-daemon children at exit).
  bool daemon = false;
  /// What start() sets up in the child before the target runs (process group, session, death signal).
  fork_options setup{};
};

class IPC_API process {
 public:
  /// Forks; the child runs body() (returning int or void → 0) and _exits with it (low 8 bits).
  /// An exception escaping body → "ipc::process child (pid N): uncaught exception: what" on stderr
  /// and exit code 70. Stdio is flushed before fork and before the child's _exit; no atexit handlers
  /// or static destructors run in the child. Throws std::system_error naming fork / pidfd_open.
  /// Never blocks. [[nodiscard]]: a dropped handle kills the child at once.
  template <typename F>
  [[nodiscard]] static process fork(F&& body) {
    return fork(fork_options{}, std::forward<F>(body));
  }

  /// As fork(body), with the child first set up by `options` (see fork_options: a failed step exits
  /// 127 without body()). The same fork as start() of a process made with process_options::setup;
  /// this one starts at once and returns a daemon handle. Throws as fork(body).
  template <typename F>
  [[nodiscard]] static process fork(const fork_options& options, F&& body) {
    return fork_impl(options, {}, [&body]() -> int { return run_body(body); });
  }

  /// fork + execve(argv[0], argv) with `options`. argv[0] without a '/' is searched in PATH (the
  /// child's, else ours). Blocks until execve succeeded or failed; a failure (exec, chdir, dup2) is
  /// reported by the child through a CLOEXEC pipe and thrown here as std::system_error naming the
  /// call and the path ("execve(/no/such): No such file or directory"); the child is reaped.
  /// Empty argv or a bad fd mapping throws EINVAL naming process::exec.
  /// [[nodiscard]]: a dropped handle kills the child at once.
  [[nodiscard]] static process exec(const std::vector<std::string>& argv, const exec_options& options = {});

  /// An empty handle (no process).
  process() noexcept = default;

  /// Python's Process(target=f): holds `target` (int or void → 0, as fork()) until start(); never
  /// forks here, never blocks. The target is copied into the child by the fork, so it may capture
  /// anything that is valid at start().
  template <typename F>
    requires std::is_invocable_v<F&>
  process(process_options options, F target)
      : name_(std::move(options.name)), daemon_(options.daemon), setup_(options.setup),
        target_([t = std::move(target)]() mutable -> int { return run_body(t); }) {}
  /// As above with default options (not a daemon, no name).
  template <typename F>
    requires(std::is_invocable_v<F&> && !std::is_same_v<std::remove_cvref_t<F>, process>)
  explicit process(F target) : process(process_options{}, std::move(target)) {}
  /// Takes over other's child; other becomes empty. Never blocks.
  process(process&& other) noexcept;
  /// Like the destructor for the child held so far (SIGKILL + reap, or join for a non-daemon),
  /// then takes over other's.
  process& operator=(process&& other) noexcept;
  process(const process&) = delete;
  process& operator=(const process&) = delete;
  /// A running, non-detached daemon child is SIGKILLed and reaped; a non-daemon one is waited for.
  /// Blocks until the child is gone.
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
  /// Forks the target given to the constructor, the child first set up by process_options::setup
  /// (a failed step exits 127 without the target). Never blocks. Throws std::system_error(EINVAL)
  /// naming the process when it has no target or was already started; as fork() otherwise.
  void start();
  /// Never blocks: true between start() (or fork/exec) and the child's end (then reaps it); false
  /// for an empty, not yet started, joined or detached handle. Throws as join() on a waitid failure.
  [[nodiscard]] bool is_alive();
  /// Never blocks: how the child ended (reaping it if it has), std::nullopt while it runs or before
  /// start() — Python's exitcode. Throws as join() on a waitid failure.
  [[nodiscard]] std::optional<ipc::exit_status> status();
  /// The name given in process_options ("" when none).
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  /// Whether the destructor kills (true) or joins (false) a running child.
  [[nodiscard]] bool daemon() const noexcept { return daemon_; }
  /// Chooses what the destructor does with a running child: kill (true) or join (false).
  void set_daemon(bool daemon) noexcept { daemon_ = daemon; }

  /// Lets the child run on after this handle is gone; a library reaper thread reaps it when it
  /// ends, so it never lingers as a zombie. The handle becomes empty (pid() kept). Never blocks.
  void detach();

 private:
  process(pid_t pid, unique_fd pidfd) noexcept : pid_(pid), pidfd_(std::move(pidfd)) {}
  // body() as an int exit code: void → 0.
  template <typename F>
  static int run_body(F& body) {
    if constexpr (std::is_void_v<std::invoke_result_t<F&>>) {
      std::invoke(body);
      return 0;
    } else {
      return static_cast<int>(std::invoke(body));
    }
  }
  // The one fork of the class: set-up steps, then body; `name` labels the child's messages.
  static process fork_impl(const fork_options& options, std::string_view name, const std::function<int()>& body);
  void kill_and_reap() noexcept;
  // The destructor's work: kill_and_reap() for a daemon, else wait for the child.
  void end_child() noexcept;
  // "name (pid N)" or "pid N", for errors.
  [[nodiscard]] std::string object() const;

  pid_t pid_ = -1;
  unique_fd pidfd_;
  std::optional<exit_status> status_;
  // Python-style process (process_options): name, destructor choice, target until start().
  std::string name_;
  bool daemon_ = true;
  fork_options setup_;
  std::function<int()> target_;
};

}  // namespace ipc
