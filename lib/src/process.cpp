#include <ipc/error.hpp>
#include <ipc/pipe.hpp>
#include <ipc/process.hpp>

#include "detail/eintr.hpp"
#include "detail/fork_safe_mutex.hpp"
#include "detail/lock_order_registry.hpp"
#include "detail/reaper.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

extern char** environ;

namespace ipc {
namespace {

int sys_pidfd_open(pid_t pid) noexcept { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0u)); }
int sys_pidfd_send_signal(int pidfd, int sig) noexcept {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0u));
}

std::string pid_object(pid_t pid) { return "pid " + std::to_string(pid); }

// Serialises our own forks against the creation of exec's error pipes: a process::fork child
// (which does not exec) must not inherit another thread's error-pipe write end, or that
// thread's exec() would wait for the unrelated child to exit before seeing EOF.
// A fork from outside process (another thread's raw fork()) while we hold it must not leave
// that child with it locked: fork_safe_mutex re-initialises it there.
detail::fork_safe_mutex& fork_mutex() {
  static auto* m = new detail::fork_safe_mutex;  // never destroyed: the atfork handler points at it
  return *m;
}
// Built while the library loads: a function-local static initialised by one thread while another
// forks would be inherited "being initialised" by that child, which would hang on it.
[[maybe_unused]] detail::fork_safe_mutex& g_fork_mutex_ready = fork_mutex();

// Opens a pidfd for a child we just forked; on failure the child is killed and reaped.
unique_fd open_pidfd_or_kill(pid_t pid) {
  unique_fd fd{sys_pidfd_open(pid)};
  if (!fd) {
    int err = errno;
    ::kill(pid, SIGKILL);
    int st = 0;
    detail::retry_eintr([&] { return ::waitpid(pid, &st, 0); });
    ipc::throw_errno(err, "pidfd_open", pid_object(pid));
  }
  return fd;
}

// --- exec helpers ---------------------------------------------------------------------------
enum class exec_step : int { dup_fd, dup2_fd, chdir, execve, setsid, setpgid, prctl, orphaned };

struct exec_report {
  exec_step step;
  int err;
  int index;
};

[[noreturn]] void report_and_exit(int fd, exec_step step, int err, int index) noexcept {
  exec_report r{step, err, index};
  // A short or failed write leaves the parent with EOF or a partial report: it then reports
  // the child's exit status instead. Nothing else is possible after fork.
  [[maybe_unused]] auto n = ::write(fd, &r, sizeof r);
  ::_exit(127);
}

std::string getenv_from(const std::vector<std::string>* env, std::string_view key) {
  if (env != nullptr) {
    for (const auto& kv : *env) {
      if (kv.size() > key.size() && kv.compare(0, key.size(), key) == 0 && kv[key.size()] == '=') {
        return kv.substr(key.size() + 1);
      }
    }
    return {};
  }
  const char* v = std::getenv(std::string(key).c_str());
  return v != nullptr ? v : "";
}

// The process group / session / death-signal steps, in the child after fork. Returns the failed
// step (errno set) or nullopt. Async-signal-safe.
std::optional<exec_step> setup_child(bool new_session, bool new_process_group, int death_signal, pid_t parent) noexcept {
  if (new_session && ::setsid() < 0) return exec_step::setsid;
  if (!new_session && new_process_group && ::setpgid(0, 0) != 0) return exec_step::setpgid;
  if (death_signal != 0) {
    if (::prctl(PR_SET_PDEATHSIG, death_signal) != 0) return exec_step::prctl;
    // The parent may have died before the death signal was armed: then it never comes.
    if (::getppid() != parent) {
      errno = ESRCH;
      return exec_step::orphaned;
    }
  }
  return std::nullopt;
}

const char* step_call(exec_step s) noexcept {
  switch (s) {
    case exec_step::setsid: return "setsid";
    case exec_step::setpgid: return "setpgid";
    case exec_step::prctl: return "prctl(PR_SET_PDEATHSIG)";
    case exec_step::orphaned: return "getppid";
    default: return "process::exec";
  }
}

