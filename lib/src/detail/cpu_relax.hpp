// A spin-wait hint: `pause` on x86 (lets the sibling hyperthread run, saves power), a compiler
// barrier elsewhere.
#pragma once

#include <atomic>

namespace ipc::detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::atomic_signal_fence(std::memory_order_seq_cst);
#endif
}

}  // namespace ipc::detail
