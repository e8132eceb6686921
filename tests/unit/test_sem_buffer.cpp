#include <ipc/channel.hpp>
#include <ipc/error.hpp>
#include <ipc/sem_buffer.hpp>
#include <ipc/uri.hpp>

#include "detail/layout_header.hpp"
#include "detail/sysv_key.hpp"
#include "pair_sem.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/sem.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

using namespace std::chrono_literals;
using ipc::open_mode;
using ipc::role;
using ipc::sem_buffer;
using ipc::sem_geometry;

namespace {

ipc::test::on_exit sembuf_cleanup(const std::string& name) {
  return ipc::test::on_exit([=] { sem_buffer::remove(name); });
}

template <class Code>
auto has_code(Code code) {
  return Catch::Predicate<std::system_error>([code](const std::system_error& e) { return e.code() == code; },
                                             "the expected error code");
}

std::string text_of(const std::vector<std::byte>& b) { return std::string(ipc::as_text(b)); }

}  // namespace

TEST_CASE("sem_buffer: messages of every size arrive whole and in order", "[sem_buffer]") {
  auto name = ipc::test::unique_name("sb");
  auto cleanup = sembuf_cleanup(name);
  sem_buffer tx(name, role::sender, open_mode::create_only);
  sem_buffer rx(name, role::receiver, open_mode::open_only);
  CHECK(tx.kind() == "sem");
  CHECK(tx.name() == "sem:" + name);
  CHECK(rx.slots() == 16);
  CHECK(rx.slot_size() == 4096);
  CHECK(tx.max_message_size() == 4092);
  auto lim = rx.limits();
  CHECK(lim.capacity_messages == 16);
  CHECK(lim.capacity_bytes == 16 * 4092);

  std::string big(4092, 'x');
  big.front() = 'A';
  big.back() = 'Z';
  tx.send(ipc::as_bytes("hello"));
  tx.send(ipc::as_bytes(""));
  tx.send(ipc::as_bytes(big));
  std::vector<std::byte> buf;
  CHECK(rx.receive(buf) == 5);
  CHECK(text_of(buf) == "hello");
  CHECK(rx.receive_for(buf, 1s) == std::size_t{0});
  CHECK(rx.try_receive(buf) == big.size());
  CHECK(text_of(buf) == big);
  CHECK_THROWS_MATCHES(tx.send(ipc::as_bytes(big + "!")), std::system_error, has_code(ipc::errc::message_too_large));
  CHECK(rx.semaphores().values() == std::vector<unsigned short>{16, 0, 1, 0, 0});  // busy is down again
  CHECK(tx.counters().messages_sent == 3);
  CHECK(rx.counters().messages_received == 3);
}

TEST_CASE("sem_buffer: a full buffer times out senders and an empty one receivers", "[sem_buffer]") {
  auto name = ipc::test::unique_name("sbfull");
  auto cleanup = sembuf_cleanup(name);
  sem_buffer tx(name, role::sender, open_mode::create_only, {2, 64});
  sem_buffer rx(name, role::receiver);  // adopts the existing geometry
  CHECK(rx.slots() == 2);
  CHECK(tx.try_send(ipc::as_bytes("1")));
  CHECK(tx.try_send(ipc::as_bytes("2")));
  CHECK_FALSE(tx.try_send(ipc::as_bytes("3")));
  auto t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(tx.send_for(ipc::as_bytes("3"), 100ms));
  auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took >= 95ms);
  CHECK(took < 2s);
  CHECK(tx.counters().send_timeouts == 2);

  std::vector<std::byte> buf;
  CHECK(rx.try_receive(buf));
  CHECK(text_of(buf) == "1");
  CHECK(tx.try_send(ipc::as_bytes("3")));  // wraps around to slot 0
  CHECK(rx.try_receive(buf));
  CHECK(text_of(buf) == "2");
  CHECK(rx.try_receive(buf));
  CHECK(text_of(buf) == "3");
  CHECK_FALSE(rx.try_receive(buf));
  t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(rx.receive_for(buf, 100ms));
  took = std::chrono::steady_clock::now() - t0;
  CHECK(took >= 95ms);
  CHECK(took < 2s);
}

