#include <ipc/channel.hpp>
#include <ipc/error.hpp>
#include <ipc/msg_queue.hpp>
#include <ipc/uri.hpp>

#include "detail/sysv_key.hpp"
#include "pair_msgq.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using ipc::msg_queue;
using ipc::msg_selector;
using ipc::msgq_options;

namespace {

// Removes a queue (and its key file) at scope exit, whatever the test did.
struct queue_guard {
  int id = -1;
  std::filesystem::path key_file;
  explicit queue_guard(const msg_queue& q) : id(q.id()), key_file(q.key_file()) {}
  explicit queue_guard(int raw_id) : id(raw_id) {}
  queue_guard(const queue_guard&) = delete;
  queue_guard& operator=(const queue_guard&) = delete;
  ~queue_guard() {
    if (id >= 0) ::msgctl(id, IPC_RMID, nullptr);
    if (!key_file.empty()) ::unlink(key_file.c_str());
  }
};

// A raw queue with a fresh key outside the ftok range of our key files ('M' << 24).
int make_raw_queue(key_t& key, int mode) {
  static std::atomic<unsigned> n{0};
  for (int i = 0; i < 4096; ++i) {
    unsigned k = 0x7e000000U | ((static_cast<unsigned>(::getpid()) & 0xfffU) << 12) | (n++ & 0xfffU);
    key = static_cast<key_t>(k);
    int id = ::msgget(key, IPC_CREAT | IPC_EXCL | mode);
    if (id >= 0 || errno != EEXIST) return id;
  }
  return -1;
}

std::string text(const std::vector<std::byte>& b) { return std::string(ipc::as_text(b)); }

std::chrono::nanoseconds thread_cpu() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

bool has_cap_sys_resource() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("CapEff:", 0) == 0) {
      unsigned long long caps = std::stoull(line.substr(7), nullptr, 16);
      return (caps >> 24) & 1U;  // CAP_SYS_RESOURCE
    }
  }
  return false;
}

long voluntary_switches() {
  rusage ru{};
  ::getrusage(RUSAGE_THREAD, &ru);
  return ru.ru_nvcsw;
}

msgq_options with_open(ipc::open_mode m) {
  msgq_options o;
  o.open = m;
  return o;
}

}  // namespace

TEST_CASE("msg_queue: a message sent is received whole with its type", "[msgq]") {
  msg_queue q(ipc::test::unique_name("mq"));
  queue_guard g(q);
  q.send(ipc::as_bytes("hello"));
  q.send(42, ipc::as_bytes(""));
  std::vector<std::byte> buf;
  CHECK(q.receive(buf) == 5);
  CHECK(text(buf) == "hello");
  CHECK(q.last_type() == 1);
  auto r = q.receive(msg_selector::any(), buf);
  CHECK(r.size == 0);
  CHECK(buf.empty());
  CHECK(r.type == 42);
  CHECK(q.counters().messages_sent == 2);
  CHECK(q.counters().messages_received == 2);
  CHECK_FALSE(q.try_receive(buf));
}

TEST_CASE("msg_queue: a second handle by the same name sees the same queue", "[msgq]") {
  auto name = ipc::test::unique_name("mq");
  msg_queue a(name, with_open(ipc::open_mode::create_only));
  queue_guard g(a);
  msg_queue b(name, with_open(ipc::open_mode::open_only));
  CHECK(a.id() == b.id());
  CHECK(a.key() == b.key());
  CHECK(a.key() == ::ftok(a.key_file().c_str(), 'M'));
  a.send(ipc::as_bytes("across handles"));
  std::vector<std::byte> buf;
  REQUIRE(b.receive_for(buf, 2s));
  CHECK(text(buf) == "across handles");
}

TEST_CASE("msg_queue: receive by exact type leaves other types queued", "[msgq]") {
  msg_queue q(ipc::test::unique_name("mq"));
  queue_guard g(q);
  q.send(1, ipc::as_bytes("one"));
  q.send(2, ipc::as_bytes("two"));
  q.send(1, ipc::as_bytes("one again"));
  std::vector<std::byte> buf;
  auto r = q.try_receive(msg_selector::exact(2), buf);
  REQUIRE(r);
  CHECK(r->type == 2);
  CHECK(text(buf) == "two");
  CHECK_FALSE(q.try_receive(msg_selector::exact(2), buf));
  CHECK_FALSE(q.try_receive(msg_selector::exact(3), buf));
  CHECK(q.stats().messages == 2);
}

