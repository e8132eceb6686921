// ipc-consumer: receives records through ipc/asio.hpp, checks each, writes payloads to the sink.
#include "log.hpp"
#include "options.hpp"
#include "runtime.hpp"
#include "sd_notify.hpp"
#include "stats.hpp"

#include <ipc/asio.hpp>
#include <ipc/channel.hpp>
#include <ipc/error.hpp>
#include <ipc/record.hpp>
#include <ipc/uri.hpp>

#include <boost/asio/signal_set.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>

namespace ipc::daemon {
namespace {

struct consumer_options {
  std::string uri;
  std::string sink = "null";
  std::uint64_t count = 0;
  double stats_interval = 1.0;
  std::string status_file;
};

// Where payloads go: a file (appended), stdout, or nowhere. One payload per line.
class sink {
 public:
  explicit sink(std::string target) : target_(std::move(target)) { open(); }
  ~sink() { close(); }
  sink(const sink&) = delete;
  sink& operator=(const sink&) = delete;

  void write(std::span<const std::byte> payload) {
    if (file_ == nullptr) return;
    if (std::fwrite(payload.data(), 1, payload.size(), file_) != payload.size() || std::fputc('\n', file_) == EOF) {
      detail::throw_errno(errno, "write", target_);
    }
  }
  void flush() noexcept {
    if (file_ != nullptr) std::fflush(file_);
  }
  /// SIGHUP: a rotated log file gets a fresh one. Throws std::system_error.
  void reopen() {
    close();
    open();
  }

 private:
  void open() {
    if (target_ == "null") return;
    if (target_ == "-") {
      file_ = stdout;
    } else {
      int fd = ::open(target_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
      if (fd < 0) detail::throw_errno(errno, "open", target_);
      file_ = ::fdopen(fd, "a");
      if (file_ == nullptr) {
        const int err = errno;
        ::close(fd);
        detail::throw_errno(err, "fdopen", target_);
      }
    }
    std::setvbuf(file_, nullptr, _IOFBF, 64 * 1024);
  }
  void close() noexcept {
    if (file_ == nullptr) return;
    std::fflush(file_);
    if (file_ != stdout) std::fclose(file_);
    file_ = nullptr;
  }
  std::string target_;
  FILE* file_ = nullptr;
};

class consumer {
 public:
  explicit consumer(consumer_options o)
      : o_(std::move(o)),
        fd_mode_(channel_uri::parse(o_.uri).scheme == "pipe"),
        signals_(io_, SIGTERM, SIGINT, SIGHUP),
        stats_timer_(io_),
        watchdog_timer_(io_),
        retry_timer_(io_),
        reporter_("consumer", o_.uri,
                  o_.status_file.empty() ? default_status_path(o_.uri, "consumer") : std::filesystem::path(o_.status_file)),
        sink_(o_.sink) {
    signals_.add(SIGUSR1);
  }

  int run() {
    open();
    log(priority::info, "consumer: ", ch_->name(), " open");
    notifier_.notify("READY=1");
    wait_signal();
    if (auto p = notifier_.watchdog_period()) watchdog_timer_.start(*p, [this] { notifier_.notify("WATCHDOG=1"); });
    if (o_.stats_interval > 0) {
      stats_timer_.start(std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(o_.stats_interval)),
                         [this] {
                           report(false);
                           sink_.flush();
                         });
    }
    arm();
    io_.run();
    return exit_code_;
  }

 private:
  void open() {
    ch_ = open_channel(o_.uri, role::receiver);
    buf_.reserve(ch_->max_message_size());
    ar_.emplace(io_.get_executor(), *ch_);
    ++generation_;
  }

  void close_channel() noexcept {
    // Only called with no receive pending; were one pending, its handler would see an old generation.
    ar_.reset();
    ch_.reset();
  }

  void wait_signal() {
    signals_.async_wait([this](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      on_signal(sig);
      wait_signal();
    });
  }

