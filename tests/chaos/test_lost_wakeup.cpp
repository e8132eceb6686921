// Lost wake-ups across processes: N forked processes contend for one primitive while this driver
// SIGKILLs random ones — holders, waiters caught right after a release or a notify (the ones the
// kernel has just woken), and any member at a random moment — for >= 1,000 kills per primitive.
// After every three kills each member left must complete 10 more operations (a stranded waiter
// never does) before the killed ones are replaced, at the end every member must
// finish, the protected state must be consistent, and a torn state must come with an owner death
// reported. Every wait here has a deadline; a hang fails the test and prints the stuck processes'
// kernel stacks and gdb backtraces.
//
// Seeded: IPC_STRESS_SEED=N replays a run (the seed is printed); IPC_STRESS_KILLS=N changes the
// number of kills per primitive (default 1000).
#include <ipc/error.hpp>
#include <ipc/process.hpp>
#include <ipc/sem_buffer.hpp>
#include <ipc/shared_value.hpp>
#include <ipc/sync.hpp>

#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <fstream>
#include <functional>
#include <mutex>
#include <new>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

using clk = std::chrono::steady_clock;

std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(clk::now().time_since_epoch()).count());
}

constexpr int members = 6;          // contenders
constexpr int kills_per_round = 3;          // kills between two progress checks
constexpr std::uint64_t progress_ops = 10;  // each older member's operations after a round's kills

// Work inside a critical section (well under a microsecond), between the two halves of an update.
constexpr unsigned critical_steps = 200;

// Exit codes of a member (anything but 0 fails the test).
constexpr int torn_without_owner_death = 10;
constexpr int state_out_of_range = 11;

// What a member publishes about itself for the driver.
struct member_slot {
  std::atomic<int> phase;                    // 0 outside, 1 waiting, 2 holding / acting
  std::atomic<std::uint64_t> ops;            // operations completed
  std::atomic<std::uint64_t> max_wait_ns;    // longest completed wait
  std::atomic<std::uint64_t> wait_start_ns;  // when the current wait began, 0 when not waiting
};

// Everything the members of one round share (an anonymous MAP_SHARED mapping, reset each round).
struct arena {
  ipc::robust_mutex m{0};
  ipc::robust_condition not_empty;
  ipc::robust_condition not_full;
  std::atomic<int> stop{0};
  std::atomic<std::uint64_t> releases{0};  // bumped just after an unlock / notify that may have woken someone
  // Under m: a == b except in the middle of an update; items + consumed == produced.
  std::uint64_t a = 0;
  std::uint64_t b = 0;
  std::uint64_t items = 0;
  std::uint64_t produced = 0;
  std::uint64_t consumed = 0;
  std::atomic<std::uint64_t> torn_seen{0};  // torn states found (each with an owner death reported)
  member_slot slot[members];
};

