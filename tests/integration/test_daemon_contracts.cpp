// The daemons' contracts, run as users run them (fork+exec of the real binaries): a usage error
// leaves nothing behind, the sink stops the consumer, a consumer whose peer is gone backs off, a
// pipe consumer that exits 2 is started once. Each test process has its own IPC_RUNTIME_DIR.
#include "atomic_file.hpp"
#include "daemon_paths.hpp"
#include "test_support.hpp"

#include <ipc/msg_queue.hpp>
#include <ipc/uri.hpp>

#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using ipc::test::build_path;
using ipc::test::spawn;
using ipc::test::unique_name;

namespace {

using ipc::test::producer_bin;
using ipc::test::consumer_bin;
using ipc::test::ipcctl_bin;

// Every path under the runtime directory (files, FIFOs, the status directory …).
std::set<std::string> runtime_tree() {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::recursive_directory_iterator(ipc::runtime_dir(), ec)) out.insert(e.path().string());
  return out;
}

// /dev/shm entries that carry `name`.
std::set<std::string> shm_entries(const std::string& name) {
  std::set<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm")) {
    if (e.path().filename().string().find(name) != std::string::npos) out.insert(e.path().string());
  }
  return out;
}

std::size_t count_lines(const std::string& text, const std::string& needle) {
  std::istringstream in(text);
  std::size_t n = 0;
  for (std::string line; std::getline(in, line);) n += line.find(needle) != std::string::npos ? 1 : 0;
  return n;
}

// utime + stime of a process, in clock ticks (/proc/PID/stat fields 14 and 15).
long cpu_ticks(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  std::getline(f, stat);
  std::istringstream rest(stat.substr(stat.rfind(')') + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) stime = std::stol(field);
  }
  return utime + stime;
}

}  // namespace

TEST_CASE("daemons: each usage error exits 2 and leaves no object, key file, FIFO or status file", "[daemons]") {
  const std::string name = unique_name("usage");
  struct bad_case {
    std::vector<std::string> argv;
    std::string says;
  };
  const std::vector<bad_case> cases = {
      {{producer_bin, "--channel", "msgq:" + name, "--size", "12x"}, "not a size"},
      {{producer_bin, "--channel", "msgq:" + name, "--size", "18446744073709551615"}, "outside"},
      {{producer_bin, "--channel", "msgq:" + name, "--size", "18446744073709551616"}, "not a size"},
      {{producer_bin, "--channel", "msgq:" + name, "--rate", "-1"}, "not a non-negative integer"},
      {{producer_bin, "--channel", "msgq:" + name, "--rate", "2000000000"}, "outside"},
      {{producer_bin, "--channel", "msgq:" + name, "--stats-interval", "-1"}, "outside"},
      {{producer_bin, "--channel", "msgq:" + name, "--size", "70000"}, "exceeds msgq's largest message, 8192"},
      {{producer_bin, "--channel", "sem:" + name, "--size", "70000"}, "exceeds sem's largest message"},
      {{producer_bin, "--channel", "shm:" + name + "?max_message=1K", "--size", "2000"}, "exceeds shm's largest message"},
      // The work queue's and broadcast's cells default to 8 KiB, not the ring's 64 KiB.
      {{producer_bin, "--channel", "shm:" + name + "?mode=mpmc", "--size", "9000"}, "exceeds shm's largest message"},
      {{producer_bin, "--channel", "shm:" + name + "?mode=broadcast,0600", "--size", "9000"}, "exceeds shm's largest message"},
      {{producer_bin, "--channel", "fifo:" + name + ".fifo", "--size", "70000"}, "exceeds fifo's largest message"},
      {{producer_bin, "--channel", "pipe", "--size", "70000"}, "exceeds pipe's largest message"},
      {{producer_bin, "--channel", "shm:" + name + "?capacity=12x"}, "capacity"},
      {{producer_bin, "--channel", "msgq:" + name, "--consumer-arg", "x"}, "--channel pipe only"},
      {{consumer_bin, "--channel", "msgq:" + name, "--count", "18446744073709551616"}, "not a non-negative integer"},
      {{consumer_bin, "--channel", "msgq:" + name + "?max_message=nope"}, "max_message"},
      {{consumer_bin, "--channel", "msgq:" + name, "--sink", (ipc::runtime_dir() / (name + ".out")).string(),
        "--stats-interval", "86401"},
       "outside"},
      {{ipcctl_bin, "launch", "msgq", "--prefix", name, "--size", "70000"}, "exceeds msgq's largest message"},
      {{ipcctl_bin, "launch", "all", "--prefix", name, "--size", "18446744073709551615"}, "outside"},
  };
  for (const auto& c : cases) {
    INFO(Catch::Detail::stringify(c.argv));
    const auto tree_before = runtime_tree();
    // ipcs before and after, inside a private IPC namespace: exactly what this command made, no
    // matter what other tests on the machine do meanwhile.
    std::vector<std::string> argv{"/usr/bin/unshare", "--ipc", "--", "/bin/sh", "-c",
                                  "ipcs; echo ===; \"$@\"; echo \"=== rc=$?\"; ipcs", "sh"};
    argv.insert(argv.end(), c.argv.begin(), c.argv.end());
    auto r = spawn(argv).wait(30s);
    INFO(r.report);
    REQUIRE(r.exit_code == 0);
    CHECK(r.report.find("=== rc=2") != std::string::npos);
    CHECK(r.report.find(c.says) != std::string::npos);
    const auto first = r.report.find("===");
    const auto last = r.report.find("=== rc=");
    REQUIRE(last != std::string::npos);
    const auto rc_end = r.report.find('\n', last);
    CHECK(r.report.substr(0, first) == r.report.substr(rc_end + 1));  // ipcs unchanged
    CHECK(runtime_tree() == tree_before);
    CHECK(shm_entries(name).empty());
  }
}

