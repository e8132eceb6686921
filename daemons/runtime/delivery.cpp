#include "delivery.hpp"

namespace ipc::daemon {

delivery delivery_of(const channel_uri& uri) {
  if (uri.scheme != "shm") return delivery::stream;
  const std::string mode = uri.shm_mode().mode;
  if (mode == "mpmc") return delivery::work_queue;
  if (mode == "broadcast") return delivery::broadcast;
  return delivery::stream;
}

}  // namespace ipc::daemon
