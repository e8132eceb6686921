// Process-shared synchronisation that survives a crashed peer.
//
//   // in a MAP_SHARED mapping both processes see:
//   struct shared { ipc::robust_mutex m{1}; ipc::robust_condition cv; int items; };
//   auto* s = new (mem) shared{};                         // the creator, once
//
//   std::unique_lock lk(s->m);                            // any process
//   if (s->m.previous_owner_died()) repair(s->items);     // the last holder was killed
//   s->cv.wait(lk, [&] { return s->items > 0; });
//
//   auto both = ipc::lock_in_order(a, b);                 // ascending id, no ABBA deadlock
//
// robust_mutex wraps a PTHREAD_PROCESS_SHARED | PTHREAD_MUTEX_ROBUST | ERRORCHECK pthread
// mutex: a holder that dies hands the lock to the next locker, which is told (owner_died) and
// the mutex is made consistent at once, so it never becomes unrecoverable. robust_condition is a
// futex sequence counter with notify tokens, not pthread_cond_t: a waiter killed mid-wait leaves
// nothing behind (see docs/sync.md for glibc bug 21422). Both are standard-layout and live in
// shared memory. Neither strands a waiter when a process it woke dies before acting: blocked
// callers sleep in slices of at most 100 ms and look again (docs/sync.md, "No stranded waiter").
#pragma once

#include <ipc/config.hpp>
#include <ipc/deadline.hpp>

#include <pthread.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace ipc {

/// What an acquisition found: true when the previous holder died holding the lock (the mutex
/// has already been made consistent; the protected data may be half-updated and wants repair).
struct lock_result {
  bool owner_died = false;
};

class IPC_API robust_mutex {
 public:
  /// Initialises the mutex in place (call once, by the segment's creator). id orders the mutex
  /// for lock_in_order and the lock-order checker; 0 means "unordered" (the checker ignores it).
  /// Throws std::system_error if pthread refuses an attribute.
  explicit robust_mutex(std::uint32_t id = 0);
  /// Placement-constructs a robust_mutex at mem (suitably aligned, sizeof(robust_mutex) bytes).
  static robust_mutex* create_at(void* mem, std::uint32_t id = 0);
  /// Destroys the pthread mutex; only the last user of the segment should run this. noexcept.
  ~robust_mutex();

  robust_mutex(const robust_mutex&) = delete;
  robust_mutex& operator=(const robust_mutex&) = delete;

  /// Blocks until held. Returns owner_died when the previous holder died holding it. A blocked
  /// caller sleeps in slices of at most 100 ms, so a lock left free (or with a dead owner) by a
  /// process that died after being woken is taken within one slice; uncontended: no system call.
  /// Throws EDEADLK if this thread already holds it, errc::corrupt if the mutex is unrecoverable,
  /// and whatever the lock-order checker's handler throws on an order violation.
  lock_result lock();
  /// Never blocks; true when acquired (owner death: see previous_owner_died()). Throws like lock().
  bool try_lock();
  /// Blocks until held or d passes (CLOCK_MONOTONIC); false on timeout. Throws like lock().
  bool try_lock_until(const deadline& d);
  /// As try_lock_until(deadline::at(t)).
  bool try_lock_until(std::chrono::steady_clock::time_point t) { return try_lock_until(deadline::at(t)); }
  /// Blocks at most timeout; false on timeout. Throws like lock().
  template <typename Rep, typename Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
    return try_lock_until(deadline::in(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout)));
  }
  /// Never blocks. Throws EPERM (system_error) if this thread does not hold the mutex.
  void unlock();

  /// For the current holder only: true when this hold began by recovering from a dead owner
  /// (through lock, try_lock, a timed lock or a condition wait). Never blocks, never throws.
  [[nodiscard]] bool previous_owner_died() const noexcept { return recovered_ != 0; }
  /// How many times any process found this mutex's owner dead since it was created.
  [[nodiscard]] std::uint32_t owner_deaths() const noexcept {
    return owner_deaths_.load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint32_t id() const noexcept { return id_; }
  /// The underlying pthread mutex (for code that must hand it to a pthread API). Locking it with
  /// pthread_mutex_lock directly loses the 100 ms bound above (glibc sleeps without a limit).
  [[nodiscard]] pthread_mutex_t* native_handle() noexcept { return &mutex_; }

 private:
  friend class robust_condition;
  // Turns a pthread lock return code into a result; true when held.
  bool finish_lock(int rc, const char* call);
  // The blocking acquisition: trylock, then pthread_mutex_clocklock in slices until d.
  bool acquire(const deadline& d);
  // True while the lock word says its holder died and nobody has recovered it yet.
  [[nodiscard]] bool owner_death_pending() const noexcept;

  pthread_mutex_t mutex_;
  std::uint32_t id_;
  std::atomic<std::uint32_t> owner_deaths_{0};
  std::uint32_t recovered_ = 0;  // written and read only by the holder
};

