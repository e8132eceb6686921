#include <ipc/channel.hpp>
#include <ipc/error.hpp>
#include <ipc/uri.hpp>

#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

namespace {

std::error_code code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::system_error& e) {
    return e.code();
  }
  return {};
}

}  // namespace

TEST_CASE("uri: scheme, name and options are parsed", "[uri]") {
  auto u = ipc::channel_uri::parse("shm:demo?capacity=1M&max_message=4K&mode=0640");
  CHECK(u.scheme == "shm");
  CHECK(u.name == "demo");
  CHECK(u.size_option("capacity", 0) == 1024 * 1024);
  CHECK(u.size_option("max_message", 0) == 4096);
  CHECK(u.size_option("absent", 77) == 77);
  CHECK(ipc::channel_uri::parse("shm:x?a=0100&b=0x100&c=1G").size_option("a", 0) == 100);  // never octal
  CHECK(ipc::channel_uri::parse("shm:x?a=0100&b=0x100&c=1G").size_option("b", 0) == 256);
  CHECK(ipc::channel_uri::parse("shm:x?a=0100&b=0x100&c=1G").size_option("c", 0) == 1024ULL * 1024 * 1024);
  CHECK(u.mode_option() == 0640);
  CHECK(u.open_option() == ipc::open_mode::open_or_create);
  CHECK(ipc::channel_uri::parse("pipe").name.empty());
  CHECK(ipc::channel_uri::parse("fifo:/tmp/x?framing=lines").name == "/tmp/x");
  CHECK(ipc::channel_uri::parse("msgq:q?open=create_only").open_option() == ipc::open_mode::create_only);
}

TEST_CASE("uri: bad URIs are refused with the bad part named", "[uri]") {
  REQUIRE_THROWS_WITH(ipc::channel_uri::parse("tcp:host"), Catch::Contains("unknown scheme 'tcp'"));
  REQUIRE_THROWS_WITH(ipc::channel_uri::parse(""), Catch::Contains("empty URI"));
  REQUIRE_THROWS_WITH(ipc::channel_uri::parse("shm:x?capacity"), Catch::Contains("'capacity' is not key=value"));
  REQUIRE_THROWS_WITH(ipc::channel_uri::parse("shm:x?a=1&a=2"), Catch::Contains("'a' given twice"));
  REQUIRE_THROWS_WITH(ipc::channel_uri::parse("shm:x?capacity=lots").size_option("capacity", 0),
                      Catch::Contains("capacity=lots"));
  REQUIRE_THROWS_WITH(ipc::channel_uri::parse("shm:x?capacity=-1").size_option("capacity", 0),
                      Catch::Contains("capacity=-1"));
  REQUIRE_THROWS_WITH(ipc::channel_uri::parse("shm:x?mode=0666").mode_option(), Catch::Contains("any user write"));
  REQUIRE_THROWS_WITH(ipc::channel_uri::parse("shm:x?mode=9").mode_option(), Catch::Contains("octal"));
  REQUIRE_THROWS_WITH(ipc::channel_uri::parse("shm:x?open=maybe").open_option(), Catch::Contains("open=maybe"));
  REQUIRE_THROWS_WITH(ipc::channel_uri::parse("shm:x?colour=red").allow_only({"capacity"}),
                      Catch::Contains("unknown option 'colour'"));
  REQUIRE_THROWS_WITH(ipc::channel_uri::parse("shm:a/b").require_plain_name(), Catch::Contains("name 'a/b'"));
  REQUIRE_THROWS_WITH(ipc::channel_uri::parse("shm:").require_plain_name(), Catch::Contains("needs a name"));
  CHECK(code_of([] { (void)ipc::channel_uri::parse("nope:x"); }) == ipc::errc::bad_uri);
  CHECK(code_of([] { (void)ipc::open_channel("nope:x", ipc::role::sender); }) == ipc::errc::bad_uri);
}

TEST_CASE("uri: a shm mode option splits into the channel mode word and the permissions, one of each at most",
          "[uri]") {
  const auto parts = [](std::string_view text) { return ipc::channel_uri::parse(text).shm_mode(); };
  CHECK(parts("shm:q").mode == "spsc");
  CHECK_FALSE(parts("shm:q").permissions);
  CHECK(parts("shm:q?mode=mpmc").mode == "mpmc");
  CHECK_FALSE(parts("shm:q?mode=mpmc").permissions);
  CHECK(parts("shm:q?mode=broadcast,0640").mode == "broadcast");
  CHECK(parts("shm:q?mode=0640,broadcast").permissions == "0640");
  CHECK(parts("shm:q?mode=0600").mode == "spsc");
  CHECK(parts("shm:q?mode=0600").permissions == "0600");
  CHECK(parts("shm:q?mode=").permissions == "");  // left for mode_option to refuse
  for (const char* twice : {"shm:q?mode=mpmc,broadcast", "shm:q?mode=0600,0640"}) {
    INFO(twice);
    try {
      (void)parts(twice);
      FAIL("accepted");
    } catch (const std::system_error& e) {
      CHECK(e.code() == ipc::errc::bad_uri);
      CHECK_THAT(e.what(), Catch::Contains("names more than one") && Catch::Contains(twice));
    }
  }
}

TEST_CASE("uri: relative names resolve in IPC_RUNTIME_DIR, absolute ones stay", "[uri]") {
  const char* dir = std::getenv("IPC_RUNTIME_DIR");
  REQUIRE(dir != nullptr);
  CHECK(ipc::resolve_name("demo") == std::filesystem::path(dir) / "demo");
  CHECK(ipc::resolve_name("/tmp/abs") == "/tmp/abs");
}

TEST_CASE("uri: a world-writable runtime directory is refused", "[uri]") {
  const std::string saved = std::getenv("IPC_RUNTIME_DIR");
  auto dir = std::filesystem::path(saved) / "open-to-all";
  std::filesystem::create_directory(dir);
  ::chmod(dir.c_str(), 0777);
  ::setenv("IPC_RUNTIME_DIR", dir.c_str(), 1);
  auto code = code_of([] { (void)ipc::runtime_dir(); });
  ::setenv("IPC_RUNTIME_DIR", saved.c_str(), 1);
  CHECK(code == ipc::errc::not_owner);
}

TEST_CASE("uri: a missing runtime directory is created 0700", "[uri]") {
  const std::string saved = std::getenv("IPC_RUNTIME_DIR");
  auto dir = std::filesystem::path(saved) / "fresh";
  ::setenv("IPC_RUNTIME_DIR", dir.c_str(), 1);
  auto got = ipc::runtime_dir();
  ::setenv("IPC_RUNTIME_DIR", saved.c_str(), 1);
  struct stat st {};
  REQUIRE(::stat(got.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
}
