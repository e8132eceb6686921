#include <ipc/sync.hpp>

#include "detail/futex.hpp"

#include <ipc/error.hpp>

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>

namespace ipc {

namespace {

std::string mutex_name(std::uint32_t id) { return "robust_mutex#" + std::to_string(id); }

// Sets one pthread attribute, throwing with the call's name if it fails.
void check_attr(int rc, const char* call, std::uint32_t id) {
  if (rc != 0) ipc::throw_errno(rc, call, mutex_name(id));
}

}  // namespace

// ---- robust_mutex ----------------------------------------------------------------------------

robust_mutex::robust_mutex(std::uint32_t id) : mutex_{}, id_(id) {
  pthread_mutexattr_t attr;
  check_attr(::pthread_mutexattr_init(&attr), "pthread_mutexattr_init", id);
  struct attr_guard {
    pthread_mutexattr_t* a;
    ~attr_guard() { ::pthread_mutexattr_destroy(a); }
  } guard{&attr};
  check_attr(::pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED), "pthread_mutexattr_setpshared", id);
  check_attr(::pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST), "pthread_mutexattr_setrobust", id);
  check_attr(::pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK), "pthread_mutexattr_settype", id);
  check_attr(::pthread_mutex_init(&mutex_, &attr), "pthread_mutex_init", id);
}

robust_mutex* robust_mutex::create_at(void* mem, std::uint32_t id) { return new (mem) robust_mutex(id); }

robust_mutex::~robust_mutex() { ::pthread_mutex_destroy(&mutex_); }

bool robust_mutex::finish_lock(int rc, const char* call) {
  switch (rc) {
    case 0:
      recovered_ = 0;
      return true;
    case EOWNERDEAD:
      // We hold the lock now. Make it consistent at once so that no path (an exception below,
      // our own death before unlock) can leave it ENOTRECOVERABLE for everyone else.
      if (int c = ::pthread_mutex_consistent(&mutex_); c != 0) {
        ::pthread_mutex_unlock(&mutex_);
        ipc::throw_errno(c, "pthread_mutex_consistent", mutex_name(id_));
      }
      owner_deaths_.fetch_add(1, std::memory_order_relaxed);
      recovered_ = 1;
      return true;
    case EBUSY:
    case ETIMEDOUT:
      return false;
    case ENOTRECOVERABLE:
      throw_error(errc::corrupt, call, mutex_name(id_),
                  "mutex is unrecoverable (a holder unlocked it after an owner death without "
                  "pthread_mutex_consistent)");
    default:
      ipc::throw_errno(rc, call, mutex_name(id_));
  }
}

// Why every blocking acquisition sleeps in slices of at most wait_slice (docs/sync.md, "No
// stranded waiter"): glibc's robust mutex keeps "someone may be asleep" as one FUTEX_WAITERS bit in
// the lock word and wakes ONE sleeper per unlock; the kernel wakes ONE sleeper when a holder dies.
// The woken process carries the baton for all the others: if it is SIGKILLed before it has the
// lock, nobody is left to wake them. The kernel rescues one shape of that (the woken waiter dies
// while the word is 0: its robust list's pending entry makes the exit path wake the next one),
// but not the others: a barging locker took the word meanwhile with a plain CAS, which drops
// FUTEX_WAITERS, so its unlock wakes nobody; or the kernel woke the successor of a dead holder and
// that successor died too, leaving OWNER_DIED in the word with everyone asleep. A sleeper cannot
// see those changes, so it must look: each slice that times out re-runs the whole acquisition,
// which takes a free word at once and an OWNER_DIED word with EOWNERDEAD. That bounds any
// stranding by one slice, costs a waiter behind a live holder 1 / wait_slice wake-ups a second,
// and leaves the uncontended path as it was: one pthread_mutex_trylock, a CAS, no system call.
// The lock-order checker is consulted once per acquisition: disabled, that is one relaxed load.
lock_result robust_mutex::lock() {
  const bool check = id_ != 0 && lock_order_checker::enabled();
  if (check) lock_order_checker::before_lock(id_);
  acquire(deadline::never());
  if (check) lock_order_checker::acquired(id_);
  return {recovered_ != 0};
}

namespace {

// GCC 12's ThreadSanitizer intercepts pthread_mutex_lock/trylock/timedlock but not clocklock: it
// is told of the acquisition here, else it would take every contended lock for a missing one and
// report the unlock and the data it guards (docs/testing.md, "ThreadSanitizer").
int clocklock_monotonic(pthread_mutex_t* m, const timespec* ts) {
#if defined(__SANITIZE_THREAD__)
  __tsan_mutex_pre_lock(m, __tsan_mutex_try_lock);
  const int rc = ::pthread_mutex_clocklock(m, CLOCK_MONOTONIC, ts);
  const bool held = rc == 0 || rc == EOWNERDEAD;
  __tsan_mutex_post_lock(m, __tsan_mutex_try_lock | (held ? 0u : __tsan_mutex_try_lock_failed), 0);
  return rc;
#else
  return ::pthread_mutex_clocklock(m, CLOCK_MONOTONIC, ts);
#endif
}

}  // namespace

