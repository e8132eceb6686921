#include <ipc/channel.hpp>
#include <ipc/error.hpp>

#include <string>

namespace ipc {

channel::channel(std::string name, std::size_t max_message_size) noexcept
    : name_(std::move(name)), max_message_size_(max_message_size) {}

channel::~channel() = default;

namespace {
// Out of line, so that send_until's frame stays small on the hot path (docs/shm_ring.md, "Where
// the time goes").
[[noreturn, gnu::noinline, gnu::cold]] void too_large(const std::string& name, std::size_t size, std::size_t max) {
  throw_error(errc::message_too_large, "send", name, std::to_string(size) + " > " + std::to_string(max) + " bytes");
}
}  // namespace

bool channel::send_until(std::span<const std::byte> message, const deadline& d) {
  if (message.size() > max_message_size_) {
    refresh_max_message_size();
    if (message.size() > max_message_size_) too_large(name_, message.size(), max_message_size_);
  }
  if (!do_send(message, d)) {
    ++counters_.send_timeouts;
    return false;
  }
  ++counters_.messages_sent;
  counters_.bytes_sent += message.size();
  return true;
}

void channel::send(std::span<const std::byte> message) { send_until(message, deadline::never()); }

bool channel::send_for(std::span<const std::byte> message, std::chrono::nanoseconds timeout) {
  return send_until(message, deadline::in(timeout));
}

bool channel::try_send(std::span<const std::byte> message) { return send_until(message, deadline::now()); }

std::optional<std::size_t> channel::receive_until(std::vector<std::byte>& out, const deadline& d) {
  if (!do_receive(out, d)) {
    ++counters_.receive_timeouts;
    return std::nullopt;
  }
  ++counters_.messages_received;
  counters_.bytes_received += out.size();
  return out.size();
}

std::size_t channel::receive(std::vector<std::byte>& out) {
  // A never() deadline cannot time out; loop defensively if a mechanism wakes spuriously. Calls
  // do_receive itself: going through receive_until's std::optional cost a store-forwarding stall
  // per message, a fifth of the shm receiver's time at 64 B (docs/shm_ring.md, "Where the time goes").
  while (!do_receive(out, deadline::never())) ++counters_.receive_timeouts;
  ++counters_.messages_received;
  counters_.bytes_received += out.size();
  return out.size();
}

std::optional<std::size_t> channel::receive_for(std::vector<std::byte>& out, std::chrono::nanoseconds timeout) {
  return receive_until(out, deadline::in(timeout));
}

std::optional<std::size_t> channel::try_receive(std::vector<std::byte>& out) {
  return receive_until(out, deadline::now());
}

}  // namespace ipc
