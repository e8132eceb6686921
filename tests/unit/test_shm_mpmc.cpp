// The shm channel's work-queue mode (ipc::shm_mpmc, shm:NAME?mode=mpmc): many senders and
// receivers, each message to exactly one receiver, and the crash-safety contract: a sender killed
// mid-write exposes nothing torn and holds nobody up; a receiver killed mid-read never blocks the
// senders. The channel semantics it shares with every kind run in test_channel_suite.cpp.
#include <ipc/error.hpp>
#include <ipc/queue.hpp>
#include <ipc/shm_mpmc.hpp>
#include <ipc/shm_ring.hpp>

#include "detail/shm_mpmc_layout.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using ipc::role;
using ipc::shm_mpmc;
using ipc::shm_mpmc_options;

namespace {

// Unlinks the test's queue whatever happens.
struct queue_name {
  std::string name = ipc::test::unique_name("mpmc");
  queue_name() = default;
  queue_name(const queue_name&) = delete;
  queue_name& operator=(const queue_name&) = delete;
  ~queue_name() {
    try {
      shm_mpmc::remove(name);
    } catch (...) {
    }
  }
};

shm_mpmc_options sized(std::size_t slots, std::size_t max_message) {
  shm_mpmc_options o;
  o.slots = slots;
  o.max_message = max_message;
  return o;
}

// Message `seq` of sender `id`: the two numbers, then a pattern derived from them.
std::vector<std::byte> numbered(std::uint32_t id, std::uint32_t seq, std::size_t size) {
  std::vector<std::byte> v(std::max<std::size_t>(size, 8));
  std::memcpy(v.data(), &id, 4);
  std::memcpy(v.data() + 4, &seq, 4);
  for (std::size_t j = 8; j < v.size(); ++j) v[j] = static_cast<std::byte>((id * 31U + seq * 131U + j) & 0xffU);
  return v;
}

struct tag {
  std::uint32_t id = 0;
  std::uint32_t seq = 0;
  bool intact = false;
};

tag read_tag(const std::vector<std::byte>& v) {
  tag t;
  if (v.size() < 8) return t;
  std::memcpy(&t.id, v.data(), 4);
  std::memcpy(&t.seq, v.data() + 4, 4);
  t.intact = v == numbered(t.id, t.seq, v.size());
  return t;
}

// Runs a body on a thread and hands its exception back to the test thread through join().
class worker {
 public:
  explicit worker(std::function<void()> body)
      : thread_([this, b = std::move(body)] {
          try {
            b();
          } catch (...) {
            error_ = std::current_exception();
          }
        }) {}
  ~worker() {
    if (thread_.joinable()) thread_.join();
  }
  void join() {
    thread_.join();
    if (error_) std::rethrow_exception(error_);
  }

 private:
  std::exception_ptr error_;
  std::thread thread_;
};

bool closed(const std::system_error& e) { return e.code() == ipc::errc::closed; }

}  // namespace

