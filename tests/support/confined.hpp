// Running test code in a child confined to private namespaces, so it can exhaust resources
// without touching the host: its own mount namespace with /dev/shm a small tmpfs, and its own
// IPC namespace whose kernel.* limits (msgmni, sem, shmmni, shmall) it may lower. The namespaces
// die with the child, so nothing needs restoring and tests running elsewhere see nothing.
//
//   auto r = ipc::test::run_confined({.shm_bytes = 256 << 10, .sysctls = {{"msgmni", "0"}}},
//                                    [](ipc::test::findings& f) { f.check(cond, "what went wrong"); });
//   REQUIRE(r.setup_error.empty());
//   CHECK(r.failures.empty());
//
// Root (CI) gets the namespaces directly; any other user gets them inside a user namespace where it is
// root, so the test runs - never skips - for a developer too. The child never uses Catch macros: it
// collects findings and reports them through a pipe.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace ipc::test {

struct confinement {
  std::size_t shm_bytes = 256 << 10;                         ///< size of the private /dev/shm tmpfs
  std::vector<std::pair<std::string, std::string>> sysctls;  ///< /proc/sys/kernel/NAME = VALUE, in the child's IPC ns
};

/// What the confined child found; failures are lines describing each broken expectation.
class findings {
 public:
  void check(bool ok, const std::string& what) {
    if (!ok) failures.push_back(what);
  }
  std::vector<std::string> failures;
  std::vector<std::string> notes;  ///< e.g. the error texts seen, for the test log
};

struct confined_result {
  std::string setup_error;  ///< non-empty when the namespaces could not be made (the test must fail)
  std::vector<std::string> failures;
  std::vector<std::string> notes;
  std::string status;  ///< how the child ended
};

/// Runs body in a confined child (ipc::process), waiting at most `timeout` (then SIGKILL).
confined_result run_confined(const confinement& c, const std::function<void(findings&)>& body,
                             std::chrono::seconds timeout = std::chrono::seconds(60));

/// Names of the entries of a directory (empty if it does not exist).
std::vector<std::string> dir_entries(const std::string& dir);

/// Lines of /proc/sysvipc/{msg,sem,shm} after the header: the System V objects of our IPC namespace.
std::vector<std::string> sysv_objects();

}  // namespace ipc::test
