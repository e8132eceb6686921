// The input rules of docs/errors.md ("Input rules"), one test each: every path, name and URI part is
// judged in one place (lib/src/detail/names.hpp) for every mechanism.
#include <ipc/channel.hpp>
#include <ipc/error.hpp>
#include <ipc/fifo.hpp>
#include <ipc/semaphore.hpp>
#include <ipc/uri.hpp>

#include "confined.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

using namespace std::string_literals;

namespace {

// The error open_channel(uri) throws: its code and what().
std::pair<std::error_code, std::string> error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::system_error& e) {
    return {e.code(), e.what()};
  }
  return {{}, "no error"};
}

// Points IPC_RUNTIME_DIR at `dir` for one scope.
struct runtime_dir_as {
  std::string saved;
  explicit runtime_dir_as(const std::string& dir) : saved(std::getenv("IPC_RUNTIME_DIR")) {
    ::setenv("IPC_RUNTIME_DIR", dir.c_str(), 1);
  }
  ~runtime_dir_as() { ::setenv("IPC_RUNTIME_DIR", saved.c_str(), 1); }
};

}  // namespace

TEST_CASE("input rules: a NUL or control character anywhere in a URI is bad_uri for every scheme, nothing made",
          "[uri]") {
  const auto name = ipc::test::unique_name("nul");
  for (const std::string& scheme : std::vector<std::string>{"fifo", "msgq", "sem", "shm"}) {
    const std::string uri = scheme + ":" + name + "\0tail"s;
    auto [code, what] = error_of([&] { ipc::open_channel(uri, ipc::role::receiver); });
    INFO(uri << " -> " << what);
    CHECK(code == ipc::errc::bad_uri);
    CHECK_THAT(what, Catch::Contains("NUL") && Catch::Contains("\\x00tail"));
  }
  auto [code, what] = error_of([&] { ipc::open_channel("shm:" + name + "?capacity=1M\n", ipc::role::receiver); });
  CHECK(code == ipc::errc::bad_uri);
  CHECK_THAT(what, Catch::Contains("control character"));
  for (const auto& e : ipc::test::dir_entries(ipc::runtime_dir().string())) CHECK(e.find(name) == std::string::npos);
}

TEST_CASE("input rules: a '..' component is refused for every name, so fifo:../x cannot leave the runtime directory",
          "[uri]") {
  const auto name = ipc::test::unique_name("up");
  for (const std::string& uri : std::vector<std::string>{"fifo:../" + name, "fifo:a/../../" + name, "fifo:/tmp/../tmp/" + name, "fifo:.."}) {
    auto [code, what] = error_of([&] { ipc::open_channel(uri, ipc::role::receiver); });
    INFO(uri << " -> " << what);
    CHECK(code == ipc::errc::bad_uri);
    CHECK_THAT(what, Catch::Contains("'..'"));
  }
  CHECK_FALSE(std::filesystem::exists(ipc::runtime_dir().parent_path() / name));
  // The C++ API goes through the same judge: EINVAL naming the name.
  auto [code, what] = error_of([&] { ipc::fifo_channel::open("../" + name, ipc::role::receiver); });
  CHECK(code == std::errc::invalid_argument);
  CHECK_THAT(what, Catch::Contains("resolve_name") && Catch::Contains("'..'"));
  auto [code2, what2] = error_of([&] { ipc::semaphore_set s("../" + name, ipc::open_mode::open_or_create, {1}); });
  CHECK(code2 == std::errc::invalid_argument);
}

