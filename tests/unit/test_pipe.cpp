#include <ipc/channel.hpp>
#include <ipc/error.hpp>
#include <ipc/pipe.hpp>

#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

using steady = std::chrono::steady_clock;

std::string text(const std::vector<std::byte>& b) { return std::string(ipc::as_text(b)); }

void raw_write(int fd, const void* p, std::size_t n) {
  REQUIRE(::write(fd, p, n) == static_cast<ssize_t>(n));
}

// A raw pipe (no O_CLOEXEC, blocking) as a parent process would hand it down.
struct raw_pipe {
  int rd = -1;
  int wr = -1;
  raw_pipe() {
    int f[2];
    REQUIRE(::pipe(f) == 0);
    rd = f[0];
    wr = f[1];
  }
  ~raw_pipe() {
    if (rd >= 0) ::close(rd);
    if (wr >= 0) ::close(wr);
  }
};

bool sigpipe_pending() {
  sigset_t s;
  ::sigpending(&s);
  return ::sigismember(&s, SIGPIPE) == 1;
}

bool sigpipe_blocked() {
  sigset_t s;
  ::pthread_sigmask(SIG_BLOCK, nullptr, &s);
  return ::sigismember(&s, SIGPIPE) == 1;
}

}  // namespace

TEST_CASE("pipe: create returns a connected sender and receiver", "[pipe]") {
  auto [tx, rx] = ipc::pipe_channel::create();
  CHECK(tx->kind() == "pipe");
  CHECK(tx->end() == ipc::role::sender);
  CHECK(rx->end() == ipc::role::receiver);
  CHECK(tx->readable_fd() == -1);
  CHECK(rx->readable_fd() == rx->fd());
  CHECK_THAT(rx->name(), Catch::StartsWith("pipe:fd="));
  for (int fd : {tx->fd(), rx->fd()}) {
    CHECK((::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    CHECK((::fcntl(fd, F_GETFL) & O_NONBLOCK) == 0);  // send/receive sleep in write/read themselves
  }
  tx->send(ipc::as_bytes("hello"));
  std::vector<std::byte> buf;
  REQUIRE(rx->receive_for(buf, 5s) == 5U);
  CHECK(text(buf) == "hello");
  CHECK(tx->limits().max_message_size == 64 * 1024);
}

TEST_CASE("pipe: capacity is set with F_SETPIPE_SZ and reported by limits", "[pipe]") {
  auto [tx, rx] = ipc::pipe_channel::create({.max_message = 1000, .capacity = 256 * 1024});
  CHECK(tx->limits().capacity_bytes == 256 * 1024);
  CHECK(rx->limits().capacity_bytes == 256 * 1024);
  CHECK(rx->limits().max_message_size == 1000);
  auto [tx2, rx2] = ipc::pipe_channel::create();
  CHECK(tx2->limits().capacity_bytes == static_cast<std::size_t>(::fcntl(tx2->fd(), F_GETPIPE_SZ)));
  REQUIRE_THROWS_WITH(ipc::pipe_channel::create({.max_message = 1000, .capacity = std::size_t{1} << 40}),
                      Catch::Contains("F_SETPIPE_SZ"));
}

TEST_CASE("pipe: max_message outside 1 byte .. 16 MiB is refused", "[pipe]") {
  REQUIRE_THROWS_WITH(ipc::pipe_channel::create({.max_message = 0}), Catch::Contains("max_message=0"));
  REQUIRE_THROWS_WITH(ipc::pipe_channel::create({.max_message = (16U << 20) + 1}), Catch::Contains("max_message"));
  CHECK_NOTHROW(ipc::pipe_channel::create({.max_message = 16U << 20}));
}

TEST_CASE("pipe: many small messages are taken from the pipe in one buffered read", "[pipe]") {
  auto [tx, rx] = ipc::pipe_channel::create();
  for (int i = 0; i < 100; ++i) tx->send(ipc::as_bytes("s" + std::to_string(i)));
  std::vector<std::byte> buf;
  REQUIRE(rx->try_receive(buf));
  CHECK(text(buf) == "s0");
  int queued = -1;
  REQUIRE(::ioctl(rx->fd(), FIONREAD, &queued) == 0);
  CHECK(queued == 0);
  CHECK(rx->has_buffered_message());
  for (int i = 1; i < 100; ++i) {
    REQUIRE(rx->try_receive(buf));
    CHECK(text(buf) == "s" + std::to_string(i));
  }
  CHECK_FALSE(rx->has_buffered_message());
  CHECK_FALSE(rx->try_receive(buf));
}

TEST_CASE("pipe: writing after the reader closed throws closed and the process survives", "[pipe]") {
  // The default disposition kills the process on SIGPIPE: make sure that is what we run under.
  auto old = ::signal(SIGPIPE, SIG_DFL);
  auto [tx, rx] = ipc::pipe_channel::create();
  rx.reset();
  try {
    tx->send(ipc::as_bytes("nobody listens"));
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::closed);
    CHECK_THAT(e.what(), Catch::Contains("write(pipe:fd="));
  }
  CHECK_FALSE(sigpipe_pending());
  CHECK(sigpipe_blocked());  // once per thread, so no send pays a sigmask syscall
  // A large frame (the writev path) too.
  const std::vector<std::byte> big(20000, std::byte{1});
  CHECK_THROWS_AS(tx->send(big), std::system_error);
  CHECK_FALSE(sigpipe_pending());
  ::signal(SIGPIPE, old);
}

TEST_CASE("pipe: the SIGPIPE of a write to a closed pipe is consumed, never delivered later", "[pipe]") {
  // Run on a fresh thread, whose mask starts with SIGPIPE unblocked.
  bool closed = false, pending_after = true, blocked_after = false;
  std::thread t([&] {
    auto [tx, rx] = ipc::pipe_channel::create();
    rx.reset();
    try {
      tx->send(ipc::as_bytes("x"));
    } catch (const std::system_error& e) {
      closed = e.code() == ipc::errc::closed;
    }
    pending_after = sigpipe_pending();
    blocked_after = sigpipe_blocked();
  });
  t.join();
  CHECK(closed);
  CHECK_FALSE(pending_after);
  CHECK(blocked_after);
}

TEST_CASE("pipe: a stream that ends inside a frame is corrupt (truncated)", "[pipe]") {
  auto [tx, rx] = ipc::pipe_channel::create();
  const unsigned char partial[] = {10, 0, 0, 0, 'a', 'b', 'c'};
  raw_write(tx->fd(), partial, sizeof partial);
  tx.reset();
  std::vector<std::byte> buf;
  try {
    (void)rx->receive_for(buf, 5s);
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::corrupt);
    CHECK_THAT(e.what(), Catch::Contains("read(pipe:fd=") && Catch::Contains("truncated") && Catch::Contains("7 of 14"));
  }
}

