#include <ipc/asio.hpp>
#include <ipc/channel.hpp>
#include <ipc/error.hpp>
#include <ipc/unique_fd.hpp>

#include "test_support.hpp"

#include <ipc/fifo.hpp>
#include <ipc/pipe.hpp>
#include <ipc/process.hpp>
#include <ipc/uri.hpp>

#include <boost/asio/io_context.hpp>

#include <catch2/catch.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <chrono>
#include <string>
#include <thread>
#include <ctime>
#include <functional>
#include <memory>
#include <vector>

using namespace std::chrono_literals;

namespace {

// A real kernel channel for testing the adapter on its own: a SOCK_SEQPACKET socketpair
// keeps message boundaries. `expose_fd` picks the readiness path (fd) or the waiter thread.
class seqpacket_channel final : public ipc::channel {
 public:
  seqpacket_channel(ipc::unique_fd fd, bool expose_fd)
      : channel("seqpacket:test", 4096), fd_(std::move(fd)), expose_(expose_fd) {}
  [[nodiscard]] ipc::channel_limits limits() const override { return {4096, 0, 0}; }
  [[nodiscard]] std::string_view kind() const noexcept override { return "seqpacket"; }
  [[nodiscard]] int readable_fd() const noexcept override { return expose_ ? fd_.get() : -1; }
  void shut() noexcept { fd_.reset(); }

 protected:
  bool do_send(std::span<const std::byte> m, const ipc::deadline& d) override {
    for (;;) {
      ssize_t n = ::send(fd_.get(), m.data(), m.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n >= 0) return true;
      if (errno == EPIPE || errno == ECONNRESET) ipc::throw_error(ipc::errc::closed, "send", name_);
      if (errno != EAGAIN && errno != EINTR) ipc::throw_errno(errno, "send", name_);
      if (d.expired()) return false;
      pollfd p{fd_.get(), POLLOUT, 0};
      ::poll(&p, 1, d.poll_timeout_ms());
    }
  }
  bool do_receive(std::vector<std::byte>& out, const ipc::deadline& d) override {
    for (;;) {
      out.resize(4096);
      ssize_t n = ::recv(fd_.get(), out.data(), out.size(), MSG_DONTWAIT);
      if (n > 0) {
        out.resize(static_cast<std::size_t>(n));
        return true;
      }
      if (n == 0) ipc::throw_error(ipc::errc::closed, "receive", name_);
      if (errno != EAGAIN && errno != EINTR) ipc::throw_errno(errno, "recv", name_);
      if (d.expired()) return false;
      pollfd p{fd_.get(), POLLIN, 0};
      ::poll(&p, 1, d.poll_timeout_ms());
    }
  }

 private:
  ipc::unique_fd fd_;
  bool expose_;
};

struct seqpacket_pair {
  std::unique_ptr<seqpacket_channel> tx, rx;
};

seqpacket_pair make_pair(bool expose_fd) {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
  return {std::make_unique<seqpacket_channel>(ipc::unique_fd(sv[0]), expose_fd),
          std::make_unique<seqpacket_channel>(ipc::unique_fd(sv[1]), expose_fd)};
}

struct outcome {
  int calls = 0;
  std::error_code ec;
  std::size_t n = 0;
  std::string text;
};

// Receives one message on `rx` through the executor while `send` runs on another thread.
outcome receive_one(ipc::channel& rx, const std::function<void()>& send, bool expect_fd) {
  boost::asio::io_context io;
  ipc::async_receiver ar(io.get_executor(), rx);
  CHECK(ar.uses_fd() == expect_fd);
  std::vector<std::byte> buf;
  outcome o;
  ar.async_receive(buf, [&](std::error_code ec, std::size_t n) {
    ++o.calls;
    o.ec = ec;
    o.n = n;
    o.text = std::string(ipc::as_text(buf));
    io.stop();
  });
  std::thread t(send);
  io.run_for(10s);
  t.join();
  return o;
}

}  // namespace

TEST_CASE("async_receiver: a message arrives through the executor on the fd path", "[asio]") {
  auto p = make_pair(true);
  auto o = receive_one(*p.rx, [&] {
    std::this_thread::sleep_for(50ms);
    p.tx->send(ipc::as_bytes("over fd"));
  }, true);
  CHECK(o.calls == 1);
  CHECK_FALSE(o.ec);
  CHECK(o.text == "over fd");
  CHECK(o.n == 7);
}

