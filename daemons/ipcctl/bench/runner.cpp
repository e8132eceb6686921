#include "runner.hpp"

#include <ipc/error.hpp>
#include <ipc/process.hpp>
#include <ipc/unique_fd.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <exception>
#include <functional>
#include <new>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace ipc::bench {

std::atomic<bool> stop_requested{false};

std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

process_options child_options(std::string name) {
  return {.name = std::move(name), .daemon = true, .setup = {.parent_death_signal = SIGKILL}};
}

void child_signals() noexcept {
  ::signal(SIGINT, SIG_IGN);
  ::signal(SIGTERM, SIG_DFL);
}

std::int64_t thread_cpu_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

double percentile(const std::vector<double>& sorted, double q) noexcept {
  return sorted[std::min(sorted.size() - 1, static_cast<std::size_t>(q * static_cast<double>(sorted.size())))];
}

namespace {

using clock_type = std::chrono::steady_clock;

constexpr std::uint64_t end_marker = ~std::uint64_t{0};
constexpr auto ready_timeout = std::chrono::seconds(15);

// ---- message contents: the sequence number in the first and the last 8 bytes -----------------

void fill(std::span<std::byte> m) {
  for (std::size_t i = 0; i < m.size(); ++i) m[i] = static_cast<std::byte>(i * 131 + 7);
}

void stamp(std::span<std::byte> m, std::uint64_t seq) {
  std::memcpy(m.data(), &seq, sizeof seq);
  if (m.size() >= 16) std::memcpy(m.data() + m.size() - sizeof seq, &seq, sizeof seq);
}

// The sequence number of a received message, after checking its size and that both copies agree:
// a channel that truncates, tears or mixes up messages cannot post a figure.
std::uint64_t sequence_of(std::span<const std::byte> m, std::size_t size, const char* what) {
  if (m.size() != size) {
    throw_error(errc::corrupt, "receive", what,
                "got " + std::to_string(m.size()) + " bytes, sent " + std::to_string(size));
  }
  std::uint64_t a = 0;
  std::memcpy(&a, m.data(), sizeof a);
  if (size >= 16) {
    std::uint64_t b = 0;
    std::memcpy(&b, m.data() + size - sizeof b, sizeof b);
    if (a != b) throw_error(errc::corrupt, "receive", what, "the message's first and last 8 bytes differ");
  }
  return a;
}

void expect_sequence(std::uint64_t got, std::uint64_t want, const char* what) {
  if (got != want) {
    throw_error(errc::corrupt, "receive", what,
                "message " + std::to_string(got) + " where " + std::to_string(want) + " was due");
  }
}

double seconds_between(clock_type::time_point a, clock_type::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// ---- the child process and its watchdog -------------------------------------------------------

void write_text(int fd, const std::string& s) noexcept {
  const char* p = s.data();
  std::size_t n = s.size();
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

std::string read_all(int fd) {
  std::string s;
  char buf[512];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return s;
    s.append(buf, static_cast<std::size_t>(n));
  }
}


// Watches the child from a thread: if it dies with a failure, runs past its time budget, or the
// user interrupts the run, the child is killed and the transport interrupted, so the parent's
// blocked call returns with an error.
class watchdog {
 public:
  enum class verdict { none, child_failed, timed_out, interrupted };

  // The thread only signals `child` and polls its pidfd (never reaps): the handle is the caller's
  // again once stop() returned.
  watchdog(process& child, transport& t, clock_type::duration budget)
      : child_(child), pidfd_(child.pidfd()), t_(t), until_(clock_type::now() + budget),
        wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (!wake_) ipc::throw_errno(errno, "eventfd", "bench watchdog");
    thread_ = std::thread([this] { run(); });
  }
  ~watchdog() { stop(); }
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;

  void stop() noexcept {
    if (!thread_.joinable()) return;
    const std::uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
    thread_.join();
  }
  [[nodiscard]] verdict result() const noexcept { return verdict_.load(); }

 private:
  void fire(verdict v, bool kill_child) noexcept {
    verdict_ = v;
    if (kill_child) {
      try {
        child_.kill(SIGKILL);
      } catch (...) {  // NOLINT(bugprone-empty-catch): the child is gone already
      }
    }
    t_.interrupt();
  }
  void run() noexcept {
    bool child_done = false;
    for (;;) {
      pollfd p[2] = {{wake_.get(), POLLIN, 0}, {pidfd_, static_cast<short>(child_done ? 0 : POLLIN), 0}};
      int r = ::poll(p, 2, 50);
      if (r > 0 && (p[0].revents & POLLIN) != 0) return;
      if (r > 0 && (p[1].revents & POLLIN) != 0) {
        siginfo_t si{};
        if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_), &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid != 0) {
          child_done = true;
          if (si.si_code != CLD_EXITED || si.si_status != 0) return fire(verdict::child_failed, false);
        }
      }
      if (stop_requested.load()) return fire(verdict::interrupted, !child_done);
      if (clock_type::now() > until_) return fire(verdict::timed_out, !child_done);
    }
  }

  process& child_;
  int pidfd_;
  transport& t_;
  clock_type::time_point until_;
  unique_fd wake_;
  std::atomic<verdict> verdict_{verdict::none};
  std::thread thread_;
};

}  // namespace

