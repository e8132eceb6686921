// A fork-based worker pool at the level of Python's multiprocessing.Pool.
//
//   ipc::process_pool pool(4);
//   auto squares = pool.map([](int x) { return x * x; }, std::views::iota(0, 10));   // {0, 1, 4, …}
//   std::future<int> sum = pool.apply_async(add, 1, 2);                                // sum.get() == 3
//   int k = 10;
//   for (std::string s : pool.imap([k](int i) { return std::to_string(i * k); }, std::views::iota(0, 5))) { }
//   auto pairs = pool.starmap(add, std::vector<std::pair<int, int>>{{1, 2}, {3, 4}});   // {3, 7}
//   std::string unit = " apples";                                    // any capture: carried by a fork
//   auto labels = pool.map([unit](int n) { return std::to_string(n) + unit; }, std::views::iota(1, 4));
//
// How work reaches the workers (docs/process.md, "How a callable travels"): the workers are forks of
// this process, so they run the same binary. A task sends the address of a function template
// instantiated for the callable's type (the same address in every fork), the callable, and the
// arguments as MessagePack; the result or exception comes back the same way.
//  - Arguments and results: any type <ipc/serialize.hpp> packs (numbers, std::string, containers,
//    optional, variant, structs with MSGPACK_DEFINE). const char* and string_view travel as
//    std::string. A pointer argument or result does not compile (a static_assert says why).
//  - The callable, one of three ways, chosen at compile time:
//    sent as bytes:  function pointers, member function pointers (the object then travels as the
//                    first argument), lambdas and std::bind results whose captures are trivially
//                    copyable (numbers, pointers). Any worker runs it; no fork.
//    sent as fields: a function object that declares its fields with MSGPACK_DEFINE.
//    carried:        anything else that can be moved: a lambda capturing a std::string, a vector,
//                    a unique_ptr, a std::function. The pool moves it into a heap copy and runs the
//                    task only on a worker forked after that copy was made, which holds it at the
//                    same address: idle older workers are stopped and replaced by new forks (one
//                    fork serves every carried task submitted before it). Cost: about one fork
//                    per burst of carried submissions; map/imap/starmap carry one copy per call.
//    refused:        a callable that cannot be moved (static_assert).
//  - State: a carried callable is the parent's state at submission. A pointer or reference captured
//    by a callable sent as bytes names the worker's copy of memory as of that worker's fork: only
//    data that existed, unchanged, before the pool started (or before a replacement was forked)
//    is meaningful there. Nothing a worker changes comes back except the result.
//  - The initializer (pool_options) is not sent at all: each worker runs its copy right after the
//    fork, so it may capture anything.
//
// Failures: a task's standard exception is re-thrown as the same type; any other as
// ipc::remote_error (type name + message) — <ipc/remote_error.hpp>. A worker that dies while
// running a task fails that task (every item of its chunk) with errc::closed naming the signal;
// a task sent to a worker that died before starting it is re-queued once on another worker.
#pragma once

#include <ipc/config.hpp>
#include <ipc/error.hpp>
#include <ipc/process.hpp>
#include <ipc/remote_error.hpp>
#include <ipc/serialize.hpp>

#include <sys/types.h>

#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <iterator>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace ipc {

/// How a process_pool is set up.
struct pool_options {
  /// Number of workers (≥ 1); 0 means std::thread::hardware_concurrency().
  std::size_t workers = 0;
  /// Runs in each worker after its fork, before its first task (Python's initializer). It is not
  /// serialised: each worker runs its fork-time copy, so it may capture anything. If it throws, the
  /// worker exits, the pool closes, and queued tasks fail with that exception (rebuilt by type).
  std::function<void()> initializer;
  /// A worker exits after this many tasks (chunks) and is replaced; 0: never (maxtasksperchild).
  std::size_t max_tasks_per_child = 0;
  /// How long the destructor lets queued work drain before SIGKILLing the workers.
  std::chrono::milliseconds shutdown_grace = std::chrono::seconds(5);
};

