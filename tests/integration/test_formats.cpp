// The daemons' payload formats and command-line conventions, run as users run them (fork+exec of
// the real binaries): plain peers - a Python sysv_ipc client, echo and cat - feed and read the
// daemons in raw and lines format; a record consumer leaves another program's messages alone;
// -V prints the version; every error line names its program; a format that cannot travel over a
// channel is refused before anything is made. Each test process has its own IPC_RUNTIME_DIR.
#include "format.hpp"
#include "ipc_version.hpp"
#include "daemon_paths.hpp"
#include "test_support.hpp"

#include <ipc/msg_queue.hpp>
#include <ipc/record.hpp>
#include <ipc/uri.hpp>

#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
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
using ipc::test::bridge_bin;
using ipc::test::ipcctl_bin;

// A Python sysv_ipc client: "send KEY TEXT…" sends each TEXT as one plain message (mtype 1);
// "receive KEY N" prints N messages as "TYPE BODY", waiting at most 20 s; exit 1 if fewer came.
const std::string python_client = R"(
import sys, time, sysv_ipc
q = sysv_ipc.MessageQueue(int(sys.argv[2]))
if sys.argv[1] == "send":
    for text in sys.argv[3:]:
        q.send(text.encode())
    sys.exit(0)
want, got, deadline = int(sys.argv[3]), 0, time.monotonic() + 20
while got < want and time.monotonic() < deadline:
    try:
        body, mtype = q.receive(block=False)
    except sysv_ipc.BusyError:
        time.sleep(0.01)
        continue
    print(mtype, body.decode(), flush=True)
    got += 1
sys.exit(0 if got == want else 1)
)";

// The report's payload lines: everything that is not a log line ("<N>…").
std::vector<std::string> payload_lines(const std::string& report) {
  std::vector<std::string> out;
  std::istringstream in(report);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line.front() != '<') out.push_back(line);
  }
  return out;
}

std::set<std::string> runtime_tree() {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::recursive_directory_iterator(ipc::runtime_dir(), ec)) out.insert(e.path().string());
  return out;
}

bool wait_for_path(const std::filesystem::path& p, std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (std::filesystem::exists(p)) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

}  // namespace

TEST_CASE("formats: a Python sysv_ipc client's plain messages come out of ipc-consumer --format raw --sink -", "[formats]") {
  const std::string name = unique_name("py-in");
  ipc::msg_queue q(name);
  auto send = spawn({"/usr/bin/python3", "-c", python_client, "send", std::to_string(q.key()), "hello 1", "hello 2", "hello 3"}).wait(30s);
  INFO(send.report);
  REQUIRE(send.exit_code == 0);

  auto r = spawn({consumer_bin, "--channel", "msgq:" + name, "--format", "raw", "--sink", "-", "--count", "3", "--stats-interval", "0"})
               .wait(30s);
  INFO(r.report);
  CHECK(r.exit_code == 0);
  CHECK(payload_lines(r.report) == std::vector<std::string>{"hello 1", "hello 2", "hello 3"});
  CHECK(q.stats().messages == 0);
  q.remove();
}

TEST_CASE("formats: a Python sysv_ipc client reads what ipc-producer --format raw sends: the payload, no header", "[formats]") {
  const std::string name = unique_name("py-out");
  ipc::msg_queue q(name);
  auto p = spawn({producer_bin, "--channel", "msgq:" + name, "--format", "raw", "--size", "16", "--count", "3", "--rate", "0",
                  "--stats-interval", "0"})
               .wait(30s);
  INFO(p.report);
  REQUIRE(p.exit_code == 0);

  auto r = spawn({"/usr/bin/python3", "-c", python_client, "receive", std::to_string(q.key()), "3"}).wait(30s);
  INFO(r.report);
  CHECK(r.exit_code == 0);
  // The producer's pattern: 16 letters from a moving offset, sent under the URI's default mtype 1.
  CHECK(r.report == "1 bcdefghijklmnopq\n1 cdefghijklmnopqr\n1 defghijklmnopqrs\n");
  q.remove();
}

TEST_CASE("formats: the Python decoder in docs/formats.md decodes what ipc-producer sends, leaving other messages", "[formats]") {
  // The ```python block of docs/formats.md, run as it is printed there.
  std::ifstream doc(std::string(IPC_TEST_SOURCE_DIR) + "/docs/formats.md");
  std::string decoder, line;
  bool in_block = false;
  while (std::getline(doc, line)) {
    if (line == "```python") in_block = true;
    else if (in_block && line == "```") break;
    else if (in_block) decoder += line + "\n";
  }
  REQUIRE_THAT(decoder, Catch::Contains("def decode_record"));

  const std::string name = unique_name("py-dec");
  ipc::msg_queue q(name);
  q.send(7, ipc::as_bytes("someone else's"));
  auto p = spawn({producer_bin, "--channel", "msgq:" + name, "--size", "5", "--count", "3", "--rate", "0", "--stats-interval", "0"})
               .wait(30s);
  INFO(p.report);
  REQUIRE(p.exit_code == 0);
  auto r = spawn({"/usr/bin/timeout", "20", "/usr/bin/python3", "-c", decoder, std::to_string(q.key()), "3"}).wait(30s);
  INFO(r.report);
  CHECK(r.exit_code == 0);
  const auto lines = payload_lines(r.report);
  REQUIRE(lines.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) {
    INFO(lines[i]);
    CHECK(lines[i].size() == 16 + 1 + 1 + 1 + 5);  // session, sequence 1..3, the 5-letter payload
    CHECK(lines[i].substr(17, 2) == std::to_string(i + 1) + " ");
  }
  CHECK(q.stats().messages == 1);  // the type-7 message is still there
  q.remove();
}

