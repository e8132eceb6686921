// The shm channel's work-queue mode: many senders and many receivers on one POSIX segment
// (/dev/shm/libipc.NAME); each message reaches exactly one receiver. Lock-free slots with a
// sequence (lap) per slot, as in Vyukov's bounded MPMC queue, where every claim records who holds
// it, so a process killed mid-write or mid-read is stepped over once it is found dead.
//
//   ipc::shm_mpmc work("jobs", ipc::role::sender);               // open_or_create, 256 slots of 8 KiB
//   ipc::shm_mpmc worker("jobs", ipc::role::receiver);           // any number of each, any process
//   work.send(ipc::as_bytes("job 1"));
//   std::vector<std::byte> buf;
//   worker.receive(buf);                                         // "job 1", and no other receiver gets it
//   work.end_stream();                                           // receivers drain, then errc::closed
//   work.remove();                                               // unlink the name; mappings stay valid
//
// Or by URI: ipc::open_channel("shm:jobs?mode=mpmc&slots=1024&max_message=4K", role).
// Order: FIFO by the order in which senders claimed slots (so FIFO per sender); receivers take
// messages in that order, but may finish copying them out in another.
// At most once: a message is lost only when the receiver that took it dies while copying it out
// (counted in lost_in_receivers()); a sender killed mid-write leaves nothing visible (its slot is
// skipped and counted in torn_skipped()). docs/shm-modes.md has the protocol and its limits.
// A handle serves one thread at a time (one handle per thread); a fork() child inherits the
// caller's handles as endpoints of its own.
#pragma once

