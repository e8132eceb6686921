// The daemons' payload formats (--format): what one channel message holds.
//
//   record  a checked record (ipc/record.hpp: 40-byte header + payload; docs/formats.md), the default
//   raw     the payload itself, no header: any msgsnd client, Python sysv_ipc, anything
//   lines   one text line (no '\n'): the natural format on fifo:PATH?framing=lines, shell tools
//
//   auto f = ipc::daemon::parse_format("raw");                    // std::nullopt for anything else
//   if (auto why = ipc::daemon::format_conflict(*f, uri)) return usage_error(app, *why);
//   auto ch = ipc::open_channel(ipc::daemon::channel_uri_for(*f, uri), role);
//
// On a msgq, records travel under their own mtype (record_mtype) and a record consumer selects
// only it, so it never takes another program's messages; raw and lines use the URI's type=/select=
// (default: send mtype 1, receive any).
#pragma once

#include <ipc/uri.hpp>

#include <CLI/CLI.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace ipc::daemon {

enum class payload_format { record, raw, lines };

/// The System V mtype records travel under on a msgq: 0x5249 (21065), the record magic "IR".
inline constexpr long record_mtype = 0x5249;

/// "record", "raw" or "lines"; std::nullopt for anything else. Never throws.
std::optional<payload_format> parse_format(std::string_view text) noexcept;
/// The name parse_format() takes. Never throws.
std::string_view to_string(payload_format f) noexcept;

/// Adds --format record|raw|lines (default record); another value is a usage error naming the three.
CLI::Option* add_format(CLI::App& app, payload_format& into);

/// Why this format cannot travel over this channel (record over fifo framing=lines: a record is
/// binary and may hold '\n'), or std::nullopt when it can. Creates nothing.
std::optional<std::string> format_conflict(payload_format f, const channel_uri& uri);

/// The URI a daemon opens: for a record stream on a msgq, type= and select= default to record_mtype
/// (an explicit type= or select= is kept); every other URI as given. Creates nothing.
std::string channel_uri_for(payload_format f, const channel_uri& uri);

/// The largest payload a message of max_message bytes carries in this format (0 if none fits).
std::size_t max_payload(payload_format f, std::size_t max_message) noexcept;

}  // namespace ipc::daemon
