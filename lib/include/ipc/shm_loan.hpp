// Zero-copy on the shm ring: a sender writes a message where the receiver will read it, and the
// receiver reads it there. No copy in either process.
//
//   ipc::shm_ring tx("frames", ipc::role::sender, {.capacity = 8 << 20, .max_message = 1 << 20});
//   ipc::shm_loan l = tx.loan(1 << 20);     // blocks until 1 MiB of the ring is free
//   render_into(l.bytes());                 // writes the message in the shared segment
//   l.commit();                             // now visible to the receiver, whole
//
//   ipc::shm_view v = rx.receive_view();    // blocks until a message is there
//   use(v.bytes());                         // reads it in place; the ring keeps it meanwhile
//   v.release();                            // (or let v go) the space is the sender's again
//
//   struct pose { double x, y, z; };        // typed: trivially copyable, size and alignment checked
//   auto p = tx.loan_as<pose>();  *p = {1, 2, 3};  p.commit();
//   auto pv = rx.receive_view();  const pose& q = pv.as<pose>();   // valid while pv holds it
//
// A loan dropped without commit() is abandoned: nothing is ever visible. A view dropped releases
// its message. One loan and one view at a time per handle; neither may outlive its shm_ring.
// Protocol, crash safety and figures: docs/shm-zero-copy.md.
#pragma once

#include <ipc/config.hpp>

#include <cstddef>
#include <cstdint>
#include <new>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>

namespace ipc {

class shm_ring;

/// Every loaned and viewed message starts on this boundary in the segment (bytes).
inline constexpr std::size_t shm_message_alignment = 8;

namespace detail {
// Whether `bytes` bytes at `p` hold one T (exact) or a whole number of T, suitably aligned.
template <typename T>
bool holds(const void* p, std::size_t bytes, bool exact) noexcept {
  static_assert(std::is_trivially_copyable_v<T>, "only trivially copyable types live in shared memory as bytes");
  static_assert(alignof(T) <= shm_message_alignment, "the ring aligns messages to 8 bytes only");
  const bool size_ok = exact ? bytes == sizeof(T) : bytes % sizeof(T) == 0;
  return size_ok && reinterpret_cast<std::uintptr_t>(p) % alignof(T) == 0;
}
}  // namespace detail

/// Writable space for one message in a ring's segment, from shm_ring::loan(). Move-only.
/// Nothing of it is visible to the receiver until commit(); destroyed uncommitted, it is abandoned.
class IPC_API shm_loan {
 public:
  shm_loan() noexcept = default;
  shm_loan(shm_loan&& other) noexcept
      : ring_(std::exchange(other.ring_, nullptr)), bytes_(std::exchange(other.bytes_, {})) {}
  shm_loan& operator=(shm_loan&& other) noexcept;
  shm_loan(const shm_loan&) = delete;
  shm_loan& operator=(const shm_loan&) = delete;
  /// Abandons an uncommitted loan (nothing becomes visible). Never blocks, never throws.
  ~shm_loan() { abandon(); }

  /// False for an empty loan: default-constructed, timed out, committed or abandoned.
  explicit operator bool() const noexcept { return ring_ != nullptr; }
  /// The loaned bytes, in the shared segment, 8-byte aligned; empty for an empty loan.
  [[nodiscard]] std::span<std::byte> bytes() const noexcept { return bytes_; }
  [[nodiscard]] std::byte* data() const noexcept { return bytes_.data(); }
  /// Loaned size in bytes.
  [[nodiscard]] std::size_t size() const noexcept { return bytes_.size(); }

  /// Makes all size() bytes visible to the receiver as one message; the loan is empty afterwards.
  /// Never blocks (the space was reserved by loan()). May wake the receiver (a futex syscall).
  /// Throws std::system_error(EINVAL) on an empty loan, or naming the ring if the wake fails.
  void commit() { commit(bytes_.size()); }
  /// The same with only the first `used` bytes as the message (used ≤ size(), may be 0): loan the
  /// most a message may need, commit what it took. Throws EINVAL when used > size() or empty.
  void commit(std::size_t used);
  /// Gives the space back without sending anything; the loan is empty afterwards. Never throws.
  void abandon() noexcept;

