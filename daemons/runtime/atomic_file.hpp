// Files a program of the toolkit replaces as a whole - status files, the bench's plot - under one
// rule: only a regular file (or nothing) at that path is ever replaced; a symbolic link, a device
// (/dev/null), a FIFO, a socket or a directory is refused with an error naming the path, and never
// followed. (The consumer's --sink only appends and has its own rule: sink.hpp, docs/daemons.md.)
//
//   ipc::daemon::check_replaceable("/run/ipc/status/x.status");   // at option parsing: usage error
//   ipc::daemon::write_file_atomically(path, line + "\n");        // readers never see half a file
//   ipc::daemon::remove_regular_file(path);                       // at exit
#pragma once

#include <filesystem>
#include <string_view>

namespace ipc::daemon {

/// Throws std::system_error naming "replace" and path unless path names nothing (ENOENT) or a
/// regular file: ELOOP for a symbolic link (never followed), EPERM for anything else that is not a
/// regular file (a device, FIFO, socket, directory). Other lstat failures throw naming "lstat".
/// Never blocks (one lstat).
void check_replaceable(const std::filesystem::path& path);

/// Writes text to path.tmp.<pid> (created 0600, O_EXCL|O_NOFOLLOW) and renames it over path, so
/// readers see the old or the new file, never half of one; makes the parent directory (0700) if
/// missing. check_replaceable(path) is applied just before the rename: a path that is not a regular
/// file is never replaced (the temporary file is removed). Blocks on the file system only.
/// Throws std::system_error naming the call (mkdir, open, write, rename, replace) and the path.
void write_file_atomically(const std::filesystem::path& path, std::string_view text);

/// Removes path when it is a regular file; leaves anything else (a link, a device) alone. Returns
/// whether a file was removed. Never throws.
bool remove_regular_file(const std::filesystem::path& path) noexcept;

}  // namespace ipc::daemon
