// Tutorial: a watchdog that restarts a stuck worker — the tutorial's "restart itself to recover".
//
// The worker kicks a watchdog counter in shared memory after every step. When a step never
// returns (here: it waits for a wake-up nobody sends, as a deadlocked thread does), the kicks stop;
// ipc::supervisor sees the counter stand still for watchdog_timeout, SIGKILLs the worker and starts
// it again. A worker that keeps getting stuck is given up after max_failures.
#include <ipc/process.hpp>
#include <ipc/supervisor.hpp>

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>

using namespace std::chrono_literals;

// Three steps, a kick after each. On a run that `hangs`, step 2 waits for ever.
int work(int run, bool hangs) {
  ipc::watchdog_kicker watchdog("tutorial-job.wd");
  for (int step = 1; step <= 3; ++step) {
    if (step == 2 && hangs) {
      std::printf("run %d: step 2 is stuck\n", run);
      std::fflush(stdout);  // a SIGKILLed process flushes nothing
      std::mutex m;
      std::condition_variable never;
      std::unique_lock lock(m);
      never.wait(lock, [] { return false; });
    }
    std::printf("run %d: step %d done\n", run, step);
    std::fflush(stdout);
    watchdog.kick();
  }
  return 0;
}

// Supervises `work` until it finishes or is given up; runs listed by `hangs_on_run` get stuck.
void supervise(const char* title, bool (*hangs_on_run)(int)) {
  std::printf("== %s\n", title);
  std::fflush(stdout);
  boost::asio::io_context io;
  ipc::supervisor_options o;
  o.watchdog_counter = "tutorial-job.wd";
  o.watchdog_timeout = 1s;  // no kick for this long: stuck
  o.first_delay = 50ms;     // back-off before a restart, doubling...
  o.stable_after = 5s;      // ...until a run lasts this long
  o.max_failures = 3;       // the third failure within `window` gives up
  int run = 0;
  ipc::supervisor sup(io.get_executor(), "worker", [&] {
    ++run;
    return ipc::process::fork([run, hangs_on_run] { return work(run, hangs_on_run(run)); });
  }, o);
  sup.on_event([](const ipc::supervisor::event& e) {
    using k = ipc::supervisor::event::kind;
    if (e.what == k::started) return;  // the worker's own lines say it runs
    std::printf("supervisor: %s\n", e.text.c_str());
    std::fflush(stdout);
  });
  sup.start();
  io.run();  // returns when the worker exited 0 or was given up
  std::printf("%s after %u start(s)\n", sup.current() == ipc::supervisor::state::done ? "finished" : "gave up",
              sup.starts());
}

int main() {
  supervise("stuck once, recovered by a restart", [](int run) { return run == 1; });
  supervise("stuck every time, given up", [](int) { return true; });
}