TEST_CASE("msg_queue: priority receive takes the lowest type up to n first", "[msgq]") {
  msg_queue q(ipc::test::unique_name("mq"));
  queue_guard g(q);
  q.send(3, ipc::as_bytes("c"));
  q.send(1, ipc::as_bytes("a"));
  q.send(2, ipc::as_bytes("b"));
  q.send(9, ipc::as_bytes("too low a priority"));
  std::vector<std::byte> buf;
  std::vector<long> order;
  std::string bodies;
  while (auto r = q.try_receive(msg_selector::up_to(3), buf)) {
    order.push_back(r->type);
    bodies += text(buf);
  }
  CHECK(order == std::vector<long>{1, 2, 3});
  CHECK(bodies == "abc");
  CHECK(q.stats().messages == 1);
}

TEST_CASE("msg_queue: except receive skips the excluded type", "[msgq]") {
  msg_queue q(ipc::test::unique_name("mq"));
  queue_guard g(q);
  q.send(5, ipc::as_bytes("five"));
  q.send(6, ipc::as_bytes("six"));
  std::vector<std::byte> buf;
  auto r = q.try_receive(msg_selector::except(5), buf);
  REQUIRE(r);
  CHECK(r->type == 6);
  CHECK(text(buf) == "six");
  CHECK_FALSE(q.try_receive(msg_selector::except(5), buf));
  CHECK(q.try_receive(msg_selector::any(), buf));
}

TEST_CASE("msg_queue: types and selectors below 1 are refused clearly", "[msgq]") {
  msg_queue q(ipc::test::unique_name("mq"));
  queue_guard g(q);
  try {
    q.send(0, ipc::as_bytes("x"));
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == std::errc::invalid_argument);
    CHECK_THAT(e.what(), Catch::Contains("msgsnd(msgq:") && Catch::Contains("type 0"));
  }
  CHECK_THROWS_AS(q.try_send(-4, ipc::as_bytes("x")), std::system_error);
  CHECK_THROWS_WITH(msg_selector::exact(0), Catch::Contains("types start at 1"));
  CHECK_THROWS_AS(msg_selector::up_to(-1), std::system_error);
  CHECK_THROWS_AS(msg_selector::except(0), std::system_error);
  CHECK(q.stats().messages == 0);
  CHECK(q.counters().messages_sent == 0);
}

TEST_CASE("msg_queue: selectors parse and print the URI syntax", "[msgq]") {
  CHECK(msg_selector::parse("any").kind() == msg_selector::how::any);
  CHECK(msg_selector::parse("7").msgtyp() == 7);
  CHECK(msg_selector::parse("-7").msgtyp() == -7);
  CHECK(msg_selector::parse("!7").msgflg() == MSG_EXCEPT);
  CHECK(msg_selector::parse("!7").to_string() == "!7");
  CHECK(msg_selector::parse("-3").to_string() == "-3");
  for (const char* bad : {"", "0", "-0", "!", "x", "3x", "!-3", "--3", "99999999999999999999999"}) {
    INFO(bad);
    try {
      (void)msg_selector::parse(bad);
      FAIL("no throw");
    } catch (const std::system_error& e) {
      CHECK(e.code() == ipc::errc::bad_uri);
    }
  }
}

TEST_CASE("msg_queue: receive_for returns nullopt on timeout", "[msgq]") {
  msg_queue q(ipc::test::unique_name("mq"));
  queue_guard g(q);
  std::vector<std::byte> buf;
  auto t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(q.receive_for(buf, 100ms));
  auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took >= 95ms);
  CHECK(took < 2s);
  t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(q.receive_for(msg_selector::exact(3), buf, 100ms));
  took = std::chrono::steady_clock::now() - t0;
  CHECK(took >= 95ms);
  CHECK(took < 2s);
  CHECK(q.counters().receive_timeouts == 2);
}

