// The shm channel's broadcast mode (ipc::shm_broadcast, shm:NAME?mode=broadcast): every subscriber
// gets every message published after it joined, subscribers join and leave at any time, both
// slow-subscriber policies, and the crash-safety contract: a publisher killed mid-write exposes
// nothing torn and holds nobody up past its detection; a subscriber killed mid-read holds the
// publishers up only until it is found dead. The channel semantics it shares with every kind (one
// subscriber, policy=block) run in test_channel_suite.cpp.
#include <ipc/error.hpp>
#include <ipc/shared_memory.hpp>
#include <ipc/shm_broadcast.hpp>
#include <ipc/shm_mpmc.hpp>
#include <ipc/unique_fd.hpp>

#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using ipc::broadcast_policy;
using ipc::role;
using ipc::shm_broadcast;
using ipc::shm_broadcast_options;

namespace {

using steady = std::chrono::steady_clock;

shm_broadcast_options sized(std::size_t slots, std::size_t max_message, broadcast_policy p = broadcast_policy::block) {
  shm_broadcast_options o;
  o.slots = slots;
  o.max_message = max_message;
  o.policy = p;
  return o;
}

// Message `seq`: the number, then a pattern derived from it and the size.
std::vector<std::byte> numbered(std::uint32_t seq, std::size_t size) {
  std::vector<std::byte> v(std::max<std::size_t>(size, 4));
  std::memcpy(v.data(), &seq, 4);
  for (std::size_t j = 4; j < v.size(); ++j) v[j] = static_cast<std::byte>((seq * 131U + j * 7U + 1U) & 0xffU);
  return v;
}

// Message `seq` of publisher `id` (1 or 2): the number, the id, then the numbered pattern.
std::vector<std::byte> from(unsigned id, std::uint32_t seq, std::size_t size) {
  auto v = numbered(seq * 2 + id, size);
  std::memcpy(v.data(), &seq, 4);
  v[4] = static_cast<std::byte>(id);
  return v;
}

struct tag {
  std::uint32_t seq = 0;
  bool intact = false;
};

tag read_tag(const std::vector<std::byte>& v) {
  tag t;
  if (v.size() < 4) return t;
  std::memcpy(&t.seq, v.data(), 4);
  t.intact = v == numbered(t.seq, v.size());
  return t;
}

bool closed(const std::system_error& e) { return e.code() == ipc::errc::closed; }

// A child that subscribes by itself, says "joined", and reads until the stream ends; it reports
// how many messages arrived intact and in order (each the previous one's successor).
ipc::test::child subscriber_child(const std::string& name, const shm_broadcast_options& o, std::chrono::milliseconds each) {
  return ipc::test::fork_child([name, o, each](ipc::test::reporter& r) {
    shm_broadcast sub(name, role::receiver, o);
    r.say("joined");
    std::vector<std::byte> buf;
    std::uint64_t got = 0, in_order = 0, broken = 0;
    std::int64_t last = -1;
    try {
      while (sub.receive_for(buf, 30s)) {
        const auto t = read_tag(buf);
        if (!t.intact) ++broken;
        if (t.intact && static_cast<std::int64_t>(t.seq) == last + 1) ++in_order;
        last = t.seq;
        ++got;
        if (each.count() > 0 && got % 100 == 0) std::this_thread::sleep_for(each);
      }
      r.say("timed out after ", got);
      return 1;
    } catch (const std::system_error& e) {
      if (!closed(e)) throw;
    }
    r.say("got ", got, " in_order ", in_order, " dropped ", sub.dropped(), " broken ", broken);
    return 0;
  });
}

}  // namespace

TEST_CASE("shm_broadcast: three subscriber processes each get all 3000 messages of a publisher process, in order",
          "[shm_broadcast]") {
  const std::string name = ipc::test::unique_name("bcast");
  auto gone = ipc::test::on_exit([&] { shm_broadcast::remove(name); });
  constexpr std::uint32_t count = 3000;
  const auto o = sized(16, 2048);  // a small ring: the publisher waits for the slowest subscriber often
  std::vector<ipc::test::child> subs;
  for (int i = 0; i < 3; ++i) {
    subs.push_back(subscriber_child(name, o, i == 0 ? 1ms : 0ms));
    REQUIRE(subs.back().wait_for_line("joined", 10s));
  }
  auto pub = ipc::test::fork_child([&](ipc::test::reporter& r) {
    shm_broadcast tx(name, role::sender, o);
    for (std::uint32_t seq = 0; seq < count; ++seq) {
      if (!tx.send_for(numbered(seq, 8 + (seq * 37U) % 2000), 30s)) {
        r.say("send_for timed out at ", seq);
        return 1;
      }
    }
    return 0;
  });
  auto sent = pub.wait(60s);
  INFO(sent.report);
  CHECK(sent.exit_code == 0);
  for (auto& c : subs) {
    auto res = c.wait(60s);
    INFO(res.report);
    CHECK(res.exit_code == 0);
    CHECK(res.report.find("got 3000 in_order 3000 dropped 0 broken 0") != std::string::npos);
  }
}

