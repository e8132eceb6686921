// The msgq kind for the shared channel suite: one queue, a sender and a receiver handle on it.
//
// A System V queue outlives its handles, so every queue made here is also recorded and
// removed when the test process exits (forked children _exit and remove nothing).
#pragma once

#include <ipc/channel.hpp>
#include <ipc/msg_queue.hpp>

#include "channel_pair.hpp"
#include "test_support.hpp"

#include <sys/msg.h>

#include <memory>
#include <vector>

namespace ipc::test {

struct msgq_pair {
  static constexpr const char* kind = "msgq";

  static channel_pair make() {
    auto name = unique_name("suite-msgq");
    channel_pair p;
    p.sender = ipc::open_channel("msgq:" + name + "?open=create_only", ipc::role::sender);
    registry().ids.push_back(static_cast<ipc::msg_queue&>(*p.sender).id());
    p.receiver = ipc::open_channel("msgq:" + name + "?open=open_only", ipc::role::receiver);
    return p;
  }

  // Removing the queue is how a msgq peer goes away for good. Note: IPC_RMID discards
  // messages still queued; the receiver's next call throws errc::closed.
  static void close_for_good(channel_pair& p) { p.sender->remove(); }

 private:
  struct cleanup {
    std::vector<int> ids;
    ~cleanup() {
      for (int id : ids) ::msgctl(id, IPC_RMID, nullptr);  // EINVAL for the ones already removed
    }
  };
  static cleanup& registry() {
    static cleanup c;
    return c;
  }
};

}  // namespace ipc::test