  void on_signal(int sig) {
    switch (sig) {
      case SIGTERM:
      case SIGINT:
        log(priority::info, "consumer: ", strsignal(sig), ", draining");
        stopping_ = true;
        notifier_.notify("STOPPING=1");
        if (ar_ && pending_) {
          ar_->cancel();  // the completion drains
        } else {
          drain_and_finish();
        }
        break;
      case SIGHUP:
        // A byte stream (pipe, fifo) is kept: complete frames buffered here and the frame in
        // progress cannot be carried over to a new open, so re-opening it could lose or split a
        // record. Queues, the sem buffer and the shm ring hold whole messages and re-attach safely.
        log(priority::info, "consumer: SIGHUP, reopening the sink", reopens_channel_on_hup() ? " and the channel" : "");
        try {
          sink_.flush();
          sink_.reopen();
        } catch (const std::exception& e) {
          log(priority::error, "consumer: ", e.what());
        }
        if (reopens_channel_on_hup() && !stopping_) {
          if (pending_) {
            // Closing now would throw away a message the receiver may already hold: cancel, and
            // reopen from the completion once whatever it delivers is handled.
            reopen_pending_ = true;
            ar_->cancel();
          } else {
            reopen_now();
          }
        }  // no channel: a reopen is already scheduled
        break;
      case SIGUSR1:
        report(false);
        break;
      default:
        break;
    }
  }

  void arm() {
    if (!ar_ || stopping_ || pending_) return;
    pending_ = true;
    ar_->async_receive(buf_, [this, gen = generation_](std::error_code ec, std::size_t) {
      if (gen != generation_) return;  // from a channel we have since closed
      pending_ = false;
      on_receive(ec);
    });
  }

  void on_receive(std::error_code ec) {
    if (ec == std::errc::operation_canceled) {
      if (stopping_) return drain_and_finish();
      if (reopen_pending_) reopen_now();
      return;
    }
    if (ec) {
      reopen_pending_ = false;  // channel_lost reopens anyway
      return channel_lost(ec);
    }
    handle(buf_);
    // The channel is ours until the next async_receive: take what is already there, in a bounded batch.
    try {
      for (int i = 0; i < 255 && !done_ && ch_->try_receive(buf_); ++i) handle(buf_);
    } catch (const std::system_error& e) {
      return channel_lost(e.code());
    }
    if (done_) return finish();
    if (stopping_) return drain_and_finish();
    if (reopen_pending_) return reopen_now();
    arm();
  }

  [[nodiscard]] bool reopens_channel_on_hup() const noexcept {
    return !fd_mode_ && ar_ && ch_ && ch_->readable_fd() < 0;
  }

  // SIGHUP's channel reopen, only once no receive is pending (nothing delivered can be dropped).
  void reopen_now() {
    reopen_pending_ = false;
    close_channel();
    reopen();
  }

  void handle(std::span<const std::byte> msg) {
    const auto r = decode(msg);
    if (!r) {
      ++f_.corrupt;
      if (corrupt_throttle_.allow()) log(priority::warning, "consumer: corrupt record (", to_string(r.error), ", ", msg.size(), " bytes)");
      return;
    }
    const auto now = monotonic_now_ns();
    latency_.add(now > r.header.send_time_ns ? now - r.header.send_time_ns : 0);
    tracker_.add(r.header.session, r.header.sequence);
    ++f_.records;
    f_.bytes += r.payload.size();
    sink_.write(r.payload);
    if (o_.count != 0 && f_.records >= o_.count) done_ = true;
  }

  void channel_lost(std::error_code ec) {
    close_channel();
    if (fd_mode_ || stopping_) {
      // pipe:fd=N cannot be reopened: EOF means the producer is gone and everything is read.
      if (ec != errc::closed) log(priority::error, "consumer: ", ec.message());
      if (ec != errc::closed) exit_code_ = exit_failure;
      return finish();
    }
    if (throttle_.allow()) log(priority::warning, "consumer: ", o_.uri, ": ", ec.message(), "; reopening");
    schedule_reopen();
  }

