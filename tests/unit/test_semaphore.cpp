#include <ipc/error.hpp>
#include <ipc/semaphore.hpp>
#include <ipc/shared_value.hpp>
#include <ipc/uri.hpp>

#include "detail/sysv_key.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using ipc::open_mode;
using ipc::semaphore_set;

namespace {

// Removes the named set (and key file) however the test ends.
ipc::test::on_exit sem_cleanup(const std::string& name) {
  return ipc::test::on_exit([=] { semaphore_set::remove(name); });
}

union semun_arg {
  int val;
  semid_ds* buf;
  unsigned short* array;
};

semid_ds stat_of(int id) {
  semid_ds ds{};
  semun_arg a{};
  a.buf = &ds;
  REQUIRE(::semctl(id, 0, IPC_STAT, a) == 0);
  return ds;
}

}  // namespace

TEST_CASE("semaphore_set: a new set holds its initial values under an ftok-compatible key", "[semaphore]") {
  auto name = ipc::test::unique_name("sem");
  auto cleanup = sem_cleanup(name);
  semaphore_set s(name, open_mode::create_only, {3, 1});
  CHECK(s.created());
  CHECK(s.size() == 2);
  CHECK(s.value(0) == 3);
  CHECK(s.value(1) == 1);
  CHECK(s.values() == std::vector<unsigned short>{3, 1});
  auto key_file = ipc::runtime_dir() / (name + ".sem");
  CHECK(s.key() == ::ftok(key_file.c_str(), 'S'));
  auto ds = stat_of(s.id());
  CHECK((ds.sem_perm.mode & 0777) == 0600);
  CHECK(ds.sem_otime != 0);

  semaphore_set again(name, open_mode::open_or_create, {9, 9});
  CHECK_FALSE(again.created());
  CHECK(again.id() == s.id());
  CHECK(again.value(0) == 3);  // opening never re-initialises
}

TEST_CASE("semaphore_set: openers racing the creator never see an uninitialised set", "[semaphore]") {
  for (int round = 0; round < 10; ++round) {
    auto name = ipc::test::unique_name("race");
    auto cleanup = sem_cleanup(name);
    auto key_file = ipc::runtime_dir() / (name + ".sem");
    (void)ipc::detail::sysv_key(key_file, 'S', true);
    int gate[2];
    REQUIRE(::pipe(gate) == 0);
    std::vector<ipc::test::child> kids;
    for (int k = 0; k < 5; ++k) {
      const bool creator = k == 2;
      kids.push_back(ipc::test::fork_child([&, creator](ipc::test::reporter& r) {
        ::close(gate[1]);
        char c;
        (void)::read(gate[0], &c, 1);  // everyone starts when the parent closes the gate
        auto d = ipc::deadline::in(5s);
        for (;;) {
          try {
            semaphore_set s(name, creator ? open_mode::create_only : open_mode::open_only, {7});
            r.say("value=", s.value(0), " created=", s.created());
            return 0;
          } catch (const std::system_error& e) {
            if (creator || e.code() != std::errc::no_such_file_or_directory || d.expired()) throw;
          }
        }
      }));
    }
    ::close(gate[0]);
    ::close(gate[1]);
    int created = 0;
    for (auto& kid : kids) {
      auto res = kid.wait(10s);
      INFO(res.report);
      REQUIRE(res.exit_code == 0);
      CHECK_THAT(res.report, Catch::StartsWith("value=7 "));
      if (res.report.find("created=1") != std::string::npos) ++created;
    }
    CHECK(created == 1);
  }
}

TEST_CASE("semaphore_set: a unit taken with undo by a SIGKILLed process comes back", "[semaphore]") {
  auto name = ipc::test::unique_name("undo");
  auto cleanup = sem_cleanup(name);
  semaphore_set s(name, open_mode::create_only, {1, 0});
  auto kid = ipc::test::fork_child([&](ipc::test::reporter& r) {
    semaphore_set mine(name, open_mode::open_only, {1, 0});
    mine.wait(0, 1, semaphore_set::undo::yes);
    mine.post(1, 5);  // the default, no undo: survives the kill
    r.say("taken");
    ::pause();
    return 0;
  });
  REQUIRE(kid.wait_for_line("taken", 5s));
  CHECK(s.value(0) == 0);
  CHECK(s.last_pid(0) == kid.pid());
  kid.kill(SIGKILL);
  auto res = kid.wait(5s);
  CHECK(res.signal == SIGKILL);
  CHECK(s.wait_for(0, 2s));
  CHECK(s.value(1) == 5);
}