#include <ipc/channel.hpp>
#include <ipc/config.hpp>
#include <ipc/shared_memory.hpp>
#include <ipc/uri.hpp>

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ipc {

namespace detail {
struct mpmc_header;
}  // namespace detail

/// How a slot queue (the work queue, broadcast) is made when this call creates it, and what an
/// opener of an existing one insists on: a size it insists on that differs from the existing one is
/// errc::incompatible naming both values; a size it does not insist on adopts the existing one.
/// A URI's query insists on every size it names (docs/shm-modes.md, "Opening an existing channel").
struct shm_slot_options {
  std::size_t slots = 256;          ///< messages held before send blocks: a power of two, 2 … 65536
  std::size_t max_message = 8192;   ///< bytes per message: 1 … 16 MiB (slots × slot ≤ 1 GiB)
  mode_t mode = 0600;               ///< permissions of a new segment
  open_mode open = open_mode::open_or_create;
  bool insist_slots = false;        ///< an existing object must have `slots`
  bool insist_max_message = false;  ///< an existing object must have `max_message`
};

/// How a work queue is made, or opened (shm_slot_options).
struct shm_mpmc_options : shm_slot_options {};

class IPC_API shm_mpmc final : public channel {
 public:
  /// Creates and/or attaches the queue "NAME" (a plain name) as `r`. Blocks at most ~2 s for a
  /// concurrent creator to finish. Throws errc::bad_uri (bad name or sizes), errc::not_owner,
  /// errc::incompatible (not an MPMC layout, e.g. an SPSC ring of that name; bad sizes),
  /// std::system_error (EEXIST/ENOENT for create_only/open_only; EBUSY when all 64 endpoint
  /// places are held by live processes).
  shm_mpmc(std::string_view name, role r, const shm_mpmc_options& options = {});
  /// Detaches. The last sender to leave wakes the receivers: they drain, then get errc::closed.
  ~shm_mpmc() override;
  shm_mpmc(const shm_mpmc&) = delete;
  shm_mpmc& operator=(const shm_mpmc&) = delete;

  /// Slots (capacity_messages), slots × max_message (capacity_bytes), max_message. Never throws.
  [[nodiscard]] channel_limits limits() const override;
  /// "shm".
  [[nodiscard]] std::string_view kind() const noexcept override { return "shm"; }
  /// Unlinks /dev/shm/libipc.NAME (absent is fine; a newer queue under the name, made after this
  /// one was unlinked, is left alone); attached handles keep working, on purpose (no errc::removed).
  /// Throws std::system_error naming the object.
  void remove() override;
  /// Unlinks the queue "NAME" without attaching. Returns false if it did not exist.
  static bool remove(std::string_view name);
  /// When the queue this handle maps was unlinked (st_nlink 0: `rm /dev/shm/libipc.NAME`, remove()),
  /// attaches in the same role to the queue the name denotes now, or creates one with the same
  /// slots, max_message and mode; the old one is left (its last sender leaving: its receivers drain
  /// it, see errc::closed, and reopen() to follow). While the queue is still the name's, nothing:
  /// nothing queued, no role, no counter is lost. Never blocks (but ~2 s for a concurrent creator).
  /// Throws as the constructor.
  void reopen() override;
  /// Ends this handle's part now, as destroying it would (the last sender leaving: receivers drain,
  /// then get errc::closed); unlike end_stream() other senders go on. Later calls on this handle
  /// throw errc::closed (receive_or_end too); reopen() attaches it again. Idempotent. Never throws.
  void close() override;

  /// Ends the stream for every receiver, now and later: they take what is queued, then receive
  /// throws errc::closed (receive_or_end returns end). Senders may still send; receivers that
  /// have not yet seen the end take those values too. Never blocks. Throws std::system_error (futex).
  void end_stream();

  /// What receive_or_end found.
  enum class taken { message, timeout, end };
  /// As receive_until, but the end of the stream (end_stream(), or every sender gone with nothing
  /// left) is a result instead of errc::closed. Blocks until `d`. Does not update counters().
  /// Throws errc::corrupt, std::system_error.
  taken receive_or_end(std::vector<std::byte>& out, const deadline& d);

  /// Slots a sender killed mid-write left behind, skipped without exposing them. Never throws.
  [[nodiscard]] std::uint64_t torn_skipped() const noexcept;
  /// Messages lost because the receiver that took them died while copying them out. Never throws.
  [[nodiscard]] std::uint64_t lost_in_receivers() const noexcept;

 protected:
  /// Blocks while full. Throws errc::closed (every receiver gone, the queue full), errc::removed
  /// (the name was unlinked under this handle, noticed within ~100 ms: reopen()), errc::corrupt.
  bool do_send(std::span<const std::byte> message, const deadline& d) override;
  bool do_receive(std::vector<std::byte>& out, const deadline& d) override;

 private:
  void swap_attachment(shm_mpmc& other) noexcept;
  void leave() noexcept;
  [[noreturn]] void closed_handle(std::string_view call) const;
  [[nodiscard]] int segment_fd() const noexcept;
  friend struct shm_mpmc_fork_registry;
  enum class fork_step { prepare, failed, child };
  void on_fork(fork_step step) noexcept;

  enum class slot_wait { ready, timeout, end, dead };
  slot_wait wait_for(bool for_data, std::uint64_t pos, std::uint64_t seen, const deadline& d);
  void wake_all();
  taken take(std::vector<std::byte>& out, const deadline& d);
  [[nodiscard]] std::byte* slot_at(std::uint64_t pos) const noexcept;
  [[noreturn]] void corrupt(const std::string& what) const;

  std::string base_name_;
  role role_;
  std::optional<layout_segment> seg_;
  detail::mpmc_header* hdr_ = nullptr;
  std::byte* slots_ = nullptr;
  std::uint64_t mask_ = 0;
  unsigned shift_ = 0;
  std::uint64_t stride_ = 0;
  unsigned holder_ = 0;        // our place in the holder table
  std::uint32_t place_gen_ = 0;  // its generation (odd while ours)
  std::uint32_t token_ = 0;    // what our claims record: holder index and generation
  int pending_ = -1;           // during fork(): the place reserved for the child (-1: none)
  std::uint32_t pending_gen_ = 0;
  pid_t pid_ = 0;
  std::uint64_t dev_ = 0;  // the segment's st_dev / st_ino, to find it in a holder's /proc/PID/maps
  std::uint64_t ino_ = 0;
  std::chrono::steady_clock::time_point next_probe_{};
  std::int64_t next_link_check_ns_ = 0;  // when a send next fstat()s the segment (detail/shm_link.hpp)
};

}  // namespace ipc