TEST_CASE("shm_mpmc: two senders in other processes and two receivers share 4000 messages, each exactly once",
          "[shm_mpmc]") {
  queue_name n;
  constexpr std::uint32_t per_sender = 2000;
  // The parent is a sender until both children are: the receivers must not see "every sender gone"
  // before the second child attached.
  auto opener = std::make_unique<shm_mpmc>(n.name, role::sender, sized(32, 512));
  shm_mpmc rx1(n.name, role::receiver);
  shm_mpmc rx2(n.name, role::receiver);
  std::vector<ipc::test::child> senders;
  for (std::uint32_t id = 1; id <= 2; ++id) {
    senders.push_back(ipc::test::fork_child([&, id](ipc::test::reporter& r) {
      for (std::uint32_t seq = 0; seq < per_sender; ++seq) {
        if (!opener->send_for(numbered(id, seq, 8 + (seq * 37U) % 500), 30s)) {
          r.say("send_for timed out at ", seq);
          return 1;
        }
      }
      return 0;
    }));
  }
  opener.reset();
  std::vector<tag> got1, got2;
  auto drain = [](shm_mpmc& rx, std::vector<tag>& got) {
    std::vector<std::byte> buf;
    try {
      while (rx.receive_for(buf, 30s)) got.push_back(read_tag(buf));
    } catch (const std::system_error& e) {
      if (!closed(e)) throw;
    }
  };
  worker w1([&] { drain(rx1, got1); });
  worker w2([&] { drain(rx2, got2); });
  w1.join();
  w2.join();
  for (auto& c : senders) {
    auto res = c.wait(30s);
    INFO(res.report);
    CHECK(res.exit_code == 0);
  }
  std::set<std::pair<std::uint32_t, std::uint32_t>> seen;
  std::size_t intact = 0;
  bool in_order = true;
  for (const auto* got : {&got1, &got2}) {
    std::map<std::uint32_t, std::int64_t> last;  // per sender: FIFO within each receiver's share
    for (const auto& t : *got) {
      if (t.intact) ++intact;
      seen.insert({t.id, t.seq});
      auto [it, fresh] = last.try_emplace(t.id, -1);
      if (static_cast<std::int64_t>(t.seq) <= it->second) in_order = false;
      it->second = t.seq;
    }
  }
  CHECK(got1.size() + got2.size() == 2 * per_sender);
  CHECK(seen.size() == 2 * per_sender);
  CHECK(intact == 2 * per_sender);
  CHECK(in_order);
  CHECK(rx1.torn_skipped() == 0);
  CHECK(rx1.lost_in_receivers() == 0);
}

TEST_CASE("shm_mpmc: a sender that dies mid-write exposes no torn message and the next one arrives", "[shm_mpmc]") {
  queue_name n;
  shm_mpmc rx(n.name, role::receiver, sized(8, 8192));
  auto dying = std::make_unique<shm_mpmc>(n.name, role::sender);
  shm_mpmc tx(n.name, role::sender);
  // The child's message runs into a page it cannot read: the copy into the slot faults halfway,
  // after the slot was claimed, and the process dies holding the claim.
  auto c = ipc::test::fork_child([&](ipc::test::reporter& r) {
    const rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);
    ::signal(SIGSEGV, SIG_DFL);  // die at once, as a killed process would: no test framework handler
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    void* mem = ::mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return 2;
    std::memset(mem, 'x', 2 * page);
    ::mprotect(static_cast<char*>(mem) + page, page, PROT_NONE);
    dying->send(numbered(1, 0, 100));
    r.say("claiming");
    dying->send(std::span<const std::byte>(static_cast<const std::byte*>(mem), 2 * page));
    r.say("the copy did not fault");
    return 3;
  });
  dying.reset();
  auto res = c.wait(30s);
  INFO(res.report);
  REQUIRE(res.report.find("claiming") != std::string::npos);
  CHECK(res.exit_code != 0);
  CHECK(res.exit_code != 3);
  CHECK_FALSE(res.timed_out);
  tx.send(numbered(2, 0, 100));
  std::vector<std::byte> buf;
  REQUIRE(rx.receive_for(buf, 10s));
  CHECK(read_tag(buf).id == 1);
  CHECK(read_tag(buf).intact);
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(rx.receive_for(buf, 10s));
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
  CHECK(read_tag(buf).id == 2);
  CHECK(read_tag(buf).intact);
  CHECK(rx.torn_skipped() == 1);
  CHECK_FALSE(rx.try_receive(buf));
}

