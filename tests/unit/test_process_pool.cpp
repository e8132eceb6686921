// process_pool: Python's Pool — any callable, serialisable values, map/starmap/imap, exceptions by
// type, worker death, re-queueing, initializer, max_tasks_per_child, shutdown.
#include <ipc/error.hpp>
#include <ipc/pipe_pair.hpp>
#include <ipc/process_pool.hpp>
#include <ipc/remote_error.hpp>

#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <variant>
#include <vector>

using namespace std::chrono_literals;
using Catch::Contains;

namespace {

using steady = std::chrono::steady_clock;

bool reaped(pid_t pid) {
  int st = 0;
  return ::waitpid(pid, &st, WNOHANG) < 0 && errno == ECHILD;
}

int square(int x) { return x * x; }
int add(int a, int b) { return a + b; }

// Steps of the Collatz sequence from n to 1: cheap, irregular, easy to get wrong.
int collatz_steps(int n) {
  long long v = n;
  int steps = 0;
  while (v > 1) {
    v = (v % 2 == 0) ? v / 2 : 3 * v + 1;
    ++steps;
  }
  return steps;
}

int throws_on_negative(int x) {
  if (x < 0) throw std::invalid_argument("negative input " + std::to_string(x));
  return x;
}

int kill_self_on_13(int x) {
  if (x == 13) ::raise(SIGKILL);
  return x + 1;
}

int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

int worker_pid() { return static_cast<int>(::getpid()); }

struct config_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct point {
  double x = 0;
  double y = 0;
  MSGPACK_DEFINE(x, y)
  [[nodiscard]] double length2() const { return x * x + y * y; }
  [[nodiscard]] point scaled(double k) const { return {x * k, y * k}; }
  friend bool operator==(const point&, const point&) = default;
};

// A function object with state that does not copy as bytes: it declares its fields.
struct prefixer {
  std::string prefix;
  MSGPACK_DEFINE(prefix)
  std::string operator()(const std::string& s) const { return prefix + s; }
};

int initialized_value = 0;  // set by the pool's initializer, in the workers only

}  // namespace

TEST_CASE("process_pool: map over 1000 ints with 2 workers equals the serial result", "[process_pool]") {
  std::vector<int> in(1000);
  std::iota(in.begin(), in.end(), -500);
  std::vector<int> serial;
  for (int x : in) serial.push_back(square(x));
  ipc::process_pool pool(2);
  CHECK(pool.workers() == 2);
  auto out = pool.map(square, std::span<const int>(in));
  CHECK(out == serial);
  for (pid_t w : pool.worker_pids()) CHECK(w != ::getpid());
}

