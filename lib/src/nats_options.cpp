// nats: URIs: nats://HOST:PORT[,HOST:PORT…]/SUBJECT[?options] → ipc::nats_options.
// Built only with libnats (the rest of the channel needs the client), but needs nothing from it.
#include <ipc/error.hpp>
#include <ipc/nats.hpp>

#include <charconv>
#include <string>

namespace ipc {
namespace {

[[noreturn]] void bad(const channel_uri& uri, const std::string& detail) {
  throw_error(errc::bad_uri, "open_channel", uri.text, detail);
}

long long integer_option(const channel_uri& uri, std::string_view key, long long fallback, long long lo, long long hi) {
  auto v = uri.option(key);
  if (!v) return fallback;
  long long n = 0;
  auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
  if (ec != std::errc{} || end != v->data() + v->size() || n < lo || n > hi) {
    bad(uri, "option '" + std::string(key) + "=" + std::string(*v) + "' is not an integer in " + std::to_string(lo) +
                 ".." + std::to_string(hi));
  }
  return n;
}

// A JetStream name (stream, consumer): no whitespace, '.', '*', '>', path separators.
void require_name(const channel_uri& uri, std::string_view what, std::string_view name) {
  if (name.empty() || name.size() > 200) bad(uri, std::string(what) + " must be 1..200 characters");
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!ok) bad(uri, std::string(what) + " '" + std::string(name) + "' may use only letters, digits, '_' and '-'");
  }
}

// A subject to publish on: dot-separated non-empty tokens, no wildcards, no whitespace.
void require_subject(const channel_uri& uri, std::string_view subject) {
  if (subject.empty()) bad(uri, "nats needs a subject: nats://HOST:PORT/SUBJECT");
  bool token_empty = true;
  for (char c : subject) {
    if (c == '.') {
      if (token_empty) bad(uri, "subject '" + std::string(subject) + "' has an empty token");
      token_empty = true;
      continue;
    }
    if (c == '*' || c == '>' || c <= ' ' || c == 0x7f || c == '/') {
      bad(uri, "subject '" + std::string(subject) + "' may not hold wildcards, '/' or whitespace");
    }
    token_empty = false;
  }
  if (token_empty) bad(uri, "subject '" + std::string(subject) + "' has an empty token");
}

}  // namespace

nats_options nats_options::from_uri(const channel_uri& uri) {
  uri.allow_only({"jetstream", "consumer", "capacity", "replicas", "ack_wait", "batch", "reconnect"});
  std::string_view rest = uri.name;
  if (rest.substr(0, 2) != "//") bad(uri, "expected nats://HOST:PORT/SUBJECT");
  rest.remove_prefix(2);
  const auto slash = rest.find('/');
  if (slash == std::string_view::npos) bad(uri, "expected nats://HOST:PORT/SUBJECT (no subject)");
  std::string_view hosts = rest.substr(0, slash);
  nats_options o;
  o.subject = std::string(rest.substr(slash + 1));
  require_subject(uri, o.subject);
  while (true) {
    const auto comma = hosts.find(',');
    std::string_view h = hosts.substr(0, comma);
    const auto colon = h.rfind(':');
    if (h.empty() || colon == std::string_view::npos || colon == 0 || colon + 1 == h.size()) {
      bad(uri, "server '" + std::string(h) + "' is not HOST:PORT");
    }
    int port = 0;
    auto p = h.substr(colon + 1);
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
    if (ec != std::errc{} || end != p.data() + p.size() || port < 1 || port > 65535) {
      bad(uri, "server '" + std::string(h) + "' has no port 1..65535");
    }
    for (char c : h.substr(0, colon)) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
                      c == '[' || c == ']' || c == ':';
      if (!ok) bad(uri, "server '" + std::string(h) + "' is not HOST:PORT");
    }
    o.servers.push_back("nats://" + std::string(h));
    if (comma == std::string_view::npos) break;
    hosts.remove_prefix(comma + 1);
  }
  if (auto s = uri.option("jetstream")) {
    o.stream = std::string(*s);
    require_name(uri, "stream", o.stream);
  }
  if (auto c = uri.option("consumer")) {
    o.consumer = std::string(*c);
    require_name(uri, "consumer", o.consumer);
  }
  o.capacity = uri.size_option("capacity", o.capacity);
  if (o.capacity < 4096) bad(uri, "option 'capacity' must be at least 4K");
  o.replicas = static_cast<int>(integer_option(uri, "replicas", 1, 1, 5));
  o.ack_wait = std::chrono::milliseconds(integer_option(uri, "ack_wait", o.ack_wait.count(), 100, 3'600'000));
  o.batch = static_cast<int>(integer_option(uri, "batch", o.batch, 1, 4096));
  o.reconnect = static_cast<int>(integer_option(uri, "reconnect", o.reconnect, -1, 1'000'000));
  const bool core_only = o.stream.empty();
  for (auto js_only : {"consumer", "capacity", "replicas", "ack_wait", "batch"}) {
    if (core_only && uri.option(js_only)) bad(uri, "option '" + std::string(js_only) + "' needs jetstream=STREAM");
  }
  return o;
}

std::string nats_options::to_uri() const {
  std::string s = "nats://";
  for (std::size_t i = 0; i < servers.size(); ++i) {
    if (i != 0) s += ',';
    s += std::string_view(servers[i]).substr(std::string_view("nats://").size());
  }
  s.append("/").append(subject);
  if (!stream.empty()) s.append("?jetstream=").append(stream);
  return s;
}

}  // namespace ipc
