// Named synchronisation objects for unrelated processes, all robust to a holder's death
// (Python's multiprocessing Lock, Condition, Semaphore, Event, Barrier and a Manager-like shared
// object, by name instead of by inheritance).
//
//   ipc::named_mutex m("jobs");                          // open_or_create, mode 0600
//   { std::unique_lock lk(m); /* critical section */ }   // a holder killed inside: next locker
//   if (m.previous_owner_died()) repair();               // is told (owner_died) and goes on
//
//   ipc::named_condition ready("jobs");
//   std::unique_lock lk(m);
//   ready.wait_for(lk, 1s, [&] { return job_ready(); });  // notify_one / notify_all elsewhere
//
//   ipc::named_semaphore slots("slots", ipc::open_mode::open_or_create, 4);  // counting
//   ipc::event go("go");          go.set();  go.wait_for(2s);  go.clear();
//   ipc::barrier start("start", 3);  start.wait();       // errc::closed once a party died
//
//   struct stats { std::int64_t hits; double mean; };
//   ipc::shared_object<stats> s("stats", ipc::open_mode::open_or_create, stats{0, 0.0});
//   s.update([](stats& v) { ++v.hits; });                 // under the object's robust lock
//
// Each object is a POSIX segment /dev/shm/libipc.NAME.KIND (KIND: mutex, cond, event, barrier,
// object) built on ipc::layout_segment, so it is created 0600 unless asked, its owner and mode are
// checked on attach (errc::not_owner) and its header (kind, layout version, sizes, type) on every
// open (errc::incompatible). named_semaphore is a one-semaphore ipc::semaphore_set (NAME.sem).
// A destructor detaches; remove() destroys. See docs/sync.md.
#pragma once

#include <ipc/config.hpp>
#include <ipc/deadline.hpp>
#include <ipc/error.hpp>
#include <ipc/semaphore.hpp>
#include <ipc/shared_memory.hpp>
#include <ipc/sync.hpp>
#include <ipc/uri.hpp>

#include <sys/types.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <utility>

namespace ipc {

/// How a named object is created and ordered.
struct named_options {
  mode_t perms = 0600;  ///< of a newly created object (world-writable modes are refused)
  /// The id of the object's robust_mutex for lock_in_order and the lock-order checker, fixed by
  /// the creator. 0: derived from the kind and the name (the same in every process).
  std::uint32_t lock_id = 0;
  segment_backing backing = segment_backing::posix;  ///< /dev/shm/libipc.NAME.KIND or System V
};

namespace detail {

/// FNV-1a of a type's mangled name (defined with shared_value).
IPC_API std::uint64_t type_tag_of(const char* mangled_name) noexcept;

/// The untyped core of every named object: a layout_segment NAME.KIND whose header holds a
/// robust_mutex (the object's lock) and whose payload is one object of a fixed size and type.
class IPC_API named_segment {
 public:
  struct object_info {
    const char* kind;       ///< "mutex", "cond", ...: the segment's suffix and its part of the magic
    std::size_t size;       ///< of the object (0 for none)
    std::size_t align;      ///< at most 64
    std::uint64_t type_tag; ///< checked on open
  };
  /// Constructs the object in place (creator only, before any opener can see it).
  using construct_fn = std::function<void(void* object)>;

  /// Creates (construct, then publish) or opens (wait up to 2 s for publication, validate) the
  /// segment. Throws errc::incompatible (another kind, size, type or layout version),
  /// errc::not_owner, std::system_error (ENOENT for open_only of a missing name, EEXIST for
  /// create_only of an existing one; EINVAL for a bad name).
  named_segment(std::string_view name, open_mode mode, const object_info& info, const construct_fn& construct,
                const named_options& options);

  [[nodiscard]] void* object() const noexcept { return segment_.payload(); }
  [[nodiscard]] robust_mutex& lock() const noexcept { return *lock_; }
  [[nodiscard]] bool created() const noexcept { return segment_.created(); }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  /// How errors name it, e.g. "/dev/shm/libipc.jobs.mutex".
  [[nodiscard]] const std::string& object_name() const noexcept { return segment_.object(); }
  /// Destroys the named segment; this mapping stays valid while the handle lives. Throws.
  void remove() { segment_.remove(); }
  /// Removes NAME.KIND; false if there was none. Throws errc::not_owner, std::system_error.
  static bool remove(std::string_view kind, std::string_view name, segment_backing backing);

