#include "delivery.hpp"

#include <string_view>

namespace ipc::daemon {

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

delivery delivery_of(const channel_uri& uri) {
  if (uri.scheme != "shm") return delivery::stream;
  const std::string mode = shm_mode(uri);
  if (mode == "mpmc") return delivery::work_queue;
  if (mode == "broadcast") return delivery::broadcast;
  return delivery::stream;
}

}  // namespace ipc::daemon