TEST_CASE("sem_buffer: URIs choose the geometry and bad ones are refused", "[sem_buffer]") {
  auto name = ipc::test::unique_name("sburi");
  auto cleanup = sembuf_cleanup(name);
  auto tx = ipc::open_channel("sem:" + name + "?slots=4&max_message=100&mode=0600&open=create_only", role::sender);
  CHECK(tx->kind() == "sem");
  CHECK(tx->limits().max_message_size == 100);
  CHECK(tx->limits().capacity_messages == 4);
  auto rx = ipc::open_channel("sem:" + name, role::receiver);
  CHECK(rx->limits().capacity_messages == 4);
  CHECK_THROWS_MATCHES(ipc::open_channel("sem:" + name + "?slots=8", role::receiver), std::system_error,
                       has_code(ipc::errc::incompatible));

  auto cap = ipc::test::unique_name("sbcap");
  auto cap_cleanup = sembuf_cleanup(cap);
  auto c = ipc::open_channel("sem:" + cap + "?capacity=1000&max_message=100", role::receiver);
  CHECK(c->limits().capacity_messages == 10);

  for (const char* bad : {"?slots=0", "?slots=99999", "?slot_size=4", "?bogus=1", "?slots=2&capacity=10",
                          "?slot_size=64&max_message=10", "?slots=x"}) {
    INFO(bad);
    CHECK_THROWS_MATCHES(ipc::open_channel("sem:" + ipc::test::unique_name("bad") + bad, role::sender),
                         std::system_error, has_code(ipc::errc::bad_uri));
  }
  CHECK_THROWS_MATCHES(ipc::open_channel("sem:../x", role::sender), std::system_error, has_code(ipc::errc::bad_uri));
}

TEST_CASE("sem_buffer: create_only, open_only and bad geometries fail clearly, leaving nothing", "[sem_buffer]") {
  auto name = ipc::test::unique_name("sbmode");
  auto cleanup = sembuf_cleanup(name);
  CHECK_THROWS_MATCHES(sem_buffer(name, role::receiver, open_mode::open_only), std::system_error,
                       has_code(std::errc::no_such_file_or_directory));
  CHECK_THROWS_MATCHES(sem_buffer(name, role::sender, open_mode::create_only, {40000, 64}), std::system_error,
                       has_code(std::errc::invalid_argument));
  CHECK_THROWS_WITH(sem_buffer(name, role::sender, open_mode::create_only, {4, 3}), Catch::Contains("slot_size=3"));
  CHECK_FALSE(std::filesystem::exists(ipc::runtime_dir() / (name + ".sembuf")));
  sem_buffer a(name, role::receiver, open_mode::create_only, {4, 64});
  CHECK_THROWS_MATCHES(sem_buffer(name, role::sender, open_mode::create_only, {4, 64}), std::system_error,
                       has_code(std::errc::file_exists));
  CHECK_THROWS_MATCHES(sem_buffer(name, role::sender, open_mode::open_only, {4, 128}), std::system_error,
                       has_code(ipc::errc::incompatible));
}

