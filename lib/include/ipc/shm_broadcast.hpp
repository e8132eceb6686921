// The shm channel's broadcast mode: publish/subscribe on one POSIX segment (/dev/shm/libipc.NAME).
// Every subscriber gets every message published after it joined, in order; subscribers join and
// leave at any time. A ring of fixed-size cells with a state word per cell (seqlock-style: a cell
// being written is never read, a reader re-checks the word after its copy) and a cursor per
// subscriber. What a slow subscriber does to the publishers is chosen at creation:
//   block        publishers wait for the slowest live subscriber (no message is ever dropped);
//   drop_oldest  publishers overwrite; a subscriber that fell a lap behind skips forward to the
//                oldest message still held and counts what it missed in dropped().
//
//   ipc::shm_broadcast_options o;
//   o.policy = ipc::broadcast_policy::drop_oldest;
//   ipc::shm_broadcast pub("ticks", ipc::role::sender, o);          // a publisher (any number)
//   ipc::shm_broadcast sub("ticks", ipc::role::receiver);           // a subscriber (up to 63)
//   pub.send(ipc::as_bytes("tick 1"));
//   std::vector<std::byte> buf;
//   sub.receive(buf);                                               // "tick 1"; every subscriber gets it
//   sub.dropped();                                                  // messages this subscriber missed
//
// Or by URI: ipc::open_channel("shm:ticks?mode=broadcast&slots=1024&max_message=4K&policy=drop_oldest", r).
// Crash safety: a publisher killed mid-write exposes nothing (its cell is skipped, torn_skipped());
// a subscriber killed anywhere holds the publishers up only until its death is detected (the kernel
// wakes them through its endpoint lock: milliseconds). An idle endpoint makes no wake-ups.
// When every publisher has gone, subscribers read what is left and then get errc::closed.
// The channel calls keep their meaning: send blocks (policy block) while the slowest live subscriber
// is a whole ring behind, and reaches nobody when there is no subscriber; receive on a publisher
// handle throws std::system_error(EBADF).
// A handle serves one thread at a time; a fork() child inherits the caller's handles as endpoints
// of its own (a subscriber handle continues from the parent's position). docs/shm-broadcast.md
// has the protocol and its limits.
#pragma once

#include <ipc/channel.hpp>
#include <ipc/config.hpp>
#include <ipc/shared_memory.hpp>
#include <ipc/shm_mpmc.hpp>

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
struct bcast_header;
enum class fork_step;
}  // namespace detail

/// What a publisher does when a subscriber is a whole ring behind.
enum class broadcast_policy {
  block,        ///< wait for the slowest live subscriber: nothing is dropped
  drop_oldest,  ///< overwrite: the lagging subscriber skips forward and counts the loss
};

/// How a broadcast channel is made, or opened (shm_slot_options: sizes, permissions, what an
/// opener insists on), and its slow-subscriber policy.
struct shm_broadcast_options : shm_slot_options {
  broadcast_policy policy = broadcast_policy::block;
  bool insist_policy = false;  ///< an existing channel must have `policy`
};

class IPC_API shm_broadcast final : public channel {
 public:
  /// The most endpoints (publishers + subscribers) one channel holds at once.
  static constexpr std::size_t max_endpoints = 64;

  /// Creates and/or attaches the channel "NAME" (a plain name): role::sender publishes,
  /// role::receiver subscribes, starting at the next message published. Blocks at most ~2 s for a
  /// concurrent creator to finish. Throws errc::bad_uri (bad name or sizes), errc::not_owner,
  /// errc::incompatible (not a broadcast layout, e.g. an SPSC ring or a work queue of that name;
  /// sizes that do not match the mapping), std::system_error (EEXIST/ENOENT for
  /// create_only/open_only; EBUSY when all 64 endpoint places are held by live processes).
  shm_broadcast(std::string_view name, role r, const shm_broadcast_options& options = {});
  /// Detaches (a subscriber stops holding publishers up). The last publisher to leave wakes the
  /// subscribers: they read what is left, then get errc::closed. Never throws.
  ~shm_broadcast() override;
  shm_broadcast(const shm_broadcast&) = delete;
  shm_broadcast& operator=(const shm_broadcast&) = delete;

