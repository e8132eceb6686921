// Who is attached to a multi-endpoint shm layout: the holder table in its header (the MPMC work
// queue's shm_mpmc_layout.hpp and the broadcast channel's shm_broadcast_layout.hpp both carry one).
// A place is taken with a CAS on its pid and named by (index, generation); a slot claim records
// that name, so "is the claimer alive" is one table look-up plus the toolkit's liveness test
// (pid + start time) and "does it still map the segment" (a fork+exec child keeps the pid).
// The fork hooks make a fork() child an endpoint of its own for every registered handle.
#pragma once

#include <ipc/channel.hpp>
#include <ipc/shared_memory.hpp>

#include "detail/liveness.hpp"
#include "detail/shm_mpmc_layout.hpp"

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

namespace ipc {

class shm_mpmc;

namespace detail {

/// The steps of fork() a handle on a holder table takes part in (see shm_fork_registry).
enum class fork_step { prepare, parent, failed, child };

/// Every live multi-endpoint shm handle of this process (work queues, broadcast channels), so that
/// a fork() child becomes an endpoint of its own before the parent can drop its copy.
struct shm_fork_registry {
  using hook = void (*)(void* endpoint, fork_step step) noexcept;
  /// Registers endpoint for the fork hooks (installed while the library loads). Throws std::bad_alloc.
  static void add(void* endpoint, hook h);
  /// Unregisters endpoint. Never throws.
  static void erase(void* endpoint) noexcept;
};

}  // namespace detail

// Every live shm_mpmc handle of this process, so that a fork() child becomes an endpoint of its
// own (with its own place in the table) before the parent can drop its copy: the role never looks
// abandoned in between.
struct shm_mpmc_fork_registry {
  /// Registers q for the fork hooks (detail::shm_fork_registry). Throws std::bad_alloc.
  static void add(shm_mpmc* q);
  /// Unregisters q. Never throws.
  static void erase(shm_mpmc* q) noexcept;
  static void on_fork(void* q, detail::fork_step step) noexcept;
};

namespace detail {

struct mpmc_place {
  unsigned index = 0;
  std::uint32_t gen = 0;  // odd while registered
};

/// A layout's holder table: mpmc_max_holders places and the per-role counts (index 0 sender,
/// 1 receiver), wherever the layout keeps them.
/// endpoint_locks are held by the places' holders from attach to
/// detach (endpoint_lock.hpp); wake are the layout's two futex words its sleepers wait on, bumped and
/// woken when a holder joins or is reaped so they watch the right locks.
struct holder_table {
  mpmc_holder* holders;
  std::atomic<std::uint32_t>* live;  // [2] registered holders per role
  std::atomic<std::uint32_t>* ever;  // [2] 1 once the role was attached
  endpoint_lock* endpoint_locks;                         // [mpmc_max_holders]
  std::atomic<std::uint32_t>* wake[2] = {nullptr, nullptr};
};
inline holder_table table_of(mpmc_header& h) noexcept {
  return {h.holders, h.live, h.ever, h.endpoint_locks, {&h.data_seq, &h.space_seq}};
}

/// Called with a place's index after it was taken and before it is published (gen made odd), so
/// a layout can initialise what it keeps per place (the broadcast channel's cursor). Never throws.
struct before_publish {
  void (*call)(void* context, unsigned index) noexcept = nullptr;
  void* context = nullptr;
};

/// Creates (create_only) or opens (open_only, whatever size it has) the POSIX segment `name`;
/// open_or_create tries both until one wins, so an opener adopts the existing layout's sizes (as
/// shm_ring does). Throws std::system_error naming the object (EEXIST, ENOENT, ...).
std::unique_ptr<segment> create_or_open_segment(std::string_view name, open_mode open, mode_t mode, std::size_t total);

/// Takes a free place for pid as role r (dead holders are reaped first when the table is full),
/// holding its endpoint lock on the calling thread unless fork_pending (the child takes it), and
/// wakes every sleeper so it watches the new lock too. Throws std::system_error EBUSY naming
/// object when 64 live endpoints hold every place.
mpmc_place register_holder(const holder_table& t, role r, pid_t pid, std::uint64_t start_time, bool fork_pending,
                           const segment_id& seg, std::string_view object, before_publish init = {});

/// Gives the place back, releasing its endpoint lock. Returns true when it was the last holder of
/// its role; false when the place was already reaped. *lock_released (if given) is false when the
/// lock stays held by another thread of ours: the caller keeps the mapping (park_until_exit).
/// Never throws.
bool release_holder(const holder_table& t, const mpmc_place& p, bool* lock_released = nullptr) noexcept;

/// Takes back the endpoint lock of place p when the thread that held it has exited (then wakes
/// the sleepers). Never blocks, never throws.
void retake_endpoint_lock(const holder_table& t, const mpmc_place& p, pid_t me) noexcept;

/// The endpoint locks of every registered place but `self`, for wait_data_or_death. Returns how
/// many. Never throws.
int watch_list(const holder_table& t, unsigned self, const endpoint_lock* (&out)[mpmc_max_holders]) noexcept;

/// Turns a fork-pending place (reserved by the parent) into the calling child's own: new pid,
/// start time, generation and endpoint lock (held by the calling thread). Returns the place, or nullopt-like {index, 0} when it was reaped.
/// fork_pending stays set until the new generation is published, so a reader that sees an even
/// generation with fork_pending set knows the place is changing hands, not free.
mpmc_place adopt_pending(const holder_table& t, const mpmc_place& pending, pid_t child, std::uint64_t start_time) noexcept;

/// Whether the holder a claim token names is still attached and alive. A dead one is reaped.
bool token_alive(const holder_table& t, std::uint32_t token, const segment_id& seg) noexcept;

/// Reaps the dead holders of role r; returns the number of its live holders afterwards.
std::uint32_t reap_role(const holder_table& t, role r, const segment_id& seg) noexcept;

// The work queue's calls, on its header's table.
inline mpmc_place register_holder(mpmc_header& h, role r, pid_t pid, std::uint64_t start_time, bool fork_pending,
                                  const segment_id& seg, std::string_view object) {
  return register_holder(table_of(h), r, pid, start_time, fork_pending, seg, object);
}
inline bool release_holder(mpmc_header& h, const mpmc_place& p, bool* lock_released = nullptr) noexcept {
  return release_holder(table_of(h), p, lock_released);
}
inline void retake_endpoint_lock(mpmc_header& h, const mpmc_place& p, pid_t me) noexcept {
  retake_endpoint_lock(table_of(h), p, me);
}
inline int watch_list(mpmc_header& h, unsigned self, const endpoint_lock* (&out)[mpmc_max_holders]) noexcept {
  return watch_list(table_of(h), self, out);
}
inline mpmc_place adopt_pending(mpmc_header& h, const mpmc_place& pending, pid_t child, std::uint64_t start_time) noexcept {
  return adopt_pending(table_of(h), pending, child, start_time);
}
inline bool token_alive(mpmc_header& h, std::uint32_t token, const segment_id& seg) noexcept {
  return token_alive(table_of(h), token, seg);
}
inline std::uint32_t reap_role(mpmc_header& h, role r, const segment_id& seg) noexcept {
  return reap_role(table_of(h), r, seg);
}

}  // namespace detail
}  // namespace ipc
