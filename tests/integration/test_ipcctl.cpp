// ipcctl as a user runs it: fork+exec of the built program (build/daemons/ipcctl/ipcctl) against
// real kernel objects in this test process's runtime directory (tests/main.cpp sets IPC_RUNTIME_DIR).
#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <ipc/channel.hpp>
#include <ipc/uri.hpp>

#include "detail/sysv_key.hpp"

#include <signal.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

const std::string ipcctl_path = ipc::test::build_path("daemons/ipcctl/ipcctl");

ipc::test::child_result ipcctl(std::vector<std::string> args, std::chrono::milliseconds timeout = 30s) {
  args.insert(args.begin(), ipcctl_path);
  return ipc::test::spawn(args).wait(timeout);
}

// The line of `text` that has every one of `words` as a whitespace-separated field.
std::string line_with(const std::string& text, const std::vector<std::string>& words) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    std::istringstream f(line);
    std::vector<std::string> fields;
    for (std::string w; f >> w;) fields.push_back(w);
    bool all = true;
    for (const auto& w : words) all = all && std::find(fields.begin(), fields.end(), w) != fields.end();
    if (all) return line;
  }
  return {};
}

std::vector<std::string> fields_of(const std::string& line) {
  std::istringstream f(line);
  std::vector<std::string> v;
  for (std::string w; f >> w;) v.push_back(w);
  return v;
}

// A message queue made the way the toolkit makes one: key file NAME.msgq in the runtime directory.
int make_queue(const std::string& name) {
  key_t key = ipc::detail::sysv_key(ipc::runtime_dir() / (name + ".msgq"), 'M', true);  // msg_queue.cpp's proj id
  return ::msgget(key, IPC_CREAT | 0600);
}

bool queue_exists(int id) {
  msqid_ds ds{};
  return ::msgctl(id, IPC_STAT, &ds) == 0;
}

}  // namespace

TEST_CASE("ipcctl: bad arguments exit with status 2 and say what was wrong", "[ipcctl]") {
  struct bad_case {
    std::vector<std::string> args;
    std::string says;
  };
  const std::vector<bad_case> cases = {
      {{}, "subcommand is required"},
      {{"frobnicate"}, "unknown command"},
      {{"launch"}, "channel is required"},
      {{"launch", "carrier-pigeon"}, "not in {pipe,fifo,msgq,sem,shm,all}"},
      {{"launch", "msgq", "shm"}, "not expected: shm"},
      {{"launch", "msgq", "--duration"}, "required SEC missing"},
      {{"launch", "msgq", "--duration", "soon"}, "not a number"},
      {{"launch", "msgq", "--rate", "-5"}, "not a non-negative integer"},
      {{"launch", "msgq", "--rate", "2.5"}, "not a non-negative integer"},
      {{"launch", "msgq", "--size", "0"}, "outside [1, 1048576]"},
      {{"launch", "msgq", "--size", "18446744073709551616"}, "not a size"},
      {{"launch", "msgq", "--size", "70000"}, "exceeds msgq's largest message"},
      {{"launch", "msgq", "--prefix", "../etc"}, "plain name"},
      {{"launch", "msgq", "--colour", "blue"}, "not expected"},
      {{"status", "now"}, "not expected: now"},
      {{"list", "-l"}, "not expected: -l"},
      {{"rm"}, "object is required"},
      {{"rm", "a", "b"}, "not expected: b"},
      {{"gc", "--force"}, "not expected: --force"},
  };
  for (const auto& c : cases) {
    auto r = ipcctl(c.args);
    INFO("ipcctl " << Catch::Detail::stringify(c.args) << "\n" << r.report);
    CHECK(r.exit_code == 2);
    CHECK(r.report.find(c.says) != std::string::npos);
  }
}

TEST_CASE("ipcctl: --help lists every command and the exit statuses", "[ipcctl]") {
  auto r = ipcctl({"--help"});
  REQUIRE(r.exit_code == 0);
  for (const char* w : {"launch", "status", "list", "rm", "gc", "--dry-run", "Exit status", "3 launch saw"}) {
    INFO(w);
    CHECK(r.report.find(w) != std::string::npos);
  }
}