TEST_CASE("shm_broadcast: two publisher processes and two subscriber processes: each subscriber gets both streams whole, each in order",
          "[shm_broadcast]") {
  const std::string name = ipc::test::unique_name("bcast");
  auto gone = ipc::test::on_exit([&] { shm_broadcast::remove(name); });
  constexpr std::uint32_t per_publisher = 2000;
  const auto o = sized(8, 256);  // publishers meet at the same cells and wait for the subscribers
  std::vector<ipc::test::child> subs;
  for (int i = 0; i < 2; ++i) {
    subs.push_back(ipc::test::fork_child([&](ipc::test::reporter& r) {
      shm_broadcast sub(name, role::receiver, o);
      r.say("joined");
      std::vector<std::byte> buf;
      std::int64_t last[3] = {-1, -1, -1};
      std::uint64_t got = 0, bad = 0;
      try {
        while (sub.receive_for(buf, 30s)) {
          std::uint32_t seq = 0;
          const unsigned id = buf.size() >= 16 ? std::to_integer<unsigned>(buf[4]) : 0U;
          if (id == 1 || id == 2) std::memcpy(&seq, buf.data(), 4);
          if ((id != 1 && id != 2) || buf != from(id, seq, buf.size()) || static_cast<std::int64_t>(seq) != last[id] + 1) {
            ++bad;
          } else {
            last[id] = seq;
          }
          ++got;
        }
        return 1;
      } catch (const std::system_error& e) {
        if (!closed(e)) throw;
      }
      r.say("got ", got, " bad ", bad, " dropped ", sub.dropped());
      return 0;
    }));
    REQUIRE(subs.back().wait_for_line("joined", 10s));
  }
  std::vector<ipc::test::child> pubs;
  for (unsigned id = 1; id <= 2; ++id) {
    pubs.push_back(ipc::test::fork_child([&, id](ipc::test::reporter& r) {
      shm_broadcast tx(name, role::sender, o);
      r.say("attached");
      for (std::uint32_t seq = 0; seq < per_publisher; ++seq) {
        if (!tx.send_for(from(id, seq, 16 + seq % 200), 30s)) {
          r.say("send_for timed out at ", seq);
          return 1;
        }
      }
      return 0;
    }));
  }
  for (auto& p : pubs) {
    auto res = p.wait(60s);
    INFO(res.report);
    CHECK(res.exit_code == 0);
  }
  for (auto& c : subs) {
    auto res = c.wait(60s);
    INFO(res.report);
    CHECK(res.exit_code == 0);
    CHECK(res.report.find("got 4000 bad 0 dropped 0") != std::string::npos);
  }
}

TEST_CASE("shm_broadcast: a late subscriber starts at the head, and one that leaves stops holding the publisher",
          "[shm_broadcast]") {
  const std::string name = ipc::test::unique_name("bcast");
  auto gone = ipc::test::on_exit([&] { shm_broadcast::remove(name); });
  shm_broadcast tx(name, role::sender, sized(4, 64));
  auto early = std::make_unique<shm_broadcast>(name, role::receiver);
  for (std::uint32_t seq = 0; seq < 2; ++seq) REQUIRE(tx.try_send(numbered(seq, 16)));
  shm_broadcast late(name, role::receiver);
  CHECK(tx.subscribers() == 2);
  REQUIRE(tx.try_send(numbered(2, 16)));
  REQUIRE(tx.try_send(numbered(3, 16)));
  CHECK_FALSE(tx.try_send(numbered(4, 16)));  // the early subscriber is a whole ring behind
  std::vector<std::byte> buf;
  REQUIRE(late.try_receive(buf));
  CHECK(read_tag(buf).seq == 2);
  REQUIRE(late.try_receive(buf));
  CHECK(read_tag(buf).seq == 3);
  CHECK_FALSE(late.try_receive(buf));
  early.reset();  // leaves without reading: the publisher goes on at once
  CHECK(tx.subscribers() == 1);
  REQUIRE(tx.try_send(numbered(4, 16)));
  REQUIRE(late.try_receive(buf));
  CHECK(read_tag(buf).seq == 4);
  CHECK(read_tag(buf).intact);
  CHECK(late.dropped() == 0);
}

TEST_CASE("shm_broadcast: policy=block makes send_for wait for the slowest subscriber and time out, then proceed",
          "[shm_broadcast]") {
  const std::string name = ipc::test::unique_name("bcast");
  auto gone = ipc::test::on_exit([&] { shm_broadcast::remove(name); });
  shm_broadcast tx(name, role::sender, sized(8, 128));
  shm_broadcast fast(name, role::receiver);
  shm_broadcast slow(name, role::receiver);
  CHECK(tx.policy() == broadcast_policy::block);
  std::vector<std::byte> buf;
  for (std::uint32_t seq = 0; seq < 8; ++seq) {
    REQUIRE(tx.try_send(numbered(seq, 100)));
    REQUIRE(fast.try_receive(buf));
  }
  const auto t0 = steady::now();
  CHECK_FALSE(tx.send_for(numbered(8, 100), 100ms));
  const auto took = steady::now() - t0;
  CHECK(took >= 95ms);
  CHECK(took < 2s);
  CHECK(tx.counters().send_timeouts == 1);
  REQUIRE(slow.try_receive(buf));  // one cell free for the publisher
  CHECK(read_tag(buf).seq == 0);
  REQUIRE(tx.try_send(numbered(8, 100)));
  CHECK_FALSE(tx.try_send(numbered(9, 100)));
  for (std::uint32_t seq = 1; seq <= 8; ++seq) {
    REQUIRE(slow.try_receive(buf));
    CHECK(read_tag(buf).seq == seq);
    CHECK(read_tag(buf).intact);
  }
  REQUIRE(fast.try_receive(buf));
  CHECK(read_tag(buf).seq == 8);
  CHECK(slow.dropped() == 0);
  CHECK(fast.dropped() == 0);
}

