// The daemons on the shm work queue and broadcast modes (docs/daemons.md, "Work queues and
// broadcast"): several consumers share a work queue without false loss and together receive what the
// producers sent; a channel too small for any record is refused by both programs before anything is
// made; ipcctl lists what these objects hold and gc collects them only when empty and unowned.
#include "daemon_paths.hpp"
#include "test_support.hpp"

#include <ipc/record.hpp>
#include <ipc/shm_broadcast.hpp>
#include <ipc/shm_mpmc.hpp>

#include <catch2/catch.hpp>

#include <signal.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using ipc::test::consumer_bin;
using ipc::test::ipcctl_bin;
using ipc::test::last_stats;
using ipc::test::producer_bin;
using ipc::test::spawn;
using ipc::test::unique_name;

namespace {

// The records column of `ipcctl status`'s "total of N" row for the consumers of `uri` (0 without one).
std::uint64_t consumers_total(const std::string& uri, std::size_t n) {
  const auto r = spawn({ipcctl_bin, "status"}).wait(30s);
  std::istringstream in(r.report);
  const std::string total = "total of " + std::to_string(n);
  for (std::string line; std::getline(in, line);) {
    std::istringstream cells(line);
    std::string channel, role, pid, word1, word2, count;
    std::uint64_t records = 0;
    if (cells >> channel >> role >> pid >> word1 >> word2 >> count >> records && channel == uri && role == "consumer" &&
        word1 + " " + word2 + " " + count == total) {
      return records;
    }
  }
  return 0;
}

// The line `ipcctl list` prints for segment `name` (empty when it is not listed).
std::string listed(const std::string& name) {
  const auto r = spawn({ipcctl_bin, "list", "-n", "-o", "name,layout,contents,gc,reason"}).wait(30s);
  std::istringstream in(r.report);
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with(name + " ")) return line;
  }
  return {};
}

bool segment_exists(const std::string& name) { return std::filesystem::exists("/dev/shm/libipc." + name); }

