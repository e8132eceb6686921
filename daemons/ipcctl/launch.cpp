#include "launch.hpp"

#include "objects.hpp"
#include "stats.hpp"
#include "table.hpp"

#include <ipc/error.hpp>
#include <ipc/inspect.hpp>
#include <ipc/unique_fd.hpp>
#include <ipc/uri.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace ipcctl {
namespace {

constexpr auto producer_stop_timeout = 10s;  // the pipe producer also waits for its own consumer
constexpr auto drain_timeout = 5s;
constexpr auto consumer_stop_timeout = 5s;
constexpr int give_up_after = 5;              // failures within give_up_window
constexpr auto give_up_window = 10s;

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
  throw std::runtime_error(name + " not found next to ipcctl (" + self.parent_path().string() +
                           ") nor in $PATH");
}

// What one role of a pair has reported, per process (restarts start their counters at zero): each
// process's last stats line, and the sequence span it reported for every producer session it saw.
struct span {
  std::uint64_t first = 0, highest = 0;
};

struct process_report {
  stats last;
  std::map<std::uint64_t, span> sessions;  // session → the span in the latest line about it
};

struct figures {
  std::vector<process_report> procs;  // in the order they first reported
  // Latency of the last interval that measured any (the final line after a drain often has none).
  std::optional<std::pair<double, double>> latency;

  void take(const stats& s) {
    auto it = std::find_if(procs.rbegin(), procs.rend(), [&](const process_report& r) { return r.last.pid == s.pid; });
    process_report& r = it != procs.rend() ? *it : procs.emplace_back();
    r.last = s;
    if (s.session != 0 && s.seq != 0) r.sessions[s.session] = span{s.first_seq, s.seq};
    if (s.p50_us > 0 || s.p99_us > 0) latency = std::pair{s.p50_us, s.p99_us};
  }
  [[nodiscard]] const stats* current() const { return procs.empty() ? nullptr : &procs.back().last; }
  template <class F>
  [[nodiscard]] std::uint64_t sum(F field) const {
    std::uint64_t n = 0;
    for (const auto& r : procs) n += r.last.*field;
    return n;
  }
  [[nodiscard]] std::uint64_t records() const { return sum(&stats::records); }
  [[nodiscard]] std::uint64_t bytes() const { return sum(&stats::bytes); }
  [[nodiscard]] std::uint64_t lost() const { return sum(&stats::lost); }
  [[nodiscard]] std::uint64_t dup() const { return sum(&stats::dup); }
  [[nodiscard]] std::uint64_t reorder() const { return sum(&stats::reorder); }
  [[nodiscard]] std::uint64_t corrupt() const { return sum(&stats::corrupt); }
  [[nodiscard]] std::uint64_t restarts() const { return sum(&stats::restarts); }
};

enum class proc_state { idle, running, backoff, exited, failed };

struct process_slot {
  std::string role;                // "producer" / "consumer"
  std::vector<std::string> argv;
  pid_t pid = -1;
  ipc::unique_fd err;              // read end of the daemon's stderr
  std::string partial;             // an unfinished line
  proc_state state = proc_state::idle;
  int exit_code = -1;
  int signal = 0;
  unsigned restarts = 0;
  unsigned abnormal_exits = 0;     // killed, or exited non-zero (its last stats line may be stale)
  std::deque<steady::time_point> failures;
  steady::time_point restart_at{};
};

struct pair_run {
  std::string kind;
  std::string uri;
  process_slot producer;
  std::optional<process_slot> consumer;  // none for pipe: the producer spawns its own
  figures sent, received;
};

class launcher {
 public:
  explicit launcher(const launch_options& o) : o_(o), live_(std::cout, ::isatty(1) == 1) {
    log_on_terminal_ = live_.terminal() && ::isatty(2) == 1;
    const fs::path producer = find_daemon("ipc-producer");
    const fs::path consumer = find_daemon("ipc-consumer");
    const std::string interval = fmt(o.interval_s, 3);
    for (const auto& kind : o.kinds) {
      pair_run p;
      p.kind = kind;
      p.uri = launch_uri(kind, o.prefix);
      p.producer.role = "producer";
      p.producer.argv = {producer.string(), "--channel", p.uri, "--rate", std::to_string(o.rate),
                         "--size", std::to_string(o.size), "--stats-interval", interval};
      if (kind == "pipe") {
        for (const char* a : {"--sink", "null", "--stats-interval"}) {
          p.producer.argv.insert(p.producer.argv.end(), {"--consumer-arg", a});
        }
        p.producer.argv.insert(p.producer.argv.end(), {"--consumer-arg", interval});
      } else {
        p.consumer.emplace();
        p.consumer->role = "consumer";
        p.consumer->argv = {consumer.string(), "--channel", p.uri, "--sink", "null", "--stats-interval", interval};
      }
      pairs_.push_back(std::move(p));
    }
  }

