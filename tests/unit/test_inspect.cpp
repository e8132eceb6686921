// ipc/inspect.hpp: the one liveness test (pid + start time) and published headers, on real processes
// and real segments.
#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <ipc/inspect.hpp>
#include <ipc/shared_memory.hpp>
#include <ipc/shm_ring.hpp>
#include <ipc/unique_fd.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <thread>

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