// `base` (the given environment, or ours) minus `unset` and the names `set` assigns, plus `set`.
std::vector<std::string> edited_environment(const exec_options& o) {
  std::vector<std::string> out;
  auto name_of = [](std::string_view kv) { return kv.substr(0, kv.find('=')); };
  auto dropped = [&](std::string_view kv) {
    const auto n = name_of(kv);
    for (const auto& u : o.unset_env) {
      if (n == u) return true;
    }
    for (const auto& kv2 : o.set_env) {
      if (n == name_of(kv2)) return true;
    }
    return false;
  };
  if (o.env) {
    for (const auto& kv : *o.env) {
      if (!dropped(kv)) out.push_back(kv);
    }
  } else {
    for (char** e = environ; *e != nullptr; ++e) {
      if (!dropped(*e)) out.emplace_back(*e);
    }
  }
  for (const auto& kv : o.set_env) {
    if (kv.find('=') == std::string::npos || kv.front() == '=') {
      ipc::throw_errno(EINVAL, "process::exec", "set_env entry '" + kv + "' is not NAME=VALUE");
    }
    out.push_back(kv);
  }
  return out;
}

}  // namespace

// --- exit_status ---------------------------------------------------------------------------

std::string exit_status::to_string() const {
  if (signal == 0) return "exited with code " + std::to_string(code);
  std::string s = "killed by signal " + std::to_string(signal);
  if (const char* abbrev = ::sigabbrev_np(signal); abbrev != nullptr) s.append(" (SIG").append(abbrev).append(")");
  if (core_dumped) s.append(", core dumped");
  return s;
}

exit_status exit_status::from_waitid(int child_code, int child_status) noexcept {
  exit_status s;
  if (child_code == CLD_EXITED) {
    s.code = child_status;
  } else {
    s.signal = child_status;
    s.core_dumped = child_code == CLD_DUMPED;
  }
  return s;
}

// --- process -------------------------------------------------------------------------------

process::process(process&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)), pidfd_(std::move(other.pidfd_)), status_(std::exchange(other.status_, std::nullopt)),
      name_(std::move(other.name_)), daemon_(other.daemon_), setup_(other.setup_), target_(std::move(other.target_)) {}

process& process::operator=(process&& other) noexcept {
  if (this != &other) {
    end_child();
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::move(other.pidfd_);
    status_ = std::exchange(other.status_, std::nullopt);
    name_ = std::move(other.name_);
    daemon_ = other.daemon_;
    setup_ = other.setup_;
    target_ = std::move(other.target_);
  }
  return *this;
}

process::~process() { end_child(); }

void process::end_child() noexcept {
  if (daemon_ || !pidfd_ || status_) {
    kill_and_reap();
    return;
  }
  siginfo_t info{};
  if (detail::retry_eintr([&] { return ::waitid(P_PIDFD, static_cast<id_t>(pidfd_.get()), &info, WEXITED); }) == 0) {
    status_ = exit_status::from_waitid(info.si_code, info.si_status);
  }
  pidfd_.reset();
}

std::string process::object() const {
  return name_.empty() ? pid_object(pid_) : name_ + " (" + pid_object(pid_) + ")";
}

void process::start() {
  if (!target_ || pid_ != -1) {
    ipc::throw_errno(EINVAL, "process::start", (name_.empty() ? std::string("process") : name_) +
                                                      (pid_ != -1 ? " (already started)" : " (no target)"));
  }
  std::function<int()> target = std::move(target_);
  target_ = nullptr;
  process child = fork_impl(setup_, name_, target);
  pid_ = std::exchange(child.pid_, -1);
  pidfd_ = std::move(child.pidfd_);
}

bool process::is_alive() {
  if (!pidfd_ || status_) return false;
  return !try_join().has_value();
}

