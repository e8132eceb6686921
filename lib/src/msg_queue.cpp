#include <ipc/error.hpp>
#include <ipc/msg_queue.hpp>
#include <ipc/unique_fd.hpp>

#include "detail/channel_factories.hpp"
#include "detail/deadline_signal.hpp"
#include "detail/eintr.hpp"
#include "detail/sysv_key.hpp"

#include <fcntl.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>

namespace ipc {
namespace {

using namespace std::chrono_literals;

constexpr int proj_id = 'M';
constexpr std::size_t fallback_msgmax = 8192;

[[noreturn]] void invalid(std::string_view call, const std::string& what) {
  ipc::throw_errno(EINVAL, call, what);
}

std::size_t read_proc_number(const char* path, std::size_t fallback) noexcept {
  unique_fd fd{detail::retry_eintr([&] { return ::open(path, O_RDONLY | O_CLOEXEC); })};
  if (!fd) return fallback;
  char buf[32] = {};
  ssize_t n = detail::retry_eintr([&] { return ::read(fd.get(), buf, sizeof buf - 1); });
  if (n <= 0) return fallback;
  char* end = nullptr;
  unsigned long long v = std::strtoull(buf, &end, 10);
  return end == buf || v == 0 ? fallback : static_cast<std::size_t>(v);
}

std::size_t words_for(std::size_t body_bytes) noexcept {
  return 1 + (body_bytes + sizeof(long) - 1) / sizeof(long);
}

// remove_when_empty's wait: the queue has no "became empty" event, so look, then sleep in
// exponentially growing steps (50 µs doubling to 5 ms, never past the deadline) and look again.
template <typename Attempt>
bool poll_with_backoff(const deadline& d, Attempt&& attempt) {
  constexpr std::chrono::nanoseconds first_step = 50us;
  constexpr std::chrono::nanoseconds max_step = 5ms;
  std::chrono::nanoseconds step = first_step;
  for (;;) {
    if (attempt()) return true;
    if (d.expired()) return false;
    auto nap = std::min(step, d.remaining());
    timespec ts{};
    ts.tv_sec = static_cast<time_t>(nap.count() / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(nap.count() % 1'000'000'000);
    ::clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, nullptr);  // EINTR: the loop re-checks the deadline
    step = std::min(step * 2, max_step);
  }
}

// Restores a member on scope exit (the typed calls pass their type/selector to do_send/do_receive).
template <typename T>
class restore_on_exit {
 public:
  restore_on_exit(T& ref, T value) noexcept : ref_(ref), saved_(ref) { ref_ = value; }
  ~restore_on_exit() { ref_ = saved_; }
  restore_on_exit(const restore_on_exit&) = delete;
  restore_on_exit& operator=(const restore_on_exit&) = delete;

 private:
  T& ref_;
  T saved_;
};

void check_type(long type, std::string_view call, const std::string& object) {
  if (type < 1) invalid(call, object + ", type " + std::to_string(type) + " (message types start at 1)");
}

}  // namespace

// ---- msg_selector ---------------------------------------------------------------------------

msg_selector msg_selector::exact(long t) {
  if (t < 1) invalid("msg_selector", "exact(" + std::to_string(t) + "): message types start at 1");
  return {how::exact, t};
}

msg_selector msg_selector::up_to(long n) {
  if (n < 1) invalid("msg_selector", "up_to(" + std::to_string(n) + "): message types start at 1");
  return {how::up_to, n};
}

msg_selector msg_selector::except(long t) {
  if (t < 1) invalid("msg_selector", "except(" + std::to_string(t) + "): message types start at 1");
  return {how::except, t};
}

msg_selector msg_selector::parse(std::string_view text) {
  auto bad = [&] {
    throw_error(errc::bad_uri, "msg_selector", text, "expected any, N (exact), -N (lowest type <= N) or !N (not N), N >= 1");
  };
  if (text == "any") return any();
  how h = how::exact;
  std::string digits(text);
  if (!digits.empty() && (digits[0] == '-' || digits[0] == '!')) {
    h = digits[0] == '-' ? how::up_to : how::except;
    digits.erase(0, 1);
  }
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) bad();
  errno = 0;
  long long v = std::strtoll(digits.c_str(), nullptr, 10);
  if (errno != 0 || v < 1 || v > std::numeric_limits<long>::max()) bad();
  return {h, static_cast<long>(v)};
}

long msg_selector::msgtyp() const noexcept {
  switch (how_) {
    case how::any: return 0;
    case how::up_to: return -type_;
    case how::exact:
    case how::except: return type_;
  }
  return 0;
}

int msg_selector::msgflg() const noexcept { return how_ == how::except ? MSG_EXCEPT : 0; }

std::string msg_selector::to_string() const {
  switch (how_) {
    case how::any: return "any";
    case how::exact: return std::to_string(type_);
    case how::up_to: return "-" + std::to_string(type_);
    case how::except: return "!" + std::to_string(type_);
  }
  return "any";
}

// ---- msg_queue: opening -------------------------------------------------------------------

namespace {

std::filesystem::path named_key_file(std::string_view name) {
  channel_uri u;
  u.text = "msgq:" + std::string(name);
  u.scheme = "msgq";
  u.name = std::string(name);
  u.require_plain_name();
  return runtime_dir() / (u.name + ".msgq");
}

}  // namespace

msg_queue::msg_queue(std::string_view name, const msgq_options& options)
    : msg_queue("msgq:" + std::string(name), 0, named_key_file(name), options) {}

msg_queue::msg_queue(key_t key, const msgq_options& options)
    : msg_queue("msgq:key=" + detail::key_string(key), key, {}, options) {}

msg_queue::msg_queue(std::string display, key_t key, std::filesystem::path key_file, const msgq_options& options)
    : channel(std::move(display), 0), key_(key), key_file_(std::move(key_file)) {
  open(options);
}

msg_queue::~msg_queue() = default;

void msg_queue::open(const msgq_options& o) {
  detail::check_new_mode(o.mode, "msgget", name_);
  check_type(o.type, "msgget", name_);
  default_type_ = next_type_ = o.type;
  default_select_ = o.select;
  hard_max_ = system_max_message();
  if (o.max_message != 0 && o.max_message < hard_max_) hard_max_ = o.max_message;

  const bool create = o.open != open_mode::open_only;
  bool key_file_existed = true;
  if (!key_file_.empty()) {
    struct stat st {};
    key_file_existed = ::lstat(key_file_.c_str(), &st) == 0;
    key_ = detail::sysv_key(key_file_, proj_id, create);
    object_ = "key=" + detail::key_string(key_) + ", " + key_file_.string();
  } else {
    if (key_ == IPC_PRIVATE) invalid("msgget", "key=0x00000000: IPC_PRIVATE cannot be shared, give a real key");
    object_ = "key=" + detail::key_string(key_);
  }

  bool created = false;
  try {
    for (int attempt = 0; id_ < 0; ++attempt) {
      if (o.open == open_mode::open_only) {
        id_ = ::msgget(key_, 0);
      } else {
        id_ = ::msgget(key_, IPC_CREAT | IPC_EXCL | static_cast<int>(o.mode));
        if (id_ >= 0) {
          created = true;
        } else if (errno == EEXIST && o.open == open_mode::open_or_create) {
          id_ = ::msgget(key_, 0);
          // Removed between the two calls: try creating again (a few times, then report it).
          if (id_ < 0 && errno == ENOENT && attempt < 3) continue;
        }
      }
      if (id_ < 0) detail::throw_sysv_create_error(errno, "msgget", object_);
    }
    msqid_ds ds{};
    ipc::check_unix(::msgctl(id_, IPC_STAT, &ds), "msgctl", "IPC_STAT, " + object_);
    if (created) {
      if (o.capacity != 0) set_capacity(o.capacity);
      else update_max_message(static_cast<std::size_t>(ds.msg_qbytes));
    } else {
      detail::check_owner(ds.msg_perm.uid, ds.msg_perm.mode, "msgget", object_);
      update_max_message(static_cast<std::size_t>(ds.msg_qbytes));
    }
  } catch (...) {
    // Leave nothing half-created behind: our queue goes, and the key file too if we made it
    // and no queue (someone else's, created meanwhile) uses it.
    if (created) ::msgctl(id_, IPC_RMID, nullptr);
    if (!key_file_existed && ::msgget(key_, 0) < 0 && errno == ENOENT) ::unlink(key_file_.c_str());
    id_ = -1;
    throw;
  }
}

void msg_queue::update_max_message(std::size_t qbytes) noexcept {
  // A message larger than msg_qbytes never fits: msgsnd would block for ever.
  max_message_size_ = std::min(hard_max_, qbytes);
}

std::size_t msg_queue::system_max_message() noexcept {
  return read_proc_number("/proc/sys/kernel/msgmax", fallback_msgmax);
}

[[noreturn]] void msg_queue::fail(int err, std::string_view call) const {
  if (err == EIDRM) throw_error(errc::closed, call, name_, "queue removed");
  if (err == EINVAL) {
    // EINVAL also means a bad argument; it means "gone" only if the id no longer stats.
    msqid_ds ds{};
    if (::msgctl(id_, IPC_STAT, &ds) != 0 && (errno == EINVAL || errno == EIDRM)) {
      throw_error(errc::closed, call, name_, "queue removed");
    }
  }
  ipc::throw_errno(err, call, name_);
}

// ---- msg_queue: control -------------------------------------------------------------------

msgq_stats msg_queue::stats() const {
  msqid_ds ds{};
  if (::msgctl(id_, IPC_STAT, &ds) != 0) fail(errno, "msgctl");
  msgq_stats s;
  s.messages = static_cast<std::size_t>(ds.msg_qnum);
  s.bytes = static_cast<std::size_t>(ds.__msg_cbytes);
  s.capacity = static_cast<std::size_t>(ds.msg_qbytes);
  s.last_sender = ds.msg_lspid;
  s.last_receiver = ds.msg_lrpid;
  s.last_send = ds.msg_stime;
  s.last_receive = ds.msg_rtime;
  s.last_change = ds.msg_ctime;
  s.owner = ds.msg_perm.uid;
  s.mode = static_cast<mode_t>(ds.msg_perm.mode & 0777);
  return s;
}

void msg_queue::set_capacity(std::size_t bytes) {
  if (bytes == 0) invalid("msgctl", "IPC_SET msg_qbytes=0, " + object_ + ": a queue needs at least 1 byte");
  msqid_ds ds{};
  if (::msgctl(id_, IPC_STAT, &ds) != 0) fail(errno, "msgctl");
  ds.msg_qbytes = static_cast<msglen_t>(bytes);
  if (::msgctl(id_, IPC_SET, &ds) != 0) {
    int err = errno;
    if (err == EPERM) {
      std::size_t mnb = read_proc_number("/proc/sys/kernel/msgmnb", 16384);
      ipc::throw_errno(err, "msgctl", "IPC_SET msg_qbytes=" + std::to_string(bytes) + " above msgmnb " +
                                             std::to_string(mnb) + " needs CAP_SYS_RESOURCE, " + object_);
    }
    if (err == EIDRM || err == EINVAL) fail(err, "msgctl");
    ipc::throw_errno(err, "msgctl", "IPC_SET msg_qbytes=" + std::to_string(bytes) + ", " + object_);
  }
  update_max_message(bytes);
}

channel_limits msg_queue::limits() const {
  auto s = stats();
  channel_limits l;
  l.max_message_size = max_message_size_;
  l.capacity_bytes = s.capacity;
  l.capacity_messages = s.capacity;  // the kernel also caps the message count at msg_qbytes
  return l;
}

void msg_queue::remove() {
  if (::msgctl(id_, IPC_RMID, nullptr) != 0) {
    // Already gone: leave the key file alone, a new queue may be using it by now.
    if (errno == EINVAL || errno == EIDRM) return;
    ipc::throw_errno(errno, "msgctl", "IPC_RMID, " + object_);
  }
  if (!key_file_.empty() && ::unlink(key_file_.c_str()) != 0 && errno != ENOENT) {
    ipc::throw_errno(errno, "unlink", key_file_.string());
  }
}

bool msg_queue::remove_when_empty(const deadline& d) {
  bool gone = false;
  bool empty = poll_with_backoff(d, [&] {
    msqid_ds ds{};
    if (::msgctl(id_, IPC_STAT, &ds) != 0) {
      if (errno != EINVAL && errno != EIDRM) ipc::throw_errno(errno, "msgctl", "IPC_STAT, " + object_);
      gone = true;
      return true;
    }
    return ds.msg_qnum == 0;
  });
  if (!empty) return false;
  // A sender still running may slip a message in between the check and IPC_RMID; this is for
  // the last sender leaving.
  if (!gone) remove();
  return true;
}

// ---- msg_queue: data ----------------------------------------------------------------------

void msg_queue::send(long type, std::span<const std::byte> message) { send_until(type, message, deadline::never()); }

bool msg_queue::send_for(long type, std::span<const std::byte> message, std::chrono::nanoseconds timeout) {
  return send_until(type, message, deadline::in(timeout));
}

bool msg_queue::try_send(long type, std::span<const std::byte> message) {
  return send_until(type, message, deadline::now());
}

bool msg_queue::send_until(long type, std::span<const std::byte> message, const deadline& d) {
  check_type(type, "msgsnd", name_);
  restore_on_exit<long> typed(next_type_, type);
  return channel::send_until(message, d);
}

msgq_received msg_queue::receive(const msg_selector& sel, std::vector<std::byte>& out) {
  for (;;) {
    if (auto r = receive_until(sel, out, deadline::never())) return *r;
  }
}

std::optional<msgq_received> msg_queue::receive_for(const msg_selector& sel, std::vector<std::byte>& out,
                                                    std::chrono::nanoseconds timeout) {
  return receive_until(sel, out, deadline::in(timeout));
}

std::optional<msgq_received> msg_queue::try_receive(const msg_selector& sel, std::vector<std::byte>& out) {
  return receive_until(sel, out, deadline::now());
}

std::optional<msgq_received> msg_queue::receive_until(const msg_selector& sel, std::vector<std::byte>& out,
                                                      const deadline& d) {
  restore_on_exit<const msg_selector*> selected(next_select_, &sel);
  auto n = channel::receive_until(out, d);
  if (!n) return std::nullopt;
  return msgq_received{*n, last_type_};
}

void msg_queue::refresh_max_message_size() {
  msqid_ds ds{};
  if (::msgctl(id_, IPC_STAT, &ds) != 0) fail(errno, "msgctl");
  update_max_message(static_cast<std::size_t>(ds.msg_qbytes));
}

bool msg_queue::do_send(std::span<const std::byte> message, const deadline& d) {
  const std::size_t words = words_for(message.size());
  if (tx_buf_.size() < words) tx_buf_.resize(words);
  tx_buf_[0] = next_type_;
  if (!message.empty()) std::memcpy(tx_buf_.data() + 1, message.data(), message.size());

  // First without waiting: the common case costs one msgsnd.
  if (::msgsnd(id_, tx_buf_.data(), message.size(), IPC_NOWAIT) == 0) return true;
  if (errno != EAGAIN && errno != EINTR) fail(errno, "msgsnd");
  // Full, or the message can never fit: msg_qbytes may have been lowered since we opened, and
  // msgsnd would then wait for ever. Re-read it whenever a send cannot proceed.
  refresh_max_message_size();
  if (message.size() > max_message_size_) {
    throw_error(errc::message_too_large, "msgsnd", name_,
                std::to_string(message.size()) + " > " + std::to_string(max_message_size_) +
                    " bytes (the queue's capacity msg_qbytes was lowered)");
  }
  if (d.expired()) return false;
  // Sleep in msgsnd itself; the deadline's signal interrupts it (EINTR).
  detail::deadline_signal alarm(d);
  for (;;) {
    if (detail::take_interrupt()) return false;  // interrupt_thread(): end the wait as a timeout
    if (::msgsnd(id_, tx_buf_.data(), message.size(), 0) == 0) return true;
    if (errno != EINTR) fail(errno, "msgsnd");
    if (d.expired()) return false;
  }
}

bool msg_queue::do_receive(std::vector<std::byte>& out, const deadline& d) {
  const msg_selector& sel = next_select_ != nullptr ? *next_select_ : default_select_;
  // Always room for the system's largest message: a peer (C, Python) may send up to msgmax
  // whatever our max_message says, and MSG_NOERROR would silently truncate it.
  if (rx_buf_.empty()) rx_buf_.resize(words_for(system_max_message()));

  // 1 = got one, 0 = nothing matching now (or interrupted); throws otherwise.
  auto attempt = [&](int flags) -> int {
    for (;;) {
      const std::size_t room = (rx_buf_.size() - 1) * sizeof(long);
      ssize_t n = ::msgrcv(id_, rx_buf_.data(), room, sel.msgtyp(), sel.msgflg() | flags);
      if (n >= 0) {
        const auto* body = reinterpret_cast<const std::byte*>(rx_buf_.data() + 1);
        out.assign(body, body + n);
        last_type_ = rx_buf_[0];
        return 1;
      }
      if (errno == E2BIG) {
        // msgmax was raised after we sized the buffer; the message stays queued, so grow and retry.
        rx_buf_.resize(std::max(words_for(system_max_message()), rx_buf_.size() * 2));
        continue;
      }
      if (errno == ENOMSG || errno == EAGAIN || errno == EINTR) return 0;
      fail(errno, "msgrcv");
    }
  };
  if (d.is_never()) {
    for (;;) {
      if (attempt(0) == 1) return true;
    }
  }
  // First without waiting: a message already queued costs one msgrcv and no timer.
  if (attempt(IPC_NOWAIT) == 1) return true;
  if (d.expired()) return false;
  // Sleep in msgrcv itself until the message or the deadline's signal (EINTR).
  detail::deadline_signal alarm(d);
  for (;;) {
    if (detail::take_interrupt()) return false;  // interrupt_thread(): end the wait as a timeout
    if (attempt(0) == 1) return true;
    if (d.expired()) return false;
  }
}

// ---- URI factory --------------------------------------------------------------------------

namespace detail {

std::unique_ptr<channel> open_msgq_uri(const channel_uri& uri, role r) {
  (void)r;  // both ends open the same queue the same way
  uri.allow_only({"key", "mode", "open", "capacity", "max_message", "type", "select"});
  auto bad = [&](const std::string& what) { throw_error(errc::bad_uri, "open_channel", uri.text, what); };

  msgq_options o;
  o.open = uri.open_option();
  o.mode = uri.mode_option();
  o.capacity = uri.size_option("capacity", 0);
  if (uri.option("capacity") && o.capacity == 0) bad("option 'capacity=0': a queue needs at least 1 byte");
  o.max_message = uri.size_option("max_message", 0);
  if (uri.option("max_message") && o.max_message == 0) bad("option 'max_message=0' would refuse every message");
  if (auto t = uri.option("type")) {
    std::string s(*t);
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(s.c_str(), &end, 10);
    if (s.empty() || *end != '\0' || errno != 0 || v < 1 || v > std::numeric_limits<long>::max()) {
      bad("option 'type=" + s + "' is not a message type >= 1");
    }
    o.type = static_cast<long>(v);
  }
  if (auto s = uri.option("select")) {
    try {
      o.select = msg_selector::parse(*s);
    } catch (const std::system_error&) {
      bad("option 'select=" + std::string(*s) + "' (expected any, N, -N for lowest type <= N, or !N for not N)");
    }
  }
  if (auto k = uri.option("key")) {
    if (!uri.name.empty()) bad("give either a name or key=, not both");
    std::string s(*k);
    char* end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(s.c_str(), &end, 0);
    if (s.empty() || s[0] == '-' || *end != '\0' || errno != 0 || v == 0 || v > 0xffffffffULL) {
      bad("option 'key=" + s + "' is not a non-zero 32-bit key like 0x1234");
    }
    return std::make_unique<msg_queue>(static_cast<key_t>(static_cast<std::uint32_t>(v)), o);
  }
  uri.require_plain_name();
  return std::make_unique<msg_queue>(uri.name, o);
}

}  // namespace detail
}  // namespace ipc
