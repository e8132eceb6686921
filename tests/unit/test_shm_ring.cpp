#include <ipc/error.hpp>
#include <ipc/shm_ring.hpp>
#include <ipc/unique_fd.hpp>

#include "pair_shm.hpp"
#include "errc_of.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <exception>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using ipc::role;
using ipc::shm_ring;
using ipc::shm_ring_options;

using ipc::test::errc_of;

namespace {

// Unlinks the test's ring whatever happens.
struct ring_name {
  std::string name = ipc::test::unique_name("shmring");
  ring_name() = default;
  ring_name(const ring_name&) = delete;
  ring_name& operator=(const ring_name&) = delete;
  ~ring_name() {
    try {
      shm_ring::remove(name);
    } catch (...) {
    }
  }
  [[nodiscard]] std::string path() const { return "/dev/shm/" + shm_ring::shm_name(name); }
};

// A raw read-write mapping of a ring, for planting corruption. Layout v3 offsets
// (static_asserted in detail/shm_ring_layout.hpp): magic 4, capacity 48, head 64, tail 128, data 1216.
struct raw_mapping {
  ipc::unique_fd fd;
  void* base = MAP_FAILED;
  std::size_t size = 0;

  explicit raw_mapping(const std::string& path) : fd(::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW)) {
    REQUIRE(fd);
    struct stat st {};
    REQUIRE(::fstat(fd.get(), &st) == 0);
    size = static_cast<std::size_t>(st.st_size);
    base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    REQUIRE(base != MAP_FAILED);
  }
  raw_mapping(const raw_mapping&) = delete;
  raw_mapping& operator=(const raw_mapping&) = delete;
  ~raw_mapping() {
    if (base != MAP_FAILED) ::munmap(base, size);
  }
  template <typename T>
  void put(std::size_t offset, T value) {
    REQUIRE(offset + sizeof value <= size);
    std::memcpy(static_cast<char*>(base) + offset, &value, sizeof value);
  }
  template <typename T>
  T get(std::size_t offset) {
    T v{};
    REQUIRE(offset + sizeof v <= size);
    std::memcpy(&v, static_cast<char*>(base) + offset, sizeof v);
    return v;
  }
};
constexpr std::size_t magic_at = 4, capacity_at = 48, head_at = 64, tail_at = 128, data_at = 1216;

std::vector<std::byte> pattern(std::uint64_t seq, std::size_t len) {
  std::vector<std::byte> v(len);
  for (std::size_t i = 0; i < len; ++i) v[i] = static_cast<std::byte>((seq * 131 + i * 7) & 0xff);
  return v;
}

shm_ring_options small_ring() {
  shm_ring_options o;
  o.capacity = 4096;
  o.max_message = 2040;  // capacity / 2 - 8
  return o;
}

}  // namespace

TEST_CASE("shm_ring: messages of 0, 1 and max_message bytes round-trip intact", "[shm_ring]") {
  ring_name n;
  shm_ring rx(n.name, role::receiver, small_ring());
  shm_ring tx(n.name, role::sender);
  CHECK(tx.limits().max_message_size == 2040);
  CHECK(tx.limits().capacity_bytes == 4096);
  CHECK(rx.kind() == "shm");
  CHECK(rx.readable_fd() == -1);
  std::vector<std::byte> buf;
  for (std::size_t len : {std::size_t{0}, std::size_t{1}, std::size_t{2040}}) {
    tx.send(pattern(len, len));
    REQUIRE(rx.receive_for(buf, 1s) == len);
    CHECK(buf == pattern(len, len));
  }
  CHECK_FALSE(rx.try_receive(buf));
  CHECK(errc_of([&] { tx.send(std::vector<std::byte>(2041)); }) == ipc::errc::message_too_large);
}

TEST_CASE("shm_ring: 100k messages of random sizes wrap a small ring intact and in order", "[shm_ring]") {
  ring_name n;
  shm_ring rx(n.name, role::receiver, small_ring());
  shm_ring tx(n.name, role::sender);
  constexpr std::uint64_t count = 100'000;
  std::exception_ptr failed;
  std::thread producer([&] {
    try {
      std::mt19937 rng(42);
      std::uniform_int_distribution<std::size_t> size(0, 2040);
      for (std::uint64_t i = 0; i < count; ++i) {
        if (!tx.send_for(pattern(i, size(rng)), 10s)) throw std::runtime_error("send_for timed out");
      }
    } catch (...) {
      failed = std::current_exception();
    }
  });
  std::mt19937 rng(42);
  std::uniform_int_distribution<std::size_t> size(0, 2040);
  std::vector<std::byte> buf;
  std::uint64_t bad = 0, received = 0;
  for (; received < count; ++received) {
    if (!rx.receive_for(buf, 10s)) break;
    if (buf != pattern(received, size(rng))) ++bad;
  }
  producer.join();
  if (failed) std::rethrow_exception(failed);
  CHECK(received == count);
  CHECK(bad == 0);
  CHECK(rx.counters().messages_received == count);
}

