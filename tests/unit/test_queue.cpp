// ipc::queue<T>: typed MPMC queue over a System V message queue; end of stream for every getter;
// a Python process (sysv_ipc + msgpack) puts and gets the same values.
#include <ipc/error.hpp>
#include <ipc/msg_queue.hpp>
#include <ipc/process.hpp>
#include <ipc/queue.hpp>

#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <unistd.h>

#include <chrono>
#include <map>
#include <numeric>
#include <optional>
#include <string>
#include <variant>
#include <vector>

using namespace std::chrono_literals;
using Catch::Contains;

namespace {

struct record {
  int id = 0;
  std::string name;
  std::vector<double> values;
  std::optional<std::string> note;
  MSGPACK_DEFINE(id, name, values, note)
  friend bool operator==(const record&, const record&) = default;
};

record make_record(int i) {
  return {i, "rec-" + std::to_string(i), {i * 0.5, -1.25}, i % 2 == 0 ? std::optional<std::string>("even") : std::nullopt};
}

// Removes the queue when the test ends, pass or fail.
template <typename Q>
struct removed_at_end {
  Q& q;
  ~removed_at_end() {
    try {
      q.remove();
    } catch (...) {
    }
  }
};

// What a consumer child reports: how many values it took, their sum, whether it saw the end.
struct tally {
  int count = 0;
  long long sum = 0;
  bool saw_end = false;
  MSGPACK_DEFINE(count, sum, saw_end)
};

}  // namespace

TEST_CASE("queue: values of many types come out as they went in", "[queue]") {
  auto name = ipc::test::unique_name("q-types");
  ipc::queue<record> q(name);
  removed_at_end<ipc::queue<record>> cleanup{q};
  for (int i = 0; i < 5; ++i) q.put(make_record(i));
  for (int i = 0; i < 5; ++i) CHECK(q.get() == make_record(i));

  ipc::queue<std::variant<int, std::string, std::map<std::string, int>>> v(name + "-v");
  removed_at_end<decltype(v)> cleanup_v{v};
  v.put(7);
  v.put(std::string("seven"));
  v.put(std::map<std::string, int>{{"a", 1}});
  CHECK(std::get<int>(v.get()) == 7);
  CHECK(std::get<std::string>(v.get()) == "seven");
  CHECK(std::get<2>(v.get()).at("a") == 1);
}

TEST_CASE("queue: get_for returns nullopt on timeout and try_get on an empty queue", "[queue]") {
  ipc::queue<int> q(ipc::test::unique_name("q-empty"));
  removed_at_end<ipc::queue<int>> cleanup{q};
  auto t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(q.get_for(50ms).has_value());
  CHECK(std::chrono::steady_clock::now() - t0 >= 50ms);
  CHECK_FALSE(q.try_get().has_value());
  CHECK(q.try_put(3));
  CHECK(q.try_get() == 3);
}

TEST_CASE("queue: a bounded queue refuses try_put when full and put_for times out", "[queue]") {
  ipc::queue_options o;
  o.capacity = 64;  // bytes, and at most 64 messages
  ipc::queue<std::string> q(ipc::test::unique_name("q-bounded"), o);
  removed_at_end<ipc::queue<std::string>> cleanup{q};
  std::string v(20, 'x');  // 21 bytes packed: three fit in 64
  int n = 0;
  while (q.try_put(v)) ++n;
  CHECK(n == 3);
  CHECK_FALSE(q.put_for(v, 30ms));
  CHECK(q.get() == v);
  CHECK(q.try_put(v));
}

