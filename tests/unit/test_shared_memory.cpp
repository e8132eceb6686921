#include <ipc/error.hpp>
#include <ipc/shared_memory.hpp>
#include <ipc/unique_fd.hpp>
#include <ipc/uri.hpp>

#include "detail/layout_header.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <thread>

using namespace std::chrono_literals;
using ipc::layout_segment;
using ipc::layout_spec;
using ipc::open_mode;
using ipc::posix_segment;
using ipc::segment_backing;
using ipc::sysv_segment;

namespace {

ipc::test::on_exit segment_cleanup(segment_backing backing, const std::string& name) {
  return ipc::test::on_exit([=] { layout_segment::remove(backing, name); });
}

template <class Code>
auto has_code(Code code) {
  return Catch::Predicate<std::system_error>([code](const std::system_error& e) { return e.code() == code; },
                                             "the expected error code");
}

struct test_header {
  ipc::detail::layout_header base;
  std::uint64_t answer;
};
constexpr layout_spec test_spec{0x54455354, 3, sizeof(test_header), 1000};

}  // namespace

TEST_CASE("posix_segment: a new segment is /dev/shm/libipc.NAME, 0600, and shared between handles", "[segment]") {
  auto name = ipc::test::unique_name("pseg");
  auto cleanup = segment_cleanup(segment_backing::posix, name);
  posix_segment a(name, open_mode::create_only, 8192);
  CHECK(a.created());
  CHECK(a.size() == 8192);
  CHECK(a.object() == "/dev/shm/libipc." + name);
  struct stat st {};
  REQUIRE(::stat(a.object().c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(st.st_size == 8192);
  std::memcpy(a.data() + 100, "hello", 5);

  posix_segment b(name, open_mode::open_or_create, 8192);
  CHECK_FALSE(b.created());
  CHECK(b.size() == 8192);
  CHECK(std::memcmp(b.data() + 100, "hello", 5) == 0);
  CHECK(b.data()[8191] == std::byte{0});

  b.remove();
  CHECK_FALSE(std::filesystem::exists(a.object()));
  CHECK(std::memcmp(a.data() + 100, "hello", 5) == 0);  // mappings outlive the name
  CHECK_FALSE(posix_segment::remove(name));
}

TEST_CASE("posix_segment: an opener waits for the creator to size the segment", "[segment]") {
  auto name = ipc::test::unique_name("psize");
  auto cleanup = segment_cleanup(segment_backing::posix, name);
  // A creator between shm_open and ftruncate.
  ipc::unique_fd fd{::shm_open(("/" + posix_segment::posix_name(name)).c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
                               0600)};
  REQUIRE(fd);
  std::thread creator([&] {
    std::this_thread::sleep_for(200ms);
    (void)::ftruncate(fd.get(), 4096);
  });
  auto t0 = std::chrono::steady_clock::now();
  posix_segment s(name, open_mode::open_only, 0);
  creator.join();
  CHECK(s.size() == 4096);
  CHECK(std::chrono::steady_clock::now() - t0 >= 150ms);
}

TEST_CASE("posix_segment: a segment never sized is refused after a bounded wait", "[segment]") {
  auto name = ipc::test::unique_name("pzero");
  auto cleanup = segment_cleanup(segment_backing::posix, name);
  ipc::unique_fd fd{::shm_open(("/" + posix_segment::posix_name(name)).c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
                               0600)};
  REQUIRE(fd);
  auto t0 = std::chrono::steady_clock::now();
  CHECK_THROWS_MATCHES(posix_segment(name, open_mode::open_only, 0), std::system_error,
                       has_code(ipc::errc::incompatible));
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);
}

TEST_CASE("posix_segment: a world-writable or foreign segment is refused with not_owner", "[segment]") {
  auto name = ipc::test::unique_name("powner");
  auto cleanup = segment_cleanup(segment_backing::posix, name);
  posix_segment s(name, open_mode::create_only, 4096);
  REQUIRE(::chmod(s.object().c_str(), 0666) == 0);
  CHECK_THROWS_MATCHES(posix_segment(name, open_mode::open_only, 0), std::system_error,
                       has_code(ipc::errc::not_owner));
  REQUIRE(::chmod(s.object().c_str(), 0600) == 0);
  if (::geteuid() == 0) {  // only root may give a segment away
    REQUIRE(::chown(s.object().c_str(), 65534, 65534) == 0);
    CHECK_THROWS_WITH(posix_segment(name, open_mode::open_or_create, 4096), Catch::Contains("owned by uid 65534"));
    CHECK_THROWS_MATCHES(posix_segment::remove(name), std::system_error, has_code(ipc::errc::not_owner));
    REQUIRE(::chown(s.object().c_str(), ::geteuid(), ::getegid()) == 0);
  }
  CHECK_NOTHROW(posix_segment(name, open_mode::open_only, 4096));
}

TEST_CASE("posix_segment: zero, absurd or mismatched sizes and bad names fail clearly", "[segment]") {
  auto name = ipc::test::unique_name("pbad");
  auto cleanup = segment_cleanup(segment_backing::posix, name);
  CHECK_THROWS_MATCHES(posix_segment(name, open_mode::create_only, 0), std::system_error,
                       has_code(std::errc::invalid_argument));
  CHECK_THROWS_WITH(posix_segment(name, open_mode::create_only, std::size_t{1} << 50), Catch::Contains("size"));
  CHECK_FALSE(std::filesystem::exists("/dev/shm/libipc." + name));
  CHECK_THROWS_WITH(posix_segment("../etc", open_mode::create_only, 64), Catch::Contains("shm_open"));
  CHECK_THROWS_WITH(posix_segment("a/b", open_mode::create_only, 64), Catch::Contains("shm_open"));
  CHECK_THROWS_MATCHES(posix_segment(name, open_mode::open_only, 0), std::system_error,
                       has_code(std::errc::no_such_file_or_directory));
  posix_segment s(name, open_mode::create_only, 4096);
  CHECK_THROWS_MATCHES(posix_segment(name, open_mode::open_only, 8192), std::system_error,
                       has_code(ipc::errc::incompatible));
  CHECK_THROWS_MATCHES(posix_segment(name, open_mode::create_only, 4096), std::system_error,
                       has_code(std::errc::file_exists));
}

TEST_CASE("sysv_segment: a segment under key NAME.shm is shared, counted and owner-checked", "[segment]") {
  auto name = ipc::test::unique_name("vseg");
  auto cleanup = segment_cleanup(segment_backing::sysv, name);
  sysv_segment a(name, open_mode::create_only, 10000);
  auto key_file = ipc::runtime_dir() / (name + ".shm");
  CHECK(a.key() == ::ftok(key_file.c_str(), 'H'));
  CHECK(a.size() == 10000);
  CHECK(a.attached() == 1);
  std::memcpy(a.data(), "abc", 3);
  {
    sysv_segment b(name, open_mode::open_only, 0);
    CHECK(a.attached() == 2);
    CHECK(std::memcmp(b.data(), "abc", 3) == 0);
    CHECK_THROWS_MATCHES(sysv_segment(name, open_mode::open_only, 20000), std::system_error,
                         has_code(ipc::errc::incompatible));
  }
  CHECK(a.attached() == 1);

  shmid_ds ds{};
  REQUIRE(::shmctl(a.id(), IPC_STAT, &ds) == 0);
  CHECK((ds.shm_perm.mode & 0777) == 0600);
  shmid_ds bad = ds;
  bad.shm_perm.mode = 0666;
  REQUIRE(::shmctl(a.id(), IPC_SET, &bad) == 0);
  CHECK_THROWS_MATCHES(sysv_segment(name, open_mode::open_only, 0), std::system_error, has_code(ipc::errc::not_owner));
  if (::geteuid() == 0) {
    bad = ds;
    bad.shm_perm.uid = 65534;
    REQUIRE(::shmctl(a.id(), IPC_SET, &bad) == 0);
    CHECK_THROWS_WITH(sysv_segment(name, open_mode::open_only, 0), Catch::Contains("owned by uid 65534"));
  }
  REQUIRE(::shmctl(a.id(), IPC_SET, &ds) == 0);
  CHECK_THROWS_MATCHES(sysv_segment(name, open_mode::create_only, 64), std::system_error,
                       has_code(std::errc::file_exists));
  auto zero = ipc::test::unique_name("vzero");
  CHECK_THROWS_MATCHES(sysv_segment(zero, open_mode::create_only, 0), std::system_error,
                       has_code(std::errc::invalid_argument));
  CHECK_FALSE(std::filesystem::exists(ipc::runtime_dir() / (zero + ".shm")));
  a.remove();
  CHECK_FALSE(std::filesystem::exists(key_file));
  CHECK_FALSE(sysv_segment::remove(name));
}

TEST_CASE("layout_segment: the creator initialises and publishes, openers validate", "[segment]") {
  for (auto backing : {segment_backing::posix, segment_backing::sysv}) {
    auto name = ipc::test::unique_name("layout");
    auto cleanup = segment_cleanup(backing, name);
    int calls = 0;
    layout_segment c(backing, name, open_mode::create_only, test_spec, [&](std::byte* base, std::size_t total) {
      ++calls;
      CHECK(total == sizeof(test_header) + 1000);
      reinterpret_cast<test_header*>(base)->answer = 42;
    });
    CHECK(calls == 1);
    CHECK(c.created());
    CHECK(c.size() == sizeof(test_header) + 1000);
    CHECK(c.payload_size() == 1000);
    CHECK(c.creator_pid() == ::getpid());
    CHECK(c.header().magic == test_spec.magic);
    c.payload()[999] = std::byte{7};

    layout_segment o(backing, name, open_mode::open_or_create, test_spec, [&](std::byte*, std::size_t) { ++calls; });
    CHECK(calls == 1);  // openers never initialise
    CHECK_FALSE(o.created());
    CHECK(o.header_as<test_header>()->answer == 42);
    CHECK(o.payload()[999] == std::byte{7});

    layout_spec any = test_spec;
    any.payload_bytes = 0;
    layout_segment p(backing, name, open_mode::open_only, any);
    CHECK(p.payload_size() == 1000);

    layout_spec other_version = test_spec;
    other_version.version = 4;
    CHECK_THROWS_MATCHES(layout_segment(backing, name, open_mode::open_only, other_version), std::system_error,
                         has_code(ipc::errc::incompatible));
    layout_spec other_payload = test_spec;
    other_payload.payload_bytes = 500;
    CHECK_THROWS_MATCHES(layout_segment(backing, name, open_mode::open_only, other_payload), std::system_error,
                         has_code(ipc::errc::incompatible));
  }
}

TEST_CASE("layout_segment: a hostile header (wrong magic, absurd total_size) is incompatible, not a crash",
          "[segment]") {
  auto name = ipc::test::unique_name("hostile");
  auto cleanup = segment_cleanup(segment_backing::posix, name);
  const std::size_t bytes = sizeof(test_header) + 1000;
  posix_segment raw(name, open_mode::create_only, bytes);
  auto* h = reinterpret_cast<ipc::detail::layout_header*>(raw.data());
  ipc::detail::publish_header(h, 0xdeadbeef, test_spec.version, sizeof(test_header), bytes);
  CHECK_THROWS_MATCHES(layout_segment(segment_backing::posix, name, open_mode::open_only, test_spec),
                       std::system_error, has_code(ipc::errc::incompatible));

  ipc::detail::publish_header(h, test_spec.magic, test_spec.version, sizeof(test_header), std::size_t{1} << 60);
  CHECK_THROWS_WITH(layout_segment(segment_backing::posix, name, open_mode::open_only, test_spec),
                    Catch::Contains("does not fit"));

  ipc::detail::publish_header(h, test_spec.magic, test_spec.version, 1u << 30, bytes);
  CHECK_THROWS_MATCHES(layout_segment(segment_backing::posix, name, open_mode::open_only, test_spec),
                       std::system_error, has_code(ipc::errc::incompatible));

  // Too small to even hold a header.
  auto tiny = ipc::test::unique_name("tiny");
  auto tiny_cleanup = segment_cleanup(segment_backing::posix, tiny);
  posix_segment t(tiny, open_mode::create_only, 8);
  layout_spec any = test_spec;
  any.payload_bytes = 0;
  CHECK_THROWS_MATCHES(layout_segment(segment_backing::posix, tiny, open_mode::open_only, any), std::system_error,
                       has_code(ipc::errc::incompatible));
}

TEST_CASE("layout_segment: a header never published is refused after a bounded wait", "[segment]") {
  auto name = ipc::test::unique_name("unpub");
  auto cleanup = segment_cleanup(segment_backing::sysv, name);
  sysv_segment raw(name, open_mode::create_only, sizeof(test_header) + 1000);  // zero-filled: state 0
  auto t0 = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH(layout_segment(segment_backing::sysv, name, open_mode::open_only, test_spec),
                    Catch::Contains("never initialised"));
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);
}

TEST_CASE("layout_segment: a failing init or a bad spec leaves nothing behind", "[segment]") {
  for (auto backing : {segment_backing::posix, segment_backing::sysv}) {
    auto name = ipc::test::unique_name("initfail");
    auto cleanup = segment_cleanup(backing, name);
    CHECK_THROWS_WITH(layout_segment(backing, name, open_mode::create_only, test_spec,
                                     [](std::byte*, std::size_t) { throw std::runtime_error("init failed"); }),
                      "init failed");
    CHECK_FALSE(layout_segment::remove(backing, name));  // the segment was removed already
    layout_spec small = test_spec;
    small.header_size = 4;
    CHECK_THROWS_WITH(layout_segment(backing, name, open_mode::create_only, small), Catch::Contains("header_size"));
    layout_spec huge = test_spec;
    huge.payload_bytes = std::size_t{1} << 62;
    CHECK_THROWS_WITH(layout_segment(backing, name, open_mode::create_only, huge), Catch::Contains("payload"));
    CHECK_FALSE(layout_segment::remove(backing, name));
  }
}
