// The fast channel: a ring buffer of variable-length messages in POSIX shared
// memory (/dev/shm/libipc.NAME), one sender and one receiver, lock-free on the
// fast path, spin-then-futex when it has to wait.
//
//   ipc::shm_ring tx("demo", ipc::role::sender);             // open_or_create, 1 MiB ring
//   ipc::shm_ring rx("demo", ipc::role::receiver);
//   tx.send(ipc::as_bytes("hello"));
//   std::vector<std::byte> buf;
//   rx.receive(buf);                                          // "hello"
//   rx.remove();                                              // unlink the name; mappings stay valid
//
// Or by URI: ipc::open_channel("shm:demo?capacity=4M&max_message=64K", ipc::role::receiver).
// One attached sender and one attached receiver at a time: a second one is refused
// (EBUSY, naming the pid that holds the role) unless the holder is dead. A fork()
// shares the caller's endpoints with the child (see docs/shm_ring.md).
// A name unlinked under a running pair (rm /dev/shm/libipc.NAME) is noticed by the sender within
// ~100 ms of sends (errc::removed); reopen() on each side then meets on a recreated ring.
// Zero-copy: loan(n) / commit() write a message in place, receive_view() reads one in place
// (<ipc/shm_loan.hpp>, docs/shm-zero-copy.md); they interleave with send() and receive().
#pragma once

