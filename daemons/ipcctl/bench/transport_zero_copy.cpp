#include "transport_zero_copy.hpp"

#include <ipc/error.hpp>
#include <ipc/process.hpp>
#include <ipc/shm_loan.hpp>
#include <ipc/shm_ring.hpp>

#include <signal.h>
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <new>
#include <span>
#include <thread>

namespace ipc::bench {
namespace {

using clock = std::chrono::steady_clock;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now().time_since_epoch()).count();
}

// Shared by the parent and its two children (an anonymous shared mapping made before the forks).
struct control {
  std::atomic<int> ready;
  std::atomic<int> failed;
  std::atomic<std::int64_t> start_ns;  // 0 until both children are ready; steady_clock is CLOCK_MONOTONIC
  std::atomic<std::int64_t> stop_ns;
  std::atomic<std::uint64_t> received;
  std::atomic<std::int64_t> end_ns;
};

struct config {
  std::string name;
  std::size_t size;
  bool zero_copy;
  bool touch_all;
};

// The ring: room for about 8 messages (at least the default 1 MiB), max_message = the size.
shm_ring_options ring_options(std::size_t size) {
  std::size_t cap = std::size_t{1} << 20;
  while (cap < 8 * size) cap *= 2;
  return {.capacity = cap, .max_message = size};
}

// Word i of message `seq`: differs between messages and within one.
std::uint64_t word(std::uint64_t seq, std::size_t i) { return (seq << 20) ^ i; }

void build(std::span<std::byte> m, std::uint64_t seq, bool all) {
  const std::size_t words = m.size() / 8;
  if (all) {
    for (std::size_t i = 0; i < words; ++i) {
      const std::uint64_t w = word(seq, i);
      std::memcpy(m.data() + i * 8, &w, 8);
    }
  } else {
    const std::uint64_t first = word(seq, 0), last = word(seq, words - 1);
    std::memcpy(m.data(), &first, 8);
    std::memcpy(m.data() + (words - 1) * 8, &last, 8);
  }
}

bool check(std::span<const std::byte> m, std::uint64_t seq, bool all) {
  const std::size_t words = m.size() / 8;
  auto at = [&](std::size_t i) {
    std::uint64_t w = 0;
    std::memcpy(&w, m.data() + i * 8, 8);
    return w;
  };
  if (!all) return at(0) == word(seq, 0) && at(words - 1) == word(seq, words - 1);
  std::uint64_t bad = 0;  // no early exit: every word is read, as a checksum would
  for (std::size_t i = 0; i < words; ++i) bad |= at(i) ^ word(seq, i);
  return bad == 0;
}

