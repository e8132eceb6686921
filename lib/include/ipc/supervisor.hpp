// A supervisor: runs one worker process on a Boost.Asio loop, waits for it on its pidfd (never
// waitpid(-1)), restarts it with back-off when it fails, gives up when it keeps failing, and -
// when asked - watches a watchdog counter the worker kicks across the process boundary, killing
// and restarting a worker that stops kicking (the tutorial's "restart itself to recover").
//
//   boost::asio::io_context io;
//   ipc::supervisor sup(io.get_executor(), "worker",
//                       [] { return ipc::process::exec({"/usr/bin/worker"}); });
//   sup.on_event([](const ipc::supervisor::event& e) { std::cerr << e.text << '\n'; });
//   sup.start();          // throws what the first start throws
//   io.run();             // returns once the worker exited for good (success, exit 2, given up)
//
//   // Watchdog across the process boundary: the worker opens the counter and kicks it.
//   ipc::supervisor_options o;  o.watchdog_counter = "job.wd";  o.watchdog_timeout = 2s;
//   ipc::supervisor sup(ex, "job", [] { return ipc::process::fork([] { worker_loop(); }); }, o);
//   // in the worker:  ipc::watchdog_kicker k("job.wd");  for (;;) { step(); k.kick(); }
//
// Restart rules: an exit 0 ends supervision (unless restart_on_success); an exit code in
// final_codes (2: usage error, 127: exec failure) is never restarted - retrying cannot help;
// anything else (another code, a signal, a watchdog expiry) is a failure, restarted after a
// delay that doubles from first_delay to max_delay and is reset by a run longer than
// stable_after; max_failures failures within `window` give up. stop() ends supervision.
// Under systemd (WatchdogSec=) feed WATCHDOG=1 only while healthy(): a stuck worker then also
// stops the unit's pings. See docs/process.md.
#pragma once

#include <ipc/config.hpp>
#include <ipc/process.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ipc {

/// How a supervisor restarts its worker and whether it watches a watchdog counter.
struct supervisor_options {
  std::chrono::milliseconds first_delay{100};    ///< back-off before the first restart
  std::chrono::milliseconds max_delay{5000};     ///< the doubling stops here
  unsigned max_failures = 5;                     ///< this many failures within `window` give up
  std::chrono::milliseconds window{10000};
  std::chrono::milliseconds stable_after{1000};  ///< a run this long resets the back-off
  bool restart_on_success = false;               ///< restart after exit 0 too (a service that must run)
  std::vector<int> final_codes{2, 127};          ///< exit codes never restarted (usage error, exec failure)
  /// Name of the shared counter (an ipc::shared_value<uint64_t>, created by the supervisor) the
  /// worker kicks through ipc::watchdog_kicker; empty: no watchdog.
  std::string watchdog_counter;
  /// No kick for this long (the first one is due this long after a start): the worker is
  /// SIGKILLed and the expiry counts as a failure. Must be > 0 with a counter.
  std::chrono::milliseconds watchdog_timeout{0};
};

class IPC_API supervisor {
 public:
  enum class state { idle, running, backing_off, done, gave_up };
  struct event {
    enum class kind { started, exited, restarting, gave_up, watchdog_expired, start_failed } what;
    pid_t pid = -1;                      ///< the worker concerned (-1 when none)
    std::optional<exit_status> status;   ///< how it ended (exited, restarting, gave_up)
    std::chrono::milliseconds delay{0};  ///< restarting: the back-off before the next start
    std::string text;                    ///< one line for a log: "worker pid 42 exited with code 1; restart in 100 ms"
  };
  /// Starts one worker; called for the first start and every restart.
  using starter = std::function<process()>;

  /// Binds to the executor; nothing runs before start(). Throws std::system_error (EINVAL naming
  /// supervisor) for an empty starter, a counter without a timeout, or max_failures 0.
  supervisor(boost::asio::any_io_executor ex, std::string name, starter start, supervisor_options options = {});
  /// Kills (SIGKILL) and reaps a running worker, removes the watchdog counter. Blocks until reaped.
  ~supervisor();
  supervisor(const supervisor&) = delete;
  supervisor& operator=(const supervisor&) = delete;

  /// Called on the loop for every event (start, exit, restart, give-up, watchdog expiry).
  void on_event(std::function<void(const event&)> fn);
  /// Starts the worker (creating the watchdog counter first). Throws what the starter throws, or
  /// std::system_error naming the counter's segment; then nothing runs. Never blocks on the worker.
  void start();
  /// Ends supervision: no restart; a running worker gets `sig` (0: none - it is left to finish).
  /// Its exit is still reported; the state becomes done. Never blocks.
  void stop(int sig = SIGTERM);
  /// Sends sig to the running worker through its pidfd; false when none runs. Throws as process::kill.
  bool signal(int sig);

  [[nodiscard]] state current() const noexcept;
  /// True while the loop has work of ours: a worker running or a restart pending.
  [[nodiscard]] bool active() const noexcept;
  /// The running worker's pid, -1 when none.
  [[nodiscard]] pid_t pid() const noexcept;
  /// Starts so far (the first included).
  [[nodiscard]] unsigned starts() const noexcept;
  /// How the last worker ended, if one did.
  [[nodiscard]] std::optional<exit_status> last_exit() const noexcept;
  /// Running, and (with a watchdog) kicked within the timeout: what a systemd WATCHDOG=1 ping vouches for.
  [[nodiscard]] bool healthy() const noexcept;
  [[nodiscard]] const std::string& name() const noexcept;

 private:
  struct impl;
  std::shared_ptr<impl> impl_;  // shared with pending asynchronous operations
};

/// The worker's side of a supervisor's watchdog: kicks the shared counter. Opens it (open_only).
class IPC_API watchdog_kicker {
 public:
  /// Throws std::system_error (ENOENT when the supervisor has not created it), errc::incompatible.
  explicit watchdog_kicker(std::string_view counter);
  ~watchdog_kicker();
  watchdog_kicker(watchdog_kicker&&) noexcept;
  watchdog_kicker& operator=(watchdog_kicker&&) noexcept;
  /// One relaxed atomic increment in shared memory. Never blocks, never throws.
  void kick() noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace ipc
