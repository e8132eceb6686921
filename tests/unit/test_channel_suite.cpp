// The shared channel suite: the semantics every channel kind promises (docs/channels.md),
// written once against ipc::channel and run over every kind's pair (tests/support/pair_*.hpp).
#include <ipc/channel.hpp>
#include <ipc/error.hpp>

#include "channel_pair.hpp"
#include "pair_fifo.hpp"
#include "pair_msgq.hpp"
#include "pair_nats.hpp"
#include "pair_pipe.hpp"
#include "pair_sem.hpp"
#include "pair_shm.hpp"
#include "pair_shm_broadcast.hpp"
#include "pair_shm_mpmc.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <string_view>
#include <system_error>
#include <thread>
#include <type_traits>
#include <vector>

using namespace std::chrono_literals;
using namespace ipc::test;

// Every channel kind the suite runs over: add a kind's pair here (and its include above).
#define IPC_CHANNEL_KINDS pipe_pair, fifo_pair, msgq_pair, sem_pair, shm_pair, shm_mpmc_pair, shm_broadcast_pair
// The kinds whose semantics reach across hosts too (pair_nats.hpp says which tests leave nats out).
#define IPC_ANY_HOST_KINDS IPC_CHANNEL_KINDS IPC_NATS_KINDS

namespace {

using steady = std::chrono::steady_clock;

std::vector<std::byte> pattern(std::size_t size, std::uint32_t seed) {
  std::vector<std::byte> v(size);
  for (std::size_t j = 0; j < size; ++j) v[j] = static_cast<std::byte>((seed * 131U + j * 7U + 1U) & 0xffU);
  return v;
}

// Message i of the cross-process test: 4-byte index, then a pattern; 4 .. 3000 bytes.
std::vector<std::byte> numbered(std::uint32_t i, std::size_t max_size) {
  const std::size_t span = std::min<std::size_t>(max_size, 3000) - 3;
  auto v = pattern(4 + (static_cast<std::size_t>(i) * 7919U) % span, i);
  for (std::size_t k = 0; k < 4; ++k) v[k] = static_cast<std::byte>((i >> (8 * k)) & 0xffU);
  return v;
}

// Runs a sender body on a thread; joins on destruction (the body bounds its own waits)
// and hands an exception back to the test thread through rethrow().
class sender_thread {
 public:
  explicit sender_thread(std::function<void()> body)
      : thread_([this, b = std::move(body)] {
          try {
            b();
          } catch (...) {
            error_ = std::current_exception();
          }
        }) {}
  ~sender_thread() {
    if (thread_.joinable()) thread_.join();
  }
  void rethrow() {
    thread_.join();
    if (error_) std::rethrow_exception(error_);
  }

 private:
  std::exception_ptr error_;
  std::thread thread_;
};

std::string received_text(const std::vector<std::byte>& b) { return std::string(ipc::as_text(b)); }

}  // namespace

TEMPLATE_TEST_CASE("channel: a round trip keeps messages of 0, 1 and max_message_size bytes intact", "[channel]",
                   IPC_ANY_HOST_KINDS) {
  auto p = TestType::make();
  const std::size_t max = p.sender->max_message_size();
  REQUIRE(max == p.receiver->max_message_size());
  REQUIRE(p.sender->kind() == TestType::kind);
  const std::vector<std::size_t> sizes{0, 1, max};
  // A maximal message may exceed what the channel buffers: send it from another thread.
  sender_thread t([&] {
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      if (!p.sender->send_for(pattern(sizes[i], static_cast<std::uint32_t>(i)), 10s)) throw std::runtime_error("send_for timed out");
    }
  });
  std::vector<std::byte> buf;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    auto n = p.receiver->receive_for(buf, 10s);
    REQUIRE(n);
    CHECK(*n == sizes[i]);
    CHECK(buf == pattern(sizes[i], static_cast<std::uint32_t>(i)));
  }
  t.rethrow();
}

