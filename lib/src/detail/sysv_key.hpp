// Names and owners of kernel objects.
//
// Every System V object the toolkit makes has a key file in the runtime
// directory (NAME.msgq, NAME.sem, NAME.shm …). The key is computed exactly as
// ftok(3) computes it, but from an fstat of the key file opened with
// O_NOFOLLOW, so a symlink planted in its place is refused and C clients can
// still find the object with ftok(path, proj_id).
#pragma once

#include <ipc/config.hpp>

#include <sys/types.h>

#include <cstddef>
#include <filesystem>
#include <string_view>

namespace ipc::detail {

/// The ftok-compatible key of key_file for proj_id. Creates the file (0600) when create is set.
/// Throws std::system_error naming the file (ENOENT when missing and !create), errc::not_owner
/// when the file is not a regular file owned by us.
key_t sysv_key(const std::filesystem::path& key_file, int proj_id, bool create);

/// Throws errc::not_owner (naming call and object) unless uid is our effective uid and the
/// mode grants nothing to others beyond read.
void check_owner(uid_t uid, mode_t mode, std::string_view call, std::string_view object);

/// Throws std::system_error(EINVAL) naming call, object and mode unless mode is a permission set the
/// toolkit creates objects with: bits within 0777, owner read+write, no write for others. Called before
/// anything is created, so a refused mode leaves nothing behind.
void check_new_mode(mode_t mode, std::string_view call, std::string_view object);

/// Throws for a failed msgget/semget/shmget that tried to create (IPC_CREAT). When err means a system-wide
/// limit is reached (ENOSPC; ENOMEM/EINVAL from shmget for `size` past kernel.shmall/shmmax), what() names
/// the limit, its value and how to raise it: "msgget(OBJECT): system limit kernel.msgmni = 32000 queues
/// reached (raise it: sysctl -w kernel.msgmni=N): No space left on device". Otherwise as throw_errno.
[[noreturn]] void throw_sysv_create_error(int err, std::string_view call, std::string_view object,
                                                  std::size_t size = 0);

/// "0x51020304" — how keys are shown in errors and listings.
std::string key_string(key_t key);

}  // namespace ipc::detail
