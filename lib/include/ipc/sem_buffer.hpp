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
#pragma once

#include <ipc/channel.hpp>
#include <ipc/config.hpp>
#include <ipc/semaphore.hpp>
#include <ipc/shared_memory.hpp>
#include <ipc/uri.hpp>

#include <cstddef>
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

  /// Creates or attaches. A sender clears a previous close(). Throws std::system_error (EINVAL for a bad
  /// geometry), errc::incompatible (another geometry or layout), errc::not_owner, errc::corrupt.
  sem_buffer(std::string_view name, role r, open_mode mode = open_mode::open_or_create, geometry g = {},
             mode_t perms = 0600);
  /// Detaches only: neither close() nor remove() (a forked copy going away must not end the stream).
  ~sem_buffer() override;

  /// Sender: marks the stream ended (explicitly; the destructor does not); receivers drain what is left,
  /// then get errc::closed. Blocks only for the index mutex. Throws errc::closed if the objects were removed.
  void close() override;

  [[nodiscard]] channel_limits limits() const override;
  [[nodiscard]] std::string_view kind() const noexcept override { return "sem"; }
  /// Destroys semaphores (blocked peers get errc::closed), segment and key file; pending messages are lost.
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
  bool lock(unsigned short unit, const deadline& d);
  bool recover(const deadline& d);
  void cross_check(bool receiving, std::uint32_t count, std::initializer_list<semaphore_set::op> release);
  [[noreturn]] void corrupt(const std::string& what, std::initializer_list<semaphore_set::op> release);
  [[noreturn]] void corrupt_locked(const std::string& what);
  void open(key_t sem_key, key_t shm_key, open_mode mode, geometry g, mode_t perms);
  void clear_closed();

  role role_;
  bool closed_ = false;
  std::size_t slots_ = 0;
  std::size_t slot_size_ = 0;
  std::uint32_t* indices_ = nullptr;  // head, tail in the segment header
  std::uint32_t checks_ = 0;
  std::uint64_t recoveries_ = 0;
  std::string key_file_;
  std::optional<layout_segment> seg_;
  std::optional<semaphore_set> sems_;
};

}  // namespace ipc
