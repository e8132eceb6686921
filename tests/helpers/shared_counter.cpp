// shared-counter NAME CONTROL ITERATIONS [--no-lock]
//
// Exec'd by the [shared_value] tests as an unrelated process. Opens the shared_value<int64_t> NAME
// (it must exist, with a lock) and the shared_array<int64_t> CONTROL (2 slots: [0] ready count,
// [1] start flag: 0 wait, 1 go, -1 abort). Start barrier: it attaches, bumps ready, then waits
// (deadline 60 s) for the parent to set go, so two helpers run their loops at the same time.
// Each iteration is a plain read-modify-write of the counter: a volatile load, a little work, a
// volatile store of load + 1 — under get_lock() normally, with no lock at all given --no-lock
// (which must lose updates when the two overlap). Prints "done N start S end E interleaved K" (S, E:
// CLOCK_MONOTONIC ns when its loop began and ended, comparable across processes, so the parent can
// check that the two loops overlapped; K: iterations that found a value the other process wrote
// since this one's last store, for diagnosis) and exits 0; an error: prints it and exits 1; no go
// before the deadline, or abort: exits 3.
#include <ipc/deadline.hpp>
#include <ipc/shared_value.hpp>

#include <sched.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>

namespace {

// A little work: between the load and the store it keeps the read-modify-write window a realistic
// few hundred nanoseconds instead of two adjacent instructions; between iterations (outside the
// lock) it gives the other process, woken from the futex, a fair chance to take the lock.
void some_work(unsigned steps) {
  volatile unsigned sink = 0;
  for (unsigned k = 0; k < steps; ++k) sink = sink + k;
}

long long ns_since_epoch(std::chrono::steady_clock::time_point t) {
  return static_cast<long long>(std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

}  // namespace

int main(int argc, char* argv[]) {
  const bool no_lock = argc == 5 && std::strcmp(argv[4], "--no-lock") == 0;
  if (argc != 4 && !no_lock) {
    std::fprintf(stderr, "usage: %s NAME CONTROL ITERATIONS [--no-lock]\n", argv[0]);
    return 2;
  }
  try {
    ipc::shared_value<std::int64_t> counter(argv[1], ipc::open_mode::open_only);
    ipc::shared_array<std::int64_t> control(argv[2], 2, ipc::open_mode::open_only);
    const long n = std::stol(argv[3]);

    control.update([](std::int64_t* c, std::size_t) { ++c[0]; });
    const auto start_by = ipc::deadline::in(std::chrono::seconds(60));
    std::int64_t flag = 0;
    while ((flag = control.load(1)) == 0 && !start_by.expired()) ::sched_yield();
    if (flag != 1) {
      std::printf("no go (flag %lld)\n", static_cast<long long>(flag));
      return 3;
    }

    const auto start = std::chrono::steady_clock::now();
    volatile std::int64_t* value = counter.get();
    std::int64_t last_stored = -1;
    long interleaved = 0;
    for (long i = 0; i < n; ++i) {
      some_work(256);
      std::unique_lock<ipc::robust_mutex> lk;
      if (!no_lock) lk = std::unique_lock(counter.get_lock());
      const std::int64_t seen = *value;
      if (last_stored >= 0 && seen != last_stored) ++interleaved;
      some_work(512);
      *value = seen + 1;
      last_stored = seen + 1;
    }
    const auto end = std::chrono::steady_clock::now();
    std::printf("done %ld start %lld end %lld interleaved %ld\n", n, ns_since_epoch(start), ns_since_epoch(end),
                interleaved);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shared-counter: %s\n", e.what());
    return 1;
  }
}
