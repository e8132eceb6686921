#include <ipc/channel.hpp>
#include <ipc/error.hpp>
#include <ipc/fifo.hpp>
#include <ipc/uri.hpp>

#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

using steady = std::chrono::steady_clock;

std::string text(const std::vector<std::byte>& b) { return std::string(ipc::as_text(b)); }

// A unique absolute FIFO path in this test process's runtime directory.
std::string fifo_path(std::string_view prefix) {
  return (ipc::runtime_dir() / (ipc::test::unique_name(prefix) + ".fifo")).string();
}

template <typename F>
std::system_error thrown_by(F&& f) {
  try {
    f();
  } catch (const std::system_error& e) {
    return e;
  }
  FAIL("no std::system_error thrown");
  throw std::logic_error("unreachable");
}

}  // namespace

TEST_CASE("fifo: open creates a FIFO with mode 0600 in the runtime directory", "[fifo]") {
  const std::string name = ipc::test::unique_name("mk") + ".fifo";
  auto rx = ipc::fifo_channel::open(name, ipc::role::receiver);
  const auto path = ipc::runtime_dir() / name;
  CHECK(rx->path() == path);
  CHECK(rx->name() == "fifo:" + path.string());
  CHECK(rx->kind() == "fifo");
  struct stat st {};
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  CHECK(S_ISFIFO(st.st_mode));
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(rx->readable_fd() >= 0);
  CHECK((::fcntl(rx->readable_fd(), F_GETFD) & FD_CLOEXEC) != 0);
  CHECK(rx->limits().max_message_size == 64 * 1024);
  CHECK(rx->limits().capacity_bytes == static_cast<std::size_t>(::fcntl(rx->readable_fd(), F_GETPIPE_SZ)));
}

TEST_CASE("fifo: mode= is applied exactly, whatever the umask", "[fifo]") {
  const std::string path = fifo_path("mode");
  const mode_t old = ::umask(077);
  auto rx = ipc::open_channel("fifo:" + path + "?mode=0640", ipc::role::receiver);
  ::umask(old);
  struct stat st {};
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0640);
}

TEST_CASE("fifo: create_only and open_only fail naming the call and the path", "[fifo]") {
  const std::string path = fifo_path("excl");
  SECTION("create_only on an existing FIFO") {
    auto rx = ipc::fifo_channel::open(path, ipc::role::receiver);
    auto e = thrown_by([&] { (void)ipc::open_channel("fifo:" + path + "?open=create_only", ipc::role::receiver); });
    CHECK(e.code() == std::errc::file_exists);
    CHECK_THAT(e.what(), Catch::Contains("mkfifo(" + path + ")"));
  }
  SECTION("open_only on a missing path") {
    auto e = thrown_by([&] { (void)ipc::fifo_channel::open(path, ipc::role::sender, {.open = ipc::open_mode::open_only}); });
    CHECK(e.code() == std::errc::no_such_file_or_directory);
    CHECK_THAT(e.what(), Catch::Contains("open(" + path + ")"));
    CHECK(::access(path.c_str(), F_OK) != 0);
  }
}

TEST_CASE("fifo: a symlink at the path is refused for both roles", "[fifo]") {
  const std::string target = fifo_path("target");
  REQUIRE(::mkfifo(target.c_str(), 0600) == 0);
  const std::string path = fifo_path("link");
  REQUIRE(::symlink(target.c_str(), path.c_str()) == 0);
  for (auto r : {ipc::role::receiver, ipc::role::sender}) {
    auto e = thrown_by([&] { (void)ipc::fifo_channel::open(path, r); });
    CHECK(e.code() == ipc::errc::not_owner);
    CHECK_THAT(e.what(), Catch::Contains("open(" + path + ")") && Catch::Contains("symbolic link"));
  }
  struct stat st {};
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  CHECK(S_ISLNK(st.st_mode));  // left alone
}

