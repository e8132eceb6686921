// The toolkit's liveness test: a process is alive when /proc/PID exists, is not a zombie and has
// the start time we recorded (clock ticks since boot, /proc/PID/stat field 22), so a reused pid
// never passes for the process we knew.
#pragma once

#include <ipc/config.hpp>

#include <sys/types.h>

#include <cstdint>

namespace ipc::detail {

/// pid's start time (clock ticks since boot), 0 when it cannot be read. Never blocks, never
/// allocates (safe right after fork).
IPC_API std::uint64_t process_start_time(pid_t pid) noexcept;

/// True while pid runs and, when start_time != 0, is the process that started then.
IPC_API bool process_alive(pid_t pid, std::uint64_t start_time) noexcept;

}  // namespace ipc::detail
