#include <ipc/sync.hpp>

#include "detail/futex.hpp"

#include <ipc/error.hpp>

#include <sys/syscall.h>
#include <unistd.h>

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
  if (rc != 0) detail::throw_errno(rc, call, mutex_name(id));
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
        detail::throw_errno(c, "pthread_mutex_consistent", mutex_name(id_));
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
      detail::throw_errno(rc, call, mutex_name(id_));
  }
}

// The checker is consulted once per acquisition: disabled, that is one relaxed atomic load.
lock_result robust_mutex::lock() {
  const bool check = id_ != 0 && lock_order_checker::enabled();
  if (check) lock_order_checker::before_lock(id_);
  finish_lock(::pthread_mutex_lock(&mutex_), "pthread_mutex_lock");
  if (check) lock_order_checker::acquired(id_);
  return {recovered_ != 0};
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
  timespec ts = d.monotonic_timespec();
  bool ok = finish_lock(::pthread_mutex_clocklock(&mutex_, CLOCK_MONOTONIC, &ts), "pthread_mutex_clocklock");
  if (ok && check) lock_order_checker::acquired(id_);
  return ok;
}

void robust_mutex::unlock() {
  if (int rc = ::pthread_mutex_unlock(&mutex_); rc != 0) detail::throw_errno(rc, "pthread_mutex_unlock", mutex_name(id_));
  lock_order_checker::released(id_);
}

// ---- robust_condition ------------------------------------------------------------------------

robust_condition* robust_condition::create_at(void* mem) noexcept { return new (mem) robust_condition(); }

lock_result robust_condition::wait(lock_type& lk) {
  wait_until(lk, deadline::never());
  return {lk.mutex()->previous_owner_died()};
}

std::cv_status robust_condition::wait_until(lock_type& lk, const deadline& d) {
  if (lk.mutex() == nullptr || !lk.owns_lock()) {
    detail::throw_errno(EPERM, "robust_condition::wait", "the lock does not hold its mutex");
  }
  // Register, then sample the sequence before unlocking: a notify after the unlock bumps seq_,
  // so the futex either sees the new value (returns at once) or is woken. seq_cst on both sides
  // pairs with notify's increment-then-read of waiters_.
  waiters_.fetch_add(1, std::memory_order_seq_cst);
  std::uint32_t seen = seq_.load(std::memory_order_seq_cst);
  lk.unlock();
  bool woken = false;
  try {
    // A wake-up, a changed sequence or EINTR all return true: a spurious wake-up, as condition
    // variables allow; the caller re-checks its predicate.
    woken = detail::futex_wait(seq_, seen, d, "robust_condition");
  } catch (...) {
    waiters_.fetch_sub(1, std::memory_order_seq_cst);
    lk.lock();
    throw;
  }
  waiters_.fetch_sub(1, std::memory_order_seq_cst);
  lk.lock();
  return woken ? std::cv_status::no_timeout : std::cv_status::timeout;
}

void robust_condition::notify_one() noexcept {
  seq_.fetch_add(1, std::memory_order_seq_cst);
  if (waiters_.load(std::memory_order_seq_cst) != 0) detail::futex_wake(seq_, 1, "robust_condition");
}

void robust_condition::notify_all() noexcept {
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
    if (sorted[i] == nullptr) detail::throw_errno(EINVAL, "lock_in_order", "mutex #" + std::to_string(i) + " is null");
  }
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->id() < b->id(); });
  for (std::size_t i = 1; i < sorted.size(); ++i) {
    if (sorted[i]->id() == sorted[i - 1]->id()) {
      detail::throw_errno(EINVAL, "lock_in_order",
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
