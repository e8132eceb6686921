// Every failure path of the sem channel gives the index mutex back: a count driven out of range makes
// the commit semop fail (ERANGE), the set removed mid-operation (EIDRM / EINVAL), a mutex count that
// is corrupt. After each, the channel either works again once the count is repaired, or reports the
// damage - it never leaves a mutex nobody will release (every later send timing out, a new sender
// blocking for ever).
#include <ipc/channel.hpp>
#include <ipc/error.hpp>
#include <ipc/sem_buffer.hpp>
#include <ipc/semaphore.hpp>

#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using ipc::open_mode;
using ipc::role;
using ipc::sem_buffer;

namespace {

struct cleanup {
  std::string name;
  ~cleanup() {
    try {
      sem_buffer::remove(name);
    } catch (...) {  // NOLINT(bugprone-empty-catch): best effort at test exit
    }
  }
};

// A second handle on the channel's semaphore set, to damage its counts as a hostile peer would.
ipc::semaphore_set counts_of(const sem_buffer& b) {
  return ipc::semaphore_set(b.semaphores().key(), "damage", open_mode::open_only, {0, 0, 0, 0, 0});
}

std::string what_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::system_error& e) {
    return e.code() == ipc::errc::corrupt ? std::string("corrupt: ") + e.what()
           : e.code() == ipc::errc::closed ? std::string("closed: ") + e.what()
                                           : std::string("other: ") + e.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("sem_buffer: a receive whose commit fails with ERANGE is errc::corrupt and gives the mutex back",
          "[sem_buffer]") {
  const auto name = ipc::test::unique_name("sbf-erange");
  cleanup c{name};
  sem_buffer tx(name, role::sender, open_mode::create_only, {.slots = 4, .slot_size = 64});
  sem_buffer rx(name, role::receiver, open_mode::open_only);
  tx.send(ipc::as_bytes("kept"));
  auto counts = counts_of(tx);
  // `empty` at its maximum: the receive's commit (empty + 1) is out of range.
  counts.set_value(sem_buffer::sem_empty, ipc::semaphore_set::max_value);
  std::vector<std::byte> buf;
  const auto error = what_of([&] { (void)rx.receive_for(buf, 1s); });
  CHECK_THAT(error, Catch::StartsWith("corrupt: ") && Catch::Contains("commit of receive") &&
                        Catch::Contains("Numerical result out of range"));
  CHECK(counts.value(sem_buffer::sem_mutex) == 1);
  // Repaired, the message the failed receive gave back is still there, and both sides work within 1 s.
  counts.set_value(sem_buffer::sem_empty, 3);
  auto got = rx.receive_for(buf, 1s);
  REQUIRE(got);
  CHECK(std::string(ipc::as_text(buf)) == "kept");
  CHECK(tx.send_for(ipc::as_bytes("next"), 1s));
  CHECK(rx.receive_for(buf, 1s));
}

TEST_CASE("sem_buffer: a mutex count above 1 is errc::corrupt for send and receive, and is left as found",
          "[sem_buffer]") {
  const auto name = ipc::test::unique_name("sbf-mutex");
  cleanup c{name};
  sem_buffer tx(name, role::sender, open_mode::create_only, {.slots = 4, .slot_size = 64});
  sem_buffer rx(name, role::receiver, open_mode::open_only);
  tx.send(ipc::as_bytes("a"));
  auto counts = counts_of(tx);
  counts.set_value(sem_buffer::sem_mutex, 2);  // two holders at once would be possible
  std::vector<std::byte> buf;
  CHECK_THAT(what_of([&] { (void)tx.send_for(ipc::as_bytes("b"), 1s); }), Catch::StartsWith("corrupt: ") && Catch::Contains("mutex=1"));
  CHECK_THAT(what_of([&] { (void)rx.receive_for(buf, 1s); }), Catch::StartsWith("corrupt: ") && Catch::Contains("mutex=1"));
  CHECK(counts.value(sem_buffer::sem_mutex) == 2);
  CHECK(counts.value(sem_buffer::sem_full) == 1);
  CHECK(counts.value(sem_buffer::sem_empty) == 3);
}

TEST_CASE("sem_buffer: a mutex nobody releases makes a new sender fail with errc::corrupt within 5 s, not hang",
          "[sem_buffer]") {
  const auto name = ipc::test::unique_name("sbf-held");
  cleanup c{name};
  sem_buffer tx(name, role::sender, open_mode::create_only, {.slots = 4, .slot_size = 64});
  auto counts = counts_of(tx);
  counts.set_value(sem_buffer::sem_mutex, 0);  // held, by nobody
  const auto start = std::chrono::steady_clock::now();
  CHECK_THAT(what_of([&] { sem_buffer again(name, role::sender); }),
             Catch::StartsWith("corrupt: ") && Catch::Contains("index mutex not released within 5 s"));
  CHECK(std::chrono::steady_clock::now() - start < 8s);
  CHECK_THAT(what_of([&] { tx.close(); }), Catch::StartsWith("corrupt: ") && Catch::Contains("close"));
}

namespace {

// Runs sends of the largest message (a 16 MiB copy inside the critical section) while `damage` acts
// as soon as the sender holds the mutex (waiting `delay` first, adapted until it lands between the
// state check and the commit). Returns every outcome seen; stops after the first commit failure.
std::vector<std::string> damage_inside_send(const std::string& name, const std::function<void(ipc::semaphore_set&)>& damage,
                                            const std::function<void(ipc::semaphore_set&)>& repair,
                                            const std::string& hit_marker) {
  std::vector<std::string> outcomes;
  auto delay = 200us;
  for (int attempt = 0; attempt < 40; ++attempt) {
    sem_buffer tx(name, role::sender, open_mode::open_or_create,
                  {.slots = 1, .slot_size = sem_buffer::max_slot_size});
    auto counts = counts_of(tx);
    std::atomic<bool> done{false};
    std::thread watcher([&] {
      const auto until = std::chrono::steady_clock::now() + 2s;
      while (!done && std::chrono::steady_clock::now() < until) {
        if (counts.value(sem_buffer::sem_mutex) == 0) {
          std::this_thread::sleep_for(delay);
          damage(counts);
          return;
        }
      }
    });
    std::vector<std::byte> big(tx.max_message_size(), std::byte{7});
    std::string outcome = what_of([&] { (void)tx.send_for(big, 2s); });
    done = true;
    watcher.join();
    outcomes.push_back(outcome);
    if (outcome.find(hit_marker) != std::string::npos) break;
    delay = outcome == "no error" ? delay / 2 : delay + delay / 2;  // too late: earlier; too early: later
    try {
      repair(counts);
    } catch (const std::system_error&) {  // the set is gone: the next attempt makes a new one
    }
    sem_buffer::remove(name);
  }
  return outcomes;
}

}  // namespace

TEST_CASE("sem_buffer: a send whose commit fails with ERANGE mid-operation gives the slot and the mutex back",
          "[sem_buffer]") {
  const auto name = ipc::test::unique_name("sbf-send");
  cleanup c{name};
  auto outcomes = damage_inside_send(
      name, [](ipc::semaphore_set& s) { s.set_value(sem_buffer::sem_full, ipc::semaphore_set::max_value); },
      [](ipc::semaphore_set& s) { s.set_value(sem_buffer::sem_full, 0); }, "commit of send");
  INFO("outcomes: " << Catch::Detail::stringify(outcomes));
  REQUIRE_THAT(outcomes.back(), Catch::StartsWith("corrupt: ") && Catch::Contains("commit of send") &&
                                    Catch::Contains("Numerical result out of range"));
  sem_buffer tx(name, role::sender, open_mode::open_only);
  auto counts = counts_of(tx);
  CHECK(counts.value(sem_buffer::sem_mutex) == 1);
  CHECK(counts.value(sem_buffer::sem_empty) == 1);  // the slot it took is free again
  counts.set_value(sem_buffer::sem_full, 0);
  sem_buffer rx(name, role::receiver, open_mode::open_only);
  CHECK(tx.send_for(ipc::as_bytes("after"), 1s));
  std::vector<std::byte> buf;
  REQUIRE(rx.receive_for(buf, 1s));
  CHECK(std::string(ipc::as_text(buf)) == "after");
}

TEST_CASE("sem_buffer: a set removed mid-send is errc::closed, and a new sender starts within 1 s", "[sem_buffer]") {
  const auto name = ipc::test::unique_name("sbf-rmid");
  cleanup c{name};
  auto outcomes = damage_inside_send(
      name, [](ipc::semaphore_set& s) { s.remove(); }, [](ipc::semaphore_set&) {}, "closed: ");
  INFO("outcomes: " << Catch::Detail::stringify(outcomes));
  REQUIRE_THAT(outcomes.back(), Catch::StartsWith("closed: ") && Catch::Contains("semaphore set was removed"));
  const auto start = std::chrono::steady_clock::now();
  sem_buffer tx(name, role::sender);
  CHECK(std::chrono::steady_clock::now() - start < 1s);
  CHECK(tx.semaphores().value(sem_buffer::sem_mutex) == 1);
}
