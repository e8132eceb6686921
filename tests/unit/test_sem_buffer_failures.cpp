// Every failure path of the sem channel gives the index mutex (and `busy`) back: a count driven out of
// range makes a commit semop fail (ERANGE), the set removed while a process sleeps in it (EIDRM) or
// while it holds the mutex (EINVAL on its next semop), a mutex count that is corrupt, a mutex nobody
// releases. After each the channel either works again once the count is repaired, or reports the damage
// - it never leaves a mutex nobody will release (every later send timing out, a new sender blocking for
// ever). The damage is done with the real calls a hostile peer or an operator would use: SETVAL, IPC_RMID.
#include <ipc/channel.hpp>
#include <ipc/error.hpp>
#include <ipc/sem_buffer.hpp>
#include <ipc/semaphore.hpp>

#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/sem.h>
#include <sys/shm.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using ipc::open_mode;
using ipc::role;
using ipc::sem_buffer;

namespace {

ipc::test::on_exit removing(const std::string& name) {
  return ipc::test::on_exit([=] { sem_buffer::remove(name); });
}

// A second handle on the channel's semaphore set, to damage its counts as a hostile peer would.
ipc::semaphore_set counts_of(const sem_buffer& b) {
  return ipc::semaphore_set(b.semaphores().key(), "damage", open_mode::open_only, {0, 0, 0, 0, 0});
}

std::string what_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::system_error& e) {
    return e.code() == ipc::errc::corrupt  ? std::string("corrupt: ") + e.what()
           : e.code() == ipc::errc::closed ? std::string("closed: ") + e.what()
                                           : std::string("other: ") + e.what();
  }
  return "no error";
}

int segment_id(const sem_buffer& b) { return static_cast<const ipc::sysv_segment&>(b.segment().raw()).id(); }

// ipcs' "dest": removed, still attached by someone; or gone altogether.
bool segment_removed(int shmid) {
  shmid_ds ds{};
  if (::shmctl(shmid, IPC_STAT, &ds) == -1) return errno == EINVAL || errno == EIDRM;
  return (ds.shm_perm.mode & SHM_DEST) != 0;
}

char process_state(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(f, line);
  const auto close = line.rfind(')');
  return close == std::string::npos || close + 2 >= line.size() ? '?' : line[close + 2];
}

}  // namespace

TEST_CASE("sem_buffer: a receive whose commit fails with ERANGE is errc::corrupt and gives every lock back",
          "[sem_buffer]") {
  const auto name = ipc::test::unique_name("sbf-erange-rx");
  auto c = removing(name);
  sem_buffer tx(name, role::sender, open_mode::create_only, {.slots = 4, .slot_size = 64});
  sem_buffer rx(name, role::receiver, open_mode::open_only);
  tx.send(ipc::as_bytes("first"));
  tx.send(ipc::as_bytes("kept"));
  std::vector<std::byte> buf;
  REQUIRE(rx.receive_for(buf, 1s));  // the handle's periodic full check is behind it now
  auto counts = counts_of(tx);
  // `empty` at its maximum: the receive's commit (empty + 1) is out of range.
  counts.set_value(sem_buffer::sem_empty, ipc::semaphore_set::max_value);
  const auto error = what_of([&] { (void)rx.receive_for(buf, 1s); });
  CHECK_THAT(error, Catch::StartsWith("corrupt: ") && Catch::Contains("commit of receive") &&
                        Catch::Contains("Numerical result out of range") && Catch::Contains("empty=32767"));
  CHECK(counts.value(sem_buffer::sem_mutex) == 1);
  CHECK(counts.value(sem_buffer::sem_busy) == 0);
  CHECK(counts.value(sem_buffer::sem_full) == 1);  // the message the failed receive held is back
  // Repaired, the message is still there, and both sides work at once.
  counts.set_value(sem_buffer::sem_empty, 3);
  REQUIRE(rx.receive_for(buf, 1s));
  CHECK(std::string(ipc::as_text(buf)) == "kept");
  CHECK(tx.send_for(ipc::as_bytes("next"), 1s));
  REQUIRE(rx.receive_for(buf, 1s));
  CHECK(std::string(ipc::as_text(buf)) == "next");
}

