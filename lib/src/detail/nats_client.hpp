// The libnats side of the nats: channel: one owning connection with the toolkit's reconnect
// policy, owning handles for the client's objects, and the one place natsStatus becomes a
// std::system_error. Internal: included only by lib/src/nats_*.cpp.
#pragma once

#include <ipc/deadline.hpp>
#include <ipc/nats.hpp>

#include <nats/nats.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace ipc::detail {

/// Throws for a failed libnats call: NATS_CONNECTION_CLOSED → errc::closed; NATS_NO_SERVER →
/// ECONNREFUSED; NATS_TIMEOUT → ETIMEDOUT; anything else → EIO. what() names the call, the object,
/// the client's text and the JetStream error code when there is one.
[[noreturn]] void throw_nats(natsStatus s, std::string_view call, std::string_view object, jsErrCode js_error = jsErrCode{});

template <typename T, void (*Destroy)(T*)>
struct nats_deleter {
  void operator()(T* p) const noexcept { Destroy(p); }
};
using nats_msg_ptr = std::unique_ptr<natsMsg, nats_deleter<natsMsg, natsMsg_Destroy>>;
using nats_sub_ptr = std::unique_ptr<natsSubscription, nats_deleter<natsSubscription, natsSubscription_Destroy>>;
using js_ctx_ptr = std::unique_ptr<jsCtx, nats_deleter<jsCtx, jsCtx_Destroy>>;

/// Milliseconds for a libnats timeout: the time left on d, at least `floor`, at most `ceiling`.
std::int64_t nats_wait_ms(const deadline& d, std::chrono::milliseconds floor, std::chrono::milliseconds ceiling) noexcept;

/// A connected natsConnection that reconnects with back-off (50 ms doubling to 2 s) up to
/// options.reconnect attempts, then closes for good.
class nats_connection {
 public:
  /// Connects to the first reachable server (at most connect_timeout each). Throws as throw_nats.
  nats_connection(const nats_options& options, std::string_view object);
  ~nats_connection();
  nats_connection(const nats_connection&) = delete;
  nats_connection& operator=(const nats_connection&) = delete;

  [[nodiscard]] natsConnection* get() const noexcept { return nc_; }
  /// The server's max_payload (bytes).
  [[nodiscard]] std::int64_t max_payload() const noexcept;
  /// True once the client has given up reconnecting (or was closed).
  [[nodiscard]] bool closed_for_good() const noexcept;
  /// True while connected (not reconnecting).
  [[nodiscard]] bool connected() const noexcept;
  [[nodiscard]] std::uint64_t reconnects() const noexcept { return state_->reconnects.load(); }

  /// Shared with the client's callback threads, which may run until the connection is destroyed.
  struct state {
    std::atomic<std::uint64_t> reconnects{0};
    std::atomic<std::uint64_t> async_errors{0};
  };

 private:
  natsConnection* nc_ = nullptr;
  std::unique_ptr<state> state_;
};

}  // namespace ipc::detail
