// JetStream setup for the nats: channel: the stream (a work queue on the subject, created if
// missing) and the receiver's durable pull consumer. Internal: included by lib/src/nats_*.cpp.
#pragma once

#include "detail/nats_client.hpp"

#include <ipc/channel.hpp>
#include <ipc/nats.hpp>

#include <cstddef>
#include <string>
#include <string_view>

namespace ipc::detail {

/// A JetStream context on nc. Throws as throw_nats.
js_ctx_ptr jetstream_context(natsConnection* nc, std::string_view object);

/// Makes sure the stream exists: creates a file-backed work queue on the subject (max bytes =
/// capacity, discard new, replicas) when missing. A receiver requires an existing stream to be a
/// work queue (errc::incompatible otherwise). Returns the stream's max bytes (0: unlimited).
/// Blocks for a few round trips (5 s each at most). Throws as throw_nats, errc::incompatible.
std::size_t ensure_stream(jsCtx* js, const nats_options& o, role r, std::string_view object);

/// Deletes the receiver's durable consumer if it exists and creates it afresh (deliver all, explicit
/// acks, the subject as filter), then binds a pull subscription to it. In a work queue, acknowledged
/// messages are gone, so the new consumer starts at once, in order, with whatever a previous
/// receiver left unacknowledged. Throws as throw_nats.
nats_sub_ptr take_over_consumer(jsCtx* js, const nats_options& o, std::string_view object);

/// False only when the server answered that the stream does not exist (errors count as existing).
bool stream_exists(jsCtx* js, const std::string& stream, std::string_view object) noexcept;
/// False only when the server answered that the stream or the consumer does not exist.
bool consumer_exists(jsCtx* js, const std::string& stream, const std::string& consumer, std::string_view object) noexcept;
/// Deletes the stream (a missing one is fine). Throws as throw_nats.
void delete_stream(jsCtx* js, const std::string& stream, std::string_view object);

}  // namespace ipc::detail