TEST_CASE("pipe: a length header above max_message is corrupt and names the length", "[pipe]") {
  auto [tx, rx] = ipc::pipe_channel::create();
  const unsigned char bogus[] = {0xf0, 0xff, 0xff, 0xff, 'x'};
  raw_write(tx->fd(), bogus, sizeof bogus);
  std::vector<std::byte> buf;
  try {
    (void)rx->receive_for(buf, 5s);
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::corrupt);
    CHECK_THAT(e.what(), Catch::Contains("frame length 4294967280 exceeds max_message 65536"));
  }
  CHECK(buf.capacity() < 1024 * 1024);  // never allocated what the header claimed
}

TEST_CASE("pipe: end of stream between frames is closed", "[pipe]") {
  auto [tx, rx] = ipc::pipe_channel::create();
  tx->send(ipc::as_bytes("last"));
  tx.reset();
  std::vector<std::byte> buf;
  REQUIRE(rx->receive(buf) == 4);
  REQUIRE_THROWS_WITH(rx->receive(buf), Catch::Contains("read(pipe:fd=") && Catch::Contains("peer closed"));
}

TEST_CASE("pipe: a message larger than the pipe arrives whole", "[pipe]") {
  auto [tx, rx] = ipc::pipe_channel::create({.max_message = 1 << 20});
  std::vector<std::byte> big(1 << 20);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::byte>(i * 13 % 251);
  std::thread t([&, &tx = tx] { tx->send(big); });  // untimed: streamed through the 64 KiB pipe
  std::vector<std::byte> buf;
  auto n = rx->receive_for(buf, 20s);
  t.join();
  REQUIRE(n == big.size());
  CHECK(buf == big);
}

TEST_CASE("pipe: try_send of a frame above PIPE_BUF never blocks and never sends half a frame", "[pipe]") {
  auto [tx, rx] = ipc::pipe_channel::create({.max_message = 128 * 1024});
  const std::vector<std::byte> large(8000, std::byte{'L'});
  std::vector<std::byte> buf;
  SECTION("goes whole while the pipe has room for all of it, else is refused with nothing sent") {
    tx->send(ipc::as_bytes("small"));
    int sent = 0;
    const auto t0 = steady::now();
    while (sent < 100 && tx->try_send(large)) ++sent;
    CHECK(steady::now() - t0 < 500ms);
    CHECK(sent >= 1);
    CHECK(sent < 100);
    REQUIRE(rx->try_receive(buf));
    CHECK(text(buf) == "small");
    for (int i = 0; i < sent; ++i) {
      REQUIRE(rx->try_receive(buf));
      CHECK(buf == large);
    }
    CHECK_FALSE(rx->try_receive(buf));
  }
  SECTION("a frame above the pipe's capacity grows the pipe and goes whole") {
    const std::vector<std::byte> huge(100 * 1024, std::byte{'H'});
    REQUIRE(tx->limits().capacity_bytes < huge.size());
    CHECK(tx->try_send(huge));
    CHECK(tx->limits().capacity_bytes >= huge.size() + 4);
    REQUIRE(rx->try_receive(buf));
    CHECK(buf == huge);
  }
}

