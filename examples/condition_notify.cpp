// Tutorial: wait / notify_one / notify_all between processes with a named mutex and condition.
// Three waiter processes each wait for a ticket. notify_one with one ticket lets exactly one go;
// notify_all with two more lets the rest go. Waiters always re-check their condition (a ticket),
// so neither a spurious wake-up nor a notify sent before they wait can confuse them.
#include <ipc/named_sync.hpp>
#include <ipc/process.hpp>

#include <chrono>
#include <cstdio>
#include <mutex>
#include <vector>

using namespace std::chrono_literals;

struct tickets {
  int available = 0;
  int done = 0;
};

int main() {
  ipc::named_mutex m("tutorial-cv", ipc::open_mode::create_only);
  ipc::named_condition ticket_ready("tutorial-cv", ipc::open_mode::create_only);
  ipc::named_condition progress("tutorial-cv-progress", ipc::open_mode::create_only);
  ipc::shared_object<tickets> state("tutorial-cv", ipc::open_mode::create_only);

  std::vector<ipc::process> waiters;
  for (int i = 0; i < 3; ++i) {
    waiters.push_back(ipc::process::fork([&] {
      std::unique_lock lk(m);
      if (!ticket_ready.wait_for(lk, 30s, [&] { return state->available > 0; })) return 1;
      --state->available;
      ++state->done;
      progress.notify_all();
      return 0;
    }));
  }
  auto wait_done = [&](int n) {
    std::unique_lock lk(m);
    progress.wait_for(lk, 30s, [&] { return state->done >= n; });
    return state->done;
  };
  {
    std::unique_lock lk(m);
    state->available = 1;
  }
  ticket_ready.notify_one();
  std::printf("after notify_one: %d waiter(s) done\n", wait_done(1));
  {
    std::unique_lock lk(m);
    state->available += 2;
  }
  ticket_ready.notify_all();
  std::printf("after notify_all: %d waiter(s) done\n", wait_done(3));
  int ok = 0;
  for (auto& w : waiters) ok += w.join().success() ? 1 : 0;
  std::printf("%d of 3 waiters exited cleanly\n", ok);
  m.remove();
  ticket_ready.remove();
  progress.remove();
  state.remove();
  return ok == 3 ? 0 : 1;
}
