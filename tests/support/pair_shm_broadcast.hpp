// shm_broadcast_pair: the shm: channel's broadcast mode (?mode=broadcast, policy=block) with one
// subscriber in the shared channel suite (see channel_pair.hpp): with one subscriber under
// policy=block it is a channel like any other.
//
// make() creates a fresh channel, attaches one subscriber and one publisher, and unlinks the name
// at once: both mappings stay valid (and are inherited by fork), nothing is left in /dev/shm.
// close_for_good() destroys the only publisher; the subscriber reads what is left, then gets
// errc::closed. A fork child becomes an endpoint of its own, so the child that keeps the
// publisher drops its copy of the subscriber (as the suite's cross-process test does), or it
// would hold the publisher up as a second subscriber.
#pragma once

#include <ipc/channel.hpp>

#include "channel_pair.hpp"
#include "test_support.hpp"

#include <string>

namespace ipc::test {

struct shm_broadcast_pair {
  static constexpr const char* kind = "shm";

  static channel_pair make() {
    const std::string name = unique_name("bcastpair");
    channel_pair p;
    p.receiver = ipc::open_channel("shm:" + name + "?mode=broadcast&open=create_only&slots=64&max_message=16K&policy=block",
                                   ipc::role::receiver);
    p.sender = ipc::open_channel("shm:" + name + "?mode=broadcast&open=open_only", ipc::role::sender);
    p.receiver->remove();
    return p;
  }

  static void close_for_good(channel_pair& p) { p.sender.reset(); }
};

}  // namespace ipc::test
