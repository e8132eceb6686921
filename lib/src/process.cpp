#include <ipc/error.hpp>
#include <ipc/pipe.hpp>
#include <ipc/process.hpp>

#include "detail/eintr.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
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
std::mutex& fork_mutex() {
  static std::mutex m;
  return m;
}

// Opens a pidfd for a child we just forked; on failure the child is killed and reaped.
unique_fd open_pidfd_or_kill(pid_t pid) {
  unique_fd fd{sys_pidfd_open(pid)};
  if (!fd) {
    int err = errno;
    ::kill(pid, SIGKILL);
    int st = 0;
    detail::retry_eintr([&] { return ::waitpid(pid, &st, 0); });
    detail::throw_errno(err, "pidfd_open", pid_object(pid));
  }
  return fd;
}

// --- the reaper of detached children ------------------------------------------------------
// One thread per process, started on the first detach(): polls the pidfds of detached
// children and reaps each as it ends. Its state is never destroyed (the thread may outlive
// static destruction), and a forked child that inherits it starts afresh (the pidfds belong
// to its parent's children, the thread did not survive the fork; m is held across fork).
struct reaper_state {
  std::mutex m;
  std::vector<int> pidfds;
  unique_fd wake;
  pid_t owner = 0;
};

reaper_state& reaper() {
  // fork() while the reaper thread holds m would leave the child a mutex locked by a thread it
  // does not have: hold m across fork, so both sides come out with it unlocked.
  static auto* r = [] {
    auto* state = new reaper_state;
    ::pthread_atfork([] { reaper().m.lock(); }, [] { reaper().m.unlock(); }, [] { reaper().m.unlock(); });
    return state;
  }();
  return *r;
}

void reaper_loop(reaper_state* r) {
  std::vector<pollfd> fds;
  for (;;) {
    {
      std::lock_guard lk(r->m);
      if (r->owner != ::getpid()) return;
      fds.assign(1, pollfd{r->wake.get(), POLLIN, 0});
      for (int fd : r->pidfds) fds.push_back(pollfd{fd, POLLIN, 0});
    }
    if (::poll(fds.data(), fds.size(), -1) < 0) continue;  // EINTR
    std::lock_guard lk(r->m);
    std::uint64_t ignored = 0;
    if ((fds[0].revents & POLLIN) != 0 && ::read(r->wake.get(), &ignored, sizeof ignored) < 0) {
      // EAGAIN: another wake-up already consumed it
    }
    for (std::size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      siginfo_t info{};
      int rc = ::waitid(P_PIDFD, static_cast<id_t>(fds[i].fd), &info, WEXITED | WNOHANG);
      if (rc == 0 && info.si_pid == 0) continue;  // not yet
      ::close(fds[i].fd);
      std::erase(r->pidfds, fds[i].fd);
    }
  }
}

