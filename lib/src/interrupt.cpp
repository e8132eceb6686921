#include <ipc/interrupt.hpp>

#include "detail/deadline_signal.hpp"

namespace ipc {

pid_t wait_thread_id() noexcept { return detail::current_thread_id(); }

bool interrupt_wait(pid_t tid) noexcept { return detail::interrupt_thread(tid); }

}  // namespace ipc