namespace detail {

/// What an argument travels as: character pointers and string views as std::string, others decayed.
template <typename A>
struct wire {
  using type = std::decay_t<A>;
};
template <typename A>
  requires std::is_same_v<std::decay_t<A>, const char*> || std::is_same_v<std::decay_t<A>, char*> ||
           std::is_same_v<std::decay_t<A>, std::string_view>
struct wire<A> {
  using type = std::string;
};
template <typename A>
using wire_t = typename wire<A>::type;

/// The argument tuple of a starmap element (any tuple-like: std::tuple, std::pair, std::array).
template <typename T, typename = std::make_index_sequence<std::tuple_size_v<std::remove_cvref_t<T>>>>
struct star_args;
template <typename T, std::size_t... I>
struct star_args<T, std::index_sequence<I...>> {
  using type = std::tuple<wire_t<std::tuple_element_t<I, std::remove_cvref_t<T>>>...>;
};

/// A callable that declares its fields (MSGPACK_DEFINE) travels as MessagePack.
template <typename F>
concept declares_fields = std::default_initializable<F> && requires(const F& f, msgpack::packer<byte_sink>& p) {
  f.msgpack_pack(p);
};
/// A callable whose copy is a byte copy (function pointers, lambdas capturing numbers) travels as bytes.
template <typename F>
concept bit_copyable = std::is_trivially_copy_constructible_v<F> && std::is_trivially_destructible_v<F>;
/// A callable that is sent (state as bytes or MessagePack) to any worker.
template <typename F>
concept travels = declares_fields<F> || bit_copyable<F>;
/// Any other callable (a lambda capturing a std::string, a std::function, …) is carried: the
/// parent keeps a heap copy and the task runs only on a worker forked after the copy was made,
/// where it sits at the same address.
template <typename F>
concept carried = !travels<F> && std::move_constructible<F>;

/// A value that travels by MessagePack; pointers would name the other process's memory.
template <typename T>
concept plain_value = !std::is_pointer_v<T> && !std::is_member_pointer_v<T> && !std::is_reference_v<T>;

/// The largest request or reply of the pool (process_pool::max_message_size).
inline constexpr std::size_t pool_max_message = 16 * 1024 * 1024;

/// The pool's wire: a request payload is the array [callable, [args-tuple, …]]; the reply is an
/// array with one [0, value] or [1, exception_record] per args-tuple.
using pool_invoker = void (*)(std::span<const std::byte> payload, std::vector<std::byte>& reply);

/// Packs the callable: MessagePack fields, its bytes, or (carried) the address of the parent's
/// heap copy, which a worker forked after that copy was made holds at the same address.
template <typename F>
void pack_callable(msgpack::packer<byte_sink>& p, const F& f) {
  if constexpr (declares_fields<F>) {
    p.pack(f);
  } else if constexpr (bit_copyable<F>) {
    p.pack_bin(static_cast<std::uint32_t>(sizeof(F)));
    p.pack_bin_body(reinterpret_cast<const char*>(&f), static_cast<std::uint32_t>(sizeof(F)));
  } else {
    p.pack(static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(&f)));
  }
}

template <typename F>
struct unpacked_callable {
  explicit unpacked_callable(const msgpack::object& o) {
    if constexpr (declares_fields<F>) {
      ptr_ = ::new (static_cast<void*>(storage_)) F(o.as<F>());
    } else if constexpr (carried<F>) {
      // The worker's fork-time copy of the parent's heap copy (the pool sends this task only to
      // a worker forked after the copy was made): used in place, owned by nobody here.
      if (o.type != msgpack::type::POSITIVE_INTEGER || o.via.u64 == 0) throw msgpack::type_error();
      ptr_ = reinterpret_cast<F*>(static_cast<std::uintptr_t>(o.via.u64));
    } else {
      if (o.type != msgpack::type::BIN || o.via.bin.size != sizeof(F)) throw msgpack::type_error();
      // F is trivially copyable in the sense that matters: memcpy creates it (implicit lifetime).
      std::memcpy(storage_, o.via.bin.ptr, sizeof(F));
      ptr_ = std::launder(reinterpret_cast<F*>(storage_));
    }
  }
  ~unpacked_callable() {
    if constexpr (declares_fields<F>) ptr_->~F();
  }
  unpacked_callable(const unpacked_callable&) = delete;
  unpacked_callable& operator=(const unpacked_callable&) = delete;
  F& get() noexcept { return *ptr_; }

 private:
  alignas(F) std::byte storage_[carried<F> ? 1 : sizeof(F)];
  F* ptr_ = nullptr;
};

template <typename F, typename Tuple>
using apply_result_t = std::decay_t<decltype(std::apply(std::declval<F&>(), std::declval<Tuple&&>()))>;