TEST_CASE("shm_mpmc: a receiver that dies mid-read blocks nobody and its message is counted lost", "[shm_mpmc]") {
  queue_name n;
  constexpr std::size_t size = 64 * 1024;
  shm_mpmc tx(n.name, role::sender, sized(4, size));
  auto dying = std::make_unique<shm_mpmc>(n.name, role::receiver);
  shm_mpmc rx(n.name, role::receiver);
  tx.send(numbered(1, 0, size));
  // The child's buffer already has the message's size (so receive() does not resize it) and a
  // page in its middle it cannot write: the copy out of the slot faults halfway, after the claim.
  auto c = ipc::test::fork_child([&](ipc::test::reporter& r) {
    const rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);
    ::signal(SIGSEGV, SIG_DFL);
    std::vector<std::byte> buf(size);
    const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    const auto middle = (reinterpret_cast<std::uintptr_t>(buf.data()) + size / 2) & ~(page - 1);
    if (::mprotect(reinterpret_cast<void*>(middle), page, PROT_READ) != 0) return 2;
    r.say("claiming");
    (void)dying->receive_for(buf, 10s);
    r.say("the copy did not fault");
    return 3;
  });
  dying.reset();
  auto res = c.wait(30s);
  INFO(res.report);
  REQUIRE(res.report.find("claiming") != std::string::npos);
  CHECK(res.exit_code != 3);
  CHECK_FALSE(res.timed_out);
  // Senders go round the ring past the dead receiver's slot; the other receiver gets every message.
  std::vector<std::byte> buf;
  std::uint32_t in_order = 0;
  for (std::uint32_t seq = 1; seq <= 12; ++seq) {
    REQUIRE(tx.send_for(numbered(1, seq, size), 10s));
    REQUIRE(rx.receive_for(buf, 10s));
    const auto t = read_tag(buf);
    if (t.intact && t.seq == seq) ++in_order;
  }
  CHECK(in_order == 12);
  CHECK(rx.lost_in_receivers() == 1);
  CHECK(rx.torn_skipped() == 0);
  CHECK_FALSE(rx.try_receive(buf));
}

TEST_CASE("shm_mpmc: senders SIGKILLed mid-stream never leave a torn message nor block the queue", "[shm_mpmc]") {
  queue_name n;
  constexpr std::size_t big = 1 << 20;  // most of a sender's time goes into copying it in
  shm_mpmc rx(n.name, role::receiver, sized(4, big));
  // A sender that stays: without one, each kill would end the stream (every sender gone).
  shm_mpmc anchor(n.name, role::sender);
  std::uint64_t received = 0;
  std::size_t broken = 0;
  std::vector<std::byte> buf;
  for (std::uint32_t round = 1; round <= 5; ++round) {
    auto tx = std::make_unique<shm_mpmc>(n.name, role::sender);
    auto c = ipc::test::fork_child([&, round](ipc::test::reporter& r) {
      r.say("sending");
      for (std::uint32_t seq = 0;; ++seq) {
        if (!tx->send_for(numbered(round, seq, big), 30s)) return 1;
      }
    });
    tx.reset();
    REQUIRE(c.wait_for_line("sending", 10s));
    // Receive for a while, then kill the sender wherever it is; then drain what it left.
    for (int i = 0; i < 20; ++i) {
      REQUIRE(rx.receive_for(buf, 10s));
      ++received;
      if (!read_tag(buf).intact) ++broken;
    }
    c.kill(SIGKILL);
    CHECK(c.wait(10s).signal == SIGKILL);
    while (rx.try_receive(buf)) {
      ++received;
      if (!read_tag(buf).intact) ++broken;
    }
  }
  INFO("torn slots skipped: " << rx.torn_skipped());
  CHECK(broken == 0);
  CHECK(received >= 100);
  CHECK(rx.torn_skipped() <= 5);  // at most one claim per killed sender
  // Whatever the kills left behind, a new sender's message gets through.
  shm_mpmc tx(n.name, role::sender);
  REQUIRE(tx.send_for(numbered(9, 0, 64), 10s));
  REQUIRE(rx.receive_for(buf, 10s));
  CHECK(read_tag(buf).id == 9);
  CHECK(read_tag(buf).intact);
}

