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
// The forwarding loop runs on a worker thread in short blocking slices (a send waits for the
// destination's confirmation; an Asio completion would only move that wait); the daemon skeleton
// (daemon.hpp) on the main thread owns signals, stats, sd_notify and the watchdog (pinged only while
// the worker takes turns). Exit statuses as the other daemons: 0, 1 failure, 2 usage.
#include "backoff.hpp"
#include "cli.hpp"
#include "daemon.hpp"
#include "format.hpp"
#include "limits.hpp"
#include "log.hpp"
#include "resume.hpp"
#include "stats.hpp"

#include <ipc/channel.hpp>
#include <ipc/error.hpp>
#include <ipc/uri.hpp>

#include <atomic>
#include <csignal>
#include <cstring>
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
      log(priority::error, "ipc-bridge: ", e.what());
      p_.failed = true;
    }
    // Destroying the channels acknowledges the last forwarded message (nats) and detaches.
    src_.reset();
    dst_.reset();
    src_end_.lost.reset();
    dst_end_.lost.reset();
    p_.done = true;
  }

 private:
  static constexpr auto slice = 200ms;

  void loop() {
    while (!stop_ || in_hand_) {
      p_.heartbeat_ns = steady_ns();
      if (stop_ && drain_until_ < std::chrono::steady_clock::now()) {
        log(priority::warning, "ipc-bridge: stopping with one message not forwarded (the destination did not take it)");
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
          log(priority::error, "ipc-bridge: dropped a message of ", buf_.size(), " bytes: ", e.what());
          in_hand_ = false;
          continue;
        }
        lost(dst_, "to", o_.to, e);
        continue;
      }
      in_hand_ = false;
      // Data flows: the back-off and its log throttle start over (an end that opens fine and fails
      // at once must not become a busy loop).
      backoff_.progress();
      src_end_.policy.progress();
      dst_end_.policy.progress();
      p_.forwarded.fetch_add(1);
      p_.bytes.fetch_add(buf_.size());
    }
  }

  // Opens whichever end is missing; false (after a back-off pause) when one could not be opened.
  bool open_both() {
    try {
      // The bridge carries the daemons' records: on a msgq end they keep the record mtype (format.hpp).
      // A lost end is resumed through channel::reopen() where that resumes it (resume.hpp), else opened anew.
      if (!dst_) dst_ = resume(dst_end_, o_.to, role::sender);
      if (!src_) src_ = resume(src_end_, o_.from, role::receiver);
    } catch (const std::system_error& e) {
      // A URI its mechanism refuses (an unknown option, a bad size) never gets better: a usage error.
      if (e.code() == errc::bad_uri) {
        log(priority::error, "ipc-bridge: ", e.what());
        p_.usage_error = true;
        stop_ = true;
        return false;
      }
      if (backoff_.may_log()) log(priority::warning, "ipc-bridge: open: ", e.what());
      pause(backoff_.next());
      return false;
    } catch (const std::exception& e) {
      if (backoff_.may_log()) log(priority::warning, "ipc-bridge: open: ", e.what());
      pause(backoff_.next());
      return false;
    }
    if (!p_.ready.exchange(true)) {
      log(priority::info, "ipc-bridge: ", src_->name(), " -> ", dst_->name(), " open");
    } else if (reopened_) {
      log(priority::info, "ipc-bridge: reopened");
      p_.reopens.fetch_add(1);
    }
    reopened_ = false;
    return true;
  }

  // One end of the bridge: the handle that failed, kept until resume(), and its resume policy.
  struct end {
    std::unique_ptr<channel> lost;
    resumer policy;
  };

  std::unique_ptr<channel> resume(end& e, const std::string& uri, role r) {
    std::string why;
    auto ch = e.policy.resume(std::move(e.lost), [&] {
      if (!why.empty() && backoff_.may_log()) log(priority::warning, "ipc-bridge: reopen(", uri, "): ", why, "; opening it anew");
      return open_channel(channel_uri_for(payload_format::record, channel_uri::parse(uri)), r);
    }, &why);
    return ch;
  }

  void lost(std::unique_ptr<channel>& ch, const char* side, const std::string& uri, const std::system_error& e) {
    if (backoff_.may_log()) log(priority::warning, "ipc-bridge: ", side, " ", uri, ": ", e.what(), "; reopening");
    end& which = &ch == &src_ ? src_end_ : dst_end_;
    which.policy.failed(ch.get());
    which.lost = std::move(ch);
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
  end src_end_, dst_end_;
  std::vector<std::byte> buf_;
  bool in_hand_ = false, reopened_ = false;
  backoff backoff_;  // the skeleton's reopen policy (backoff.hpp), on this blocking thread
  std::chrono::steady_clock::time_point drain_until_ = std::chrono::steady_clock::time_point::max();
};

