#include "limits.hpp"

#include <ipc/error.hpp>
#include <ipc/msg_queue.hpp>
#include <ipc/pipe.hpp>
#include <ipc/sem_buffer.hpp>
#include <ipc/shm_ring.hpp>

#include <algorithm>

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
  if (uri.scheme == "shm") return uri.size_option("max_message", shm_ring_options{}.max_message);
  if (uri.scheme == "pipe" || uri.scheme == "fifo") return uri.size_option("max_message", pipe_options{}.max_message);
  throw_error(errc::bad_uri, "open_channel", uri.text, "unknown scheme '" + uri.scheme + "'");
}

}  // namespace ipc::daemon
