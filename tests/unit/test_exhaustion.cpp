// Exhausted resources are errors at creation, never signals later: a full /dev/shm is ENOSPC from the
// constructor (never SIGBUS on a later write), a reached System V limit names the limit and how to raise
// it, and a failed create leaves nothing behind. Each case runs in a confined child (tests/support/
// confined.hpp): a private /dev/shm of 256 KiB and a private IPC namespace with lowered kernel.* limits.
#include <ipc/error.hpp>
#include <ipc/msg_queue.hpp>
#include <ipc/sem_buffer.hpp>
#include <ipc/semaphore.hpp>
#include <ipc/shared_memory.hpp>
#include <ipc/shared_value.hpp>
#include <ipc/shm_ring.hpp>
#include <ipc/uri.hpp>

#include "confined.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <cerrno>
#include <functional>
#include <string>
#include <system_error>

using ipc::test::confinement;
using ipc::test::findings;

namespace {

constexpr std::size_t one_mib = std::size_t{1} << 20;

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : " | ") + x;
  return s;
}

// create() must throw std::system_error with errno `err` whose what() contains every one of `words`,
// and afterwards /dev/shm, the System V tables and the runtime directory hold what they held before.
void expect_refused(findings& f, const std::string& label, int err, std::vector<std::string> words,
                    const std::function<void()>& create) {
  const auto shm_before = ipc::test::dir_entries("/dev/shm");
  const auto sysv_before = ipc::test::sysv_objects();
  const auto dir_before = ipc::test::dir_entries(ipc::runtime_dir().string());
  try {
    create();
    f.check(false, label + ": created although the resource is exhausted");
  } catch (const std::system_error& e) {
    f.notes.push_back(label + ": " + e.what());
    f.check(e.code() == std::error_code(err, std::system_category()),
            label + ": errno " + std::to_string(e.code().value()) + " (" + e.what() + "), expected " +
                std::to_string(err));
    for (const auto& w : words) f.check(std::string(e.what()).find(w) != std::string::npos, label + ": '" + e.what() + "' does not name " + w);
  }
  f.check(ipc::test::dir_entries("/dev/shm") == shm_before, label + ": /dev/shm left with " + joined(ipc::test::dir_entries("/dev/shm")));
  f.check(ipc::test::sysv_objects() == sysv_before, label + ": System V objects left: " + joined(ipc::test::sysv_objects()));
  f.check(ipc::test::dir_entries(ipc::runtime_dir().string()) == dir_before,
          label + ": runtime directory left with " + joined(ipc::test::dir_entries(ipc::runtime_dir().string())));
}

void require_clean(const ipc::test::confined_result& r) {
  INFO("child: " << r.status << "; notes: " << joined(r.notes));
  REQUIRE(r.setup_error.empty());
  for (const auto& fail : r.failures) FAIL_CHECK(fail);
  CHECK(r.failures.empty());
}

}  // namespace

TEST_CASE("exhaustion: a 1 MiB shm ring on a 256 KiB /dev/shm is ENOSPC at creation and leaves nothing",
          "[exhaustion]") {
  const auto name = ipc::test::unique_name("full-ring");
  require_clean(ipc::test::run_confined({.shm_bytes = 256 << 10, .sysctls = {}}, [&](findings& f) {
    expect_refused(f, "shm_ring", ENOSPC, {"posix_fallocate", "/dev/shm/libipc." + name}, [&] {
      ipc::shm_ring ring(name, ipc::role::sender, {.capacity = one_mib, .max_message = 4096, .mode = 0600, .open = ipc::open_mode::open_or_create});
    });
    // What fits is still created, and every byte of it can be written: the pages are really there.
    ipc::shm_ring small(name, ipc::role::sender, {.capacity = 64 << 10, .max_message = 4096, .mode = 0600, .open = ipc::open_mode::open_or_create});
    std::vector<std::byte> msg(4000, std::byte{0x5a});
    int sent = 0;
    while (small.try_send(msg)) ++sent;
    f.check(sent >= 15, "a 64 KiB ring took only " + std::to_string(sent) + " messages of 4000 bytes");
    small.remove();
  }));
}

TEST_CASE("exhaustion: a 1 MiB shared_array or posix_segment on a full /dev/shm is ENOSPC naming the segment",
          "[exhaustion]") {
  const auto name = ipc::test::unique_name("full-seg");
  require_clean(ipc::test::run_confined({.shm_bytes = 256 << 10, .sysctls = {}}, [&](findings& f) {
    expect_refused(f, "shared_array", ENOSPC, {"posix_fallocate", "/dev/shm/libipc." + name}, [&] {
      ipc::shared_array<std::uint64_t> a(name, one_mib / sizeof(std::uint64_t));
    });
    expect_refused(f, "posix_segment", ENOSPC, {"posix_fallocate", "/dev/shm/libipc." + name}, [&] {
      ipc::posix_segment s(name, ipc::open_mode::create_only, one_mib);
    });
  }));
}

TEST_CASE("exhaustion: kernel.msgmni reached is ENOSPC naming the limit and the sysctl; no key file stays",
          "[exhaustion]") {
  const auto name = ipc::test::unique_name("full-msgq");
  require_clean(ipc::test::run_confined({.shm_bytes = 256 << 10, .sysctls = {{"msgmni", "0"}}}, [&](findings& f) {
    expect_refused(f, "msg_queue", ENOSPC, {"msgget", name + ".msgq", "kernel.msgmni", "sysctl -w kernel.msgmni="},
                   [&] { ipc::msg_queue q(name); });
  }));
}

TEST_CASE("exhaustion: kernel.sem semmni reached is ENOSPC naming kernel.sem for a set and a sem channel",
          "[exhaustion]") {
  const auto name = ipc::test::unique_name("full-sem");
  require_clean(ipc::test::run_confined({.shm_bytes = 256 << 10, .sysctls = {{"sem", "250 32000 32 0"}}}, [&](findings& f) {
    expect_refused(f, "semaphore_set", ENOSPC, {"semget", name + ".sem", "kernel.sem", "semmni"},
                   [&] { ipc::semaphore_set s(name, ipc::open_mode::open_or_create, {1}); });
    expect_refused(f, "sem_buffer", ENOSPC, {"semget", name + ".sembuf", "kernel.sem"},
                   [&] { ipc::sem_buffer b(name, ipc::role::sender); });
  }));
}

TEST_CASE("exhaustion: kernel.shmmni and kernel.shmall reached are ENOSPC naming the limit", "[exhaustion]") {
  const auto name = ipc::test::unique_name("full-shm");
  require_clean(ipc::test::run_confined({.shm_bytes = 256 << 10, .sysctls = {{"shmmni", "0"}}}, [&](findings& f) {
    expect_refused(f, "sysv_segment (shmmni)", ENOSPC, {"shmget", name + ".shm", "kernel.shmmni"},
                   [&] { ipc::sysv_segment s(name, ipc::open_mode::create_only, one_mib); });
    expect_refused(f, "sem_buffer (shmmni)", ENOSPC, {"shmget", name + ".sembuf", "kernel.shmmni"},
                   [&] { ipc::sem_buffer b(name, ipc::role::sender); });
  }));
  require_clean(ipc::test::run_confined({.shm_bytes = 256 << 10, .sysctls = {{"shmall", "16"}}}, [&](findings& f) {
    expect_refused(f, "sysv_segment (shmall)", ENOSPC, {"shmget", "kernel.shmall", "sysctl -w"},
                   [&] { ipc::sysv_segment s(name, ipc::open_mode::create_only, one_mib); });
  }));
}