class shared_arena {
 public:
  shared_arena() {
    void* p = ::mmap(nullptr, sizeof(arena), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::system_error(errno, std::system_category(), "mmap(arena)");
    mem_ = p;
  }
  ~shared_arena() {
    if (a_ != nullptr) a_->~arena();
    ::munmap(mem_, sizeof(arena));
  }
  shared_arena(const shared_arena&) = delete;
  shared_arena& operator=(const shared_arena&) = delete;
  arena& fresh() {
    if (a_ != nullptr) a_->~arena();
    a_ = new (mem_) arena();
    return *a_;
  }

 private:
  void* mem_ = nullptr;
  arena* a_ = nullptr;
};

void busy(unsigned steps) {
  volatile unsigned sink = 0;
  for (unsigned k = 0; k < steps; ++k) sink = sink + k;
}

// Between two operations: a little work, no sleep. Members that never sleep voluntarily keep the
// lock contended and the woken waiters queued behind runnable processes, which widens the window
// between a wake-up and the acquisition that the driver aims its kills at (with short sleeps here
// the members rarely queue, and the old pthread_mutex_lock hang is no longer found).
void pause_outside(const member_slot&) { busy(100); }

// A member's bookkeeping around one blocking wait.
struct timed_wait {
  member_slot& s;
  std::uint64_t start;
  explicit timed_wait(member_slot& slot) : s(slot), start(now_ns()) {
    s.wait_start_ns.store(start, std::memory_order_relaxed);
    s.phase.store(1, std::memory_order_seq_cst);
  }
  void done() {
    const std::uint64_t took = now_ns() - start;
    if (took > s.max_wait_ns.load(std::memory_order_relaxed)) s.max_wait_ns.store(took, std::memory_order_relaxed);
    s.wait_start_ns.store(0, std::memory_order_relaxed);
    s.phase.store(2, std::memory_order_seq_cst);
  }
};

// ---- the members ---------------------------------------------------------------------------------

// robust_mutex: a two-field update (a, then b) under the lock; a torn pair is legal only when the
// lock reported its previous owner dead.
int mutex_member(arena& A, int i) {
  member_slot& s = A.slot[i];
  while (A.stop.load(std::memory_order_relaxed) == 0) {
    timed_wait w(s);
    ipc::lock_result r = A.m.lock();
    w.done();
    if (A.a != A.b) {
      if (!r.owner_died) return torn_without_owner_death;
      A.torn_seen.fetch_add(1, std::memory_order_relaxed);
      A.b = A.a;  // repair: finish the dead holder's update
    }
    ++A.a;
    busy(critical_steps);
    ++A.b;
    s.ops.fetch_add(1, std::memory_order_relaxed);
    A.m.unlock();
    A.releases.fetch_add(1, std::memory_order_seq_cst);  // after the unlock's wake-up
    s.phase.store(0, std::memory_order_relaxed);
    pause_outside(s);
  }
  return 0;
}

// shared_value: the scenario, a two-field struct updated through update().
struct pair2 {
  std::uint64_t a;
  std::uint64_t b;
};

int shared_value_member(arena& A, int i, const std::string& name) {
  ipc::shared_value<pair2> v(name, ipc::open_mode::open_only);
  member_slot& s = A.slot[i];
  while (A.stop.load(std::memory_order_relaxed) == 0) {
    timed_wait w(s);
    const int rc = v.update([&](pair2& p) {
      w.done();
      if (p.a != p.b) {
        if (!v.get_lock().previous_owner_died()) return torn_without_owner_death;
        A.torn_seen.fetch_add(1, std::memory_order_relaxed);
        p.b = p.a;
      }
      ++p.a;
      busy(critical_steps);
      ++p.b;
      s.ops.fetch_add(1, std::memory_order_relaxed);
      return 0;
    });
    if (rc != 0) return rc;
    A.releases.fetch_add(1, std::memory_order_seq_cst);  // after the unlock's wake-up
    s.phase.store(0, std::memory_order_relaxed);
    pause_outside(s);
  }
  return 0;
}

// Repairs the queue after an owner death: the dead holder may have changed the counts without
// finishing, and may have died before its notify, so wake everyone to re-check.
void repair_queue(arena& A) {
  if (A.items > 1 || A.items + A.consumed != A.produced) A.consumed = A.produced - std::min<std::uint64_t>(A.items, 1);
  if (A.items > 1) A.items = 1;
  A.not_empty.notify_all();
  A.not_full.notify_all();
}

// robust_condition: a one-slot queue. Members 0 and 1 produce (wait for not_full, then notify_one
// not_empty), the others consume (wait for not_empty, then notify_one not_full): one item in
// flight, so a single lost notify stops every member.
int condition_member(arena& A, int i) {
  member_slot& s = A.slot[i];
  const bool producer = i < 2;
  ipc::robust_condition& mine = producer ? A.not_full : A.not_empty;
  ipc::robust_condition& theirs = producer ? A.not_empty : A.not_full;
  for (;;) {
    std::unique_lock lk(A.m);
    if (A.m.previous_owner_died()) repair_queue(A);
    timed_wait w(s);
    // The contract: whoever sees owner_died (after any relock, so inside the predicate) repairs
    // and notifies every condition, since the dead holder may have died before its notify.
    mine.wait(lk, [&] {
      if (A.m.previous_owner_died()) repair_queue(A);
      return A.stop.load(std::memory_order_relaxed) != 0 || (producer ? A.items == 0 : A.items > 0);
    });
    w.done();
    if (A.stop.load(std::memory_order_relaxed) != 0) return 0;
    if (A.items > 1 || A.items + A.consumed != A.produced) return state_out_of_range;
    if (producer) {
      ++A.items;
      ++A.produced;
    } else {
      --A.items;
      ++A.consumed;
    }
    s.ops.fetch_add(1, std::memory_order_relaxed);
    theirs.notify_one();
    // After the wake-up, still holding the mutex: the woken waiter cannot have returned yet.
    A.releases.fetch_add(1, std::memory_order_seq_cst);
    lk.unlock();
    s.phase.store(0, std::memory_order_relaxed);
  }
}

// sem channel: members 0-2 send, 3-5 receive, over a 4-slot sem_buffer. Each message carries its
// sender, a sequence number and their check sum; a receiver that finds a damaged one fails.
struct sem_message {
  std::uint64_t sender;
  std::uint64_t seq;
  std::uint64_t check;
};

int sem_member(arena& A, int i, ipc::sem_buffer& tx, ipc::sem_buffer& rx) {
  member_slot& s = A.slot[i];
  if (i < members / 2) {
    for (std::uint64_t seq = 0; A.stop.load(std::memory_order_relaxed) == 0; ++seq) {
      const sem_message m{static_cast<std::uint64_t>(i), seq, (static_cast<std::uint64_t>(i) * 0x9e3779b97f4a7c15ULL) ^ seq};
      timed_wait w(s);
      tx.send(std::as_bytes(std::span(&m, 1)));
      w.done();
      s.ops.fetch_add(1, std::memory_order_relaxed);
      A.releases.fetch_add(1, std::memory_order_seq_cst);
      s.phase.store(0, std::memory_order_relaxed);
    }
    return 0;
  }
  std::vector<std::byte> buf;
  for (;;) {
    timed_wait w(s);
    try {
      rx.receive(buf);
    } catch (const std::system_error& e) {
      if (e.code() == ipc::errc::closed) return 0;
      throw;
    }
    w.done();
    sem_message m{};
    if (buf.size() != sizeof m) return state_out_of_range;
    std::memcpy(&m, buf.data(), sizeof m);
    if (m.sender >= members / 2 || m.check != ((m.sender * 0x9e3779b97f4a7c15ULL) ^ m.seq)) return state_out_of_range;
    s.ops.fetch_add(1, std::memory_order_relaxed);
    A.releases.fetch_add(1, std::memory_order_seq_cst);
    s.phase.store(0, std::memory_order_relaxed);
  }
}

// ---- the driver ----------------------------------------------------------------------------------

// Prints what every stuck process is doing: the kernel stack and gdb's backtrace.
std::string stacks_of(const std::vector<pid_t>& pids) {
  std::ostringstream os;
  for (pid_t p : pids) {
    os << "---- pid " << p << " /proc/" << p << "/stack:\n";
    std::ifstream k("/proc/" + std::to_string(p) + "/stack");
    os << k.rdbuf() << "\n";
    std::ifstream w("/proc/" + std::to_string(p) + "/wchan");
    os << "wchan: " << w.rdbuf() << "\n";
  }
  std::fputs(os.str().c_str(), stdout);
  std::fflush(stdout);
  for (pid_t p : pids) {
    std::printf("---- pid %d gdb backtrace:\n", p);
    std::fflush(stdout);
    try {
      auto gdb = ipc::process::exec({"gdb", "-p", std::to_string(p), "-batch", "-nx", "-ex", "thread apply all bt"});
      if (!gdb.join_for(60s)) gdb.kill(SIGKILL);
    } catch (const std::exception& e) {
      std::printf("(gdb: %s)\n", e.what());
    }
  }
  return os.str();
}

struct figures {
  std::uint64_t seed = 0;
  int rounds = 0;
  int kills = 0;
  int holder_kills = 0;
  int woken_kills = 0;
  int random_kills = 0;
  int survivors = 0;
  std::uint64_t max_wait_ns = 0;  // longest completed wait of a survivor
  std::uint64_t torn_seen = 0;
  std::uint64_t owner_deaths = 0;
  double seconds = 0;
};

std::uint64_t seed_from_env() {
  if (const char* s = std::getenv("IPC_STRESS_SEED")) return std::strtoull(s, nullptr, 10);
  return static_cast<std::uint64_t>(std::random_device{}()) ^ now_ns();
}

int kills_from_env() {
  if (const char* s = std::getenv("IPC_STRESS_KILLS")) return std::max(1, std::atoi(s));
  return 1000;
}

class stress_run {
 public:
  using body_fn = std::function<int(arena&, int)>;
  using setup_fn = std::function<void(arena&)>;
  using check_fn = std::function<std::string(arena&)>;  // "" when the final state is consistent

