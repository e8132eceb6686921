// An endpoint's death word, and the wait on "data or a peer's death" built on it: how an idle shm
// waiter sleeps with no wake-ups at all and still learns at once that its peer died.
//
//   take_lock(slot_lock, object);                      // at attach, on the attaching thread
//   ...                                                // the peer, blocked:
//   wait_data_or_death(h.data_seq, seen, {peer locks}, d, object);
//   ...
//   release_lock(slot_lock);                           // at detach (false: keep the mapping)
//
// The lock is a process-shared robust pthread mutex in the shared header, held by its endpoint from
// attach to detach. Its first word is the futex word (owner tid | FUTEX_WAITERS | FUTEX_OWNER_DIED);
// glibc keeps it on the holding thread's robust list, so when that thread ends (its process dies or
// execs, or the thread exits) the kernel sets FUTEX_OWNER_DIED, clears the tid and wakes one waiter.
// A waiter sets FUTEX_WAITERS with a CAS (what a glibc waiter does: unlock then makes its wake
// syscall) and sleeps in futex_waitv on the data word and every peer lock word together.
//
// Limits, each with its fallback (docs/crash-behaviour.md, "No process waits for ever"):
// - The robust list is per thread: when the holding thread exits while its process lives, the word
//   is left unheld; waiters then sleep in slices of wait_slice for that peer (and probe liveness)
//   until the endpoint takes its lock back on the next thread that uses it (retake_if_orphaned).
// - glibc refuses to unlock from another thread: release_lock() returns false and the caller must
//   keep the mapping for the life of the process (park_until_exit), since the holding thread's robust
//   list points into it; the lock's slot is not reused while its tid is set.
// - The kernel wakes one waiter per death: a waiter woken through a lock word wakes the others.
#pragma once

#include <ipc/deadline.hpp>

#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <string_view>

namespace ipc::detail {

struct endpoint_lock {
  pthread_mutex_t mutex;
};
static_assert(sizeof(endpoint_lock) == 40, "the shm layouts reserve 40 bytes per endpoint lock");

/// The lock's futex word (glibc's __lock, the first word of the mutex). Never throws.
[[nodiscard]] const std::atomic<std::uint32_t>& lock_word(const endpoint_lock& l) noexcept;

/// True while a live thread holds the lock (the word's tid bits are set). A lock not held is on
/// no live thread's robust list, so it may be initialised again. Never throws.
[[nodiscard]] bool lock_held(const endpoint_lock& l) noexcept;

/// Initialises l (robust, process-shared) and locks it on the calling thread. l must not be held.
/// Never blocks. Throws std::system_error naming pthread_mutex_lock and object.
void take_lock(endpoint_lock& l, std::string_view object);

/// Unlocks l (waking a waiter if one set FUTEX_WAITERS). Returns false, leaving l held, when the
/// calling thread is not the one that holds it: then l stays on that thread's robust list and its
/// memory must stay mapped (park_until_exit). Never throws.
[[nodiscard]] bool release_lock(endpoint_lock& l) noexcept;

/// When the thread that held l has exited (l not held), takes it on the calling thread. Never
/// blocks, never throws; true if the calling thread holds l now.
bool retake_if_orphaned(endpoint_lock& l) noexcept;

/// Keeps `mapping` (whatever owns a mapping holding a lock release_lock() could not release)
/// alive until the process exits. Never throws (a failed allocation keeps it by leaking it).
void park_until_exit(std::shared_ptr<void> mapping) noexcept;

/// park_until_exit for a handle's own mapping (a layout_segment whose endpoint lock stays on another
/// thread's robust list): moves *seg there, or leaks it when no memory is left. Never throws.
template <class Segment>
void park_mapping_until_exit(std::optional<Segment>& seg) noexcept {
  try {
    park_until_exit(std::make_shared<Segment>(std::move(*seg)));
  } catch (...) {  // NOLINT(bugprone-empty-catch): no memory to park it: leak the mapping instead
    new (std::nothrow) std::optional<Segment>(std::move(seg));
  }
}

/// How a wait_data_or_death ended.
enum class death_wait {
  woken,         // data changed or was signalled: re-check
  peer_changed,  // a peer's lock word changed (its thread ended or it detached): probe liveness now
  interrupted,   // interrupt_thread() hit the calling thread (finite deadlines only): end as a timeout
  timeout,       // `until` passed
};

/// Sleeps while data == seen, every lock in `peers` is unchanged and the calling thread is not
/// interrupted, until `until` (never(): no limit). No time slices while every peer lock is held;
/// while one is not (a process still exiting after the kernel released its lock, a thread that
/// exited, a fork child that has not taken its own yet) the sleep is a slice so the caller probes
/// that peer's liveness: 1 ms, doubling over the consecutive sliced sleeps counted in
/// `unheld_streak` (the caller's, 0 at the start of its wait) up to wait_slice. At most 120 peers.
/// Throws std::system_error naming futex_waitv and object.
death_wait wait_data_or_death(const std::atomic<std::uint32_t>& data, std::uint32_t seen,
                              std::span<const endpoint_lock* const> peers, const deadline& until,
                              std::string_view object, unsigned& unheld_streak);

}  // namespace ipc::detail
