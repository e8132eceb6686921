// Named synchronisation objects between unrelated processes (exec'd tests/named-sync-peer).
#include <ipc/error.hpp>
#include <ipc/named_sync.hpp>

#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using ipc::open_mode;

namespace {

std::string peer() { return ipc::test::build_path("tests/named-sync-peer"); }

// Removes every kind of named object called `name` however the test ends.
struct named_cleanup {
  std::string name;
  ~named_cleanup() {
    try {
      ipc::named_mutex::remove(name);
      ipc::named_condition::remove(name);
      ipc::event::remove(name);
      ipc::barrier::remove(name);
      ipc::shared_object<long>::remove(name);
      ipc::named_semaphore::remove(name);
    } catch (...) {  // NOLINT(bugprone-empty-catch): best effort at test exit
    }
  }
};

auto has_errno(int err) {
  return Catch::Predicate<std::system_error>([err](const std::system_error& e) { return e.code().value() == err; },
                                             "errno " + std::to_string(err));
}

auto has_code(std::error_code c) {
  return Catch::Predicate<std::system_error>([c](const std::system_error& e) { return e.code() == c; },
                                             "error code " + c.message());
}

}  // namespace

TEST_CASE("named_mutex: two unrelated processes serialise their read-modify-writes", "[named_sync]") {
  auto name = ipc::test::unique_name("nmx");
  named_cleanup cleanup{name};
  ipc::named_mutex m(name, open_mode::create_only);
  ipc::shared_object<long> counter(name, open_mode::create_only, 0L);
  auto a = ipc::test::spawn({peer(), "count", name, "20000"});
  auto b = ipc::test::spawn({peer(), "count", name, "20000"});
  auto ra = a.wait(60s), rb = b.wait(60s);
  INFO(ra.report << rb.report);
  CHECK(ra.exit_code == 0);
  CHECK(rb.exit_code == 0);
  CHECK(counter.load() == 40000);
}

TEST_CASE("named_mutex: a holder killed while holding it hands it on with owner_died", "[named_sync]") {
  auto name = ipc::test::unique_name("nmx-dead");
  named_cleanup cleanup{name};
  ipc::named_mutex m(name, open_mode::create_only);
  auto holder = ipc::test::spawn({peer(), "hold", name});
  REQUIRE(holder.wait_for_line("locked", 30s));
  CHECK_FALSE(m.try_lock());
  holder.kill(SIGKILL);
  CHECK(holder.wait(10s).signal == SIGKILL);
  REQUIRE(m.try_lock_for(5s));
  CHECK(m.previous_owner_died());
  m.unlock();
  std::unique_lock again(m);  // consistent: no owner death the second time
  CHECK_FALSE(m.previous_owner_died());
}

