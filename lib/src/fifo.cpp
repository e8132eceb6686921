#include <ipc/error.hpp>
#include <ipc/fifo.hpp>
#include <ipc/uri.hpp>

#include "detail/channel_factories.hpp"
#include "detail/eintr.hpp"
#include "detail/stream_framing.hpp"
#include "detail/sysv_key.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <string>

namespace ipc {
namespace {

detail::stream_framing to_stream(fifo_framing f) {
  return f == fifo_framing::lines ? detail::stream_framing::lines : detail::stream_framing::length_prefixed;
}

// The object at the path must be a FIFO we own with a mode no other user may write.
void check_fifo_stat(const struct stat& st, std::string_view call, const std::string& object) {
  if (S_ISLNK(st.st_mode)) throw_error(errc::not_owner, call, object, "is a symbolic link (not followed)");
  if (!S_ISFIFO(st.st_mode)) throw_error(errc::not_owner, call, object, std::string("is ") + detail::file_type_name(st.st_mode) + ", not a FIFO");
  detail::check_owner(st.st_uid, st.st_mode, call, object);
}

void check_fifo_fd(int fd, std::string_view call, const std::string& object) {
  struct stat st {};
  ipc::check_unix(::fstat(fd, &st), "fstat", object);
  check_fifo_stat(st, call, object);
}

[[noreturn]] void open_failed(int err, const std::string& object) {
  if (err == ELOOP) throw_error(errc::not_owner, "open", object, "is a symbolic link (not followed)");
  ipc::throw_errno(err, "open", object);
}

}  // namespace

struct fifo_channel::impl {
  detail::frame_reader reader;
  // The same FIFO opened a second time, left O_NONBLOCK, for timed calls (FIFOs refuse RWF_NOWAIT).
  unique_fd nowait;
};

fifo_channel::fifo_channel(std::filesystem::path path, role r, const fifo_options& options)
    : channel("fifo:" + path.string(), options.max_message),
      path_(std::move(path)),
      role_(r),
      options_(options),
      impl_(new impl{detail::frame_reader(to_stream(options.framing), options.max_message), {}}) {}

fifo_channel::~fifo_channel() = default;

std::unique_ptr<fifo_channel> fifo_channel::open(const std::filesystem::path& given, role r, const fifo_options& options) {
  const std::filesystem::path path = resolve_name(given.string());
  const std::string object = path.string();
  detail::check_stream_max_message(options.max_message, "fifo:" + object);
  if ((options.mode & ~mode_t{0777}) != 0 || (options.mode & S_IWOTH) != 0 || (options.mode & 0600) != 0600) {
    throw_error(errc::bad_uri, "mkfifo", object, "mode must give the owner read and write and others no write");
  }
  bool created = false;
  if (options.open != open_mode::open_only) {
    if (::mkfifo(path.c_str(), options.mode) == 0) {
      created = true;
    } else if (errno != EEXIST || options.open == open_mode::create_only) {
      ipc::throw_errno(errno, "mkfifo", object);
    }
  }
  try {
    if (created) {
      // mkfifo honours the umask; the mode asked for is the mode given.
      ipc::check_unix(::fchmodat(AT_FDCWD, path.c_str(), options.mode, AT_SYMLINK_NOFOLLOW), "fchmodat", object);
    }
    // Look before opening: opening a planted device node or symlink could have side effects.
    struct stat st {};
    ipc::check_unix(::lstat(path.c_str(), &st), "open", object);
    check_fifo_stat(st, "open", object);
    std::unique_ptr<fifo_channel> ch(new fifo_channel(path, r, options));
    if (r == role::receiver) {
      ch->fd_ = ch->open_reader();
    } else {
      ch->connect_writer(deadline::now());
    }
    return ch;
  } catch (...) {
    if (created) ::unlink(path.c_str());
    throw;
  }
}

unique_fd fifo_channel::open_reader() {
  const std::string object = path_.string();
  // O_NONBLOCK: a reader's open never waits for a writer. Opened twice: one open file made
  // blocking (untimed calls sleep in read), one left O_NONBLOCK (timed calls).
  auto open_one = [&] {
    unique_fd fd(detail::retry_eintr([&] { return ::open(path_.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC); }));
    if (!fd) open_failed(errno, object);
    check_fifo_fd(fd.get(), "open", object);
    return fd;
  };
  unique_fd fd = open_one();
  unique_fd nowait = open_one();
  detail::set_blocking(fd.get(), object);
  impl_->nowait = std::move(nowait);
  return fd;
}

bool fifo_channel::connect_writer(const deadline& d) {
  const std::string object = path_.string();
  auto pause = std::chrono::milliseconds(1);
  for (;;) {
    // A non-blocking open for writing fails with ENXIO while no reader holds the FIFO.
    // We retry with short sleeps rather than holding a read end of our own, which would
    // hide a reader's departure (no EPIPE) and keep data nobody reads.
    auto open_one = [&] {
      return unique_fd(detail::retry_eintr([&] { return ::open(path_.c_str(), O_WRONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC); }));
    };
    unique_fd fd = open_one();
    // Twice, as the reader: a blocking open file for send(), an O_NONBLOCK one for timed sends.
    // A reader that left between the two opens makes the second fail with ENXIO: not connected.
    unique_fd nowait = fd ? open_one() : unique_fd();
    if (fd && nowait) {
      check_fifo_fd(fd.get(), "open", object);
      check_fifo_fd(nowait.get(), "open", object);
      detail::set_blocking(fd.get(), object);
      fd_ = std::move(fd);
      impl_->nowait = std::move(nowait);
      return true;
    }
    if (errno != ENXIO) open_failed(errno, object);
    if (d.expired()) return false;
    auto left = d.remaining();
    auto nap = std::min<std::chrono::nanoseconds>(pause, left);
    timespec ts{};
    ts.tv_sec = static_cast<time_t>(nap.count() / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(nap.count() % 1'000'000'000);
    ::clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, nullptr);  // EINTR: the loop re-reads the deadline
    pause = std::min(pause * 2, std::chrono::milliseconds(20));
  }
}

void fifo_channel::reopen() {
  if (role_ == role::receiver) {
    // The new fd opens before the old one closes, so the FIFO never lacks a reader and its
    // stream goes on: what is buffered and a pending skip of an over-long line are kept.
    const std::uint64_t skipped = impl_->reader.skipped();
    fd_ = open_reader();
    if (impl_->reader.resume()) drain_stream();
    count_skipped(impl_->reader.skipped() - skipped);  // a torn frame dropped
  } else {
    fd_.reset();
    impl_->nowait.reset();
    connect_writer(deadline::now());
  }
}

// A corrupt length-prefixed stream cannot be resynchronised: what the FIFO holds now belongs
// to it and is dropped, so the next frame read is one written after the reopen.
void fifo_channel::drain_stream() {
  std::byte sink[4096];
  for (;;) {
    const ssize_t n = ::read(impl_->nowait.get(), sink, sizeof sink);
    if (n > 0) continue;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) ipc::throw_errno(errno, "read", name_, "dropping a corrupt stream");
    return;
  }
}

channel_limits fifo_channel::limits() const {
  channel_limits l;
  l.max_message_size = max_message_size_;
  if (fd_) {
    l.capacity_bytes = static_cast<std::size_t>(ipc::check_unix(::fcntl(fd_.get(), F_GETPIPE_SZ), "fcntl(F_GETPIPE_SZ)", name_));
  } else {
    // Not connected yet: the kernel's default pipe size, which the FIFO will get.
    l.capacity_bytes = 16 * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  }
  return l;
}

int fifo_channel::readable_fd() const noexcept { return role_ == role::receiver ? fd_.get() : -1; }

bool fifo_channel::has_buffered_message() const noexcept { return impl_->reader.has_message(); }

void fifo_channel::remove() {
  const std::string object = path_.string();
  struct stat st {};
  if (::lstat(path_.c_str(), &st) != 0) {
    if (errno == ENOENT) return;
    ipc::throw_errno(errno, "lstat", object);
  }
  if (!S_ISFIFO(st.st_mode)) throw_error(errc::not_owner, "unlink", object, std::string("is ") + detail::file_type_name(st.st_mode) + ", not a FIFO; left alone");
  if (::unlink(path_.c_str()) != 0 && errno != ENOENT) ipc::throw_errno(errno, "unlink", object);
}

bool fifo_channel::do_send(std::span<const std::byte> message, const deadline& d) {
  if (role_ != role::sender) ipc::throw_errno(EBADF, "send", name_ + " (opened as receiver)");
  if (!fd_ && !connect_writer(d)) return false;
  return detail::write_frame({fd_.get(), impl_->nowait.get()}, to_stream(options_.framing), message, d, name_);
}

bool fifo_channel::do_receive(std::vector<std::byte>& out, const deadline& d) {
  if (role_ != role::receiver) ipc::throw_errno(EBADF, "receive", name_ + " (opened as sender)");
  // Lines skipped are counted whatever the call ends with (a message, a timeout, errc::closed).
  struct count_on_exit {
    fifo_channel& ch;
    std::uint64_t before;
    ~count_on_exit() { ch.count_skipped(ch.impl_->reader.skipped() - before); }
  } counter{*this, impl_->reader.skipped()};
  return impl_->reader.read({fd_.get(), impl_->nowait.get()}, out, d, name_);
}

namespace detail {

std::unique_ptr<channel> open_fifo_uri(const channel_uri& uri, role r) {
  uri.allow_only({"open", "mode", "max_message", "framing"});
  if (uri.name.empty()) {
    throw_error(errc::bad_uri, "open_channel", uri.text, "fifo needs a path, e.g. fifo:demo.fifo or fifo:/run/ipc/demo.fifo");
  }
  fifo_options o;
  o.open = uri.open_option();
  o.mode = uri.mode_option();
  o.max_message = uri.size_option("max_message", default_stream_max_message);
  check_stream_max_message(o.max_message, uri.text);
  if (auto f = uri.option("framing")) {
    if (*f == "lines") o.framing = fifo_framing::lines;
    else if (*f == "length") o.framing = fifo_framing::length_prefixed;
    else throw_error(errc::bad_uri, "open_channel", uri.text, "option 'framing=" + std::string(*f) + "' (expected length or lines)");
  }
  return fifo_channel::open(uri.name, r, o);
}

}  // namespace detail
}  // namespace ipc