namespace {

// The records= figure of the last stats line of `role` in a report.
std::uint64_t final_records(const std::string& report, const std::string& role) {
  std::istringstream in(report);
  std::uint64_t n = 0;
  bool found = false;
  for (std::string line; std::getline(in, line);) {
    if (line.find("stats role=" + role) == std::string::npos || line.find("final=1") == std::string::npos) continue;
    const auto at = line.find(" records=");
    n = std::stoull(line.substr(at + 9));
    found = true;
  }
  return found ? n : UINT64_MAX;
}

}  // namespace

TEST_CASE("daemons: ipc-consumer --sink - | head -n 2 exits at once and leaves the rest queued", "[daemons]") {
  // A producer keeps the queue full (it blocks while it is): a consumer that treated EPIPE as a
  // channel error would reopen and drain it into the dead pipe for ever.
  const std::string name = unique_name("head");
  auto producer = spawn({producer_bin, "--channel", "msgq:" + name, "--rate", "0", "--size", "1000", "--stats-interval", "0"});
  ipc::msgq_options open;
  open.open = ipc::open_mode::open_only;
  std::optional<ipc::msg_queue> q;
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < until && (!q || q->stats().messages < 10)) {
    try {
      if (!q) q.emplace(name, open);
    } catch (const std::system_error&) {  // not created yet
    }
    std::this_thread::sleep_for(20ms);
  }
  REQUIRE(q);
  REQUIRE(q->stats().messages >= 10);

  const auto t0 = std::chrono::steady_clock::now();
  auto r = spawn({"/bin/bash", "-c",
                  "\"$0\" --channel \"$1\" --sink - --stats-interval 0 | head -n 2 >/dev/null; echo \"consumer=${PIPESTATUS[0]}\"",
                  consumer_bin, "msgq:" + name})
               .wait(30s);
  const auto took = std::chrono::steady_clock::now() - t0;
  INFO(r.report);
  CHECK(r.exit_code == 0);
  CHECK(took < 2s);
  CHECK(r.report.find("consumer=4") != std::string::npos);  // exit_sink, not a channel error (1)
  CHECK(r.report.find("Broken pipe") != std::string::npos);
  CHECK(count_lines(r.report, "reopen") == 0);

  producer.kill(SIGTERM);
  auto p = producer.wait(30s);
  INFO(p.report);
  CHECK(p.exit_code == 0);
  // Exact accounting: every record sent was either taken by the consumer before it stopped or is
  // still queued for the next one.
  const std::uint64_t sent = final_records(p.report, "producer");
  const std::uint64_t taken = final_records(r.report, "consumer");
  const std::uint64_t queued = q->stats().messages;
  CHECK(queued >= 10);
  CHECK(sent == taken + queued);
  q->remove();
}

