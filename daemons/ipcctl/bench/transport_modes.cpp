#include "transport_modes.hpp"

#include <ipc/channel.hpp>
#include <ipc/error.hpp>
#include <ipc/process.hpp>
#include <ipc/shm_broadcast.hpp>
#include <ipc/shm_mpmc.hpp>
#include <ipc/shm_ring.hpp>

#include <signal.h>
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

namespace ipc::bench {
namespace {

using clock = std::chrono::steady_clock;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now().time_since_epoch()).count();
}

// Shared by the parent and its children (an anonymous shared mapping made before the forks).
struct control {
  std::atomic<int> ready;
  std::atomic<int> failed;
  std::atomic<std::int64_t> start_ns;  // 0 until every child is ready; steady_clock is CLOCK_MONOTONIC
  std::atomic<std::int64_t> stop_ns;
  std::atomic<std::uint64_t> received;
  std::atomic<std::int64_t> last_end_ns;
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

int sender_body(control& c, const std::string& uri, std::size_t size) {
  auto ch = open_channel(uri, role::sender);
  std::vector<std::byte> msg(size, std::byte{0x5a});
  c.ready.fetch_add(1);
  if (wait_for_start(c) == 0) return 1;
  const std::int64_t stop = c.stop_ns.load();
  for (std::uint64_t seq = 0;; ++seq) {
    std::memcpy(msg.data(), &seq, sizeof seq);
    ch->send(msg);
    if ((seq & 63U) == 0 && now_ns() >= stop) return 0;
  }
}

int receiver_body(control& c, const std::string& uri, std::size_t size) {
  auto ch = open_channel(uri, role::receiver);
  std::vector<std::byte> buf;
  c.ready.fetch_add(1);
  if (wait_for_start(c) == 0) return 1;
  std::uint64_t n = 0;
  try {
    for (;;) {
      if (ch->receive(buf) != size) return 2;
      ++n;
    }
  } catch (const std::system_error& e) {
    if (e.code() != ipc::errc::closed) throw;
  }
  c.received.fetch_add(n);
  std::int64_t end = now_ns();
  std::int64_t prev = c.last_end_ns.load();
  while (prev < end && !c.last_end_ns.compare_exchange_weak(prev, end)) {
  }
  return 0;
}

// The ring's default 1 MiB, or more for messages above its 64 KiB limit.
std::size_t ring_capacity(std::size_t size) {
  std::size_t cap = std::size_t{1} << 20;
  while (cap / 2 - 8 < size) cap *= 2;
  return cap;
}

}  // namespace

mode_figures measure_mode(const std::string& uri, unsigned senders, unsigned receivers, std::size_t size,
                          double seconds) {
  shared_control c;
  std::vector<process> kids;
  // Receivers first: the object exists (and has its receivers) before anyone sends.
  for (unsigned i = 0; i < receivers + senders; ++i) {
    const bool rx = i < receivers;
    // As the bench's other children: killed with the handle, and with us (the parent ends the run).
    process& kid = kids.emplace_back(process_options{.name = rx ? "modes receiver" : "modes sender", .daemon = true,
                                                     .setup = {.parent_death_signal = SIGKILL}},
                                     [&, rx] { return rx ? receiver_body(c.get(), uri, size) : sender_body(c.get(), uri, size); });
    kid.start();
  }
  const auto ready_by = clock::now() + std::chrono::seconds(10);
  while (c->ready.load() < static_cast<int>(receivers + senders)) {
    bool dead = false;
    for (auto& k : kids) dead = dead || !k.is_alive();
    if (dead || clock::now() > ready_by) {
      c->failed.store(1);
      throw_error(errc::closed, "bench", uri, "a child ended or did not open the channel within 10 s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const std::int64_t start = now_ns();
  c->stop_ns.store(start + static_cast<std::int64_t>(seconds * 1e9));
  c->start_ns.store(start, std::memory_order_release);
  std::string failure;
  for (auto& k : kids) {
    auto st = k.join_for(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(seconds + 30)));
    if (!st) {
      k.kill(SIGKILL);
      st = k.join();
      failure = "a child did not finish within the run + 30 s";
    } else if (!st->success() && failure.empty()) {
      failure = "a child " + st->to_string();
    }
  }
  if (!failure.empty()) throw_error(errc::corrupt, "bench", uri, failure);
  mode_figures f;
  f.messages = c->received.load();
  f.seconds = static_cast<double>(c->last_end_ns.load() - start) / 1e9;
  return f;
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
    double spsc = 0;
    for (const spec& s : {spec{"spsc 1→1", kind::spsc, 1, 1}, spec{"mpmc 1→1", kind::mpmc, 1, 1},
                          spec{"mpmc 2→2", kind::mpmc, 2, 2}, spec{"broadcast 1→1", kind::broadcast, 1, 1},
                          spec{"broadcast 1→4", kind::broadcast, 1, 4}}) {
      const std::string name = prefix + "." + std::to_string(++n);
      const std::string cells = "&slots=" + std::to_string(slots) + "&max_message=" + std::to_string(size);
      const std::string uri = s.k == kind::mpmc        ? "shm:" + name + "?mode=mpmc" + cells
                              : s.k == kind::broadcast ? "shm:" + name + "?mode=broadcast&policy=block" + cells
                                                       : "shm:" + name + "?capacity=" + std::to_string(ring_capacity(size)) +
                                                             "&max_message=" + std::to_string(size);
      mode_row r{s.label, size, {}, 0, {}, s.receivers, s.k == kind::broadcast};
      try {
        r.figures = measure_mode(uri, s.senders, s.receivers, size, seconds);
        if (s.k == kind::spsc) spsc = r.figures.rate();
        const double rate = r.broadcast ? r.per_receiver_rate() : r.figures.rate();
        r.vs_spsc = spsc > 0 ? rate / spsc : 0;
      } catch (const std::exception& e) {
        r.error = e.what();
      }
      try {
        if (s.k == kind::mpmc) shm_mpmc::remove(name);
        else if (s.k == kind::broadcast) shm_broadcast::remove(name);
        else shm_ring::remove(name);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "ipc-bench: cleanup: %s: %s\n", name.c_str(), e.what());
      }
      rows.push_back(std::move(r));
    }
  }
  return rows;
}

std::string mode_table(const std::vector<mode_row>& rows, double seconds) {
  std::string s;
  char line[512];
  std::snprintf(line, sizeof line,
                "\nshm modes: N senders → M receivers, each its own process, one object; total messages "
                "received per second over %.2f s of sending (until the last receiver drained); broadcast "
                "(policy=block): every receiver gets every message, ×spsc compares the rate per receiver\n",
                seconds);
  s += line;
  std::snprintf(line, sizeof line, "%-14s %8s %14s %14s %10s %8s\n", "mode", "size", "total msg/s", "msg/s per rx",
                "MB/s", "×spsc");
  s += line;
  for (const auto& r : rows) {
    const std::string size = r.size >= 1024 ? std::to_string(r.size / 1024) + "K" : std::to_string(r.size);
    if (!r.error.empty()) {
      std::snprintf(line, sizeof line, "%-16s %8s  failed: %.100s\n", r.label.c_str(), size.c_str(), r.error.c_str());
    } else {
      const double rate = r.figures.rate();
      std::snprintf(line, sizeof line, "%-16s %8s %14.0f %14.0f %10.1f %8.2f\n", r.label.c_str(), size.c_str(), rate,
                    r.per_receiver_rate(), rate * static_cast<double>(r.size) / 1e6, r.vs_spsc);
    }
    s += line;
  }
  return s;
}

}  // namespace ipc::bench
