// The reaper of detached children: process::detach() hands a child's pidfd here, and a library
// thread reaps the child when it ends, so it never lingers as a zombie.
#pragma once

#include <ipc/unique_fd.hpp>

namespace ipc::detail {

/// Takes ownership of pidfd (only once nothing can fail any more) and reaps its child when it
/// ends. Throws std::system_error naming eventfd if the reaper cannot start.
void hand_to_reaper(unique_fd& pidfd);

}  // namespace ipc::detail
