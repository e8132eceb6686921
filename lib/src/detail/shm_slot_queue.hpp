// What the two slot-queue modes (the work queue, shm_mpmc; broadcast, shm_broadcast) share when a
// handle attaches: a plain name, sizes checked before anything is made, the segment created or
// opened (detail::create_or_open_segment), its identity, and once mapped the sizes its header
// records validated against the mapping and against what the opener insisted on
// (shm_slot_options; docs/shm-modes.md, "Opening an existing channel").
#pragma once

#include <ipc/shared_memory.hpp>
#include <ipc/shm_mpmc.hpp>

#include "detail/liveness.hpp"

#include <cstdint>
#include <memory>
#include <string>

namespace ipc::detail {

/// A slot-queue layout's kind and bounds.
struct slot_queue_kind {
  const char* call = "";  ///< what a bad size is reported under: the constructor, "shm_mpmc"
  std::uint32_t magic = 0;
  std::uint32_t version = 0;
  std::size_t header_size = 0;  ///< the kind's whole header
  std::uint64_t cell_header = 0;  ///< bytes before a cell's payload
  std::uint64_t min_slots = 0, max_slots = 0, max_message = 0, max_total = 0;
};

/// Bytes per cell: the cell header and max_message, rounded up to a cache line.
constexpr std::uint64_t slot_stride(const slot_queue_kind& k, std::uint64_t max_message) noexcept {
  return (k.cell_header + max_message + 63) / 64 * 64;
}

/// The segment found or made, not yet mapped as a layout.
struct slot_queue_segment {
  std::unique_ptr<segment> seg;
  layout_spec spec;  ///< payload_bytes 0 when opened: the creator's sizes are adopted, then checked
  segment_id id;
};

/// The first half of attaching: `name` a plain name, and unless open_only the mode and the sizes
/// (errc::bad_uri naming `channel` and the option); then creates or opens. Throws errc::bad_uri,
/// errc::not_owner, std::system_error naming the object (EEXIST, ENOENT, fstat).
slot_queue_segment open_slot_queue(const std::string& name, const std::string& channel, const slot_queue_kind& k,
                                   const shm_slot_options& o);

/// The sizes a mapped header records.
struct slot_queue_sizes {
  std::uint64_t slots = 0;
  std::uint64_t max_message = 0;
  std::uint64_t stride = 0;
};

/// The second half: the header's sizes are untrusted when opened, and every later offset rests on
/// them: errc::incompatible naming `channel` and `object` unless they match the mapping; then
/// errc::incompatible naming both values when the opener insisted on a size the object lacks.
void check_slot_queue(const std::string& channel, const std::string& object, const slot_queue_kind& k,
                      const slot_queue_sizes& s, std::uint64_t total_size, const shm_slot_options& o);

/// An opener's insisted-on option against the existing object's value: errc::incompatible naming
/// `channel`, the option and both values when they differ. Values as text (a policy is a word).
/// Every shm mode's opener (the ring's too) applies it.
void check_insisted(const std::string& channel, const char* option, bool insisted, const std::string& asked,
                    const std::string& existing);

}  // namespace ipc::detail