bool robust_mutex::acquire(const deadline& d) {
  int rc = ::pthread_mutex_trylock(&mutex_);
  if (rc != EBUSY) return finish_lock(rc, "pthread_mutex_trylock");
  for (;;) {
    auto slice_end = deadline::clock::now() + detail::wait_slice;
    if (!d.is_never()) slice_end = std::min(slice_end, d.time_point());
    const timespec ts = deadline::at(slice_end).monotonic_timespec();
    rc = clocklock_monotonic(&mutex_, &ts);
    if (rc != ETIMEDOUT) return finish_lock(rc, "pthread_mutex_clocklock");
    if (d.expired()) return false;
  }
}

bool robust_mutex::try_lock() {
  const bool check = id_ != 0 && lock_order_checker::enabled();
  bool ok = finish_lock(::pthread_mutex_trylock(&mutex_), "pthread_mutex_trylock");
  if (ok && check) lock_order_checker::acquired(id_);
  return ok;
}

bool robust_mutex::try_lock_until(const deadline& d) {
  if (d.is_never()) {
    lock();
    return true;
  }
  if (d.expired()) return try_lock();
  const bool check = id_ != 0 && lock_order_checker::enabled();
  if (check) lock_order_checker::before_lock(id_);
  bool ok = acquire(d);
  if (ok && check) lock_order_checker::acquired(id_);
  return ok;
}

void robust_mutex::unlock() {
  if (int rc = ::pthread_mutex_unlock(&mutex_); rc != 0) ipc::throw_errno(rc, "pthread_mutex_unlock", mutex_name(id_));
  lock_order_checker::released(id_);
}

bool robust_mutex::owner_death_pending() const noexcept {
  // glibc's lock word (the futex) is __data.__lock; the kernel sets FUTEX_OWNER_DIED in it when the
  // holder dies, and the next locker's EOWNERDEAD acquisition clears it.
  const auto word = static_cast<std::uint32_t>(__atomic_load_n(&mutex_.__data.__lock, __ATOMIC_RELAXED));
  return (word & FUTEX_OWNER_DIED) != 0;
}

// ---- robust_condition ------------------------------------------------------------------------
//
// A notify_one is a token (tokens_, at most one per registered waiter) plus a FUTEX_WAKE of one
// sleeper; a waiter returns only by taking a token (with the mutex held again), by seeing
// notify_all's generation change, by its deadline, or (spuriously) when its mutex's holder died.
// The token is what makes a notify survive the death of the process it woke: until a live waiter
// takes it under the mutex, it stays, and every sleeper looks for one at least once a wait_slice.
// A notify_one that finds an older token still untaken wakes every sleeper at once instead of one,
// so a lost baton is passed on at the next notify without waiting for a slice. Waiters also return when the mutex shows an owner death:
// a notifier killed holding the mutex may have died before its notify, and the relock's owner_died
// is the caller's signal to repair and notify_all.

robust_condition* robust_condition::create_at(void* mem) noexcept { return new (mem) robust_condition(); }

lock_result robust_condition::wait(lock_type& lk) {
  wait_until(lk, deadline::never());
  return {lk.mutex()->previous_owner_died()};
}

bool robust_condition::take_token() noexcept {
  std::uint32_t t = tokens_.load(std::memory_order_seq_cst);
  while (t != 0) {
    if (tokens_.compare_exchange_weak(t, t - 1, std::memory_order_seq_cst)) return true;
  }
  return false;
}

void robust_condition::leave() noexcept {
  const std::uint32_t left = waiters_.fetch_sub(1, std::memory_order_seq_cst) - 1;
  // A waiter leaving by timeout (or a broadcast) may leave tokens nobody is there to take: drop
  // those beyond the waiters that remain, so a later waiter is not woken by an old notify.
  std::uint32_t t = tokens_.load(std::memory_order_seq_cst);
  while (t > left && !tokens_.compare_exchange_weak(t, t - 1, std::memory_order_seq_cst)) {
  }
}