/// A process-shared condition variable for robust_mutex, built on a 32-bit futex sequence
/// counter (FUTEX_WAIT_BITSET on an absolute CLOCK_MONOTONIC deadline, not process-private).
/// Waiters keep no per-waiter state in shared memory, so a waiter that is SIGKILLed mid-wait
/// cannot corrupt it. Spurious wakeups are possible, as with std::condition_variable.
/// Crash contract: notify while holding the mutex. A notify_one whose woken waiter dies before
/// it returns is taken by another waiter within 100 ms; a notifier killed holding the mutex
/// (maybe before its notify) makes every waiter return within 100 ms, and the relock reports
/// owner_died: repair the state, then notify_all.
class IPC_API robust_condition {
 public:
  robust_condition() noexcept = default;
  /// Placement-constructs a robust_condition at mem.
  static robust_condition* create_at(void* mem) noexcept;
  ~robust_condition() = default;
  robust_condition(const robust_condition&) = delete;
  robust_condition& operator=(const robust_condition&) = delete;

  using lock_type = std::unique_lock<robust_mutex>;

  /// Blocks until notified (or spuriously woken, e.g. when the mutex's owner died); lk must hold
  /// its mutex and holds it again on return. Returns owner_died if the relock found the mutex's
  /// owner dead. Throws like lock().
  lock_result wait(lock_type& lk);
  /// Blocks until pred() holds. Returns owner_died if any relock found a dead owner.
  template <typename Pred>
  lock_result wait(lock_type& lk, Pred pred) {
    lock_result r;
    while (!pred()) r.owner_died = wait(lk).owner_died || r.owner_died;
    return r;
  }
  /// Blocks until notified or d passes; cv_status::timeout on timeout. Relocks either way
  /// (owner death: lk.mutex()->previous_owner_died()). Throws like lock().
  std::cv_status wait_until(lock_type& lk, const deadline& d);
  /// Blocks until pred() holds or d passes; returns pred() (false = timed out).
  template <typename Pred>
  bool wait_until(lock_type& lk, const deadline& d, Pred pred) {
    while (!pred()) {
      if (wait_until(lk, d) == std::cv_status::timeout) return pred();
    }
    return true;
  }
  /// wait_until(lk, deadline::in(timeout)).
  template <typename Rep, typename Period>
  std::cv_status wait_for(lock_type& lk, const std::chrono::duration<Rep, Period>& timeout) {
    return wait_until(lk, deadline::in(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout)));
  }
  /// wait_until(lk, deadline::in(timeout), pred).
  template <typename Rep, typename Period, typename Pred>
  bool wait_for(lock_type& lk, const std::chrono::duration<Rep, Period>& timeout, Pred pred) {
    return wait_until(lk, deadline::in(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout)),
                      std::move(pred));
  }

  /// Releases one waiter, if any: one that is blocked now or, if it takes the release first, one
  /// that starts waiting before the woken one returns. A release whose woken waiter dies is not
  /// lost while other waiters remain. Never blocks; throws nothing.
  void notify_one() noexcept;
  /// Releases every waiter blocked now. Never blocks; throws nothing.
  void notify_all() noexcept;

 private:
  // Takes one notify_one release if there is one.
  bool take_token() noexcept;
  // Unregisters a waiter and drops releases that no remaining waiter can take.
  void leave() noexcept;

  std::atomic<std::uint32_t> seq_{0};         // the futex word: bumped by every notify
  std::atomic<std::uint32_t> waiters_{0};     // registered waiters; a dead one leaves it high (harmless)
  std::atomic<std::uint32_t> tokens_{0};      // notify_one releases not yet taken (<= waiters_)
  std::atomic<std::uint32_t> broadcasts_{0};  // notify_all generation
};

static_assert(std::is_standard_layout_v<robust_mutex>);
static_assert(std::is_standard_layout_v<robust_condition>);
static_assert(sizeof(robust_condition) == 16, "shared layouts embed it: a size change is a layout version change");
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

/// Holds several robust_mutexes locked in ascending id order; unlocks in reverse on destruction.
class IPC_API ordered_lock {
 public:
  ordered_lock() noexcept = default;
  ordered_lock(ordered_lock&& o) noexcept : held_(std::exchange(o.held_, {})) {}
  ordered_lock& operator=(ordered_lock&& o) noexcept;
  ~ordered_lock();

  /// The ids in the order they were locked (ascending).
  [[nodiscard]] std::vector<std::uint32_t> ids() const;
  /// True if any of the mutexes was recovered from a dead owner.
  [[nodiscard]] bool any_owner_died() const noexcept;
  /// True if m (one of ours) was recovered from a dead owner.
  [[nodiscard]] bool owner_died(const robust_mutex& m) const noexcept;
  /// Unlocks everything now, in reverse order. Never blocks; noexcept.
  void unlock() noexcept;