TEST_CASE("msg_queue: an idle receive_for sleeps in the kernel until its deadline, without wake-ups", "[msgq]") {
  msg_queue q(ipc::test::unique_name("mq"));
  queue_guard g(q);
  std::vector<std::byte> buf;
  const long switches0 = voluntary_switches();
  auto cpu0 = thread_cpu();
  auto t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(q.receive_for(buf, 1s));
  auto wall = std::chrono::steady_clock::now() - t0;
  auto cpu = thread_cpu() - cpu0;
  const long switches = voluntary_switches() - switches0;
  INFO("cpu " << std::chrono::duration_cast<std::chrono::microseconds>(cpu).count() << " us, " << switches
              << " voluntary switches over " << std::chrono::duration_cast<std::chrono::milliseconds>(wall).count()
              << " ms");
  CHECK(wall >= 995ms);
  // One sleep in msgrcv, ended by the deadline's signal (a polling wait would sleep hundreds of times).
  CHECK(switches <= 3);
}

TEST_CASE("msg_queue: send_for on a full queue sleeps in the kernel until its deadline", "[msgq]") {
  msgq_options o;
  o.capacity = 16;
  msg_queue q(ipc::test::unique_name("mq"), o);
  queue_guard g(q);
  std::vector<std::byte> msg(16, std::byte{1});
  REQUIRE(q.try_send(msg));
  const long switches0 = voluntary_switches();
  auto t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(q.send_for(msg, 500ms));
  CHECK(std::chrono::steady_clock::now() - t0 >= 495ms);
  CHECK(voluntary_switches() - switches0 <= 3);
  CHECK(q.stats().messages == 1);
}

TEST_CASE("msg_queue: a capacity lowered after open makes a send message_too_large, not a hang", "[msgq]") {
  auto name = ipc::test::unique_name("mq");
  msg_queue tx(name);
  queue_guard g(tx);
  REQUIRE(tx.max_message_size() >= 1000);
  msg_queue(name, with_open(ipc::open_mode::open_only)).set_capacity(100);
  const std::vector<std::byte> msg(1000, std::byte{7});
  for (int timed = 0; timed < 2; ++timed) {
    try {
      if (timed != 0) (void)tx.send_for(msg, 5s);
      else tx.send(msg);
      FAIL("no throw");
    } catch (const std::system_error& e) {
      CHECK(e.code() == ipc::errc::message_too_large);
      CHECK_THAT(e.what(), Catch::Contains("1000 > 100"));
    }
  }
  CHECK(tx.max_message_size() == 100);
  CHECK(tx.stats().messages == 0);
}

TEST_CASE("msg_queue: a capacity raised after open lets a larger message through", "[msgq]") {
  auto name = ipc::test::unique_name("mq");
  msgq_options o;
  o.capacity = 100;
  msg_queue tx(name, o);
  queue_guard g(tx);
  REQUIRE(tx.max_message_size() == 100);
  msg_queue(name, with_open(ipc::open_mode::open_only)).set_capacity(2000);
  const std::vector<std::byte> msg(1000, std::byte{7});
  CHECK(tx.try_send(msg));
  CHECK(tx.max_message_size() == std::min<std::size_t>(2000, msg_queue::system_max_message()));
  std::vector<std::byte> buf;
  REQUIRE(tx.try_receive(buf));
  CHECK(buf == msg);
}

TEST_CASE("msg_queue: a message arriving during receive_for is taken promptly", "[msgq]") {
  auto name = ipc::test::unique_name("mq");
  msg_queue q(name);
  queue_guard g(q);
  auto c = ipc::test::fork_child([&](ipc::test::reporter&) {
    ::usleep(300'000);
    msg_queue tx(name, with_open(ipc::open_mode::open_only));
    tx.send(ipc::as_bytes("late"));
    return 0;
  });
  std::vector<std::byte> buf;
  auto t0 = std::chrono::steady_clock::now();
  auto n = q.receive_for(buf, 5s);
  auto took = std::chrono::steady_clock::now() - t0;
  REQUIRE(n);
  CHECK(text(buf) == "late");
  CHECK(took >= 250ms);
  CHECK(took < 3s);
  CHECK(c.wait(5s).exit_code == 0);
}

TEST_CASE("msg_queue: send_for returns false when the queue is full", "[msgq]") {
  msgq_options o;
  o.capacity = 64;
  msg_queue q(ipc::test::unique_name("mq"), o);
  queue_guard g(q);
  CHECK(q.stats().capacity == 64);
  CHECK(q.limits().capacity_bytes == 64);
  CHECK(q.max_message_size() == 64);
  std::vector<std::byte> msg(16, std::byte{0x5a});
  int sent = 0;
  while (q.try_send(msg) && sent < 100) ++sent;
  CHECK(sent == 4);
  auto t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(q.send_for(7, msg, 100ms));
  auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took >= 95ms);
  CHECK(took < 2s);
  CHECK(q.stats().messages == 4);
  CHECK(q.counters().send_timeouts == 2);
  std::vector<std::byte> buf;
  REQUIRE(q.try_receive(buf));
  CHECK(q.try_send(7, msg));
}

