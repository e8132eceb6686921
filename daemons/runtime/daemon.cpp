#include "daemon.hpp"

#include <ipc/error.hpp>
#include <ipc/sem_buffer.hpp>
#include <ipc/shm_ring.hpp>
#include <ipc/uri.hpp>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

namespace ipc::daemon {

using steady = std::chrono::steady_clock;

void periodic_timer::start(steady::duration period, std::function<void()> fn) {
  period_ = period;
  fn_ = std::move(fn);
  active_ = true;
  next_ = steady::now() + period_;
  arm();
}

void periodic_timer::cancel() noexcept {
  active_ = false;
  timer_.cancel();
}

void periodic_timer::arm() {
  timer_.expires_at(next_);
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || !active_) return;
    fn_();
    const auto now = steady::now();
    next_ += period_;
    if (next_ <= now) next_ = now + period_;
    if (active_) arm();
  });
}

daemon_loop::daemon_loop(daemon_config config)
    : config_(std::move(config)),
      signals_(io_),
      stats_timer_(io_),
      watchdog_timer_(io_),
      reporter_(config_.role, config_.channel, config_.status_file) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path != nullptr && *path != '\0' && !notifier_.enabled()) {
    say(priority::warning, "NOTIFY_SOCKET='", path,
        "' is unusable (not an absolute path or @abstract name, or no socket could be made): not notifying");
  }
}

void daemon_loop::notify(std::string_view state) noexcept {
  if (notifier_.notify(state) || !notifier_.enabled() || notify_failed_once_) return;
  notify_failed_once_ = true;
  say(priority::warning, "sendto(NOTIFY_SOCKET): ", std::strerror(errno), " (further failures not logged)");
}

void daemon_loop::start(hooks h) {
  hooks_ = std::move(h);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR1}) signals_.add(sig);
  wait_signal();
  notify("READY=1");
  if (auto usec = ipc::sd_notifier::watchdog_usec()) {
    watchdog_timer_.start(*usec / 2, [this] {
      if (!health_ || health_()) notify("WATCHDOG=1");
    });
  }
  if (config_.stats_interval > 0) {
    stats_timer_.start(std::chrono::duration_cast<steady::duration>(std::chrono::duration<double>(config_.stats_interval)),
                       [this] {
                         if (hooks_.report) hooks_.report(false);
                       });
  }
}

void daemon_loop::wait_signal() {
  signals_.async_wait([this](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    switch (sig) {
      case SIGTERM:
      case SIGINT:
        if (!stop_seen_) {
          stop_seen_ = true;
          say(priority::info, ::strsignal(sig), ", stopping");
          notify_stopping();
          if (hooks_.stop) hooks_.stop(sig);
        }
        break;
      case SIGHUP:
        if (hooks_.reload) hooks_.reload();
        break;
      case SIGUSR1:
        if (hooks_.report) hooks_.report(false);
        break;
      default:
        break;
    }
    if (!finished_) wait_signal();
  });
}

void daemon_loop::publish(const figures& f, latency_histogram& latency, bool final) noexcept {
  reporter_.report(f, latency, final);
  notify("STATUS=" + reporter_.status_text());
}

void daemon_loop::notify_stopping() noexcept {
  if (stopping_sent_) return;
  stopping_sent_ = true;
  notify("STOPPING=1");
}

void daemon_loop::finish(int code) {
  if (finished_) return;
  finished_ = true;
  code_ = code;
  notify_stopping();
  stats_timer_.cancel();
  watchdog_timer_.cancel();
  if (hooks_.report) hooks_.report(true);
  reporter_.remove_status_file();
  signals_.cancel();
  io_.stop();
}

int daemon_loop::run() {
  io_.run();
  return code_;
}

reopener::reopener(daemon_loop& loop, std::string uri, bool discards_on_open)
    : loop_(loop), what_(std::move(uri)), discards_on_open_(discards_on_open), timer_(loop.io()) {}

void reopener::lost(std::string_view why, std::function<void()> retry) {
  if (backoff_.may_log()) {
    loop_.say(priority::warning, what_, ": ", why, "; reopening in ", backoff_.delay().count(), " ms",
              backoff_.suppressed() > 0 ? " (" + std::to_string(backoff_.suppressed()) + " similar lines suppressed)" : "");
  }
  schedule(std::move(retry));
}

