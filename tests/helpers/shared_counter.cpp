// shared-counter NAME ITERATIONS: opens the shared_value<int64_t> NAME (it must exist, with a
// lock) and does ITERATIONS locked increments. Exec'd by the [shared_value] tests as an
// unrelated process; prints "done N" and exits 0, or prints the error and exits 1.
#include <ipc/shared_value.hpp>

#include <cstdint>
#include <cstdio>
#include <exception>
#include <mutex>
#include <string>

int main(int argc, char* argv[]) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s NAME ITERATIONS\n", argv[0]);
    return 2;
  }
  try {
    ipc::shared_value<std::int64_t> counter(argv[1], ipc::open_mode::open_only);
    const long n = std::stol(argv[2]);
    for (long i = 0; i < n; ++i) {
      std::unique_lock lk(counter.get_lock());
      ++*counter.get();
    }
    std::printf("done %ld\n", n);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shared-counter: %s\n", e.what());
    return 1;
  }
}