/// Runs in the worker: decodes the callable and each args-tuple, calls, packs each outcome.
template <typename F, typename Tuple>
void pool_run(std::span<const std::byte> payload, std::vector<std::byte>& reply) {
  using R = apply_result_t<F, Tuple>;
  byte_sink sink{&reply};
  msgpack::packer<byte_sink> pk(sink);
  const std::size_t start = reply.size();
  std::size_t count = 0;
  std::optional<exception_record> whole_failure;
  msgpack::object_handle oh;
  const msgpack::object* items = nullptr;
  std::optional<unpacked_callable<F>> callable;
  try {
    oh = msgpack::unpack(reinterpret_cast<const char*>(payload.data()), payload.size());
    const msgpack::object& root = oh.get();
    if (root.type != msgpack::type::ARRAY || root.via.array.size != 2 ||
        root.via.array.ptr[1].type != msgpack::type::ARRAY) {
      throw msgpack::type_error();
    }
    items = &root.via.array.ptr[1];
    count = items->via.array.size;
    callable.emplace(root.via.array.ptr[0]);
  } catch (...) {
    whole_failure = record_exception(std::current_exception());
  }
  pk.pack_array(static_cast<std::uint32_t>(count));
  std::vector<std::byte> value;
  for (std::size_t i = 0; i < count; ++i) {
    if (whole_failure) {
      pk.pack_array(2);
      pk.pack(1);
      pk.pack(*whole_failure);
      continue;
    }
    try {
      Tuple args = items->via.array.ptr[i].as<Tuple>();
      value.clear();
      if constexpr (std::is_void_v<R>) {
        std::apply(callable->get(), std::move(args));
        pack_into(value, msgpack::type::nil_t());
      } else {
        pack_into(value, std::apply(callable->get(), std::move(args)));
      }
      pk.pack_array(2);
      pk.pack(0);
      sink.write(reinterpret_cast<const char*>(value.data()), value.size());
    } catch (...) {
      pk.pack_array(2);
      pk.pack(1);
      pk.pack(record_exception(std::current_exception()));
    }
  }
  if (reply.size() - start > pool_max_message - 64) {
    // The results do not fit one reply: every item of the chunk fails with message_too_large.
    exception_record too_large;
    try {
      throw_error(errc::message_too_large, "process_pool", "task result",
                  std::to_string(reply.size() - start) + " bytes of results exceed " + std::to_string(pool_max_message));
    } catch (...) {
      too_large = record_exception(std::current_exception());
    }
    reply.resize(start);
    pk.pack_array(static_cast<std::uint32_t>(count));
    for (std::size_t i = 0; i < count; ++i) {
      pk.pack_array(2);
      pk.pack(1);
      pk.pack(too_large);
    }
  }
}

/// One request in the parent: a chunk of items and where their outcomes go.
struct IPC_API pool_job {
  virtual ~pool_job();
  /// Item `index` of this chunk produced `value` (a packed R). Must not throw.
  virtual void deliver(std::size_t index, const msgpack::object& value) noexcept = 0;
  /// Item `index` failed.
  virtual void fail(std::size_t index, std::exception_ptr error) noexcept = 0;

  pool_invoker invoker = nullptr;
  std::vector<std::byte> payload;  // [callable, [args-tuple, …]]
  std::size_t items = 0;
  /// A carried callable's heap copy (its address is in the payload); null when the callable is sent.
  /// Kept until the job is done, so the address is never reused while the job may still run.
  std::shared_ptr<const void> carried;
};

template <typename R>
std::exception_ptr decode_into(const msgpack::object& value, R& out) noexcept {
  try {
    value.convert(out);
    return nullptr;
  } catch (...) {
    try {
      throw_error(errc::corrupt, "process_pool", "task result", "the worker's result does not decode");
    } catch (...) {
      return std::current_exception();
    }
  }
}

template <typename R>
struct promise_job final : pool_job {
  std::promise<R> promise;
  void deliver(std::size_t, const msgpack::object& value) noexcept override {
    if constexpr (std::is_void_v<R>) {
      promise.set_value();
    } else {
      try {
        R r{};
        if (auto e = decode_into(value, r)) {
          promise.set_exception(e);
        } else {
          promise.set_value(std::move(r));
        }
      } catch (...) {
        promise.set_exception(std::current_exception());
      }
    }
  }
  void fail(std::size_t, std::exception_ptr error) noexcept override { promise.set_exception(std::move(error)); }
};

