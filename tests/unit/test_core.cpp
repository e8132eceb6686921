#include <ipc/deadline.hpp>
#include <ipc/error.hpp>
#include <ipc/unique_fd.hpp>
#include <ipc/uri.hpp>

#include "detail/layout_header.hpp"
#include "detail/sysv_key.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/ipc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <memory>

using namespace std::chrono_literals;

TEST_CASE("error: system errors name the call and the object", "[core]") {
  errno = 0;
  try {
    ipc::check_unix(::open("/nonexistent/x", O_RDONLY), "open", "/nonexistent/x");
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == std::errc::no_such_file_or_directory);
    CHECK_THAT(e.what(), Catch::StartsWith("open(/nonexistent/x): "));
  }
}

TEST_CASE("error: toolkit errors carry ipc::errc and a readable message", "[core]") {
  try {
    ipc::throw_error(ipc::errc::message_too_large, "msgsnd", "msgq:demo", "70000 > 65536 bytes");
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::message_too_large);
    CHECK(std::string(e.code().category().name()) == "ipc");
    CHECK_THAT(e.what(), Catch::Contains("msgsnd(msgq:demo): 70000 > 65536 bytes") &&
                             Catch::Contains("message too large"));
  }
}

TEST_CASE("unique_fd: closes on destruction and hands over on release", "[core]") {
  int raw = -1;
  {
    ipc::unique_fd fd{::open("/dev/null", O_RDONLY | O_CLOEXEC)};
    REQUIRE(fd);
    raw = fd.get();
  }
  CHECK(::fcntl(raw, F_GETFD) == -1);
  ipc::unique_fd a{::open("/dev/null", O_RDONLY | O_CLOEXEC)};
  ipc::unique_fd b = std::move(a);
  CHECK_FALSE(a);
  CHECK(b);
  int r = b.release();
  CHECK_FALSE(b);
  CHECK(::fcntl(r, F_GETFD) != -1);
  ::close(r);
}

TEST_CASE("deadline: never, now and in behave as their names say", "[core]") {
  CHECK(ipc::deadline::never().is_never());
  CHECK_FALSE(ipc::deadline::never().expired());
  CHECK(ipc::deadline::never().poll_timeout_ms() == -1);
  CHECK(ipc::deadline::now().expired());
  CHECK(ipc::deadline::in(-5ms).expired());
  auto d = ipc::deadline::in(200ms);
  CHECK_FALSE(d.expired());
  CHECK(d.remaining() <= 200ms);
  CHECK(d.remaining() > 100ms);
  CHECK(d.poll_timeout_ms() <= 200);
  CHECK(ipc::deadline::in(std::chrono::nanoseconds::max()).is_never());
}

TEST_CASE("sysv_key: key matches ftok and the key file is made 0600", "[core]") {
  auto path = ipc::runtime_dir() / ipc::test::unique_name("key");
  key_t k = ipc::detail::sysv_key(path, 'M', true);
  CHECK(k == ::ftok(path.c_str(), 'M'));
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(ipc::detail::sysv_key(path, 'M', false) == k);
}

TEST_CASE("sysv_key: a missing key file without create names the file", "[core]") {
  auto path = ipc::runtime_dir() / ipc::test::unique_name("missing");
  REQUIRE_THROWS_WITH(ipc::detail::sysv_key(path, 'M', false), Catch::Contains(path.string()));
}

TEST_CASE("sysv_key: a symlink in place of the key file is refused", "[core]") {
  auto target = ipc::runtime_dir() / ipc::test::unique_name("target");
  auto link = ipc::runtime_dir() / ipc::test::unique_name("link");
  ipc::detail::sysv_key(target, 'M', true);
  std::filesystem::create_symlink(target, link);
  try {
    ipc::detail::sysv_key(link, 'M', false);
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::not_owner);
    CHECK_THAT(e.what(), Catch::Contains("symlink"));
  }
}

TEST_CASE("check_owner: a foreign uid or a world-writable mode is refused", "[core]") {
  CHECK_NOTHROW(ipc::detail::check_owner(::geteuid(), 0600, "attach", "x"));
  REQUIRE_THROWS_WITH(ipc::detail::check_owner(::geteuid() + 1, 0600, "attach", "shm:x"),
                      Catch::Contains("attach(shm:x)") && Catch::Contains("owned by uid"));
  REQUIRE_THROWS_WITH(ipc::detail::check_owner(::geteuid(), 0666, "attach", "shm:x"),
                      Catch::Contains("world-writable"));
}

TEST_CASE("layout_header: a published header validates; corrupt ones are refused", "[core]") {
  alignas(64) unsigned char mem[256] = {};
  auto* h = new (mem) ipc::detail::layout_header{};
  constexpr std::uint32_t magic = 0x54455354;
  auto check = [&](std::size_t mapped) {
    ipc::detail::validate_header(h, mapped, magic, 1, sizeof(ipc::detail::layout_header),
                                 ipc::deadline::in(50ms), "test");
  };
  REQUIRE_THROWS_WITH(check(sizeof mem), Catch::Contains("never initialised"));
  ipc::detail::publish_header(h, magic, 1, sizeof(ipc::detail::layout_header), 200);
  CHECK_NOTHROW(check(sizeof mem));
  CHECK(h->creator_pid == ::getpid());
  REQUIRE_THROWS_WITH(check(100), Catch::Contains("does not fit"));
  REQUIRE_THROWS_WITH(check(8), Catch::Contains("smaller than its header"));
  h->version = 7;
  REQUIRE_THROWS_WITH(check(sizeof mem), Catch::Contains("layout version 7"));
  h->version = 1;
  h->magic = 0;
  try {
    check(sizeof mem);
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::incompatible);
  }
}

TEST_CASE("sysv_key: a FIFO planted in place of the key file is refused at once", "[core]") {
  auto path = ipc::runtime_dir() / ipc::test::unique_name("planted");
  REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
  auto t0 = std::chrono::steady_clock::now();
  try {
    ipc::detail::sysv_key(path, 'M', true);
    FAIL("no throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::not_owner);
    CHECK_THAT(e.what(), Catch::Contains(path.string()) && Catch::Contains("not a regular file"));
  }
  CHECK(std::chrono::steady_clock::now() - t0 < 2s);
}
