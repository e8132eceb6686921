// Ending another thread's timed msgq or sem wait early, for async adapters (ipc/asio.hpp).
//
//   pid_t waiter = 0;
//   std::thread t([&] { waiter = ipc::wait_thread_id(); q.receive_for(buf, 10s); });
//   ...
//   ipc::interrupt_wait(waiter);   // the receive_for returns std::nullopt now, as on a timeout
//
// The wait sleeps in msgrcv/msgsnd/semop; a thread-directed signal (SIGRTMAX - 1, handled by
// libipc with SA_RESTART) makes that call fail with EINTR, and a flag the handler sets on the
// target thread makes the wait return as a timeout. A signal that lands in the few instructions
// between the wait's last look at the flag and its entry into the kernel is seen only when the
// call next wakes (message or deadline): repeat interrupt_wait until the wait is seen to end.
// Not for pipe, fifo (they have an fd to poll) or shm (its futex wait is restarted).
#pragma once

#include <ipc/config.hpp>

#include <sys/types.h>

namespace ipc {

/// The calling thread's id, for interrupt_wait(). Never blocks, never throws.
IPC_API pid_t wait_thread_id() noexcept;

/// Makes a timed msgq or sem wait of thread `tid` (of this process) return as a timeout. Never
/// blocks, never throws; false when the thread does not exist.
IPC_API bool interrupt_wait(pid_t tid) noexcept;

}  // namespace ipc
