// How a daemon goes on after its channel failed: channel::reopen() on the handle that failed, which
// keeps what the handle holds - a fifo receiver's reader, buffered frames and skip state (a torn frame
// is dropped and counted skipped), a shm ring re-attaching by name to the ring its peer moved to - or a
// new open only when reopen() cannot resume it. One policy for the loop's reopener (daemon.hpp) and
// ipc-bridge's blocking forwarder:
//
//   resumer r;
//   r.failed(ch.get());                                    // the handle failed (keep it)
//   ch = r.resume(std::move(ch), [&] { return open_channel(uri, role::receiver); });
//   r.progress();                                          // a message moved
//
// reopen() cannot resume a handle when it throws (a fifo path removed), when the handle came back
// through reopen() and failed again before a message moved (a removed msgq, a sem unit: their reopen()
// does nothing; a byte stream's reopen() always opens its path again, so only its throwing counts), or
// when the handle's object was discarded (a quarantine, discarded()).
#pragma once

#include <ipc/channel.hpp>

#include <functional>
#include <memory>
#include <string>

namespace ipc::daemon {

/// True for a byte stream (pipe, fifo): its damage lives in the bytes in flight, not in a shared object.
[[nodiscard]] bool is_byte_stream(const channel& ch) noexcept;

class resumer {
 public:
  /// Opens the channel anew. Throws what opening throws.
  using opener = std::function<std::unique_ptr<channel>()>;

  /// The handle `ch` (null: its open) failed. Never blocks, never throws.
  void failed(const channel* ch) noexcept;
  /// The failed handle's object was destroyed on purpose (a quarantine): the next resume() opens anew.
  void discarded() noexcept { may_reopen_ = false; }
  /// Data moved: reopen() is tried first again.
  void progress() noexcept {
    may_reopen_ = true;
    in_place_ = false;
  }
  /// The handle to go on with: `lost` after lost->reopen(), or open() when reopen() cannot resume it
  /// (then `lost` is destroyed before open() runs, so a role it holds - a shm ring's - is free). A
  /// reopen() that threw is described in `*why` (when given), for the caller's log. `lost` may be null:
  /// open(). Blocks only as reopen() and open() do (neither waits for a peer). Throws what open() throws.
  std::unique_ptr<channel> resume(std::unique_ptr<channel> lost, const opener& open, std::string* why = nullptr);
  /// Whether the next resume() tries reopen() on the lost handle (else the handle is only in the way).
  [[nodiscard]] bool may_reopen() const noexcept { return may_reopen_; }
  /// Whether the last resume() returned the lost handle itself (its counters go on).
  [[nodiscard]] bool in_place() const noexcept { return in_place_; }
  /// resume() calls that returned the lost handle, since the start.
  [[nodiscard]] std::uint64_t in_place_total() const noexcept { return in_place_total_; }

 private:
  bool may_reopen_ = true;  // the next resume() tries channel::reopen() first
  bool in_place_ = false;   // the last resume() was a reopen() and no data moved since
  std::uint64_t in_place_total_ = 0;
};

}  // namespace ipc::daemon
