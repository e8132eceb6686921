#include "detail/deadline_signal.hpp"

#include <ipc/error.hpp>

#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>

namespace ipc::detail {
namespace {

// Set on the thread a signal from interrupt_thread() (tgkill: SI_TKILL) lands on; timer signals
// (SI_TIMER) only end the call, their deadline says the rest. Initial-exec: libipc is never
// dlopen'ed lazily here, and a handler must not allocate TLS.
__attribute__((tls_model("initial-exec"))) thread_local volatile sig_atomic_t interrupted = 0;
// Bumped with the flag, so a futex wait that includes it (shm) ends: the kernel restarts the wait
// after the SA_RESTART handler and finds the word changed.
__attribute__((tls_model("initial-exec"))) thread_local std::atomic<std::uint32_t> interrupt_seq{0};

void on_interrupt(int, siginfo_t* si, void*) noexcept {
  if (si != nullptr && si->si_code == SI_TKILL) {
    interrupted = 1;
    interrupt_seq.fetch_add(1, std::memory_order_relaxed);
  }
}

void forget_timer_in_child() noexcept;

void install_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    ::pthread_atfork(nullptr, nullptr, forget_timer_in_child);
    const int sig = interrupt_signal();
    struct sigaction old {};
    ::sigaction(sig, nullptr, &old);
    const bool default_or_ignored =
        (old.sa_flags & SA_SIGINFO) == 0 && (old.sa_handler == SIG_DFL || old.sa_handler == SIG_IGN);
    if (!default_or_ignored) return;
    struct sigaction sa {};
    sa.sa_sigaction = on_interrupt;
    sa.sa_flags = SA_RESTART | SA_SIGINFO;
    ::sigemptyset(&sa.sa_mask);
    ::sigaction(sig, &sa, nullptr);
  });
}

// The thread's timer, made on first use and deleted when the thread ends.
struct thread_timer {
  timer_t id{};
  bool made = false;

  ~thread_timer() {
    if (made) ::timer_delete(id);
  }

  timer_t get() {
    if (made) return id;
    install_handler();
    const int sig = interrupt_signal();
    sigevent ev{};
    ev.sigev_notify = SIGEV_THREAD_ID;
    ev.sigev_signo = sig;
    ev._sigev_un._tid = static_cast<pid_t>(::syscall(SYS_gettid));
    check_unix(::timer_create(CLOCK_MONOTONIC, &ev, &id), "timer_create", "deadline signal");
    made = true;
    return id;
  }
};

thread_local thread_timer timer;

// Timers are not inherited by fork: the child's copy of the forking thread's record must not
// name the parent's timer.
void forget_timer_in_child() noexcept { timer.made = false; }

}  // namespace

int interrupt_signal() noexcept { return SIGRTMAX - 1; }

deadline_signal::deadline_signal(const deadline& d) {
  if (d.is_never()) return;
  const timer_t id = timer.get();
  // Unblocked on every arm (one cheap call on a path about to sleep): a blocked signal would
  // interrupt nothing, and the thread's mask may have changed since the timer was made.
  sigset_t set;
  ::sigemptyset(&set);
  ::sigaddset(&set, interrupt_signal());
  ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  itimerspec its{};
  its.it_value = d.monotonic_timespec();
  if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;  // 0 would disarm
  its.it_interval.tv_nsec = 1'000'000;
  check_unix(::timer_settime(id, TIMER_ABSTIME, &its, nullptr), "timer_settime", "deadline signal");
  armed_ = true;
}

deadline_signal::~deadline_signal() {
  if (!armed_) return;
  const itimerspec off{};
  ::timer_settime(timer.id, 0, &off, nullptr);
}

bool interrupt_thread(pid_t tid) noexcept {
  install_handler();
  return ::syscall(SYS_tgkill, ::getpid(), tid, interrupt_signal()) == 0;
}

const std::atomic<std::uint32_t>& interrupt_word() noexcept { return interrupt_seq; }

bool take_interrupt() noexcept {
  if (interrupted == 0) return false;
  interrupted = 0;
  return true;
}

pid_t current_thread_id() noexcept { return static_cast<pid_t>(::syscall(SYS_gettid)); }

}  // namespace ipc::detail
