#include "limits.hpp"

#include "delivery.hpp"

#include <ipc/error.hpp>
#include <ipc/msg_queue.hpp>
#include <ipc/pipe.hpp>
#include <ipc/record.hpp>
#include <ipc/sem_buffer.hpp>
#include <ipc/shm_broadcast.hpp>
#include <ipc/shm_mpmc.hpp>
#include <ipc/shm_ring.hpp>

#include <algorithm>
#include <string>
#include <string_view>

namespace ipc::daemon {

std::size_t max_message_before_open(const channel_uri& uri) {
  if (uri.scheme == "msgq") {
    const std::size_t system = msg_queue::system_max_message();
    const std::size_t asked = uri.size_option("max_message", 0);
    return asked == 0 ? system : std::min(system, asked);
  }
  if (uri.scheme == "sem") {
    if (uri.option("max_message")) return uri.size_option("max_message", 0);
    const std::size_t slot = uri.size_option("slot_size", sem_buffer::default_slot_size);
    return slot > sem_buffer::length_bytes ? slot - sem_buffer::length_bytes : 0;
  }
  if (uri.scheme == "shm") {
    // Each mode has its own default: the work queue's and broadcast's cells are 8 KiB, the ring's 64 KiB.
    const std::string mode = uri.shm_mode().mode;
    const std::size_t fallback = mode == "mpmc"        ? shm_mpmc_options{}.max_message
                                 : mode == "broadcast" ? shm_broadcast_options{}.max_message
                                                       : shm_ring_options{}.max_message;
    return uri.size_option("max_message", fallback);
  }
  if (uri.scheme == "pipe" || uri.scheme == "fifo") return uri.size_option("max_message", pipe_options{}.max_message);
  // nats: the server's max_payload is known once connected; until then its default (1 MiB) less the
  // 256 bytes nats_channel keeps for headers. The nats options are checked when it opens.
  if (uri.scheme == "nats") return (std::size_t{1} << 20) - 256;
  throw_error(errc::bad_uri, "open_channel", uri.text, "unknown scheme '" + uri.scheme + "'");
}

std::optional<std::string> record_cannot_fit(const channel_uri& uri) {
  const std::size_t max = max_message_before_open(uri);
  if (max > record_header_size) return std::nullopt;
  std::string by;
  if (auto v = uri.option("max_message")) {
    by = "max_message=" + std::string(*v);
  } else if (uri.scheme == "sem") {
    const auto slot = uri.option("slot_size");
    by = "slot_size=" + (slot ? std::string(*slot) : std::to_string(sem_buffer::default_slot_size));
  } else if (uri.scheme == "msgq") {
    by = "the system's msgmax";
  } else {
    by = "its default max_message";
  }
  return uri.text + ": " + by + " allows messages of at most " + std::to_string(max) + " bytes, too small for a record (" +
         std::to_string(record_header_size) + "-byte header and a payload); raise max_message or use --format raw|lines";
}

std::optional<std::string> record_cannot_fit(const channel& ch) {
  if (ch.max_message_size() > record_header_size) return std::nullopt;
  return ch.name() + ": the existing object takes messages of at most " + std::to_string(ch.max_message_size()) +
         " bytes, too small for a record (" + std::to_string(record_header_size) +
         "-byte header and a payload); remove it and let the producer recreate it, or use --format raw|lines";
}

}  // namespace ipc::daemon
