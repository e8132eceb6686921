#include "detail/shm_ring_roles.hpp"

#include <ipc/deadline.hpp>
#include <ipc/error.hpp>
#include <ipc/inspect.hpp>
#include <ipc/shm_ring.hpp>

#include "detail/cpu_relax.hpp"
#include "detail/futex.hpp"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ipc {
namespace detail {
namespace {

// The role lock: a pid in shared memory. Held for a few instructions; a dead holder's lock is
// taken over. Throws EBUSY after 2 s (a live holder stopped inside, e.g. by SIGSTOP).
// Never sleeps waiting to be woken: it polls (spin, then 50 µs sleeps), takes over a dead holder's
// pid, and gives up after 2 s, so no holder's death or wake-up can strand it.
class role_lock {
 public:
  role_lock(role_block& b, pid_t me, std::string_view object) : b_(b), me_(me) {
    const auto give_up = deadline::in(std::chrono::seconds(2));
    for (unsigned i = 0;; ++i) {
      std::int32_t owner = 0;
      if (b_.lock.compare_exchange_strong(owner, me_, std::memory_order_acquire)) return;
      if (owner != 0 && !process_alive(owner, 0) &&
          b_.lock.compare_exchange_strong(owner, me_, std::memory_order_acquire)) {
        return;
      }
      if (give_up.expired()) {
        throw_errno(EBUSY, "lock", std::string(object) + " role lock held by pid " + std::to_string(owner));
      }
      if (i < 64) {
        cpu_relax();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
    }
  }
  ~role_lock() { b_.lock.store(0, std::memory_order_release); }
  role_lock(const role_lock&) = delete;
  role_lock& operator=(const role_lock&) = delete;

 private:
  role_block& b_;
  pid_t me_;
};

// Under the lock: drops dead holders; returns the first live one (0 if none). Sets closed when
// the last holder was found dead.
pid_t reap_locked(role_block& b, const segment_id& seg) noexcept {
  pid_t live = 0;
  bool reaped = false;
  for (auto& h : b.holders) {
    pid_t p = h.pid.load(std::memory_order_relaxed);
    if (p == 0) continue;
    if (process_alive(p, h.start_time.load(std::memory_order_relaxed)) && maps_segment(p, seg)) {
      if (live == 0) live = p;
    } else {
      h.pid.store(0, std::memory_order_relaxed);
      reaped = true;
    }
  }
  if (reaped && live == 0) b.closed.store(1, std::memory_order_release);
  return live;
}

// Under the lock: takes a free slot for pid (one whose endpoint lock no live thread holds: a lock
// whose release_lock() failed stays on its thread's robust list and must not be initialised
// again). Its endpoint lock is taken on the calling thread first, unless fork_pending (the child
// takes it). Returns the slot's index, or -1 when none is free or the lock could not be taken.
int add_locked(role_block& b, pid_t pid, std::uint64_t start_time, std::string_view object,
               bool fork_pending = false) noexcept {
  for (int i = 0; i < max_holders; ++i) {
    auto& h = b.holders[i];
    if (h.pid.load(std::memory_order_relaxed) != 0 || lock_held(b.endpoint_locks[i])) continue;
    if (!fork_pending) {
      try {
        take_lock(b.endpoint_locks[i], object);
      } catch (...) {
        return -1;
      }
    }
    h.start_time.store(start_time, std::memory_order_relaxed);
    h.fork_pending.store(fork_pending ? 1 : 0, std::memory_order_relaxed);
    h.pid.store(pid, std::memory_order_release);
    b.closed.store(0, std::memory_order_release);
    b.attaches.fetch_add(1, std::memory_order_relaxed);
    return i;
  }
  return -1;
}

// Under the lock: the slot of pid (its own, or a fork-pending one it reserved), or nullptr.
holder_slot* find_locked(role_block& b, pid_t pid, bool fork_pending) noexcept {
  for (auto& h : b.holders) {
    if (h.pid.load(std::memory_order_relaxed) == pid &&
        (h.fork_pending.load(std::memory_order_relaxed) != 0) == fork_pending) {
      return &h;
    }
  }
  return nullptr;
}

// Under the lock: removes pid's own slot and releases its endpoint lock; sets closed when nobody
// is left. Returns false when the lock could not be released (held by another thread of ours).
bool remove_locked(role_block& b, pid_t pid) noexcept {
  holder_slot* h = find_locked(b, pid, false);
  if (h == nullptr) return true;
  auto& lock = b.endpoint_locks[h - b.holders];
  const bool released = !lock_held(lock) || release_lock(lock);
  h->pid.store(0, std::memory_order_relaxed);
  for (auto& o : b.holders) {
    if (o.pid.load(std::memory_order_relaxed) != 0) return released;
  }
  b.closed.store(1, std::memory_order_release);
  return released;
}

// Wakes the other role's waiters after a holder joined r, so they watch its endpoint lock too.
void wake_watchers_of(ring_header& h, role r, std::string_view object) noexcept {
  auto& seq = r == role::sender ? h.data_seq : h.space_seq;
  seq.fetch_add(1, std::memory_order_release);
  try {
    futex_wake(seq, INT_MAX, object);
  } catch (...) {  // NOLINT(bugprone-empty-catch): they look again at their next slice or message
  }
}

}  // namespace

role_block& block_of(ring_header& h, role r) noexcept { return r == role::sender ? h.sender : h.receiver; }

const char* role_name(role r) noexcept { return r == role::sender ? "sender" : "receiver"; }

void attach_role(ring_header& h, role r, const segment_id& seg, pid_t me, std::string_view object) {
  const auto self = process_identity(me);
  auto& mine = block_of(h, r);
  role_lock lock(mine, me, object);
  if (pid_t holder = reap_locked(mine, seg)) {
    throw_errno(EBUSY, std::string("attach ") + role_name(r),
                std::string(object) + ": the " + role_name(r) + " role is held by pid " + std::to_string(holder));
  }
  if (add_locked(mine, me, self.start_time, object) < 0) {
    throw_errno(EBUSY, std::string("attach ") + role_name(r),
                std::string(object) + ": no free " + role_name(r) + " slot (its endpoint locks are held)");
  }
  wake_watchers_of(h, r, object);
}

detach_result detach_role(ring_header& h, role r, pid_t me, std::string_view object) noexcept {
  detach_result out;
  auto& mine = block_of(h, r);
  try {
    role_lock lock(mine, me, object);
    out.lock_released = remove_locked(mine, me);
    out.closed = mine.closed.load(std::memory_order_relaxed) != 0;
  } catch (...) {
    // A stuck role lock (live holder stopped for 2 s): the peer falls back on its liveness checks.
    // Our endpoint lock stays held (the slot is still ours): keep the mapping it lives in.
    out.lock_released = false;
  }
  return out;
}

void retake_endpoint_lock(ring_header& h, role r, pid_t me) noexcept {
  auto& mine = block_of(h, r);
  for (int i = 0; i < max_holders; ++i) {
    auto& slot = mine.holders[i];
    if (slot.pid.load(std::memory_order_relaxed) == me && slot.fork_pending.load(std::memory_order_relaxed) == 0) {
      if (retake_if_orphaned(mine.endpoint_locks[i])) wake_watchers_of(h, r, "");
      return;
    }
  }
}

int watch_list(ring_header& h, role r, const endpoint_lock* (&out)[max_holders]) noexcept {
  auto& peer = block_of(h, r);
  int n = 0;
  for (int i = 0; i < max_holders; ++i) {
    if (peer.holders[i].pid.load(std::memory_order_acquire) != 0) out[n++] = &peer.endpoint_locks[i];
  }
  return n;
}

bool peer_gone(role_block& b, const segment_id& seg, pid_t me, std::string_view object,
               std::chrono::steady_clock::time_point& next_probe) {
  if (b.closed.load(std::memory_order_acquire) != 0) return true;
  const auto now = std::chrono::steady_clock::now();
  if (now < next_probe) return false;
  next_probe = now + std::chrono::milliseconds(10);
  bool any = false;
  for (auto& h : b.holders) {
    pid_t p = h.pid.load(std::memory_order_relaxed);
    if (p == 0) continue;
    any = true;
    if (process_alive(p, h.start_time.load(std::memory_order_relaxed)) && maps_segment(p, seg)) return false;
  }
  if (!any) return false;
  role_lock lock(b, me, object);
  reap_locked(b, seg);
  return b.closed.load(std::memory_order_acquire) != 0;
}

}  // namespace detail

// ---------------------------------------------------------------- fork hooks

namespace {

struct fork_registry_state {
  std::mutex mutex;
  std::vector<shm_ring*> rings;
};

fork_registry_state& registry() {
  static auto* r = new fork_registry_state;  // never destroyed: atfork handlers outlive statics
  return *r;
}

// Installed while the library loads: a first-use initialiser calling pthread_atfork waits for
// glibc's atfork lock while another thread forks, and that child would inherit it half-built.
// errno is cleared before fork so the parent handler can tell a failed fork (glibc runs parent
// handlers then too) and take back the slots it reserved for a child that never was.
[[maybe_unused]] const bool g_fork_hooks_installed = [] {
  registry();
  ::pthread_atfork(&shm_ring_fork_registry::prepare, &shm_ring_fork_registry::parent,
                   &shm_ring_fork_registry::child);
  return true;
}();

}  // namespace

void shm_ring_fork_registry::add(shm_ring* ring) {
  auto& g = registry();
  std::lock_guard lock(g.mutex);
  g.rings.push_back(ring);
}

void shm_ring_fork_registry::erase(shm_ring* ring) noexcept {
  auto& g = registry();
  std::lock_guard lock(g.mutex);
  g.rings.erase(std::remove(g.rings.begin(), g.rings.end(), ring), g.rings.end());
}

void shm_ring_fork_registry::prepare() noexcept {
  auto& g = registry();
  g.mutex.lock();
  for (auto* ring : g.rings) ring->on_fork(shm_ring::fork_step::prepare);
  errno = 0;
}

void shm_ring_fork_registry::parent() noexcept {
  auto& g = registry();
  const int err = errno;
  if (err != 0) {
    for (auto* ring : g.rings) ring->on_fork(shm_ring::fork_step::failed);
  }
  g.mutex.unlock();
  errno = err;
}

void shm_ring_fork_registry::child() noexcept {
  auto& g = registry();
  for (auto* ring : g.rings) ring->on_fork(shm_ring::fork_step::child);
  g.mutex.unlock();
}

void shm_ring::on_fork(fork_step step) noexcept {
  if (hdr_ == nullptr) return;
  auto& mine = detail::block_of(*hdr_, role_);
  try {
    switch (step) {
      case fork_step::prepare: {
        detail::role_lock lock(mine, pid_, name_);
        const auto* own = detail::find_locked(mine, pid_, false);
        detail::add_locked(mine, pid_, own ? own->start_time.load(std::memory_order_relaxed) : 0, name_, true);
        break;
      }
      case fork_step::failed: {
        detail::role_lock lock(mine, pid_, name_);
        if (auto* h = detail::find_locked(mine, pid_, true)) h->pid.store(0, std::memory_order_relaxed);
        break;
      }
      case fork_step::child: {
        const pid_t child = ::getpid();
        const auto st = process_identity(child);
        detail::role_lock lock(mine, child, name_);
        if (auto* h = detail::find_locked(mine, pid_, true)) {
          // The child's own endpoint lock, held by this (its only) thread; the parent's stays the parent's.
          auto& own_lock = mine.endpoint_locks[h - mine.holders];
          if (!detail::lock_held(own_lock)) detail::take_lock(own_lock, name_);
          h->start_time.store(st.start_time, std::memory_order_relaxed);
          h->fork_pending.store(0, std::memory_order_relaxed);
          h->pid.store(child, std::memory_order_release);
        } else {
          detail::add_locked(mine, child, st.start_time, name_);
        }
        pid_ = child;
        break;
      }
    }
  } catch (...) {
    // A stuck role lock: this handle still works; only the liveness bookkeeping is missing.
    if (step == fork_step::child) pid_ = ::getpid();
  }
}

}  // namespace ipc
