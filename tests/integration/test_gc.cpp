// ipcctl gc never destroys wanted data: real objects left by forked processes that exited, a live
// receiver blocked on a queue, and the real ipcctl program judging them (docs/ipcctl.md, gc's rules).
#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <ipc/channel.hpp>
#include <ipc/msg_queue.hpp>
#include <ipc/shared_value.hpp>
#include <ipc/shm_ring.hpp>
#include <ipc/uri.hpp>

#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

const std::string ipcctl_path = ipc::test::build_path("daemons/ipcctl/ipcctl");

ipc::test::child_result ipcctl(std::vector<std::string> args) {
  args.insert(args.begin(), ipcctl_path);
  return ipc::test::spawn(args).wait(60s);
}

// `ipcctl list --json` read back: the objects named `name`.
std::vector<nlohmann::json> listed(const std::string& name) {
  auto r = ipc::test::spawn({ipcctl_path, "list", "--json"}).wait(60s);
  INFO(r.report);
  REQUIRE(r.exit_code == 0);
  std::vector<nlohmann::json> out;
  const auto doc = nlohmann::json::parse(r.report);
  for (const auto& o : doc.at("objects")) {
    if (o.at("name") == name) out.push_back(o);
  }
  return out;
}

// Runs body in a child that exits normally; the objects it made outlive it.
void in_exited_child(const std::function<void()>& body) {
  auto c = ipc::test::fork_child([&](ipc::test::reporter&) {
    body();
    return 0;
  });
  auto r = c.wait(20s);
  INFO(r.report);
  REQUIRE(r.exit_code == 0);
}

bool posix_segment_exists(const std::string& name) { return fs::exists("/dev/shm/" + ipc::shm_ring::shm_name(name)); }

}  // namespace

TEST_CASE("gc: a queue whose sender exited keeps its messages; only --force removes them", "[gc]") {
  const auto name = ipc::test::unique_name("gc-msgq");
  in_exited_child([&] {
    auto tx = ipc::open_channel("msgq:" + name, ipc::role::sender);
    for (int i = 0; i < 5; ++i) tx->send(ipc::as_bytes("record " + std::to_string(i)));
  });

  auto rows = listed(name);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].at("contents").at("messages") == 5);
  CHECK(rows[0].at("contents").at("bytes") > 0);
  CHECK(rows[0].at("gc") == "data");

  auto dry = ipcctl({"gc", "--dry-run", "--prefix", name});
  INFO(dry.report);
  CHECK(dry.exit_code == 0);
  CHECK(dry.report.find("would keep msgq msgq:" + name) != std::string::npos);
  auto gc = ipcctl({"gc", "--prefix", name});
  INFO(gc.report);
  CHECK(gc.exit_code == 0);
  CHECK(gc.report.find("kept msgq msgq:" + name) != std::string::npos);
  CHECK(gc.report.find("--force") != std::string::npos);
  // The next consumer finds every record; it exits, its sender sends one more and exits too.
  auto consumer = ipc::test::fork_child([&](ipc::test::reporter& r) {
    auto rx = ipc::open_channel("msgq:" + name, ipc::role::receiver);
    std::vector<std::byte> buf;
    int got = 0;
    while (rx->receive_for(buf, 0ms)) ++got;
    r.say("got ", got);
    return 0;
  });
  auto consumed = consumer.wait(20s);
  INFO(consumed.report);
  CHECK(consumed.report.find("got 5") != std::string::npos);
  in_exited_child([&] { ipc::open_channel("msgq:" + name, ipc::role::sender)->send(ipc::as_bytes("one more")); });
  auto forced = ipcctl({"gc", "--force", "--prefix", name});
  INFO(forced.report);
  CHECK(forced.exit_code == 0);
  CHECK(forced.report.find("removed msgq msgq:" + name) != std::string::npos);
  CHECK(listed(name).empty());
}

TEST_CASE("gc: a non-empty shm ring whose sender exited is kept and its records listed", "[gc]") {
  const auto name = ipc::test::unique_name("gc-ring");
  in_exited_child([&] {
    ipc::shm_ring tx(name, ipc::role::sender);
    for (int i = 0; i < 3; ++i) tx.send(ipc::as_bytes("ring record"));
  });

  auto rows = listed(name);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].at("layout") == "shm_ring");
  CHECK(rows[0].at("contents").at("messages") == 3);
  CHECK(rows[0].at("gc") == "data");
  auto gc = ipcctl({"gc", "--prefix", name});
  INFO(gc.report);
  CHECK(gc.report.find("kept posix-shm") != std::string::npos);
  CHECK(posix_segment_exists(name));

  auto forced = ipcctl({"gc", "--force", "--prefix", name});
  INFO(forced.report);
  CHECK(forced.report.find("removed posix-shm") != std::string::npos);
  CHECK_FALSE(posix_segment_exists(name));
}

