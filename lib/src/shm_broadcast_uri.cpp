// shm:NAME?mode=broadcast&slots=N&max_message=BYTES&policy=block|drop_oldest: the broadcast mode's
// URI options (shm_mpmc_uri.cpp routes the shm: modes here, `mode` already reduced to permissions).
#include <ipc/error.hpp>
#include <ipc/shm_broadcast.hpp>

#include "detail/channel_factories.hpp"

namespace ipc::detail {

std::unique_ptr<channel> open_shm_broadcast_uri(const channel_uri& uri, role r) {
  uri.allow_only({"slots", "max_message", "policy", "mode", "open"});
  uri.require_plain_name();
  shm_broadcast_options o;
  o.slots = uri.size_option("slots", o.slots);
  o.max_message = uri.size_option("max_message", o.max_message);
  if (const auto p = uri.option("policy")) {
    if (*p == "block") {
      o.policy = broadcast_policy::block;
    } else if (*p == "drop_oldest") {
      o.policy = broadcast_policy::drop_oldest;
    } else {
      throw_error(errc::bad_uri, "open_channel", uri.text,
                  "option 'policy=" + std::string(*p) + "' is neither block nor drop_oldest");
    }
  }
  // An option named in the URI is insisted on; one left out adopts an existing channel's.
  o.insist_slots = uri.option("slots").has_value();
  o.insist_max_message = uri.option("max_message").has_value();
  o.insist_policy = uri.option("policy").has_value();
  o.mode = uri.mode_option("mode", o.mode);
  o.open = uri.open_option(o.open);
  return std::make_unique<shm_broadcast>(uri.name, r, o);
}

}  // namespace ipc::detail
