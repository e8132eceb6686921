#include <ipc/shared_value.hpp>

#include "detail/shared_array_header.hpp"

#include <cerrno>
#include <cstring>
#include <limits>
#include <new>
#include <string>

namespace ipc {

namespace detail {

std::uint64_t type_tag_of(const char* mangled_name) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (const char* p = mangled_name; *p != '\0'; ++p) {
    h ^= static_cast<unsigned char>(*p);
    h *= 0x100000001b3ULL;
  }
  return h;
}

namespace {

layout_spec spec_for(std::size_t count, std::size_t element_size, std::string_view name) {
  if (element_size != 0 && count > std::numeric_limits<std::size_t>::max() / element_size) {
    throw_errno(EFBIG, "shared_array(" + std::to_string(count) + " elements)", name);
  }
  return layout_spec{.magic = shared_array_header::magic,
                     .version = shared_array_header::version,
                     .header_size = shared_array_header_size,
                     .payload_bytes = count * element_size};
}

std::string mismatch(const char* what, std::uint64_t found, std::uint64_t expected) {
  return std::string(what) + " " + std::to_string(found) + ", expected " + std::to_string(expected);
}

}  // namespace

shared_array_base::shared_array_base(std::string_view name, open_mode mode, std::size_t count,
                                     const element_info& info, const shared_options& options)
    : segment_(options.backing, name, mode,
               [&] {
                 if (count == 0 && mode != open_mode::open_only) {
                   throw_errno(EINVAL, "shared_array(count 0)", name);
                 }
                 return spec_for(count, info.size, name);
               }(),
               [&](std::byte* base, std::size_t total) {
                 auto* h = new (base) shared_array_header{};
                 h->element_size = static_cast<std::uint32_t>(info.size);
                 h->element_align = static_cast<std::uint32_t>(info.align);
                 h->count = count;
                 h->type_tag = info.tag;
                 h->has_lock = options.with_lock ? 1 : 0;
                 if (options.with_lock) robust_mutex::create_at(&h->lock, options.lock_id);
                 std::byte* elems = base + shared_array_header_size;
                 if (shared_array_header_size + count * info.size > total) {
                   throw_errno(EINVAL, "shared_array(layout larger than its segment)", name);
                 }
                 for (std::size_t i = 0; i < count; ++i) std::memcpy(elems + i * info.size, info.initial, info.size);
               },
               options.perms) {
  auto* header = segment_.header_as<shared_array_header>();
  const std::string& obj = segment_.object();
  const shared_array_header& h = *header;
  // layout_segment validated magic, version and sizes against the mapping; these fields say
  // what the bytes after the header are. Checked before any element is touched.
  if (h.element_size != info.size) throw_error(errc::incompatible, "attach", obj, mismatch("element size", h.element_size, info.size));
  if (h.element_align != info.align) {
    throw_error(errc::incompatible, "attach", obj, mismatch("element alignment", h.element_align, info.align));
  }
  if (h.type_tag != info.tag) throw_error(errc::incompatible, "attach", obj, "element type differs (type tag mismatch)");
  if (h.count == 0 || h.count > segment_.payload_size() / info.size) {
    throw_error(errc::incompatible, "attach", obj,
                "recorded count " + std::to_string(h.count) + " does not fit the " +
                    std::to_string(segment_.payload_size()) + "-byte payload");
  }
  if (count != 0 && h.count != count) throw_error(errc::incompatible, "attach", obj, mismatch("count", h.count, count));
  if (h.has_lock > 1 || (h.has_lock != 0) != options.with_lock) {
    throw_error(errc::incompatible, "attach", obj,
                options.with_lock ? "segment was created without a lock" : "segment was created with a lock");
  }
  count_ = static_cast<std::size_t>(h.count);
  if (h.has_lock != 0) lock_ = &header->lock;
}

robust_mutex& shared_array_base::get_lock() const {
  if (lock_ == nullptr) throw_errno(ENOLCK, "get_lock(created without a lock)", segment_.object());
  return *lock_;
}

void shared_array_base::check_index(std::size_t i) const {
  if (i >= count_) {
    throw_errno(ERANGE, "at(index " + std::to_string(i) + " of " + std::to_string(count_) + ")", segment_.object());
  }
}

}  // namespace detail

bool remove_shared(std::string_view name, segment_backing backing) { return layout_segment::remove(backing, name); }

}  // namespace ipc
