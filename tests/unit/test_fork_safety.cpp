// Every lock the library uses internally is fork-safe: a child forked while another thread holds
// one never inherits it held. A multithreaded parent hammers the checker and its registry, the
// process door (fork_mutex), the detached-children reaper, the shm ring registry and pools while
// its main thread forks 300 children that use each of them; none may hang.
#include <ipc/channel.hpp>
#include <ipc/named_sync.hpp>
#include <ipc/process.hpp>
#include <ipc/process_pool.hpp>
#include <ipc/sync.hpp>

#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

int twice(int x) { return 2 * x; }

// What every child does with the library's internal locks; 0 when all went well.
int use_every_internal_lock(const std::string& shm_name, int i) {
  ipc::robust_mutex a{8101}, b{8102};
  { auto both = ipc::lock_in_order(a, b); }  // the checker and its shared registry
  ipc::lock_order_checker::set_handler({});  // the checker's handler slot
  auto grandchild = ipc::process::fork([] { return 0; });  // the process door
  if (!grandchild.join().success()) return 10;
  ipc::process::fork([] { return 0; }).detach();  // the reaper
  {
    auto rx = ipc::open_channel("shm:" + shm_name + "-" + std::to_string(i), ipc::role::receiver);  // ring registry
    rx->remove();
  }
  ipc::process_pool pool(1);
  if (pool.apply_async(twice, 21).get() != 42) return 11;
  return 0;
}

}  // namespace

TEST_CASE("fork safety: 300 children forked while other threads use every internal lock all finish",
          "[fork_safety]") {
  const bool was = ipc::lock_order_checker::enabled();
  ipc::lock_order_checker::enable(true);
  const auto shm_name = ipc::test::unique_name("forksafe");
  std::atomic<bool> stop{false};
  std::atomic<long> rounds{0};
  std::vector<std::thread> hammers;
  hammers.emplace_back([&] {  // the checker: nested locks learned into the registry
    ipc::robust_mutex a{8201}, b{8202}, c{8203};
    while (!stop) {
      auto l = ipc::lock_in_order(a, b, c);
      ++rounds;
    }
  });
  hammers.emplace_back([&] {  // the checker's handler slot and names
    while (!stop) {
      ipc::lock_order_checker::set_handler({});
      ipc::lock_order_checker::describe(8201, "hammered");
    }
  });
  hammers.emplace_back([&] {  // the process door and the reaper
    while (!stop) {
      ipc::process::fork([] { return 0; }).detach();
      std::this_thread::sleep_for(2ms);
    }
  });
  hammers.emplace_back([&] {  // the shm ring's fork registry
    for (int i = 0; !stop; ++i) {
      auto rx = ipc::open_channel("shm:" + shm_name + "-t" + std::to_string(i), ipc::role::receiver);
      rx->remove();
    }
  });
  hammers.emplace_back([&] {  // pools: their workers fork, their collector thread locks
    while (!stop) {
      ipc::process_pool pool(1);
      (void)pool.apply_async(twice, 1).get();
    }
  });

  int hung = 0, failed = 0;
  std::string first_failure;
  int forked = 0;
  for (int i = 0; i < 300 && hung == 0; ++i, ++forked) {  // the first hang fails the test: stop there
    auto kid = ipc::test::fork_child([&](ipc::test::reporter&) { return use_every_internal_lock(shm_name, i); });
    auto r = kid.wait(15s);
    if (r.timed_out) ++hung;
    if (!r.timed_out && r.exit_code != 0) {
      ++failed;
      if (first_failure.empty()) first_failure = "exit " + std::to_string(r.exit_code) + ": " + r.report;
    }
  }
  stop = true;
  for (auto& t : hammers) t.join();
  ipc::lock_order_checker::enable(was);
  INFO(first_failure);
  CHECK(forked == 300);
  CHECK(hung == 0);
  CHECK(failed == 0);
  CHECK(rounds > 0);
}
