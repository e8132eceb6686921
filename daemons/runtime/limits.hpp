// What a channel will accept, known from its URI and the system's settings alone - so a daemon
// validates its options before it creates any kernel object or file ("validate before create").
//
//   auto u = ipc::channel_uri::parse("msgq:demo");
//   if (ipc::record_header_size + 70000 > ipc::daemon::max_message_before_open(u)) return usage_error(…);
#pragma once

#include <ipc/uri.hpp>

#include <cstddef>

namespace ipc::daemon {

/// The largest message the channel named by `uri` accepts, from its options (max_message,
/// slot_size) and system limits (msgmax) - creating nothing. An existing object may have been made
/// smaller; opening it tells. Throws errc::bad_uri for an unknown scheme or a malformed size option.
std::size_t max_message_before_open(const channel_uri& uri);

}  // namespace ipc::daemon
