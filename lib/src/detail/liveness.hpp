// Whether a process is alive, safe against pid reuse: a pid plus its start time (clock ticks since
// boot, /proc/PID/stat field 22) names one process for ever; a later process with the same pid has
// another start time. Everything here is async-signal-safe enough for a fork child (no allocation).
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

/// True when pid exists, is not a zombie, and (when both are known, i.e. non-zero) has start_time.
bool alive(pid_t pid, std::uint64_t start_time) noexcept;

/// A file's identity (st_dev, st_ino), to find its mappings in /proc/PID/maps.
struct segment_id {
  std::uint64_t dev = 0;
  std::uint64_t ino = 0;
};

/// Whether pid still maps the segment. After fork+exec the child keeps its pid and start time but
/// not the mapping: it must not count as a holder. True when maps cannot be read (benefit of doubt).
bool maps_segment(pid_t pid, const segment_id& seg) noexcept;

}  // namespace ipc::detail
