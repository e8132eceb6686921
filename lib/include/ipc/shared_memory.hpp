// Shared-memory segments: POSIX (shm_open via Boost.Interprocess) and System V (shmget),
// plus layout_segment, a segment that starts with a validated detail::layout_header.
//
//   ipc::posix_segment raw("frames", ipc::open_mode::open_or_create, 1 << 20);  // /dev/shm/libipc.frames
//   std::memset(raw.data(), 0, raw.size());
//
//   ipc::layout_spec spec{.magic = 0x4d595631, .version = 1, .header_size = sizeof(my_header),
//                         .payload_bytes = 4096};
//   ipc::layout_segment seg(ipc::segment_backing::sysv, "stats", ipc::open_mode::open_or_create, spec,
//                           [](std::byte* base, std::size_t) { new (base) my_header{...}; });
//   auto* h = seg.header_as<my_header>();   // validated: magic, version, sizes vs. the real mapping
//   seg.payload();                          // payload_size() bytes after the header
//
// Every segment is created 0600 unless asked and its owner and mode are checked on attach
// (errc::not_owner). A destructor unmaps/detaches; remove() destroys the kernel object.
#pragma once

#include <ipc/config.hpp>
#include <ipc/deadline.hpp>
#include <ipc/uri.hpp>

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace ipc {

namespace detail {
struct layout_header;  // lib/src/detail/layout_header.hpp
}

/// A mapped shared-memory segment of either kind.
class IPC_API segment {
 public:
  segment(const segment&) = delete;
  segment& operator=(const segment&) = delete;
  virtual ~segment();

  /// Start of the mapping (read/write), size() bytes.
  [[nodiscard]] std::byte* data() const noexcept { return data_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  /// True when this handle created the kernel object.
  [[nodiscard]] bool created() const noexcept { return created_; }
  /// How errors and listings name the segment, e.g. "/dev/shm/libipc.frames".
  [[nodiscard]] const std::string& object() const noexcept { return object_; }
  /// Destroys the kernel object; this mapping stays valid until the handle goes. Throws std::system_error.
  virtual void remove() = 0;

 protected:
  segment() = default;
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  bool created_ = false;
  std::string object_;
};

/// POSIX segment "/libipc.NAME" (visible as /dev/shm/libipc.NAME).
class IPC_API posix_segment final : public segment {
 public:
  /// size: bytes of a new segment (> 0); on open, 0 accepts the existing size, else it must match
  /// (errc::incompatible). An opener waits (bounded, 2 s) for the creator to size the segment.
  /// Throws std::system_error naming shm_open and the object, errc::not_owner for a foreign segment.
  posix_segment(std::string_view name, open_mode mode, std::size_t size, mode_t perms = 0600);
  ~posix_segment() override;
  void remove() override;
  /// Unlinks /dev/shm/libipc.NAME; false if there was none. Throws errc::not_owner, std::system_error.
  static bool remove(std::string_view name);
  /// "libipc.NAME", the name given to shm_open (after its leading '/').
  static std::string posix_name(std::string_view name);
  /// The shm_open descriptor, owned by this handle (e.g. for fstat: identity, link count). Never throws.
  [[nodiscard]] int fd() const noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// System V segment whose key comes from runtime_dir()/NAME.shm (project id 'H').
class IPC_API sysv_segment final : public segment {
 public:
  /// size as for posix_segment. Throws std::system_error naming shmget and the key file,
  /// errc::not_owner for a foreign segment, errc::incompatible for another size.
  sysv_segment(std::string_view name, open_mode mode, std::size_t size, mode_t perms = 0600);
  /// Segment with an explicit key; `label` names it in errors.
  sysv_segment(key_t key, std::string label, open_mode mode, std::size_t size, mode_t perms = 0600);
  ~sysv_segment() override;  ///< shmdt; never removes
  [[nodiscard]] int id() const noexcept { return id_; }
  [[nodiscard]] key_t key() const noexcept { return key_; }
  /// Processes attached right now (IPC_STAT shm_nattch). Throws std::system_error.
  [[nodiscard]] std::size_t attached() const;
  void remove() override;
  /// Removes the named segment (IPC_RMID) and its key file; false if there was none.
  static bool remove(std::string_view name);

 private:
  void open(open_mode mode, std::size_t size, mode_t perms);
  int id_ = -1;
  key_t key_ = 0;
  std::string key_file_;  // empty for explicit keys
};

enum class segment_backing { posix, sysv };

/// What a typed layout looks like: detail::layout_header first, the kind's header, then payload.
struct layout_spec {
  std::uint32_t magic = 0;
  std::uint32_t version = 0;
  std::size_t header_size = 0;    ///< the kind's whole header (>= sizeof(detail::layout_header))
  std::size_t payload_bytes = 0;  ///< bytes after the header; on open, 0 accepts the creator's choice
};

/// A segment whose layout header is initialised by its creator and validated by every opener.
class IPC_API layout_segment {
 public:
  /// Fills the new layout (everything but the detail::layout_header fields); runs before publication.
  using init_fn = std::function<void(std::byte* base, std::size_t total_size)>;

  /// Creates (then init + publish) or opens (then waits up to 2 s for publication and validates magic,
  /// version and sizes against the real mapping). Throws errc::incompatible naming the object,
  /// errc::not_owner, std::system_error. If init throws, the new segment is removed. A creator killed during
  /// initialisation is detected at once (pid + start time): open_only then throws errc::incompatible naming
  /// its pid; open_or_create of a POSIX layout removes the abandoned segment and creates a fresh one.
  layout_segment(segment_backing backing, std::string_view name, open_mode mode, const layout_spec& spec,
                 const init_fn& init = {}, mode_t perms = 0600);
  /// Around a segment already created/opened with total_bytes(spec) (0 to open whatever exists).
  layout_segment(std::unique_ptr<segment> seg, const layout_spec& spec, const init_fn& init = {});
  layout_segment(layout_segment&&) noexcept;
  layout_segment& operator=(layout_segment&&) noexcept;
  ~layout_segment();

  /// header_size + payload_bytes, checked for overflow and absurd sizes (> 1 TiB): std::system_error (EINVAL/EFBIG).
  static std::size_t total_bytes(const layout_spec& spec);

  /// Start of the layout (the header), size() bytes: the validated total size.
  [[nodiscard]] std::byte* data() const noexcept;
  [[nodiscard]] std::size_t size() const noexcept { return total_size_; }
  [[nodiscard]] std::byte* payload() const noexcept { return data() + header_size_; }
  [[nodiscard]] std::size_t payload_size() const noexcept { return total_size_ - header_size_; }
  [[nodiscard]] const detail::layout_header& header() const noexcept;
  template <class Header>
  [[nodiscard]] Header* header_as() const noexcept {
    return reinterpret_cast<Header*>(data());
  }
  [[nodiscard]] pid_t creator_pid() const noexcept;
  [[nodiscard]] bool created() const noexcept;
  [[nodiscard]] const std::string& object() const noexcept;
  [[nodiscard]] segment& raw() const noexcept { return *segment_; }
  /// Destroys the kernel object (mapping stays valid while this handle lives).
  void remove();
  /// Removes the named segment; false if there was none.
  static bool remove(segment_backing backing, std::string_view name);

 private:
  void attach(const layout_spec& spec, const init_fn& init);
  static bool replace_abandoned(posix_segment& seg, std::string_view name);
  std::unique_ptr<segment> segment_;
  std::size_t header_size_ = 0;
  std::size_t total_size_ = 0;
};

}  // namespace ipc
