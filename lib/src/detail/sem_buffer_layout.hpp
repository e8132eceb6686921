// The sem channel's header identity, shared by sem_buffer.cpp and the inspector (inspect.cpp).
#pragma once

#include <cstdint>

namespace ipc::detail {

inline constexpr std::uint32_t sem_buffer_magic = 0x53454d42;  // "SEMB"
/// 2: the layout header records the creator's start time; 3: the indices live in the segment,
/// guarded by the mutex, with a `busy` semaphore (docs/semaphore-shm.md).
inline constexpr std::uint32_t sem_buffer_version = 3;

}  // namespace ipc::detail