TEST_CASE("sem_buffer: a send whose commit fails with ERANGE gives the slot, the mutex and busy back",
          "[sem_buffer]") {
  const auto name = ipc::test::unique_name("sbf-erange-tx");
  auto c = removing(name);
  sem_buffer tx(name, role::sender, open_mode::create_only, {.slots = 4, .slot_size = 64});
  sem_buffer rx(name, role::receiver, open_mode::open_only);
  tx.send(ipc::as_bytes("a"));  // the handle's periodic full check is behind it now
  auto counts = counts_of(tx);
  counts.set_value(sem_buffer::sem_full, ipc::semaphore_set::max_value);
  const auto error = what_of([&] { (void)tx.send_for(ipc::as_bytes("b"), 1s); });
  CHECK_THAT(error, Catch::StartsWith("corrupt: ") && Catch::Contains("commit of send") &&
                        Catch::Contains("Numerical result out of range") && Catch::Contains("full=32767"));
  CHECK(counts.value(sem_buffer::sem_mutex) == 1);
  CHECK(counts.value(sem_buffer::sem_busy) == 0);
  CHECK(counts.value(sem_buffer::sem_empty) == 3);  // the slot it took is free again
  counts.set_value(sem_buffer::sem_full, 1);
  std::vector<std::byte> buf;
  REQUIRE(rx.receive_for(buf, 1s));
  CHECK(std::string(ipc::as_text(buf)) == "a");  // the failed send left no message behind
  CHECK(tx.send_for(ipc::as_bytes("after"), 1s));
  REQUIRE(rx.receive_for(buf, 1s));
  CHECK(std::string(ipc::as_text(buf)) == "after");
  CHECK_FALSE(rx.try_receive(buf));
}

TEST_CASE("sem_buffer: a mutex count above 1 is errc::corrupt for send and receive, and is left as found",
          "[sem_buffer]") {
  const auto name = ipc::test::unique_name("sbf-mutex");
  auto c = removing(name);
  {
    sem_buffer tx(name, role::sender, open_mode::create_only, {.slots = 4, .slot_size = 64});
    tx.send(ipc::as_bytes("a"));
  }
  // Fresh handles: their first operation is a full check.
  sem_buffer tx(name, role::sender, open_mode::open_only);
  sem_buffer rx(name, role::receiver, open_mode::open_only);
  auto counts = counts_of(tx);
  counts.set_value(sem_buffer::sem_mutex, 2);  // two holders at once would be possible
  std::vector<std::byte> buf;
  CHECK_THAT(what_of([&] { (void)tx.send_for(ipc::as_bytes("b"), 1s); }),
             Catch::StartsWith("corrupt: ") && Catch::Contains("mutex=1"));
  CHECK_THAT(what_of([&] { (void)rx.receive_for(buf, 1s); }), Catch::StartsWith("corrupt: ") && Catch::Contains("mutex=1"));
  CHECK(counts.value(sem_buffer::sem_mutex) == 2);
  CHECK(counts.value(sem_buffer::sem_busy) == 0);
  CHECK(counts.value(sem_buffer::sem_full) == 1);
  CHECK(counts.value(sem_buffer::sem_empty) == 3);
}

