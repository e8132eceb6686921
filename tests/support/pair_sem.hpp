// The `sem:` channel (sem_buffer) for the shared channel suite.
//
// make() creates a fresh bounded buffer (16 slots x 4 KiB) under a unique name; the receiver
// removes the semaphore set, segment and key file when it is destroyed in the process that made
// it (a forked child dropping its copy removes nothing), so every test leaves nothing in `ipcs`.
// close_for_good() close()s the sender explicitly (sem_buffer's destructor never closes) and
// destroys it: the receiver drains what was sent, then gets errc::closed.
#pragma once

#include <ipc/channel.hpp>
#include <ipc/sem_buffer.hpp>

#include "channel_pair.hpp"
#include "test_support.hpp"

#include <unistd.h>

#include <memory>
#include <string>

namespace ipc::test {

/// A sem_buffer that removes its kernel objects when it goes in the process that made it (test cleanup).
class removing_sem_buffer final : public ipc::sem_buffer {
 public:
  using ipc::sem_buffer::sem_buffer;
  ~removing_sem_buffer() override {
    if (::getpid() != owner_) return;
    try {
      remove();
    } catch (...) {  // NOLINT(bugprone-empty-catch): best effort at test exit
    }
  }
  removing_sem_buffer(const removing_sem_buffer&) = delete;
  removing_sem_buffer& operator=(const removing_sem_buffer&) = delete;

 private:
  pid_t owner_ = ::getpid();
};

struct sem_pair {
  static constexpr const char* kind = "sem";

  static channel_pair make() {
    const std::string name = unique_name("sempair");
    channel_pair p;
    p.receiver = std::make_unique<removing_sem_buffer>(name, ipc::role::receiver, ipc::open_mode::create_only,
                                                       ipc::sem_geometry{16, 4096});
    p.sender = ipc::open_channel("sem:" + name + "?open=open_only", ipc::role::sender);
    return p;
  }

  static void close_for_good(channel_pair& p) {
    dynamic_cast<ipc::sem_buffer&>(*p.sender).close();
    p.sender.reset();
  }
};

}  // namespace ipc::test
