#include "detail/shm_slot_queue.hpp"

#include <ipc/error.hpp>
#include <ipc/uri.hpp>

#include "detail/shm_link.hpp"
#include "detail/shm_mpmc_holders.hpp"
#include "detail/sysv_key.hpp"

namespace ipc::detail {

slot_queue_segment open_slot_queue(const std::string& name, const std::string& channel, const slot_queue_kind& k,
                                   const shm_slot_options& o) {
  {
    channel_uri u;
    u.text = channel;
    u.scheme = "shm";
    u.name = name;
    u.require_plain_name();
  }
  slot_queue_segment out{nullptr, {k.magic, k.version, k.header_size, 0}, {}};
  if (o.open != open_mode::open_only) {
    check_new_mode(o.mode, "shm_open", "/dev/shm/" + posix_segment::posix_name(name));
    const std::uint64_t n = o.slots;
    if (n < k.min_slots || n > k.max_slots || (n & (n - 1)) != 0) {
      throw_error(errc::bad_uri, k.call, channel,
                  "option slots=" + std::to_string(n) + " is not a power of two between " + std::to_string(k.min_slots) +
                      " and " + std::to_string(k.max_slots));
    }
    if (o.max_message == 0 || o.max_message > k.max_message) {
      throw_error(errc::bad_uri, k.call, channel,
                  "option max_message=" + std::to_string(o.max_message) + " is outside 1 .. " +
                      std::to_string(k.max_message >> 20) + " MiB");
    }
    const std::uint64_t stride = slot_stride(k, o.max_message);
    if (n * stride > k.max_total) {
      throw_error(errc::bad_uri, k.call, channel,
                  "options slots=" + std::to_string(n) + " and max_message=" + std::to_string(o.max_message) +
                      ": " + std::to_string(n) + " cells of " + std::to_string(stride) + " bytes exceed 1 GiB");
    }
    out.spec.payload_bytes = n * stride;
  }
  out.seg = create_or_open_segment(name, o.open, o.mode, k.header_size + out.spec.payload_bytes);
  out.id = identify_segment(static_cast<posix_segment&>(*out.seg).fd(), out.seg->object());
  if (!out.seg->created()) out.spec.payload_bytes = 0;  // an opener adopts the creator's sizes, checked after mapping
  return out;
}

void check_insisted(const std::string& channel, const char* option, bool insisted, const std::string& asked,
                    const std::string& existing) {
  if (!insisted || asked == existing) return;
  throw_error(errc::incompatible, "attach", channel,
              std::string("option ") + option + "=" + asked + " disagrees with the existing " + option + "=" + existing +
                  " (leave the option out to adopt it)");
}

void check_slot_queue(const std::string& channel, const std::string& object, const slot_queue_kind& k,
                      const slot_queue_sizes& s, std::uint64_t total_size, const shm_slot_options& o) {
  if (s.slots < k.min_slots || s.slots > k.max_slots || (s.slots & (s.slots - 1)) != 0 || s.max_message == 0 ||
      s.max_message > k.max_message || s.stride != slot_stride(k, s.max_message) ||
      total_size != k.header_size + s.slots * s.stride) {
    throw_error(errc::incompatible, "attach", channel,
                object + ": " + std::to_string(s.slots) + " slots of " + std::to_string(s.stride) +
                    " bytes (max_message " + std::to_string(s.max_message) + ") do not match the " +
                    std::to_string(total_size) + "-byte layout");
  }
  check_insisted(channel, "slots", o.insist_slots, std::to_string(o.slots), std::to_string(s.slots));
  check_insisted(channel, "max_message", o.insist_max_message, std::to_string(o.max_message),
                 std::to_string(s.max_message));
}

}  // namespace ipc::detail
