// ipc-bridge --from URI --to URI: forwards every message from one channel to another (shm → NATS
// JetStream → msgq, …), opaque bytes, in order. See docs/beyond-one-machine.md.
//
// A message leaves the source only for the destination: the bridge holds one message at a time
// and receives the next only after the destination confirmed the last (send returned: in the
// kernel queue or ring, or stored by JetStream). A source that acknowledges (nats: with JetStream)
// acknowledges a message on the next receive, so a SIGKILLed bridge loses nothing and repeats at
// most the one message it had forwarded but not yet acknowledged. A source that cannot acknowledge
// (every local channel) loses at most the one message in hand per SIGKILL; SIGTERM forwards it first.
//
// The forwarding loop runs on a worker thread in short blocking slices; the Asio loop on the main
// thread owns signals, the stats timer and the watchdog (pinged only while the worker makes
// progress). Exit codes as the other daemons (docs/daemons.md): 0, 1 failure, 2 usage.
#include "log.hpp"
#include "runtime.hpp"
#include "sd_notify.hpp"
#include "stats.hpp"

#include <ipc/channel.hpp>
#include <ipc/error.hpp>
#include <ipc/uri.hpp>

#include <CLI/CLI.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>

#include <atomic>
#include <csignal>
#include <cstring>
#include <iostream>
#include <memory>
#include <thread>

namespace ipc::daemon {
namespace {

using namespace std::chrono_literals;

struct bridge_options {
  std::string from;
  std::string to;
  std::uint64_t count = 0;
  double stats_interval = 1.0;
  std::string status_file;
};

// What the worker tells the loop; plain atomics, read by the stats timer.
struct progress {
  std::atomic<std::uint64_t> forwarded{0}, bytes{0}, reopens{0};
  std::atomic<std::int64_t> heartbeat_ns{0};  // steady clock of the worker's latest turn
  std::atomic<bool> ready{false}, done{false}, failed{false}, usage_error{false};
};

std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The forwarding loop: one message in hand at a time; every wait is a slice of at most 200 ms so
// a stop request is seen promptly.
class forwarder {
 public:
  forwarder(const bridge_options& o, progress& p, std::atomic<bool>& stop) : o_(o), p_(p), stop_(stop) {}

  void run() noexcept {
    try {
      loop();
    } catch (const std::exception& e) {
      log(priority::error, "bridge: ", e.what());
      p_.failed = true;
    }
    // Destroying the channels acknowledges the last forwarded message (nats) and detaches.
    src_.reset();
    dst_.reset();
    p_.done = true;
  }

 private:
  static constexpr auto slice = 200ms;

  void loop() {
    while (!stop_ || in_hand_) {
      p_.heartbeat_ns = steady_ns();
      if (stop_ && drain_until_ < std::chrono::steady_clock::now()) {
        log(priority::warning, "bridge: stopping with one message not forwarded (the destination did not take it)");
        return;
      }
      if (!open_both()) continue;
      if (!in_hand_) {
        if (o_.count != 0 && p_.forwarded >= o_.count) return;
        try {
          if (!src_->receive_for(buf_, slice)) continue;
        } catch (const std::system_error& e) {
          lost(src_, "from", o_.from, e);
          continue;
        }
        in_hand_ = true;
      }
      try {
        if (!dst_->send_for(buf_, slice)) continue;  // destination full or away: keep it, try again
      } catch (const std::system_error& e) {
        if (e.code() == errc::message_too_large) {
          // Never deliverable: say so and drop it rather than stop the stream behind it.
          log(priority::error, "bridge: dropped a message of ", buf_.size(), " bytes: ", e.what());
          in_hand_ = false;
          continue;
        }
        lost(dst_, "to", o_.to, e);
        continue;
      }
      in_hand_ = false;
      p_.forwarded.fetch_add(1);
      p_.bytes.fetch_add(buf_.size());
    }
  }

  // Opens whichever end is missing; false (after a back-off pause) when one could not be opened.
  bool open_both() {
    try {
      if (!dst_) dst_ = open_channel(o_.to, role::sender);
      if (!src_) src_ = open_channel(o_.from, role::receiver);
    } catch (const std::system_error& e) {
      // A URI its mechanism refuses (an unknown option, a bad size) never gets better: a usage error.
      if (e.code() == errc::bad_uri) {
        log(priority::error, "ipc-bridge: ", e.what());
        p_.usage_error = true;
        stop_ = true;
        return false;
      }
      if (throttle_.allow()) log(priority::warning, "bridge: open: ", e.what());
      pause(backoff_.next());
      return false;
    } catch (const std::exception& e) {
      if (throttle_.allow()) log(priority::warning, "bridge: open: ", e.what());
      pause(backoff_.next());
      return false;
    }
    if (!p_.ready.exchange(true)) {
      log(priority::info, "bridge: ", src_->name(), " -> ", dst_->name(), " open");
    } else if (reopened_) {
      log(priority::info, "bridge: reopened");
      p_.reopens.fetch_add(1);
    }
    reopened_ = false;
    throttle_.reset();
    backoff_.reset();
    return true;
  }

  void lost(std::unique_ptr<channel>& ch, const char* side, const std::string& uri, const std::system_error& e) {
    if (throttle_.allow()) log(priority::warning, "bridge: ", side, " ", uri, ": ", e.what(), "; reopening");
    ch.reset();
    reopened_ = true;
    pause(backoff_.next());
  }

  void pause(std::chrono::milliseconds d) {
    const auto until = std::chrono::steady_clock::now() + d;
    while (!stop_ && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(d, 20ms));
  }

 public:
  /// After a stop request, how long the message in hand may still take to reach the destination.
  void stop_by(std::chrono::steady_clock::time_point t) noexcept { drain_until_ = t; }

