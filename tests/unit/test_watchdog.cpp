// ipc::watchdog: a real monitor thread on CLOCK_MONOTONIC and a real AF_UNIX datagram socket
// standing in for systemd's NOTIFY_SOCKET.
#include <ipc/process.hpp>
#include <ipc/unique_fd.hpp>
#include <ipc/watchdog.hpp>

#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using Catch::Contains;

namespace {

using steady = std::chrono::steady_clock;

// Records when on_expiry ran.
struct expiry_log {
  std::mutex m;
  std::condition_variable cv;
  std::vector<steady::time_point> at;

  std::function<void()> callback() {
    return [this] {
      std::lock_guard lk(m);
      at.push_back(steady::now());
      cv.notify_all();
    };
  }
  bool wait_for_count(std::size_t n, std::chrono::milliseconds limit) {
    std::unique_lock lk(m);
    return cv.wait_for(lk, limit, [&] { return at.size() >= n; });
  }
  std::size_t count() {
    std::lock_guard lk(m);
    return at.size();
  }
};

// A datagram socket bound to a path (or an abstract name): the NOTIFY_SOCKET stand-in.
struct notify_listener {
  ipc::unique_fd fd;
  std::string name;  // what goes into NOTIFY_SOCKET

  explicit notify_listener(bool abstract) {
    fd.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    REQUIRE(fd);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    socklen_t len = 0;
    if (abstract) {
      name = "@" + ipc::test::unique_name("ipc-watchdog-test");
      std::memcpy(addr.sun_path + 1, name.data() + 1, name.size() - 1);
      len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
    } else {
      name = std::string(std::getenv("IPC_RUNTIME_DIR")) + "/" + ipc::test::unique_name("notify") + ".sock";
      std::memcpy(addr.sun_path, name.c_str(), name.size() + 1);
      len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() + 1);
    }
    REQUIRE(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), len) == 0);
  }
  ~notify_listener() {
    if (!name.empty() && name[0] == '/') ::unlink(name.c_str());
  }

  // Every datagram that arrives within `limit`, waiting at most that long.
  std::vector<std::string> collect(std::chrono::milliseconds limit) {
    std::vector<std::string> got;
    auto until = steady::now() + limit;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - steady::now());
      if (left.count() <= 0) return got;
      pollfd p{fd.get(), POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[256];
      ssize_t n = ::recv(fd.get(), buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) got.emplace_back(buf, static_cast<std::size_t>(n));
    }
  }
  // Drops whatever is queued now.
  void drain() {
    char buf[256];
    while (::recv(fd.get(), buf, sizeof buf, MSG_DONTWAIT) > 0) {
    }
  }
};

// Sets an environment variable for one test and restores it (tests run one at a time).
struct scoped_env {
  std::string key;
  std::optional<std::string> old;
  scoped_env(std::string k, const char* value) : key(std::move(k)) {
    if (const char* o = std::getenv(key.c_str())) old = o;
    if (value != nullptr) {
      ::setenv(key.c_str(), value, 1);
    } else {
      ::unsetenv(key.c_str());
    }
  }
  ~scoped_env() {
    if (old) {
      ::setenv(key.c_str(), old->c_str(), 1);
    } else {
      ::unsetenv(key.c_str());
    }
  }
};

}  // namespace

TEST_CASE("watchdog: not kicked, it calls on_expiry within the timeout plus tolerance", "[watchdog]") {
  expiry_log log;
  auto t0 = steady::now();
  ipc::watchdog wd(100ms, log.callback());
  REQUIRE(log.wait_for_count(1, 5s));
  auto after = log.at[0] - t0;
  CHECK(after >= 95ms);
  CHECK(after < 2s);
  CHECK(wd.expired());
  CHECK(wd.expiries() == 1);
}

TEST_CASE("watchdog: kicked regularly, it never calls on_expiry", "[watchdog]") {
  expiry_log log;
  ipc::watchdog wd(500ms, log.callback());
  auto until = steady::now() + 1200ms;
  while (steady::now() < until) {
    wd.kick();
    std::this_thread::sleep_for(10ms);
  }
  CHECK_FALSE(wd.expired());
  CHECK(log.count() == 0);
  CHECK(wd.expiries() == 0);
}

