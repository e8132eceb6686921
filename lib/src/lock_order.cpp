// The lock-order checker (lock_order_checker in <ipc/sync.hpp>): learns which lock was held while
// another was taken, and reports an acquisition that closes a cycle before it blocks.
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
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace ipc {

namespace {

// ---- lock-order checker state ----------------------------------------------------------------

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

std::atomic<bool> g_check_enabled{initially_enabled()};
std::atomic<lock_order_checker::policy> g_policy{lock_order_checker::policy::learned_order};

struct order_graph {
  std::mutex mutex;
  std::unordered_map<std::uint32_t, std::unordered_set<std::uint32_t>> after;  // A -> {B taken while A held}
  lock_order_checker::handler on_violation;

  // True if `to` is reachable from `from` through learned edges.
  bool reaches(std::uint32_t from, std::uint32_t to) const {
    std::vector<std::uint32_t> stack{from};
    std::unordered_set<std::uint32_t> seen{from};
    while (!stack.empty()) {
      std::uint32_t n = stack.back();
      stack.pop_back();
      if (n == to) return true;
      auto it = after.find(n);
      if (it == after.end()) continue;
      for (std::uint32_t next : it->second) {
        if (seen.insert(next).second) stack.push_back(next);
      }
    }
    return false;
  }
};

order_graph& graph() {
  static order_graph g;
  return g;
}

thread_local std::vector<std::uint32_t> t_held;

// A forked child holds none of its parent's locks (a robust mutex is owned by a thread id), so
// it must not inherit the forking thread's record of held ids.
const int g_atfork_registered = ::pthread_atfork(nullptr, nullptr, [] { t_held.clear(); });

}  // namespace

// ---- lock_order_checker ----------------------------------------------------------------------

void lock_order_checker::enable(bool on) noexcept { g_check_enabled.store(on, std::memory_order_relaxed); }

bool lock_order_checker::enabled() noexcept { return g_check_enabled.load(std::memory_order_relaxed); }

void lock_order_checker::set_policy(policy p) noexcept { g_policy.store(p, std::memory_order_relaxed); }

void lock_order_checker::set_handler(handler h) {
  auto& g = graph();
  std::lock_guard lk(g.mutex);
  g.on_violation = std::move(h);
}

void lock_order_checker::abort_handler(const violation& v) noexcept {
  std::fprintf(stderr, "ipc lock order violation: %s\n", v.message.c_str());
  std::abort();
}

void lock_order_checker::reset() {
  auto& g = graph();
  std::lock_guard lk(g.mutex);
  g.after.clear();
}

void lock_order_checker::before_lock(std::uint32_t id) {
  if (id == 0 || !g_check_enabled.load(std::memory_order_relaxed)) return;
  std::optional<violation> bad;
  handler h;
  {
    auto& g = graph();
    std::lock_guard lk(g.mutex);
    const bool ascending = g_policy.load(std::memory_order_relaxed) == policy::ascending_ids;
    const std::string b = std::to_string(id);
    for (std::uint32_t a : t_held) {
      const std::string as = std::to_string(a);
      if (a == id) {
        bad = violation{a, id, "acquiring lock " + b + " while this thread already holds lock " + b};
      } else if (ascending && id < a) {
        bad = violation{a, id, "acquiring lock " + b + " while holding lock " + as + " breaks ascending id order"};
      } else if (!g.after[a].contains(id) && g.reaches(id, a)) {
        bad = violation{a, id,
                        "acquiring lock " + b + " while holding lock " + as + ", but lock " + b +
                            " was held while taking lock " + as + " elsewhere: potential deadlock"};
      }
      if (bad) break;
    }
    if (!bad) {
      for (std::uint32_t a : t_held) g.after[a].insert(id);
    } else {
      h = g.on_violation;
    }
  }
  if (!bad) return;
  if (h) {
    h(*bad);
    return;
  }
  detail::throw_errno(EDEADLK, "lock_order_checker", bad->message);
}

void lock_order_checker::acquired(std::uint32_t id) noexcept {
  if (id == 0 || !g_check_enabled.load(std::memory_order_relaxed)) return;
  try {
    t_held.push_back(id);
  } catch (...) {
    // Out of memory while recording debug state: lose the record, never the lock.
  }
}

void lock_order_checker::released(std::uint32_t id) noexcept {
  // Not gated on enabled(): a lock recorded before disable() must still be forgotten.
  if (id == 0 || t_held.empty()) return;
  auto it = std::find(t_held.rbegin(), t_held.rend(), id);
  if (it != t_held.rend()) t_held.erase(std::next(it).base());
}

}  // namespace ipc