/// The results of one map/imap call, filled by chunk jobs as workers answer.
template <typename R>
struct results_state {
  std::mutex m;
  std::condition_variable cv;
  std::vector<std::optional<R>> values;
  std::vector<std::exception_ptr> errors;
  std::vector<bool> done;
  std::deque<std::size_t> arrived;  // completion order (imap_unordered)
  std::size_t total = 0;

  void complete(std::size_t i, std::optional<R> v, std::exception_ptr e) noexcept {
    std::lock_guard lk(m);
    values[i] = std::move(v);
    errors[i] = std::move(e);
    done[i] = true;
    arrived.push_back(i);
    cv.notify_all();
  }
};

template <typename R>
struct chunk_job final : pool_job {
  std::shared_ptr<results_state<R>> state;
  std::size_t first = 0;
  void deliver(std::size_t index, const msgpack::object& value) noexcept override {
    try {
      R r{};
      if (auto e = decode_into(value, r)) {
        state->complete(first + index, std::nullopt, e);
      } else {
        state->complete(first + index, std::move(r), nullptr);
      }
    } catch (...) {
      state->complete(first + index, std::nullopt, std::current_exception());
    }
  }
  void fail(std::size_t index, std::exception_ptr error) noexcept override {
    state->complete(first + index, std::nullopt, std::move(error));
  }
};

}  // namespace detail

/// The streaming results of imap / imap_unordered (Python's IMapIterator): a single-pass range.
/// Each result is handed out once; an item whose task failed re-throws its exception when reached
/// (the others remain available). It outlives the pool (unfinished items then fail with errc::closed).
template <typename R>
class pool_results {
 public:
  pool_results(std::shared_ptr<detail::results_state<R>> state, bool ordered) : state_(std::move(state)), ordered_(ordered) {}

  /// Blocks until the next result (input order for imap, completion order for imap_unordered);
  /// std::nullopt once every result was handed out. Re-throws the task's exception.
  std::optional<R> next() {
    std::unique_lock lk(state_->m);
    if (handed_ == state_->total) return std::nullopt;
    state_->cv.wait(lk, [&] { return ready_locked(); });
    return take_locked();
  }
  /// Waits at most `timeout` until next() would not block; false on timeout.
  bool wait_next_for(std::chrono::nanoseconds timeout) {
    std::unique_lock lk(state_->m);
    if (handed_ == state_->total) return true;
    return state_->cv.wait_for(lk, timeout, [&] { return ready_locked(); });
  }
  /// Results not yet handed out.
  [[nodiscard]] std::size_t remaining() const noexcept { return state_->total - handed_; }

  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = R;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(pool_results* r) : r_(r) { ++*this; }
    R& operator*() { return *current_; }
    iterator& operator++() {
      current_ = r_->next();
      if (!current_) r_ = nullptr;
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& a, std::default_sentinel_t) { return a.r_ == nullptr; }

   private:
    pool_results* r_ = nullptr;
    std::optional<R> current_;
  };
  /// Starts consuming (blocks for the first result). Re-throws as next().
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  bool ready_locked() const {
    if (handed_ == state_->total) return true;
    return ordered_ ? state_->done[handed_] : !state_->arrived.empty();
  }
  std::optional<R> take_locked() {
    std::size_t i = handed_;
    if (!ordered_) {
      i = state_->arrived.front();
      state_->arrived.pop_front();
    }
    ++handed_;
    if (state_->errors[i]) std::rethrow_exception(state_->errors[i]);
    return std::move(state_->values[i]);
  }

  std::shared_ptr<detail::results_state<R>> state_;
  bool ordered_;
  std::size_t handed_ = 0;
};

/// N forked workers running any callable that can travel (see the top of this header).
class IPC_API process_pool {
 public:
  /// The largest request or reply (packed callable, arguments and results of one chunk).
  static constexpr std::size_t max_message_size = detail::pool_max_message;

  /// Forks `workers` (≥ 1) workers now. `shutdown_grace` bounds how long the destructor lets
  /// queued work drain before SIGKILLing the workers. Throws std::system_error naming fork /
  /// pipe2 (already-forked workers are killed and reaped), EINVAL for 0 workers.
  explicit process_pool(std::size_t workers, std::chrono::milliseconds shutdown_grace = std::chrono::seconds(5));
  /// Forks options.workers workers now, each running options.initializer first. Throws as above.
  explicit process_pool(const pool_options& options);
  /// close(), then join for at most shutdown_grace, then terminate(). Never hangs on a stuck task.
  ~process_pool();
  process_pool(const process_pool&) = delete;
  process_pool& operator=(const process_pool&) = delete;