TEST_CASE("shm_broadcast: a publisher asleep on a full ring goes on when the slowest subscriber reads one message and stops",
          "[shm_broadcast]") {
  // The subscriber reads one message and then stops (as one that waits for this publisher to do
  // something else would): the publisher, asleep with no time slices and asking for a batch of
  // cells first, must still go on (within its 10 ms batch wait), not wait for a batch that never comes.
  const std::string name = ipc::test::unique_name("bcast");
  auto gone = ipc::test::on_exit([&] { shm_broadcast::remove(name); });
  shm_broadcast tx(name, role::sender, sized(8, 64));
  shm_broadcast rx(name, role::receiver);
  for (std::uint32_t seq = 0; seq < 8; ++seq) REQUIRE(tx.try_send(numbered(seq, 16)));
  std::atomic<bool> read_one{false};
  std::thread reader([&] {
    std::this_thread::sleep_for(300ms);  // the publisher is asleep by then
    std::vector<std::byte> b;
    read_one = rx.try_receive(b) && read_tag(b).seq == 0;
  });
  const auto t0 = steady::now();
  const bool sent = tx.send_for(numbered(8, 16), 10s);
  const auto took = steady::now() - t0;
  reader.join();
  CHECK(read_one);
  CHECK(sent);
  CHECK(took < 2s);
}

TEST_CASE("shm_broadcast: two idle subscribers sleep without wake-ups and both learn of the last publisher's SIGKILL",
          "[shm_broadcast]") {
  // The kernel wakes one sleeper per death (through the publisher's endpoint lock); it wakes the other.
  const std::string name = ipc::test::unique_name("bcast");
  auto gone = ipc::test::on_exit([&] { shm_broadcast::remove(name); });
  auto c = ipc::test::fork_child([&](ipc::test::reporter& r) {
    shm_broadcast tx(name, role::sender, sized(8, 64));
    r.say("attached");
    for (;;) ::pause();
    return 0;
  });
  REQUIRE(c.wait_for_line("attached", 10s));
  shm_broadcast rx1(name, role::receiver);
  shm_broadcast rx2(name, role::receiver);
  struct outcome {
    long idle_switches = -1;
    bool idle_timed_out = false;
    bool closed = false;
    steady::time_point at{};
  };
  outcome o1, o2;
  auto run = [](shm_broadcast& rx, outcome& o) {
    std::vector<std::byte> buf;
    rusage ru{};
    ::getrusage(RUSAGE_THREAD, &ru);
    const long s0 = ru.ru_nvcsw;
    o.idle_timed_out = !rx.receive_for(buf, 1s);
    ::getrusage(RUSAGE_THREAD, &ru);
    o.idle_switches = ru.ru_nvcsw - s0;
    try {
      (void)rx.receive_for(buf, 10s);
    } catch (const std::system_error& e) {
      o.closed = closed(e);
    }
    o.at = steady::now();
  };
  std::thread t1(run, std::ref(rx1), std::ref(o1));
  std::thread t2(run, std::ref(rx2), std::ref(o2));
  std::this_thread::sleep_for(1500ms);  // both are in their second, 10 s wait by now
  const auto killed = steady::now();
  c.kill(SIGKILL);
  t1.join();
  t2.join();
  CHECK(c.wait(5s).signal == SIGKILL);
  INFO("idle switches " << o1.idle_switches << " and " << o2.idle_switches);
  CHECK(o1.idle_timed_out);
  CHECK(o2.idle_timed_out);
  CHECK(o1.idle_switches <= 3);  // one futex_waitv each (100 ms slices would make ten)
  CHECK(o2.idle_switches <= 3);
  CHECK(o1.closed);
  CHECK(o2.closed);
  CHECK(o1.at - killed < 1s);  // generous for a loaded machine
  CHECK(o2.at - killed < 1s);
}

TEST_CASE("shm_broadcast: a subscriber notices a publisher SIGKILLed after the thread that attached it exited",
          "[shm_broadcast]") {
  const std::string name = ipc::test::unique_name("bcast");
  auto gone = ipc::test::on_exit([&] { shm_broadcast::remove(name); });
  shm_broadcast rx(name, role::receiver, sized(8, 64));
  auto c = ipc::test::fork_child([&](ipc::test::reporter& r) {
    std::unique_ptr<shm_broadcast> tx;
    std::thread([&] { tx = std::make_unique<shm_broadcast>(name, role::sender); }).join();
    // The attaching thread is gone, the process lives: its endpoint lock is not held, so the
    // subscriber falls back on sleeps of at most 100 ms with a liveness probe after each.
    r.say("ready");
    for (;;) ::pause();
    return 0;
  });
  REQUIRE(c.wait_for_line("ready", 10s));
  std::vector<std::byte> buf;
  CHECK_FALSE(rx.receive_for(buf, 300ms));  // alive: a timeout, not closed
  std::thread killer([&] {
    std::this_thread::sleep_for(200ms);
    c.kill(SIGKILL);
  });
  const auto t0 = steady::now();
  try {
    (void)rx.receive_for(buf, 10s);
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(closed(e));
  }
  CHECK(steady::now() - t0 < 1500ms);
  killer.join();
  CHECK(c.wait(5s).signal == SIGKILL);
}

