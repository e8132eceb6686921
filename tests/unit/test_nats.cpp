// The nats: channel beyond the shared suite: URIs, JetStream's acknowledgements, de-duplication,
// back-pressure, a deleted stream, and a server restarted mid-stream. Each test talks to a real
// nats-server on a loopback port (tests/support/nats_server.hpp).
#include <ipc/channel.hpp>
#include <ipc/error.hpp>
#include <ipc/nats.hpp>
#include <ipc/record.hpp>

#include "nats_server.hpp"
#include "pair_nats.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <signal.h>

#include <atomic>
#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using namespace ipc::test;

namespace {

std::string js_uri(const nats_server& s, const std::string& name, const std::string& extra = "") {
  return "nats://" + s.address() + "/t." + name + "?jetstream=" + name + extra;
}

std::vector<std::byte> record(std::uint64_t session, std::uint64_t seq) {
  std::vector<std::byte> wire;
  const std::string payload = "payload " + std::to_string(seq);
  ipc::encode({session, seq, ipc::monotonic_now_ns()}, ipc::as_bytes(payload), wire);
  return wire;
}

std::uint64_t sequence_of(const std::vector<std::byte>& wire) {
  auto r = ipc::decode(wire);
  return r ? r.header.sequence : 0;
}

std::error_code code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::system_error& e) {
    return e.code();
  }
  return {};
}

}  // namespace

TEST_CASE("nats: a bad URI is refused naming the bad part", "[nats]") {
  auto bad = [](const std::string& uri) {
    try {
      (void)ipc::open_channel(uri, ipc::role::sender);
    } catch (const std::system_error& e) {
      CHECK(e.code() == ipc::errc::bad_uri);
      return std::string(e.what());
    }
    FAIL("no throw for " << uri);
    return std::string();
  };
  CHECK_THAT(bad("nats://127.0.0.1:4222"), Catch::Contains("no subject"));
  CHECK_THAT(bad("nats:127.0.0.1:4222/x"), Catch::Contains("nats://HOST:PORT/SUBJECT"));
  CHECK_THAT(bad("nats://127.0.0.1:99999/x"), Catch::Contains("port"));
  CHECK_THAT(bad("nats://127.0.0.1:4222/a.*"), Catch::Contains("wildcards"));
  CHECK_THAT(bad("nats://127.0.0.1:4222/a..b"), Catch::Contains("empty token"));
  CHECK_THAT(bad("nats://127.0.0.1:4222/a?batch=8"), Catch::Contains("needs jetstream"));
  CHECK_THAT(bad("nats://127.0.0.1:4222/a?jetstream=A.B"), Catch::Contains("stream 'A.B'"));
  CHECK_THAT(bad("nats://127.0.0.1:4222/a?jetstream=A&replicas=9"), Catch::Contains("replicas=9"));
  CHECK_THAT(bad("nats://127.0.0.1:4222/a?color=red"), Catch::Contains("unknown option 'color'"));
}

TEST_CASE("nats: opening without a server throws connection refused naming the URI", "[nats]") {
  const int port = free_loopback_port();  // nobody listens there
  const std::string uri = "nats://127.0.0.1:" + std::to_string(port) + "/nobody";
  try {
    (void)ipc::open_channel(uri, ipc::role::sender);
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == std::errc::connection_refused);
    CHECK_THAT(e.what(), Catch::Contains("natsConnection_Connect") && Catch::Contains(uri));
  }
}

TEST_CASE("nats: max_message_size is the server's max_payload less 256 bytes of headers", "[nats]") {
  auto p = nats_core_pair::make();
  CHECK(p.sender->max_message_size() == 1024 * 1024 - 256);  // nats-server's default max_payload is 1 MiB
  CHECK(p.sender->kind() == "nats");
  CHECK(p.sender->limits().capacity_bytes == 0);
  auto q = nats_jetstream_pair::make();
  CHECK(q.sender->limits().capacity_bytes == std::size_t{64} << 20);
}

TEST_CASE("nats: core NATS is at-most-once: a receiver that joins late misses what was sent before", "[nats]") {
  const std::string uri = "nats://" + shared_nats_server().address() + "/t." + unique_name("late");
  auto tx = ipc::open_channel(uri, ipc::role::sender);
  tx->send(ipc::as_bytes("nobody hears this"));
  tx->close();  // flushed to the server
  auto rx = ipc::open_channel(uri, ipc::role::receiver);
  tx->send(ipc::as_bytes("heard"));
  std::vector<std::byte> buf;
  REQUIRE(rx->receive_for(buf, 5s));
  CHECK(ipc::as_text(buf) == "heard");
}