TEST_CASE("queue: a value larger than a message throws message_too_large and sends nothing", "[queue]") {
  ipc::queue<std::string> q(ipc::test::unique_name("q-large"));
  removed_at_end<ipc::queue<std::string>> cleanup{q};
  try {
    q.put(std::string(q.max_value_size() + 1, 'x'));
    FAIL("an oversized value must throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::message_too_large);
  }
  CHECK_FALSE(q.try_get().has_value());
}

TEST_CASE("queue: a message that is not a T throws corrupt", "[queue]") {
  auto name = ipc::test::unique_name("q-corrupt");
  ipc::queue<std::string> strings(name);
  removed_at_end<ipc::queue<std::string>> cleanup{strings};
  ipc::queue<int> ints(name);
  strings.put("not a number");
  try {
    (void)ints.get();
    FAIL("a string read as int must throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::corrupt);
    CHECK_THAT(e.what(), Contains(name));
  }
}

TEST_CASE("queue: close lets the getter drain, then reports the end, and refuses this handle's puts", "[queue]") {
  ipc::queue<int> q(ipc::test::unique_name("q-close"));
  removed_at_end<ipc::queue<int>> cleanup{q};
  q.put(1);
  q.put(2);
  q.close();
  CHECK(q.get() == 1);
  CHECK(q.next() == 2);
  CHECK_FALSE(q.next().has_value());
  CHECK_FALSE(q.next().has_value());  // the end stays
  CHECK_THROWS_WITH(q.get(), Contains("end of stream"));
  try {
    q.put(3);
    FAIL("put after close must throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::closed);
  }
}

TEST_CASE("queue: three consumer processes drain 300 values between them and each sees the end", "[queue]") {
  auto name = ipc::test::unique_name("q-mc");
  ipc::queue<int> q(name);
  removed_at_end<ipc::queue<int>> cleanup{q};
  ipc::queue<tally> reports(name + "-reports");
  removed_at_end<ipc::queue<tally>> cleanup_r{reports};
  std::vector<ipc::process> consumers;
  for (int c = 0; c < 3; ++c) {
    consumers.push_back(ipc::process::fork([&name] {
      ipc::queue<int> in(name, {.open = ipc::open_mode::open_only});
      ipc::queue<tally> out(name + "-reports", {.open = ipc::open_mode::open_only});
      tally t;
      while (auto v = in.next()) {
        ++t.count;
        t.sum += *v;
      }
      t.saw_end = true;
      out.put(t);
      return 0;
    }));
  }
  for (int i = 1; i <= 300; ++i) q.put(i);
  q.close();
  int count = 0;
  long long sum = 0;
  int ends = 0;
  for (int c = 0; c < 3; ++c) {
    auto t = reports.get_for(30s);
    REQUIRE(t.has_value());
    count += t->count;
    sum += t->sum;
    ends += t->saw_end ? 1 : 0;
  }
  CHECK(count == 300);
  CHECK(sum == 300LL * 301 / 2);
  CHECK(ends == 3);
  for (auto& c : consumers) {
    auto st = c.join_for(10s);
    REQUIRE(st.has_value());
    CHECK(st->success());
  }
}

TEST_CASE("queue: values from three producer processes all arrive, each producer's in order", "[queue]") {
  auto name = ipc::test::unique_name("q-mp");
  ipc::queue<std::pair<int, int>> q(name);
  removed_at_end<decltype(q)> cleanup{q};
  std::vector<ipc::process> producers;
  for (int p = 0; p < 3; ++p) {
    producers.push_back(ipc::process::fork([&name, p] {
      ipc::queue<std::pair<int, int>> out(name, {.open = ipc::open_mode::open_only});
      for (int i = 0; i < 100; ++i) out.put({p, i});
      return 0;
    }));
  }
  std::vector<int> next(3, 0);
  bool in_order = true;
  for (int n = 0; n < 300; ++n) {
    auto v = q.get_for(30s);
    REQUIRE(v.has_value());
    if (v->second != next[static_cast<std::size_t>(v->first)]) in_order = false;
    next[static_cast<std::size_t>(v->first)] = v->second + 1;
  }
  CHECK(in_order);
  CHECK(next == std::vector<int>{100, 100, 100});
  for (auto& p : producers) CHECK(p.join_for(10s).value_or(ipc::exit_status{}).success());
}

TEST_CASE("queue: a Python process gets the values C++ puts, and sees the end", "[queue]") {
  ipc::queue<record> q(ipc::test::unique_name("q-py-get"));
  removed_at_end<ipc::queue<record>> cleanup{q};
  for (int i = 0; i < 4; ++i) q.put(make_record(i));
  q.close();
  const char* script = R"(
import sys, msgpack, sysv_ipc
mq = sysv_ipc.MessageQueue(int(sys.argv[1]))
got = []
while True:
    body, mtype = mq.receive(type=-2)
    if mtype == 2:
        mq.send(b"", type=2)   # leave the end marker for the next getter
        break
    got.append(msgpack.unpackb(body, raw=False))
for i, (id_, name, values, note) in enumerate(got):
    assert id_ == i and name == "rec-%d" % i, got
    assert values == [i * 0.5, -1.25], values
    assert note == ("even" if i % 2 == 0 else None), note
print("python got", len(got), "records and the end")
)";
  auto py = ipc::test::spawn({"/usr/bin/python3", "-c", script, std::to_string(q.msgq()->key())});
  auto r = py.wait(30s);
  INFO(r.report);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.report, Contains("python got 4 records and the end"));
  CHECK_FALSE(q.next().has_value());  // the marker the script put back
}

TEST_CASE("queue: C++ gets the values a Python process puts, then the end", "[queue]") {
  ipc::queue<record> q(ipc::test::unique_name("q-py-put"));
  removed_at_end<ipc::queue<record>> cleanup{q};
  const char* script = R"(
import sys, msgpack, sysv_ipc
mq = sysv_ipc.MessageQueue(int(sys.argv[1]))
for i in range(4):
    rec = [i, "rec-%d" % i, [i * 0.5, -1.25], "even" if i % 2 == 0 else None]
    mq.send(msgpack.packb(rec, use_bin_type=True), type=1)
mq.send(b"", type=2)
)";
  auto py = ipc::test::spawn({"/usr/bin/python3", "-c", script, std::to_string(q.msgq()->key())});
  auto r = py.wait(30s);
  INFO(r.report);
  REQUIRE(r.exit_code == 0);
  std::vector<record> got;
  while (auto v = q.get_for(10s)) {
    got.push_back(*v);
    if (got.size() == 4) break;
  }
  REQUIRE(got.size() == 4);
  for (int i = 0; i < 4; ++i) CHECK(got[static_cast<std::size_t>(i)] == make_record(i));
  CHECK_FALSE(q.next().has_value());
}
