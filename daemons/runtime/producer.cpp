// ipc-producer's data logic: make payloads (a pattern, or the lines of a file or stdin) and send
// them in the chosen format (format.hpp: checked records, raw messages or text lines), paced by a timer. For `--channel pipe` it makes the pipe and runs its consumer under an
// ipc::supervisor. Signals, timers, notification, stats and exit statuses are the skeleton's.
#include "cli.hpp"
#include "daemon.hpp"
#include "delivery.hpp"
#include "format.hpp"
#include "limits.hpp"
#include "runtime.hpp"

#include <ipc/channel.hpp>
#include <ipc/error.hpp>
#include <ipc/pipe.hpp>
#include <ipc/process.hpp>
#include <ipc/record.hpp>
#include <ipc/supervisor.hpp>
#include <ipc/uri.hpp>

#include <boost/asio/post.hpp>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <memory>
#include <optional>

namespace ipc::daemon {
namespace {

// Lines of a file or stdin as payloads. Reads only what poll() says is there, so a slow
// stdin never blocks the loop; lines longer than the limit are split.
class line_source {
 public:
  explicit line_source(const std::string& path) {
    if (path == "-") {
      fd_ = 0;
    } else {
      owned_.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
      if (!owned_) ipc::throw_errno(errno, "open", path);
      fd_ = owned_.get();
    }
    buf_.resize(64 * 1024);
  }
  /// Lines longer than this are split (the channel's largest payload).
  void limit(std::size_t max_line) noexcept { max_line_ = max_line; }
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
      if (n < 0) ipc::throw_errno(errno, "read", "source");
      if (n == 0) eof_ = true;
      end_ += static_cast<std::size_t>(n);
    }
  }

 private:
  std::size_t max_line_ = 64 * 1024;
  unique_fd owned_;
  int fd_ = -1;
  std::vector<std::byte> buf_;
  std::size_t begin_ = 0, end_ = 0;
  bool eof_ = false;
};

struct producer_options {
  std::string uri;
  payload_format format = payload_format::record;
  std::uint64_t rate = 1000;
  std::uint64_t size = 64;
  std::uint64_t count = 0;
  std::string source;
  double stats_interval = 1.0;
  std::string status_file;
  std::vector<std::string> consumer_args;
};

constexpr auto consumer_stop_timeout = std::chrono::seconds(10);

class producer {
 public:
  producer(producer_options o, std::filesystem::path status_file, std::optional<line_source> source)
      : o_(std::move(o)),
        pipe_mode_(channel_uri::parse(o_.uri).scheme == "pipe"),
        open_uri_(channel_uri_for(o_.format, channel_uri::parse(o_.uri))),
        loop_({"ipc-producer", "producer", o_.uri, std::move(status_file), o_.stats_interval}),
        reopener_(loop_, o_.uri, /*discards_on_open=*/true),
        pace_timer_(loop_.io()),
        retry_timer_(loop_.io()),
        kill_timer_(loop_.io()),
        source_(std::move(source)),
        session_(new_session_id()) {
    pattern_.resize(o_.size + 256);
    for (std::size_t i = 0; i < pattern_.size(); ++i) pattern_[i] = static_cast<std::byte>('a' + i % 26);
  }

