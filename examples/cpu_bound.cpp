// The CPU-bound comparison: the same work done by one process, by threads, and by a process pool.
//
// In Python the threads take as long as one process (the GIL lets one thread run Python code at
// a time), which is why the tutorial reaches for multiprocessing.Pool. In C++ threads run in
// parallel too: threads and the pool both finish in about 1/cores of the serial time; the pool
// pays a little more per task (fork, pipes, MessagePack) and buys isolation — a crash in a task
// kills one worker, not the program. The times depend on the machine; the counts must agree.
#include <ipc/process_pool.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <numeric>
#include <ranges>
#include <thread>
#include <vector>

namespace {

constexpr int limit = 300'000;
constexpr int chunks = 16;

// Primes in [from, to): deliberately naive trial division, so there is CPU work to share.
int count_primes(int from, int to) {
  int n = 0;
  for (int v = std::max(from, 2); v < to; ++v) {
    bool prime = true;
    for (int d = 2; d * d <= v; ++d) {
      if (v % d == 0) {
        prime = false;
        break;
      }
    }
    n += prime ? 1 : 0;
  }
  return n;
}

int chunk_primes(int c) { return count_primes(c * (limit / chunks), (c + 1) * (limit / chunks)); }

template <typename F>
void timed(const char* label, F work) {
  auto t0 = std::chrono::steady_clock::now();
  int primes = work();
  std::chrono::duration<double> took = std::chrono::steady_clock::now() - t0;
  std::printf("%-22s %8.3f s  primes=%d\n", label, took.count(), primes);
}

}  // namespace

int main() {
  unsigned n = std::max(2u, std::thread::hardware_concurrency());
  std::printf("work: count primes below %d in %d chunks, %u-way parallel\n", limit, chunks, n);

  timed("one process:", [] {
    int total = 0;
    for (int c = 0; c < chunks; ++c) total += chunk_primes(c);
    return total;
  });

  timed("threads:", [n] {
    std::vector<int> counts(chunks);
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < n; ++t) {
      threads.emplace_back([&counts, t, n] {
        for (int c = static_cast<int>(t); c < chunks; c += static_cast<int>(n)) counts[static_cast<std::size_t>(c)] = chunk_primes(c);
      });
    }
    for (auto& th : threads) th.join();
    return std::accumulate(counts.begin(), counts.end(), 0);
  });

  ipc::process_pool pool(n);  // forked before the clock starts, as Python's Pool is
  timed("process pool:", [&pool] {
    auto counts = pool.map(chunk_primes, std::views::iota(0, chunks), 1);
    return std::accumulate(counts.begin(), counts.end(), 0);
  });
}