TEST_CASE("sem_buffer: a corrupt index or stored length is errc::corrupt, never an out-of-bounds read",
          "[sem_buffer]") {
  auto name = ipc::test::unique_name("sbcorrupt");
  auto cleanup = sembuf_cleanup(name);
  sem_buffer tx(name, role::sender, open_mode::create_only, {4, 64});
  sem_buffer rx(name, role::receiver);
  ipc::semaphore_set raw(rx.semaphores().key(), "test", open_mode::open_only, {0, 0, 0, 0, 0});
  auto is_corrupt = Catch::Predicate<std::system_error>([&](const std::system_error& e) {
    return e.code() == ipc::errc::corrupt && std::string(e.what()).find(name + ".sembuf") != std::string::npos;
  });
  std::vector<std::byte> buf;

  // The read index sits in the segment header, after the layout header and the geometry.
  auto* head = reinterpret_cast<std::uint32_t*>(rx.segment().data() + sizeof(ipc::detail::layout_header) + 8);
  tx.send(ipc::as_bytes("one"));
  *head = 999;
  CHECK_THROWS_MATCHES(rx.receive_for(buf, 1s), std::system_error, is_corrupt);
  CHECK_THROWS_MATCHES(tx.send_for(ipc::as_bytes("two"), 1s), std::system_error, is_corrupt);
  CHECK(raw.value(sem_buffer::sem_mutex) == 1);  // released on the way out
  CHECK(raw.value(sem_buffer::sem_busy) == 0);
  *head = 0;
  CHECK(rx.receive_for(buf, 1s));
  CHECK(text_of(buf) == "one");

  tx.send(ipc::as_bytes("two"));  // slot 1
  const std::uint32_t hostile = 0xffffffffU;
  std::memcpy(rx.segment().payload() + 1 * 64, &hostile, sizeof hostile);
  CHECK_THROWS_MATCHES(rx.receive_for(buf, 1s), std::system_error, is_corrupt);
  CHECK(raw.values() == std::vector<unsigned short>{3, 1, 1, 0, 0});  // nothing was consumed

  raw.set_value(sem_buffer::sem_full, 30);  // more messages than slots: a fresh handle's first check sees it
  sem_buffer rx2(name, role::receiver);
  CHECK_THROWS_MATCHES(rx2.receive_for(buf, 1s), std::system_error, is_corrupt);
}

TEST_CASE("sem_buffer: after close the receiver drains, then gets closed until a sender returns", "[sem_buffer]") {
  auto name = ipc::test::unique_name("sbclose");
  auto cleanup = sembuf_cleanup(name);
  sem_buffer rx(name, role::receiver, open_mode::create_only, {4, 64});
  auto is_closed = has_code(ipc::errc::closed);
  std::vector<std::byte> buf;
  {
    sem_buffer tx(name, role::sender);
    tx.send(ipc::as_bytes("a"));
    tx.send(ipc::as_bytes("b"));
    tx.close();
  }
  CHECK(rx.receive_for(buf, 1s));
  CHECK(text_of(buf) == "a");
  CHECK(rx.receive_for(buf, 1s));
  CHECK(text_of(buf) == "b");
  CHECK_THROWS_MATCHES(rx.receive_for(buf, 1s), std::system_error, is_closed);
  {
    sem_buffer copy(name, role::sender);  // attaching reopens; destroying without close() does not close
    copy.send(ipc::as_bytes("b2"));
  }
  CHECK(rx.receive_for(buf, 1s));
  CHECK(text_of(buf) == "b2");
  CHECK_FALSE(rx.try_receive(buf));
  sem_buffer(name, role::sender).close();
  CHECK_THROWS_MATCHES(rx.try_receive(buf), std::system_error, is_closed);

  sem_buffer again(name, role::sender);  // a restarted sender reopens the stream
  CHECK(rx.semaphores().value(sem_buffer::sem_closed) == 0);
  CHECK_FALSE(rx.try_receive(buf));
  again.send(ipc::as_bytes("c"));
  CHECK(rx.receive_for(buf, 1s));
  CHECK(text_of(buf) == "c");

  // A receiver blocked on an empty buffer wakes on close.
  std::atomic<int> outcome{0};
  std::thread waiter([&] {
    std::vector<std::byte> b;
    try {
      outcome = rx.receive_for(b, 10s) ? 2 : 3;
    } catch (const std::system_error& e) {
      outcome = e.code() == ipc::errc::closed ? 1 : 4;
    }
  });
  auto d = ipc::deadline::in(5s);
  while (rx.semaphores().waiters(sem_buffer::sem_full) == 0 && !d.expired()) std::this_thread::sleep_for(1ms);
  again.close();
  waiter.join();
  CHECK(outcome == 1);
}

