// The contract each channel kind fulfils for the shared channel suite
// (tests/unit/test_channel_suite.cpp, a TEMPLATE_TEST_CASE over every kind).
//
// Each kind provides, in tests/support/pair_<kind>.hpp, a struct like:
//
//   struct msgq_pair {
//     static constexpr const char* kind = "msgq";
//     static ipc::test::channel_pair make();                 // connected sender + receiver, unique name
//     static void close_for_good(ipc::test::channel_pair&);  // the peer goes away as this mechanism defines it
//   };
//
// make() builds both ends in the calling process; cross-process tests fork
// after make(), the child keeping the sender and the parent the receiver.
// close_for_good() leaves `receiver` in place: afterwards it drains what was
// sent and then throws errc::closed (within a bounded time, never a hang).
#pragma once

#include <ipc/channel.hpp>

#include <memory>

namespace ipc::test {

struct channel_pair {
  std::unique_ptr<ipc::channel> sender;
  std::unique_ptr<ipc::channel> receiver;
};

}  // namespace ipc::test