TEST_CASE("semaphore_set: wait_for returns false after its timeout", "[semaphore]") {
  auto name = ipc::test::unique_name("timeout");
  auto cleanup = sem_cleanup(name);
  semaphore_set s(name, open_mode::create_only, {0});
  auto t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(s.wait_for(0, 100ms));
  auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took >= 95ms);
  CHECK(took < 2s);
  CHECK_FALSE(s.try_wait(0));
  s.post(0, 2);
  CHECK(s.try_wait(0));
  CHECK(s.wait_for(0, 100ms));
  CHECK(s.value(0) == 0);
}

TEST_CASE("semaphore_set: apply takes every operation or none", "[semaphore]") {
  auto name = ipc::test::unique_name("apply");
  auto cleanup = sem_cleanup(name);
  semaphore_set s(name, open_mode::create_only, {1, 0, 4});
  CHECK_FALSE(s.apply({{0, -1}, {1, -1}}, ipc::deadline::now()));
  CHECK(s.values() == std::vector<unsigned short>{1, 0, 4});
  CHECK(s.apply({{0, -1}, {2, -2}, {1, 3}}, ipc::deadline::in(1s)));
  CHECK(s.values() == std::vector<unsigned short>{0, 3, 2});
  CHECK(s.apply({{0, 0}}, ipc::deadline::now()));  // wait-for-zero succeeds at zero
  CHECK_THROWS_WITH(s.apply({{3, 1}}), Catch::Contains("semop") && Catch::Contains("index 3 of 3"));
}

TEST_CASE("semaphore_set: a blocked waiter gets errc::closed when the set is removed", "[semaphore]") {
  auto name = ipc::test::unique_name("rmid");
  auto cleanup = sem_cleanup(name);
  semaphore_set s(name, open_mode::create_only, {0});
  std::atomic<int> outcome{0};  // 1 closed, 2 returned, 3 other error
  std::thread waiter([&] {
    try {
      semaphore_set mine(name, open_mode::open_only, {0});
      outcome = mine.wait_for(0, 10s) ? 2 : 4;
    } catch (const std::system_error& e) {
      outcome = e.code() == ipc::errc::closed ? 1 : 3;
    }
  });
  auto d = ipc::deadline::in(5s);
  while (s.waiters(0) == 0 && !d.expired()) std::this_thread::sleep_for(1ms);
  CHECK(s.waiters(0) == 1);
  CHECK(s.zero_waiters(0) == 0);
  s.remove();
  waiter.join();
  CHECK(outcome == 1);
  CHECK_THROWS_MATCHES(s.value(0), std::system_error,
                       Catch::Predicate<std::system_error>([](auto& e) { return e.code() == ipc::errc::closed; }));
  CHECK_FALSE(std::filesystem::exists(ipc::runtime_dir() / (name + ".sem")));
}

TEST_CASE("semaphore_set: a set owned by another user or world-writable is refused", "[semaphore]") {
  auto name = ipc::test::unique_name("owner");
  auto cleanup = sem_cleanup(name);
  semaphore_set s(name, open_mode::create_only, {1});
  auto ds = stat_of(s.id());
  auto restore = [&] {
    semun_arg a{};
    a.buf = &ds;
    ::semctl(s.id(), 0, IPC_SET, a);
  };
  auto is_not_owner = Catch::Predicate<std::system_error>([](auto& e) { return e.code() == ipc::errc::not_owner; });

  semid_ds bad = ds;
  bad.sem_perm.mode = 0666;
  semun_arg a{};
  a.buf = &bad;
  REQUIRE(::semctl(s.id(), 0, IPC_SET, a) == 0);
  CHECK_THROWS_MATCHES(semaphore_set(name, open_mode::open_only, {1}), std::system_error, is_not_owner);
  restore();

  if (::geteuid() == 0) {  // only root may hand a set to another uid
    bad = ds;
    bad.sem_perm.uid = 65534;
    REQUIRE(::semctl(s.id(), 0, IPC_SET, a) == 0);
    CHECK_THROWS_MATCHES(semaphore_set(name, open_mode::open_or_create, {1}), std::system_error, is_not_owner);
    CHECK_THROWS_WITH(semaphore_set(name, open_mode::open_only, {1}), Catch::Contains("owned by uid 65534"));
    restore();
  }
  CHECK_NOTHROW(semaphore_set(name, open_mode::open_only, {1}));
}

