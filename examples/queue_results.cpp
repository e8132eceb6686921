// Processes returning results through a typed queue (Python: Process + Queue).
//
// Three workers each square a slice of the numbers and put (worker, input, result) tuples on one
// queue; the parent collects them. Unlike a pipe of bytes there is no packing by hand: the queue
// carries any MessagePack-serialisable value.
#include <ipc/process.hpp>
#include <ipc/queue.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <string>
#include <tuple>
#include <vector>

using result = std::tuple<int, int, long>;  // worker, input, square

int main() {
  const std::string name = "squares-" + std::to_string(::getpid());
  ipc::queue<result> results(name);  // a System V message queue: `ipcs -q` shows it while we run

  std::vector<ipc::process> workers;
  for (int w = 0; w < 3; ++w) {
    // Created, then started: Python's Process(target=...).start().
    workers.emplace_back(ipc::process_options{.name = "worker-" + std::to_string(w)}, [&results, w] {
      for (int x = w; x < 9; x += 3) results.put({w, x, static_cast<long>(x) * x});
    });
    workers.back().start();
  }
  std::vector<result> got;
  for (int i = 0; i < 9; ++i) {
    auto r = results.get_for(std::chrono::seconds(30));
    if (!r) {
      std::cout << "timed out\n";
      return 1;
    }
    got.push_back(*r);
  }
  for (auto& w : workers) w.join();
  std::sort(got.begin(), got.end(), [](const result& a, const result& b) { return std::get<1>(a) < std::get<1>(b); });
  for (auto [worker, x, square] : got) std::cout << x << "^2 = " << square << " (worker-" << worker << ")\n";
  results.remove();  // queues outlive processes: remove it explicitly
}
