// Every constructor that creates a kernel object refuses a mode the toolkit never creates with
// (world-writable, owner without read+write) before anything exists, so nothing is left behind.
#include <ipc/msg_queue.hpp>
#include <ipc/semaphore.hpp>
#include <ipc/shared_memory.hpp>
#include <ipc/shm_ring.hpp>
#include <ipc/uri.hpp>

#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <filesystem>
#include <functional>
#include <system_error>

namespace {

void refused(const std::function<void()>& create, const std::string& call) {
  try {
    create();
    FAIL("created with a bad mode");
  } catch (const std::system_error& e) {
    CHECK(e.code() == std::errc::invalid_argument);
    CHECK_THAT(e.what(), Catch::Contains(call) && Catch::Contains("mode 0"));
  }
}

}  // namespace

TEST_CASE("modes: a world-writable or owner-unreadable mode is refused and nothing is created", "[core]") {
  for (mode_t bad : {mode_t{0666}, mode_t{0602}, mode_t{0200}}) {
    INFO("mode " << std::oct << bad);
    const auto name = ipc::test::unique_name("mode");
    refused([&] { ipc::posix_segment(name, ipc::open_mode::create_only, 4096, bad); }, "shm_open");
    CHECK_FALSE(std::filesystem::exists("/dev/shm/libipc." + name));
    refused([&] { ipc::sysv_segment(name, ipc::open_mode::create_only, 4096, bad); }, "shmget");
    CHECK_FALSE(std::filesystem::exists(ipc::runtime_dir() / (name + ".shm")));
    refused([&] { ipc::semaphore_set(name, ipc::open_mode::create_only, {1}, bad); }, "semget");
    CHECK_FALSE(std::filesystem::exists(ipc::runtime_dir() / (name + ".sem")));
    refused([&] { ipc::shm_ring(name, ipc::role::receiver, {.mode = bad, .open = ipc::open_mode::create_only}); },
            "shm_open");
    CHECK_FALSE(std::filesystem::exists("/dev/shm/libipc." + name));
    ipc::msgq_options o;
    o.mode = bad;
    refused([&] { ipc::msg_queue(name, o); }, "msgget");
    CHECK_FALSE(std::filesystem::exists(ipc::runtime_dir() / (name + ".msgq")));
  }
}
