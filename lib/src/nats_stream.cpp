// JetStream stream and consumer setup for the nats: channel.
#include "detail/nats_stream.hpp"

#include <ipc/error.hpp>

#include <chrono>
#include <string>

namespace ipc::detail {
namespace {

constexpr std::int64_t api_wait_ms = 5000;

jsOptions api_options() {
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = api_wait_ms;
  return jo;
}

struct stream_info_ptr {
  jsStreamInfo* p = nullptr;
  ~stream_info_ptr() {
    if (p != nullptr) jsStreamInfo_Destroy(p);
  }
};

}  // namespace

js_ctx_ptr jetstream_context(natsConnection* nc, std::string_view object) {
  jsCtx* js = nullptr;
  jsOptions jo = api_options();
  if (auto s = natsConnection_JetStream(&js, nc, &jo); s != NATS_OK) throw_nats(s, "natsConnection_JetStream", object);
  return js_ctx_ptr(js);
}

std::size_t ensure_stream(jsCtx* js, const nats_options& o, role r, std::string_view object) {
  jsOptions jo = api_options();
  for (int attempt = 0;; ++attempt) {
    stream_info_ptr si;
    jsErrCode jerr{};
    natsStatus s = js_GetStreamInfo(&si.p, js, o.stream.c_str(), &jo, &jerr);
    if (s == NATS_OK) {
      const jsStreamConfig* c = si.p->Config;
      if (r == role::receiver && c->Retention != js_WorkQueuePolicy) {
        throw_error(errc::incompatible, "js_GetStreamInfo", object, "stream '" + o.stream + "' is not a work queue");
      }
      return c->MaxBytes > 0 ? static_cast<std::size_t>(c->MaxBytes) : 0;
    }
    if (s != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr) throw_nats(s, "js_GetStreamInfo", object, jerr);
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const char* subjects[] = {o.subject.c_str()};
    cfg.Name = o.stream.c_str();
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Retention = js_WorkQueuePolicy;
    cfg.MaxBytes = static_cast<int64_t>(o.capacity);
    cfg.Discard = js_DiscardNew;  // a full stream refuses new messages: the sender waits
    cfg.Storage = js_FileStorage;
    cfg.Replicas = o.replicas;
    stream_info_ptr created;
    s = js_AddStream(&created.p, js, &cfg, &jo, &jerr);
    if (s == NATS_OK) return o.capacity;
    // The other end created it at the same moment: read it back (once).
    if (attempt == 0 && jerr == JSStreamNameExistErr) continue;
    throw_nats(s, "js_AddStream", object, jerr);
  }
}

nats_sub_ptr take_over_consumer(jsCtx* js, const nats_options& o, std::string_view object) {
  jsOptions jo = api_options();
  jsErrCode jerr{};
  natsStatus s = js_DeleteConsumer(js, o.stream.c_str(), o.consumer.c_str(), &jo, &jerr);
  if (s != NATS_OK && s != NATS_NOT_FOUND && jerr != JSConsumerNotFoundErr) throw_nats(s, "js_DeleteConsumer", object, jerr);
  jsConsumerConfig cc;
  jsConsumerConfig_Init(&cc);
  cc.Durable = o.consumer.c_str();
  cc.DeliverPolicy = js_DeliverAll;
  cc.AckPolicy = js_AckExplicit;
  cc.AckWait = std::chrono::nanoseconds(o.ack_wait).count();
  cc.FilterSubject = o.subject.c_str();
  cc.MaxAckPending = std::max(4 * o.batch, 1024);
  jsConsumerInfo* ci = nullptr;
  jerr = jsErrCode{};
  s = js_AddConsumer(&ci, js, o.stream.c_str(), &cc, &jo, &jerr);
  if (s != NATS_OK) throw_nats(s, "js_AddConsumer", object, jerr);
  jsConsumerInfo_Destroy(ci);
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = o.stream.c_str();
  so.Consumer = o.consumer.c_str();
  natsSubscription* sub = nullptr;
  jerr = jsErrCode{};
  s = js_PullSubscribe(&sub, js, o.subject.c_str(), o.consumer.c_str(), &jo, &so, &jerr);
  if (s != NATS_OK) throw_nats(s, "js_PullSubscribe", object, jerr);
  return nats_sub_ptr(sub);
}

bool stream_exists(jsCtx* js, const std::string& stream, std::string_view /*object*/) noexcept {
  jsOptions jo = api_options();
  jo.Wait = 2000;
  stream_info_ptr si;
  jsErrCode jerr{};
  const natsStatus s = js_GetStreamInfo(&si.p, js, stream.c_str(), &jo, &jerr);
  return !(s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr);
}

bool consumer_exists(jsCtx* js, const std::string& stream, const std::string& consumer, std::string_view /*object*/) noexcept {
  jsOptions jo = api_options();
  jo.Wait = 2000;
  jsConsumerInfo* ci = nullptr;
  jsErrCode jerr{};
  const natsStatus s = js_GetConsumerInfo(&ci, js, stream.c_str(), consumer.c_str(), &jo, &jerr);
  if (ci != nullptr) jsConsumerInfo_Destroy(ci);
  return !(s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr || jerr == JSConsumerNotFoundErr);
}

void delete_stream(jsCtx* js, const std::string& stream, std::string_view object) {
  jsOptions jo = api_options();
  jsErrCode jerr{};
  const natsStatus s = js_DeleteStream(js, stream.c_str(), &jo, &jerr);
  if (s != NATS_OK && s != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr) throw_nats(s, "js_DeleteStream", object, jerr);
}

}  // namespace ipc::detail