std::optional<exit_status> process::status() {
  if (status_ || !pidfd_) return status_;
  return try_join();
}

void process::kill_and_reap() noexcept {
  if (!pidfd_ || status_) return;
  sys_pidfd_send_signal(pidfd_.get(), SIGKILL);
  siginfo_t info{};
  if (detail::retry_eintr([&] { return ::waitid(P_PIDFD, static_cast<id_t>(pidfd_.get()), &info, WEXITED); }) == 0) {
    status_ = exit_status::from_waitid(info.si_code, info.si_status);
  }
  pidfd_.reset();
}

process process::fork_impl(const fork_options& options, std::string_view name, const std::function<int()>& body) {
  // The child's messages: "ipc::process NAME (pid N): …", built after fork (the pid is the child's).
  const std::string label = "ipc::process " + (name.empty() ? std::string("child") : std::string(name)) + " (pid ";
  auto say = [&label](std::string_view what) noexcept {
    try {
      std::string msg = label + std::to_string(::getpid()) + "): ";
      msg.append(what).append("\n");
      [[maybe_unused]] auto n = ::write(STDERR_FILENO, msg.data(), msg.size());
    } catch (...) {  // NOLINT(bugprone-empty-catch): out of memory in the child; the exit code still tells
    }
  };
  const pid_t parent = ::getpid();
  // Flush before forking so buffered output is not written twice (once by each process).
  std::fflush(nullptr);
  std::unique_lock lk(fork_mutex());
  pid_t pid = ::fork();
  if (pid < 0) ipc::throw_errno(errno, "fork", name.empty() ? std::string_view("process::fork") : name);
  if (pid == 0) {
    lk.unlock();  // the child's copy of the lock; the child may fork again
    int code = 70;
    if (auto failed = setup_child(options.new_session, options.new_process_group, options.parent_death_signal, parent)) {
      const int err = errno;
      say(std::string(step_call(*failed)) + ": " + std::strerror(err));
      code = 127;
    } else {
      try {
        code = body();
      } catch (const std::exception& e) {
        say(std::string("uncaught exception: ") + e.what());
      } catch (...) {
        say("uncaught non-standard exception");
      }
    }
    std::fflush(nullptr);
    detail::lock_order_registry::leave();  // no atexit handlers run here: leave the registry now
    ::_exit(code & 0xff);
  }
  lk.unlock();
  return process(pid, open_pidfd_or_kill(pid));
}

