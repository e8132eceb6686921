// The one EINTR-retry helper. Untimed calls retry as they are; timed calls are
// written as loops over a deadline (see ipc/deadline.hpp) so a retry waits only
// for the time left.
#pragma once

#include <cerrno>

namespace ipc::detail {

/// Calls f() until it returns something other than -1-with-EINTR.
template <typename F>
auto retry_eintr(F&& f) {
  for (;;) {
    auto r = f();
    if (r != -1 || errno != EINTR) return r;
  }
}

}  // namespace ipc::detail