 private:
  layout_segment segment_;
  robust_mutex* lock_ = nullptr;
  std::string name_;
};

}  // namespace detail

/// A robust mutex by name: BasicLockable/TimedLockable, so std::unique_lock, std::scoped_lock and
/// lock_in_order (through native()) work. A holder that dies hands it on with owner_died.
class IPC_API named_mutex {
 public:
  /// Throws as detail::named_segment (errc::incompatible, errc::not_owner, std::system_error).
  explicit named_mutex(std::string_view name, open_mode mode = open_mode::open_or_create,
                       const named_options& options = {});

  /// Blocks until held; owner_died when the previous holder died holding it. Throws EDEADLK when
  /// this thread holds it already (or the lock-order checker's handler's exception).
  lock_result lock() { return seg_.lock().lock(); }
  /// Never blocks; true when acquired.
  bool try_lock() { return seg_.lock().try_lock(); }
  /// Blocks at most timeout; false on timeout.
  template <typename Rep, typename Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
    return seg_.lock().try_lock_for(timeout);
  }
  /// Blocks until d; false on timeout.
  bool try_lock_until(const deadline& d) { return seg_.lock().try_lock_until(d); }
  bool try_lock_until(std::chrono::steady_clock::time_point t) { return seg_.lock().try_lock_until(t); }
  /// Never blocks. Throws EPERM when this thread does not hold it.
  void unlock() { seg_.lock().unlock(); }
  /// For the holder: this hold began by recovering from a dead owner.
  [[nodiscard]] bool previous_owner_died() const noexcept { return seg_.lock().previous_owner_died(); }
  /// The robust_mutex in the segment (for lock_in_order, robust_condition).
  [[nodiscard]] robust_mutex& native() const noexcept { return seg_.lock(); }
  [[nodiscard]] std::uint32_t id() const noexcept { return seg_.lock().id(); }
  [[nodiscard]] bool created() const noexcept { return seg_.created(); }
  [[nodiscard]] const std::string& name() const noexcept { return seg_.name(); }
  [[nodiscard]] const std::string& object() const noexcept { return seg_.object_name(); }
  /// Destroys the named mutex (handles keep working on their mapping). Throws.
  void remove() { seg_.remove(); }
  /// Removes NAME's mutex; false if there was none. Throws.
  static bool remove(std::string_view name, segment_backing backing = segment_backing::posix);

 private:
  detail::named_segment seg_;
};

/// A condition variable by name, used with a named_mutex (any one; the same one by every waiter).
/// A waiter killed mid-wait leaves nothing behind. Spurious wake-ups are possible.
class IPC_API named_condition {
 public:
  using lock_type = std::unique_lock<named_mutex>;

  /// Throws as named_mutex's constructor.
  explicit named_condition(std::string_view name, open_mode mode = open_mode::open_or_create,
                           const named_options& options = {});

  /// Blocks until notified (or spuriously woken); lk must hold its mutex and holds it again on
  /// return. Returns owner_died if the relock found a dead owner. Throws EPERM when lk does not
  /// hold its mutex.
  lock_result wait(lock_type& lk);
  /// Blocks until pred() holds.
  template <typename Pred>
  lock_result wait(lock_type& lk, Pred pred) {
    lock_result r;
    while (!pred()) r.owner_died = wait(lk).owner_died || r.owner_died;
    return r;
  }
  /// Blocks until notified or d passes; cv_status::timeout on timeout. Relocks either way.
  std::cv_status wait_until(lock_type& lk, const deadline& d);
  /// Blocks until pred() holds or d passes; returns pred() (false: timed out).
  template <typename Pred>
  bool wait_until(lock_type& lk, const deadline& d, Pred pred) {
    while (!pred()) {
      if (wait_until(lk, d) == std::cv_status::timeout) return pred();
    }
    return true;
  }
  template <typename Rep, typename Period>
  std::cv_status wait_for(lock_type& lk, const std::chrono::duration<Rep, Period>& timeout) {
    return wait_until(lk, deadline::in(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout)));
  }
  template <typename Rep, typename Period, typename Pred>
  bool wait_for(lock_type& lk, const std::chrono::duration<Rep, Period>& timeout, Pred pred) {
    return wait_until(lk, deadline::in(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout)),
                      std::move(pred));
  }
  /// Wakes one waiter, if any. Never blocks, never throws.
  void notify_one() noexcept;
  /// Wakes every waiter. Never blocks, never throws.
  void notify_all() noexcept;

  [[nodiscard]] bool created() const noexcept { return seg_.created(); }
  [[nodiscard]] const std::string& object() const noexcept { return seg_.object_name(); }
  void remove() { seg_.remove(); }
  static bool remove(std::string_view name, segment_backing backing = segment_backing::posix);

 private:
  detail::named_segment seg_;
  robust_condition* cv_;
};

