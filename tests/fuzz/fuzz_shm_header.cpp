// libFuzzer target: the shm ring's shared header and indices (lib/src/shm_ring.cpp). A ring of 4 KiB is
// made; the fuzz bytes overwrite everything after the common layout header (capacity, max_message, head,
// tail, wake-up words, role blocks, ring data) as a hostile or broken peer could; then a receiver attaches
// and receives. Every outcome must be a message within max_message or a std::system_error (corrupt,
// incompatible, EBUSY …) - never a crash, an over-read or a hang.
#include <ipc/deadline.hpp>
#include <ipc/error.hpp>
#include <ipc/shm_ring.hpp>

#include "detail/layout_header.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <system_error>
#include <vector>

namespace {

const std::string& ring_name() {
  static const std::string name = "fuzz-ring-" + std::to_string(::getpid());
  return name;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string& name = ring_name();
  ipc::shm_ring::remove(name);
  try {
    ipc::shm_ring tx(name, ipc::role::sender, {.capacity = 4096, .max_message = 1024, .mode = 0600,
                                                .open = ipc::open_mode::create_only});
    tx.try_send(std::vector<std::byte>(10, std::byte{1}));
    const std::string path = "/dev/shm/" + ipc::shm_ring::shm_name(name);
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) std::abort();
    struct stat st {};
    ::fstat(fd, &st);
    const auto room = static_cast<std::size_t>(st.st_size) - sizeof(ipc::detail::layout_header);
    const std::size_t n = size < room ? size : room;
    if (n != 0 && ::pwrite(fd, data, n, sizeof(ipc::detail::layout_header)) != static_cast<ssize_t>(n)) std::abort();
    ::close(fd);
    try {
      ipc::shm_ring rx(name, ipc::role::receiver, {.capacity = 4096, .max_message = 1024, .mode = 0600,
                                                    .open = ipc::open_mode::open_only});
      std::vector<std::byte> out;
      for (int i = 0; i < 4; ++i) {
        if (!rx.receive_for(out, std::chrono::nanoseconds(0))) break;
        if (out.size() > rx.max_message_size()) std::abort();
      }
    } catch (const std::system_error&) {  // refused: the header or an index failed validation
    }
  } catch (const std::system_error&) {  // the sender's own handle found the damage
  }
  ipc::shm_ring::remove(name);
  return 0;
}
