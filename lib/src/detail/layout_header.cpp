#include "detail/layout_header.hpp"

#include <ipc/error.hpp>
#include <ipc/inspect.hpp>

#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

namespace ipc::detail {

void publish_header(layout_header* h, std::uint32_t magic, std::uint32_t version, std::size_t header_size,
                    std::size_t total_size) noexcept {
  h->magic = magic;
  h->version = version;
  h->header_size = static_cast<std::uint32_t>(header_size);
  h->total_size = total_size;
  const auto me = process_identity(::getpid());
  h->creator_pid = me.pid;
  h->creator_start_time = me.start_time;
  h->creator_uid = ::geteuid();
  h->created_unix_ns = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
  h->state.store(layout_header::ready_value, std::memory_order_release);
}

void claim_header(layout_header* h) noexcept {
  const auto me = process_identity(::getpid());
  h->creator_pid = me.pid;
  h->creator_start_time = me.start_time;
}

bool abandoned(const layout_header* h) noexcept {
  if (h->state.load(std::memory_order_acquire) == layout_header::ready_value) return false;
  const pid_t pid = h->creator_pid;
  const std::uint64_t start = h->creator_start_time;
  if (pid <= 0 || start == 0) return false;  // not claimed yet: nothing can be proven
  return !process_alive(pid, start);
}

void validate_header(const layout_header* h, std::size_t mapped_size, std::uint32_t magic, std::uint32_t version,
                     std::size_t expected_header_size, const deadline& d, std::string_view object) {
  if (mapped_size < sizeof(layout_header)) {
    throw_error(errc::incompatible, "attach", object,
                "segment of " + std::to_string(mapped_size) + " bytes is smaller than its header");
  }
  // The creator publishes within microseconds; poll briefly, never forever.
  while (h->state.load(std::memory_order_acquire) != layout_header::ready_value) {
    if (abandoned(h)) {
      // No pid in the text: a header that never validated may be garbage, and so may its "creator".
      throw_error(errc::incompatible, "attach", object,
                  "header never initialised: the creator it records is gone (it died initialising it, or this is "
                  "not a toolkit header)");
    }
    if (d.expired()) throw_error(errc::incompatible, "attach", object, "header never initialised");
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  if (h->magic != magic) throw_error(errc::incompatible, "attach", object, "wrong magic (another kind of object?)");
  if (h->version != version) {
    throw_error(errc::incompatible, "attach", object,
                "layout version " + std::to_string(h->version) + ", expected " + std::to_string(version));
  }
  if (h->header_size != expected_header_size) {
    throw_error(errc::incompatible, "attach", object,
                "header of " + std::to_string(h->header_size) + " bytes, expected " +
                    std::to_string(expected_header_size));
  }
  if (h->total_size < expected_header_size || h->total_size > mapped_size) {
    throw_error(errc::incompatible, "attach", object,
                "recorded size " + std::to_string(h->total_size) + " does not fit the " +
                    std::to_string(mapped_size) + "-byte mapping");
  }
}

}  // namespace ipc::detail
