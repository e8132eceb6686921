// ipcctl launch's supervision: every daemon runs under an ipc::supervisor on one Asio loop; their
// stderr is read line by line (stats lines feed the accounting, the rest is passed through); the
// end stops the pairs in order. Accounting is loss.hpp, rendering launch_render.hpp.
#include "launch.hpp"

#include "launch_render.hpp"
#include "loss.hpp"
#include "objects.hpp"
#include "table.hpp"

#include <ipc/error.hpp>
#include <ipc/process.hpp>
#include <ipc/supervisor.hpp>
#include <ipc/unique_fd.hpp>
#include <ipc/uri.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <list>
#include <memory>
#include <optional>
#include <stdexcept>

namespace fs = std::filesystem;
namespace asio = boost::asio;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace ipcctl {
namespace {

constexpr auto producer_stop_timeout = 10s;  // the pipe producer also waits for its own consumer
constexpr auto drain_timeout = 5s;
constexpr auto consumer_stop_timeout = 5s;
constexpr auto kill_grace = 5s;

bool executable(const fs::path& p) { return ::access(p.c_str(), X_OK) == 0 && fs::is_regular_file(p); }

// ipc-producer / ipc-consumer: next to ipcctl (installed: all in bindir), in the parent of ipcctl's
// directory when both daemons are there (the build tree: build/daemons/ipcctl/ipcctl and
// build/daemons/ipc-producer), else in $PATH.
fs::path find_daemon(const std::string& name) {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    fs::path dir = self.parent_path();
    if (executable(dir / name)) return dir / name;
    fs::path up = dir.parent_path();
    if (executable(up / "ipc-producer") && executable(up / "ipc-consumer")) return up / name;
  }
  if (const char* path = std::getenv("PATH")) {
    std::string_view rest(path);
    while (!rest.empty()) {
      auto colon = rest.find(':');
      fs::path d(std::string(rest.substr(0, colon)));
      rest = colon == std::string_view::npos ? std::string_view{} : rest.substr(colon + 1);
      if (!d.empty() && executable(d / name)) return d / name;
    }
  }
  throw std::runtime_error(name + " not found next to ipcctl (" + self.parent_path().string() + ") nor in $PATH");
}

// Reads one daemon process's stderr until EOF, a line at a time.
struct line_reader {
  line_reader(asio::io_context& io, ipc::unique_fd fd) : sd(io, fd.release()) {}
  asio::posix::stream_descriptor sd;
  std::array<char, 8192> buf{};
  std::string partial;
};

struct daemon_slot {
  std::string role;  // "producer" / "consumer"
  std::vector<std::string> argv;
  std::optional<ipc::supervisor> sup;
  std::list<line_reader> readers;  // the current process's, and a previous one's until its EOF
  unsigned abnormal_exits = 0;     // killed, or exited non-zero (its last stats line may be stale)
  int last_code = -1;
  int last_signal = 0;
  bool gave_up = false;
};

struct pair_run {
  std::string kind;
  std::string uri;
  daemon_slot producer;
  std::optional<daemon_slot> consumer;  // none for pipe: the producer supervises its own
  role_reports sent, received;
};

class launcher {
 public:
  explicit launcher(const launch_options& o)
      : o_(o), live_(std::cout, ::isatty(1) == 1), signals_(io_, SIGINT, SIGTERM), tick_timer_(io_), end_timer_(io_),
        wait_timer_(io_) {
    log_on_terminal_ = live_.terminal() && ::isatty(2) == 1;
    const fs::path producer = find_daemon("ipc-producer");
    const fs::path consumer = find_daemon("ipc-consumer");
    const std::string interval = fmt(o.interval_s, 3);
    for (const auto& kind : o.kinds) {
      pair_run& p = pairs_.emplace_back();  // in place: a supervisor never moves
      p.kind = kind;
      p.uri = launch_uri(kind, o.prefix);
      p.producer.role = "producer";
      p.producer.argv = {producer.string(), "--channel", p.uri, "--rate", std::to_string(o.rate),
                         "--size", std::to_string(o.size), "--stats-interval", interval};
      if (kind == "pipe") {
        for (const char* a : {"--sink", "null", "--stats-interval"}) p.producer.argv.insert(p.producer.argv.end(), {"--consumer-arg", a});
        p.producer.argv.insert(p.producer.argv.end(), {"--consumer-arg", interval});
      } else {
        p.consumer.emplace();
        p.consumer->role = "consumer";
        p.consumer->argv = {consumer.string(), "--channel", p.uri, "--sink", "null", "--stats-interval", interval};
      }
    }
  }