TEST_CASE("fifo: a regular file at the path is refused and left alone", "[fifo]") {
  const std::string path = fifo_path("regular");
  { std::ofstream(path) << "data"; }
  for (auto r : {ipc::role::receiver, ipc::role::sender}) {
    auto e = thrown_by([&] { (void)ipc::fifo_channel::open(path, r); });
    CHECK(e.code() == ipc::errc::not_owner);
    CHECK_THAT(e.what(), Catch::Contains(path) && Catch::Contains("regular file, not a FIFO"));
  }
  std::ifstream in(path);
  std::string content;
  in >> content;
  CHECK(content == "data");
}

TEST_CASE("fifo: a world-writable FIFO is refused", "[fifo]") {
  const std::string path = fifo_path("wide");
  REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
  REQUIRE(::chmod(path.c_str(), 0622) == 0);
  auto e = thrown_by([&] { (void)ipc::fifo_channel::open(path, ipc::role::receiver); });
  CHECK(e.code() == ipc::errc::not_owner);
  CHECK_THAT(e.what(), Catch::Contains(path) && Catch::Contains("world-writable"));
}

TEST_CASE("fifo: a FIFO of another owner is refused", "[fifo]") {
  // Only root can give a file away; the test suite runs as root (see docs/pipe-fifo.md).
  REQUIRE(::geteuid() == 0);
  const std::string path = fifo_path("foreign");
  REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
  REQUIRE(::chown(path.c_str(), 65534, 65534) == 0);
  auto e = thrown_by([&] { (void)ipc::fifo_channel::open(path, ipc::role::sender); });
  CHECK(e.code() == ipc::errc::not_owner);
  CHECK_THAT(e.what(), Catch::Contains(path) && Catch::Contains("owned by uid 65534"));
}

TEST_CASE("fifo: the reader first, then a writer process", "[fifo]") {
  const std::string path = fifo_path("rfirst");
  auto rx = ipc::fifo_channel::open(path, ipc::role::receiver);
  std::vector<std::byte> buf;
  CHECK_FALSE(rx->try_receive(buf));  // no writer yet is not end of stream
  auto c = ipc::test::fork_child([&](ipc::test::reporter&) {
    auto tx = ipc::open_channel("fifo:" + path + "?open=open_only", ipc::role::sender);
    return tx->send_for(ipc::as_bytes("from the writer"), 10s) ? 0 : 1;
  });
  REQUIRE(rx->receive_for(buf, 10s));
  CHECK(text(buf) == "from the writer");
  auto res = c.wait(10s);
  INFO(res.report);
  CHECK(res.exit_code == 0);
  REQUIRE_THROWS_WITH(rx->receive_for(buf, 10s), Catch::Contains("read(fifo:" + path + ")") && Catch::Contains("peer closed"));
}

TEST_CASE("fifo: the writer first, then a reader process", "[fifo]") {
  const std::string path = fifo_path("wfirst");
  auto tx = ipc::fifo_channel::open(path, ipc::role::sender);
  CHECK_FALSE(tx->connected());
  CHECK(tx->readable_fd() == -1);
  auto c = ipc::test::fork_child([&](ipc::test::reporter& r) {
    std::this_thread::sleep_for(100ms);  // the writer is already waiting in send_for
    auto rx = ipc::fifo_channel::open(path, ipc::role::receiver, {.open = ipc::open_mode::open_only});
    std::vector<std::byte> buf;
    if (!rx->receive_for(buf, 10s)) return 1;
    r.say("got ", ipc::as_text(buf));
    return 0;
  });
  CHECK(tx->send_for(ipc::as_bytes("waited for you"), 10s));
  CHECK(tx->connected());
  auto res = c.wait(10s);
  CHECK(res.exit_code == 0);
  CHECK(res.report == "got waited for you\n");
}

TEST_CASE("fifo: send_for without a reader returns false after the timeout", "[fifo]") {
  auto tx = ipc::fifo_channel::open(fifo_path("alone"), ipc::role::sender);
  const auto t0 = steady::now();
  CHECK_FALSE(tx->send_for(ipc::as_bytes("anyone?"), 100ms));
  const auto took = steady::now() - t0;
  CHECK(took >= 95ms);
  CHECK(took < 2s);
  CHECK_FALSE(tx->try_send(ipc::as_bytes("anyone?")));
  CHECK(tx->counters().send_timeouts == 2);
  CHECK(tx->limits().capacity_bytes > 0);
}

