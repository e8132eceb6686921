#include "test_support.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <exception>

namespace ipc::test {

std::string unique_name(std::string_view prefix) {
  static std::atomic<unsigned> counter{0};
  return std::string(prefix) + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

void reporter::write_line(const std::string& line) {
  std::string l = line + "\n";
  const char* p = l.data();
  std::size_t left = l.size();
  while (left > 0) {
    ssize_t n = ::write(fd_, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

child::~child() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int st = 0;
    while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
    }
  }
}

bool child::kill(int sig) { return pid_ > 0 && ::kill(pid_, sig) == 0; }

namespace {

// Reads whatever is available from fd into out; returns false at EOF.
bool drain(int fd, std::string& out) {
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n != 0;  // EAGAIN: open; 0: EOF
  }
}

}  // namespace

bool child::wait_for_line(std::string_view line, std::chrono::milliseconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  std::string want = std::string(line) + "\n";
  for (;;) {
    if (buffered_.find(want) != std::string::npos) return true;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    if (left.count() <= 0 || !report_) return false;
    pollfd p{report_.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count()) + 1) > 0 && !drain(report_.get(), buffered_)) {
      report_.reset();
      return buffered_.find(want) != std::string::npos;
    }
  }
}

child_result child::wait(std::chrono::milliseconds timeout) {
  child_result r;
  auto until = std::chrono::steady_clock::now() + timeout;
  int st = 0;
  for (;;) {
    if (report_ && !drain(report_.get(), buffered_)) report_.reset();
    pid_t w = ::waitpid(pid_, &st, WNOHANG);
    if (w == pid_) break;
    if (w < 0 && errno != EINTR) break;
    if (std::chrono::steady_clock::now() >= until) {
      r.timed_out = true;
      ::kill(pid_, SIGKILL);
      while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
      }
      break;
    }
    pollfd p{report_ ? report_.get() : -1, POLLIN, 0};
    ::poll(&p, 1, 5);
  }
  pid_ = -1;
  if (report_) drain(report_.get(), buffered_);
  if (WIFEXITED(st)) r.exit_code = WEXITSTATUS(st);
  if (WIFSIGNALED(st)) r.signal = WTERMSIG(st);
  r.report = std::move(buffered_);
  return r;
}

child fork_child(const std::function<int(reporter&)>& body) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::system_category(), "pipe2(report)");
  pid_t pid = ::fork();
  if (pid < 0) throw std::system_error(errno, std::system_category(), "fork");
  if (pid == 0) {
    ::close(fds[0]);
    reporter rep(fds[1]);
    int code = 99;
    try {
      code = body(rep);
    } catch (const std::exception& e) {
      rep.say("exception: ", e.what());
    } catch (...) {
      rep.say("exception: unknown");
    }
    ::_exit(code);
  }
  ::close(fds[1]);
  ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
  return child(pid, unique_fd(fds[0]));
}

child spawn(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env) {
  // Everything the child needs is built before fork: only async-signal-safe calls after it.
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view kv(*e);
    bool overridden = false;
    for (const auto& x : extra_env) overridden = overridden || kv.substr(0, kv.find('=') + 1) == x.substr(0, x.find('=') + 1);
    if (!overridden) env_strings.emplace_back(kv);
  }
  env_strings.insert(env_strings.end(), extra_env.begin(), extra_env.end());
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  static const char exec_failed[] = "spawn: execve failed\n";

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::system_category(), "pipe2(report)");
  pid_t pid = ::fork();
  if (pid < 0) throw std::system_error(errno, std::system_category(), "fork");
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::dup2(fds[1], 2);
    ::execve(args[0], args.data(), envp.data());
    (void)!::write(2, exec_failed, sizeof exec_failed - 1);
    ::_exit(127);
  }
  ::close(fds[1]);
  ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
  return child(pid, unique_fd(fds[0]));
}

std::string build_path(std::string_view relative) {
  return std::string(IPC_TEST_BUILD_DIR) + "/" + std::string(relative);
}

}  // namespace ipc::test
