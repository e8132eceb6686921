// What a channel will accept, known from its URI and the system's settings alone - so a daemon
// validates its options before it creates any kernel object or file ("validate before create").
//
//   auto u = ipc::channel_uri::parse("msgq:demo");
//   if (ipc::record_header_size + 70000 > ipc::daemon::max_message_before_open(u)) return usage_error(…);
#pragma once

#include <ipc/channel.hpp>
#include <ipc/uri.hpp>

#include <cstddef>
#include <optional>
#include <string>

namespace ipc::daemon {

/// The largest message the channel named by `uri` accepts, from its options (max_message,
/// slot_size) and system limits (msgmax) - creating nothing. An existing object may have been made
/// smaller; opening it tells. Throws errc::bad_uri for an unknown scheme or a malformed size option.
std::size_t max_message_before_open(const channel_uri& uri);

/// Why no checked record (format record: a 40-byte header and at least one payload byte) can ever
/// travel over the channel `uri` names, judged by max_message_before_open(); nullopt when one fits.
/// The text names the URI and what sets the limit (`max_message=10`, `slot_size=…`, the system's
/// msgmax) - the producer and the consumer refuse such a channel with it (usage error, before
/// anything is created). Throws what max_message_before_open throws.
std::optional<std::string> record_cannot_fit(const channel_uri& uri);

/// The same judgement on an opened channel: an existing object made smaller than its URI says
/// (another program's `max_message=20`, adopted by an opener that named none) is found only once
/// it is open. nullopt when a record fits; else the text names the channel and its max_message_size.
/// Never throws but std::bad_alloc.
std::optional<std::string> record_cannot_fit(const channel& ch);

}  // namespace ipc::daemon