TEST_CASE("msg_queue: a blocked send completes when a receiver makes room", "[msgq]") {
  msgq_options o;
  o.capacity = 32;
  auto name = ipc::test::unique_name("mq");
  msg_queue q(name, o);
  queue_guard g(q);
  std::vector<std::byte> msg(32, std::byte{1});
  REQUIRE(q.try_send(msg));
  auto c = ipc::test::fork_child([&](ipc::test::reporter&) {
    ::usleep(200'000);
    msg_queue rx(name, with_open(ipc::open_mode::open_only));
    std::vector<std::byte> b;
    return rx.receive_for(b, 5s) ? 0 : 1;
  });
  q.send(2, msg);  // blocks in msgsnd until the child takes the first one
  CHECK(c.wait(5s).exit_code == 0);
  CHECK(q.stats().messages == 1);
}

TEST_CASE("msg_queue: a message over max_message is refused and nothing is sent", "[msgq]") {
  msgq_options o;
  o.max_message = 100;
  msg_queue q(ipc::test::unique_name("mq"), o);
  queue_guard g(q);
  CHECK(q.limits().max_message_size == 100);
  q.send(ipc::as_bytes("x"));
  std::vector<std::byte> big(101);
  try {
    q.send(big);
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::message_too_large);
    CHECK_THAT(e.what(), Catch::Contains("msgq:") && Catch::Contains("101 > 100"));
  }
  CHECK_THROWS_AS(q.try_send(3, big), std::system_error);
  CHECK(q.stats().messages == 1);

  msg_queue full(ipc::test::unique_name("mq"));
  queue_guard g2(full);
  CHECK(full.max_message_size() == msg_queue::system_max_message());
  std::vector<std::byte> over(msg_queue::system_max_message() + 1);
  CHECK_THROWS_AS(full.send(over), std::system_error);
  CHECK(full.stats().messages == 0);
}

TEST_CASE("msg_queue: a large message from a raw peer arrives whole despite a small max_message", "[msgq]") {
  msgq_options o;
  o.max_message = 16;
  msg_queue q(ipc::test::unique_name("mq"), o);
  queue_guard g(q);
  struct {
    long mtype;
    char mtext[4000];
  } m{};
  m.mtype = 8;
  std::memset(m.mtext, 'z', sizeof m.mtext);
  REQUIRE(::msgsnd(q.id(), &m, sizeof m.mtext, 0) == 0);
  std::vector<std::byte> buf;
  auto r = q.try_receive(msg_selector::any(), buf);
  REQUIRE(r);
  CHECK(r->size == 4000);
  CHECK(r->type == 8);
  CHECK(text(buf) == std::string(4000, 'z'));
}

TEST_CASE("msg_queue: create_only on an existing queue names the key and the path", "[msgq]") {
  auto name = ipc::test::unique_name("mq");
  msg_queue q(name, with_open(ipc::open_mode::create_only));
  queue_guard g(q);
  try {
    msg_queue again(name, with_open(ipc::open_mode::create_only));
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == std::errc::file_exists);
    CHECK_THAT(e.what(), Catch::StartsWith("msgget(key=" + ipc::detail::key_string(q.key()) + ", " +
                                           q.key_file().string() + "): "));
  }
  CHECK(std::filesystem::exists(q.key_file()));  // the failed create did not take the other's key file
}

TEST_CASE("msg_queue: open_only on a missing queue names the path and creates nothing", "[msgq]") {
  auto name = ipc::test::unique_name("mq");
  auto path = ipc::runtime_dir() / (name + ".msgq");
  try {
    msg_queue q(name, with_open(ipc::open_mode::open_only));
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == std::errc::no_such_file_or_directory);
    CHECK_THAT(e.what(), Catch::Contains(path.string()));
  }
  CHECK_FALSE(std::filesystem::exists(path));

  // A key file whose queue was removed behind our back (ipcrm): msgget names key and path.
  msg_queue q(name);
  queue_guard g(q);
  REQUIRE(::msgctl(q.id(), IPC_RMID, nullptr) == 0);
  try {
    msg_queue again(name, with_open(ipc::open_mode::open_only));
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == std::errc::no_such_file_or_directory);
    CHECK_THAT(e.what(), Catch::StartsWith("msgget(key=" + ipc::detail::key_string(q.key()) + ", " + path.string()));
  }
}

