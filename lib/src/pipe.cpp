#include <ipc/error.hpp>
#include <ipc/pipe.hpp>
#include <ipc/uri.hpp>

#include "detail/channel_factories.hpp"
#include "detail/stream_framing.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <string>

namespace ipc {
namespace {

std::string fd_name(int fd) { return "pipe:fd=" + std::to_string(fd); }

// Checks an fd someone handed us before we take it over; never closes it.
void validate_pipe_fd(int fd, role r, std::string_view call, const std::string& object) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) ipc::throw_errno(errno, call, object + " (fcntl F_GETFL)");
  struct stat st {};
  ipc::check_unix(::fstat(fd, &st), "fstat", object);
  if (!S_ISFIFO(st.st_mode)) {
    throw_error(errc::bad_uri, call, object,
                "fd " + std::to_string(fd) + " is " + detail::file_type_name(st.st_mode) + ", not a pipe or FIFO");
  }
  const int access = flags & O_ACCMODE;
  if (r == role::receiver && access == O_WRONLY) {
    throw_error(errc::bad_uri, call, object,
                "fd " + std::to_string(fd) + " is a write end, a receiver needs the read end");
  }
  if (r == role::sender && access == O_RDONLY) {
    throw_error(errc::bad_uri, call, object,
                "fd " + std::to_string(fd) + " is a read end, a sender needs the write end");
  }
}

void make_ours(int fd, const std::string& object) {
  ipc::check_unix(::fcntl(fd, F_SETFD, FD_CLOEXEC), "fcntl(F_SETFD)", object);
  detail::set_blocking(fd, object);
}

void set_capacity(int fd, std::size_t capacity, const std::string& object) {
  if (capacity == 0) return;
  if (capacity > static_cast<std::size_t>(INT_MAX)) {
    throw_error(errc::bad_uri, "fcntl(F_SETPIPE_SZ)", object, "capacity " + std::to_string(capacity) + " is too large");
  }
  ipc::check_unix(::fcntl(fd, F_SETPIPE_SZ, static_cast<int>(capacity)),
                     "fcntl(F_SETPIPE_SZ=" + std::to_string(capacity) + ")", object);
}

}  // namespace

struct pipe_channel::impl {
  detail::frame_reader reader;
};

pipe_channel::pipe_channel(unique_fd fd, role r, std::size_t max_message, std::string name)
    : channel(std::move(name), max_message),
      fd_(std::move(fd)),
      role_(r),
      impl_(new impl{detail::frame_reader(detail::stream_framing::length_prefixed, max_message)}) {}

pipe_channel::~pipe_channel() = default;

std::pair<std::unique_ptr<pipe_channel>, std::unique_ptr<pipe_channel>> pipe_channel::create(const pipe_options& options) {
  detail::check_stream_max_message(options.max_message, "pipe");
  int fds[2];
  ipc::check_unix(::pipe2(fds, O_CLOEXEC), "pipe2", "pipe");
  unique_fd rd(fds[0]);
  unique_fd wr(fds[1]);
  set_capacity(wr.get(), options.capacity, fd_name(wr.get()));
  std::unique_ptr<pipe_channel> tx(new pipe_channel(std::move(wr), role::sender, options.max_message, fd_name(fds[1])));
  std::unique_ptr<pipe_channel> rx(new pipe_channel(std::move(rd), role::receiver, options.max_message, fd_name(fds[0])));
  return {std::move(tx), std::move(rx)};
}

std::unique_ptr<pipe_channel> pipe_channel::adopt(unique_fd fd, role r, std::size_t max_message) {
  const std::string object = fd_name(fd.get());
  detail::check_stream_max_message(max_message, object);
  validate_pipe_fd(fd.get(), r, "pipe_channel::adopt", object);
  make_ours(fd.get(), object);
  return std::unique_ptr<pipe_channel>(new pipe_channel(std::move(fd), r, max_message, object));
}

channel_limits pipe_channel::limits() const {
  channel_limits l;
  l.max_message_size = max_message_size_;
  if (fd_) l.capacity_bytes = static_cast<std::size_t>(ipc::check_unix(::fcntl(fd_.get(), F_GETPIPE_SZ), "fcntl(F_GETPIPE_SZ)", name_));
  return l;
}

int pipe_channel::readable_fd() const noexcept { return role_ == role::receiver ? fd_.get() : -1; }

bool pipe_channel::has_buffered_message() const noexcept { return impl_->reader.has_message(); }

unique_fd pipe_channel::release_fd() noexcept {
  impl_->reader.reset();
  return std::move(fd_);
}

bool pipe_channel::do_send(std::span<const std::byte> message, const deadline& d) {
  if (!fd_) throw_error(errc::closed, "send", name_, "the fd was released");
  return detail::write_frame({fd_.get()}, detail::stream_framing::length_prefixed, message, d, name_);
}

bool pipe_channel::do_receive(std::vector<std::byte>& out, const deadline& d) {
  if (!fd_) throw_error(errc::closed, "receive", name_, "the fd was released");
  return impl_->reader.read({fd_.get()}, out, d, name_);
}

namespace detail {

std::unique_ptr<channel> open_pipe_uri(const channel_uri& uri, role r) {
  uri.allow_only({"max_message", "capacity"});
  if (uri.name.empty()) {
    throw_error(errc::bad_uri, "open_channel", uri.text,
                "a 'pipe' channel is an anonymous pair made by pipe_channel::create(); a process that "
                "inherits one end opens it as pipe:fd=N (the producer daemon spawns its consumer with "
                "pipe:fd=N)");
  }
  std::string_view n = uri.name;
  if (n.substr(0, 3) != "fd=" || n.size() == 3 || n.size() > 13) {
    throw_error(errc::bad_uri, "open_channel", uri.text, "expected pipe:fd=N with N an open pipe fd");
  }
  long long fd = 0;
  for (char c : n.substr(3)) {
    if (c < '0' || c > '9') throw_error(errc::bad_uri, "open_channel", uri.text, "fd '" + std::string(n.substr(3)) + "' is not a number");
    fd = fd * 10 + (c - '0');
  }
  if (fd > INT_MAX) throw_error(errc::bad_uri, "open_channel", uri.text, "fd " + std::string(n.substr(3)) + " is out of range");
  const int raw = static_cast<int>(fd);
  const std::size_t max_message = uri.size_option("max_message", detail::default_stream_max_message);
  detail::check_stream_max_message(max_message, uri.text);
  // Validate before taking ownership: a wrong fd in a URI must not get closed by us.
  validate_pipe_fd(raw, r, "open_channel", uri.text);
  auto ch = pipe_channel::adopt(unique_fd(raw), r, max_message);
  set_capacity(ch->fd(), uri.size_option("capacity", 0), uri.text);
  return ch;
}

}  // namespace detail
}  // namespace ipc