/// A counting semaphore by name: one System V semaphore (ipc::semaphore_set NAME.sem, so `ipcs -s`
/// shows it). The kernel keeps the count, so no holder's death can corrupt it; undo::yes on a
/// wait and its post makes it a lock whose unit comes back when the holder dies.
class IPC_API named_semaphore {
 public:
  using undo = semaphore_set::undo;

  /// initial: the value of a new semaphore (ignored on open). Throws as semaphore_set's constructor.
  explicit named_semaphore(std::string_view name, open_mode mode = open_mode::open_or_create,
                           unsigned short initial = 0, const named_options& options = {});

  /// Blocks until the count is positive, then takes one. Throws errc::closed when removed.
  void wait(undo u = undo::no) { set_.wait(0, 1, u); }
  /// Never blocks; false when the count is 0.
  bool try_wait(undo u = undo::no) { return set_.try_wait(0, 1, u); }
  /// Blocks at most timeout; false on timeout.
  bool wait_for(std::chrono::nanoseconds timeout, undo u = undo::no) { return set_.wait_for(0, timeout, 1, u); }
  /// Blocks until d; false on timeout.
  bool wait_until(const deadline& d, undo u = undo::no) { return set_.wait_until(0, d, 1, u); }
  /// Never blocks; adds n. Throws ERANGE past semaphore_set::max_value, errc::closed when removed.
  void post(short n = 1, undo u = undo::no) { set_.post(0, n, u); }
  /// The count now. Never blocks.
  [[nodiscard]] int value() const { return set_.value(0); }
  [[nodiscard]] bool created() const noexcept { return set_.created(); }
  [[nodiscard]] const std::string& object() const noexcept { return set_.object(); }
  [[nodiscard]] semaphore_set& native() noexcept { return set_; }
  void remove() { set_.remove(); }
  static bool remove(std::string_view name) { return semaphore_set::remove(name); }

 private:
  semaphore_set set_;
};

/// Python's Event by name: a flag that waiters block on until it is set (manual reset).
class IPC_API event {
 public:
  /// initially_set: the flag of a new event (ignored on open). Throws as named_mutex's constructor.
  explicit event(std::string_view name, open_mode mode = open_mode::open_or_create, bool initially_set = false,
                 const named_options& options = {});

  /// Sets the flag and wakes every waiter. Blocks only for the event's lock.
  void set();
  /// Clears the flag. Blocks only for the event's lock.
  void clear();
  /// The flag now. Blocks only for the event's lock.
  [[nodiscard]] bool is_set() const;
  /// Blocks until the flag is set.
  void wait();
  /// Blocks until the flag is set or d passes; false on timeout.
  bool wait_until(const deadline& d);
  /// Blocks at most timeout; false on timeout.
  bool wait_for(std::chrono::nanoseconds timeout) { return wait_until(deadline::in(timeout)); }

  [[nodiscard]] bool created() const noexcept { return seg_.created(); }
  [[nodiscard]] const std::string& object() const noexcept { return seg_.object_name(); }
  void remove() { seg_.remove(); }
  static bool remove(std::string_view name, segment_backing backing = segment_backing::posix);

 private:
  struct state;
  detail::named_segment seg_;
  state* s_;
};

/// Python's Barrier by name: `parties` waiters block until the last arrives. Every process that
/// opens it is registered (pid + start time); when a registered process dies without closing its
/// handle, or dies holding the barrier's lock, the barrier is broken: every wait, present and
/// future, throws errc::closed naming the dead pid, until reset().
class IPC_API barrier {
 public:
  /// The most processes that may hold a handle at once.
  static constexpr std::size_t max_processes = 64;

  /// parties: of a new barrier (>= 1); on open, 0 accepts the existing count, another value must
  /// match (errc::incompatible). Throws as named_mutex's constructor, EUSERS when max_processes
  /// processes hold handles already.
  barrier(std::string_view name, std::size_t parties, open_mode mode = open_mode::open_or_create,
          const named_options& options = {});
  barrier(const barrier&) = delete;
  barrier& operator=(const barrier&) = delete;
  /// Unregisters this handle (a process that closed its handle is not a dead party). noexcept.
  ~barrier();