#include <ipc/channel.hpp>
#include <ipc/config.hpp>
#include <ipc/shared_memory.hpp>
#include <ipc/shm_loan.hpp>
#include <ipc/uri.hpp>

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ipc {

namespace detail {
struct ring_header;
enum class death_wait;
}  // namespace detail

/// How a ring is made when this call creates it (an opener adopts the existing ring's sizes).
struct shm_ring_options {
  std::size_t capacity = std::size_t{1} << 20;      ///< ring bytes: a power of two, 4 KiB … 1 GiB
  std::size_t max_message = std::size_t{64} << 10;  ///< at most capacity / 2 - 8
  mode_t mode = 0600;                               ///< permissions of a new segment
  open_mode open = open_mode::open_or_create;
  /// Opening an existing ring: a size insisted on that differs from the ring's is errc::incompatible
  /// naming both; one not insisted on adopts the ring's. A URI insists on the sizes it names.
  bool insist_capacity = false;
  bool insist_max_message = false;
};

class IPC_API shm_ring final : public channel {
 public:
  /// Creates and/or attaches the ring "NAME" (a plain name) as `r`. Blocks at most ~2 s for a
  /// concurrent creator to finish. Throws errc::bad_uri (bad name or sizes), errc::not_owner,
  /// errc::incompatible, errc::corrupt, std::system_error (EBUSY: the role is held by a live pid;
  /// EEXIST/ENOENT for create_only/open_only).
  shm_ring(std::string_view name, role r, const shm_ring_options& options = {});
  /// Detaches: a sender marks the ring closed for the receiver (which drains first), and vice versa.
  ~shm_ring() override;
  shm_ring(const shm_ring&) = delete;
  shm_ring& operator=(const shm_ring&) = delete;

  /// Capacity and max message size of the attached ring. Never blocks, never throws.
  [[nodiscard]] channel_limits limits() const override;
  /// "shm".
  [[nodiscard]] std::string_view kind() const noexcept override { return "shm"; }
  /// Unlinks /dev/shm/libipc.NAME if the name still refers to this handle's ring (absent or a newer ring
  /// under the name: nothing is done); attached handles keep working, on purpose (the ring is marked so
  /// that the sender's name check does not report it). Throws std::system_error naming the object.
  void remove() override;
  /// Unlinks /dev/shm/libipc.NAME as remove() does (only while the name still refers to this handle's
  /// ring), but not on purpose: the sender's name check reports errc::removed within ~100 ms of sends,
  /// so a sender still attached moves to a new ring (reopen()) instead of feeding this one. For
  /// discarding a damaged ring (a daemon's quarantine). Throws std::system_error naming the object.
  void discard() override;
  /// Re-attaches when the ring this handle holds was unlinked (st_nlink 0, by remove() or rm):
  /// to the ring the name denotes now, or a new one with this ring's capacity, max_message and
  /// mode; the old ring is detached (its peer drains it, then sees errc::closed, and reopens in
  /// turn). A ring still linked: nothing to do. Never blocks beyond the constructor's ~2 s wait for
  /// a concurrent creator. Throws as the constructor.
  void reopen() override;
  /// Ends this handle's part now, as destroying it would: a sender's receiver drains, then gets
  /// errc::closed; a receiver's sender sees errc::closed once the ring is full. Later calls on
  /// this handle throw errc::closed; reopen() attaches it again. Idempotent. Throws EBUSY while a
  /// loan or view is out.
  void close() override;
  /// Unlinks the ring "NAME" without attaching. Returns false if it did not exist.
  /// Throws std::system_error naming the object.
  static bool remove(std::string_view name);

  /// The POSIX shared-memory name, "libipc.NAME".
  [[nodiscard]] static std::string shm_name(std::string_view name);

  // Zero-copy (sender). A loan reserves `bytes` bytes of the ring for one message, written in place
  // and made visible by commit() (docs/shm-zero-copy.md). Errors, for every form:
  // errc::message_too_large when bytes > max_message_size() (nothing reserved, whatever the ring
  // holds); std::system_error EBUSY when this handle already has a loan out, EBADF on a receiver
  // handle; errc::closed when the ring is full and the receiver is gone; errc::removed as send().

  /// Blocks until `bytes` bytes are free (as send() blocks while full). Throws as above.
  [[nodiscard]] shm_loan loan(std::size_t bytes) { return loan_until(bytes, deadline::never()); }
  /// Blocks at most `timeout`; an empty loan on timeout. Throws as loan().
  [[nodiscard]] shm_loan loan_for(std::size_t bytes, std::chrono::nanoseconds timeout) {
    return loan_until(bytes, deadline::in(timeout));
  }
  /// Blocks until `d`; an empty loan on timeout. Throws as loan().
  [[nodiscard]] shm_loan loan_until(std::size_t bytes, const deadline& d);
  /// Never blocks; an empty loan when the ring has no room. Throws as loan().
  [[nodiscard]] shm_loan try_loan(std::size_t bytes) { return loan_until(bytes, deadline::now()); }
  /// Blocks until sizeof(T) bytes are free; `*loan` is the T in the segment (T trivially copyable,
  /// alignof(T) ≤ 8, checked at compile time). Throws as loan().
  template <typename T>
  [[nodiscard]] shm_typed_loan<T> loan_as() {
    return shm_typed_loan<T>(loan(sizeof(T)));
  }
  /// Blocks at most `timeout`; an empty typed loan on timeout. Throws as loan().
  template <typename T>
  [[nodiscard]] shm_typed_loan<T> loan_as_for(std::chrono::nanoseconds timeout) {
    return shm_typed_loan<T>(loan_for(sizeof(T), timeout));
  }

  // Zero-copy (receiver). A view is the next message, read in place; the ring keeps it (its space
  // stays the receiver's) until the view is released or destroyed. Errors, for every form:
  // errc::closed when the sender is gone and the ring is drained; errc::corrupt as receive();
  // std::system_error EBUSY when this handle already has a view out, EBADF on a sender handle.
  // While a view is out, receive() and its forms throw EBUSY too (the view's message is next).

  /// Blocks while the ring is empty. Throws as above.
  [[nodiscard]] shm_view receive_view() { return receive_view_until(deadline::never()); }
  /// Blocks at most `timeout`; an empty view on timeout. Throws as receive_view().
  [[nodiscard]] shm_view receive_view_for(std::chrono::nanoseconds timeout) {
    return receive_view_until(deadline::in(timeout));
  }
  /// Blocks until `d`; an empty view on timeout. Throws as receive_view().
  [[nodiscard]] shm_view receive_view_until(const deadline& d);
  /// Never blocks; an empty view when the ring is empty. Throws as receive_view().
  [[nodiscard]] shm_view try_receive_view() { return receive_view_until(deadline::now()); }

 protected:
  bool do_send(std::span<const std::byte> message, const deadline& d) override;
  bool do_receive(std::vector<std::byte>& out, const deadline& d) override;

 private:
  friend struct shm_ring_fork_registry;
  friend class shm_loan;
  friend class shm_view;

  // The record steps that send() and loans share (sender), and receive() and views (receiver).
  std::byte* reserve_record(std::uint64_t len, const deadline& d, const char* call);
  void publish_record(std::uint64_t len);
  const std::byte* next_record(std::uint64_t& len, const deadline& d, const char* call);
  void release_record();
  void commit_loan(std::size_t used);
  void abandon_loan() noexcept;
  void release_view() noexcept;
  [[noreturn]] void busy(std::string_view call, std::string_view what) const;

  bool wait_for_space(std::uint64_t head, std::uint64_t needed, const deadline& d, const char* call);
  bool wait_for_data(std::uint64_t tail, const deadline& d, const char* call);
  detail::death_wait sleep_on(const std::atomic<std::uint32_t>& seq, std::uint32_t seen, role peer, const deadline& d,
                              unsigned& unheld_streak);
  [[noreturn]] void corrupt(const std::string& what) const;
  int segment_fd() const noexcept;
  void check_linked(std::string_view call);
  void leave() noexcept;
  [[noreturn]] void closed_handle(std::string_view call) const;
  void swap_attachment(shm_ring& other) noexcept;
  void check_indices(std::uint64_t head, std::uint64_t tail) const;
  enum class fork_step { prepare, failed, child };
  void on_fork(fork_step step) noexcept;

  std::string base_name_;
  role role_;
  std::optional<layout_segment> seg_;  // the POSIX segment, built like every shared layout
  detail::ring_header* hdr_ = nullptr;
  std::byte* data_ = nullptr;
  std::uint64_t capacity_ = 0;
  std::uint64_t mask_ = 0;
  std::uint64_t cached_peer_index_ = 0;  // sender: last tail seen; receiver: last head seen
  pid_t pid_ = 0;                        // the pid this handle is registered under
  std::chrono::steady_clock::time_point next_liveness_probe_{};
  // The sender fstat()s the segment at most every 100 ms (detail::link_check_interval_ns) to notice
  // a name unlinked under it: errc::removed (docs/shm_ring.md, "A name removed under a running pair"). The coarse clock is
  // read every 64th send and after every send that woke the receiver.
  std::int64_t next_link_check_ns_ = 0;
  std::uint32_t sends_unchecked_ = 0;
  bool woke_receiver_ = true;  // the first send checks
  std::uint64_t dev_ = 0;  // the segment's st_dev / st_ino, to find it in a holder's /proc/PID/maps
  std::uint64_t ino_ = 0;
  // The record reserved by reserve_record (sender) / found by next_record (receiver).
  std::uint64_t pending_head_ = 0;  // head before the record (and its wrap marker, if any)
  std::uint64_t pending_pos_ = 0;   // the record's offset in the data area
  std::uint64_t pending_skip_ = 0;  // bytes skipped by a wrap marker before it (0: no wrap)
  std::uint64_t next_tail_ = 0;     // receiver: tail once the record found is consumed
  bool loan_out_ = false;
  bool view_out_ = false;
};

}  // namespace ipc
