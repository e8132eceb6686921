#include "detail/shm_mpmc_holders.hpp"

#include <ipc/error.hpp>
#include <ipc/inspect.hpp>
#include <ipc/shm_mpmc.hpp>

#include "detail/futex.hpp"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <mutex>
#include <string>
#include <vector>

namespace ipc {
namespace detail {
namespace {

unsigned role_index(role r) noexcept { return r == role::sender ? 0U : 1U; }

bool holder_alive(pid_t pid, std::uint64_t start_time, const segment_id& seg) noexcept {
  return pid > 0 && process_alive(pid, start_time) && maps_segment(pid, seg);
}

// Frees place i if it is still registration `gen` (odd). The CAS on gen decides between racing
// reapers, a releasing owner and a fork child adopting the place: exactly one of them wins.
bool free_place(const holder_table& t, unsigned i, std::uint32_t gen) noexcept {
  auto& e = t.holders[i];
  std::uint32_t g = gen;
  if (!e.gen.compare_exchange_strong(g, gen + 1, std::memory_order_acq_rel)) return false;
  const unsigned r = e.role.load(std::memory_order_relaxed) & 1U;
  e.fork_pending.store(0, std::memory_order_relaxed);  // a free place is never "changing hands"
  e.pid.store(0, std::memory_order_release);
  t.live[r].fetch_sub(1, std::memory_order_acq_rel);
  return true;
}

// Bumps the layout's futex words and wakes everyone: a sleeper then watches a new endpoint's lock,
// or judges a reaped one, at once.
void wake_all_waiters(const holder_table& t) noexcept {
  for (auto* seq : t.wake) {
    if (seq == nullptr) continue;
    seq->fetch_add(1, std::memory_order_release);
    try {
      futex_wake(*seq, INT_MAX, "");
    } catch (...) {  // NOLINT(bugprone-empty-catch): they look again at their next wake
    }
  }
}

// Reaps place i when its holder is dead; true when it was reaped (by us).
bool reap_if_dead(const holder_table& t, unsigned i, const segment_id& seg) noexcept {
  auto& e = t.holders[i];
  const std::uint32_t g = e.gen.load(std::memory_order_acquire);
  if ((g & 1U) == 0) return false;  // free, or being registered / adopted
  const pid_t pid = e.pid.load(std::memory_order_acquire);
  const std::uint64_t st = e.start_time.load(std::memory_order_acquire);
  if (holder_alive(pid, st, seg)) return false;
  // Judged on a consistent snapshot only: an adoption in progress changes gen first.
  if (e.gen.load(std::memory_order_acquire) != g) return false;
  if (!free_place(t, i, g)) return false;
  // Other sleepers may be waiting (in slices) on this holder's unheld lock: let them judge now.
  wake_all_waiters(t);
  return true;
}

}  // namespace

std::unique_ptr<segment> create_or_open_segment(std::string_view name, open_mode open, mode_t mode, std::size_t total) {
  for (int attempt = 0;; ++attempt) {
    if (open != open_mode::open_only) {
      try {
        return std::make_unique<posix_segment>(name, open_mode::create_only, total, mode);
      } catch (const std::system_error& e) {
        if (open == open_mode::create_only || e.code() != std::errc::file_exists) throw;
      }
    }
    try {
      return std::make_unique<posix_segment>(name, open_mode::open_only, 0);
    } catch (const std::system_error& e) {
      if (open == open_mode::open_only || e.code() != std::errc::no_such_file_or_directory || attempt >= 100) throw;
    }
  }
}

mpmc_place register_holder(const holder_table& t, role r, pid_t pid, std::uint64_t start_time, bool fork_pending,
                           const segment_id& seg, std::string_view object, before_publish init) {
  const unsigned ri = role_index(r);
  for (int attempt = 0; attempt < 2; ++attempt) {
    for (unsigned i = 0; i < mpmc_max_holders; ++i) {
      auto& e = t.holders[i];
      std::int32_t none = 0;
      if (!e.pid.compare_exchange_strong(none, pid, std::memory_order_acq_rel)) continue;
      // A lock still held sits on a live thread's robust list (its release failed): not this place.
      if (lock_held(t.endpoint_locks[i])) {
        e.pid.store(0, std::memory_order_release);
        continue;
      }
      if (!fork_pending) {
        try {
          take_lock(t.endpoint_locks[i], object);
        } catch (...) {
          e.pid.store(0, std::memory_order_release);
          throw;
        }
      }
      if (init.call != nullptr) init.call(init.context, i);
      e.start_time.store(start_time, std::memory_order_relaxed);
      e.role.store(ri, std::memory_order_relaxed);
      e.fork_pending.store(fork_pending ? 1U : 0U, std::memory_order_release);
      t.live[ri].fetch_add(1, std::memory_order_acq_rel);
      t.ever[ri].store(1, std::memory_order_release);
      const std::uint32_t g = e.gen.fetch_add(1, std::memory_order_seq_cst) + 1;  // even -> odd: published
      if (!fork_pending) wake_all_waiters(t);
      return {i, g};
    }
    for (unsigned i = 0; i < mpmc_max_holders; ++i) reap_if_dead(t, i, seg);
  }
  throw_errno(EBUSY, "attach", std::string(object) + ": all " + std::to_string(mpmc_max_holders) +
                                   " endpoint places are held by live processes");
}

bool release_holder(const holder_table& t, const mpmc_place& p, bool* lock_released) noexcept {
  if (p.index >= mpmc_max_holders || (p.gen & 1U) == 0) return false;
  // Unlocked before the place is freed, so no new holder finds it held. A place reaped already
  // (we were judged dead: a stopped process) has a lock that is still ours: release it all the same.
  auto& lock = t.endpoint_locks[p.index];
  const bool released = !lock_held(lock) || release_lock(lock);
  if (lock_released != nullptr) *lock_released = released;
  const unsigned r = t.holders[p.index].role.load(std::memory_order_relaxed) & 1U;
  if (!free_place(t, p.index, p.gen)) return false;
  return t.live[r].load(std::memory_order_acquire) == 0;
}

mpmc_place adopt_pending(const holder_table& t, const mpmc_place& pending, pid_t child, std::uint64_t start_time) noexcept {
  auto& e = t.holders[pending.index];
  std::uint32_t g = pending.gen;
  // odd -> even while the fields change, so no reaper judges a half-written pid/start time.
  if (!e.gen.compare_exchange_strong(g, pending.gen + 1, std::memory_order_acq_rel)) return {pending.index, 0};
  try {
    if (!lock_held(t.endpoint_locks[pending.index])) take_lock(t.endpoint_locks[pending.index], "");
  } catch (...) {  // NOLINT(bugprone-empty-catch): left unheld, sleepers look at this place in slices
  }
  e.start_time.store(start_time, std::memory_order_relaxed);
  e.pid.store(child, std::memory_order_relaxed);
  e.gen.store(pending.gen + 2, std::memory_order_release);
  e.fork_pending.store(0, std::memory_order_release);  // after the new generation: never "free" in between
  return {pending.index, pending.gen + 2};
}

bool token_alive(const holder_table& t, std::uint32_t token, const segment_id& seg) noexcept {
  const slot_state s{0, slot_phase::writing, token};
  const unsigned i = s.holder_index();
  if (i >= mpmc_max_holders) return false;
  const std::uint32_t g = t.holders[i].gen.load(std::memory_order_acquire);
  if ((g & slot_state::gen_mask) != s.holder_gen()) return false;  // released or reaped since the claim
  return !reap_if_dead(t, i, seg) && t.holders[i].gen.load(std::memory_order_acquire) == g;
}

void retake_endpoint_lock(const holder_table& t, const mpmc_place& p, pid_t me) noexcept {
  if (t.endpoint_locks == nullptr || p.index >= mpmc_max_holders) return;
  if (t.holders[p.index].pid.load(std::memory_order_relaxed) != me) return;
  if (t.holders[p.index].gen.load(std::memory_order_acquire) != p.gen) return;
  if (retake_if_orphaned(t.endpoint_locks[p.index])) wake_all_waiters(t);
}

int watch_list(const holder_table& t, unsigned self, const endpoint_lock* (&out)[mpmc_max_holders]) noexcept {
  int n = 0;
  for (unsigned i = 0; i < mpmc_max_holders; ++i) {
    if (i == self) continue;
    if ((t.holders[i].gen.load(std::memory_order_acquire) & 1U) != 0) out[n++] = &t.endpoint_locks[i];
  }
  return n;
}

std::uint32_t reap_role(const holder_table& t, role r, const segment_id& seg) noexcept {
  const unsigned ri = role_index(r);
  for (unsigned i = 0; i < mpmc_max_holders; ++i) {
    if ((t.holders[i].role.load(std::memory_order_relaxed) & 1U) == ri) reap_if_dead(t, i, seg);
  }
  return t.live[ri].load(std::memory_order_acquire);
}

}  // namespace detail

// ---------------------------------------------------------------- fork hooks

namespace {

struct fork_entry {
  void* endpoint;
  detail::shm_fork_registry::hook hook;
};

struct registry_state {
  std::mutex mutex;
  std::vector<fork_entry> endpoints;
};

registry_state& registry() {
  static auto* r = new registry_state;  // never destroyed: atfork handlers outlive statics
  return *r;
}

void prepare_all() noexcept {
  auto& g = registry();
  g.mutex.lock();
  for (const auto& e : g.endpoints) e.hook(e.endpoint, detail::fork_step::prepare);
  errno = 0;
}

void parent_all() noexcept {
  auto& g = registry();
  const int err = errno;
  for (const auto& e : g.endpoints) e.hook(e.endpoint, err != 0 ? detail::fork_step::failed : detail::fork_step::parent);
  g.mutex.unlock();
  errno = err;
}

void child_all() noexcept {
  auto& g = registry();
  for (const auto& e : g.endpoints) e.hook(e.endpoint, detail::fork_step::child);
  g.mutex.unlock();
}

// Installed while the library loads, for the reason shm_ring_roles.cpp gives; errno is cleared
// before fork so the parent handler can tell a failed fork and take back the reserved places.
[[maybe_unused]] const bool g_shm_fork_hooks_installed = [] {
  registry();
  ::pthread_atfork(&prepare_all, &parent_all, &child_all);
  return true;
}();

}  // namespace

void detail::shm_fork_registry::add(void* endpoint, hook h) {
  auto& g = registry();
  std::lock_guard lock(g.mutex);
  g.endpoints.push_back({endpoint, h});
}

void detail::shm_fork_registry::erase(void* endpoint) noexcept {
  auto& g = registry();
  std::lock_guard lock(g.mutex);
  std::erase_if(g.endpoints, [endpoint](const fork_entry& e) { return e.endpoint == endpoint; });
}

void shm_mpmc_fork_registry::add(shm_mpmc* q) { detail::shm_fork_registry::add(q, &shm_mpmc_fork_registry::on_fork); }

void shm_mpmc_fork_registry::erase(shm_mpmc* q) noexcept { detail::shm_fork_registry::erase(q); }

void shm_mpmc_fork_registry::on_fork(void* endpoint, detail::fork_step step) noexcept {
  auto* q = static_cast<shm_mpmc*>(endpoint);
  switch (step) {
    case detail::fork_step::prepare: q->on_fork(shm_mpmc::fork_step::prepare); break;
    case detail::fork_step::parent: q->pending_ = -1; break;  // the reserved place is the child's now
    case detail::fork_step::failed: q->on_fork(shm_mpmc::fork_step::failed); break;
    case detail::fork_step::child: q->on_fork(shm_mpmc::fork_step::child); break;
  }
}

void shm_mpmc::on_fork(fork_step step) noexcept {
  if (hdr_ == nullptr) return;
  try {
    switch (step) {
      case fork_step::prepare: {
        const auto st = hdr_->holders[holder_].start_time.load(std::memory_order_relaxed);
        const auto p = detail::register_holder(*hdr_, role_, pid_, st, true, {dev_, ino_}, name_);
        pending_ = static_cast<int>(p.index);
        pending_gen_ = p.gen;
        break;
      }
      case fork_step::failed:
        if (pending_ >= 0) detail::release_holder(*hdr_, {static_cast<unsigned>(pending_), pending_gen_});
        pending_ = -1;
        break;
      case fork_step::child: {
        const pid_t child = ::getpid();
        const auto id = process_identity(child);
        detail::mpmc_place p{};
        if (pending_ >= 0) p = detail::adopt_pending(*hdr_, {static_cast<unsigned>(pending_), pending_gen_}, child, id.start_time);
        if (p.gen == 0) p = detail::register_holder(*hdr_, role_, child, id.start_time, false, {dev_, ino_}, name_);
        holder_ = p.index;
        token_ = detail::slot_state::make_token(p.index, p.gen);
        place_gen_ = p.gen;
        pid_ = child;
        pending_ = -1;
        break;
      }
    }
  } catch (...) {
    // No place left for the child: its claims carry the parent's token, which stays alive as long
    // as the parent does; only the liveness bookkeeping is weaker.
    pending_ = -1;
    if (step == fork_step::child) pid_ = ::getpid();
  }
}

}  // namespace ipc
