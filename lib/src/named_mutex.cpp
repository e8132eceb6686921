// ipc::named_mutex: the robust_mutex of a named segment with no other object.
#include <ipc/named_sync.hpp>

namespace ipc {

named_mutex::named_mutex(std::string_view name, open_mode mode, const named_options& options)
    : seg_(name, mode, {"mutex", 0, 1, 0}, {}, options) {}

bool named_mutex::remove(std::string_view name, segment_backing backing) {
  return detail::named_segment::remove("mutex", name, backing);
}

}  // namespace ipc