void run_forked(transport& t, std::size_t size, std::vector<side> senders, double seconds,
                const std::function<void(transport&)>& child_body,
                const std::function<void(transport&)>& parent_body) {
  struct teardown_at_exit {
    transport& t;
    ~teardown_at_exit() { t.teardown(); }
  } teardown{t};
  t.setup(size, std::move(senders));

  int ctl[2];
  ipc::check_unix(::pipe2(ctl, O_CLOEXEC), "pipe2", "bench control pipe");
  unique_fd ctl_rd(ctl[0]);
  unique_fd ctl_wr(ctl[1]);
  // The parent ends the run: the child dies with it (SIGKILL), and a handle dropped early kills it.
  process child(child_options("bench child"), [&]() -> int {
    ctl_rd.reset();
    child_signals();
    try {
      t.open_child();
      write_text(ctl_wr.get(), "R");
      child_body(t);
    } catch (const std::exception& e) {
      write_text(ctl_wr.get(), std::string("E") + e.what());
      return 1;
    }
    return 0;
  });
  child.start();
  ctl_wr.reset();
  const pid_t pid = child.pid();
  // From here on the child is reaped on every path: join within a grace, else SIGKILL and join.
  std::optional<exit_status> status;
  auto reap = [&](clock_type::duration grace) {
    if (status) return;
    status = child.join_for(grace);
    if (!status) {
      child.kill(SIGKILL);
      status = child.join();
    }
  };

  auto child_error = [&](const std::string& text) {
    reap(std::chrono::seconds(2));
    std::string what = text.size() > 1 && text[0] == 'E' ? text.substr(1) : status->to_string();
    throw_error(errc::closed, "child", "pid " + std::to_string(pid), what);
  };

  // Wait until the child has opened its ends (or failed to).
  const auto ready_by = clock_type::now() + ready_timeout;
  for (;;) {
    if (stop_requested.load()) throw_error(errc::closed, "bench", "run", "interrupted");
    pollfd p{ctl_rd.get(), POLLIN, 0};
    int r = ::poll(&p, 1, 100);
    if (r < 0 && errno != EINTR) ipc::throw_errno(errno, "poll", "bench control pipe");
    if (r > 0) {
      char c = 0;
      ssize_t n = ::read(ctl_rd.get(), &c, 1);
      if (n == 1 && c == 'R') break;
      child_error(n == 1 ? std::string(1, c) + read_all(ctl_rd.get()) : std::string());
    }
    if (clock_type::now() > ready_by) child_error("Enot ready after 15 s");
  }

  const auto budget = std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(3 * seconds + 20));
  watchdog dog(child, t, budget);
  std::exception_ptr failure;
  try {
    t.open_parent();
    parent_body(t);
  } catch (...) {
    failure = std::current_exception();
  }
  dog.stop();
  // A child that is still blocked after this side failed would wait for ever: a short grace only.
  reap(failure ? std::chrono::milliseconds(300) : std::chrono::milliseconds(10000));
  const std::string text = read_all(ctl_rd.get());
  const bool child_ok = status->success();
  switch (dog.result()) {
    case watchdog::verdict::interrupted: throw_error(errc::closed, "bench", "run", "interrupted");
    case watchdog::verdict::timed_out:
      throw_error(errc::closed, "bench", "cell", "no result within " + std::to_string(static_cast<int>(3 * seconds + 20)) + " s; child killed");
    default: break;
  }
  if (!child_ok) {
    // The child's own error explains the parent's (a closed channel, say) better.
    std::string what = text.size() > 1 && text[0] == 'E' ? text.substr(1) : status->to_string();
    throw_error(errc::closed, "child", "pid " + std::to_string(pid), what);
  }
  if (failure) std::rethrow_exception(failure);
}

