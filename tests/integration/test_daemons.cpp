// The daemons as users run them: fork+exec of the real ipc-producer / ipc-consumer.
// Each test process has its own IPC_RUNTIME_DIR (tests/main.cpp), inherited by the daemons.
#include "atomic_file.hpp"
#include "log.hpp"
#include "cli.hpp"
#include "stats_line.hpp"
#include "stats.hpp"

#include "daemon_paths.hpp"
#include "test_support.hpp"

#include <ipc/channel.hpp>
#include <ipc/uri.hpp>

#include <catch2/catch.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using ipc::test::spawn;
using ipc::test::unique_name;

namespace {

using ipc::test::producer_bin;
using ipc::test::consumer_bin;

// The named channels, as the daemons name them (pipe is tested on its own).
std::vector<std::string> channel_uris() {
  return {"fifo:" + unique_name("d") + ".fifo", "msgq:" + unique_name("d"), "sem:" + unique_name("d"),
          "shm:" + unique_name("d")};
}

// The last stats line (the contract type, parsed) in `report` of `role` (any when empty), only
// final ones when `final_only`, only channels starting with `channel` when given.
std::optional<ipc::daemon::stats_line> last_stats(const std::string& report, std::string_view role = {}, bool final_only = false,
                                                  std::string_view channel = {}) {
  std::istringstream in(report);
  std::optional<ipc::daemon::stats_line> found;
  for (std::string line; std::getline(in, line);) {
    auto s = ipc::daemon::stats_line::parse(line);
    if (!s || (!role.empty() && s->role != role) || (final_only && !s->final) || !s->channel.starts_with(channel)) continue;
    found = std::move(s);
  }
  return found;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// Waits until the status file at path has a pid other than `not_pid` and records > 0; returns that pid.
long wait_status(const std::string& path, long not_pid, std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    auto s = last_stats(read_file(path));
    if (s && s->pid != not_pid && s->records > 0) return s->pid;
    std::this_thread::sleep_for(20ms);
  }
  return -1;
}

void check_clean(const std::optional<ipc::daemon::stats_line>& s, std::uint64_t records) {
  REQUIRE(s);
  CHECK(s->records == records);
  CHECK(s->lost == 0);
  CHECK(s->dup == 0);
  CHECK(s->reorder == 0);
  CHECK(s->corrupt == 0);
}

// An AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET.
class notify_listener {
 public:
  notify_listener() {
    path_ = ipc::runtime_dir() / (unique_name("notify") + ".sock");
    fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    REQUIRE(fd_);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path_.c_str(), sizeof a.sun_path - 1);
    REQUIRE(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  }
  ~notify_listener() { ::unlink(path_.c_str()); }
  [[nodiscard]] const std::string& path() const { return path_; }
  struct message {
    std::string text;
    std::chrono::steady_clock::time_point at;
  };
  /// Collects datagrams until `stop` returns true or the timeout passes.
  void collect(std::chrono::milliseconds timeout, const std::function<bool()>& stop) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (!stop() && std::chrono::steady_clock::now() < until) {
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, 10) <= 0) continue;
      char buf[512];
      ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
      if (n > 0) got.push_back({std::string(buf, static_cast<std::size_t>(n)), std::chrono::steady_clock::now()});
    }
  }
  [[nodiscard]] bool has(std::string_view prefix) const {
    for (const auto& m : got) {
      if (m.text.starts_with(prefix)) return true;
    }
    return false;
  }
  std::vector<message> got;

 private:
  std::string path_;
  ipc::unique_fd fd_;
};

}  // namespace

// ---- the runtime's pieces ---------------------------------------------------------------

