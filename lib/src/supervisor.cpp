#include <ipc/asio.hpp>
#include <ipc/error.hpp>
#include <ipc/shared_value.hpp>
#include <ipc/supervisor.hpp>

#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <atomic>
#include <deque>

namespace ipc {

using steady = std::chrono::steady_clock;

namespace {

std::atomic_ref<std::uint64_t> counter_of(const shared_value<std::uint64_t>& v) noexcept {
  return std::atomic_ref<std::uint64_t>(*v.get());
}

shared_options counter_options() {
  shared_options o;
  o.with_lock = false;  // one atomic word: kicks never block on a lock a dead worker held
  return o;
}

std::string ms_text(std::chrono::milliseconds d) { return std::to_string(d.count()) + " ms"; }

}  // namespace

struct supervisor::impl : std::enable_shared_from_this<supervisor::impl> {
  impl(boost::asio::any_io_executor ex, std::string n, starter s, supervisor_options o)
      : name(std::move(n)), start_fn(std::move(s)), opt(std::move(o)), executor(ex), restart_timer(ex), watchdog_timer(ex) {
    delay = opt.first_delay;
  }
  ~impl() {
    restart_timer.cancel();
    watchdog_timer.cancel();
    waiter.reset();
    child = process();  // SIGKILL + reap a worker still running
    if (counter) {
      try {
        counter->remove();
      } catch (...) {  // NOLINT(bugprone-empty-catch): a destructor; the segment may already be gone
      }
    }
  }

  void emit(event::kind k, pid_t pid, std::optional<exit_status> st, std::chrono::milliseconds d, std::string text) {
    if (!observer) return;
    event e{k, pid, st, d, std::move(text)};
    observer(e);
  }

  // Starts a worker; a failure is thrown on the first start, a failed restart counts as a failure.
  void launch(bool first) {
    try {
      child = start_fn();
    } catch (const std::exception& e) {
      if (first) throw;
      emit(event::kind::start_failed, -1, std::nullopt, std::chrono::milliseconds{0},
           name + ": restart failed: " + e.what());
      return failed(std::nullopt, steady::now());
    }
    current = state::running;
    ++starts;
    started_at = steady::now();
    last_kick = started_at;
    if (counter) last_count = counter_of(*counter).load(std::memory_order_relaxed);
    emit(event::kind::started, child.pid(), std::nullopt, std::chrono::milliseconds{0},
         name + " pid " + std::to_string(child.pid()) + " started");
    arm_wait();
    arm_watchdog();
  }

  // The worker's end joins the loop through its pidfd (ipc/asio.hpp); the waiter reaps it.
  void arm_wait() {
    waiter.emplace(executor, child);
    waiter->async_wait([w = weak_from_this(), gen = ++generation](std::error_code ec, exit_status st) {
      auto self = w.lock();
      if (!self || ec == std::errc::operation_canceled || gen != self->generation) return;
      if (ec) {
        self->emit(event::kind::exited, self->child.pid(), std::nullopt, std::chrono::milliseconds{0},
                   self->name + ": waitid: " + ec.message());
        st = exit_status{};
      }
      self->waiter.reset();
      self->watchdog_timer.cancel();
      self->on_exit(st);
    });
  }

  void on_exit(const exit_status& st) {
    const pid_t pid = child.pid();
    const auto now = steady::now();
    last = st;
    child = process();
    std::string what = name + " pid " + std::to_string(pid) + " " + st.to_string();
    if (stopping) {
      current = state::done;
      return emit(event::kind::exited, pid, st, std::chrono::milliseconds{0}, what);
    }
    if (st.success() && !expired) {
      if (!opt.restart_on_success) {
        current = state::done;
        return emit(event::kind::exited, pid, st, std::chrono::milliseconds{0}, what);
      }
      delay = opt.first_delay;
      return schedule(pid, st, what);
    }
    if (st.exited() && !expired && std::find(opt.final_codes.begin(), opt.final_codes.end(), st.code) != opt.final_codes.end()) {
      current = state::gave_up;
      return emit(event::kind::gave_up, pid, st, std::chrono::milliseconds{0},
                  what + (st.code == 2 ? " (a usage error)" : "") + "; not restarted: retrying cannot help");
    }
    expired = false;
    failed(st, now, pid, what);
  }

  void failed(std::optional<exit_status> st, steady::time_point now, pid_t pid = -1, std::string what = {}) {
    if (what.empty()) what = name;
    if (now - started_at >= opt.stable_after) delay = opt.first_delay;
    failures.push_back(now);
    while (!failures.empty() && now - failures.front() > opt.window) failures.pop_front();
    if (failures.size() >= opt.max_failures) {
      current = state::gave_up;
      return emit(event::kind::gave_up, pid, st, std::chrono::milliseconds{0},
                  what + "; giving up after " + std::to_string(failures.size()) + " failures within " + ms_text(opt.window));
    }
    schedule(pid, st, what);
  }

  void schedule(pid_t pid, std::optional<exit_status> st, const std::string& what) {
    const auto d = delay;
    delay = std::min(delay * 2, opt.max_delay);
    current = state::backing_off;
    emit(event::kind::restarting, pid, st, d, what + "; restarting in " + ms_text(d));
    restart_timer.expires_after(d);
    restart_timer.async_wait([w = weak_from_this()](const boost::system::error_code& ec) {
      auto self = w.lock();
      if (!self || ec || self->stopping || self->current != state::backing_off) return;
      self->launch(false);
    });
  }

