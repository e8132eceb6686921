// Zero-copy on the shm ring: loans written in place and committed, views read in place and
// released (docs/shm-zero-copy.md). Crash cases fork real processes and SIGKILL them.
#include <ipc/error.hpp>
#include <ipc/shm_loan.hpp>
#include <ipc/shm_ring.hpp>

#include "errc_of.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using ipc::role;
using ipc::shm_loan;
using ipc::shm_ring;
using ipc::shm_ring_options;
using ipc::shm_view;

using ipc::test::errc_of;

namespace {

// The test's ring name, unlinked at the end whatever happens.
struct ring_name {
  std::string name = ipc::test::unique_name("shmzc");
  ipc::test::on_exit gone{[n = name] { shm_ring::remove(n); }};
};

shm_ring_options small_ring() { return {.capacity = 4096, .max_message = 2040}; }
shm_ring_options mib_ring() { return {.capacity = 4 << 20, .max_message = 1 << 20}; }

void fill(std::span<std::byte> b, std::uint64_t seed) {
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::byte>((seed * 131 + i * 7) & 0xff);
}
bool filled(std::span<const std::byte> b, std::uint64_t seed) {
  for (std::size_t i = 0; i < b.size(); ++i) {
    if (b[i] != static_cast<std::byte>((seed * 131 + i * 7) & 0xff)) return false;
  }
  return true;
}
std::vector<std::byte> pattern(std::uint64_t seed, std::size_t len) {
  std::vector<std::byte> v(len);
  fill(v, seed);
  return v;
}

// Whether `p` lies inside a mapping of the ring's segment file in this process (/proc/self/maps).
bool inside_segment_mapping(const void* p, const std::string& name) {
  std::ifstream maps("/proc/self/maps");
  const std::string file = "/dev/shm/" + shm_ring::shm_name(name);
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  for (std::string line; std::getline(maps, line);) {
    if (line.find(file) == std::string::npos) continue;
    unsigned long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx", &lo, &hi) == 2 && addr >= lo && addr < hi) return true;
  }
  return false;
}

// The errno of a std::system_error in the system category that f throws, with its text.
template <typename F>
std::pair<int, std::string> errno_of(F&& f) {
  try {
    f();
  } catch (const std::system_error& e) {
    if (e.code().category() == std::system_category()) return {e.code().value(), e.what()};
    FAIL("unexpected toolkit error: " << e.what());
  }
  FAIL("no exception");
  return {0, {}};
}

}  // namespace

TEST_CASE("shm zero-copy: a committed loan arrives whole and is read in place by a view", "[shm_zero_copy]") {
  ring_name n;
  shm_ring rx(n.name, role::receiver, small_ring());
  shm_ring tx(n.name, role::sender);
  shm_loan l = tx.loan(100);
  REQUIRE(l);
  CHECK(l.size() == 100);
  CHECK(reinterpret_cast<std::uintptr_t>(l.data()) % ipc::shm_message_alignment == 0);
  fill(l.bytes(), 1);
  l.commit();
  CHECK_FALSE(l);
  shm_view v = rx.receive_view_for(1s);
  REQUIRE(v);
  CHECK(v.size() == 100);
  CHECK(filled(v.bytes(), 1));
  v.release();
  CHECK_FALSE(v);
  CHECK_FALSE(rx.try_receive_view());
  CHECK(tx.counters().messages_sent == 1);
  CHECK(tx.counters().bytes_sent == 100);
  CHECK(rx.counters().messages_received == 1);
  CHECK(rx.counters().bytes_received == 100);
}

TEST_CASE("shm zero-copy: commit(used) sends only the bytes used, down to none", "[shm_zero_copy]") {
  ring_name n;
  shm_ring rx(n.name, role::receiver, small_ring());
  shm_ring tx(n.name, role::sender);
  for (std::size_t used : {std::size_t{0}, std::size_t{5}, std::size_t{2040}}) {
    shm_loan l = tx.loan(2040);
    fill(l.bytes(), used);
    l.commit(used);
    shm_view v = rx.receive_view_for(1s);
    REQUIRE(v);
    CHECK(v.size() == used);
    CHECK(filled(v.bytes(), used));
  }
}