  stress_run(std::string primitive, body_fn body) : primitive_(std::move(primitive)), body_(std::move(body)) {
    f_.seed = seed_from_env();
    rng_.seed(f_.seed);
    std::printf("[lost_wakeup] %s: seed %llu (IPC_STRESS_SEED=%llu replays it)\n", primitive_.c_str(),
                static_cast<unsigned long long>(f_.seed), static_cast<unsigned long long>(f_.seed));
    std::fflush(stdout);
  }

  setup_fn before_start = [](arena&) {};
  // Members of one role (producers, consumers) are never all killed at once.
  std::function<int(int)> role_of = [](int) { return 0; };
  // Called after the stop flag is set, before member i is joined.
  std::function<void(int)> before_join = [](int) {};
  std::function<std::uint64_t(arena&)> owner_deaths = [](arena& A) { return A.m.owner_deaths(); };
  check_fn final_check;

  // Kills members until `kills` were killed, checking after every kills_per_round that the members
  // left still make progress before replacing the killed ones; then stops and joins them all.
  // Returns "" or what went wrong.
  std::string run(int kills) {
    const auto t0 = clk::now();
    arena& A = mem_.fresh();
    before_start(A);
    procs_.clear();
    for (int i = 0; i < members; ++i) spawn(A, i);
    if (!until(10s, [&] {
          for (int i = 0; i < members; ++i) {
            if (A.slot[i].ops.load() == 0 && A.slot[i].phase.load() == 0) return false;
          }
          return true;
        })) {
      return hang(A, "members never started");
    }
    while (f_.kills < kills) {
      if (std::string err = round(A); !err.empty()) return err;
    }
    if (std::string err = finish(A); !err.empty()) return err;
    f_.seconds = std::chrono::duration<double>(clk::now() - t0).count();
    std::printf("[lost_wakeup] %s: %d kills (%d holders, %d just woken, %d random) in %d rounds, every "
                "survivor went on and the last %d finished; longest completed wait %.1f ms; %llu torn states "
                "repaired, %llu owner deaths reported; %.1f s\n",
                primitive_.c_str(), f_.kills, f_.holder_kills, f_.woken_kills, f_.random_kills, f_.rounds,
                f_.survivors, static_cast<double>(f_.max_wait_ns) / 1e6,
                static_cast<unsigned long long>(f_.torn_seen), static_cast<unsigned long long>(f_.owner_deaths),
                f_.seconds);
    std::fflush(stdout);
    return {};
  }
  [[nodiscard]] const figures& result() const { return f_; }

