#include <ipc/error.hpp>
#include <ipc/shm_ring.hpp>

#include "detail/channel_factories.hpp"
#include "detail/cpu_relax.hpp"
#include "detail/endpoint_lock.hpp"
#include "detail/futex.hpp"
#include "detail/shm_ring_layout.hpp"
#include "detail/shm_link.hpp"
#include "detail/shm_ring_roles.hpp"
#include "detail/shm_slot_queue.hpp"
#include "detail/sysv_key.hpp"

#include <sched.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstring>
#include <new>

namespace ipc {
namespace {

constexpr std::uint64_t round8(std::uint64_t n) noexcept { return (n + 7) & ~std::uint64_t{7}; }

// Calls ready() while spinning for about 20 µs, then yields a few times. Cheap when the peer is
// running on the other core; the caller sleeps on the futex afterwards.
template <typename F>
bool spin_until(F&& ready) {
  using clock = std::chrono::steady_clock;
  // The clock is first read after 32 pauses: most waits (a ring full or empty for a moment) end
  // before that, and a clock read at every start cost the sender a sixth of its time per 64 B message.
  clock::time_point stop{};
  for (unsigned i = 1;; ++i) {
    detail::cpu_relax();
    if (ready()) return true;
    if ((i & 31U) == 0) {
      const auto now = clock::now();
      if (i == 32) stop = now + std::chrono::microseconds(20);
      else if (now >= stop) break;
    }
  }
  for (int i = 0; i < 4; ++i) {
    ::sched_yield();
    if (ready()) return true;
  }
  return false;
}

}  // namespace

std::string shm_ring::shm_name(std::string_view name) { return posix_segment::posix_name(name); }

namespace {

// Creates (create_only) or opens (open_only, whatever size it has) the segment; open_or_create
// tries both until one wins, so an opener adopts the existing ring's sizes.
std::unique_ptr<segment> create_or_open(std::string_view name, const shm_ring_options& options, std::size_t total) {
  for (int attempt = 0;; ++attempt) {
    if (options.open != open_mode::open_only) {
      try {
        return std::make_unique<posix_segment>(name, open_mode::create_only, total, options.mode);
      } catch (const std::system_error& e) {
        if (options.open == open_mode::create_only || e.code() != std::errc::file_exists) throw;
      }
    }
    try {
      return std::make_unique<posix_segment>(name, open_mode::open_only, 0);
    } catch (const std::system_error& e) {
      // Removed between our create attempt and the open: try creating again.
      if (options.open == open_mode::open_only || e.code() != std::errc::no_such_file_or_directory ||
          attempt >= 100) {
        throw;
      }
    }
  }
}

}  // namespace

shm_ring::shm_ring(std::string_view name, role r, const shm_ring_options& options)
    : channel("shm:" + std::string(name), 0), base_name_(name), role_(r) {
  {
    channel_uri u;
    u.text = name_;
    u.scheme = "shm";
    u.name = base_name_;
    u.require_plain_name();
  }
  if (options.open != open_mode::open_only) {
    detail::check_new_mode(options.mode, "shm_open", "/dev/shm/" + shm_name(base_name_));
  }
  layout_spec spec{detail::ring_magic, detail::ring_version, sizeof(detail::ring_header), 0};
  if (options.open != open_mode::open_only) {
    const std::uint64_t cap = options.capacity;
    if (cap < detail::min_capacity || cap > detail::max_capacity || (cap & (cap - 1)) != 0) {
      throw_error(errc::bad_uri, "shm_ring", name_,
                  "capacity " + std::to_string(cap) + " is not a power of two between 4096 and 1 GiB");
    }
    if (options.max_message == 0 || options.max_message > cap / 2 - detail::record_header) {  // no addition: it could wrap
      throw_error(errc::bad_uri, "shm_ring", name_,
                  "max_message " + std::to_string(options.max_message) + " is outside 1 .. capacity / 2 - 8 = " +
                      std::to_string(cap / 2 - detail::record_header));
    }
    spec.payload_bytes = cap;
  }
  auto seg = create_or_open(base_name_, options, sizeof(detail::ring_header) + spec.payload_bytes);
  const bool created = seg->created();
  {
    const auto id = detail::identify_segment(static_cast<posix_segment&>(*seg).fd(), seg->object());
    dev_ = id.dev;
    ino_ = id.ino;
  }
  if (!created) spec.payload_bytes = 0;  // an opener adopts whatever capacity the creator chose
  // Everything but the sizes starts as the zero bytes posix_fallocate gave us (head = tail = 0, no holders).
  seg_.emplace(std::move(seg), spec, [&](std::byte* base, std::size_t) {
    auto* h = reinterpret_cast<detail::ring_header*>(base);
    h->capacity = options.capacity;
    h->max_message = options.max_message;
  });
  auto* h = seg_->header_as<detail::ring_header>();
  if (!created) {
    const std::uint64_t cap = h->capacity;
    const std::uint64_t maxm = h->max_message;
    if (cap < detail::min_capacity || cap > detail::max_capacity || (cap & (cap - 1)) != 0 ||
        h->base.total_size != sizeof(detail::ring_header) + cap) {
      throw_error(errc::incompatible, "attach", name_,
                  "capacity " + std::to_string(cap) + " does not match the " +
                      std::to_string(h->base.total_size) + "-byte layout");
    }
    if (maxm > cap / 2 - detail::record_header) {  // untrusted: no addition that could wrap
      throw_error(errc::incompatible, "attach", name_,
                  "max_message " + std::to_string(maxm) + " too large for capacity " + std::to_string(cap));
    }
    detail::check_insisted(name_, "capacity", options.insist_capacity, std::to_string(options.capacity),
                           std::to_string(cap));
    detail::check_insisted(name_, "max_message", options.insist_max_message, std::to_string(options.max_message),
                           std::to_string(maxm));
  }

  hdr_ = h;
  data_ = seg_->payload();
  capacity_ = hdr_->capacity;
  mask_ = capacity_ - 1;
  max_message_size_ = static_cast<std::size_t>(hdr_->max_message);

  const std::uint64_t head = hdr_->head.load(std::memory_order_acquire);
  const std::uint64_t tail = hdr_->tail.load(std::memory_order_acquire);
  check_indices(head, tail);
  cached_peer_index_ = r == role::sender ? tail : head;

  pid_ = ::getpid();
  detail::attach_role(*hdr_, r, {dev_, ino_}, pid_, name_);
  shm_ring_fork_registry::add(this);
}

shm_ring::~shm_ring() {
  shm_ring_fork_registry::erase(this);
  if (hdr_ != nullptr) leave();
}

void shm_ring::close() {
  if (hdr_ == nullptr) return;
  if (loan_out_ || view_out_) busy("close", "a loan or view into this ring is out: commit, abandon or release it first");
  leave();
  seg_.reset();
  hdr_ = nullptr;
  data_ = nullptr;
}

void shm_ring::closed_handle(std::string_view call) const {
  throw_error(errc::closed, call, name_, "this handle was closed by close(); reopen() attaches it again");
}

// Detaches this handle's role, as the destructor and close() do. Never throws.
void shm_ring::leave() noexcept {
  const auto left = detail::detach_role(*hdr_, role_, pid_, name_);
  // Our endpoint lock still on another thread's robust list (this handle dies on a thread other
  // than the one that attached it): that list points into the header, so it stays mapped.
  if (!left.lock_released) detail::park_mapping_until_exit(seg_);
  if (left.closed) {
    // Wake the peer wherever it sleeps so it sees `closed` now, not at its next liveness check.
    auto& seq = role_ == role::sender ? hdr_->data_seq : hdr_->space_seq;
    seq.fetch_add(1, std::memory_order_release);
    try {
      detail::futex_wake(seq, INT_MAX, name_);
    } catch (...) {  // NOLINT(bugprone-empty-catch): the peer falls back on its liveness checks
    }
  }
}

channel_limits shm_ring::limits() const {
  channel_limits l;
  l.max_message_size = max_message_size_;
  l.capacity_bytes = static_cast<std::size_t>(capacity_);
  return l;
}

void shm_ring::remove() {
  // Only the segment this handle maps (a newer one under the name, made by a peer after this one was
  // unlinked, is left alone); on purpose: every handle goes on with the anonymous segment.
  detail::unlink_if_denotes(base_name_, {dev_, ino_}, hdr_ == nullptr ? nullptr : &hdr_->unlinked_on_purpose);
}

void shm_ring::discard() { detail::unlink_if_denotes(base_name_, {dev_, ino_}, nullptr); }

int shm_ring::segment_fd() const noexcept { return static_cast<posix_segment&>(seg_->raw()).fd(); }

void shm_ring::check_linked(std::string_view call) {
  try {
    detail::check_linked(segment_fd(), hdr_->unlinked_on_purpose, next_link_check_ns_, call, name_, seg_->object());
  } catch (const std::system_error&) {
    woke_receiver_ = true;  // the next send checks again
    throw;
  }
}

void shm_ring::reopen() {
  if (loan_out_ || view_out_) busy("reopen", "a loan or view into this ring is out: commit, abandon or release it first");
  // Still the ring the name denotes: everything is kept (a new peer is seen without reopening).
  std::optional<mode_t> mode = 0600;  // closed: attach again, or create a ring like ours
  if (hdr_ != nullptr) mode = detail::unlinked_mode(segment_fd(), seg_->object());
  if (!mode) return;
  shm_ring_options o;
  o.capacity = capacity_;
  o.max_message = max_message_size_;
  o.mode = *mode;
  o.open = open_mode::open_or_create;
  shm_ring fresh(base_name_, role_, o);  // the name's ring now, or a new one like ours
  swap_attachment(fresh);                // fresh's destructor detaches the old ring: its peer sees closed
}

void shm_ring::swap_attachment(shm_ring& other) noexcept {
  using std::swap;
  swap(seg_, other.seg_);
  swap(hdr_, other.hdr_);
  swap(data_, other.data_);
  swap(capacity_, other.capacity_);
  swap(mask_, other.mask_);
  swap(cached_peer_index_, other.cached_peer_index_);
  swap(pid_, other.pid_);
  swap(next_liveness_probe_, other.next_liveness_probe_);
  swap(next_link_check_ns_, other.next_link_check_ns_);
  swap(sends_unchecked_, other.sends_unchecked_);
  swap(woke_receiver_, other.woke_receiver_);
  swap(dev_, other.dev_);
  swap(ino_, other.ino_);
  swap(max_message_size_, other.max_message_size_);
}

bool shm_ring::remove(std::string_view name) { return posix_segment::remove(name); }

void shm_ring::corrupt(const std::string& what) const { throw_error(errc::corrupt, "shm_ring", name_, what); }

void shm_ring::busy(std::string_view call, std::string_view what) const { throw_errno(EBUSY, call, name_, what); }

void shm_ring::check_indices(std::uint64_t head, std::uint64_t tail) const {
  if (((head | tail) & 7U) != 0) {
    corrupt("misaligned index (head " + std::to_string(head) + ", tail " + std::to_string(tail) + ")");
  }
  if (head - tail > capacity_) {
    corrupt("head " + std::to_string(head) + " - tail " + std::to_string(tail) + " exceeds the capacity " +
            std::to_string(capacity_));
  }
}

bool shm_ring::do_send(std::span<const std::byte> message, const deadline& d) {
  // A receiver that wrote would move head under the sender: the ring's indices break for both.
  if (role_ != role::sender) throw_errno(EBADF, "send", name_, "this handle is the receiver");
  if (hdr_ == nullptr) closed_handle("send");
  if (loan_out_) busy("send", "a loan is out on this handle: commit or abandon it first");
  const std::uint64_t len = message.size();
  std::byte* payload = reserve_record(len, d, "send");
  if (payload == nullptr) return false;
  if (len != 0) std::memcpy(payload, message.data(), len);
  publish_record(len);
  return true;
}

// Finds room at head for a record of `len` payload bytes (waiting for it until `d`) and writes the
// wrap marker it needs; nothing is visible until publish_record() moves head. Returns where the
// payload goes, or nullptr on timeout. send() and loans share it.
std::byte* shm_ring::reserve_record(std::uint64_t len, const deadline& d, const char* call) {
  auto& h = *hdr_;
  // The name check, at most every 100 ms: the clock is read every 64th send, on every send after
  // one that had to wake the receiver (a slow sender: a futex syscall per send already), and on
  // every send while no receiver is attached (nothing else would tell a slow sender soon).
  if ((++sends_unchecked_ & 63U) == 0 || woke_receiver_ || h.receiver.closed.load(std::memory_order_relaxed) != 0 ||
      h.receiver.attaches.load(std::memory_order_relaxed) == 0) {
    woke_receiver_ = false;
    if (detail::link_check_due(next_link_check_ns_)) {
      check_linked(call);
      detail::retake_endpoint_lock(h, role_, pid_);  // the thread that held it may have exited
    }
  }
  const std::uint64_t rec = detail::record_header + round8(len);
  const std::uint64_t head = h.head.load(std::memory_order_relaxed);
  if ((head & 7U) != 0) check_indices(head, cached_peer_index_);
  std::uint64_t pos = head & mask_;
  const std::uint64_t to_end = capacity_ - pos;
  const std::uint64_t needed = rec + (to_end < rec ? to_end : 0);
  const std::uint64_t used = head - cached_peer_index_;
  if (used > capacity_ || capacity_ - used < needed) {
    if (!wait_for_space(head, needed, d, call)) return nullptr;
  }
  pending_skip_ = 0;
  if (to_end < rec) {
    std::memcpy(data_ + pos, &detail::wrap_marker, sizeof detail::wrap_marker);
    pending_skip_ = to_end;
    pos = 0;
  }
  pending_head_ = head;
  pending_pos_ = pos;
  return data_ + pos + detail::record_header;
}

// Makes the reserved record visible with `len` payload bytes (at most what was reserved): its
// header, then head in one release store over the wrap marker and the record.
void shm_ring::publish_record(std::uint64_t len) {
  auto& h = *hdr_;
  const auto len32 = static_cast<std::uint32_t>(len);
  const std::uint32_t zero = 0;
  std::memcpy(data_ + pending_pos_, &len32, sizeof len32);
  std::memcpy(data_ + pending_pos_ + 4, &zero, sizeof zero);
  h.head.store(pending_head_ + pending_skip_ + detail::record_header + round8(len), std::memory_order_release);
  // Dekker with the receiver: it sets receiver_sleeping, then re-reads head; we publish head,
  // then read receiver_sleeping. The fences make sure at least one of us sees the other.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (h.receiver_sleeping.load(std::memory_order_relaxed) != 0) {
    h.data_seq.fetch_add(1, std::memory_order_release);
    woke_receiver_ = true;
    detail::futex_wake(h.data_seq, 1, name_);
  }
}

