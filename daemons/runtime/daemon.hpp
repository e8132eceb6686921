// The daemon skeleton every toolkit daemon (ipc-producer, ipc-consumer, ipc-bridge …) runs on: one
// Boost.Asio loop with the signals (SIGTERM/SIGINT stop, SIGHUP reload, SIGUSR1 report), the stats
// and watchdog timers, systemd notification through ipc::sd_notifier (READY=1, STATUS=, WATCHDOG=1,
// STOPPING=1; no-ops outside systemd), the stats line and status file, and the exit status. A
// daemon adds only its data logic:
//
//   daemon_loop d({"ipc-consumer", "consumer", uri, status_path, 1.0});
//   d.start({.stop = [&](int) { drain(); d.finish(exit_ok); },
//            .reload = [&] { reopen_sink(); },
//            .report = [&](bool final) { d.publish(figures, latency, final); }});
//   return d.run();                      // the code given to finish()
//
// reopener is the channel-loss back-off and the quarantine of corrupt channels: see below.
#pragma once

#include "backoff.hpp"
#include "exit_status.hpp"
#include "log.hpp"
#include "resume.hpp"
#include "stats.hpp"

#include <ipc/channel.hpp>
#include <ipc/sd_notify.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>

namespace ipc::daemon {

/// Calls fn every `period` on the loop (drift-free; a late tick does not cause a burst).
class periodic_timer {
 public:
  explicit periodic_timer(boost::asio::io_context& io) : timer_(io) {}
  /// (Re)starts the timer. Never blocks.
  void start(std::chrono::steady_clock::duration period, std::function<void()> fn);
  /// Stops it; a tick already queued is dropped. Never throws.
  void cancel() noexcept;

 private:
  void arm();
  boost::asio::steady_timer timer_;
  std::chrono::steady_clock::duration period_{};
  std::chrono::steady_clock::time_point next_{};
  std::function<void()> fn_;
  bool active_ = false;
};

/// Who a daemon is, for its logs, stats line and status file.
struct daemon_config {
  std::string program;                ///< "ipc-consumer"
  std::string role;                   ///< the stats line's role= and the log prefix: "consumer"
  std::string channel;                ///< the URI the stats line names
  std::filesystem::path status_file;  ///< empty: none
  double stats_interval = 1.0;        ///< seconds between stats lines; 0: only the final one
};

class daemon_loop {
 public:
  struct hooks {
    std::function<void(int sig)> stop;       ///< SIGTERM / SIGINT (once; later ones are ignored)
    std::function<void()> reload;            ///< SIGHUP
    std::function<void(bool final)> report;  ///< stats timer, SIGUSR1, finish(): call publish()
  };

  /// Reads NOTIFY_SOCKET / WATCHDOG_USEC (a malformed socket is logged once). Never blocks.
  explicit daemon_loop(daemon_config config);
  daemon_loop(const daemon_loop&) = delete;
  daemon_loop& operator=(const daemon_loop&) = delete;

  [[nodiscard]] boost::asio::io_context& io() noexcept { return io_; }
  [[nodiscard]] const daemon_config& config() const noexcept { return config_; }

  /// Installs the signal handlers, sends READY=1 and starts the stats and watchdog timers (WATCHDOG=1
  /// every WATCHDOG_USEC/2 while the loop turns and healthy() holds). Call once the channel is open.
  void start(hooks h);
  /// WATCHDOG=1 is sent only while fn returns true (default: always; the loop turning is the proof).
  void set_health(std::function<bool()> fn) { health_ = std::move(fn); }
  /// The stats line on stderr and in the status file, and STATUS= to systemd. Never throws.
  void publish(const figures& f, latency_histogram& latency, bool final) noexcept;
  /// STOPPING=1, once. Never throws.
  void notify_stopping() noexcept;
  /// The final report (hooks.report(true)), status file removed, timers and signals cancelled;
  /// run() then returns `code`. Later calls do nothing.
  void finish(int code);
  [[nodiscard]] bool finished() const noexcept { return finished_; }
  /// Runs the loop until finish(); returns finish's code.
  int run();

  /// Logs "<program>: …" at priority p.
  template <typename... Args>
  void say(priority p, const Args&... args) const {
    log(p, config_.program, ": ", args...);
  }

 private:
  void wait_signal();
  void notify(std::string_view state) noexcept;