TEST_CASE("sem_buffer: removing the objects wakes a blocked peer with errc::closed", "[sem_buffer]") {
  auto name = ipc::test::unique_name("sbrm");
  auto cleanup = sembuf_cleanup(name);
  sem_buffer rx(name, role::receiver, open_mode::create_only, {2, 64});
  sem_buffer tx(name, role::sender);
  std::atomic<int> outcome{0};
  std::thread waiter([&] {
    std::vector<std::byte> b;
    try {
      outcome = rx.receive_for(b, 10s) ? 2 : 3;
    } catch (const std::system_error& e) {
      outcome = e.code() == ipc::errc::closed ? 1 : 4;
    }
  });
  auto d = ipc::deadline::in(5s);
  while (rx.semaphores().waiters(sem_buffer::sem_full) == 0 && !d.expired()) std::this_thread::sleep_for(1ms);
  tx.remove();
  waiter.join();
  CHECK(outcome == 1);
  CHECK_THROWS_MATCHES(tx.try_send(ipc::as_bytes("x")), std::system_error, has_code(ipc::errc::closed));
  CHECK_FALSE(std::filesystem::exists(ipc::runtime_dir() / (name + ".sembuf")));
  CHECK_FALSE(sem_buffer::remove(name));
}

TEST_CASE("sem_buffer: a producer SIGKILLed mid-stream leaves the counts consistent", "[sem_buffer]") {
  for (int round = 0; round < 5; ++round) {
    auto name = ipc::test::unique_name("sbkill");
    auto cleanup = sembuf_cleanup(name);
    sem_buffer rx(name, role::receiver, open_mode::create_only, {3, 32});
    auto kid = ipc::test::fork_child([&](ipc::test::reporter& r) -> int {
      sem_buffer tx(name, role::sender, open_mode::open_only);
      r.say("ready");
      for (std::uint64_t seq = 0;; ++seq) tx.send(ipc::as_bytes(std::to_string(seq)));
    });
    REQUIRE(kid.wait_for_line("ready", 5s));
    std::vector<std::byte> buf;
    std::uint64_t expect = 0;
    auto until = ipc::deadline::in(std::chrono::milliseconds(20 + 15 * round));
    while (!until.expired()) {
      if (rx.receive_for(buf, 100ms)) {
        REQUIRE(text_of(buf) == std::to_string(expect));
        ++expect;
      }
    }
    kid.kill(SIGKILL);
    CHECK(kid.wait(5s).signal == SIGKILL);
    while (rx.try_receive(buf)) {
      REQUIRE(text_of(buf) == std::to_string(expect));
      ++expect;
    }
    CHECK(expect > 0);
    auto v = rx.semaphores().values();
    CHECK(v[sem_buffer::sem_empty] == 3);
    CHECK(v[sem_buffer::sem_full] == 0);
    CHECK(v[sem_buffer::sem_mutex] == 1);
    CHECK(v[sem_buffer::sem_busy] == 0);
  }
}

namespace {

// A child that locks like a sender or receiver, moves the index and dies before its commit semop.
int die_between_index_and_commit(int semid, std::uint32_t* index, std::uint32_t ring, unsigned short unit) {
  sembuf lock[3] = {{unit, -1, SEM_UNDO}, {sem_buffer::sem_mutex, -1, SEM_UNDO}, {sem_buffer::sem_busy, 1, 0}};
  if (::semop(semid, lock, 3) != 0) return 3;
  *index = (*index + 1) % ring;
  ::_exit(0);  // the kernel undoes the unit and the mutex; busy stays raised
}

}  // namespace