void reopener::failed(std::error_code code, std::string_view what, channel* ch, std::function<void()> retry) {
  const bool stream = ch != nullptr && is_byte_stream(*ch);
  resumer_.failed(ch);
  if (code != errc::corrupt) return lost(what, std::move(retry));
  ++quarantines_;
  last_quarantine_ = steady::now();
  backoff_.at_least(quarantine_delay_);
  quarantine_delay_ = std::min(quarantine_delay_ * 2, max_quarantine_delay);
  const bool discarding = !stream && (ch != nullptr || discards_on_open_);
  if (!in_streak_) {
    in_streak_ = true;
    streak_failures_ = 0;
    damage_throttle_.reset();
    (void)damage_throttle_.allow();  // the period of "one line per 10 s" starts now
    loop_.say(priority::error, what_, ": corrupt: ", what,
              stream       ? "; quarantined: the broken stream is dropped (reopen), the FIFO kept"
              : discarding ? "; quarantined: discarded, the next open recreates it"
                           : "; quarantined: waiting for the producer to recreate it",
              "; next attempt in ", backoff_.delay().count(), " ms");
  } else {
    ++streak_failures_;
    if (damage_throttle_.allow()) {
      loop_.say(priority::warning, what_, ": still corrupt (", streak_failures_,
                " more failures since the report); next attempt in ", backoff_.delay().count(), " ms");
    }
  }
  if (discarding) {
    discard(ch);
    resumer_.discarded();  // the handle's object is gone: open anew
  }
  schedule(std::move(retry));
}

std::unique_ptr<channel> reopener::resume(std::unique_ptr<channel> lost, const opener& open) {
  std::string why;
  auto ch = resumer_.resume(std::move(lost), [&] {
    if (!why.empty() && backoff_.may_log()) loop_.say(priority::warning, what_, ": reopen(): ", why, "; opening it anew");
    return open();
  }, &why);
  return ch;
}

void reopener::discard(channel* ch) noexcept {
  try {
    if (ch != nullptr) {
      // Not on purpose: a shm sender still attached notices within its ~100 ms name check
      // (errc::removed) and reopens onto the new object, instead of filling this one unread.
      ch->discard();
    } else {
      // The open found the damage: there is no handle, so the object is the one the URI names (a plain
      // unlink for shm: never "on purpose", so an attached sender notices it as above).
      const auto u = channel_uri::parse(what_);
      if (u.scheme == "sem") {
        (void)sem_buffer::remove(u.name);
      } else if (u.scheme == "shm") {
        (void)shm_ring::remove(u.name);
      }
    }
  } catch (const std::exception& e) {
    if (damage_throttle_.allow()) loop_.say(priority::warning, what_, ": discarding the corrupt object: ", e.what());
  }
}

void reopener::schedule(std::function<void()> retry) {
  pending_ = true;
  timer_.expires_after(backoff_.next());
  timer_.async_wait([this, retry = std::move(retry)](const boost::system::error_code& ec) {
    pending_ = false;
    if (!ec) retry();
  });
}

void reopener::reopened(std::string_view name) {
  if (backoff_.may_log()) loop_.say(priority::info, name, " reopened");
}

void reopener::progress() noexcept {
  if (in_streak_) {
    in_streak_ = false;
    if (streak_failures_ > 0) {
      loop_.say(priority::info, what_, ": data flows again after the quarantine (", streak_failures_,
                " further failures)");
    }
  }
  if (quarantines_ > 0 && quarantine_delay_ > first_quarantine_delay && steady::now() - last_quarantine_ > std::chrono::seconds(10)) {
    quarantine_delay_ = first_quarantine_delay;
  }
  resumer_.progress();
  backoff_.progress();
}

void reopener::cancel() noexcept {
  timer_.cancel();
  pending_ = false;
}

std::string own_directory() {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) ipc::throw_errno(errno, "readlink", "/proc/self/exe");
  std::string p(buf, static_cast<std::size_t>(n));
  return p.substr(0, p.rfind('/'));
}

}  // namespace ipc::daemon