TEST_CASE("shm_broadcast: a publisher destroyed on another thread than the one that attached it leaves all the same",
          "[shm_broadcast]") {
  const std::string name = ipc::test::unique_name("bcast");
  auto gone = ipc::test::on_exit([&] { shm_broadcast::remove(name); });
  shm_broadcast rx(name, role::receiver, sized(8, 64));
  std::unique_ptr<shm_broadcast> tx;
  std::atomic<bool> attached{false}, release{false};
  std::thread attacher([&] {
    tx = std::make_unique<shm_broadcast>(name, role::sender);
    attached = true;
    while (!release) std::this_thread::sleep_for(1ms);  // alive while the handle dies elsewhere
  });
  while (!attached) std::this_thread::sleep_for(1ms);
  tx->send(ipc::as_bytes("one"));
  tx.reset();  // its endpoint lock stays on the attacher's robust list: the mapping is kept
  std::vector<std::byte> buf;
  REQUIRE(rx.receive_for(buf, 5s));
  CHECK(ipc::as_text(buf) == "one");
  const auto t0 = steady::now();
  try {
    (void)rx.receive_for(buf, 10s);
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(closed(e));
  }
  CHECK(steady::now() - t0 < 1s);
  release = true;
  attacher.join();
  shm_broadcast again(name, role::sender);  // a place is free for a new publisher
  again.send(ipc::as_bytes("two"));
}

TEST_CASE("shm_broadcast: a subscriber sees closed at once whenever its last publisher leaves, mid-stream or asleep",
          "[shm_broadcast]") {
  // 300 departures at 0-1.4 ms into a stream, so the subscriber is copying, spinning, about to sleep
  // or asleep when the publisher leaves. The narrowest interleaving (the departure, live count 0
  // then a data_seq bump, between the subscriber's verdict and its read of data_seq) is hit too
  // rarely to test by chance: wait_until reads data_seq first and the live count after it, so it
  // sees either the count or the bump (the argument is in shm_broadcast_io.cpp).
  int stranded = 0;
  for (int round = 0; round < 300; ++round) {
    const std::string name = ipc::test::unique_name("bcast");
    auto gone = ipc::test::on_exit([&] { shm_broadcast::remove(name); });
    shm_broadcast rx(name, role::receiver, sized(16, 64, broadcast_policy::drop_oldest));
    auto c = ipc::test::fork_child([&](ipc::test::reporter&) {
      shm_broadcast tx(name, role::sender);
      // A stream for 0-1.4 ms, so the subscriber is usually between messages (spinning, about to
      // sleep) when the publisher leaves.
      const auto stop = steady::now() + std::chrono::microseconds(100 * (round % 15));
      while (steady::now() < stop) tx.send(ipc::as_bytes("m"));
      return 0;
    });
    std::vector<std::byte> buf;
    try {
      while (rx.receive_for(buf, 3s)) {
      }
      ++stranded;  // a 3 s timeout: asleep after its publisher had gone
    } catch (const std::system_error& e) {
      if (!closed(e)) throw;
    }
    REQUIRE(c.wait(10s).exit_code == 0);
  }
  CHECK(stranded == 0);
}

TEST_CASE("shm_broadcast: policy=drop_oldest overwrites, and a subscriber a lap behind counts exactly what it missed",
          "[shm_broadcast]") {
  const std::string name = ipc::test::unique_name("bcast");
  auto gone = ipc::test::on_exit([&] { shm_broadcast::remove(name); });
  shm_broadcast tx(name, role::sender, sized(8, 64, broadcast_policy::drop_oldest));
  shm_broadcast lagging(name, role::receiver);
  shm_broadcast keeping_up(name, role::receiver);
  CHECK(lagging.policy() == broadcast_policy::drop_oldest);
  std::vector<std::byte> buf;
  for (std::uint32_t seq = 0; seq < 100; ++seq) {
    REQUIRE(tx.try_send(numbered(seq, 40)));  // never blocks
    REQUIRE(keeping_up.try_receive(buf));
    CHECK(read_tag(buf).seq == seq);
  }
  // The ring holds the last 8; the 92 before them are gone for the lagging subscriber.
  for (std::uint32_t seq = 92; seq < 100; ++seq) {
    REQUIRE(lagging.try_receive(buf));
    CHECK(read_tag(buf).seq == seq);
    CHECK(read_tag(buf).intact);
  }
  CHECK_FALSE(lagging.try_receive(buf));
  CHECK(lagging.dropped() == 92);
  CHECK(lagging.counters().messages_skipped == 92);
  CHECK(keeping_up.dropped() == 0);
  REQUIRE(tx.try_send(numbered(100, 40)));
  REQUIRE(lagging.try_receive(buf));
  CHECK(read_tag(buf).seq == 100);
  CHECK(lagging.dropped() == 92);
}

TEST_CASE("shm_broadcast: under drop_oldest a slow subscriber process never gets a torn message, and got + dropped = sent",
          "[shm_broadcast]") {
  const std::string name = ipc::test::unique_name("bcast");
  auto gone = ipc::test::on_exit([&] { shm_broadcast::remove(name); });
  constexpr std::uint32_t count = 20000;
  const auto o = sized(16, 4096, broadcast_policy::drop_oldest);
  auto sub = subscriber_child(name, o, 2ms);  // pauses every 100 messages: overwritten under it
  REQUIRE(sub.wait_for_line("joined", 10s));
  auto pub = ipc::test::fork_child([&](ipc::test::reporter& r) {
    shm_broadcast tx(name, role::sender, o);
    for (std::uint32_t seq = 0; seq < count; ++seq) {
      if (!tx.try_send(numbered(seq, 1000 + seq % 3000))) {
        r.say("try_send refused at ", seq);
        return 1;
      }
    }
    return 0;
  });
  auto sent = pub.wait(60s);
  INFO(sent.report);
  CHECK(sent.exit_code == 0);
  auto res = sub.wait(60s);
  INFO(res.report);
  REQUIRE(res.exit_code == 0);
  std::istringstream in(res.report.substr(res.report.find("got ")));
  std::string word;
  std::uint64_t got = 0, in_order = 0, dropped = 0, broken = 1;
  in >> word >> got >> word >> in_order >> word >> dropped >> word >> broken;
  CHECK(broken == 0);
  CHECK(got + dropped == count);
  CHECK(dropped > 0);  // the point of the test: it did fall behind
  // After a skip the next message is not its predecessor's successor: one break per skip at most.
  CHECK(in_order + dropped >= got);
}