TEST_CASE("input rules: names and paths longer than their limits are refused before anything is made", "[uri]") {
  const std::string long_component(256, 'a');
  auto [code, what] = error_of([&] { ipc::open_channel("fifo:" + long_component, ipc::role::receiver); });
  CHECK(code == ipc::errc::bad_uri);
  CHECK_THAT(what, Catch::Contains("longer than 255"));
  std::string long_path;
  while (long_path.size() <= 4095) long_path += "abcdefgh/";
  auto [code2, what2] = error_of([&] { ipc::open_channel("fifo:" + long_path + "x", ipc::role::receiver); });
  CHECK(code2 == ipc::errc::bad_uri);
  CHECK_THAT(what2, Catch::Contains("longer than 4095"));
  auto [code3, what3] = error_of([&] { ipc::open_channel("msgq:" + std::string(201, 'q'), ipc::role::receiver); });
  CHECK(code3 == ipc::errc::bad_uri);
  CHECK_THAT(what3, Catch::Contains("longer than 200"));
  auto [code4, what4] = error_of([&] { ipc::channel_uri::parse("shm:x?" + std::string(9000, 'k') + "=1"); });
  CHECK(code4 == ipc::errc::bad_uri);
  CHECK_THAT(what4, Catch::Contains("longer than 8192"));
}

TEST_CASE("input rules: the runtime directory checks hold for any spelling: trailing slash, '.', '..'", "[uri]") {
  const std::string base = ipc::runtime_dir().string();
  const std::string real = base + "/real";
  const std::string link = base + "/link";
  REQUIRE(::mkdir(real.c_str(), 0700) == 0);
  REQUIRE(::symlink(real.c_str(), link.c_str()) == 0);
  for (const std::string& spelled : std::vector<std::string>{link, link + "/", link + "//", link + "/.", link + "/./"}) {
    runtime_dir_as env(spelled);
    auto [code, what] = error_of([] { (void)ipc::runtime_dir(); });
    INFO(spelled << " -> " << what);
    CHECK(code == ipc::errc::not_owner);
    CHECK_THAT(what, Catch::Contains("symlink"));
  }
  for (const std::string& spelled : std::vector<std::string>{real + "/../real", real + "/.."}) {
    runtime_dir_as env(spelled);
    auto [code, what] = error_of([] { (void)ipc::runtime_dir(); });
    INFO(spelled << " -> " << what);
    CHECK(code == ipc::errc::not_owner);
    CHECK_THAT(what, Catch::Contains("'..'"));
  }
  {
    runtime_dir_as env(real + "/./");
    CHECK(ipc::runtime_dir() == std::filesystem::path(real));
  }
  std::filesystem::remove(link);
  std::filesystem::remove(real);
}

TEST_CASE("input rules: an explicit size of 0 is refused by every scheme", "[uri]") {
  const auto name = ipc::test::unique_name("zero");
  for (const std::string& uri : std::vector<std::string>{"shm:" + name + "?max_message=0", "shm:" + name + "?capacity=0",
                                "sem:" + name + "?slots=0", "sem:" + name + "?max_message=0",
                                "sem:" + name + "?capacity=0", "msgq:" + name + "?capacity=0",
                                "msgq:" + name + "?max_message=0", "fifo:" + name + "?max_message=0",
                                "pipe:fd=0?max_message=0"}) {
    auto [code, what] = error_of([&] { ipc::open_channel(uri, ipc::role::receiver); });
    INFO(uri << " -> " << what);
    CHECK(code == ipc::errc::bad_uri);
    CHECK_THAT(what, Catch::Contains("=0"));
  }
  for (const auto& e : ipc::test::dir_entries(ipc::runtime_dir().string())) CHECK(e.find(name) == std::string::npos);
}

TEST_CASE("input rules: a nats: URL is judged by its own factory, not by the local name rule", "[uri]") {
  const auto uri = ipc::channel_uri::parse("nats://127.0.0.1:4222/orders.eu?jetstream=ORDERS");
  REQUIRE_NOTHROW(uri.require_safe_name());
  // The local rule still holds for a local scheme spelled the same way.
  REQUIRE_THROWS_WITH(ipc::channel_uri::parse("msgq://127.0.0.1:4222/orders").require_safe_name(),
                      Catch::Contains("may use only"));
}
