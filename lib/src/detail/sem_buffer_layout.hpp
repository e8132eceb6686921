// The sem channel's shared layout, shared by sem_buffer.cpp, the inspector (inspect.cpp) and the
// tests that damage a buffer on purpose.
#pragma once

#include "layout_header.hpp"

#include <cstddef>
#include <cstdint>

namespace ipc::detail {

inline constexpr std::uint32_t sem_buffer_magic = 0x53454d42;  // "SEMB"
/// 2: the layout header records the creator's start time; 3: the indices live in the segment,
/// guarded by the mutex, with a `busy` semaphore (docs/semaphore-shm.md); 4: the segment records
/// the id of its semaphore set, so segment and set are one unit (docs/crash-behaviour.md).
inline constexpr std::uint32_t sem_buffer_version = 4;

// The segment: this header, then `slots` slots of `slot_size` bytes (u32 length + payload).
// The indices run modulo 2 x slots (so full and empty differ) and are touched only under the
// mutex; the counts live in the semaphore set. A holder killed between its index store and its
// commit semop leaves `busy` raised, which the next holder sees (docs/semaphore-shm.md).
struct sem_buffer_header {
  layout_header base;
  std::uint32_t slots;
  std::uint32_t slot_size;
  std::uint32_t head;    // next message to read, mod 2 x slots
  std::uint32_t tail;    // next slot to write, mod 2 x slots
  std::int32_t sem_id;   // the unit's semaphore set (semget id), written by the segment's creator
  std::uint32_t unused;  // zero
};

/// The slots start here, a cache line after the segment's start.
inline constexpr std::size_t sem_buffer_header_bytes = (sizeof(sem_buffer_header) + 63) / 64 * 64;

}  // namespace ipc::detail