TEST_CASE("ipcctl: list shows a live process's queue and gc keeps it", "[ipcctl]") {
  const auto name = ipc::test::unique_name("live");
  int id = make_queue(name);
  REQUIRE(id >= 0);
  // We send: lspid is this (running) process.
  struct {
    long mtype = 1;
    char text[4] = "hi";
  } msg;
  REQUIRE(::msgsnd(id, &msg, sizeof msg.text, 0) == 0);

  auto l = ipcctl({"list"});
  INFO(l.report);
  REQUIRE(l.exit_code == 0);
  auto row = fields_of(line_with(l.report, {"msgq", name}));
  REQUIRE(!row.empty());
  CHECK(line_with(l.report, {"msgq", name, std::to_string(::getpid()), "keep"}) != "");
  CHECK(line_with(l.report, {"msgq", name, "0600"}) != "");  // /proc/sysvipc prints perms in octal

  auto g = ipcctl({"gc", "--prefix", name});
  INFO(g.report);
  CHECK(g.exit_code == 0);
  CHECK(g.report.find(name) == std::string::npos);
  CHECK(queue_exists(id));
  ::msgctl(id, IPC_RMID, nullptr);
}

TEST_CASE("ipcctl: a queue left by a killed process is listed stale, gc --dry-run keeps it, gc removes it",
          "[ipcctl]") {
  const auto name = ipc::test::unique_name("stale");
  auto c = ipc::test::fork_child([&](ipc::test::reporter& r) {
    auto ch = ipc::open_channel("msgq:" + name, ipc::role::sender);
    ch->send(ipc::as_bytes("left behind"));
    r.say("ready");
    for (;;) ::pause();
    return 0;
  });
  const bool ready = c.wait_for_line("ready", 10s);
  const std::string dead_pid = std::to_string(c.pid());
  c.kill(SIGKILL);
  auto res = c.wait(10s);
  INFO(res.report);
  REQUIRE(ready);
  REQUIRE(res.signal == SIGKILL);

  auto l = ipcctl({"list"});
  INFO(l.report);
  REQUIRE(l.exit_code == 0);
  const auto row = line_with(l.report, {"msgq", name});
  REQUIRE(!row.empty());
  CHECK(line_with(l.report, {"msgq", name, dead_pid, "no", "stale"}) != "");

  auto dry = ipcctl({"gc", "--dry-run", "--prefix", name});
  INFO(dry.report);
  CHECK(dry.exit_code == 0);
  CHECK(line_with(dry.report, {"would", "remove", "msgq"}).find(name) != std::string::npos);
  CHECK(line_with(ipcctl({"list"}).report, {"msgq", name}) != "");

  auto gc = ipcctl({"gc", "--prefix", name});
  INFO(gc.report);
  CHECK(gc.exit_code == 0);
  CHECK(line_with(gc.report, {"removed", "msgq"}).find(name) != std::string::npos);
  CHECK(line_with(ipcctl({"list"}).report, {"msgq", name}) == "");
  CHECK_FALSE(fs::exists(ipc::runtime_dir() / (name + ".msgq")));
}

TEST_CASE("ipcctl: a System V segment whose creator died unattached is collected, an attached one is kept",
          "[ipcctl]") {
  const auto dead_name = ipc::test::unique_name("seg-dead");
  const auto held_name = ipc::test::unique_name("seg-held");
  auto c = ipc::test::fork_child([&](ipc::test::reporter& r) {
    for (const auto& n : {dead_name, held_name}) {
      key_t key = ipc::detail::sysv_key(ipc::runtime_dir() / (n + ".shm"), 'S', true);
      if (::shmget(key, 4096, IPC_CREAT | 0600) < 0) return 1;
    }
    r.say("ready");
    return 0;
  });
  auto res = c.wait(10s);
  INFO(res.report);
  REQUIRE(res.exit_code == 0);
  // This process attaches the second segment: its creator is dead but it is in use.
  key_t held_key = ipc::detail::sysv_key(ipc::runtime_dir() / (held_name + ".shm"), 'S', false);
  int held_id = ::shmget(held_key, 0, 0);
  REQUIRE(held_id >= 0);
  void* p = ::shmat(held_id, nullptr, SHM_RDONLY);
  REQUIRE(p != reinterpret_cast<void*>(-1));

  auto l = ipcctl({"list"});
  INFO(l.report);
  CHECK(line_with(l.report, {"sysv-shm", dead_name, "no", "0", "stale"}) != "");
  CHECK(line_with(l.report, {"sysv-shm", held_name, "no", "1", "keep"}) != "");

  auto gc = ipcctl({"gc", "--prefix", "seg-"});
  INFO(gc.report);
  CHECK(gc.exit_code == 0);
  CHECK(gc.report.find(dead_name) != std::string::npos);
  CHECK(gc.report.find(held_name) == std::string::npos);
  CHECK(::shmget(held_key, 0, 0) == held_id);
  ::shmdt(p);
  ::shmctl(held_id, IPC_RMID, nullptr);
}

