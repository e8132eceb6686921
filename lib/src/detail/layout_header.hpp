// The header every shared-memory layout of the toolkit starts with.
//
// The creator fills the fields, then publishes `state = ready` with release
// order; an opener waits (bounded) for ready, then validates magic, layout
// version and sizes against what it actually mapped before touching anything
// past the header. A hostile or corrupt peer can therefore never make us read
// or write outside the mapping: every later offset is checked against
// total_size, which is itself checked against the mapped size.
//
// Every kind's version was bumped when creator_start_time was added (ring 2, shared_array 2,
// sem_buffer 2): a header without it is refused, never misread.
#pragma once

#include <ipc/config.hpp>
#include <ipc/deadline.hpp>

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ipc::detail {

struct layout_header {
  static constexpr std::uint32_t ready_value = 0x52454459;  // "REDY"

  std::atomic<std::uint32_t> state;  ///< 0 while being initialised, ready_value after
  std::uint32_t magic;               ///< the layout's kind, e.g. 'IPCR' for the shm ring
  std::uint32_t version;             ///< layout version; bumped on any incompatible change
  std::uint32_t header_size;         ///< bytes of the kind's full header (this struct included)
  std::uint64_t total_size;          ///< bytes of the whole layout
  std::int32_t creator_pid;          ///< for `ipcctl gc` and peer-death checks
  std::uint32_t creator_uid;
  std::uint64_t created_unix_ns;     ///< CLOCK_REALTIME at creation, for listings
  std::uint64_t creator_start_time;  ///< the creator's start time (ipc::process_ref): pid reuse-safe
};
static_assert(sizeof(layout_header) == 48);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

/// Fills h for a new layout and publishes it (release). Call after everything behind the header
/// is initialised.
void publish_header(layout_header* h, std::uint32_t magic, std::uint32_t version,
                            std::size_t header_size, std::size_t total_size) noexcept;

/// Called by the creator right after creating, before initialising: records its pid and start time, so
/// openers can prove it died if it never publishes (abandoned()).
void claim_header(layout_header* h) noexcept;

/// True when h was never published and its creator is provably dead (pid + start time, safe against pid
/// reuse): nobody will ever finish it. False while the creator lives, or when it is unknown (pid 0).
bool abandoned(const layout_header* h) noexcept;

/// Waits until h is published (or d expires), then validates it against the mapping.
/// Throws errc::incompatible naming object: never initialised in time (at once when abandoned()), wrong magic or version,
/// header_size != expected_header_size, total_size < header_size or > mapped_size.
void validate_header(const layout_header* h, std::size_t mapped_size, std::uint32_t magic,
                             std::uint32_t version, std::size_t expected_header_size, const deadline& d,
                             std::string_view object);

}  // namespace ipc::detail