  void schedule_reopen() {
    retry_timer_.expires_after(backoff_.next());
    retry_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec && !stopping_) reopen();
    });
  }

  void reopen() {
    try {
      open();
      ++f_.restarts;
      if (throttle_.suppressed() > 0 || f_.restarts == 1 || throttle_.allow()) log(priority::info, "consumer: ", ch_->name(), " reopened");
      throttle_.reset();
      backoff_.reset();
      arm();
    } catch (const std::exception& e) {
      close_channel();
      if (throttle_.allow()) log(priority::warning, "consumer: reopen ", o_.uri, ": ", e.what());
      schedule_reopen();
    }
  }

  // SIGTERM: take what is already in the channel without waiting (at most one second of it).
  void drain_and_finish() {
    if (ch_ && !pending_) {
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
      try {
        while (!done_ && std::chrono::steady_clock::now() < until && ch_->try_receive(buf_)) handle(buf_);
      } catch (const std::system_error& e) {
        if (e.code() != errc::closed) log(priority::warning, "consumer: drain: ", e.what());
      }
    }
    finish();
  }

  void finish() {
    if (finished_) return;
    finished_ = true;
    f_.lost = tracker_.lost();
    f_.dup = tracker_.duplicates();
    f_.reorder = tracker_.reordered();
    if (!stopping_) notifier_.notify("STOPPING=1");
    stats_timer_.cancel();
    watchdog_timer_.cancel();
    retry_timer_.cancel();
    close_channel();
    sink_.flush();
    report(true);
    reporter_.remove_status_file();
    if (exit_code_ == exit_ok && (f_.lost | f_.dup | f_.reorder | f_.corrupt) != 0) exit_code_ = exit_anomalies;
    signals_.cancel();
    io_.stop();
  }

  void report(bool final) {
    const auto seen = tracker_.latest();
    f_.session = seen.session;
    f_.first_seq = seen.first;
    f_.seq = seen.highest;
    f_.lost = tracker_.lost();
    f_.dup = tracker_.duplicates();
    f_.reorder = tracker_.reordered();
    reporter_.report(f_, latency_, final);
    notifier_.notify("STATUS=" + reporter_.status_text());
  }

  consumer_options o_;
  bool fd_mode_;
  boost::asio::io_context io_;
  boost::asio::signal_set signals_;
  periodic_timer stats_timer_, watchdog_timer_;
  boost::asio::steady_timer retry_timer_;
  sd_notifier notifier_;
  stats_reporter reporter_;
  sink sink_;
  throttle throttle_, corrupt_throttle_;
  backoff backoff_;
  std::unique_ptr<channel> ch_;
  std::optional<async_receiver> ar_;
  std::uint64_t generation_ = 0;
  std::vector<std::byte> buf_;
  sequence_tracker tracker_;
  latency_histogram latency_;
  figures f_;
  bool pending_ = false, reopen_pending_ = false, stopping_ = false, done_ = false, finished_ = false;
  int exit_code_ = exit_ok;
};

}  // namespace

int run_consumer(int argc, char** argv) noexcept {
  try {
    option_parser parser("ipc-consumer", "--channel URI [options]",
                         {{"channel", true, false, "URI", "pipe:fd=N, fifo:PATH, msgq:NAME, sem:NAME or shm:NAME"},
                          {"sink", true, false, "FILE|-|null", "where payloads go, one per line (default null)"},
                          {"count", true, false, "N", "exit after N records (default 0 = until SIGTERM)"},
                          {"stats-interval", true, false, "SEC", "stats line period, 0 = only at exit (default 1)"},
                          {"status-file", true, false, "PATH", "status file (default runtime_dir/status/…)"}});
    auto r = parser.parse(argc, argv);
    if (r.help) {
      std::cout << parser.help();
      return exit_ok;
    }
    if (r.version) {
      std::cout << "ipc-consumer " << version_text << "\n";
      return exit_ok;
    }
    consumer_options o;
    std::string err = r.error;
    if (err.empty() && !r.has("channel")) err = "ipc-consumer: --channel URI is required (see --help)";
    if (err.empty()) {
      if (auto v = r.value("count")) {
        if (auto n = parse_unsigned(*v, "count", err)) o.count = *n;
      }
    }
    if (err.empty()) {
      if (auto v = r.value("stats-interval")) {
        if (auto s = parse_seconds(*v, "stats-interval", err)) o.stats_interval = *s;
      }
    }
    if (err.empty()) {
      o.uri = *r.value("channel");
      o.sink = r.value("sink").value_or("null");
      o.status_file = r.value("status-file").value_or("");
      try {
        auto u = channel_uri::parse(o.uri);
        if (u.scheme == "pipe" && u.name.empty()) err = "ipc-consumer: a pipe consumer needs pipe:fd=N (ipc-producer --channel pipe spawns it)";
      } catch (const std::exception& e) {
        err = std::string("ipc-consumer: ") + e.what();
      }
    }
    if (!err.empty()) {
      log_line(priority::error, err);
      return exit_usage;
    }
    ::signal(SIGPIPE, SIG_IGN);
    consumer c(std::move(o));
    return c.run();
  } catch (const std::exception& e) {
    log(priority::error, "ipc-consumer: ", e.what());
    return exit_failure;
  }
}

}  // namespace ipc::daemon