// Takes pidfd only once nothing can fail any more.
void hand_to_reaper(unique_fd& pidfd) {
  reaper_state& r = reaper();
  std::lock_guard lk(r.m);
  if (r.owner != ::getpid()) {
    unique_fd wake{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
    if (!wake) detail::throw_errno(errno, "eventfd", "process reaper");
    std::thread t(reaper_loop, &r);  // blocks on r.m until we are done here
    t.detach();
    for (int fd : r.pidfds) ::close(fd);  // inherited from our parent: not our children
    r.pidfds.clear();
    r.wake = std::move(wake);
    r.owner = ::getpid();
  }
  r.pidfds.push_back(pidfd.release());
  std::uint64_t one = 1;
  if (::write(r.wake.get(), &one, sizeof one) < 0) {
    // EAGAIN: the counter is saturated, so the reaper is awake anyway
  }
}

// --- exec helpers ---------------------------------------------------------------------------
enum class exec_step : int { dup_fd, dup2_fd, chdir, execve };

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
    : pid_(std::exchange(other.pid_, -1)), pidfd_(std::move(other.pidfd_)), status_(std::exchange(other.status_, std::nullopt)) {}

process& process::operator=(process&& other) noexcept {
  if (this != &other) {
    kill_and_reap();
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::move(other.pidfd_);
    status_ = std::exchange(other.status_, std::nullopt);
  }
  return *this;
}

process::~process() { kill_and_reap(); }

void process::kill_and_reap() noexcept {
  if (!pidfd_ || status_) return;
  sys_pidfd_send_signal(pidfd_.get(), SIGKILL);
  siginfo_t info{};
  if (detail::retry_eintr([&] { return ::waitid(P_PIDFD, static_cast<id_t>(pidfd_.get()), &info, WEXITED); }) == 0) {
    status_ = exit_status::from_waitid(info.si_code, info.si_status);
  }
  pidfd_.reset();
}

process process::fork_impl(const std::function<int()>& body) {
  // Flush before forking so buffered output is not written twice (once by each process).
  std::fflush(nullptr);
  std::unique_lock lk(fork_mutex());
  pid_t pid = ::fork();
  if (pid < 0) detail::throw_errno(errno, "fork", "process::fork");
  if (pid == 0) {
    lk.unlock();  // the child's copy of the lock; the child may fork again
    int code = 70;
    try {
      code = body();
    } catch (const std::exception& e) {
      std::string msg = "ipc::process: uncaught exception in forked child: ";
      msg.append(e.what()).append("\n");
      [[maybe_unused]] auto n = ::write(STDERR_FILENO, msg.data(), msg.size());
    } catch (...) {
      static const char msg[] = "ipc::process: uncaught non-standard exception in forked child\n";
      [[maybe_unused]] auto n = ::write(STDERR_FILENO, msg, sizeof msg - 1);
    }
    std::fflush(nullptr);
    ::_exit(code & 0xff);
  }
  lk.unlock();
  return process(pid, open_pidfd_or_kill(pid));
}

process process::exec(const std::vector<std::string>& argv, const exec_options& options) {
  if (argv.empty()) detail::throw_errno(EINVAL, "process::exec", "empty argv");
  const std::string& program = argv[0];
  if (program.empty()) detail::throw_errno(EINVAL, "process::exec", "empty program name");

  // Everything the child needs is built here, before fork: after it only async-signal-safe calls.
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  std::vector<char*> envp;
  char** child_env = environ;
  if (options.env) {
    for (const auto& kv : *options.env) envp.push_back(const_cast<char*>(kv.c_str()));
    envp.push_back(nullptr);
    child_env = envp.data();
  }

  std::vector<std::string> candidates;
  bool searched = program.find('/') == std::string::npos;
  if (!searched) {
    candidates.push_back(program);
  } else {
    std::string path = getenv_from(options.env ? &*options.env : nullptr, "PATH");
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
      detail::throw_errno(EINVAL, "process::exec", "negative fd in mapping " + std::to_string(source) + " -> " + std::to_string(target));
    }
    if (::fcntl(source, F_GETFD) < 0) detail::throw_errno(errno, "process::exec", "fd " + std::to_string(source) + " to pass");
    for (std::size_t j = 0; j < i; ++j) {
      if (maps[j].first == target) detail::throw_errno(EINVAL, "process::exec", "child fd " + std::to_string(target) + " mapped twice");
    }
    high = std::max(high, target + 1);
  }
  std::vector<int> moved(maps.size(), -1);
  const char* cwd = options.cwd.empty() ? nullptr : options.cwd.c_str();

  std::fflush(nullptr);
  std::unique_lock lk(fork_mutex());
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) detail::throw_errno(errno, "pipe2", "exec report for " + program);
  unique_fd report_rd{fds[0]};
  unique_fd report_wr{fds[1]};
  pid_t pid = ::fork();
  if (pid < 0) detail::throw_errno(errno, "fork", program);
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
  if (got != sizeof r) detail::throw_errno(EIO, "process::exec", program + " (child died before reporting)");
  switch (r.step) {
    case exec_step::dup_fd:
    case exec_step::dup2_fd: {
      auto [target, source] = maps.at(static_cast<std::size_t>(r.index));
      detail::throw_errno(r.err, r.step == exec_step::dup_fd ? "fcntl(F_DUPFD_CLOEXEC)" : "dup2",
                          "fd " + std::to_string(source) + " -> child fd " + std::to_string(target) + " for " + program);
    }
    case exec_step::chdir:
      detail::throw_errno(r.err, "chdir", options.cwd + " for " + program);
    case exec_step::execve:
      break;
  }
  if (searched && r.err == ENOENT) detail::throw_errno(r.err, "execve", program + " (searched PATH)");
  detail::throw_errno(r.err, "execve", candidates.at(static_cast<std::size_t>(r.index)));
}