TEMPLATE_TEST_CASE("channel: order is kept over 1000 messages", "[channel]", IPC_ANY_HOST_KINDS) {
  auto p = TestType::make();
  sender_thread t([&] {
    for (int i = 0; i < 1000; ++i) {
      if (!p.sender->send_for(ipc::as_bytes("m" + std::to_string(i)), 10s)) throw std::runtime_error("send_for timed out");
    }
  });
  std::vector<std::byte> buf;
  int in_order = 0;
  for (int i = 0; i < 1000; ++i) {
    auto n = p.receiver->receive_for(buf, 10s);
    REQUIRE(n);
    if (received_text(buf) == "m" + std::to_string(i)) ++in_order;
  }
  CHECK(in_order == 1000);
  t.rethrow();
}

TEMPLATE_TEST_CASE("channel: receive_for returns nullopt after the timeout", "[channel]", IPC_ANY_HOST_KINDS) {
  auto p = TestType::make();
  std::vector<std::byte> buf;
  const auto t0 = steady::now();
  auto n = p.receiver->receive_for(buf, 100ms);
  const auto took = steady::now() - t0;
  CHECK_FALSE(n);
  CHECK(took >= 95ms);
  CHECK(took < 2s);
  CHECK(p.receiver->counters().receive_timeouts == 1);
}

TEMPLATE_TEST_CASE("channel: try_receive on an empty channel returns nullopt at once", "[channel]", IPC_ANY_HOST_KINDS) {
  auto p = TestType::make();
  std::vector<std::byte> buf;
  const auto t0 = steady::now();
  CHECK_FALSE(p.receiver->try_receive(buf));
  CHECK(steady::now() - t0 < 500ms);
}

TEMPLATE_TEST_CASE("channel: send_for returns false after the timeout when the channel is full", "[channel]",
                   IPC_CHANNEL_KINDS) {
  auto p = TestType::make();
  const auto msg = pattern(std::min<std::size_t>(1000, p.sender->max_message_size()), 7);
  std::size_t sent = 0;
  while (sent < 10'000'000 && p.sender->try_send(msg)) ++sent;
  REQUIRE(sent > 0);
  REQUIRE(sent < 10'000'000);
  const auto t0 = steady::now();
  CHECK_FALSE(p.sender->send_for(msg, 100ms));
  const auto took = steady::now() - t0;
  CHECK(took >= 95ms);
  CHECK(took < 2s);
  CHECK(p.sender->counters().send_timeouts == 2);
  CHECK(p.sender->counters().messages_sent == sent);
  // Room again after one receive; everything that was accepted arrives intact.
  std::vector<std::byte> buf;
  REQUIRE(p.receiver->receive_for(buf, 5s));
  CHECK(buf == msg);
  CHECK(p.sender->try_send(msg));
  std::size_t got = 1;
  while (p.receiver->receive_for(buf, 200ms)) {
    CHECK(buf == msg);
    ++got;
  }
  CHECK(got == sent + 1);
}

TEMPLATE_TEST_CASE("channel: a message too large throws message_too_large and nothing is delivered", "[channel]",
                   IPC_ANY_HOST_KINDS) {
  auto p = TestType::make();
  const std::vector<std::byte> big(p.sender->max_message_size() + 1, std::byte{'x'});
  try {
    p.sender->send(big);
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::message_too_large);
    CHECK_THAT(e.what(), Catch::Contains(p.sender->name()));
  }
  CHECK_THROWS_AS(p.sender->try_send(big), std::system_error);
  CHECK(p.sender->counters().messages_sent == 0);
  p.sender->send(ipc::as_bytes("next"));
  std::vector<std::byte> buf;
  REQUIRE(p.receiver->receive_for(buf, 5s));
  CHECK(received_text(buf) == "next");
  CHECK_FALSE(p.receiver->try_receive(buf));
}

TEMPLATE_TEST_CASE("channel: after the sender is gone for good the receiver drains and then sees closed", "[channel]",
                   IPC_ANY_HOST_KINDS) {
  auto p = TestType::make();
  for (int i = 0; i < 3; ++i) p.sender->send(ipc::as_bytes("left " + std::to_string(i)));
  TestType::close_for_good(p);
  std::vector<std::byte> buf;
  for (int i = 0; i < 3; ++i) {
    REQUIRE(p.receiver->receive_for(buf, 5s));
    CHECK(received_text(buf) == "left " + std::to_string(i));
  }
  const auto t0 = steady::now();
  try {
    (void)p.receiver->receive_for(buf, 10s);
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::closed);
  }
  CHECK(steady::now() - t0 < 9s);
}

