// The header of a shared_value / shared_array segment (ipc/shared_value.hpp).
#pragma once

#include <ipc/sync.hpp>

#include "detail/layout_header.hpp"

#include <cstddef>
#include <cstdint>

namespace ipc::detail {

/// layout_header, this header, then `count` elements at shared_array_header_size.
struct shared_array_header {
  static constexpr std::uint32_t magic = 0x49505341;  // "IPSA"
  static constexpr std::uint32_t version = 2;  // 2: layout_header records the creator's start time

  layout_header base;
  std::uint32_t element_size;
  std::uint32_t element_align;
  std::uint64_t count;
  std::uint64_t type_tag;  ///< FNV-1a of the element type's mangled name
  std::uint32_t has_lock;  ///< 0 or 1
  std::uint32_t reserved;
  robust_mutex lock;  ///< initialised only when has_lock
};
static_assert(std::is_standard_layout_v<shared_array_header>);

/// Payload offset: elements aligned up to 64 bytes start right after the header.
inline constexpr std::size_t shared_array_header_size = (sizeof(shared_array_header) + 63) / 64 * 64;

}  // namespace ipc::detail
