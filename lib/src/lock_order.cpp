// The lock-order checker (lock_order_checker in <ipc/sync.hpp>): each thread's held ids, checked
// against the orders every process of the runtime directory learned (lock_order_registry.cpp),
// so an acquisition that closes a cycle is reported before it blocks.
#include "detail/lock_order_registry.hpp"

#include <ipc/error.hpp>
#include <ipc/sync.hpp>

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace ipc {

namespace {

bool initially_enabled() noexcept {
  if (const char* v = std::getenv("IPC_LOCK_ORDER_CHECK"); v != nullptr && *v != '\0') {
    return std::strcmp(v, "0") != 0;
  }
#ifdef NDEBUG
  return false;
#else
  return true;
#endif
}

std::atomic<lock_order_checker::policy> g_policy{lock_order_checker::policy::learned_order};

// This process's handler. Its mutex is held across fork (atfork), so a child forked while
// another thread copies the handler never inherits the mutex locked.
struct handler_slot {
  std::mutex m;
  lock_order_checker::handler h;
};

handler_slot& handler_state() {
  static auto* s = [] {
    auto* slot = new handler_slot;  // never destroyed: atfork handlers and late locks outlive statics
    ::pthread_atfork([] { handler_state().m.lock(); }, [] { handler_state().m.unlock(); },
                     [] { handler_state().m.unlock(); });
    return slot;
  }();
  return *s;
}

// Built while the library loads: see g_local_ready in lock_order_registry.cpp.
[[maybe_unused]] const bool g_handler_ready = (handler_state(), true);

thread_local std::vector<std::uint32_t> t_held;

// A forked child holds none of its parent's locks (a robust mutex is owned by a thread id), so
// it must not inherit the forking thread's record of held ids.
const int g_atfork_registered = ::pthread_atfork(nullptr, nullptr, [] { t_held.clear(); });

lock_order_checker::violation local_violation(std::uint32_t held, std::uint32_t id, std::string rule) {
  lock_order_checker::violation v;
  v.held = held;
  v.acquiring = id;
  v.held_name = detail::lock_order_registry::name_of(held);
  v.acquiring_name = detail::lock_order_registry::name_of(id);
  v.pid = ::getpid();
  v.message = "pid " + std::to_string(v.pid) + " acquiring " + v.acquiring_name + " while holding " +
              v.held_name + " " + rule;
  return v;
}

}  // namespace

std::atomic<bool> lock_order_checker::enabled_{initially_enabled()};
std::atomic<bool> lock_order_checker::recorded_{false};

void lock_order_checker::enable(bool on) noexcept { enabled_.store(on, std::memory_order_relaxed); }

void lock_order_checker::set_policy(policy p) noexcept { g_policy.store(p, std::memory_order_relaxed); }

void lock_order_checker::set_handler(handler h) {
  auto& s = handler_state();
  std::lock_guard lk(s.m);
  s.h = std::move(h);
}

void lock_order_checker::abort_handler(const violation& v) noexcept {
  std::fprintf(stderr, "ipc lock order violation: %s\n", v.message.c_str());
  std::abort();
}

void lock_order_checker::reset() { detail::lock_order_registry::forget_mine_and_dead(); }

void lock_order_checker::describe(std::uint32_t id, std::string_view name) {
  if (id == 0 || !enabled()) return;
  detail::lock_order_registry::describe(id, name);
}

std::string lock_order_checker::registry() { return detail::lock_order_registry::object(); }

void lock_order_checker::before_lock(std::uint32_t id) {
  if (id == 0 || !enabled()) return;
  if (t_held.empty()) return;  // nothing held: no order to check or learn
  std::optional<violation> bad;
  if (std::find(t_held.begin(), t_held.end(), id) != t_held.end()) {
    bad = local_violation(id, id, "(this thread already holds it)");
  } else if (g_policy.load(std::memory_order_relaxed) == policy::ascending_ids) {
    auto top = std::max_element(t_held.begin(), t_held.end());
    if (id < *top) bad = local_violation(*top, id, "breaks ascending id order");
  }
  if (!bad) bad = detail::lock_order_registry::check_and_learn(t_held, id);
  if (!bad) return;
  handler h;
  {
    auto& s = handler_state();
    std::lock_guard lk(s.m);
    h = s.h;
  }
  if (h) {
    h(*bad);
    return;
  }
  ipc::throw_errno(EDEADLK, "lock_order_checker", bad->message);
}

void lock_order_checker::acquired(std::uint32_t id) noexcept {
  if (id == 0 || !enabled()) return;
  if (!recorded_.load(std::memory_order_relaxed)) recorded_.store(true, std::memory_order_relaxed);
  try {
    t_held.push_back(id);
  } catch (...) {
    // Out of memory while recording debug state: lose the record, never the lock.
  }
}

void lock_order_checker::forget(std::uint32_t id) noexcept {
  // Not gated on enabled(): a lock recorded before disable() must still be forgotten.
  if (t_held.empty()) return;
  auto it = std::find(t_held.rbegin(), t_held.rend(), id);
  if (it != t_held.rend()) t_held.erase(std::next(it).base());
}

}  // namespace ipc