TEST_CASE("shm_mpmc: receivers SIGKILLed mid-read never block the senders, and each message is delivered at most once",
          "[shm_mpmc]") {
  queue_name n;
  constexpr std::size_t big = 1 << 20;  // most of a receiver's time goes into copying it out
  constexpr std::uint32_t total = 300;
  constexpr int kills = 5;
  auto tx = std::make_unique<shm_mpmc>(n.name, role::sender, sized(4, big));
  // A receiver that stays (and takes nothing): without one, the sender would find every receiver
  // gone between a kill and the next receiver's attach.
  shm_mpmc anchor(n.name, role::receiver);
  // The sender is a process too: no thread of ours runs while the receivers are forked.
  auto sender = ipc::test::fork_child([&](ipc::test::reporter& r) {
    for (std::uint32_t seq = 0; seq < total; ++seq) {
      if (!tx->send_for(numbered(1, seq, big), 30s)) {
        r.say("send_for timed out at ", seq);
        return 1;
      }
    }
    r.say("sent all");
    return 0;
  });
  tx.reset();
  std::vector<std::uint32_t> delivered;
  std::size_t broken = 0;
  auto note = [&](const std::string& report) {
    std::istringstream in(report);
    std::string word;
    std::uint32_t seq = 0;
    while (in >> word >> seq) {
      if (word == "got") delivered.push_back(seq);
      if (word == "bad") ++broken;
    }
  };
  for (int k = 0; k < kills; ++k) {
    auto rx = std::make_unique<shm_mpmc>(n.name, role::receiver);
    auto c = ipc::test::fork_child([&](ipc::test::reporter& r) {
      r.say("ready 0");
      std::vector<std::byte> buf;
      while (rx->receive_for(buf, 30s)) {
        const auto t = read_tag(buf);
        r.say(t.intact ? "got " : "bad ", t.seq);
      }
      return 1;
    });
    rx.reset();
    REQUIRE(c.wait_for_line("ready 0", 10s));
    std::this_thread::sleep_for(30ms);
    c.kill(SIGKILL);
    auto res = c.wait(10s);
    CHECK(res.signal == SIGKILL);
    note(res.report);
  }
  shm_mpmc rx(n.name, role::receiver);
  std::vector<std::byte> buf;
  const auto give_up = ipc::deadline::in(60s);
  bool sent_all = false;
  for (;;) {
    sent_all = sent_all || sender.wait_for_line("sent all", 1ms);
    const bool all_sent_before = sent_all;  // then an empty queue is the end, not a pause
    try {
      if (rx.receive_for(buf, 200ms)) {
        const auto t = read_tag(buf);
        if (t.intact) {
          delivered.push_back(t.seq);
        } else {
          ++broken;
        }
        continue;
      }
    } catch (const std::system_error& e) {
      if (!closed(e)) throw;
      break;  // the sender is gone (exited after its last message) and the queue is empty
    }
    if (all_sent_before || give_up.expired()) break;
  }
  auto sent = sender.wait(30s);
  INFO(sent.report);
  CHECK(sent.exit_code == 0);
  CHECK(sent.report.find("sent all") != std::string::npos);
  const std::set<std::uint32_t> unique(delivered.begin(), delivered.end());
  INFO("delivered " << delivered.size() << ", lost with a dying receiver " << rx.lost_in_receivers());
  CHECK(broken == 0);
  CHECK(unique.size() == delivered.size());
  // A receiver killed between taking a message and reporting it accounts for at most one each.
  CHECK(delivered.size() + rx.lost_in_receivers() <= total);
  CHECK(delivered.size() + rx.lost_in_receivers() + kills >= total);
  CHECK(rx.lost_in_receivers() <= static_cast<std::uint64_t>(kills));
  CHECK_FALSE(rx.try_receive(buf));
}

TEST_CASE("shm_mpmc: end_stream lets every receiver drain and then see the end", "[shm_mpmc]") {
  queue_name n;
  shm_mpmc tx(n.name, role::sender, sized(16, 64));
  shm_mpmc rx1(n.name, role::receiver);
  shm_mpmc rx2(n.name, role::receiver);
  tx.send(ipc::as_bytes("a"));
  tx.send(ipc::as_bytes("b"));
  tx.end_stream();
  std::vector<std::byte> buf;
  CHECK(rx1.receive_or_end(buf, ipc::deadline::in(5s)) == shm_mpmc::taken::message);
  CHECK(ipc::as_text(buf) == "a");
  CHECK(rx2.receive_or_end(buf, ipc::deadline::in(5s)) == shm_mpmc::taken::message);
  CHECK(ipc::as_text(buf) == "b");
  CHECK(rx1.receive_or_end(buf, ipc::deadline::in(5s)) == shm_mpmc::taken::end);
  CHECK_THROWS_WITH(rx2.receive_for(buf, 5s), Catch::Contains("end of stream"));
}