TEST_CASE("shm_broadcast: a publisher that dies mid-write exposes no torn message and the next one arrives",
          "[shm_broadcast]") {
  const std::string name = ipc::test::unique_name("bcast");
  auto gone = ipc::test::on_exit([&] { shm_broadcast::remove(name); });
  shm_broadcast rx(name, role::receiver, sized(8, 8192));
  shm_broadcast other(name, role::receiver);
  shm_broadcast tx(name, role::sender);
  // The child's message runs into a page it cannot read: the copy into the cell faults halfway,
  // after the cell was claimed, and the process dies holding the claim.
  auto c = ipc::test::fork_child([&](ipc::test::reporter& r) {
    const rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);
    ::signal(SIGSEGV, SIG_DFL);  // die at once, as a killed process would: no test framework handler
    shm_broadcast dying(name, role::sender);
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    void* mem = ::mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return 2;
    std::memset(mem, 'x', 2 * page);
    ::mprotect(static_cast<char*>(mem) + page, page, PROT_NONE);
    dying.send(numbered(1, 100));
    r.say("claiming");
    dying.send(std::span<const std::byte>(static_cast<const std::byte*>(mem), 2 * page));
    r.say("the copy did not fault");
    return 3;
  });
  auto res = c.wait(30s);
  INFO(res.report);
  REQUIRE(res.report.find("claiming") != std::string::npos);
  CHECK(res.exit_code != 3);
  CHECK_FALSE(res.timed_out);
  tx.send(numbered(2, 100));
  for (auto* sub : {&rx, &other}) {
    std::vector<std::byte> buf;
    REQUIRE(sub->receive_for(buf, 10s));
    CHECK(read_tag(buf).seq == 1);
    CHECK(read_tag(buf).intact);
    const auto t0 = steady::now();
    REQUIRE(sub->receive_for(buf, 10s));  // waits at the torn cell until its claimer is found dead
    CHECK(steady::now() - t0 < 2s);
    CHECK(read_tag(buf).seq == 2);
    CHECK(read_tag(buf).intact);
    CHECK_FALSE(sub->try_receive(buf));
  }
  CHECK(rx.torn_skipped() == 1);
}

TEST_CASE("shm_broadcast: publishers SIGKILLed mid-stream never leave a torn message nor block the subscriber",
          "[shm_broadcast]") {
  const std::string name = ipc::test::unique_name("bcast");
  auto gone = ipc::test::on_exit([&] { shm_broadcast::remove(name); });
  constexpr std::size_t big = 1 << 20;  // most of a publisher's time goes into copying it in
  auto rx = std::make_unique<shm_broadcast>(name, role::receiver, sized(4, big));
  // A publisher that stays: without one, each kill would end the stream (every publisher gone).
  auto anchor = std::make_unique<shm_broadcast>(name, role::sender);
  std::uint64_t received = 0;
  std::size_t broken = 0;
  std::vector<std::byte> buf;
  for (std::uint32_t round = 1; round <= 5; ++round) {
    auto c = ipc::test::fork_child([&](ipc::test::reporter& r) {
      rx.reset();  // the child's copy would be a subscriber of its own, holding its publisher up
      anchor.reset();
      shm_broadcast tx(name, role::sender);
      r.say("sending");
      for (std::uint32_t seq = 0;; ++seq) {
        if (!tx.send_for(numbered(seq, big), 30s)) return 1;
      }
    });
    REQUIRE(c.wait_for_line("sending", 10s));
    // Receive for a while, then kill the publisher wherever it is; then read what it left.
    for (int i = 0; i < 20; ++i) {
      REQUIRE(rx->receive_for(buf, 10s));
      ++received;
      if (!read_tag(buf).intact) ++broken;
    }
    c.kill(SIGKILL);
    CHECK(c.wait(10s).signal == SIGKILL);
    while (rx->receive_for(buf, 300ms)) {  // a torn cell is stepped over once its claimer is found dead
      ++received;
      if (!read_tag(buf).intact) ++broken;
    }
  }
  INFO("torn cells skipped: " << rx->torn_skipped());
  CHECK(broken == 0);
  CHECK(received >= 100);
  CHECK(rx->torn_skipped() <= 5);  // at most one claim per killed publisher
  CHECK(rx->dropped() == 0);
  // Whatever the kills left behind, the staying publisher's message gets through.
  REQUIRE(anchor->send_for(numbered(9, 64), 10s));
  REQUIRE(rx->receive_for(buf, 10s));
  CHECK(read_tag(buf).seq == 9);
  CHECK(read_tag(buf).intact);
}

