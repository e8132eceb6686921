// ipc-producer: makes records and sends them, paced by a timer, on one Asio loop.
#include "log.hpp"
#include "options.hpp"
#include "runtime.hpp"
#include "sd_notify.hpp"
#include "stats.hpp"

#include <ipc/channel.hpp>
#include <ipc/error.hpp>
#include <ipc/pipe.hpp>
#include <ipc/record.hpp>
#include <ipc/uri.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>

extern char** environ;

namespace ipc::daemon {

std::string own_directory() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) detail::throw_errno(errno, "readlink", "/proc/self/exe");
  std::string p(buf, static_cast<std::size_t>(n));
  return p.substr(0, p.rfind('/'));
}

namespace {

// Lines of a file or stdin as payloads. Reads only what poll() says is there, so a slow
// stdin never blocks the loop; lines longer than the limit are split.
class line_source {
 public:
  line_source(const std::string& path, std::size_t max_line) : max_line_(max_line) {
    if (path == "-") {
      fd_ = 0;
    } else {
      owned_.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
      if (!owned_) detail::throw_errno(errno, "open", path);
      fd_ = owned_.get();
    }
    buf_.resize(64 * 1024);
  }
  enum class status { line, would_block, eof };
  /// The next line (without '\n') in `line`, valid until the next call.
  status next(std::span<const std::byte>& line) {
    for (;;) {
      const auto nl = std::find(buf_.begin() + static_cast<std::ptrdiff_t>(begin_), buf_.begin() + static_cast<std::ptrdiff_t>(end_), std::byte{'\n'});
      const std::size_t len = static_cast<std::size_t>(nl - buf_.begin()) - begin_;
      if (nl != buf_.begin() + static_cast<std::ptrdiff_t>(end_) || len >= max_line_ || (eof_ && len > 0)) {
        const std::size_t take = std::min(len, max_line_);
        line = {buf_.data() + begin_, take};
        begin_ += take + (take == len && nl != buf_.begin() + static_cast<std::ptrdiff_t>(end_) ? 1 : 0);
        return status::line;
      }
      if (eof_) return status::eof;
      if (begin_ > 0) {
        std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
      }
      if (end_ == buf_.size()) buf_.resize(buf_.size() * 2);  // only when max_line_ > buffer
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 0) == 0) return status::would_block;
      ssize_t n = ::read(fd_, buf_.data() + end_, buf_.size() - end_);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) return status::would_block;
      if (n < 0) detail::throw_errno(errno, "read", "source");
      if (n == 0) eof_ = true;
      end_ += static_cast<std::size_t>(n);
    }
  }

 private:
  std::size_t max_line_;
  unique_fd owned_;
  int fd_ = -1;
  std::vector<std::byte> buf_;
  std::size_t begin_ = 0, end_ = 0;
  bool eof_ = false;
};

struct producer_options {
  std::string uri;
  std::uint64_t rate = 1000;
  std::uint64_t size = 64;
  std::uint64_t count = 0;
  std::string source;
  double stats_interval = 1.0;
  std::string status_file;
  std::vector<std::string> consumer_args;
};

class producer {
 public:
  explicit producer(producer_options o)
      : o_(std::move(o)),
        pipe_mode_(channel_uri::parse(o_.uri).scheme == "pipe"),
        signals_(io_, SIGTERM, SIGINT, SIGHUP),
        stats_timer_(io_),
        watchdog_timer_(io_),
        pace_timer_(io_),
        retry_timer_(io_),
        kill_timer_(io_),
        reporter_("producer", o_.uri,
                  o_.status_file.empty() ? default_status_path(o_.uri, "producer") : std::filesystem::path(o_.status_file)),
        session_(new_session_id()) {
    signals_.add(SIGUSR1);
    if (pipe_mode_) {
      signals_.add(SIGCHLD);
      consumer_path_ = own_directory() + "/ipc-consumer";
    }
    pattern_.resize(o_.size + 256);
    for (std::size_t i = 0; i < pattern_.size(); ++i) pattern_[i] = static_cast<std::byte>('a' + i % 26);
  }