TEST_CASE("formats: echo into a framing=lines FIFO comes out of ipc-consumer --format lines, line by line", "[formats]") {
  const std::string name = unique_name("echo") + ".fifo";
  const auto path = ipc::runtime_dir() / name;
  auto c = spawn({consumer_bin, "--channel", "fifo:" + name + "?framing=lines", "--format", "lines", "--sink", "-", "--count", "3",
                  "--stats-interval", "0"});
  REQUIRE(wait_for_path(path, 20s));
  auto echo = spawn({"/bin/sh", "-c", "{ echo one; echo 'two words'; printf 'three\\n'; } > \"$0\"", path.string()}).wait(30s);
  INFO(echo.report);
  CHECK(echo.exit_code == 0);
  auto r = c.wait(30s);
  INFO(r.report);
  CHECK(r.exit_code == 0);
  CHECK(payload_lines(r.report) == std::vector<std::string>{"one", "two words", "three"});
  std::filesystem::remove(path);
}

TEST_CASE("formats: cat reads what ipc-producer --format lines sends over a framing=lines FIFO", "[formats]") {
  const std::string name = unique_name("cat") + ".fifo";
  const auto path = ipc::runtime_dir() / name;
  const auto source = ipc::runtime_dir() / (name + ".txt");
  std::ofstream(source) << "alpha\nbeta gamma\n\ndelta\n";
  auto p = spawn({producer_bin, "--channel", "fifo:" + name + "?framing=lines", "--format", "lines", "--source", source.string(),
                  "--rate", "0", "--stats-interval", "0"});
  REQUIRE(wait_for_path(path, 20s));
  auto cat = spawn({"/usr/bin/timeout", "20", "/bin/cat", path.string()}).wait(30s);
  auto pr = p.wait(30s);
  INFO(pr.report);
  INFO(cat.report);
  CHECK(pr.exit_code == 0);
  CHECK(cat.exit_code == 0);
  CHECK(cat.report == "alpha\nbeta gamma\n\ndelta\n");
  std::filesystem::remove(path);
  std::filesystem::remove(source);
}

TEST_CASE("formats: a record consumer on a msgq takes only the record mtype and leaves a foreign message untouched", "[formats]") {
  const std::string name = unique_name("foreign");
  ipc::msg_queue q(name);
  q.send(1, ipc::as_bytes("not a record"));
  auto p = spawn({producer_bin, "--channel", "msgq:" + name, "--count", "5", "--rate", "0", "--stats-interval", "0"}).wait(30s);
  INFO(p.report);
  REQUIRE(p.exit_code == 0);
  REQUIRE(q.stats().messages == 6);

  // Records travel under the documented mtype.
  std::vector<std::byte> buf;
  auto first = q.try_receive(ipc::msg_selector::exact(ipc::daemon::record_mtype), buf);
  REQUIRE(first);
  CHECK(ipc::decode(std::span<const std::byte>(buf.data(), first->size)).header.sequence == 1);

  auto c = spawn({consumer_bin, "--channel", "msgq:" + name, "--count", "4", "--stats-interval", "0"}).wait(30s);
  INFO(c.report);
  CHECK(c.exit_code == 0);  // nothing corrupt, nothing lost
  CHECK_THAT(c.report, Catch::Contains(" records=4 ") && Catch::Contains(" corrupt=0 "));

  // The other program's message is still there, as it was sent.
  REQUIRE(q.stats().messages == 1);
  auto left = q.try_receive(ipc::msg_selector::any(), buf);
  REQUIRE(left);
  CHECK(left->type == 1);
  CHECK(std::string(reinterpret_cast<const char*>(buf.data()), left->size) == "not a record");
  q.remove();
}

TEST_CASE("formats: a record consumer counts and reports every message that is not a record", "[formats]") {
  const std::string name = unique_name("junk");
  ipc::msg_queue q(name);
  for (int i = 0; i < 5; ++i) q.send(ipc::daemon::record_mtype, ipc::as_bytes("junk"));
  auto p = spawn({producer_bin, "--channel", "msgq:" + name, "--count", "2", "--rate", "0", "--stats-interval", "0"}).wait(30s);
  REQUIRE(p.exit_code == 0);
  auto c = spawn({consumer_bin, "--channel", "msgq:" + name, "--count", "2", "--stats-interval", "0"}).wait(30s);
  INFO(c.report);
  CHECK(c.exit_code == 3);  // anomalies
  CHECK_THAT(c.report, Catch::Contains(" records=2 ") && Catch::Contains(" corrupt=5 "));
  CHECK_THAT(c.report, Catch::Contains("5 message(s) were not valid records (2 not logged one by one)"));
  q.remove();
}