TEST_CASE("shm_broadcast: a subscriber that dies mid-read holds the publisher up only until it is found dead",
          "[shm_broadcast]") {
  const std::string name = ipc::test::unique_name("bcast");
  auto gone = ipc::test::on_exit([&] { shm_broadcast::remove(name); });
  constexpr std::size_t size = 64 * 1024;
  shm_broadcast tx(name, role::sender, sized(4, size));
  auto rx = std::make_unique<shm_broadcast>(name, role::receiver);
  auto dying = std::make_unique<shm_broadcast>(name, role::receiver);
  tx.send(numbered(0, size));
  // The child's buffer already has the message's size (so receive() does not resize it) and a
  // page in its middle it cannot write: the copy out of the cell faults halfway.
  auto c = ipc::test::fork_child([&](ipc::test::reporter& r) {
    rx.reset();  // the child's copy would be a subscriber of its own
    const rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);
    ::signal(SIGSEGV, SIG_DFL);
    std::vector<std::byte> buf(size);
    const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    const auto middle = (reinterpret_cast<std::uintptr_t>(buf.data()) + size / 2) & ~(page - 1);
    if (::mprotect(reinterpret_cast<void*>(middle), page, PROT_READ) != 0) return 2;
    r.say("reading");
    (void)dying->receive_for(buf, 10s);
    r.say("the copy did not fault");
    return 3;
  });
  dying.reset();
  auto res = c.wait(30s);
  INFO(res.report);
  REQUIRE(res.report.find("reading") != std::string::npos);
  CHECK(res.exit_code != 3);
  CHECK_FALSE(res.timed_out);
  // The dead subscriber's cursor never moves: the publisher waits for it once, until it is found
  // dead, and the live subscriber gets every message.
  std::vector<std::byte> buf;
  std::uint32_t in_order = 0;
  const auto t0 = steady::now();
  for (std::uint32_t seq = 1; seq <= 12; ++seq) {
    REQUIRE(tx.send_for(numbered(seq, size), 10s));
    if (seq == 1) {
      REQUIRE(rx->receive_for(buf, 10s));
      if (read_tag(buf).intact && read_tag(buf).seq == 0) ++in_order;
    }
    REQUIRE(rx->receive_for(buf, 10s));
    if (read_tag(buf).intact && read_tag(buf).seq == seq) ++in_order;
  }
  CHECK(steady::now() - t0 < 3s);
  CHECK(in_order == 13);
  CHECK(tx.subscribers() == 1);
}

TEST_CASE("shm_broadcast: subscribers SIGKILLed mid-read hold the publisher up only until found dead, and the others get everything",
          "[shm_broadcast]") {
  const std::string name = ipc::test::unique_name("bcast");
  auto gone = ipc::test::on_exit([&] { shm_broadcast::remove(name); });
  constexpr std::size_t big = 1 << 20;  // most of a subscriber's time goes into copying it out
  constexpr std::uint32_t total = 200;
  const auto o = sized(4, big);  // policy=block: a dead subscriber's cursor stops the publisher
  auto survivor = subscriber_child(name, o, 0ms);
  REQUIRE(survivor.wait_for_line("joined", 10s));
  auto pub = ipc::test::fork_child([&](ipc::test::reporter& r) {
    shm_broadcast tx(name, role::sender, o);
    r.say("publishing");
    std::chrono::nanoseconds longest{0};
    for (std::uint32_t seq = 0; seq < total; ++seq) {
      const auto t0 = steady::now();
      if (!tx.send_for(numbered(seq, big), 30s)) {
        r.say("send_for timed out at ", seq);
        return 1;
      }
      longest = std::max<std::chrono::nanoseconds>(longest, steady::now() - t0);
    }
    r.say("longest send ms ", std::chrono::duration_cast<std::chrono::milliseconds>(longest).count());
    return 0;
  });
  REQUIRE(pub.wait_for_line("publishing", 10s));
  std::size_t victims_broken = 0;
  for (int k = 0; k < 5; ++k) {
    auto victim = ipc::test::fork_child([&](ipc::test::reporter& r) {
      shm_broadcast sub(name, role::receiver);
      r.say("joined");
      std::vector<std::byte> buf;
      while (sub.receive_for(buf, 30s)) {
        if (!read_tag(buf).intact) r.say("bad");
      }
      return 1;
    });
    REQUIRE(victim.wait_for_line("joined", 10s));
    std::this_thread::sleep_for(30ms);
    victim.kill(SIGKILL);
    auto res = victim.wait(10s);
    CHECK(res.signal == SIGKILL);
    if (res.report.find("bad") != std::string::npos) ++victims_broken;
  }
  auto sent = pub.wait(60s);
  INFO(sent.report);
  CHECK(sent.exit_code == 0);
  auto got = survivor.wait(60s);
  INFO(got.report);
  CHECK(got.exit_code == 0);
  CHECK(got.report.find("got 200 in_order 200 dropped 0 broken 0") != std::string::npos);
  CHECK(victims_broken == 0);
  // Each kill holds the publisher up for one detection at most (a probe every 10 ms, sleeps of
  // at most 100 ms), plus the scheduling of a loaded machine.
  const auto at = sent.report.find("longest send ms ");
  REQUIRE(at != std::string::npos);
  CHECK(std::stol(sent.report.substr(at + 16)) < 2000);
}

TEST_CASE("shm_broadcast: a blocked publisher goes on within the detection time when the lagging subscriber is SIGKILLed",
          "[shm_broadcast]") {
  const std::string name = ipc::test::unique_name("bcast");
  auto gone = ipc::test::on_exit([&] { shm_broadcast::remove(name); });
  shm_broadcast tx(name, role::sender, sized(2, 64));
  auto c = ipc::test::fork_child([&](ipc::test::reporter& r) {
    shm_broadcast sub(name, role::receiver);
    r.say("joined");
    ::pause();
    return 0;
  });
  REQUIRE(c.wait_for_line("joined", 10s));
  REQUIRE(tx.try_send(ipc::as_bytes("1")));
  REQUIRE(tx.try_send(ipc::as_bytes("2")));
  CHECK_FALSE(tx.try_send(ipc::as_bytes("3")));
  c.kill(SIGKILL);
  CHECK(c.wait(10s).signal == SIGKILL);
  const auto t0 = steady::now();
  REQUIRE(tx.send_for(ipc::as_bytes("3"), 10s));
  CHECK(steady::now() - t0 < 1s);
  CHECK(tx.subscribers() == 0);
}

