// How every shm mode sleeps (the ring, the work queue, broadcast; one shape over their URIs): a
// receiver blocked on an empty channel and a sender blocked on a full one make no wake-ups while
// nothing happens (a futex_waitv until the deadline, no time slices), and still learn at once that
// the peer they wait for was SIGKILLed, from the kernel (its endpoint lock), not from a poll.
// Wake-ups are the blocked thread's voluntary context switches (getrusage RUSAGE_THREAD, the
// figure /proc/<tid>/status calls voluntary_ctxt_switches): one sleep until the deadline makes one,
// a wait in 100 ms slices about ten a second.
#include <ipc/channel.hpp>
#include <ipc/error.hpp>
#include <ipc/shared_memory.hpp>

#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using ipc::role;

namespace {

using steady = std::chrono::steady_clock;

struct shm_mode {
  const char* label;
  const char* query;         // after shm:NAME: small, so a few 64-byte messages fill it
  bool send_survives_reader;  // a sender blocked on the last reader's death goes on (broadcast: nobody
                              // left to wait for) rather than failing with errc::closed
};

const shm_mode shm_modes[] = {
    {"ring", "?capacity=4096&max_message=64", false},
    {"work queue", "?mode=mpmc&slots=2&max_message=64", false},
    {"broadcast", "?mode=broadcast&slots=2&max_message=64", true},
};

long thread_voluntary_switches() {
  rusage ru{};
  ::getrusage(RUSAGE_THREAD, &ru);
  return ru.ru_nvcsw;
}

// A child process that opens `uri` as `r`, says "ready" and waits to be killed.
ipc::test::child endpoint_child(const std::string& uri, role r) {
  return ipc::test::fork_child([uri, r](ipc::test::reporter& rep) {
    auto ch = ipc::open_channel(uri, r);
    rep.say("ready");
    for (;;) ::pause();
    return 0;
  });
}

// Kills `c` after `delay` on a thread of its own and records when.
struct delayed_kill {
  std::atomic<std::int64_t> at{0};
  std::thread t;
  delayed_kill(ipc::test::child& c, std::chrono::milliseconds delay)
      : t([this, &c, delay] {
          std::this_thread::sleep_for(delay);
          at = steady::now().time_since_epoch().count();
          c.kill(SIGKILL);
        }) {}
  delayed_kill(const delayed_kill&) = delete;
  delayed_kill& operator=(const delayed_kill&) = delete;
  ~delayed_kill() {
    if (t.joinable()) t.join();
  }
  std::chrono::microseconds since(steady::time_point now) {
    t.join();
    return std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch() - steady::duration(at.load()));
  }
};

// What a blocking call did: how long it took, how many voluntary switches, and how it ended.
struct blocked_call {
  steady::duration took{};
  long switches = 0;
  std::optional<bool> returned;    // its result, when it returned (receive_for: whether a message came)
  std::optional<ipc::errc> error;  // its toolkit error, when it threw one
};

template <class F>
blocked_call measure(F&& f) {
  blocked_call b;
  const long s0 = thread_voluntary_switches();
  const auto t0 = steady::now();
  try {
    b.returned = f();
  } catch (const std::system_error& e) {
    if (e.code().category() != ipc::category()) throw;
    b.error = static_cast<ipc::errc>(e.code().value());
  }
  b.took = steady::now() - t0;
  b.switches = thread_voluntary_switches() - s0;
  return b;
}

long long ms(steady::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

}  // namespace

TEST_CASE("shm, every mode: an idle receiver makes no wake-ups and learns of its sender's SIGKILL from the kernel",
          "[shm_sleep]") {
  const auto& m = shm_modes[GENERATE(range(0, 3))];
  INFO("mode " << m.label);
  const std::string name = ipc::test::unique_name("shmsleep");
  auto gone = ipc::test::on_exit([&] { ipc::posix_segment::remove(name); });
  const std::string uri = "shm:" + name + m.query;
  auto tx = endpoint_child(uri, role::sender);
  REQUIRE(tx.wait_for_line("ready", 10s));
  auto rx = ipc::open_channel(uri, role::receiver);
  std::vector<std::byte> buf;

  const auto idle = measure([&] { return rx->receive_for(buf, 1s).has_value(); });
  INFO("idle: " << idle.switches << " voluntary switches in " << ms(idle.took) << " ms");
  CHECK(idle.returned == std::optional<bool>(false));
  CHECK(idle.took >= 995ms);
  CHECK(idle.switches <= 3);  // one futex_waitv until the deadline; 100 ms slices would make ten

  delayed_kill kill(tx, 300ms);
  const auto death = measure([&] { return rx->receive_for(buf, 10s).has_value(); });
  const auto after = kill.since(steady::now());
  INFO("death: closed " << after.count() << " us after the kill, " << death.switches << " voluntary switches");
  CHECK(death.error == std::optional<ipc::errc>(ipc::errc::closed));
  // Generous for a loaded machine; the switch count shows no liveness poll was needed.
  CHECK(after < 1s);
  CHECK(death.switches <= 8);
  CHECK(tx.wait(5s).signal == SIGKILL);
}

TEST_CASE("shm, every mode: a sender blocked on a full channel makes no wake-ups and learns of its reader's SIGKILL "
          "from the kernel",
          "[shm_sleep]") {
  const auto& m = shm_modes[GENERATE(range(0, 3))];
  INFO("mode " << m.label);
  const std::string name = ipc::test::unique_name("shmsleep");
  auto gone = ipc::test::on_exit([&] { ipc::posix_segment::remove(name); });
  const std::string uri = "shm:" + name + m.query;
  auto rx = endpoint_child(uri, role::receiver);  // never reads
  REQUIRE(rx.wait_for_line("ready", 10s));
  auto tx = ipc::open_channel(uri, role::sender);
  const std::vector<std::byte> msg(64, std::byte{0x5a});
  int sent = 0;
  while (tx->try_send(msg)) REQUIRE(++sent < 1000);
  REQUIRE(sent > 0);

  const auto blocked = measure([&] { return tx->send_for(msg, 1s); });
  INFO("blocked: " << blocked.switches << " voluntary switches in " << ms(blocked.took) << " ms");
  CHECK(blocked.returned == std::optional<bool>(false));
  CHECK(blocked.took >= 995ms);
  CHECK(blocked.switches <= 3);

  delayed_kill kill(rx, 300ms);
  const auto death = measure([&] { return tx->send_for(msg, 10s); });
  const auto after = kill.since(steady::now());
  INFO("death: the send ended " << after.count() << " us after the kill, " << death.switches << " voluntary switches");
  if (m.send_survives_reader) {
    CHECK(death.returned == std::optional<bool>(true));
  } else {
    CHECK(death.error == std::optional<ipc::errc>(ipc::errc::closed));
  }
  CHECK(after < 1s);
  CHECK(death.switches <= 8);
  CHECK(rx.wait(5s).signal == SIGKILL);
}