  /// Slots (capacity_messages), slots × max_message (capacity_bytes), max_message. Never throws.
  [[nodiscard]] channel_limits limits() const override;
  /// "shm".
  [[nodiscard]] std::string_view kind() const noexcept override { return "shm"; }
  /// Unlinks /dev/shm/libipc.NAME (absent is fine; a newer channel under the name, made after this
  /// one was unlinked, is left alone); attached handles keep working, on purpose (no errc::removed).
  /// Throws std::system_error naming the object.
  void remove() override;
  /// When the channel this handle maps was unlinked (st_nlink 0: `rm /dev/shm/libipc.NAME`,
  /// remove()), attaches in the same role to the channel the name denotes now (a subscriber starts
  /// at its next message), or creates one with the same slots, max_message, policy and mode; the old
  /// one is left (its last publisher leaving: its subscribers read what is left, see errc::closed,
  /// and reopen() to follow). While the channel is still the name's, nothing: a subscriber keeps its
  /// place and cursor, so nothing is missed. Never blocks (but ~2 s for a concurrent creator).
  /// Throws as the constructor.
  void reopen() override;
  /// Ends this handle's part now, as destroying it would (a subscriber stops holding publishers
  /// up; the last publisher leaving: subscribers read what is left, then get errc::closed). Later
  /// calls on this handle throw errc::closed; reopen() attaches it again (a subscriber at the next
  /// message). Idempotent. Never throws.
  void close() override;
  /// Unlinks the channel "NAME" without attaching. Returns false if it did not exist.
  /// Throws std::system_error naming the object.
  static bool remove(std::string_view name);

  /// The policy chosen at creation. Never throws.
  [[nodiscard]] broadcast_policy policy() const noexcept;
  /// Messages this subscriber missed because a publisher overwrote them first (drop_oldest), also
  /// counted in counters().messages_skipped. 0 for a publisher. Never throws.
  [[nodiscard]] std::uint64_t dropped() const noexcept { return dropped_; }
  /// Cells publishers killed mid-write left behind, skipped without exposing them (whole channel).
  /// Never throws.
  [[nodiscard]] std::uint64_t torn_skipped() const noexcept;
  /// Subscribers registered now (the dead among them until they are found dead). Never throws.
  [[nodiscard]] std::size_t subscribers() const noexcept;

 protected:
  /// Blocks (policy block) while the slowest live subscriber is a whole ring behind; with no
  /// subscriber the message reaches nobody. Returns false on timeout (nothing sent). Throws
  /// errc::removed once the name was unlinked under this handle (noticed within ~100 ms: reopen()).
  bool do_send(std::span<const std::byte> message, const deadline& d) override;
  /// Blocks while nothing new was published; false on timeout. errc::closed once every publisher
  /// is gone and everything published was read; errc::corrupt naming the cell.
  bool do_receive(std::vector<std::byte>& out, const deadline& d) override;

 private:
  enum class cell_wait { ready, timeout, end, dead };
  static void fork_hook(void* self, detail::fork_step step) noexcept;
  void on_fork(detail::fork_step step) noexcept;
  template <class Changed, class Verdict>
  cell_wait wait_until(bool on_data, const Changed& changed, const Verdict& verdict, const deadline& d);
  std::uint64_t slowest_subscriber() const noexcept;
  void advance_cursor(std::uint64_t next);
  void arm(bool on_data) noexcept;
  void wake(std::atomic<std::uint32_t>& seq);
  void check_name_if_due(std::string_view call);
  void leave() noexcept;
  [[noreturn]] void closed_handle(std::string_view call) const;
  void swap_attachment(shm_broadcast& other) noexcept;
  [[nodiscard]] int segment_fd() const noexcept;
  [[nodiscard]] std::byte* cell_at(std::uint64_t pos) const noexcept;
  [[noreturn]] void corrupt(const std::string& what) const;

  std::string base_name_;
  role role_;
  std::optional<layout_segment> seg_;
  detail::bcast_header* hdr_ = nullptr;
  std::byte* cells_ = nullptr;
  std::uint64_t mask_ = 0;
  unsigned shift_ = 0;
  std::uint64_t stride_ = 0;
  bool drop_oldest_ = false;
  std::uint64_t next_ = 0;         // subscriber: the next position to read
  std::uint64_t limit_ = 0;        // publisher (block): positions below this need no cursor scan
  std::uint64_t wanted_ = 0;       // publisher (block) about to sleep: the cursor it waits for
  std::uint64_t dropped_ = 0;
  unsigned holder_ = 0;            // our place in the holder table
  std::uint32_t place_gen_ = 0;    // its generation (odd while ours)
  std::uint32_t token_ = 0;        // what our claims record: holder index and generation
  int pending_ = -1;               // during fork(): the place reserved for the child (-1: none)
  std::uint32_t pending_gen_ = 0;
  pid_t pid_ = 0;
  std::uint64_t dev_ = 0;  // the segment's st_dev / st_ino, to find it in a holder's /proc/PID/maps
  std::uint64_t ino_ = 0;
  std::chrono::steady_clock::time_point next_probe_{};
  std::int64_t next_link_check_ns_ = 0;  // when a send next fstat()s the segment (detail/shm_link.hpp)
};

}  // namespace ipc
