// shm_pair: the shm: channel in the shared channel suite (see channel_pair.hpp).
//
// make() creates a fresh ring, attaches the receiver then the sender, and unlinks the name at
// once: both mappings stay valid (and are inherited by fork), nothing is left in /dev/shm.
// close_for_good() destroys the sender, which marks the ring closed; the receiver drains, then
// gets errc::closed. After a fork, the process that keeps the receiver must drop its copy of the
// sender too (as with a pipe's write end): the role stays open while any holder lives.
#pragma once

#include <ipc/channel.hpp>

#include "channel_pair.hpp"
#include "test_support.hpp"

#include <string>

namespace ipc::test {

struct shm_pair {
  static constexpr const char* kind = "shm";

  static channel_pair make() {
    const std::string name = unique_name("shmpair");
    channel_pair p;
    p.receiver = ipc::open_channel("shm:" + name + "?open=create_only", ipc::role::receiver);
    p.sender = ipc::open_channel("shm:" + name + "?open=open_only", ipc::role::sender);
    p.receiver->remove();
    return p;
  }

  static void close_for_good(channel_pair& p) { p.sender.reset(); }
};

}  // namespace ipc::test
