// The daemons never lose data at their edges when a channel is lost (docs/daemons.md, "Restart
// semantics", "Quarantine"): a consumer that discards a corrupt shm ring sends its producer to the new
// ring within the producer's name check, so nothing sent after that is lost; a fifo consumer whose
// writer died mid-frame resumes the same FIFO through channel::reopen(), skipping the torn frame
// (skipped=, not corrupt=); skipped messages reach the stats line, the status file and ipcctl status.
#include "stats_line.hpp"

#include "daemon_paths.hpp"
#include "detail/shm_ring_layout.hpp"
#include "test_support.hpp"

#include <ipc/record.hpp>
#include <ipc/shm_ring.hpp>
#include <ipc/uri.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using ipc::test::consumer_bin;
using ipc::test::ipcctl_bin;
using ipc::test::last_stats;
using ipc::test::producer_bin;
using ipc::test::status_reaches;
using ipc::test::spawn;
using ipc::test::unique_name;

namespace {

std::size_t lines_with(const std::string& report, std::string_view needle) {
  std::istringstream in(report);
  std::size_t n = 0;
  for (std::string line; std::getline(in, line);) n += line.find(needle) != std::string::npos ? 1 : 0;
  return n;
}

// A ring's header and data, mapped by path as a hostile same-uid process would.
class mapped_ring {
 public:
  explicit mapped_ring(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    REQUIRE(fd >= 0);
    struct stat st {};
    REQUIRE(::fstat(fd, &st) == 0);
    size_ = static_cast<std::size_t>(st.st_size);
    map_ = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    REQUIRE(map_ != MAP_FAILED);
  }
  ~mapped_ring() { ::munmap(map_, size_); }
  mapped_ring(const mapped_ring&) = delete;
  mapped_ring& operator=(const mapped_ring&) = delete;

  ipc::detail::ring_header& header() { return *static_cast<ipc::detail::ring_header*>(map_); }
  std::byte* data() { return static_cast<std::byte*>(map_) + sizeof(ipc::detail::ring_header); }

  /// Records between tail and head (read while the receiver is stopped and the sender only adds).
  std::uint64_t records_held(std::uint64_t record_bytes) {
    return (header().head.load() - header().tail.load()) / record_bytes;
  }
  /// Gives every record between tail and head a length above max_message: whichever the receiver
  /// reads next is corrupt. Returns how many records that damaged.
  std::uint64_t scribble_unread(std::uint64_t record_bytes) {
    const std::uint64_t cap = header().capacity, tail = header().tail.load(), head = header().head.load();
    const std::uint32_t hostile = 0x7ffffff8U;  // not the wrap marker
    std::uint64_t n = 0;
    for (std::uint64_t at = tail; at + record_bytes <= head; at += record_bytes, ++n) {
      std::uint64_t pos = at & (cap - 1);
      if (pos + record_bytes > cap) break;  // stop before a wrap: one damaged record is enough
      std::memcpy(data() + pos, &hostile, sizeof hostile);
    }
    return n;
  }

 private:
  void* map_ = nullptr;
  std::size_t size_ = 0;
};

// One length-prefixed fifo frame holding a daemon record with `payload`.
std::vector<std::byte> record_frame(std::uint64_t session, std::uint64_t sequence, std::string_view payload) {
  std::vector<std::byte> wire;
  ipc::encode({.session = session, .sequence = sequence, .send_time_ns = ipc::monotonic_now_ns()}, ipc::as_bytes(payload),
              wire);
  std::vector<std::byte> frame(4 + wire.size());
  const auto len = static_cast<std::uint32_t>(wire.size());
  for (std::size_t i = 0; i < 4; ++i) frame[i] = static_cast<std::byte>((len >> (8 * i)) & 0xffU);
  std::memcpy(frame.data() + 4, wire.data(), wire.size());
  return frame;
}

}  // namespace

