// pipe_pair: the anonymous pipe in the shared channel suite (see channel_pair.hpp).
#pragma once

#include "channel_pair.hpp"

#include <ipc/pipe.hpp>

namespace ipc::test {

struct pipe_pair {
  static constexpr const char* kind = "pipe";
  static channel_pair make() {
    auto ends = ipc::pipe_channel::create();
    return {std::move(ends.first), std::move(ends.second)};
  }
  /// Closing the only write end: the reader drains, then sees end of stream.
  static void close_for_good(channel_pair& p) { p.sender.reset(); }
};

}  // namespace ipc::test
