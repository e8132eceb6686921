#include "limits.hpp"

#include <ipc/error.hpp>
#include <ipc/msg_queue.hpp>
#include <ipc/pipe.hpp>
#include <ipc/sem_buffer.hpp>
#include <ipc/shm_broadcast.hpp>
#include <ipc/shm_mpmc.hpp>
#include <ipc/shm_ring.hpp>

#include <algorithm>
#include <string>
#include <string_view>

namespace ipc::daemon {
namespace {

// The shm channel mode a URI asks for: the word among `mode`'s comma-separated items (octal digits
// there are permissions; docs/shm-modes.md), "spsc" when there is none.
std::string shm_mode(const channel_uri& uri) {
  const auto v = uri.option("mode");
  if (!v) return "spsc";
  std::string_view list = *v;
  for (;;) {
    const auto comma = list.find(',');
    const std::string_view item = list.substr(0, comma);
    if (!item.empty() && item[0] >= 'a' && item[0] <= 'z') return std::string(item);
    if (comma == std::string_view::npos) return "spsc";
    list.remove_prefix(comma + 1);
  }
}

}  // namespace

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
    const std::string mode = shm_mode(uri);
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

}  // namespace ipc::daemon
