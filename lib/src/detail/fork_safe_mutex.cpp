#include "detail/fork_safe_mutex.hpp"

#include <array>
#include <cstdlib>

namespace ipc::detail {

namespace {
std::array<std::atomic<fork_safe_mutex*>, 32> g_all{};
std::atomic<std::size_t> g_count{0};
}  // namespace


void after_fork_in_child() noexcept {
  // The child has one thread, the forking one: every other holder is gone.
  const pthread_t self = ::pthread_self();
  const std::size_t n = g_count.load(std::memory_order_acquire);
  for (std::size_t i = 0; i < n && i < g_all.size(); ++i) {
    fork_safe_mutex* m = g_all[i].load(std::memory_order_acquire);
    if (m == nullptr || m->owner_.load(std::memory_order_relaxed) == self) continue;
    m->m_ = PTHREAD_MUTEX_INITIALIZER;
    m->owner_.store(0, std::memory_order_relaxed);
  }
}

// Registered while the library loads, never from a thread that another thread's fork could
// catch half-way (pthread_atfork waits for glibc's atfork lock, held throughout a fork).
[[maybe_unused]] static const int g_registered = ::pthread_atfork(nullptr, nullptr, after_fork_in_child);

fork_safe_mutex::fork_safe_mutex() noexcept {
  const std::size_t i = g_count.fetch_add(1, std::memory_order_acq_rel);
  if (i >= g_all.size()) std::abort();  // a library bug: more process-wide mutexes than slots
  g_all[i].store(this, std::memory_order_release);
}

void fork_safe_mutex::lock() noexcept {
  ::pthread_mutex_lock(&m_);
  owner_.store(::pthread_self(), std::memory_order_relaxed);
}

bool fork_safe_mutex::try_lock() noexcept {
  if (::pthread_mutex_trylock(&m_) != 0) return false;
  owner_.store(::pthread_self(), std::memory_order_relaxed);
  return true;
}

void fork_safe_mutex::unlock() noexcept {
  owner_.store(0, std::memory_order_relaxed);
  ::pthread_mutex_unlock(&m_);
}

}  // namespace ipc::detail