TEST_CASE("shm zero-copy: a loan dropped uncommitted delivers nothing, and its space is used again", "[shm_zero_copy]") {
  ring_name n;
  shm_ring rx(n.name, role::receiver, small_ring());
  shm_ring tx(n.name, role::sender);
  {
    shm_loan l = tx.loan(1000);
    fill(l.bytes(), 9);
  }  // abandoned
  shm_loan explicit_abandon = tx.loan(500);
  explicit_abandon.abandon();
  CHECK_FALSE(explicit_abandon);
  CHECK_FALSE(rx.try_receive_view());
  std::vector<std::byte> buf;
  CHECK_FALSE(rx.try_receive(buf));
  tx.send(ipc::as_bytes("after"));
  REQUIRE(rx.receive_for(buf, 1s));
  CHECK(ipc::as_text(buf) == "after");
  CHECK_FALSE(rx.try_receive(buf));
  CHECK(tx.counters().messages_sent == 1);
}

TEST_CASE("shm zero-copy: loans, sends, views and copying receives interleave in order", "[shm_zero_copy]") {
  ring_name n;
  shm_ring rx(n.name, role::receiver, small_ring());
  shm_ring tx(n.name, role::sender);
  std::vector<std::byte> buf;
  for (int round = 0; round < 50; ++round) {  // 50 rounds wrap the 4 KiB ring many times
    tx.send(pattern(round, 300));
    shm_loan l = tx.loan(200);
    fill(l.bytes(), round + 1000);
    l.commit();
    tx.send(pattern(round + 2000, 100));
    REQUIRE(rx.receive_view_for(1s).size() == 300);  // a temporary view: released at once
    shm_view v = rx.receive_view_for(1s);
    REQUIRE(v.size() == 200);
    CHECK(filled(v.bytes(), round + 1000));
    v.release();
    REQUIRE(rx.receive_for(buf, 1s) == 100);
    CHECK(buf == pattern(round + 2000, 100));
  }
  CHECK_FALSE(rx.try_receive_view());
}

namespace {
struct pose {
  double x, y, z;
  std::uint32_t frame;
};
}  // namespace

TEST_CASE("shm zero-copy: typed loans and views check size and alignment", "[shm_zero_copy]") {
  ring_name n;
  shm_ring rx(n.name, role::receiver, small_ring());
  shm_ring tx(n.name, role::sender);
  auto p = tx.loan_as<pose>();
  REQUIRE(p);
  *p = pose{1.5, -2.0, 3.25, 42};
  p->frame += 1;
  p.commit();
  CHECK_FALSE(p);
  shm_view v = rx.receive_view_for(1s);
  REQUIRE(v);
  const pose& q = v.as<pose>();
  CHECK(q.x == 1.5);
  CHECK(q.y == -2.0);
  CHECK(q.z == 3.25);
  CHECK(q.frame == 43);
  CHECK(reinterpret_cast<std::uintptr_t>(&q) % alignof(pose) == 0);
  // A pose is not a double, nor a whole number of 16-byte objects.
  auto [err, what] = errno_of([&] { (void)v.as<double>(); });
  CHECK(err == EINVAL);
  CHECK_THAT(what, Catch::Contains("shm_view::as") && Catch::Contains("shm:" + n.name) && Catch::Contains("32-byte"));
  struct sixteen {
    std::uint64_t a, b;
  };
  CHECK(v.as_span<sixteen>().size() == 2);  // sizeof(pose) is 32
  struct twenty_four {
    std::uint64_t a, b, c;
  };
  CHECK(errno_of([&] { (void)v.as_span<twenty_four>(); }).first == EINVAL);
  v.release();

  shm_loan words = tx.loan(64);
  auto w = words.as_span<std::uint64_t>();
  REQUIRE(w.size() == 8);
  for (std::uint64_t i = 0; i < 8; ++i) w[i] = i * i;
  CHECK(errno_of([&] { (void)words.as<std::uint64_t>(); }).first == EINVAL);
  words.commit();
  shm_view wv = rx.receive_view_for(1s);
  const auto r = wv.as_span<std::uint64_t>();
  REQUIRE(r.size() == 8);
  for (std::uint64_t i = 0; i < 8; ++i) CHECK(r[i] == i * i);
}

