// ipc-consumer's data logic: receive through ipc/asio.hpp, check each record (or take raw messages or
// text lines, format.hpp), write payloads to the sink. Signals, timers, notification, stats and exit
// statuses are the skeleton's (daemon.hpp).
#include "cli.hpp"
#include "daemon.hpp"
#include "delivery.hpp"
#include "format.hpp"
#include "limits.hpp"
#include "runtime.hpp"
#include "sink.hpp"

#include <ipc/asio.hpp>
#include <ipc/channel.hpp>
#include <ipc/error.hpp>
#include <ipc/record.hpp>
#include <ipc/uri.hpp>

#include <algorithm>
#include <csignal>
#include <memory>
#include <optional>

namespace ipc::daemon {
namespace {

struct consumer_options {
  std::string uri;
  payload_format format = payload_format::record;
  std::string sink = "null";
  std::uint64_t count = 0;
  double stats_interval = 1.0;
  std::string status_file;
  bool shared = false;  // one of several consumers sharing the stream (a work queue): no gap accounting
};

class consumer {
 public:
  consumer(consumer_options o, std::filesystem::path status_file)
      : o_(std::move(o)),
        fd_mode_(channel_uri::parse(o_.uri).scheme == "pipe"),
        open_uri_(channel_uri_for(o_.format, channel_uri::parse(o_.uri))),
        loop_({"ipc-consumer", "consumer", o_.uri, std::move(status_file), o_.stats_interval}),
        reopener_(loop_, o_.uri),
        sink_(o_.sink),
        tracker_(o_.shared) {}

  int run() {
    open();
    // The URI's limits were checked before anything was made; an existing object may be smaller.
    if (o_.format == payload_format::record) {
      if (auto why = record_cannot_fit(*ch_)) {
        loop_.say(priority::error, *why);
        return exit_usage;
      }
    }
    loop_.say(priority::info, ch_->name(), " open, format ", to_string(o_.format));
    loop_.start({.stop = [this](int) { on_stop(); },
                 .reload = [this] { on_reload(); },
                 .report = [this](bool final) { report(final); }});
    arm();
    return loop_.run();
  }

 private:
  void open() { adopt(open_channel(open_uri_, role::receiver), false); }

  // Receives from `ch` from now on: a new handle, or the lost one resumed through channel::reopen()
  // (`same`: its counters go on). A fifo's reopen() changes its fd: the async receiver is made anew.
  void adopt(std::unique_ptr<channel> ch, bool same) {
    ch_ = std::move(ch);
    if (!same) handle_skipped_ = 0;
    note_skipped();  // a torn frame the fifo's reopen() dropped
    buf_.reserve(ch_->max_message_size());
    ar_.emplace(loop_.io().get_executor(), *ch_);
    ++generation_;
  }

  // Adds what the current handle skipped since the last look to skipped= (summed over every handle).
  void note_skipped() noexcept {
    if (!ch_) return;
    const std::uint64_t n = ch_->counters().messages_skipped;
    f_.skipped += n - handle_skipped_;
    handle_skipped_ = n;
  }

  void close_channel() noexcept {
    // Only called with no receive pending; were one pending, its handler would see an old generation.
    note_skipped();
    ar_.reset();
    ch_.reset();
    lost_.reset();
  }

  void on_stop() {
    stopping_ = true;
    reopener_.cancel();
    if (ar_ && pending_) {
      ar_->cancel();  // the completion drains
    } else {
      drain_and_finish();
    }
  }

  void on_reload() {
    // A byte stream (pipe, fifo) is kept: complete frames buffered here and the frame in progress
    // cannot be carried over to a new open, so re-opening it could lose or split a record. Queues,
    // the sem buffer and the shm ring hold whole messages and re-attach safely.
    loop_.say(priority::info, "SIGHUP, reopening the sink", reopens_channel_on_hup() ? " and the channel" : "");
    try {
      sink_.reopen();
    } catch (const sink_error& e) {
      return sink_failed(e);
    }
    if (reopens_channel_on_hup() && !stopping_) {
      if (pending_) {
        // Closing now would throw away a message the receiver may already hold: cancel, and reopen
        // from the completion once whatever it delivers is handled.
        reopen_pending_ = true;
        ar_->cancel();
      } else {
        reopen_now();
      }
    }  // no channel: a reopen is already scheduled
  }