  /// The loaned bytes as one T. Throws std::system_error(EINVAL) unless size() == sizeof(T) and
  /// the bytes are aligned for T (they always are: alignof(T) ≤ 8 is checked at compile time).
  template <typename T>
  [[nodiscard]] T& as() const {
    if (!detail::holds<T>(bytes_.data(), bytes_.size(), true)) bad_typed_access("shm_loan::as", sizeof(T), alignof(T));
    return *std::launder(reinterpret_cast<T*>(bytes_.data()));
  }
  /// The loaned bytes as an array of T. Throws EINVAL unless size() is a multiple of sizeof(T).
  template <typename T>
  [[nodiscard]] std::span<T> as_span() const {
    if (!detail::holds<T>(bytes_.data(), bytes_.size(), false)) {
      bad_typed_access("shm_loan::as_span", sizeof(T), alignof(T));
    }
    return {std::launder(reinterpret_cast<T*>(bytes_.data())), bytes_.size() / sizeof(T)};
  }

 private:
  friend class shm_ring;
  shm_loan(shm_ring* ring, std::span<std::byte> bytes) noexcept : ring_(ring), bytes_(bytes) {}
  // Throws std::system_error(EINVAL) naming the call, the ring and the sizes.
  [[noreturn]] void bad_typed_access(std::string_view call, std::size_t need, std::size_t align) const;
  shm_ring* ring_ = nullptr;
  std::span<std::byte> bytes_;
};

/// A loan of exactly one T (shm_ring::loan_as<T>()): *loan and loan-> reach the T in the segment.
template <typename T>
class shm_typed_loan {
 public:
  shm_typed_loan() noexcept = default;
  explicit shm_typed_loan(shm_loan loan) : loan_(std::move(loan)) {
    if (loan_) value_ = &loan_.as<T>();
  }
  explicit operator bool() const noexcept { return static_cast<bool>(loan_); }
  T& operator*() const noexcept { return *value_; }
  T* operator->() const noexcept { return value_; }
  /// As shm_loan::commit().
  void commit() {
    loan_.commit();
    value_ = nullptr;
  }
  /// As shm_loan::abandon().
  void abandon() noexcept {
    loan_.abandon();
    value_ = nullptr;
  }

 private:
  shm_loan loan_;
  T* value_ = nullptr;
};

/// One received message, read in place in the ring's segment, from shm_ring::receive_view().
/// Move-only. The ring keeps the message (the sender cannot reuse its space) until release() or
/// destruction; a receiver that dies holding a view leaves the message for the next receiver.
class IPC_API shm_view {
 public:
  shm_view() noexcept = default;
  shm_view(shm_view&& other) noexcept
      : ring_(std::exchange(other.ring_, nullptr)), bytes_(std::exchange(other.bytes_, {})) {}
  shm_view& operator=(shm_view&& other) noexcept;
  shm_view(const shm_view&) = delete;
  shm_view& operator=(const shm_view&) = delete;
  /// Releases the message. Never blocks, never throws.
  ~shm_view() { release(); }

  /// False for an empty view: default-constructed, timed out or released.
  explicit operator bool() const noexcept { return ring_ != nullptr; }
  /// The message's bytes, in the shared segment, 8-byte aligned; empty for an empty view (and for
  /// an empty message).
  [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return bytes_; }
  [[nodiscard]] const std::byte* data() const noexcept { return bytes_.data(); }
  /// Message size in bytes.
  [[nodiscard]] std::size_t size() const noexcept { return bytes_.size(); }

  /// Frees the message's space for the sender (wakes a sender waiting for it: a futex syscall at
  /// most); the view is empty afterwards. Never blocks, never throws.
  void release() noexcept;

  /// The message as one T. Throws std::system_error(EINVAL) unless size() == sizeof(T) (and it is
  /// aligned for T, which it always is: alignof(T) ≤ 8 is checked at compile time).
  template <typename T>
  [[nodiscard]] const T& as() const {
    if (!detail::holds<T>(bytes_.data(), bytes_.size(), true)) bad_typed_access("shm_view::as", sizeof(T), alignof(T));
    return *std::launder(reinterpret_cast<const T*>(bytes_.data()));
  }
  /// The message as an array of T. Throws EINVAL unless size() is a multiple of sizeof(T).
  template <typename T>
  [[nodiscard]] std::span<const T> as_span() const {
    if (!detail::holds<T>(bytes_.data(), bytes_.size(), false)) {
      bad_typed_access("shm_view::as_span", sizeof(T), alignof(T));
    }
    return {std::launder(reinterpret_cast<const T*>(bytes_.data())), bytes_.size() / sizeof(T)};
  }

 private:
  friend class shm_ring;
  shm_view(shm_ring* ring, std::span<const std::byte> bytes) noexcept : ring_(ring), bytes_(bytes) {}
  [[noreturn]] void bad_typed_access(std::string_view call, std::size_t need, std::size_t align) const;
  shm_ring* ring_ = nullptr;
  std::span<const std::byte> bytes_;
};

}  // namespace ipc