  daemon_config config_;
  boost::asio::io_context io_;
  boost::asio::signal_set signals_;
  periodic_timer stats_timer_, watchdog_timer_;
  ipc::sd_notifier notifier_;
  bool notify_failed_once_ = false;
  stats_reporter reporter_;
  hooks hooks_;
  std::function<bool()> health_;
  bool stop_seen_ = false, stopping_sent_ = false, finished_ = false;
  int code_ = exit_ok;
};

/// Reopening a lost channel on the loop with the daemons' back-off (backoff.hpp): the delay doubles
/// from 10 ms to 1 s and goes back to 10 ms only when data flows again (progress()), not when open()
/// succeeds; every log line goes through its throttle (3, then one per 10 s).
///
/// A lost channel is resumed through channel::reopen() on the handle that failed (resume(), resume.hpp:
/// a fifo keeps its reader, buffered frames and skip state; a shm ring re-attaches by name to the ring
/// its peer moved to), and opened anew only when reopen() cannot resume it (docs/daemons.md, "Restart
/// semantics").
///
/// A channel that failed with errc::corrupt is quarantined instead of reopened in a storm
/// (docs/daemons.md, "Quarantine"): the damage is logged once, with the library's full text (which
/// index, which slot), and later failures of the same streak (until data flows again) are only counted,
/// one line per 10 s; and the reopen waits at least the quarantine back-off, which doubles from 100 ms to
/// 5 s with each quarantine and falls back only after 10 s of data flowing. Where the damage lives decides
/// what is thrown away:
///  - a byte stream (fifo): in the bytes in flight, which the fifo's reopen() drops (a broken stream, a
///    frame torn by a writer that died mid-frame); the FIFO itself is kept, with its peers;
///  - an object (shm ring, sem unit, msgq): the object is discarded so that the next open recreates it -
///    on the handle that found it (a shm ring by identity and *not* on purpose, shm_ring::discard(), so its
///    attached sender notices the unlinked name and moves to the new ring; a sem unit by id; so never a
///    newer object), or, when the open itself found it and the reopener `discards_on_open` (the producer),
///    the object the URI names.
class reopener {
 public:
  static constexpr std::chrono::milliseconds first_quarantine_delay{100};
  static constexpr std::chrono::milliseconds max_quarantine_delay{5000};
  using opener = resumer::opener;

  reopener(daemon_loop& loop, std::string uri, bool discards_on_open = false);
  /// Logs why (throttled) and calls retry on the loop after the current delay. Never blocks.
  void lost(std::string_view why, std::function<void()> retry);
  /// The channel (or its open, when ch is null) failed with `code`; `what` is the exception's text.
  /// errc::corrupt: quarantined as described above; anything else: lost(what). Calls retry on the loop
  /// after the delay. Blocks only for the removal's system calls; never throws.
  void failed(std::error_code code, std::string_view what, channel* ch, std::function<void()> retry);
  /// The handle to go on with after a loss: `lost` after lost->reopen(), or open() when reopen() cannot
  /// resume it (resumer::resume(); a reopen() that threw is logged, throttled). `lost` may be null (the
  /// open failed): open(). Throws what open() throws.
  std::unique_ptr<channel> resume(std::unique_ptr<channel> lost, const opener& open);
  /// Logs that the channel is open again (throttled).
  void reopened(std::string_view name);
  /// Data moved: the peer is back (ends a quarantine streak; reopen() is tried first again).
  void progress() noexcept;
  void cancel() noexcept;
  [[nodiscard]] bool pending() const noexcept { return pending_; }
  /// Reopen attempts since the last progress().
  [[nodiscard]] std::uint64_t attempts() const noexcept { return backoff_.attempts(); }
  /// Corrupt channels quarantined since the start.
  [[nodiscard]] std::uint64_t quarantines() const noexcept { return quarantines_; }
  /// Whether the last resume() returned the lost handle itself (its counters go on) rather than a new one.
  [[nodiscard]] bool resumed_in_place() const noexcept { return resumer_.in_place(); }
  /// Whether the next resume() will try reopen() on the lost handle: when not, the caller drops it now
  /// (a discarded shm ring held on would keep its sender's name check slow: it looks at every send
  /// only while no receiver is attached).
  [[nodiscard]] bool will_reopen_in_place() const noexcept { return resumer_.may_reopen(); }

 private:
  void schedule(std::function<void()> retry);
  void discard(channel* ch) noexcept;

  daemon_loop& loop_;
  std::string what_;
  bool discards_on_open_;
  boost::asio::steady_timer timer_;
  backoff backoff_;
  throttle damage_throttle_{0, std::chrono::seconds(10)};
  std::chrono::milliseconds quarantine_delay_{first_quarantine_delay};
  std::chrono::steady_clock::time_point last_quarantine_{};
  std::uint64_t quarantines_ = 0;
  std::uint64_t streak_failures_ = 0;  // corrupt failures since the streak's report
  bool in_streak_ = false;             // a quarantine was reported and no data flowed since
  bool pending_ = false;
  resumer resumer_;
};

/// The directory of this executable (/proc/self/exe), where the sibling daemons live. Throws.
std::string own_directory();

}  // namespace ipc::daemon