TEST_CASE("shm_mpmc: a receiver asleep while the last sender leaves sees closed at once, however the two interleave",
          "[shm_mpmc]") {
  // The last sender's departure (live count 0, then a data_seq bump) can fall between the receiver's
  // verdict and its read of data_seq, and takes the sender out of the receiver's watch list: the
  // receiver must not then sleep for ever (the bench's short --modes runs hung 1 in 3 that way).
  int stranded = 0;
  for (int round = 0; round < 400; ++round) {
    queue_name n;
    shm_mpmc rx(n.name, role::receiver, sized(16, 64));
    auto c = ipc::test::fork_child([&](ipc::test::reporter&) {
      shm_mpmc tx(n.name, role::sender);
      // A stream for 0-1.4 ms, so the receiver is usually between messages (spinning, about to sleep)
      // when the sender leaves, as at the end of a bench run.
      const auto stop = std::chrono::steady_clock::now() + std::chrono::microseconds(100 * (round % 15));
      while (std::chrono::steady_clock::now() < stop) tx.send(ipc::as_bytes("m"));
      return 0;
    });
    std::vector<std::byte> buf;
    try {
      while (rx.receive_for(buf, 3s)) {
      }
      ++stranded;  // a 3 s timeout: asleep after its sender had gone
    } catch (const std::system_error& e) {
      if (e.code() != ipc::errc::closed) throw;
    }
    REQUIRE(c.wait(10s).exit_code == 0);
  }
  CHECK(stranded == 0);
}

TEST_CASE("shm_mpmc: a receiver blocked on an empty queue is woken by a send from another process", "[shm_mpmc]") {
  queue_name n;
  shm_mpmc rx(n.name, role::receiver, sized(4, 64));
  auto tx = std::make_unique<shm_mpmc>(n.name, role::sender);
  auto c = ipc::test::fork_child([&](ipc::test::reporter&) {
    std::this_thread::sleep_for(300ms);  // the receiver is asleep on the futex by then
    tx->send(ipc::as_bytes("wake"));
    return 0;
  });
  tx.reset();
  std::vector<std::byte> buf;
  REQUIRE(rx.receive_for(buf, 10s));
  CHECK(ipc::as_text(buf) == "wake");
  CHECK(c.wait(10s).exit_code == 0);
}

namespace {

long thread_voluntary_switches() {
  rusage ru{};
  ::getrusage(RUSAGE_THREAD, &ru);
  return ru.ru_nvcsw;
}

}  // namespace

TEST_CASE("shm_mpmc: two idle receivers sleep without wake-ups and both learn of the last sender's SIGKILL at once",
          "[shm_mpmc]") {
  queue_name n;
  shm_mpmc rx1(n.name, role::receiver, sized(4, 64));
  shm_mpmc rx2(n.name, role::receiver);
  auto c = ipc::test::fork_child([&](ipc::test::reporter& r) {
    shm_mpmc tx(n.name, role::sender);
    r.say("attached");
    ::pause();
    return 0;
  });
  REQUIRE(c.wait_for_line("attached", 10s));
  struct outcome {
    long idle_switches = -1;
    bool idle_timed_out = false;
    bool closed = false;
    std::chrono::steady_clock::time_point at{};
  };
  outcome o1, o2;
  auto run = [](shm_mpmc& rx, outcome& o) {
    std::vector<std::byte> buf;
    const long s0 = thread_voluntary_switches();
    o.idle_timed_out = !rx.receive_for(buf, 1s);
    o.idle_switches = thread_voluntary_switches() - s0;
    try {
      (void)rx.receive_for(buf, 10s);
    } catch (const std::system_error& e) {
      o.closed = e.code() == ipc::errc::closed;
    }
    o.at = std::chrono::steady_clock::now();
  };
  std::thread t1(run, std::ref(rx1), std::ref(o1));
  std::thread t2(run, std::ref(rx2), std::ref(o2));
  std::this_thread::sleep_for(1500ms);  // both are in their second, 10 s wait by now
  const auto killed = std::chrono::steady_clock::now();
  c.kill(SIGKILL);
  t1.join();
  t2.join();
  CHECK(c.wait(5s).signal == SIGKILL);
  INFO("idle switches " << o1.idle_switches << " and " << o2.idle_switches);
  CHECK(o1.idle_timed_out);
  CHECK(o2.idle_timed_out);
  CHECK(o1.idle_switches <= 3);  // one futex_waitv each (a 100 ms slice would make ten)
  CHECK(o2.idle_switches <= 3);
  CHECK(o1.closed);
  CHECK(o2.closed);
  // The kernel wakes one of them; it wakes the other. Generous bounds for a loaded machine.
  CHECK(o1.at - killed < 1s);
  CHECK(o2.at - killed < 1s);
  WARN("closed after " << std::chrono::duration_cast<std::chrono::microseconds>(o1.at - killed).count() << " and "
                       << std::chrono::duration_cast<std::chrono::microseconds>(o2.at - killed).count() << " us");
}