TEST_CASE("gc: a non-empty sem bounded buffer whose sender exited is kept, segment and semaphores alike", "[gc]") {
  const auto name = ipc::test::unique_name("gc-sem");
  in_exited_child([&] {
    auto tx = ipc::open_channel("sem:" + name, ipc::role::sender);
    tx->send(ipc::as_bytes("first"));
    tx->send(ipc::as_bytes("second"));
  });

  auto rows = listed(name);
  REQUIRE(rows.size() == 2);  // the semaphore set and the segment of NAME.sembuf
  for (const auto& r : rows) {
    INFO(r.dump());
    CHECK(r.at("contents").at("messages") == 2);
    CHECK(r.at("gc") == "data");
  }
  auto gc = ipcctl({"gc", "--prefix", name});
  INFO(gc.report);
  CHECK(gc.report.find("removed") == std::string::npos);
  CHECK(listed(name).size() == 2);
  auto consumer = ipc::test::fork_child([&](ipc::test::reporter& r) {
    auto rx = ipc::open_channel("sem:" + name, ipc::role::receiver);
    std::vector<std::byte> buf;
    if (rx->receive_for(buf, 5s)) r.say("got ", std::string(reinterpret_cast<const char*>(buf.data()), buf.size()));
    return 0;
  });
  auto consumed = consumer.wait(20s);
  INFO(consumed.report);
  CHECK(consumed.report.find("got first") != std::string::npos);
  auto forced = ipcctl({"gc", "--force", "--prefix", name});
  INFO(forced.report);
  CHECK(forced.report.find("removed semset") != std::string::npos);
  CHECK(listed(name).empty());
}

TEST_CASE("gc: a shared value whose writer exited is kept", "[gc]") {
  const auto name = ipc::test::unique_name("gc-value");
  in_exited_child([&] {
    ipc::shared_value<std::int64_t> v(name, ipc::open_mode::create_only);
    v.store(42);
  });

  auto rows = listed(name);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].at("layout") == "shared_value");
  CHECK(rows[0].at("gc") == "data");
  CHECK(rows[0].at("reason") == "holds a value");
  ipcctl({"gc", "--prefix", name});
  {
    ipc::shared_value<std::int64_t> v(name, ipc::open_mode::open_only);
    CHECK(v.load() == 42);
  }
  auto forced = ipcctl({"gc", "--force", "--prefix", name});
  INFO(forced.report);
  CHECK_FALSE(posix_segment_exists(name));
}

TEST_CASE("gc: an empty queue a live receiver is blocked on is kept; once the receiver is gone it is removed",
          "[gc]") {
  const auto name = ipc::test::unique_name("gc-wait");
  // The queue's recorded users (last msgsnd, last msgrcv) exit: only the blocked receiver uses it.
  in_exited_child([&] {
    auto tx = ipc::open_channel("msgq:" + name, ipc::role::sender);
    tx->send(ipc::as_bytes("drained"));
    auto rx = ipc::open_channel("msgq:" + name, ipc::role::receiver);
    std::vector<std::byte> buf;
    if (!rx->receive_for(buf, 5s)) _exit(1);
  });
  auto waiter = ipc::test::fork_child([&](ipc::test::reporter& r) {
    auto rx = ipc::open_channel("msgq:" + name, ipc::role::receiver);
    r.say("waiting");
    std::vector<std::byte> buf;
    rx->receive(buf);  // blocks in msgrcv until killed
    return 0;
  });
  REQUIRE(waiter.wait_for_line("waiting", 10s));
  // The receiver is in msgrcv once its /proc/PID/syscall says so (it may be between the line and the call).
  const std::string blocked = "pid " + std::to_string(waiter.pid()) + " (blocked in msgrcv) is alive";
  std::string reason;
  for (auto until = std::chrono::steady_clock::now() + 20s; std::chrono::steady_clock::now() < until;) {
    auto rows = listed(name);
    REQUIRE(rows.size() == 1);
    reason = rows[0].at("reason");
    if (reason == blocked) break;
    std::this_thread::sleep_for(50ms);
  }
  CHECK(reason == blocked);
  auto gc = ipcctl({"gc", "--force", "--prefix", name});
  INFO(gc.report);
  CHECK(gc.report.find("removed") == std::string::npos);
  CHECK(listed(name).size() == 1);

  waiter.kill(SIGKILL);
  CHECK(waiter.wait(10s).signal == SIGKILL);
  auto rows = listed(name);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].at("gc") == "remove");
  auto collected = ipcctl({"gc", "--prefix", name});
  INFO(collected.report);
  CHECK(collected.report.find("removed msgq msgq:" + name) != std::string::npos);
  CHECK(listed(name).empty());
  CHECK_FALSE(fs::exists(ipc::runtime_dir() / (name + ".msgq")));
}