TEST_CASE("nats: jetstream keeps what was sent before the receiver opened", "[nats]") {
  const std::string name = unique_name("early");
  const std::string uri = js_uri(shared_nats_server(), name);
  auto tx = ipc::open_channel(uri, ipc::role::sender);
  for (int i = 0; i < 3; ++i) tx->send(ipc::as_bytes("early " + std::to_string(i)));
  auto rx = ipc::open_channel(uri, ipc::role::receiver);
  std::vector<std::byte> buf;
  for (int i = 0; i < 3; ++i) {
    REQUIRE(rx->receive_for(buf, 5s));
    CHECK(ipc::as_text(buf) == "early " + std::to_string(i));
  }
  rx->remove();
}

TEST_CASE("nats: jetstream stores a record published twice once (message id = session and sequence)", "[nats]") {
  auto p = nats_jetstream_pair::make();
  const auto r1 = record(0xabc, 1);
  const auto r2 = record(0xabc, 2);
  p.sender->send(r1);
  p.sender->send(r1);  // a retry after a crash: same session, same sequence
  p.sender->send(r2);
  p.sender->send(ipc::as_bytes("not a record"));
  p.sender->send(ipc::as_bytes("not a record"));  // no identity: stored twice
  CHECK(static_cast<ipc::nats_channel&>(*p.sender).duplicates() == 1);
  std::vector<std::byte> buf;
  REQUIRE(p.receiver->receive_for(buf, 5s));
  CHECK(sequence_of(buf) == 1);
  REQUIRE(p.receiver->receive_for(buf, 5s));
  CHECK(sequence_of(buf) == 2);
  REQUIRE(p.receiver->receive_for(buf, 5s));
  CHECK(ipc::as_text(buf) == "not a record");
  REQUIRE(p.receiver->receive_for(buf, 5s));
  CHECK(ipc::as_text(buf) == "not a record");
  CHECK_FALSE(p.receiver->receive_for(buf, 200ms));
  p.receiver->remove();
}

TEST_CASE("nats: jetstream delivers the message a vanished receiver held again, then the rest in order", "[nats]") {
  const std::string name = unique_name("takeover");
  const std::string uri = js_uri(shared_nats_server(), name);
  auto tx = ipc::open_channel(uri, ipc::role::sender);
  for (int i = 1; i <= 5; ++i) tx->send(ipc::as_bytes("m" + std::to_string(i)));
  auto first = ipc::open_channel(uri, ipc::role::receiver);
  std::vector<std::byte> buf;
  REQUIRE(first->receive_for(buf, 5s));
  REQUIRE(first->receive_for(buf, 5s));  // acknowledges m1; m2 is in hand, not acknowledged
  CHECK(ipc::as_text(buf) == "m2");
  // A second receiver on the same consumer takes over (as a restarted bridge does after SIGKILL).
  auto second = ipc::open_channel(uri, ipc::role::receiver);
  std::vector<std::string> got;
  while (second->receive_for(buf, 500ms)) got.emplace_back(ipc::as_text(buf));
  CHECK(got == std::vector<std::string>{"m2", "m3", "m4", "m5"});
  second->remove();
}

TEST_CASE("nats: a full jetstream stream makes send_for time out; an acknowledgement makes room", "[nats]") {
  const std::string name = unique_name("full");
  auto rx = ipc::open_channel(js_uri(shared_nats_server(), name, "&capacity=8K"), ipc::role::receiver);
  auto tx = ipc::open_channel(js_uri(shared_nats_server(), name), ipc::role::sender);
  CHECK(tx->limits().capacity_bytes == 8192);
  const std::vector<std::byte> msg(1000, std::byte{'f'});
  int sent = 0;
  while (sent < 100 && tx->try_send(msg)) ++sent;
  REQUIRE(sent > 0);
  REQUIRE(sent < 100);
  const auto t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(tx->send_for(msg, 300ms));
  const auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took >= 295ms);
  CHECK(took < 3s);
  std::vector<std::byte> buf;
  REQUIRE(rx->receive_for(buf, 5s));
  CHECK_FALSE(tx->try_send(msg));                     // received, not yet acknowledged: still full
  REQUIRE(static_cast<ipc::nats_channel&>(*rx).ack());  // now it is gone from the work queue
  CHECK(tx->send_for(msg, 5s));
  int got = 1;
  while (rx->receive_for(buf, 300ms)) ++got;
  CHECK(got == sent + 1);
  rx->remove();
}