  int run() {
    if (pipe_mode_) {
      start_consumer_supervision();
    } else {
      ch_ = open_channel(open_uri_, role::sender);
    }
    // The URI's limits were checked before anything was made; an existing object may still be smaller.
    if (o_.format == payload_format::record) {
      if (auto why = record_cannot_fit(*ch_)) {
        loop_.say(priority::error, *why);
        return exit_usage;
      }
    }
    const std::size_t max_payload_size = max_payload(o_.format, ch_->max_message_size());
    if (o_.size > max_payload_size && !source_) {
      loop_.say(priority::error, "--size ", o_.size, ": a ", to_string(o_.format), " message of ", wire_size(o_.size),
                " bytes exceeds ", ch_->name(), "'s max_message_size ", ch_->max_message_size());
      return exit_usage;
    }
    if (source_) source_->limit(max_payload_size);
    wire_.reserve(ch_->max_message_size());
    loop_.say(priority::info, ch_->name(), " open, format ", to_string(o_.format),
              o_.format == payload_format::record ? ", session " + std::to_string(session_) : std::string(), ", rate ", o_.rate, "/s");
    loop_.start({.stop = [this](int) { finish(true); },
                 .reload = [this] { on_reload(); },
                 .report = [this](bool final) { report(final); }});
    if (consumer_) loop_.set_health([this] { return consumer_->current() != supervisor::state::gave_up; });
    started_ = std::chrono::steady_clock::now();
    if (o_.rate != 0) {
      const auto tick = std::clamp<std::chrono::nanoseconds>(std::chrono::nanoseconds(1'000'000'000 / o_.rate),
                                                             std::chrono::milliseconds(1), std::chrono::milliseconds(100));
      pace_timer_.start(tick, [this] { pump(); });
    }
    boost::asio::post(loop_.io(), [this] { pump(); });
    return loop_.run();
  }

 private:
  void on_reload() {
    if (pipe_mode_) {
      loop_.say(priority::info, "SIGHUP: the pipe is kept (its consumer is supervised)");
    } else if (!finishing_) {
      loop_.say(priority::info, "SIGHUP, reopening ", o_.uri);
      ch_.reset();
      lost_.reset();  // an operator's reopen opens anew
      reopen();
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
        reopener_.progress();
      }
    } catch (const std::system_error& e) {
      return channel_lost(e);
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
        boost::asio::post(loop_.io(), [this] {
          pump_queued_ = false;
          pump();
        });
      }
    }
  }

  [[nodiscard]] std::size_t wire_size(std::size_t payload) const noexcept {
    return o_.format == payload_format::record ? encoded_size(payload) : payload;
  }

  // Puts the next message into wire_ (a record, or the payload itself); false when the source has nothing now.
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
    ++seq_;
    if (o_.format == payload_format::record) {
      record_header h{session_, seq_, monotonic_now_ns()};
      wire_.resize(encoded_size(payload.size()));
      encode_into(h, payload, wire_);
    } else {
      wire_.assign(payload.begin(), payload.end());
    }
    payload_size_ = payload.size();
    have_record_ = true;
    return true;
  }

  void channel_lost(const std::system_error& e) {
    // Kept until the retry: the reopener resumes it through channel::reopen() (a shm ring whose name was
    // unlinked re-attaches to the ring its consumer moved to), or discards a corrupt object through it.
    lost_ = std::move(ch_);
    if (pipe_mode_) {
      lost_.reset();
      // The consumer closed its end: it is exiting. Its supervisor restarts it (and a new pipe
      // with it) or gives up; sending resumes on the new pipe.
      if (e.code() != errc::closed) loop_.say(priority::warning, "send: ", e.what());
      return;
    }
    reopener_.failed(e.code(), e.what(), lost_.get(), [this] { reopen(); });
    if (!reopener_.will_reopen_in_place()) lost_.reset();  // its object was discarded: let it go now
  }

  void reopen() {
    if (finishing_) return;
    try {
      ch_ = reopener_.resume(std::move(lost_), [this] { return open_channel(open_uri_, role::sender); });
      ++f_.restarts;
      reopener_.reopened(ch_->name());
      boost::asio::post(loop_.io(), [this] { pump(); });
    } catch (const std::system_error& e) {
      reopener_.failed(e.code(), std::string("reopen: ") + e.what(), nullptr, [this] { reopen(); });
    } catch (const std::exception& e) {
      reopener_.lost(std::string("reopen: ") + e.what(), [this] { reopen(); });
    }
  }

  // pipe: each start makes a fresh pipe and passes its read end to a new ipc-consumer as fd 3.
  void start_consumer_supervision() {
    const std::string consumer_path = own_directory() + "/ipc-consumer";
    supervisor_options so;
    so.restart_on_success = true;  // the consumer runs as long as we do
    so.first_delay = std::chrono::milliseconds(10);
    so.max_delay = std::chrono::milliseconds(1000);
    consumer_.emplace(loop_.io().get_executor(), "ipc-consumer", [this, consumer_path] {
      auto [tx, rx] = pipe_channel::create();
      const unique_fd rd = rx->release_fd();
      std::vector<std::string> argv{consumer_path, "--channel", "pipe:fd=3", "--format", std::string(to_string(o_.format))};
      argv.insert(argv.end(), o_.consumer_args.begin(), o_.consumer_args.end());
      exec_options eo;
      eo.pass_fds = {{3, rd.get()}};
      // The consumer is not the unit's main process: systemd's notify variables stay with us.
      eo.unset_env = {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"};
      eo.parent_death_signal = SIGTERM;
      process p = process::exec(argv, eo);
      ch_ = std::move(tx);
      return p;
    }, so);
    consumer_->on_event([this](const supervisor::event& e) { on_consumer_event(e); });
    consumer_->start();
  }

  void on_consumer_event(const supervisor::event& e) {
    using kind = supervisor::event::kind;
    switch (e.what) {
      case kind::started:
        loop_.say(priority::info, e.text);
        if (consumer_->starts() > 1) {
          ++f_.restarts;
          boost::asio::post(loop_.io(), [this] { pump(); });
        }
        return;
      case kind::restarting:
        ch_.reset();
        if (!finishing_) loop_.say(priority::warning, e.text);
        return;
      case kind::exited:
        ch_.reset();
        if (e.status && !e.status->success()) consumer_failed_ = true;
        loop_.say(e.status && e.status->success() ? priority::info : priority::warning, e.text);
        if (finishing_) done();
        return;
      case kind::gave_up:
      case kind::start_failed:
        ch_.reset();
        loop_.say(priority::error, e.text);
        if (e.what == kind::start_failed) return;
        consumer_failed_ = true;
        if (e.status && e.status->exited() && e.status->code == exit_usage) exit_code_ = exit_usage;
        else exit_code_ = exit_failure;
        if (finishing_) return done();
        finish(false);
        return;
      case kind::watchdog_expired:
        loop_.say(priority::warning, e.text);
        return;
    }
  }

  void report(bool final) {
    // Sequences start at 1 and a record is never skipped: the last one sent is number sent_.
    // Raw messages and lines carry no session: 0 says so.
    f_.session = o_.format == payload_format::record ? session_ : 0;
    f_.first_seq = sent_ > 0 ? 1 : 0;
    f_.seq = sent_;
    latency_histogram none;
    loop_.publish(f_, none, final);
  }

  // Clean close: stop sending, close the channel; for a pipe wait for the consumer to drain.
  void finish(bool by_signal) {
    if (finishing_) return;
    finishing_ = true;
    loop_.notify_stopping();
    pace_timer_.cancel();
    retry_timer_.cancel();
    reopener_.cancel();
    lost_.reset();
    ch_.reset();  // the consumer of a pipe/fifo sees EOF after what is buffered
    if (consumer_ && consumer_->active()) {
      consumer_->stop(by_signal ? SIGTERM : 0);
      kill_timer_.expires_after(consumer_stop_timeout);
      kill_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (ec || !consumer_->active()) return;
        loop_.say(priority::warning, "consumer pid ", consumer_->pid(), " did not exit within 10 s; SIGKILL");
        consumer_->signal(SIGKILL);
      });
      return;  // done() once it exited
    }
    done();
  }

  void done() {
    kill_timer_.cancel();
    if (consumer_failed_ && exit_code_ == exit_ok) exit_code_ = exit_failure;
    loop_.finish(exit_code_);
  }

  producer_options o_;
  bool pipe_mode_;
  std::string open_uri_;  // o_.uri with the format's msgq mtype defaults (format.hpp)
  daemon_loop loop_;
  reopener reopener_;
  periodic_timer pace_timer_;
  boost::asio::steady_timer retry_timer_, kill_timer_;
  std::optional<supervisor> consumer_;
  std::unique_ptr<channel> ch_;
  std::unique_ptr<channel> lost_;  // the handle that failed, until the reopener resumes or drops it
  std::optional<line_source> source_;
  std::chrono::steady_clock::time_point started_{};
  std::uint64_t session_;
  std::uint64_t seq_ = 0, sent_ = 0;
  std::size_t payload_size_ = 0;
  std::vector<std::byte> pattern_, wire_;
  figures f_;
  bool have_record_ = false, waiting_on_source_ = false, source_done_ = false;
  bool finishing_ = false, pump_queued_ = false, consumer_failed_ = false;
  int exit_code_ = exit_ok;
};

}  // namespace