  void arm() {
    if (!ar_ || stopping_ || pending_ || loop_.finished()) return;
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
      return channel_lost(ec, ar_->last_error());
    }
    reopener_.progress();
    try {
      // The first record of a wakeup is flushed at once: a sink that died while we waited is found
      // before anything more is taken. Then the channel is ours until the next async_receive: take
      // what is already there in a bounded batch, flushed after it.
      handle(buf_);
      sink_.flush();
      for (int i = 0; i < 255 && !done_ && ch_->try_receive(buf_); ++i) handle(buf_);
      sink_.flush();
      note_skipped();
    } catch (const sink_error& e) {
      return sink_failed(e);
    } catch (const std::system_error& e) {
      return channel_lost(e.code(), e.what());
    }
    if (done_) return finish(exit_ok);
    if (stopping_) return drain_and_finish();
    if (reopen_pending_) return reopen_now();
    arm();
  }

  [[nodiscard]] bool reopens_channel_on_hup() const noexcept {
    return !fd_mode_ && ar_ && ch_ && ch_->readable_fd() < 0;
  }

  // SIGHUP's channel reopen, only once no receive is pending (nothing delivered can be dropped). The
  // handle itself is resumed through channel::reopen(), as after a loss: a shm ring re-attaches when
  // its name was unlinked, a broadcast subscriber keeps its place. Closing it and opening anew would
  // make a new subscriber that starts at the next message published - losing what came in between.
  void reopen_now() {
    reopen_pending_ = false;
    note_skipped();
    ar_.reset();
    try {
      ch_->reopen();
    } catch (const std::system_error& e) {
      return channel_lost(e.code(), std::string("reopen: ") + e.what());  // resumed or opened anew later
    }
    adopt(std::move(ch_), true);
    ++f_.restarts;
    reopener_.reopened(ch_->name());
    arm();
  }

  // One message in the chosen format: checked, counted, written to the sink (which may throw sink_error).
  void handle(std::span<const std::byte> msg) {
    switch (o_.format) {
      case payload_format::record: return handle_record(msg);
      case payload_format::raw: return take(msg);
      case payload_format::lines: return handle_lines(msg);
    }
  }

  // A payload taken as it is (raw, lines): counted and written.
  void take(std::span<const std::byte> payload) {
    ++f_.records;
    f_.bytes += payload.size();
    sink_.write(payload);
    if (o_.count != 0 && f_.records >= o_.count) done_ = true;
  }

  // A message holds one line or several (a plain msgsnd of "a\nb\n"): each line is one payload; the
  // '\n' that ends the message is not an empty line after it.
  void handle_lines(std::span<const std::byte> msg) {
    if (!msg.empty() && msg.back() == std::byte{'\n'}) msg = msg.first(msg.size() - 1);
    for (;;) {
      const auto nl = std::find(msg.begin(), msg.end(), std::byte{'\n'});
      take(msg.first(static_cast<std::size_t>(nl - msg.begin())));
      if (nl == msg.end() || done_) return;
      msg = msg.subspan(static_cast<std::size_t>(nl - msg.begin()) + 1);
    }
  }