  /// Blocks until `parties` waiters have arrived; returns this waiter's arrival index
  /// (0 .. parties-1; parties-1 is the last to arrive). Throws errc::closed when broken.
  std::size_t wait();
  /// As wait(), giving up at d: nullopt on timeout, and this waiter withdraws (the barrier is
  /// not broken).
  std::optional<std::size_t> wait_until(const deadline& d);
  std::optional<std::size_t> wait_for(std::chrono::nanoseconds timeout) { return wait_until(deadline::in(timeout)); }
  /// Breaks the barrier on purpose: every waiter throws errc::closed.
  void abort();
  /// Mends a broken barrier for reuse (no waiter may be inside). Blocks only for its lock.
  void reset();
  [[nodiscard]] bool broken() const;
  [[nodiscard]] std::size_t parties() const noexcept { return parties_; }
  /// Waiters blocked right now.
  [[nodiscard]] std::size_t waiting() const;
  [[nodiscard]] bool created() const noexcept { return seg_.created(); }
  [[nodiscard]] const std::string& object() const noexcept { return seg_.object_name(); }
  void remove() { seg_.remove(); }
  static bool remove(std::string_view name, segment_backing backing = segment_backing::posix);

 private:
  struct state;
  // Under the lock: marks the barrier broken if a registered process died; throws when broken.
  void check_parties_locked(bool owner_died);
  detail::named_segment seg_;
  state* s_;
  std::size_t parties_;
};

/// One T constructed once in the named segment NAME.object; every opener gets that same object
/// (Python's Manager().Namespace for one value, without a server process). T lives in shared
/// memory: it must not hold pointers or references to memory of one process (no std::string,
/// std::vector, virtual functions); robust_mutex / robust_condition members are fine. Its
/// destructor never runs (the object outlives processes); remove() destroys the segment.
template <typename T>
class shared_object {
  static_assert(!std::is_polymorphic_v<T>, "a vtable pointer is only valid in one process");
  static_assert(alignof(T) <= 64, "objects are aligned to at most 64 bytes");

 public:
  /// Opens NAME, or creates it constructing T(args...) in place (args ignored on open; the
  /// constructor runs before any opener sees the object and must finish within 2 s). Throws
  /// errc::incompatible (another type, size or kind), errc::not_owner, std::system_error.
  /// A T that cannot be built from args (e.g. none given to open an existing object) throws
  /// EINVAL if this call would create it.
  template <typename... Args>
    requires(!(std::is_same_v<std::remove_cvref_t<Args>, named_options> || ...))
  explicit shared_object(std::string_view name, open_mode mode, Args&&... args)
      : shared_object(with_options{}, name, mode, named_options{}, std::forward<Args>(args)...) {}
  /// As above with options (mode, lock id, backing).
  template <typename... Args>
  shared_object(std::string_view name, open_mode mode, const named_options& options, Args&&... args)
      : shared_object(with_options{}, name, mode, options, std::forward<Args>(args)...) {}

  /// The object; unsynchronised (hold get_lock() around read-modify-write).
  [[nodiscard]] T* get() const noexcept { return std::launder(static_cast<T*>(seg_.object())); }
  [[nodiscard]] T* operator->() const noexcept { return get(); }
  [[nodiscard]] T& operator*() const noexcept { return *get(); }
  /// The object's robust lock (a holder's death is reported by previous_owner_died()).
  [[nodiscard]] robust_mutex& get_lock() const noexcept { return seg_.lock(); }
  /// Calls f(T&) holding the lock (blocks for it); returns f's result.
  template <typename F>
  decltype(auto) update(F&& f) const {
    std::unique_lock lk(seg_.lock());
    return std::forward<F>(f)(*get());
  }
  /// A copy taken under the lock (T copyable).
  [[nodiscard]] T load() const {
    std::unique_lock lk(seg_.lock());
    return *get();
  }
  [[nodiscard]] bool created() const noexcept { return seg_.created(); }
  [[nodiscard]] const std::string& object() const noexcept { return seg_.object_name(); }
  void remove() { seg_.remove(); }
  static bool remove(std::string_view name, segment_backing backing = segment_backing::posix) {
    return detail::named_segment::remove("object", name, backing);
  }

 private:
  struct with_options {};
  template <typename... Args>
  shared_object(with_options, std::string_view name, open_mode mode, const named_options& options, Args&&... args)
      : seg_(name, mode, {"object", sizeof(T), alignof(T), detail::type_tag_of(typeid(T).name())},
             [&](void* at) {
               if constexpr (std::is_constructible_v<T, Args&&...>) {
                 ::new (at) T(std::forward<Args>(args)...);
               } else {
                 ipc::throw_errno(EINVAL, "shared_object(create)",
                                     std::string(name) + ": T cannot be constructed from the arguments given");
               }
             },
             options) {}

  detail::named_segment seg_;
};

}  // namespace ipc