TEST_CASE("daemons: an shm consumer whose producer is gone backs off: few log lines, under 2% CPU", "[daemons]") {
  const std::string name = unique_name("alone");
  auto fill = spawn({producer_bin, "--channel", "shm:" + name, "--count", "10", "--rate", "0", "--stats-interval", "0"}).wait(30s);
  REQUIRE(fill.exit_code == 0);
  auto c = spawn({consumer_bin, "--channel", "shm:" + name, "--stats-interval", "0"});
  std::this_thread::sleep_for(5s);
  const long ticks = cpu_ticks(c.pid());
  c.kill(SIGTERM);
  auto r = c.wait(30s);
  INFO(r.report);
  CHECK(r.exit_code == 0);
  const long hz = ::sysconf(_SC_CLK_TCK);
  CHECK(ticks < hz * 5 / 50);  // < 2 % of 5 s
  std::size_t lines = count_lines(r.report, "<");
  CHECK(lines <= 15);
  std::filesystem::remove(std::string("/dev/shm/libipc.") + name);
}

TEST_CASE("daemons: a pipe consumer that exits 2 is started once and the producer exits 2", "[daemons]") {
  const auto t0 = std::chrono::steady_clock::now();
  auto r = spawn({producer_bin, "--channel", "pipe", "--consumer-arg", "--bogus", "--stats-interval", "0"}).wait(30s);
  INFO(r.report);
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);
  CHECK(r.exit_code == 2);
  CHECK(count_lines(r.report, "ipc-consumer pid") == 2);  // started, then exited with code 2
  CHECK(count_lines(r.report, " started") == 1);
  CHECK(count_lines(r.report, "not restarted") == 1);
  CHECK(count_lines(r.report, "--bogus") >= 1);
}

TEST_CASE("daemons: a sink that fails with ENOSPC stops the consumer, which exits 4 and takes no more", "[daemons]") {
  const std::string name = unique_name("full");
  auto fill = spawn({producer_bin, "--channel", "msgq:" + name, "--count", "100", "--size", "64", "--rate", "0",
                     "--stats-interval", "0"})
                  .wait(30s);
  REQUIRE(fill.exit_code == 0);
  ipc::msgq_options open;
  open.open = ipc::open_mode::open_only;
  ipc::msg_queue q(name, open);
  REQUIRE(q.stats().messages == 100);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = spawn({consumer_bin, "--channel", "msgq:" + name, "--sink", "/dev/full", "--stats-interval", "0"}).wait(30s);
  INFO(r.report);
  CHECK(std::chrono::steady_clock::now() - t0 < 2s);
  CHECK(r.exit_code == 4);
  CHECK(r.report.find("No space left on device") != std::string::npos);
  CHECK(count_lines(r.report, "reopen") == 0);
  const std::uint64_t taken = final_records(r.report, "consumer");
  CHECK(taken == 1);  // the first record's flush failed: nothing more was taken
  CHECK(q.stats().messages == 99);
  q.remove();
}

// ---- files the daemons write: nothing that is not a regular file is ever replaced ----------

namespace {

std::string read_text(const std::filesystem::path& p) {
  std::ifstream f(p);
  std::ostringstream os;
  os << f.rdbuf();
  return os.str();
}

// A scratch directory in this test process's runtime directory, removed at the end.
struct scratch_dir {
  std::filesystem::path path = ipc::runtime_dir() / unique_name("files");
  scratch_dir() { std::filesystem::create_directories(path); }
  ~scratch_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;
};

bool is_char_device(const std::filesystem::path& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0 && S_ISCHR(st.st_mode);
}

}  // namespace

TEST_CASE("daemons: write_file_atomically replaces a regular file and refuses a device, a link or a FIFO naming it", "[daemons]") {
  scratch_dir dir;
  const auto file = dir.path / "status";
  ipc::daemon::write_file_atomically(file, "one\n");
  ipc::daemon::write_file_atomically(file, "two\n");
  CHECK(read_text(file) == "two\n");

  // /dev/null: never renamed over (it once was).
  CHECK_THROWS_WITH(ipc::daemon::write_file_atomically("/dev/null", "x\n"),
                    Catch::Contains("replace(/dev/null)") && Catch::Contains("character device"));
  CHECK(is_char_device("/dev/null"));
  CHECK_FALSE(std::filesystem::exists("/dev/null.tmp." + std::to_string(::getpid())));

  // A link is never followed nor replaced: the link and its target stay as they were.
  const auto target = dir.path / "target";
  const auto link = dir.path / "link";
  ipc::daemon::write_file_atomically(target, "kept\n");
  std::filesystem::create_symlink(target, link);
  CHECK_THROWS_WITH(ipc::daemon::write_file_atomically(link, "x\n"),
                    Catch::Contains("replace(" + link.string() + ")") && Catch::Contains("symbolic link"));
  CHECK(std::filesystem::is_symlink(link));
  CHECK(read_text(target) == "kept\n");

  // A FIFO is refused without being opened (an open would block for a reader).
  const auto fifo = dir.path / "fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK_THROWS_WITH(ipc::daemon::write_file_atomically(fifo, "x\n"), Catch::Contains("replace(" + fifo.string() + ")") && Catch::Contains("FIFO"));
  CHECK(std::filesystem::is_fifo(fifo));

  // A directory too; and no temporary file is left behind by any refusal.
  CHECK_THROWS_WITH(ipc::daemon::write_file_atomically(dir.path, "x\n"), Catch::Contains("directory"));
  std::set<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir.path)) names.insert(e.path().filename().string());
  CHECK(names == std::set<std::string>{"fifo", "link", "status", "target"});

  // At exit only a regular file is removed.
  CHECK_FALSE(ipc::daemon::remove_regular_file(link));
  CHECK(std::filesystem::is_symlink(link));
  CHECK_FALSE(ipc::daemon::remove_regular_file("/dev/null"));
  CHECK(is_char_device("/dev/null"));
  CHECK(ipc::daemon::remove_regular_file(file));
  CHECK_FALSE(std::filesystem::exists(file));
}

