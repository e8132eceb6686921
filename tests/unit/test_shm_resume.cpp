// What every shm mode (the SPSC ring, the work queue, broadcast) shares about its name and
// reopen(): `rm /dev/shm/libipc.NAME` under a running pair is noticed by the sender within ~100 ms
// of sends (errc::removed), reopen() on each side meets on one new segment, and reopen() on a
// segment that is still the name's loses nothing (detail/shm_link.hpp, docs/shm-modes.md).
#include <ipc/error.hpp>
#include <ipc/shared_memory.hpp>
#include <ipc/shm_broadcast.hpp>
#include <ipc/shm_mpmc.hpp>
#include <ipc/shm_ring.hpp>

#include "errc_of.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using ipc::role;
using ipc::test::errc_of;

namespace {

// Small segments of each mode, and the name's cleanup.
template <class T>
struct small;
template <>
struct small<ipc::shm_ring> {
  static ipc::shm_ring_options options() {
    ipc::shm_ring_options o;
    o.capacity = 4096;
    o.max_message = 64;
    return o;
  }
};
template <>
struct small<ipc::shm_mpmc> {
  static ipc::shm_mpmc_options options() {
    ipc::shm_mpmc_options o;
    o.slots = 8;
    o.max_message = 64;
    return o;
  }
};
template <>
struct small<ipc::shm_broadcast> {
  static ipc::shm_broadcast_options options() {
    ipc::shm_broadcast_options o;
    o.slots = 8;
    o.max_message = 64;
    return o;
  }
};

template <class T>
struct shm_name {
  std::string name = ipc::test::unique_name("resume");
  shm_name() = default;
  shm_name(const shm_name&) = delete;
  shm_name& operator=(const shm_name&) = delete;
  ~shm_name() {
    try {
      T::remove(name);
    } catch (...) {  // NOLINT(bugprone-empty-catch): best effort; no_leftovers.sh checks /dev/shm
    }
  }
  [[nodiscard]] std::string object() const { return "/dev/shm/" + ipc::posix_segment::posix_name(name); }
};

std::string text_of(const std::vector<std::byte>& b) { return std::string(ipc::as_text(b)); }

}  // namespace

#define IPC_SHM_MODES ipc::shm_ring, ipc::shm_mpmc, ipc::shm_broadcast

TEMPLATE_TEST_CASE("shm modes: rm of the name under a running pair: the sender notices within 100 ms of sends, and "
                   "reopen() on each side meets again with nothing lost",
                   "[shm_resume]", IPC_SHM_MODES) {
  shm_name<TestType> n;
  TestType rx(n.name, role::receiver, small<TestType>::options());
  TestType tx(n.name, role::sender, small<TestType>::options());
  REQUIRE(tx.send_for(ipc::as_bytes("0"), 1s));
  REQUIRE(tx.send_for(ipc::as_bytes("1"), 1s));  // left for the receiver to drain from the old segment
  REQUIRE(::shm_unlink(ipc::posix_segment::posix_name(n.name).c_str()) == 0);  // what rm does
  const auto unlinked = std::chrono::steady_clock::now();
  std::vector<std::byte> buf;
  REQUIRE(rx.receive_for(buf, 1s));
  CHECK(text_of(buf) == "0");
  int sent = 2;
  std::string what;
  // A sender at ~500 records/s whose receiver keeps up (one behind), for at most 2 s. (The ring reads
  // the clock every 64th send of a pair whose receiver is awake: ~130 ms here.)
  while (std::chrono::steady_clock::now() - unlinked < 2s) {
    bool accepted = false;
    try {
      accepted = tx.send_for(ipc::as_bytes(std::to_string(sent)), 1s);
    } catch (const std::system_error& e) {
      REQUIRE(e.code() == ipc::errc::removed);
      what = e.what();
      break;
    }
    REQUIRE(accepted);
    REQUIRE(rx.receive_for(buf, 1s));
    CHECK(text_of(buf) == std::to_string(sent - 1));
    ++sent;
    std::this_thread::sleep_for(2ms);
  }
  const auto noticed = std::chrono::steady_clock::now() - unlinked;
  INFO(what);
  REQUIRE_FALSE(what.empty());
  CHECK(noticed < 600ms);  // 100 ms + a coarse-clock tick, with room for a loaded machine
  CHECK_THAT(what, Catch::Contains("send(" + tx.name() + ")") && Catch::Contains(n.object()) &&
                       Catch::Contains("st_nlink 0"));
  CHECK(errc_of([&] { (void)tx.try_send(ipc::as_bytes("x")); }) == ipc::errc::removed);  // until reopen()
  tx.reopen();  // recreates the name and leaves the old segment
  CHECK(::access(n.object().c_str(), F_OK) == 0);
  // The receiver drains the old segment, then hears its sender gone, and follows.
  REQUIRE(rx.receive_for(buf, 2s));
  CHECK(text_of(buf) == std::to_string(sent - 1));
  CHECK(errc_of([&] { (void)rx.receive_for(buf, 5s); }) == ipc::errc::closed);
  rx.reopen();
  REQUIRE(tx.send_for(ipc::as_bytes("after"), 1s));
  REQUIRE(rx.receive_for(buf, 2s));
  CHECK(text_of(buf) == "after");
  CHECK(tx.counters().messages_sent == static_cast<std::uint64_t>(sent) + 1);  // counters go on
}

