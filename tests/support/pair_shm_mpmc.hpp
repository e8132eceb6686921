// shm_mpmc_pair: the shm: channel's work-queue mode (?mode=mpmc) in the shared channel suite
// (see channel_pair.hpp).
//
// make() creates a fresh queue, attaches one receiver and one sender, and unlinks the name at
// once: both mappings stay valid (and are inherited by fork), nothing is left in /dev/shm.
// close_for_good() destroys the only sender; the receiver drains, then gets errc::closed. A fork
// child becomes an endpoint of its own, so the process that keeps the receiver drops its copy of
// the sender too (as with a pipe's write end).
#pragma once

#include <ipc/channel.hpp>

#include "channel_pair.hpp"
#include "test_support.hpp"

#include <string>

namespace ipc::test {

struct shm_mpmc_pair {
  static constexpr const char* kind = "shm";

  static channel_pair make() {
    const std::string name = unique_name("mpmcpair");
    channel_pair p;
    p.receiver = ipc::open_channel("shm:" + name + "?mode=mpmc&open=create_only&slots=64&max_message=16K", ipc::role::receiver);
    p.sender = ipc::open_channel("shm:" + name + "?mode=mpmc&open=open_only", ipc::role::sender);
    p.receiver->remove();
    return p;
  }

  static void close_for_good(channel_pair& p) { p.sender.reset(); }
};

}  // namespace ipc::test
