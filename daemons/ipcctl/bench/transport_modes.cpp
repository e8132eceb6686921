#include "transport_modes.hpp"

#include "numbers.hpp"
#include "report.hpp"
#include "runner.hpp"
#include "table.hpp"

#include <ipc/channel.hpp>
#include <ipc/error.hpp>
#include <ipc/process.hpp>
#include <ipc/shm_broadcast.hpp>
#include <ipc/shm_mpmc.hpp>
#include <ipc/shm_ring.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/mman.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <thread>

namespace ipc::bench {
namespace {

using clock = std::chrono::steady_clock;

// Shared by the parent and its children (an anonymous shared mapping made before the forks).
struct control {
  std::atomic<int> ready;
  std::atomic<int> failed;
  std::atomic<std::int64_t> start_ns;  // 0 until every child is ready; steady_clock is CLOCK_MONOTONIC
  std::atomic<std::int64_t> stop_ns;
  std::atomic<std::uint64_t> received;
  std::atomic<std::int64_t> last_end_ns;
  std::atomic<unsigned> senders_done;
  std::atomic<std::uint64_t> sent;
};

class shared_control {
 public:
  shared_control() {
    void* p = ::mmap(nullptr, sizeof(control), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) ipc::throw_errno(errno, "mmap", "bench control block");
    c_ = new (p) control{};
  }
  ~shared_control() { ::munmap(c_, sizeof(control)); }
  shared_control(const shared_control&) = delete;
  shared_control& operator=(const shared_control&) = delete;
  control* operator->() const noexcept { return c_; }
  control& get() const noexcept { return *c_; }

