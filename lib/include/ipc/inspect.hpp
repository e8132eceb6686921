// What tools need to see the toolkit's objects without using them: the one liveness test
// (pid + start time, safe against pid reuse), published layout headers, and the list of every
// object the toolkit made with the facts about it (who uses it, what it holds). Facts only: what
// to do about an object (ipcctl gc's rules) is the tool's business.
//
//   for (const auto& o : ipc::list_objects()) {
//     std::cout << o.kind << ' ' << o.name << ' ' << o.contents.messages << " queued\n";
//     for (const auto& u : o.users) if (u.alive) std::cout << "  used by " << u.pid << " (" << u.how << ")\n";
//   }
//   if (!ipc::process_alive(ref.pid, ref.start_time)) ...;   // a pid that was reused is not alive
#pragma once

#include <ipc/config.hpp>

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace ipc {

// ---------------------------------------------------------------- liveness

/// One process, named so that a later process reusing the pid is not mistaken for it.
struct process_ref {
  pid_t pid = 0;
  std::uint64_t start_time = 0;  ///< clock ticks since boot, /proc/PID/stat field 22; 0 = unknown
};

/// pid's identity now; start_time 0 when /proc cannot tell (pid 0 when there is no such process).
/// Never blocks, never throws, never allocates (usable right after fork()).
IPC_API process_ref process_identity(pid_t pid) noexcept;

/// The toolkit's liveness test: pid exists, is not a zombie, and, when start_time is known (non-zero)
/// and /proc tells pid's, they are equal. Reads /proc/PID/stat (kill(pid, 0) when /proc is
/// unreadable). Never blocks, never throws, never allocates.
IPC_API bool process_alive(pid_t pid, std::uint64_t start_time) noexcept;
inline bool process_alive(const process_ref& p) noexcept { return process_alive(p.pid, p.start_time); }

/// The liveness test for a pid recorded with a wall-clock time at which it ran (a System V
/// object's last operation, a status file's last write): process_alive(pid, 0), and the process
/// started no later than ran_at (+2 s for the one-second clocks involved), so a later process that
/// reused the pid is dead. ran_at <= 0: plain process_alive(pid, 0). Never blocks, never throws.
IPC_API bool process_alive_at(pid_t pid, std::int64_t ran_at_unix_seconds) noexcept;

// ---------------------------------------------------------------- published headers

/// The header every shared layout of the toolkit starts with, as a tool reads it.
struct layout_info {
  std::uint32_t magic = 0;
  std::uint32_t version = 0;
  std::uint32_t header_size = 0;
  std::uint64_t total_size = 0;
  process_ref creator;
  uid_t creator_uid = 0;
  std::uint64_t created_unix_ns = 0;
  std::string kind;  ///< "shm_ring", "shm_mpmc", "shm_broadcast", "shared_value", "sem_buffer", or "unknown" for another magic
};

/// Reads the published header at offset 0 of fd (e.g. a /dev/shm file opened read-only) with
/// pread: never mapped, so a truncated or hostile file can neither be read past its end nor raise
/// SIGBUS. nullopt when it is not published (yet) or its sizes do not fit file_size. Never throws.
IPC_API std::optional<layout_info> read_layout_header(int fd, std::uint64_t file_size) noexcept;

// ---------------------------------------------------------------- objects

/// A process that uses, used or made an object, judged by the liveness test when listed.
struct process_use {
  pid_t pid = 0;
  std::string how;      ///< "creator", "last msgsnd", "last msgrcv", "last semop", "attached", "has it open",
                        ///< "blocked in msgrcv", "blocked in semop", "sender role", "receiver role" (ring,
                        ///< work queue), "publisher role", "subscriber role" (broadcast), ...
  bool alive = false;   ///< by process_alive / process_alive_at, at listing time
  bool current = false; ///< a use going on right now (attached, open, blocked, holding a role)
};

/// What an object holds.
struct object_contents {
  bool known = false;          ///< false: cannot be told without using the object (a raw segment)
  /// queued messages, ring records, filled slots, semaphores not 0; a shm work queue's messages
  /// queued (claimed by senders, not yet by receivers); a broadcast channel's oldest unread backlog
  /// (what its slowest registered subscriber has still to read; 0 without subscribers: a new one
  /// starts at the next message published)
  std::uint64_t messages = 0;
  std::uint64_t bytes = 0;     ///< queued bytes (msgq cbytes, ring head - tail, a work queue's whole messages), 0 for semaphores and broadcast
  bool is_value = false;       ///< a shared_value / shared_array: the payload itself is the data
  int subscribers = -1;        ///< a broadcast channel's registered subscribers (dead ones until found dead); -1 otherwise
};

/// One kernel object (or orphan key file) the toolkit made, with what is known about it.
struct object_info {
  std::string kind;    ///< "msgq", "semset", "sysv-shm", "posix-shm", "fifo", "keyfile"
  std::string family;  ///< key-file suffix ("msgq", "sem", "sembuf", "shm"), "fifo" or "posix-shm"
  std::string layout;  ///< posix-shm: the kind its header names ("shm_ring", "shared_value", ...)
  std::string name;    ///< the name a person uses: key file stem, FIFO name, segment name
  std::filesystem::path path;  ///< key file, FIFO or /dev/shm file
  std::string key;             ///< "0x51020304" for System V objects, else empty
  int id = -1;                 ///< msqid / semid / shmid, else -1
  uid_t uid = 0;
  mode_t mode = 0;
  std::vector<process_use> users;  ///< creator, last users, attachers, blocked waiters, role holders
  int attached = -1;           ///< shm_nattch, or processes that map/open it; -1 when nothing counts it
  int waiting = 0;             ///< processes blocked on a semaphore of the set (semncnt + semzcnt)
  object_contents contents;
  std::uint64_t size = 0;      ///< bytes of a segment, semaphores in a set, queued bytes of a queue
  long age_seconds = 0;        ///< since creation or the last change
  /// Unlinked but still mapped or open (ipcs' "dest"): a POSIX segment (its layout, contents and
  /// role holders read through a /proc/PID/fd or map_files handle when one reaches it) or a FIFO.
  /// Listed beside a new object of the same name; cannot be removed again.
  bool removed = false;
};

struct list_options {
  std::filesystem::path runtime_dir;  ///< empty: ipc::runtime_dir()
  /// false: POSIX segments of this user only (the runtime directory is per user); true: every
  /// /dev/shm/libipc.* on the machine.
  bool all_segments = false;
};

/// Every toolkit object of the runtime directory (key files, the System V objects whose keys they
/// make, FIFOs) and the POSIX segments /dev/shm/libipc.*, sorted by path. Reads /proc/sysvipc,
/// /proc/PID/{maps,fd,task/*/syscall} and published headers; never attaches or opens an object
/// for use (semaphore values and waiters via semctl GETVAL/GETNCNT/GETZCNT/GETPID). Never blocks.
/// Throws std::system_error naming the call when the runtime directory or /proc/sysvipc cannot be read.
IPC_API std::vector<object_info> list_objects(const list_options& options = {});

}  // namespace ipc