process process::exec(const std::vector<std::string>& argv, const exec_options& options) {
  if (argv.empty()) ipc::throw_errno(EINVAL, "process::exec", "empty argv");
  const std::string& program = argv[0];
  if (program.empty()) ipc::throw_errno(EINVAL, "process::exec", "empty program name");

  // Everything the child needs is built here, before fork: after it only async-signal-safe calls.
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  std::vector<char*> envp;
  char** child_env = environ;
  std::vector<std::string> edited;
  const bool edits = !options.unset_env.empty() || !options.set_env.empty();
  if (edits) edited = edited_environment(options);
  if (options.env || edits) {
    for (const auto& kv : edits ? edited : *options.env) envp.push_back(const_cast<char*>(kv.c_str()));
    envp.push_back(nullptr);
    child_env = envp.data();
  }

  std::vector<std::string> candidates;
  bool searched = program.find('/') == std::string::npos;
  if (!searched) {
    candidates.push_back(program);
  } else {
    std::string path = getenv_from(edits ? &edited : options.env ? &*options.env : nullptr, "PATH");
    if (path.empty()) path = "/usr/local/bin:/usr/bin:/bin";
    std::size_t start = 0;
    for (;;) {
      std::size_t colon = path.find(':', start);
      std::string dir = path.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
      candidates.push_back((dir.empty() ? std::string(".") : dir) + "/" + program);
      if (colon == std::string::npos) break;
      start = colon + 1;
    }
  }

  // {child fd, our fd}; the child first moves every source above all targets, then dup2s them
  // down, so mappings that overlap (stdout_fd = 2, stderr_fd = 1) come out right.
  std::vector<std::pair<int, int>> maps;
  if (options.stdin_fd >= 0) maps.emplace_back(STDIN_FILENO, options.stdin_fd);
  if (options.stdout_fd >= 0) maps.emplace_back(STDOUT_FILENO, options.stdout_fd);
  if (options.stderr_fd >= 0) maps.emplace_back(STDERR_FILENO, options.stderr_fd);
  maps.insert(maps.end(), options.pass_fds.begin(), options.pass_fds.end());
  int high = 3;
  for (std::size_t i = 0; i < maps.size(); ++i) {
    auto [target, source] = maps[i];
    if (target < 0 || source < 0) {
      ipc::throw_errno(EINVAL, "process::exec", "negative fd in mapping " + std::to_string(source) + " -> " + std::to_string(target));
    }
    if (::fcntl(source, F_GETFD) < 0) ipc::throw_errno(errno, "process::exec", "fd " + std::to_string(source) + " to pass");
    for (std::size_t j = 0; j < i; ++j) {
      if (maps[j].first == target) ipc::throw_errno(EINVAL, "process::exec", "child fd " + std::to_string(target) + " mapped twice");
    }
    high = std::max(high, target + 1);
  }
  std::vector<int> moved(maps.size(), -1);
  const char* cwd = options.cwd.empty() ? nullptr : options.cwd.c_str();
  const pid_t parent = ::getpid();

  std::fflush(nullptr);
  std::unique_lock lk(fork_mutex());
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) ipc::throw_errno(errno, "pipe2", "exec report for " + program);
  unique_fd report_rd{fds[0]};
  unique_fd report_wr{fds[1]};
  pid_t pid = ::fork();
  if (pid < 0) ipc::throw_errno(errno, "fork", program);
  if (pid == 0) {
    int wfd = report_wr.get();
    if (wfd < high) {
      wfd = ::fcntl(wfd, F_DUPFD_CLOEXEC, high);
      if (wfd < 0) ::_exit(127);
    }
    sigset_t none;
    ::sigemptyset(&none);
    ::pthread_sigmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(SIGPIPE, &dfl, nullptr);  // an ignored SIGPIPE would survive execve
    if (auto failed = setup_child(options.new_session, options.new_process_group, options.parent_death_signal, parent)) {
      report_and_exit(wfd, *failed, errno, 0);
    }
    for (std::size_t i = 0; i < maps.size(); ++i) {
      moved[i] = ::fcntl(maps[i].second, F_DUPFD_CLOEXEC, high);
      if (moved[i] < 0) report_and_exit(wfd, exec_step::dup_fd, errno, static_cast<int>(i));
    }
    for (std::size_t i = 0; i < maps.size(); ++i) {
      // dup2 clears FD_CLOEXEC on the target: exactly the fds we hand over survive execve.
      if (::dup2(moved[i], maps[i].first) < 0) report_and_exit(wfd, exec_step::dup2_fd, errno, static_cast<int>(i));
    }
    if (cwd != nullptr && ::chdir(cwd) != 0) report_and_exit(wfd, exec_step::chdir, errno, 0);
    int err = ENOENT;
    int err_index = 0;
    bool saw_eacces = false;
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      ::execve(candidates[i].c_str(), args.data(), child_env);
      int e = errno;
      if (e == EACCES) {
        if (!saw_eacces) err_index = static_cast<int>(i);
        saw_eacces = true;
        err = EACCES;
        continue;
      }
      if (!searched || (e != ENOENT && e != ENOTDIR && e != ELOOP && e != ENAMETOOLONG)) {
        err = e;
        err_index = static_cast<int>(i);
        break;
      }
    }
    report_and_exit(wfd, exec_step::execve, err, err_index);
  }
  report_wr.reset();
  lk.unlock();

  exec_report r{};
  auto* p = reinterpret_cast<char*>(&r);
  std::size_t got = 0;
  while (got < sizeof r) {
    ssize_t n = detail::retry_eintr([&] { return ::read(report_rd.get(), p + got, sizeof r - got); });
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  if (got == 0) return process(pid, open_pidfd_or_kill(pid));  // EOF: execve closed the pipe

  int st = 0;
  detail::retry_eintr([&] { return ::waitpid(pid, &st, 0); });
  if (got != sizeof r) ipc::throw_errno(EIO, "process::exec", program + " (child died before reporting)");
  switch (r.step) {
    case exec_step::dup_fd:
    case exec_step::dup2_fd: {
      auto [target, source] = maps.at(static_cast<std::size_t>(r.index));
      ipc::throw_errno(r.err, r.step == exec_step::dup_fd ? "fcntl(F_DUPFD_CLOEXEC)" : "dup2",
                          "fd " + std::to_string(source) + " -> child fd " + std::to_string(target) + " for " + program);
    }
    case exec_step::chdir:
      ipc::throw_errno(r.err, "chdir", options.cwd + " for " + program);
    case exec_step::setsid:
    case exec_step::setpgid:
    case exec_step::prctl:
    case exec_step::orphaned:
      ipc::throw_errno(r.err, step_call(r.step), program);
    case exec_step::execve:
      break;
  }
  if (searched && r.err == ENOENT) ipc::throw_errno(r.err, "execve", program + " (searched PATH)");
  ipc::throw_errno(r.err, "execve", candidates.at(static_cast<std::size_t>(r.index)));
}