TEST_CASE("shm zero-copy: a 1 MiB message is written and read in the shared mapping, never copied", "[shm_zero_copy]") {
  ring_name n;
  shm_ring rx(n.name, role::receiver, mib_ring());
  shm_ring tx(n.name, role::sender);
  constexpr std::size_t mib = 1 << 20;
  for (std::uint64_t round = 0; round < 6; ++round) {  // 6 × 1 MiB through a 4 MiB ring: wraps too
    shm_loan l = tx.loan(mib);
    REQUIRE(l.size() == mib);
    CHECK(inside_segment_mapping(l.data(), n.name));
    CHECK(inside_segment_mapping(l.data() + mib - 1, n.name));
    fill(l.bytes(), round);
    const std::byte* written = l.data();
    l.commit();
    shm_view v = rx.receive_view_for(5s);
    REQUIRE(v.size() == mib);
    CHECK(inside_segment_mapping(v.data(), n.name));
    CHECK(inside_segment_mapping(v.data() + mib - 1, n.name));
    CHECK(v.data() != written);  // the receiver's own mapping of the same pages
    CHECK(filled(v.bytes(), round));
  }
  // The copying path carries the same size through the same ring.
  tx.send(pattern(7, mib));
  std::vector<std::byte> buf;
  REQUIRE(rx.receive_for(buf, 5s) == mib);
  CHECK(buf == pattern(7, mib));
}

TEST_CASE("shm zero-copy: a loan that would straddle the ring's end starts at its beginning", "[shm_zero_copy]") {
  ring_name n;
  shm_ring rx(n.name, role::receiver, small_ring());
  shm_ring tx(n.name, role::sender);
  shm_loan first = tx.loan(1000);
  std::byte* const ring_start = first.data();  // the first record of a ring sits at offset 0
  first.commit();
  shm_view v = rx.receive_view_for(1s);
  const std::byte* const rx_start = v.data();
  v.release();
  for (int i = 0; i < 2; ++i) {
    tx.send(pattern(i, 1000));  // records of 1008 bytes: head at 3024 of 4096
    REQUIRE(rx.receive_view_for(1s).size() == 1000);
  }
  // 1072 bytes left before the end; a 1100-byte loan needs 1112: it wraps to offset 0, contiguous.
  shm_loan wrapped = tx.loan(1100);
  CHECK(wrapped.data() == ring_start);
  fill(wrapped.bytes(), 77);
  wrapped.commit();
  shm_view wv = rx.receive_view_for(1s);
  REQUIRE(wv.size() == 1100);
  CHECK(wv.data() == rx_start);
  CHECK(filled(wv.bytes(), 77));
}

TEST_CASE("shm zero-copy: try_ and _for forms return empty on a full or empty ring after their timeout",
          "[shm_zero_copy]") {
  ring_name n;
  shm_ring rx(n.name, role::receiver, small_ring());
  shm_ring tx(n.name, role::sender);
  CHECK_FALSE(rx.try_receive_view());
  auto t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(rx.receive_view_for(100ms));
  auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took >= 100ms);
  CHECK(took < 5s);
  CHECK(rx.counters().receive_timeouts == 2);

  while (tx.try_send(pattern(0, 1000))) {
  }
  CHECK_FALSE(tx.try_loan(1000));
  t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(tx.loan_for(1000, 100ms));
  took = std::chrono::steady_clock::now() - t0;
  CHECK(took >= 100ms);
  CHECK(took < 5s);
  CHECK_FALSE(tx.loan_as_for<std::array<std::byte, 100>>(10ms));
  // Small enough for what is left: granted at once.
  CHECK(tx.try_loan(8));
}