  int run() {
    if (pipe_mode_) {
      spawn_consumer();
    } else {
      ch_ = open_channel(o_.uri, role::sender);
    }
    if (encoded_size(o_.size) > ch_->max_message_size()) {
      log(priority::error, "--size ", o_.size, ": a record of ", encoded_size(o_.size), " bytes exceeds ", ch_->name(),
          "'s max_message_size ", ch_->max_message_size());
      if (child_ > 0) ::kill(child_, SIGTERM);
      return exit_usage;
    }
    if (!o_.source.empty()) source_.emplace(o_.source, ch_->max_message_size() - record_header_size);
    wire_.reserve(ch_->max_message_size());
    log(priority::info, "producer: ", ch_->name(), " open, session ", session_, ", rate ", o_.rate, "/s");
    notifier_.notify("READY=1");
    wait_signal();
    if (auto p = notifier_.watchdog_period()) watchdog_timer_.start(*p, [this] { notifier_.notify("WATCHDOG=1"); });
    if (o_.stats_interval > 0) {
      stats_timer_.start(std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(o_.stats_interval)),
                         [this] { report(false); });
    }
    started_ = std::chrono::steady_clock::now();
    if (o_.rate == 0) {
      boost::asio::post(io_, [this] { pump(); });
    } else {
      const auto tick = std::clamp<std::chrono::nanoseconds>(std::chrono::nanoseconds(1'000'000'000 / o_.rate),
                                                             std::chrono::milliseconds(1), std::chrono::milliseconds(100));
      pace_timer_.start(tick, [this] { pump(); });
      boost::asio::post(io_, [this] { pump(); });
    }
    io_.run();
    return exit_code_;
  }