  void arm_watchdog() {
    if (!counter) return;
    const auto period = std::max<std::chrono::milliseconds>(opt.watchdog_timeout / 4, std::chrono::milliseconds(5));
    watchdog_timer.expires_after(period);
    watchdog_timer.async_wait([w = weak_from_this(), gen = generation](const boost::system::error_code& ec) {
      auto self = w.lock();
      if (!self || ec || gen != self->generation || self->current != state::running) return;
      self->check_watchdog();
    });
  }

  void check_watchdog() {
    const auto now = steady::now();
    const std::uint64_t v = counter_of(*counter).load(std::memory_order_relaxed);
    if (v != last_count) {
      last_count = v;
      last_kick = now;
    }
    if (now - last_kick > opt.watchdog_timeout && !expired) {
      expired = true;
      const auto silent = std::chrono::duration_cast<std::chrono::milliseconds>(now - last_kick);
      emit(event::kind::watchdog_expired, child.pid(), std::nullopt, std::chrono::milliseconds{0},
           name + " pid " + std::to_string(child.pid()) + " did not kick its watchdog for " + ms_text(silent) + "; killing it");
      child.kill(SIGKILL);  // its exit (through the pidfd) restarts it
      return;
    }
    arm_watchdog();
  }

  std::string name;
  starter start_fn;
  supervisor_options opt;
  boost::asio::any_io_executor executor;
  boost::asio::steady_timer restart_timer, watchdog_timer;
  std::optional<async_exit_waiter> waiter;
  std::function<void(const event&)> observer;
  std::optional<shared_value<std::uint64_t>> counter;
  process child;
  state current = state::idle;
  bool stopping = false, expired = false;
  unsigned starts = 0;
  std::uint64_t generation = 0, last_count = 0;
  std::deque<steady::time_point> failures;
  std::chrono::milliseconds delay{0};
  steady::time_point started_at{}, last_kick{};
  std::optional<exit_status> last;
};

supervisor::supervisor(boost::asio::any_io_executor ex, std::string name, starter start, supervisor_options options) {
  if (!start) ipc::throw_errno(EINVAL, "supervisor", name + " (no starter)");
  if (options.max_failures == 0) ipc::throw_errno(EINVAL, "supervisor", name + " (max_failures 0)");
  if (!options.watchdog_counter.empty() && options.watchdog_timeout <= std::chrono::milliseconds{0}) {
    ipc::throw_errno(EINVAL, "supervisor", name + " (watchdog counter without a timeout)");
  }
  impl_ = std::make_shared<impl>(ex, std::move(name), std::move(start), std::move(options));
}

supervisor::~supervisor() = default;

void supervisor::on_event(std::function<void(const event&)> fn) { impl_->observer = std::move(fn); }

void supervisor::start() {
  if (impl_->current == state::running || impl_->current == state::backing_off) return;
  if (!impl_->opt.watchdog_counter.empty() && !impl_->counter) {
    impl_->counter.emplace(impl_->opt.watchdog_counter, open_mode::open_or_create, 0, counter_options());
  }
  impl_->stopping = false;
  impl_->failures.clear();
  impl_->delay = impl_->opt.first_delay;
  impl_->launch(true);
}

void supervisor::stop(int sig) {
  impl_->stopping = true;
  impl_->restart_timer.cancel();
  if (impl_->current == state::backing_off) impl_->current = state::done;
  if (impl_->current == state::running && sig != 0) impl_->child.kill(sig);
}

bool supervisor::signal(int sig) { return impl_->current == state::running && impl_->child.kill(sig); }

supervisor::state supervisor::current() const noexcept { return impl_->current; }
bool supervisor::active() const noexcept {
  return impl_->current == state::running || impl_->current == state::backing_off;
}
pid_t supervisor::pid() const noexcept { return impl_->current == state::running ? impl_->child.pid() : -1; }
unsigned supervisor::starts() const noexcept { return impl_->starts; }
std::optional<exit_status> supervisor::last_exit() const noexcept { return impl_->last; }
const std::string& supervisor::name() const noexcept { return impl_->name; }

bool supervisor::healthy() const noexcept {
  if (impl_->current != state::running) return false;
  if (!impl_->counter) return true;
  const std::uint64_t v = counter_of(*impl_->counter).load(std::memory_order_relaxed);
  return v != impl_->last_count || steady::now() - impl_->last_kick <= impl_->opt.watchdog_timeout;
}

// --- the worker's side ------------------------------------------------------------------------

struct watchdog_kicker::impl {
  explicit impl(std::string_view name) : value(name, open_mode::open_only, 0, counter_options()) {}
  shared_value<std::uint64_t> value;
};

watchdog_kicker::watchdog_kicker(std::string_view counter) : impl_(std::make_unique<impl>(counter)) {}
watchdog_kicker::~watchdog_kicker() = default;
watchdog_kicker::watchdog_kicker(watchdog_kicker&&) noexcept = default;
watchdog_kicker& watchdog_kicker::operator=(watchdog_kicker&&) noexcept = default;

void watchdog_kicker::kick() noexcept {
  if (impl_) counter_of(impl_->value).fetch_add(1, std::memory_order_relaxed);
}

}  // namespace ipc