TEMPLATE_TEST_CASE("shm modes: reopen() on a segment that is still the name's keeps the role, the position and what "
                   "is queued",
                   "[shm_resume]", IPC_SHM_MODES) {
  shm_name<TestType> n;
  TestType rx(n.name, role::receiver, small<TestType>::options());
  TestType tx(n.name, role::sender, small<TestType>::options());
  for (int i = 0; i < 4; ++i) REQUIRE(tx.try_send(ipc::as_bytes(std::to_string(i))));
  std::vector<std::byte> buf;
  REQUIRE(rx.try_receive(buf));
  CHECK(text_of(buf) == "0");
  rx.reopen();  // what a daemon does on SIGHUP
  tx.reopen();
  rx.reopen();
  REQUIRE(tx.try_send(ipc::as_bytes("4")));
  for (int i = 1; i <= 4; ++i) {
    REQUIRE(rx.try_receive(buf));
    CHECK(text_of(buf) == std::to_string(i));
  }
  CHECK_FALSE(rx.try_receive(buf));
  CHECK(rx.counters().messages_received == 5);
}

TEMPLATE_TEST_CASE("shm modes: remove() on purpose is not reported; the pair goes on with the anonymous segment, and "
                   "remove() leaves a newer segment under the name alone",
                   "[shm_resume]", IPC_SHM_MODES) {
  shm_name<TestType> n;
  TestType rx(n.name, role::receiver, small<TestType>::options());
  TestType tx(n.name, role::sender, small<TestType>::options());
  rx.remove();
  std::vector<std::byte> buf;
  // Past two check intervals: the sender's name check sees st_nlink 0 and the on-purpose mark.
  for (auto until = std::chrono::steady_clock::now() + 300ms; std::chrono::steady_clock::now() < until;) {
    REQUIRE(tx.send_for(ipc::as_bytes("on"), 1s));
    REQUIRE(rx.receive_for(buf, 1s));
    std::this_thread::sleep_for(5ms);
  }
  TestType newer(n.name, role::sender, small<TestType>::options());  // a new segment under the name
  tx.remove();
  CHECK(::access(n.object().c_str(), F_OK) == 0);
}

TEMPLATE_TEST_CASE("shm modes: close() on a receiver makes its receives errc::closed, never nullopt; reopen() attaches "
                   "it again",
                   "[shm_resume]", IPC_SHM_MODES) {
  shm_name<TestType> n;
  TestType rx_handle(n.name, role::receiver, small<TestType>::options());
  TestType tx(n.name, role::sender, small<TestType>::options());
  ipc::channel& rx = rx_handle;  // the interface every channel offers
  rx.close();
  rx.close();  // idempotent
  std::vector<std::byte> buf;
  const auto closed_with = [&](auto&& call) {
    try {
      call();
    } catch (const std::system_error& e) {
      CHECK_THAT(e.what(), Catch::Contains("receive(" + rx.name() + ")") && Catch::Contains("close()"));
      return e.code() == ipc::errc::closed;
    }
    return false;
  };
  CHECK(closed_with([&] { (void)rx.try_receive(buf); }));
  CHECK(closed_with([&] { (void)rx.receive_for(buf, 100ms); }));
  CHECK(closed_with([&] { (void)rx.receive(buf); }));
  rx.reopen();
  REQUIRE(tx.try_send(ipc::as_bytes("again")));
  REQUIRE(rx.receive_for(buf, 1s));
  CHECK(text_of(buf) == "again");
}

TEMPLATE_TEST_CASE("shm modes: close() on the only sender ends its stream: the receiver drains, then errc::closed; the "
                   "closed sender's sends are errc::closed",
                   "[shm_resume]", IPC_SHM_MODES) {
  shm_name<TestType> n;
  TestType rx(n.name, role::receiver, small<TestType>::options());
  TestType tx_handle(n.name, role::sender, small<TestType>::options());
  ipc::channel& tx = tx_handle;
  REQUIRE(tx.try_send(ipc::as_bytes("last")));
  tx.close();
  std::vector<std::byte> buf;
  REQUIRE(rx.receive_for(buf, 1s));
  CHECK(text_of(buf) == "last");
  CHECK(errc_of([&] { (void)rx.receive_for(buf, 5s); }) == ipc::errc::closed);
  CHECK(errc_of([&] { (void)tx.try_send(ipc::as_bytes("x")); }) == ipc::errc::closed);
  tx.reopen();
  rx.reopen();
  REQUIRE(tx.try_send(ipc::as_bytes("resumed")));
  REQUIRE(rx.receive_for(buf, 1s));
  CHECK(text_of(buf) == "resumed");
}
