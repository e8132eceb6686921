// The `sem:` channel: the textbook bounded buffer. N fixed-size slots live in a System V shared
// segment; a System V semaphore set counts empty and full slots and guards the indices.
//
//   ipc::sem_buffer tx("jobs", ipc::role::sender, ipc::open_mode::open_or_create, {.slots = 16, .slot_size = 4096});
//   ipc::sem_buffer rx("jobs", ipc::role::receiver);       // attaches to whatever geometry exists
//   tx.send(ipc::as_bytes("hello"));                        // blocks while all slots are full
//   std::vector<std::byte> buf;
//   if (rx.receive_for(buf, 100ms)) { ... }                 // std::nullopt on timeout
//   tx.close();                                             // rx drains, then gets errc::closed
//   rx.remove();                                            // destroys segment, semaphores and key file
//
// Or by URI: open_channel("sem:jobs?slots=16&slot_size=4096", role::sender).
// Key file runtime_dir()/NAME.sembuf; the semaphore set uses project id 'S', the segment 'H',
// so `ipcs` lists both. Crash safety and the closing protocol are described in docs/semaphore-shm.md.
//
// Segment and semaphore set are one unit: the segment records the id of its set. Whoever finds one
// half removed (ipcrm -m / ipcrm -s, a peer's quarantine) removes the other and gets errc::closed;
// the next open recreates both, so two peers never share a set over two segments
// (docs/crash-behaviour.md, "The sem channel is one unit"). Every failure inside a send or receive
// gives the index mutex back: errc::corrupt with the detail, or errc::closed when the unit was removed.
#pragma once

#include <ipc/channel.hpp>
#include <ipc/config.hpp>
#include <ipc/semaphore.hpp>
#include <ipc/shared_memory.hpp>
#include <ipc/uri.hpp>

#include <chrono>
#include <cstddef>
#include <initializer_list>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ipc {

/// Slot geometry of a sem_buffer; 0 means "what exists", or the default when creating.
struct sem_geometry {
  std::size_t slots = 0;
  std::size_t slot_size = 0;  ///< bytes per slot, the length header included
};

class IPC_API sem_buffer : public channel {
 public:
  static constexpr std::size_t default_slots = 16;
  static constexpr std::size_t default_slot_size = 4096;
  static constexpr std::size_t length_bytes = 4;  ///< each slot starts with the message length
  static constexpr std::size_t max_slots = 32000;  ///< counts live in semaphores (<= SEMVMX)
  static constexpr std::size_t min_slot_size = 8;
  static constexpr std::size_t max_slot_size = std::size_t{16} << 20;

  /// Semaphores of the set, in order: free slots, filled slots (+1 while closed), the index mutex,
  /// busy (raised by a holder until it commits; left raised by one that died), the closed flag.
  static constexpr unsigned short sem_empty = 0, sem_full = 1, sem_mutex = 2, sem_busy = 3, sem_closed = 4;

  using geometry = sem_geometry;

  /// The longest clear_closed()/close() wait for the index mutex: a mutex held longer belongs to a stopped
  /// holder or has a corrupt count, reported as errc::corrupt instead of blocking for ever.
  static constexpr std::chrono::seconds mutex_wait{5};
  /// How often a send or receive checks that the segment half of the unit still exists (one IPC_STAT).
  static constexpr std::chrono::milliseconds unit_check_period{250};

  /// Creates or attaches. A sender clears a previous close() (blocks at most mutex_wait for the mutex).
  /// A segment whose set is gone, or a set whose segment is gone, is removed and the unit recreated (not
  /// with open_only: then ENOENT). Throws std::system_error (EINVAL for a bad geometry, ENOENT), errc::incompatible
  /// (another geometry or layout), errc::not_owner, errc::corrupt (the mutex not free within mutex_wait).
  sem_buffer(std::string_view name, role r, open_mode mode = open_mode::open_or_create, geometry g = {},
             mode_t perms = 0600);
  /// Detaches only: neither close() nor remove() (a forked copy going away must not end the stream).
  ~sem_buffer() override;

  /// Sender: marks the stream ended (explicitly; the destructor does not); receivers drain what is left,
  /// then get errc::closed. Blocks at most mutex_wait for the index mutex. Throws errc::closed if the objects
  /// were removed, errc::corrupt (mutex not free within mutex_wait, counts out of range).
  void close() override;

  [[nodiscard]] channel_limits limits() const override;
  [[nodiscard]] std::string_view kind() const noexcept override { return "sem"; }
  /// Destroys this handle's semaphores (blocked peers get errc::closed) and segment, by id, never a newer unit
  /// under the same name; the key file too unless a newer unit uses it. Pending messages are lost.
  void remove() override;
  /// Removes the named buffer's objects; false if there were none. Throws std::system_error.
  static bool remove(std::string_view name);

  [[nodiscard]] std::size_t slots() const noexcept { return slots_; }
  [[nodiscard]] std::size_t slot_size() const noexcept { return slot_size_; }
  [[nodiscard]] const semaphore_set& semaphores() const noexcept { return *sems_; }
  [[nodiscard]] const layout_segment& segment() const noexcept { return *seg_; }
  /// Times this handle repaired the indices after a holder died mid-operation.
  [[nodiscard]] std::uint64_t recoveries() const noexcept { return recoveries_; }

 protected:
  bool do_send(std::span<const std::byte> message, const deadline& d) override;
  bool do_receive(std::vector<std::byte>& out, const deadline& d) override;

 private:
  using held_ops = std::initializer_list<semaphore_set::op>;
  bool open_unit(key_t sem_key, key_t shm_key, open_mode mode, geometry g, mode_t perms);
  void create_set(key_t sem_key, mode_t perms);
  bool lock(unsigned short unit, const deadline& d);
  bool recover(const deadline& d);
  void lock_alone(std::string_view step);
  void check_unit();
  void cross_check(bool receiving, std::uint32_t count, held_ops held);
  void commit(held_ops ops, std::string_view step, held_ops held, std::uint32_t index, std::uint32_t old_value);
  void give_back(held_ops held) noexcept;
  [[noreturn]] void corrupt(const std::string& what, held_ops held);
  [[noreturn]] void corrupt_locked(const std::string& what);
  [[noreturn]] void failed_holding(const std::system_error& e, std::string_view step, held_ops held);
  void discard_if_half() noexcept;
  void open(key_t sem_key, key_t shm_key, open_mode mode, geometry g, mode_t perms);
  void clear_closed();

  role role_;
  bool closed_ = false;
  std::size_t slots_ = 0;
  std::size_t slot_size_ = 0;
  std::uint32_t* indices_ = nullptr;  // head, tail in the segment header
  std::uint32_t checks_ = 0;
  std::uint64_t recoveries_ = 0;
  std::chrono::steady_clock::time_point next_unit_check_{};
  std::string key_file_;
  std::optional<layout_segment> seg_;
  std::optional<semaphore_set> sems_;
};

}  // namespace ipc
