// The nats: channel: the channel interface carried by a NATS server, so a sender and a receiver
// can live on different hosts. Built when libnats is found (meson option `nats`).
//
//   // core NATS: at-most-once, like a pipe across hosts (a message nobody listens to is gone)
//   auto rx = ipc::open_channel("nats://127.0.0.1:4222/demo", ipc::role::receiver);
//   auto tx = ipc::open_channel("nats://127.0.0.1:4222/demo", ipc::role::sender);
//
//   // JetStream: at-least-once, stored by the server, acknowledged by the receiver
//   auto q = ipc::open_channel("nats://127.0.0.1:4222/demo?jetstream=DEMO", ipc::role::receiver);
//   q->receive(buf);                                   // message 1 delivered, not yet acknowledged
//   q->receive(buf);                                   // acknowledges 1, then delivers 2
//   static_cast<ipc::nats_channel&>(*q).ack();         // or acknowledge 2 now
//
// URI: nats://HOST:PORT[,HOST:PORT…]/SUBJECT[?options]
//   jetstream=STREAM   use (and create, if missing) the work-queue stream STREAM holding SUBJECT
//   consumer=NAME      the receiver's durable consumer (default "ipc"); one receiver at a time
//   capacity=SIZE      a created stream's max bytes (default 64M); a full stream makes send wait
//   replicas=N         a created stream's replicas (1..5, default 1; a cluster is needed for more)
//   ack_wait=MS        redelivery delay of an unacknowledged message (default 30000)
//   batch=N            messages a receiver fetches per round trip (default 64)
//   reconnect=N        reconnect attempts before the channel is closed for good (default 120, -1: forever)
//
// What maps and what differs from the local channels (docs/beyond-one-machine.md):
//  - Whole messages, up to the server's max_payload less 256 bytes for headers.
//  - A record (ipc/record.hpp) is published to JetStream with the message id "<session>-<sequence>",
//    so a publish retried after a timeout or a crash is de-duplicated by the server (within the
//    stream's duplicate window, 2 minutes). Other payloads carry no id: a retry may store a copy.
//  - JetStream send returns once the server has stored the message (one round trip); each attempt
//    waits at least 0.5 s for that acknowledgement, so try_send and a short send_for may take up to
//    0.5 s when the server does not answer. Core NATS send returns once the client buffered it.
//  - A JetStream receiver acknowledges a message (and waits for the server to confirm) when the
//    caller comes back for the next one, calls ack(), close() or destroys the channel. A receiver
//    that dies first has its unacknowledged messages redelivered, in order, to the next receiver
//    on the same consumer: at most one message the caller had in hand arrives twice.
//  - Lost connection: the client reconnects with back-off (50 ms doubling to 2 s); sends and
//    receives wait (within their deadlines) meanwhile. errc::closed: reconnecting gave up, the
//    stream was deleted, or the sender close()d (an end-of-stream marker the receiver meets in order).
#pragma once

#include <ipc/channel.hpp>
#include <ipc/config.hpp>
#include <ipc/uri.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ipc {

/// Where and how a nats: channel connects; nats_options::from_uri reads it from a URI.
struct IPC_API nats_options {
  std::vector<std::string> servers;  ///< "nats://HOST:PORT", at least one
  std::string subject;               ///< the subject messages are published on (no wildcards)
  std::string stream;                ///< JetStream stream; empty: core NATS
  std::string consumer = "ipc";      ///< the receiver's durable consumer (JetStream)
  std::size_t capacity = std::size_t{64} << 20;  ///< max bytes of a stream this channel creates
  int replicas = 1;                                   ///< replicas of a stream this channel creates
  std::chrono::milliseconds ack_wait{30'000};         ///< redelivery delay of unacknowledged messages
  int batch = 64;                                     ///< messages fetched per round trip
  int reconnect = 120;                                ///< reconnect attempts (-1: forever)
  std::chrono::milliseconds connect_timeout{2'000};   ///< per server, at open

  /// Reads "nats://HOST:PORT[,HOST:PORT…]/SUBJECT[?options]". Throws errc::bad_uri naming the bad part.
  static nats_options from_uri(const channel_uri& uri);
  /// The URI these options describe (used as the channel's name).
  [[nodiscard]] std::string to_uri() const;
};

class IPC_API nats_channel final : public channel {
 public:
  /// Connects (blocks at most connect_timeout per server) and, for JetStream, makes sure the stream
  /// exists (creating it) and, for a receiver, (re)creates its durable consumer so that whatever a
  /// previous receiver left unacknowledged is delivered again at once, in order. Throws
  /// std::system_error (ECONNREFUSED: no server; ETIMEDOUT; EIO: other client errors) naming the call
  /// and the URI, errc::incompatible (an existing stream that is not a work queue on the subject).
  nats_channel(const nats_options& options, role r);
  /// Acknowledges the last delivered message (JetStream receiver), then disconnects. Never throws.
  ~nats_channel() override;
  nats_channel(const nats_channel&) = delete;
  nats_channel& operator=(const nats_channel&) = delete;

  /// max_message_size; capacity_bytes = the stream's max bytes (JetStream) or 0 (core). Never blocks.
  [[nodiscard]] channel_limits limits() const override;
  /// "nats".
  [[nodiscard]] std::string_view kind() const noexcept override { return "nats"; }
  /// Sender: publishes an end-of-stream marker (and waits for the server to take it, at most 5 s):
  /// the receiver delivers everything before it, then throws errc::closed. Receiver: acknowledges
  /// the last delivered message. Throws std::system_error, errc::closed.
  void close() override;
  // send*/receive* throw as channel.hpp says, plus: EBADF on the wrong end (send on a receiver),
  // errc::closed when reconnecting gave up, the stream was deleted or the end marker was met,
  // EIO (naming the libnats call) for other client errors.

  /// JetStream: deletes the stream (receivers then get errc::closed). Core NATS: nothing to remove.
  /// Blocks for one round trip (at most 5 s). Throws std::system_error.
  void remove() override;
  /// JetStream receiver: acknowledges the last delivered message now and waits for the server to
  /// confirm (at most 5 s); returns false when the confirmation did not come (the message may be
  /// delivered again). Without a message to acknowledge, or on core NATS: true at once.
  bool ack();

  /// True for ?jetstream=.
  [[nodiscard]] bool jetstream() const noexcept;
  /// Times the client reconnected since open.
  [[nodiscard]] std::uint64_t reconnects() const noexcept;
  /// JetStream sender: publishes the server reported as duplicates (de-duplicated, stored once).
  [[nodiscard]] std::uint64_t duplicates() const noexcept;

 protected:
  bool do_send(std::span<const std::byte> message, const deadline& d) override;
  bool do_receive(std::vector<std::byte>& out, const deadline& d) override;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace ipc
