// Reserving a shared segment's pages at creation.
//
// ftruncate on tmpfs (/dev/shm) sizes a file without reserving anything: a full /dev/shm then
// shows up as SIGBUS on the first write to a page that cannot be allocated, possibly long after
// creation and in another process. posix_fallocate reserves every page now, so a full /dev/shm
// is ENOSPC at creation, where the caller can report it and remove what it made.
#pragma once

#include <ipc/config.hpp>

#include <cstddef>
#include <string_view>

namespace ipc::detail {

/// Sizes fd to `size` bytes with every page reserved (posix_fallocate). Never shrinks. On failure the
/// file keeps its previous size (tmpfs undoes a partial reservation); the caller removes what it created.
/// Throws std::system_error naming posix_fallocate, object and the size (ENOSPC, ENOMEM, EFBIG …).
void reserve_pages(int fd, std::size_t size, std::string_view object);

}  // namespace ipc::detail