// Whether anything named after `name` exists: a segment, or a file (key file, FIFO) in the runtime directory.
bool anything_named(const std::string& name) {
  if (segment_exists(name)) return true;
  std::error_code ec;
  for (const auto& e : std::filesystem::recursive_directory_iterator(ipc::runtime_dir(), ec)) {
    if (e.path().filename().string().find(name) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("daemons: consumers sharing a shm work queue report no loss, and together receive what the producers sent",
          "[daemons]") {
  const std::string name = unique_name("wq");
  const std::string uri = "shm:" + name + "?mode=mpmc";
  ipc::test::on_exit gone([&] { ipc::shm_mpmc::remove(name); });
  std::vector<ipc::test::child> consumers;
  for (int i = 0; i < 3; ++i) {
    consumers.push_back(spawn({consumer_bin, "--channel", uri, "--stats-interval", "0.1"}));
    REQUIRE(consumers.back().wait_for_line("final=0", 30s));
  }
  // Two producer sessions at once: each consumer sees a share of each, with gaps that are the others'.
  const std::uint64_t per_producer = 3000;
  auto p1 = spawn({producer_bin, "--channel", uri, "--count", std::to_string(per_producer), "--rate", "3000", "--stats-interval", "0"});
  auto p2 = spawn({producer_bin, "--channel", uri, "--count", std::to_string(per_producer), "--rate", "3000", "--stats-interval", "0"});
  const auto r1 = p1.wait(60s), r2 = p2.wait(60s);
  INFO(r1.report << r2.report);
  REQUIRE(r1.exit_code == 0);
  REQUIRE(r2.exit_code == 0);
  const std::uint64_t sent = last_stats(r1.report, "producer")->records + last_stats(r2.report, "producer")->records;
  CHECK(sent == 2 * per_producer);

  // ipcctl status sums the consumers' status files (one per consumer on a work queue).
  std::uint64_t together = 0;
  for (const auto until = std::chrono::steady_clock::now() + 30s; std::chrono::steady_clock::now() < until;) {
    together = consumers_total(uri, consumers.size());
    if (together == sent) break;
    std::this_thread::sleep_for(100ms);
  }
  CHECK(together == sent);

  std::uint64_t received = 0;
  for (auto& c : consumers) {
    c.kill(SIGTERM);
    const auto r = c.wait(30s);
    INFO(r.report);
    const auto s = last_stats(r.report, "consumer");
    REQUIRE(s);
    CHECK(s->lost == 0);
    CHECK(s->dup == 0);
    CHECK(s->reorder == 0);
    CHECK(s->corrupt == 0);
    CHECK(r.exit_code == 0);
    received += s->records;
  }
  CHECK(received == sent);
}

TEST_CASE("daemons: a consumer on a work queue still counts a record that comes twice", "[daemons]") {
  // The same session and sequence sent twice (two producers cannot make that; a raw peer can): the
  // consumer's per-session check is all a work-queue consumer keeps, and it must still fire.
  const std::string name = unique_name("wqdup");
  const std::string uri = "shm:" + name + "?mode=mpmc";
  ipc::test::on_exit gone([&] { ipc::shm_mpmc::remove(name); });
  auto c = spawn({consumer_bin, "--channel", uri, "--count", "3", "--stats-interval", "0"});
  ipc::shm_mpmc q(name, ipc::role::sender);
  REQUIRE(c.wait_for_line(" open, format record", 30s));
  const std::string payload = "x";
  auto record = [&](std::uint64_t seq) {
    std::vector<std::byte> wire;
    ipc::encode({.session = 42, .sequence = seq, .send_time_ns = ipc::monotonic_now_ns()}, ipc::as_bytes(payload), wire);
    return wire;
  };
  const auto rec1 = record(1), rec2 = record(5);
  q.send(rec1);  // sequence 1
  q.send(rec2);  // sequence 5: 2..4 went to other consumers, not lost
  q.send(rec2);  // sequence 5 again: a duplicate
  const auto r = c.wait(30s);
  INFO(r.report);
  const auto s = last_stats(r.report, "consumer");
  REQUIRE(s);
  CHECK(s->lost == 0);
  CHECK(s->dup == 1);
  CHECK(r.exit_code == 3);
}

TEST_CASE("daemons: a channel no record fits is refused by the consumer as by the producer, before anything is made",
          "[daemons]") {
  const std::string name = unique_name("tiny");
  for (const auto& uri : {"shm:" + name + "?mode=broadcast&max_message=10", "shm:" + name + "?mode=mpmc&max_message=40",
                          "shm:" + name + "?max_message=10", "sem:" + name + "?slot_size=20",
                          "fifo:" + name + ".fifo?max_message=10"}) {
    INFO(uri);
    for (const auto& bin : {consumer_bin, producer_bin}) {
      const auto r = spawn({bin, "--channel", uri, "--stats-interval", "0"}).wait(30s);
      INFO(r.report);
      CHECK(r.exit_code == 2);
      CHECK(r.report.find("too small for a record") != std::string::npos);
      CHECK((r.report.find("max_message=") != std::string::npos || r.report.find("slot_size=20") != std::string::npos));
      CHECK_FALSE(anything_named(name));
    }
  }
  // Raw messages of up to 10 bytes do travel: the check is the record's, not the channel's.
  auto raw = spawn({consumer_bin, "--channel", "shm:" + name + "?mode=broadcast&max_message=10", "--format", "raw",
                    "--stats-interval", "0.1"});
  CHECK(raw.wait_for_line(" open, format raw", 30s));
  REQUIRE(raw.wait_for_line("final=0", 30s));  // its signal handlers are in place
  raw.kill(SIGTERM);
  CHECK(raw.wait(30s).exit_code == 0);
  ipc::shm_broadcast::remove(name);
}

TEST_CASE("daemons: an existing shm object made too small for a record, opened by a URI that names no size, is "
          "refused by both programs with exit 2 and left as it was",
          "[daemons]") {
  const std::string name = unique_name("small");
  ipc::test::on_exit gone([&] {
    ipc::shm_mpmc::remove(name + "-wq");
    ipc::shm_broadcast::remove(name + "-bc");
  });
  ipc::shm_mpmc_options wq;
  wq.max_message = 20;
  ipc::shm_mpmc q(name + "-wq", ipc::role::sender, wq);  // another program's queue, held open
  ipc::shm_broadcast_options bo;
  bo.max_message = 20;
  ipc::shm_broadcast b(name + "-bc", ipc::role::sender, bo);
  for (const auto& uri : {"shm:" + name + "-wq?mode=mpmc", "shm:" + name + "-bc?mode=broadcast"}) {
    INFO(uri);
    for (const auto& bin : {consumer_bin, producer_bin}) {
      const auto r = spawn({bin, "--channel", uri, "--stats-interval", "0"}).wait(30s);
      INFO(r.report);
      CHECK(r.exit_code == 2);
      CHECK(r.report.find("at most 20 bytes, too small for a record") != std::string::npos);
    }
  }
  CHECK(q.limits().max_message_size == 20);  // still there, still ours
  CHECK(b.limits().max_message_size == 20);
}

TEST_CASE("ipcctl: a work queue and a broadcast channel show what they hold; gc takes them only empty and unowned",
          "[daemons]") {
  const std::string wq = unique_name("gcwq"), bc = unique_name("gcbc");
  ipc::test::on_exit gone([&] {
    ipc::shm_mpmc::remove(wq);
    ipc::shm_broadcast::remove(bc);
  });
  // A work queue left holding 5 records by a producer that has exited: data, kept by gc.
  const auto p = spawn({producer_bin, "--channel", "shm:" + wq + "?mode=mpmc", "--count", "5", "--rate", "0", "--stats-interval", "0"})
                     .wait(30s);
  REQUIRE(p.exit_code == 0);
  INFO(listed(wq));
  CHECK(listed(wq).find("5 msg") != std::string::npos);
  CHECK(spawn({ipcctl_bin, "gc"}).wait(30s).exit_code == 0);
  CHECK(segment_exists(wq));
  // Taken by a consumer: empty and every user dead, so gc removes it.
  const auto c = spawn({consumer_bin, "--channel", "shm:" + wq + "?mode=mpmc", "--count", "5", "--stats-interval", "0"}).wait(30s);
  REQUIRE(c.exit_code == 0);
  CHECK(listed(wq).find(" empty ") != std::string::npos);
  CHECK(spawn({ipcctl_bin, "gc"}).wait(30s).exit_code == 0);
  CHECK_FALSE(segment_exists(wq));

  // A broadcast channel with a live subscriber is in use: never collected, not even with --force.
  auto sub = spawn({consumer_bin, "--channel", "shm:" + bc + "?mode=broadcast", "--stats-interval", "0.1"});
  REQUIRE(sub.wait_for_line("final=0", 30s));  // subscribed, its signal handlers in place
  INFO(listed(bc));
  CHECK(listed(bc).find("1 subscriber") != std::string::npos);
  CHECK(spawn({ipcctl_bin, "gc", "--force"}).wait(30s).exit_code == 0);
  CHECK(segment_exists(bc));
  // Its subscriber gone and nothing left for anyone to read: gc removes it.
  sub.kill(SIGTERM);
  CHECK(sub.wait(30s).exit_code == 0);
  CHECK(listed(bc).find(" empty ") != std::string::npos);
  CHECK(spawn({ipcctl_bin, "gc"}).wait(30s).exit_code == 0);
  CHECK_FALSE(segment_exists(bc));

  // A subscriber killed with records unread leaves them in its place: data, kept until --force.
  auto slow = spawn({consumer_bin, "--channel", "shm:" + bc + "?mode=broadcast", "--stats-interval", "0.1"});
  REQUIRE(slow.wait_for_line("final=0", 30s));
  slow.kill(SIGSTOP);
  REQUIRE(spawn({producer_bin, "--channel", "shm:" + bc + "?mode=broadcast", "--count", "5", "--rate", "0", "--stats-interval", "0"})
              .wait(30s)
              .exit_code == 0);
  slow.kill(SIGKILL);
  CHECK(slow.wait(30s).signal == SIGKILL);
  INFO(listed(bc));
  CHECK(listed(bc).find("5 msg unread, 1 subscriber") != std::string::npos);
  CHECK(spawn({ipcctl_bin, "gc"}).wait(30s).exit_code == 0);
  CHECK(segment_exists(bc));
  CHECK(spawn({ipcctl_bin, "gc", "--force"}).wait(30s).exit_code == 0);
  CHECK_FALSE(segment_exists(bc));
}

TEST_CASE("daemons: --shared is refused where one record cannot go to one of several consumers", "[daemons]") {
  const std::string name = unique_name("shared");
  for (const auto& uri : {"fifo:" + name + ".fifo", "shm:" + name, "shm:" + name + "?mode=broadcast", std::string("pipe:fd=0")}) {
    INFO(uri);
    const auto r = spawn({consumer_bin, "--channel", uri, "--shared", "--stats-interval", "0"}).wait(30s);
    INFO(r.report);
    CHECK(r.exit_code == 2);
    CHECK(r.report.find("--shared") != std::string::npos);
    CHECK_FALSE(anything_named(name));
  }
}
