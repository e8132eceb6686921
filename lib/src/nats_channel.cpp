// ipc::nats_channel: send and receive over core NATS (at-most-once) or a JetStream work-queue
// stream (at-least-once, acknowledged after delivery). Stream and consumer setup: nats_stream.cpp.
#include "detail/nats_client.hpp"
#include "detail/nats_stream.hpp"

#include <ipc/error.hpp>
#include <ipc/nats.hpp>
#include <ipc/record.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <optional>
#include <string>
#include <thread>

namespace ipc {
namespace {

using namespace std::chrono_literals;
using detail::nats_msg_ptr;

// The end-of-stream marker close() publishes: an empty message with this header.
constexpr const char* end_header = "Ipc-End";
// Room left in max_payload for the headers we add (Nats-Msg-Id, the end marker).
constexpr std::size_t header_reserve = 256;
// A long wait is cut into slices so a closed connection or a deleted stream is seen in time.
constexpr auto slice = 1000ms;
// The least time one JetStream round trip is given, even by try_send/try_receive.
constexpr auto round_trip_floor = 500ms;

bool is_end_marker(natsMsg* m) {
  const char* v = nullptr;
  return natsMsg_GetDataLength(m) == 0 && natsMsgHeader_Get(m, end_header, &v) == NATS_OK;
}

// The message id that lets the server drop a repeated publish: the record's session and sequence.
std::optional<std::string> record_id(std::span<const std::byte> message) {
  if (message.size() < record_header_size) return std::nullopt;
  const auto r = decode(message);
  if (!r) return std::nullopt;
  char id[40];
  std::snprintf(id, sizeof id, "%016llx-%llu", static_cast<unsigned long long>(r.header.session),
                static_cast<unsigned long long>(r.header.sequence));
  return std::string(id);
}

void sleep_until_at_most(const deadline& d, std::chrono::milliseconds pause) {
  const auto left = d.remaining();
  std::this_thread::sleep_for(left < pause ? left : std::chrono::nanoseconds(pause));
}

}  // namespace

struct nats_channel::impl {
  impl(const nats_options& options, role r_, std::string object_)
      : o(options), r(r_), object(std::move(object_)), conn(o, object) {}

  nats_options o;
  role r;
  std::string object;
  detail::nats_connection conn;
  detail::js_ctx_ptr js;
  detail::nats_sub_ptr sub;
  std::deque<nats_msg_ptr> fetched;  // JetStream: fetched, not yet delivered (unacknowledged)
  nats_msg_ptr delivered;            // JetStream: delivered to the caller, not yet acknowledged
  bool ended = false;                // the end marker was delivered: closed from now on
  std::uint64_t duplicates = 0;
  std::size_t capacity = 0;

  [[noreturn]] void closed(std::string_view why) const { throw_error(errc::closed, "nats receive", object, why); }

  // ---- core NATS ----
  bool core_send(std::span<const std::byte> m, const deadline& d) {
    for (std::chrono::milliseconds pause = 1ms;; pause = std::min(pause * 2, std::chrono::milliseconds(50))) {
      const natsStatus s = natsConnection_Publish(conn.get(), o.subject.c_str(), m.data(), static_cast<int>(m.size()));
      if (s == NATS_OK) return true;
      // The reconnect buffer is full while the server is away: the channel is "full".
      if (s != NATS_INSUFFICIENT_BUFFER) detail::throw_nats(s, "natsConnection_Publish", object);
      if (d.expired()) return false;
      sleep_until_at_most(d, pause);
    }
  }

  bool core_receive(std::vector<std::byte>& out, const deadline& d) {
    if (ended) closed("end of stream");
    for (;;) {
      natsMsg* raw = nullptr;
      const auto wait = d.is_never() ? slice.count() : detail::nats_wait_ms(d, 0ms, slice);
      natsStatus s = wait == 0 ? natsSubscription_NextMsg(&raw, sub.get(), 1) : natsSubscription_NextMsg(&raw, sub.get(), wait);
      if (s == NATS_OK) {
        nats_msg_ptr m(raw);
        if (is_end_marker(m.get())) {
          ended = true;
          closed("end of stream");
        }
        const auto* data = reinterpret_cast<const std::byte*>(natsMsg_GetData(m.get()));
        out.assign(data, data + natsMsg_GetDataLength(m.get()));
        return true;
      }
      if (s == NATS_CONNECTION_CLOSED || conn.closed_for_good()) closed("connection closed for good");
      // A slow subscriber had messages dropped by the client: core NATS is at-most-once; go on.
      if (s != NATS_TIMEOUT && s != NATS_SLOW_CONSUMER) detail::throw_nats(s, "natsSubscription_NextMsg", object);
      if (d.expired()) return false;
    }
  }