TEMPLATE_TEST_CASE("channel: 10000 messages of varied sizes cross processes in order", "[channel]", IPC_CHANNEL_KINDS) {
  auto p = TestType::make();
  const std::size_t max = p.sender->max_message_size();
  constexpr std::uint32_t count = 10'000;
  auto c = fork_child([&](reporter& r) {
    p.receiver.reset();
    for (std::uint32_t i = 0; i < count; ++i) {
      if (!p.sender->send_for(numbered(i, max), 20s)) {
        r.say("send_for timed out at ", i);
        return 1;
      }
    }
    r.say("sent ", count);
    return 0;
  });
  p.sender.reset();
  std::vector<std::byte> buf;
  const auto d = ipc::deadline::in(60s);
  std::uint32_t good = 0;
  std::uint32_t i = 0;
  for (; i < count; ++i) {
    if (!p.receiver->receive_until(buf, d)) break;
    if (buf == numbered(i, max)) ++good;
  }
  CHECK(i == count);
  CHECK(good == count);
  auto res = c.wait(30s);
  INFO(res.report);
  CHECK_FALSE(res.timed_out);
  CHECK(res.exit_code == 0);
  CHECK(p.receiver->counters().messages_received == count);
}

TEMPLATE_TEST_CASE("channel: counters count messages, bytes and timeouts", "[channel]", IPC_ANY_HOST_KINDS) {
  auto p = TestType::make();
  std::uint64_t bytes = 0;
  for (int i = 0; i < 5; ++i) {
    const std::string m(static_cast<std::size_t>(i) * 10, 'c');
    p.sender->send(ipc::as_bytes(m));
    bytes += m.size();
  }
  std::vector<std::byte> buf;
  for (int i = 0; i < 5; ++i) REQUIRE(p.receiver->receive_for(buf, 5s));
  CHECK_FALSE(p.receiver->try_receive(buf));
  const auto& s = p.sender->counters();
  const auto& r = p.receiver->counters();
  CHECK(s.messages_sent == 5);
  CHECK(s.bytes_sent == bytes);
  CHECK(s.send_timeouts == 0);
  CHECK(r.messages_received == 5);
  CHECK(r.bytes_received == bytes);
  CHECK(r.receive_timeouts == 1);
}

TEMPLATE_TEST_CASE("channel: reopen() after the peer left needs no cast: fifo and every shm mode hear a new sender, the rest stay closed",
                   "[channel]", IPC_CHANNEL_KINDS) {
  auto p = TestType::make();
  p.sender->send(ipc::as_bytes("before"));
  TestType::close_for_good(p);
  std::vector<std::byte> buf;
  REQUIRE(p.receiver->receive_for(buf, 5s));
  CHECK(received_text(buf) == "before");
  CHECK_THROWS_WITH(p.receiver->receive_for(buf, 10s), Catch::Contains("peer closed"));
  const auto t0 = steady::now();
  p.receiver->reopen();  // ipc::channel& is all it takes
  CHECK(steady::now() - t0 < 2s);  // never waits for the next peer
  constexpr std::string_view kind = TestType::kind;
  if constexpr (kind == "fifo" || kind == "shm") {
    // The name a channel reports is its URI: a new sender opens it. (Every shm pair's segment was
    // unlinked at make(): reopen() recreated one like it under the name.)
    auto next = ipc::open_channel(p.receiver->name(), ipc::role::sender);
    REQUIRE(next->send_for(ipc::as_bytes("after"), 5s));
    REQUIRE(p.receiver->receive_for(buf, 5s));
    CHECK(received_text(buf) == "after");
    p.receiver->remove();
  } else if constexpr (kind == "pipe" || kind == "msgq") {
    // Nothing to resume: an anonymous pipe has no name, a removed queue is gone.
    CHECK_THROWS_WITH(p.receiver->receive_for(buf, 10s), Catch::Contains("peer closed"));
  } else {
    // sem: reopen() is the default (nothing); the receiver answers at once, closed or empty.
    const auto t1 = steady::now();
    std::optional<std::size_t> got;
    bool closed = false;
    try {
      got = p.receiver->receive_for(buf, 100ms);
    } catch (const std::system_error& e) {
      closed = e.code() == ipc::errc::closed;
      if (!closed) throw;
    }
    CHECK((closed || !got));
    CHECK(steady::now() - t1 < 2s);
  }
}