TEST_CASE("shm_broadcast: when every publisher is gone (one SIGKILLed) subscribers read what is left, then closed",
          "[shm_broadcast]") {
  const std::string name = ipc::test::unique_name("bcast");
  auto gone = ipc::test::on_exit([&] { shm_broadcast::remove(name); });
  shm_broadcast rx(name, role::receiver, sized(8, 64));
  auto tx = std::make_unique<shm_broadcast>(name, role::sender);
  auto c = ipc::test::fork_child([&](ipc::test::reporter& r) {
    tx.reset();
    shm_broadcast killed(name, role::sender);
    killed.send(ipc::as_bytes("from the killed one"));
    r.say("sent");
    ::pause();
    return 0;
  });
  REQUIRE(c.wait_for_line("sent", 10s));
  tx->send(ipc::as_bytes("from the parent"));
  tx.reset();  // a publisher remains: the stream goes on
  c.kill(SIGKILL);
  CHECK(c.wait(10s).signal == SIGKILL);
  std::vector<std::byte> buf;
  REQUIRE(rx.receive_for(buf, 5s));
  CHECK(ipc::as_text(buf) == "from the killed one");
  REQUIRE(rx.receive_for(buf, 5s));
  CHECK(ipc::as_text(buf) == "from the parent");
  const auto t0 = steady::now();
  try {
    (void)rx.receive_for(buf, 10s);
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(closed(e));
    CHECK_THAT(e.what(), Catch::Contains(name));
  }
  CHECK(steady::now() - t0 < 2s);
}

TEST_CASE("shm_broadcast: a fork child goes on from its parent's position as a subscriber of its own", "[shm_broadcast]") {
  const std::string name = ipc::test::unique_name("bcast");
  auto gone = ipc::test::on_exit([&] { shm_broadcast::remove(name); });
  auto tx = std::make_unique<shm_broadcast>(name, role::sender, sized(8, 64));
  shm_broadcast rx(name, role::receiver);
  tx->send(ipc::as_bytes("a"));
  tx->send(ipc::as_bytes("b"));
  std::vector<std::byte> buf;
  REQUIRE(rx.try_receive(buf));  // "a": the child starts at "b"
  auto c = ipc::test::fork_child([&](ipc::test::reporter& r) {
    tx.reset();
    std::vector<std::byte> b;
    std::string got;
    try {
      while (rx.receive_for(b, 10s)) got += ipc::as_text(b);
    } catch (const std::system_error& e) {
      if (!closed(e)) throw;
    }
    r.say("got ", got);
    return 0;
  });
  tx->send(ipc::as_bytes("c"));
  tx.reset();  // the only publisher: the child reads b, c, then closed
  auto res = c.wait(30s);
  INFO(res.report);
  CHECK(res.exit_code == 0);
  CHECK(res.report.find("got bc") != std::string::npos);
  REQUIRE(rx.try_receive(buf));
  CHECK(ipc::as_text(buf) == "b");
  REQUIRE(rx.try_receive(buf));
  CHECK(ipc::as_text(buf) == "c");
}

TEST_CASE("shm_broadcast: URIs choose the mode and the policy; bad values are refused naming them", "[shm_broadcast]") {
  const std::string name = ipc::test::unique_name("bcast");
  auto gone = ipc::test::on_exit([&] { shm_broadcast::remove(name); });
  auto rx = ipc::open_channel("shm:" + name + "?mode=broadcast,0640&slots=8&max_message=100&policy=drop_oldest",
                              role::receiver);
  auto* b = dynamic_cast<shm_broadcast*>(rx.get());
  REQUIRE(b != nullptr);
  CHECK(b->policy() == broadcast_policy::drop_oldest);
  CHECK(rx->limits().capacity_messages == 8);
  CHECK(rx->max_message_size() == 100);
  struct stat st {};
  REQUIRE(::stat(("/dev/shm/" + ipc::posix_segment::posix_name(name)).c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0640);
  auto tx = ipc::open_channel("shm:" + name + "?mode=broadcast", role::sender);
  auto tx2 = ipc::open_channel("shm:" + name + "?mode=broadcast", role::sender);  // several publishers
  tx->send(ipc::as_bytes("one"));
  tx2->send(ipc::as_bytes("two"));
  std::vector<std::byte> buf;
  REQUIRE(rx->receive_for(buf, 5s));
  CHECK(ipc::as_text(buf) == "one");
  REQUIRE(rx->receive_for(buf, 5s));
  CHECK(ipc::as_text(buf) == "two");
  const std::string other = ipc::test::unique_name("bcast-uri");
  auto refused = [&](const std::string& query, const std::string& named) {
    try {
      (void)ipc::open_channel("shm:" + other + "?mode=broadcast&" + query, role::sender);
      FAIL("no throw for " << query);
    } catch (const std::system_error& e) {
      CHECK(e.code() == ipc::errc::bad_uri);
      CHECK_THAT(e.what(), Catch::Contains(named));
    }
  };
  refused("policy=newest", "newest");
  refused("slots=3", "option slots=3");
  refused("max_message=0", "max_message=0");
  refused("max_message=32M", "option max_message=33554432");
  refused("capacity=4K", "capacity");
  CHECK_FALSE(shm_broadcast::remove(other));  // nothing was created by a refused URI
}

TEST_CASE("shm_broadcast: a work queue and a broadcast channel of one name refuse each other as incompatible",
          "[shm_broadcast]") {
  const std::string name = ipc::test::unique_name("bcast");
  auto gone = ipc::test::on_exit([&] { shm_broadcast::remove(name); });
  shm_broadcast b(name, role::receiver, sized(4, 64));
  try {
    ipc::shm_mpmc q(name, role::sender);
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::incompatible);
  }
}