  /// Queues f(args...) and returns its future. Never blocks on the workers. The future re-throws
  /// the task's exception (same type for standard exceptions, else ipc::remote_error), or
  /// std::system_error(errc::closed) naming the worker pid and signal if the worker died running
  /// it. Throws errc::closed after close()/terminate(), errc::message_too_large for arguments
  /// above max_message_size (nothing queued). A carried callable (see the top of this header) runs
  /// on a worker forked after this call; the fork happens on the pool's thread, not here.
  template <typename F, typename... Args>
  auto apply_async(F f, Args&&... args) {
    using Tuple = std::tuple<detail::wire_t<Args>...>;
    check_callable<F>();
    using R = detail::apply_result_t<F, Tuple>;
    check_values<Tuple, R>();
    auto job = std::make_unique<detail::promise_job<R>>();
    begin_payload(job->payload, keep_callable(job->carried, f), 1);
    pack_into(job->payload, Tuple(std::forward<Args>(args)...));
    job->invoker = &detail::pool_run<F, Tuple>;
    job->items = 1;
    auto future = job->promise.get_future();
    submit(std::move(job));
    return future;
  }

  /// Python's apply: apply_async(...).get(). Blocks until the task is done; re-throws as its future.
  template <typename F, typename... Args>
  auto apply(F f, Args&&... args) {
    return apply_async(std::move(f), std::forward<Args>(args)...).get();
  }