TEST_CASE("semaphore_set: another semaphore count is incompatible and names the set", "[semaphore]") {
  auto name = ipc::test::unique_name("count");
  auto cleanup = sem_cleanup(name);
  semaphore_set s(name, open_mode::create_only, {1, 1});
  CHECK_THROWS_MATCHES(semaphore_set(name, open_mode::open_only, {1, 1, 1}), std::system_error,
                       Catch::Predicate<std::system_error>([&](auto& e) {
                         return e.code() == ipc::errc::incompatible &&
                                std::string(e.what()).find(name + ".sem") != std::string::npos;
                       }));
}

TEST_CASE("semaphore_set: a set its creator never initialised is refused after a bounded wait", "[semaphore]") {
  auto name = ipc::test::unique_name("uninit");
  auto cleanup = sem_cleanup(name);
  key_t key = ipc::detail::sysv_key(ipc::runtime_dir() / (name + ".sem"), 'S', true);
  int id = ::semget(key, 1, IPC_CREAT | IPC_EXCL | 0600);  // a creator that died before initialising
  REQUIRE(id >= 0);
  auto t0 = std::chrono::steady_clock::now();
  CHECK_THROWS_MATCHES(semaphore_set(name, open_mode::open_only, {1}), std::system_error,
                       Catch::Predicate<std::system_error>([](auto& e) {
                         return e.code() == ipc::errc::incompatible &&
                                std::string(e.what()).find("never initialised") != std::string::npos;
                       }));
  auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took >= 1900ms);
  CHECK(took < 10s);
}

TEST_CASE("semaphore_set: create_only, open_only and bad values fail with clear errors", "[semaphore]") {
  auto name = ipc::test::unique_name("modes");
  auto cleanup = sem_cleanup(name);
  CHECK_THROWS_WITH(semaphore_set(name, open_mode::open_only, {1}), Catch::Contains(name + ".sem"));
  semaphore_set s(name, open_mode::create_only, {1});
  CHECK_THROWS_MATCHES(semaphore_set(name, open_mode::create_only, {1}), std::system_error,
                       Catch::Predicate<std::system_error>([](auto& e) {
                         return e.code() == std::errc::file_exists &&
                                std::string(e.what()).find("semget") != std::string::npos;
                       }));
  auto none = ipc::test::unique_name("none");
  CHECK_THROWS_WITH(semaphore_set(none, open_mode::create_only, {}), Catch::Contains("nsems 0"));
  CHECK_FALSE(std::filesystem::exists(ipc::runtime_dir() / (none + ".sem")));
  CHECK_THROWS_WITH(semaphore_set(ipc::test::unique_name("big"), open_mode::create_only, {40000}),
                    Catch::Contains("initial value"));
  CHECK_THROWS_WITH(s.set_value(0, 40000), Catch::Contains("SETVAL"));
}

TEST_CASE("semaphore_set: guard holds a unit for its scope", "[semaphore]") {
  auto name = ipc::test::unique_name("guard");
  auto cleanup = sem_cleanup(name);
  semaphore_set s(name, open_mode::create_only, {1});
  {
    semaphore_set::guard g(s, 0);
    CHECK(s.value(0) == 0);
    CHECK(s.last_pid(0) == ::getpid());
  }
  CHECK(s.value(0) == 1);
  s.set_value(0, 12);
  CHECK(s.value(0) == 12);
}

TEST_CASE("semaphore_set: an explicit key works without a key file", "[semaphore]") {
  auto name = ipc::test::unique_name("keyed");
  auto key_file = ipc::runtime_dir() / (name + ".key");
  key_t key = ipc::detail::sysv_key(key_file, 'k', true);
  semaphore_set s(key, "keyed-test", open_mode::create_only, {2});
  CHECK(s.key() == key);
  CHECK_THAT(s.object(), Catch::Contains("keyed-test") && Catch::Contains(ipc::detail::key_string(key)));
  semaphore_set other(key, "keyed-test", open_mode::open_only, {2});
  CHECK(other.value(0) == 2);
  s.remove();
  CHECK(::semget(key, 0, 0) == -1);
  std::filesystem::remove(key_file);
}

