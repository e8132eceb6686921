// The msgq kind for the shared channel suite: one queue, a sender and a receiver handle on it.
//
// A msgq sender leaves for good by removing the queue, and IPC_RMID discards what is still
// queued. So close_for_good() does what a well-behaved last sender does: it waits until the
// receiver has drained the queue (msg_queue::remove_when_empty, on its own handle in a
// background thread, since the test drains from this thread), then removes it; the
// receiver's next call throws errc::closed.
//
// A System V queue outlives its handles, so every queue made here is also removed when the
// test process exits (forked children _exit and remove nothing).
#pragma once

#include <ipc/channel.hpp>
#include <ipc/deadline.hpp>
#include <ipc/msg_queue.hpp>

#include "channel_pair.hpp"
#include "test_support.hpp"

#include <sys/msg.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
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

  static void close_for_good(channel_pair& p) {
    const std::string name = p.sender->name().substr(std::string_view("msgq:").size());
    ipc::msgq_options o;
    o.open = ipc::open_mode::open_only;
    auto own = std::make_shared<ipc::msg_queue>(name, o);
    registry().removers.emplace_back([own] {
      try {
        (void)own->remove_when_empty(ipc::deadline::in(std::chrono::seconds(30)));
      } catch (...) {
        // The receiver's test sees the queue still there (no errc::closed) and fails.
      }
    });
  }

 private:
  struct cleanup {
    std::vector<int> ids;
    std::vector<std::thread> removers;
    ~cleanup() {
      for (auto& t : removers) t.join();  // each gives up after its deadline
      for (int id : ids) ::msgctl(id, IPC_RMID, nullptr);  // EINVAL for the ones already removed
    }
  };
  static cleanup& registry() {
    static cleanup c;
    return c;
  }
};

}  // namespace ipc::test