  // A message that is not a record is counted (corrupt=) and logged (throttled), never written.
  void handle_record(std::span<const std::byte> msg) {
    const auto r = decode(msg);
    if (!r) {
      ++f_.corrupt;
      if (corrupt_throttle_.allow()) {
        loop_.say(priority::warning, "not a valid record (", to_string(r.error), ", ", msg.size(), " bytes): counted as corrupt (",
                  f_.corrupt, " so far) and dropped; a plain peer needs --format raw or lines");
      }
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

  // The sink is part of the contract: nothing more is taken from the channel once it failed.
  void sink_failed(const sink_error& e) {
    loop_.say(priority::error, e.what(), "; stopping (nothing more is taken from the channel)");
    close_channel();
    finish(exit_sink);
  }

  void channel_lost(std::error_code ec, std::string what) {
    if (what.empty()) what = ec.message();
    note_skipped();
    ar_.reset();
    // Kept until the retry: the reopener resumes it through channel::reopen() (a fifo keeps its reader,
    // its buffered frames and its skip state meanwhile), or discards a corrupt object through it.
    lost_ = std::move(ch_);
    if (fd_mode_ || stopping_) {
      // pipe:fd=N cannot be reopened: EOF means the producer is gone and everything is read.
      lost_.reset();
      if (ec != errc::closed) loop_.say(priority::error, what);
      return finish(ec == errc::closed ? exit_ok : exit_failure);
    }
    reopener_.failed(ec, what, lost_.get(), [this] { reopen(); });
    if (!reopener_.will_reopen_in_place()) lost_.reset();  // its object was discarded: let it go now
  }

  void reopen() {
    if (stopping_ || loop_.finished()) return;
    try {
      auto ch = reopener_.resume(std::move(lost_), [this] { return open_channel(open_uri_, role::receiver); });
      adopt(std::move(ch), reopener_.resumed_in_place());
      ++f_.restarts;
      reopener_.reopened(ch_->name());
      arm();
    } catch (const std::system_error& e) {
      close_channel();
      reopener_.failed(e.code(), std::string("reopen: ") + e.what(), nullptr, [this] { reopen(); });
    } catch (const std::exception& e) {
      close_channel();
      reopener_.lost(std::string("reopen: ") + e.what(), [this] { reopen(); });
    }
  }

  // SIGTERM: take what is already in the channel without waiting (at most one second of it).
  void drain_and_finish() {
    if (ch_ && !pending_) {
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
      try {
        while (!done_ && std::chrono::steady_clock::now() < until && ch_->try_receive(buf_)) handle(buf_);
        sink_.flush();
      } catch (const sink_error& e) {
        return sink_failed(e);
      } catch (const std::system_error& e) {
        if (e.code() != errc::closed) loop_.say(priority::warning, "drain: ", e.what());
      }
    }
    finish(exit_ok);
  }

  void finish(int code) {
    if (loop_.finished()) return;
    reopener_.cancel();
    close_channel();
    if (code == exit_ok) {
      try {
        sink_.flush();
      } catch (const sink_error& e) {
        loop_.say(priority::error, e.what());
        code = exit_sink;
      }
    }
    update_figures();
    if (f_.corrupt > 0) {
      loop_.say(priority::warning, f_.corrupt, " message(s) were not valid records (", corrupt_throttle_.suppressed(),
                " not logged one by one); see corrupt= in the stats line");
    }
    if (code == exit_ok && (f_.lost | f_.dup | f_.reorder | f_.corrupt) != 0) code = exit_anomalies;
    loop_.finish(code);
  }

  void update_figures() {
    const auto seen = tracker_.latest();
    f_.session = seen.session;
    f_.first_seq = seen.first;
    f_.seq = seen.highest;
    f_.lost = tracker_.lost();
    f_.dup = tracker_.duplicates();
    f_.reorder = tracker_.reordered();
  }

  void report(bool final) {
    note_skipped();
    update_figures();
    loop_.publish(f_, latency_, final);
  }

  consumer_options o_;
  bool fd_mode_;
  std::string open_uri_;  // o_.uri with the format's msgq mtype defaults (format.hpp)
  daemon_loop loop_;
  reopener reopener_;
  sink sink_;
  throttle corrupt_throttle_;
  std::unique_ptr<channel> ch_;
  std::unique_ptr<channel> lost_;      // the handle that failed, until the reopener resumes or drops it
  std::uint64_t handle_skipped_ = 0;   // ch_'s messages_skipped already in f_.skipped
  std::optional<async_receiver> ar_;
  std::uint64_t generation_ = 0;
  std::vector<std::byte> buf_;
  sequence_tracker tracker_;
  latency_histogram latency_;
  figures f_;
  bool pending_ = false, reopen_pending_ = false, stopping_ = false, done_ = false;
};

}  // namespace

int run_consumer(int argc, char** argv) noexcept {
  try {
    CLI::App app{"Receives records from a libipc channel, checks each (CRC, sequence: lost, duplicated,\n"
                 "reordered), measures latency and writes the payloads to a sink; or takes raw messages or text\n"
                 "lines from plain peers (--format). See docs/daemons.md, docs/formats.md.",
                 "ipc-consumer"};
    add_common(app, error_style::daemon);
    consumer_options o;
    app.add_option("--channel", o.uri, "pipe:fd=N, fifo:PATH, msgq:NAME, sem:NAME or shm:NAME")->required()->type_name("URI");
    add_format(app, o.format);
    app.add_option("--sink", o.sink, "where payloads go, one per line: a file (appended), - (stdout) or null")
        ->capture_default_str()
        ->type_name("FILE|-|null");
    add_count(app, "--count", o.count, 0, UINT64_MAX, "exit after N records, 0 = until SIGTERM");
    app.add_flag("--shared", o.shared,
                 "one of several consumers sharing the stream (each record to one of them: a msgq or sem work\n"
                 "queue): gaps are the others' records, not loss; implied by shm:NAME?mode=mpmc");
    add_stats_options(app, o.stats_interval, o.status_file);
    if (auto rc = parse(app, argc, argv)) return *rc;

    // Validate before create: nothing is opened or made until every option is known to be good.
    std::optional<channel_uri> uri;
    try {
      uri = channel_uri::parse(o.uri);
      (void)max_message_before_open(*uri);  // the scheme and its size options
    } catch (const std::exception& e) {
      return usage_error(app, e.what());
    }
    if (uri->scheme == "pipe" && uri->name.empty()) {
      return usage_error(app, "a pipe consumer needs pipe:fd=N (ipc-producer --channel pipe spawns it)");
    }
    if (auto why = format_conflict(o.format, *uri)) return usage_error(app, *why);
    if (o.format == payload_format::record) {
      // A channel too small for any record would be opened (even created) and waited on for ever.
      if (auto why = record_cannot_fit(*uri)) return usage_error(app, *why);
    }
    if (o.sink.empty()) return usage_error(app, "--sink: empty (a file, - or null)");
    const delivery how = delivery_of(*uri);
    if (how == delivery::work_queue) o.shared = true;
    if (o.shared && how != delivery::work_queue && uri->scheme != "msgq" && uri->scheme != "sem") {
      // A byte stream split between readers splits frames; a ring has one receiver; a broadcast
      // subscriber sees every record.
      return usage_error(app, "--shared: only a msgq, a sem channel or shm:NAME?mode=mpmc hands each record to one of several consumers");
    }
    ::signal(SIGPIPE, SIG_IGN);
    std::filesystem::path status = o.status_file.empty() ? default_status_path(o.uri, "consumer", o.shared || several_per_role(how)) : std::filesystem::path(o.status_file);
    std::optional<consumer> c;
    try {
      c.emplace(o, status);
    } catch (const sink_error& e) {
      log(priority::error, "ipc-consumer: ", e.what());
      return exit_sink;
    }
    try {
      return c->run();
    } catch (const std::system_error& e) {
      log(priority::error, "ipc-consumer: ", e.what());
      return e.code() == errc::bad_uri ? exit_usage : exit_failure;
    }
  } catch (const std::exception& e) {
    log(priority::error, "ipc-consumer: ", e.what());
    return exit_failure;
  }
}

}  // namespace ipc::daemon
