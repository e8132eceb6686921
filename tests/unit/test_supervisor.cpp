// ipc::supervisor: real worker processes on a real Asio loop - launch, restart with back-off,
// give-up, never restarting a usage error, and the watchdog kicked across the process boundary.
// Workers never use Catch macros; they only exit, sleep or kick.
#include "test_support.hpp"

#include <ipc/supervisor.hpp>

#include <boost/asio/io_context.hpp>

#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using kind = ipc::supervisor::event::kind;

namespace {

// Runs the loop until the supervisor has nothing left to do, at most `limit`.
void run_until_inactive(boost::asio::io_context& io, const ipc::supervisor& s, std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (s.active() && std::chrono::steady_clock::now() < until) io.run_for(20ms);
}

struct recorder {
  std::vector<ipc::supervisor::event> events;
  [[nodiscard]] std::size_t count(kind k) const {
    std::size_t n = 0;
    for (const auto& e : events) n += e.what == k ? 1 : 0;
    return n;
  }
};

ipc::supervisor_options quick() {
  ipc::supervisor_options o;
  o.first_delay = 10ms;
  o.max_delay = 40ms;
  o.max_failures = 3;
  o.window = 30s;
  return o;
}

}  // namespace

TEST_CASE("supervisor: a worker that exits 0 is started once and supervision ends", "[supervisor]") {
  boost::asio::io_context io;
  recorder r;
  ipc::supervisor s(io.get_executor(), "ok", [] { return ipc::process::fork([] { return 0; }); }, quick());
  s.on_event([&](const auto& e) { r.events.push_back(e); });
  s.start();
  run_until_inactive(io, s, 10s);
  CHECK(s.current() == ipc::supervisor::state::done);
  CHECK(s.starts() == 1);
  CHECK(r.count(kind::started) == 1);
  REQUIRE(s.last_exit());
  CHECK(s.last_exit()->success());
}

TEST_CASE("supervisor: a failing worker is restarted with doubling back-off, then given up", "[supervisor]") {
  boost::asio::io_context io;
  recorder r;
  ipc::supervisor s(io.get_executor(), "flaky", [] { return ipc::process::fork([] { return 1; }); }, quick());
  s.on_event([&](const auto& e) { r.events.push_back(e); });
  s.start();
  run_until_inactive(io, s, 20s);
  CHECK(s.current() == ipc::supervisor::state::gave_up);
  CHECK(s.starts() == 3);
  REQUIRE(r.count(kind::restarting) == 2);
  std::vector<std::chrono::milliseconds> delays;
  for (const auto& e : r.events) {
    if (e.what == kind::restarting) delays.push_back(e.delay);
  }
  CHECK(delays == std::vector<std::chrono::milliseconds>{10ms, 20ms});
  CHECK(r.count(kind::gave_up) == 1);
  CHECK_THAT(r.events.back().text, Catch::Contains("giving up after 3 failures"));
}

TEST_CASE("supervisor: a worker that exits 2 (usage error) is never restarted", "[supervisor]") {
  boost::asio::io_context io;
  recorder r;
  ipc::supervisor s(io.get_executor(), "usage", [] { return ipc::process::fork([] { return 2; }); }, quick());
  s.on_event([&](const auto& e) { r.events.push_back(e); });
  s.start();
  run_until_inactive(io, s, 10s);
  io.run_for(100ms);  // a restart, were one scheduled, would have come by now
  CHECK(s.starts() == 1);
  CHECK(s.current() == ipc::supervisor::state::gave_up);
  CHECK(r.count(kind::restarting) == 0);
  CHECK_THAT(r.events.back().text, Catch::Contains("usage error") && Catch::Contains("not restarted"));
}

TEST_CASE("supervisor: restart_on_success keeps a worker that exits 0 running", "[supervisor]") {
  boost::asio::io_context io;
  auto o = quick();
  o.restart_on_success = true;
  ipc::supervisor s(io.get_executor(), "service", [] { return ipc::process::fork([] { return 0; }); }, o);
  s.start();
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (s.starts() < 3 && std::chrono::steady_clock::now() < until) io.run_for(20ms);
  CHECK(s.starts() >= 3);
  s.stop();
  run_until_inactive(io, s, 10s);
  CHECK(s.current() == ipc::supervisor::state::done);
}

