// ipc::process as Python's Process: created with a target, start()ed, is_alive(), status(), a name
// in errors, and the destructor joining (default) or killing (daemon) a running child.
#include <ipc/error.hpp>
#include <ipc/fd_io.hpp>
#include <ipc/pipe_pair.hpp>
#include <ipc/process.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <utility>

using namespace std::chrono_literals;
using Catch::Contains;

namespace {
using steady = std::chrono::steady_clock;

bool gone_within(pid_t pid, std::chrono::milliseconds limit) {
  auto until = steady::now() + limit;
  while (std::filesystem::exists("/proc/" + std::to_string(pid))) {
    if (steady::now() >= until) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}
// Runs `start` (which starts `p`) with our stderr on a pipe, which the child inherits; returns how
// `p` ended and what it wrote there.
template <typename Start>
std::pair<ipc::exit_status, std::string> stderr_of(ipc::process& p, Start start) {
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  ipc::unique_fd rd(fds[0]);
  ipc::unique_fd wr(fds[1]);
  const ipc::unique_fd saved{::fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3)};
  REQUIRE(saved);
  ::dup2(wr.get(), STDERR_FILENO);
  start();
  ::dup2(saved.get(), STDERR_FILENO);
  wr.reset();
  const auto st = p.join_for(20s);
  REQUIRE(st.has_value());
  return {*st, ipc::read_all(rd.get(), "child stderr")};
}

}  // namespace

TEST_CASE("process: a process made with a target runs only when started", "[process]") {
  auto [here, there] = ipc::pipe_pair<int>();
  ipc::process p({.name = "adder"}, [&there = there] { there.send(40 + 2); return 5; });
  CHECK(p.pid() == -1);
  CHECK_FALSE(p.is_alive());
  CHECK_FALSE(p.status().has_value());
  CHECK_FALSE(here.recv_for(50ms).has_value());  // nothing ran yet
  p.start();
  CHECK(p.pid() > 0);
  CHECK(here.recv_for(20s) == 42);
  auto st = p.join_for(20s);
  REQUIRE(st.has_value());
  CHECK(st->code == 5);
  CHECK_FALSE(p.is_alive());
  CHECK(p.status() == st);
  CHECK(p.name() == "adder");
}

TEST_CASE("process: is_alive is true while the child runs and status is nullopt until it ends", "[process]") {
  ipc::process p([] { std::this_thread::sleep_for(300ms); });
  p.start();
  CHECK(p.is_alive());
  CHECK_FALSE(p.status().has_value());
  auto st = p.join_for(20s);
  REQUIRE(st.has_value());
  CHECK(st->success());
  CHECK_FALSE(p.is_alive());
}

TEST_CASE("process: starting twice or without a target throws naming the process", "[process]") {
  ipc::process p({.name = "once"}, [] {});
  p.start();
  CHECK_THROWS_WITH(p.start(), Contains("process::start") && Contains("once") && Contains("already started"));
  (void)p.join_for(20s);
  ipc::process empty;
  CHECK_THROWS_WITH(empty.start(), Contains("no target"));
}

TEST_CASE("process: errors name the process by its name and pid", "[process]") {
  ipc::process p({.name = "worker-7"}, [] { std::this_thread::sleep_for(200ms); });
  p.start();
  pid_t pid = p.pid();
  p.detach();  // the library reaps it; the handle can no longer wait
  CHECK_THROWS_WITH(p.join(), Contains("worker-7 (pid " + std::to_string(pid) + ")"));
}

TEST_CASE("process: dropping a non-daemon handle waits for the child; a daemon handle kills it", "[process]") {
  auto t0 = steady::now();
  {
    ipc::process joined([] { std::this_thread::sleep_for(300ms); });
    joined.start();
  }
  CHECK(steady::now() - t0 >= 300ms);  // the destructor joined

  pid_t pid = -1;
  t0 = steady::now();
  {
    ipc::process daemon({.name = "sleeper", .daemon = true}, [] { std::this_thread::sleep_for(30s); });
    daemon.start();
    pid = daemon.pid();
  }
  CHECK(steady::now() - t0 < 10s);  // killed, not waited for
  CHECK(gone_within(pid, 5s));
}

TEST_CASE("process: an uncaught exception in a started target names the process and exits 70", "[process]") {
  ipc::process p({.name = "thrower"}, [] { throw std::runtime_error("boom"); });
  const auto [status, err] = stderr_of(p, [&p] { p.start(); });
  CHECK(status.code == 70);
  CHECK_THAT(err, Contains("ipc::process thrower (pid " + std::to_string(p.pid()) + "): uncaught exception: boom"));
}

TEST_CASE("process: start() sets the child up by process_options::setup before the target runs", "[process]") {
  // The child answers through its exit code: 0 only when it leads its own group and has the death signal.
  ipc::process p({.name = "set-up", .daemon = true, .setup = {.new_process_group = true, .parent_death_signal = SIGUSR2}}, [] {
    int sig = 0;
    if (::prctl(PR_GET_PDEATHSIG, &sig) != 0) return 3;
    if (::getpgid(0) != ::getpid()) return 1;
    return sig == SIGUSR2 ? 0 : 2;
  });
  p.start();
  CHECK(p.join_for(20s) == ipc::exit_status{0, 0, false});
  // Without set-up the child stays in our group and has no death signal.
  ipc::process plain([] {
    int sig = -1;
    if (::prctl(PR_GET_PDEATHSIG, &sig) != 0) return 3;
    return ::getpgid(0) == ::getpgid(::getppid()) && sig == 0 ? 0 : 1;
  });
  plain.start();
  CHECK(plain.join_for(20s) == ipc::exit_status{0, 0, false});
}

TEST_CASE("process: a forked child's uncaught exception names it as a child and exits 70", "[process]") {
  ipc::process p;
  const auto [status, err] = stderr_of(p, [&p] { p = ipc::process::fork([]() -> int { throw std::runtime_error("bang"); }); });
  CHECK(status.code == 70);
  CHECK_THAT(err, Contains("ipc::process child (pid " + std::to_string(p.pid()) + "): uncaught exception: bang"));
}