TEST_CASE("sem_buffer: a holder that dies between its index store and its commit is repaired by the next", "[sem_buffer]") {
  auto name = ipc::test::unique_name("sbdie");
  auto cleanup = sembuf_cleanup(name);
  sem_buffer tx(name, role::sender, open_mode::create_only, {4, 64});
  sem_buffer rx(name, role::receiver);
  auto* indices = reinterpret_cast<std::uint32_t*>(rx.segment().data() + sizeof(ipc::detail::layout_header) + 8);
  const int semid = rx.semaphores().id();
  std::vector<std::byte> buf;
  tx.send(ipc::as_bytes("kept"));

  SECTION("a sender: its message never was") {
    auto kid = ipc::test::fork_child([&](ipc::test::reporter&) {
      return die_between_index_and_commit(semid, &indices[1], 8, sem_buffer::sem_empty);
    });
    REQUIRE(kid.wait(5s).exit_code == 0);
    CHECK(rx.semaphores().value(sem_buffer::sem_busy) == 1);
    tx.send(ipc::as_bytes("next"));
    CHECK(tx.recoveries() == 1);
    REQUIRE(rx.receive_for(buf, 1s));
    CHECK(text_of(buf) == "kept");
    REQUIRE(rx.receive_for(buf, 1s));
    CHECK(text_of(buf) == "next");
  }
  SECTION("a receiver: the message is delivered again") {
    auto kid = ipc::test::fork_child([&](ipc::test::reporter&) {
      return die_between_index_and_commit(semid, &indices[0], 8, sem_buffer::sem_full);
    });
    REQUIRE(kid.wait(5s).exit_code == 0);
    REQUIRE(rx.receive_for(buf, 1s));
    CHECK(text_of(buf) == "kept");
    CHECK(rx.recoveries() == 1);
    CHECK_FALSE(rx.try_receive(buf));
  }
  auto v = rx.semaphores().values();
  CHECK(v[sem_buffer::sem_mutex] == 1);
  CHECK(v[sem_buffer::sem_busy] == 0);
}

TEST_CASE("sem_buffer: 10,000 messages cross from a producer process to a consumer in order", "[sem_buffer]") {
  auto name = ipc::test::unique_name("sbxproc");
  auto cleanup = sembuf_cleanup(name);
  sem_buffer rx(name, role::receiver, open_mode::create_only, {8, 256});
  constexpr int count = 10'000;
  auto kid = ipc::test::fork_child([&](ipc::test::reporter&) {
    sem_buffer tx(name, role::sender, open_mode::open_only);
    for (int i = 0; i < count; ++i) {
      std::string m = std::to_string(i) + ":" + std::string(static_cast<std::size_t>(i % 200), 'p');
      if (!tx.send_for(ipc::as_bytes(m), 10s)) return 2;
    }
    tx.close();
    return 0;
  });
  std::vector<std::byte> buf;
  int received = 0;
  bool in_order = true;
  for (;;) {
    try {
      if (!rx.receive_for(buf, 10s)) break;
    } catch (const std::system_error& e) {
      CHECK(e.code() == ipc::errc::closed);
      break;
    }
    std::string expect = std::to_string(received) + ":" + std::string(static_cast<std::size_t>(received % 200), 'p');
    if (text_of(buf) != expect) in_order = false;
    ++received;
  }
  auto res = kid.wait(30s);
  INFO(res.report);
  CHECK(res.exit_code == 0);
  CHECK(received == count);
  CHECK(in_order);
}

TEST_CASE("sem_buffer: the suite pair drains then reports closed", "[sem_buffer]") {
  auto p = ipc::test::sem_pair::make();
  p.sender->send(ipc::as_bytes("last"));
  ipc::test::sem_pair::close_for_good(p);
  std::vector<std::byte> buf;
  CHECK(p.receiver->receive_for(buf, 1s));
  CHECK(text_of(buf) == "last");
  CHECK_THROWS_MATCHES(p.receiver->receive_for(buf, 1s), std::system_error, has_code(ipc::errc::closed));
}