class bridge {
 public:
  bridge(bridge_options o, std::filesystem::path status_file)
      : o_(std::move(o)),
        loop_({"ipc-bridge", "bridge", o_.from, std::move(status_file), o_.stats_interval}),
        poll_timer_(loop_.io()),
        fwd_(o_, p_, stop_) {}

  int run() {
    worker_ = std::thread([this] { fwd_.run(); });
    // The skeleton starts (signals, READY=1, stats and watchdog timers) once both ends are open;
    // the loop ends when the worker does (count reached, failure, stop).
    poll_timer_.start(20ms, [this] {
      if (p_.ready && !started_) {
        started_ = true;
        loop_.set_health([this] {
          // Alive: the worker took a turn lately (its waits are 200 ms slices).
          return steady_ns() - p_.heartbeat_ns.load() < std::chrono::nanoseconds(5s).count();
        });
        loop_.start({.stop =
                         [this](int) {
                           fwd_.stop_by(std::chrono::steady_clock::now() + 5s);
                           stop_ = true;
                         },
                     .reload = [this] { loop_.say(priority::info, "SIGHUP: nothing to reopen (lost channels reopen by themselves)"); },
                     .report = [this](bool final) { report(final); }});
      }
      if (p_.done) {
        poll_timer_.cancel();
        if (worker_.joinable()) worker_.join();
        loop_.finish(p_.usage_error ? exit_usage : p_.failed ? exit_failure : exit_ok);
      }
    });
    const int code = loop_.run();
    stop_ = true;
    if (worker_.joinable()) worker_.join();
    return code;
  }

 private:
  void report(bool final) {
    f_.records = p_.forwarded;
    f_.bytes = p_.bytes;
    f_.restarts = p_.reopens;
    latency_histogram none;
    loop_.publish(f_, none, final);
  }

  bridge_options o_;
  daemon_loop loop_;
  periodic_timer poll_timer_;
  progress p_;
  std::atomic<bool> stop_{false};
  forwarder fwd_;
  std::thread worker_;
  figures f_;
  bool started_ = false;
};

int run_bridge(int argc, char** argv) noexcept {
  try {
    CLI::App app{"Forwards every message from one libipc channel to another (e.g. shm -> NATS JetStream -> msgq),\n"
                 "taking the next only after the destination confirmed the last. See docs/beyond-one-machine.md.",
                 "ipc-bridge"};
    add_common(app, error_style::daemon);
    bridge_options o;
    app.add_option("--from", o.from, "source channel URI (e.g. shm:x, nats://HOST:PORT/SUBJECT?jetstream=S)")->required()->type_name("URI");
    app.add_option("--to", o.to, "destination channel URI (e.g. nats://HOST:PORT/SUBJECT?jetstream=S, msgq:y)")->required()->type_name("URI");
    add_count(app, "--count", o.count, 0, UINT64_MAX, "exit after N messages, 0 = until SIGTERM");
    add_stats_options(app, o.stats_interval, o.status_file);
    if (auto rc = parse(app, argc, argv)) return *rc;
    // Validate before create: both URIs (scheme, size options) before anything is opened.
    for (const auto* text : {&o.from, &o.to}) {
      try {
        const auto u = channel_uri::parse(*text);
        (void)max_message_before_open(u);
        if (u.scheme == "pipe") return usage_error(app, *text + ": a pipe has no name to bridge (use fifo:PATH)");
      } catch (const std::exception& e) {
        return usage_error(app, e.what());
      }
    }
    ::signal(SIGPIPE, SIG_IGN);
    const std::filesystem::path status = o.status_file.empty() ? default_status_path(o.from, "bridge") : std::filesystem::path(o.status_file);
    bridge b(std::move(o), status);
    return b.run();
  } catch (const std::exception& e) {
    log(priority::error, "ipc-bridge: ", e.what());
    return exit_failure;
  }
}

}  // namespace
}  // namespace ipc::daemon

int main(int argc, char** argv) { return ipc::daemon::run_bridge(argc, argv); }