TEST_CASE("shm zero-copy: a sender waiting for room gets its loan when the receiver releases a view",
          "[shm_zero_copy]") {
  ring_name n;
  shm_ring rx(n.name, role::receiver, small_ring());
  shm_ring tx(n.name, role::sender);
  while (tx.try_send(pattern(0, 1000))) {
  }
  shm_view v = rx.receive_view_for(1s);
  REQUIRE(v);
  // The view keeps its space: a loan that needs it still waits.
  CHECK_FALSE(tx.try_loan(1000));
  bool got = false;
  std::thread sender([&] {
    shm_loan l = tx.loan_for(1000, 10s);
    got = static_cast<bool>(l);
    if (l) l.commit();
  });
  std::this_thread::sleep_for(50ms);
  v.release();
  sender.join();
  CHECK(got);
}

TEST_CASE("shm_loan: a loan that fails names loan, not send: a removed name, a gone receiver", "[shm_zero_copy]") {
  {
    ring_name n;
    shm_ring rx(n.name, role::receiver, small_ring());
    shm_ring tx(n.name, role::sender, small_ring());
    REQUIRE(::shm_unlink(shm_ring::shm_name(n.name).c_str()) == 0);  // what rm does
    REQUIRE_THROWS_WITH((void)tx.loan_for(10, 100ms), Catch::Contains("loan(shm:" + n.name + ")") &&
                                                         Catch::Contains("st_nlink 0"));
  }
  ring_name n;
  auto rx = std::make_unique<shm_ring>(n.name, role::receiver, small_ring());
  shm_ring tx(n.name, role::sender, small_ring());
  while (tx.try_send(std::vector<std::byte>(1000))) {
  }
  rx.reset();  // full, and its receiver gone
  REQUIRE_THROWS_WITH((void)tx.loan_for(1000, 100ms), Catch::Contains("loan(shm:" + n.name + ")") &&
                                                         Catch::Contains("receiver is gone"));
}

TEST_CASE("shm zero-copy: misuse is refused naming the call and the ring", "[shm_zero_copy]") {
  ring_name n;
  shm_ring rx(n.name, role::receiver, small_ring());
  shm_ring tx(n.name, role::sender);
  // Larger than max_message, however empty the ring: message_too_large at the call.
  CHECK(errc_of([&] { (void)tx.loan(2041); }) == ipc::errc::message_too_large);
  REQUIRE_THROWS_WITH((void)tx.try_loan(1 << 20), Catch::Contains("loan(shm:" + n.name + ")") && Catch::Contains("2040"));
  // One loan at a time; no copying send while it is out (it would take the loan's space).
  shm_loan l = tx.loan(10);
  auto [busy_loan, busy_loan_text] = errno_of([&] { (void)tx.try_loan(10); });
  CHECK(busy_loan == EBUSY);
  CHECK_THAT(busy_loan_text, Catch::Contains("loan(shm:" + n.name + ")"));
  CHECK(errno_of([&] { tx.send(ipc::as_bytes("x")); }).first == EBUSY);
  CHECK(errno_of([&] { tx.reopen(); }).first == EBUSY);
  CHECK(errno_of([&] { l.commit(11); }).first == EINVAL);
  l.commit(3);
  CHECK(errno_of([&] { l.commit(); }).first == EINVAL);  // already committed: empty
  tx.send(ipc::as_bytes("copied"));                      // no loan out: sends again

  // One view at a time; no copying receive while it is out (its message is the next).
  shm_view v = rx.receive_view_for(1s);
  REQUIRE(v.size() == 3);
  CHECK(errno_of([&] { (void)rx.try_receive_view(); }).first == EBUSY);
  std::vector<std::byte> buf;
  auto [busy_rx, busy_rx_text] = errno_of([&] { (void)rx.try_receive(buf); });
  CHECK(busy_rx == EBUSY);
  CHECK_THAT(busy_rx_text, Catch::Contains("receive(shm:" + n.name + ")"));
  v.release();
  REQUIRE(rx.receive_for(buf, 1s));
  CHECK(ipc::as_text(buf) == "copied");

  // Each side's calls only: the other role's are EBADF, as send() on a receiver is (docs/channels.md, "Roles").
  CHECK(errno_of([&] { (void)rx.try_loan(1); }).first == EBADF);
  CHECK(errno_of([&] { (void)tx.try_receive_view(); }).first == EBADF);
  // Moving a loan moves the duty to commit it.
  shm_loan a = tx.loan(4);
  shm_loan b = std::move(a);
  CHECK_FALSE(a);  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
  std::memcpy(b.data(), "move", 4);
  b.commit();
  shm_view mv = rx.receive_view_for(1s);
  CHECK(ipc::as_text(mv.bytes()) == "move");
}

