// The libnats connection behind the nats: channel: reconnect policy and error mapping.
#include "detail/nats_client.hpp"

#include <ipc/error.hpp>

#include <algorithm>
#include <cerrno>
#include <string>
#include <system_error>
#include <vector>

namespace ipc::detail {
namespace {

// Back-off between reconnect attempts: 50 ms doubling to 2 s (the first attempt after a disconnect
// is immediate in libnats).
int64_t reconnect_delay(natsConnection* /*nc*/, int attempts, void* /*closure*/) {
  const int shift = std::clamp(attempts - 1, 0, 6);
  return std::min<int64_t>(int64_t{50} << shift, 2000);
}

void on_reconnected(natsConnection* /*nc*/, void* closure) {
  static_cast<nats_connection::state*>(closure)->reconnects.fetch_add(1);
}

// Asynchronous errors (a slow core-NATS subscriber dropping messages) are counted, not printed:
// the library never writes to the caller's stderr.
void on_async_error(natsConnection* /*nc*/, natsSubscription* /*sub*/, natsStatus /*err*/, void* closure) {
  static_cast<nats_connection::state*>(closure)->async_errors.fetch_add(1);
}

struct options_deleter {
  void operator()(natsOptions* o) const noexcept { natsOptions_Destroy(o); }
};

}  // namespace

void throw_nats(natsStatus s, std::string_view call, std::string_view object, jsErrCode js_error) {
  std::string what(call);
  what.append("(").append(object).append("): ").append(natsStatus_GetText(s));
  if (js_error != 0) what.append(" (JetStream error ").append(std::to_string(static_cast<int>(js_error))).append(")");
  natsStatus last = NATS_OK;
  if (const char* text = nats_GetLastError(&last); text != nullptr && *text != '\0' && last == s) {
    what.append(": ").append(text);
  }
  switch (s) {
    case NATS_CONNECTION_CLOSED: throw std::system_error(make_error_code(errc::closed), what);
    case NATS_NO_SERVER: throw std::system_error(std::error_code(ECONNREFUSED, std::system_category()), what);
    case NATS_TIMEOUT: throw std::system_error(std::error_code(ETIMEDOUT, std::system_category()), what);
    default: throw std::system_error(std::error_code(EIO, std::system_category()), what);
  }
}

std::int64_t nats_wait_ms(const deadline& d, std::chrono::milliseconds floor, std::chrono::milliseconds ceiling) noexcept {
  if (d.is_never()) return ceiling.count();
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(d.remaining());
  return std::clamp(left, floor, ceiling).count();
}

nats_connection::nats_connection(const nats_options& o, std::string_view object) : state_(std::make_unique<state>()) {
  natsOptions* raw = nullptr;
  if (auto s = natsOptions_Create(&raw); s != NATS_OK) throw_nats(s, "natsOptions_Create", object);
  std::unique_ptr<natsOptions, options_deleter> opts(raw);
  std::vector<const char*> servers;
  servers.reserve(o.servers.size());
  for (const auto& url : o.servers) servers.push_back(url.c_str());
  const std::string client_name = "libipc " + std::string(object);
  natsStatus s = natsOptions_SetServers(opts.get(), servers.data(), static_cast<int>(servers.size()));
  if (s == NATS_OK) s = natsOptions_SetNoRandomize(opts.get(), true);  // the first URL is the one to try first
  if (s == NATS_OK) s = natsOptions_SetName(opts.get(), client_name.c_str());
  if (s == NATS_OK) s = natsOptions_SetTimeout(opts.get(), o.connect_timeout.count());
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts.get(), o.reconnect);
  if (s == NATS_OK) s = natsOptions_SetCustomReconnectDelay(opts.get(), reconnect_delay, nullptr);
  if (s == NATS_OK) s = natsOptions_SetReconnectedCB(opts.get(), on_reconnected, state_.get());
  if (s == NATS_OK) s = natsOptions_SetErrorHandler(opts.get(), on_async_error, state_.get());
  // A dead server is noticed within ~2 s on an idle connection (TCP alone may take minutes).
  if (s == NATS_OK) s = natsOptions_SetPingInterval(opts.get(), 1000);
  if (s == NATS_OK) s = natsOptions_SetMaxPingsOut(opts.get(), 2);
  if (s != NATS_OK) throw_nats(s, "natsOptions", object);
  if (s = natsConnection_Connect(&nc_, opts.get()); s != NATS_OK) {
    nc_ = nullptr;
    throw_nats(s, "natsConnection_Connect", object);
  }
}

nats_connection::~nats_connection() {
  if (nc_ == nullptr) return;
  // Flush what was published (bounded), then close; Destroy waits for the client's threads, so
  // no callback can touch state_ afterwards.
  if (natsConnection_Status(nc_) == NATS_CONN_STATUS_CONNECTED) (void)natsConnection_FlushTimeout(nc_, 2000);
  natsConnection_Close(nc_);
  natsConnection_Destroy(nc_);
}

std::int64_t nats_connection::max_payload() const noexcept { return natsConnection_GetMaxPayload(nc_); }

bool nats_connection::closed_for_good() const noexcept { return natsConnection_IsClosed(nc_); }

bool nats_connection::connected() const noexcept { return natsConnection_Status(nc_) == NATS_CONN_STATUS_CONNECTED; }

}  // namespace ipc::detail