TEST_CASE("async_receiver: a message arrives through the executor on the waiter-thread path", "[asio]") {
  auto p = make_pair(false);
  auto o = receive_one(*p.rx, [&] {
    std::this_thread::sleep_for(50ms);
    p.tx->send(ipc::as_bytes("via thread"));
  }, false);
  CHECK(o.calls == 1);
  CHECK_FALSE(o.ec);
  CHECK(o.text == "via thread");
}

TEST_CASE("async_receiver: messages already waiting all arrive, in order, on both paths", "[asio]") {
  for (bool fd : {true, false}) {
    auto p = make_pair(fd);
    for (int i = 0; i < 5; ++i) p.tx->send(ipc::as_bytes("m" + std::to_string(i)));
    boost::asio::io_context io;
    ipc::async_receiver ar(io.get_executor(), *p.rx);
    std::vector<std::byte> buf;
    std::vector<std::string> got;
    std::function<void(std::error_code, std::size_t)> h = [&](std::error_code ec, std::size_t) {
      if (ec) return;
      got.emplace_back(ipc::as_text(buf));
      if (got.size() < 5) ar.async_receive(buf, h);
    };
    ar.async_receive(buf, h);
    io.run_for(10s);
    INFO("fd path: " << fd);
    CHECK(got == std::vector<std::string>{"m0", "m1", "m2", "m3", "m4"});
  }
}

TEST_CASE("async_receiver: the handler never runs inside async_receive", "[asio]") {
  auto p = make_pair(true);
  p.tx->send(ipc::as_bytes("ready"));
  boost::asio::io_context io;
  ipc::async_receiver ar(io.get_executor(), *p.rx);
  std::vector<std::byte> buf;
  bool called = false;
  ar.async_receive(buf, [&](std::error_code, std::size_t) { called = true; });
  CHECK_FALSE(called);
  io.run_for(5s);
  CHECK(called);
}

TEST_CASE("async_receiver: cancel completes with operation_canceled on both paths", "[asio]") {
  for (bool fd : {true, false}) {
    auto p = make_pair(fd);
    boost::asio::io_context io;
    ipc::async_receiver ar(io.get_executor(), *p.rx, 20ms);
    std::vector<std::byte> buf;
    std::error_code got;
    int calls = 0;
    ar.async_receive(buf, [&](std::error_code ec, std::size_t) {
      ++calls;
      got = ec;
    });
    io.run_for(50ms);  // the operation is now waiting
    REQUIRE(calls == 0);
    const auto t0 = std::chrono::steady_clock::now();
    ar.cancel();
    io.restart();
    while (calls == 0 && std::chrono::steady_clock::now() - t0 < 5s) io.run_for(10ms);
    INFO("fd path: " << fd);
    CHECK(calls == 1);
    CHECK(got == std::errc::operation_canceled);
    CHECK(std::chrono::steady_clock::now() - t0 < 2s);
    // The receiver is usable again after a cancel.
    p.tx->send(ipc::as_bytes("again"));
    std::string text;
    ar.async_receive(buf, [&](std::error_code ec, std::size_t) {
      if (!ec) text = std::string(ipc::as_text(buf));
    });
    io.restart();
    const auto t1 = std::chrono::steady_clock::now();
    while (text.empty() && std::chrono::steady_clock::now() - t1 < 5s) io.run_for(10ms);
    CHECK(text == "again");
  }
}

TEST_CASE("async_receiver: destroying it while waiting neither hangs nor loses the handler", "[asio]") {
  for (bool fd : {true, false}) {
    auto p = make_pair(fd);
    boost::asio::io_context io;
    std::vector<std::byte> buf;
    std::error_code got;
    int calls = 0;
    auto ar = std::make_unique<ipc::async_receiver>(io.get_executor(), *p.rx, 50ms);
    ar->async_receive(buf, [&](std::error_code ec, std::size_t) {
      ++calls;
      got = ec;
    });
    io.run_for(30ms);
    const auto t0 = std::chrono::steady_clock::now();
    ar.reset();
    INFO("fd path: " << fd);
    CHECK(std::chrono::steady_clock::now() - t0 < 1s);  // the waiter thread is joined within a slice
    io.restart();
    io.run_for(200ms);
    CHECK(calls == 1);
    CHECK(got == std::errc::operation_canceled);
  }
}

TEST_CASE("async_receiver: a peer gone for good arrives as errc::closed", "[asio]") {
  for (bool fd : {true, false}) {
    auto p = make_pair(fd);
    auto o = receive_one(*p.rx, [&] {
      std::this_thread::sleep_for(30ms);
      p.tx->shut();
    }, fd);
    INFO("fd path: " << fd);
    CHECK(o.calls == 1);
    CHECK(o.ec == ipc::errc::closed);
  }
}

