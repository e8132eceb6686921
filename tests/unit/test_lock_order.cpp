// The cross-process lock-order checker: orders learned in one process catch the reverse order in
// another before it blocks; a registry left by dead processes is cleaned.
#include <ipc/named_sync.hpp>
#include <ipc/sync.hpp>

#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using ipc::open_mode;

namespace {

std::string peer() { return ipc::test::build_path("tests/named-sync-peer"); }

// The checker is on by default in debug builds: run the peers without overriding it there.
std::vector<std::string> checker_env() {
#ifdef NDEBUG
  return {"IPC_LOCK_ORDER_CHECK=1"};
#else
  return {};
#endif
}

struct named_cleanup {
  std::vector<std::string> mutexes, events;
  ~named_cleanup() {
    try {
      for (auto& n : mutexes) ipc::named_mutex::remove(n);
      for (auto& n : events) ipc::event::remove(n);
    } catch (...) {  // NOLINT(bugprone-empty-catch): best effort at test exit
    }
  }
};

// A runtime directory of its own, so the registry in it is this test's alone.
struct scratch_runtime {
  std::filesystem::path dir;
  scratch_runtime() {
    char tmpl[] = "/tmp/ipc-lo-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    dir = tmpl;
  }
  ~scratch_runtime() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  [[nodiscard]] std::string env() const { return "IPC_RUNTIME_DIR=" + dir.string(); }
  [[nodiscard]] std::filesystem::path key_file() const { return dir / "lock-order.shm"; }
  // The registry's segment, if its key file still names one.
  [[nodiscard]] bool segment_exists() const {
    if (!std::filesystem::exists(key_file())) return false;
    key_t key = ::ftok(key_file().c_str(), 'H');
    return key != -1 && ::shmget(key, 0, 0) != -1;
  }
};

struct checker_settings_guard {
  bool was = ipc::lock_order_checker::enabled();
  ~checker_settings_guard() {
    ipc::lock_order_checker::set_handler({});
    ipc::lock_order_checker::reset();
    ipc::lock_order_checker::enable(was);
  }
};

}  // namespace

TEST_CASE("lock_order_checker: the two-process ABBA is reported before it blocks, naming locks, orders and pids",
          "[lock_order]") {
  auto a = ipc::test::unique_name("abba-a"), b = ipc::test::unique_name("abba-b");
  auto ev1 = ipc::test::unique_name("abba-1"), ev2 = ipc::test::unique_name("abba-2");
  named_cleanup cleanup{{a, b}, {ev1, ev2}};
  ipc::named_mutex ma(a, open_mode::create_only), mb(b, open_mode::create_only);
  ipc::event e1(ev1, open_mode::create_only), e2(ev2, open_mode::create_only);

  // Process 1 takes a then b, process 2 b then a; each holds its first lock before either tries
  // its second, so without the checker both would block for ever.
  auto p1 = ipc::test::spawn({peer(), "abba", a, b, ev1, ev2}, checker_env());
  auto p2 = ipc::test::spawn({peer(), "abba", b, a, ev2, ev1}, checker_env());
  const pid_t pid1 = p1.pid(), pid2 = p2.pid();
  auto r1 = p1.wait(60s), r2 = p2.wait(60s);
  INFO("process 1: " << r1.report << "process 2: " << r2.report);
  REQUIRE_FALSE(r1.timed_out);
  REQUIRE_FALSE(r2.timed_out);
  // Whichever tried its second lock later is told; the other then gets both.
  const bool first_reported = r1.exit_code == 3;
  const auto& told = first_reported ? r1 : r2;
  const auto& other = first_reported ? r2 : r1;
  const pid_t told_pid = first_reported ? pid1 : pid2;
  const pid_t other_pid = first_reported ? pid2 : pid1;
  CHECK(told.exit_code == 3);
  CHECK(other.exit_code == 0);
  CHECK(other.report == "took both\n");
  const std::string na = "\"mutex " + a + "\"", nb = "\"mutex " + b + "\"";
  const std::string& held = first_reported ? na : nb;
  const std::string& acquiring = first_reported ? nb : na;
  CHECK_THAT(told.report, Catch::StartsWith("violation: lock_order_checker"));
  CHECK_THAT(told.report, Catch::Contains("pid " + std::to_string(told_pid) + " acquiring " + acquiring) &&
                              Catch::Contains("while holding " + held));
  CHECK_THAT(told.report, Catch::Contains("pid " + std::to_string(other_pid) + " took " + acquiring + " (id"));
  CHECK_THAT(told.report, Catch::Contains(") then " + held + " (id"));
  CHECK_THAT(told.report, Catch::Contains("Resource deadlock avoided"));
}