TEST_CASE("nats: after the stream is deleted the receiver and the sender see closed", "[nats]") {
  auto p = nats_jetstream_pair::make();
  p.sender->send(ipc::as_bytes("x"));
  std::vector<std::byte> buf;
  REQUIRE(p.receiver->receive_for(buf, 5s));
  p.receiver->remove();
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(code_of([&] { (void)p.receiver->receive_for(buf, 10s); }) == ipc::errc::closed);
  CHECK(code_of([&] { (void)p.sender->send_for(ipc::as_bytes("y"), 10s); }) == ipc::errc::closed);
  CHECK(std::chrono::steady_clock::now() - t0 < 9s);
}

TEST_CASE("nats: a send or a receive on the wrong end is refused", "[nats]") {
  auto p = nats_core_pair::make();
  std::vector<std::byte> buf;
  CHECK_THROWS_AS(p.sender->try_receive(buf), std::system_error);
  CHECK_THROWS_AS(p.receiver->try_send(ipc::as_bytes("x")), std::system_error);
}

namespace {

// The server stopped (SIGTERM: it saves its state) or killed (SIGKILL: acknowledgements of the last
// moments may be lost with it, so more is redelivered) and started again mid-stream.
void restart_mid_stream(int signal, std::uint64_t max_duplicates) {
  nats_server server;  // its own, to kill
  const std::string name = unique_name("restart");
  // A short ack_wait: an acknowledgement lost with the server is redelivered within seconds.
  const std::string uri = js_uri(server, name, "&ack_wait=2000");
  auto rx = ipc::open_channel(uri, ipc::role::receiver);
  auto tx = ipc::open_channel(uri, ipc::role::sender);
  constexpr std::uint64_t count = 3000;
  std::atomic<std::uint64_t> sent{0};
  std::atomic<bool> sender_failed{false};
  std::thread sender([&] {
    try {
      for (std::uint64_t seq = 1; seq <= count; ++seq) {
        const auto r = record(0x5e55, seq);
        const auto until = std::chrono::steady_clock::now() + 60s;
        // A send that timed out may or may not have been stored: send it again (same message id).
        while (!tx->send_for(r, 1s)) {
          if (std::chrono::steady_clock::now() > until) throw std::runtime_error("send never confirmed");
        }
        sent = seq;
      }
    } catch (...) {
      sender_failed = true;
    }
  });
  std::set<std::uint64_t> seen;
  std::uint64_t duplicates = 0;
  std::vector<std::byte> buf;
  bool restarted = false;
  const auto until = std::chrono::steady_clock::now() + 90s;
  while (seen.size() < count && std::chrono::steady_clock::now() < until) {
    if (!restarted && seen.size() >= count / 3) {
      if (signal == SIGKILL) {
        server.kill();
      } else {
        server.stop();
      }
      std::this_thread::sleep_for(500ms);
      server.start();
      restarted = true;
    }
    if (!rx->receive_for(buf, 1s)) continue;
    if (!seen.insert(sequence_of(buf)).second) ++duplicates;
  }
  sender.join();
  CHECK_FALSE(sender_failed);
  CHECK(restarted);
  CHECK(sent == count);
  CHECK(seen.size() == count);
  CHECK(seen.count(0) == 0);  // every message was an intact record
  CHECK(static_cast<ipc::nats_channel&>(*tx).reconnects() >= 1);
  CHECK(static_cast<ipc::nats_channel&>(*rx).reconnects() >= 1);
  INFO("redelivered after the restart: " << duplicates);
  CHECK(duplicates <= max_duplicates);
}

}  // namespace

TEST_CASE("nats: the server stopped and restarted mid-stream: the channel reconnects, loses nothing, repeats little", "[nats]") {
  restart_mid_stream(SIGTERM, 64 + 1);  // at most a fetched batch and the message in hand
}

TEST_CASE("nats: the server killed and restarted mid-stream: the channel reconnects and loses nothing", "[nats]") {
  restart_mid_stream(SIGKILL, 3000);  // at-least-once: what the server forgot it had acknowledged comes again
}
