// The shm broadcast channel's shared layout: what lives in /dev/shm/libipc.NAME, byte for byte.
//
// A layout_segment: detail::layout_header, then bcast_header (the head position, futex words, the
// holder table shared with the work queue, one cursor and one endpoint lock per holder place), then `slots` fixed-size
// cells of `slot_stride` bytes: an 8-byte state word, a 4-byte length, 4 reserved bytes, then
// max_message payload bytes. docs/shm-broadcast.md explains the protocol; the static_asserts
// below hold the offsets it documents.
#pragma once

#include "detail/endpoint_lock.hpp"
#include "detail/layout_header.hpp"
#include "detail/shm_mpmc_holders.hpp"
#include "detail/shm_mpmc_layout.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace ipc::detail {

inline constexpr std::uint32_t bcast_magic = 0x42435049;  // "IPCB" in memory order
// 2: endpoint locks after the cursors (a version 1 segment is refused as errc::incompatible,
// "layout version 1, expected 2": remove it and let it be created again).
inline constexpr std::uint32_t bcast_version = 2;
inline constexpr std::uint64_t bcast_min_slots = 2;
inline constexpr std::uint64_t bcast_max_slots = std::uint64_t{1} << 16;
inline constexpr std::uint64_t bcast_max_message = std::uint64_t{16} << 20;
inline constexpr std::uint64_t bcast_max_total = std::uint64_t{1} << 30;
inline constexpr std::uint64_t bcast_cell_header = 16;

// A cell's state word uses the work queue's encoding (slot_state: lap 32 bits, phase 2 bits,
// claimer token 30 bits), with the lap field one more than the lap of the cell's last claim, so
// the zero bytes of a new segment read "lap -1, nothing there":
//   writing(L+1, tok)  a publisher is copying position L*slots+i in; nobody reads it
//   full(L+1)          position L*slots+i holds a whole message
//   free(L+1)          position L*slots+i holds no message (its publisher died mid-write)
// A publisher of lap L claims a cell at lap field L that is not `writing` (CAS, recording its
// token); subscribers copy a `full` cell out and re-check the word (seqlock), so an overwrite
// under policy=drop_oldest is noticed and never delivered.

enum class bcast_policy : std::uint32_t { block = 0, drop_oldest = 1 };

using bcast_cell = slot_cell;  // the work queue's cell (shm_mpmc_layout.hpp)
static_assert(sizeof(bcast_cell) == bcast_cell_header);

// The next position a subscriber reads; meaningful while its holder place is a live receiver.
struct bcast_cursor {
  std::atomic<std::uint64_t> next;
  std::uint64_t reserved[7];
};
static_assert(sizeof(bcast_cursor) == 64);

struct bcast_header {
  layout_header base;
  std::uint64_t slots;        // a power of two
  std::uint64_t max_message;  // payload bytes per cell
  std::uint64_t slot_stride;  // bytes per cell: 16 + max_message rounded up to 64
  std::uint32_t policy;       // bcast_policy
  std::atomic<std::uint32_t> unlinked_on_purpose;  // 1 once remove() unlinked the name (detail/shm_link.hpp)
  alignas(64) std::atomic<std::uint64_t> head;       // next position a publisher claims (helped forward)
  alignas(64) std::atomic<std::uint32_t> data_seq;   // futex: bumped when a sleeper must look again
  std::atomic<std::uint32_t> data_waiting;           // 1: someone may sleep on data_seq (cleared by its waker)
  alignas(64) std::atomic<std::uint32_t> space_seq;  // futex: bumped when a waiting publisher must look again
  std::atomic<std::uint32_t> space_waiting;          // 1: a publisher may sleep on space_seq (cleared by its waker)
  std::atomic<std::uint64_t> space_wanted;           // the cursor a sleeping publisher waits for subscribers to reach
  alignas(64) std::atomic<std::uint32_t> live[2];    // registered holders per role (publisher, subscriber)
  std::atomic<std::uint32_t> ever[2];                // 1 once the role was attached
  std::atomic<std::uint64_t> torn_skipped;           // cells a dead publisher left half-written
  alignas(64) mpmc_holder holders[mpmc_max_holders];
  bcast_cursor cursors[mpmc_max_holders];            // per holder place (subscribers only)
  // endpoint_locks[i] is held by holders[i] while registered (endpoint_lock.hpp): a sleeper's wait
  // includes the locks of the endpoints it waits for, so the kernel wakes it when one dies or execs.
  endpoint_lock endpoint_locks[mpmc_max_holders];
};
static_assert(sizeof(bcast_header) % 64 == 0);
static_assert(offsetof(bcast_header, slots) == 48);
static_assert(offsetof(bcast_header, policy) == 72);
static_assert(offsetof(bcast_header, head) == 128);
static_assert(offsetof(bcast_header, data_seq) == 192);
static_assert(offsetof(bcast_header, space_seq) == 256);
static_assert(offsetof(bcast_header, live) == 320);
static_assert(offsetof(bcast_header, holders) == 384);
static_assert(offsetof(bcast_header, cursors) == 384 + 64 * 32);
static_assert(offsetof(bcast_header, endpoint_locks) == 384 + 64 * 32 + 64 * 64);
static_assert(sizeof(bcast_header) == 384 + 64 * 32 + 64 * 64 + 64 * 40);

/// The header's holder table: its places, counts and endpoint locks, and the two futex words a
/// joining or reaped holder bumps so that sleepers watch the right locks. Never throws.
inline holder_table table_of(bcast_header& h) noexcept {
  return {h.holders, h.live, h.ever, h.endpoint_locks, {&h.data_seq, &h.space_seq}};
}

}  // namespace ipc::detail