TEST_CASE("shm_ring: receive_for and send_for return after their timeout, not before", "[shm_ring]") {
  ring_name n;
  shm_ring rx(n.name, role::receiver, small_ring());
  shm_ring tx(n.name, role::sender);
  std::vector<std::byte> buf;
  auto t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(rx.receive_for(buf, 100ms));
  auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took >= 95ms);
  CHECK(took < 2s);

  const auto msg = pattern(1, 1000);
  int sent = 0;
  while (tx.try_send(msg)) ++sent;
  CHECK(sent == 4);  // 4 records of 1008 bytes fill 4096
  t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(tx.send_for(msg, 100ms));
  took = std::chrono::steady_clock::now() - t0;
  CHECK(took >= 95ms);
  CHECK(took < 2s);
  CHECK(tx.counters().send_timeouts == 2);
  REQUIRE(rx.try_receive(buf));
  CHECK(tx.send_for(msg, 100ms));
}

TEST_CASE("shm_ring: 100000 messages cross processes in order, then closed", "[shm_ring]") {
  ring_name n;
  shm_ring rx(n.name, role::receiver);
  auto c = ipc::test::fork_child([&](ipc::test::reporter&) {
    shm_ring tx(n.name, role::sender, {.capacity = 1 << 20, .max_message = 64 << 10, .mode = 0600,
                                       .open = ipc::open_mode::open_only});
    for (std::uint64_t i = 0; i < 100'000; ++i) {
      if (!tx.send_for(pattern(i, 8 + i % 200), 10s)) return 1;
    }
    return 0;
  });
  std::vector<std::byte> buf;
  std::uint64_t i = 0, bad = 0;
  for (; i < 100'000; ++i) {
    if (!rx.receive_for(buf, 10s)) break;
    if (buf != pattern(i, 8 + i % 200)) ++bad;
  }
  CHECK(i == 100'000);
  CHECK(bad == 0);
  auto res = c.wait(10s);
  CHECK(res.exit_code == 0);
  CHECK(errc_of([&] { rx.receive_for(buf, 5s); }) == ipc::errc::closed);
}

TEST_CASE("shm_ring: a receiver asleep while its sender leaves sees closed at once, however the two interleave",
          "[shm_ring]") {
  // The sender's departure (`closed`, then a data_seq bump) can fall between the receiver's last look
  // at `closed` and its read of data_seq; the receiver must not then sleep for ever on a bump that is
  // behind it (the bench's short --modes runs hung 1 in 3 that way). Rounds vary the departure's timing.
  int stranded = 0;
  for (int round = 0; round < 400; ++round) {
    ring_name n;
    shm_ring rx(n.name, role::receiver);
    auto c = ipc::test::fork_child([&](ipc::test::reporter&) {
      shm_ring tx(n.name, role::sender);
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

TEST_CASE("shm_ring: a receiver waiting on a SIGKILLed sender gets closed within a second", "[shm_ring]") {
  ring_name n;
  shm_ring rx(n.name, role::receiver);
  auto c = ipc::test::fork_child([&](ipc::test::reporter& r) {
    shm_ring tx(n.name, role::sender);
    tx.send(ipc::as_bytes("last words"));
    r.say("ready");
    ::pause();
    return 0;
  });
  REQUIRE(c.wait_for_line("ready", 10s));
  std::vector<std::byte> buf;
  REQUIRE(rx.receive_for(buf, 5s));
  CHECK(ipc::as_text(buf) == "last words");
  std::thread killer([&] {
    std::this_thread::sleep_for(200ms);
    c.kill(SIGKILL);
  });
  auto t0 = std::chrono::steady_clock::now();
  ipc::errc e{};
  try {
    rx.receive_for(buf, 10s);
  } catch (const std::system_error& ex) {
    e = static_cast<ipc::errc>(ex.code().value());
  }
  auto took = std::chrono::steady_clock::now() - t0;
  killer.join();
  CHECK(e == ipc::errc::closed);
  CHECK(took < 1500ms);
  CHECK(c.wait(5s).signal == SIGKILL);
}

TEST_CASE("shm_ring: a sender blocked on a full ring gets closed when the receiver is SIGKILLed",
          "[shm_ring]") {
  ring_name n;
  shm_ring tx(n.name, role::sender, small_ring());
  auto c = ipc::test::fork_child([&](ipc::test::reporter& r) {
    shm_ring rx(n.name, role::receiver);
    r.say("ready");
    ::pause();
    return 0;
  });
  REQUIRE(c.wait_for_line("ready", 10s));
  const auto msg = pattern(0, 1000);
  while (tx.try_send(msg)) {
  }
  std::thread killer([&] {
    std::this_thread::sleep_for(200ms);
    c.kill(SIGKILL);
  });
  auto t0 = std::chrono::steady_clock::now();
  CHECK(errc_of([&] { tx.send_for(msg, 10s); }) == ipc::errc::closed);
  CHECK(std::chrono::steady_clock::now() - t0 < 1500ms);
  killer.join();
  CHECK(c.wait(5s).signal == SIGKILL);
}

long voluntary_switches() {
  rusage ru{};
  ::getrusage(RUSAGE_THREAD, &ru);
  return ru.ru_nvcsw;
}

TEST_CASE("shm_ring: an idle receive_for with a live sender sleeps until its deadline without wake-ups",
          "[shm_ring]") {
  ring_name n;
  shm_ring rx(n.name, role::receiver);
  auto c = ipc::test::fork_child([&](ipc::test::reporter& r) {
    shm_ring tx(n.name, role::sender);
    r.say("ready");
    ::pause();
    return 0;
  });
  REQUIRE(c.wait_for_line("ready", 10s));
  std::vector<std::byte> buf;
  const long switches0 = voluntary_switches();
  const auto t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(rx.receive_for(buf, 1s));
  const auto wall = std::chrono::steady_clock::now() - t0;
  const long switches = voluntary_switches() - switches0;
  INFO(switches << " voluntary switches over " << std::chrono::duration_cast<std::chrono::milliseconds>(wall).count()
                << " ms");
  CHECK(wall >= 995ms);
  // One futex_waitv until the deadline (a 100 ms sliced wait would make about ten, a few yields more).
  CHECK(switches <= 3);
  c.kill(SIGKILL);
  CHECK(c.wait(5s).signal == SIGKILL);
}

TEST_CASE("shm_ring: a send_for on a full ring with a live receiver sleeps until its deadline without wake-ups",
          "[shm_ring]") {
  ring_name n;
  shm_ring tx(n.name, role::sender, small_ring());
  auto c = ipc::test::fork_child([&](ipc::test::reporter& r) {
    shm_ring rx(n.name, role::receiver);
    r.say("ready");
    ::pause();
    return 0;
  });
  REQUIRE(c.wait_for_line("ready", 10s));
  const auto msg = pattern(0, 1000);
  while (tx.try_send(msg)) {
  }
  const long switches0 = voluntary_switches();
  const auto t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(tx.send_for(msg, 1s));
  CHECK(std::chrono::steady_clock::now() - t0 >= 995ms);
  CHECK(voluntary_switches() - switches0 <= 3);
  c.kill(SIGKILL);
  CHECK(c.wait(5s).signal == SIGKILL);
}

TEST_CASE("shm_ring: an idle receiver learns of its sender's SIGKILL from the kernel, well within 100 ms",
          "[shm_ring]") {
  ring_name n;
  shm_ring rx(n.name, role::receiver);
  auto c = ipc::test::fork_child([&](ipc::test::reporter& r) {
    shm_ring tx(n.name, role::sender);
    r.say("ready");
    ::pause();
    return 0;
  });
  REQUIRE(c.wait_for_line("ready", 10s));
  std::atomic<std::int64_t> killed_at{0};
  std::thread killer([&] {
    std::this_thread::sleep_for(300ms);
    killed_at = std::chrono::steady_clock::now().time_since_epoch().count();
    c.kill(SIGKILL);
  });
  std::vector<std::byte> buf;
  const long switches0 = voluntary_switches();
  CHECK(errc_of([&] { rx.receive_for(buf, 10s); }) == ipc::errc::closed);
  const auto noticed = std::chrono::steady_clock::now().time_since_epoch().count();
  const long switches = voluntary_switches() - switches0;
  killer.join();
  const auto after = std::chrono::nanoseconds(noticed - killed_at.load());
  WARN("closed " << std::chrono::duration_cast<std::chrono::microseconds>(after).count() << " us after the kill, "
                 << switches << " voluntary switches while waiting");
  // Generous for a loaded machine: the point is that no liveness poll was needed (few switches).
  CHECK(after < 1s);
  CHECK(switches <= 8);
  CHECK(c.wait(5s).signal == SIGKILL);
}

TEST_CASE("shm_ring: a receiver notices a sender killed after the thread that attached it exited",
          "[shm_ring]") {
  ring_name n;
  shm_ring rx(n.name, role::receiver);
  auto c = ipc::test::fork_child([&](ipc::test::reporter& r) {
    std::unique_ptr<shm_ring> tx;
    std::thread([&] { tx = std::make_unique<shm_ring>(n.name, role::sender); }).join();
    // The attaching thread is gone, the process lives: the receiver falls back on sliced waits.
    r.say("ready");
    ::pause();
    return 0;
  });
  REQUIRE(c.wait_for_line("ready", 10s));
  std::vector<std::byte> buf;
  CHECK_FALSE(rx.receive_for(buf, 300ms));  // alive: a timeout, not closed
  std::thread killer([&] {
    std::this_thread::sleep_for(200ms);
    c.kill(SIGKILL);
  });
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(errc_of([&] { rx.receive_for(buf, 10s); }) == ipc::errc::closed);
  CHECK(std::chrono::steady_clock::now() - t0 < 1500ms);
  killer.join();
  CHECK(c.wait(5s).signal == SIGKILL);
}

TEST_CASE("shm_ring: the next thread that sends takes over the endpoint lock of an exited attaching thread",
          "[shm_ring]") {
  ring_name n;
  shm_ring rx(n.name, role::receiver);
  std::unique_ptr<shm_ring> tx;
  std::thread([&] { tx = std::make_unique<shm_ring>(n.name, role::sender); }).join();
  tx->send(ipc::as_bytes("from the main thread"));
  std::vector<std::byte> buf;
  REQUIRE(rx.receive_for(buf, 1s));
  CHECK(ipc::as_text(buf) == "from the main thread");
  // The sender's lock is held again (by this thread): the idle receiver sleeps without slices.
  const long switches0 = voluntary_switches();
  CHECK_FALSE(rx.receive_for(buf, 1s));
  CHECK(voluntary_switches() - switches0 <= 3);
}

TEST_CASE("shm_ring: a sender destroyed on another thread than the one that attached it frees the role",
          "[shm_ring]") {
  ring_name n;
  shm_ring rx(n.name, role::receiver);
  std::unique_ptr<shm_ring> tx;
  std::atomic<bool> attached{false}, release{false};
  std::thread attacher([&] {
    tx = std::make_unique<shm_ring>(n.name, role::sender);
    attached = true;
    while (!release) std::this_thread::sleep_for(1ms);  // alive while the handle dies elsewhere
  });
  while (!attached) std::this_thread::sleep_for(1ms);
  tx->send(ipc::as_bytes("one"));
  tx.reset();  // its endpoint lock stays on the attacher's robust list: the mapping is kept
  std::vector<std::byte> buf;
  REQUIRE(rx.receive_for(buf, 1s));
  CHECK(ipc::as_text(buf) == "one");
  CHECK(errc_of([&] { rx.receive_for(buf, 1s); }) == ipc::errc::closed);
  {
    shm_ring again(n.name, role::sender);  // the role is free again
    again.send(ipc::as_bytes("two"));
    REQUIRE(rx.receive_for(buf, 1s));
    CHECK(ipc::as_text(buf) == "two");
  }
  release = true;
  attacher.join();  // the kernel marks the old lock's owner dead: its slot may be reused
  for (int i = 0; i < 10; ++i) shm_ring(n.name, role::sender).send(ipc::as_bytes("more"));
  for (int i = 0; i < 10; ++i) REQUIRE(rx.receive_for(buf, 1s));
}

TEST_CASE("shm_ring: a second sender is refused naming the pid that holds the role", "[shm_ring]") {
  ring_name n;
  shm_ring tx(n.name, role::sender);
  try {
    shm_ring second(n.name, role::sender);
    FAIL("second sender attached");
  } catch (const std::system_error& e) {
    CHECK(e.code() == std::errc::device_or_resource_busy);
    CHECK_THAT(e.what(), Catch::Contains("shm:" + n.name) && Catch::Contains("pid " + std::to_string(::getpid())));
  }
  shm_ring rx(n.name, role::receiver);  // the other role is free
  CHECK_THROWS_AS(shm_ring(n.name, role::receiver), std::system_error);
}

TEST_CASE("shm_ring: a dead sender's role is taken over by a new sender", "[shm_ring]") {
  ring_name n;
  shm_ring rx(n.name, role::receiver);
  auto c = ipc::test::fork_child([&](ipc::test::reporter&) -> int {
    shm_ring tx(n.name, role::sender);
    tx.send(ipc::as_bytes("before the crash"));
    ::_exit(0);  // no destructor: the role is left to a dead pid
  });
  REQUIRE(c.wait(10s).exit_code == 0);
  shm_ring tx(n.name, role::sender);
  tx.send(ipc::as_bytes("after"));
  std::vector<std::byte> buf;
  REQUIRE(rx.receive_for(buf, 1s));
  CHECK(ipc::as_text(buf) == "before the crash");
  REQUIRE(rx.receive_for(buf, 1s));
  CHECK(ipc::as_text(buf) == "after");
}

TEST_CASE("shm_ring: corrupt head, tail or record length gives corrupt, never a crash", "[shm_ring]") {
  ring_name n;
  shm_ring rx(n.name, role::receiver, small_ring());
  shm_ring tx(n.name, role::sender);
  raw_mapping raw(n.path());
  std::vector<std::byte> buf;
  tx.send(pattern(0, 16));

  SECTION("misaligned head") {
    raw.put<std::uint64_t>(head_at, 3);
    CHECK(errc_of([&] { rx.try_receive(buf); }) == ipc::errc::corrupt);
    CHECK(errc_of([&] { tx.try_send(pattern(1, 8)); }) == ipc::errc::corrupt);
  }
  SECTION("head more than a capacity ahead of tail") {
    raw.put<std::uint64_t>(head_at, 4096 + 64);
    CHECK(errc_of([&] { rx.try_receive(buf); }) == ipc::errc::corrupt);
    CHECK(errc_of([&] { tx.try_send(pattern(1, 8)); }) == ipc::errc::corrupt);
  }
  SECTION("tail past head") {
    raw.put<std::uint64_t>(tail_at, 1024);
    CHECK(errc_of([&] { rx.try_receive(buf); }) == ipc::errc::corrupt);
  }
  SECTION("length beyond max_message") {
    raw.put<std::uint32_t>(data_at, 1'000'000);
    try {
      rx.try_receive(buf);
      FAIL("no exception");
    } catch (const std::system_error& e) {
      CHECK(e.code() == ipc::errc::corrupt);
      CHECK_THAT(e.what(), Catch::Contains("shm:" + n.name) && Catch::Contains("1000000"));
    }
  }
  SECTION("length running past head") {
    raw.put<std::uint32_t>(data_at, 2000);
    CHECK(errc_of([&] { rx.try_receive(buf); }) == ipc::errc::corrupt);
  }
  SECTION("wrap marker with nothing after it") {
    raw.put<std::uint32_t>(data_at, 0xffffffffU);
    CHECK(errc_of([&] { rx.try_receive(buf); }) == ipc::errc::corrupt);
  }
}

TEST_CASE("shm_ring: wrong magic, empty or truncated segments are incompatible", "[shm_ring]") {
  ring_name n;
  SECTION("wrong magic") {
    { shm_ring tx(n.name, role::sender); }
    raw_mapping raw(n.path());
    raw.put<std::uint32_t>(magic_at, 0x12345678);
    CHECK(errc_of([&] { shm_ring rx(n.name, role::receiver); }) == ipc::errc::incompatible);
  }
  SECTION("truncated below its recorded size") {
    { shm_ring tx(n.name, role::sender, small_ring()); }
    {
      raw_mapping raw(n.path());
      REQUIRE(::ftruncate(raw.fd.get(), 1000) == 0);
    }
    CHECK(errc_of([&] { shm_ring rx(n.name, role::receiver); }) == ipc::errc::incompatible);
  }
  SECTION("capacity not matching the recorded size") {
    { shm_ring tx(n.name, role::sender, small_ring()); }
    raw_mapping raw(n.path());
    raw.put<std::uint64_t>(capacity_at, 8192);
    CHECK(errc_of([&] { shm_ring rx(n.name, role::receiver); }) == ipc::errc::incompatible);
  }
  SECTION("never sized by its creator") {
    ipc::unique_fd fd(::open(n.path().c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    REQUIRE(fd);
    auto t0 = std::chrono::steady_clock::now();
    CHECK(errc_of([&] { shm_ring rx(n.name, role::receiver); }) == ipc::errc::incompatible);
    CHECK(std::chrono::steady_clock::now() - t0 < 5s);
  }
}

TEST_CASE("shm_ring: a segment with a foreign owner or world-writable mode is refused", "[shm_ring]") {
  ring_name n;
  { shm_ring tx(n.name, role::sender); }
  SECTION("world-writable") {
    REQUIRE(::chmod(n.path().c_str(), 0666) == 0);
    CHECK(errc_of([&] { shm_ring rx(n.name, role::receiver); }) == ipc::errc::not_owner);
    ::unlink(n.path().c_str());  // remove() rightly refuses a world-writable segment: the test planted it
  }
  SECTION("owned by uid 65534") {
    if (::geteuid() != 0) {
      WARN("not root: cannot give the segment to another user");
      return;
    }
    REQUIRE(::chown(n.path().c_str(), 65534, 65534) == 0);
    try {
      shm_ring rx(n.name, role::receiver);
      FAIL("attached a foreign segment");
    } catch (const std::system_error& e) {
      CHECK(e.code() == ipc::errc::not_owner);
      CHECK_THAT(e.what(), Catch::Contains(n.path()) && Catch::Contains("65534"));
    }
    ::unlink(n.path().c_str());  // remove() rightly refuses a foreign segment: the test planted it
  }
}

TEST_CASE("shm_ring: new segments get mode 0600 unless asked", "[shm_ring]") {
  ring_name n;
  struct stat st {};
  {
    shm_ring tx(n.name, role::sender);
    REQUIRE(::stat(n.path().c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
  }
  shm_ring::remove(n.name);
  auto ch = ipc::open_channel("shm:" + n.name + "?mode=0640", role::sender);
  REQUIRE(::stat(n.path().c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0640);
}

TEST_CASE("shm_ring: a restarted sender is heard by the same receiver after closed", "[shm_ring]") {
  ring_name n;
  shm_ring rx(n.name, role::receiver);
  std::vector<std::byte> buf;
  {
    shm_ring tx(n.name, role::sender);
    tx.send(ipc::as_bytes("one"));
    tx.send(ipc::as_bytes("two"));
  }
  REQUIRE(rx.receive_for(buf, 1s));
  CHECK(ipc::as_text(buf) == "one");
  REQUIRE(rx.receive_for(buf, 1s));
  CHECK(ipc::as_text(buf) == "two");
  CHECK(errc_of([&] { rx.receive_for(buf, 1s); }) == ipc::errc::closed);
  CHECK(errc_of([&] { rx.try_receive(buf); }) == ipc::errc::closed);
  shm_ring tx(n.name, role::sender);
  CHECK_FALSE(rx.receive_for(buf, 50ms));  // open again: a timeout, not closed
  tx.send(ipc::as_bytes("three"));
  REQUIRE(rx.receive_for(buf, 1s));
  CHECK(ipc::as_text(buf) == "three");
}

TEST_CASE("shm_ring: a sender with no receiver yet fills the ring instead of failing", "[shm_ring]") {
  ring_name n;
  shm_ring tx(n.name, role::sender, small_ring());
  int sent = 0;
  while (tx.try_send(pattern(0, 100))) ++sent;
  CHECK(sent == 4096 / 112);
  shm_ring rx(n.name, role::receiver);
  std::vector<std::byte> buf;
  int got = 0;
  while (rx.try_receive(buf)) ++got;
  CHECK(got == sent);
}

TEST_CASE("shm_ring: a forked child keeps the sender it inherited", "[shm_ring]") {
  auto p = ipc::test::shm_pair::make();
  auto c = ipc::test::fork_child([&](ipc::test::reporter&) {
    p.receiver.reset();
    for (int i = 0; i < 1000; ++i) p.sender->send(pattern(static_cast<std::uint64_t>(i), 32));
    std::this_thread::sleep_for(100ms);
    return 0;  // _exit: no destructor; the child's death closes the ring
  });
  p.sender.reset();  // the parent's copy goes, the child still holds the role
  std::vector<std::byte> buf;
  int got = 0;
  for (; got < 1000; ++got) {
    if (!p.receiver->receive_for(buf, 10s) || buf != pattern(static_cast<std::uint64_t>(got), 32)) break;
  }
  CHECK(got == 1000);
  CHECK(errc_of([&] { p.receiver->receive_for(buf, 10s); }) == ipc::errc::closed);
  CHECK(c.wait(5s).exit_code == 0);
}

TEST_CASE("shm_ring: an opener that names sizes the ring lacks is refused naming both values; one that leaves them "
          "out adopts the ring's",
          "[shm_ring]") {
  ring_name n;
  auto rx = ipc::open_channel("shm:" + n.name + "?capacity=64K&max_message=1K", role::receiver);
  try {
    (void)ipc::open_channel("shm:" + n.name + "?capacity=256K", role::sender);
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::incompatible);
    CHECK_THAT(e.what(), Catch::Contains("shm:" + n.name) && Catch::Contains("capacity=262144") &&
                             Catch::Contains("capacity=65536"));
  }
  CHECK_THROWS_WITH(ipc::open_channel("shm:" + n.name + "?max_message=2K", role::sender),
                    Catch::Contains("max_message=2048") && Catch::Contains("max_message=1024"));
  auto tx = ipc::open_channel("shm:" + n.name + "?capacity=64K&max_message=1K", role::sender);  // agreeing: fine
  CHECK(tx->limits().capacity_bytes == 65536);
}

TEST_CASE("shm_ring: URI options choose sizes and open mode; bad ones are bad_uri", "[shm_ring]") {
  ring_name n;
  {
    auto rx = ipc::open_channel("shm:" + n.name + "?capacity=64K&max_message=1K", role::receiver);
    CHECK(rx->limits().capacity_bytes == 65536);
    CHECK(rx->limits().max_message_size == 1024);
    CHECK(rx->kind() == "shm");
    auto tx = ipc::open_channel("shm:" + n.name + "?open=open_only", role::sender);
    CHECK(tx->limits().capacity_bytes == 65536);  // an opener adopts the existing sizes
    try {
      ipc::open_channel("shm:" + n.name + "?open=create_only", role::receiver);
      FAIL("create_only opened an existing ring");
    } catch (const std::system_error& e) {
      CHECK(e.code() == std::errc::file_exists);
      CHECK_THAT(e.what(), Catch::Contains(n.path()));
    }
  }
  shm_ring::remove(n.name);
  try {
    ipc::open_channel("shm:" + n.name + "?open=open_only", role::receiver);
    FAIL("open_only created a ring");
  } catch (const std::system_error& e) {
    CHECK(e.code() == std::errc::no_such_file_or_directory);
  }
  CHECK(errc_of([&] { ipc::open_channel("shm:" + n.name + "?capacity=1000", role::sender); }) == ipc::errc::bad_uri);
  CHECK(errc_of([&] { ipc::open_channel("shm:x?capacity=4K&max_message=2K", role::sender); }) == ipc::errc::bad_uri);
  // A max_message so large that adding the record header wraps around must still be refused.
  CHECK(errc_of([&] {
          shm_ring r("x", role::sender, {.capacity = 4096, .max_message = SIZE_MAX - 7});
        }) == ipc::errc::bad_uri);
  CHECK(errc_of([&] { ipc::open_channel("shm:x?colour=blue", role::sender); }) == ipc::errc::bad_uri);
  CHECK(errc_of([&] { ipc::open_channel("shm:../etc", role::sender); }) == ipc::errc::bad_uri);
  CHECK(errc_of([&] { ipc::open_channel("shm:", role::sender); }) == ipc::errc::bad_uri);
}

TEST_CASE("shm_ring: a fork+exec'd child does not keep the roles it inherited", "[shm_ring]") {
  ring_name n;
  shm_ring rx(n.name, role::receiver);
  auto tx = std::make_unique<shm_ring>(n.name, role::sender);
  auto c = ipc::test::spawn({"/bin/sleep", "30"});
  tx.reset();  // the exec'd sleep still has the pid that inherited the sender, but not the mapping
  std::vector<std::byte> buf;
  auto t0 = std::chrono::steady_clock::now();
  CHECK(errc_of([&] { rx.receive_for(buf, 10s); }) == ipc::errc::closed);
  CHECK(std::chrono::steady_clock::now() - t0 < 1500ms);
  shm_ring again(n.name, role::sender);  // not refused on behalf of the sleeping program
  again.send(ipc::as_bytes("x"));
  CHECK(rx.receive_for(buf, 1s) == 1u);
  c.kill(SIGKILL);
  CHECK(c.wait(5s).signal == SIGKILL);
}

// ---------------------------------------------------------------- a name removed under a running pair

TEST_CASE("shm_ring: remove() on purpose is not reported; the pair goes on with the anonymous ring", "[shm_ring]") {
  ring_name n;
  shm_ring rx(n.name, role::receiver);
  shm_ring tx(n.name, role::sender);
  rx.remove();
  std::vector<std::byte> buf;
  // Past two check intervals: the sender's name check sees st_nlink 0 and the on-purpose mark.
  for (auto until = std::chrono::steady_clock::now() + 300ms; std::chrono::steady_clock::now() < until;) {
    REQUIRE(tx.send_for(ipc::as_bytes("on"), 1s));
    REQUIRE(rx.receive_for(buf, 1s));
    std::this_thread::sleep_for(5ms);
  }
  CHECK(ipc::as_text(buf) == "on");
  tx.reopen();  // unlinked: re-attached under the name, a new ring
  CHECK(::access(n.path().c_str(), F_OK) == 0);
}

TEST_CASE("shm_ring: a slow sender with no receiver attached notices rm of the name within 100 ms too", "[shm_ring]") {
  ring_name n;
  shm_ring tx(n.name, role::sender);
  REQUIRE(tx.try_send(ipc::as_bytes("first")));
  REQUIRE(::shm_unlink(shm_ring::shm_name(n.name).c_str()) == 0);
  const auto unlinked = std::chrono::steady_clock::now();
  int sends = 0;
  const auto e = errc_of([&] {
    for (; sends < 200; ++sends) {
      (void)tx.try_send(ipc::as_bytes("x"));
      std::this_thread::sleep_for(10ms);
    }
  });
  CHECK(e == ipc::errc::removed);
  CHECK(sends < 40);  // far fewer than the 64 sends between clock reads of a busy pair
  CHECK(std::chrono::steady_clock::now() - unlinked < 1s);
  tx.reopen();
  REQUIRE(tx.try_send(ipc::as_bytes("again")));
  shm_ring rx(n.name, role::receiver);
  std::vector<std::byte> buf;
  REQUIRE(rx.try_receive(buf));
  CHECK(ipc::as_text(buf) == "again");
}

TEST_CASE("shm_ring: a ring still linked is left as it is by reopen()", "[shm_ring]") {
  ring_name n;
  shm_ring rx(n.name, role::receiver);
  shm_ring tx(n.name, role::sender);
  tx.send(ipc::as_bytes("kept"));
  tx.reopen();
  rx.reopen();
  std::vector<std::byte> buf;
  REQUIRE(rx.receive_for(buf, 1s));
  CHECK(ipc::as_text(buf) == "kept");
}

TEST_CASE("shm_ring: rm of the name under a running pair: the sender notices within 100 ms of sends, reopen() "
          "recreates, every record arrives once and in order, nothing is left",
          "[shm_ring]") {
  ring_name n;
  constexpr std::uint32_t total = 600;
  constexpr std::uint32_t end_marker = 0xffffffffU;
  // The receiver: another process, which resumes (reopen()) whenever its sender is gone.
  auto receiver = ipc::test::fork_child([&](ipc::test::reporter& r) {
    shm_ring rx(n.name, role::receiver);
    r.say("attached");
    std::vector<std::byte> buf;
    std::uint32_t expect = 0;
    int reopens = 0;
    for (;;) {
      try {
        if (!rx.receive_for(buf, 20s)) return 3;
      } catch (const std::system_error& e) {
        if (e.code() != ipc::errc::closed || ++reopens > 5) throw;
        rx.reopen();
        continue;
      }
      std::uint32_t seq = 0;
      if (buf.size() != sizeof seq) return 4;
      std::memcpy(&seq, buf.data(), sizeof seq);
      if (seq == end_marker) break;
      if (seq != expect) {
        r.say("got ", seq, " expected ", expect);
        return 5;
      }
      ++expect;
    }
    r.say("received ", expect, " reopens ", reopens);
    return 0;
  });
  REQUIRE(receiver.wait_for_line("attached", 10s));
  shm_ring tx(n.name, role::sender);
  auto send = [&](std::uint32_t seq) {
    return tx.send_for(std::span<const std::byte>(reinterpret_cast<const std::byte*>(&seq), sizeof seq), 10s);
  };
  std::uint32_t seq = 0;
  for (; seq < total / 3; ++seq) REQUIRE(send(seq));
  REQUIRE(::shm_unlink(shm_ring::shm_name(n.name).c_str()) == 0);  // what rm /dev/shm/libipc.NAME does
  const auto unlinked = std::chrono::steady_clock::now();
  std::chrono::nanoseconds noticed{};
  std::string what;
  // A sender at ~1000 records/s.
  for (; seq < total; ++seq) {
    bool sent = false;
    try {
      sent = send(seq);
    } catch (const std::system_error& e) {
      noticed = std::chrono::steady_clock::now() - unlinked;
      what = e.what();
      REQUIRE(e.code() == ipc::errc::removed);
      break;
    }
    REQUIRE(sent);
    std::this_thread::sleep_for(1ms);
  }
  INFO(what);
  REQUIRE(noticed.count() > 0);
  const double noticed_ms = std::chrono::duration<double, std::milli>(noticed).count();
  WARN("the sender noticed the unlink after " << noticed_ms << " ms");
  CHECK(noticed < 500ms);  // bound 100 ms + a coarse-clock tick, with room for a loaded machine
  CHECK_THAT(what, Catch::Contains("send(shm:" + n.name + ")") && Catch::Contains("/dev/shm/" + shm_ring::shm_name(n.name)) &&
                       Catch::Contains("st_nlink 0"));
  CHECK(errc_of([&] { send(seq); }) == ipc::errc::removed);  // until reopen()
  tx.reopen();  // recreates the name; the receiver drains the old ring, sees closed, and follows
  CHECK(::access(n.path().c_str(), F_OK) == 0);
  for (; seq < total; ++seq) REQUIRE(send(seq));
  REQUIRE(send(end_marker));
  auto res = receiver.wait(20s);
  INFO(res.report);
  CHECK(res.exit_code == 0);
  CHECK(res.report.find("received " + std::to_string(total) + " reopens 1") != std::string::npos);
  tx.remove();
  CHECK(::access(n.path().c_str(), F_OK) != 0);  // nothing left behind
}