int run_producer(int argc, char** argv) noexcept {
  try {
    CLI::App app{"Sends checked records (sequence, send time, CRC32C), raw messages or text lines over a libipc\n"
                 "channel, paced: a pattern, or the lines of a file or stdin. See docs/daemons.md, docs/formats.md.",
                 "ipc-producer"};
    add_common(app, error_style::daemon);
    producer_options o;
    app.add_option("--channel", o.uri, "pipe, fifo:PATH, msgq:NAME, sem:NAME or shm:NAME")->required()->type_name("URI");
    add_format(app, o.format);
    add_count(app, "--rate", o.rate, 0, 1'000'000'000, "records per second, 0 = unlimited");
    add_size(app, "--size", o.size, 0, std::uint64_t{16} << 20, "payload bytes (K, M suffixes)");
    add_count(app, "--count", o.count, 0, UINT64_MAX, "send N records, then exit; 0 = forever");
    app.add_option("--source", o.source, "send the lines of FILE (or stdin: -) instead of a pattern")->type_name("FILE|-");
    add_stats_options(app, o.stats_interval, o.status_file);
    app.add_option("--consumer-arg", o.consumer_args, "pipe only: an argument for the spawned ipc-consumer (repeatable)")
        ->type_name("ARG")
        ->allow_extra_args(false);
    if (auto rc = parse(app, argc, argv)) return *rc;

    // Validate before create: every option, and the record size against what the channel can take,
    // is checked before any kernel object, pipe, child or file is made.
    std::optional<channel_uri> uri;
    std::size_t max_message = 0;
    try {
      uri = channel_uri::parse(o.uri);
      max_message = max_message_before_open(*uri);
    } catch (const std::exception& e) {
      return usage_error(app, e.what());
    }
    if (uri->scheme == "pipe" && (!uri->name.empty() || !uri->options.empty())) {
      return usage_error(app, "use --channel pipe (the producer makes the pipe)");
    }
    if (!o.consumer_args.empty() && uri->scheme != "pipe") return usage_error(app, "--consumer-arg is for --channel pipe only");
    if (auto why = format_conflict(o.format, *uri)) return usage_error(app, *why);
    const bool record = o.format == payload_format::record;
    if (record) {
      // Before --size: no size would do.
      if (auto why = record_cannot_fit(*uri)) return usage_error(app, *why);
    }
    if (o.source.empty() && o.size > max_payload(o.format, max_message)) {
      return usage_error(app, "--size " + std::to_string(o.size) + ": a " + std::string(to_string(o.format)) + " message of " +
                                  std::to_string(record ? encoded_size(o.size) : o.size) + " bytes exceeds " + uri->scheme +
                                  "'s largest message, " + std::to_string(max_message) + " bytes");
    }
    std::optional<line_source> source;
    if (!o.source.empty()) {
      try {
        source.emplace(o.source);
      } catch (const std::exception& e) {
        return usage_error(app, std::string("--source: ") + e.what());
      }
    }
    ::signal(SIGPIPE, SIG_IGN);
    const std::filesystem::path status = o.status_file.empty() ? default_status_path(o.uri, "producer", several_per_role(delivery_of(*uri))) : std::filesystem::path(o.status_file);
    producer p(std::move(o), status, std::move(source));
    try {
      return p.run();
    } catch (const std::system_error& e) {
      log(priority::error, "ipc-producer: ", e.what());
      return e.code() == errc::bad_uri ? exit_usage : exit_failure;
    }
  } catch (const std::exception& e) {
    log(priority::error, "ipc-producer: ", e.what());
    return exit_failure;
  }
}

}  // namespace ipc::daemon
