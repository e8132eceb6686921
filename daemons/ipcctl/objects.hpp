// Discovery of every kernel object the toolkit made, and their removal: the one
// module that knows where objects live and how to judge them.
//
//   auto objs = ipcctl::discover(ipc::runtime_dir());
//   for (const auto& o : objs) std::cout << o.kind << ' ' << o.name << '\n';
//   ipcctl::remove_group(ipcctl::select(objs, "msgq:demo"));     // IPC_RMID, then the key file
//   for (const auto& g : ipcctl::stale_groups(objs)) ...;        // what `gc` removes
//
// Sources:
//  - key files NAME.EXT in the runtime directory, EXT one of msgq, sem, sembuf, shm: every System V
//    object whose key is ftok(key file, any proj id) belongs to that file (ftok builds the low 24 bits
//    of a key from the file's inode and device, the top 8 from the proj id). Objects are enumerated
//    from /proc/sysvipc/{msg,sem,shm} (the kernel's IPC_STAT view of every object, readable without
//    rights on them); semaphore pids come from semctl(GETPID).
//  - FIFOs in the runtime directory (lstat; holders: processes with it open, from /proc/PID/fd).
//  - POSIX segments /dev/shm/libipc.* (fstat; creator pid from the layout_header at offset 0 when it
//    is published and consistent with the file; holders from /proc/PID/maps and /proc/PID/fd).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace ipcctl {

/// One kernel object (or orphan key file) the toolkit made.
struct ipc_object {
  std::string kind;    ///< "msgq", "semset", "sysv-shm", "posix-shm", "fifo", "keyfile"
  std::string family;  ///< key-file suffix (msgq, sem, sembuf, shm), "fifo" or "posix-shm"
  std::string name;    ///< the name a person uses: key file stem, FIFO name, segment name
  std::filesystem::path path;       ///< key file, FIFO or /dev/shm file
  std::string key;                  ///< "0x51020304" for System V objects, else empty
  int id = -1;                      ///< msqid / semid / shmid, else -1
  uid_t uid = 0;
  mode_t mode = 0;
  std::vector<pid_t> pids;          ///< creator (shm cpid, layout header), else last users (lspid/lrpid, sempid)
  bool pids_are_creator = false;    ///< pids holds the creator rather than last users
  int attached = -1;                ///< shm_nattch / processes holding it; -1 when nothing counts it
  unsigned long long size = 0;      ///< bytes (segments, queued bytes) or semaphores in a set
  long age_seconds = 0;             ///< since creation or last change
};

/// True when pid names a running process (kill(pid, 0) succeeds or fails with EPERM).
bool pid_alive(pid_t pid) noexcept;

/// Every object in dir (the runtime directory) and /dev/shm/libipc.*. Throws std::system_error when
/// dir or /proc/sysvipc cannot be read.
std::vector<ipc_object> discover(const std::filesystem::path& dir);

/// What gc would make of an object.
enum class verdict { live, stale, unknown };
/// live: someone attached or a recorded pid runs; stale: its creator/users are dead and nobody is
/// attached; unknown: nothing records who made or used it (left alone by gc).
verdict judge(const ipc_object& o);

/// The objects of `spec` ("NAME" or "FAMILY:NAME"; FAMILY may also be a kind or a channel scheme:
/// sem matches sem and sembuf, shm matches shm and posix-shm). Throws std::runtime_error when none
/// matches, or when a bare NAME matches objects of several families.
std::vector<ipc_object> select(const std::vector<ipc_object>& all, std::string_view spec);

/// Removes the objects (IPC_RMID, unlink) and then the key files they came from. A vanished object
/// (ENOENT, EINVAL, EIDRM) counts as removed. Throws std::system_error naming the call and the
/// object, ipc::errc::not_owner when an object belongs to another user and we are not root.
void remove_group(const std::vector<ipc_object>& group);

/// The groups gc removes: one per key file (all its objects stale, or stale and unknown with at
/// least one stale), each FIFO / POSIX segment / orphan key file judged stale.
std::vector<std::vector<ipc_object>> stale_groups(const std::vector<ipc_object>& all);

/// The owner's user name (the number when there is no such user).
std::string user_name(uid_t uid);

}  // namespace ipcctl