 private:
  void spawn(arena& A, int i) {
    member_slot& s = A.slot[i];
    s.phase.store(0);
    s.ops.store(0);
    s.max_wait_ns.store(0);
    s.wait_start_ns.store(0);
    if (static_cast<int>(procs_.size()) <= i) procs_.resize(static_cast<std::size_t>(i) + 1);
    procs_[static_cast<std::size_t>(i)] = ipc::process::fork([this, &A, i] { return body_(A, i); });
  }

  // Notes the longest completed wait of member i (before its slot is reused).
  void harvest(arena& A, int i) { f_.max_wait_ns = std::max(f_.max_wait_ns, A.slot[i].max_wait_ns.load()); }

  // kills_per_round kills; then every member left must complete progress_ops more operations, and
  // only then are the killed ones replaced (a fresh member could take up a lost notify or a free
  // lock and hide the stranded ones).
  std::string round(arena& A) {
    ++f_.rounds;
    std::vector<bool> dead(members, false);
    for (int k = 0; k < kills_per_round; ++k) {
      int victim = -1;
      switch (rng_() % 3) {
        case 0:  // a holder: its death must be reported to the next owner
          if (until(20ms, [&] { return (victim = pick(A, dead, 2)) >= 0; })) ++f_.holder_kills;
          break;
        case 1: {  // one just woken: right after a release, kill a process that was waiting
          const std::uint64_t r = A.releases.load();
          if (until(20ms, [&] { return A.releases.load() != r; })) {
            victim = pick(A, dead, 1);
            if (victim >= 0) ++f_.woken_kills;
          }
          break;
        }
        default:
          break;
      }
      if (victim < 0) {  // any member, at a random moment
        std::this_thread::sleep_for(std::chrono::microseconds(rng_() % 500));
        victim = pick(A, dead, -1);
        ++f_.random_kills;
      }
      auto& p = procs_[static_cast<std::size_t>(victim)];
      p.kill(SIGKILL);
      ++f_.kills;
      auto st = p.join_for(10s);
      if (!st) return hang(A, "a SIGKILLed member did not die");
      if (st->signal != SIGKILL) return "member " + std::to_string(victim) + " " + st->to_string() + " before it was killed";
      harvest(A, victim);
      dead[static_cast<std::size_t>(victim)] = true;
    }
    // The members that lived through the kills must go on: each completes progress_ops more.
    std::vector<std::uint64_t> base(members);
    for (int i = 0; i < members; ++i) base[static_cast<std::size_t>(i)] = A.slot[i].ops.load();
    if (!until(20s, [&] {
          for (int i = 0; i < members; ++i) {
            if (!dead[static_cast<std::size_t>(i)] && A.slot[i].ops.load() < base[static_cast<std::size_t>(i)] + progress_ops) {
              return false;
            }
          }
          return true;
        })) {
      return hang(A, "members stopped making progress after the kills");
    }
    for (int i = 0; i < members; ++i) {
      if (dead[static_cast<std::size_t>(i)]) {
        spawn(A, i);
      } else if (auto st = procs_[static_cast<std::size_t>(i)].try_join()) {
        return "member " + std::to_string(i) + " " + st->to_string() + " while the others went on";
      }
    }
    return {};
  }

