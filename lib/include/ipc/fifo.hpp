// FIFO channel: a named pipe (mkfifo) between unrelated processes, framed.
//
//   auto rx = ipc::fifo_channel::open("demo.fifo", ipc::role::receiver);   // in runtime_dir()
//   auto tx = ipc::fifo_channel::open("demo.fifo", ipc::role::sender);     // either may come first
//   tx->send(ipc::as_bytes("hello"));        // blocks until a reader is there
//   try { rx->receive(buf); }
//   catch (const std::system_error& e) {     // errc::closed: the writer went away
//     rx->reopen();                          // wait for the next writer (channel::reopen: no cast)
//   }
//   rx->remove();                            // unlink the path (the destructor only closes)
//
//   URI: fifo:PATH?open=create_only|open_only|open_or_create&mode=0600&max_message=64K&framing=length|lines
//
// framing=lines makes every message one text line, so `echo hi > PATH` and `cat PATH` are peers.
// A line longer than max_message is skipped to its newline and counted (counters().messages_skipped);
// the stream goes on. A length header above max_message is errc::corrupt (no resynchronising).
// See docs/pipe-fifo.md for the exact semantics.
#pragma once

#include <ipc/channel.hpp>
#include <ipc/config.hpp>
#include <ipc/unique_fd.hpp>
#include <ipc/uri.hpp>

#include <sys/types.h>

#include <cstddef>
#include <filesystem>
#include <memory>

namespace ipc {

enum class fifo_framing {
  length_prefixed,  ///< 4-byte little-endian length + payload (any bytes)
  lines,            ///< payload + '\n' (payload may not contain '\n')
};

struct fifo_options {
  open_mode open = open_mode::open_or_create;
  mode_t mode = 0600;                   ///< mkfifo mode (applied exactly, umask ignored)
  std::size_t max_message = 64 * 1024;  ///< largest payload (for lines: without the '\n'), 1 .. 16 MiB
  fifo_framing framing = fifo_framing::length_prefixed;
};

class IPC_API fifo_channel final : public channel {
 public:
  /// Creates and/or opens the FIFO at `path` (relative: inside runtime_dir()). Never blocks:
  /// a receiver opens at once; a sender connects now if a reader exists, else on its first send.
  /// Throws std::system_error naming mkfifo/open and the path, errc::not_owner for a symlink,
  /// a non-FIFO, another owner or a world-writable mode, errc::bad_uri for a bad max_message.
  static std::unique_ptr<fifo_channel> open(const std::filesystem::path& path, role r, const fifo_options& options = {});

  ~fifo_channel() override;

  [[nodiscard]] channel_limits limits() const override;
  [[nodiscard]] std::string_view kind() const noexcept override { return "fifo"; }
  /// The reader's fd (-1 for a sender). Buffered messages may exist while it is not readable:
  /// call try_receive until nullopt (or check has_buffered_message) before waiting.
  [[nodiscard]] int readable_fd() const noexcept override;
  /// Unlinks the path (only if it is still a FIFO; already gone is fine). Throws std::system_error.
  void remove() override;

  /// Receiver: opens the FIFO afresh (the new fd first, then the old one closes, so a waiting
  /// writer is never refused and the stream goes on): after errc::closed this waits for the next
  /// writer. Messages already buffered are kept, and an over-long line being skipped is skipped
  /// to its end (its tail never arrives as a line). After errc::corrupt (length framing) the
  /// broken stream is dropped: the buffer and what the FIFO holds now; after a stream that ended
  /// inside a frame (its writer died mid-frame) only that torn frame, counted in messages_skipped.
  /// Sender: drops the connection; the next send waits for a reader. Never blocks. Throws as open().
  void reopen() override;
  /// The FIFO's path.
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  /// Never blocks. True when a whole message is already buffered in this receiver.
  [[nodiscard]] bool has_buffered_message() const noexcept;
  /// True when a sender holds a write end (a reader was there when it connected).
  [[nodiscard]] bool connected() const noexcept { return static_cast<bool>(fd_); }

 protected:
  bool do_send(std::span<const std::byte> message, const deadline& d) override;
  bool do_receive(std::vector<std::byte>& out, const deadline& d) override;

 private:
  struct impl;
  fifo_channel(std::filesystem::path path, role r, const fifo_options& options);
  bool connect_writer(const deadline& d);
  unique_fd open_reader();
  void drain_stream();

  std::filesystem::path path_;
  role role_;
  fifo_options options_;
  unique_fd fd_;
  std::unique_ptr<impl> impl_;
};

}  // namespace ipc
