// The sem channel's segment and semaphore set are one unit (docs/crash-behaviour.md, "The sem channel
// is one unit"): whoever finds one half removed (ipcrm -m, ipcrm -s) removes the other, and the next
// open makes both anew - never a producer and a consumer on two segments sharing one set.
#include <ipc/channel.hpp>
#include <ipc/error.hpp>
#include <ipc/sem_buffer.hpp>

#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <sys/sem.h>
#include <sys/shm.h>

#include <chrono>
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

int segment_id(const sem_buffer& b) { return static_cast<const ipc::sysv_segment&>(b.segment().raw()).id(); }

bool segment_removed(int shmid) {
  shmid_ds ds{};
  if (::shmctl(shmid, IPC_STAT, &ds) == -1) return errno == EINVAL || errno == EIDRM;
  return (ds.shm_perm.mode & SHM_DEST) != 0;
}

bool set_exists(int semid) {
  semid_ds ds{};
  return ::semctl(semid, 0, IPC_STAT, &ds) == 0;
}

bool is_closed(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::system_error& e) {
    return e.code() == ipc::errc::closed;
  }
  return false;
}

// Sends (and drains) until the sender reports errc::closed; false if it never does within `limit`.
bool sender_notices(sem_buffer& tx, sem_buffer& rx, std::chrono::milliseconds limit) {
  std::vector<std::byte> buf;
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (is_closed([&] { (void)tx.send_for(ipc::as_bytes("x"), 10ms); })) return true;
    try {
      (void)rx.try_receive(buf);
    } catch (const std::system_error&) {  // NOLINT(bugprone-empty-catch): the receiver may notice first
    }
    std::this_thread::sleep_for(5ms);
  }
  return false;
}

void require_one_working_unit(sem_buffer& tx, sem_buffer& rx) {
  CHECK(segment_id(tx) == segment_id(rx));
  CHECK(tx.semaphores().id() == rx.semaphores().id());
  std::vector<std::byte> buf;
  for (int i = 0; i < 40; ++i) {  // more than the slots: the counts and the indices agree
    const std::string m = "record " + std::to_string(i);
    REQUIRE(tx.send_for(ipc::as_bytes(m), 1s));
    REQUIRE(rx.receive_for(buf, 1s));
    CHECK(std::string(ipc::as_text(buf)) == m);
  }
}

}  // namespace

TEST_CASE("sem_buffer: the segment removed under a running pair (ipcrm -m) takes its set along; both reopen onto one new unit",
          "[sem_buffer]") {
  const auto name = ipc::test::unique_name("sbu-rmm");
  auto c = removing(name);
  sem_buffer tx(name, role::sender, open_mode::create_only, {.slots = 4, .slot_size = 64});
  sem_buffer rx(name, role::receiver, open_mode::open_only);
  const int old_shm = segment_id(tx);
  const int old_sem = tx.semaphores().id();
  REQUIRE(::shmctl(old_shm, IPC_RMID, nullptr) == 0);  // ipcrm -m
  // The sender's periodic check (every 250 ms) finds it and removes the set: both sides get closed.
  CHECK(sender_notices(tx, rx, 3s));
  CHECK_FALSE(set_exists(old_sem));
  std::vector<std::byte> buf;
  CHECK(is_closed([&] { (void)rx.receive_for(buf, 1s); }));
  sem_buffer tx2(name, role::sender);
  sem_buffer rx2(name, role::receiver);
  CHECK(segment_id(tx2) != old_shm);
  CHECK(tx2.semaphores().id() != old_sem);
  require_one_working_unit(tx2, rx2);
}

TEST_CASE("sem_buffer: a peer opening after ipcrm -m never pairs a new segment with the old set", "[sem_buffer]") {
  const auto name = ipc::test::unique_name("sbu-late");
  auto c = removing(name);
  sem_buffer tx(name, role::sender, open_mode::create_only, {.slots = 4, .slot_size = 64});
  REQUIRE(tx.send_for(ipc::as_bytes("on the old unit"), 1s));
  const int old_shm = segment_id(tx);
  const int old_sem = tx.semaphores().id();
  REQUIRE(::shmctl(old_shm, IPC_RMID, nullptr) == 0);  // ipcrm -m
  // A consumer restarting now creates the segment anew, and with it a new set: the old set goes.
  sem_buffer rx(name, role::receiver);
  CHECK(segment_id(rx) != old_shm);
  CHECK(rx.semaphores().id() != old_sem);
  CHECK_FALSE(set_exists(old_sem));
  CHECK(rx.semaphores().value(sem_buffer::sem_full) == 0);  // nothing of the old unit's counts
  // The old sender learns it at its next operation and reopens onto the consumer's unit.
  CHECK(is_closed([&] { (void)tx.send_for(ipc::as_bytes("lost"), 1s); }));
  sem_buffer tx2(name, role::sender);
  require_one_working_unit(tx2, rx);
}

TEST_CASE("sem_buffer: the set removed under a running pair (ipcrm -s) takes its segment along; both reopen onto one new unit",
          "[sem_buffer]") {
  const auto name = ipc::test::unique_name("sbu-rms");
  auto c = removing(name);
  sem_buffer tx(name, role::sender, open_mode::create_only, {.slots = 4, .slot_size = 64});
  sem_buffer rx(name, role::receiver, open_mode::open_only);
  REQUIRE(tx.send_for(ipc::as_bytes("lost with the unit"), 1s));
  const int old_shm = segment_id(tx);
  const int old_sem = tx.semaphores().id();
  REQUIRE(::semctl(old_sem, 0, IPC_RMID) == 0);  // ipcrm -s
  CHECK(is_closed([&] { (void)tx.send_for(ipc::as_bytes("x"), 1s); }));
  CHECK(segment_removed(old_shm));
  std::vector<std::byte> buf;
  CHECK(is_closed([&] { (void)rx.receive_for(buf, 1s); }));
  sem_buffer rx2(name, role::receiver);
  sem_buffer tx2(name, role::sender);
  CHECK(segment_id(rx2) != old_shm);
  require_one_working_unit(tx2, rx2);
}

TEST_CASE("sem_buffer: opening a segment whose set was removed recreates the unit (open_only: ENOENT, the half removed)",
          "[sem_buffer]") {
  const auto name = ipc::test::unique_name("sbu-half");
  auto c = removing(name);
  int old_shm = -1;
  {
    sem_buffer tx(name, role::sender, open_mode::create_only, {.slots = 4, .slot_size = 64});
    old_shm = segment_id(tx);
    REQUIRE(::semctl(tx.semaphores().id(), 0, IPC_RMID) == 0);  // ipcrm -s, nobody running
  }
  CHECK_THROWS_MATCHES(sem_buffer(name, role::receiver, open_mode::open_only), std::system_error,
                       Catch::Predicate<std::system_error>([](const std::system_error& e) {
                         return e.code() == std::errc::no_such_file_or_directory &&
                                std::string(e.what()).find("set was removed") != std::string::npos;
                       }));
  CHECK(segment_removed(old_shm));
  sem_buffer tx(name, role::sender, open_mode::open_or_create, {.slots = 4, .slot_size = 64});
  sem_buffer rx(name, role::receiver, open_mode::open_only);
  require_one_working_unit(tx, rx);
}