TEST_CASE("shm_mpmc: a sender blocked on a full queue fails with closed when the last receiver is SIGKILLed",
          "[shm_mpmc]") {
  queue_name n;
  shm_mpmc tx(n.name, role::sender, sized(2, 64));
  auto rx = std::make_unique<shm_mpmc>(n.name, role::receiver);
  auto c = ipc::test::fork_child([&](ipc::test::reporter& r) {
    r.say("attached");
    ::pause();
    return 0;
  });
  rx.reset();
  REQUIRE(c.wait_for_line("attached", 10s));
  REQUIRE(tx.try_send(ipc::as_bytes("1")));
  REQUIRE(tx.try_send(ipc::as_bytes("2")));
  CHECK_FALSE(tx.try_send(ipc::as_bytes("3")));
  c.kill(SIGKILL);
  CHECK(c.wait(10s).signal == SIGKILL);
  try {
    (void)tx.send_for(ipc::as_bytes("3"), 10s);
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::closed);
    CHECK_THAT(e.what(), Catch::Contains(n.name));
  }
}

TEST_CASE("shm_mpmc: a state word scribbled to a lap no step of the queue reaches is errc::corrupt naming the slot, "
          "not a message skipped in silence",
          "[shm_mpmc]") {
  queue_name n;
  shm_mpmc tx(n.name, role::sender, sized(8, 64));
  shm_mpmc rx(n.name, role::receiver);
  for (int i = 0; i < 5; ++i) tx.send(ipc::as_bytes("m" + std::to_string(i)));
  // Slot 0's state word, as another process with write access to the segment could set it: five
  // laps ahead, full (the tryout's 0x123456789abcdef0 decodes to a lap as far off).
  const std::uint64_t garbage = ipc::detail::slot_state{5, ipc::detail::slot_phase::full, 0}.encode();
  const int fd = ::open(("/dev/shm/" + ipc::posix_segment::posix_name(n.name)).c_str(), O_RDWR | O_CLOEXEC);
  REQUIRE(fd >= 0);
  const auto wrote = ::pwrite(fd, &garbage, sizeof garbage, static_cast<off_t>(sizeof(ipc::detail::mpmc_header)));
  ::close(fd);
  REQUIRE(wrote == static_cast<ssize_t>(sizeof garbage));
  std::vector<std::byte> buf;
  std::string what;
  try {
    (void)rx.receive_for(buf, 1s);
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::corrupt);
    what = e.what();
  }
  CHECK_THAT(what, Catch::Contains("slot 0 is at lap 5") && Catch::Contains(rx.name()));
}