TEST_CASE("sem_buffer: a mutex nobody releases makes a new sender and close() fail within 5 s, not hang",
          "[sem_buffer]") {
  const auto name = ipc::test::unique_name("sbf-held");
  auto c = removing(name);
  sem_buffer tx(name, role::sender, open_mode::create_only, {.slots = 4, .slot_size = 64});
  auto counts = counts_of(tx);
  counts.set_value(sem_buffer::sem_mutex, 0);  // held, by nobody
  auto start = std::chrono::steady_clock::now();
  CHECK_THAT(what_of([&] { sem_buffer again(name, role::sender); }),
             Catch::StartsWith("corrupt: ") && Catch::Contains("clear_closed: index mutex not released within 5 s") &&
                 Catch::Contains("mutex=0"));
  CHECK(std::chrono::steady_clock::now() - start < 8s);
  start = std::chrono::steady_clock::now();
  CHECK_THAT(what_of([&] { tx.close(); }), Catch::StartsWith("corrupt: ") && Catch::Contains("close: index mutex"));
  CHECK(std::chrono::steady_clock::now() - start < 8s);
  // The channel itself is intact: repaired, a new sender opens at once.
  counts.set_value(sem_buffer::sem_mutex, 1);
  start = std::chrono::steady_clock::now();
  sem_buffer again(name, role::sender);
  CHECK(std::chrono::steady_clock::now() - start < 1s);
}

TEST_CASE("sem_buffer: a set removed while a receiver sleeps in it (EIDRM) is errc::closed, and takes its segment along",
          "[sem_buffer]") {
  const auto name = ipc::test::unique_name("sbf-eidrm");
  auto c = removing(name);
  sem_buffer rx(name, role::receiver, open_mode::create_only, {.slots = 2, .slot_size = 64});
  const int semid = rx.semaphores().id();
  const int shmid = segment_id(rx);
  std::atomic<bool> done{false};
  std::string outcome;
  std::thread waiter([&] {
    std::vector<std::byte> b;
    outcome = what_of([&] { (void)rx.receive_for(b, 10s); });
    done = true;
  });
  const auto d = ipc::deadline::in(5s);
  while (rx.semaphores().waiters(sem_buffer::sem_full) == 0 && !d.expired()) std::this_thread::sleep_for(1ms);
  const auto removed_at = std::chrono::steady_clock::now();
  REQUIRE(::semctl(semid, 0, IPC_RMID) == 0);  // ipcrm -s
  waiter.join();
  CHECK(std::chrono::steady_clock::now() - removed_at < 1s);
  CHECK_THAT(outcome, Catch::StartsWith("closed: ") && Catch::Contains("semaphore set was removed"));
  CHECK(segment_removed(shmid));  // the other half went with it
  // A new pair makes one new unit within 1 s and works.
  const auto start = std::chrono::steady_clock::now();
  sem_buffer tx2(name, role::sender);
  sem_buffer rx2(name, role::receiver);
  CHECK(std::chrono::steady_clock::now() - start < 1s);
  CHECK(segment_id(tx2) != shmid);
  CHECK(segment_id(tx2) == segment_id(rx2));
  CHECK(tx2.semaphores().id() == rx2.semaphores().id());
  CHECK(tx2.send_for(ipc::as_bytes("again"), 1s));
  std::vector<std::byte> buf;
  REQUIRE(rx2.receive_for(buf, 1s));
  CHECK(std::string(ipc::as_text(buf)) == "again");
}