TEST_CASE("supervisor: stop() ends supervision and the worker's exit is reported, not restarted", "[supervisor]") {
  boost::asio::io_context io;
  recorder r;
  ipc::supervisor s(io.get_executor(), "sleeper", [] { return ipc::process::fork([] { ::pause(); }); }, quick());
  s.on_event([&](const auto& e) { r.events.push_back(e); });
  s.start();
  io.run_for(50ms);
  CHECK(s.pid() > 0);
  CHECK(s.healthy());
  s.stop(SIGTERM);
  run_until_inactive(io, s, 10s);
  CHECK(s.current() == ipc::supervisor::state::done);
  CHECK(s.starts() == 1);
  REQUIRE(s.last_exit());
  CHECK(s.last_exit()->signal == SIGTERM);
  CHECK(r.count(kind::exited) == 1);
}

TEST_CASE("supervisor: a worker that stops kicking its watchdog is killed and restarted, within limits", "[supervisor]") {
  boost::asio::io_context io;
  recorder r;
  auto o = quick();
  o.max_failures = 2;
  o.watchdog_counter = ipc::test::unique_name("wd");
  o.watchdog_timeout = 1000ms;  // generous: a loaded machine must not fake an expiry
  const std::string counter = o.watchdog_counter;
  // Kicks for a while (healthy), then hangs as a deadlocked worker would.
  ipc::supervisor s(io.get_executor(), "stuck", [counter] {
    return ipc::process::fork([counter] {
      ipc::watchdog_kicker k(counter);
      for (int i = 0; i < 20; ++i) {
        k.kick();
        std::this_thread::sleep_for(20ms);
      }
      ::pause();
    });
  }, o);
  s.on_event([&](const auto& e) { r.events.push_back(e); });
  s.start();
  io.run_for(200ms);
  CHECK(s.healthy());  // kicking
  run_until_inactive(io, s, 20s);
  CHECK(r.count(kind::watchdog_expired) == 2);
  CHECK(s.starts() == 2);
  CHECK(s.current() == ipc::supervisor::state::gave_up);
  REQUIRE(s.last_exit());
  CHECK(s.last_exit()->signal == SIGKILL);
  CHECK_FALSE(s.healthy());
}

TEST_CASE("supervisor: a worker that keeps kicking is left alone", "[supervisor]") {
  boost::asio::io_context io;
  recorder r;
  auto o = quick();
  o.watchdog_counter = ipc::test::unique_name("wd");
  o.watchdog_timeout = 1000ms;
  const std::string counter = o.watchdog_counter;
  ipc::supervisor s(io.get_executor(), "busy", [counter] {
    return ipc::process::fork([counter] {
      ipc::watchdog_kicker k(counter);
      for (int i = 0; i < 100; ++i) {  // 2 s, twice the timeout, kicking all along
        k.kick();
        std::this_thread::sleep_for(20ms);
      }
      return 0;
    });
  }, o);
  s.on_event([&](const auto& e) { r.events.push_back(e); });
  s.start();
  run_until_inactive(io, s, 20s);
  CHECK(r.count(kind::watchdog_expired) == 0);
  CHECK(s.starts() == 1);
  CHECK(s.current() == ipc::supervisor::state::done);
}

TEST_CASE("supervisor: bad options and a failing first start throw", "[supervisor]") {
  boost::asio::io_context io;
  ipc::supervisor_options o;
  o.watchdog_counter = "x";
  REQUIRE_THROWS_WITH(ipc::supervisor(io.get_executor(), "w", [] { return ipc::process(); }, o),
                      Catch::Contains("watchdog counter without a timeout"));
  REQUIRE_THROWS_WITH(ipc::supervisor(io.get_executor(), "w", {}), Catch::Contains("no starter"));
  ipc::supervisor s(io.get_executor(), "missing", [] { return ipc::process::exec({"/no/such/program"}); });
  REQUIRE_THROWS_WITH(s.start(), Catch::Contains("execve(/no/such/program)"));
  CHECK_FALSE(s.active());
}