TEST_CASE("named objects: create_only, open_only, modes, kinds and owners are checked", "[named_sync]") {
  auto name = ipc::test::unique_name("nmodes");
  named_cleanup cleanup{name};
  CHECK_THROWS_MATCHES(ipc::named_mutex(name, open_mode::open_only), std::system_error,
                       has_errno(ENOENT));
  ipc::named_mutex m(name, open_mode::create_only, {.perms = 0640});
  CHECK(m.created());
  CHECK_THROWS_MATCHES(ipc::named_mutex(name, open_mode::create_only), std::system_error,
                       has_errno(EEXIST));
  ipc::named_mutex opened(name, open_mode::open_or_create);
  CHECK_FALSE(opened.created());
  CHECK(opened.id() == m.id());  // the creator fixed the lock id for everyone
  CHECK(m.id() != 0);
  struct stat st {};
  REQUIRE(::stat(("/dev/shm/libipc." + name + ".mutex").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0640);
  CHECK_THROWS_WITH(ipc::event(name + "-w", open_mode::create_only, false, {.perms = 0666}),
                    Catch::Contains("would let any user write"));

  // Another type under the same name and kind: refused before anything is touched.
  ipc::shared_object<long> obj(name, open_mode::create_only, 7L);
  CHECK_THROWS_MATCHES(ipc::shared_object<double>(name, open_mode::open_only), std::system_error,
                       has_code(ipc::errc::incompatible));
  // A foreign mode on the segment (as another user's would look): not_owner.
  REQUIRE(::chmod(("/dev/shm/libipc." + name + ".object").c_str(), 0666) == 0);
  CHECK_THROWS_MATCHES(ipc::shared_object<long>(name, open_mode::open_only), std::system_error,
                       has_code(ipc::errc::not_owner));
  REQUIRE(::chmod(("/dev/shm/libipc." + name + ".object").c_str(), 0600) == 0);
  CHECK(*ipc::shared_object<long>(name, open_mode::open_only) == 7);
}

TEST_CASE("named_condition: notify_one wakes an unrelated waiter, notify_all every one", "[named_sync]") {
  auto name = ipc::test::unique_name("ncond");
  named_cleanup cleanup{name};
  ipc::named_mutex m(name, open_mode::create_only);
  ipc::named_condition cv(name, open_mode::create_only);
  ipc::shared_object<long> flag(name, open_mode::create_only, 0L);
  std::vector<ipc::test::child> waiters;
  for (int i = 0; i < 3; ++i) waiters.push_back(ipc::test::spawn({peer(), "cond-wait", name}));
  // Each peer prints "waiting" holding the mutex and releases it only inside wait(): once we
  // hold it after seeing the line, that waiter is registered and any later notify reaches it.
  for (auto& w : waiters) REQUIRE(w.wait_for_line("waiting", 30s));
  {
    std::unique_lock lk(m);
    *flag = 1;
  }
  cv.notify_one();
  bool one_woke = false;
  for (auto d = ipc::deadline::in(30s); !one_woke && !d.expired();) {
    for (auto& w : waiters) one_woke = one_woke || w.wait_for_line("woken 1", 10ms);
  }
  CHECK(one_woke);
  cv.notify_all();
  for (auto& w : waiters) {
    auto r = w.wait(30s);
    INFO(r.report);
    CHECK(r.exit_code == 0);
    CHECK(r.report == "waiting\nwoken 1\n");
  }
}

TEST_CASE("named_semaphore: counts across processes, and undo::yes makes it a lock that survives its holder",
          "[named_sync]") {
  auto name = ipc::test::unique_name("nsem");
  named_cleanup cleanup{name};
  ipc::named_semaphore s(name, open_mode::create_only, 2);
  CHECK(s.value() == 2);
  auto kid = ipc::test::fork_child([&](ipc::test::reporter& r) {
    ipc::named_semaphore mine(name, open_mode::open_only);
    mine.wait();                                  // a count: stays taken after we exit
    mine.wait(ipc::named_semaphore::undo::yes);  // a lock: given back when we die
    r.say("taken");
    ::pause();
    return 0;
  });
  REQUIRE(kid.wait_for_line("taken", 10s));
  CHECK(s.value() == 0);
  CHECK_FALSE(s.wait_for(50ms));
  kid.kill(SIGKILL);
  CHECK(kid.wait(10s).signal == SIGKILL);
  CHECK(s.wait_for(5s));
  CHECK(s.value() == 0);
  s.post(3);
  CHECK(s.value() == 3);
}

TEST_CASE("event: set wakes every unrelated waiter; clear makes waits time out again", "[named_sync]") {
  auto name = ipc::test::unique_name("nevent");
  named_cleanup cleanup{name};
  ipc::event e(name, open_mode::create_only);
  CHECK_FALSE(e.is_set());
  CHECK_FALSE(e.wait_for(20ms));
  auto a = ipc::test::spawn({peer(), "event-wait", name});
  auto b = ipc::test::spawn({peer(), "event-wait", name});
  std::this_thread::sleep_for(200ms);
  e.set();
  CHECK(a.wait(30s).report == "set\n");
  CHECK(b.wait(30s).report == "set\n");
  CHECK(e.is_set());
  CHECK(e.wait_for(0ms));
  e.clear();
  CHECK_FALSE(e.wait_for(20ms));
  CHECK(ipc::event(name + "-on", open_mode::create_only, true).is_set());
  ipc::event::remove(name + "-on");
}

TEST_CASE("barrier: three unrelated processes pass together, each with its own arrival index", "[named_sync]") {
  auto name = ipc::test::unique_name("nbar");
  named_cleanup cleanup{name};
  ipc::barrier b(name, 3, open_mode::create_only);
  CHECK(b.parties() == 3);
  CHECK_THROWS_MATCHES(ipc::barrier(name, 4, open_mode::open_only), std::system_error,
                       has_code(ipc::errc::incompatible));
  auto p1 = ipc::test::spawn({peer(), "barrier", name});
  auto p2 = ipc::test::spawn({peer(), "barrier", name});
  REQUIRE(p1.wait_for_line("arrived", 30s));
  REQUIRE(p2.wait_for_line("arrived", 30s));
  auto d = ipc::deadline::in(30s);
  while (b.waiting() < 2 && !d.expired()) std::this_thread::sleep_for(5ms);
  REQUIRE(b.waiting() == 2);
  CHECK(b.wait() == 2);  // the last to arrive
  auto r1 = p1.wait(30s), r2 = p2.wait(30s);
  CHECK(r1.exit_code == 0);
  CHECK(r2.exit_code == 0);
  CHECK(r1.report + r2.report != "");
  CHECK(((r1.report == "arrived\npassed 0\n" && r2.report == "arrived\npassed 1\n") ||
         (r1.report == "arrived\npassed 1\n" && r2.report == "arrived\npassed 0\n")));
  CHECK(b.wait_for(50ms) == std::nullopt);  // alone: times out and withdraws
  CHECK(b.waiting() == 0);
}

TEST_CASE("barrier: a party killed before arriving breaks it for the waiters", "[named_sync]") {
  auto name = ipc::test::unique_name("nbar-dead");
  named_cleanup cleanup{name};
  ipc::barrier b(name, 3, open_mode::create_only);
  auto waiter = ipc::test::spawn({peer(), "barrier", name});
  auto doomed = ipc::test::spawn({peer(), "barrier", name, "hang"});
  REQUIRE(waiter.wait_for_line("arrived", 30s));
  REQUIRE(doomed.wait_for_line("arrived", 30s));
  const pid_t dead = doomed.pid();
  doomed.kill(SIGKILL);
  CHECK(doomed.wait(10s).signal == SIGKILL);
  auto r = waiter.wait(30s);
  CHECK(r.exit_code == 3);
  CHECK_THAT(r.report, Catch::Contains("broken") && Catch::Contains("pid " + std::to_string(dead) + " died"));
  CHECK(b.broken());
  CHECK_THROWS_MATCHES(b.wait(), std::system_error, has_code(ipc::errc::closed));
  b.reset();
  CHECK_FALSE(b.broken());
}

TEST_CASE("shared_object: constructed once, every opener sees the same object", "[named_sync]") {
  struct point {
    int x, y;
    point(int a, int b) : x(a), y(b) {}
  };
  auto name = ipc::test::unique_name("nobj");
  named_cleanup cleanup{name};
  ipc::shared_object<point> first(name, open_mode::open_or_create, 3, 4);
  CHECK(first.created());
  ipc::shared_object<point> second(name, open_mode::open_or_create, 100, 100);  // not constructed again
  CHECK_FALSE(second.created());
  CHECK(second->x == 3);
  auto kid = ipc::test::fork_child([&](ipc::test::reporter&) {
    ipc::shared_object<point> mine(name, open_mode::open_only);
    mine.update([](point& p) { p.y = 40; });
    return 0;
  });
  CHECK(kid.wait(10s).exit_code == 0);
  CHECK(first.load().y == 40);
  ipc::shared_object<point>::remove(name);
}
