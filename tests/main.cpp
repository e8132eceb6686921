// The one Catch2 main. Each test process gets its own runtime directory so
// names never collide between the suites meson runs in parallel.
//
// Nothing left behind: after the tests, a kernel object this run made and did not remove fails the
// run. As root (CI) the run first enters a private IPC namespace and a private mount namespace with a
// fresh tmpfs on /dev/shm: every test, every forked child and every daemon, tool or helper it execs
// inherits both, so `ipcs` (/proc/sysvipc) and /dev/shm are recorded at start (empty) and at exit, and
// anything new fails the run - whatever its name, key or creator, including objects whose key file is
// gone with a test's own runtime directory. Other runs on the machine neither add to it nor are
// blamed, and what a failing run leaves dies with its namespaces. Not root (or no CAP_SYS_ADMIN): only
// this run's objects by name - a System V object whose key is still named by a key file in the runtime
// directory, or a POSIX segment in /dev/shm whose name carries this process's id (every test name comes
// from test::unique_name, "<prefix>-<pid>-<n>"). Plain files and FIFOs left in the runtime directory go
// with it (removed below) and are not counted.
#define CATCH_CONFIG_RUNNER
// g++ 12 with -fsanitize=address (the build-asan run of scripts/test) warns a false
// "may be used uninitialized" inside libstdc++'s <regex> as Catch2's implementation uses it.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <catch2/catch.hpp>
#pragma GCC diagnostic pop

#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace {

// The System V objects whose key is ftok(file, proj) for one of the toolkit's project ids.
std::vector<std::string> sysv_objects_keyed_by(const std::filesystem::path& file) {
  std::vector<std::string> found;
  struct stat st {};
  if (::lstat(file.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return found;
  for (const char* kind : {"msg", "sem", "shm"}) {
    std::ifstream in(std::string("/proc/sysvipc/") + kind);
    std::string line;
    std::getline(in, line);
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      long long key = 0;
      fields >> key;
      for (int proj : {'M', 'S', 'H'}) {
        auto k = static_cast<unsigned>((st.st_ino & 0xffffU) | ((st.st_dev & 0xffU) << 16) |
                                       ((static_cast<unsigned>(proj) & 0xffU) << 24));
        if (static_cast<unsigned>(key) == k) found.push_back(std::string(kind) + " key " + std::to_string(key));
      }
    }
  }
  return found;
}

std::vector<std::string> left_behind(const std::string& dir) {
  std::vector<std::string> left;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    for (const auto& o : sysv_objects_keyed_by(it->path())) left.push_back(o + " named by " + it->path().string());
  }
  const std::string mine = "-" + std::to_string(::getpid()) + "-";
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm", ec)) {
    const std::string name = e.path().filename().string();
    if (name.find(mine) != std::string::npos) left.push_back(e.path().string());
  }
  return left;
}

// Every System V object ("msg id 3 key 0x…") and every /dev/shm entry that exists now.
std::vector<std::string> kernel_objects() {
  std::vector<std::string> found;
  for (const char* kind : {"msg", "sem", "shm"}) {
    std::ifstream in(std::string("/proc/sysvipc/") + kind);
    std::string line;
    std::getline(in, line);
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      long long key = 0, id = -1;
      unsigned perms = 0;
      fields >> key >> id >> std::oct >> perms;
      // A segment already removed (IPC_RMID: key IPC_PRIVATE, SHM_DEST) but still attached - e.g. by
      // this process, at exit - is freed by the kernel at its last detach: not left behind.
      if (std::string_view(kind) == "shm" && (perms & 01000U) != 0) continue;
      found.push_back(std::string(kind) + " id " + std::to_string(id) + " key " + std::to_string(key));
    }
  }
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm", ec)) found.push_back(e.path().string());
  std::sort(found.begin(), found.end());
  return found;
}

bool private_namespaces = false;
std::vector<std::string> objects_at_start;

// Root only: a private IPC namespace and /dev/shm for this run and everything it starts. False (and
// the name-based judgement) when the kernel refuses (no CAP_SYS_ADMIN); a half-made setup is fatal.
bool enter_private_namespaces() {
  if (::geteuid() != 0) return false;
  if (::unshare(CLONE_NEWIPC | CLONE_NEWNS) != 0) {
    std::fprintf(stderr, "note: unshare(CLONE_NEWIPC|CLONE_NEWNS): %s; leftovers judged by name only\n", std::strerror(errno));
    return false;
  }
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
      ::mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") != 0) {
    std::fprintf(stderr, "FAILED: a private /dev/shm for the test run: %s\n", std::strerror(errno));
    std::exit(2);
  }
  return true;
}

char run_dir[] = "/tmp/ipc-test-XXXXXX";

// Runs at exit after the static objects made during the tests are destroyed (some remove their
// objects then, e.g. the channel suite's queue registry): registered before any of them exists.
void judge_what_is_left() {
  auto left = left_behind(run_dir);
  if (private_namespaces) {
    for (const auto& o : kernel_objects()) {
      if (!std::binary_search(objects_at_start.begin(), objects_at_start.end(), o) &&
          std::find(left.begin(), left.end(), o) == left.end()) {
        left.push_back(o);
      }
    }
  }
  for (const auto& l : left) std::fprintf(stderr, "left behind by this test run: %s\n", l.c_str());
  std::error_code ec;
  std::filesystem::remove_all(run_dir, ec);
  if (!left.empty()) {
    std::fprintf(stderr, "FAILED: %zu object(s) left behind (nothing may outlive the test that made it)\n",
                 left.size());
    std::fflush(stderr);
    ::_exit(1);
  }
}

}  // namespace

int main(int argc, char* argv[]) {
  private_namespaces = enter_private_namespaces();
  if (private_namespaces) objects_at_start = kernel_objects();
  if (::mkdtemp(run_dir) == nullptr) return 2;
  ::setenv("IPC_RUNTIME_DIR", run_dir, 1);
  std::atexit(judge_what_is_left);
  return Catch::Session().run(argc, argv);
}
