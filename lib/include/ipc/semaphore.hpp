// System V semaphore sets: race-free creation, undo chosen per operation, timed waits.
//
//   ipc::semaphore_set s("jobs", ipc::open_mode::open_or_create, {4, 1});  // 2 semaphores: 4 and 1
//   s.wait(0);                                   // blocks; a count: the kernel never gives it back
//   s.wait(1, 1, ipc::semaphore_set::undo::yes); // a lock: given back by the kernel if we die holding it
//   s.post(1, 1, ipc::semaphore_set::undo::yes); // ... and released the same way
//   if (!s.wait_for(1, 100ms)) { /* timeout */ }
//   s.apply({{0, -1}, {1, +1}}, ipc::deadline::in(1s));  // several operations, all or nothing
//   { ipc::semaphore_set::guard g(s, 1); /* critical section */ }
//   s.remove();                                  // destroys the set and its key file
//
// The key comes from runtime_dir()/NAME.sem (project id 'S'), so `ipcs -s` lists the set and
// ftok(path, 'S') finds it from any language. The creator initialises the set (SETALL) and then
// performs one semop, which makes sem_otime non-zero; openers wait (bounded, 2 s) for that, so
// nobody ever sees an uninitialised set.
//
// Undo is chosen per operation. The default is no undo, because semaphores most often count
// (empty/full slots): with SEM_UNDO the kernel would reverse a producer's posts when it exits and
// its last records would vanish. A semaphore used as a lock wants undo on both its wait and its
// post (guard does that), so a holder's death gives the unit back.
//
// SEM_UNDO caveats: the kernel keeps one adjustment (semadj) per process and semaphore and applies
// it when the process exits (not when the handle is destroyed); a semadj saturates at ±32767 and
// a further undoable operation fails with ERANGE, so a process that only ever posts (or only waits)
// with SEM_UNDO must opt out (op::undo = false); adjustments are not inherited across fork; SETVAL
// (set_value) clears every process's adjustment for that semaphore.
#pragma once

