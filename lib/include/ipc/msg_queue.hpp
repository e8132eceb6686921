// System V message queue channel: typed messages any msgsnd/msgrcv client can read.
//
//   ipc::msg_queue q("jobs");                               // key from ftok($RUNTIME/jobs.msgq, 'M')
//   q.send(3, ipc::as_bytes("low priority"));               // mtype 3
//   q.send(1, ipc::as_bytes("urgent"));                     // mtype 1
//   std::vector<std::byte> buf;
//   auto r = q.receive(ipc::msg_selector::up_to(3), buf);   // lowest type first: r.type == 1
//   if (auto m = q.receive_for(ipc::msg_selector::exact(3), buf, 100ms)) { /* m->size, m->type */ }
//   q.remove();                                             // IPC_RMID + unlink the key file
//
// Messages are plain System V messages (mtype + body, no extra framing): `ipcs -q` lists the
// queue, `ipcrm` removes it, and a C or Python sysv_ipc peer takes part with ftok(path, 'M').
// The queue is a persistent kernel object: the destructor detaches only; remove() destroys.
// Every call that waits sleeps in the kernel; timed calls arm a per-thread timer whose signal
// (SIGRTMAX - 1, handled with SA_RESTART) ends msgrcv/msgsnd at the deadline — docs/msg_queue.md.
// A handle is not for concurrent use by several threads (one handle per thread is fine).
#pragma once

