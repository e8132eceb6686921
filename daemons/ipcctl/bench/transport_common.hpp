// Internal to the benchmark: what the transports share — the fixed geometry every implementation
// of a mechanism gets (so the ratios compare like with like) and a base that keeps one endpoint
// per link.
#pragma once

#include "transport.hpp"

#include <ipc/channel.hpp>

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace ipc::bench {

/// sem: slots of the bounded buffer (libipc and raw); each slot holds the message and its length.
inline constexpr std::size_t sem_slots = 16;
/// shm: ring bytes (libipc and raw).
inline constexpr std::size_t shm_capacity = std::size_t{1} << 20;
/// pipe, fifo: the stream channels' largest message.
inline constexpr std::size_t stream_max = std::size_t{16} << 20;
/// boost_mq: messages the queue holds (fewer for large messages, see boost_depth()).
inline constexpr std::size_t boost_max_depth = 64;
/// boost_mq: at most this many bytes of messages in the queue.
inline constexpr std::size_t boost_max_bytes = std::size_t{64} << 20;

[[nodiscard]] inline std::size_t boost_depth(std::size_t size) noexcept {
  const std::size_t by_bytes = boost_max_bytes / (size == 0 ? 1 : size);
  return by_bytes < 4 ? 4 : (by_bytes > boost_max_depth ? boost_max_depth : by_bytes);
}

/// Keeps this process's endpoint of every link and knows which side sends on which.
class link_transport : public transport {
 public:
  explicit link_transport(std::string prefix) : prefix_(std::move(prefix)) {}

  endpoint& end(std::size_t i) override;

 protected:
  void begin(std::size_t size, std::vector<side> senders);
  [[nodiscard]] std::size_t links() const noexcept { return senders_.size(); }
  [[nodiscard]] role role_of(std::size_t i, side me) const noexcept {
    return senders_[i] == me ? role::sender : role::receiver;
  }
  /// A name for link i, unique to the cell: "<prefix>.L<i>".
  [[nodiscard]] std::string link_name(std::size_t i) const { return prefix_ + ".L" + std::to_string(i); }

  std::string prefix_;
  std::size_t size_ = 0;
  std::vector<side> senders_;
  std::vector<std::unique_ptr<endpoint>> ends_;
  std::atomic<bool> interrupted_{false};
};

std::unique_ptr<transport> make_libipc_transport(std::string_view channel, std::string prefix);
std::unique_ptr<transport> make_raw_transport(std::string_view channel, std::string prefix);
std::unique_ptr<transport> make_boost_transport(std::string prefix);

/// msgmax and msgmnb of this kernel (/proc/sys/kernel), with fallbacks 8192 and 16384.
std::size_t sysv_msgmax() noexcept;
std::size_t sysv_msgmnb() noexcept;

}  // namespace ipc::bench
