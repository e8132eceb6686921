// Who is attached to an shm MPMC queue: the holder table in its header (shm_mpmc_layout.hpp).
// A place is taken with a CAS on its pid and named by (index, generation); a slot claim records
// that name, so "is the claimer alive" is one table look-up plus the toolkit's liveness test
// (pid + start time) and "does it still map the segment" (a fork+exec child keeps the pid).
#pragma once

#include <ipc/channel.hpp>

#include "detail/liveness.hpp"
#include "detail/shm_mpmc_layout.hpp"

#include <sys/types.h>

#include <cstdint>
#include <string_view>

namespace ipc {

class shm_mpmc;

// Every live shm_mpmc handle of this process, so that a fork() child becomes an endpoint of its
// own (with its own place in the table) before the parent can drop its copy: the role never looks
// abandoned in between.
struct shm_mpmc_fork_registry {
  /// Registers q for the fork hooks (installed while the library loads). Throws std::bad_alloc.
  static void add(shm_mpmc* q);
  /// Unregisters q. Never throws.
  static void erase(shm_mpmc* q) noexcept;
  static void prepare() noexcept;
  static void parent() noexcept;
  static void child() noexcept;
};

namespace detail {

struct mpmc_place {
  unsigned index = 0;
  std::uint32_t gen = 0;  // odd while registered
};

/// Takes a free place for pid as role r (dead holders are reaped first when the table is full),
/// holding its endpoint lock on the calling thread unless fork_pending (the child takes it), and
/// wakes every waiter so it watches the new lock too. Throws std::system_error EBUSY naming
/// object when 64 live endpoints hold every place.
mpmc_place register_holder(mpmc_header& h, role r, pid_t pid, std::uint64_t start_time, bool fork_pending,
                           const segment_id& seg, std::string_view object);

/// Gives the place back, releasing its endpoint lock. Returns true when it was the last holder of
/// its role; false when the place was already reaped. *lock_released (if given) is false when the
/// lock stays held by another thread of ours: the caller keeps the mapping (park_until_exit).
/// Never throws.
bool release_holder(mpmc_header& h, const mpmc_place& p, bool* lock_released = nullptr) noexcept;

/// Takes back the endpoint lock of place p when the thread that held it has exited (then wakes
/// the waiters). Never blocks, never throws.
void retake_endpoint_lock(mpmc_header& h, const mpmc_place& p, pid_t me) noexcept;

/// The endpoint locks of every registered place but `self`, for wait_data_or_death. Returns how
/// many. Never throws.
int watch_list(mpmc_header& h, unsigned self, const endpoint_lock* (&out)[mpmc_max_holders]) noexcept;

/// Turns a fork-pending place (reserved by the parent) into the calling child's own: new pid,
/// start time, generation and its endpoint lock, held by the calling thread. Returns the place,
/// or nullopt-like {index, 0} when it was reaped (or its lock could not be taken).
mpmc_place adopt_pending(mpmc_header& h, const mpmc_place& pending, pid_t child, std::uint64_t start_time) noexcept;

/// Whether the holder a claim token names is still attached and alive. A dead one is reaped.
bool token_alive(mpmc_header& h, std::uint32_t token, const segment_id& seg) noexcept;

/// Reaps the dead holders of role r; returns the number of its live holders afterwards.
std::uint32_t reap_role(mpmc_header& h, role r, const segment_id& seg) noexcept;

}  // namespace detail
}  // namespace ipc
