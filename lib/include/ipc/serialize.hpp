// Values as MessagePack: what ipc::queue<T>, ipc::pipe_pair<T> and ipc::process_pool carry.
//
//   std::vector<std::byte> bytes;
//   ipc::pack_into(bytes, std::map<std::string, int>{{"a", 1}});
//   auto m = ipc::unpack<std::map<std::string, int>>(bytes);     // throws errc::corrupt on a mismatch
//
//   struct job {                                                  // a user struct declares its fields
//     std::string name;
//     std::vector<double> weights;
//     MSGPACK_DEFINE(name, weights)        // no semicolon (-Wpedantic); travels as [name, weights]
//   };
//
// The format is msgpack-cxx's (Debian libmsgpack-cxx-dev, header-only): arithmetic types, bool,
// std::string, std::vector/array/map/set/pair/tuple, std::optional (nil when empty), and user
// structs with MSGPACK_DEFINE (an array of the fields in order) or MSGPACK_DEFINE_MAP (a map by
// field name). This header adds std::variant, packed as the array [index, value]. Any language
// with a MessagePack library reads and writes these values (Python: msgpack.packb/unpackb; a
// tuple or struct arrives as a list). Pointers, references and handles (fds, mutexes) are not
// values and do not serialise. See docs/tutorial.md ("Queues").
#pragma once

#include <ipc/error.hpp>

#include <msgpack.hpp>

#include <cstddef>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace ipc {

namespace detail {

/// Appends msgpack bytes to a std::vector<std::byte> (msgpack's packer writes to any "write" sink).
struct byte_sink {
  std::vector<std::byte>* out;
  void write(const char* data, std::size_t size) {
    auto* p = reinterpret_cast<const std::byte*>(data);
    out->insert(out->end(), p, p + size);
  }
};

template <typename Variant, std::size_t I = 0>
void convert_alternative(const msgpack::object& o, std::size_t index, Variant& v) {
  if constexpr (I < std::variant_size_v<Variant>) {
    if (index == I) {
      v.template emplace<I>(o.as<std::variant_alternative_t<I, Variant>>());
    } else {
      convert_alternative<Variant, I + 1>(o, index, v);
    }
  } else {
    throw msgpack::type_error();
  }
}

}  // namespace detail

/// Appends v's MessagePack encoding to out. Never blocks. Throws what the type's adaptor throws
/// (std::bad_alloc; msgpack-cxx's errors for out-of-range sizes).
template <typename T>
void pack_into(std::vector<std::byte>& out, const T& v) {
  detail::byte_sink sink{&out};
  msgpack::pack(sink, v);
}

/// Decodes one MessagePack value of type T from exactly `bytes`. Never blocks. Throws
/// std::system_error(errc::corrupt) naming `what` when the bytes are malformed, trail extra data
/// or do not fit T (wrong type, out-of-range integer, wrong array length).
template <typename T>
T unpack(std::span<const std::byte> bytes, std::string_view what = "value") {
  try {
    std::size_t offset = 0;
    msgpack::object_handle oh = msgpack::unpack(reinterpret_cast<const char*>(bytes.data()), bytes.size(), offset);
    if (offset != bytes.size()) {
      throw_error(errc::corrupt, "ipc::unpack", what, std::to_string(bytes.size() - offset) + " trailing bytes");
    }
    return oh.get().as<T>();
  } catch (const std::system_error&) {
    throw;
  } catch (const std::exception& e) {
    throw_error(errc::corrupt, "ipc::unpack", what, e.what());
  }
}

}  // namespace ipc

// std::variant<Ts...> travels as [index, value]: index is the alternative (0-based).
namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
  namespace adaptor {

  template <typename... Ts>
  struct pack<std::variant<Ts...>> {
    template <typename Stream>
    msgpack::packer<Stream>& operator()(msgpack::packer<Stream>& o, const std::variant<Ts...>& v) const {
      o.pack_array(2);
      o.pack(static_cast<std::uint64_t>(v.index()));
      std::visit([&o](const auto& alt) { o.pack(alt); }, v);
      return o;
    }
  };

  template <typename... Ts>
  struct convert<std::variant<Ts...>> {
    const msgpack::object& operator()(const msgpack::object& o, std::variant<Ts...>& v) const {
      if (o.type != msgpack::type::ARRAY || o.via.array.size != 2) throw msgpack::type_error();
      auto index = o.via.array.ptr[0].as<std::uint64_t>();
      if (index >= sizeof...(Ts)) throw msgpack::type_error();
      ipc::detail::convert_alternative(o.via.array.ptr[1], static_cast<std::size_t>(index), v);
      return o;
    }
  };

  }  // namespace adaptor
}  // MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS)
}  // namespace msgpack
