#include <ipc/error.hpp>
#include <ipc/sd_notify.hpp>
#include <ipc/watchdog.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>

namespace ipc {
namespace {

using clock = std::chrono::steady_clock;

std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now().time_since_epoch()).count();
}

// a + b for non-negative b, saturating: a timeout of nanoseconds::max() means "practically never".
std::int64_t add_saturating(std::int64_t a, std::int64_t b) noexcept {
  return a > INT64_MAX - b ? INT64_MAX : a + b;
}

void write_stderr(std::string_view s) noexcept {
  while (!s.empty()) {
    ssize_t n = ::write(STDERR_FILENO, s.data(), s.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    s.remove_prefix(static_cast<std::size_t>(n));
  }
}

}  // namespace

struct watchdog::impl {
  std::int64_t timeout_ns = 0;
  std::function<void()> on_expiry;
  std::atomic<std::int64_t> last_kick{0};
  std::atomic<std::uint64_t> expiries{0};
  std::atomic<std::uint64_t> pings{0};
  std::optional<sd_notifier> notify;
  std::int64_t ping_ns = 0;

  std::mutex m;
  std::condition_variable cv;
  bool stop = false;
  std::thread monitor;

  // Sleeps only on this process's own condition variable with a deadline; no other process ever
  // has to wake it (docs/crash-behaviour.md, "No process waits for ever").
  void run() {
    std::unique_lock lk(m);
    bool armed = true;
    std::int64_t expired_kick = 0;
    std::int64_t next_ping = now_ns();
    // While disarmed a kick is only an atomic store, so look for one periodically.
    const std::int64_t rearm_poll = std::max<std::int64_t>(timeout_ns / 2, 1'000'000);
    while (!stop) {
      std::int64_t now = now_ns();
      std::int64_t last = last_kick.load(std::memory_order_relaxed);
      if (!armed && last != expired_kick) armed = true;
      if (armed && now - last >= timeout_ns) {
        armed = false;
        expired_kick = last;
        expiries.fetch_add(1, std::memory_order_relaxed);
        lk.unlock();
        try {
          on_expiry();
        } catch (const std::exception& e) {
          write_stderr(std::string("ipc::watchdog: on_expiry threw: ") + e.what() + "\n");
        } catch (...) {
          write_stderr("ipc::watchdog: on_expiry threw a non-standard exception\n");
        }
        lk.lock();
        continue;
      }
      if (notify && now >= next_ping) {
        if (now - last < timeout_ns && notify->notify("WATCHDOG=1")) pings.fetch_add(1, std::memory_order_relaxed);
        next_ping = add_saturating(now, ping_ns);
      }
      std::int64_t wake = armed ? add_saturating(last, timeout_ns) : add_saturating(now, rearm_poll);
      if (notify) wake = std::min(wake, next_ping);
      cv.wait_until(lk, clock::time_point(std::chrono::nanoseconds(wake)), [&] { return stop; });
    }
  }
};

watchdog::watchdog(std::chrono::nanoseconds timeout, std::function<void()> on_expiry, options opts)
    : impl_(std::make_shared<impl>()) {
  if (timeout <= std::chrono::nanoseconds::zero()) ipc::throw_errno(EINVAL, "watchdog", "timeout must be positive");
  if (!on_expiry) ipc::throw_errno(EINVAL, "watchdog", "empty on_expiry");
  impl_->timeout_ns = timeout.count();
  impl_->on_expiry = std::move(on_expiry);
  if (opts.notify_systemd) {
    impl_->notify.emplace(opts.notify_socket);
    if (!impl_->notify->enabled()) {
      impl_->notify.reset();
    } else {
      if (opts.notify_interval > std::chrono::nanoseconds::zero()) {
        impl_->ping_ns = opts.notify_interval.count();
      } else if (auto usec = systemd_interval()) {
        impl_->ping_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(*usec).count() / 2;
      } else {
        impl_->ping_ns = impl_->timeout_ns / 2;
      }
      impl_->ping_ns = std::max<std::int64_t>(impl_->ping_ns, 1'000'000);
    }
  }
  impl_->last_kick.store(now_ns(), std::memory_order_relaxed);
  // The thread holds its own reference: destroying the watchdog from on_expiry stays safe.
  impl_->monitor = std::thread([p = impl_] { p->run(); });
}

watchdog::~watchdog() { stop(); }

void watchdog::kick() noexcept { impl_->last_kick.store(now_ns(), std::memory_order_relaxed); }

void watchdog::stop() noexcept {
  {
    std::lock_guard lk(impl_->m);
    impl_->stop = true;
  }
  impl_->cv.notify_all();
  if (!impl_->monitor.joinable()) return;
  if (impl_->monitor.get_id() == std::this_thread::get_id()) {
    impl_->monitor.detach();  // called from on_expiry: the thread ends when the callback returns
    return;
  }
  impl_->monitor.join();
}

bool watchdog::expired() const noexcept {
  return now_ns() - impl_->last_kick.load(std::memory_order_relaxed) >= impl_->timeout_ns;
}

std::uint64_t watchdog::expiries() const noexcept { return impl_->expiries.load(std::memory_order_relaxed); }

std::uint64_t watchdog::pings_sent() const noexcept { return impl_->pings.load(std::memory_order_relaxed); }

std::chrono::nanoseconds watchdog::timeout() const noexcept { return std::chrono::nanoseconds(impl_->timeout_ns); }

void watchdog::abort_process() noexcept {
  write_stderr("ipc::watchdog: not kicked within its timeout (pid " + std::to_string(::getpid()) + "); aborting\n");
  std::abort();
}

std::optional<std::chrono::microseconds> watchdog::systemd_interval() noexcept { return sd_notifier::watchdog_usec(); }

bool watchdog::sd_notify(std::string_view state, std::string_view socket) noexcept {
  return sd_notifier(socket).notify(state);
}

}  // namespace ipc
