// The shm MPMC work queue's shared layout: what lives in /dev/shm/libipc.NAME, byte for byte.
//
// A layout_segment: detail::layout_header, then mpmc_header (positions, futex words, the holder
// table), then `slots` fixed-size slots of `slot_stride` bytes: an 8-byte state word, a 4-byte
// length, 4 reserved bytes, then max_message payload bytes. docs/shm-modes.md explains the
// protocol; the static_asserts below hold the offsets it documents.
#pragma once

#include "detail/endpoint_lock.hpp"
#include "detail/layout_header.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace ipc::detail {

inline constexpr std::uint32_t mpmc_magic = 0x4d435049;  // "IPCM" in memory order
inline constexpr std::uint32_t mpmc_version = 2;  // 2: endpoint locks
inline constexpr int mpmc_max_holders = 64;
inline constexpr std::uint64_t mpmc_min_slots = 2;
inline constexpr std::uint64_t mpmc_max_slots = std::uint64_t{1} << 16;
inline constexpr std::uint64_t mpmc_max_message = std::uint64_t{16} << 20;
inline constexpr std::uint64_t mpmc_max_total = std::uint64_t{1} << 30;
inline constexpr std::uint64_t mpmc_slot_header = 16;

// A slot's state word: lap (high 32 bits: position / slots, truncated), phase (2 bits), and for
// the claimed phases the claimer's token: holder index (6 bits) and holder generation (24 bits).
//   free(lap)          the producer of position lap*slots+i may claim it
//   writing(lap, tok)  a producer is copying its message in; nobody else may read it
//   full(lap)          a whole message waits for the consumer of that position
//   reading(lap, tok)  a consumer is copying it out; afterwards it is free(lap + 1)
// A claim is a CAS on this word, so a process killed while holding one leaves its token behind;
// whoever finds the token's holder dead moves the slot on (docs/shm-modes.md, "Crash safety").
enum class slot_phase : std::uint32_t { free = 0, writing = 1, full = 2, reading = 3 };

struct slot_state {
  std::uint32_t lap = 0;
  slot_phase phase = slot_phase::free;
  std::uint32_t token = 0;  // (holder index << 24) | generation, 30 bits

  static constexpr std::uint32_t token_bits = 30;
  static constexpr std::uint32_t gen_mask = 0xffffff;

  static constexpr slot_state decode(std::uint64_t w) noexcept {
    return {static_cast<std::uint32_t>(w >> 32), static_cast<slot_phase>((w >> token_bits) & 3U),
            static_cast<std::uint32_t>(w & ((1U << token_bits) - 1U))};
  }
  [[nodiscard]] constexpr std::uint64_t encode() const noexcept {
    return (std::uint64_t{lap} << 32) | (std::uint64_t{static_cast<std::uint32_t>(phase)} << token_bits) | token;
  }
  static constexpr std::uint32_t make_token(unsigned index, std::uint32_t gen) noexcept {
    return (static_cast<std::uint32_t>(index) << 24) | (gen & gen_mask);
  }
  [[nodiscard]] constexpr unsigned holder_index() const noexcept { return token >> 24; }
  [[nodiscard]] constexpr std::uint32_t holder_gen() const noexcept { return token & gen_mask; }
};

// One cell of either slot queue (the work queue's slot, broadcast's cell): a state word in
// slot_state's encoding, the length its claimer wrote before publishing, then the payload.
struct slot_cell {
  std::atomic<std::uint64_t> state;
  std::atomic<std::uint32_t> length;  // written by the claimer before `full` is published
  std::uint32_t reserved;
  // max_message payload bytes follow
};
static_assert(sizeof(slot_cell) == mpmc_slot_header);
using mpmc_slot = slot_cell;

// One attached endpoint. gen is odd while registered, even while free: registering and releasing
// each add one, so a token's generation names one registration and never a later one.
struct mpmc_holder {
  std::atomic<std::int32_t> pid;
  std::atomic<std::uint32_t> gen;
  std::atomic<std::uint64_t> start_time;
  std::atomic<std::uint32_t> role;          // 0 sender, 1 receiver
  std::atomic<std::uint32_t> fork_pending;  // reserved by a parent for the child of a fork() in progress
  std::uint64_t reserved;
};
static_assert(sizeof(mpmc_holder) == 32);

struct mpmc_header {
  layout_header base;
  std::uint64_t slots;        // a power of two
  std::uint64_t max_message;  // payload bytes per slot
  std::uint64_t slot_stride;  // bytes per slot: 16 + max_message rounded up to 64
  std::uint64_t reserved0;
  alignas(64) std::atomic<std::uint64_t> enqueue_pos;  // next position a producer claims (helped forward)
  alignas(64) std::atomic<std::uint64_t> dequeue_pos;  // next position a consumer claims (helped forward)
  alignas(64) std::atomic<std::uint32_t> data_seq;     // futex: bumped when a message was published
  std::atomic<std::uint32_t> receivers_sleeping;       // receivers that may sleep on data_seq
  alignas(64) std::atomic<std::uint32_t> space_seq;    // futex: bumped when a slot was freed
  std::atomic<std::uint32_t> senders_sleeping;         // senders that may sleep on space_seq
  alignas(64) std::atomic<std::uint32_t> live[2];      // registered holders per role (sender, receiver)
  std::atomic<std::uint32_t> ever[2];                  // 1 once the role was attached
  std::atomic<std::uint32_t> ended;                    // 1 after end_stream(): receivers drain, then end
  std::atomic<std::uint32_t> unlinked_on_purpose;      // 1 once remove() unlinked the name (detail/shm_link.hpp)
  std::atomic<std::uint64_t> torn_skipped;             // slots a dead producer left half-written
  std::atomic<std::uint64_t> lost_in_receivers;        // messages a receiver died while copying out
  alignas(64) mpmc_holder holders[mpmc_max_holders];
  // endpoint_locks[i] is held by holders[i] while registered (endpoint_lock.hpp): every waiter's
  // sleep includes the others' locks, so the kernel wakes it when any endpoint dies or execs.
  endpoint_lock endpoint_locks[mpmc_max_holders];
};
static_assert(sizeof(mpmc_header) % 64 == 0);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(offsetof(mpmc_header, slots) == 48);
static_assert(offsetof(mpmc_header, enqueue_pos) == 128);
static_assert(offsetof(mpmc_header, dequeue_pos) == 192);
static_assert(offsetof(mpmc_header, holders) == 448);
static_assert(offsetof(mpmc_header, endpoint_locks) == 448 + 64 * 32);
static_assert(sizeof(mpmc_header) == 448 + 64 * 32 + 64 * 40);

}  // namespace ipc::detail