TEST_CASE("fifo: a writer that goes away is seen as closed, and reopen waits for the next one", "[fifo]") {
  const std::string path = fifo_path("again");
  auto rx = ipc::fifo_channel::open(path, ipc::role::receiver);
  auto writer = [&](const char* msg) {
    return ipc::test::fork_child([&path, msg](ipc::test::reporter&) {
      auto tx = ipc::fifo_channel::open(path, ipc::role::sender);
      return tx->send_for(ipc::as_bytes(msg), 10s) ? 0 : 1;
    });
  };
  std::vector<std::byte> buf;
  auto first = writer("one");
  REQUIRE(first.wait(10s).exit_code == 0);
  REQUIRE(rx->receive_for(buf, 10s));
  CHECK(text(buf) == "one");
  auto e = thrown_by([&] { (void)rx->receive_for(buf, 10s); });
  CHECK(e.code() == ipc::errc::closed);
  rx->reopen();
  CHECK_FALSE(rx->try_receive(buf));  // waiting for a writer, not closed
  auto second = writer("two");
  REQUIRE(rx->receive_for(buf, 10s));
  CHECK(text(buf) == "two");
  CHECK(second.wait(10s).exit_code == 0);
}

TEST_CASE("fifo: the writer gets closed, not SIGPIPE, when the reader leaves", "[fifo]") {
  const std::string path = fifo_path("gone");
  auto rx = ipc::fifo_channel::open(path, ipc::role::receiver);
  auto tx = ipc::fifo_channel::open(path, ipc::role::sender);
  REQUIRE(tx->connected());
  rx.reset();
  auto e = thrown_by([&] { tx->send(ipc::as_bytes("lost")); });
  CHECK(e.code() == ipc::errc::closed);
  CHECK_THAT(e.what(), Catch::Contains("write(fifo:" + path + ")"));
  tx->reopen();
  CHECK_FALSE(tx->connected());
  CHECK_FALSE(tx->send_for(ipc::as_bytes("later"), 50ms));
}

TEST_CASE("fifo: framing=lines talks to the shell", "[fifo]") {
  const std::string path = fifo_path("lines");
  const std::string uri = "fifo:" + path + "?framing=lines";
  std::vector<std::byte> buf;
  SECTION("echo is a writer") {
    auto rx = ipc::open_channel(uri, ipc::role::receiver);
    auto c = ipc::test::spawn({"/bin/sh", "-c", "echo hello > '" + path + "'"});
    REQUIRE(rx->receive_for(buf, 10s));
    CHECK(text(buf) == "hello");
    CHECK(c.wait(10s).exit_code == 0);
  }
  SECTION("printf writes several lines and an unterminated last one") {
    auto rx = ipc::open_channel(uri, ipc::role::receiver);
    auto c = ipc::test::spawn({"/bin/sh", "-c", "printf 'a\\n\\nb\\ntail' > '" + path + "'"});
    for (const char* want : {"a", "", "b", "tail"}) {
      REQUIRE(rx->receive_for(buf, 10s));
      CHECK(text(buf) == want);
    }
    CHECK(c.wait(10s).exit_code == 0);
    CHECK_THROWS_WITH(rx->receive_for(buf, 10s), Catch::Contains("peer closed"));
  }
  SECTION("head is a reader") {
    auto tx = ipc::open_channel(uri, ipc::role::sender);
    auto c = ipc::test::spawn({"/usr/bin/head", "-n1", path});
    REQUIRE(tx->send_for(ipc::as_bytes("hi there"), 10s));
    tx.reset();
    auto res = c.wait(10s);
    CHECK(res.exit_code == 0);
    CHECK(res.report == "hi there\n");
  }
  SECTION("a message containing a newline is refused") {
    auto rx = ipc::open_channel(uri, ipc::role::receiver);
    auto tx = ipc::open_channel(uri, ipc::role::sender);
    auto e = thrown_by([&] { tx->send(ipc::as_bytes("two\nlines")); });
    CHECK(e.code() == ipc::errc::corrupt);
    CHECK_THAT(e.what(), Catch::Contains("send(fifo:" + path + ")") && Catch::Contains("framing=lines"));
    CHECK_FALSE(rx->try_receive(buf));
  }
  SECTION("a line longer than max_message is skipped to its newline and counted; the stream goes on") {
    auto rx = ipc::open_channel(uri + "&max_message=8", ipc::role::receiver);
    auto c = ipc::test::spawn({"/bin/sh", "-c", "printf 'ok\\n0123456789\\n\\nnext\\nabcdefghijklmnop' > '" + path + "'"});
    for (const char* want : {"ok", "", "next"}) {
      REQUIRE(rx->receive_for(buf, 10s));
      CHECK(text(buf) == want);
    }
    // The unterminated last line is over-long too: dropped at the end of the stream, not delivered.
    auto e = thrown_by([&] { (void)rx->receive_for(buf, 10s); });
    CHECK(e.code() == ipc::errc::closed);
    CHECK(rx->counters().messages_skipped == 2);
    CHECK(rx->counters().messages_received == 3);
    CHECK(c.wait(10s).exit_code == 0);
  }
}