 private:
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
        log(priority::info, "producer: ", strsignal(sig), ", closing");
        finish(true);
        break;
      case SIGHUP:
        if (pipe_mode_) {
          log(priority::info, "producer: SIGHUP: the pipe is kept (its consumer is supervised)");
        } else if (!finishing_) {
          log(priority::info, "producer: SIGHUP, reopening ", o_.uri);
          ch_.reset();
          reopen();
        }
        break;
      case SIGUSR1:
        report(false);
        break;
      case SIGCHLD:
        reap();
        break;
      default:
        break;
    }
  }

  // Sends what is due now, at most 256 records, so signals and timers get their turn.
  void pump() {
    if (finishing_ || !ch_ || pump_queued_) return;
    std::uint64_t budget = 256;
    if (o_.rate != 0) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
      const auto due = static_cast<std::uint64_t>(secs * static_cast<double>(o_.rate)) + 1;
      budget = due > sent_ ? std::min<std::uint64_t>(budget, due - sent_) : 0;
    }
    try {
      for (std::uint64_t i = 0; i < budget; ++i) {
        if (o_.count != 0 && sent_ >= o_.count) break;
        if (!have_record_ && !make_record()) break;
        if (!ch_->try_send(wire_) && !ch_->send_for(wire_, std::chrono::milliseconds(1))) break;
        have_record_ = false;
        ++sent_;
        f_.records = sent_;
        f_.bytes += payload_size_;
      }
    } catch (const std::system_error& e) {
      if (e.code() != errc::closed) log(priority::warning, "producer: send: ", e.what());
      channel_lost(e.what());
      return;
    }
    if (o_.count != 0 && sent_ >= o_.count) return finish(false);
    if (source_done_) return finish(false);
    if (o_.rate == 0 || waiting_on_source_) {
      // Unlimited (or a source still waiting for input): come back after other handlers ran.
      pump_queued_ = true;
      if (waiting_on_source_) {
        retry_timer_.expires_after(std::chrono::milliseconds(10));
        retry_timer_.async_wait([this](const boost::system::error_code& ec) {
          pump_queued_ = false;
          if (!ec) pump();
        });
      } else {
        boost::asio::post(io_, [this] {
          pump_queued_ = false;
          pump();
        });
      }
    }
  }

  // Encodes the next record into wire_; false when the source has nothing now.
  bool make_record() {
    std::span<const std::byte> payload;
    waiting_on_source_ = false;
    if (source_) {
      switch (source_->next(payload)) {
        case line_source::status::line: break;
        case line_source::status::would_block: waiting_on_source_ = true; return false;
        case line_source::status::eof: source_done_ = true; return false;
      }
    } else {
      payload = std::span<const std::byte>(pattern_).subspan((seq_ + 1) % 256, o_.size);
    }
    record_header h{session_, ++seq_, monotonic_now_ns()};
    wire_.resize(encoded_size(payload.size()));
    encode_into(h, payload, wire_);
    payload_size_ = payload.size();
    have_record_ = true;
    return true;
  }

  void channel_lost(const std::string& why) {
    if (throttle_.allow()) log(priority::warning, "producer: ", why, "; reopening");
    ch_.reset();
    if (pipe_mode_) {
      // The consumer closed its end (it died or is dying): a new pipe and a new consumer.
      if (child_ > 0) ::kill(child_, SIGTERM);
      child_ = -1;
      schedule_reopen();
    } else {
      schedule_reopen();
    }
  }

  void schedule_reopen() {
    if (reopen_scheduled_ || finishing_) return;
    reopen_scheduled_ = true;
    retry_timer_.expires_after(backoff_.next());
    retry_timer_.async_wait([this](const boost::system::error_code& ec) {
      reopen_scheduled_ = false;
      pump_queued_ = false;
      if (!ec) reopen();
    });
  }

  void reopen() {
    if (finishing_) return;
    try {
      if (pipe_mode_) {
        spawn_consumer();
      } else {
        ch_ = open_channel(o_.uri, role::sender);
      }
      ++f_.restarts;
      log(priority::info, "producer: ", ch_->name(), " reopened");
      throttle_.reset();
      backoff_.reset();
      boost::asio::post(io_, [this] { pump(); });
    } catch (const std::exception& e) {
      if (throttle_.allow()) log(priority::warning, "producer: reopen ", o_.uri, ": ", e.what());
      schedule_reopen();
    }
  }

  // pipe: a fresh pipe, the read end passed to a new ipc-consumer as fd 3.
  void spawn_consumer() {
    auto [tx, rx] = pipe_channel::create();
    unique_fd rd = rx->release_fd();
    std::vector<std::string> args{consumer_path_, "--channel", "pipe:fd=3"};
    args.insert(args.end(), o_.consumer_args.begin(), o_.consumer_args.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    // The consumer is not the unit's main process: systemd's notify variables stay with us.
    std::vector<char*> envp;
    for (char** e = environ; *e != nullptr; ++e) {
      std::string_view kv(*e);
      if (kv.starts_with("NOTIFY_SOCKET=") || kv.starts_with("WATCHDOG_USEC=") || kv.starts_with("WATCHDOG_PID=")) continue;
      envp.push_back(*e);
    }
    envp.push_back(nullptr);
    const int fd = rd.get();
    pid_t pid = ::fork();
    if (pid < 0) detail::throw_errno(errno, "fork", consumer_path_);
    if (pid == 0) {
      // Only async-signal-safe calls here. dup2 clears FD_CLOEXEC on fd 3 only in this child.
      if (fd == 3) {
        ::fcntl(3, F_SETFD, 0);
      } else if (::dup2(fd, 3) < 0) {
        ::_exit(127);
      }
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::execve(argv[0], argv.data(), envp.data());
      static const char msg[] = "<3>ipc-producer: execve(ipc-consumer) failed\n";
      (void)!::write(2, msg, sizeof msg - 1);
      ::_exit(127);
    }
    child_ = pid;
    child_started_ = std::chrono::steady_clock::now();
    ch_ = std::move(tx);
    log(priority::info, "producer: spawned ", consumer_path_, " pid ", pid);
  }

  void reap() {
    for (;;) {
      int st = 0;
      pid_t pid = ::waitpid(-1, &st, WNOHANG);
      if (pid <= 0) return;
      const std::string how = WIFEXITED(st) ? "exited with status " + std::to_string(WEXITSTATUS(st))
                                            : std::string("killed by ") + strsignal(WTERMSIG(st));
      if (pid != child_) {
        log(priority::debug, "producer: reaped old consumer ", pid, " (", how, ")");
        continue;
      }
      child_ = -1;
      if (WIFEXITED(st)) consumer_status_ = WEXITSTATUS(st);
      if (finishing_) {
        log(priority::info, "producer: consumer ", pid, " ", how);
        kill_timer_.cancel();
        return done();
      }
      log(priority::warning, "producer: consumer ", pid, " ", how, "; restarting it");
      if (std::chrono::steady_clock::now() - child_started_ > std::chrono::seconds(1)) backoff_.reset();
      ch_.reset();
      schedule_reopen();
    }
  }

  void report(bool final) {
    // Sequences start at 1 and a record is never skipped: the last one sent is number sent_.
    f_.session = session_;
    f_.first_seq = sent_ > 0 ? 1 : 0;
    f_.seq = sent_;
    latency_histogram none;
    reporter_.report(f_, none, final);
    notifier_.notify("STATUS=" + reporter_.status_text());
  }

  // Clean close: stop sending, close the channel; for a pipe wait for the consumer to drain.
  void finish(bool by_signal) {
    if (finishing_) return;
    finishing_ = true;
    notifier_.notify("STOPPING=1");
    pace_timer_.cancel();
    retry_timer_.cancel();
    ch_.reset();  // the consumer of a pipe/fifo sees EOF after what is buffered
    if (pipe_mode_ && child_ > 0) {
      if (by_signal) ::kill(child_, SIGTERM);
      kill_timer_.expires_after(std::chrono::seconds(10));
      kill_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (ec || child_ <= 0) return;
        log(priority::warning, "producer: consumer ", child_, " did not exit within 10 s; SIGKILL");
        ::kill(child_, SIGKILL);
      });
      return;  // done() once reaped
    }
    done();
  }

  void done() {
    stats_timer_.cancel();
    watchdog_timer_.cancel();
    report(true);
    reporter_.remove_status_file();
    if (consumer_status_ > 0) log(priority::warning, "producer: the consumer exited with status ", consumer_status_);
    signals_.cancel();
    io_.stop();
  }

  producer_options o_;
  bool pipe_mode_;
  boost::asio::io_context io_;
  boost::asio::signal_set signals_;
  periodic_timer stats_timer_, watchdog_timer_, pace_timer_;
  boost::asio::steady_timer retry_timer_, kill_timer_;
  sd_notifier notifier_;
  stats_reporter reporter_;
  throttle throttle_;
  backoff backoff_;
  std::unique_ptr<channel> ch_;
  std::optional<line_source> source_;
  std::string consumer_path_;
  pid_t child_ = -1;
  int consumer_status_ = 0;
  std::chrono::steady_clock::time_point child_started_{}, started_{};
  std::uint64_t session_;
  std::uint64_t seq_ = 0, sent_ = 0;
  std::size_t payload_size_ = 0;
  std::vector<std::byte> pattern_, wire_;
  figures f_;
  bool have_record_ = false, waiting_on_source_ = false, source_done_ = false;
  bool finishing_ = false, reopen_scheduled_ = false, pump_queued_ = false;
  int exit_code_ = exit_ok;
};

}  // namespace