TEST_CASE("ipcctl: rm removes a queue and its key file; a missing or ambiguous name is an error", "[ipcctl]") {
  const auto name = ipc::test::unique_name("rm");
  int id = make_queue(name);
  REQUIRE(id >= 0);
  // A FIFO of the same name makes a bare NAME ambiguous.
  const auto fifo = ipc::runtime_dir() / name;
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);

  auto amb = ipcctl({"rm", name});
  INFO(amb.report);
  CHECK(amb.exit_code == 1);
  CHECK(amb.report.find("several objects") != std::string::npos);
  CHECK(queue_exists(id));

  auto r = ipcctl({"rm", "msgq:" + name});
  INFO(r.report);
  CHECK(r.exit_code == 0);
  CHECK(r.report.find("removed msgq") != std::string::npos);
  CHECK_FALSE(queue_exists(id));
  CHECK_FALSE(fs::exists(ipc::runtime_dir() / (name + ".msgq")));
  CHECK(fs::exists(fifo));

  auto f = ipcctl({"rm", "fifo:" + name});
  CHECK(f.exit_code == 0);
  CHECK_FALSE(fs::exists(fifo));

  auto again = ipcctl({"rm", "msgq:" + name});
  INFO(again.report);
  CHECK(again.exit_code == 1);
  CHECK(again.report.find("no toolkit object named") != std::string::npos);
}

TEST_CASE("ipcctl: status shows a running daemon's figures and marks a dead one; gc removes the dead file",
          "[ipcctl]") {
  const auto dir = ipc::runtime_dir() / "status";
  fs::create_directories(dir);
  // A pid that ran and is gone: a child we reaped.
  auto c = ipc::test::fork_child([](ipc::test::reporter&) { return 0; });
  const pid_t dead = c.pid();
  REQUIRE(c.wait(10s).exit_code == 0);
  const auto live_name = ipc::test::unique_name("st-live");
  const auto dead_name = ipc::test::unique_name("st-dead");
  {
    std::ofstream(dir / ("msgq-" + live_name + ".consumer.status"))
        << "stats role=consumer channel=msgq:" << live_name << " pid=" << ::getpid()
        << " records=4242 bytes=271488 rate=1000 mbps=0.064 lost=0 dup=0 reorder=0 corrupt=0 p50_us=12 p99_us=80"
           " restarts=0 final=0\n";
    std::ofstream(dir / ("msgq-" + dead_name + ".producer.status"))
        << "stats role=producer channel=msgq:" << dead_name << " pid=" << dead
        << " records=17 bytes=1088 rate=0 mbps=0 lost=0 dup=0 reorder=0 corrupt=0 p50_us=0 p99_us=0 restarts=0 final=0\n";
  }
  auto s = ipcctl({"status"});
  INFO(s.report);
  CHECK(s.exit_code == 0);
  CHECK(line_with(s.report, {"msgq:" + live_name, "consumer", std::to_string(::getpid()), "running", "4242"}) != "");
  CHECK(line_with(s.report, {"msgq:" + dead_name, "producer", std::to_string(dead), "dead", "17"}) != "");

  auto gc = ipcctl({"gc", "--prefix", "st-"});
  INFO(gc.report);
  CHECK(gc.exit_code == 0);
  CHECK(fs::exists(dir / ("msgq-" + live_name + ".consumer.status")));
  CHECK_FALSE(fs::exists(dir / ("msgq-" + dead_name + ".producer.status")));
}

