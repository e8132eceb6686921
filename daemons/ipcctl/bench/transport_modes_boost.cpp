// The modes section's reference rows: Boost.Interprocess message_queue with N senders and M
// receivers, each its own process, through the same run_mode as the shm modes. A Boost queue has no
// notion of senders leaving, so the last sender queues one end marker per receiver after every
// message (one priority: FIFO); each receiver stops at its first marker.
#include "transport_modes.hpp"

#include <ipc/error.hpp>

#include <boost/interprocess/ipc/message_queue.hpp>
#include <boost/interprocess/permissions.hpp>

#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>

namespace ipc::bench {
namespace {

namespace bip = boost::interprocess;

constexpr std::uint64_t end_marker = std::numeric_limits<std::uint64_t>::max();

class boost_end final : public mode_end {
 public:
  boost_end(const std::string& name, std::size_t size) : q_(bip::open_only, name.c_str()), size_(size) {}
  void send(std::span<const std::byte> message) override { q_.send(message.data(), message.size(), 0); }
  bool receive(std::vector<std::byte>& buf) override {
    buf.resize(size_);
    bip::message_queue::size_type n = 0;
    unsigned int priority = 0;
    q_.receive(buf.data(), buf.size(), n, priority);
    buf.resize(static_cast<std::size_t>(n));
    std::uint64_t seq = 0;
    if (n >= sizeof seq) std::memcpy(&seq, buf.data(), sizeof seq);
    return seq != end_marker;
  }
  void finish(bool last_sender, unsigned receivers) override {
    if (!last_sender) return;
    std::vector<std::byte> marker(size_);
    std::memcpy(marker.data(), &end_marker, sizeof end_marker);
    for (unsigned i = 0; i < receivers; ++i) send(marker);
  }

 private:
  bip::message_queue q_;
  std::size_t size_;
};

}  // namespace

mode_figures measure_boost_mode(const std::string& name, std::size_t depth, unsigned senders, unsigned receivers,
                                std::size_t size, double seconds) {
  // Created here, opened by name in each child; removed whatever happens.
  struct queue_scope {
    std::string name;
    queue_scope(const std::string& n, std::size_t depth, std::size_t size) : name(n) {
      bip::message_queue(bip::create_only, name.c_str(), depth, size, bip::permissions(0600));
    }
    ~queue_scope() { bip::message_queue::remove(name.c_str()); }
  };
  try {
    const queue_scope queue(name, depth, size);
    const mode_opener open = [&name, size](role) -> std::unique_ptr<mode_end> {
      return std::make_unique<boost_end>(name, size);
    };
    return run_mode(open, senders, receivers, size, seconds, "boost_mq " + name);
  } catch (const bip::interprocess_exception& e) {
    throw_error(errc::closed, "message_queue", name, e.what());
  }
}

}  // namespace ipc::bench