#include <ipc/channel.hpp>
#include <ipc/config.hpp>
#include <ipc/deadline.hpp>
#include <ipc/uri.hpp>

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <ctime>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ipc {

/// Which message msgrcv takes. Types are ≥ 1 (System V reserves 0 and negatives for selection).
class IPC_API msg_selector {
 public:
  enum class how { any, exact, up_to, except };

  /// The first message of any type (msgtyp 0).
  static msg_selector any() noexcept { return msg_selector(how::any, 0); }
  /// The first message of type t (msgtyp t). Throws std::system_error(EINVAL) if t < 1.
  static msg_selector exact(long t);
  /// The message with the lowest type ≤ n, i.e. priority order (msgtyp -n). Throws EINVAL if n < 1.
  static msg_selector up_to(long n);
  /// The first message whose type is not t (MSG_EXCEPT). Throws EINVAL if t < 1.
  static msg_selector except(long t);
  /// Parses the URI syntax: "any", "N" (exact), "-N" (up_to), "!N" (except). Throws errc::bad_uri.
  static msg_selector parse(std::string_view text);

  /// Which rule selects (any, exact, up_to, except).
  [[nodiscard]] how kind() const noexcept { return how_; }
  /// The type the rule names (0 for any).
  [[nodiscard]] long type() const noexcept { return type_; }
  /// The msgtyp argument for msgrcv.
  [[nodiscard]] long msgtyp() const noexcept;
  /// Extra msgrcv flags (MSG_EXCEPT or 0).
  [[nodiscard]] int msgflg() const noexcept;
  /// The URI syntax again ("any", "5", "-5", "!5").
  [[nodiscard]] std::string to_string() const;

 private:
  msg_selector(how h, long t) noexcept : how_(h), type_(t) {}
  how how_;
  long type_;
};

/// What a typed receive returns.
struct msgq_received {
  std::size_t size = 0;  ///< body bytes, == out.size()
  long type = 0;         ///< the message's mtype
};

/// Figures from IPC_STAT.
struct msgq_stats {
  std::size_t messages = 0;     ///< msg_qnum
  std::size_t bytes = 0;        ///< __msg_cbytes: body bytes queued
  std::size_t capacity = 0;     ///< msg_qbytes
  pid_t last_sender = 0;        ///< msg_lspid (0: none yet)
  pid_t last_receiver = 0;      ///< msg_lrpid (0: none yet)
  std::time_t last_send = 0;    ///< msg_stime (0: never)
  std::time_t last_receive = 0; ///< msg_rtime (0: never)
  std::time_t last_change = 0;  ///< msg_ctime (creation or last IPC_SET)
  uid_t owner = 0;              ///< msg_perm.uid
  mode_t mode = 0;              ///< msg_perm.mode & 0777
};

struct msgq_options {
  open_mode open = open_mode::open_or_create;
  mode_t mode = 0600;                          ///< permissions when created; never world-writable
  std::size_t capacity = 0;                    ///< msg_qbytes set when this call creates the queue (0: kernel msgmnb)
  std::size_t max_message = 0;                 ///< largest body send() accepts (0 or above msgmax: msgmax)
  long type = 1;                               ///< mtype used by the untyped send(span)
  msg_selector select = msg_selector::any();   ///< selector used by the untyped receive(out)
};

class IPC_API msg_queue final : public channel {
 public:
  /// Opens queue NAME (plain name) keyed by ftok(runtime_dir()/NAME.msgq, 'M'). Throws std::system_error
  /// naming msgget, the key and the key file; errc::not_owner for a foreign owner or world-writable mode.
  explicit msg_queue(std::string_view name, const msgq_options& options = {});
  /// Opens the queue with an explicit key (not IPC_PRIVATE). Throws as above.
  explicit msg_queue(key_t key, const msgq_options& options = {});
  ~msg_queue() override;  ///< detaches only; the queue persists

  using channel::receive;
  using channel::receive_for;
  using channel::receive_until;
  using channel::send;
  using channel::send_for;
  using channel::send_until;
  using channel::try_receive;
  using channel::try_send;

  /// Blocks while full. Throws EINVAL for type < 1, errc::message_too_large, errc::closed.
  void send(long type, std::span<const std::byte> message);
  /// Blocks at most `timeout`; false on timeout (nothing sent). Throws as send(type, message).
  bool send_for(long type, std::span<const std::byte> message, std::chrono::nanoseconds timeout);
  /// Blocks until `d`; false on timeout (nothing sent). Throws as send(type, message).
  bool send_until(long type, std::span<const std::byte> message, const deadline& d);
  /// Never blocks; false when full. Throws as send(type, message).
  bool try_send(long type, std::span<const std::byte> message);

  /// Blocks until a message matches `sel`; out holds its body. Throws errc::closed when the queue is removed.
  msgq_received receive(const msg_selector& sel, std::vector<std::byte>& out);
  /// Blocks at most `timeout`; std::nullopt on timeout. Throws as receive(sel, out).
  std::optional<msgq_received> receive_for(const msg_selector& sel, std::vector<std::byte>& out,
                                           std::chrono::nanoseconds timeout);
  /// Blocks until `d`; std::nullopt on timeout. Throws as receive(sel, out).
  std::optional<msgq_received> receive_until(const msg_selector& sel, std::vector<std::byte>& out,
                                             const deadline& d);
  /// Never blocks; std::nullopt when nothing matches. Throws as receive(sel, out).
  std::optional<msgq_received> try_receive(const msg_selector& sel, std::vector<std::byte>& out);

  /// The mtype of the last message this handle received (0 before the first). Never throws.
  [[nodiscard]] long last_type() const noexcept { return last_type_; }

  /// IPC_STAT figures; does not block. Throws errc::closed if the queue is gone.
  [[nodiscard]] msgq_stats stats() const;
  /// Sets msg_qbytes (IPC_SET); does not block. Throws EPERM above msgmnb without CAP_SYS_RESOURCE,
  /// EINVAL for 0, errc::closed if the queue is gone.
  void set_capacity(std::size_t bytes);

  /// max_message_size (≤ msgmax), capacity_bytes = capacity_messages = msg_qbytes (the kernel bounds both).
  [[nodiscard]] channel_limits limits() const override;
  /// "msgq".
  [[nodiscard]] std::string_view kind() const noexcept override { return "msgq"; }
  /// IPC_RMID, then unlinks the key file. Blocked peers get errc::closed. Idempotent; throws std::system_error.
  void remove() override;

  /// Polls (50 µs doubling to 5 ms) until the queue is empty, then remove(): a sender's graceful
  /// exit. Blocks until `d`; false on timeout (nothing removed); true if already gone. Throws as remove().
  bool remove_when_empty(const deadline& d);

  /// The msqid (what ipcs shows and ipcrm -q takes).
  [[nodiscard]] int id() const noexcept { return id_; }
  /// The System V key (ftok of the key file, or the explicit key).
  [[nodiscard]] key_t key() const noexcept { return key_; }
  /// The key file (empty when opened by explicit key).
  [[nodiscard]] const std::filesystem::path& key_file() const noexcept { return key_file_; }
  /// The system-wide largest message (/proc/sys/kernel/msgmax, 8192 if unreadable). Never throws.
  [[nodiscard]] static std::size_t system_max_message() noexcept;

 protected:
  bool do_send(std::span<const std::byte> message, const deadline& d) override;
  bool do_receive(std::vector<std::byte>& out, const deadline& d) override;
  void refresh_max_message_size() override;

 private:
  msg_queue(std::string display, key_t key, std::filesystem::path key_file, const msgq_options& options);
  void open(const msgq_options& options);
  void update_max_message(std::size_t qbytes) noexcept;
  [[noreturn]] void fail(int err, std::string_view call) const;

  key_t key_ = 0;
  int id_ = -1;
  std::filesystem::path key_file_;
  std::string object_;        // "key=0x…, /path/NAME.msgq" for msgget/msgctl errors
  std::size_t hard_max_ = 0;  // min(msgmax, options.max_message)
  long default_type_ = 1;
  long next_type_ = 1;
  msg_selector default_select_ = msg_selector::any();
  const msg_selector* next_select_ = nullptr;
  long last_type_ = 0;
  std::vector<long> tx_buf_;  // mtype + body; long-aligned as struct msgbuf requires
  std::vector<long> rx_buf_;  // always msgmax (never MSG_NOERROR: a message is never truncated)
};

}  // namespace ipc
