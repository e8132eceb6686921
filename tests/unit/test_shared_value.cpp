#include <ipc/deadline.hpp>
#include <ipc/error.hpp>
#include <ipc/shared_memory.hpp>
#include <ipc/shared_value.hpp>

#include "detail/shared_array_header.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <signal.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

// Removes the named segment when a test ends, whatever happened.
ipc::test::on_exit segment_cleanup(const std::string& name) {
  return ipc::test::on_exit([=] { ipc::remove_shared(name); });
}

// Two exec'd shared-counter helpers increment one shared_value<int64_t> 100000 times each, released
// together by a start barrier in a second segment, with or without the built-in lock.
struct contention_run {
  bool released = false;  // both helpers attached and were told to go
  ipc::test::child_result a, b;
  std::int64_t final_count = -1;
  std::uint32_t owner_deaths = 0;
};

contention_run run_contention(bool with_lock) {
  auto name = ipc::test::unique_name(with_lock ? "counter" : "counter-nolock");
  auto control_name = ipc::test::unique_name("counter-start");
  auto cleanup = segment_cleanup(name);
  auto control_cleanup = segment_cleanup(control_name);
  ipc::shared_value<std::int64_t> counter(name, ipc::open_mode::create_only, 0);
  ipc::shared_array<std::int64_t> control(control_name, 2, ipc::open_mode::create_only, 0);  // ready, go

  auto program = ipc::test::build_path("tests/shared-counter");
  std::vector<std::string> argv{program, name, control_name, "100000"};
  if (!with_lock) argv.emplace_back("--no-lock");
  auto a = ipc::test::spawn(argv);
  auto b = ipc::test::spawn(argv);

  contention_run run;
  const auto ready_by = ipc::deadline::in(30s);
  while (control.load(0) < 2 && !ready_by.expired()) std::this_thread::sleep_for(1ms);
  run.released = control.load(0) == 2;
  control.store(1, run.released ? 1 : -1);  // go together, or abort both
  run.a = a.wait(120s);
  run.b = b.wait(120s);
  run.final_count = counter.load();
  run.owner_deaths = counter.get_lock().owner_deaths();
  return run;
}

// A number after `key ` in a helper's "done N start S end E interleaved K" line; -1 if absent.
long long field_of(const std::string& report, const std::string& key) {
  auto at = report.find(key + " ");
  return at == std::string::npos ? -1 : std::stoll(report.substr(at + key.size() + 1));
}

// Both loops ran, and at the same time: each began before the other ended (steady_clock is
// CLOCK_MONOTONIC, one clock for every process).
bool loops_overlapped(const contention_run& run) {
  auto a_start = field_of(run.a.report, "start"), a_end = field_of(run.a.report, "end");
  auto b_start = field_of(run.b.report, "start"), b_end = field_of(run.b.report, "end");
  return a_start > 0 && b_start > 0 && a_start < b_end && b_start < a_end;
}

}  // namespace

TEST_CASE("shared_value: two unrelated processes doing 100000 locked increments each at once reach 200000",
          "[shared_value]") {
  auto run = run_contention(true);
  INFO("a: " << run.a.report << "b: " << run.b.report);
  REQUIRE(run.released);
  CHECK(run.a.exit_code == 0);
  CHECK(run.b.exit_code == 0);
  CHECK(loops_overlapped(run));  // they contended for the lock, not one after the other
  CHECK(run.final_count == 200000);
  CHECK(run.owner_deaths == 0);
}

TEST_CASE("shared_value: the same two processes without the lock lose updates, so the lock is what counts",
          "[shared_value]") {
  auto run = run_contention(false);
  INFO("a: " << run.a.report << "b: " << run.b.report);
  REQUIRE(run.released);
  CHECK(run.a.exit_code == 0);
  CHECK(run.b.exit_code == 0);
  CHECK(loops_overlapped(run));
  CHECK(run.final_count < 200000);  // a stale store can even roll the other's work back: no lower bound
}

TEST_CASE("shared_value: a segment holding another type is refused as incompatible", "[shared_value]") {
  auto name = ipc::test::unique_name("typed");
  auto cleanup = segment_cleanup(name);
  ipc::shared_value<std::int32_t> v(name, ipc::open_mode::create_only, 5);

  try {
    ipc::shared_value<float> f(name, ipc::open_mode::open_only);  // same size, other type
    FAIL("float opened an int32 segment");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::incompatible);
    CHECK_THAT(e.what(), Catch::Contains(name) && Catch::Contains("type"));
  }
  CHECK_THROWS_MATCHES(ipc::shared_value<double>(name, ipc::open_mode::open_only), std::system_error,
                       Catch::Predicate<std::system_error>(
                           [](const auto& e) { return e.code() == ipc::errc::incompatible; }, "incompatible"));
  CHECK_THROWS_MATCHES(ipc::shared_array<std::int32_t>(name, 4, ipc::open_mode::open_only), std::system_error,
                       Catch::Predicate<std::system_error>(
                           [](const auto& e) { return e.code() == ipc::errc::incompatible; }, "incompatible"));
  // The refusals left the segment and its value alone.
  ipc::shared_value<std::int32_t> again(name, ipc::open_mode::open_only);
  CHECK_FALSE(again.created());
  CHECK(again.load() == 5);
}

