// Anonymous pipe channel: a framed pipe2() between a process and its kin.
//
//   auto [tx, rx] = ipc::pipe_channel::create();          // sender end, receiver end
//   pid_t pid = fork();                                    // child keeps rx, parent keeps tx
//   tx->send(ipc::as_bytes("hello"));
//
//   // Across exec: hand the read end to a program that opens "pipe:fd=N".
//   ipc::unique_fd fd = rx->release_fd();                  // blocking, still O_CLOEXEC
//   // in the child after fork: dup2(fd.get(), 3) (dup2 clears FD_CLOEXEC), then exec
//   //   ipc-consumer --channel pipe:fd=3
//   auto in = ipc::open_channel("pipe:fd=3", ipc::role::receiver);
//
// Frames: 4-byte little-endian length, then the payload. Frames of at most PIPE_BUF
// (4096) bytes are written atomically, so several writers never interleave; larger
// ones are safe with a single writer only. See docs/pipe-fifo.md.
#pragma once

#include <ipc/channel.hpp>
#include <ipc/config.hpp>
#include <ipc/unique_fd.hpp>

#include <cstddef>
#include <memory>
#include <utility>

namespace ipc {

struct pipe_options {
  std::size_t max_message = 64 * 1024;  ///< largest payload, 1 .. 16 MiB
  std::size_t capacity = 0;             ///< F_SETPIPE_SZ bytes; 0 keeps the kernel default (64 KiB)
};

class IPC_API pipe_channel final : public channel {
 public:
  /// Creates a connected pair with pipe2(O_CLOEXEC): {sender, receiver}. Never blocks.
  /// Throws errc::bad_uri for a bad max_message, std::system_error naming pipe2 / F_SETPIPE_SZ.
  static std::pair<std::unique_ptr<pipe_channel>, std::unique_ptr<pipe_channel>> create(const pipe_options& options = {});

  /// Takes over an inherited pipe end (the `pipe:fd=N` URI). Never blocks. Makes it O_CLOEXEC and
  /// blocking (timed calls use RWF_NOWAIT and poll). Throws std::system_error (EBADF) for a closed
  /// fd, errc::bad_uri for an fd that is not a pipe/FIFO or whose access mode does not fit `r`, or
  /// a bad max_message.
  static std::unique_ptr<pipe_channel> adopt(unique_fd fd, role r, std::size_t max_message = 64 * 1024);

  ~pipe_channel() override;

  [[nodiscard]] channel_limits limits() const override;
  [[nodiscard]] std::string_view kind() const noexcept override { return "pipe"; }
  /// The receiver's read fd (-1 for a sender). Buffered messages may exist while it is not
  /// readable: call try_receive until nullopt (or check has_buffered_message) before waiting.
  [[nodiscard]] int readable_fd() const noexcept override;

  /// Which end this is.
  [[nodiscard]] role end() const noexcept { return role_; }
  /// The pipe fd, still owned by the channel (-1 after release_fd()).
  [[nodiscard]] int fd() const noexcept { return fd_.get(); }
  /// Never blocks. True when a whole message is already buffered in this receiver.
  [[nodiscard]] bool has_buffered_message() const noexcept;
  /// Gives the fd away (blocking, as the channel keeps it, and still O_CLOEXEC); the channel is
  /// unusable afterwards (calls throw errc::closed). Buffered, not yet received bytes of a
  /// receiver are lost.
  [[nodiscard]] unique_fd release_fd() noexcept;

 protected:
  bool do_send(std::span<const std::byte> message, const deadline& d) override;
  bool do_receive(std::vector<std::byte>& out, const deadline& d) override;

 private:
  struct impl;
  pipe_channel(unique_fd fd, role r, std::size_t max_message, std::string name);

  unique_fd fd_;
  role role_;
  std::unique_ptr<impl> impl_;
};

}  // namespace ipc
