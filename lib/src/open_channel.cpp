#include <ipc/channel.hpp>
#include <ipc/error.hpp>
#include <ipc/uri.hpp>

#include "detail/channel_factories.hpp"

namespace ipc {

std::unique_ptr<channel> open_channel(std::string_view uri_text, role r) {
  const auto uri = channel_uri::parse(uri_text);
  uri.require_safe_name();  // one name rule for every mechanism, before any factory runs
  // One line per mechanism (its factory lives next to it).
  if (uri.scheme == "msgq") return detail::open_msgq_uri(uri, r);
  if (uri.scheme == "shm") return detail::open_shm_mode_uri(uri, r);
  if (uri.scheme == "sem") return detail::open_sem_uri(uri, r);
  if (uri.scheme == "pipe") return detail::open_pipe_uri(uri, r);
  if (uri.scheme == "fifo") return detail::open_fifo_uri(uri, r);
#ifdef IPC_HAVE_NATS
  if (uri.scheme == "nats") return detail::open_nats_uri(uri, r);
#endif
  (void)r;
  throw_error(errc::bad_uri, "open_channel", uri_text, "scheme '" + uri.scheme + "' is not built into this library");
}

}  // namespace ipc
