// Who holds the shm ring's sender and receiver roles: attach (refusing a second live holder),
// detach, the peer-gone test, and the fork hooks that register a fork() child as a holder of the
// roles it inherited. The holder slots live in the ring's header (shm_ring_layout.hpp); liveness
// is pid + start time (liveness.hpp) plus "still maps the segment".
#pragma once

#include <ipc/channel.hpp>

#include "detail/liveness.hpp"
#include "detail/shm_ring_layout.hpp"

#include <sys/types.h>

#include <chrono>
#include <string_view>

namespace ipc {

class shm_ring;

// Every live endpoint of this process, so that a fork() child is registered as a holder of the
// roles it inherited: the child may be the one that keeps using them (channel_pair tests, the
// producer that forks its consumer), and it must count as alive while it does.
struct shm_ring_fork_registry {
  /// Registers ring for the fork hooks (installed while the library loads). Throws std::bad_alloc.
  static void add(shm_ring* ring);
  /// Unregisters ring. Never throws.
  static void erase(shm_ring* ring) noexcept;

  /// The pthread_atfork handlers (prepare, parent, child).
  static void prepare() noexcept;
  static void parent() noexcept;
  static void child() noexcept;
};

namespace detail {

[[nodiscard]] role_block& block_of(ring_header& h, role r) noexcept;
[[nodiscard]] const char* role_name(role r) noexcept;

/// Registers `me` (with its start time) as a holder of r, holding a slot's endpoint lock on the
/// calling thread, and wakes the other role's waiters so they watch it. Dead holders are dropped first.
/// Throws std::system_error EBUSY naming object and the pid of a live holder, or when the role
/// lock is held for 2 s by a live (stopped) process.
void attach_role(ring_header& h, role r, const segment_id& seg, pid_t me, std::string_view object);

struct detach_result {
  bool closed = false;         // nobody holds r any more: the peer must be woken to see `closed`
  bool lock_released = true;   // false: our endpoint lock is still held (by another thread of
                               // ours, or a stuck role lock): keep the mapping (park_until_exit)
};

/// Removes `me` from r and releases its endpoint lock. Never throws: a stuck role lock leaves the
/// slot for the peer's liveness checks.
detach_result detach_role(ring_header& h, role r, pid_t me, std::string_view object) noexcept;

/// When the thread that held `me`'s endpoint lock for r has exited, takes it on the calling thread
/// (and wakes the peer's waiters so they stop sleeping in slices). Never blocks, never throws.
void retake_endpoint_lock(ring_header& h, role r, pid_t me) noexcept;

/// The endpoint locks of r's current holders, for wait_data_or_death. Returns how many. Never throws.
int watch_list(ring_header& h, role r, const endpoint_lock* (&out)[max_holders]) noexcept;

/// Whether the role in b is gone for good: attached once and now nobody holds it, or every holder
/// is dead. A role never attached is not gone (the receiver may start first). The /proc probes run
/// at most every 10 ms (next_probe) so that a polling try_receive stays cheap.
/// Throws std::system_error EBUSY when the role lock is stuck for 2 s.
bool peer_gone(role_block& b, const segment_id& seg, pid_t me, std::string_view object,
               std::chrono::steady_clock::time_point& next_probe);

}  // namespace detail
}  // namespace ipc
