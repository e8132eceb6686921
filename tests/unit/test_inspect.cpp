// ipc/inspect.hpp: the one liveness test (pid + start time) and published headers, on real processes
// and real segments.
#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <ipc/fifo.hpp>
#include <ipc/inspect.hpp>
#include <ipc/shared_memory.hpp>
#include <ipc/shm_ring.hpp>
#include <ipc/unique_fd.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

TEST_CASE("inspect: this process is alive under its own start time and not under another", "[inspect]") {
  const auto me = ipc::process_identity(::getpid());
  CHECK(me.pid == ::getpid());
  CHECK(me.start_time != 0);
  CHECK(ipc::process_alive(me));
  CHECK(ipc::process_alive(me.pid, 0));                 // start time unknown: the pid alone
  CHECK_FALSE(ipc::process_alive(me.pid, me.start_time + 1));  // a process that had this pid before
  CHECK_FALSE(ipc::process_alive(0, 0));
  CHECK_FALSE(ipc::process_alive(-1, 0));
}

TEST_CASE("inspect: a child that exited and was reaped is not alive; a zombie is not alive either", "[inspect]") {
  auto reaped = ipc::test::fork_child([](ipc::test::reporter&) { return 0; });
  const auto who = ipc::process_identity(reaped.pid());
  REQUIRE(reaped.wait(10s).exit_code == 0);
  CHECK_FALSE(ipc::process_alive(who));
  CHECK(ipc::process_identity(who.pid).pid == 0);

  auto zombie = ipc::test::fork_child([](ipc::test::reporter& r) {
    r.say("bye");
    return 0;
  });
  REQUIRE(zombie.wait_for_line("bye", 10s));
  // Not reaped yet: once it has exited it is a zombie, which is not alive.
  bool gone = false;
  for (auto until = std::chrono::steady_clock::now() + 10s; !gone && std::chrono::steady_clock::now() < until;) {
    gone = !ipc::process_alive(zombie.pid(), 0);
    if (!gone) std::this_thread::sleep_for(10ms);
  }
  CHECK(gone);
  CHECK(zombie.wait(10s).exit_code == 0);
}

TEST_CASE("inspect: process_alive_at refuses a pid whose process started after the recorded time", "[inspect]") {
  const std::int64_t now = ::time(nullptr);
  CHECK(ipc::process_alive_at(::getpid(), now));
  CHECK(ipc::process_alive_at(::getpid(), 0));  // no time: the pid alone
  // This process did not exist a day ago: a record from then names an earlier process with our pid.
  CHECK_FALSE(ipc::process_alive_at(::getpid(), now - 86400));
}

TEST_CASE("inspect: a new segment's published header names its creator with its start time", "[inspect]") {
  const auto name = ipc::test::unique_name("inspect-hdr");
  {
    ipc::shm_ring ring(name, ipc::role::receiver);
    ipc::unique_fd fd{::open(("/dev/shm/" + ipc::shm_ring::shm_name(name)).c_str(), O_RDONLY | O_CLOEXEC)};
    REQUIRE(fd);
    struct stat st {};
    REQUIRE(::fstat(fd.get(), &st) == 0);
    auto h = ipc::read_layout_header(fd.get(), static_cast<std::uint64_t>(st.st_size));
    REQUIRE(h);
    CHECK(h->kind == "shm_ring");
    CHECK(h->creator.pid == ::getpid());
    CHECK(h->creator.start_time == ipc::process_identity(::getpid()).start_time);
    CHECK(h->creator_uid == ::geteuid());
    // A file shorter than a header, or a size it does not fit: nothing is read.
    CHECK_FALSE(ipc::read_layout_header(fd.get(), 8));
    CHECK_FALSE(ipc::read_layout_header(fd.get(), h->total_size - 1));
    ring.remove();
  }
  // A raw segment has no published header.
  ipc::posix_segment raw(name, ipc::open_mode::create_only, 4096);
  ipc::unique_fd fd{::open(raw.object().c_str(), O_RDONLY | O_CLOEXEC)};
  REQUIRE(fd);
  CHECK_FALSE(ipc::read_layout_header(fd.get(), 4096));
  raw.remove();
}

namespace {

std::vector<ipc::object_info> rows_named(const std::string& name) {
  std::vector<ipc::object_info> rows;
  for (auto& o : ipc::list_objects()) {
    if (o.name == name) rows.push_back(std::move(o));
  }
  return rows;
}

bool used_as(const ipc::object_info& o, pid_t pid, std::string_view how) {
  for (const auto& u : o.users) {
    if (u.pid == pid && u.how == how && u.alive) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("inspect: a ring unlinked while mapped is listed removed with what it holds, beside a new ring of its name",
          "[inspect]") {
  const auto name = ipc::test::unique_name("inspect-dest");
  auto holder = ipc::test::fork_child([&](ipc::test::reporter& r) {
    ipc::shm_ring rx(name, ipc::role::receiver);
    ipc::shm_ring tx(name, ipc::role::sender);
    for (const char* m : {"one", "two", "three"}) tx.send(ipc::as_bytes(m));
    if (::shm_unlink(ipc::shm_ring::shm_name(name).c_str()) != 0) return 1;  // as rm /dev/shm/libipc.NAME
    r.say("unlinked");
    for (;;) ::pause();
    return 0;
  });
  REQUIRE(holder.wait_for_line("unlinked", 10s));
  auto rows = rows_named(name);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].removed);
  CHECK(rows[0].kind == "posix-shm");
  CHECK(rows[0].layout == "shm_ring");
  CHECK(rows[0].contents.known);
  CHECK(rows[0].contents.messages == 3);
  CHECK(rows[0].attached == 1);
  CHECK(rows[0].uid == ::geteuid());
  CHECK(used_as(rows[0], holder.pid(), "maps it"));
  CHECK(used_as(rows[0], holder.pid(), "sender role"));

  // The name recreated: both are listed, the new one as a live object.
  ipc::shm_ring fresh(name, ipc::role::receiver);
  rows = rows_named(name);
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].removed != rows[1].removed);

  holder.kill(SIGKILL);
  holder.wait(10s);
  rows = rows_named(name);
  REQUIRE(rows.size() == 1);
  CHECK_FALSE(rows[0].removed);
  fresh.remove();
  CHECK(rows_named(name).empty());
}

TEST_CASE("inspect: a FIFO unlinked while open is listed removed, never opened by the listing", "[inspect]") {
  const auto name = ipc::test::unique_name("inspect-fifo") + ".fifo";
  auto holder = ipc::test::fork_child([&](ipc::test::reporter& r) {
    auto rx = ipc::fifo_channel::open(name, ipc::role::receiver);
    rx->remove();
    r.say("unlinked");
    for (;;) ::pause();
    return 0;
  });
  REQUIRE(holder.wait_for_line("unlinked", 10s));
  auto rows = rows_named(name);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].removed);
  CHECK(rows[0].kind == "fifo");
  CHECK(rows[0].attached == 1);
  CHECK(rows[0].mode == 0600);
  CHECK(used_as(rows[0], holder.pid(), "has it open"));
  holder.kill(SIGKILL);
  holder.wait(10s);
  CHECK(rows_named(name).empty());
}
