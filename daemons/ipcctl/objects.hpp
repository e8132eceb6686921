// ipcctl's rules for the toolkit's objects, over the facts ipc::list_objects gives (ipc/inspect.hpp):
// which objects gc keeps and why, what it removes, how `rm` finds one, and the removal itself.
//
//   auto claims = ipcctl::daemon_claims(ipcctl::read_status(ipc::runtime_dir()));
//   for (const auto& g : ipcctl::judge_all(ipc::list_objects(), claims)) {
//     if (ipcctl::gc_removes(g, /*force=*/false)) ipcctl::remove_group(g.objects);
//   }
//
// gc's rules (docs/ipcctl.md): an object is kept when a live process holds, uses or is blocked on
// it, when it holds data (unless --force), or when nothing records who uses it; it is removed only
// when it is provably abandoned (every recorded user dead, nobody attached or waiting) and empty.
#pragma once

#include "status.hpp"

#include <ipc/inspect.hpp>

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

namespace ipcctl {

using ipc::object_info;

/// A running daemon's channel, from its status file: whatever that channel names is in use.
struct daemon_claim {
  std::string channel;  ///< "msgq:demo"
  pid_t pid = 0;
  std::string file;     ///< the status file
};

/// The claims of every daemon whose status file names a live pid (the liveness test, at the file's
/// last write).
std::vector<daemon_claim> daemon_claims(const std::vector<status_entry>& status);

/// What gc makes of an object (or a key file's group of objects), most protective first.
enum class verdict_kind {
  in_use,      ///< a live process holds, uses or waits on it: never removed by gc
  unknown,     ///< nothing records who made or used it: never removed by gc (use `ipcctl rm`)
  holds_data,  ///< abandoned but not empty: removed only by gc --force
  abandoned,   ///< every recorded user dead, nobody attached or waiting, and empty: gc removes it
};
struct verdict {
  verdict_kind kind = verdict_kind::abandoned;
  std::string reason;  ///< e.g. "pid 42 (last msgrcv) is alive", "5 messages, 520 bytes queued"
};

/// The word `list` shows for a verdict: keep, data, unknown, remove.
std::string_view verdict_word(verdict_kind k) noexcept;

/// The verdict on one object.
verdict judge(const object_info& o, const std::vector<daemon_claim>& claims);

/// A key file's objects (or one FIFO / POSIX segment / orphan key file) and the verdict on them all.
struct object_group {
  std::vector<object_info> objects;
  verdict why;
};

/// Every object, grouped (System V objects by key file) and judged; the group's verdict is its most
/// protective member's.
std::vector<object_group> judge_all(const std::vector<object_info>& all, const std::vector<daemon_claim>& claims);

/// Whether gc removes a group: abandoned, or holds_data with force.
bool gc_removes(const object_group& g, bool force) noexcept;

/// The objects of `spec` ("NAME" or "FAMILY:NAME"; FAMILY may also be a kind or a channel scheme:
/// sem matches sem and sembuf, shm matches shm and posix-shm). Throws std::runtime_error when none
/// matches, or when a bare NAME matches objects of several families.
std::vector<object_info> select(const std::vector<object_info>& all, std::string_view spec);

/// Removes the objects (IPC_RMID, unlink) and then the key files they came from. A vanished object
/// (ENOENT, EINVAL, EIDRM) counts as removed. Throws std::system_error naming the call and the
/// object, ipc::errc::not_owner when an object belongs to another user and we are not root.
void remove_group(const std::vector<object_info>& group);

/// The owner's user name (the number when there is no such user).
std::string user_name(uid_t uid);

/// "5 msg, 520 B", "3 rec, 192 B", "value", "empty", "?" (unknown).
std::string contents_text(const object_info& o);

}  // namespace ipcctl
