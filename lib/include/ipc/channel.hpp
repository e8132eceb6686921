// One interface over every data channel: pipe, fifo, msgq, sem, shm.
//
//   auto tx = ipc::open_channel("msgq:demo", ipc::role::sender);
//   auto rx = ipc::open_channel("msgq:demo", ipc::role::receiver);
//   tx->send(ipc::as_bytes("hello"));
//   std::vector<std::byte> buf;
//   if (auto n = rx->receive_for(buf, 100ms)) { /* buf holds one whole message of *n bytes */ }
//
// Semantics shared by every channel:
//  - send blocks while the channel is full; send_for / try_send return false instead.
//  - receive blocks while empty and yields one whole message; receive_for / try_receive
//    return std::nullopt instead.
//  - A message is delivered whole or not at all. One larger than limits().max_message_size
//    throws errc::message_too_large before anything is sent.
//  - The peer gone for good throws errc::closed; a write to a closed pipe never raises SIGPIPE.
//  - reopen() resumes the same handle after that (or after the object's name was removed), so
//    an open_channel() user needs no cast: see its comment for what each mechanism does.
//  - Timeouts run on CLOCK_MONOTONIC from a deadline computed once; EINTR is retried
//    against the time left.
#pragma once

#include <ipc/config.hpp>
#include <ipc/deadline.hpp>

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

/// Which end of a channel a process holds.
enum class role { sender, receiver };

/// What a channel can carry.
struct channel_limits {
  std::size_t max_message_size = 0;   ///< largest message send() accepts
  std::size_t capacity_bytes = 0;     ///< bytes buffered before send blocks (0: not bounded by bytes)
  std::size_t capacity_messages = 0;  ///< messages buffered before send blocks (0: not bounded by count)
};

/// Per-handle counters, updated by every successful call (and every timeout).
struct channel_counters {
  std::uint64_t messages_sent = 0;
  std::uint64_t bytes_sent = 0;
  std::uint64_t messages_received = 0;
  std::uint64_t bytes_received = 0;
  std::uint64_t send_timeouts = 0;
  std::uint64_t receive_timeouts = 0;
  /// Messages the receiver could not deliver whole and skipped, the stream going on after them:
  /// a fifo line (framing=lines) longer than max_message_size, dropped up to its '\n'; a frame torn
  /// by a fifo writer that died mid-frame, dropped by reopen().
  std::uint64_t messages_skipped = 0;
};

