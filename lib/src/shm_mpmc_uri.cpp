// shm: URIs choose their mode: ?mode=spsc (the ring, the default), ?mode=mpmc (the work
// queue) or ?mode=broadcast (publish/subscribe, shm_broadcast_uri.cpp). `mode` also carries permissions (mode=0660) for every channel, and a URI gives an option
// once, so the value is a comma-separated list whose items' form decides: a word names the channel
// mode, octal digits are permissions (shm:jobs?mode=mpmc,0660).
#include <ipc/error.hpp>
#include <ipc/shm_mpmc.hpp>

#include "detail/channel_factories.hpp"

#include <string>

namespace ipc::detail {
namespace {

std::unique_ptr<channel> open_shm_mpmc_uri(const channel_uri& uri, role r) {
  uri.allow_only({"slots", "max_message", "mode", "open"});
  uri.require_plain_name();
  shm_mpmc_options o;
  o.slots = uri.size_option("slots", o.slots);
  o.max_message = uri.size_option("max_message", o.max_message);
  // An option named in the URI is insisted on; one left out adopts an existing queue's.
  o.insist_slots = uri.option("slots").has_value();
  o.insist_max_message = uri.option("max_message").has_value();
  o.mode = uri.mode_option("mode", o.mode);
  o.open = uri.open_option(o.open);
  return std::make_unique<shm_mpmc>(uri.name, r, o);
}

}  // namespace

std::unique_ptr<channel> open_shm_mode_uri(const channel_uri& uri, role r) {
  const auto [mode, permissions] = uri.shm_mode();
  channel_uri rest = uri;  // the options with `mode` reduced to its permissions, for the factory
  rest.options.clear();
  for (const auto& [k, v] : uri.options) {
    if (k != "mode") {
      rest.options.emplace_back(k, v);
    } else if (permissions) {
      rest.options.emplace_back(k, *permissions);
    }
  }
  if (mode == "spsc") return open_shm_uri(rest, r);
  if (mode == "mpmc") return open_shm_mpmc_uri(rest, r);
  if (mode == "broadcast") return open_shm_broadcast_uri(rest, r);
  throw_error(errc::bad_uri, "open_channel", uri.text,
              "option 'mode=" + mode + "' is neither a shm mode (spsc, mpmc, broadcast) nor an octal permission");
}

}  // namespace ipc::detail
