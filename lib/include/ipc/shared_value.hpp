// Typed values and arrays in named shared memory, by name across unrelated processes
// (like Python's multiprocessing.Value / Array).
//
//   ipc::shared_value<std::int64_t> hits("hits");            // open_or_create, with a lock, 0
//   { std::unique_lock lk(hits.get_lock()); ++*hits.get(); }  // a locked read-modify-write
//   hits.update([](auto& v) { v += 10; });                   // the same, shorter
//   std::int64_t now = hits.load();                          // locked read
//
//   ipc::shared_array<double> samples("samples", 1024);      // 1024 zero-initialised doubles
//   samples.store(3, 2.5);  samples.at(3);  samples[3];
//
// The segment's header records sizeof(T), alignof(T), the element count, a type tag and whether
// there is a lock; opening it as another T (or count, or lock choice) throws errc::incompatible.
// The optional lock is an ipc::robust_mutex in the header: a process killed while holding it, or
// just after being woken to take it, never blocks the others for more than one 100 ms slice
// (see docs/sync.md). Without a lock, load()/store() are plain copies.
#pragma once

#include <ipc/config.hpp>
#include <ipc/error.hpp>
#include <ipc/shared_memory.hpp>
#include <ipc/sync.hpp>
#include <ipc/uri.hpp>

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string_view>
#include <type_traits>
#include <typeinfo>

namespace ipc {

struct shared_options {
  bool with_lock = true;                            ///< a robust_mutex guards load/store/update
  std::uint32_t lock_id = 0;                        ///< the lock's id for lock ordering (0: unordered)
  mode_t perms = 0600;                              ///< of a newly created segment
  segment_backing backing = segment_backing::posix;  ///< /dev/shm/libipc.NAME or System V
};

namespace detail {

/// FNV-1a of a type's mangled name: the same T gives the same tag in every process of a build.
IPC_API std::uint64_t type_tag_of(const char* mangled_name) noexcept;

/// The untyped core of shared_array<T>: creates or opens the segment and checks its header.
class IPC_API shared_array_base {
 public:
  [[nodiscard]] std::size_t size() const noexcept { return count_; }
  [[nodiscard]] bool has_lock() const noexcept { return lock_ != nullptr; }
  /// The built-in lock. Throws std::system_error(ENOLCK) if the segment was made without one.
  [[nodiscard]] robust_mutex& get_lock() const;
  /// True when this handle created the segment.
  [[nodiscard]] bool created() const noexcept { return segment_.created(); }
  /// How errors name it, e.g. "/dev/shm/libipc.hits".
  [[nodiscard]] const std::string& object() const noexcept { return segment_.object(); }
  /// Destroys the named segment (this mapping stays valid while the handle lives). Throws.
  void remove() { segment_.remove(); }

 protected:
  struct element_info {
    std::size_t size;
    std::size_t align;
    std::uint64_t tag;
    const void* initial;  // one element's bytes, copied into every slot of a new segment
  };
  shared_array_base(std::string_view name, open_mode mode, std::size_t count, const element_info& info,
                    const shared_options& options);
  [[nodiscard]] std::byte* elements() const noexcept { return segment_.payload(); }
  /// Throws std::system_error(ERANGE) naming the object when i >= size().
  void check_index(std::size_t i) const;

 private:
  layout_segment segment_;
  robust_mutex* lock_ = nullptr;  // in the segment's header; null when created without a lock
  std::size_t count_ = 0;
};

}  // namespace detail

/// `count` elements of T in the named segment.
template <typename T>
class shared_array : public detail::shared_array_base {
  static_assert(std::is_trivially_copyable_v<T>, "shared memory holds trivially copyable types only");
  static_assert(alignof(T) <= 64, "elements are aligned to at most 64 bytes (the payload offset)");

 public:
  /// Creates (every element = initial) or opens the array NAME. On open, count 0 accepts the
  /// existing count. Throws errc::incompatible (another T, count or lock choice; a bad header),
  /// errc::not_owner, std::system_error (e.g. ENOENT for open_only of a missing name).
  shared_array(std::string_view name, std::size_t count, open_mode mode = open_mode::open_or_create,
               const T& initial = T{}, const shared_options& options = {})
      : shared_array_base(name, mode, count, {sizeof(T), alignof(T), detail::type_tag_of(typeid(T).name()), &initial},
                          options) {}

  /// The elements, size() of them. Never blocks; access is unsynchronised (use get_lock()).
  [[nodiscard]] T* get() const noexcept { return reinterpret_cast<T*>(elements()); }
  [[nodiscard]] T& operator[](std::size_t i) const noexcept { return get()[i]; }
  /// Bounds-checked element access; throws std::system_error(ERANGE) when i >= size().
  [[nodiscard]] T& at(std::size_t i) const {
    check_index(i);
    return get()[i];
  }
  /// A copy of element i, under the lock if there is one (blocks for it). Throws like at().
  [[nodiscard]] T load(std::size_t i) const {
    check_index(i);
    return locked([&] { return get()[i]; });
  }
  /// Sets element i, under the lock if there is one (blocks for it). Throws like at().
  void store(std::size_t i, const T& v) const {
    check_index(i);
    locked([&] { get()[i] = v; });
  }
  /// Calls f(T* elements, size()) under the lock if there is one (blocks for it); returns f's result.
  template <typename F>
  decltype(auto) update(F&& f) const {
    return locked([&]() -> decltype(auto) { return f(get(), size()); });
  }

 protected:
  template <typename F>
  decltype(auto) locked(F&& f) const {
    if (!has_lock()) return f();
    std::unique_lock lk(get_lock());
    return f();
  }
};

/// One T in the named segment.
template <typename T>
class shared_value : private shared_array<T> {
  using base = shared_array<T>;

 public:
  /// Creates (value = initial) or opens NAME. Throws as shared_array's constructor.
  explicit shared_value(std::string_view name, open_mode mode = open_mode::open_or_create, const T& initial = T{},
                        const shared_options& options = {})
      : base(name, 1, mode, initial, options) {}

  /// A copy of the value, under the lock if there is one (blocks for it).
  [[nodiscard]] T load() const { return base::load(0); }
  /// Sets the value, under the lock if there is one (blocks for it).
  void store(const T& v) const { base::store(0, v); }
  /// Calls f(T&) under the lock if there is one (blocks for it); returns f's result.
  template <typename F>
  decltype(auto) update(F&& f) const {
    return base::locked([&]() -> decltype(auto) { return f(*get()); });
  }
  /// The value itself; unsynchronised (hold get_lock() around read-modify-write).
  [[nodiscard]] T* get() const noexcept { return base::get(); }
  [[nodiscard]] T* operator->() const noexcept { return get(); }

  using base::created;
  using base::get_lock;
  using base::has_lock;
  using base::object;
  using base::remove;
};

/// Removes the named shared_value / shared_array segment; false if there was none. Throws.
IPC_API bool remove_shared(std::string_view name, segment_backing backing = segment_backing::posix);

}  // namespace ipc
