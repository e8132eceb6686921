// Cross-process futex waits and wakes on a 32-bit word in shared memory.
//
//   std::uint32_t seen = word.load();
//   if (!condition()) detail::futex_wait(word, seen, deadline_slice, object);
//   ...  // the other side: change the condition, then ++word; futex_wake(word, 1, object)
//
// No FUTEX_PRIVATE_FLAG: the word lives in a MAP_SHARED mapping used by
// several processes. Deadlines are absolute CLOCK_MONOTONIC (FUTEX_WAIT_BITSET
// measures them on CLOCK_MONOTONIC unless FUTEX_CLOCK_REALTIME is given), so
// a retry after EINTR waits only for the time left.
#pragma once

#include <ipc/deadline.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <span>
#include <string_view>

namespace ipc::detail {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

/// The longest a process sleeps waiting for another before it looks at the shared state again.
/// A process woken to act for others can be SIGKILLed before it acts, and then nobody wakes the
/// rest; sleeping in slices bounds that to one slice (docs/crash-behaviour.md, "No process waits
/// for ever"). 100 ms: the recovery bound, and 10 wake-ups a second for a blocked waiter.
inline constexpr std::chrono::milliseconds wait_slice{100};

/// Sleeps while word == expected, until woken or `until` passes (never(): no time limit).
/// Returns false only when `until` passed; true when woken, when the word already differed, or on
/// EINTR (the caller re-checks its condition and calls again). Throws std::system_error naming object.
bool futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected, const deadline& until,
                std::string_view object);

/// One word of a futex_wait_any: sleep while *word == expected.
struct futex_watch {
  const std::atomic<std::uint32_t>* word;
  std::uint32_t expected;
};

/// Sleeps while every watched word equals its expected value (futex_waitv, Linux >= 5.16), until
/// one is woken or differs, or `until` passes (never(): no time limit). Returns the index of the
/// word that was woken, watches.size() when a word already differed or a signal arrived (the
/// caller re-checks), -1 only when `until` passed. At most 128 words. Throws std::system_error
/// naming the call and object (ENOSYS on a kernel older than 5.16).
int futex_wait_any(std::span<const futex_watch> watches, const deadline& until, std::string_view object);

/// Wakes up to `count` processes sleeping on word. Never blocks. Throws std::system_error naming object.
void futex_wake(const std::atomic<std::uint32_t>& word, int count, std::string_view object);

}  // namespace ipc::detail