TEST_CASE("msg_queue: a queue owned by another user is refused", "[msgq]") {
  if (::geteuid() != 0) {
    FAIL("this test needs root to give a queue away (IPC_SET uid)");
  }
  key_t key = 0;
  int id = make_raw_queue(key, 0600);
  REQUIRE(id >= 0);
  queue_guard g(id);
  msqid_ds ds{};
  REQUIRE(::msgctl(id, IPC_STAT, &ds) == 0);
  ds.msg_perm.uid = 65534;
  REQUIRE(::msgctl(id, IPC_SET, &ds) == 0);
  for (auto mode : {ipc::open_mode::open_only, ipc::open_mode::open_or_create}) {
    try {
      msg_queue q(key, with_open(mode));
      FAIL("no throw");
    } catch (const std::system_error& e) {
      CHECK(e.code() == ipc::errc::not_owner);
      CHECK_THAT(e.what(), Catch::Contains("msgget(key=" + ipc::detail::key_string(key)) &&
                               Catch::Contains("uid 65534"));
    }
  }
  CHECK_THROWS_AS(ipc::open_channel("msgq:?key=" + ipc::detail::key_string(key), ipc::role::receiver),
                  std::system_error);
  REQUIRE(::msgctl(id, IPC_STAT, &ds) == 0);  // still there: a refused attach destroys nothing
}

TEST_CASE("msg_queue: a world-writable queue is refused and never created", "[msgq]") {
  key_t key = 0;
  int id = make_raw_queue(key, 0666);
  REQUIRE(id >= 0);
  queue_guard g(id);
  try {
    msg_queue q(key, with_open(ipc::open_mode::open_only));
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::not_owner);
    CHECK_THAT(e.what(), Catch::Contains("world-writable"));
  }

  auto name = ipc::test::unique_name("mq");
  msgq_options o;
  o.mode = 0666;
  CHECK_THROWS_WITH(msg_queue(name, o), Catch::Contains("would let any user write"));
  try {
    (void)ipc::open_channel("msgq:" + name + "?mode=0666", ipc::role::sender);
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::bad_uri);
  }
  CHECK_FALSE(std::filesystem::exists(ipc::runtime_dir() / (name + ".msgq")));
}

TEST_CASE("msg_queue: a group mode is applied and reported", "[msgq]") {
  auto q = ipc::open_channel("msgq:" + ipc::test::unique_name("mq") + "?mode=0640", ipc::role::sender);
  auto& mq = static_cast<msg_queue&>(*q);
  queue_guard g(mq);
  CHECK(mq.stats().mode == 0640);
  CHECK(mq.stats().owner == ::geteuid());
}

TEST_CASE("msg_queue: capacity above msgmnb without privilege fails cleanly", "[msgq]") {
  if (::geteuid() != 0) FAIL("this test needs root to drop to uid 65534");
  char dir[] = "/tmp/ipc-msgq-nobody-XXXXXX";
  REQUIRE(::mkdtemp(dir) != nullptr);
  struct dir_guard {
    std::string path;
    ~dir_guard() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  } dg{dir};
  REQUIRE(::chown(dir, 65534, 65534) == 0);
  const std::string name = ipc::test::unique_name("mq");
  std::size_t mnb = 16384;
  std::ifstream("/proc/sys/kernel/msgmnb") >> mnb;

  auto c = ipc::test::fork_child([&](ipc::test::reporter& r) {
    ::setenv("IPC_RUNTIME_DIR", dir, 1);
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) {
      r.say("setuid failed");
      return 2;
    }
    msgq_options o;
    o.capacity = mnb * 4;
    try {
      msg_queue q(name, o);
      q.remove();
      r.say("no error");
      return 1;
    } catch (const std::system_error& e) {
      r.say("error: ", e.what());
      if (e.code() != std::errc::operation_not_permitted) return 3;
    }
    struct stat st {};
    if (::lstat((std::string(dir) + "/" + name + ".msgq").c_str(), &st) == 0) {
      r.say("key file left behind");
      return 4;
    }
    // No queue created by us (uid 65534) may be left: look through every queue.
    std::ifstream sysv("/proc/sysvipc/msg");
    std::string line;
    std::getline(sysv, line);  // header
    while (std::getline(sysv, line)) {
      std::istringstream f(line);
      long key = 0, msqid = 0, perms = 0, cbytes = 0, qnum = 0, lspid = 0, lrpid = 0, uid = 0, gid = 0, cuid = -1;
      f >> key >> msqid >> perms >> cbytes >> qnum >> lspid >> lrpid >> uid >> gid >> cuid;
      if (cuid == 65534) {
        r.say("queue left behind: ", line);
        return 5;
      }
    }
    r.say("clean");
    return 0;
  });
  auto res = c.wait(10s);
  INFO(res.report);
  CHECK(res.exit_code == 0);
  CHECK_THAT(res.report, Catch::Contains("msgctl(IPC_SET msg_qbytes=") && Catch::Contains("msgmnb") &&
                             Catch::Contains("Operation not permitted"));
}