TEST_CASE("gc: a ring unlinked while mapped is listed as dest and left alone", "[gc]") {
  const auto name = ipc::test::unique_name("gc-dest");
  auto holder = ipc::test::fork_child([&](ipc::test::reporter& r) {
    ipc::shm_ring rx(name, ipc::role::receiver);
    rx.remove();
    r.say("removed");
    for (;;) ::pause();
    return 0;
  });
  REQUIRE(holder.wait_for_line("removed", 10s));
  auto rows = listed(name);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].at("status") == "dest");
  CHECK(rows[0].at("attached") == 1);
  CHECK(rows[0].at("gc") == "keep");
  auto l = ipcctl({"list", "--raw", "--noheadings", "--output", "name,status"});
  INFO(l.report);
  CHECK(l.report.find(name + " dest\n") != std::string::npos);
  holder.kill(SIGKILL);
  holder.wait(10s);
  CHECK(listed(name).empty());
}

TEST_CASE("gc: a ring unlinked under a live pair is listed dest with the records it holds, beside the recreated one",
          "[gc]") {
  const auto name = ipc::test::unique_name("gc-dest-rec");
  auto holder = ipc::test::fork_child([&](ipc::test::reporter& r) {
    ipc::shm_ring rx(name, ipc::role::receiver);
    ipc::shm_ring tx(name, ipc::role::sender);
    for (int i = 0; i < 5; ++i) tx.send(ipc::as_bytes("stuck"));
    if (!ipc::shm_ring::remove(name)) return 1;  // not through a handle: as rm or ipcctl rm
    r.say("removed");
    for (;;) ::pause();
    return 0;
  });
  REQUIRE(holder.wait_for_line("removed", 10s));
  {
    ipc::shm_ring fresh(name, ipc::role::receiver);  // the name recreated, as the pair's reopen() does
    auto l = ipcctl({"list", "--raw", "--noheadings", "--output", "name,status,layout,contents"});
    INFO(l.report);
    CHECK(l.report.find(name + " dest shm_ring 5\\x20rec,\\x2080\\x20B\n") != std::string::npos);
    CHECK(l.report.find(name + " - shm_ring empty\n") != std::string::npos);
    fresh.remove();
  }
  holder.kill(SIGKILL);
  holder.wait(10s);
  CHECK(listed(name).empty());
}

TEST_CASE("gc: a FIFO unlinked while open is listed dest and kept", "[gc]") {
  const auto name = ipc::test::unique_name("gc-dest-fifo") + ".fifo";
  auto holder = ipc::test::fork_child([&](ipc::test::reporter& r) {
    auto rx = ipc::open_channel("fifo:" + name, ipc::role::receiver);
    rx->remove();
    r.say("removed");
    for (;;) ::pause();
    return 0;
  });
  REQUIRE(holder.wait_for_line("removed", 10s));
  auto rows = listed(name);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].at("kind") == "fifo");
  CHECK(rows[0].at("status") == "dest");
  CHECK(rows[0].at("gc") == "keep");
  CHECK(rows[0].at("reason") == "removed but still open in 1 process");
  holder.kill(SIGKILL);
  holder.wait(10s);
  CHECK(listed(name).empty());
}

TEST_CASE("gc: an empty queue a running daemon's status file names is kept; a dead daemon's is not", "[gc]") {
  const auto name = ipc::test::unique_name("gc-claim");
  in_exited_child([&] {
    auto tx = ipc::open_channel("msgq:" + name, ipc::role::sender);
    tx->send(ipc::as_bytes("drained"));
    auto rx = ipc::open_channel("msgq:" + name, ipc::role::receiver);
    std::vector<std::byte> buf;
    if (!rx->receive_for(buf, 5s)) _exit(1);
  });
  // A status file as a running consumer writes it: this test process stands in for the daemon.
  const auto dir = ipc::runtime_dir() / "status";
  fs::create_directories(dir);
  const auto file = dir / ("msgq-" + name + ".consumer.status");
  auto write_status = [&](pid_t pid) {
    std::ofstream(file) << "stats role=consumer channel=msgq:" << name << " pid=" << pid
                        << " records=1 bytes=7 rate=0 mbps=0 lost=0 dup=0 reorder=0 corrupt=0 p50_us=0 p99_us=0"
                           " restarts=0 final=0\n";
  };
  write_status(::getpid());
  auto rows = listed(name);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].at("gc") == "keep");
  CHECK(rows[0].at("reason") == "daemon pid " + std::to_string(::getpid()) + " uses msgq:" + name);
  auto kept = ipcctl({"gc", "--prefix", name});
  INFO(kept.report);
  CHECK(listed(name).size() == 1);

  // The daemon is gone (a reaped child's pid): its file no longer protects the queue.
  auto gone = ipc::test::fork_child([](ipc::test::reporter&) { return 0; });
  const pid_t dead = gone.pid();
  REQUIRE(gone.wait(10s).exit_code == 0);
  write_status(dead);
  auto collected = ipcctl({"gc", "--prefix", name});
  INFO(collected.report);
  CHECK(collected.report.find("removed msgq msgq:" + name) != std::string::npos);
  CHECK_FALSE(fs::exists(file));
  CHECK(listed(name).empty());
}