TEST_CASE("daemon runtime: the latency histogram finds percentiles within 1/16", "[daemons]") {
  ipc::daemon::latency_histogram h;
  CHECK(h.percentile_ns(0.5) == 0);
  for (std::uint64_t i = 1; i <= 1000; ++i) h.add(i * 1000);  // 1 µs .. 1 ms
  CHECK(h.count() == 1000);
  const auto p50 = static_cast<double>(h.percentile_ns(0.50));
  const auto p99 = static_cast<double>(h.percentile_ns(0.99));
  CHECK(p50 >= 500'000 * 0.94);
  CHECK(p50 <= 500'000 * 1.07);
  CHECK(p99 >= 990'000 * 0.94);
  CHECK(p99 <= 990'000 * 1.07);
  h.add(0);
  h.add(UINT64_MAX);
  CHECK(h.percentile_ns(1.0) >= UINT64_MAX / 2);
  h.reset();
  CHECK(h.count() == 0);
}

TEST_CASE("daemon runtime: the sequence tracker counts gaps, duplicates and reorders per session", "[daemons]") {
  using v = ipc::daemon::sequence_tracker::verdict;
  ipc::daemon::sequence_tracker t;
  CHECK(t.add(1, 10) == v::in_order);  // first record of a session: the baseline, not loss
  CHECK(t.add(1, 11) == v::in_order);
  CHECK(t.add(1, 14) == v::gap);  // 12 and 13 missing
  CHECK(t.lost() == 2);
  CHECK(t.add(1, 12) == v::reordered);  // late, not lost after all
  CHECK(t.lost() == 1);
  CHECK(t.reordered() == 1);
  CHECK(t.add(1, 12) == v::duplicate);
  CHECK(t.add(1, 14) == v::duplicate);
  CHECK(t.duplicates() == 2);
  CHECK(t.add(2, 1) == v::in_order);  // a restarted producer is a new session, never loss
  CHECK(t.add(2, 2) == v::in_order);
  CHECK(t.add(1, 15) == v::in_order);  // the old session is still remembered
  CHECK(t.lost() == 1);
  CHECK(t.sessions() == 2);
}

TEST_CASE("daemon runtime: a work-queue consumer's tracker counts no gap, but duplicates and records going backwards",
          "[daemons]") {
  using v = ipc::daemon::sequence_tracker::verdict;
  ipc::daemon::sequence_tracker t(/*shared=*/true);
  CHECK(t.add(1, 3) == v::in_order);
  CHECK(t.add(1, 7) == v::gap);  // 4..6 went to other consumers
  CHECK(t.add(2, 1) == v::in_order);
  CHECK(t.add(2, 9) == v::gap);
  CHECK(t.lost() == 0);
  CHECK(t.add(1, 7) == v::duplicate);
  CHECK(t.add(1, 5) == v::reordered);  // a session's records reach one receiver in order: backwards is a fault
  CHECK(t.lost() == 0);
  CHECK(t.duplicates() == 1);
  CHECK(t.reordered() == 1);
}

TEST_CASE("daemon runtime: CLI options check ranges and a usage error exits 2", "[daemons]") {
  auto run = [](std::vector<const char*> argv, std::uint64_t& size, double& secs) {
    CLI::App app{"test", "prog"};
    ipc::daemon::add_common(app);
    ipc::daemon::add_size(app, "--size", size, 1, 1024, "bytes");
    ipc::daemon::add_seconds(app, "--interval", secs, 0.1, 10, "seconds");
    return ipc::daemon::parse(app, static_cast<int>(argv.size()), argv.data());
  };
  std::uint64_t size = 64;
  double secs = 1;
  CHECK_FALSE(run({"prog", "--size", "1K", "--interval=0.5"}, size, secs).has_value());
  CHECK(size == 1024);
  CHECK(secs == 0.5);
  CHECK(run({"prog", "--size", "1025"}, size, secs) == 2);
  CHECK(run({"prog", "--size", "18446744073709551615"}, size, secs) == 2);
  CHECK(run({"prog", "--size", "0"}, size, secs) == 2);
  CHECK(run({"prog", "--interval", "nan"}, size, secs) == 2);
  CHECK(run({"prog", "--interval", "11"}, size, secs) == 2);
  CHECK(run({"prog", "--nope"}, size, secs) == 2);
  CHECK(run({"prog", "stray"}, size, secs) == 2);
  CHECK(run({"prog", "--help"}, size, secs) == 0);
  CHECK(run({"prog", "--version"}, size, secs) == 0);
  CHECK(size == 1024);  // a refused value never lands
}

TEST_CASE("daemon runtime: the stats line round-trips through format and parse", "[daemons]") {
  ipc::daemon::stats_line s;
  s.role = "consumer";
  s.channel = "msgq:demo";
  s.pid = 4242;
  s.records = 123456789;
  s.bytes = 987654321012;
  s.rate = 150000;
  s.mbps = 9.625;
  s.lost = 1;
  s.dup = 2;
  s.reorder = 3;
  s.corrupt = 4;
  s.p50_us = 17;
  s.p99_us = 250;
  s.restarts = 5;
  s.session = 0xfedcba9876543210ULL;
  s.first_seq = 7;
  s.seq = 123456795;
  s.skipped = 6;
  s.final = true;
  const std::string text = s.format();
  CHECK_THAT(text, Catch::StartsWith("stats role=consumer channel=msgq:demo pid=4242 "));
  CHECK_THAT(text, Catch::EndsWith(" skipped=6 final=1"));  // final stays last
  auto back = ipc::daemon::stats_line::parse("<6>" + text + "\n");
  REQUIRE(back);
  CHECK(*back == s);
  CHECK(back->format() == text);
  // Readers ignore keys they do not know (the contract may grow) and refuse malformed values.
  CHECK(ipc::daemon::stats_line::parse(text + " future=1"));
  CHECK_FALSE(ipc::daemon::stats_line::parse("stats role=consumer pid=x"));
  CHECK_FALSE(ipc::daemon::stats_line::parse("stats channel=msgq:demo pid=1"));  // no role
  CHECK_FALSE(ipc::daemon::stats_line::parse("hello role=consumer pid=1"));
}

TEST_CASE("daemon runtime: status files are named after the channel and written whole", "[daemons]") {
  auto p = ipc::daemon::default_status_path("fifo:/tmp/a/b.fifo?mode=0600", "consumer");
  CHECK(p.filename() == "fifo-tmp_a_b.fifo.consumer.status");
  // A pipe pair is named by its producer's pid: the producer's own, the consumer's parent's.
  CHECK(ipc::daemon::default_status_path("pipe", "producer").filename() ==
        "pipe-" + std::to_string(::getpid()) + ".producer.status");
  CHECK(ipc::daemon::default_status_path("pipe:fd=3", "consumer").filename() ==
        "pipe-" + std::to_string(::getppid()) + ".consumer.status");
  CHECK(ipc::daemon::default_status_path("msgq:demo", "producer").filename() == "msgq-demo.producer.status");
  ipc::daemon::write_file_atomically(p, "one\n");
  ipc::daemon::write_file_atomically(p, "two\n");
  CHECK(read_file(p) == "two\n");
  std::filesystem::remove(p);
}

// ---- the programs -----------------------------------------------------------------------

TEST_CASE("daemons: --help exits 0 and a bad option exits 2", "[daemons]") {
  for (const auto& bin : {producer_bin, consumer_bin}) {
    auto h = spawn({bin, "--help"}).wait(30s);
    CHECK(h.exit_code == 0);
    CHECK_THAT(h.report, Catch::Contains("--channel"));
    auto bad = spawn({bin, "--channel", "msgq:x", "--bogus"}).wait(30s);
    CHECK(bad.exit_code == 2);
    CHECK_THAT(bad.report, Catch::Contains("<3>") && Catch::Contains("--bogus"));
    auto none = spawn({bin}).wait(30s);
    CHECK(none.exit_code == 2);
    auto uri = spawn({bin, "--channel", "nope:x"}).wait(30s);
    CHECK(uri.exit_code == 2);
  }
}

TEST_CASE("daemons: a consumer on a channel it cannot open exits 1", "[daemons]") {
  auto r = spawn({consumer_bin, "--channel", "fifo:/nonexistent-dir/x.fifo"}).wait(30s);
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.report, Catch::Contains("<3>"));
}

TEST_CASE("daemons: producer --count N and consumer --count N move every record intact", "[daemons]") {
  for (const auto& uri : channel_uris()) {
    INFO(uri);
    auto c = spawn({consumer_bin, "--channel", uri, "--count", "20000", "--stats-interval", "0"});
    auto p = spawn({producer_bin, "--channel", uri, "--count", "20000", "--rate", "0", "--stats-interval", "0"});
    auto pr = p.wait(120s);
    auto cr = c.wait(120s);
    INFO(pr.report);
    INFO(cr.report);
    CHECK(pr.exit_code == 0);
    REQUIRE(cr.exit_code == 0);
    auto kv = last_stats(cr.report, "consumer", true);
    check_clean(kv, 20000);
    auto sent = last_stats(pr.report, "producer", true);
    REQUIRE(sent);
    CHECK(sent->records == 20000);
    // The sequence span ipcctl counts loss from: the producer's session, 1 … 20000 on both sides.
    CHECK(sent->seq == 20000);
    CHECK(kv->first_seq == 1);
    CHECK(kv->seq == 20000);
    CHECK(kv->session == sent->session);
    CHECK(kv->session != 0);
    ipc::open_channel(uri, ipc::role::receiver)->remove();
  }
}

TEST_CASE("daemons: pipe producer spawns its consumer, which receives every record", "[daemons]") {
  auto sink = (ipc::runtime_dir() / (unique_name("sink") + ".txt")).string();
  auto p = spawn({producer_bin, "--channel", "pipe", "--count", "3000", "--rate", "0", "--size", "16", "--stats-interval", "0",
                  "--consumer-arg=--sink", "--consumer-arg=" + sink});
  auto pr = p.wait(120s);
  INFO(pr.report);
  REQUIRE(pr.exit_code == 0);
  check_clean(last_stats(pr.report, "consumer", true), 3000);
  auto sent = last_stats(pr.report, "producer", true);
  REQUIRE(sent);
  CHECK(sent->records == 3000);
  const auto text = read_file(sink);
  CHECK(std::count(text.begin(), text.end(), '\n') == 3000);
}

TEST_CASE("daemons: two pipe pairs running at once keep a status file each", "[daemons]") {
  auto a = spawn({producer_bin, "--channel", "pipe", "--rate", "100", "--stats-interval", "0.1", "--consumer-arg=--stats-interval",
                  "--consumer-arg=0.1"});
  auto b = spawn({producer_bin, "--channel", "pipe", "--rate", "100", "--stats-interval", "0.1", "--consumer-arg=--stats-interval",
                  "--consumer-arg=0.1"});
  // pids of the producers and of the consumers, as the pipe status files report them.
  auto seen = [&] {
    std::map<std::string, std::set<pid_t>> pids;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(ipc::runtime_dir() / "status", ec)) {
      if (auto s = last_stats(read_file(e.path()), {}, false, "pipe")) pids[s->role].insert(s->pid);
    }
    return pids;
  };
  const auto until = std::chrono::steady_clock::now() + 30s;
  auto pids = seen();
  while ((pids["producer"].size() < 2 || pids["consumer"].size() < 2) && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(20ms);
    pids = seen();
  }
  const std::set<pid_t> producers{a.pid(), b.pid()};
  a.kill(SIGTERM);
  b.kill(SIGTERM);
  auto ar = a.wait(30s);
  auto br = b.wait(30s);
  INFO(ar.report << br.report);
  CHECK(pids["producer"] == producers);
  CHECK(pids["consumer"].size() == 2);
  CHECK(ar.exit_code == 0);
  CHECK(br.exit_code == 0);
}

TEST_CASE("daemons: --source sends the lines of a file and the sink gets them back", "[daemons]") {
  const auto dir = ipc::runtime_dir();
  const auto src = (dir / (unique_name("src") + ".txt")).string();
  const auto sink = (dir / (unique_name("sink") + ".txt")).string();
  std::string lines;
  for (int i = 0; i < 500; ++i) lines += "line number " + std::to_string(i) + "\n";
  std::ofstream(src) << lines;
  const auto uri = "fifo:" + unique_name("src") + ".fifo";
  auto c = spawn({consumer_bin, "--channel", uri, "--count", "500", "--sink", sink, "--stats-interval", "0"});
  auto p = spawn({producer_bin, "--channel", uri, "--source", src, "--rate", "0", "--stats-interval", "0"});
  auto pr = p.wait(60s);
  auto cr = c.wait(60s);
  INFO(pr.report << cr.report);
  CHECK(pr.exit_code == 0);
  REQUIRE(cr.exit_code == 0);
  CHECK(read_file(sink) == lines);
}

TEST_CASE("daemons: a consumer killed mid-stream is replaced and the pair recovers", "[daemons]") {
  for (const auto& uri : channel_uris()) {
    INFO(uri);
    const auto status = (ipc::runtime_dir() / (unique_name("st") + ".status")).string();
    auto p = spawn({producer_bin, "--channel", uri, "--rate", "2000", "--stats-interval", "0.2"});
    auto c1 = spawn({consumer_bin, "--channel", uri, "--stats-interval", "0.1", "--status-file", status});
    const long pid1 = wait_status(status, -1, 30s);
    REQUIRE(pid1 > 0);
    c1.kill(SIGKILL);
    auto r1 = c1.wait(30s);
    CHECK(r1.signal == SIGKILL);
    auto c2 = spawn({consumer_bin, "--channel", uri, "--count", "500", "--stats-interval", "0"});
    auto r2 = c2.wait(60s);
    INFO(r2.report);
    CHECK(r2.exit_code == 0);
    check_clean(last_stats(r2.report, "consumer", true), 500);
    p.kill(SIGTERM);
    auto pr = p.wait(30s);
    INFO(pr.report);
    CHECK(pr.exit_code == 0);
    CHECK(last_stats(pr.report, "producer", true));
    ipc::open_channel(uri, ipc::role::receiver)->remove();
  }
}

TEST_CASE("daemons: a pipe consumer that dies is restarted by its producer", "[daemons]") {
  const auto status = (ipc::runtime_dir() / (unique_name("st") + ".status")).string();
  auto p = spawn({producer_bin, "--channel", "pipe", "--rate", "2000", "--stats-interval", "0.2", "--consumer-arg=--stats-interval",
                  "--consumer-arg=0.1", "--consumer-arg=--status-file", "--consumer-arg=" + status});
  const long pid1 = wait_status(status, -1, 30s);
  REQUIRE(pid1 > 0);
  REQUIRE(::kill(static_cast<pid_t>(pid1), SIGKILL) == 0);
  const long pid2 = wait_status(status, pid1, 30s);  // a new consumer reports records
  CHECK(pid2 > 0);
  CHECK(pid2 != pid1);
  p.kill(SIGTERM);
  auto pr = p.wait(30s);
  INFO(pr.report);
  CHECK(pr.exit_code == 0);
  auto kv = last_stats(pr.report, "producer", true);
  REQUIRE(kv);
  CHECK(kv->restarts >= 1);
  // The last consumer got the forwarded SIGTERM and drained cleanly.
  CHECK(last_stats(pr.report, "consumer", true));
}

TEST_CASE("daemons: SIGHUP loses no record: queues re-attach, a fifo keeps its stream", "[daemons]") {
  // A broadcast subscriber keeps its place across SIGHUP: a new subscriber would start at the next
  // message published and lose what came in between (~2 records per SIGHUP at this rate).
  for (const auto& uri : {"msgq:" + unique_name("hup"), "sem:" + unique_name("hup"), "shm:" + unique_name("hup"),
                          "shm:" + unique_name("hup") + "?mode=mpmc", "shm:" + unique_name("hup") + "?mode=broadcast",
                          "fifo:" + unique_name("hup") + ".fifo"}) {
    INFO(uri);
    const bool stream = uri.starts_with("fifo:");
    const std::string n = "60000";
    auto c = spawn({consumer_bin, "--channel", uri, "--count", n, "--stats-interval", "0.1"});
    REQUIRE(c.wait_for_line("final=0", 30s));  // its signal handlers are in place
    auto p = spawn({producer_bin, "--channel", uri, "--count", n, "--rate", "20000", "--stats-interval", "0"});
    // Records arrive every 50 us, so each reopen races with a message the receiver already holds.
    for (int i = 0; i < 8; ++i) {
      std::this_thread::sleep_for(200ms);
      c.kill(SIGHUP);
    }
    auto pr = p.wait(120s);
    // A consumer that dropped a record waits for ever for its last one: stop it, read its figures.
    if (!c.wait_for_line(std::string(" final=1"), 30s)) c.kill(SIGTERM);
    auto cr = c.wait(30s);
    INFO(pr.report << cr.report);
    CHECK(pr.exit_code == 0);
    auto kv = last_stats(cr.report, "consumer", true);
    check_clean(kv, std::stoull(n));
    CHECK(cr.exit_code == 0);
    if (stream) {
      CHECK(kv->restarts == 0);  // the byte stream was kept, not re-opened
    } else {
      CHECK(kv->restarts >= 8);  // every SIGHUP re-attached the channel
    }
    ipc::open_channel(uri, ipc::role::receiver)->remove();
  }
}

TEST_CASE("daemons: SIGTERM drains the backlog in the channel and both sides exit 0", "[daemons]") {
  // 1-byte records and channels large enough for a backlog of more than the 256 records one receive
  // completion takes (a msgq holds msgmnb = 16384 bytes: ~400 of them). sem builds no backlog: the
  // stopped consumer's semtimedop({full -1, mutex -1}) is completed by the kernel on its behalf when
  // the first record arrives, so it holds the mutex while stopped; its one record must still arrive.
  const std::pair<std::string, std::uint64_t> channels[] = {{"fifo:" + unique_name("d") + ".fifo", 257},
                                                            {"msgq:" + unique_name("d"), 257},
                                                            {"sem:" + unique_name("d"), 1},
                                                            {"shm:" + unique_name("d"), 257}};
  for (const auto& [uri, backlog] : channels) {
    INFO(uri);
    auto c = spawn({consumer_bin, "--channel", uri, "--stats-interval", "0.1"});
    REQUIRE(c.wait_for_line("final=0", 30s));
    // The consumer sleeps while the producer fills the channel, then stops.
    REQUIRE(c.kill(SIGSTOP));
    auto p = spawn({producer_bin, "--channel", uri, "--size", "1", "--rate", "0", "--stats-interval", "0"});
    std::this_thread::sleep_for(1s);
    p.kill(SIGTERM);
    auto pr = p.wait(30s);
    // Woken and told to stop at once: only the drain can take the backlog.
    c.kill(SIGCONT);
    c.kill(SIGTERM);
    auto cr = c.wait(30s);
    INFO(pr.report << cr.report);
    CHECK(pr.exit_code == 0);
    CHECK(cr.exit_code == 0);
    auto sent = last_stats(pr.report, "producer", true);
    REQUIRE(sent);
    CHECK(sent->records >= backlog);
    check_clean(last_stats(cr.report, "consumer", true), sent->records);
    ipc::open_channel(uri, ipc::role::receiver)->remove();
  }
}

TEST_CASE("daemons: sd_notify READY, WATCHDOG at half WATCHDOG_USEC, STATUS and STOPPING", "[daemons]") {
  const auto uri = "fifo:" + unique_name("n") + ".fifo";
  for (const auto& bin : {consumer_bin, producer_bin}) {
    INFO(bin);
    notify_listener n;
    auto d = spawn({bin, "--channel", uri, "--stats-interval", "0.2"}, {"NOTIFY_SOCKET=" + n.path(), "WATCHDOG_USEC=200000"});
    n.collect(30s, [&] { return n.has("READY=1"); });
    REQUIRE(n.has("READY=1"));
    const auto ready_at = n.got.back().at;
    n.collect(2s, [&] { return std::chrono::steady_clock::now() - ready_at >= 500ms; });
    int pings = 0;
    for (const auto& m : n.got) pings += m.text == "WATCHDOG=1" && m.at - ready_at <= 520ms ? 1 : 0;
    CHECK(pings >= 3);
    CHECK(pings <= 8);
    n.collect(5s, [&] { return n.has("STATUS="); });
    CHECK(n.has("STATUS=records="));
    d.kill(SIGTERM);
    n.collect(10s, [&] { return n.has("STOPPING=1"); });
    CHECK(n.has("STOPPING=1"));
    auto r = d.wait(30s);
    INFO(r.report);
    CHECK(r.exit_code == 0);
  }
}
