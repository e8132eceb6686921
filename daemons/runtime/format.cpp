#include "format.hpp"

#include <ipc/record.hpp>

namespace ipc::daemon {

std::optional<payload_format> parse_format(std::string_view text) noexcept {
  if (text == "record") return payload_format::record;
  if (text == "raw") return payload_format::raw;
  if (text == "lines") return payload_format::lines;
  return std::nullopt;
}

std::string_view to_string(payload_format f) noexcept {
  switch (f) {
    case payload_format::record: return "record";
    case payload_format::raw: return "raw";
    case payload_format::lines: return "lines";
  }
  return "?";
}

CLI::Option* add_format(CLI::App& app, payload_format& into) {
  auto* o = app.add_option_function<std::string>(
      "--format",
      [&into](const std::string& text) {
        const auto f = parse_format(text);
        if (!f) throw CLI::ValidationError("--format", "'" + text + "' is not a format (record, raw or lines)");
        into = *f;
      },
      "payload format: record (checked records, the default), raw (one message = one payload, no header) or lines "
      "(text lines); see docs/formats.md");
  o->type_name("record|raw|lines");
  return o;
}

std::optional<std::string> format_conflict(payload_format f, const channel_uri& uri) {
  if (f == payload_format::record && uri.scheme == "fifo" && uri.option("framing") == "lines") {
    return uri.text + ": --format record cannot travel over framing=lines (a record is binary and may hold '\\n'); use --format lines or raw";
  }
  return std::nullopt;
}

std::string channel_uri_for(payload_format f, const channel_uri& uri) {
  if (f != payload_format::record || uri.scheme != "msgq") return uri.text;
  std::string text = uri.text;
  char sep = text.find('?') == std::string::npos ? '?' : '&';
  const std::string type = std::to_string(record_mtype);
  for (const char* key : {"type", "select"}) {
    if (uri.option(key)) continue;
    text += sep;
    text += key;
    text += '=';
    text += type;
    sep = '&';
  }
  return text;
}

std::size_t max_payload(payload_format f, std::size_t max_message) noexcept {
  if (f != payload_format::record) return max_message;
  return max_message > record_header_size ? max_message - record_header_size : 0;
}

}  // namespace ipc::daemon