std::int64_t wait_for_start(control& c) {
  for (;;) {
    if (auto s = c.start_ns.load(std::memory_order_acquire); s != 0) return s;
    if (c.failed.load() != 0) return 0;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

int sender_body(control& c, const config& cfg) {
  shm_ring tx(cfg.name, role::sender, ring_options(cfg.size));
  std::vector<std::byte> msg(cfg.size);
  c.ready.fetch_add(1);
  if (wait_for_start(c) == 0) return 1;
  const std::int64_t stop = c.stop_ns.load();
  for (std::uint64_t seq = 0;; ++seq) {
    if (cfg.zero_copy) {
      shm_loan l = tx.loan(cfg.size);
      build(l.bytes(), seq, cfg.touch_all);
      l.commit();
    } else {
      build(msg, seq, cfg.touch_all);
      tx.send(msg);
    }
    if ((seq & 7U) == 0 && now_ns() >= stop) return 0;
  }
}

int receiver_body(control& c, const config& cfg) {
  shm_ring rx(cfg.name, role::receiver, ring_options(cfg.size));
  std::vector<std::byte> buf;
  c.ready.fetch_add(1);
  if (wait_for_start(c) == 0) return 1;
  std::uint64_t seq = 0;
  try {
    for (;; ++seq) {
      if (cfg.zero_copy) {
        shm_view v = rx.receive_view();
        if (v.size() != cfg.size || !check(v.bytes(), seq, cfg.touch_all)) return 2;
      } else {
        if (rx.receive(buf) != cfg.size || !check(buf, seq, cfg.touch_all)) return 2;
      }
    }
  } catch (const std::system_error& e) {
    if (e.code() != ipc::errc::closed) throw;
  }
  c.received.store(seq);
  c.end_ns.store(now_ns());
  return 0;
}

// One row: a receiver and a sender process on a fresh ring for `seconds`.
void measure(zero_copy_row& row, const config& cfg, double seconds) {
  void* p = ::mmap(nullptr, sizeof(control), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) ipc::throw_errno(errno, "mmap", "bench control block");
  struct unmap {
    void* p;
    ~unmap() { ::munmap(p, sizeof(control)); }
  } unmap_at_exit{p};
  control& c = *new (p) control{};
  std::vector<process> kids;
  for (const bool rx : {true, false}) {
    // As the bench's other children: killed with the handle, and with us.
    process& kid = kids.emplace_back(process_options{.name = rx ? "zero-copy receiver" : "zero-copy sender",
                                                     .daemon = true, .setup = {.parent_death_signal = SIGKILL}},
                                     [&, rx] { return rx ? receiver_body(c, cfg) : sender_body(c, cfg); });
    kid.start();
  }
  const auto ready_by = clock::now() + std::chrono::seconds(10);
  while (c.ready.load() < 2) {
    bool dead = false;
    for (auto& k : kids) dead = dead || !k.is_alive();
    if (dead || clock::now() > ready_by) {
      c.failed.store(1);
      throw_error(errc::closed, "bench", "shm:" + cfg.name, "a child ended or did not open the ring within 10 s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const std::int64_t start = now_ns();
  c.stop_ns.store(start + static_cast<std::int64_t>(seconds * 1e9));
  c.start_ns.store(start, std::memory_order_release);
  std::string failure;
  for (auto& k : kids) {
    auto st = k.join_for(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(seconds + 30)));
    if (!st) {
      k.kill(SIGKILL);
      st = k.join();
      failure = "a child did not finish within the run + 30 s";
    } else if (!st->success() && failure.empty()) {
      failure = "a child " + st->to_string() + (st->code == 2 ? " (a message failed its check)" : "");
    }
  }
  if (!failure.empty()) throw_error(errc::corrupt, "bench", "shm:" + cfg.name, failure);
  row.messages = c.received.load();
  row.seconds = static_cast<double>(c.end_ns.load() - start) / 1e9;
}

std::string size_text(std::size_t size) {
  return size >= (1U << 20) ? std::to_string(size >> 20) + "M" : std::to_string(size >> 10) + "K";
}

std::string table(const std::vector<zero_copy_row>& rows, double seconds) {
  std::string s;
  char line[512];
  std::snprintf(line, sizeof line,
                "\nshm zero-copy: 1 sender → 1 receiver process on one ring (8 messages of room), %.2f s each; "
                "copy = send/receive, zero-copy = loan+commit / receive_view+release; touched: the sequence "
                "words at both ends of each message, or all of it, written and checked\n",
                seconds);
  s += line;
  std::snprintf(line, sizeof line, "%-10s %6s %8s %12s %10s %8s\n", "path", "size", "touched", "msg/s", "MB/s", "×copy");
  s += line;
  for (const auto& r : rows) {
    const char* touched = r.touch_all ? "all" : "ends";
    if (!r.error.empty()) {
      std::snprintf(line, sizeof line, "%-10s %6s %8s  failed: %.200s\n", r.path.c_str(), size_text(r.size).c_str(),
                    touched, r.error.c_str());
    } else {
      std::snprintf(line, sizeof line, "%-10s %6s %8s %12.0f %10.1f %8.2f\n", r.path.c_str(), size_text(r.size).c_str(),
                    touched, r.rate(), r.rate() * static_cast<double>(r.size) / 1e6, r.vs_copy);
    }
    s += line;
  }
  return s;
}

}  // namespace

zero_copy_report measure_zero_copy(double seconds, const std::string& prefix) {
  zero_copy_report report;
  unsigned n = 0;
  for (const std::size_t size : {std::size_t{64} << 10, std::size_t{1} << 20}) {
    for (const bool all : {false, true}) {
      double copy_rate = 0;
      for (const bool zc : {false, true}) {
        const config cfg{prefix + "." + std::to_string(++n), size, zc, all};
        zero_copy_row row{zc ? "zero-copy" : "copy", size, all, 0, 0, 0, {}};
        try {
          measure(row, cfg, seconds);
          if (!zc) copy_rate = row.rate();
          row.vs_copy = copy_rate > 0 ? row.rate() / copy_rate : 0;
        } catch (const std::exception& e) {
          row.error = e.what();
          report.failed = true;
        }
        try {
          shm_ring::remove(cfg.name);
        } catch (const std::exception& e) {
          std::fprintf(stderr, "ipc-bench: cleanup: %s: %s\n", cfg.name.c_str(), e.what());
        }
        report.rows.push_back(std::move(row));
      }
    }
  }
  report.table = table(report.rows, seconds);
  return report;
}

}  // namespace ipc::bench