TEST_CASE("shm zero-copy: a sender SIGKILLed between loan and commit exposes nothing, and the receiver "
          "learns it is gone within a second",
          "[shm_zero_copy]") {
  ring_name n;
  shm_ring rx(n.name, role::receiver, mib_ring());
  auto c = ipc::test::fork_child([&](ipc::test::reporter& r) {
    shm_ring tx(n.name, role::sender);
    shm_loan whole = tx.loan(1 << 20);
    fill(whole.bytes(), 1);
    whole.commit();
    shm_loan torn = tx.loan(1 << 20);
    fill(torn.bytes().first(1 << 19), 2);  // half written
    r.say("loaned");
    ::pause();
    return 0;
  });
  REQUIRE(c.wait_for_line("loaned", 10s));
  REQUIRE(c.kill(SIGKILL));
  CHECK(c.wait(5s).signal == SIGKILL);
  {
    shm_view v = rx.receive_view_for(5s);
    REQUIRE(v.size() == std::size_t{1} << 20);
    CHECK(filled(v.bytes(), 1));
  }
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(errc_of([&] { (void)rx.receive_view_for(10s); }) == ipc::errc::closed);
  CHECK(std::chrono::steady_clock::now() - t0 < 1500ms);
  // A new sender takes the role over; the receiver gets its message, never the torn one.
  shm_ring tx(n.name, role::sender);
  tx.send(ipc::as_bytes("next"));
  shm_view v = rx.receive_view_for(5s);
  CHECK(ipc::as_text(v.bytes()) == "next");
  v.release();
  CHECK_FALSE(rx.try_receive_view());
}

TEST_CASE("shm zero-copy: a receiver SIGKILLed holding a view leaves the message to the next receiver",
          "[shm_zero_copy]") {
  ring_name n;
  shm_ring tx(n.name, role::sender, mib_ring());
  tx.send(pattern(1, 1 << 20));
  tx.send(ipc::as_bytes("second"));
  auto c = ipc::test::fork_child([&](ipc::test::reporter& r) {
    shm_ring rx(n.name, role::receiver);
    shm_view v = rx.receive_view_for(5s);
    r.say("holding ", v.size(), " ", filled(v.bytes(), 1) ? "intact" : "torn");
    ::pause();
    return 0;
  });
  REQUIRE(c.wait_for_line("holding 1048576 intact", 10s));
  REQUIRE(c.kill(SIGKILL));
  CHECK(c.wait(5s).signal == SIGKILL);
  shm_ring rx(n.name, role::receiver);  // the dead receiver's role is taken over
  {
    shm_view v = rx.receive_view_for(5s);
    REQUIRE(v.size() == std::size_t{1} << 20);
    CHECK(filled(v.bytes(), 1));
  }
  shm_view v = rx.receive_view_for(5s);
  CHECK(ipc::as_text(v.bytes()) == "second");
}

TEST_CASE("shm zero-copy: a sender blocked on a ring held by a SIGKILLed viewer gets closed within a second",
          "[shm_zero_copy]") {
  ring_name n;
  shm_ring tx(n.name, role::sender, small_ring());
  while (tx.try_send(pattern(0, 1000))) {
  }
  auto c = ipc::test::fork_child([&](ipc::test::reporter& r) {
    shm_ring rx(n.name, role::receiver);
    shm_view v = rx.receive_view_for(5s);
    r.say(v ? "holding" : "nothing");
    ::pause();
    return 0;
  });
  REQUIRE(c.wait_for_line("holding", 10s));
  std::thread killer([&] {
    std::this_thread::sleep_for(200ms);
    c.kill(SIGKILL);
  });
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(errc_of([&] { (void)tx.loan_for(1000, 10s); }) == ipc::errc::closed);
  CHECK(std::chrono::steady_clock::now() - t0 < 1500ms);
  killer.join();
  CHECK(c.wait(5s).signal == SIGKILL);
}
