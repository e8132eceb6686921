#include "sd_notify.hpp"

#include "log.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace ipc::daemon {

sd_notifier::sd_notifier() noexcept {
  if (auto usec = ipc::sd_notifier::watchdog_usec()) watchdog_ = *usec / 2;
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path != nullptr && *path != '\0' && !socket_.enabled()) {
    log(priority::warning, "NOTIFY_SOCKET='", path,
        "' is unusable (not an absolute path or @abstract name, or no socket could be made): not notifying");
  }
}

void sd_notifier::notify(std::string_view state) noexcept {
  if (socket_.notify(state) || !socket_.enabled() || failed_once_) return;
  failed_once_ = true;
  log(priority::warning, "sendto(NOTIFY_SOCKET): ", std::strerror(errno), " (further failures not logged)");
}

}  // namespace ipc::daemon