TEST_CASE("watchdog: one call per expiry, re-armed by the next kick", "[watchdog]") {
  expiry_log log;
  ipc::watchdog wd(100ms, log.callback());
  REQUIRE(log.wait_for_count(1, 5s));
  std::this_thread::sleep_for(350ms);  // still not kicked: no second call
  CHECK(log.count() == 1);
  auto kicked = steady::now();
  wd.kick();
  REQUIRE(log.wait_for_count(2, 5s));
  CHECK(log.at[1] - kicked >= 95ms);
  CHECK(wd.expiries() == 2);
}

TEST_CASE("watchdog: kick from another thread keeps it alive", "[watchdog]") {
  expiry_log log;
  ipc::watchdog wd(400ms, log.callback());
  std::atomic<bool> run{true};
  std::thread kicker([&] {
    while (run.load()) {
      wd.kick();
      std::this_thread::sleep_for(10ms);
    }
  });
  std::this_thread::sleep_for(800ms);
  run = false;
  kicker.join();
  CHECK(log.count() == 0);
}

TEST_CASE("watchdog: stop and the destructor join the monitor promptly", "[watchdog]") {
  expiry_log log;
  auto t0 = steady::now();
  {
    ipc::watchdog wd(30s, log.callback());
    std::this_thread::sleep_for(20ms);
    wd.stop();
    wd.stop();  // idempotent
  }
  CHECK(steady::now() - t0 < 1s);
  CHECK(log.count() == 0);
}

TEST_CASE("watchdog: destroying it from inside on_expiry is safe", "[watchdog]") {
  std::mutex m;
  std::condition_variable cv;
  bool fired = false;
  std::unique_ptr<ipc::watchdog> wd;
  {
    std::lock_guard lk(m);  // the callback cannot touch wd before it is assigned
    wd = std::make_unique<ipc::watchdog>(50ms, [&] {
      std::lock_guard cb(m);
      wd.reset();  // destroys the watchdog whose monitor thread is running this callback
      fired = true;
      cv.notify_all();
    });
  }
  std::unique_lock lk(m);
  REQUIRE(cv.wait_for(lk, 5s, [&] { return fired; }));
  CHECK(wd == nullptr);
}

TEST_CASE("watchdog: rejects a non-positive timeout and an empty callback", "[watchdog]") {
  REQUIRE_THROWS_WITH(ipc::watchdog(0ms, [] {}), Contains("watchdog") && Contains("timeout"));
  REQUIRE_THROWS_WITH(ipc::watchdog(1s, nullptr), Contains("watchdog") && Contains("on_expiry"));
}

TEST_CASE("watchdog: abort_process logs and aborts the process", "[watchdog]") {
  auto c = ipc::test::fork_child([](ipc::test::reporter& r) {
    ::dup2(r.fd(), STDERR_FILENO);
    // Catch's fatal-signal handler (inherited) would report the abort as a test failure of its own.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(SIGABRT, &dfl, nullptr);
    ipc::watchdog wd(50ms, ipc::watchdog::abort_process);
    std::this_thread::sleep_for(10s);
    return 0;
  });
  auto res = c.wait(20s);
  CHECK_FALSE(res.timed_out);
  CHECK(res.signal == SIGABRT);
  CHECK_THAT(res.report, Contains("ipc::watchdog") && Contains("aborting"));
}

TEST_CASE("watchdog: the NOTIFY_SOCKET stand-in gets WATCHDOG=1 while kicked and nothing once kicks stop",
          "[watchdog]") {
  notify_listener listener(false);
  ipc::watchdog::options o;
  o.notify_systemd = true;
  o.notify_socket = listener.name;
  o.notify_interval = 20ms;
  expiry_log log;
  ipc::watchdog wd(200ms, log.callback(), o);

  // Kicked for 400 ms: pings keep coming.
  std::vector<std::string> while_kicked;
  auto until = steady::now() + 400ms;
  while (steady::now() < until) {
    wd.kick();
    auto got = listener.collect(10ms);
    while_kicked.insert(while_kicked.end(), got.begin(), got.end());
  }
  CHECK(while_kicked.size() >= 5);
  for (const auto& d : while_kicked) CHECK(d == "WATCHDOG=1");

  // Kicks stop: after the timeout (plus margin) no more pings arrive.
  REQUIRE(log.wait_for_count(1, 5s));
  std::this_thread::sleep_for(50ms);
  listener.drain();
  auto after = listener.collect(400ms);
  CHECK(after.empty());
  auto pings = wd.pings_sent();

  // Kicked again: pings resume.
  wd.kick();
  auto resumed = listener.collect(150ms);
  wd.kick();
  CHECK_FALSE(resumed.empty());
  CHECK(wd.pings_sent() > pings);
}