// Why nobody is stranded here (docs/crash-behaviour.md, "No process waits for ever"): each side has
// one process (SPSC), so a wake-up is never a baton passed to one of several waiters; what is ready
// lives in head/tail, not in the wake; and the sleep includes the peer holders' endpoint locks
// (detail::wait_data_or_death), which the kernel marks and wakes when a holder dies or execs. A
// waker killed between publishing and waking has died: its lock wakes us. No time slices while
// every peer holder's lock is held, so an idle waiter makes no syscalls at all.
bool shm_ring::wait_for_space(std::uint64_t head, std::uint64_t needed, const deadline& d, const char* call) {
  auto& h = *hdr_;
  auto enough = [&] {
    const std::uint64_t tail = h.tail.load(std::memory_order_acquire);
    check_indices(head, tail);
    cached_peer_index_ = tail;
    return capacity_ - (head - tail) >= needed;
  };
  if (enough()) return true;
  auto gone = [&] { return detail::peer_gone(h.receiver, {dev_, ino_}, pid_, name_, next_liveness_probe_); };
  if (d.expired()) {
    if (gone()) throw_error(errc::closed, call, name_, "the receiver is gone and the ring is full");
    return false;
  }
  if (spin_until(enough)) return true;
  unsigned unheld_streak = 0;
  for (;;) {
    if (gone()) throw_error(errc::closed, call, name_, "the receiver is gone and the ring is full");
    // A full ring whose name was removed may never drain: the receiver may have moved on.
    if (detail::link_check_due(next_link_check_ns_)) check_linked(call);
    const std::uint32_t seq = h.space_seq.load(std::memory_order_acquire);
    h.sender_wants.store(static_cast<std::uint32_t>(needed), std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (enough()) {
      h.sender_wants.store(0, std::memory_order_relaxed);
      return true;
    }
    // `closed` set (and space_seq bumped) since gone() above but before our read of seq: the bump
    // is behind us and the receiver is out of the watch list. Read after seq, so it is seen here.
    if (h.receiver.closed.load(std::memory_order_acquire) != 0) {
      h.sender_wants.store(0, std::memory_order_relaxed);
      continue;
    }
    const auto woke = sleep_on(h.space_seq, seq, role::receiver, d, unheld_streak);
    h.sender_wants.store(0, std::memory_order_relaxed);
    if (enough()) return true;
    if (woke == detail::death_wait::interrupted || d.expired()) return false;
  }
}

bool shm_ring::do_receive(std::vector<std::byte>& out, const deadline& d) {
  if (role_ != role::receiver) throw_errno(EBADF, "receive", name_, "this handle is the sender");
  if (hdr_ == nullptr) closed_handle("receive");
  if (view_out_) busy("receive", "a view is out on this handle (its message is the next): release it first");
  std::uint64_t len = 0;
  const std::byte* payload = next_record(len, d, "receive");
  if (payload == nullptr) return false;
  out.resize(len);
  if (len != 0) std::memcpy(out.data(), payload, len);
  release_record();
  return true;
}

// Finds the next record at tail (waiting for one until `d`), validated against the ring's bounds,
// and leaves it in place: `len` is its size, next_tail_ where tail goes once it is consumed.
// Returns its payload, or nullptr on timeout. receive() and views share it.
const std::byte* shm_ring::next_record(std::uint64_t& len_out, const deadline& d, const char* call) {
  std::uint64_t tail = hdr_->tail.load(std::memory_order_relaxed);
  std::uint64_t head = cached_peer_index_;
  if (head == tail || head - tail > capacity_ || ((head | tail) & 7U) != 0) {
    if (!wait_for_data(tail, d, call)) return nullptr;
    head = cached_peer_index_;
  }
  std::uint64_t avail = head - tail;
  std::uint64_t pos = tail & mask_;
  std::uint32_t len = 0;
  std::memcpy(&len, data_ + pos, sizeof len);
  if (len == detail::wrap_marker) {
    const std::uint64_t skip = capacity_ - pos;
    if (skip >= avail) corrupt("wrap marker at index " + std::to_string(tail) + " with no record after it");
    tail += skip;
    avail -= skip;
    pos = 0;
    std::memcpy(&len, data_, sizeof len);
  }
  if (len > max_message_size_) {
    corrupt("record at index " + std::to_string(tail) + " claims " + std::to_string(len) +
            " bytes, more than max_message " + std::to_string(max_message_size_));
  }
  const std::uint64_t rec = detail::record_header + round8(len);
  if (rec > avail || pos + rec > capacity_) {
    corrupt("record of " + std::to_string(len) + " bytes at index " + std::to_string(tail) +
            " runs past the head or the end of the ring");
  }
  next_tail_ = tail + rec;
  len_out = len;
  return data_ + pos + detail::record_header;
}

// Consumes the record next_record() found: tail moves past it (only now: a receiver killed before
// this leaves the record for the next one), and a sender waiting for that space is woken.
void shm_ring::release_record() {
  auto& h = *hdr_;
  const std::uint64_t new_tail = next_tail_;
  h.tail.store(new_tail, std::memory_order_release);
  // Dekker with the sender (see publish_record); it sleeps only until `sender_wants` bytes are free.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (const std::uint32_t wants = h.sender_wants.load(std::memory_order_relaxed); wants != 0) {
    const std::uint64_t used = h.head.load(std::memory_order_relaxed) - new_tail;
    if (used > capacity_ || capacity_ - used >= wants) {
      h.space_seq.fetch_add(1, std::memory_order_release);
      detail::futex_wake(h.space_seq, 1, name_);
    }
  }
}