 private:
  const bridge_options& o_;
  progress& p_;
  std::atomic<bool>& stop_;
  std::unique_ptr<channel> src_, dst_;
  std::vector<std::byte> buf_;
  bool in_hand_ = false, reopened_ = false;
  throttle throttle_;
  backoff backoff_;
  std::chrono::steady_clock::time_point drain_until_ = std::chrono::steady_clock::time_point::max();
};

class bridge {
 public:
  explicit bridge(bridge_options o)
      : o_(std::move(o)),
        signals_(io_, SIGTERM, SIGINT, SIGHUP),
        stats_timer_(io_),
        watchdog_timer_(io_),
        poll_timer_(io_),
        reporter_("bridge", o_.from,
                  o_.status_file.empty() ? default_status_path(o_.from, "bridge") : std::filesystem::path(o_.status_file)),
        fwd_(o_, p_, stop_) {
    signals_.add(SIGUSR1);
  }

  int run() {
    wait_signal();
    worker_ = std::thread([this] { fwd_.run(); });
    if (auto period = notifier_.watchdog_period()) {
      watchdog_timer_.start(*period, [this, period] {
        // Alive means the worker took a turn within the period (its waits are 200 ms slices).
        if (steady_ns() - p_.heartbeat_ns.load() < std::chrono::nanoseconds(*period).count() * 2) notifier_.notify("WATCHDOG=1");
      });
    }
    if (o_.stats_interval > 0) {
      stats_timer_.start(std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(o_.stats_interval)),
                         [this] { report(false); });
    }
    // READY once both ends are open; done when the worker ends (count reached, failure, stop).
    poll_timer_.start(20ms, [this] {
      if (p_.ready && !ready_sent_) {
        ready_sent_ = true;
        notifier_.notify("READY=1");
      }
      if (p_.done) finish();
    });
    io_.run();
    if (worker_.joinable()) worker_.join();
    if (p_.usage_error) return exit_usage;
    return p_.failed ? exit_failure : exit_ok;
  }

 private:
  void wait_signal() {
    signals_.async_wait([this](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      switch (sig) {
        case SIGTERM:
        case SIGINT:
          log(priority::info, "bridge: ", strsignal(sig), ", forwarding the message in hand and stopping");
          notifier_.notify("STOPPING=1");
          fwd_.stop_by(std::chrono::steady_clock::now() + 5s);
          stop_ = true;
          break;
        case SIGHUP:
          log(priority::info, "bridge: SIGHUP: nothing to reopen (channels reopen by themselves when lost)");
          break;
        case SIGUSR1:
          report(false);
          break;
        default:
          break;
      }
      wait_signal();
    });
  }

  void finish() {
    if (finished_) return;
    finished_ = true;
    if (!stop_) notifier_.notify("STOPPING=1");
    stop_ = true;
    if (worker_.joinable()) worker_.join();
    stats_timer_.cancel();
    watchdog_timer_.cancel();
    poll_timer_.cancel();
    report(true);
    reporter_.remove_status_file();
    signals_.cancel();
    io_.stop();
  }

  void report(bool final) {
    f_.records = p_.forwarded;
    f_.bytes = p_.bytes;
    f_.restarts = p_.reopens;
    latency_histogram none;
    reporter_.report(f_, none, final);
    notifier_.notify("STATUS=" + reporter_.status_text());
  }

  bridge_options o_;
  boost::asio::io_context io_;
  boost::asio::signal_set signals_;
  periodic_timer stats_timer_, watchdog_timer_, poll_timer_;
  sd_notifier notifier_;
  stats_reporter reporter_;
  progress p_;
  std::atomic<bool> stop_{false};
  forwarder fwd_;
  std::thread worker_;
  figures f_;
  bool ready_sent_ = false, finished_ = false;
};

int run_bridge(int argc, char** argv) noexcept {
  try {
    bridge_options o;
    CLI::App app("Forwards every message from one libipc channel to another (e.g. shm -> NATS JetStream -> msgq).",
                 "ipc-bridge");
    app.add_option("--from", o.from, "source channel URI (e.g. shm:x, nats://HOST:PORT/SUBJECT?jetstream=S)")->required();
    app.add_option("--to", o.to, "destination channel URI (e.g. nats://HOST:PORT/SUBJECT?jetstream=S, msgq:y)")->required();
    app.add_option("--count", o.count, "exit after N messages (default 0 = until SIGTERM)");
    app.add_option("--stats-interval", o.stats_interval, "stats line period in seconds, 0 = only at exit (default 1)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--status-file", o.status_file, "status file (default runtime_dir/status/<from>.bridge.status)");
    app.set_version_flag("--version", std::string("ipc-bridge ") + version_text);
    try {
      app.parse(argc, argv);
      for (const auto* uri : {&o.from, &o.to}) {
        const auto u = channel_uri::parse(*uri);
        if (u.scheme == "pipe") throw CLI::ValidationError(*uri, "a pipe has no name to bridge; use fifo:PATH");
      }
    } catch (const CLI::ParseError& e) {
      const int rc = app.exit(e);
      return rc == 0 ? exit_ok : exit_usage;
    } catch (const std::system_error& e) {  // a bad URI
      log(priority::error, "ipc-bridge: ", e.what());
      return exit_usage;
    }
    ::signal(SIGPIPE, SIG_IGN);
    bridge b(std::move(o));
    return b.run();
  } catch (const std::exception& e) {
    log(priority::error, "ipc-bridge: ", e.what());
    return exit_failure;
  }
}

}  // namespace
}  // namespace ipc::daemon

int main(int argc, char** argv) { return ipc::daemon::run_bridge(argc, argv); }