TEST_CASE("daemons: a consumer that discards a corrupt shm ring sends its producer to the new ring; "
          "nothing sent after that is lost",
          "[quarantine]") {
  // A 64 KiB ring holds 819 records of 32 payload bytes (8 + 40 + 32 bytes each): were the producer to
  // go on feeding the discarded ring until it is full, 1.6 s of records (at 500/s) would be lost.
  const auto name = unique_name("qdis");
  const std::string uri = "shm:" + name + "?capacity=64K&max_message=1K";
  constexpr std::uint64_t record_bytes = 8 + 40 + 32;
  constexpr std::uint64_t count = 2500, rate = 500;
  const std::string status = (ipc::runtime_dir() / (unique_name("qdis") + ".status")).string();
  auto consumer = spawn({consumer_bin, "--channel", uri, "--stats-interval", "0.1", "--status-file", status});
  auto producer = spawn({producer_bin, "--channel", uri, "--rate", std::to_string(rate), "--size", "32", "--count",
                         std::to_string(count), "--stats-interval", "0"});
  REQUIRE(status_reaches(status, [](const auto& s) { return s.records > 200; }, 30s));

  // Stop the consumer, let records pile up, damage every unread one, let it find the damage.
  const std::string path = "/dev/shm/" + ipc::shm_ring::shm_name(name);
  struct stat before {};
  REQUIRE(::stat(path.c_str(), &before) == 0);
  std::uint64_t damaged = 0;
  {
    mapped_ring ring(path);
    REQUIRE(consumer.kill(SIGSTOP));
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (ring.records_held(record_bytes) < 20 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(5ms);
    damaged = ring.scribble_unread(record_bytes);
    REQUIRE(consumer.kill(SIGCONT));
  }
  REQUIRE(damaged >= 20);

  // The producer runs to its count and exits 0; the consumer gets its last record from the new ring.
  const auto p = producer.wait(60s);
  INFO("producer:\n" << p.report);
  REQUIRE(p.exit_code == 0);
  CHECK(status_reaches(status, [&](const auto& s) { return s.seq == count; }, 30s));
  REQUIRE(consumer.kill(SIGTERM));
  const auto c = consumer.wait(30s);
  INFO("consumer:\n" << c.report);
  struct stat after {};
  REQUIRE(::stat(path.c_str(), &after) == 0);
  CHECK(after.st_ino != before.st_ino);  // the corrupt ring was replaced

  // The consumer found and discarded it; the producer noticed the unlinked name and reopened.
  CHECK(lines_with(c.report, "quarantined: discarded") == 1);
  CHECK(lines_with(p.report, "was unlinked while attached") >= 1);
  const auto cs = last_stats(c.report, "consumer");
  const auto ps = last_stats(p.report, "producer");
  REQUIRE(cs);
  REQUIRE(ps);
  CHECK(ps->records == count);
  CHECK(ps->restarts == 1);
  // Every record is accounted for: received or lost, none twice, none out of order.
  CHECK(cs->session == ps->session);
  CHECK(cs->seq == count);
  CHECK(cs->records + cs->lost == count - cs->first_seq + 1);
  CHECK(cs->dup == 0);
  CHECK(cs->reorder == 0);
  CHECK(cs->corrupt == 0);
  // Lost: the damaged records (discarded, as docs/daemons.md "Quarantine" says) and what the producer
  // sent into the discarded ring before its name check saw the unlink - about 100 ms of records -,
  // never the rest of a ring's worth (819). Everything it sent after it moved arrived.
  CHECK(cs->lost >= damaged);
  CHECK(cs->lost <= damaged + 250);
  CHECK(c.exit_code == 3);  // a loss, said as such
  ipc::shm_ring::remove(name);
}

TEST_CASE("daemons: a fifo writer that dies mid-frame: the consumer resumes the same FIFO, skips the torn frame "
          "and delivers the next record whole",
          "[daemons]") {
  const std::string fifo = unique_name("torn") + ".fifo";
  const std::string uri = "fifo:" + fifo;
  const std::string path = (ipc::runtime_dir() / fifo).string();
  const std::string status = (ipc::runtime_dir() / (unique_name("torn") + ".status")).string();
  auto consumer = spawn({consumer_bin, "--channel", uri, "--stats-interval", "0.1", "--status-file", status});
  REQUIRE(status_reaches(status, [](const auto&) { return true; }, 30s));
  struct stat before {};
  REQUIRE(::stat(path.c_str(), &before) == 0);

  // A writer sends one whole record, then 20 bytes of the next frame, and dies.
  auto writer = ipc::test::fork_child([&](ipc::test::reporter&) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return 1;
    const auto session = ipc::new_session_id();
    const auto whole = record_frame(session, 1, "whole");
    const auto torn = record_frame(session, 2, "this record never ends");
    if (::write(fd, whole.data(), whole.size()) != static_cast<ssize_t>(whole.size())) return 2;
    if (::write(fd, torn.data(), 20) != 20) return 3;
    ::_exit(0);  // mid-frame
  });
  REQUIRE(writer.wait(10s).exit_code == 0);
  CHECK(status_reaches(status, [](const auto& s) { return s.records == 1 && s.skipped == 1; }, 10s));

  // The next writer (a producer daemon) is read from the same FIFO, every record whole.
  auto producer = spawn({producer_bin, "--channel", uri, "--rate", "200", "--count", "5", "--stats-interval", "0"});
  const auto p = producer.wait(30s);
  INFO("producer:\n" << p.report);
  CHECK(p.exit_code == 0);
  CHECK(status_reaches(status, [](const auto& s) { return s.records == 6; }, 10s));
  REQUIRE(consumer.kill(SIGTERM));
  const auto c = consumer.wait(30s);
  INFO("consumer:\n" << c.report);
  const auto cs = last_stats(c.report, "consumer");
  REQUIRE(cs);
  CHECK(cs->records == 6);
  CHECK(cs->skipped == 1);  // the torn frame: skipped, not corrupt data, not a lost record
  CHECK(cs->corrupt == 0);
  CHECK(cs->lost == 0);
  CHECK(c.exit_code == 0);
  // The FIFO was resumed through reopen(), never unlinked and made anew.
  struct stat after {};
  REQUIRE(::stat(path.c_str(), &after) == 0);
  CHECK(after.st_ino == before.st_ino);
  CHECK(lines_with(c.report, "quarantined: discarded") == 0);
  ::unlink(path.c_str());
}