// Sleeps on seq (== seen) and the endpoint locks of the peer role's holders, first taking back our
// own lock if the thread that held it has exited (so the peer need not sleep in slices for us).
// After a peer's lock changed, the next liveness probe runs at once.
detail::death_wait shm_ring::sleep_on(const std::atomic<std::uint32_t>& seq, std::uint32_t seen, role peer,
                                      const deadline& d, unsigned& unheld_streak) {
  detail::retake_endpoint_lock(*hdr_, role_, pid_);
  const detail::endpoint_lock* locks[detail::max_holders];
  const int n = detail::watch_list(*hdr_, peer, locks);
  const auto woke =
      detail::wait_data_or_death(seq, seen, {locks, static_cast<std::size_t>(n)}, d, name_, unheld_streak);
  if (woke == detail::death_wait::peer_changed) next_liveness_probe_ = {};
  return woke;
}

// The receiver's side of the same argument as wait_for_space.
bool shm_ring::wait_for_data(std::uint64_t tail, const deadline& d, const char* call) {
  auto& h = *hdr_;
  auto ready = [&] {
    const std::uint64_t head = h.head.load(std::memory_order_acquire);
    check_indices(head, tail);
    cached_peer_index_ = head;
    return head != tail;
  };
  if (ready()) return true;
  // `closed` is published after the sender's last record, so re-check the ring once after it.
  auto drained_and_gone = [&] { return detail::peer_gone(h.sender, {dev_, ino_}, pid_, name_, next_liveness_probe_) && !ready(); };
  if (d.expired()) {
    if (drained_and_gone()) throw_error(errc::closed, call, name_, "the sender is gone and the ring is empty");
    return false;
  }
  if (spin_until(ready)) return true;
  unsigned unheld_streak = 0;
  for (;;) {
    if (drained_and_gone()) throw_error(errc::closed, call, name_, "the sender is gone and the ring is empty");
    if (cached_peer_index_ != tail) return true;
    const std::uint32_t seq = h.data_seq.load(std::memory_order_acquire);
    h.receiver_sleeping.store(1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (ready()) {
      h.receiver_sleeping.store(0, std::memory_order_relaxed);
      return true;
    }
    // `closed` set (and data_seq bumped) since the check above but before our read of seq: the bump
    // is behind us and the sender is out of the watch list. Read after seq, so it is seen here.
    if (h.sender.closed.load(std::memory_order_acquire) != 0) {
      h.receiver_sleeping.store(0, std::memory_order_relaxed);
      continue;
    }
    const auto woke = sleep_on(h.data_seq, seq, role::sender, d, unheld_streak);
    h.receiver_sleeping.store(0, std::memory_order_relaxed);
    if (ready()) return true;
    if (woke == detail::death_wait::interrupted || d.expired()) return false;
  }
}

namespace detail {

std::unique_ptr<channel> open_shm_uri(const channel_uri& uri, role r) {
  uri.allow_only({"capacity", "max_message", "mode", "open"});
  uri.require_plain_name();
  shm_ring_options o;
  o.capacity = uri.size_option("capacity", o.capacity);
  o.max_message = uri.size_option("max_message", o.max_message);
  // An option named in the URI is insisted on; one left out adopts an existing ring's.
  o.insist_capacity = uri.option("capacity").has_value();
  o.insist_max_message = uri.option("max_message").has_value();
  o.mode = uri.mode_option("mode", o.mode);
  o.open = uri.open_option(o.open);
  return std::make_unique<shm_ring>(uri.name, r, o);
}

}  // namespace detail
}  // namespace ipc