TEST_CASE("msg_queue: set_capacity changes msg_qbytes and the largest message", "[msgq]") {
  msg_queue q(ipc::test::unique_name("mq"));
  queue_guard g(q);
  q.set_capacity(1000);
  CHECK(q.stats().capacity == 1000);
  CHECK(q.max_message_size() == 1000);
  std::size_t mnb = 16384;
  std::ifstream("/proc/sys/kernel/msgmnb") >> mnb;
  q.set_capacity(mnb);
  CHECK(q.limits().capacity_bytes == mnb);
  CHECK(q.max_message_size() == std::min(mnb, msg_queue::system_max_message()));
  // Above msgmnb needs CAP_SYS_RESOURCE (a container's root often lacks it).
  if (has_cap_sys_resource()) {
    q.set_capacity(mnb * 4);
    CHECK(q.stats().capacity == mnb * 4);
  } else {
    try {
      q.set_capacity(mnb * 4);
      FAIL("no throw");
    } catch (const std::system_error& e) {
      CHECK(e.code() == std::errc::operation_not_permitted);
      CHECK_THAT(e.what(), Catch::Contains("CAP_SYS_RESOURCE"));
    }
    CHECK(q.stats().capacity == mnb);
  }
  CHECK_THROWS_AS(q.set_capacity(0), std::system_error);
}

TEST_CASE("msg_queue: stats report messages, bytes, the last sender and receiver", "[msgq]") {
  msg_queue q(ipc::test::unique_name("mq"));
  queue_guard g(q);
  auto s = q.stats();
  CHECK(s.messages == 0);
  CHECK(s.last_sender == 0);
  CHECK(s.last_send == 0);
  q.send(ipc::as_bytes("12345"));
  q.send(ipc::as_bytes("678"));
  s = q.stats();
  CHECK(s.messages == 2);
  CHECK(s.bytes == 8);
  CHECK(s.last_sender == ::getpid());
  CHECK(s.last_send > 0);
  std::vector<std::byte> buf;
  q.receive(buf);
  s = q.stats();
  CHECK(s.messages == 1);
  CHECK(s.bytes == 3);
  CHECK(s.last_receiver == ::getpid());
  CHECK(s.capacity > 0);
}

TEST_CASE("msg_queue: removing the queue wakes a blocked receiver with errc::closed", "[msgq]") {
  msg_queue q(ipc::test::unique_name("mq"));
  queue_guard g(q);
  auto c = ipc::test::fork_child([&](ipc::test::reporter& r) {
    r.say("waiting");
    std::vector<std::byte> buf;
    try {
      q.receive(buf);
      r.say("received a message");
      return 1;
    } catch (const std::system_error& e) {
      r.say("error: ", e.what());
      return e.code() == ipc::errc::closed ? 0 : 2;
    }
  });
  REQUIRE(c.wait_for_line("waiting", 5s));
  std::this_thread::sleep_for(200ms);  // let it block in msgrcv
  q.remove();
  auto res = c.wait(5s);
  INFO(res.report);
  CHECK(res.exit_code == 0);
  CHECK_THAT(res.report, Catch::Contains("msgrcv(msgq:"));
  CHECK_FALSE(std::filesystem::exists(q.key_file()));
  // This handle sees the same; remove() again is harmless.
  std::vector<std::byte> buf;
  try {
    (void)q.try_receive(buf);
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::closed);
  }
  CHECK_THROWS_AS(q.try_send(ipc::as_bytes("x")), std::system_error);
  CHECK_THROWS_AS(q.stats(), std::system_error);
  CHECK_NOTHROW(q.remove());
}