exit_status process::join() {
  if (status_) return *status_;
  if (!pidfd_) detail::throw_errno(EINVAL, "process::join", pid_object(pid_) + " (empty or detached handle)");
  siginfo_t info{};
  if (detail::retry_eintr([&] { return ::waitid(P_PIDFD, static_cast<id_t>(pidfd_.get()), &info, WEXITED); }) != 0) {
    detail::throw_errno(errno, "waitid", pid_object(pid_));
  }
  status_ = exit_status::from_waitid(info.si_code, info.si_status);
  pidfd_.reset();
  return *status_;
}

std::optional<exit_status> process::try_join() {
  if (status_) return status_;
  if (!pidfd_) detail::throw_errno(EINVAL, "process::try_join", pid_object(pid_) + " (empty or detached handle)");
  siginfo_t info{};
  int rc = detail::retry_eintr(
      [&] { return ::waitid(P_PIDFD, static_cast<id_t>(pidfd_.get()), &info, WEXITED | WNOHANG); });
  if (rc != 0) detail::throw_errno(errno, "waitid", pid_object(pid_));
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
    if (::poll(&p, 1, d.poll_timeout_ms()) < 0 && errno != EINTR) detail::throw_errno(errno, "poll", pid_object(pid_));
  }
}

bool process::running() { return !try_join().has_value(); }

bool process::kill(int sig) {
  if (status_) return false;
  if (!pidfd_) detail::throw_errno(EINVAL, "process::kill", pid_object(pid_) + " (empty or detached handle)");
  if (sys_pidfd_send_signal(pidfd_.get(), sig) == 0) return true;
  if (errno == ESRCH) return false;
  detail::throw_errno(errno, "pidfd_send_signal", pid_object(pid_) + " signal " + std::to_string(sig));
}

void process::detach() {
  if (!pidfd_ || status_) {
    pidfd_.reset();
    return;
  }
  hand_to_reaper(pidfd_);
}

// --- process_pool ----------------------------------------------------------------------------

detail::pool_task::~pool_task() = default;

namespace {

// Request: task id (0 = stop), invoker address, function address, argument bytes.
// Result: task id, status (0 = value follows, 1 = exception text follows), payload.
constexpr std::size_t request_header = 3 * sizeof(std::uint64_t);
constexpr std::size_t result_header = sizeof(std::uint64_t) + 1;
constexpr std::size_t max_error_text = 4000;

void put_u64(std::vector<std::byte>& out, std::uint64_t v) {
  auto b = std::bit_cast<std::array<std::byte, 8>>(v);
  out.insert(out.end(), b.begin(), b.end());
}
std::uint64_t get_u64(const std::byte* p) {
  std::array<std::byte, 8> b{};
  std::memcpy(b.data(), p, 8);
  return std::bit_cast<std::uint64_t>(b);
}

// The worker's whole life: receive a request, run it, send the result. Runs in the forked child.
int worker_main(pipe_channel& requests, pipe_channel& results) {
  std::vector<std::byte> msg;
  std::vector<std::byte> value;
  std::vector<std::byte> reply;
  for (;;) {
    try {
      requests.receive(msg);
    } catch (...) {
      return 0;  // the pool is gone
    }
    if (msg.size() < request_header) return 3;
    std::uint64_t id = get_u64(msg.data());
    if (id == 0) return 0;
    auto invoker = reinterpret_cast<detail::pool_invoker>(static_cast<std::uintptr_t>(get_u64(msg.data() + 8)));
    auto fn = static_cast<std::uintptr_t>(get_u64(msg.data() + 16));
    std::byte status{0};
    std::string error;
    value.clear();
    try {
      invoker(fn, std::span<const std::byte>(msg).subspan(request_header), value);
    } catch (const std::exception& e) {
      status = std::byte{1};
      error = e.what();
    } catch (...) {
      status = std::byte{1};
      error = "unknown exception (not derived from std::exception)";
    }
    reply.clear();
    put_u64(reply, id);
    reply.push_back(status);
    if (status == std::byte{0}) {
      reply.insert(reply.end(), value.begin(), value.end());
    } else {
      auto text = as_bytes(error).first(std::min(error.size(), max_error_text));
      reply.insert(reply.end(), text.begin(), text.end());
    }
    try {
      results.send(reply);
    } catch (...) {
      return 0;
    }
    std::fflush(nullptr);
  }
}

}  // namespace