  /// f(x) for every x of `inputs` (any input range), results in input order. Items travel in
  /// chunks of `chunksize` (0: about 4 chunks per worker for sized ranges, else 1). Blocks until
  /// every result is in; re-throws the first failure in input order. Throws as apply_async.
  template <typename F, std::ranges::input_range Range>
  auto map(F f, Range&& inputs, std::size_t chunksize = 0) {
    return collect(imap(std::move(f), std::forward<Range>(inputs), chunksize));
  }
  /// f(a, b, …) for every tuple-like element (std::tuple, std::pair, std::array); as map.
  template <typename F, std::ranges::input_range Range>
  auto starmap(F f, Range&& inputs, std::size_t chunksize = 0) {
    using Tuple = typename detail::star_args<std::ranges::range_reference_t<Range>>::type;
    return collect(submit_all<Tuple>(std::move(f), std::forward<Range>(inputs), chunksize, true, [](auto&& e) {
      return std::apply([](auto&&... a) { return Tuple(std::forward<decltype(a)>(a)...); }, std::forward<decltype(e)>(e));
    }));
  }
  /// As map, but returns without waiting for any task: results stream in input order as they
  /// complete (range-for or next()). Inputs are read, packed and queued during this call (Python
  /// reads them lazily). Throws as apply_async; a task's failure is re-thrown when its item is reached.
  template <typename F, std::ranges::input_range Range>
  pool_results<detail::apply_result_t<F, std::tuple<detail::wire_t<std::ranges::range_reference_t<Range>>>>>
  imap(F f, Range&& inputs, std::size_t chunksize = 1) {
    using Tuple = std::tuple<detail::wire_t<std::ranges::range_reference_t<Range>>>;
    return submit_all<Tuple>(std::move(f), std::forward<Range>(inputs), chunksize, true,
                             [](auto&& e) { return Tuple(std::forward<decltype(e)>(e)); });
  }
  /// As imap, results in completion order.
  template <typename F, std::ranges::input_range Range>
  pool_results<detail::apply_result_t<F, std::tuple<detail::wire_t<std::ranges::range_reference_t<Range>>>>>
  imap_unordered(F f, Range&& inputs, std::size_t chunksize = 1) {
    using Tuple = std::tuple<detail::wire_t<std::ranges::range_reference_t<Range>>>;
    return submit_all<Tuple>(std::move(f), std::forward<Range>(inputs), chunksize, false,
                             [](auto&& e) { return Tuple(std::forward<decltype(e)>(e)); });
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
  /// Workers that exited after max_tasks_per_child tasks (and were replaced).
  [[nodiscard]] std::uint64_t workers_retired() const;
  /// Tasks sent to a worker that died before starting them, and queued again.
  [[nodiscard]] std::uint64_t tasks_requeued() const;

 private:
  template <typename F>
  static constexpr void check_callable() {
    static_assert(detail::travels<F> || detail::carried<F>,
                  "process_pool: this callable cannot reach a worker: it is neither sent (trivially copyable "
                  "captures, or a function object with MSGPACK_DEFINE) nor carried by a fork (that needs a "
                  "move-constructible callable). Capture by value or pass the data as arguments "
                  "(docs/process.md, \"How a callable travels\")");
  }

  template <typename Tuple, typename R>
  static constexpr void check_values() {
    static_assert([]<typename... A>(std::type_identity<std::tuple<A...>>) {
      return (detail::plain_value<A> && ...);
    }(std::type_identity<Tuple>{}),
                  "process_pool: an argument is a pointer: it would name memory of another process. Pass the "
                  "value (arguments travel as MessagePack; const char* travels as std::string)");
    static_assert(std::is_void_v<R> || detail::plain_value<R>,
                  "process_pool: the task returns a pointer: it would name the worker's memory. Return the "
                  "value (results travel as MessagePack)");
  }

  /// The callable as the payload names it: f itself when it is sent, else a heap copy that `keep`
  /// owns (carried: its address is sent and the pool runs the task on a worker forked after it).
  template <typename F>
  static const F& keep_callable(std::shared_ptr<const void>& keep, F& f) {
    if constexpr (detail::carried<F>) {
      auto copy = std::make_shared<F>(std::move(f));
      keep = copy;
      return *copy;
    } else {
      return f;
    }
  }

  template <typename F>
  static void begin_payload(std::vector<std::byte>& payload, const F& f, std::size_t items) {
    detail::byte_sink sink{&payload};
    msgpack::packer<detail::byte_sink> pk(sink);
    pk.pack_array(2);
    detail::pack_callable(pk, f);
    pk.pack_array(static_cast<std::uint32_t>(items));
  }

  template <typename Tuple, typename F, typename Range, typename ToTuple>
  auto submit_all(F f, Range&& inputs, std::size_t chunksize, bool ordered, ToTuple to_tuple) {
    check_callable<F>();
    using R = detail::apply_result_t<F, Tuple>;
    static_assert(!std::is_void_v<R>, "process_pool: map/imap need a callable that returns a value (use apply_async)");
    check_values<Tuple, R>();
    // Pack every item first: the count is then known, and a value that does not serialise
    // fails here, before anything is queued.
    std::vector<std::vector<std::byte>> packed;
    if constexpr (std::ranges::sized_range<Range>) packed.reserve(std::ranges::size(inputs));
    for (auto&& e : inputs) {
      packed.emplace_back();
      pack_into(packed.back(), to_tuple(std::forward<decltype(e)>(e)));
    }
    if (chunksize == 0) chunksize = auto_chunksize(packed.size());
    auto state = std::make_shared<detail::results_state<R>>();
    state->total = packed.size();
    state->values.resize(packed.size());
    state->errors.resize(packed.size());
    state->done.resize(packed.size());
    std::shared_ptr<const void> keep;  // one carried copy serves every chunk of this call
    const F& sent = keep_callable(keep, f);
    std::vector<std::unique_ptr<detail::pool_job>> jobs;
    for (std::size_t first = 0; first < packed.size(); first += chunksize) {
      std::size_t n = std::min(chunksize, packed.size() - first);
      auto job = std::make_unique<detail::chunk_job<R>>();
      job->state = state;
      job->first = first;
      job->items = n;
      job->invoker = &detail::pool_run<F, Tuple>;
      job->carried = keep;
      begin_payload(job->payload, sent, n);
      for (std::size_t i = first; i < first + n; ++i) {
        job->payload.insert(job->payload.end(), packed[i].begin(), packed[i].end());
      }
      jobs.push_back(std::move(job));
    }
    submit_many(std::move(jobs));
    return pool_results<R>(std::move(state), ordered);
  }

  template <typename R>
  static std::vector<R> collect(pool_results<R> results) {
    std::vector<R> out;
    out.reserve(results.remaining());
    while (auto v = results.next()) out.push_back(std::move(*v));
    return out;
  }

  [[nodiscard]] std::size_t auto_chunksize(std::size_t items) const noexcept;
  void submit(std::unique_ptr<detail::pool_job> job);
  void submit_many(std::vector<std::unique_ptr<detail::pool_job>> jobs);

  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace ipc