  // ---- JetStream ----
  bool js_send(std::span<const std::byte> m, const deadline& d) {
    const auto id = record_id(m);
    for (std::chrono::milliseconds pause = 1ms;; pause = std::min(pause * 2, std::chrono::milliseconds(50))) {
      if (conn.closed_for_good()) throw_error(errc::closed, "js_Publish", object, "connection closed for good");
      jsPubOptions po;
      jsPubOptions_Init(&po);
      po.MsgId = id ? id->c_str() : nullptr;
      po.MaxWait = detail::nats_wait_ms(d, round_trip_floor, 5000ms);
      jsPubAck* ack = nullptr;
      jsErrCode jerr{};
      const natsStatus s = js_Publish(&ack, js.get(), o.subject.c_str(), m.data(), static_cast<int>(m.size()), &po, &jerr);
      if (s == NATS_OK) {
        if (ack->Duplicate) ++duplicates;
        jsPubAck_Destroy(ack);
        return true;
      }
      if (s == NATS_CONNECTION_CLOSED) throw_error(errc::closed, "js_Publish", object, "connection closed for good");
      if (jerr == JSStreamMessageExceedsMaximumErr) throw_error(errc::message_too_large, "js_Publish", object, "the stream's max_msg_size");
      if (jerr == JSStreamNotFoundErr) throw_error(errc::closed, "js_Publish", object, "stream deleted");
      // No stream listens on the subject: gone for good if the stream was deleted, else (a server
      // still starting JetStream) wait and retry.
      if (s == NATS_NO_RESPONDERS && conn.connected() && !detail::stream_exists(js.get(), o.stream, object)) {
        throw_error(errc::closed, "js_Publish", object, "stream deleted");
      }
      // Transient: no acknowledgement in time (server away or reconnecting), or the stream is full
      // (DiscardNew: "maximum bytes exceeded") until the receiver acknowledges. With a message id
      // the retry is de-duplicated by the server.
      const bool transient = s == NATS_TIMEOUT || s == NATS_NO_RESPONDERS || s == NATS_CONNECTION_DISCONNECTED ||
                             jerr == JSStreamStoreFailedErr || jerr == JSStorageResourcesExceededErr;
      if (!transient) detail::throw_nats(s, "js_Publish", object, jerr);
      if (d.expired()) return false;
      sleep_until_at_most(d, jerr != jsErrCode{} ? pause : std::chrono::milliseconds(std::min<long>(pause.count(), 10)));
    }
  }

  // Acknowledges the delivered message and waits for the server's confirmation (at most `wait`).
  // A failed acknowledgement is not an error: the message is delivered again later (at least once).
  bool ack_delivered(std::int64_t wait_ms) {
    if (!delivered) return true;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = wait_ms;
    jsErrCode jerr{};
    const natsStatus s = natsMsg_AckSync(delivered.get(), &jo, &jerr);
    delivered.reset();
    return s == NATS_OK;
  }

  // One pull request: `batch` messages if there are any (no waiting), else wait (up to the deadline,
  // in slices) for the first to come. Returns false on timeout.
  bool fetch(const deadline& d) {
    for (bool first = true;; first = false) {
      if (conn.closed_for_good()) closed("connection closed for good");
      jsFetchRequest req;
      jsFetchRequest_Init(&req);
      if (first) {
        req.Batch = o.batch;
        req.NoWait = true;
        req.Expires = std::chrono::nanoseconds(std::chrono::milliseconds(detail::nats_wait_ms(deadline::now(), round_trip_floor, round_trip_floor))).count();
      } else {
        if (d.expired()) return false;
        req.Batch = 1;
        req.Expires = std::chrono::nanoseconds(std::chrono::milliseconds(detail::nats_wait_ms(d, 10ms, slice))).count();
      }
      natsMsgList list{};
      const natsStatus s = natsSubscription_FetchRequest(&list, sub.get(), &req);
      if (s == NATS_OK) {
        for (int i = 0; i < list.Count; ++i) {
          fetched.emplace_back(list.Msgs[i]);
          list.Msgs[i] = nullptr;
        }
        natsMsgList_Destroy(&list);
        if (!fetched.empty()) return true;
        continue;
      }
      natsMsgList_Destroy(&list);
      if (s == NATS_CONNECTION_CLOSED) closed("connection closed for good");
      if (s == NATS_TIMEOUT || s == NATS_NOT_FOUND || s == NATS_CONNECTION_DISCONNECTED || s == NATS_NO_RESPONDERS) {
        // Nothing there, or the server is away. A deleted stream (or consumer) is gone for good: the
        // server may just let the pull request expire, so ask after every empty long poll too (one
        // round trip per slice of an idle receiver).
        if ((s != NATS_TIMEOUT || !first) && conn.connected() && !detail::consumer_exists(js.get(), o.stream, o.consumer, object)) {
          closed("stream or consumer deleted");
        }
        if (s != NATS_TIMEOUT && !first && !d.expired()) sleep_until_at_most(d, 20ms);
        continue;
      }
      detail::throw_nats(s, "natsSubscription_Fetch", object);
    }
  }