  int run() {
    block_signals();
    remove_leftovers();
    started_ = steady::now();
    // Consumers first: everything a producer sends has a reader waiting.
    for (auto& p : pairs_) {
      if (p.consumer) start(p, *p.consumer);
      start(p, p.producer);
    }
    const auto end = o_.duration_s > 0 ? started_ + std::chrono::duration_cast<steady::duration>(
                                                         std::chrono::duration<double>(o_.duration_s))
                                       : steady::time_point::max();
    auto next_tick = started_ + tick();
    while (!stop_requested_ && steady::now() < end && any_alive_or_pending()) {
      auto wake = std::min({end, next_tick, earliest_restart()});
      pump(wake);
      restart_due();
      if (steady::now() >= next_tick) {
        draw_progress();
        next_tick += tick();
      }
    }
    stopped_at_ = steady::now();
    shut_down();
    if (live_.terminal()) live_.erase();
    return summarise();
  }

 private:
  [[nodiscard]] steady::duration tick() const {
    return std::chrono::duration_cast<steady::duration>(std::chrono::duration<double>(std::max(o_.interval_s, 0.2)));
  }

  void block_signals() {
    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGINT, SIGTERM, SIGCHLD}) sigaddset(&set, s);
    ipc::detail::check_unix(::sigprocmask(SIG_BLOCK, &set, &saved_mask_), "sigprocmask", "SIGINT,SIGTERM,SIGCHLD");
    sigfd_.reset(ipc::detail::check_unix(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK), "signalfd", "launch"));
  }

  // Objects of these names left by an earlier run whose processes are gone would feed old records to
  // the new consumers: remove them unless something still uses them.
  void remove_leftovers() {
    for (const auto& p : pairs_) {
      if (p.kind == "pipe") continue;
      std::string name = p.uri.substr(p.uri.find(':') + 1);
      try {
        auto objs = select(ipc::list_objects(), p.kind + ":" + name);
        if (std::none_of(objs.begin(), objs.end(),
                         [](const object_info& x) { return judge(x, {}).kind == verdict_kind::in_use; })) {
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
        remove_group(select(ipc::list_objects(), p.kind + ":" + name));
      } catch (const std::runtime_error&) {
        // already gone
      } catch (const std::exception& e) {
        std::cerr << "ipcctl: cleaning up " << p.uri << ": " << e.what() << '\n';
      }
    }
  }

  void start(pair_run& p, process_slot& s) {
    // Everything the child needs is built before fork: only async-signal-safe calls after it.
    std::vector<char*> argv;
    for (auto& a : s.argv) argv.push_back(a.data());
    argv.push_back(nullptr);
    int fds[2];
    ipc::detail::check_unix(::pipe2(fds, O_CLOEXEC), "pipe2", p.uri + " " + s.role + " stderr");
    ipc::unique_fd rd(fds[0]), wr(fds[1]);
    ipc::unique_fd devnull{::open("/dev/null", O_RDWR | O_CLOEXEC)};
    const pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) ipc::detail::throw_errno(errno, "fork", p.uri + " " + s.role);
    if (pid == 0) {
      // Our own process group: a terminal's Ctrl-C reaches ipcctl only, which stops the pairs in
      // order. PDEATHSIG: the daemons never outlive a killed ipcctl.
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(1);
      ::sigprocmask(SIG_SETMASK, &saved_mask_, nullptr);
      if (devnull) {
        ::dup2(devnull.get(), 0);
        ::dup2(devnull.get(), 1);
      }
      ::dup2(wr.get(), 2);
      ::execv(argv[0], argv.data());
      static const char msg[] = "<3>ipcctl: execv failed\n";
      (void)!::write(2, msg, sizeof msg - 1);
      ::_exit(127);
    }
    ::fcntl(rd.get(), F_SETFL, O_NONBLOCK);
    s.pid = pid;
    s.err = std::move(rd);
    s.partial.clear();
    s.state = proc_state::running;
  }

  [[nodiscard]] std::vector<std::pair<pair_run*, process_slot*>> slots() {
    std::vector<std::pair<pair_run*, process_slot*>> v;
    for (auto& p : pairs_) {
      v.emplace_back(&p, &p.producer);
      if (p.consumer) v.emplace_back(&p, &*p.consumer);
    }
    return v;
  }

  [[nodiscard]] bool any_alive_or_pending() {
    for (auto [p, s] : slots()) {
      if (s->state == proc_state::running || s->state == proc_state::backoff) return true;
    }
    return false;
  }

  [[nodiscard]] steady::time_point earliest_restart() {
    auto t = steady::time_point::max();
    for (auto [p, s] : slots()) {
      if (s->state == proc_state::backoff) t = std::min(t, s->restart_at);
    }
    return t;
  }

  void restart_due() {
    auto now = steady::now();
    for (auto [p, s] : slots()) {
      if (s->state == proc_state::backoff && now >= s->restart_at && !stop_requested_) {
        ++s->restarts;
        start(*p, *s);
      }
    }
  }

  // Waits until `until` for daemon output, exits and signals, handling each.
  void pump(steady::time_point until) {
    std::vector<pollfd> pfds{{sigfd_.get(), POLLIN, 0}};
    std::vector<process_slot*> owners{nullptr};
    std::vector<pair_run*> pair_of{nullptr};
    for (auto [p, s] : slots()) {
      if (s->err) {
        pfds.push_back({s->err.get(), POLLIN, 0});
        owners.push_back(s);
        pair_of.push_back(p);
      }
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - steady::now()).count();
    int timeout = until == steady::time_point::max() ? 1000 : static_cast<int>(std::clamp<long long>(left + 1, 0, 1000));
    int n = ::poll(pfds.data(), pfds.size(), timeout);
    if (n < 0 && errno != EINTR) ipc::detail::throw_errno(errno, "poll", "launch");
    for (std::size_t i = 1; i < pfds.size(); ++i) {
      if (pfds[i].revents != 0) read_output(*pair_of[i], *owners[i]);
    }
    if (pfds[0].revents != 0) handle_signals();
  }

  void read_output(pair_run& p, process_slot& s) {
    char buf[8192];
    for (;;) {
      ssize_t n = ::read(s.err.get(), buf, sizeof buf);
      if (n > 0) {
        s.partial.append(buf, static_cast<std::size_t>(n));
        std::size_t nl;
        while ((nl = s.partial.find('\n')) != std::string::npos) {
          handle_line(p, s, s.partial.substr(0, nl));
          s.partial.erase(0, nl + 1);
        }
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n == 0) {
        if (!s.partial.empty()) handle_line(p, s, s.partial);
        s.partial.clear();
        s.err.reset();
      }
      return;
    }
  }

  void handle_line(pair_run& p, process_slot& s, const std::string& line) {
    if (auto st = parse_stats(line)) {
      (st->role == "producer" ? p.sent : p.received).take(*st);
      return;
    }
    if (log_on_terminal_) live_.erase();
    std::cerr << '[' << p.kind << ' ' << s.role << "] " << line << '\n';
  }

  void handle_signals() {
    signalfd_siginfo si{};
    while (::read(sigfd_.get(), &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
      if (si.ssi_signo == SIGINT || si.ssi_signo == SIGTERM) stop_requested_ = true;
    }
    reap();
  }

  void reap() {
    for (;;) {
      int st = 0;
      pid_t pid = ::waitpid(-1, &st, WNOHANG);
      if (pid <= 0) return;
      for (auto [p, s] : slots()) {
        if (s->pid != pid) continue;
        if (s->err) read_output(*p, *s);
        s->pid = -1;
        s->exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        s->signal = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
        on_exit(*p, *s);
      }
    }
  }

  void on_exit(pair_run& p, process_slot& s) {
    const bool clean = s.exit_code == 0;
    if (!clean) ++s.abnormal_exits;
    if (stopping_ || clean) {
      s.state = proc_state::exited;
      return;
    }
    std::string why = s.signal != 0 ? std::string("killed by signal ") + ::strsignal(s.signal)
                                    : "exited with status " + std::to_string(s.exit_code);
    if (log_on_terminal_) live_.erase();
    // Usage errors and exec failures do not get better by retrying.
    auto now = steady::now();
    s.failures.push_back(now);
    while (!s.failures.empty() && now - s.failures.front() > give_up_window) s.failures.pop_front();
    if (s.exit_code == 2 || s.exit_code == 127 || static_cast<int>(s.failures.size()) >= give_up_after) {
      std::cerr << "ipcctl: " << p.uri << ' ' << s.role << ' ' << why << "; giving up\n";
      s.state = proc_state::failed;
      return;
    }
    auto delay = std::chrono::milliseconds(100 << std::min<std::size_t>(s.failures.size() - 1, 4));
    std::cerr << "ipcctl: " << p.uri << ' ' << s.role << ' ' << why << "; restarting in " << delay.count()
              << " ms\n";
    s.state = proc_state::backoff;
    s.restart_at = now + delay;
  }

  // Waits until no slot in `which` is running or the deadline passes; true when all exited.
  bool wait_exit(const std::vector<process_slot*>& which, steady::time_point deadline) {
    for (;;) {
      bool any = std::any_of(which.begin(), which.end(),
                             [](const process_slot* s) { return s->state == proc_state::running; });
      if (!any) return true;
      if (steady::now() >= deadline) return false;
      pump(std::min(deadline, steady::now() + 100ms));
    }
  }

  void signal_all(const std::vector<process_slot*>& which, int sig) {
    for (auto* s : which) {
      if (s->state == proc_state::running && s->pid > 0) ::kill(s->pid, sig);
    }
  }

  void shut_down() {
    stopping_ = true;
    for (auto [p, s] : slots()) {
      if (s->state == proc_state::backoff) s->state = proc_state::exited;  // not restarted any more
    }
    std::vector<process_slot*> producers, consumers;
    for (auto& p : pairs_) {
      producers.push_back(&p.producer);
      if (p.consumer) consumers.push_back(&*p.consumer);
    }
    signal_all(producers, SIGTERM);
    if (!wait_exit(producers, steady::now() + producer_stop_timeout)) {
      std::cerr << "ipcctl: producers did not stop within " << producer_stop_timeout.count() << " s: SIGKILL\n";
      signal_all(producers, SIGKILL);
      wait_exit(producers, steady::now() + 5s);
    }
    // Let the consumers catch up with what was sent (SIGUSR1 asks for a fresh stats line).
    auto drain_deadline = steady::now() + drain_timeout;
    for (;;) {
      bool behind = false;
      for (auto& p : pairs_) {
        if (p.consumer && p.consumer->state == proc_state::running && consumer_behind(p)) {
          behind = true;
          ::kill(p.consumer->pid, SIGUSR1);
        }
      }
      if (!behind || steady::now() >= drain_deadline) break;
      pump(std::min(drain_deadline, steady::now() + 200ms));
    }
    signal_all(consumers, SIGTERM);
    if (!wait_exit(consumers, steady::now() + consumer_stop_timeout)) {
      std::cerr << "ipcctl: consumers did not stop within " << consumer_stop_timeout.count() << " s: SIGKILL\n";
      signal_all(consumers, SIGKILL);
      wait_exit(consumers, steady::now() + 5s);
    }
    // The last lines of each daemon's stderr (its final stats) may still be in the pipes.
    for (auto [p, s] : slots()) {
      while (s->err) {
        pollfd pfd{s->err.get(), POLLIN, 0};
        if (::poll(&pfd, 1, 1000) <= 0) break;
        read_output(*p, *s);
      }
    }
    cleanup_objects();
  }

  // The running consumer has not yet reported the last record its producer reported sent.
  [[nodiscard]] static bool consumer_behind(const pair_run& p) {
    const stats* sent = p.sent.current();
    if (sent == nullptr || sent->seq == 0) return false;
    if (p.received.procs.empty()) return true;
    const auto& seen = p.received.procs.back().sessions;
    auto it = seen.find(sent->session);
    return it == seen.end() || it->second.highest < sent->seq;
  }

  struct pair_totals {
    std::uint64_t sent = 0, received = 0, bytes = 0, lost = 0, dup = 0, reorder = 0, corrupt = 0, restarts = 0;
    std::string unverified;  // why the figures cannot be exact; empty when they are
  };

  // Loss is counted from sequence numbers, not from counters: per producer session, the spans the
  // consumers reported (in the order they ran) must cover 1..last sent. A gap between one consumer's
  // highest and the next one's first record — what a killed consumer held, or handled after its last
  // stats line — is lost; an overlap is duplicated; inside a span the consumer counted itself. Then
  // sent + dup == received + lost holds exactly. `final`: after the drain, a shortfall behind the
  // last consumer's highest record is lost too (while running it is in flight).
  [[nodiscard]] pair_totals totals(const pair_run& p, bool final) const {
    pair_totals t;
    t.received = p.received.records();
    t.bytes = p.received.bytes();
    t.lost = p.received.lost();
    t.dup = p.received.dup();
    t.reorder = p.received.reorder();
    t.corrupt = p.received.corrupt();
    // Processes restarted, by ipcctl or by the pipe producer (for other channels a producer's own
    // `restarts` counts channel reopens, which follow a consumer restart and are not counted again).
    t.restarts = p.producer.restarts + (p.consumer ? p.consumer->restarts : p.sent.restarts());
    std::map<std::uint64_t, std::uint64_t> last_sent;  // session → highest sequence sent
    for (const auto& r : p.sent.procs) {
      if (r.last.records > 0 && r.last.session == 0) t.unverified = "a producer reported no sequence numbers";
      for (const auto& [session, sp] : r.sessions) last_sent[session] = std::max(last_sent[session], sp.highest);
    }
    for (const auto& r : p.received.procs) {
      if (r.last.records > 0 && r.sessions.empty()) t.unverified = "a consumer reported no sequence numbers";
      // A producer killed after its last stats line sent more than it reported.
      for (const auto& [session, sp] : r.sessions) last_sent[session] = std::max(last_sent[session], sp.highest);
    }
    if (p.producer.abnormal_exits > 0) {
      t.unverified = "a producer died: what it sent after its last stats line and nobody received is unknown";
    }
    for (const auto& [session, highest_sent] : last_sent) {
      std::uint64_t next = 1;  // the first sequence no consumer has accounted for yet
      for (const auto& r : p.received.procs) {
        auto it = r.sessions.find(session);
        if (it == r.sessions.end()) continue;
        const span sp = it->second;
        if (sp.first > next) t.lost += sp.first - next;
        if (sp.first < next) t.dup += std::min(sp.highest + 1, next) - sp.first;
        next = std::max(next, sp.highest + 1);
      }
      if (final && highest_sent >= next) t.lost += highest_sent + 1 - next;
      t.sent += highest_sent;
    }
    return t;
  }

  [[nodiscard]] std::string state_text(const pair_run& p) const {
    auto text = [](const process_slot& s) -> std::string {
      switch (s.state) {
        case proc_state::idle: return "idle";
        case proc_state::running: return "running";
        case proc_state::backoff: return "restarting";
        case proc_state::failed: return "failed";
        case proc_state::exited:
          if (s.signal != 0) return std::string("killed(") + ::sigabbrev_np(s.signal) + ")";
          return s.exit_code == 0 ? "done" : "exit " + std::to_string(s.exit_code);
      }
      return "?";
    };
    std::string prod = text(p.producer);
    if (!p.consumer) return prod;
    std::string cons = text(*p.consumer);
    return prod == cons ? prod : prod + "/" + cons;
  }

  table make_table(bool summary) {
    table t({"channel", "sent", "received", "rec/s", "MB/s", "p50 us", "p99 us", "lost", "dup", "reord", "corrupt",
             "restarts", "state"},
            {false, true, true, true, true, true, true, true, true, true, true, true, false});
    pair_totals all;
    const double elapsed = std::chrono::duration<double>((summary ? stopped_at_ : steady::now()) - started_).count();
    for (const auto& p : pairs_) {
      auto x = totals(p, summary);
      const stats* last = p.received.current();
      double rate = summary ? (elapsed > 0 ? static_cast<double>(x.received) / elapsed : 0) : (last ? last->rate : 0);
      double mbps = summary ? (elapsed > 0 ? static_cast<double>(x.bytes) / elapsed / 1e6 : 0) : (last ? last->mbps : 0);
      t.add({p.uri, std::to_string(x.sent), std::to_string(x.received), fmt(rate, 0), fmt(mbps, 2),
             p.received.latency ? fmt(p.received.latency->first, 1) : "-",
             p.received.latency ? fmt(p.received.latency->second, 1) : "-", std::to_string(x.lost),
             std::to_string(x.dup), std::to_string(x.reorder), std::to_string(x.corrupt), std::to_string(x.restarts),
             state_text(p)});
      all.sent += x.sent;
      all.received += x.received;
      all.bytes += x.bytes;
      all.lost += x.lost;
      all.dup += x.dup;
      all.reorder += x.reorder;
      all.corrupt += x.corrupt;
      all.restarts += x.restarts;
    }
    if (summary && pairs_.size() > 1) {
      t.add({"total", std::to_string(all.sent), std::to_string(all.received),
             fmt(elapsed > 0 ? static_cast<double>(all.received) / elapsed : 0, 0),
             fmt(elapsed > 0 ? static_cast<double>(all.bytes) / elapsed / 1e6 : 0, 2), "-", "-", std::to_string(all.lost),
             std::to_string(all.dup), std::to_string(all.reorder), std::to_string(all.corrupt),
             std::to_string(all.restarts), ""});
    }
    return t;
  }

  void draw_progress() {
    const double elapsed = std::chrono::duration<double>(steady::now() - started_).count();
    if (live_.terminal()) {
      live_.show("ipcctl launch: " + fmt(elapsed, 0) + " s" +
                 (o_.duration_s > 0 ? " of " + fmt(o_.duration_s, 0) + " s" : "") + " (Ctrl-C stops)\n" +
                 make_table(false).render());
      return;
    }
    for (const auto& p : pairs_) {
      auto x = totals(p, false);
      const stats* last = p.received.current();
      std::cout << "t=" << fmt(elapsed, 1) << "s " << p.uri << " sent=" << x.sent << " received=" << x.received
                << " rec/s=" << (last ? fmt(last->rate, 0) : "-") << " MB/s=" << (last ? fmt(last->mbps, 2) : "-")
                << " p50_us=" << (p.received.latency ? fmt(p.received.latency->first, 1) : "-")
                << " p99_us=" << (p.received.latency ? fmt(p.received.latency->second, 1) : "-")
                << " lost=" << x.lost << " corrupt=" << x.corrupt << " restarts=" << x.restarts << " state=" << state_text(p)
                << '\n';
    }
    std::cout.flush();
  }

  int summarise() {
    std::cout << "summary (" << fmt(std::chrono::duration<double>(stopped_at_ - started_).count(), 1) << " s, "
              << o_.size << "-byte records):\n"
              << make_table(true).render();
    bool loss = false, failure = false;
    std::vector<std::string> problems;
    for (const auto& p : pairs_) {
      auto x = totals(p, true);
      if (!x.unverified.empty()) {
        failure = true;
        problems.push_back(p.uri + ": unverified, the figures may be inexact: " + x.unverified);
      }
      if (x.lost + x.dup + x.reorder + x.corrupt > 0) {
        loss = true;
        problems.push_back(p.uri + ": " + std::to_string(x.lost) + " lost, " + std::to_string(x.dup) +
                           " duplicated, " + std::to_string(x.reorder) + " reordered, " + std::to_string(x.corrupt) +
                           " corrupt");
      }
      if (p.consumer && p.consumer->exit_code == 3) {
        loss = true;
        problems.push_back(p.uri + ": the consumer reported damaged records (exit status 3)");
      }
      if (x.received == 0) {
        failure = true;
        problems.push_back(p.uri + ": no record moved");
      }
      for (const process_slot* s : {&p.producer, p.consumer ? &*p.consumer : nullptr}) {
        if (s != nullptr && s->state == proc_state::failed) {
          failure = true;
          problems.push_back(p.uri + ": the " + s->role + " kept failing and was given up");
        }
      }
    }
    for (const auto& m : problems) std::cout << "FAILED " << m << '\n';
    if (problems.empty()) std::cout << "ok: every record arrived, none lost, duplicated, reordered or corrupt\n";
    std::cout.flush();
    return loss ? 3 : failure ? 1 : 0;
  }

  launch_options o_;
  live_area live_;
  bool log_on_terminal_ = false;
  std::vector<pair_run> pairs_;
  ipc::unique_fd sigfd_;
  sigset_t saved_mask_{};
  bool stop_requested_ = false;
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
