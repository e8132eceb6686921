// Corrupt shared state under a running daemon pair is quarantined, not reopened in a storm
// (docs/daemons.md, "Quarantine"): reported once with the library's detail, the damaged object
// discarded and recreated, reopens and log lines bounded, records flowing again. And a sem channel
// whose segment or set an operator removes (ipcrm -m / -s) is recreated as one unit.
#include "stats_line.hpp"

#include "detail/sem_buffer_layout.hpp"
#include "detail/shm_ring_layout.hpp"
#include "detail/sysv_key.hpp"
#include "daemon_paths.hpp"
#include "test_support.hpp"

#include <ipc/sem_buffer.hpp>
#include <ipc/shm_ring.hpp>
#include <ipc/uri.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

using namespace std::chrono_literals;
using ipc::test::spawn;
using ipc::test::unique_name;

namespace {

using ipc::test::producer_bin;
using ipc::test::consumer_bin;

using ipc::test::status_of;

// The consumer's record count from its status file (0 while it has none).
std::uint64_t records_of(const std::string& status) {
  const auto s = status_of(status);
  return s ? s->records : 0;
}

// Waits until the consumer has counted more than `than` records; false after `timeout`.
bool records_pass(const std::string& status, std::uint64_t than, std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (records_of(status) > than) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

std::size_t lines_with(const std::string& report, std::string_view needle) {
  std::istringstream in(report);
  std::size_t n = 0;
  for (std::string line; std::getline(in, line);) n += line.find(needle) != std::string::npos ? 1 : 0;
  return n;
}

// A running producer/consumer pair on `uri` (500 records/s); the consumer's figures in its status file.
struct running_pair {
  std::string uri;
  std::string status = (ipc::runtime_dir() / (unique_name("q") + ".status")).string();
  ipc::test::child producer;
  ipc::test::child consumer;

  explicit running_pair(std::string u)
      : uri(std::move(u)),
        producer(spawn({producer_bin, "--channel", uri, "--rate", "500", "--size", "32", "--stats-interval", "0.2"})),
        consumer(spawn({consumer_bin, "--channel", uri, "--stats-interval", "0.1", "--status-file", status})) {}

  struct reports {
    ipc::test::child_result producer, consumer;
  };
  reports stop() {
    producer.kill(SIGTERM);
    consumer.kill(SIGTERM);
    return {producer.wait(30s), consumer.wait(30s)};
  }
};

// What both daemons said about the channel after the damage: bounded, and the detail is there.
void check_quarantine_reports(const running_pair::reports& r, std::string_view detail) {
  const std::string both = r.producer.report + r.consumer.report;
  INFO("producer:\n" << r.producer.report << "\nconsumer:\n" << r.consumer.report);
  CHECK(r.producer.exit_code == 0);
  // The discarded records are lost on purpose: the consumer says so in its exit status, nothing worse.
  CHECK((r.consumer.exit_code == 0 || r.consumer.exit_code == 3));
  CHECK(lines_with(both, detail) >= 1);               // the library's detail reached the log
  CHECK(lines_with(both, "quarantined") >= 1);
  CHECK(lines_with(r.producer.report, "quarantined") <= 1);  // reported once per daemon
  CHECK(lines_with(r.consumer.report, "quarantined") <= 1);
  CHECK(lines_with(both, "still corrupt") <= 2);
  CHECK(lines_with(both, "reopening in") <= 6);
}

std::uint64_t restarts_in(const std::string& report, std::string_view role) {
  std::istringstream in(report);
  std::uint64_t restarts = 0;
  for (std::string line; std::getline(in, line);) {
    if (auto s = ipc::daemon::stats_line::parse(line); s && s->role == role) restarts = s->restarts;
  }
  return restarts;
}

// The System V objects of a sem channel, found by key as ipcs would.
struct sem_unit_ids {
  int shm = -1, sem = -1;
};
sem_unit_ids sem_unit(const std::string& name) {
  const std::string key_file = (ipc::runtime_dir() / (name + ".sembuf")).string();
  if (::access(key_file.c_str(), F_OK) != 0) return {};
  return {::shmget(ipc::detail::sysv_key(key_file, 'H', false), 0, 0),
          ::semget(ipc::detail::sysv_key(key_file, 'S', false), 0, 0)};
}

// The segment under the key records the set under the key: one unit.
bool one_unit(const std::string& name) {
  const auto ids = sem_unit(name);
  if (ids.shm < 0 || ids.sem < 0) return false;
  void* p = ::shmat(ids.shm, nullptr, SHM_RDONLY);
  if (p == reinterpret_cast<void*>(-1)) return false;
  const int recorded = static_cast<const ipc::detail::sem_buffer_header*>(p)->sem_id;
  ::shmdt(p);
  return recorded == ids.sem;
}

}  // namespace

TEST_CASE("quarantine: a scribbled shm ring index is reported once and the ring recreated; records flow again",
          "[quarantine]") {
  const auto name = unique_name("qshm");
  running_pair pair("shm:" + name);
  REQUIRE(records_pass(pair.status, 200, 30s));
  const std::string path = "/dev/shm/" + ipc::shm_ring::shm_name(name);
  struct stat before {};
  REQUIRE(::stat(path.c_str(), &before) == 0);
  {
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    REQUIRE(fd >= 0);
    void* map = ::mmap(nullptr, sizeof(ipc::detail::ring_header), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    REQUIRE(map != MAP_FAILED);
    auto* h = static_cast<ipc::detail::ring_header*>(map);
    // The producer stores head after every record: scribble until a daemon has found it and replaced the ring.
    const auto until = std::chrono::steady_clock::now() + 5s;
    struct stat now {};
    while (std::chrono::steady_clock::now() < until &&
           ::stat(path.c_str(), &now) == 0 && now.st_ino == before.st_ino) {
      h->head.store(h->head.load() | 3U);  // misaligned: no record starts there
      std::this_thread::sleep_for(2ms);
    }
    ::munmap(map, sizeof(ipc::detail::ring_header));
  }
  const auto damaged_at = std::chrono::steady_clock::now();
  const std::uint64_t seen = records_of(pair.status);
  CHECK(records_pass(pair.status, seen + 200, 5s));
  std::this_thread::sleep_for(5s - (std::chrono::steady_clock::now() - damaged_at));  // the 5 s the bounds are about
  const auto r = pair.stop();
  check_quarantine_reports(r, "misaligned index");
  CHECK(restarts_in(r.producer.report, "producer") >= 1);
  CHECK(restarts_in(r.producer.report, "producer") <= 4);
  CHECK(restarts_in(r.consumer.report, "consumer") <= 4);
  ipc::shm_ring::remove(name);
}

TEST_CASE("quarantine: a scribbled sem slot is reported once and the unit recreated; records flow again",
          "[quarantine]") {
  const auto name = unique_name("qsem");
  running_pair pair("sem:" + name);
  REQUIRE(records_pass(pair.status, 200, 30s));
  // Stop the consumer until the producer has filled every slot (a consumer stopped inside its critical
  // section holds the mutex: let it go on and stop it again), then break the stored length of every slot.
  const auto ids = sem_unit(name);
  REQUIRE(ids.shm >= 0);
  bool filled = false;
  for (int attempt = 0; attempt < 20 && !filled; ++attempt) {
    REQUIRE(pair.consumer.kill(SIGSTOP));
    const auto until = std::chrono::steady_clock::now() + 500ms;
    while (!filled && std::chrono::steady_clock::now() < until) {
      filled = ::semctl(ids.sem, ipc::sem_buffer::sem_empty, GETVAL) == 0;
      std::this_thread::sleep_for(5ms);
    }
    if (!filled) {
      pair.consumer.kill(SIGCONT);
      std::this_thread::sleep_for(20ms);
    }
  }
  REQUIRE(filled);
  {
    void* p = ::shmat(ids.shm, nullptr, 0);
    REQUIRE(p != reinterpret_cast<void*>(-1));
    const auto* h = static_cast<const ipc::detail::sem_buffer_header*>(p);
    auto* slots = static_cast<std::byte*>(p) + ipc::detail::sem_buffer_header_bytes;
    const std::uint32_t hostile = 0xffffffffU;
    for (std::uint32_t i = 0; i < h->slots; ++i) std::memcpy(slots + std::size_t{i} * h->slot_size, &hostile, sizeof hostile);
    ::shmdt(p);
  }
  const std::uint64_t seen = records_of(pair.status);
  REQUIRE(pair.consumer.kill(SIGCONT));
  const auto damaged_at = std::chrono::steady_clock::now();
  CHECK(records_pass(pair.status, seen + 200, 5s));
  std::this_thread::sleep_for(5s - (std::chrono::steady_clock::now() - damaged_at));
  CHECK(one_unit(name));
  CHECK(sem_unit(name).shm != ids.shm);
  const auto r = pair.stop();
  check_quarantine_reports(r, "holds length 4294967295");
  CHECK(restarts_in(r.consumer.report, "consumer") >= 1);
  CHECK(restarts_in(r.consumer.report, "consumer") <= 4);
  CHECK(restarts_in(r.producer.report, "producer") <= 4);
  ipc::sem_buffer::remove(name);
}

namespace {

// ipcrm under a running pair: both daemons end up on one new unit and records flow again.
void operator_removes_half(const std::string& name, const std::function<void(const sem_unit_ids&)>& ipcrm) {
  running_pair pair("sem:" + name);
  REQUIRE(records_pass(pair.status, 200, 30s));
  const auto old = sem_unit(name);
  REQUIRE(one_unit(name));
  ipcrm(old);
  const std::uint64_t seen = records_of(pair.status);
  CHECK(records_pass(pair.status, seen + 200, 5s));
  CHECK(one_unit(name));
  CHECK(sem_unit(name).shm != old.shm);
  CHECK(sem_unit(name).sem != old.sem);
  const auto r = pair.stop();
  INFO("producer:\n" << r.producer.report << "\nconsumer:\n" << r.consumer.report);
  CHECK(r.producer.exit_code == 0);
  CHECK((r.consumer.exit_code == 0 || r.consumer.exit_code == 3));  // what the removed unit held is lost
  CHECK(lines_with(r.producer.report + r.consumer.report, "quarantined") == 0);  // removal is not corruption
  CHECK(lines_with(r.producer.report + r.consumer.report, "reopening in") <= 6);
  ipc::sem_buffer::remove(name);
}

}  // namespace

TEST_CASE("quarantine: ipcrm -m of a running sem channel's segment: both daemons recover onto one new unit",
          "[quarantine]") {
  operator_removes_half(unique_name("qrmm"), [](const sem_unit_ids& ids) { REQUIRE(::shmctl(ids.shm, IPC_RMID, nullptr) == 0); });
}

TEST_CASE("quarantine: ipcrm -s of a running sem channel's set: both daemons recover onto one new unit", "[quarantine]") {
  operator_removes_half(unique_name("qrms"), [](const sem_unit_ids& ids) { REQUIRE(::semctl(ids.sem, 0, IPC_RMID) == 0); });
}