TEST_CASE("shared_value: a lock choice other than the creator's is refused", "[shared_value]") {
  auto name = ipc::test::unique_name("lockchoice");
  auto cleanup = segment_cleanup(name);
  ipc::shared_value<std::int64_t> locked(name);
  ipc::shared_options no_lock;
  no_lock.with_lock = false;
  REQUIRE_THROWS_WITH(ipc::shared_value<std::int64_t>(name, ipc::open_mode::open_only, 0, no_lock),
                      Catch::Contains("created with a lock"));
}

TEST_CASE("shared_value: without a lock load and store are plain copies and get_lock is refused",
          "[shared_value]") {
  auto name = ipc::test::unique_name("nolock");
  auto cleanup = segment_cleanup(name);
  ipc::shared_options no_lock;
  no_lock.with_lock = false;
  ipc::shared_value<double> v(name, ipc::open_mode::create_only, 1.5, no_lock);
  CHECK_FALSE(v.has_lock());
  CHECK(v.load() == 1.5);
  v.store(2.5);
  CHECK(*v.get() == 2.5);
  try {
    (void)v.get_lock();
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == std::errc::no_lock_available);
    CHECK_THAT(e.what(), Catch::Contains("get_lock"));
  }
}

TEST_CASE("shared_array: elements are shared by name and at() checks bounds", "[shared_value]") {
  auto name = ipc::test::unique_name("array");
  auto cleanup = segment_cleanup(name);
  ipc::shared_array<std::int32_t> arr(name, 8, ipc::open_mode::create_only, 7);
  REQUIRE(arr.size() == 8);
  for (std::size_t i = 0; i < arr.size(); ++i) CHECK(arr[i] == 7);

  auto writer = ipc::test::fork_child([&](ipc::test::reporter& r) {
    ipc::shared_array<std::int32_t> mine(name, 0, ipc::open_mode::open_only);  // 0: whatever count exists
    r.say("size ", mine.size());
    mine.store(3, 42);
    mine.update([](std::int32_t* e, std::size_t n) { e[n - 1] = -1; });
    return 0;
  });
  auto res = writer.wait(10s);
  REQUIRE(res.exit_code == 0);
  CHECK(res.report == "size 8\n");
  CHECK(arr.load(3) == 42);
  CHECK(arr.at(7) == -1);

  try {
    (void)arr.at(8);
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == std::errc::result_out_of_range);
    CHECK_THAT(e.what(), Catch::Contains("index 8 of 8") && Catch::Contains(name));
  }
  CHECK_THROWS_AS(arr.store(100, 1), std::system_error);
}

TEST_CASE("shared_value: a process killed holding the built-in lock does not block the others",
          "[shared_value]") {
  auto name = ipc::test::unique_name("killed");
  auto cleanup = segment_cleanup(name);
  ipc::shared_value<std::int64_t> v(name, ipc::open_mode::create_only, 10);
  auto c = ipc::test::fork_child([&](ipc::test::reporter&) {
    ipc::shared_value<std::int64_t> mine(name, ipc::open_mode::open_only);
    (void)mine.get_lock().lock();
    *mine.get() = 11;
    ::raise(SIGKILL);
    return 1;
  });
  CHECK(c.wait(10s).signal == SIGKILL);
  CHECK(v.load() == 11);
  CHECK(v.get_lock().owner_deaths() == 1);
  CHECK(v.update([](std::int64_t& x) { return ++x; }) == 12);
}

TEST_CASE("shared_value: bad names, counts and corrupt headers are refused", "[shared_value]") {
  auto missing = ipc::test::unique_name("missing");
  CHECK_THROWS_AS(ipc::shared_value<int>(missing, ipc::open_mode::open_only), std::system_error);

  auto name = ipc::test::unique_name("corrupt");
  auto cleanup = segment_cleanup(name);
  REQUIRE_THROWS_WITH(ipc::shared_array<int>(name, 0, ipc::open_mode::create_only), Catch::Contains("count 0"));

  ipc::shared_array<int> arr(name, 4, ipc::open_mode::create_only);
  {
    // A hostile or buggy writer claims far more elements than the segment holds.
    ipc::posix_segment raw(name, ipc::open_mode::open_only, 0);
    auto* h = reinterpret_cast<ipc::detail::shared_array_header*>(raw.data());
    h->count = std::uint64_t{1} << 40;
  }
  try {
    ipc::shared_array<int> victim(name, 0, ipc::open_mode::open_only);
    FAIL("a count beyond the segment was accepted");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::incompatible);
    CHECK_THAT(e.what(), Catch::Contains("recorded count"));
  }
}