TEST_CASE("shm_mpmc: URIs choose the mode; permissions go in the same mode= value, a wrong word is refused", "[shm_mpmc]") {
  queue_name n;
  auto rx = ipc::open_channel("shm:" + n.name + "?mode=mpmc,0640&slots=8&max_message=100", role::receiver);
  REQUIRE(dynamic_cast<shm_mpmc*>(rx.get()) != nullptr);
  CHECK(rx->limits().capacity_messages == 8);
  CHECK(rx->max_message_size() == 100);
  struct stat st {};
  REQUIRE(::stat(("/dev/shm/" + ipc::shm_ring::shm_name(n.name)).c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0640);
  auto tx = ipc::open_channel("shm:" + n.name + "?mode=mpmc", role::sender);
  auto tx2 = ipc::open_channel("shm:" + n.name + "?mode=mpmc", role::sender);  // many senders: no EBUSY
  tx->send(ipc::as_bytes("via uri"));
  std::vector<std::byte> buf;
  REQUIRE(rx->receive_for(buf, 5s));
  CHECK(ipc::as_text(buf) == "via uri");
  CHECK_THROWS_WITH(ipc::open_channel("shm:" + n.name + "?mode=fanout", role::sender),
                    Catch::Contains("fanout"));
  CHECK_THROWS_WITH(ipc::open_channel("shm:" + n.name + "?mode=mpmc,spsc", role::sender),
                    Catch::Contains("more than one"));
  CHECK_THROWS_WITH(ipc::open_channel("shm:" + n.name + "?mode=mpmc&capacity=4K", role::sender),
                    Catch::Contains("capacity"));
  CHECK_THROWS_WITH(ipc::open_channel("shm:" + n.name + "?mode=mpmc&slots=3", role::sender),
                    Catch::Contains("power of two"));
}

TEST_CASE("shm_mpmc: an opener that names sizes the queue lacks is refused naming both values; one that leaves them "
          "out adopts the queue's",
          "[shm_mpmc]") {
  queue_name n;
  const std::string uri = "shm:" + n.name + "?mode=mpmc";
  auto rx = ipc::open_channel(uri + "&slots=8&max_message=100", role::receiver);
  try {
    (void)ipc::open_channel(uri + "&slots=16", role::sender);
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::incompatible);
    CHECK_THAT(e.what(), Catch::Contains(uri) && Catch::Contains("slots=16") && Catch::Contains("slots=8"));
  }
  CHECK_THROWS_WITH(ipc::open_channel(uri + "&max_message=200", role::sender),
                    Catch::Contains("max_message=200") && Catch::Contains("max_message=100"));
  auto tx = ipc::open_channel(uri, role::sender);  // nothing named: the queue's own
  CHECK(tx->limits().capacity_messages == 8);
  CHECK(tx->max_message_size() == 100);
  shm_mpmc_options o;  // the defaults, not insisted on: adopted
  CHECK(shm_mpmc(n.name, role::sender, o).max_message_size() == 100);
  o.insist_max_message = true;
  CHECK_THROWS_WITH(shm_mpmc(n.name, role::sender, o), Catch::Contains("max_message=8192"));
}

TEST_CASE("shm_mpmc: an SPSC ring and an MPMC queue of one name refuse each other as incompatible", "[shm_mpmc]") {
  queue_name n;
  shm_mpmc q(n.name, role::receiver, sized(4, 64));
  try {
    ipc::shm_ring ring(n.name, role::sender);
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::incompatible);
  }
}

TEST_CASE("shm_mpmc: queue<T> on the shm backend gives each value to one getter and ends after close", "[shm_mpmc]") {
  queue_name n;
  ipc::queue_options o;
  o.backend = ipc::queue_backend::shm_mpmc;
  o.capacity = 128;  // the child puts all 100 before anyone gets
  o.max_value = 256;
  ipc::queue<std::pair<int, std::string>> putter(n.name, o);
  ipc::queue<std::pair<int, std::string>> getter(n.name, o);
  CHECK(putter.max_value_size() == 256);
  auto c = ipc::test::fork_child([&](ipc::test::reporter&) {
    for (int i = 0; i < 100; ++i) putter.put({i, "v" + std::to_string(i)});
    return 0;
  });
  CHECK(c.wait(30s).exit_code == 0);
  putter.close();
  int count = 0;
  bool in_order = true;
  while (auto v = getter.next()) {
    in_order = in_order && v->first == count && v->second == "v" + std::to_string(count);
    ++count;
  }
  CHECK(count == 100);
  CHECK(in_order);
  CHECK_FALSE(getter.next());  // the end stays for every later getter
  CHECK_THROWS_AS(putter.put({1, "after close"}), std::system_error);
}
