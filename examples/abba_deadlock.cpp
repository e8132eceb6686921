// Tutorial: the classic deadlock — process 1 takes a then b, process 2 takes b then a — caught
// by the lock-order checker before it blocks, then fixed with ipc::lock_in_order.
//
// The checker is on by default in debug builds (IPC_LOCK_ORDER_CHECK=1/0 overrides); this
// example turns it on so that it behaves the same in every build.
#include <ipc/named_sync.hpp>
#include <ipc/process.hpp>
#include <ipc/sync.hpp>

#include <chrono>
#include <cstdio>
#include <mutex>
#include <system_error>

using namespace std::chrono_literals;

int main() {
  ipc::lock_order_checker::enable(true);
  ipc::named_mutex a("tutorial-a", ipc::open_mode::create_only);
  ipc::named_mutex b("tutorial-b", ipc::open_mode::create_only);
  ipc::event has_a("tutorial-has-a", ipc::open_mode::create_only);
  ipc::event has_b("tutorial-has-b", ipc::open_mode::create_only);

  // Each takes its first lock, waits until the other holds its own, then takes its second:
  // without the checker both would wait for ever.
  auto take = [](ipc::named_mutex& first, ipc::named_mutex& second, ipc::event& mine, ipc::event& theirs) {
    std::unique_lock l1(first);
    mine.set();
    if (!theirs.wait_for(10s)) return 1;
    try {
      std::unique_lock l2(second);
      std::printf("the other process: took both locks once the first let go\n");
    } catch (const std::system_error& e) {
      std::printf("caught before deadlocking: %s\n", e.what());
      std::fflush(stdout);  // while still holding `first`: this line comes first
    }
    return 0;
  };
  auto p1 = ipc::process::fork([&] { return take(a, b, has_a, has_b); });
  auto p2 = ipc::process::fork([&] { return take(b, a, has_b, has_a); });
  p1.join();
  p2.join();

  // The fix: both name the locks in any order; lock_in_order takes them in ascending id order.
  auto both = [&] {
    for (int i = 0; i < 1000; ++i) auto held = ipc::lock_in_order(a.native(), b.native());
    return 0;
  };
  auto q1 = ipc::process::fork(both);
  auto q2 = ipc::process::fork(both);
  std::printf("with lock_in_order: process 1 %s, process 2 %s\n", q1.join().to_string().c_str(),
              q2.join().to_string().c_str());
  a.remove();
  b.remove();
  has_a.remove();
  has_b.remove();
}