TEST_CASE("shm_broadcast: an opener that names a policy or size the channel lacks is refused naming both values; one "
          "that leaves them out adopts the channel's",
          "[shm_broadcast]") {
  const std::string name = ipc::test::unique_name("bcast");
  auto gone = ipc::test::on_exit([&] { shm_broadcast::remove(name); });
  const std::string uri = "shm:" + name + "?mode=broadcast";
  auto rx = ipc::open_channel(uri + "&policy=drop_oldest&slots=8&max_message=100", role::receiver);
  auto refused = [&](const std::string& query, const std::string& asked, const std::string& existing) {
    try {
      (void)ipc::open_channel(uri + "&" + query, role::sender);
      FAIL("no throw for " << query);
    } catch (const std::system_error& e) {
      CHECK(e.code() == ipc::errc::incompatible);
      CHECK_THAT(e.what(), Catch::Contains("shm:" + name) && Catch::Contains(asked) && Catch::Contains(existing));
    }
  };
  refused("policy=block", "policy=block", "policy=drop_oldest");
  refused("slots=16", "slots=16", "slots=8");
  refused("max_message=200", "max_message=200", "max_message=100");
  auto tx = ipc::open_channel(uri, role::sender);  // nothing named: the channel's own
  auto* b = dynamic_cast<shm_broadcast*>(tx.get());
  REQUIRE(b != nullptr);
  CHECK(b->policy() == broadcast_policy::drop_oldest);
  CHECK(tx->max_message_size() == 100);
  auto same = ipc::open_channel(uri + "&policy=drop_oldest&slots=8&max_message=100", role::sender);  // agreeing: fine
  CHECK(same->limits().capacity_messages == 8);
  // The same rule through the options: a value insisted on is checked, a default one adopts.
  shm_broadcast_options o;
  o.policy = broadcast_policy::block;
  CHECK(shm_broadcast(name, role::sender, o).policy() == broadcast_policy::drop_oldest);
  o.insist_policy = true;
  CHECK_THROWS_WITH(shm_broadcast(name, role::sender, o), Catch::Contains("policy=block") && Catch::Contains("policy=drop_oldest"));
}

TEST_CASE("shm_broadcast: a garbage header is refused naming the channel, with no field read from the garbage",
          "[shm_broadcast]") {
  const std::string name = ipc::test::unique_name("bcast");
  auto gone = ipc::test::on_exit([&] { shm_broadcast::remove(name); });
  {
    const ipc::unique_fd fd(::shm_open(ipc::posix_segment::posix_name(name).c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    REQUIRE(fd);
    const std::vector<char> garbage(8192, 0x11);  // "creator pid" 0x11111111 = 286331153, never a live pid
    REQUIRE(::write(fd.get(), garbage.data(), garbage.size()) == static_cast<ssize_t>(garbage.size()));
  }
  try {
    shm_broadcast b(name, role::receiver);
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::incompatible);
    CHECK_THAT(e.what(), Catch::Contains("libipc." + name));
    CHECK_THAT(e.what(), !Catch::Contains("286331153") && !Catch::Contains("pid"));
  }
}

TEST_CASE("shm_broadcast: a header whose sizes do not match its mapping is refused, named, and never used",
          "[shm_broadcast]") {
  const std::string name = ipc::test::unique_name("bcast");
  auto gone = ipc::test::on_exit([&] { shm_broadcast::remove(name); });
  shm_broadcast b(name, role::receiver, sized(4, 64));
  const std::string path = "/dev/shm/" + ipc::posix_segment::posix_name(name);
  {
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    REQUIRE(fd >= 0);
    void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    REQUIRE(p != MAP_FAILED);
    std::uint64_t slots = 1 << 14;  // the header's slot count (offset 48): far more than were mapped
    std::memcpy(static_cast<char*>(p) + 48, &slots, sizeof slots);
    ::munmap(p, 4096);
  }
  try {
    shm_broadcast again(name, role::sender);
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::incompatible);
    CHECK_THAT(e.what(), Catch::Contains("attach(shm:" + name + "?mode=broadcast)") && Catch::Contains(path) &&
                             Catch::Contains("16384 slots"));
  }
}

TEST_CASE("shm_broadcast: a segment of an older layout version is refused as incompatible, naming both versions",
          "[shm_broadcast]") {
  const std::string name = ipc::test::unique_name("bcast");
  auto gone = ipc::test::on_exit([&] { shm_broadcast::remove(name); });
  shm_broadcast b(name, role::receiver, sized(4, 64));
  const std::string path = "/dev/shm/" + ipc::posix_segment::posix_name(name);
  {
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    REQUIRE(fd >= 0);
    void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    REQUIRE(p != MAP_FAILED);
    const std::uint32_t version = 1;  // the layout before endpoint locks (layout_header.version, offset 8)
    std::memcpy(static_cast<char*>(p) + 8, &version, sizeof version);
    ::munmap(p, 4096);
  }
  try {
    shm_broadcast again(name, role::sender);
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::incompatible);
    CHECK_THAT(e.what(), Catch::Contains(path) && Catch::Contains("layout version 1, expected 2"));
  }
}