  // Stops the members and joins every one; checks the final state.
  std::string finish(arena& A) {
    A.stop.store(1);
    {
      std::unique_lock lk(A.m, std::defer_lock);
      if (!lk.try_lock_for(10s)) return hang(A, "the driver could not take the lock");
      A.not_empty.notify_all();
      A.not_full.notify_all();
    }
    for (int i = 0; i < members; ++i) {
      before_join(i);
      auto st = procs_[static_cast<std::size_t>(i)].join_for(10s);
      if (!st) return hang(A, "a survivor did not finish");
      if (st->code != 0) return "survivor " + std::to_string(i) + " " + st->to_string();
      ++f_.survivors;
      harvest(A, i);
    }
    f_.torn_seen = A.torn_seen.load();
    f_.owner_deaths = owner_deaths(A);
    if (f_.torn_seen > f_.owner_deaths) return "more torn states than owner deaths reported";
    if (final_check) return final_check(A);
    return {};
  }

  // A random live member in `phase` (-1: any) that is not the last of its role; -1 when none.
  int pick(arena& A, const std::vector<bool>& dead, int phase) {
    std::vector<int> c;
    for (int i = 0; i < members; ++i) {
      if (dead[static_cast<std::size_t>(i)]) continue;
      int same_role = 0;
      for (int k = 0; k < members; ++k) {
        if (!dead[static_cast<std::size_t>(k)] && role_of(k) == role_of(i)) ++same_role;
      }
      if (same_role > 1 && (phase < 0 || A.slot[i].phase.load() == phase)) c.push_back(i);
    }
    if (c.empty()) return -1;
    return c[rng_() % c.size()];
  }

  template <typename Pred>
  static bool until(clk::duration limit, Pred ready) {
    const auto end = clk::now() + limit;
    for (unsigned n = 0;; ++n) {
      if (ready()) return true;
      if (clk::now() >= end) return false;
      if (n > 1000) std::this_thread::sleep_for(50us);
    }
  }

  std::string hang(arena& A, const char* what) {
    std::vector<pid_t> stuck;
    std::ostringstream os;
    os << primitive_ << " round " << f_.rounds << " (seed " << f_.seed << "): " << what << "; ";
    for (int i = 0; i < members; ++i) {
      auto& p = procs_[static_cast<std::size_t>(i)];
      if (!p.joinable() || !p.running()) continue;
      stuck.push_back(p.pid());
      const std::uint64_t ws = A.slot[i].wait_start_ns.load();
      os << "member " << i << " pid " << p.pid() << " phase " << A.slot[i].phase.load() << " ops "
         << A.slot[i].ops.load();
      if (ws != 0) os << " waiting for " << (now_ns() - ws) / 1000000 << " ms";
      os << "; ";
    }
    std::printf("[lost_wakeup] HANG: %s\n", os.str().c_str());
    stacks_of(stuck);
    return os.str();
  }

  std::string primitive_;
  body_fn body_;
  shared_arena mem_;
  std::vector<ipc::process> procs_;
  std::mt19937_64 rng_;
  figures f_;
};

}  // namespace