TEST_CASE("msg_queue: removal during a timed receive ends it with errc::closed", "[msgq]") {
  msg_queue q(ipc::test::unique_name("mq"));
  queue_guard g(q);
  auto c = ipc::test::fork_child([&](ipc::test::reporter& r) {
    r.say("waiting");
    std::vector<std::byte> buf;
    try {
      auto n = q.receive_for(buf, 10s);
      r.say(n ? "received" : "timed out");
      return 1;
    } catch (const std::system_error& e) {
      return e.code() == ipc::errc::closed ? 0 : 2;
    }
  });
  REQUIRE(c.wait_for_line("waiting", 5s));
  std::this_thread::sleep_for(100ms);
  q.remove();
  auto res = c.wait(5s);
  INFO(res.report);
  CHECK(res.exit_code == 0);
}

TEST_CASE("msg_queue: a plain C msgsnd/msgrcv peer in another process interoperates", "[msgq]") {
  auto name = ipc::test::unique_name("mq");
  msg_queue q(name);
  queue_guard g(q);
  const std::string key_file = q.key_file().string();
  auto c = ipc::test::fork_child([&](ipc::test::reporter& r) {
    // Nothing from libipc here: ftok + msgget + msgsnd/msgrcv as any C client would.
    key_t key = ::ftok(key_file.c_str(), 'M');
    int id = ::msgget(key, 0);
    if (id < 0) return 2;
    struct {
      long mtype;
      char mtext[64];
    } m{};
    m.mtype = 7;
    std::strcpy(m.mtext, "from C");
    if (::msgsnd(id, &m, std::strlen(m.mtext), 0) != 0) return 3;
    std::memset(&m, 0, sizeof m);
    ssize_t n = ::msgrcv(id, &m, sizeof m.mtext, 9, 0);
    if (n < 0) return 4;
    r.say("got type ", m.mtype, ": ", std::string(m.mtext, static_cast<std::size_t>(n)));
    return 0;
  });
  std::vector<std::byte> buf;
  auto got = q.receive_for(msg_selector::exact(7), buf, 5s);
  REQUIRE(got);
  CHECK(got->type == 7);
  CHECK(text(buf) == "from C");
  q.send(9, ipc::as_bytes("from C++"));
  auto res = c.wait(5s);
  CHECK(res.exit_code == 0);
  CHECK_THAT(res.report, Catch::Contains("got type 9: from C++"));
}

TEST_CASE("msg_queue: ipcs -q lists the queue by its key", "[msgq]") {
  msg_queue q(ipc::test::unique_name("mq"));
  queue_guard g(q);
  q.send(ipc::as_bytes("seen by ipcs"));
  auto c = ipc::test::spawn({"/usr/bin/ipcs", "-q"});
  auto res = c.wait(10s);
  REQUIRE(res.exit_code == 0);
  CHECK_THAT(res.report, Catch::Contains(ipc::detail::key_string(q.key()) + " " + std::to_string(q.id())));
}

TEST_CASE("msg_queue: URI options set capacity, max_message, type and select", "[msgq]") {
  auto name = ipc::test::unique_name("mq");
  auto tx = ipc::open_channel("msgq:" + name + "?open=create_only&capacity=2K&max_message=512&type=4",
                              ipc::role::sender);
  auto& mq = static_cast<msg_queue&>(*tx);
  queue_guard g(mq);
  CHECK(tx->kind() == "msgq");
  CHECK(tx->name() == "msgq:" + name);
  CHECK(tx->limits().capacity_bytes == 2048);
  CHECK(tx->max_message_size() == 512);
  auto rx = ipc::open_channel("msgq:" + name + "?open=open_only&select=!4", ipc::role::receiver);
  tx->send(ipc::as_bytes("type four"));
  mq.send(5, ipc::as_bytes("type five"));
  std::vector<std::byte> buf;
  REQUIRE(rx->try_receive(buf));
  CHECK(text(buf) == "type five");
  CHECK(static_cast<msg_queue&>(*rx).last_type() == 5);
  CHECK_FALSE(rx->try_receive(buf));
  auto prio = ipc::open_channel("msgq:" + name + "?open=open_only&select=-4", ipc::role::receiver);
  REQUIRE(prio->try_receive(buf));
  CHECK(text(buf) == "type four");

  // By explicit key: the same queue.
  auto by_key = ipc::open_channel("msgq:?key=" + ipc::detail::key_string(mq.key()) + "&open=open_only",
                                  ipc::role::receiver);
  CHECK(static_cast<msg_queue&>(*by_key).id() == mq.id());
  CHECK(by_key->name() == "msgq:key=" + ipc::detail::key_string(mq.key()));
}