TEST_CASE("pipe: send_for of a large frame into a full pipe times out with nothing sent", "[pipe]") {
  auto [tx, rx] = ipc::pipe_channel::create();
  const std::vector<std::byte> small(1000, std::byte{'s'});
  std::size_t filled = 0;
  while (tx->try_send(small)) ++filled;
  REQUIRE(filled > 0);
  const std::vector<std::byte> large(8000, std::byte{'L'});
  const auto t0 = steady::now();
  CHECK_FALSE(tx->send_for(large, 100ms));
  CHECK(steady::now() - t0 >= 95ms);
  std::vector<std::byte> buf;
  std::size_t got = 0;
  while (rx->try_receive(buf)) {
    CHECK(buf == small);
    ++got;
  }
  CHECK(got == filled);
}

TEST_CASE("pipe: send_for of a frame larger than the free room keeps its deadline against a slow reader", "[pipe]") {
  auto [tx, rx] = ipc::pipe_channel::create({.max_message = 1 << 20, .capacity = 64 * 1024});
  const std::vector<std::byte> small(8000, std::byte{'s'});
  REQUIRE(tx->send_for(small, 5s));  // the pipe holds 8 KB, and the reader takes nothing
  const std::vector<std::byte> big(60 * 1024, std::byte{'B'});
  const auto t0 = steady::now();
  CHECK_FALSE(tx->send_for(big, 200ms));
  const auto took = steady::now() - t0;
  CHECK(took >= 195ms);
  CHECK(took < 2s);
  std::vector<std::byte> buf;
  REQUIRE(rx->try_receive(buf));
  CHECK(buf == small);
  CHECK_FALSE(rx->try_receive(buf));  // nothing of the big frame went out
  CHECK(tx->send_for(big, 5s));       // now it has room
  REQUIRE(rx->receive_for(buf, 5s));
  CHECK(buf == big);
}

TEST_CASE("pipe: a timed send of a frame the pipe cannot be grown to hold is message_too_large", "[pipe]") {
  // A child without CAP_SYS_RESOURCE, so F_SETPIPE_SZ stops at /proc/sys/fs/pipe-max-size.
  auto c = ipc::test::fork_child([](ipc::test::reporter& r) {
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct caps[2]{};
    if (::syscall(SYS_capget, &hdr, caps) != 0) return 10;
    caps[CAP_SYS_RESOURCE / 32].effective &= ~(1U << (CAP_SYS_RESOURCE % 32));
    caps[CAP_SYS_RESOURCE / 32].permitted &= ~(1U << (CAP_SYS_RESOURCE % 32));
    if (::syscall(SYS_capset, &hdr, caps) != 0) return 11;
    std::ifstream f("/proc/sys/fs/pipe-max-size");
    std::size_t max = 0;
    f >> max;
    if (max == 0 || max > (8U << 20)) return 12;
    auto [tx, rx] = ipc::pipe_channel::create({.max_message = 16U << 20});
    const std::vector<std::byte> big(max + 1);
    try {
      (void)tx->send_for(big, 1s);
      return 13;
    } catch (const std::system_error& e) {
      r.say(e.what());
      if (e.code() != ipc::errc::message_too_large) return 14;
    }
    std::vector<std::byte> buf;
    return rx->try_receive(buf) ? 15 : 0;  // nothing of it went out
  });
  auto res = c.wait(10s);
  INFO(res.report);
  CHECK(res.exit_code == 0);
  CHECK_THAT(res.report, Catch::Contains("pipe-max-size"));
}

TEST_CASE("pipe: pipe:fd=N adopts an inherited end and makes it close-on-exec", "[pipe]") {
  raw_pipe p;
  REQUIRE((::fcntl(p.rd, F_GETFD) & FD_CLOEXEC) == 0);
  auto rx = ipc::open_channel("pipe:fd=" + std::to_string(p.rd), ipc::role::receiver);
  auto tx = ipc::open_channel("pipe:fd=" + std::to_string(p.wr) + "?max_message=100", ipc::role::sender);
  const int rd = std::exchange(p.rd, -1);  // owned by the channels now
  p.wr = -1;
  CHECK(rx->kind() == "pipe");
  CHECK(rx->readable_fd() == rd);
  CHECK((::fcntl(rd, F_GETFD) & FD_CLOEXEC) != 0);
  CHECK(tx->max_message_size() == 100);
  tx->send(ipc::as_bytes("inherited"));
  std::vector<std::byte> buf;
  REQUIRE(rx->receive_for(buf, 5s));
  CHECK(text(buf) == "inherited");
}