exit_status process::join() {
  if (status_) return *status_;
  if (!pidfd_) ipc::throw_errno(EINVAL, "process::join", object() + " (empty or detached handle)");
  siginfo_t info{};
  if (detail::retry_eintr([&] { return ::waitid(P_PIDFD, static_cast<id_t>(pidfd_.get()), &info, WEXITED); }) != 0) {
    ipc::throw_errno(errno, "waitid", object());
  }
  status_ = exit_status::from_waitid(info.si_code, info.si_status);
  pidfd_.reset();
  return *status_;
}

std::optional<exit_status> process::try_join() {
  if (status_) return status_;
  if (!pidfd_) ipc::throw_errno(EINVAL, "process::try_join", object() + " (empty or detached handle)");
  siginfo_t info{};
  int rc = detail::retry_eintr(
      [&] { return ::waitid(P_PIDFD, static_cast<id_t>(pidfd_.get()), &info, WEXITED | WNOHANG); });
  if (rc != 0) ipc::throw_errno(errno, "waitid", object());
  if (info.si_pid == 0) return std::nullopt;
  status_ = exit_status::from_waitid(info.si_code, info.si_status);
  pidfd_.reset();
  return status_;
}

std::optional<exit_status> process::join_for(std::chrono::nanoseconds timeout) {
  auto d = deadline::in(timeout);
  for (;;) {
    if (auto s = try_join()) return s;
    if (d.expired()) return std::nullopt;
    pollfd p{pidfd_.get(), POLLIN, 0};
    if (::poll(&p, 1, d.poll_timeout_ms()) < 0 && errno != EINTR) ipc::throw_errno(errno, "poll", object());
  }
}

bool process::running() { return !try_join().has_value(); }

bool process::kill(int sig) {
  if (status_) return false;
  if (!pidfd_) ipc::throw_errno(EINVAL, "process::kill", object() + " (empty or detached handle)");
  if (sys_pidfd_send_signal(pidfd_.get(), sig) == 0) return true;
  if (errno == ESRCH) return false;
  ipc::throw_errno(errno, "pidfd_send_signal", object() + " signal " + std::to_string(sig));
}

void process::detach() {
  if (!pidfd_ || status_) {
    pidfd_.reset();
    return;
  }
  detail::hand_to_reaper(pidfd_);
}

}  // namespace ipc
