// A creator killed mid-initialisation leaves a segment whose header is never published. Its pid and
// start time are in the header from the start, so the next opener proves it dead (safe against pid
// reuse) instead of waiting and failing: open_or_create replaces the segment, open_only says why.
#include <ipc/error.hpp>
#include <ipc/process.hpp>
#include <ipc/shared_memory.hpp>
#include <ipc/unique_fd.hpp>

#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>

using namespace std::chrono_literals;

namespace {

constexpr std::uint32_t magic = 0x41424e44;  // "ABND"

// A child that creates the layout and is SIGKILLed inside its init function.
void create_and_die_in_init(const std::string& name) {
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  ipc::unique_fd rd(fds[0]);
  ipc::unique_fd wr(fds[1]);
  auto child = ipc::process::fork([&] {
    rd.reset();
    ipc::layout_segment seg(ipc::segment_backing::posix, name, ipc::open_mode::create_only, {magic, 1, 64, 4096},
                            [&](std::byte*, std::size_t) {
                              (void)!::write(wr.get(), "i", 1);
                              ::pause();  // killed here, mid-initialisation
                            });
    return 1;
  });
  wr.reset();
  pollfd p{rd.get(), POLLIN, 0};
  REQUIRE(::poll(&p, 1, 10000) == 1);
  child.kill(SIGKILL);
  REQUIRE(child.join().signal == SIGKILL);
}

}  // namespace

TEST_CASE("segment: a creator killed mid-initialisation is replaced by the next open_or_create, at once",
          "[segment]") {
  const auto name = ipc::test::unique_name("abandoned");
  create_and_die_in_init(name);
  const auto start = std::chrono::steady_clock::now();
  ipc::layout_segment seg(ipc::segment_backing::posix, name, ipc::open_mode::open_or_create, {magic, 1, 64, 4096},
                          [](std::byte* base, std::size_t) { std::memset(base + 64, 0x2a, 16); });
  CHECK(std::chrono::steady_clock::now() - start < 1s);
  CHECK(seg.created());
  CHECK(seg.creator_pid() == ::getpid());
  CHECK(seg.payload()[0] == std::byte{0x2a});
  seg.remove();
}

TEST_CASE("segment: open_only of an abandoned segment says its creator is gone instead of waiting 2 s", "[segment]") {
  const auto name = ipc::test::unique_name("abandoned-open");
  create_and_die_in_init(name);
  const auto start = std::chrono::steady_clock::now();
  REQUIRE_THROWS_WITH(ipc::layout_segment(ipc::segment_backing::posix, name, ipc::open_mode::open_only, {magic, 1, 64, 0}),
                      Catch::Contains("the creator it records is gone"));
  CHECK(std::chrono::steady_clock::now() - start < 1s);
  ipc::posix_segment::remove(name);
}