TEST_CASE("pipe: pipe:fd=N refuses a closed fd, a non-pipe and the wrong direction", "[pipe]") {
  SECTION("the bare pipe URI explains how pipes are made") {
    REQUIRE_THROWS_WITH(ipc::open_channel("pipe", ipc::role::receiver),
                        Catch::Contains("pipe_channel::create()") && Catch::Contains("pipe:fd=N"));
  }
  SECTION("a closed fd") {
    int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    ::close(fd);
    const std::string uri = "pipe:fd=" + std::to_string(fd);
    try {
      (void)ipc::open_channel(uri, ipc::role::receiver);
      FAIL("no throw");
    } catch (const std::system_error& e) {
      CHECK(e.code() == std::errc::bad_file_descriptor);
      CHECK_THAT(e.what(), Catch::Contains(uri));
    }
  }
  SECTION("not a pipe, and the fd is left open") {
    int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE_THROWS_WITH(ipc::open_channel("pipe:fd=" + std::to_string(fd), ipc::role::receiver),
                        Catch::Contains("character device, not a pipe"));
    CHECK(::fcntl(fd, F_GETFD) != -1);
    ::close(fd);
  }
  SECTION("the wrong direction, and the fd is left open") {
    raw_pipe p;
    REQUIRE_THROWS_WITH(ipc::open_channel("pipe:fd=" + std::to_string(p.wr), ipc::role::receiver),
                        Catch::Contains("is a write end, a receiver needs the read end"));
    REQUIRE_THROWS_WITH(ipc::open_channel("pipe:fd=" + std::to_string(p.rd), ipc::role::sender),
                        Catch::Contains("is a read end, a sender needs the write end"));
    CHECK(::fcntl(p.wr, F_GETFD) != -1);
    CHECK(::fcntl(p.rd, F_GETFD) != -1);
    try {
      (void)ipc::pipe_channel::adopt(ipc::unique_fd(::dup(p.wr)), ipc::role::receiver);
      FAIL("no throw");
    } catch (const std::system_error& e) {
      CHECK(e.code() == ipc::errc::bad_uri);
      CHECK_THAT(e.what(), Catch::Contains("pipe_channel::adopt"));
    }
  }
  SECTION("malformed fd URIs") {
    REQUIRE_THROWS_WITH(ipc::open_channel("pipe:fd=x1", ipc::role::receiver), Catch::Contains("not a number"));
    REQUIRE_THROWS_WITH(ipc::open_channel("pipe:3", ipc::role::receiver), Catch::Contains("pipe:fd=N"));
    REQUIRE_THROWS_WITH(ipc::open_channel("pipe:fd=99999999999", ipc::role::receiver), Catch::Contains("pipe:fd=N"));
    REQUIRE_THROWS_WITH(ipc::open_channel("pipe:fd=0?colour=red", ipc::role::receiver), Catch::Contains("colour"));
    REQUIRE_THROWS_WITH(ipc::open_channel("pipe:fd=0?max_message=0", ipc::role::receiver), Catch::Contains("max_message=0"));
  }
}

TEST_CASE("pipe: a released fd carries frames from an exec'd program", "[pipe]") {
  auto [tx, rx] = ipc::pipe_channel::create();
  ipc::unique_fd w = tx->release_fd();
  CHECK(tx->fd() == -1);
  CHECK((::fcntl(w.get(), F_GETFL) & O_NONBLOCK) == 0);  // a plain blocking pipe for any program
  CHECK_THROWS_WITH(tx->send(ipc::as_bytes("x")), Catch::Contains("released"));
  const int wfd = w.get();
  auto c = ipc::test::fork_child([wfd](ipc::test::reporter&) {
    if (::dup2(wfd, 1) < 0) return 126;  // dup2 clears FD_CLOEXEC on the copy only
    ::execl("/usr/bin/printf", "printf", "\\005\\000\\000\\000hello", static_cast<char*>(nullptr));
    return 127;
  });
  w.reset();
  std::vector<std::byte> buf;
  REQUIRE(rx->receive_for(buf, 10s));
  CHECK(text(buf) == "hello");
  auto res = c.wait(10s);
  CHECK(res.exit_code == 0);
  REQUIRE_THROWS_WITH(rx->receive_for(buf, 10s), Catch::Contains("peer closed"));
}
