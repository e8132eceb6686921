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
#include <chrono>
#include <cstring>
#include <string>

namespace ipc::detail {
namespace {

constexpr std::size_t read_chunk = 64 * 1024;
constexpr std::size_t small_frame = 8192;
constexpr std::size_t min_read = 4096;     // less room than this after tail_: compact before reading  // up to this, a frame is copied and written in one piece

// SIGPIPE is blocked once per thread, on its first frame write, and stays blocked: a write to a
// pipe without readers then fails with EPIPE instead of killing the process, at no syscall per
// send. ipc::process clears the mask in every child, so exec'd programs never inherit it.
thread_local bool sigpipe_blocked = false;

void block_sigpipe_once() noexcept {
  if (sigpipe_blocked) return;
  sigset_t set;
  ::sigemptyset(&set);
  ::sigaddset(&set, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  sigpipe_blocked = true;
}

// After EPIPE: the SIGPIPE our write raised is pending on this thread; take it so it is never
// delivered should the caller unblock SIGPIPE later. (With SIGPIPE ignored none was raised.)
[[noreturn]] void write_failed(int err, std::string_view object) {
  if (err == EPIPE) {
    sigset_t set;
    ::sigemptyset(&set);
    ::sigaddset(&set, SIGPIPE);
    const timespec zero{};
    while (::sigtimedwait(&set, nullptr, &zero) < 0 && errno == EINTR) {
    }
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

// Waits until fd polls readable or hung up; false when d passes first.
bool wait_readable(int fd, const deadline& d, std::string_view object) {
  for (;;) {
    pollfd p{fd, POLLIN, 0};
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

// One write of what is left of the frame. `wait`: a plain (blocking) write; otherwise
// RWF_NOWAIT, so the call never sleeps in the kernel whatever the fd's O_NONBLOCK says.
ssize_t write_parts(stream_end e, const std::span<const std::byte> (&parts)[2], std::size_t done, bool wait) {
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
  if (wait) return ::pwritev2(e.fd, v, count, -1, 0);
  if (e.nowait_fd >= 0) return ::pwritev2(e.nowait_fd, v, count, -1, 0);
  return ::pwritev2(e.fd, v, count, -1, RWF_NOWAIT);
}

// The pipe's capacity, grown (F_SETPIPE_SZ) to hold a whole frame when it is smaller. Read from
// the kernel on every call: the peer may have resized the pipe since.
std::size_t capacity_for(int fd, std::size_t frame, std::string_view object) {
  const int capacity = check_unix(::fcntl(fd, F_GETPIPE_SZ), "fcntl(F_GETPIPE_SZ)", object);
  if (frame <= static_cast<std::size_t>(capacity)) return static_cast<std::size_t>(capacity);
  if (frame <= static_cast<std::size_t>(INT_MAX)) {
    const int grown = ::fcntl(fd, F_SETPIPE_SZ, static_cast<int>(frame));
    if (grown >= 0) return static_cast<std::size_t>(grown);
    if (errno != EPERM && errno != EBUSY && errno != EINVAL) throw_errno(errno, "fcntl(F_SETPIPE_SZ)", object);
  }
  throw_error(errc::message_too_large, "send", object,
              "a frame of " + std::to_string(frame) + " bytes exceeds the pipe's capacity of " + std::to_string(capacity) +
                  " bytes and F_SETPIPE_SZ refused to grow it (see /proc/sys/fs/pipe-max-size); only send() "
                  "without a timeout streams such a frame");
}

// Whether `frame` bytes fit in the pipe now. The pipe is a ring of page-sized slots: the bytes
// queued occupy at most ceil(queued / page) + 1 of them (a partly read head page, a partly
// written tail page), so the rest is free for sure.
bool room_for(int fd, std::size_t frame, std::size_t capacity, std::string_view object) {
  int queued = 0;
  check_unix(::ioctl(fd, FIONREAD, &queued), "ioctl(FIONREAD)", object);
  if (queued == 0) return frame <= capacity;
  static const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t slots = capacity / page;
  const std::size_t used = (static_cast<std::size_t>(queued) + page - 1) / page + 1;
  return used < slots && frame <= (slots - used) * page;
}

// A timed frame larger than PIPE_BUF: waits (within d) until the whole frame fits, so that once
// the first byte is out the rest follows without waiting for the reader. poll(POLLOUT) says only
// that one slot is free, so the wait is a short sleep between looks (1 ms doubling to 10 ms,
// never past d): the slow path of large timed frames into a congested pipe.
bool wait_room(int fd, std::size_t frame, const deadline& d, std::string_view object) {
  const std::size_t capacity = capacity_for(fd, frame, object);
  auto pause = std::chrono::microseconds(1000);
  for (;;) {
    if (room_for(fd, frame, capacity, object)) return true;
    if (d.expired()) return false;
    const auto nap = std::min<std::chrono::nanoseconds>(pause, d.remaining());
    const timespec ts = deadline::in(nap).remaining_timespec();
    ::clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, nullptr);  // EINTR: the loop re-reads the deadline
    pause = std::min(pause * 2, std::chrono::microseconds(10'000));
  }
}

}  // namespace

void check_stream_max_message(std::size_t n, std::string_view object) {
  if (n == 0 || n > stream_max_message_limit) {
    throw_error(errc::bad_uri, "open", object,
                "max_message=" + std::to_string(n) + " is outside 1.." + std::to_string(stream_max_message_limit));
  }
}

void set_blocking(int fd, std::string_view object) {
  const int flags = check_unix(::fcntl(fd, F_GETFL), "fcntl(F_GETFL)", object);
  if ((flags & O_NONBLOCK) != 0) check_unix(::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK), "fcntl(F_SETFL)", object);
}

bool write_frame(stream_end e, stream_framing f, std::span<const std::byte> message, const deadline& d,
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

  block_sigpipe_once();
  // send() sleeps in write() itself, as a hand-written loop would; timed calls never sleep in
  // the kernel except in poll(), against the deadline.
  const bool blocking = d.is_never();
  // A write of at most PIPE_BUF bytes is atomic: all of it or EAGAIN, never interleaved with
  // another writer's. A larger timed frame first waits for room for all of it.
  const int fd = e.fd;
  if (total > PIPE_BUF && !blocking && !wait_room(fd, total, d, object)) return false;
  // A frame of up to small_frame bytes is copied into one buffer and written with write(): cheaper
  // than the kernel importing a two-element iovec array on every send.
  std::byte small[small_frame];
  const bool contiguous = total <= small_frame;
  if (contiguous) {
    std::memcpy(small, parts[0].data(), parts[0].size());
    if (!parts[1].empty()) std::memcpy(small + parts[0].size(), parts[1].data(), parts[1].size());
  }
  std::size_t done = 0;
  while (done < total) {
    ssize_t n;
    if (contiguous && blocking) {
      n = ::write(fd, small + done, total - done);
    } else if (contiguous && e.nowait_fd >= 0) {
      n = ::write(e.nowait_fd, small + done, total - done);
    } else if (contiguous) {
      iovec v{small + done, total - done};
      n = ::pwritev2(fd, &v, 1, -1, RWF_NOWAIT);
    } else {
      n = write_parts(e, parts, done, blocking);
    }
    if (n >= 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN) write_failed(errno, object);
    // Nothing written yet: the deadline decides. Once the first byte is out the frame must
    // complete (half a frame would desynchronise the stream); with room checked first this
    // happens only when another writer took it (large frames are single-writer, see the header).
    if (done == 0) {
      if (!wait_writable(fd, d, object)) return false;
    } else {
      wait_writable(fd, deadline::never(), object);
    }
  }
  return true;
}

frame_reader::frame_reader(stream_framing f, std::size_t max_message) : framing_(f), max_message_(max_message) {}

bool frame_reader::has_message() const noexcept {
  const std::size_t avail = tail_ - head_;
  if (framing_ == stream_framing::lines) {
    // A line ready, past the rest of a line being skipped and any whole over-long line.
    const auto end = buf_.begin() + static_cast<std::ptrdiff_t>(tail_);
    auto from = buf_.begin() + static_cast<std::ptrdiff_t>(head_);
    for (bool skip = skipping_;; skip = false) {
      const auto nl = std::find(from, end, std::byte{'\n'});
      if (nl == end) return false;
      if (!skip && static_cast<std::size_t>(nl - from) <= max_message_) return true;
      from = nl + 1;
    }
  }
  if (avail < frame_header_size) return false;
  // An oversized length is "ready" too: the next read() reports it without touching the fd.
  return corrupt_head() || avail >= frame_header_size + header_length();
}

std::uint32_t frame_reader::header_length() const noexcept {
  std::uint32_t len = 0;
  for (std::size_t i = 0; i < frame_header_size; ++i) len |= std::to_integer<std::uint32_t>(buf_[head_ + i]) << (8 * i);
  return len;
}

bool frame_reader::corrupt_head() const noexcept {
  return framing_ == stream_framing::length_prefixed && tail_ - head_ >= frame_header_size && header_length() > max_message_;
}

void frame_reader::drop_buffer() noexcept { head_ = tail_ = scan_ = need_ = 0; }

void frame_reader::reset() noexcept {
  drop_buffer();
  skipping_ = false;
  torn_ = false;
  empty_ = false;
}

bool frame_reader::resume() noexcept {
  empty_ = false;
  if (torn_) {
    // Every writer had closed when the stream ended inside this frame: whatever comes next is a
    // new writer's, starting at a frame boundary. The torn frame is skipped, not glued to it.
    torn_ = false;
    drop_buffer();
    ++skipped_;
    return false;
  }
  if (!corrupt_head()) return false;
  drop_buffer();
  return true;
}

bool frame_reader::take_line(std::vector<std::byte>& out) {
  for (;;) {
    const auto begin = buf_.begin() + static_cast<std::ptrdiff_t>(head_);
    const auto end = buf_.begin() + static_cast<std::ptrdiff_t>(tail_);
    const auto nl = std::find(buf_.begin() + static_cast<std::ptrdiff_t>(std::max(scan_, head_)), end, std::byte{'\n'});
    if (nl == end) {
      const std::size_t avail = tail_ - head_;
      if (!skipping_ && avail > max_message_) {
        // Longer than any message can be, whatever follows: skip it up to its newline.
        skipping_ = true;
        ++skipped_;
      }
      if (skipping_) {
        drop_buffer();  // nothing of an over-long line is kept
        return false;
      }
      scan_ = tail_;
      need_ = avail + 1;
      return false;
    }
    const auto len = static_cast<std::size_t>(nl - begin);
    head_ += len + 1;
    scan_ = head_;
    if (skipping_) {
      skipping_ = false;  // the rest of a skipped line ends here
      continue;
    }
    if (len > max_message_) {
      ++skipped_;
      continue;
    }
    out.assign(begin, nl);
    return true;
  }
}

bool frame_reader::take(std::vector<std::byte>& out, std::string_view object) {
  if (framing_ == stream_framing::lines) {
    const bool got = take_line(out);
    if (head_ == tail_) drop_buffer();
    return got;
  }
  const std::size_t avail = tail_ - head_;
  if (avail < frame_header_size) {
    need_ = frame_header_size;
    return false;
  }
  const std::uint32_t len = header_length();
  // Never allocate what a peer claims: a length above max_message is corruption.
  if (len > max_message_) {
    throw_error(errc::corrupt, "read", object,
                "frame length " + std::to_string(len) + " exceeds max_message " + std::to_string(max_message_) +
                    " (the stream cannot be resynchronised)");
  }
  const std::size_t frame = frame_header_size + len;
  if (avail < frame) {
    need_ = frame;
    return false;
  }
  const auto begin = buf_.begin() + static_cast<std::ptrdiff_t>(head_);
  out.assign(begin + static_cast<std::ptrdiff_t>(frame_header_size), begin + static_cast<std::ptrdiff_t>(frame));
  head_ += frame;
  if (head_ == tail_) drop_buffer();
  return true;
}

bool frame_reader::take_at_eof(std::vector<std::byte>& out, std::string_view object) {
  const std::size_t avail = tail_ - head_;
  skipping_ = false;  // a skipped line ends with the stream too
  if (avail == 0) throw_error(errc::closed, "read", object, "end of stream: every writer has closed");
  if (framing_ == stream_framing::lines) {
    // A last line without '\n' (printf hi > fifo) is still a line (never longer than max_message:
    // take_line would be skipping it).
    out.assign(buf_.begin() + static_cast<std::ptrdiff_t>(head_), buf_.begin() + static_cast<std::ptrdiff_t>(tail_));
    drop_buffer();
    return true;
  }
  torn_ = true;
  throw_error(errc::corrupt, "read", object,
              "stream ended inside a frame after " + std::to_string(avail) + " of " + std::to_string(need_) +
                  " bytes (truncated)");
}

void frame_reader::make_room() {
  if (head_ == tail_) drop_buffer();
  // The pending bytes move to the front only when the frame they start would not fit after head_,
  // or little room is left after tail_: not before every read (at 4 KiB a frame is often split
  // between two reads, and a memmove per read cost about as much as copying the message out).
  if (head_ > 0 && (buf_.size() - head_ < need_ || buf_.size() - tail_ < min_read)) {
    std::memmove(buf_.data(), buf_.data() + head_, tail_ - head_);
    tail_ -= head_;
    scan_ = scan_ > head_ ? scan_ - head_ : 0;
    head_ = 0;
  }
  const std::size_t want = std::max(need_, read_chunk);
  if (buf_.size() < want) buf_.resize(want);
}

bool frame_reader::read(stream_end e, std::vector<std::byte>& out, const deadline& d, std::string_view object) {
  const int fd = e.fd;
  // receive() sleeps in read() itself (the fd is blocking), as a hand-written loop would. Timed
  // calls read with RWF_NOWAIT and sleep in poll(); a read that returned less than it asked for
  // emptied the pipe, and that is remembered across calls (empty_), so the next timed call goes
  // straight to poll() instead of a read that would only say EAGAIN.
  const bool blocking = d.is_never();
  for (;;) {
    if (take(out, object)) return true;
    make_room();
    if (empty_ && !blocking) {
      if (d.expired()) {
        empty_ = false;  // try_receive: one RWF_NOWAIT read answers as cheaply as poll(0)
      } else if (!wait_readable(fd, d, object)) {
        return false;
      }
    }
    const std::size_t room = buf_.size() - tail_;
    iovec v{buf_.data() + tail_, room};
    // read() where it will do: readv/preadv2 pay for importing an iovec array on every call.
    const ssize_t n = blocking ? ::read(fd, v.iov_base, room)
                      : e.nowait_fd >= 0 ? ::read(e.nowait_fd, v.iov_base, room)
                                         : ::preadv2(fd, &v, 1, -1, RWF_NOWAIT);
    if (n > 0) {
      tail_ += static_cast<std::size_t>(n);
      empty_ = static_cast<std::size_t>(n) < room;
      continue;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) throw_errno(errno, "read", object);
      // Empty (or an O_NONBLOCK fd someone else set): wait in poll().
      empty_ = true;
      if (d.expired()) return false;
      if (blocking && !wait_readable(fd, d, object)) return false;
      continue;
    }
    // read() returns 0 whenever no writer holds the stream, but a FIFO whose first writer
    // has not come yet is not at its end: only POLLHUP (a writer came and went) means EOF.
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, 0);
    if (r < 0 && errno != EINTR) throw_errno(errno, "poll", object);
    if (r > 0 && (p.revents & POLLIN) != 0) continue;
    if (r > 0 && (p.revents & POLLHUP) != 0) return take_at_eof(out, object);
    // No writer yet: poll() sleeps until one writes (POLLIN) or comes and goes (POLLHUP).
    empty_ = true;
    if (d.expired()) return false;
    if (!wait_readable(fd, d, object)) return false;
    empty_ = false;
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