TEST_CASE("lost wake-ups: robust_mutex waiters survive killed holders and killed woken successors",
          "[lost_wakeup]") {
  stress_run run("robust_mutex", mutex_member);
  run.final_check = [](arena& A) -> std::string {
    std::unique_lock lk(A.m, std::defer_lock);
    if (!lk.try_lock_for(10s)) return "final check: lock not free";
    if (A.a != A.b && !A.m.previous_owner_died()) return "final check: torn pair without an owner death";
    return {};
  };
  const std::string err = run.run(kills_from_env());
  INFO(err);
  REQUIRE(err.empty());
  CHECK(run.result().holder_kills > 0);
  CHECK(run.result().woken_kills > 0);
  CHECK(run.result().owner_deaths > 0);
}

TEST_CASE("lost wake-ups: shared_value::update survives workers killed at random", "[lost_wakeup]") {
  const std::string name = ipc::test::unique_name("lostwake-sv");
  ipc::shared_value<pair2> v(name, ipc::open_mode::create_only, pair2{0, 0});
  stress_run run("shared_value", [&](arena& A, int i) { return shared_value_member(A, i, name); });
  run.owner_deaths = [&](arena&) { return std::uint64_t{v.get_lock().owner_deaths()}; };
  run.final_check = [&](arena&) -> std::string {
    std::unique_lock lk(v.get_lock(), std::defer_lock);
    if (!lk.try_lock_for(10s)) return "final check: lock not free";
    if (v.get()->a != v.get()->b && !v.get_lock().previous_owner_died()) return "final check: torn pair";
    return {};
  };
  const std::string err = run.run(kills_from_env());
  v.remove();
  INFO(err);
  REQUIRE(err.empty());
  CHECK(run.result().owner_deaths > 0);
}

TEST_CASE("lost wake-ups: robust_condition notify_one is not lost when its waiter is killed", "[lost_wakeup]") {
  stress_run run("robust_condition", condition_member);
  run.role_of = [](int i) { return i < 2 ? 0 : 1; };
  run.final_check = [](arena& A) -> std::string {
    std::unique_lock lk(A.m, std::defer_lock);
    if (!lk.try_lock_for(10s)) return "final check: lock not free";
    if (A.m.previous_owner_died()) repair_queue(A);
    if (A.items > 1 || A.items + A.consumed != A.produced) return "final check: queue counts inconsistent";
    return {};
  };
  const std::string err = run.run(kills_from_env());
  INFO(err);
  REQUIRE(err.empty());
  CHECK(run.result().woken_kills > 0);
}

TEST_CASE("lost wake-ups: sem channel senders and receivers survive peers killed mid-hand-off", "[lost_wakeup]") {
  const std::string name = ipc::test::unique_name("lostwake-sem");
  ipc::sem_buffer rx(name, ipc::role::receiver, ipc::open_mode::create_only, {.slots = 4, .slot_size = 64});
  std::unique_ptr<ipc::sem_buffer> tx;
  stress_run run("sem_buffer", [&](arena& A, int i) { return sem_member(A, i, *tx, rx); });
  run.role_of = [](int i) { return i < members / 2 ? 0 : 1; };
  run.before_start = [&](arena&) { tx = std::make_unique<ipc::sem_buffer>(name, ipc::role::sender, ipc::open_mode::open_only); };
  run.before_join = [&](int i) {
    if (i == members / 2) tx->close();  // the senders are done: receivers drain, then get errc::closed
  };
  run.owner_deaths = [](arena&) { return std::uint64_t{0}; };
  run.final_check = [&](arena&) -> std::string {
    // Nothing a killed member took stays taken: a new pair still hands a message over at once.
    ipc::sem_buffer s(name, ipc::role::sender, ipc::open_mode::open_only);
    std::vector<std::byte> buf;
    while (rx.try_receive(buf)) {
    }
    const sem_message m{0, 0, 0};
    if (!s.send_for(std::as_bytes(std::span(&m, 1)), 5s)) return "final check: a free slot never came";
    if (!rx.receive_for(buf, 5s)) return "final check: the message never arrived";
    return {};
  };
  const std::string err = run.run(kills_from_env());
  tx.reset();
  rx.remove();
  INFO(err);
  REQUIRE(err.empty());
  CHECK(run.result().woken_kills > 0);
}
