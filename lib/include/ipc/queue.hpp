// A typed multi-producer/multi-consumer queue between any processes (Python's multiprocessing.Queue).
//
//   ipc::queue<std::pair<int, std::string>> results("results");      // opens or creates, mode 0600
//   auto worker = ipc::process::fork([&] { results.put({7, "seven"}); });
//   auto [n, text] = results.get();                                   // blocks until a value arrives
//   if (auto v = results.get_for(100ms)) { }                          // std::nullopt on timeout
//   results.close();                                                  // end of stream, for every getter
//   while (auto v = results.next()) { }                               // drains, then nullopt at the end
//   results.remove();                                                 // queues outlive processes
//
// Values are MessagePack (<ipc/serialize.hpp>): arithmetic, std::string, containers, std::optional,
// std::variant, and structs that declare their fields with MSGPACK_DEFINE. Any process that opens
// the same name takes part, related or not; several putters and several getters may work at once,
// each value reaches exactly one getter, in FIFO order per putter.
//
// End of stream: close() posts an end marker behind the values already queued. A getter that takes
// the marker puts it back before reporting the end, so every getter — however many, in any
// process, now or later — drains the values and then sees the end (get() throws errc::closed,
// next() returns std::nullopt). The marker stays until remove(). Values put after the end marker
// (by another handle) are still delivered to getters that have not yet seen the end.
//
// Backing queue_backend::shm_mpmc: the shm work queue /dev/shm/libipc.NAME (docs/shm-modes.md); each
// handle attaches one sender and one receiver endpoint (so at most 32 handles at once), close()
// is end_stream(), and remove() unlinks the name while attached handles keep working.
// Backing queue_backend::msgq (the default): a System V message queue, runtime_dir()/NAME.msgq
// with ftok project id 'M' (`ipcs -q` lists it). A value is one message of mtype 1 whose body is
// its MessagePack bytes; the end marker is an empty message of mtype 2; getters receive with
// msgtyp -2 (lowest type first), so values always come out before the marker. A Python process
// takes part with sysv_ipc + msgpack (docs/tutorial.md, "Queues"). Bounded: the queue holds at
// most `capacity` bytes of values (msg_qbytes, kernel default msgmnb = 16384) and — the kernel's
// rule — at most that many messages; put blocks while full. One value is at most msgmax (8192
// by default) bytes packed: larger values throw errc::message_too_large. The design keeps the
// transport behind detail::queue_transport so a shared-memory MPMC ring can back the same API.
// A handle is used by one thread at a time; use one handle per thread.
#pragma once