throughput_figures measure_throughput(transport& t, std::size_t size, double seconds) {
  throughput_figures out;
  // The child's CPU time comes back through an anonymous shared page made before the fork.
  void* page = ::mmap(nullptr, sizeof(std::atomic<std::int64_t>), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) ipc::throw_errno(errno, "mmap", "bench CPU figure");
  struct unmap {
    void* p;
    ~unmap() { ::munmap(p, sizeof(std::atomic<std::int64_t>)); }
  } unmap_at_exit{page};
  auto& child_cpu = *new (page) std::atomic<std::int64_t>(0);
  auto child = [&](transport& tr) {
    endpoint& tx = tr.end(0);
    auto msg = tx.message();
    fill(msg);
    const std::int64_t cpu0 = thread_cpu_ns();
    const auto stop = clock_type::now() + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(seconds));
    std::uint64_t seq = 0;
    for (;;) {
      for (int k = 0; k < 32; ++k, ++seq) {
        stamp(msg, seq);
        tx.send();
      }
      if (clock_type::now() >= stop) break;
    }
    stamp(msg, end_marker);
    tx.send();
    child_cpu.store(thread_cpu_ns() - cpu0);
  };
  std::int64_t parent_cpu = 0;
  auto parent = [&](transport& tr) {
    endpoint& rx = tr.end(0);
    std::uint64_t expect = 0;
    clock_type::time_point first{};
    std::int64_t cpu0 = 0;
    for (;;) {
      const std::uint64_t seq = sequence_of(rx.receive(), size, "throughput");
      if (seq == end_marker) break;
      expect_sequence(seq, expect, "throughput");
      if (expect == 0) {
        first = clock_type::now();
        cpu0 = thread_cpu_ns();
      }
      ++expect;
    }
    const auto last = clock_type::now();
    parent_cpu = thread_cpu_ns() - cpu0;
    if (expect < 2) throw_error(errc::corrupt, "receive", "throughput", "fewer than 2 messages arrived");
    out.messages = expect - 1;
    out.seconds = seconds_between(first, last);
  };
  run_forked(t, size, {side::child}, seconds, child, parent);
  out.cpu_ns_per_msg = static_cast<double>(child_cpu.load() + parent_cpu) / static_cast<double>(out.messages);
  return out;
}

latency_figures measure_latency(transport& t, std::size_t size, double seconds) {
  latency_figures out;
  auto child = [&](transport& tr) {
    endpoint& ping = tr.end(0);
    endpoint& pong = tr.end(1);
    fill(pong.message());
    for (std::uint64_t expect = 0;; ++expect) {
      const std::uint64_t seq = sequence_of(ping.receive(), size, "ping");
      if (seq == end_marker) return;
      expect_sequence(seq, expect, "ping");
      stamp(pong.message(), seq);
      pong.send();
    }
  };
  auto parent = [&](transport& tr) {
    endpoint& ping = tr.end(0);
    endpoint& pong = tr.end(1);
    auto msg = ping.message();
    fill(msg);
    std::vector<double> rtt;
    rtt.reserve(1 << 16);
    const auto start = clock_type::now();
    // Warm-up (not recorded): connections made, pages touched, both sides scheduled.
    const auto warm = start + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(std::min(0.05, seconds / 5)));
    const auto stop = warm + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(seconds));
    std::uint64_t seq = 0;
    for (;; ++seq) {
      stamp(msg, seq);
      const auto t0 = clock_type::now();
      ping.send();
      expect_sequence(sequence_of(pong.receive(), size, "pong"), seq, "pong");
      const auto t1 = clock_type::now();
      if (t0 >= warm) rtt.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      if (t1 >= stop && rtt.size() >= 10) break;
    }
    stamp(msg, end_marker);
    ping.send();
    std::sort(rtt.begin(), rtt.end());
    out.round_trips = rtt.size();
    out.p50_us = percentile(rtt, 0.50);
    out.p99_us = percentile(rtt, 0.99);
  };
  run_forked(t, size, {side::parent, side::child}, seconds, child, parent);
  return out;
}

}  // namespace ipc::bench
