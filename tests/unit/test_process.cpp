// ipc::process and ipc::process_pool: real fork/exec/pidfd, real pipe_channel workers.
#include <ipc/error.hpp>
#include <ipc/process.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

using namespace std::chrono_literals;
using Catch::Contains;

namespace {

using steady = std::chrono::steady_clock;

// True once `pid` is neither running nor a zombie of ours: waitpid says it is not our child.
bool reaped(pid_t pid) {
  int st = 0;
  return ::waitpid(pid, &st, WNOHANG) < 0 && errno == ECHILD;
}

// Waits (bounded) until /proc/<pid> is gone: the process has ended and someone reaped it.
bool gone_within(pid_t pid, std::chrono::milliseconds limit) {
  auto until = steady::now() + limit;
  while (std::filesystem::exists("/proc/" + std::to_string(pid))) {
    if (steady::now() >= until) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

std::string read_all(int fd, std::chrono::milliseconds limit) {
  std::string out;
  auto until = steady::now() + limit;
  char buf[256];
  while (steady::now() < until) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0) {
      break;
    } else if (errno != EINTR) {
      break;
    }
  }
  return out;
}

struct pipe_pair {
  ipc::unique_fd rd, wr;
  pipe_pair() {
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    rd.reset(fds[0]);
    wr.reset(fds[1]);
  }
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// process
// ---------------------------------------------------------------------------------------------

TEST_CASE("process: fork runs the callable and join returns its exit code", "[process]") {
  auto p = ipc::process::fork([] { return 7; });
  REQUIRE(p.pid() > 0);
  auto s = p.join_for(10s);
  REQUIRE(s);
  CHECK(s->exited());
  CHECK(s->code == 7);
  CHECK_FALSE(s->success());
  CHECK(s->to_string() == "exited with code 7");
  CHECK(reaped(p.pid()));
  // A second join returns the same status.
  CHECK(p.join() == *s);
}

TEST_CASE("process: a void callable exits 0 and a throwing one exits 70", "[process]") {
  int counter = 0;
  auto ok = ipc::process::fork([&counter] { ++counter; });
  auto s = ok.join_for(10s);
  REQUIRE(s);
  CHECK(s->success());
  CHECK(counter == 0);  // the increment happened in the child's copy

  pipe_pair err;
  auto bad = ipc::process::fork([&err]() -> int {
    ::dup2(err.wr.get(), STDERR_FILENO);
    throw std::runtime_error("boom in the child");
  });
  err.wr.reset();
  auto s2 = bad.join_for(10s);
  REQUIRE(s2);
  CHECK(s2->code == 70);
  CHECK_THAT(read_all(err.rd.get(), 5s), Contains("boom in the child"));
}

TEST_CASE("process: exec of /bin/true exits 0 and /bin/false exits 1", "[process]") {
  auto t = ipc::process::exec({"/bin/true"});
  auto f = ipc::process::exec({"/bin/false"});
  auto st = t.join_for(10s);
  auto sf = f.join_for(10s);
  REQUIRE(st);
  REQUIRE(sf);
  CHECK(st->success());
  CHECK(sf->code == 1);
  // A bare name is searched in PATH.
  auto bare = ipc::process::exec({"true"});
  auto sb = bare.join_for(10s);
  REQUIRE(sb);
  CHECK(sb->success());
}

TEST_CASE("process: exec of a missing program throws naming execve and the path", "[process]") {
  REQUIRE_THROWS_WITH(ipc::process::exec({"/no/such/dir/ipc-missing-program"}),
                      Contains("execve") && Contains("/no/such/dir/ipc-missing-program") &&
                          Contains("No such file or directory"));
  REQUIRE_THROWS_WITH(ipc::process::exec({"ipc-missing-program-in-path"}),
                      Contains("execve") && Contains("ipc-missing-program-in-path") && Contains("searched PATH"));
  // A file that is not executable: EACCES, not a silent exit 127.
  std::string script = std::filesystem::temp_directory_path() / ("ipc-noexec-" + std::to_string(::getpid()));
  { std::ofstream(script) << "#!/bin/sh\nexit 0\n"; }
  ::chmod(script.c_str(), 0600);
  REQUIRE_THROWS_WITH(ipc::process::exec({script}), Contains("execve") && Contains(script) && Contains("Permission denied"));
  std::filesystem::remove(script);
  // The failed children were reaped: no child of ours has ended unreaped (WNOWAIT: look, don't reap).
  siginfo_t info{};
  int rc = ::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT);
  CHECK((rc == 0 ? info.si_pid == 0 : errno == ECHILD));
}

TEST_CASE("process: exec with a missing working directory throws naming chdir", "[process]") {
  ipc::exec_options o;
  o.cwd = "/no/such/ipc-dir";
  REQUIRE_THROWS_WITH(ipc::process::exec({"/bin/true"}, o), Contains("chdir") && Contains("/no/such/ipc-dir"));
}

TEST_CASE("process: exec rejects empty argv and fds mapped twice", "[process]") {
  REQUIRE_THROWS_WITH(ipc::process::exec({}), Contains("process::exec") && Contains("empty argv"));
  ipc::exec_options o;
  o.stdout_fd = STDERR_FILENO;
  o.pass_fds = {{1, STDERR_FILENO}};
  REQUIRE_THROWS_WITH(ipc::process::exec({"/bin/true"}, o), Contains("mapped twice"));
  ipc::exec_options closed_fd;
  closed_fd.stdin_fd = 1000;
  REQUIRE_THROWS_WITH(ipc::process::exec({"/bin/true"}, closed_fd), Contains("fd 1000") && Contains("Bad file descriptor"));
}

TEST_CASE("process: a program killed by a signal reports the signal", "[process]") {
  auto p = ipc::process::exec({"/bin/sh", "-c", "kill -TERM $$"});
  auto s = p.join_for(10s);
  REQUIRE(s);
  CHECK_FALSE(s->exited());
  CHECK(s->signal == SIGTERM);
  CHECK_THAT(s->to_string(), Contains("SIGTERM"));

  auto sleeper = ipc::process::exec({"/bin/sleep", "5"});
  CHECK(sleeper.running());
  REQUIRE(sleeper.kill(SIGKILL));
  auto k = sleeper.join_for(10s);
  REQUIRE(k);
  CHECK(k->signal == SIGKILL);
  CHECK_FALSE(sleeper.running());
  CHECK_FALSE(sleeper.kill(SIGKILL));  // already reaped: nothing to signal
}

TEST_CASE("process: join_for times out on a sleeping child and the destructor kills and reaps it", "[process]") {
  std::optional<ipc::process> p = ipc::process::exec({"/bin/sleep", "5"});
  pid_t pid = p->pid();
  auto t0 = steady::now();
  auto s = p->join_for(100ms);
  auto took = steady::now() - t0;
  CHECK_FALSE(s);
  CHECK(took >= 95ms);
  CHECK(took < 2s);
  CHECK(p->running());
  t0 = steady::now();
  p.reset();  // the destructor: SIGKILL + reap
  CHECK(steady::now() - t0 < 2s);
  CHECK(reaped(pid));
  CHECK_FALSE(std::filesystem::exists("/proc/" + std::to_string(pid)));
}

TEST_CASE("process: exec redirects stdout and passes env, cwd and extra fds", "[process]") {
  pipe_pair out;
  pipe_pair extra;
  ipc::exec_options o;
  o.env = std::vector<std::string>{"IPC_GREETING=hello from env", "PATH=/usr/bin:/bin"};
  o.cwd = "/";
  o.stdout_fd = out.wr.get();
  o.pass_fds = {{3, extra.wr.get()}};
  auto p = ipc::process::exec({"/bin/sh", "-c", "echo \"$IPC_GREETING\"; pwd; echo on-three >&3"}, o);
  out.wr.reset();
  extra.wr.reset();
  auto s = p.join_for(10s);
  REQUIRE(s);
  CHECK(s->success());
  CHECK(read_all(out.rd.get(), 5s) == "hello from env\n/\n");
  CHECK(read_all(extra.rd.get(), 5s) == "on-three\n");
}

TEST_CASE("process: crosswise stdout/stderr mappings (stdout_fd = 2, stderr_fd = 1) come out right", "[process]") {
  pipe_pair a;
  pipe_pair b;
  // In a child whose fd 1 is pipe a and fd 2 is pipe b, exec with the two swapped: the
  // program's stdout must land in b and its stderr in a.
  auto outer = ipc::process::fork([&a, &b] {
    if (::dup2(a.wr.get(), STDOUT_FILENO) < 0 || ::dup2(b.wr.get(), STDERR_FILENO) < 0) return 90;
    ipc::exec_options o;
    o.stdout_fd = STDERR_FILENO;
    o.stderr_fd = STDOUT_FILENO;
    auto p = ipc::process::exec({"/bin/sh", "-c", "echo to-out; echo to-err >&2"}, o);
    auto s = p.join_for(10s);
    return s ? s->code : 91;
  });
  a.wr.reset();
  b.wr.reset();
  auto s = outer.join_for(20s);
  REQUIRE(s);
  CHECK(s->code == 0);
  CHECK(read_all(b.rd.get(), 5s) == "to-out\n");
  CHECK(read_all(a.rd.get(), 5s) == "to-err\n");
}

TEST_CASE("process: a detached child is reaped by the library and never left a zombie", "[process]") {
  auto p = ipc::process::fork([] {
    std::this_thread::sleep_for(50ms);
    return 0;
  });
  pid_t pid = p.pid();
  p.detach();
  CHECK(p.pidfd() == -1);
  CHECK(p.pid() == pid);
  CHECK(gone_within(pid, 5s));  // /proc/<pid> disappears only once it is reaped
  CHECK_THROWS_WITH(p.join(), Contains("detached"));
}

TEST_CASE("process: a moved-from handle is empty and the target owns the child", "[process]") {
  auto a = ipc::process::fork([] { return 3; });
  ipc::process b = std::move(a);
  CHECK(a.pid() == -1);
  CHECK_FALSE(a.joinable());
  auto s = b.join_for(10s);
  REQUIRE(s);
  CHECK(s->code == 3);
}

TEST_CASE("process: a child forked while another thread detaches can still detach its own children", "[process]") {
  // The reaper's mutex may be held by the reaper thread at the moment another thread forks;
  // the child must not inherit it locked.
  std::atomic<bool> stop{false};
  std::thread churn([&] {
    while (!stop.load()) ipc::process::fork([] { return 0; }).detach();
  });
  bool all_done = true;
  for (int i = 0; i < 20 && all_done; ++i) {
    auto c = ipc::process::fork([] {
      ipc::process::fork([] { return 0; }).detach();
      return 0;
    });
    auto st = c.join_for(5s);
    all_done = st.has_value() && st->code == 0;
  }
  stop.store(true);
  churn.join();
  CHECK(all_done);
}
