// The reaper of detached children (process::detach): one thread per process.
#include "detail/reaper.hpp"

#include <ipc/error.hpp>

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace ipc::detail {
namespace {

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

// Built while the library loads: its initialiser calls pthread_atfork, which waits for glibc's
// atfork lock while another thread forks, and that child would inherit the static half-built.
[[maybe_unused]] const bool g_reaper_ready = (reaper(), true);

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
}  // namespace

void hand_to_reaper(unique_fd& pidfd) {
  reaper_state& r = reaper();
  std::lock_guard lk(r.m);
  if (r.owner != ::getpid()) {
    unique_fd wake{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
    if (!wake) ipc::throw_errno(errno, "eventfd", "process reaper");
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

}  // namespace ipc::detail