TEST_CASE("async_receiver: a second operation while one is pending is refused", "[asio]") {
  auto p = make_pair(false);
  boost::asio::io_context io;
  ipc::async_receiver ar(io.get_executor(), *p.rx, 20ms);
  std::vector<std::byte> a, b;
  std::error_code second;
  int first_calls = 0;
  ar.async_receive(a, [&](std::error_code, std::size_t) { ++first_calls; });
  ar.async_receive(b, [&](std::error_code ec, std::size_t) { second = ec; });
  io.run_for(100ms);
  CHECK(second == std::errc::operation_in_progress);
  CHECK(first_calls == 0);
  p.tx->send(ipc::as_bytes("first"));
  io.restart();
  const auto t0 = std::chrono::steady_clock::now();
  while (first_calls == 0 && std::chrono::steady_clock::now() - t0 < 5s) io.run_for(10ms);
  CHECK(first_calls == 1);
  CHECK(ipc::as_text(a) == "first");
}

TEST_CASE("async_receiver: a move-only handler is accepted", "[asio]") {
  auto p = make_pair(true);
  p.tx->send(ipc::as_bytes("x"));
  boost::asio::io_context io;
  ipc::async_receiver ar(io.get_executor(), *p.rx);
  std::vector<std::byte> buf;
  auto token = std::make_unique<int>(7);
  int seen = 0;
  ar.async_receive(buf, [t = std::move(token), &seen](std::error_code ec, std::size_t) {
    if (!ec) seen = *t;
  });
  io.run_for(5s);
  CHECK(seen == 7);
}

namespace {

// Real channels by URI.
void check_uri_channel(const std::string& uri, bool expect_fd) {
  auto rx = ipc::open_channel(uri, ipc::role::receiver);
  auto tx = ipc::open_channel(uri, ipc::role::sender);
  auto o = receive_one(*rx, [&] {
    std::this_thread::sleep_for(30ms);
    tx->send(ipc::as_bytes("through " + uri));
  }, expect_fd);
  INFO(uri);
  CHECK(o.calls == 1);
  CHECK_FALSE(o.ec);
  CHECK(o.text == "through " + uri);
  rx->remove();
}

}  // namespace

TEST_CASE("async_receiver: a pipe message arrives through the executor", "[asio]") {
  auto [tx, rx] = ipc::pipe_channel::create();
  auto o = receive_one(*rx, [&tx = tx] {
    std::this_thread::sleep_for(30ms);
    tx->send(ipc::as_bytes("pipe"));
  }, true);
  CHECK(o.calls == 1);
  CHECK(o.text == "pipe");
}

TEST_CASE("async_receiver: a fifo message arrives through the executor", "[asio]") {
  check_uri_channel("fifo:" + ipc::test::unique_name("asio") + ".fifo", true);
}

TEST_CASE("async_receiver: a msgq message arrives through the waiter thread", "[asio]") {
  check_uri_channel("msgq:" + ipc::test::unique_name("asio"), false);
}

TEST_CASE("async_receiver: a sem buffer message arrives through the waiter thread", "[asio]") {
  check_uri_channel("sem:" + ipc::test::unique_name("asio"), false);
}

TEST_CASE("async_receiver: a shm ring message arrives through the waiter thread", "[asio]") {
  check_uri_channel("shm:" + ipc::test::unique_name("asio"), false);
}

TEST_CASE("async_receiver: after fifo reopen() it waits for the next writer without spinning", "[asio]") {
  const std::string path = (ipc::runtime_dir() / (ipc::test::unique_name("asio") + ".fifo")).string();
  auto rx_handle = ipc::fifo_channel::open(path, ipc::role::receiver);
  ipc::fifo_channel& rx = *rx_handle;
  ipc::fifo_channel::open(path, ipc::role::sender)->send(ipc::as_bytes("first"));  // the writer leaves: the receiver sees closed after the message
  boost::asio::io_context io;
  ipc::async_receiver ar(io.get_executor(), rx);
  std::vector<std::byte> buf;
  std::vector<std::string> got;
  std::error_code closed_ec;
  int handler_runs = 0;
  std::function<void(std::error_code, std::size_t)> on_message = [&](std::error_code ec, std::size_t) {
    ++handler_runs;
    if (ec) {
      if (closed_ec) return;  // a second error: stop
      closed_ec = ec;
      rx.reopen();
    } else {
      got.emplace_back(ipc::as_text(buf));
      if (got.size() == 2) return;
    }
    ar.async_receive(buf, on_message);
  };
  ar.async_receive(buf, on_message);
  std::thread second_writer([&] {
    std::this_thread::sleep_for(300ms);
    ipc::fifo_channel::open(path, ipc::role::sender)->send(ipc::as_bytes("second"));
  });
  const std::clock_t cpu0 = std::clock();
  io.run_for(5s);
  const double cpu_ms = 1000.0 * static_cast<double>(std::clock() - cpu0) / CLOCKS_PER_SEC;
  second_writer.join();
  CHECK(closed_ec == ipc::errc::closed);
  REQUIRE(got.size() == 2);
  CHECK(got[0] == "first");
  CHECK(got[1] == "second");
  CHECK(handler_runs < 20);
  CHECK(cpu_ms < 250);  // the 300 ms wait for the second writer is spent asleep, not polling a dead fd
  rx.remove();
}

