// The core of every named object (ipc/named_sync.hpp): a layout_segment NAME.KIND holding the
// object's robust_mutex in its header and one object of a checked size and type after it.
#include <ipc/named_sync.hpp>

#include "detail/layout_header.hpp"

#include <cerrno>
#include <cstring>
#include <string>

namespace ipc::detail {
namespace {

struct named_header {
  static constexpr std::uint32_t version = 1;

  layout_header base;
  std::uint64_t type_tag;
  std::uint32_t object_size;
  std::uint32_t object_align;
  robust_mutex lock;
};
static_assert(std::is_standard_layout_v<named_header>);

// The object starts 64-byte aligned right after the header.
constexpr std::size_t header_bytes = (sizeof(named_header) + 63) / 64 * 64;

std::uint32_t fnv1a32(std::string_view a, std::string_view b) noexcept {
  std::uint32_t h = 2166136261u;
  auto mix = [&](std::string_view s) {
    for (char c : s) {
      h ^= static_cast<unsigned char>(c);
      h *= 16777619u;
    }
  };
  mix(a);
  mix(":");
  mix(b);
  return h;
}

// 'N' 'S' + the kind's first two letters: another kind under the same name is errc::incompatible.
std::uint32_t magic_of(std::string_view kind) noexcept {
  return 0x4e530000u | (static_cast<std::uint32_t>(static_cast<unsigned char>(kind[0])) << 8) |
         static_cast<unsigned char>(kind.size() > 1 ? kind[1] : ' ');
}

std::string segment_name(std::string_view kind, std::string_view name) {
  return std::string(name) + "." + std::string(kind);
}

}  // namespace

named_segment::named_segment(std::string_view name, open_mode mode, const object_info& info,
                             const construct_fn& construct, const named_options& options)
    : segment_(options.backing, segment_name(info.kind, name), mode,
               layout_spec{.magic = magic_of(info.kind),
                           .version = named_header::version,
                           .header_size = header_bytes,
                           .payload_bytes = mode == open_mode::open_only ? 0 : (info.size == 0 ? 1 : info.size)},
               [&](std::byte* base, std::size_t total) {
                 if (header_bytes + info.size > total || info.align > 64) {
                   throw_errno(EINVAL, "named " + std::string(info.kind) + "(layout larger than its segment)", name);
                 }
                 auto* h = ::new (base) named_header();
                 h->type_tag = info.type_tag;
                 h->object_size = static_cast<std::uint32_t>(info.size);
                 h->object_align = static_cast<std::uint32_t>(info.align);
                 std::uint32_t id = options.lock_id != 0 ? options.lock_id : fnv1a32(info.kind, name);
                 robust_mutex::create_at(&h->lock, id == 0 ? 1 : id);
                 if (construct) construct(base + header_bytes);
               },
               options.perms),
      name_(name) {
  const auto& h = *segment_.header_as<named_header>();
  const std::string& obj = segment_.object();
  // layout_segment checked magic (the kind), version and sizes; these say what the payload is.
  if (h.object_size != info.size || h.object_align != info.align || h.type_tag != info.type_tag ||
      segment_.payload_size() < info.size) {
    throw_error(errc::incompatible, "attach", obj,
                "holds another type (" + std::to_string(h.object_size) + " bytes, expected " +
                    std::to_string(info.size) + ", or a different type tag)");
  }
  lock_ = &segment_.header_as<named_header>()->lock;
  if (lock_order_checker::enabled()) lock_order_checker::describe(lock_->id(), std::string(info.kind) + " " + name_);
}

bool named_segment::remove(std::string_view kind, std::string_view name, segment_backing backing) {
  return layout_segment::remove(backing, segment_name(kind, name));
}

}  // namespace ipc::detail
