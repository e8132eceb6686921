// Deadlines for system calls that have none (msgrcv, msgsnd): a per-thread POSIX timer sends a
// thread-directed signal at the deadline, which makes the blocked call fail with EINTR.
//
//   detail::deadline_signal alarm(d);          // armed for this thread until destroyed
//   for (;;) {
//     if (::msgrcv(id, buf, n, 0, 0) >= 0) break;
//     if (errno == EINTR && d.expired()) return false;
//   }
//
// The thread sleeps in the kernel until the message or the deadline: no polling, no wake-ups.
// The signal is interrupt_signal() (SIGRTMAX - 1), handled by an empty handler installed once
// with SA_RESTART, so other calls of the thread that the kernel restarts are never disturbed;
// msgrcv, msgsnd and semop are never restarted after a handler (signal(7)), so they see EINTR.
// The timer fires again every millisecond after the deadline until disarmed: a signal that lands
// just before the call enters the kernel is followed by another, so no wait can miss its deadline.
#pragma once

#include <ipc/deadline.hpp>

#include <sys/types.h>

#include <atomic>
#include <cstdint>

namespace ipc::detail {

/// The real-time signal the timers send (SIGRTMAX - 1). An application handler already installed
/// for it is left alone (it interrupts the calls just as well).
int interrupt_signal() noexcept;

/// Arms the calling thread's timer for d (never(): does nothing); the destructor disarms it.
/// Throws std::system_error naming timer_create / timer_settime.
class deadline_signal {
 public:
  explicit deadline_signal(const deadline& d);
  ~deadline_signal();
  deadline_signal(const deadline_signal&) = delete;
  deadline_signal& operator=(const deadline_signal&) = delete;

 private:
  bool armed_ = false;
};

/// Sends interrupt_signal() to thread `tid` (of this process): a msgrcv/msgsnd/semop it is blocked
/// in returns EINTR, and take_interrupt() on that thread returns true once. Never throws; false if
/// tgkill failed. A signal that lands just before the call enters the kernel is lost for the call
/// (the flag stays set, and timed waits check it before sleeping again): callers repeat it until
/// the wait is seen to end.
bool interrupt_thread(pid_t tid) noexcept;

/// True (once) if interrupt_thread() hit the calling thread since the last call. Never throws.
bool take_interrupt() noexcept;

/// A word of the calling thread that interrupt_thread() changes (after setting the flag), for
/// futex waits to include: read it, check take_interrupt(), then sleep while it is unchanged.
const std::atomic<std::uint32_t>& interrupt_word() noexcept;

/// The calling thread's id (gettid) for interrupt_thread().
pid_t current_thread_id() noexcept;

}  // namespace ipc::detail
