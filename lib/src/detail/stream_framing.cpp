#include "detail/stream_framing.hpp"

#include <ipc/error.hpp>

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

namespace ipc::detail {
namespace {

constexpr std::size_t read_chunk = 64 * 1024;

// Blocks SIGPIPE on this thread for the life of one frame write, so a write to a pipe
// without readers fails with EPIPE instead of killing the process. A SIGPIPE our write
// raised is consumed before the old mask returns; one that was already pending is left alone.
class sigpipe_block {
 public:
  sigpipe_block() noexcept {
    ::sigemptyset(&set_);
    ::sigaddset(&set_, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &set_, &old_);
    // While SIGPIPE was unblocked nothing can be pending for this thread; only ask when it was blocked.
    if (::sigismember(&old_, SIGPIPE) == 1) {
      sigset_t pending;
      if (::sigpending(&pending) == 0) was_pending_ = ::sigismember(&pending, SIGPIPE) == 1;
    }
  }
  ~sigpipe_block() { ::pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  sigpipe_block(const sigpipe_block&) = delete;
  sigpipe_block& operator=(const sigpipe_block&) = delete;

  void consume() noexcept {
    if (was_pending_) return;
    const timespec zero{};
    while (::sigtimedwait(&set_, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }

 private:
  sigset_t set_{};
  sigset_t old_{};
  bool was_pending_ = false;
};

[[noreturn]] void write_failed(int err, sigpipe_block& guard, std::string_view object) {
  if (err == EPIPE) {
    guard.consume();
    throw_error(errc::closed, "write", object, "no reader is left");
  }
  throw_errno(err, "write", object);
}

// Waits until fd polls writable (or reports an error, which the next write turns into EPIPE).
bool wait_writable(int fd, const deadline& d, std::string_view object) {
  for (;;) {
    pollfd p{fd, POLLOUT, 0};
    int r = ::poll(&p, 1, d.poll_timeout_ms());
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_errno(errno, "poll", object);
    }
    if (r == 0) {
      if (d.expired()) return false;
      continue;
    }
    if ((p.revents & POLLNVAL) != 0) throw_errno(EBADF, "poll", object);
    return true;
  }
}

// try_send of a frame larger than PIPE_BUF: an empty pipe takes a frame up to its capacity
// in one non-blocking write (every slot is free), so this never blocks and never splits.
bool fits_whole_now(int fd, std::size_t frame, std::string_view object) {
  int queued = 0;
  check_unix(::ioctl(fd, FIONREAD, &queued), "ioctl(FIONREAD)", object);
  int capacity = check_unix(::fcntl(fd, F_GETPIPE_SZ), "fcntl(F_GETPIPE_SZ)", object);
  return queued == 0 && frame <= static_cast<std::size_t>(capacity);
}

}  // namespace

void check_stream_max_message(std::size_t n, std::string_view object) {
  if (n == 0 || n > stream_max_message_limit) {
    throw_error(errc::bad_uri, "open", object,
                "max_message=" + std::to_string(n) + " is outside 1.." + std::to_string(stream_max_message_limit));
  }
}

bool write_frame(int fd, stream_framing f, std::span<const std::byte> message, const deadline& d,
                 std::string_view object) {
  const bool lines = f == stream_framing::lines;
  if (lines && std::memchr(message.data(), '\n', message.size()) != nullptr) {
    throw_error(errc::corrupt, "send", object, "the message contains '\\n', which framing=lines cannot carry");
  }
  const std::size_t total = frame_size(f, message.size());
  std::byte header[frame_header_size];
  const auto len = static_cast<std::uint32_t>(message.size());
  for (std::size_t i = 0; i < frame_header_size; ++i) header[i] = static_cast<std::byte>((len >> (8 * i)) & 0xffU);
  static const std::byte newline[1] = {std::byte{'\n'}};
  // The frame as two parts: header + payload, or payload + '\n'.
  const std::span<const std::byte> parts[2] = {
      lines ? message : std::span<const std::byte>(header),
      lines ? std::span<const std::byte>(newline) : message,
  };

  sigpipe_block guard;
  std::size_t done = 0;
  if (total <= PIPE_BUF) {
    // One write() of at most PIPE_BUF bytes is atomic: all of it or EAGAIN, never interleaved.
    std::byte small[PIPE_BUF];
    std::memcpy(small, parts[0].data(), parts[0].size());
    if (!parts[1].empty()) std::memcpy(small + parts[0].size(), parts[1].data(), parts[1].size());
    for (;;) {
      ssize_t n = ::write(fd, small, total);
      if (n >= 0) {
        done = static_cast<std::size_t>(n);
        break;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        if (!wait_writable(fd, d, object)) return false;
        continue;
      }
      write_failed(errno, guard, object);
    }
  } else if (d.expired()) {
    if (!fits_whole_now(fd, total, object)) return false;
  }
  // Once the first byte is out the frame must complete, whatever the deadline says:
  // half a frame would desynchronise the stream for every later message.
  while (done < total) {
    iovec v[2];
    int count = 0;
    std::size_t skip = done;
    for (const auto& p : parts) {
      if (skip >= p.size()) {
        skip -= p.size();
        continue;
      }
      v[count].iov_base = const_cast<std::byte*>(p.data() + skip);
      v[count].iov_len = p.size() - skip;
      skip = 0;
      ++count;
    }
    ssize_t n = ::writev(fd, v, count);
    if (n >= 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      if (done == 0) {
        if (!wait_writable(fd, d, object)) return false;
      } else {
        wait_writable(fd, deadline::never(), object);
      }
      continue;
    }
    write_failed(errno, guard, object);
  }
  return true;
}

frame_reader::frame_reader(stream_framing f, std::size_t max_message) : framing_(f), max_message_(max_message) {}

bool frame_reader::has_message() const noexcept {
  const std::size_t avail = tail_ - head_;
  if (framing_ == stream_framing::lines) {
    return std::find(buf_.begin() + static_cast<std::ptrdiff_t>(head_), buf_.begin() + static_cast<std::ptrdiff_t>(tail_),
                     std::byte{'\n'}) != buf_.begin() + static_cast<std::ptrdiff_t>(tail_);
  }
  if (avail < frame_header_size) return false;
  std::uint32_t len = 0;
  for (std::size_t i = 0; i < frame_header_size; ++i) len |= std::to_integer<std::uint32_t>(buf_[head_ + i]) << (8 * i);
  // An oversized length is "ready" too: the next read() reports it without touching the fd.
  return len > max_message_ || avail >= frame_header_size + len;
}

void frame_reader::reset() noexcept { head_ = tail_ = scan_ = need_ = 0; }

bool frame_reader::take(std::vector<std::byte>& out, std::string_view object) {
  const std::size_t avail = tail_ - head_;
  const auto begin = buf_.begin() + static_cast<std::ptrdiff_t>(head_);
  if (framing_ == stream_framing::lines) {
    const auto from = buf_.begin() + static_cast<std::ptrdiff_t>(std::max(scan_, head_));
    const auto end = buf_.begin() + static_cast<std::ptrdiff_t>(tail_);
    const auto nl = std::find(from, end, std::byte{'\n'});
    if (nl == end) {
      scan_ = tail_;
      if (avail > max_message_) {
        throw_error(errc::corrupt, "read", object,
                    "no newline within " + std::to_string(avail) + " bytes: line longer than max_message " +
                        std::to_string(max_message_));
      }
      need_ = avail + 1;
      return false;
    }
    const auto len = static_cast<std::size_t>(nl - begin);
    if (len > max_message_) {
      throw_error(errc::corrupt, "read", object,
                  "line of " + std::to_string(len) + " bytes exceeds max_message " + std::to_string(max_message_));
    }
    out.assign(begin, nl);
    head_ += len + 1;
    scan_ = head_;
  } else {
    if (avail < frame_header_size) {
      need_ = frame_header_size;
      return false;
    }
    std::uint32_t len = 0;
    for (std::size_t i = 0; i < frame_header_size; ++i) len |= std::to_integer<std::uint32_t>(buf_[head_ + i]) << (8 * i);
    // Never allocate what a peer claims: a length above max_message is corruption.
    if (len > max_message_) {
      throw_error(errc::corrupt, "read", object,
                  "frame length " + std::to_string(len) + " exceeds max_message " + std::to_string(max_message_));
    }
    const std::size_t frame = frame_header_size + len;
    if (avail < frame) {
      need_ = frame;
      return false;
    }
    out.assign(begin + static_cast<std::ptrdiff_t>(frame_header_size), begin + static_cast<std::ptrdiff_t>(frame));
    head_ += frame;
  }
  if (head_ == tail_) reset();
  return true;
}

bool frame_reader::take_at_eof(std::vector<std::byte>& out, std::string_view object) {
  const std::size_t avail = tail_ - head_;
  if (avail == 0) throw_error(errc::closed, "read", object, "end of stream: every writer has closed");
  if (framing_ == stream_framing::lines) {
    // A last line without '\n' (printf hi > fifo) is still a line.
    out.assign(buf_.begin() + static_cast<std::ptrdiff_t>(head_), buf_.begin() + static_cast<std::ptrdiff_t>(tail_));
    reset();
    return true;
  }
  throw_error(errc::corrupt, "read", object,
              "stream ended inside a frame after " + std::to_string(avail) + " of " + std::to_string(need_) +
                  " bytes (truncated)");
}

void frame_reader::make_room() {
  if (head_ == tail_) reset();
  const std::size_t want = std::max(need_, read_chunk);
  if (buf_.size() - head_ < want || tail_ == buf_.size()) {
    if (head_ > 0) {
      std::memmove(buf_.data(), buf_.data() + head_, tail_ - head_);
      tail_ -= head_;
      scan_ = scan_ > head_ ? scan_ - head_ : 0;
      head_ = 0;
    }
    if (buf_.size() < want) buf_.resize(want);
  }
}

bool frame_reader::read(int fd, std::vector<std::byte>& out, const deadline& d, std::string_view object) {
  // A read that returned less than it asked for emptied the pipe: the next read would only say
  // EAGAIN, so go straight to poll() (one syscall fewer per wake-up).
  bool drained = false;
  for (;;) {
    if (take(out, object)) return true;
    make_room();
    if (!drained) {
      const std::size_t room = buf_.size() - tail_;
      ssize_t n = ::read(fd, buf_.data() + tail_, room);
      if (n > 0) {
        tail_ += static_cast<std::size_t>(n);
        drained = static_cast<std::size_t>(n) < room;
        continue;
      }
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN) throw_errno(errno, "read", object);
      } else {
        // read() returns 0 whenever no writer holds the stream, but a FIFO whose first writer
        // has not come yet is not at its end: only POLLHUP (a writer came and went) means EOF.
        pollfd p{fd, POLLIN, 0};
        int r = ::poll(&p, 1, 0);
        if (r < 0 && errno != EINTR) throw_errno(errno, "poll", object);
        if (r > 0 && (p.revents & POLLIN) != 0) continue;
        if (r > 0 && (p.revents & POLLHUP) != 0) return take_at_eof(out, object);
      }
    }
    drained = false;
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, d.poll_timeout_ms());
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_errno(errno, "poll", object);
    }
    if (r == 0 && d.expired()) return false;
    if (r > 0 && (p.revents & POLLNVAL) != 0) throw_errno(EBADF, "poll", object);
  }
}

const char* file_type_name(mode_t m) noexcept {
  if (S_ISREG(m)) return "a regular file";
  if (S_ISDIR(m)) return "a directory";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  if (S_ISLNK(m)) return "a symbolic link";
  if (S_ISFIFO(m)) return "a FIFO";
  return "an unknown kind of file";
}

}  // namespace ipc::detail