TEST_CASE("fifo: a skipped line's tail never arrives as a line, across reopen() through the base class", "[fifo]") {
  const std::string path = fifo_path("skip");
  std::unique_ptr<ipc::channel> rx = ipc::open_channel("fifo:" + path + "?framing=lines&max_message=8", ipc::role::receiver);
  std::vector<std::byte> buf;
  auto write_raw = [](int fd, std::string_view s) { return ::write(fd, s.data(), s.size()) == static_cast<ssize_t>(s.size()); };
  SECTION("the writer stays: the skip goes on through reopen()") {
    ipc::unique_fd w(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    REQUIRE(w);
    REQUIRE(write_raw(w.get(), "first\n0123456789ab"));  // an over-long line, its end not written yet
    REQUIRE(rx->receive_for(buf, 5s));
    CHECK(text(buf) == "first");
    CHECK_FALSE(rx->receive_for(buf, 100ms));  // the skip has begun; nothing to deliver
    CHECK(rx->counters().messages_skipped == 1);
    rx->reopen();  // no cast: channel::reopen
    REQUIRE(write_raw(w.get(), "cdef\nafter\n"));
    REQUIRE(rx->receive_for(buf, 5s));
    CHECK(text(buf) == "after");  // not "cdef"
    CHECK(rx->counters().messages_skipped == 1);
  }
  SECTION("the writer leaves inside the line: the skip ends with the stream, the next writer is heard whole") {
    {
      ipc::unique_fd w(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
      REQUIRE(w);
      REQUIRE(write_raw(w.get(), "0123456789abcdef"));
    }
    auto e = thrown_by([&] { (void)rx->receive_for(buf, 5s); });
    CHECK(e.code() == ipc::errc::closed);
    CHECK(rx->counters().messages_skipped == 1);
    rx->reopen();
    ipc::unique_fd w(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    REQUIRE(w);
    REQUIRE(write_raw(w.get(), "tail\n"));
    REQUIRE(rx->receive_for(buf, 5s));
    CHECK(text(buf) == "tail");
  }
  rx->remove();
}

TEST_CASE("fifo: a bogus length from a raw writer is corrupt", "[fifo]") {
  const std::string path = fifo_path("bogus");
  auto rx = ipc::fifo_channel::open(path, ipc::role::receiver);
  ipc::unique_fd w(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  REQUIRE(w);
  const unsigned char bogus[] = {0x00, 0x00, 0x00, 0x01};
  REQUIRE(::write(w.get(), bogus, sizeof bogus) == 4);
  std::vector<std::byte> buf;
  auto e = thrown_by([&] { (void)rx->receive_for(buf, 5s); });
  CHECK(e.code() == ipc::errc::corrupt);
  CHECK_THAT(e.what(), Catch::Contains("fifo:" + path) && Catch::Contains("frame length 16777216 exceeds max_message 65536"));
  // Sticky: the length framing has nothing to resynchronise on.
  CHECK_THROWS_WITH(rx->try_receive(buf), Catch::Contains("frame length 16777216"));
  // reopen() drops the broken stream (what the FIFO holds now); frames written after it arrive.
  REQUIRE(::write(w.get(), "rest of it", 10) == 10);
  static_cast<ipc::channel&>(*rx).reopen();
  auto tx = ipc::fifo_channel::open(path, ipc::role::sender);
  REQUIRE(tx->send_for(ipc::as_bytes("good"), 5s));
  REQUIRE(rx->receive_for(buf, 5s));
  CHECK(text(buf) == "good");
  rx->remove();
}

TEST_CASE("fifo: a writer that dies mid-frame: reopen() skips the torn frame and the next writer's frames arrive whole",
          "[fifo]") {
  const std::string path = fifo_path("torn");
  auto rx = ipc::fifo_channel::open(path, ipc::role::receiver);
  {
    ipc::unique_fd w(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    REQUIRE(w);
    const unsigned char torn[] = {0x0a, 0x00, 0x00, 0x00, 'h', 'a', 'l', 'f'};  // 4 of 10 payload bytes
    REQUIRE(::write(w.get(), torn, sizeof torn) == static_cast<ssize_t>(sizeof torn));
  }  // the writer is gone mid-frame
  std::vector<std::byte> buf;
  auto e = thrown_by([&] { (void)rx->receive_for(buf, 5s); });
  CHECK(e.code() == ipc::errc::corrupt);
  CHECK_THAT(e.what(), Catch::Contains("stream ended inside a frame after 8 of 14 bytes"));
  static_cast<ipc::channel&>(*rx).reopen();
  CHECK(rx->counters().messages_skipped == 1);
  auto tx = ipc::fifo_channel::open(path, ipc::role::sender);
  REQUIRE(tx->send_for(ipc::as_bytes("next whole"), 5s));
  REQUIRE(rx->receive_for(buf, 5s));
  CHECK(text(buf) == "next whole");  // not glued to the torn bytes
  CHECK(rx->counters().messages_skipped == 1);
  rx->remove();
}

TEST_CASE("fifo: remove unlinks the path; the destructor does not", "[fifo]") {
  const std::string path = fifo_path("rm");
  {
    auto rx = ipc::fifo_channel::open(path, ipc::role::receiver);
  }
  CHECK(::access(path.c_str(), F_OK) == 0);
  auto rx = ipc::fifo_channel::open(path, ipc::role::receiver, {.open = ipc::open_mode::open_only});
  rx->remove();
  CHECK(::access(path.c_str(), F_OK) != 0);
  CHECK_NOTHROW(rx->remove());  // already gone is fine
}

TEST_CASE("fifo: bad fifo URIs are refused with a clear error", "[fifo]") {
  const std::string path = fifo_path("uri");
  REQUIRE_THROWS_WITH(ipc::open_channel("fifo", ipc::role::receiver), Catch::Contains("fifo needs a path"));
  REQUIRE_THROWS_WITH(ipc::open_channel("fifo:" + path + "?framing=xml", ipc::role::receiver), Catch::Contains("framing=xml"));
  REQUIRE_THROWS_WITH(ipc::open_channel("fifo:" + path + "?max_message=0", ipc::role::receiver), Catch::Contains("max_message=0"));
  REQUIRE_THROWS_WITH(ipc::open_channel("fifo:" + path + "?max_message=17M", ipc::role::receiver), Catch::Contains("max_message"));
  REQUIRE_THROWS_WITH(ipc::open_channel("fifo:" + path + "?mode=0666", ipc::role::receiver), Catch::Contains("mode=0666"));
  REQUIRE_THROWS_WITH(ipc::open_channel("fifo:" + path + "?capacity=1M", ipc::role::receiver), Catch::Contains("capacity"));
  CHECK(::access(path.c_str(), F_OK) != 0);  // nothing half-created
}