TEST_CASE("ipcctl: launch moves records on each channel with none lost or corrupt", "[ipcctl]") {
  const std::string kind = GENERATE(as<std::string>{}, "pipe", "fifo", "msgq", "sem", "shm");
  const auto prefix = ipc::test::unique_name("launch");
  auto r = ipcctl({"launch", kind, "--duration", "2", "--rate", "2000", "--interval", "0.5", "--prefix", prefix}, 90s);
  INFO("launch " << kind << "\n" << r.report);
  CHECK_FALSE(r.timed_out);
  CHECK(r.exit_code == 0);
  const std::string uri = kind == "pipe" ? "pipe" : kind + ":" + prefix + "-" + kind;
  // summary columns: channel sent received rec/s MB/s p50 p99 lost dup reord corrupt restarts state
  const auto at = r.report.find("summary (");
  REQUIRE(at != std::string::npos);
  const std::string summary = r.report.substr(at);
  auto row = fields_of(line_with(summary, {uri}));
  REQUIRE(row.size() >= 13);
  CHECK(std::stoull(row[1]) > 0);
  CHECK(std::stoull(row[2]) > 0);
  CHECK(row[2] == row[1]);
  CHECK(row[7] == "0");
  CHECK(row[8] == "0");
  CHECK(row[9] == "0");
  CHECK(row[10] == "0");
  CHECK(r.report.find("ok: every record arrived") != std::string::npos);
  // Its objects are gone afterwards.
  auto l = ipcctl({"list"});
  CHECK(l.report.find(prefix) == std::string::npos);
}

TEST_CASE("ipcctl: launch reports what a killed consumer took with it as lost, and exits 3 for it", "[ipcctl]") {
  const std::string kind = GENERATE(as<std::string>{}, "fifo", "msgq");
  const auto prefix = ipc::test::unique_name("kill");
  auto c = ipc::test::spawn({ipcctl_path, "launch", kind, "--duration", "3", "--rate", "20000", "--interval", "0.2",
                             "--prefix", prefix});
  // The consumer's status file names its pid once it has handled records.
  const auto status = ipc::runtime_dir() / "status" / (kind + "-" + prefix + "-" + kind + ".consumer.status");
  pid_t victim = -1;
  for (auto until = std::chrono::steady_clock::now() + 30s; victim < 0 && std::chrono::steady_clock::now() < until;) {
    std::ifstream f(status);
    std::string line;
    std::getline(f, line);
    auto fields = fields_of(line);
    const bool moving = std::find_if(fields.begin(), fields.end(), [](const std::string& w) {
                          return w.starts_with("records=") && w != "records=0";
                        }) != fields.end();
    for (const auto& w : fields) {
      if (moving && w.starts_with("pid=")) victim = static_cast<pid_t>(std::stol(w.substr(4)));
    }
    if (victim < 0) std::this_thread::sleep_for(20ms);
  }
  REQUIRE(victim > 0);
  REQUIRE(::kill(victim, SIGKILL) == 0);
  auto r = c.wait(90s);
  INFO("launch " << kind << "\n" << r.report);
  CHECK_FALSE(r.timed_out);
  const auto at = r.report.find("summary (");
  REQUIRE(at != std::string::npos);
  // summary columns: channel sent received rec/s MB/s p50 p99 lost dup reord corrupt restarts state
  auto row = fields_of(line_with(r.report.substr(at), {kind + ":" + prefix + "-" + kind}));
  REQUIRE(row.size() >= 13);
  const auto sent = std::stoull(row[1]), received = std::stoull(row[2]), lost = std::stoull(row[7]),
             dup = std::stoull(row[8]);
  CHECK(sent > 0);
  // Every record sent is accounted for: received, or reported lost (what the killed consumer held or
  // handled after its last stats line); never hidden.
  CHECK(sent + dup == received + lost);
  CHECK(row[11] == "1");  // one process restarted, however many channels were reopened for it
  if (lost + dup > 0) {
    CHECK(r.exit_code == 3);
    CHECK(r.report.find("ok: every record arrived") == std::string::npos);
    CHECK(r.report.find("FAILED " + kind) != std::string::npos);
  } else {
    CHECK(r.exit_code == 0);
  }
}