TEST_CASE("watchdog: the ping interval defaults to half of WATCHDOG_USEC and $NOTIFY_SOCKET is used", "[watchdog]") {
  notify_listener listener(true);  // abstract '@' name
  scoped_env usec("WATCHDOG_USEC", "100000");
  scoped_env pid("WATCHDOG_PID", std::to_string(::getpid()).c_str());
  scoped_env sock("NOTIFY_SOCKET", listener.name.c_str());
  REQUIRE(ipc::watchdog::systemd_interval() == std::chrono::microseconds(100000));
  ipc::watchdog::options o;
  o.notify_systemd = true;
  ipc::watchdog wd(2s, [] {}, o);
  std::vector<std::string> got;
  auto until = steady::now() + 600ms;
  while (steady::now() < until) {
    wd.kick();
    auto g = listener.collect(20ms);
    got.insert(got.end(), g.begin(), g.end());
  }
  // Every 50 ms for 600 ms: about 12; allow a loaded machine to lose most of them, but a
  // timeout/2 (1 s) period would give at most 1.
  CHECK(got.size() >= 3);
  CHECK(got.size() <= 20);
  CHECK(ipc::watchdog::sd_notify("STATUS=test"));
  auto status = listener.collect(1s);
  CHECK(std::find(status.begin(), status.end(), "STATUS=test") != status.end());
}

TEST_CASE("watchdog: systemd_interval honours WATCHDOG_PID and rejects junk", "[watchdog]") {
  {
    scoped_env usec("WATCHDOG_USEC", "3000000");
    scoped_env pid("WATCHDOG_PID", nullptr);
    CHECK(ipc::watchdog::systemd_interval() == std::chrono::microseconds(3000000));
  }
  {
    scoped_env usec("WATCHDOG_USEC", "3000000");
    scoped_env pid("WATCHDOG_PID", "1");  // someone else's watchdog
    CHECK_FALSE(ipc::watchdog::systemd_interval());
  }
  for (const char* junk : {"", "0", "-5", "12abc", "abc"}) {
    scoped_env usec("WATCHDOG_USEC", junk);
    scoped_env pid("WATCHDOG_PID", nullptr);
    CHECK_FALSE(ipc::watchdog::systemd_interval());
  }
  {
    scoped_env usec("WATCHDOG_USEC", nullptr);
    CHECK_FALSE(ipc::watchdog::systemd_interval());
  }
}

TEST_CASE("watchdog: sd_notify without a socket or with a bad name sends nothing", "[watchdog]") {
  scoped_env sock("NOTIFY_SOCKET", nullptr);
  CHECK_FALSE(ipc::watchdog::sd_notify("WATCHDOG=1"));
  CHECK_FALSE(ipc::watchdog::sd_notify("WATCHDOG=1", "relative/path"));
  CHECK_FALSE(ipc::watchdog::sd_notify("WATCHDOG=1", "/no/such/dir/notify.sock"));
}

TEST_CASE("watchdog: a timeout of nanoseconds::max() means never, without spinning, and stops promptly", "[watchdog]") {
  std::atomic<int> fired{0};
  const std::clock_t cpu0 = std::clock();
  const auto t0 = std::chrono::steady_clock::now();
  {
    ipc::watchdog wd(std::chrono::nanoseconds::max(), [&] { ++fired; });
    wd.kick();
    std::this_thread::sleep_for(200ms);
    CHECK_FALSE(wd.expired());
  }
  const double cpu_ms = 1000.0 * static_cast<double>(std::clock() - cpu0) / CLOCKS_PER_SEC;
  CHECK(std::chrono::steady_clock::now() - t0 < 2s);
  CHECK(cpu_ms < 100);
  CHECK(fired == 0);
}
