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
  /// Registers ring for the fork hooks (installs them on first use). Throws std::bad_alloc.
  static void add(shm_ring* ring);
  /// Unregisters ring. Never throws.
  static void erase(shm_ring* ring) noexcept;

 private:
  static void prepare() noexcept;
  static void parent() noexcept;
  static void child() noexcept;
};

namespace detail {

[[nodiscard]] role_block& block_of(ring_header& h, role r) noexcept;
[[nodiscard]] const char* role_name(role r) noexcept;

/// Registers `me` (with its start time) as a holder of r. Dead holders are dropped first.
/// Throws std::system_error EBUSY naming object and the pid of a live holder, or when the role
/// lock is held for 2 s by a live (stopped) process.
void attach_role(ring_header& h, role r, const segment_id& seg, pid_t me, std::string_view object);

/// Removes `me` from r. Returns true when nobody holds r any more (the peer must be woken to see
/// `closed`). Never throws: a stuck role lock leaves the slot for the peer's liveness checks.
bool detach_role(ring_header& h, role r, pid_t me, std::string_view object) noexcept;

/// Whether the role in b is gone for good: attached once and now nobody holds it, or every holder
/// is dead. A role never attached is not gone (the receiver may start first). The /proc probes run
/// at most every 10 ms (next_probe) so that a polling try_receive stays cheap.
/// Throws std::system_error EBUSY when the role lock is stuck for 2 s.
bool peer_gone(role_block& b, const segment_id& seg, pid_t me, std::string_view object,
               std::chrono::steady_clock::time_point& next_probe);

}  // namespace detail
}  // namespace ipc