struct process_pool::impl {
  struct worker {
    process proc;
    std::unique_ptr<pipe_channel> requests;  // our sending end
    std::unique_ptr<pipe_channel> results;   // our receiving end
    std::uint64_t running = 0;               // task in flight, 0 = idle
    bool stop_sent = false;
  };

  std::size_t target = 0;
  std::chrono::milliseconds grace{};
  mutable std::mutex m;
  std::condition_variable cv;
  std::vector<std::unique_ptr<worker>> workers;  // changed only by the constructor and the collector
  std::unordered_map<std::uint64_t, std::unique_ptr<detail::pool_task>> tasks;
  std::deque<std::uint64_t> queue;
  std::uint64_t next_id = 1;
  std::uint64_t lost = 0;  // workers that died without being told to stop
  bool closed = false;
  bool terminating = false;
  bool done = false;  // the collector has reaped every worker and exited
  unique_fd wake;     // eventfd: wakes the collector's poll
  std::thread collector;

  void wake_collector() noexcept {
    std::uint64_t one = 1;
    if (::write(wake.get(), &one, sizeof one) < 0) {
      // EAGAIN: counter saturated, the collector is awake anyway
    }
  }

  // m held (or no collector yet).
  void spawn_worker() {
    pipe_options po;
    po.max_message = 64 * 1024;
    auto [req_tx, req_rx] = pipe_channel::create(po);
    auto [res_tx, res_rx] = pipe_channel::create(po);
    // The child closes every fd of ours it inherited, so a worker never holds another
    // worker's pipe ends (which would keep them from seeing EOF).
    std::vector<int> close_in_child{wake.get(), req_tx->fd(), res_rx->fd()};
    for (const auto& w : workers) {
      close_in_child.push_back(w->requests->fd());
      close_in_child.push_back(w->results->fd());
      close_in_child.push_back(w->proc.pidfd());
    }
    pipe_channel* in = req_rx.get();
    pipe_channel* out = res_tx.get();
    auto proc = process::fork([&close_in_child, in, out] {
      for (int fd : close_in_child) ::close(fd);
      return worker_main(*in, *out);
    });
    auto w = std::make_unique<worker>();
    w->proc = std::move(proc);
    w->requests = std::move(req_tx);
    w->results = std::move(res_rx);
    workers.push_back(std::move(w));
  }

  void fail_task(std::uint64_t id, std::string_view object, std::string_view detail_text) {
    auto it = tasks.find(id);
    if (it == tasks.end()) return;
    try {
      throw_error(errc::closed, "process_pool", object, detail_text);
    } catch (...) {
      it->second->fail(std::current_exception());
    }
    tasks.erase(it);
  }

  void fail_queued(std::string_view why) {
    for (auto id : queue) fail_task(id, "pool", why);
    queue.clear();
  }

  // m held. Gives queued work to idle workers; with nothing left after close(), tells them to stop.
  void dispatch() {
    std::vector<std::byte> req;
    for (auto& w : workers) {
      if (w->running != 0 || w->stop_sent) continue;
      req.clear();
      if (!queue.empty()) {
        std::uint64_t id = queue.front();
        queue.pop_front();
        const auto& t = *tasks.at(id);
        put_u64(req, id);
        put_u64(req, reinterpret_cast<std::uintptr_t>(t.invoker));
        put_u64(req, t.fn);
        req.insert(req.end(), t.arg.begin(), t.arg.end());
        w->running = id;
      } else if (closed) {
        put_u64(req, 0);
        put_u64(req, 0);
        put_u64(req, 0);
        w->stop_sent = true;
      } else {
        continue;
      }
      try {
        // One message in flight per worker and it fits the pipe: this never waits on a busy worker.
        w->requests->send(req);
      } catch (const std::exception&) {
        // The worker is gone; its pidfd reports that and fails its task.
      }
    }
  }