std::cv_status robust_condition::wait_until(lock_type& lk, const deadline& d) {
  if (lk.mutex() == nullptr || !lk.owns_lock()) {
    ipc::throw_errno(EPERM, "robust_condition::wait", "the lock does not hold its mutex");
  }
  const robust_mutex& m = *lk.mutex();
  // Registered under the mutex, so a notifier that holds it counts us. The sequence is sampled
  // before each look for a token or a broadcast: a notify after the look bumps it, so the futex
  // either sees the new value (returns at once) or is woken.
  waiters_.fetch_add(1, std::memory_order_seq_cst);
  const std::uint32_t generation = broadcasts_.load(std::memory_order_seq_cst);
  lk.unlock();
  std::cv_status result = std::cv_status::timeout;
  try {
    for (;;) {
      const std::uint32_t seen = seq_.load(std::memory_order_seq_cst);
      if (broadcasts_.load(std::memory_order_seq_cst) != generation) {
        lk.lock();
        result = std::cv_status::no_timeout;
        break;
      }
      if (tokens_.load(std::memory_order_seq_cst) != 0) {
        // A token is taken only while holding the mutex: if we die after taking it, we die holding
        // the mutex, and the owner death makes every waiter look again. Dying before the relock
        // leaves the token for the others.
        lk.lock();
        if (take_token() || m.previous_owner_died()) {
          result = std::cv_status::no_timeout;
          break;
        }
        lk.unlock();  // another waiter took it first: not ours, sleep on
        continue;
      }
      if (d.expired()) {
        lk.lock();
        break;
      }
      if (m.owner_death_pending()) {
        lk.lock();  // reports owner_died; spurious by contract
        result = std::cv_status::no_timeout;
        break;
      }
      auto slice_end = deadline::clock::now() + detail::wait_slice;
      if (!d.is_never()) slice_end = std::min(slice_end, d.time_point());
      detail::futex_wait(seq_, seen, deadline::at(slice_end), "robust_condition");
    }
  } catch (...) {
    leave();
    if (!lk.owns_lock()) lk.lock();
    throw;
  }
  leave();
  return result;
}

void robust_condition::notify_one() noexcept {
  std::uint32_t w = waiters_.load(std::memory_order_seq_cst);
  std::uint32_t t = tokens_.load(std::memory_order_seq_cst);
  while (t < w && !tokens_.compare_exchange_weak(t, t + 1, std::memory_order_seq_cst)) {
    w = waiters_.load(std::memory_order_seq_cst);
  }
  seq_.fetch_add(1, std::memory_order_seq_cst);
  if (w != 0) detail::futex_wake(seq_, t != 0 ? INT_MAX : 1, "robust_condition");
}

void robust_condition::notify_all() noexcept {
  broadcasts_.fetch_add(1, std::memory_order_seq_cst);
  seq_.fetch_add(1, std::memory_order_seq_cst);
  if (waiters_.load(std::memory_order_seq_cst) != 0) detail::futex_wake(seq_, INT_MAX, "robust_condition");
}

// ---- lock_in_order ---------------------------------------------------------------------------

ordered_lock& ordered_lock::operator=(ordered_lock&& o) noexcept {
  if (this != &o) {
    unlock();
    held_ = std::exchange(o.held_, {});
  }
  return *this;
}

ordered_lock::~ordered_lock() { unlock(); }

std::vector<std::uint32_t> ordered_lock::ids() const {
  std::vector<std::uint32_t> out;
  out.reserve(held_.size());
  for (const auto& h : held_) out.push_back(h.first->id());
  return out;
}

bool ordered_lock::any_owner_died() const noexcept {
  return std::any_of(held_.begin(), held_.end(), [](const auto& h) { return h.second; });
}

bool ordered_lock::owner_died(const robust_mutex& m) const noexcept {
  return std::any_of(held_.begin(), held_.end(), [&](const auto& h) { return h.first == &m && h.second; });
}

void ordered_lock::unlock() noexcept {
  // We locked these ourselves, so unlock cannot fail with EPERM; swallow rather than terminate.
  for (auto it = held_.rbegin(); it != held_.rend(); ++it) {
    try {
      it->first->unlock();
    } catch (...) {
    }
  }
  held_.clear();
}

ordered_lock lock_in_order(std::span<robust_mutex* const> mutexes) {
  std::vector<robust_mutex*> sorted(mutexes.begin(), mutexes.end());
  for (std::size_t i = 0; i < sorted.size(); ++i) {
    if (sorted[i] == nullptr) ipc::throw_errno(EINVAL, "lock_in_order", "mutex #" + std::to_string(i) + " is null");
  }
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->id() < b->id(); });
  for (std::size_t i = 1; i < sorted.size(); ++i) {
    if (sorted[i]->id() == sorted[i - 1]->id()) {
      ipc::throw_errno(EINVAL, "lock_in_order",
                          "mutex id " + std::to_string(sorted[i]->id()) + " given twice (ids must be distinct)");
    }
  }
  ordered_lock out;
  out.held_.reserve(sorted.size());
  for (robust_mutex* m : sorted) {
    lock_result r = m->lock();  // on a throw, `out` unlocks what it holds, in reverse
    out.held_.emplace_back(m, r.owner_died);
  }
  return out;
}

}  // namespace ipc
