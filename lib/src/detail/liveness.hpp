// The /proc readers behind the public liveness test (ipc::process_alive, <ipc/inspect.hpp>): a pid
// plus its start time (clock ticks since boot, /proc/PID/stat field 22) names one process for ever.
// Nothing here allocates, so a fork child may call it.
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace ipc::detail {

struct proc_status {
  bool exists = false;
  bool zombie = false;
  std::uint64_t start_time = 0;
};

/// State and start time from /proc/PID/stat, without allocating (also used right after fork).
/// exists=false when /proc has no such entry; falls back to kill(pid, 0) when /proc is unreadable.
proc_status read_proc(pid_t pid) noexcept;

/// A file's identity (st_dev, st_ino), to find its mappings in /proc/PID/maps.
struct segment_id {
  std::uint64_t dev = 0;
  std::uint64_t ino = 0;
};

/// Whether pid still maps the segment. After fork+exec the child keeps its pid and start time but
/// not the mapping: it must not count as a holder. True when maps cannot be read (benefit of doubt).
bool maps_segment(pid_t pid, const segment_id& seg) noexcept;

}  // namespace ipc::detail