namespace {

long process_voluntary_switches() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return ru.ru_nvcsw;
}

// msgq, sem and shm: the waiter sleeps in the kernel with no slices, and cancel() interrupts it at once.
void check_idle_then_cancel(const std::string& uri) {
  auto rx = ipc::open_channel(uri + (uri.find('?') == std::string::npos ? "?" : "&") + "open=create_only", ipc::role::receiver);
  boost::asio::io_context io;
  std::error_code got;
  int calls = 0;
  {
    ipc::async_receiver ar(io.get_executor(), *rx);
    std::vector<std::byte> buf;
    ar.async_receive(buf, [&](std::error_code ec, std::size_t) {
      ++calls;
      got = ec;
    });
    std::this_thread::sleep_for(100ms);  // the waiter is asleep in the kernel by now
    const long before = process_voluntary_switches();
    std::this_thread::sleep_for(1s);
    const long switches = process_voluntary_switches() - before;
    INFO(uri << ": " << switches << " voluntary switches in 1 s");
    CHECK(switches <= 3);  // this thread's sleep; a 50 ms slice would make 20 more
    const auto t0 = std::chrono::steady_clock::now();
    ar.cancel();
    while (calls == 0 && std::chrono::steady_clock::now() - t0 < 5s) io.run_for(10ms);
    CHECK(calls == 1);
    CHECK(got == std::errc::operation_canceled);
    CHECK(std::chrono::steady_clock::now() - t0 < 1s);  // not the 10 s look-again slice
    ar.async_receive(buf, [&](std::error_code, std::size_t) { ++calls; });
    io.restart();
    io.run_for(50ms);
  }  // destroyed while waiting: joined at once
  io.restart();
  io.run_for(100ms);
  CHECK(calls == 2);
  rx->remove();
}

}  // namespace

TEST_CASE("async_receiver: an idle msgq waiter makes no wake-ups and cancels at once", "[asio]") {
  check_idle_then_cancel("msgq:" + ipc::test::unique_name("asio"));
}

TEST_CASE("async_receiver: an idle sem waiter makes no wake-ups and cancels at once", "[asio]") {
  check_idle_then_cancel("sem:" + ipc::test::unique_name("asio"));
}

TEST_CASE("async_receiver: an idle shm ring waiter makes no wake-ups and cancels at once", "[asio]") {
  check_idle_then_cancel("shm:" + ipc::test::unique_name("asio"));
}

TEST_CASE("async_receiver: an idle shm work-queue waiter makes no wake-ups and cancels at once", "[asio]") {
  check_idle_then_cancel("shm:" + ipc::test::unique_name("asio") + "?mode=mpmc");
}

TEST_CASE("async_receiver: an idle shm broadcast subscriber makes no wake-ups and cancels at once", "[asio]") {
  check_idle_then_cancel("shm:" + ipc::test::unique_name("asio") + "?mode=broadcast");
}

// --- async_exit_waiter: a child's end on the executor ---------------------------------------

namespace {

struct exit_outcome {
  int calls = 0;
  std::error_code ec;
  ipc::exit_status status;
};

// The handler that records a completion into `o`.
auto recorder(exit_outcome& o) {
  return [&o](std::error_code ec, ipc::exit_status st) {
    ++o.calls;
    o.ec = ec;
    o.status = st;
  };
}

// Runs io until `o` has a completion or `limit` passes.
void run_until_called(boost::asio::io_context& io, const exit_outcome& o, std::chrono::seconds limit) {
  io.restart();
  const auto until = std::chrono::steady_clock::now() + limit;
  while (o.calls == 0 && std::chrono::steady_clock::now() < until) io.run_for(10ms);
}

}  // namespace