// ---- undo chosen per operation: the textbook bounded buffer ---------------------------------

namespace {

constexpr unsigned short sem_empty = 0, sem_full = 1;
constexpr int slots = 4;

// The producer of the textbook, written the obvious way: wait(empty), fill a slot, post(full).
int produce(const std::string& sem_name, const std::string& shm_name, int first, int count) {
  semaphore_set s(sem_name, open_mode::open_only, {slots, 0});
  ipc::shared_array<int> buf(shm_name, slots, open_mode::open_only, 0, {.with_lock = false});
  for (int i = first; i < first + count; ++i) {
    s.wait(sem_empty);
    buf[static_cast<std::size_t>(i % slots)] = i;
    s.post(sem_full);
  }
  return 0;
}

// The consumer: wait(full), read a slot, post(empty). Returns how many records arrived in order.
int consume(semaphore_set& s, ipc::shared_array<int>& buf, int first, int count, std::chrono::milliseconds patience) {
  int got = 0;
  for (int i = first; i < first + count; ++i) {
    if (!s.wait_for(sem_full, patience)) break;
    if (buf[static_cast<std::size_t>(i % slots)] != i) break;
    s.post(sem_empty);
    ++got;
  }
  return got;
}

}  // namespace

TEST_CASE("semaphore_set: the empty/full producer and consumer written the obvious way deliver every record",
          "[semaphore]") {
  auto sem_name = ipc::test::unique_name("pc-sem");
  auto shm_name = ipc::test::unique_name("pc-shm");
  auto cleanup = sem_cleanup(sem_name);
  semaphore_set s(sem_name, open_mode::create_only, {slots, 0});
  ipc::shared_array<int> buf(shm_name, slots, open_mode::create_only, -1, {.with_lock = false});
  struct shm_cleanup {
    ipc::shared_array<int>& b;
    ~shm_cleanup() { b.remove(); }
  } shm_gone{buf};

  SECTION("a producer that exits with records still unread leaves them readable") {
    auto producer = ipc::test::fork_child([&](ipc::test::reporter&) { return produce(sem_name, shm_name, 0, slots); });
    REQUIRE(producer.wait(10s).exit_code == 0);
    CHECK(s.value(sem_full) == slots);  // with SEM_UNDO on the posts the kernel would have made this 0
    CHECK(consume(s, buf, 0, slots, 2s) == slots);
  }
  SECTION("a producer and a consumer process pass 500 records through 4 slots") {
    constexpr int records = 500;
    auto producer = ipc::test::fork_child([&](ipc::test::reporter&) { return produce(sem_name, shm_name, 0, records); });
    auto consumer = ipc::test::fork_child([&](ipc::test::reporter& r) {
      semaphore_set mine(sem_name, open_mode::open_only, {slots, 0});
      ipc::shared_array<int> view(shm_name, slots, open_mode::open_only, 0, {.with_lock = false});
      r.say("got ", consume(mine, view, 0, records, 10s));
      return 0;
    });
    CHECK(producer.wait(30s).exit_code == 0);
    auto res = consumer.wait(30s);
    CHECK(res.exit_code == 0);
    CHECK(res.report == "got 500\n");
    CHECK(s.values() == std::vector<unsigned short>{slots, 0});
  }
}

TEST_CASE("semaphore_set: undo::yes on a producer's posts takes them back when it exits", "[semaphore]") {
  // Why undo is not the default: the kernel reverses every undoable operation of an exiting process.
  auto name = ipc::test::unique_name("undo-post");
  auto cleanup = sem_cleanup(name);
  semaphore_set s(name, open_mode::create_only, {0});
  auto kid = ipc::test::fork_child([&](ipc::test::reporter&) {
    semaphore_set mine(name, open_mode::open_only, {0});
    mine.post(0, 3, semaphore_set::undo::yes);
    mine.post(0, 2);
    return 0;
  });
  REQUIRE(kid.wait(10s).exit_code == 0);
  CHECK(s.value(0) == 2);
}
