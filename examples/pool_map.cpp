// Python's Pool in C++: map(x*x, range(10)), apply_async, imap.
//
//   with Pool(4) as p:
//       print(p.map(lambda x: x * x, range(10)))    # Python needs a top-level function here
//       print(p.apply_async(pow, (2, 10)).get())
//       for s in p.imap(str, range(3)): print(s)
#include <ipc/process_pool.hpp>

#include <unistd.h>

#include <cmath>
#include <iostream>
#include <ranges>
#include <string>

int main() {
  ipc::process_pool pool(4);  // four forked workers

  auto squares = pool.map([](int x) { return x * x; }, std::views::iota(0, 10));
  std::cout << "map:";
  for (int s : squares) std::cout << ' ' << s;
  std::cout << '\n';

  std::future<double> power = pool.apply_async([](double b, double e) { return std::pow(b, e); }, 2.0, 10.0);
  std::cout << "apply_async: " << power.get() << '\n';

  // A lambda may capture a std::string (Python's Pool cannot pickle a lambda at all): the pool
  // forks a fresh worker that holds the capture, as docs/process.md "How a callable travels" says.
  const std::string unit = " apples";
  for (const std::string& s : pool.imap([unit](int n) { return std::to_string(n) + unit; }, std::views::iota(1, 4))) {
    std::cout << "imap: " << s << '\n';
  }

  int worker = pool.apply([] { return static_cast<int>(::getpid()); });
  std::cout << "ran in another process: " << std::boolalpha << (worker != ::getpid()) << '\n';
}
