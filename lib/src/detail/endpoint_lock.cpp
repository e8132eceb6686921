#include "detail/endpoint_lock.hpp"

#include <ipc/error.hpp>

#include "detail/deadline_signal.hpp"
#include "detail/futex.hpp"

#include <linux/futex.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstddef>
#include <mutex>
#include <new>
#include <vector>

namespace ipc::detail {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(int));

const std::atomic<std::uint32_t>& lock_word(const endpoint_lock& l) noexcept {
  // glibc's pthread_mutex_t begins with `int __lock`, the futex word of a robust mutex.
  return *reinterpret_cast<const std::atomic<std::uint32_t>*>(&l.mutex);
}

bool lock_held(const endpoint_lock& l) noexcept {
  return (lock_word(l).load(std::memory_order_acquire) & FUTEX_TID_MASK) != 0;
}

void take_lock(endpoint_lock& l, std::string_view object) {
  pthread_mutexattr_t a;
  ::pthread_mutexattr_init(&a);
  ::pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  ::pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  int err = ::pthread_mutex_init(&l.mutex, &a);
  ::pthread_mutexattr_destroy(&a);
  if (err != 0) throw_errno(err, "pthread_mutex_init", object, "endpoint lock");
  err = ::pthread_mutex_trylock(&l.mutex);  // just initialised: free, so this never waits
  if (err != 0) throw_errno(err, "pthread_mutex_lock", object, "endpoint lock");
}

bool release_lock(endpoint_lock& l) noexcept {
  // Asked of the word, not of glibc's EPERM: an unlock by a non-owner is a bug report under TSan.
  const auto tid = static_cast<std::uint32_t>(::gettid());
  if ((lock_word(l).load(std::memory_order_acquire) & FUTEX_TID_MASK) != tid) return false;
  return ::pthread_mutex_unlock(&l.mutex) == 0;
}

bool retake_if_orphaned(endpoint_lock& l) noexcept {
  if (lock_held(l)) return false;
  const int err = ::pthread_mutex_trylock(&l.mutex);
  if (err == EOWNERDEAD) {
    ::pthread_mutex_consistent(&l.mutex);  // nothing to repair: the lock guards no data
    return true;
  }
  return err == 0;
}

void park_until_exit(std::shared_ptr<void> mapping) noexcept {
  static std::mutex m;
  static auto* parked = new std::vector<std::shared_ptr<void>>;  // never destroyed: reachable, not leaked
  try {
    std::lock_guard g(m);
    parked->push_back(std::move(mapping));
  } catch (...) {
    new (std::nothrow) std::shared_ptr<void>(std::move(mapping));  // NOLINT: kept by leaking on purpose
  }
}

death_wait wait_data_or_death(const std::atomic<std::uint32_t>& data, std::uint32_t seen,
                              std::span<const endpoint_lock* const> peers, const deadline& until,
                              std::string_view object, unsigned& unheld_streak) {
  constexpr std::size_t max_peers = 120;
  if (peers.size() > max_peers) throw_errno(EINVAL, "futex_waitv", object, "too many endpoints to watch");
  futex_watch w[max_peers + 2];
  std::size_t n = 0;
  w[n++] = {&data, seen};
  const auto& interrupt = interrupt_word();
  w[n++] = {&interrupt, interrupt.load(std::memory_order_relaxed)};
  const bool interruptible = !until.is_never();
  if (interruptible && take_interrupt()) return death_wait::interrupted;
  bool sliced = false;
  for (const endpoint_lock* p : peers) {
    auto& word = const_cast<std::atomic<std::uint32_t>&>(lock_word(*p));
    std::uint32_t v = word.load(std::memory_order_acquire);
    if ((v & FUTEX_TID_MASK) == 0) {
      sliced = true;  // nobody holds it: its owner's end would wake nobody, so look again soon
      continue;
    }
    // Ask the owner's unlock (glibc) or the kernel (owner died) for a wake: FUTEX_WAITERS.
    if ((v & FUTEX_WAITERS) == 0 && !word.compare_exchange_strong(v, v | FUTEX_WAITERS, std::memory_order_acq_rel)) {
      return death_wait::peer_changed;  // it changed under us: the caller looks at the peer again
    }
    w[n++] = {&word, v | FUTEX_WAITERS};
  }
  deadline limit = until;
  if (sliced) {
    // A killed process is often still exiting when its lock wakes us (it still looks alive): look
    // again after 1 ms, then back off to the slice that bounds a thread-exit's cost.
    const auto slice = std::min<std::chrono::milliseconds>(
        wait_slice, std::chrono::milliseconds(std::int64_t{1} << std::min(unheld_streak, 7U)));
    ++unheld_streak;
    limit = deadline::at(std::min(until.time_point(), deadline::clock::now() + slice));
  } else {
    unheld_streak = 0;
  }
  const int r = futex_wait_any({w, n}, limit, object);
  if (interruptible && take_interrupt()) return death_wait::interrupted;
  if (r >= 2 && static_cast<std::size_t>(r) < n) {
    // The kernel wakes one waiter per death (glibc's unlock too): pass it on to the others.
    futex_wake(*w[r].word, INT_MAX, object);
    return death_wait::peer_changed;
  }
  if (r < 0) return until.expired() ? death_wait::timeout : death_wait::peer_changed;
  return death_wait::woken;
}

}  // namespace ipc::detail
