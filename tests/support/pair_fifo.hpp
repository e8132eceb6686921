// fifo_pair: a FIFO in the runtime directory in the shared channel suite (see channel_pair.hpp).
#pragma once

#include "channel_pair.hpp"
#include "test_support.hpp"

#include <ipc/fifo.hpp>

namespace ipc::test {

struct fifo_pair {
  static constexpr const char* kind = "fifo";
  static channel_pair make() {
    const std::string path = unique_name("suite") + ".fifo";
    // The reader first, so the sender connects at once (either order works; see test_fifo.cpp).
    auto rx = ipc::fifo_channel::open(path, ipc::role::receiver);
    auto tx = ipc::fifo_channel::open(path, ipc::role::sender);
    return {std::move(tx), std::move(rx)};
  }
  /// The last writer closing: the reader drains, then sees end of stream.
  static void close_for_good(channel_pair& p) { p.sender.reset(); }
};

}  // namespace ipc::test
