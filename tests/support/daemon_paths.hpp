// What every test that runs the real daemons needs: where the programs are, and how to read the
// stats lines they print and the status files they write (the contract type, stats_line.hpp).
//
//   auto c = ipc::test::spawn({ipc::test::consumer_bin, "--channel", uri, "--status-file", status});
//   REQUIRE(ipc::test::status_reaches(status, [](const auto& s) { return s.records > 100; }, 30s));
//   auto line = ipc::test::last_stats(report, "consumer");
#pragma once

#include "stats_line.hpp"
#include "test_support.hpp"

#include <chrono>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>

namespace ipc::test {

// The programs, as built (build_path needs nothing initialised before it: safe at static init).
inline const std::string producer_bin = build_path("daemons/ipc-producer");
inline const std::string consumer_bin = build_path("daemons/ipc-consumer");
inline const std::string bridge_bin = build_path("daemons/ipc-bridge");
inline const std::string ipcctl_bin = build_path("daemons/ipcctl/ipcctl");

/// The whole file at path ("" when it cannot be read).
inline std::string read_text_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

/// The last stats line of `role` (any role when empty) in a report or status file's text.
inline std::optional<daemon::stats_line> last_stats(const std::string& text, std::string_view role = {}) {
  std::istringstream in(text);
  std::optional<daemon::stats_line> found;
  for (std::string line; std::getline(in, line);) {
    if (auto s = daemon::stats_line::parse(line); s && (role.empty() || s->role == role)) found = std::move(s);
  }
  return found;
}

/// The stats line in the status file at path (nullopt while there is none).
inline std::optional<daemon::stats_line> status_of(const std::string& path) { return last_stats(read_text_file(path)); }

/// Waits until the status file at path holds a stats line that satisfies ok; false after timeout.
template <typename Pred>
bool status_reaches(const std::string& path, Pred ok, std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (auto s = status_of(path); s && ok(*s)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

}  // namespace ipc::test