#include <ipc/config.hpp>
#include <ipc/deadline.hpp>
#include <ipc/uri.hpp>

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ipc {

class IPC_API semaphore_set {
 public:
  /// Whether the kernel reverses an operation when the process that made it exits (SEM_UNDO).
  /// no: counting use (the default); yes: lock use, on both the wait and the matching post.
  enum class undo : bool { no = false, yes = true };

  /// One operation of an atomic group: delta > 0 posts, delta < 0 waits, delta == 0 waits for zero.
  struct op {
    unsigned short index = 0;
    short delta = 0;
    bool undo = false;  ///< SEM_UNDO: the kernel reverses this operation when the process exits
  };

  /// The largest value a semaphore can hold (SEMVMX).
  static constexpr unsigned short max_value = 32767;

  /// Named set of initial_values.size() semaphores. Throws std::system_error naming semget and the key file,
  /// errc::not_owner for a foreign set, errc::incompatible for another semaphore count or a set never initialised.
  semaphore_set(std::string_view name, open_mode mode, std::vector<unsigned short> initial_values,
                mode_t perms = 0600);
  /// Set with an explicit key; `label` names it in errors. Throws as above.
  semaphore_set(key_t key, std::string label, open_mode mode, std::vector<unsigned short> initial_values,
                mode_t perms = 0600);
  semaphore_set(semaphore_set&& other) noexcept;
  semaphore_set& operator=(semaphore_set&& other) noexcept;
  semaphore_set(const semaphore_set&) = delete;
  semaphore_set& operator=(const semaphore_set&) = delete;
  ~semaphore_set();  ///< detaches nothing (a set has no attachment); never removes

  /// Blocks until semaphore i can be decreased by n (undo::yes: the kernel adds n back when this
  /// process exits). Throws errc::closed if the set is removed, ERANGE when an undo adjustment
  /// would pass ±32767.
  void wait(unsigned short i, short n = 1, undo u = undo::no);
  /// Never blocks; false when the value is too low. Throws as wait().
  bool try_wait(unsigned short i, short n = 1, undo u = undo::no);
  /// Blocks at most timeout; false on timeout. Throws as wait().
  bool wait_for(unsigned short i, std::chrono::nanoseconds timeout, short n = 1, undo u = undo::no);
  /// Blocks until d; false on timeout. Throws as wait().
  bool wait_until(unsigned short i, const deadline& d, short n = 1, undo u = undo::no);
  /// Never blocks; increases semaphore i by n (undo::yes: the kernel takes n back when this process
  /// exits — pair it with an undo::yes wait). Throws errc::closed if removed, ERANGE past max_value.
  void post(unsigned short i, short n = 1, undo u = undo::no);
  /// Applies every op atomically (all or none), blocking until d; false on timeout (nothing applied).
  /// Throws errc::closed if the set is removed, std::system_error (EINVAL) for an index out of range.
  bool apply(std::span<const op> ops, const deadline& d = deadline::never());
  bool apply(std::initializer_list<op> ops, const deadline& d = deadline::never()) {
    return apply(std::span<const op>(ops.begin(), ops.size()), d);
  }

  /// Current value (GETVAL). Never blocks. Throws errc::closed if removed.
  [[nodiscard]] int value(unsigned short i) const;
  /// Every value at once (GETALL), one consistent snapshot. Throws errc::closed if removed.
  [[nodiscard]] std::vector<unsigned short> values() const;
  /// Processes blocked waiting for semaphore i to increase (GETNCNT).
  [[nodiscard]] int waiters(unsigned short i) const;
  /// Processes blocked waiting for semaphore i to become zero (GETZCNT).
  [[nodiscard]] int zero_waiters(unsigned short i) const;
  /// Pid of the last process that operated on semaphore i (GETPID).
  [[nodiscard]] pid_t last_pid(unsigned short i) const;
  /// Sets semaphore i (SETVAL; clears every process's undo adjustment for it). Throws ERANGE past max_value.
  void set_value(unsigned short i, unsigned short v);

  [[nodiscard]] int id() const noexcept { return id_; }
  [[nodiscard]] key_t key() const noexcept { return key_; }
  [[nodiscard]] std::size_t size() const noexcept { return nsems_; }
  /// True when this handle created (and initialised) the set.
  [[nodiscard]] bool created() const noexcept { return created_; }
  /// How errors name the set, e.g. "/run/ipc/jobs.sem (key=0x53012345)".
  [[nodiscard]] const std::string& object() const noexcept { return object_; }

  /// Destroys the set (IPC_RMID): blocked waiters get errc::closed. Unlinks the key file of a named set.
  void remove();
  /// Removes the named set and its key file; false if there was none. Throws std::system_error.
  static bool remove(std::string_view name);

  /// A semaphore used as a lock: waits on construction and posts on destruction, both with undo,
  /// so a holder killed inside gives the unit back.
  class IPC_API guard {
   public:
    /// Blocks until semaphore i of s is taken. Throws as wait().
    guard(semaphore_set& s, unsigned short i);
    guard(const guard&) = delete;
    guard& operator=(const guard&) = delete;
    ~guard();  ///< posts; errors (set removed) are swallowed

   private:
    semaphore_set& set_;
    unsigned short index_;
  };

 private:
  void open(open_mode mode, const std::vector<unsigned short>& initial_values, mode_t perms);
  void check_values(const std::vector<unsigned short>& initial_values) const;
  void check_index(unsigned short i, const char* call) const;
  [[noreturn]] void fail(int err, const char* call) const;

  int id_ = -1;
  key_t key_ = 0;
  std::size_t nsems_ = 0;
  bool created_ = false;
  std::string key_file_;  // empty for explicit keys
  std::string object_;
};

}  // namespace ipc