 private:
  control* c_;
};

std::int64_t wait_for_start(control& c) {
  for (;;) {
    if (auto s = c.start_ns.load(std::memory_order_acquire); s != 0) return s;
    if (c.failed.load() != 0) return 0;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

int sender_body(control& c, const mode_opener& open, std::size_t size, unsigned senders, unsigned receivers) {
  auto end = open(role::sender);
  std::vector<std::byte> msg(size, std::byte{0x5a});
  c.ready.fetch_add(1);
  if (wait_for_start(c) == 0) return 1;
  const std::int64_t stop = c.stop_ns.load();
  for (std::uint64_t seq = 0;; ++seq) {
    std::memcpy(msg.data(), &seq, sizeof seq);
    end->send(msg);
    if ((seq & 63U) == 0 && now_ns() >= stop) {
      c.sent.fetch_add(seq + 1);
      break;
    }
  }
  end->finish(c.senders_done.fetch_add(1) + 1 == senders, receivers);
  return 0;
}

int receiver_body(control& c, const mode_opener& open, std::size_t size) {
  auto end = open(role::receiver);
  std::vector<std::byte> buf;
  c.ready.fetch_add(1);
  if (wait_for_start(c) == 0) return 1;
  std::uint64_t n = 0;
  while (end->receive(buf)) {
    if (buf.size() != size) return 2;
    ++n;
  }
  c.received.fetch_add(n);
  std::int64_t end_ns = now_ns();
  std::int64_t prev = c.last_end_ns.load();
  while (prev < end_ns && !c.last_end_ns.compare_exchange_weak(prev, end_ns)) {
  }
  return 0;
}

// An end through open_channel(uri): the stream ends when the last sender detaches.
class channel_end final : public mode_end {
 public:
  explicit channel_end(std::unique_ptr<channel> ch) : ch_(std::move(ch)) {}
  void send(std::span<const std::byte> message) override { ch_->send(message); }
  bool receive(std::vector<std::byte>& buf) override {
    try {
      ch_->receive(buf);
      return true;
    } catch (const std::system_error& e) {
      if (e.code() != ipc::errc::closed) throw;
      return false;
    }
  }

 private:
  std::unique_ptr<channel> ch_;
};

// The ring's default 1 MiB, or more for messages above its 64 KiB limit.
std::size_t ring_capacity(std::size_t size) {
  std::size_t cap = std::size_t{1} << 20;
  while (cap / 2 - 8 < size) cap *= 2;
  return cap;
}

}  // namespace

mode_figures run_mode(const mode_opener& open, unsigned senders, unsigned receivers, std::size_t size, double seconds,
                      const std::string& what) {
  shared_control c;
  std::vector<process> kids;
  // Receivers first: the object exists (and has its receivers) before anyone sends.
  for (unsigned i = 0; i < receivers + senders; ++i) {
    const bool rx = i < receivers;
    process& kid = kids.emplace_back(child_options(rx ? "modes receiver" : "modes sender"), [&, rx] {
      child_signals();
      return rx ? receiver_body(c.get(), open, size) : sender_body(c.get(), open, size, senders, receivers);
    });
    kid.start();
  }
  const auto ready_by = clock::now() + std::chrono::seconds(10);
  while (c->ready.load() < static_cast<int>(receivers + senders)) {
    bool dead = false;
    for (auto& k : kids) dead = dead || !k.is_alive();
    if (dead || clock::now() > ready_by) {
      c->failed.store(1);
      throw_error(errc::closed, "bench", what, "a child ended or did not open the channel within 10 s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const std::int64_t start = now_ns();
  c->stop_ns.store(start + static_cast<std::int64_t>(seconds * 1e9));
  c->start_ns.store(start, std::memory_order_release);
  // Every child is reaped here; the first failure, the deadline or ^C kills the rest, which may be
  // waiting for a stream that will never end. The wait sleeps in poll() on the pidfds (no wake-ups
  // of ours on the CPUs the children measure), looking at ^C every 100 ms.
  const auto deadline = clock::now() + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(seconds + 30));
  std::string failure;
  for (;;) {
    std::vector<pollfd> running;
    for (auto& k : kids) {
      if (!k.joinable()) continue;
      if (const auto st = k.try_join()) {
        if (!st->success() && failure.empty()) failure = std::string("a child ") + st->to_string();
      } else {
        running.push_back({k.pidfd(), POLLIN, 0});
      }
    }
    if (running.empty()) break;
    if (failure.empty() && stop_requested.load()) failure = "interrupted";
    if (failure.empty() && clock::now() > deadline) failure = "a child did not finish within the run + 30 s";
    if (!failure.empty()) {
      for (auto& k : kids) {
        if (k.joinable()) {
          k.kill(SIGKILL);
          k.join();
        }
      }
      break;
    }
    if (::poll(running.data(), running.size(), 100) < 0 && errno != EINTR) ipc::throw_errno(errno, "poll", "bench children");
  }
  if (!failure.empty()) throw_error(errc::corrupt, "bench", what, failure);
  mode_figures f;
  f.messages = c->received.load();
  f.sent = c->sent.load();
  f.seconds = static_cast<double>(c->last_end_ns.load() - start) / 1e9;
  return f;
}

mode_figures measure_mode(const std::string& uri, unsigned senders, unsigned receivers, std::size_t size,
                          double seconds) {
  const mode_opener open = [&uri](role r) -> std::unique_ptr<mode_end> {
    return std::make_unique<channel_end>(open_channel(uri, r));
  };
  return run_mode(open, senders, receivers, size, seconds, uri);
}

std::vector<mode_row> measure_mode_rows(const std::vector<std::size_t>& sizes, double seconds, const std::string& prefix) {
  std::vector<mode_row> rows;
  unsigned n = 0;
  for (const std::size_t size : sizes) {
    // The ring's default 1 MiB against a queue of about the same bytes (at least 16 slots).
    std::size_t slots = 16;
    while (slots < 65536 && slots * 2 * (size + 64) <= (std::size_t{1} << 20)) slots *= 2;
    enum class kind { spsc, mpmc, broadcast };
    struct spec {
      const char* label;
      kind k;
      unsigned senders, receivers;
    };
    // Every row of this size in cell_rounds rounds of seconds ÷ rounds, the rows interleaved (spsc,
    // mpmc, ..., boost, spsc, ...), each keeping its best round: the ratios to the SPSC row then
    // compare rows measured under the same load (docs/benchmarks.md, "Fair ratios").
    struct job {
      mode_row row;
      kind k;  // the shm kind; unused for boost
      bool boost;
    };
    std::vector<job> jobs;
    for (const spec& s : {spec{"spsc 1→1", kind::spsc, 1, 1}, spec{"mpmc 1→1", kind::mpmc, 1, 1},
                          spec{"mpmc 2→2", kind::mpmc, 2, 2}, spec{"broadcast 1→1", kind::broadcast, 1, 1},
                          spec{"broadcast 1→4", kind::broadcast, 1, 4}}) {
      mode_row r{s.label, size, {}, 0, {}, s.receivers, s.k == kind::broadcast};
      r.senders = s.senders;
      jobs.push_back({std::move(r), s.k, false});
    }
    // The same layouts through a well-known library: Boost's message_queue is MPMC (a mutex and
    // two conditions in the segment), with the MPMC rows' slots.
    for (const unsigned n_to_n : {1U, 2U}) {
      mode_row r{"boost_mq " + std::to_string(n_to_n) + "→" + std::to_string(n_to_n), size, {}, 0, {}};
      r.senders = r.receivers = n_to_n;
      jobs.push_back({std::move(r), kind::mpmc, true});
    }
    for (unsigned round = 0; round < cell_rounds; ++round) {
      for (job& j : jobs) {
        if (stop_requested.load()) return rows;
        if (!j.row.error.empty()) continue;  // a failed row posts no figure
        mode_row& r = j.row;
        const std::string name = prefix + "." + std::to_string(++n);
        mode_figures f;
        try {
          if (j.boost) {
            f = measure_boost_mode(name, slots, r.senders, r.receivers, size, seconds / cell_rounds);
          } else {
            const std::string cells = "&slots=" + std::to_string(slots) + "&max_message=" + std::to_string(size);
            const std::string uri = j.k == kind::mpmc        ? "shm:" + name + "?mode=mpmc" + cells
                                    : j.k == kind::broadcast ? "shm:" + name + "?mode=broadcast&policy=block" + cells
                                                             : "shm:" + name + "?capacity=" + std::to_string(ring_capacity(size)) +
                                                                   "&max_message=" + std::to_string(size);
            f = measure_mode(uri, r.senders, r.receivers, size, seconds / cell_rounds);
          }
          if (round == 0 || f.rate() > r.figures.rate()) r.figures = f;
        } catch (const std::exception& e) {
          r.error = e.what();
        }
        if (!j.boost) {
          try {
            if (j.k == kind::mpmc) shm_mpmc::remove(name);
            else if (j.k == kind::broadcast) shm_broadcast::remove(name);
            else shm_ring::remove(name);
          } catch (const std::exception& e) {
            std::fprintf(stderr, "ipc-bench: cleanup: %s: %s\n", name.c_str(), e.what());
          }
        }
      }
    }
    const double spsc = jobs.front().row.error.empty() ? jobs.front().row.figures.rate() : 0;
    for (job& j : jobs) {
      mode_row& r = j.row;
      if (r.error.empty()) {
        const double rate = r.broadcast ? r.per_receiver_rate() : r.figures.rate();
        r.vs_spsc = spsc > 0 ? rate / spsc : 0;
      }
      rows.push_back(std::move(r));
    }
  }
  return rows;
}

std::string mode_table(const std::vector<mode_row>& rows, double seconds) {
  std::string s = "\nmodes: N senders → M receivers, each its own process, one object; total messages received per "
                  "second, best of " + std::to_string(cell_rounds) + " rounds of " + daemon::fmt(seconds / cell_rounds, 2) +
                  " s of sending (until the last receiver drained), the rows of a size interleaved; "
                  "×spsc = row ÷ shm spsc 1→1; broadcast (policy=block): every receiver gets every message, "
                  "×spsc compares the rate per receiver\n";
  daemon::table t({"mode", "size", "total msg/s", "per receiver", "MB/s", "×spsc", ""},
                  {false, true, true, true, true, true, false});
  for (const auto& r : rows) {
    if (!r.error.empty()) {
      t.add({r.label, size_label(r.size), "—", "—", "—", "", "failed: " + r.error});
      continue;
    }
    t.add({r.label, size_label(r.size), rate_label(r.figures.rate()), rate_label(r.per_receiver_rate()),
           daemon::fmt(r.figures.rate() * static_cast<double>(r.size) / 1e6, 1),
           times(r.vs_spsc > 0 ? std::optional<double>(r.vs_spsc) : std::nullopt), ""});
  }
  return s + t.render();
}

}  // namespace ipc::bench