TEST_CASE("async_exit_waiter: a child's end arrives on the executor with its status, reaped", "[asio]") {
  boost::asio::io_context io;
  auto child = ipc::process::fork([] {
    std::this_thread::sleep_for(100ms);
    return 9;
  });
  ipc::async_exit_waiter w(io.get_executor(), child);
  exit_outcome o;
  w.async_wait(recorder(o));
  CHECK(o.calls == 0);  // never inside async_wait
  run_until_called(io, o, 20s);
  REQUIRE(o.calls == 1);
  CHECK_FALSE(o.ec);
  CHECK(o.status == ipc::exit_status{9, 0, false});
  CHECK_FALSE(child.joinable());  // reaped: the handle knows how it ended
  CHECK(child.status() == o.status);
}

TEST_CASE("async_exit_waiter: a child killed by a signal reports the signal", "[asio]") {
  boost::asio::io_context io;
  // A forked child inherits the test runner's handlers (Catch catches SIGTERM): the default action here.
  ipc::process child({.daemon = true}, [] {
    ::signal(SIGTERM, SIG_DFL);
    ::pause();
  });
  child.start();
  ipc::async_exit_waiter w(io.get_executor(), child);
  exit_outcome o;
  w.async_wait(recorder(o));
  io.run_for(30ms);
  CHECK(o.calls == 0);  // still running: nothing completes
  REQUIRE(child.kill(SIGTERM));
  run_until_called(io, o, 20s);
  REQUIRE(o.calls == 1);
  CHECK_FALSE(o.ec);
  CHECK(o.status.signal == SIGTERM);
}

TEST_CASE("async_exit_waiter: cancel and destruction complete with operation_canceled and leave the child running", "[asio]") {
  boost::asio::io_context io;
  ipc::process child({.daemon = true}, [] { ::pause(); });
  child.start();
  for (bool destroy : {false, true}) {
    INFO((destroy ? "destroyed" : "cancelled"));
    auto w = std::make_unique<ipc::async_exit_waiter>(io.get_executor(), child);
    exit_outcome o;
    w->async_wait(recorder(o));
    io.restart();
    io.run_for(30ms);
    REQUIRE(o.calls == 0);
    if (destroy) {
      w.reset();
    } else {
      w->cancel();
    }
    run_until_called(io, o, 5s);
    CHECK(o.calls == 1);
    CHECK(o.ec == std::errc::operation_canceled);
    CHECK(child.is_alive());  // neither reaped nor signalled
  }
  // A waiter made afterwards still sees the end.
  ipc::async_exit_waiter again(io.get_executor(), child);
  exit_outcome o;
  again.async_wait(recorder(o));
  REQUIRE(child.kill(SIGKILL));
  run_until_called(io, o, 20s);
  REQUIRE(o.calls == 1);
  CHECK(o.status.signal == SIGKILL);
}

TEST_CASE("async_exit_waiter: an ended handle completes at once, an empty one with EINVAL, a second wait is refused", "[asio]") {
  boost::asio::io_context io;
  auto done = ipc::process::fork([] { return 4; });
  REQUIRE(done.join_for(20s).has_value());
  ipc::async_exit_waiter w(io.get_executor(), done);
  exit_outcome o;
  w.async_wait(recorder(o));
  run_until_called(io, o, 5s);
  CHECK(o.calls == 1);
  CHECK_FALSE(o.ec);
  CHECK(o.status.code == 4);

  ipc::process empty;
  ipc::async_exit_waiter we(io.get_executor(), empty);
  exit_outcome e;
  we.async_wait(recorder(e));
  run_until_called(io, e, 5s);
  CHECK(e.calls == 1);
  CHECK(e.ec == std::errc::invalid_argument);

  ipc::process sleeper({.daemon = true}, [] { ::pause(); });
  sleeper.start();
  ipc::async_exit_waiter ws(io.get_executor(), sleeper);
  exit_outcome first, second;
  ws.async_wait(recorder(first));
  ws.async_wait(recorder(second));
  run_until_called(io, second, 5s);
  CHECK(second.ec == std::errc::operation_in_progress);
  CHECK(first.calls == 0);
  REQUIRE(sleeper.kill(SIGKILL));
  run_until_called(io, first, 20s);
  CHECK(first.calls == 1);
  CHECK_FALSE(first.ec);
}

TEST_CASE("async_exit_waiter: a move-only handler is accepted", "[asio]") {
  boost::asio::io_context io;
  auto child = ipc::process::fork([] { return 0; });
  ipc::async_exit_waiter w(io.get_executor(), child);
  auto token = std::make_unique<int>(5);
  exit_outcome o;
  w.async_wait([&o, token = std::move(token)](std::error_code ec, ipc::exit_status st) {
    o.calls += *token;
    o.ec = ec;
    o.status = st;
  });
  run_until_called(io, o, 20s);
  CHECK(o.calls == 5);
  CHECK(o.status.success());
}