TEST_CASE("daemons: over-long fifo lines are counted in skipped= of the stats line, the status file and ipcctl status",
          "[daemons]") {
  const std::string fifo = unique_name("long") + ".fifo";
  const std::string uri = "fifo:" + fifo + "?framing=lines&max_message=16";
  const std::string path = (ipc::runtime_dir() / fifo).string();
  const std::string status = (ipc::runtime_dir() / "status" / ("fifo-" + fifo + ".consumer.status")).string();
  auto consumer = spawn({consumer_bin, "--channel", uri, "--format", "lines", "--stats-interval", "0.1"});
  REQUIRE(status_reaches(status, [](const auto&) { return true; }, 30s));

  auto writer = ipc::test::fork_child([&](ipc::test::reporter&) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return 1;
    const std::string text = "short\n" + std::string(40, 'x') + "\n" + std::string(17, 'y') + "\nafter\n";
    return ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) ? 0 : 2;
  });
  REQUIRE(writer.wait(10s).exit_code == 0);
  REQUIRE(status_reaches(status, [](const auto& s) { return s.records == 2 && s.skipped == 2; }, 10s));

  const auto table = spawn({ipcctl_bin, "status"}).wait(30s);
  INFO("ipcctl status:\n" << table.report);
  CHECK(table.exit_code == 0);
  std::istringstream in(table.report);
  std::string header, row;
  for (std::string line; std::getline(in, line);) {
    if (line.find("skipped") != std::string::npos) header = line;
    if (line.find(fifo) != std::string::npos) row = line;
  }
  REQUIRE_FALSE(header.empty());
  REQUIRE_FALSE(row.empty());
  // The skipped column holds 2: the value under the header word.
  const auto col = header.find("skipped");
  const auto end = col + std::string("skipped").size();
  REQUIRE(row.size() >= end);
  std::string cell = row.substr(col, end - col);
  cell.erase(0, cell.find_first_not_of(' '));
  CHECK(cell == "2");

  REQUIRE(consumer.kill(SIGTERM));
  const auto c = consumer.wait(30s);
  INFO("consumer:\n" << c.report);
  const auto cs = last_stats(c.report, "consumer");
  REQUIRE(cs);
  CHECK(cs->skipped == 2);
  CHECK(cs->records == 2);
  CHECK(c.exit_code == 0);
  ::unlink(path.c_str());
}