#include <ipc/config.hpp>
#include <ipc/deadline.hpp>
#include <ipc/serialize.hpp>
#include <ipc/uri.hpp>

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ipc {

class msg_queue;

/// Which channel carries a queue's values.
enum class queue_backend {
  msgq,      ///< System V message queue (interoperable with any msgsnd/msgrcv client)
  shm_mpmc,  ///< the shm work queue, shm:NAME?mode=mpmc (<ipc/shm_mpmc.hpp>): faster, C++ peers only
};

struct queue_options {
  open_mode open = open_mode::open_or_create;
  mode_t mode = 0600;             ///< permissions when created; never world-writable
  /// msgq: bytes (and messages) held before put blocks; 0: the kernel default.
  /// shm_mpmc: values (slots, a power of two) held before put blocks; 0: 256.
  std::size_t capacity = 0;
  std::size_t max_value = 0;      ///< shm_mpmc: largest packed value in bytes; 0: 8 KiB (msgq: the kernel's msgmax)
  queue_backend backend = queue_backend::msgq;
};

namespace detail {

/// What a queue needs from the channel under it: whole byte messages, a priority end marker.
class IPC_API queue_transport {
 public:
  virtual ~queue_transport();
  /// false on timeout.
  virtual bool put(std::span<const std::byte> value, const deadline& d) = 0;
  enum class got { value, timeout, end };
  /// A value into out, or the end marker (left in place for the next getter), or timeout.
  virtual got get(std::vector<std::byte>& out, const deadline& d) = 0;
  /// Posts the end marker; false on timeout.
  virtual bool post_end(const deadline& d) = 0;
  virtual void remove() = 0;
  [[nodiscard]] virtual std::size_t max_value_size() const noexcept = 0;
  [[nodiscard]] virtual const std::string& name() const noexcept = 0;
  [[nodiscard]] virtual msg_queue* msgq() noexcept { return nullptr; }
};

}  // namespace detail

/// The untyped core of queue<T>: MessagePack bytes in, bytes out.
class IPC_API queue_base {
 public:
  /// Opens or creates queue NAME (plain name) on the chosen backend. Never blocks (shm_mpmc: at most
  /// ~2 s for a concurrent creator). Throws as msg_queue's constructor (msgget naming the key and key
  /// file; errc::not_owner; errc::bad_uri for a name that is not plain), or as shm_mpmc's.
  explicit queue_base(std::string_view name, const queue_options& options = {});
  ~queue_base();  ///< detaches only; the queue and its values persist
  queue_base(queue_base&&) noexcept;
  queue_base& operator=(queue_base&&) noexcept;

  /// Ends the stream for every getter: posts the end marker behind the values queued so far, and
  /// this handle puts no more (put then throws errc::closed). Blocks while the queue is full.
  /// Idempotent per handle. Throws errc::closed if the queue was removed.
  void close();
  /// As close(), waiting at most `timeout` for room; false on timeout (nothing changed).
  bool close_for(std::chrono::nanoseconds timeout);
  /// Destroys the queue (IPC_RMID, key file unlinked): blocked getters and putters everywhere get
  /// errc::closed. Idempotent. Throws std::system_error naming msgctl. shm_mpmc: unlinks the name
  /// only; attached handles keep working (end them with close()).
  void remove();

  /// "msgq:NAME", or "shm:NAME?mode=mpmc".
  [[nodiscard]] const std::string& name() const noexcept;
  /// The largest packed value put() accepts.
  [[nodiscard]] std::size_t max_value_size() const noexcept;
  /// The System V queue under a msgq-backed queue (its key, id, stats), else nullptr.
  [[nodiscard]] msg_queue* msgq() const noexcept;

 protected:
  /// Blocks until `d`; false on timeout. Throws errc::closed (closed handle or removed queue),
  /// errc::message_too_large.
  bool put_bytes(std::span<const std::byte> value, const deadline& d);
  /// Blocks until `d`: a value into out, the end of the stream (the marker left for the next
  /// getter), or timeout. Throws errc::closed if the queue was removed.
  detail::queue_transport::got get_bytes(std::vector<std::byte>& out, const deadline& d);
  /// Throws errc::closed naming `call` and the queue: "end of stream".
  [[noreturn]] void throw_end(std::string_view call) const;

  std::vector<std::byte> buffer_;  // reused by put and get (a handle serves one thread)

 private:
  std::unique_ptr<detail::queue_transport> transport_;
  bool closed_ = false;
};

/// A queue of T values (see the top of this header).
template <typename T>
class queue : public queue_base {
 public:
  using value_type = T;
  using queue_base::queue_base;

  /// Blocks while full. Throws errc::closed (this handle closed, or the queue removed),
  /// errc::message_too_large (packed value above max_value_size(); nothing sent).
  void put(const T& v) { put_until(v, deadline::never()); }
  /// Blocks at most `timeout`; false on timeout (nothing sent). Throws as put().
  bool put_for(const T& v, std::chrono::nanoseconds timeout) { return put_until(v, deadline::in(timeout)); }
  /// Never blocks; false when full. Throws as put().
  bool try_put(const T& v) { return put_until(v, deadline::now()); }

  /// Blocks until a value arrives. Throws errc::closed at the end of the stream (after every value
  /// before the end marker was taken) or when the queue is removed, errc::corrupt for a message
  /// that is not a T (the message is consumed).
  T get() {
    auto v = get_until(deadline::never(), "queue::get");
    return std::move(*v);
  }
  /// Blocks at most `timeout`; std::nullopt on timeout. Throws as get().
  std::optional<T> get_for(std::chrono::nanoseconds timeout) { return get_until(deadline::in(timeout), "queue::get_for"); }
  /// Never blocks; std::nullopt when empty. Throws as get().
  std::optional<T> try_get() { return get_until(deadline::now(), "queue::try_get"); }
  /// The loop form of get(): blocks; std::nullopt at the end of the stream instead of throwing.
  /// Throws errc::closed when the queue is removed, errc::corrupt as get().
  std::optional<T> next() {
    if (get_bytes(buffer_, deadline::never()) == detail::queue_transport::got::end) return std::nullopt;
    return unpack<T>(buffer_, name());
  }

 private:
  bool put_until(const T& v, const deadline& d) {
    buffer_.clear();
    pack_into(buffer_, v);
    return put_bytes(buffer_, d);
  }
  std::optional<T> get_until(const deadline& d, std::string_view call) {
    switch (get_bytes(buffer_, d)) {
      case detail::queue_transport::got::timeout: return std::nullopt;
      case detail::queue_transport::got::end: throw_end(call);
      case detail::queue_transport::got::value: break;
    }
    return unpack<T>(buffer_, name());
  }
};

}  // namespace ipc
