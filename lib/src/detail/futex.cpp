#include "detail/futex.hpp"

#include <ipc/error.hpp>

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <climits>
#include <ctime>

namespace ipc::detail {
namespace {

long futex(const std::atomic<std::uint32_t>& word, int op, std::uint32_t val, const timespec* ts,
           std::uint32_t val3) {
  // The kernel only reads the word; the futex(2) ABI takes a plain pointer.
  auto* addr = const_cast<std::uint32_t*>(reinterpret_cast<const std::uint32_t*>(&word));
  return ::syscall(SYS_futex, addr, op, val, ts, nullptr, val3);
}

}  // namespace

bool futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected, const deadline& until,
                std::string_view object) {
  timespec abs{};
  const timespec* ts = nullptr;
  if (!until.is_never()) {
    if (until.expired()) return false;
    abs = until.monotonic_timespec();
    ts = &abs;
  }
  if (futex(word, FUTEX_WAIT_BITSET, expected, ts, FUTEX_BITSET_MATCH_ANY) == 0) return true;
  switch (errno) {
    case EAGAIN:  // the word changed before we slept
    case EINTR:   // the caller re-checks and waits again for the time left
      return true;
    case ETIMEDOUT:
      return false;
    default:
      throw_errno(errno, "futex(FUTEX_WAIT_BITSET)", object);
  }
}

int futex_wait_any(std::span<const futex_watch> watches, const deadline& until, std::string_view object) {
  constexpr std::size_t max_watches = FUTEX_WAITV_MAX;
  if (watches.empty() || watches.size() > max_watches) throw_errno(EINVAL, "futex_waitv", object);
  futex_waitv v[max_watches]{};
  for (std::size_t i = 0; i < watches.size(); ++i) {
    v[i].val = watches[i].expected;
    v[i].uaddr = reinterpret_cast<std::uintptr_t>(watches[i].word);
    v[i].flags = FUTEX_32;  // no FUTEX_PRIVATE_FLAG: the words live in MAP_SHARED mappings
  }
  timespec abs{};
  const timespec* ts = nullptr;
  if (!until.is_never()) {
    if (until.expired()) return -1;
    abs = until.monotonic_timespec();
    ts = &abs;
  }
  const long r = ::syscall(SYS_futex_waitv, v, static_cast<unsigned>(watches.size()), 0U, ts, CLOCK_MONOTONIC);
  if (r >= 0) return static_cast<int>(r);
  switch (errno) {
    case EAGAIN:  // a word changed before we slept
    case EINTR:
      return static_cast<int>(watches.size());
    case ETIMEDOUT:
      return -1;
    default:
      throw_errno(errno, "futex_waitv", object);
  }
}

void futex_wake(const std::atomic<std::uint32_t>& word, int count, std::string_view object) {
  if (futex(word, FUTEX_WAKE, static_cast<std::uint32_t>(count), nullptr, 0) < 0) {
    throw_errno(errno, "futex(FUTEX_WAKE)", object);
  }
}

}  // namespace ipc::detail
