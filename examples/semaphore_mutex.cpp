// Tutorial: a System V semaphore used as a mutex. Two processes add to one counter in shared
// memory (a shared_value created without its own lock) 50000 times each; the semaphore, taken
// with undo (semaphore_set::guard), makes every read-modify-write whole, so no update is lost,
// and a holder killed inside would give the semaphore back.
#include <ipc/process.hpp>
#include <ipc/semaphore.hpp>
#include <ipc/shared_value.hpp>

#include <cstdio>

int main() {
  constexpr long per_process = 50000;
  ipc::semaphore_set lock("tutorial-lock", ipc::open_mode::create_only, {1});  // 1: unlocked
  ipc::shared_value<long> counter("tutorial-counter", ipc::open_mode::create_only, 0, {.with_lock = false});
  auto add = [&] {
    for (long i = 0; i < per_process; ++i) {
      ipc::semaphore_set::guard held(lock, 0);  // wait(0) with undo ... post(0) with undo
      volatile long* v = counter.get();
      *v = *v + 1;
    }
    return 0;
  };
  auto a = ipc::process::fork(add);
  auto b = ipc::process::fork(add);
  a.join();
  b.join();
  std::printf("counter = %ld (expected %ld)\n", counter.load(), 2 * per_process);
  lock.remove();
  counter.remove();
  return counter.load() == 2 * per_process ? 0 : 1;
}
