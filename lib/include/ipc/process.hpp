// Child processes: fork a callable or exec a program, wait with a deadline, signal without
// pid-reuse races (pidfd), and a fork-based worker pool (Python's multiprocessing.Pool).
//
//   auto p = ipc::process::fork([] { return compute() ? 0 : 1; });
//   ipc::exit_status s = p.join();                     // s.code == 0, or s.signal != 0
//
//   ipc::exec_options o;  o.stdout_fd = log_fd.get();  o.cwd = "/tmp";
//   auto sleeper = ipc::process::exec({"/bin/sleep", "5"}, o);   // throws "execve(/bin/sleep): …"
//   if (!sleeper.join_for(100ms)) sleeper.kill(SIGTERM);         // nullopt: still running
//
//   int square(int x) { return x * x; }                // a plain function: same address in the workers
//   ipc::process_pool pool(2);
//   std::future<int> f = pool.apply_async(square, 7);  // f.get() == 49
//   std::vector<int> v = pool.map(square, std::span<const int>(inputs));
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
  void kill_and_reap() noexcept;

  pid_t pid_ = -1;
  unique_fd pidfd_;
  std::optional<exit_status> status_;
};

namespace detail {

/// Calls a plain function whose argument and result travel as bytes (the pool's wire format).
using pool_invoker = void (*)(std::uintptr_t fn, std::span<const std::byte> arg, std::vector<std::byte>& result);

template <typename R, typename A>
void pool_invoke(std::uintptr_t fn, std::span<const std::byte> arg, std::vector<std::byte>& result) {
  std::array<std::byte, sizeof(A)> in{};
  std::memcpy(in.data(), arg.data(), sizeof(A));
  auto* f = reinterpret_cast<R (*)(A)>(fn);
  auto out = std::bit_cast<std::array<std::byte, sizeof(R)>>(f(std::bit_cast<A>(in)));
  result.assign(out.begin(), out.end());
}

/// One submitted task: its request and the promise its result goes to.
struct IPC_API pool_task {
  virtual ~pool_task();
  /// Result bytes from the worker (size already checked against result_size).
  virtual void deliver(std::span<const std::byte> result) = 0;
  virtual void fail(std::exception_ptr error) = 0;

  pool_invoker invoker = nullptr;
  std::uintptr_t fn = 0;
  std::vector<std::byte> arg;
  std::size_t result_size = 0;
};

template <typename R>
struct typed_pool_task final : pool_task {
  std::promise<R> promise;
  void deliver(std::span<const std::byte> result) override {
    std::array<std::byte, sizeof(R)> b{};
    std::memcpy(b.data(), result.data(), sizeof(R));
    promise.set_value(std::bit_cast<R>(b));
  }
  void fail(std::exception_ptr error) override { promise.set_exception(std::move(error)); }
};

}  // namespace detail

/// N forked workers running plain functions R(A) with trivially copyable A and R.
///
/// Why these constraints: a worker is a fork of this process, so a function's address means the
/// same code in the worker, but nothing else is shared after the fork. Arguments and results cross
/// a pipe as raw bytes, which is only meaningful for trivially copyable values (no pointers to heap
/// data, no std::string). Pointers inside A/R refer to the other process's memory: do not.
class IPC_API process_pool {
 public:
  /// Largest sizeof(A) / sizeof(R).
  static constexpr std::size_t max_value_size = 60 * 1024;

  /// Forks `workers` (≥ 1) workers now. `shutdown_grace` bounds how long the destructor lets
  /// queued work drain before SIGKILLing the workers. Throws std::system_error naming fork /
  /// pipe2 (already-forked workers are killed and reaped), EINVAL for 0 workers.
  explicit process_pool(std::size_t workers,
                        std::chrono::milliseconds shutdown_grace = std::chrono::seconds(5));
  /// close(), then join for at most shutdown_grace, then terminate(). Never hangs on a stuck task.
  ~process_pool();
  process_pool(const process_pool&) = delete;
  process_pool& operator=(const process_pool&) = delete;

  /// Queues fn(arg) and returns its future. Never blocks on the workers. The future throws
  /// std::runtime_error(what) if fn threw in the worker, and std::system_error(errc::closed)
  /// naming the worker pid and signal if the worker died running it (the worker is replaced).
  /// Throws errc::closed after close()/terminate().
  template <typename R, typename A>
  std::future<R> apply_async(R (*fn)(A), std::type_identity_t<A> arg) {
    check_types<R, A>();
    auto task = std::make_unique<detail::typed_pool_task<R>>();
    task->invoker = &detail::pool_invoke<R, A>;
    task->fn = reinterpret_cast<std::uintptr_t>(fn);
    auto bytes = std::bit_cast<std::array<std::byte, sizeof(A)>>(arg);
    task->arg.assign(bytes.begin(), bytes.end());
    task->result_size = sizeof(R);
    auto future = task->promise.get_future();
    submit(std::move(task));
    return future;
  }

  /// fn over every argument, results in order. Blocks until all are done; rethrows the first
  /// failure (as apply_async's future would). Throws errc::closed after close()/terminate().
  template <typename R, typename A>
  std::vector<R> map(R (*fn)(A), std::span<const std::type_identity_t<A>> args) {
    std::vector<std::future<R>> futures;
    futures.reserve(args.size());
    for (const A& a : args) futures.push_back(apply_async(fn, a));
    std::vector<R> out;
    out.reserve(args.size());
    for (auto& f : futures) out.push_back(f.get());
    return out;
  }

  /// No more submissions; workers finish the queued tasks and exit. Never blocks.
  void close() noexcept;
  /// close(), then blocks until every worker has exited and been reaped.
  void join();
  /// close(), then waits at most `timeout`; false if workers are still running.
  bool join_for(std::chrono::nanoseconds timeout);
  /// SIGKILLs every worker now; queued and running tasks fail with errc::closed. Never blocks.
  void terminate() noexcept;

  /// Number of workers currently alive (replacements included).
  [[nodiscard]] std::size_t workers() const;
  /// Pids of the live workers.
  [[nodiscard]] std::vector<pid_t> worker_pids() const;
  /// Workers that died without being told to stop (crash, kill); each is replaced while work remains.
  [[nodiscard]] std::uint64_t workers_lost() const;

 private:
  template <typename R, typename A>
  static constexpr void check_types() {
    static_assert(std::is_trivially_copyable_v<A> && std::is_trivially_copyable_v<R>,
                  "process_pool: argument and result must be trivially copyable (they cross a pipe as bytes)");
    static_assert(!std::is_pointer_v<A> && !std::is_pointer_v<R>,
                  "process_pool: a pointer means nothing in another process");
    static_assert(sizeof(A) <= max_value_size && sizeof(R) <= max_value_size,
                  "process_pool: argument/result larger than process_pool::max_value_size");
  }
  void submit(std::unique_ptr<detail::pool_task> task);

  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace ipc