TEST_CASE("daemons: a --status-file that is a device, a link or a FIFO is a usage error and stays as it is", "[daemons]") {
  scratch_dir dir;
  const std::string name = unique_name("status");
  const auto target = dir.path / "target";
  const auto link = dir.path / "link";
  const auto fifo = dir.path / "fifo";
  { std::ofstream(target) << "kept\n"; }
  std::filesystem::create_symlink(target, link);
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  struct bad_case {
    std::string program;
    std::string path;
    std::string says;
  };
  const std::vector<bad_case> cases = {
      {producer_bin, "/dev/null", "character device"},
      {consumer_bin, "/dev/null", "character device"},
      {producer_bin, link.string(), "symbolic link"},
      {consumer_bin, fifo.string(), "FIFO"},
      {build_path("daemons/ipc-bridge"), link.string(), "symbolic link"},
  };
  for (const auto& c : cases) {
    const std::vector<std::string> argv =
        c.program.ends_with("ipc-bridge")
            ? std::vector<std::string>{c.program, "--from", "msgq:" + name, "--to", "shm:" + name, "--status-file", c.path}
            : std::vector<std::string>{c.program, "--channel", "msgq:" + name, "--status-file", c.path};
    INFO(Catch::Detail::stringify(argv));
    const auto tree_before = runtime_tree();
    auto r = spawn(argv).wait(30s);
    INFO(r.report);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.report, Catch::Contains("--status-file") && Catch::Contains(c.path) && Catch::Contains(c.says));
    CHECK(runtime_tree() == tree_before);  // no queue key file, no status directory
  }
  CHECK(is_char_device("/dev/null"));
  CHECK(std::filesystem::is_symlink(link));
  CHECK(read_text(target) == "kept\n");
  CHECK(std::filesystem::is_fifo(fifo));
}

TEST_CASE("daemons: --sink appends to a file it never truncates and writes into a FIFO", "[daemons]") {
  scratch_dir dir;
  const std::string name = unique_name("sinks");
  auto fill = spawn({producer_bin, "--channel", "msgq:" + name, "--count", "6", "--size", "16", "--rate", "0", "--stats-interval", "0"})
                  .wait(30s);
  REQUIRE(fill.exit_code == 0);

  // A file that holds something keeps it: the payloads come after.
  const auto file = dir.path / "sink.txt";
  { std::ofstream(file) << "before\n"; }
  auto r = spawn({consumer_bin, "--channel", "msgq:" + name, "--count", "3", "--sink", file.string(), "--stats-interval", "0"}).wait(30s);
  INFO(r.report);
  CHECK(r.exit_code == 0);
  const std::string text = read_text(file);
  CHECK(text.starts_with("before\n"));
  CHECK(count_lines(text, "") == 4);

  // A FIFO is a stream the user asked for: written into, left a FIFO.
  const auto fifo = dir.path / "sink.fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  auto reader = spawn({"/bin/sh", "-c", "wc -l < \"$0\"", fifo.string()});
  auto c = spawn({consumer_bin, "--channel", "msgq:" + name, "--count", "3", "--sink", fifo.string(), "--stats-interval", "0"}).wait(30s);
  INFO(c.report);
  CHECK(c.exit_code == 0);
  auto lines = reader.wait(30s);
  INFO(lines.report);
  CHECK(lines.exit_code == 0);
  CHECK(lines.report.find('3') != std::string::npos);
  CHECK(std::filesystem::is_fifo(fifo));

  ipc::msgq_options open;
  open.open = ipc::open_mode::open_only;
  ipc::msg_queue(name, open).remove();
}
