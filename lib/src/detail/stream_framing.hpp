// Messages over a byte stream (a pipe or a FIFO), shared by pipe_channel and fifo_channel.
//
//   detail::write_frame(fd, stream_framing::length_prefixed, msg, deadline::in(100ms), "pipe:fd=5");
//   detail::frame_reader r(stream_framing::length_prefixed, 65536);
//   std::vector<std::byte> out;
//   if (r.read(fd, out, deadline::never(), "pipe:fd=4")) { /* one whole message */ }
//
// Length-prefixed frames are a 4-byte little-endian payload length followed by the
// payload. Line frames are the payload followed by '\n' (the payload may not contain '\n').
// Untimed calls sleep in read()/write() on a blocking fd; timed calls use RWF_NOWAIT and wait
// in poll() against the deadline.
#pragma once

#include <sys/types.h>

#include <ipc/config.hpp>
#include <ipc/deadline.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace ipc::detail {

enum class stream_framing { length_prefixed, lines };

inline constexpr std::size_t frame_header_size = 4;
inline constexpr std::size_t default_stream_max_message = 64 * 1024;
inline constexpr std::size_t stream_max_message_limit = 16 * 1024 * 1024;

/// The fds of one stream end. `fd` is blocking: untimed calls sleep in read()/write() on it, and
/// every poll() is on it. Timed calls read or write without sleeping through `nowait_fd` (the same
/// FIFO opened again with O_NONBLOCK: Linux 6.1 FIFOs refuse RWF_NOWAIT) or, when it is -1, with
/// RWF_NOWAIT on `fd` (anonymous pipes support it).
struct stream_end {
  int fd;
  int nowait_fd = -1;
};

/// Throws errc::bad_uri naming object unless 1 <= n <= stream_max_message_limit.
void check_stream_max_message(std::size_t n, std::string_view object);

/// Clears O_NONBLOCK on fd (the framing's untimed calls sleep in read()/write()). Throws
/// std::system_error naming fcntl and object.
void set_blocking(int fd, std::string_view object);

/// Bytes a message of `size` occupies on the stream.
[[nodiscard]] constexpr std::size_t frame_size(stream_framing f, std::size_t size) noexcept {
  return size + (f == stream_framing::length_prefixed ? frame_header_size : 1);
}

/// Writes one frame to the stream fd (blocking or not, either works). With `d` never, blocks in
/// write() until the whole frame is out. Otherwise never waits past `d`: frames of at most
/// PIPE_BUF bytes go out in one atomic write (concurrent writers never interleave); a larger
/// frame first waits (within `d`) until the pipe has room for all of it, growing the pipe with
/// F_SETPIPE_SZ when the frame exceeds its capacity, so a timed send never leaves half a frame.
/// Returns false (nothing written) on timeout. Throws errc::closed when no reader is left (SIGPIPE
/// is blocked on the calling thread from its first call on, and consumed, never delivered),
/// errc::message_too_large for a timed frame larger than the pipe can be made, errc::corrupt for
/// a line message containing '\n', std::system_error for other failures.
bool write_frame(stream_end e, stream_framing f, std::span<const std::byte> message, const deadline& d,
                         std::string_view object);

/// Buffered frame parser: reads as much as the stream holds, hands out one message per call.
///
/// Over-long input, decided per framing (docs/pipe-fifo.md, "Over-long input"):
///  - lines: a line longer than max_message is skipped up to and including its '\n' (or the end
///    of the stream) and counted (skipped()); the stream goes on with the next line. The skip
///    starts as soon as max_message + 1 bytes without '\n' are buffered, so nothing of the line
///    is ever held beyond that, and it survives a reopen (the tail never arrives as a line).
///  - length-prefixed: a length above max_message is errc::corrupt, sticky: the format has no
///    marker to resynchronise on, and skipping a length that is itself wrong would hand out
///    garbage as messages.
class frame_reader {
 public:
  frame_reader(stream_framing f, std::size_t max_message);

  /// Blocks until one whole message is in `out` (resized) or `d` passes (returns false); with `d`
  /// never it sleeps in read() itself, otherwise in poll().
  /// Throws errc::closed at end of stream with nothing pending, errc::corrupt on a length
  /// above max_message or a length-prefixed stream that ends inside a frame.
  bool read(stream_end e, std::vector<std::byte>& out, const deadline& d, std::string_view object);
  /// True when a whole message is already buffered (read() will not touch the fd).
  [[nodiscard]] bool has_message() const noexcept;
  /// Forgets everything buffered, a pending skip included (a new stream).
  void reset() noexcept;
  /// The same stream goes on through another fd (a FIFO reopened before its old fd closed):
  /// keeps what is buffered and a pending skip. A corrupt length-prefixed stream cannot go on:
  /// its buffer is dropped and true returned (the caller drops what the stream holds too). A stream
  /// that ended inside a frame (its writer died mid-frame) goes on with the next writer's frames:
  /// the torn frame is dropped and counted in skipped(); false.
  bool resume() noexcept;
  /// Over-long lines skipped so far (lines framing).
  [[nodiscard]] std::uint64_t skipped() const noexcept { return skipped_; }

 private:
  bool take(std::vector<std::byte>& out, std::string_view object);
  bool take_line(std::vector<std::byte>& out);
  bool take_at_eof(std::vector<std::byte>& out, std::string_view object);
  [[nodiscard]] bool corrupt_head() const noexcept;
  [[nodiscard]] std::uint32_t header_length() const noexcept;
  void drop_buffer() noexcept;
  void make_room();

  stream_framing framing_;
  std::size_t max_message_;
  std::vector<std::byte> buf_;
  std::size_t head_ = 0;  // first unconsumed byte
  std::size_t tail_ = 0;  // one past the last buffered byte
  std::size_t scan_ = 0;  // lines: where the '\n' search resumes
  std::size_t need_ = 0;  // bytes the current frame needs buffered from head_
  bool empty_ = false;    // the last read emptied the stream: a timed read polls first
  bool skipping_ = false; // lines: inside an over-long line, dropping bytes up to its '\n'
  bool torn_ = false;     // length-prefixed: the stream ended inside the buffered frame
  std::uint64_t skipped_ = 0;
};

/// "a regular file", "a directory", … — what an fd or path turned out to be, for errors.
const char* file_type_name(mode_t m) noexcept;

}  // namespace ipc::detail
