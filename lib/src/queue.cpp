#include <ipc/error.hpp>
#include <ipc/msg_queue.hpp>
#include <ipc/queue.hpp>
#include <ipc/shm_mpmc.hpp>

#include <cerrno>
#include <string>

namespace ipc {

detail::queue_transport::~queue_transport() = default;

namespace {

// The msgq convention (docs/tutorial.md, "Queues"): values are mtype 1, the end marker an empty
// mtype 2; receiving with msgtyp -2 takes the lowest type first, so the marker always comes last.
constexpr long value_type = 1;
constexpr long end_type = 2;

class msgq_transport final : public detail::queue_transport {
 public:
  msgq_transport(std::string_view name, const queue_options& o) : q_(name, msgq_options_from(o)) {}

  bool put(std::span<const std::byte> value, const deadline& d) override { return q_.send_until(value_type, value, d); }

  got get(std::vector<std::byte>& out, const deadline& d) override {
    auto r = q_.receive_until(msg_selector::up_to(end_type), out, d);
    if (!r) return got::timeout;
    if (r->type != end_type) return got::value;
    // Put the marker back for the next getter. It must not be lost, so this waits for room
    // (getters that have not yet seen the end make room by taking values).
    q_.send(end_type, {});
    return got::end;
  }

  bool post_end(const deadline& d) override { return q_.send_until(end_type, {}, d); }
  void remove() override { q_.remove(); }
  [[nodiscard]] std::size_t max_value_size() const noexcept override { return q_.max_message_size(); }
  [[nodiscard]] const std::string& name() const noexcept override { return q_.name(); }
  [[nodiscard]] msg_queue* msgq() noexcept override { return &q_; }

 private:
  static msgq_options msgq_options_from(const queue_options& o) {
    msgq_options m;
    m.open = o.open;
    m.mode = o.mode;
    m.capacity = o.capacity;
    return m;
  }
  msg_queue q_;
};

// The shm work queue: the end marker is the queue's `ended` flag, which receivers see only once
// the values before it are taken. Each handle is a sender and a receiver, so "every sender gone"
// never ends a stream that close() has not ended.
class shm_transport final : public detail::queue_transport {
 public:
  shm_transport(std::string_view name, const queue_options& o)
      : tx_(name, role::sender, shm_options_from(o)), rx_(name, role::receiver, shm_options_from(o)) {}

  bool put(std::span<const std::byte> value, const deadline& d) override { return tx_.send_until(value, d); }
  got get(std::vector<std::byte>& out, const deadline& d) override {
    switch (rx_.receive_or_end(out, d)) {
      case shm_mpmc::taken::message: return got::value;
      case shm_mpmc::taken::timeout: return got::timeout;
      case shm_mpmc::taken::end: break;
    }
    return got::end;
  }
  bool post_end(const deadline&) override {
    tx_.end_stream();
    return true;
  }
  void remove() override { tx_.remove(); }
  [[nodiscard]] std::size_t max_value_size() const noexcept override { return tx_.max_message_size(); }
  [[nodiscard]] const std::string& name() const noexcept override { return tx_.name(); }

 private:
  static shm_mpmc_options shm_options_from(const queue_options& o) {
    shm_mpmc_options m;
    m.open = o.open;
    m.mode = o.mode;
    if (o.capacity != 0) m.slots = o.capacity;
    if (o.max_value != 0) m.max_message = o.max_value;
    return m;
  }
  shm_mpmc tx_;
  shm_mpmc rx_;
};

}  // namespace

queue_base::queue_base(std::string_view name, const queue_options& options) {
  switch (options.backend) {
    case queue_backend::msgq: transport_ = std::make_unique<msgq_transport>(name, options); break;
    case queue_backend::shm_mpmc: transport_ = std::make_unique<shm_transport>(name, options); break;
  }
  if (!transport_) ipc::throw_errno(EINVAL, "ipc::queue", std::string(name) + " (unknown backend)");
}

queue_base::~queue_base() = default;
queue_base::queue_base(queue_base&&) noexcept = default;
queue_base& queue_base::operator=(queue_base&&) noexcept = default;

bool queue_base::put_bytes(std::span<const std::byte> value, const deadline& d) {
  if (closed_) throw_error(errc::closed, "queue::put", name(), "this handle closed the queue");
  return transport_->put(value, d);
}

detail::queue_transport::got queue_base::get_bytes(std::vector<std::byte>& out, const deadline& d) {
  return transport_->get(out, d);
}

void queue_base::throw_end(std::string_view call) const { throw_error(errc::closed, call, name(), "end of stream"); }

void queue_base::close() { close_for(std::chrono::nanoseconds::max()); }

bool queue_base::close_for(std::chrono::nanoseconds timeout) {
  if (closed_) return true;
  if (!transport_->post_end(deadline::in(timeout))) return false;
  closed_ = true;
  return true;
}

void queue_base::remove() { transport_->remove(); }

const std::string& queue_base::name() const noexcept { return transport_->name(); }
std::size_t queue_base::max_value_size() const noexcept { return transport_->max_value_size(); }
msg_queue* queue_base::msgq() const noexcept { return transport_->msgq(); }

}  // namespace ipc
