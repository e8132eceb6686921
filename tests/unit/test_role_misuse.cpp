// A handle does only its role's part: a receiver that sends or a sender that receives is refused
// with EBADF naming the call and the channel (as a pipe's fd refuses a write on its read end), and
// the channel goes on untouched. On the shm ring a receiver that wrote would move the sender's head
// under it and corrupt the ring for both; on the work queue and broadcast it would confuse who is
// attached in which role (a subscriber that publishes waits on its own cursor under policy=block).
#include <ipc/channel.hpp>
#include <ipc/error.hpp>
#include <ipc/sem_buffer.hpp>
#include <ipc/shm_broadcast.hpp>
#include <ipc/shm_mpmc.hpp>
#include <ipc/shm_ring.hpp>

#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <cerrno>
#include <chrono>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using ipc::role;

namespace {

int errno_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::system_error& e) {
    return e.code().category() == std::system_category() ? e.code().value() : -1;
  }
  return 0;
}

}  // namespace

TEST_CASE("role misuse: a receiver cannot send and a sender cannot receive, on every channel with roles",
          "[role_misuse]") {
  const std::string name = ipc::test::unique_name("roles");
  struct kind {
    std::string uri;
    std::function<void()> remove;
  };
  const std::vector<kind> kinds = {
      {"shm:" + name + ".ring", [&] { ipc::shm_ring::remove(name + ".ring"); }},
      {"shm:" + name + ".mpmc?mode=mpmc", [&] { ipc::shm_mpmc::remove(name + ".mpmc"); }},
      {"shm:" + name + ".bcast?mode=broadcast", [&] { ipc::shm_broadcast::remove(name + ".bcast"); }},
      {"sem:" + name + ".sem", [&] { ipc::sem_buffer::remove(name + ".sem"); }},
  };
  for (const auto& k : kinds) {
    INFO(k.uri);
    ipc::test::on_exit gone(k.remove);
    auto rx = ipc::open_channel(k.uri, role::receiver);
    auto tx = ipc::open_channel(k.uri, role::sender);
    std::vector<std::byte> buf;
    CHECK(errno_of([&] { (void)rx->try_send(ipc::as_bytes("from the receiver")); }) == EBADF);
    CHECK(errno_of([&] { (void)rx->send_for(ipc::as_bytes("from the receiver"), 10ms); }) == EBADF);
    CHECK(errno_of([&] { (void)tx->try_receive(buf); }) == EBADF);
    CHECK(errno_of([&] { (void)tx->receive_for(buf, 10ms); }) == EBADF);
    CHECK_THROWS_WITH(rx->try_send(ipc::as_bytes("x")), Catch::Contains("send") && Catch::Contains(name));
    CHECK_THROWS_WITH(tx->try_receive(buf), Catch::Contains("receive") && Catch::Contains(name));
    // Nothing moved: the receiver finds only what the sender sent.
    REQUIRE(tx->send_for(ipc::as_bytes("from the sender"), 5s));
    REQUIRE(rx->receive_for(buf, 5s));
    CHECK(ipc::as_text(buf) == "from the sender");
    CHECK_FALSE(rx->receive_for(buf, 10ms));
  }
}
