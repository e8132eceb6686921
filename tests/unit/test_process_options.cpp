// ipc::process's child set-up options: environment edits, process group, session, parent-death
// signal - for exec, for fork and for start() (process_options::setup). Real processes; children
// report through exit codes only.
#include <ipc/process.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>

using namespace std::chrono_literals;

namespace {

// Sets an environment variable for one test and restores the old state after it.
class scoped_env {
 public:
  scoped_env(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value, 1);
  }
  ~scoped_env() {
    if (old_) ::setenv(name_, old_->c_str(), 1);
    else ::unsetenv(name_);
  }
  scoped_env(const scoped_env&) = delete;
  scoped_env& operator=(const scoped_env&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// True once the process `pid` (not our child) has ended, waiting at most `limit` on its pidfd.
bool ends_within(pid_t pid, std::chrono::milliseconds limit) {
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0u));
  if (fd < 0) return errno == ESRCH;  // already gone
  pollfd p{fd, POLLIN, 0};
  const bool ended = ::poll(&p, 1, static_cast<int>(limit.count())) == 1;
  ::close(fd);
  return ended;
}

}  // namespace

TEST_CASE("process: exec drops unset_env names and adds set_env entries", "[process]") {
  scoped_env notify("NOTIFY_SOCKET", "/run/systemd/notify");
  scoped_env keep("IPC_TEST_KEEP", "kept");
  ipc::exec_options o;
  o.unset_env = {"NOTIFY_SOCKET", "WATCHDOG_USEC"};
  o.set_env = {"IPC_TEST_ADDED=yes", "IPC_TEST_KEEP=replaced"};
  auto p = ipc::process::exec(
      {"/bin/sh", "-c", R"(test -z "${NOTIFY_SOCKET+x}" && test "$IPC_TEST_ADDED" = yes && test "$IPC_TEST_KEEP" = replaced)"}, o);
  CHECK(p.join_for(10s) == ipc::exit_status{0, 0, false});
  // Without edits the child sees our environment as it is.
  auto q = ipc::process::exec({"/bin/sh", "-c", R"(test "$NOTIFY_SOCKET" = /run/systemd/notify)"});
  CHECK(q.join_for(10s) == ipc::exit_status{0, 0, false});
}

TEST_CASE("process: set_env entries that are not NAME=VALUE are refused before fork", "[process]") {
  ipc::exec_options o;
  o.set_env = {"NO_EQUALS_SIGN"};
  REQUIRE_THROWS_WITH(ipc::process::exec({"/bin/true"}, o), Catch::Contains("set_env") && Catch::Contains("NO_EQUALS_SIGN"));
}

TEST_CASE("process: new_process_group and new_session make the child a leader", "[process]") {
  ipc::exec_options group;
  group.new_process_group = true;
  auto g = ipc::process::exec({"/bin/sleep", "30"}, group);
  CHECK(::getpgid(g.pid()) == g.pid());
  CHECK(::getsid(g.pid()) == ::getsid(0));
  ipc::exec_options session;
  session.new_session = true;
  auto s = ipc::process::exec({"/bin/sleep", "30"}, session);
  CHECK(::getsid(s.pid()) == s.pid());
  CHECK(::getpgid(s.pid()) == s.pid());
  // fork takes the same options, directly or through process_options::setup and start().
  auto f = ipc::process::fork(ipc::fork_options{.new_process_group = true}, [] { return ::getpgid(0) == ::getpid() ? 0 : 1; });
  CHECK(f.join_for(10s) == ipc::exit_status{0, 0, false});
  ipc::process started({.setup = {.new_session = true}}, [] { return ::getsid(0) == ::getpid() ? 0 : 1; });
  started.start();
  CHECK(started.join_for(10s) == ipc::exit_status{0, 0, false});
  g.kill(SIGKILL);
  s.kill(SIGKILL);
}

TEST_CASE("process: a child with parent_death_signal dies with its parent", "[process]") {
  enum class door { exec, fork, start };
  for (door how : {door::exec, door::fork, door::start}) {
    INFO((how == door::exec ? "exec" : how == door::fork ? "fork" : "start"));
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    // The middle process starts the grandchild with the death signal, reports its pid and ends
    // without its destructors (which would kill the grandchild themselves).
    auto middle = ipc::process::fork([&] {
      ::close(fds[0]);
      pid_t gpid = -1;
      if (how == door::exec) {
        ipc::exec_options o;
        o.parent_death_signal = SIGKILL;
        auto g = ipc::process::exec({"/bin/sleep", "30"}, o);
        gpid = g.pid();
        (void)!::write(fds[1], &gpid, sizeof gpid);
        ::_exit(0);
      }
      if (how == door::start) {
        ipc::process g({.daemon = true, .setup = {.parent_death_signal = SIGKILL}}, [] { ::pause(); });
        g.start();
        gpid = g.pid();
        (void)!::write(fds[1], &gpid, sizeof gpid);
        ::_exit(0);
      }
      ipc::fork_options o;
      o.parent_death_signal = SIGKILL;
      auto g = ipc::process::fork(o, [] { ::pause(); });
      gpid = g.pid();
      (void)!::write(fds[1], &gpid, sizeof gpid);
      ::_exit(0);
    });
    ::close(fds[1]);
    pid_t gpid = -1;
    const bool got = ::read(fds[0], &gpid, sizeof gpid) == static_cast<ssize_t>(sizeof gpid);
    ::close(fds[0]);
    REQUIRE(got);
    CHECK(middle.join_for(10s) == ipc::exit_status{0, 0, false});
    CHECK(ends_within(gpid, 5000ms));
  }
}

TEST_CASE("process: a forked child with a death signal and a live parent runs its body", "[process]") {
  ipc::fork_options o;
  o.parent_death_signal = SIGTERM;
  auto p = ipc::process::fork(o, [] { return 7; });
  CHECK(p.join_for(10s) == ipc::exit_status{7, 0, false});
}