namespace {

// A child streams the largest messages through a one-slot buffer (a 16 MiB copy inside every critical
// section); the parent stops it (SIGSTOP) while it holds the mutex (`busy` raised and still raised once
// it is stopped), applies `damage`, and lets it go on. The child reports the first error of its
// operations and, right after it, the mutex and busy counts (before its exit could undo anything).
struct stopped_holder_outcome {
  bool stopped_inside = false;
  std::string report;
  int shmid = -1;  // the unit's segment
};

stopped_holder_outcome damage_inside_critical_section(const std::string& name,
                                                      const std::function<void(int semid)>& damage) {
  sem_buffer owner(name, role::receiver, open_mode::create_only, {.slots = 1, .slot_size = sem_buffer::max_slot_size});
  const int semid = owner.semaphores().id();
  stopped_holder_outcome out;
  out.shmid = segment_id(owner);
  auto kid = ipc::test::fork_child([&](ipc::test::reporter& r) {
    sem_buffer tx(name, role::sender, open_mode::open_only);
    sem_buffer rx(name, role::receiver, open_mode::open_only);
    std::vector<std::byte> big(tx.max_message_size(), std::byte{7});
    std::vector<std::byte> buf;
    r.say("streaming");
    const auto until = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < until) {
      const auto outcome = what_of([&] {
        if (!tx.send_for(big, 2s)) throw std::runtime_error("send timed out");
        if (!rx.receive_for(buf, 2s)) throw std::runtime_error("receive timed out");
      });
      if (outcome == "no error") continue;
      std::string counts = "set gone";
      try {
        ipc::semaphore_set s(tx.semaphores().key(), "check", open_mode::open_only, {0, 0, 0, 0, 0});
        if (s.id() == semid) {
          counts = "mutex=" + std::to_string(s.value(sem_buffer::sem_mutex)) +
                   " busy=" + std::to_string(s.value(sem_buffer::sem_busy));
        }
      } catch (const std::system_error&) {  // NOLINT(bugprone-empty-catch): "set gone" says it
      }
      r.say(outcome, " | ", counts);
      return 0;
    }
    r.say("no failure within 20 s");
    return 1;
  });
  if (!kid.wait_for_line("streaming", 10s)) return out;
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < until) {
    if (::semctl(semid, sem_buffer::sem_busy, GETVAL) != 1) continue;
    kid.kill(SIGSTOP);
    const auto stop_until = std::chrono::steady_clock::now() + 2s;
    while (process_state(kid.pid()) != 'T' && std::chrono::steady_clock::now() < stop_until) std::this_thread::sleep_for(100us);
    if (::semctl(semid, sem_buffer::sem_busy, GETVAL) == 1 && ::semctl(semid, sem_buffer::sem_mutex, GETVAL) == 0) {
      out.stopped_inside = true;
      damage(semid);
      kid.kill(SIGCONT);
      break;
    }
    kid.kill(SIGCONT);  // stopped just after its commit: try again
  }
  const auto res = kid.wait(30s);
  out.report = res.report;
  return out;
}

}  // namespace

TEST_CASE("sem_buffer: a holder whose counts are driven out of range mid-operation gives every lock back",
          "[sem_buffer]") {
  const auto name = ipc::test::unique_name("sbf-mid-erange");
  auto c = removing(name);
  const auto out = damage_inside_critical_section(
      name, [](int semid) { REQUIRE(::semctl(semid, sem_buffer::sem_full, SETVAL, int{ipc::semaphore_set::max_value}) == 0); });
  INFO("child: " << out.report);
  REQUIRE(out.stopped_inside);
  // The commit (or the periodic check, on the operations that make it) finds the count out of range.
  CHECK_THAT(out.report, Catch::Contains("corrupt: ") && Catch::Contains("| mutex=1 busy=0"));
  CHECK_THAT(out.report, Catch::Contains("Numerical result out of range") || Catch::Contains("semaphores disagree"));
}

TEST_CASE("sem_buffer: a set removed while a sender holds the mutex (EINVAL) is errc::closed; a new pair starts within 1 s",
          "[sem_buffer]") {
  const auto name = ipc::test::unique_name("sbf-mid-rmid");
  auto c = removing(name);
  const auto out = damage_inside_critical_section(
      name, [](int semid) { REQUIRE(::semctl(semid, 0, IPC_RMID) == 0); });  // ipcrm -s

  INFO("child: " << out.report);
  REQUIRE(out.stopped_inside);
  CHECK_THAT(out.report, Catch::Contains("closed: ") && Catch::Contains("semaphore set was removed") &&
                             Catch::Contains("| set gone"));
  CHECK(segment_removed(out.shmid));  // the half left over went with it
  const auto start = std::chrono::steady_clock::now();
  sem_buffer tx(name, role::sender);
  sem_buffer rx(name, role::receiver);
  CHECK(std::chrono::steady_clock::now() - start < 1s);
  CHECK(tx.semaphores().value(sem_buffer::sem_mutex) == 1);
  CHECK(tx.send_for(ipc::as_bytes("after"), 1s));
  std::vector<std::byte> buf;
  REQUIRE(rx.receive_for(buf, 1s));
  CHECK(std::string(ipc::as_text(buf)) == "after");
}
