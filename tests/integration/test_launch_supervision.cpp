// ipcctl launch's supervision through ipc::supervisor, with the real daemons: a daemon that keeps
// failing is restarted with back-off, then given up, and the run ends with exit 1 and says why.
#include "test_support.hpp"

#include <ipc/uri.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

using namespace std::chrono_literals;

namespace {

std::size_t count_lines(const std::string& text, const std::string& needle) {
  std::istringstream in(text);
  std::size_t n = 0;
  for (std::string line; std::getline(in, line);) n += line.find(needle) != std::string::npos ? 1 : 0;
  return n;
}

}  // namespace

TEST_CASE("ipcctl: launch restarts a failing daemon with back-off, gives it up and exits 1", "[ipcctl]") {
  // A regular file where the pair's FIFO should be: both daemons refuse it (exit 1) on every start.
  const std::string prefix = ipc::test::unique_name("giveup");
  const auto blocker = ipc::runtime_dir() / (prefix + "-fifo");
  std::ofstream(blocker) << "not a fifo\n";
  const auto t0 = std::chrono::steady_clock::now();
  auto r = ipc::test::spawn({ipc::test::build_path("daemons/ipcctl/ipcctl"), "launch", "fifo", "--prefix", prefix,
                             "--duration", "30", "--interval", "0.2"})
               .wait(60s);
  const auto took = std::chrono::steady_clock::now() - t0;
  std::filesystem::remove(blocker);
  INFO(r.report);
  CHECK(r.exit_code == 1);
  CHECK(took < 15s);  // given up long before the 30 s duration
  for (const char* role : {"producer", "consumer"}) {
    INFO(role);
    const std::string who = std::string("fifo:") + prefix + "-fifo " + role;
    CHECK(count_lines(r.report, who + " pid") == 5);  // four restarts, then the give-up
    CHECK(count_lines(r.report, "restarting in 100 ms") >= 1);
    CHECK(count_lines(r.report, "restarting in 200 ms") >= 1);
    CHECK(count_lines(r.report, who + " pid") - count_lines(r.report, "giving up") >= 3);
    CHECK(r.report.find("the " + std::string(role) + " kept failing") != std::string::npos);
  }
  CHECK(count_lines(r.report, "giving up after 5 failures") == 2);
  CHECK(r.report.find("state") != std::string::npos);
  CHECK(r.report.find("failed") != std::string::npos);
}
