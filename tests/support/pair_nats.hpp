// The nats: channel in the shared channel suite (see channel_pair.hpp): core NATS and JetStream,
// both against one real nats-server per test process (started at first use, stopped at exit).
//
// make() opens the receiver first (a core NATS message nobody subscribes to is gone), each pair on a
// subject (and a stream) of its own. close_for_good() close()s the sender — an end-of-stream marker
// the receiver meets after everything sent before it — and drops it.
//
// Where the suite's semantics do not apply (docs/beyond-one-machine.md), the nats kinds are left
// out: "full" (core NATS never blocks a sender; a full JetStream stream gets room only when the
// receiver acknowledges, i.e. on its next receive), and the forked sender (libnats' threads do
// not survive fork; the daemon tests carry nats across processes instead).
#pragma once

#ifdef IPC_HAVE_NATS

#include <ipc/channel.hpp>
#include <ipc/nats.hpp>

#include "channel_pair.hpp"
#include "nats_server.hpp"
#include "test_support.hpp"

#include <memory>
#include <string>

namespace ipc::test {

/// The test process's nats-server, started at first use.
inline nats_server& shared_nats_server() {
  static nats_server server;
  return server;
}

struct nats_core_pair {
  static constexpr const char* kind = "nats";
  static channel_pair make() {
    const std::string uri = "nats://" + shared_nats_server().address() + "/suite." + unique_name("core");
    channel_pair p;
    p.receiver = ipc::open_channel(uri, ipc::role::receiver);
    p.sender = ipc::open_channel(uri, ipc::role::sender);
    return p;
  }
  static void close_for_good(channel_pair& p) {
    p.sender->close();
    p.sender.reset();
  }
};

struct nats_jetstream_pair {
  static constexpr const char* kind = "nats";
  static channel_pair make() {
    const std::string name = unique_name("js");
    const std::string uri = "nats://" + shared_nats_server().address() + "/suite." + name + "?jetstream=" + name;
    channel_pair p;
    p.receiver = ipc::open_channel(uri, ipc::role::receiver);
    p.sender = ipc::open_channel(uri, ipc::role::sender);
    return p;
  }
  static void close_for_good(channel_pair& p) {
    p.sender->close();
    p.sender.reset();
  }
};

}  // namespace ipc::test

#define IPC_NATS_KINDS , nats_core_pair, nats_jetstream_pair
#else
#define IPC_NATS_KINDS
#endif
