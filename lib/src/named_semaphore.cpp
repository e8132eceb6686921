// ipc::named_semaphore: one System V semaphore, so the kernel keeps the count.
#include <ipc/named_sync.hpp>

namespace ipc {

named_semaphore::named_semaphore(std::string_view name, open_mode mode, unsigned short initial,
                                 const named_options& options)
    : set_(name, mode, {initial}, options.perms) {}

}  // namespace ipc
