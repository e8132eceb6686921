// Zero-copy on the shm ring: loans (a record reserved at head, written in place, published by
// commit) and views (the record at tail, read in place, consumed by release). The ring's own record
// steps do the work (shm_ring.cpp); this file keeps the one-at-a-time rules and the counters.
#include <ipc/error.hpp>
#include <ipc/shm_loan.hpp>
#include <ipc/shm_ring.hpp>

#include <cerrno>
#include <string>
#include <utility>

namespace ipc {

shm_loan shm_ring::loan_until(std::size_t bytes, const deadline& d) {
  if (role_ != role::sender) throw_errno(EBADF, "loan", name_, "this handle is the receiver");
  if (hdr_ == nullptr) closed_handle("loan");
  if (loan_out_) busy("loan", "a loan is already out on this handle (one at a time): commit or abandon it first");
  if (bytes > max_message_size_) {
    throw_error(errc::message_too_large, "loan", name_,
                std::to_string(bytes) + " > " + std::to_string(max_message_size_) + " bytes (max_message)");
  }
  std::byte* payload = reserve_record(bytes, d, "loan");
  if (payload == nullptr) {
    ++mutable_counters().send_timeouts;
    return {};
  }
  loan_out_ = true;
  return shm_loan(this, {payload, bytes});
}

void shm_ring::commit_loan(std::size_t used) {
  loan_out_ = false;  // first: once head moved the message is sent, even if the wake-up failed
  publish_record(used);
  auto& c = mutable_counters();
  ++c.messages_sent;
  c.bytes_sent += used;
}

void shm_ring::abandon_loan() noexcept { loan_out_ = false; }  // head never moved: nothing to undo

shm_view shm_ring::receive_view_until(const deadline& d) {
  if (role_ != role::receiver) throw_errno(EBADF, "receive_view", name_, "this handle is the sender");
  if (hdr_ == nullptr) closed_handle("receive_view");
  if (view_out_) busy("receive_view", "a view is already out on this handle (one at a time): release it first");
  std::uint64_t len = 0;
  const std::byte* payload = next_record(len, d, "receive_view");
  if (payload == nullptr) {
    ++mutable_counters().receive_timeouts;
    return {};
  }
  view_out_ = true;
  auto& c = mutable_counters();
  ++c.messages_received;
  c.bytes_received += len;
  return shm_view(this, {payload, static_cast<std::size_t>(len)});
}

void shm_ring::release_view() noexcept {
  view_out_ = false;
  try {
    release_record();
  } catch (...) {  // NOLINT(bugprone-empty-catch): tail moved; a sender not woken re-checks within its 100 ms slice
  }
}

shm_loan& shm_loan::operator=(shm_loan&& other) noexcept {
  if (this != &other) {
    abandon();
    ring_ = std::exchange(other.ring_, nullptr);
    bytes_ = std::exchange(other.bytes_, {});
  }
  return *this;
}

void shm_loan::commit(std::size_t used) {
  if (ring_ == nullptr) throw_errno(EINVAL, "shm_loan::commit", "shm_loan", "the loan is empty (timed out, committed or abandoned)");
  if (used > bytes_.size()) {
    throw_errno(EINVAL, "shm_loan::commit", ring_->name(),
                std::to_string(used) + " bytes used > " + std::to_string(bytes_.size()) + " loaned");
  }
  shm_ring* ring = std::exchange(ring_, nullptr);
  bytes_ = {};
  ring->commit_loan(used);
}

void shm_loan::abandon() noexcept {
  if (ring_ == nullptr) return;
  std::exchange(ring_, nullptr)->abandon_loan();
  bytes_ = {};
}

void shm_loan::bad_typed_access(std::string_view call, std::size_t need, std::size_t align) const {
  throw_errno(EINVAL, call, ring_ != nullptr ? ring_->name() : std::string("shm: (empty loan)"),
              std::to_string(bytes_.size()) + " loaned bytes do not match a " + std::to_string(need) +
                  "-byte type aligned to " + std::to_string(align));
}

shm_view& shm_view::operator=(shm_view&& other) noexcept {
  if (this != &other) {
    release();
    ring_ = std::exchange(other.ring_, nullptr);
    bytes_ = std::exchange(other.bytes_, {});
  }
  return *this;
}

void shm_view::release() noexcept {
  if (ring_ == nullptr) return;
  std::exchange(ring_, nullptr)->release_view();
  bytes_ = {};
}

void shm_view::bad_typed_access(std::string_view call, std::size_t need, std::size_t align) const {
  throw_errno(EINVAL, call, ring_ != nullptr ? ring_->name() : std::string("shm: (empty view)"),
              "a " + std::to_string(bytes_.size()) + "-byte message does not match a " + std::to_string(need) +
                  "-byte type aligned to " + std::to_string(align));
}

}  // namespace ipc