TEST_CASE("lock_order_checker: a violation carries both orders and pids; a dead process's order is forgotten",
          "[lock_order]") {
  checker_settings_guard restore;
  ipc::lock_order_checker::enable(true);
  ipc::lock_order_checker::reset();
  ipc::robust_mutex a{7101}, b{7102};
  auto kid = ipc::test::fork_child([&](ipc::test::reporter& r) {
    ipc::lock_order_checker::enable(true);
    {
      std::unique_lock la(a);
      std::unique_lock lb(b);
    }
    r.say("learned");
    ::pause();
    return 0;
  });
  REQUIRE(kid.wait_for_line("learned", 10s));
  std::vector<ipc::lock_order_checker::violation> seen;
  ipc::lock_order_checker::set_handler([&](const auto& v) { seen.push_back(v); });
  {
    std::unique_lock lb(b);
    std::unique_lock la(a);  // reported to the handler, then taken
  }
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].held == 7102);
  CHECK(seen[0].acquiring == 7101);
  CHECK(seen[0].pid == ::getpid());
  CHECK(seen[0].held_name == "lock 7102");
  REQUIRE(seen[0].reverse.size() == 1);
  CHECK(seen[0].reverse[0].first == 7101);
  CHECK(seen[0].reverse[0].then == 7102);
  CHECK(seen[0].reverse[0].pid == kid.pid());

  kid.kill(SIGKILL);
  CHECK(kid.wait(10s).signal == SIGKILL);
  seen.clear();
  ipc::lock_order_checker::reset();  // drops the dead child's order
  {
    std::unique_lock lb(b);
    std::unique_lock la(a);
  }
  CHECK(seen.empty());
}

TEST_CASE("lock_order_checker: the last process out removes the registry; one left by a killed process is cleaned",
          "[lock_order]") {
  auto a = ipc::test::unique_name("reg-a"), b = ipc::test::unique_name("reg-b");
  named_cleanup cleanup{{a, b}, {}};
  ipc::named_mutex ma(a, open_mode::create_only), mb(b, open_mode::create_only);
  scratch_runtime run;
  std::vector<std::string> env = checker_env();
  env.push_back(run.env());

  auto clean = ipc::test::spawn({peer(), "nest", a, b}, env);
  auto rc = clean.wait(30s);
  CHECK(rc.exit_code == 0);
  CHECK_THAT(rc.report, Catch::Contains("registry " + run.key_file().string()));
  CHECK_FALSE(run.segment_exists());
  CHECK_FALSE(std::filesystem::exists(run.key_file()));

  auto killed = ipc::test::spawn({peer(), "nest", a, b, "hang"}, env);
  REQUIRE(killed.wait_for_line("nested", 30s));
  REQUIRE(run.segment_exists());
  killed.kill(SIGKILL);
  CHECK(killed.wait(10s).signal == SIGKILL);
  CHECK(run.segment_exists());  // left behind, with the dead process's order in it

  // The next user drops the dead process's order (b then a is no violation now) and, leaving
  // last, removes the registry.
  auto next = ipc::test::spawn({peer(), "nest", b, a}, env);
  auto rn = next.wait(30s);
  INFO(rn.report);
  CHECK(rn.exit_code == 0);
  CHECK_FALSE(run.segment_exists());
}