int run_producer(int argc, char** argv) noexcept {
  try {
    option_parser parser("ipc-producer", "--channel URI [options]",
                         {{"channel", true, false, "URI", "pipe, fifo:PATH, msgq:NAME, sem:NAME or shm:NAME"},
                          {"rate", true, false, "R", "records per second, 0 = unlimited (default 1000)"},
                          {"size", true, false, "B", "payload bytes (default 64)"},
                          {"count", true, false, "N", "send N records, then exit (default 0 = forever)"},
                          {"source", true, false, "FILE|-", "send the lines of FILE (or stdin) instead"},
                          {"stats-interval", true, false, "SEC", "stats line period, 0 = only at exit (default 1)"},
                          {"status-file", true, false, "PATH", "status file (default runtime_dir/status/…)"},
                          {"consumer-arg", true, true, "ARG", "pipe only: an argument for the spawned ipc-consumer"}});
    auto r = parser.parse(argc, argv);
    if (r.help) {
      std::cout << parser.help();
      return exit_ok;
    }
    if (r.version) {
      std::cout << "ipc-producer " << version_text << "\n";
      return exit_ok;
    }
    producer_options o;
    std::string err = r.error;
    if (err.empty() && !r.has("channel")) err = "ipc-producer: --channel URI is required (see --help)";
    auto num = [&](const char* name, std::uint64_t& into) {
      if (!err.empty()) return;
      if (auto v = r.value(name)) {
        if (auto n = parse_unsigned(*v, name, err)) into = *n;
      }
    };
    num("rate", o.rate);
    num("size", o.size);
    num("count", o.count);
    if (err.empty()) {
      if (auto v = r.value("stats-interval")) {
        if (auto s = parse_seconds(*v, "stats-interval", err)) o.stats_interval = *s;
      }
    }
    if (err.empty()) {
      o.uri = *r.value("channel");
      o.source = r.value("source").value_or("");
      o.status_file = r.value("status-file").value_or("");
      o.consumer_args = r.all("consumer-arg");
      try {
        auto u = channel_uri::parse(o.uri);
        if (u.scheme == "pipe" && (!u.name.empty() || !u.options.empty())) err = "ipc-producer: use --channel pipe (the producer makes the pipe)";
      } catch (const std::exception& e) {
        err = std::string("ipc-producer: ") + e.what();
      }
      if (err.empty() && !o.consumer_args.empty() && o.uri != "pipe") err = "ipc-producer: --consumer-arg is for --channel pipe only";
    }
    if (!err.empty()) {
      log_line(priority::error, err);
      return exit_usage;
    }
    ::signal(SIGPIPE, SIG_IGN);
    producer p(std::move(o));
    return p.run();
  } catch (const std::exception& e) {
    log(priority::error, "ipc-producer: ", e.what());
    return exit_failure;
  }
}

}  // namespace ipc::daemon