TEST_CASE("process_pool: 10,000 tasks of one item each equal the serial computation", "[process_pool]") {
  std::vector<int> serial;
  for (int i = 1; i <= 10'000; ++i) serial.push_back(collatz_steps(i));
  ipc::process_pool pool(2);
  auto out = pool.map(collatz_steps, std::views::iota(1, 10'001), 1);
  CHECK(out == serial);
  // And as 10,000 separate apply_async futures.
  std::vector<std::future<int>> fs;
  for (int i = 1; i <= 10'000; ++i) fs.push_back(pool.apply_async(collatz_steps, i));
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < fs.size(); ++i) {
    if (fs[i].wait_for(60s) != std::future_status::ready || fs[i].get() != serial[i]) ++wrong;
  }
  CHECK(wrong == 0);
  CHECK(pool.workers_lost() == 0);
}

TEST_CASE("process_pool: map takes any range and any chunksize, and a lambda with captures", "[process_pool]") {
  ipc::process_pool pool(2);
  int k = 7;
  double scale = 0.5;
  auto f = [k, scale](int x) { return static_cast<double>(x * k) * scale; };
  for (std::size_t chunk : {0u, 1u, 3u, 100u}) {
    auto out = pool.map(f, std::views::iota(0, 10), chunk);
    std::vector<double> expected;
    for (int x = 0; x < 10; ++x) expected.push_back(f(x));
    CHECK(out == expected);
  }
  std::set<int> odd{1, 3, 5};
  CHECK(pool.map(square, odd) == std::vector<int>{1, 9, 25});
  CHECK(pool.map(square, std::vector<int>{}).empty());
}

TEST_CASE("process_pool: apply_async takes several arguments, strings, structs and function objects", "[process_pool]") {
  int base = 100;  // before the pool: the workers' fork-time copy has it
  ipc::process_pool pool(2);
  CHECK(pool.apply_async(add, 1, 2).get() == 3);
  CHECK(pool.apply([](const std::string& a, int n) {
          std::string s;
          for (int i = 0; i < n; ++i) s += a;
          return s;
        }, "ab", 3) == "ababab");
  CHECK(pool.apply(prefixer{"re:"}, std::string("port")) == "re:port");
  CHECK(pool.apply([](std::vector<std::string> v) {
          std::sort(v.begin(), v.end());
          return v;
        }, std::vector<std::string>{"c", "a", "b"}) == std::vector<std::string>{"a", "b", "c"});
  CHECK(pool.apply([](std::map<std::string, int> m) { return m.size(); }, std::map<std::string, int>{{"a", 1}, {"b", 2}}) == 2);
  CHECK(pool.apply([](std::optional<int> o) { return o.value_or(-1); }, std::optional<int>{}) == -1);
  CHECK(pool.apply([](std::variant<int, std::string> v) { return v.index(); }, std::variant<int, std::string>("x")) == 1);
  CHECK(pool.apply([](point p) { return p.length2(); }, point{3, 4}) == 25.0);
  // A member function: the object travels as the first argument.
  CHECK(pool.apply(&point::scaled, point{1, 2}, 3.0) == point{3, 6});
  CHECK(pool.apply(std::bind(add, std::placeholders::_1, 10), 5) == 15);
  CHECK(pool.apply([&base](int x) { return base + x; }, 1) == 101);  // base existed before the pool
  auto v = pool.apply_async([] {});
  REQUIRE(v.wait_for(10s) == std::future_status::ready);
  v.get();
  CHECK(pool.apply(worker_pid) != ::getpid());
}

// What reaches a worker how: sent (bytes or MessagePack), carried by a newer fork, or refused.
namespace travel_checks {
using with_string = decltype([s = std::string("x")](int) { return s; });
using with_int = decltype([k = 1](int x) { return x + k; });
using move_only = decltype([p = std::unique_ptr<int>()](int) { return 0; });
struct pinned {  // neither copyable nor movable: it cannot be carried either
  pinned() = default;
  pinned(pinned&&) = delete;
  int operator()(int x) const { return x; }
};
static_assert(ipc::detail::travels<with_int> && !ipc::detail::carried<with_int>);
static_assert(ipc::detail::travels<prefixer>);
static_assert(ipc::detail::carried<with_string> && ipc::detail::carried<move_only>);
static_assert(ipc::detail::carried<std::function<int(int)>>);
static_assert(!ipc::detail::travels<pinned> && !ipc::detail::carried<pinned>);
static_assert(!ipc::detail::plain_value<int*> && ipc::detail::plain_value<std::string>);
}  // namespace travel_checks

TEST_CASE("process_pool: apply_async runs a lambda capturing a std::string and a std::vector made after the pool started",
          "[process_pool]") {
  ipc::process_pool pool(2);
  auto first_workers = pool.worker_pids();
  std::string greeting = "hello";
  std::vector<int> weights{1, 2, 3};
  auto f = pool.apply_async([greeting, weights](const std::string& who, int k) {
    int sum = 0;
    for (int w : weights) sum += w * k;
    return greeting + ", " + who + ": " + std::to_string(sum) + " from " + std::to_string(::getpid());
  }, "pool", 10);
  REQUIRE(f.wait_for(20s) == std::future_status::ready);
  std::string out = f.get();
  CHECK_THAT(out, Catch::StartsWith("hello, pool: 60 from "));
  // Carried by a worker forked after the submission: not one of the pool's first workers.
  int ran_on = std::stoi(out.substr(out.rfind(' ') + 1));
  CHECK(std::find(first_workers.begin(), first_workers.end(), ran_on) == first_workers.end());
  CHECK(pool.workers() >= 2);
  CHECK(pool.workers_lost() == 0);
  // Each submission carries its own copy: changing the string later changes only later tasks.
  auto before = pool.apply_async([greeting] { return greeting; });
  greeting = "changed";
  auto after = pool.apply_async([greeting] { return greeting; });
  CHECK(before.get() == "hello");
  CHECK(after.get() == "changed");
  // A move-only capture and a std::function are carried too.
  CHECK(pool.apply([p = std::make_unique<int>(41)](int x) { return *p + x; }, 1) == 42);
  CHECK(pool.apply(std::function<int(int)>([greeting](int x) { return x + static_cast<int>(greeting.size()); }), 1) == 8);
}

TEST_CASE("process_pool: map, imap and starmap take a lambda capturing a std::string", "[process_pool]") {
  ipc::process_pool pool(2);
  const std::string prefix = "item-";
  std::vector<std::string> names{"a", "b"};
  auto label = [prefix, names](int i) { return prefix + names[static_cast<std::size_t>(i) % names.size()] + std::to_string(i); };
  std::vector<std::string> serial;
  for (int i = 0; i < 50; ++i) serial.push_back(label(i));
  for (std::size_t chunk : {0u, 1u, 7u}) CHECK(pool.map(label, std::views::iota(0, 50), chunk) == serial);
  std::vector<std::string> streamed;
  for (std::string& s : pool.imap(label, std::views::iota(0, 50))) streamed.push_back(std::move(s));
  CHECK(streamed == serial);
  CHECK(pool.starmap([prefix](int a, int b) { return prefix + std::to_string(a + b); },
                     std::vector<std::pair<int, int>>{{1, 2}, {3, 4}}) == std::vector<std::string>{"item-3", "item-7"});
  // Interleaved with tasks that are sent: each kind gets its result.
  auto sent = pool.apply_async(square, 9);
  auto carried = pool.apply_async([prefix] { return prefix; });
  CHECK(sent.get() == 81);
  CHECK(carried.get() == "item-");
  CHECK(pool.workers_lost() == 0);
  // Closing right after a carried submission still runs it: a worker is forked for it, then all stop.
  auto last = pool.apply_async([prefix] { return prefix + "last"; });
  pool.close();
  REQUIRE(pool.join_for(20s));
  REQUIRE(last.wait_for(0s) == std::future_status::ready);
  CHECK(last.get() == "item-last");
  CHECK(pool.workers() == 0);
}

TEST_CASE("process_pool: 10,000 items of a capturing lambda equal the serial computation", "[process_pool]") {
  const std::vector<int> offsets{3, 1, 4, 1, 5};
  auto steps = [offsets](int n) { return collatz_steps(n) + offsets[static_cast<std::size_t>(n) % offsets.size()]; };
  std::vector<int> serial;
  for (int i = 1; i <= 10'000; ++i) serial.push_back(steps(i));
  ipc::process_pool pool(2);
  CHECK(pool.map(steps, std::views::iota(1, 10'001)) == serial);
  // And 500 separate carried submissions: new workers are forked as needed, never one per task
  // while tasks queue (one fork carries every copy made before it).
  std::vector<std::future<std::pair<int, int>>> fs;
  for (int i = 1; i <= 500; ++i) {
    fs.push_back(pool.apply_async([offsets, i] {
      return std::pair(collatz_steps(i) + offsets[static_cast<std::size_t>(i) % offsets.size()], worker_pid());
    }));
  }
  std::size_t wrong = 0;
  std::set<int> ran_on;
  for (std::size_t i = 0; i < fs.size(); ++i) {
    if (fs[i].wait_for(60s) != std::future_status::ready) {
      ++wrong;
      continue;
    }
    auto [value, pid] = fs[i].get();
    if (value != serial[i]) ++wrong;
    ran_on.insert(pid);
  }
  CHECK(wrong == 0);
  INFO("workers that ran the 500 carried tasks: " << ran_on.size());
  CHECK(ran_on.size() < 250);
  CHECK(pool.workers_lost() == 0);
}

TEST_CASE("process_pool: starmap unpacks pairs and tuples", "[process_pool]") {
  ipc::process_pool pool(2);
  std::vector<std::pair<int, int>> pairs{{1, 2}, {3, 4}, {5, 6}};
  CHECK(pool.starmap(add, pairs) == std::vector<int>{3, 7, 11});
  std::vector<std::tuple<std::string, int>> jobs{{"x", 2}, {"yz", 1}};
  auto rep = [](const std::string& s, int n) {
    std::string out;
    for (int i = 0; i < n; ++i) out += s;
    return out;
  };
  CHECK(pool.starmap(rep, jobs, 1) == std::vector<std::string>{"xx", "yz"});
}

TEST_CASE("process_pool: apply_async from several threads at once gets every result right", "[process_pool]") {
  ipc::process_pool pool(2);
  std::vector<std::thread> threads;
  std::vector<int> bad(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&pool, &bad, t] {
      std::vector<std::future<int>> fs;
      for (int i = 0; i < 100; ++i) fs.push_back(pool.apply_async(square, t * 1000 + i));
      for (int i = 0; i < 100; ++i) {
        if (fs[static_cast<std::size_t>(i)].wait_for(20s) != std::future_status::ready ||
            fs[static_cast<std::size_t>(i)].get() != square(t * 1000 + i)) {
          ++bad[static_cast<std::size_t>(t)];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(bad == std::vector<int>(4, 0));
}

TEST_CASE("process_pool: imap yields in input order while imap_unordered yields in completion order",
          "[process_pool]") {
  ipc::process_pool pool(2);
  // The first item is the slowest: in completion order it comes last.
  std::vector<int> delays{1000, 10, 20, 30};
  std::vector<int> ordered;
  for (int v : pool.imap(sleep_ms, delays)) ordered.push_back(v);
  CHECK(ordered == delays);
  auto unordered = pool.imap_unordered(sleep_ms, delays);
  REQUIRE(unordered.wait_next_for(20s));
  std::vector<int> arrived;
  while (auto v = unordered.next()) arrived.push_back(*v);
  CHECK(arrived.size() == 4);
  CHECK(arrived.front() != 1000);
  CHECK(arrived.back() == 1000);
  CHECK(std::multiset<int>(arrived.begin(), arrived.end()) == std::multiset<int>(delays.begin(), delays.end()));
}

TEST_CASE("process_pool: imap streams: the first result is there before the last task ends", "[process_pool]") {
  ipc::process_pool pool(2);
  auto t0 = steady::now();
  auto results = pool.imap(sleep_ms, std::vector<int>{10, 10, 1500, 1500});
  REQUIRE(results.wait_next_for(20s));
  auto first = steady::now() - t0;
  CHECK(results.next() == 10);
  CHECK(first < 1200ms);
  CHECK(results.remaining() == 3);
}

TEST_CASE("process_pool: a task's standard exception comes back as the same type", "[process_pool]") {
  ipc::process_pool pool(1);
  auto f = pool.apply_async(throws_on_negative, -5);
  REQUIRE(f.wait_for(10s) == std::future_status::ready);
  CHECK_THROWS_AS(f.get(), std::invalid_argument);
  CHECK_THROWS_WITH(pool.apply(throws_on_negative, -6), "negative input -6");
  CHECK_THROWS_AS(pool.apply([] { return std::vector<int>{}.at(3); }), std::out_of_range);
  CHECK_THROWS_AS(pool.apply([] { throw std::overflow_error("big"); }), std::overflow_error);
  try {
    pool.apply([] { throw std::system_error(ENOENT, std::generic_category(), "open(/x)"); });
    FAIL("a system_error must come back");
  } catch (const std::system_error& e) {
    CHECK(e.code() == std::errc::no_such_file_or_directory);
    CHECK_THAT(e.what(), Contains("open(/x)"));
  }
  // The worker survives a throwing task; map re-throws the first failure in input order.
  CHECK(pool.apply(throws_on_negative, 8) == 8);
  CHECK(pool.workers_lost() == 0);
  CHECK_THROWS_WITH(pool.map(throws_on_negative, std::vector<int>{1, -2, 3, -4}), "negative input -2");
}

TEST_CASE("process_pool: any other exception comes back as remote_error with its type name", "[process_pool]") {
  ipc::process_pool pool(1);
  try {
    pool.apply([] { throw config_error("no such key"); });
    FAIL("a config_error must come back");
  } catch (const ipc::remote_error& e) {
    CHECK_THAT(e.type_name(), Contains("config_error"));
    CHECK(e.message() == "no such key");
  }
  try {
    pool.apply([] { throw 42; });
    FAIL("a thrown int must come back");
  } catch (const ipc::remote_error& e) {
    CHECK_THAT(e.type_name(), Contains("not derived from std::exception"));
  }
  CHECK_THROWS_AS(pool.apply([] { throw config_error("x"); }), std::runtime_error);  // remote_error is one
}

TEST_CASE("process_pool: a worker killed inside a task fails only that task and the pool goes on",
          "[process_pool]") {
  ipc::process_pool pool(2);
  auto before = pool.worker_pids();
  std::vector<std::future<int>> fs;
  for (int i = 0; i < 20; ++i) fs.push_back(pool.apply_async(kill_self_on_13, i));
  for (int i = 0; i < 20; ++i) {
    auto& f = fs[static_cast<std::size_t>(i)];
    REQUIRE(f.wait_for(20s) == std::future_status::ready);
    if (i != 13) {
      CHECK(f.get() == i + 1);
      continue;
    }
    try {
      f.get();
      FAIL("the task of a killed worker must not produce a value");
    } catch (const std::system_error& e) {
      CHECK(e.code() == ipc::errc::closed);
      CHECK_THAT(e.what(), Contains("SIGKILL") && Contains("worker pid") && Contains("while running task"));
    }
  }
  CHECK(pool.workers_lost() == 1);
  CHECK(pool.map(square, std::vector<int>{1, 2, 3}) == std::vector<int>{1, 4, 9});
  CHECK(pool.workers() == 2);
  CHECK(pool.worker_pids() != before);
}

TEST_CASE("process_pool: a task submitted to a just-killed idle worker runs on the replacement", "[process_pool]") {
  ipc::process_pool pool(1);
  int ran_elsewhere = 0;
  for (int round = 0; round < 20; ++round) {
    auto pids = pool.worker_pids();
    REQUIRE(pids.size() == 1);
    // Killed from outside while idle; the pool has not yet seen it die when the task is sent.
    REQUIRE(::kill(pids[0], SIGKILL) == 0);
    auto f = pool.apply_async(worker_pid);
    REQUIRE(f.wait_for(20s) == std::future_status::ready);
    int ran_on = f.get();  // throws if the task was failed instead of re-queued
    CHECK(ran_on != pids[0]);
    if (ran_on != pids[0]) ++ran_elsewhere;
    // Wait until the replacement is up before the next round.
    auto until = steady::now() + 10s;
    while ((pool.workers() != 1 || pool.worker_pids() == pids) && steady::now() < until) std::this_thread::sleep_for(1ms);
  }
  CHECK(ran_elsewhere == 20);
  CHECK(pool.workers_lost() == 20);
  INFO("re-queued after the worker died before starting them: " << pool.tasks_requeued());
  CHECK(pool.tasks_requeued() >= 1);  // the re-queue path ran (in practice: every round)
  CHECK(pool.tasks_requeued() <= 20);
}

TEST_CASE("process_pool: max_tasks_per_child replaces each worker after that many tasks", "[process_pool]") {
  ipc::pool_options o;
  o.workers = 1;
  o.max_tasks_per_child = 2;
  ipc::process_pool pool(o);
  std::vector<int> pids;
  for (int i = 0; i < 6; ++i) pids.push_back(pool.apply(worker_pid));  // one at a time
  CHECK(pids[0] == pids[1]);
  CHECK(pids[2] == pids[3]);
  CHECK(pids[4] == pids[5]);
  CHECK(std::set<int>(pids.begin(), pids.end()).size() == 3);
  CHECK(pool.workers_lost() == 0);
  pool.join();
  CHECK(pool.workers_retired() >= 2);
}

TEST_CASE("process_pool: the initializer runs in each worker before its tasks", "[process_pool]") {
  ipc::pool_options o;
  o.workers = 2;
  std::string greeting = "set by the initializer";  // captured by reference: the fork copies it
  o.initializer = [&greeting] { initialized_value = static_cast<int>(greeting.size()); };
  ipc::process_pool pool(o);
  auto out = pool.map([](int) { return initialized_value; }, std::views::iota(0, 8), 1);
  CHECK(out == std::vector<int>(8, static_cast<int>(greeting.size())));
  CHECK(initialized_value == 0);  // never ran here
}

TEST_CASE("process_pool: a failing initializer fails the tasks with its exception and closes the pool",
          "[process_pool]") {
  auto [go, wait_for_go] = ipc::pipe_pair<int>();
  ipc::pool_options o;
  o.workers = 1;
  // The initializer waits until the task has been submitted, then fails.
  o.initializer = [&wait_for_go = wait_for_go] {
    (void)wait_for_go.recv_for(20s);
    throw std::invalid_argument("bad configuration");
  };
  ipc::process_pool pool(o);
  auto f = pool.apply_async(square, 3);
  go.send(1);
  REQUIRE(f.wait_for(20s) == std::future_status::ready);
  CHECK_THROWS_AS(f.get(), std::invalid_argument);
  REQUIRE(pool.join_for(20s));
  CHECK(pool.workers() == 0);
  try {
    (void)pool.apply_async(square, 4);
    FAIL("apply_async after a failed initializer must throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::closed);
    CHECK_THAT(e.what(), Contains("initializer"));
  }
}

TEST_CASE("process_pool: close drains the queue, join reaps the workers, later submissions are refused",
          "[process_pool]") {
  ipc::process_pool pool(2);
  std::vector<std::future<int>> fs;
  for (int i = 0; i < 20; ++i) fs.push_back(pool.apply_async(sleep_ms, 5));
  auto pids = pool.worker_pids();
  pool.close();
  REQUIRE(pool.join_for(20s));
  for (auto& f : fs) {
    REQUIRE(f.wait_for(0s) == std::future_status::ready);
    CHECK(f.get() == 5);
  }
  CHECK(pool.workers() == 0);
  for (pid_t p : pids) CHECK(reaped(p));
  try {
    (void)pool.apply_async(square, 2);
    FAIL("apply_async after close must throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::closed);
  }
}

TEST_CASE("process_pool: the destructor with tasks pending does not hang", "[process_pool]") {
  std::vector<std::future<int>> fs;
  std::vector<pid_t> pids;
  auto t0 = steady::now();
  {
    ipc::process_pool pool(2, 200ms);
    for (int i = 0; i < 10; ++i) fs.push_back(pool.apply_async(sleep_ms, 3000));
    pids = pool.worker_pids();
  }
  auto took = steady::now() - t0;
  CHECK(took < 2500ms);  // the 3 s tasks were not waited for
  for (pid_t p : pids) CHECK(reaped(p));
  for (auto& f : fs) {
    REQUIRE(f.wait_for(0s) == std::future_status::ready);
    try {
      f.get();
      FAIL("a task cut short by the destructor must not produce a value");
    } catch (const std::system_error& e) {
      CHECK(e.code() == ipc::errc::closed);
    }
  }
}

TEST_CASE("process_pool: terminate kills the workers and fails queued tasks", "[process_pool]") {
  auto [started, started_rx] = ipc::pipe_pair<int>();  // made before the pool: the workers inherit it
  ipc::process_pool pool(1);
  auto running = pool.apply_async([&started = started] {
    started.send(1);
    std::this_thread::sleep_for(30s);
    return 0;
  });
  auto queued = pool.apply_async(sleep_ms, 1);
  REQUIRE(started_rx.recv_for(20s) == 1);
  pool.terminate();
  REQUIRE(queued.wait_for(10s) == std::future_status::ready);
  CHECK_THROWS_WITH(queued.get(), Contains("terminated"));
  REQUIRE(running.wait_for(10s) == std::future_status::ready);
  CHECK_THROWS_WITH(running.get(), Contains("SIGKILL") && Contains("while running task"));
  REQUIRE(pool.join_for(10s));
}

TEST_CASE("process_pool: arguments above max_message_size are refused before anything is queued", "[process_pool]") {
  ipc::process_pool pool(1);
  std::string huge(ipc::process_pool::max_message_size, 'x');
  try {
    (void)pool.apply_async([](const std::string& s) { return s.size(); }, huge);
    FAIL("a request above max_message_size must throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::message_too_large);
  }
  CHECK(pool.apply(square, 5) == 25);
  // A result too large to come back fails that task, not the worker.
  try {
    (void)pool.apply([](int n) { return std::string(static_cast<std::size_t>(n), 'y'); },
                     static_cast<int>(ipc::process_pool::max_message_size));
    FAIL("a result above max_message_size must throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::message_too_large);
  }
  CHECK(pool.apply(square, 6) == 36);
  CHECK(pool.workers_lost() == 0);
}

TEST_CASE("process_pool: zero workers is rejected", "[process_pool]") {
  REQUIRE_THROWS_WITH(ipc::process_pool(0), Contains("process_pool") && Contains("0 workers"));
}
