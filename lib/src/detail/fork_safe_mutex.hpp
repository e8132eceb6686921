// A mutex for the library's process-wide state that a fork child never inherits held by a thread
// it does not have, even when the forking thread itself holds it across fork() (which rules out
// the usual pthread_atfork "lock in prepare" recipe, e.g. process::fork's fork_mutex).
//
// The holder's pthread_t is recorded; in the child, a mutex held by any thread other than the
// forking one is re-initialised unlocked (that thread does not exist there), while one held by
// the forking thread stays held for it to release. Only for objects that are never destroyed
// (`static auto* m = new fork_safe_mutex;`): the atfork handler keeps a pointer to each.
#pragma once

#include <ipc/config.hpp>

#include <pthread.h>

#include <atomic>

namespace ipc::detail {

class fork_safe_mutex {
 public:
  /// Registers the mutex with the child-side atfork handler. Aborts past 32 instances. Create
  /// it while the library loads (a namespace-scope initialiser), never lazily from a thread.
  fork_safe_mutex() noexcept;
  fork_safe_mutex(const fork_safe_mutex&) = delete;
  fork_safe_mutex& operator=(const fork_safe_mutex&) = delete;

  /// Blocks until held.
  void lock() noexcept;
  /// Never blocks; true when acquired.
  bool try_lock() noexcept;
  /// Never blocks.
  void unlock() noexcept;

 private:
  friend void after_fork_in_child() noexcept;
  pthread_mutex_t m_ = PTHREAD_MUTEX_INITIALIZER;
  std::atomic<pthread_t> owner_{0};
};

}  // namespace ipc::detail