TEST_CASE("formats: -V and --version print the program's name and the meson version", "[formats]") {
  for (const auto& [bin, name] : std::vector<std::pair<std::string, std::string>>{
           {producer_bin, "ipc-producer"}, {consumer_bin, "ipc-consumer"}, {bridge_bin, "ipc-bridge"}, {ipcctl_bin, "ipcctl"}}) {
    for (const char* flag : {"-V", "--version"}) {
      INFO(name << " " << flag);
      auto r = spawn({bin, flag}).wait(30s);
      CHECK(r.exit_code == 0);
      CHECK(r.report == name + " " + ipc::daemon::version_text + "\n");
    }
  }
}

TEST_CASE("formats: every error line starts with the program's name, and usage errors exit 2", "[formats]") {
  const std::string name = unique_name("prefix");
  struct bad_case {
    std::string program;
    std::vector<std::string> argv;
    int exit_code;
    std::vector<std::string> env = {};
  };
  const std::vector<bad_case> cases = {
      {"ipc-producer", {producer_bin}, 2},
      {"ipc-producer", {producer_bin, "--channel", "msgq:" + name, "--bogus"}, 2},
      {"ipc-producer", {producer_bin, "--channel", "nope:" + name}, 2},
      {"ipc-producer", {producer_bin, "--channel", "msgq:" + name + "?bogus=1"}, 2},
      {"ipc-producer", {producer_bin, "--channel", "msgq:../" + name}, 2},
      {"ipc-producer", {producer_bin, "--channel", "msgq:" + name, "--format", "json"}, 2},
      {"ipc-producer", {producer_bin, "--channel", "msgq:" + name, "--source", "/nonexistent/file"}, 2},
      {"ipc-producer", {producer_bin, "--channel", "msgq:" + name}, 1, {"IPC_RUNTIME_DIR=/tmp"}},  // not ours: world-writable
      {"ipc-consumer", {consumer_bin, "--channel", "sem:" + name + "?slot_size=banana"}, 2},
      {"ipc-consumer", {consumer_bin, "--channel", "shm:" + name + "?mode=0666"}, 2},
      {"ipc-consumer", {consumer_bin, "--channel", "pipe"}, 2},
      {"ipc-consumer", {consumer_bin, "--channel", "msgq:" + name, "--count", "x"}, 2},
      {"ipc-consumer", {consumer_bin, "--channel", "fifo:/nonexistent-dir/x.fifo"}, 1},
      {"ipc-consumer", {consumer_bin, "--channel", "msgq:" + name}, 1, {"IPC_RUNTIME_DIR=/tmp"}},
      {"ipc-bridge", {bridge_bin, "--from", "nope:x", "--to", "msgq:" + name}, 2},
      {"ipc-bridge", {bridge_bin, "--from", "shm:" + name}, 2},
      {"ipcctl", {ipcctl_bin, "bogus"}, 2},
      {"ipcctl", {ipcctl_bin, "list", "--output", "nope"}, 2},
      {"ipcctl", {ipcctl_bin, "launch", "msgq", "--size", "70000"}, 2},
      {"ipcctl", {ipcctl_bin, "rm", "msgq:" + name}, 1},
  };
  const auto before = runtime_tree();
  for (const auto& c : cases) {
    std::string cmd;
    for (const auto& a : c.argv) cmd += a + " ";
    INFO(cmd);
    auto r = spawn(c.argv, c.env).wait(30s);
    INFO(r.report);
    CHECK(r.exit_code == c.exit_code);
    std::istringstream in(r.report);
    std::size_t errors = 0;
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("<6>", 0) == 0 || line.rfind("<7>", 0) == 0) continue;  // progress and the stats line
      INFO(line);
      const std::string text = line.rfind("<3>", 0) == 0 || line.rfind("<4>", 0) == 0 ? line.substr(3) : line;
      CHECK(text.rfind(c.program + ": ", 0) == 0);
      ++errors;
    }
    CHECK(errors >= 1);
  }
  CHECK(runtime_tree() == before);  // the usage errors made nothing
}

TEST_CASE("formats: --format record over a framing=lines FIFO is refused with exit 2, and nothing is made", "[formats]") {
  const std::string name = unique_name("refused") + ".fifo";
  const auto before = runtime_tree();
  for (const auto& bin : {producer_bin, consumer_bin}) {
    for (const std::vector<std::string>& extra : {std::vector<std::string>{}, std::vector<std::string>{"--format", "record"}}) {
      std::vector<std::string> argv{bin, "--channel", "fifo:" + name + "?framing=lines", "--stats-interval", "0"};
      argv.insert(argv.end(), extra.begin(), extra.end());
      auto r = spawn(argv).wait(30s);
      INFO(r.report);
      CHECK(r.exit_code == 2);
      CHECK_THAT(r.report, Catch::Contains("framing=lines") && Catch::Contains("--format lines or raw"));
    }
  }
  CHECK_FALSE(std::filesystem::exists(ipc::runtime_dir() / name));
  CHECK(runtime_tree() == before);
}
