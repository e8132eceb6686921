// Tutorial: shared_value / shared_array (Python's Value and Array) with and without the lock.
// Two processes each add 1 to a shared counter a million times, starting together (a barrier).
// Without the lock their read-modify-writes overlap and updates are lost (how many depends on the
// machine: on one idle core it may even be none); with it (update() holds the value's robust
// lock) none are.
#include <ipc/named_sync.hpp>
#include <ipc/process.hpp>
#include <ipc/shared_value.hpp>

#include <cstdio>
#include <vector>

namespace {

constexpr long per_process = 1000000;

void busy_work() {
  volatile int sink = 0;
  for (int k = 0; k < 20; ++k) sink = sink + k;
}

long run(ipc::shared_value<long>& v, bool locked) {
  ipc::barrier start("tutorial-start", 2);
  auto add = [&] {
    start.wait();  // both loops run at the same time
    for (long i = 0; i < per_process; ++i) {
      if (locked) {
        v.update([](long& x) { ++x; });
      } else {
        volatile long* p = v.get();  // read, add, write back: another process may write in between
        long seen = *p;
        busy_work();  // a wider window between the read and the write, as real work would make
        *p = seen + 1;
      }
    }
    return 0;
  };
  auto a = ipc::process::fork(add);
  auto b = ipc::process::fork(add);
  a.join();
  b.join();
  start.remove();
  return *v.get();
}

}  // namespace

int main() {
  ipc::shared_value<long> unlocked("tutorial-unlocked", ipc::open_mode::create_only, 0, {.with_lock = false});
  long got = run(unlocked, false);
  std::printf("without the lock: %ld of %ld (%ld updates lost)\n", got, 2 * per_process, 2 * per_process - got);

  ipc::shared_value<long> locked("tutorial-locked", ipc::open_mode::create_only, 0);
  got = run(locked, true);
  std::printf("with the lock:    %ld of %ld (%ld updates lost)\n", got, 2 * per_process, 2 * per_process - got);

  // An Array: every process writes its own slot, so no lock is needed; a sum over slots is exact.
  ipc::shared_array<long> per_worker("tutorial-array", 4, ipc::open_mode::create_only, 0);
  std::vector<ipc::process> workers;
  for (std::size_t w = 0; w < 4; ++w) {
    workers.push_back(ipc::process::fork([&, w] {
      for (long i = 0; i < 1000; ++i) per_worker[w] += 1;
      return 0;
    }));
  }
  for (auto& p : workers) p.join();
  long sum = per_worker.update([](long* xs, std::size_t n) {
    long s = 0;
    for (std::size_t i = 0; i < n; ++i) s += xs[i];
    return s;
  });
  std::printf("array of 4 slots, one per process: sum %ld\n", sum);
  unlocked.remove();
  locked.remove();
  per_worker.remove();
}