/// Views text as bytes for send().
inline std::span<const std::byte> as_bytes(std::string_view s) noexcept {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}
/// Views received bytes as text.
inline std::string_view as_text(std::span<const std::byte> b) noexcept {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

class IPC_API channel {
 public:
  virtual ~channel();
  channel(const channel&) = delete;
  channel& operator=(const channel&) = delete;

  /// Blocks while full. Throws errc::message_too_large (nothing sent), errc::closed, std::system_error.
  void send(std::span<const std::byte> message);
  /// Blocks at most `timeout`; returns false on timeout (nothing sent). Throws as send().
  bool send_for(std::span<const std::byte> message, std::chrono::nanoseconds timeout);
  /// Blocks until `d`; returns false on timeout (nothing sent). Throws as send().
  bool send_until(std::span<const std::byte> message, const deadline& d);
  /// Never blocks; returns false when full. Throws as send().
  bool try_send(std::span<const std::byte> message);

  /// Blocks while empty; resizes `out` to one whole message and returns its size.
  /// Throws errc::closed when the peer is gone and nothing is left, std::system_error.
  std::size_t receive(std::vector<std::byte>& out);
  /// Blocks at most `timeout`; std::nullopt on timeout. Throws as receive().
  std::optional<std::size_t> receive_for(std::vector<std::byte>& out, std::chrono::nanoseconds timeout);
  /// Blocks until `d`; std::nullopt on timeout. Throws as receive().
  std::optional<std::size_t> receive_until(std::vector<std::byte>& out, const deadline& d);
  /// Never blocks; std::nullopt when empty. Throws as receive().
  std::optional<std::size_t> try_receive(std::vector<std::byte>& out);

  /// The channel's limits (may ask the kernel; not for the hot path).
  [[nodiscard]] virtual channel_limits limits() const = 0;
  /// The largest message send() accepts (cached, cheap).
  [[nodiscard]] std::size_t max_message_size() const noexcept { return max_message_size_; }
  [[nodiscard]] const channel_counters& counters() const noexcept { return counters_; }
  /// "pipe", "fifo", "msgq", "sem" or "shm".
  [[nodiscard]] virtual std::string_view kind() const noexcept = 0;
  /// A readable description used in errors and logs, e.g. "msgq:demo".
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  /// An fd that polls readable when receive() would not block, or -1 when the mechanism has none.
  [[nodiscard]] virtual int readable_fd() const noexcept { return -1; }
  /// Ends this sender's stream on purpose: the receiver drains what was sent, then gets errc::closed.
  /// Where closing the handle already says so (pipe, fifo: last writer gone) this does nothing extra;
  /// a queue with no notion of writers (msgq) ends only by remove(). Throws std::system_error.
  virtual void close() {}
  /// Destroys the underlying kernel object (no-op for anonymous pipes). Throws std::system_error.
  virtual void remove() {}
  /// Throws away a damaged object so that every peer moves to a new one (a daemon's quarantine).
  /// The shm modes unlink the name only while it still denotes this handle's segment, and not on
  /// purpose: a sender still attached gets errc::removed from its ~100 ms name check and resumes
  /// with reopen() on a fresh segment instead of feeding the discarded one (remove() would let it go
  /// on anonymously). Every other mechanism: remove(), whose removal its peers see at once (EIDRM)
  /// or which has no object (pipe). Throws std::system_error naming the object.
  virtual void discard() { remove(); }
  /// Resumes this handle after its peer left (errc::closed) or its object's name was removed
  /// (errc::removed): attaches it to what its name denotes now, recreating the object where the
  /// mechanism can; counters and limits' meaning are kept. Never blocks (waiting for the next
  /// peer is the next send's or receive's business). Per mechanism (docs/channels.md, "Resuming"):
  ///  - fifo: reopens the path (a receiver then waits for the next writer, keeping what it had
  ///    buffered and any over-long line it was skipping; a sender waits for the next reader);
  ///  - shm (every mode): re-attaches by name when the segment it holds was unlinked (st_nlink 0),
  ///    creating one of the same sizes and mode when the name is gone; otherwise nothing is lost or
  ///    changed (a subscriber keeps its place; a new peer attaching is seen without it);
  ///  - the rest (pipe, msgq, sem, nats): nothing, the default. An anonymous pipe has no name: once
  ///    its peer left it stays errc::closed. A msgq has no writers to wait for; a removed queue
  ///    stays errc::closed (open_channel() anew). The nats client reconnects by itself.
  /// Throws what opening the mechanism throws (std::system_error naming the call and object).
  virtual void reopen() {}

 protected:
  channel(std::string name, std::size_t max_message_size) noexcept;
  /// Sends one whole message of at most max_message_size bytes; false on timeout.
  virtual bool do_send(std::span<const std::byte> message, const deadline& d) = 0;
  /// Receives one whole message into out (resized); false on timeout.
  virtual bool do_receive(std::vector<std::byte>& out, const deadline& d) = 0;
  /// Re-reads max_message_size_ from the kernel object, for a limit that can change after open
  /// (msgq's msg_qbytes); called before a message is refused as too large. Default: fixed limit.
  virtual void refresh_max_message_size() {}
  /// Counts messages a mechanism skipped without delivering them (counters().messages_skipped).
  void count_skipped(std::uint64_t n) noexcept { counters_.messages_skipped += n; }
  /// The counters, for calls a mechanism offers beyond this interface (shm loans and views).
  channel_counters& mutable_counters() noexcept { return counters_; }

  std::string name_;
  std::size_t max_message_size_;

 private:
  channel_counters counters_;
};

/// Opens a channel by URI: pipe:fd=N, fifo:PATH, msgq:NAME, sem:NAME, shm:NAME, with options
/// as a query (?capacity=…&max_message=…&mode=0660&open=create_only|open_only|open_or_create).
/// Throws errc::bad_uri naming the bad part, or the mechanism's own errors.
IPC_API std::unique_ptr<channel> open_channel(std::string_view uri, role r);

}  // namespace ipc