  void handle_result(worker& w, const std::vector<std::byte>& msg) {
    if (msg.size() < result_header) return;
    std::uint64_t id = get_u64(msg.data());
    if (w.running == id) w.running = 0;
    auto it = tasks.find(id);
    if (it == tasks.end()) return;
    auto payload = std::span<const std::byte>(msg).subspan(result_header);
    if (msg[8] == std::byte{0}) {
      if (payload.size() != it->second->result_size) {
        try {
          throw_error(errc::corrupt, "process_pool", "worker " + pid_object(w.proc.pid()),
                      "result of " + std::to_string(payload.size()) + " bytes, expected " + std::to_string(it->second->result_size));
        } catch (...) {
          it->second->fail(std::current_exception());
        }
      } else {
        it->second->deliver(payload);
      }
    } else {
      it->second->fail(std::make_exception_ptr(std::runtime_error(std::string(as_text(payload)))));
    }
    tasks.erase(it);
  }

  void drain_results(worker& w) {
    std::vector<std::byte> msg;
    try {
      while (w.results->try_receive(msg)) handle_result(w, msg);
    } catch (const std::exception&) {
      // EOF: the worker's end is closed; its death is reported through the pidfd.
    }
  }

  // m held; the worker's pidfd polled readable: it has ended.
  void handle_exit(std::size_t index) {
    worker& w = *workers[index];
    drain_results(w);
    std::optional<exit_status> st;
    try {
      st = w.proc.try_join();
    } catch (const std::exception&) {
      st = exit_status{};  // reaped by someone else: status unknown
    }
    if (!st) return;
    if (w.running != 0) {
      fail_task(w.running, "worker " + pid_object(w.proc.pid()),
                st->to_string() + " while running task " + std::to_string(w.running));
    }
    if (!w.stop_sent && !terminating) ++lost;
    workers.erase(workers.begin() + static_cast<std::ptrdiff_t>(index));
  }

  // m held. Keeps `target` workers while there is or may be work; spawn failures with no worker
  // left fail the queued tasks instead of leaving them hanging.
  void top_up() {
    while (!terminating && (!closed || !queue.empty()) && workers.size() < target) {
      try {
        spawn_worker();
      } catch (const std::exception& e) {
        if (workers.empty()) fail_queued(std::string("no worker could be started: ") + e.what());
        return;
      }
    }
  }

  // m held. Kills and reaps every worker and fails every task with `why`.
  void abandon(const std::string& why) {
    terminating = true;
    closed = true;
    fail_queued(why);
    for (auto& w : workers) {
      if (w->running != 0) fail_task(w->running, "worker " + pid_object(w->proc.pid()), why);
    }
    workers.clear();  // each process handle SIGKILLs and reaps its worker
  }

  void run() {
    std::unique_lock lk(m);
    std::vector<pollfd> fds;
    std::vector<worker*> polled;
    for (;;) {
      top_up();
      dispatch();
      cv.notify_all();
      if (workers.empty() && (terminating || (closed && queue.empty()))) break;
      fds.assign(1, pollfd{wake.get(), POLLIN, 0});
      polled.clear();
      for (auto& w : workers) {
        fds.push_back(pollfd{w->results->readable_fd(), POLLIN, 0});
        fds.push_back(pollfd{w->proc.pidfd(), POLLIN, 0});
        polled.push_back(w.get());
      }
      bool buffered = std::any_of(workers.begin(), workers.end(), [](const auto& w) { return w->results->has_buffered_message(); });
      lk.unlock();
      int rc = ::poll(fds.data(), fds.size(), buffered ? 0 : -1);
      if (rc < 0 && errno != EINTR) {
        // ENOMEM or a broken fd set: the pool cannot watch its workers any more. Fail everything
        // rather than leave futures hanging.
        int err = errno;
        lk.lock();
        abandon(std::string("poll: ") + std::strerror(err));
        break;
      }
      std::uint64_t ignored = 0;
      if ((fds[0].revents & POLLIN) != 0 && ::read(wake.get(), &ignored, sizeof ignored) < 0) {
        // EAGAIN: consumed already
      }
      lk.lock();
      for (std::size_t i = 0; i < polled.size(); ++i) {
        if (fds[1 + 2 * i].revents != 0 || polled[i]->results->has_buffered_message()) drain_results(*polled[i]);
      }
      // Exits last: results a worker sent before dying are delivered first.
      for (std::size_t i = polled.size(); i-- > 0;) {
        if (fds[2 + 2 * i].revents == 0) continue;
        auto it = std::find_if(workers.begin(), workers.end(), [&](const auto& w) { return w.get() == polled[i]; });
        if (it != workers.end()) handle_exit(static_cast<std::size_t>(it - workers.begin()));
      }
    }
    done = true;
    cv.notify_all();
  }
};

