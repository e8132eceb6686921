// A fork-based worker pool (Python's multiprocessing.Pool).
//
//   int square(int x) { return x * x; }                // a plain function: same address in the workers
//   ipc::process_pool pool(2);
//   std::future<int> f = pool.apply_async(square, 7);  // f.get() == 49
//   std::vector<int> v = pool.map(square, std::span<const int>(inputs));
//
// See docs/process.md.
#pragma once

#include <ipc/config.hpp>
#include <ipc/process.hpp>

#include <sys/types.h>

#include <array>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <future>
#include <memory>
#include <span>
#include <type_traits>
#include <vector>

namespace ipc {

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
