// Whether a shm segment a handle maps is still the one its name denotes: the name check every shm
// mode (the SPSC ring, the work queue, broadcast) shares. `rm /dev/shm/libipc.NAME` under a running
// pair leaves both on an anonymous segment that no later peer can reach; the sender notices within
// ~100 ms of sends (fstat: st_nlink 0) and fails with errc::removed, and reopen() on each side then
// meets on the segment the name denotes now. docs/shm_ring.md, "A name removed under a running pair".
#pragma once

#include "detail/liveness.hpp"

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ipc::detail {

/// How often a sender asks fstat whether its segment is still linked.
inline constexpr std::int64_t link_check_interval_ns = 100'000'000;

/// CLOCK_MONOTONIC_COARSE in ns: a vDSO read of the last tick (a few ns, a jiffy's resolution),
/// cheap enough for every send to ask whether the name check is due.
std::int64_t coarse_now_ns() noexcept;

/// Whether the name check is due (next_ns: what check_linked() left). Never throws.
inline bool link_check_due(std::int64_t next_ns) noexcept { return coarse_now_ns() >= next_ns; }

/// The name check: fstat(fd). Unlinked (st_nlink 0) while `on_purpose` is 0 (remove() sets it: the
/// handles then go on anonymously on purpose): sets next_ns to 0, so every later send fails the same
/// way until reopen(), and throws errc::removed naming `call`, `channel` and `object`. Else the next
/// check is due in link_check_interval_ns. Throws std::system_error (fstat) naming `object`.
void check_linked(int fd, const std::atomic<std::uint32_t>& on_purpose, std::int64_t& next_ns, std::string_view call,
                  const std::string& channel, const std::string& object);

/// reopen()'s test: nullopt while the segment is still the one the name denotes (reopen() then
/// keeps everything: a subscription, a cursor, a role); once unlinked, its permissions, for a
/// replacement like it. Throws std::system_error (fstat) naming `object`.
std::optional<mode_t> unlinked_mode(int fd, const std::string& object);

/// The segment's identity (st_dev, st_ino), as a holder's /proc/PID/maps shows it. Throws
/// std::system_error (fstat) naming `object`.
segment_id identify_segment(int fd, const std::string& object);

/// False when the name /dev/shm/<posix_name> now denotes another segment than `id` (made by a
/// peer after ours was unlinked): remove() must leave that one alone. True when it is ours or absent.
/// Throws std::bad_alloc.
bool name_denotes(const std::string& posix_name, segment_id id);

/// remove() and discard() of every shm mode: unlinks /dev/shm/libipc.<base_name> only while the
/// name denotes the segment `id` (absent, or a newer segment under the name: nothing is done).
/// `on_purpose` (remove() of an attached handle): stored 1 before the unlink, so the senders' name
/// check lets them go on with the anonymous segment; null (discard(), or a closed handle): the
/// attached senders get errc::removed and move on with reopen(). Throws std::system_error naming
/// the object.
void unlink_if_denotes(const std::string& base_name, segment_id id, std::atomic<std::uint32_t>* on_purpose);

}  // namespace ipc::detail
