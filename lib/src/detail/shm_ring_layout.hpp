// The shm ring's shared layout: what lives in /dev/shm/libipc.NAME, byte for byte.
//
// The segment is a layout_segment (lib/src/shared_memory.cpp): detail::layout_header first, then
// the ring's own fields, then `capacity` bytes of records. docs/shm_ring.md documents the offsets;
// the static_asserts below hold them.
#pragma once

#include "detail/endpoint_lock.hpp"
#include "detail/layout_header.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace ipc::detail {

inline constexpr std::uint32_t ring_magic = 0x52435049;  // "IPCR" in memory order
inline constexpr std::uint32_t ring_version = 3;  // 2: the creator's start time; 3: endpoint locks
inline constexpr std::uint32_t wrap_marker = 0xffffffffU;
inline constexpr std::uint64_t record_header = 8;
inline constexpr int max_holders = 7;
inline constexpr std::uint64_t min_capacity = 4096;
inline constexpr std::uint64_t max_capacity = std::uint64_t{1} << 30;

// One process attached in a role. start_time (clock ticks since boot, /proc/PID/stat field 22)
// tells a live process from a later one that reused the pid.
// A fork-pending slot is reserved by the parent just before fork() (pid = the parent's) and turned
// into the child's own slot by the child, so the role never looks abandoned in between.
struct holder_slot {
  std::atomic<std::int32_t> pid;
  std::atomic<std::uint32_t> fork_pending;
  std::atomic<std::uint64_t> start_time;
};

// Who holds one role. The holders change only under `lock` (a pid, taken over when it is dead);
// `closed` is set when the last holder leaves or is found dead, and cleared by the next attach.
// endpoint_locks[i] is held by holders[i] from attach to detach (endpoint_lock.hpp): the word the
// peer's idle wait includes, so the kernel wakes it when that holder dies.
struct alignas(64) role_block {
  std::atomic<std::int32_t> lock;
  std::atomic<std::uint32_t> closed;
  std::atomic<std::uint32_t> attaches;
  std::uint32_t reserved;
  holder_slot holders[max_holders];
  endpoint_lock endpoint_locks[max_holders];
};

// The whole layout: this header, then `capacity` bytes of records. head and tail count bytes
// since creation (never wrapped); position = index & (capacity - 1).
struct ring_header {
  layout_header base;
  std::uint64_t capacity;
  std::uint64_t max_message;
  alignas(64) std::atomic<std::uint64_t> head;  // written by the sender only
  alignas(64) std::atomic<std::uint64_t> tail;  // written by the receiver only
  alignas(64) std::atomic<std::uint32_t> data_seq;           // futex: bumped when records were added
  std::atomic<std::uint32_t> receiver_sleeping;              // 1 while the receiver may sleep on data_seq
  alignas(64) std::atomic<std::uint32_t> space_seq;          // futex: bumped when space was freed
  std::atomic<std::uint32_t> sender_wants;                   // bytes the sleeping sender needs (0: awake)
  // 1 once shm_ring::remove() unlinked the name on purpose (the handles go on anonymously);
  // an unlink without it (rm /dev/shm/…) is errc::removed for the sender. In what was padding:
  // zero in every ring, so the layout version is unchanged.
  std::atomic<std::uint32_t> unlinked_on_purpose;
  role_block sender;
  role_block receiver;
};
static_assert(sizeof(ring_header) % 64 == 0);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic<std::int32_t>::is_always_lock_free);

// Layout v3 offsets, relied on by docs/shm_ring.md and the corruption tests that edit a raw mapping.
static_assert(offsetof(ring_header, capacity) == 48);
static_assert(offsetof(ring_header, head) == 64);
static_assert(offsetof(ring_header, tail) == 128);
static_assert(offsetof(ring_header, unlinked_on_purpose) == 264);
static_assert(offsetof(ring_header, sender) == 320);
static_assert(sizeof(role_block) == 448);
static_assert(sizeof(ring_header) == 1216);

}  // namespace ipc::detail