 private:
  friend IPC_API ordered_lock lock_in_order(std::span<robust_mutex* const> mutexes);
  std::vector<std::pair<robust_mutex*, bool>> held_;
};

/// Locks every mutex in ascending id order (blocking). Throws std::system_error(EINVAL) naming
/// the id when two share an id (or the same mutex is given twice) or one is null; if a lock
/// throws, those already taken are released before the exception propagates.
IPC_API ordered_lock lock_in_order(std::span<robust_mutex* const> mutexes);

/// lock_in_order over the arguments, in any order.
template <typename... M>
  requires(std::is_same_v<M, robust_mutex> && ...)
ordered_lock lock_in_order(M&... mutexes) {
  robust_mutex* all[] = {&mutexes...};
  return lock_in_order(std::span<robust_mutex* const>(all));
}

/// A debug check that locks are taken in a consistent order, across every process of the toolkit.
/// Each thread keeps the ids it holds; "A held while taking B" edges are learned into a registry
/// shared by every process using the same runtime directory (a System V segment, key file
/// runtime_dir()/lock-order.shm; each edge names the pid that established it). Taking B while
/// holding A is a violation, reported before the lock blocks, when the edge would close a cycle
/// with edges learned by any process (policy::learned_order, the default) or, under
/// policy::ascending_ids, whenever B <= A. Edges of dead processes (pid + start time) are dropped
/// when a process first uses the registry, when it is full and on reset(); the last process to
/// leave removes it. On by default unless NDEBUG; IPC_LOCK_ORDER_CHECK=1/0 overrides at load time,
/// enable() at run time. Disabled cost: one relaxed atomic load per lock. See docs/sync.md.
class IPC_API lock_order_checker {
 public:
  enum class policy { learned_order, ascending_ids };
  /// One learned "first held while then taken" order and the process that established it.
  struct order {
    std::uint32_t first;
    std::uint32_t then;
    pid_t pid;
  };
  struct violation {
    std::uint32_t held;       ///< the id already held
    std::uint32_t acquiring;  ///< the id being locked
    std::string message;      ///< names both locks, both orders and the pids that established them
    std::string held_name;       ///< describe()d name of `held`, else "lock N"
    std::string acquiring_name;  ///< describe()d name of `acquiring`, else "lock N"
    pid_t pid = 0;               ///< this process (which tried `held` then `acquiring`)
    std::vector<order> reverse;  ///< the learned path from `acquiring` back to `held` (empty for
                                 ///< the ascending_ids and relock rules)
  };
  /// Called (outside any checker lock) on a violation; if it returns, the lock proceeds.
  using handler = std::function<void(const violation&)>;

  static void enable(bool on) noexcept;
  /// Inline: the whole cost of a disabled checker is this one relaxed load.
  [[nodiscard]] static bool enabled() noexcept { return enabled_.load(std::memory_order_relaxed); }
  static void set_policy(policy p) noexcept;
  /// Replaces this process's handler; an empty one restores the default, which throws
  /// std::system_error(EDEADLK) whose what() carries the violation's message.
  static void set_handler(handler h);
  /// A handler that prints the message to stderr and aborts.
  static void abort_handler(const violation& v) noexcept;
  /// Forgets the orders this process learned, and those of dead processes (not the locks this
  /// thread holds). Blocks for the registry's lock. Throws std::system_error if the registry
  /// cannot be opened.
  static void reset();
  /// Names id in reports (first name wins, across processes; at most 59 bytes kept). Blocks for
  /// the registry's lock; does nothing while disabled. Throws like reset().
  static void describe(std::uint32_t id, std::string_view name);
  /// How errors name the registry ("... lock-order.shm (key=...)", or "private" when the runtime
  /// directory could not hold it and this process and its children share an anonymous one).
  /// Opens it if needed; throws like reset().
  [[nodiscard]] static std::string registry();

  // Hooks for lock kinds (robust_mutex calls them; other locks may too). id 0 is ignored.
  /// Before a blocking acquisition of id: checks and learns the order; may call the handler.
  static void before_lock(std::uint32_t id);
  /// After id was acquired by this thread.
  static void acquired(std::uint32_t id) noexcept;
  /// After id was released by this thread. Inline: until the checker has recorded a hold in
  /// this process, one relaxed load (a hold recorded before disable() is still forgotten).
  static void released(std::uint32_t id) noexcept {
    if (id != 0 && recorded_.load(std::memory_order_relaxed)) forget(id);
  }

 private:
  static void forget(std::uint32_t id) noexcept;
  static std::atomic<bool> enabled_;   // IPC_LOCK_ORDER_CHECK, else on unless NDEBUG
  static std::atomic<bool> recorded_;  // acquired() has recorded a hold in this process
};

}  // namespace ipc