TEST_CASE("msg_queue: bad URIs are refused naming the bad part", "[msgq]") {
  auto name = ipc::test::unique_name("mq");
  struct bad_case {
    std::string uri;
    std::string says;
  };
  const bad_case cases[] = {
      {"msgq:" + name + "?frobnicate=1", "unknown option 'frobnicate'"},
      {"msgq:" + name + "?type=0", "type=0"},
      {"msgq:" + name + "?type=x", "type=x"},
      {"msgq:" + name + "?select=0", "select=0"},
      {"msgq:" + name + "?select=sometimes", "select=sometimes"},
      {"msgq:" + name + "?capacity=0", "capacity=0"},
      {"msgq:" + name + "?max_message=0", "max_message=0"},
      {"msgq:" + name + "?key=0x1234", "either a name or key="},
      {"msgq:?key=0", "key=0"},
      {"msgq:?key=0x100000000", "key=0x100000000"},
      {"msgq:?key=-5", "key=-5"},
      {"msgq:", "needs a name"},
      {"msgq:a/b", "may use only"},
      {"msgq:" + name + "?open=sometimes", "open=sometimes"},
  };
  for (const auto& c : cases) {
    INFO(c.uri);
    try {
      (void)ipc::open_channel(c.uri, ipc::role::receiver);
      FAIL("no throw");
    } catch (const std::system_error& e) {
      CHECK(e.code() == ipc::errc::bad_uri);
      CHECK_THAT(e.what(), Catch::Contains(c.says));
    }
  }
  CHECK_FALSE(std::filesystem::exists(ipc::runtime_dir() / (name + ".msgq")));
  CHECK_THROWS_WITH(msg_queue(key_t{0}), Catch::Contains("IPC_PRIVATE"));
}

TEST_CASE("msg_queue: the shared-suite pair drains and then closes for good by removal", "[msgq]") {
  auto p = ipc::test::msgq_pair::make();
  auto& rx = static_cast<msg_queue&>(*p.receiver);
  queue_guard g(rx);
  CHECK(std::string(ipc::test::msgq_pair::kind) == p.sender->kind());
  CHECK(rx.id() == static_cast<msg_queue&>(*p.sender).id());
  p.sender->send(ipc::as_bytes("first"));
  p.sender->send(ipc::as_bytes("second"));
  ipc::test::msgq_pair::close_for_good(p);
  std::vector<std::byte> buf;
  REQUIRE(p.receiver->receive_for(buf, 2s));
  CHECK(text(buf) == "first");
  REQUIRE(p.receiver->receive_for(buf, 2s));
  CHECK(text(buf) == "second");
  auto t0 = std::chrono::steady_clock::now();
  try {
    (void)p.receiver->receive_for(buf, 5s);
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::closed);
  }
  CHECK(std::chrono::steady_clock::now() - t0 < 2s);
}

TEST_CASE("msg_queue: remove_when_empty waits for the receiver to drain", "[msgq]") {
  msg_queue q(ipc::test::unique_name("mq"));
  queue_guard g(q);
  q.send(ipc::as_bytes("pending"));
  auto t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(q.remove_when_empty(ipc::deadline::in(100ms)));
  CHECK(std::chrono::steady_clock::now() - t0 >= 95ms);
  CHECK(q.stats().messages == 1);  // still there, nothing removed
  auto c = ipc::test::fork_child([&](ipc::test::reporter&) {
    ::usleep(100'000);
    std::vector<std::byte> b;
    return q.receive_for(b, 5s) ? 0 : 1;
  });
  CHECK(q.remove_when_empty(ipc::deadline::in(5s)));
  CHECK(c.wait(5s).exit_code == 0);
  CHECK_FALSE(std::filesystem::exists(q.key_file()));
  CHECK_THROWS_AS(q.stats(), std::system_error);
  CHECK(q.remove_when_empty(ipc::deadline::now()));  // already gone
}
