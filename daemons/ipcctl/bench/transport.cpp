// The transport registry, limits and the Boost.Interprocess message_queue reference.
#include "transport_common.hpp"

#include <ipc/error.hpp>
#include <ipc/msg_queue.hpp>

#include <boost/date_time/posix_time/posix_time_types.hpp>
#include <boost/interprocess/ipc/message_queue.hpp>
#include <boost/interprocess/permissions.hpp>

#include <fstream>

namespace ipc::bench {

endpoint::~endpoint() = default;
transport::~transport() = default;

endpoint& link_transport::end(std::size_t i) {
  if (i >= ends_.size() || !ends_[i]) throw_error(errc::closed, "end", link_name(i), "this end is not open here");
  return *ends_[i];
}

void link_transport::begin(std::size_t size, std::vector<side> senders) {
  size_ = size;
  senders_ = std::move(senders);
  ends_.clear();
  ends_.resize(senders_.size());
}

namespace {

std::size_t proc_number(const char* path, std::size_t fallback) noexcept {
  std::ifstream in(path);
  unsigned long long v = 0;
  if (in >> v && v > 0) return static_cast<std::size_t>(v);
  return fallback;
}

// ---- boost_mq: Boost.Interprocess message_queue (POSIX shm + process-shared mutex/condition) --

namespace bip = boost::interprocess;

class boost_endpoint final : public endpoint {
 public:
  // `stop` is the parent's interrupt flag (nullptr in the child, which blocks without limit).
  boost_endpoint(std::unique_ptr<bip::message_queue> q, std::size_t size, const std::atomic<bool>* stop, std::string object)
      : q_(std::move(q)), msg_(size), in_(size), stop_(stop), object_(std::move(object)) {}
  std::span<std::byte> message() override { return msg_; }
  void send() override {
    if (stop_ == nullptr) return q_->send(msg_.data(), msg_.size(), 0);
    if (q_->try_send(msg_.data(), msg_.size(), 0)) return;
    while (!q_->timed_send(msg_.data(), msg_.size(), 0, slice())) check_stop();
  }
  std::span<const std::byte> receive() override {
    bip::message_queue::size_type n = 0;
    unsigned int prio = 0;
    if (stop_ == nullptr) {
      q_->receive(in_.data(), in_.size(), n, prio);
    } else if (!q_->try_receive(in_.data(), in_.size(), n, prio)) {
      // Only when it must wait does the parent read the clock, and it wakes every 100 ms to see
      // whether the watchdog gave up (a Boost queue has no notion of a dead peer).
      while (!q_->timed_receive(in_.data(), in_.size(), n, prio, slice())) check_stop();
    }
    return {in_.data(), static_cast<std::size_t>(n)};
  }

 private:
  static boost::posix_time::ptime slice() {
    return boost::posix_time::microsec_clock::universal_time() + boost::posix_time::milliseconds(100);
  }
  void check_stop() const {
    if (stop_->load()) throw_error(errc::closed, "timed_receive", object_, "the peer is gone");
  }
  std::unique_ptr<bip::message_queue> q_;
  std::vector<std::byte> msg_;
  std::vector<std::byte> in_;
  const std::atomic<bool>* stop_;
  std::string object_;
};

class boost_transport final : public link_transport {
 public:
  using link_transport::link_transport;
  void setup(std::size_t size, std::vector<side> senders) override {
    begin(size, std::move(senders));
    for (std::size_t i = 0; i < links(); ++i) {
      names_.push_back(link_name(i));
      auto q = std::make_unique<bip::message_queue>(bip::create_only, names_[i].c_str(), boost_depth(size), size,
                                                    bip::permissions(0600));
      ends_[i] = std::make_unique<boost_endpoint>(std::move(q), size, &interrupted_, "boost_mq " + names_[i]);
    }
  }
  void open_child() override {
    for (auto& e : ends_) e.reset();  // the fork's copies of the parent's mappings
    for (std::size_t i = 0; i < links(); ++i) {
      auto q = std::make_unique<bip::message_queue>(bip::open_only, names_[i].c_str());
      ends_[i] = std::make_unique<boost_endpoint>(std::move(q), size_, nullptr, "boost_mq " + names_[i]);
    }
  }
  void open_parent() override {}
  void interrupt() noexcept override { interrupted_ = true; }
  void teardown() noexcept override {
    ends_.clear();
    for (const auto& n : names_) bip::message_queue::remove(n.c_str());
    names_.clear();
  }

 private:
  std::vector<std::string> names_;
};

}  // namespace

std::size_t sysv_msgmax() noexcept { return proc_number("/proc/sys/kernel/msgmax", 8192); }
std::size_t sysv_msgmnb() noexcept { return proc_number("/proc/sys/kernel/msgmnb", 16384); }

message_limit max_message(std::string_view channel, std::string_view impl) {
  if (channel == "pipe" || channel == "fifo") return {stream_max, "libipc's stream limit, 16 MiB"};
  if (channel == "msgq") {
    // msgsnd refuses more than msgmax, and a message above msg_qbytes (msgmnb) never fits the queue.
    const std::size_t max = std::min(impl == "libipc" ? msg_queue::system_max_message() : sysv_msgmax(), sysv_msgmnb());
    return {max, "System V msgmax/msgmnb, " + std::to_string(max) + " B"};
  }
  if (channel == "sem") return {(std::size_t{16} << 20) - 4, "sem_buffer's 16 MiB slot limit"};
  if (channel == "shm") return {shm_capacity / 2 - 8, "half the 1 MiB ring, less a record header"};
  if (channel == boost_channel) return {stream_max, "the benchmark's 16 MiB limit"};
  return {0, "unknown channel"};
}

std::string describe(std::string_view channel, std::string_view impl) {
  const bool lib = impl == "libipc";
  if (channel == "pipe") {
    return lib ? "pipe_channel::create(), 64 KiB kernel pipe"
               : "pipe2 + write([u32 len][payload]) / buffered read(), copied out, blocking";
  }
  if (channel == "fifo") {
    return lib ? "open_channel(\"fifo:NAME\"), 64 KiB kernel pipe" : "mkfifo + open + the raw pipe's framing";
  }
  if (channel == "msgq") {
    return lib ? "open_channel(\"msgq:NAME\"), msg_qbytes = msgmnb" : "msgget(IPC_PRIVATE) + msgsnd/msgrcv, blocking";
  }
  if (channel == "sem") {
    return lib ? "open_channel(\"sem:NAME?slots=16\"), slot = size + 4"
               : "shmget slots + semop {empty, full, mutex}, 16 slots, no SEM_UNDO";
  }
  if (channel == "shm") {
    return lib ? "open_channel(\"shm:NAME?capacity=1M\")"
               : "shm_open SPSC ring of fixed slots, 1 MiB, spin 20 µs then futex";
  }
  if (channel == boost_channel) return "boost::interprocess::message_queue, 64 messages (fewer above 1 MiB)";
  return "?";
}

std::unique_ptr<transport> make_transport(std::string_view channel, std::string_view impl, std::string prefix) {
  std::unique_ptr<transport> t;
  if (impl == "libipc") t = make_libipc_transport(channel, std::move(prefix));
  else if (impl == "raw") t = make_raw_transport(channel, std::move(prefix));
  else if (impl == boost_impl && channel == boost_channel) t = std::make_unique<boost_transport>(std::move(prefix));
  if (!t) throw_error(errc::bad_uri, "make_transport", std::string(channel) + "/" + std::string(impl), "no such benchmark");
  return t;
}

}  // namespace ipc::bench