process_pool::process_pool(std::size_t workers, std::chrono::milliseconds shutdown_grace) : impl_(new impl) {
  if (workers == 0) detail::throw_errno(EINVAL, "process_pool", "0 workers");
  impl_->target = workers;
  impl_->grace = shutdown_grace;
  impl_->wake.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!impl_->wake) detail::throw_errno(errno, "eventfd", "process_pool");
  // On a failure here impl_ is destroyed and every forked worker is SIGKILLed and reaped.
  for (std::size_t i = 0; i < workers; ++i) impl_->spawn_worker();
  impl_->collector = std::thread([p = impl_.get()] { p->run(); });
}

process_pool::~process_pool() {
  close();
  if (!join_for(impl_->grace)) terminate();
  {
    std::unique_lock lk(impl_->m);
    impl_->cv.wait(lk, [&] { return impl_->done; });  // SIGKILLed workers are reaped promptly
  }
  impl_->collector.join();
}

void process_pool::submit(std::unique_ptr<detail::pool_task> task) {
  std::lock_guard lk(impl_->m);
  if (impl_->closed) throw_error(errc::closed, "process_pool::apply_async", "pool", "the pool is closed");
  std::uint64_t id = impl_->next_id++;
  impl_->tasks.emplace(id, std::move(task));
  impl_->queue.push_back(id);
  impl_->dispatch();
  if (impl_->workers.size() < impl_->target) impl_->wake_collector();
}

void process_pool::close() noexcept {
  std::lock_guard lk(impl_->m);
  if (impl_->closed) return;
  impl_->closed = true;
  impl_->dispatch();
  impl_->wake_collector();
}

void process_pool::join() {
  close();
  std::unique_lock lk(impl_->m);
  impl_->cv.wait(lk, [&] { return impl_->done; });
}

bool process_pool::join_for(std::chrono::nanoseconds timeout) {
  close();
  auto d = deadline::in(timeout);
  std::unique_lock lk(impl_->m);
  if (d.is_never()) {
    impl_->cv.wait(lk, [&] { return impl_->done; });
    return true;
  }
  return impl_->cv.wait_until(lk, d.time_point(), [&] { return impl_->done; });
}

void process_pool::terminate() noexcept {
  std::lock_guard lk(impl_->m);
  impl_->closed = true;
  impl_->terminating = true;
  impl_->fail_queued("the pool was terminated before the task ran");
  for (auto& w : impl_->workers) {
    try {
      w->proc.kill(SIGKILL);
    } catch (const std::exception&) {
      // already reaped: nothing to kill
    }
  }
  impl_->wake_collector();
}

std::size_t process_pool::workers() const {
  std::lock_guard lk(impl_->m);
  return impl_->workers.size();
}

std::vector<pid_t> process_pool::worker_pids() const {
  std::lock_guard lk(impl_->m);
  std::vector<pid_t> out;
  for (const auto& w : impl_->workers) out.push_back(w->proc.pid());
  return out;
}

std::uint64_t process_pool::workers_lost() const {
  std::lock_guard lk(impl_->m);
  return impl_->lost;
}

}  // namespace ipc