  bool js_receive(std::vector<std::byte>& out, const deadline& d) {
    if (ended) closed("end of stream");
    (void)ack_delivered(detail::nats_wait_ms(d, round_trip_floor, 5000ms));
    if (fetched.empty() && !fetch(d)) return false;
    nats_msg_ptr m = std::move(fetched.front());
    fetched.pop_front();
    if (is_end_marker(m.get())) {
      delivered = std::move(m);
      (void)ack_delivered(5000);
      ended = true;
      closed("end of stream");
    }
    const auto* data = reinterpret_cast<const std::byte*>(natsMsg_GetData(m.get()));
    out.assign(data, data + natsMsg_GetDataLength(m.get()));
    delivered = std::move(m);
    return true;
  }
};

nats_channel::nats_channel(const nats_options& options, role r) : channel(options.to_uri(), 0) {
  impl_ = std::make_unique<impl>(options, r, name_);
  auto& i = *impl_;
  const auto payload = static_cast<std::size_t>(std::max<std::int64_t>(i.conn.max_payload(), 0));
  if (payload <= header_reserve) throw_error(errc::incompatible, "nats_channel", name_, "server max_payload too small");
  max_message_size_ = payload - header_reserve;
  if (i.o.stream.empty()) {
    if (r == role::receiver) {
      natsSubscription* sub = nullptr;
      if (auto s = natsConnection_SubscribeSync(&sub, i.conn.get(), i.o.subject.c_str()); s != NATS_OK) {
        detail::throw_nats(s, "natsConnection_SubscribeSync", name_);
      }
      i.sub.reset(sub);
      // The server knows the subscription once this round trip is back: a sender that starts
      // after the constructor returns is heard.
      if (auto s = natsConnection_FlushTimeout(i.conn.get(), 5000); s != NATS_OK) detail::throw_nats(s, "natsConnection_Flush", name_);
    }
    return;
  }
  i.js = detail::jetstream_context(i.conn.get(), name_);
  i.capacity = detail::ensure_stream(i.js.get(), i.o, r, name_);
  if (r == role::receiver) i.sub = detail::take_over_consumer(i.js.get(), i.o, name_);
}

nats_channel::~nats_channel() {
  if (!impl_) return;
  if (impl_->delivered) (void)impl_->ack_delivered(2000);
}

channel_limits nats_channel::limits() const {
  channel_limits l;
  l.max_message_size = max_message_size_;
  l.capacity_bytes = impl_->capacity;
  return l;
}

void nats_channel::close() {
  auto& i = *impl_;
  if (i.r == role::receiver) {
    (void)ack();
    return;
  }
  natsMsg* raw = nullptr;
  if (auto s = natsMsg_Create(&raw, i.o.subject.c_str(), nullptr, nullptr, 0); s != NATS_OK) detail::throw_nats(s, "natsMsg_Create", name_);
  nats_msg_ptr m(raw);
  if (auto s = natsMsgHeader_Set(m.get(), end_header, "1"); s != NATS_OK) detail::throw_nats(s, "natsMsgHeader_Set", name_);
  if (!i.js) {
    if (auto s = natsConnection_PublishMsg(i.conn.get(), m.get()); s != NATS_OK) detail::throw_nats(s, "natsConnection_PublishMsg", name_);
    if (auto s = natsConnection_FlushTimeout(i.conn.get(), 5000); s != NATS_OK) detail::throw_nats(s, "natsConnection_Flush", name_);
    return;
  }
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = 5000;
  jsPubAck* ack = nullptr;
  jsErrCode jerr{};
  if (auto s = js_PublishMsg(&ack, i.js.get(), m.get(), &po, &jerr); s != NATS_OK) detail::throw_nats(s, "js_PublishMsg", name_, jerr);
  jsPubAck_Destroy(ack);
}

void nats_channel::remove() {
  if (impl_->js) detail::delete_stream(impl_->js.get(), impl_->o.stream, name_);
}

bool nats_channel::ack() { return !impl_->js || impl_->ack_delivered(5000); }

bool nats_channel::jetstream() const noexcept { return !impl_->o.stream.empty(); }

std::uint64_t nats_channel::reconnects() const noexcept { return impl_->conn.reconnects(); }

std::uint64_t nats_channel::duplicates() const noexcept { return impl_->duplicates; }

bool nats_channel::do_send(std::span<const std::byte> message, const deadline& d) {
  if (impl_->r != role::sender) ipc::throw_errno(EBADF, "send", name_ + " (opened as receiver)");
  return impl_->js ? impl_->js_send(message, d) : impl_->core_send(message, d);
}

bool nats_channel::do_receive(std::vector<std::byte>& out, const deadline& d) {
  if (impl_->r != role::receiver) ipc::throw_errno(EBADF, "receive", name_ + " (opened as sender)");
  return impl_->js ? impl_->js_receive(out, d) : impl_->core_receive(out, d);
}

namespace detail {

std::unique_ptr<channel> open_nats_uri(const channel_uri& uri, role r) {
  return std::make_unique<nats_channel>(nats_options::from_uri(uri), r);
}

}  // namespace detail
}  // namespace ipc