  int run() {
    remove_leftovers();
    started_ = steady::now();
    signals_.async_wait([this](const boost::system::error_code& ec, int) {
      if (!ec) shut_down();
    });
    // Consumers first: everything a producer sends has a reader waiting.
    for (auto& p : pairs_) {
      if (p.consumer) supervise(p, *p.consumer);
      supervise(p, p.producer);
    }
    if (o_.duration_s > 0) {
      end_timer_.expires_after(std::chrono::duration_cast<steady::duration>(std::chrono::duration<double>(o_.duration_s)));
      end_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (!ec) shut_down();
      });
    }
    tick();
    io_.run();
    if (live_.terminal()) live_.erase();
    const auto s = render_summary(views(true), std::chrono::duration<double>(stopped_at_ - started_).count(), o_.size);
    std::cout << s.text;
    std::cout.flush();
    return s.exit_code;
  }

 private:
  // --- supervision ---------------------------------------------------------------------------
  void supervise(pair_run& p, daemon_slot& s) {
    ipc::supervisor_options so;
    so.first_delay = 100ms;
    so.max_delay = 1600ms;
    so.max_failures = 5;
    so.window = 10s;
    s.sup.emplace(io_.get_executor(), p.uri + " " + s.role, [this, &p, &s] { return start(p, s); }, so);
    s.sup->on_event([this, &p, &s](const ipc::supervisor::event& e) { on_event(p, s, e); });
    s.sup->start();
  }

  // One daemon process: stdin/stdout on /dev/null, stderr into a pipe we read, its own process
  // group (a terminal's Ctrl-C reaches ipcctl only, which stops the pairs in order), and SIGTERM
  // when ipcctl dies (the daemons never outlive a killed ipcctl).
  ipc::process start(pair_run& p, daemon_slot& s) {
    int fds[2];
    ipc::detail::check_unix(::pipe2(fds, O_CLOEXEC), "pipe2", p.uri + " " + s.role + " stderr");
    ipc::unique_fd rd(fds[0]), wr(fds[1]);
    ipc::unique_fd devnull{::open("/dev/null", O_RDWR | O_CLOEXEC)};
    if (!devnull) ipc::detail::throw_errno(errno, "open", "/dev/null");
    ipc::exec_options eo;
    eo.stdin_fd = devnull.get();
    eo.stdout_fd = devnull.get();
    eo.stderr_fd = wr.get();
    eo.new_process_group = true;
    eo.parent_death_signal = SIGTERM;
    ipc::process proc = ipc::process::exec(s.argv, eo);
    auto& r = s.readers.emplace_back(io_, std::move(rd));
    read_more(p, s, r);
    return proc;
  }

  void on_event(pair_run& p, daemon_slot& s, const ipc::supervisor::event& e) {
    using kind = ipc::supervisor::event::kind;
    if (e.status) {
      s.last_code = e.status->exited() ? e.status->code : -1;
      s.last_signal = e.status->signal;
      if (!e.status->success()) ++s.abnormal_exits;
    }
    switch (e.what) {
      case kind::started:
        return;
      case kind::exited:
        break;
      case kind::restarting:
      case kind::watchdog_expired:
      case kind::start_failed:
        if (!stopping_) say(p, s, "ipcctl: " + e.text);
        break;
      case kind::gave_up:
        s.gave_up = true;
        say(p, s, "ipcctl: " + e.text);
        break;
    }
    if (!stopping_ && !any_active()) shut_down();  // every daemon ended on its own
  }

  void say(const pair_run&, const daemon_slot&, const std::string& text) {
    if (log_on_terminal_) live_.erase();
    std::cerr << text << '\n';
  }

  void read_more(pair_run& p, daemon_slot& s, line_reader& r) {
    r.sd.async_read_some(asio::buffer(r.buf), [this, &p, &s, &r](const boost::system::error_code& ec, std::size_t n) {
      if (n > 0) {
        r.partial.append(r.buf.data(), n);
        std::size_t nl;
        while ((nl = r.partial.find('\n')) != std::string::npos) {
          handle_line(p, s, r.partial.substr(0, nl));
          r.partial.erase(0, nl + 1);
        }
      }
      if (ec) {  // EOF (or the descriptor failed): this process is done writing
        if (!r.partial.empty()) handle_line(p, s, r.partial);
        s.readers.remove_if([&](const line_reader& x) { return &x == &r; });
        return;
      }
      read_more(p, s, r);
    });
  }

  void handle_line(pair_run& p, const daemon_slot& s, const std::string& line) {
    if (auto st = stats::parse(line)) {
      (st->role == "producer" ? p.sent : p.received).take(*st);
      return;
    }
    if (log_on_terminal_) live_.erase();
    std::cerr << '[' << p.kind << ' ' << s.role << "] " << line << '\n';
  }

  [[nodiscard]] std::vector<daemon_slot*> slots(bool producers, bool consumers) {
    std::vector<daemon_slot*> v;
    for (auto& p : pairs_) {
      if (producers) v.push_back(&p.producer);
      if (consumers && p.consumer) v.push_back(&*p.consumer);
    }
    return v;
  }

  [[nodiscard]] bool any_active() {
    auto all = slots(true, true);
    return std::any_of(all.begin(), all.end(), [](const daemon_slot* s) { return s->sup && s->sup->active(); });
  }

  // Objects of these names left by an earlier run whose processes are gone would feed old records to
  // the new consumers: remove them unless something still uses them.
  void remove_leftovers() {
    for (const auto& p : pairs_) {
      if (p.kind == "pipe") continue;
      std::string name = p.uri.substr(p.uri.find(':') + 1);
      try {
        auto objs = select(discover(ipc::runtime_dir()), p.kind + ":" + name);
        if (std::none_of(objs.begin(), objs.end(), [](const ipc_object& x) { return judge(x) == verdict::live; })) {
          remove_group(objs);
        }
      } catch (const std::exception&) {
        // nothing of that name, or not ours: the daemon will say so when it opens the channel
      }
    }
  }

  void cleanup_objects() {
    for (const auto& p : pairs_) {
      if (p.kind == "pipe") continue;
      std::string name = p.uri.substr(p.uri.find(':') + 1);
      try {
        remove_group(select(discover(ipc::runtime_dir()), p.kind + ":" + name));
      } catch (const std::runtime_error&) {
        // already gone
      } catch (const std::exception& e) {
        std::cerr << "ipcctl: cleaning up " << p.uri << ": " << e.what() << '\n';
      }
    }
  }

  // --- the end: producers first, the consumers once they caught up, then the stragglers ---------
  // Polls `done` every 50 ms until it holds or `deadline` passes, then calls next(done held).
  void wait_until(std::function<bool()> done, steady::time_point deadline, std::function<void(bool)> next) {
    if (done()) return next(true);
    if (steady::now() >= deadline) return next(false);
    wait_timer_.expires_after(50ms);
    wait_timer_.async_wait([this, done = std::move(done), deadline, next = std::move(next)](const boost::system::error_code& ec) mutable {
      if (ec) return;
      wait_until(std::move(done), deadline, std::move(next));
    });
  }

  void stop_all(const std::vector<daemon_slot*>& which, int sig) {
    for (auto* s : which) {
      if (s->sup) s->sup->stop(sig);
    }
  }

  std::function<bool()> all_ended(std::vector<daemon_slot*> which) {
    return [which] {
      return std::none_of(which.begin(), which.end(), [](const daemon_slot* s) { return s->sup && s->sup->active(); });
    };
  }

  // Stops `which` with SIGTERM; SIGKILL after `timeout`; then next().
  void stop_group(std::vector<daemon_slot*> which, std::chrono::seconds timeout, const char* what, std::function<void()> next) {
    stop_all(which, SIGTERM);
    wait_until(all_ended(which), steady::now() + timeout, [this, which, timeout, what, next](bool ok) {
      if (ok) return next();
      std::cerr << "ipcctl: " << what << " did not stop within " << timeout.count() << " s: SIGKILL\n";
      for (auto* s : which) {
        if (s->sup) s->sup->signal(SIGKILL);
      }
      wait_until(all_ended(which), steady::now() + kill_grace, [next](bool) { next(); });
    });
  }

  void shut_down() {
    if (stopping_) return;
    stopping_ = true;
    stopped_at_ = steady::now();
    end_timer_.cancel();
    signals_.cancel();
    stop_group(slots(true, false), producer_stop_timeout, "producers", [this] { drain(steady::now() + drain_timeout); });
  }

  // Lets the consumers catch up with what was sent (SIGUSR1 asks for a fresh stats line).
  void drain(steady::time_point deadline) {
    bool behind = false;
    for (auto& p : pairs_) {
      if (p.consumer && p.consumer->sup && p.consumer->sup->active() && consumer_behind(p.sent, p.received)) {
        behind = true;
        p.consumer->sup->signal(SIGUSR1);
      }
    }
    if (!behind || steady::now() >= deadline) {
      return stop_group(slots(false, true), consumer_stop_timeout, "consumers", [this] { finish_output(); });
    }
    wait_timer_.expires_after(200ms);
    wait_timer_.async_wait([this, deadline](const boost::system::error_code& ec) {
      if (!ec) drain(deadline);
    });
  }

  // The last lines of each daemon's stderr (its final stats) may still be in the pipes.
  void finish_output() {
    wait_until(
        [this] {
          auto all = slots(true, true);
          return std::all_of(all.begin(), all.end(), [](const daemon_slot* s) { return s->readers.empty(); });
        },
        steady::now() + 1s,
        [this](bool) {
          cleanup_objects();
          tick_timer_.cancel();
          for (auto* s : slots(true, true)) {
            for (auto& r : s->readers) r.sd.close();
          }
          io_.stop();
        });
  }

  // --- the live view -------------------------------------------------------------------------
  void tick() {
    tick_timer_.expires_after(std::chrono::duration_cast<steady::duration>(std::chrono::duration<double>(std::max(o_.interval_s, 0.2))));
    tick_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec || stopping_) return;
      draw_progress();
      tick();
    });
  }

  void draw_progress() {
    const double elapsed = std::chrono::duration<double>(steady::now() - started_).count();
    if (live_.terminal()) {
      live_.show("ipcctl launch: " + fmt(elapsed, 0) + " s" + (o_.duration_s > 0 ? " of " + fmt(o_.duration_s, 0) + " s" : "") +
                 " (Ctrl-C stops)\n" + render_table(views(false), false, elapsed));
      return;
    }
    std::cout << render_progress(views(false), elapsed);
    std::cout.flush();
  }

  [[nodiscard]] static std::string state_text(const daemon_slot& s) {
    if (!s.sup) return "idle";
    switch (s.sup->current()) {
      case ipc::supervisor::state::idle: return "idle";
      case ipc::supervisor::state::running: return "running";
      case ipc::supervisor::state::backing_off: return "restarting";
      case ipc::supervisor::state::gave_up: return "failed";
      case ipc::supervisor::state::done: break;
    }
    if (s.last_signal != 0) return std::string("killed(") + ::sigabbrev_np(s.last_signal) + ")";
    return s.last_code == 0 ? "done" : "exit " + std::to_string(s.last_code);
  }

  [[nodiscard]] std::vector<pair_view> views(bool final) const {
    std::vector<pair_view> v;
    for (const auto& p : pairs_) {
      pair_view x;
      x.uri = p.uri;
      x.sent = &p.sent;
      x.received = &p.received;
      account_options ao;
      ao.final = final;
      ao.producer_died = p.producer.abnormal_exits > 0;
      ao.process_restarts = restarts(p.producer) + (p.consumer ? restarts(*p.consumer) : 0);
      ao.count_producer_restarts = !p.consumer;
      x.totals = account(p.sent, p.received, ao);
      const std::string prod = state_text(p.producer);
      const std::string cons = p.consumer ? state_text(*p.consumer) : prod;
      x.state = prod == cons ? prod : prod + "/" + cons;
      x.consumer_exit_code = p.consumer ? p.consumer->last_code : -1;
      if (p.producer.gave_up) x.gave_up.push_back("producer");
      if (p.consumer && p.consumer->gave_up) x.gave_up.push_back("consumer");
      v.push_back(std::move(x));
    }
    return v;
  }

  [[nodiscard]] static std::uint64_t restarts(const daemon_slot& s) { return s.sup && s.sup->starts() > 0 ? s.sup->starts() - 1 : 0; }

  launch_options o_;
  asio::io_context io_;
  live_area live_;
  bool log_on_terminal_ = false;
  std::list<pair_run> pairs_;  // stable addresses: handlers hold references
  asio::signal_set signals_;
  asio::steady_timer tick_timer_, end_timer_, wait_timer_;
  bool stopping_ = false;
  steady::time_point started_{}, stopped_at_{};
};

}  // namespace

std::string launch_uri(const std::string& kind, const std::string& prefix) {
  if (kind == "pipe") return "pipe";
  return kind + ":" + prefix + "-" + kind;
}

int launch(const launch_options& o) { return launcher(o).run(); }

}  // namespace ipcctl
