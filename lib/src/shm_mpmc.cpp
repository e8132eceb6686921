#include <ipc/error.hpp>
#include <ipc/inspect.hpp>
#include <ipc/shm_mpmc.hpp>

#include "detail/cpu_relax.hpp"
#include "detail/endpoint_lock.hpp"
#include "detail/futex.hpp"
#include "detail/shm_mpmc_holders.hpp"
#include "detail/shm_mpmc_layout.hpp"
#include "detail/shm_link.hpp"
#include "detail/shm_slot_queue.hpp"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <memory>
#include <new>
#include <optional>

namespace ipc {
namespace {

using detail::slot_phase;
using detail::slot_state;

// How far a slot's lap is ahead of the lap a position expects (negative: behind).
std::int32_t lap_diff(std::uint32_t slot_lap, std::uint32_t lap) noexcept {
  return static_cast<std::int32_t>(slot_lap - lap);
}

// errc::corrupt's text for a slot whose state no step of the protocol leaves at that lap.
std::string slot_out_of_lap(std::uint64_t index, const slot_state& s, std::uint32_t lap, std::string_view side) {
  return "slot " + std::to_string(index) + " is at lap " + std::to_string(s.lap) + " phase " +
         std::to_string(static_cast<unsigned>(s.phase)) + " while the " + std::string(side) + " are at lap " +
         std::to_string(lap);
}

// Moves a shared position from pos to pos + 1 unless someone already did: every process that
// sees the slot at `pos` taken helps, so a claimer killed between its claim and this step never
// holds the others up.
void help_advance(std::atomic<std::uint64_t>& position, std::uint64_t pos) noexcept {
  position.compare_exchange_strong(pos, pos + 1, std::memory_order_acq_rel, std::memory_order_relaxed);
}

constexpr detail::slot_queue_kind queue_kind{"shm_mpmc",
                                             detail::mpmc_magic,
                                             detail::mpmc_version,
                                             sizeof(detail::mpmc_header),
                                             detail::mpmc_slot_header,
                                             detail::mpmc_min_slots,
                                             detail::mpmc_max_slots,
                                             detail::mpmc_max_message,
                                             detail::mpmc_max_total};

unsigned log2_of(std::uint64_t power_of_two) noexcept {
  unsigned s = 0;
  while ((std::uint64_t{1} << s) < power_of_two) ++s;
  return s;
}

}  // namespace

shm_mpmc::shm_mpmc(std::string_view name, role r, const shm_mpmc_options& options)
    : channel("shm:" + std::string(name) + "?mode=mpmc", 0), base_name_(name), role_(r) {
  auto found = detail::open_slot_queue(base_name_, name_, queue_kind, options);
  dev_ = found.id.dev;
  ino_ = found.id.ino;
  // Everything else starts as the zero bytes the reservation gave: positions 0, every slot free(lap 0).
  seg_.emplace(std::move(found.seg), found.spec, [&](std::byte* base, std::size_t) {
    auto* h = reinterpret_cast<detail::mpmc_header*>(base);
    h->slots = options.slots;
    h->max_message = options.max_message;
    h->slot_stride = detail::slot_stride(queue_kind, options.max_message);
  });
  auto* h = seg_->header_as<detail::mpmc_header>();
  const detail::slot_queue_sizes sizes{h->slots, h->max_message, h->slot_stride};
  detail::check_slot_queue(name_, seg_->object(), queue_kind, sizes, h->base.total_size, options);
  const std::uint64_t n = sizes.slots;
  const std::uint64_t maxm = sizes.max_message;
  const std::uint64_t stride = sizes.stride;
  hdr_ = h;
  slots_ = seg_->payload();
  mask_ = n - 1;
  shift_ = log2_of(n);
  stride_ = stride;
  max_message_size_ = static_cast<std::size_t>(maxm);

  pid_ = ::getpid();
  const auto place = detail::register_holder(*hdr_, r, pid_, process_identity(pid_).start_time, false, {dev_, ino_}, name_);
  holder_ = place.index;
  place_gen_ = place.gen;
  token_ = slot_state::make_token(place.index, place.gen);
  shm_mpmc_fork_registry::add(this);
}

shm_mpmc::~shm_mpmc() {
  shm_mpmc_fork_registry::erase(this);
  if (hdr_ != nullptr) leave();
}

void shm_mpmc::close() {
  if (hdr_ == nullptr) return;
  leave();
  seg_.reset();
  hdr_ = nullptr;
  slots_ = nullptr;
}

void shm_mpmc::closed_handle(std::string_view call) const {
  throw_error(errc::closed, call, name_, "this handle was closed by close(); reopen() attaches it again");
}

// Leaves the holder table, as the destructor and close() do. Never throws.
void shm_mpmc::leave() noexcept {
  bool lock_released = true;
  const bool last = detail::release_holder(*hdr_, {holder_, place_gen_}, &lock_released);
  // Our endpoint lock still on another thread's robust list (this handle dies on a thread other
  // than the one that attached it): that list points into the header, so it stays mapped.
  if (!lock_released) detail::park_mapping_until_exit(seg_);
  if (last) {
    // The last of our role: wake the other side so an empty (or full) queue reads as closed now.
    auto& seq = role_ == role::sender ? hdr_->data_seq : hdr_->space_seq;
    seq.fetch_add(1, std::memory_order_release);
    try {
      detail::futex_wake(seq, INT_MAX, name_);
    } catch (...) {  // NOLINT(bugprone-empty-catch): the other side falls back on its liveness checks
    }
  }
}

channel_limits shm_mpmc::limits() const {
  channel_limits l;
  l.max_message_size = max_message_size_;
  l.capacity_messages = static_cast<std::size_t>(mask_ + 1);
  l.capacity_bytes = static_cast<std::size_t>((mask_ + 1) * max_message_size_);
  return l;
}

void shm_mpmc::remove() {
  // Only the segment this handle maps (a newer one under the name, made by a peer after this one was
  // unlinked, is left alone); on purpose: every handle goes on with the anonymous segment.
  detail::unlink_if_denotes(base_name_, {dev_, ino_}, hdr_ == nullptr ? nullptr : &hdr_->unlinked_on_purpose);
}

void shm_mpmc::discard() { detail::unlink_if_denotes(base_name_, {dev_, ino_}, nullptr); }

int shm_mpmc::segment_fd() const noexcept { return static_cast<posix_segment&>(seg_->raw()).fd(); }

void shm_mpmc::reopen() {
  // Still the queue the name denotes: everything is kept (the role, what is queued).
  std::optional<mode_t> mode = 0600;  // closed: attach again, or create a queue like ours
  if (hdr_ != nullptr) mode = detail::unlinked_mode(segment_fd(), seg_->object());
  if (!mode) return;
  shm_mpmc_options o;
  o.slots = static_cast<std::size_t>(mask_ + 1);
  o.max_message = max_message_size_;
  o.mode = *mode;
  o.open = open_mode::open_or_create;
  shm_mpmc fresh(base_name_, role_, o);  // the name's queue now, or a new one like ours
  swap_attachment(fresh);                // fresh's destructor leaves the old queue: its peers see us gone
}

void shm_mpmc::swap_attachment(shm_mpmc& other) noexcept {
  using std::swap;
  swap(seg_, other.seg_);
  swap(hdr_, other.hdr_);
  swap(slots_, other.slots_);
  swap(mask_, other.mask_);
  swap(shift_, other.shift_);
  swap(stride_, other.stride_);
  swap(holder_, other.holder_);
  swap(place_gen_, other.place_gen_);
  swap(token_, other.token_);
  swap(pid_, other.pid_);
  swap(dev_, other.dev_);
  swap(ino_, other.ino_);
  swap(next_probe_, other.next_probe_);
  swap(next_link_check_ns_, other.next_link_check_ns_);
  swap(max_message_size_, other.max_message_size_);
}

bool shm_mpmc::remove(std::string_view name) { return posix_segment::remove(name); }

std::uint64_t shm_mpmc::torn_skipped() const noexcept {
  return hdr_ == nullptr ? 0 : hdr_->torn_skipped.load(std::memory_order_relaxed);
}

std::uint64_t shm_mpmc::lost_in_receivers() const noexcept {
  return hdr_ == nullptr ? 0 : hdr_->lost_in_receivers.load(std::memory_order_relaxed);
}

void shm_mpmc::end_stream() {
  if (hdr_ == nullptr) closed_handle("end_stream");
  hdr_->ended.store(1, std::memory_order_release);
  hdr_->data_seq.fetch_add(1, std::memory_order_release);
  detail::futex_wake(hdr_->data_seq, INT_MAX, name_);
}

void shm_mpmc::corrupt(const std::string& what) const { throw_error(errc::corrupt, "shm_mpmc", name_, what); }

std::byte* shm_mpmc::slot_at(std::uint64_t pos) const noexcept { return slots_ + (pos & mask_) * stride_; }

bool shm_mpmc::do_send(std::span<const std::byte> message, const deadline& d) {
  // The end of the stream is judged by who is attached in which role: a role's handle does only its part.
  if (role_ != role::sender) throw_errno(EBADF, "send", name_, "this handle is a receiver");
  if (hdr_ == nullptr) closed_handle("send");
  auto& h = *hdr_;
  if (detail::link_check_due(next_link_check_ns_)) {
    detail::check_linked(segment_fd(), h.unlinked_on_purpose, next_link_check_ns_, "send", name_, seg_->object());
  }
  for (;;) {
    std::uint64_t pos = h.enqueue_pos.load(std::memory_order_acquire);
    auto* slot = reinterpret_cast<detail::mpmc_slot*>(slot_at(pos));
    const auto lap = static_cast<std::uint32_t>(pos >> shift_);
    std::uint64_t w = slot->state.load(std::memory_order_acquire);
    const auto s = slot_state::decode(w);
    const std::int32_t ahead = lap_diff(s.lap, lap);
    if (ahead == 0 && s.phase == slot_phase::free) {
      if (!slot->state.compare_exchange_weak(w, slot_state{lap, slot_phase::writing, token_}.encode(),
                                             std::memory_order_acquire, std::memory_order_relaxed)) {
        continue;
      }
      help_advance(h.enqueue_pos, pos);
      slot->length.store(static_cast<std::uint32_t>(message.size()), std::memory_order_relaxed);
      if (!message.empty()) {
        std::memcpy(reinterpret_cast<std::byte*>(slot) + detail::mpmc_slot_header, message.data(), message.size());
      }
      slot->state.store(slot_state{lap, slot_phase::full, 0}.encode(), std::memory_order_release);
      // Dekker with sleeping receivers (wait_for): they count themselves, then re-read the slot.
      std::atomic_thread_fence(std::memory_order_seq_cst);
      if (h.receivers_sleeping.load(std::memory_order_relaxed) != 0) {
        h.data_seq.fetch_add(1, std::memory_order_release);
        detail::futex_wake(h.data_seq, 1, name_);
      }
      return true;
    }
    if (ahead >= 0) {  // claimed at this lap, or skipped past it: our position is behind
      // Two laps ahead needs a claim at pos + slots, so the position has moved on; if it has not,
      // the state word was written by something other than this queue's protocol.
      if (ahead > 1 && h.enqueue_pos.load(std::memory_order_acquire) == pos) {
        corrupt(slot_out_of_lap(pos & mask_, s, lap, "senders"));
      }
      help_advance(h.enqueue_pos, pos);
      continue;
    }
    if (ahead == -1 && s.phase != slot_phase::free) {
      // The previous lap's message is still in the slot: the queue is full, unless its claimer died.
      const auto why = wait_for(false, pos, w, d);
      if (why == slot_wait::timeout) return false;
      if (why == slot_wait::end) throw_error(errc::closed, "send", name_, "every receiver is gone and the queue is full");
      if (why == slot_wait::dead &&
          slot->state.compare_exchange_strong(w, slot_state{lap, slot_phase::free, 0}.encode(), std::memory_order_acq_rel)) {
        // A claimer died holding it: a producer never published (torn, skipped), or a consumer
        // died copying it out (lost). Either way the slot is this lap's now.
        (s.phase == slot_phase::writing ? h.torn_skipped : h.lost_in_receivers).fetch_add(1, std::memory_order_relaxed);
        wake_all();
      }
      continue;
    }
    if (h.enqueue_pos.load(std::memory_order_acquire) == pos) corrupt(slot_out_of_lap(pos & mask_, s, lap, "senders"));
  }
}

bool shm_mpmc::do_receive(std::vector<std::byte>& out, const deadline& d) {
  switch (take(out, d)) {
    case taken::message: return true;
    case taken::timeout: return false;
    case taken::end: break;
  }
  if (hdr_->ended.load(std::memory_order_acquire) != 0) throw_error(errc::closed, "receive", name_, "end of stream");
  throw_error(errc::closed, "receive", name_, "every sender is gone and the queue is empty");
}

shm_mpmc::taken shm_mpmc::receive_or_end(std::vector<std::byte>& out, const deadline& d) { return take(out, d); }

shm_mpmc::taken shm_mpmc::take(std::vector<std::byte>& out, const deadline& d) {
  if (role_ != role::receiver) throw_errno(EBADF, "receive", name_, "this handle is a sender");
  if (hdr_ == nullptr) closed_handle("receive");
  auto& h = *hdr_;
  for (;;) {
    std::uint64_t pos = h.dequeue_pos.load(std::memory_order_acquire);
    auto* slot = reinterpret_cast<detail::mpmc_slot*>(slot_at(pos));
    const auto lap = static_cast<std::uint32_t>(pos >> shift_);
    std::uint64_t w = slot->state.load(std::memory_order_acquire);
    const auto s = slot_state::decode(w);
    const std::int32_t ahead = lap_diff(s.lap, lap);
    if (ahead == 0 && s.phase == slot_phase::full) {
      // The length is this message's as long as the state word is unchanged, which the claim
      // checks. Sizing `out` first means an allocation failure leaves the message queued.
      const std::uint32_t len = slot->length.load(std::memory_order_relaxed);
      const bool bad = len > max_message_size_;
      if (!bad) out.resize(len);
      if (!slot->state.compare_exchange_weak(w, slot_state{lap, slot_phase::reading, token_}.encode(),
                                             std::memory_order_acquire, std::memory_order_relaxed)) {
        continue;
      }
      help_advance(h.dequeue_pos, pos);
      if (!bad && len != 0) {
        std::memcpy(out.data(), reinterpret_cast<const std::byte*>(slot) + detail::mpmc_slot_header, len);
      }
      slot->state.store(slot_state{lap + 1, slot_phase::free, 0}.encode(), std::memory_order_release);
      std::atomic_thread_fence(std::memory_order_seq_cst);
      if (h.senders_sleeping.load(std::memory_order_relaxed) != 0) {
        h.space_seq.fetch_add(1, std::memory_order_release);
        detail::futex_wake(h.space_seq, 1, name_);
      }
      if (bad) {
        corrupt("slot " + std::to_string(pos & mask_) + " claims " + std::to_string(len) +
                " bytes, more than max_message " + std::to_string(max_message_size_));
      }
      return taken::message;
    }
    if (ahead > 0 || (ahead == 0 && s.phase == slot_phase::reading)) {  // taken by another receiver
      // As for senders: two laps ahead while the position has not moved is no state of the protocol.
      if (ahead > 1 && h.dequeue_pos.load(std::memory_order_acquire) == pos) {
        corrupt(slot_out_of_lap(pos & mask_, s, lap, "receivers"));
      }
      help_advance(h.dequeue_pos, pos);
      continue;
    }
    const bool writing = ahead == 0 && s.phase == slot_phase::writing;
    const bool empty = (ahead == 0 && s.phase == slot_phase::free) || (ahead == -1 && s.phase == slot_phase::reading);
    if (writing || empty) {
      const auto why = wait_for(true, pos, w, d);
      if (why == slot_wait::timeout) return taken::timeout;
      if (why == slot_wait::end) return taken::end;
      // A dead claimer: a sender that never published this lap's message (skip it: free for the
      // next lap), or the receiver of the previous lap, which died copying it out (free for this lap).
      if (why == slot_wait::dead &&
          slot->state.compare_exchange_strong(w, slot_state{writing ? lap + 1 : lap, slot_phase::free, 0}.encode(),
                                              std::memory_order_acq_rel)) {
        (writing ? h.torn_skipped : h.lost_in_receivers).fetch_add(1, std::memory_order_relaxed);
        if (writing) help_advance(h.dequeue_pos, pos);
        wake_all();
      }
      continue;
    }
    if (h.dequeue_pos.load(std::memory_order_acquire) == pos) corrupt(slot_out_of_lap(pos & mask_, s, lap, "receivers"));
  }
}

void shm_mpmc::wake_all() {
  hdr_->space_seq.fetch_add(1, std::memory_order_release);
  detail::futex_wake(hdr_->space_seq, INT_MAX, name_);
  hdr_->data_seq.fetch_add(1, std::memory_order_release);
  detail::futex_wake(hdr_->data_seq, INT_MAX, name_);
}

// Waits until the slot at `pos` no longer holds `seen` (or the position moved on), its claimer is
// found dead, the other side is gone for good, or `d` passes. Spins ~20 µs first (a claimer
// mid-copy, or a peer on the other core), then sleeps on the futex word and every other
// endpoint's lock at once (detail::wait_data_or_death): no time slices, and the kernel wakes a
// sleeper when any endpoint (a claimer, the waker of a lost wake-up) dies or execs; whoever it
// wakes wakes the other sleepers on that lock, and the verdict runs at once.
shm_mpmc::slot_wait shm_mpmc::wait_for(bool for_data, std::uint64_t pos, std::uint64_t seen, const deadline& d) {
  auto& h = *hdr_;
  auto& position = for_data ? h.dequeue_pos : h.enqueue_pos;
  auto* slot = reinterpret_cast<detail::mpmc_slot*>(slot_at(pos));
  const auto s = slot_state::decode(seen);
  const bool claimed = s.phase == slot_phase::writing || s.phase == slot_phase::reading;
  auto changed = [&] {
    return slot->state.load(std::memory_order_acquire) != seen || position.load(std::memory_order_acquire) != pos;
  };
  // What ends the wait other than a change: a dead claimer, the end of the stream, the peers gone.
  auto verdict = [&]() -> std::optional<slot_wait> {
    // A slot being written is not empty: its claimer publishing or dying is what moves it on.
    const bool empty_or_full = !for_data || s.phase != slot_phase::writing;
    if (for_data && empty_or_full && h.ended.load(std::memory_order_acquire) != 0) return slot_wait::end;
    const auto now = std::chrono::steady_clock::now();
    if (now < next_probe_) return std::nullopt;
    next_probe_ = now + std::chrono::milliseconds(10);
    if (claimed && !detail::token_alive(h, s.token, {dev_, ino_})) return slot_wait::dead;
    // Empty with no sender left, or full with no receiver left: a role attached once and gone now.
    const role peer = for_data ? role::sender : role::receiver;
    const unsigned pi = for_data ? 0U : 1U;
    if (empty_or_full && h.ever[pi].load(std::memory_order_acquire) != 0 &&
        detail::reap_role(h, peer, {dev_, ino_}) == 0 && !changed()) {
      return slot_wait::end;
    }
    return std::nullopt;
  };
  if (changed()) return slot_wait::ready;
  if (d.expired()) {
    if (auto v = verdict()) return *v;
    return slot_wait::timeout;
  }
  {
    using clock = std::chrono::steady_clock;
    const auto stop = clock::now() + std::chrono::microseconds(20);
    for (unsigned i = 1;; ++i) {
      detail::cpu_relax();
      if (changed()) return slot_wait::ready;
      if ((i & 31U) == 0 && clock::now() >= stop) break;
    }
    for (int i = 0; i < 4; ++i) {
      ::sched_yield();
      if (changed()) return slot_wait::ready;
    }
  }
  auto& seq = for_data ? h.data_seq : h.space_seq;
  auto& sleeping = for_data ? h.receivers_sleeping : h.senders_sleeping;
  unsigned unheld_streak = 0;
  for (;;) {
    if (auto v = verdict()) return *v;
    const std::uint32_t before = seq.load(std::memory_order_acquire);
    sleeping.fetch_add(1, std::memory_order_seq_cst);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (changed()) {
      sleeping.fetch_sub(1, std::memory_order_relaxed);
      return slot_wait::ready;
    }
    // The stream may have ended, or the last peer left, between the verdict above and our read of
    // seq (each bumps seq after saying so): that bump is behind us and a departed peer is out of the
    // watch list. Read after seq, so what the verdict missed is seen here and it runs at once.
    const unsigned peer_index = for_data ? 0U : 1U;
    if ((for_data && h.ended.load(std::memory_order_acquire) != 0) ||
        (h.ever[peer_index].load(std::memory_order_acquire) != 0 && h.live[peer_index].load(std::memory_order_acquire) == 0)) {
      sleeping.fetch_sub(1, std::memory_order_relaxed);
      next_probe_ = {};
      if (auto v = verdict()) return *v;
      continue;
    }
    detail::death_wait woke{};
    try {
      detail::retake_endpoint_lock(h, {holder_, place_gen_}, pid_);
      const detail::endpoint_lock* locks[detail::mpmc_max_holders];
      const int n = detail::watch_list(h, holder_, locks);
      woke = detail::wait_data_or_death(seq, before, {locks, static_cast<std::size_t>(n)}, d, name_, unheld_streak);
    } catch (...) {
      sleeping.fetch_sub(1, std::memory_order_relaxed);
      throw;
    }
    sleeping.fetch_sub(1, std::memory_order_relaxed);
    if (woke == detail::death_wait::peer_changed) next_probe_ = {};
    if (changed()) return slot_wait::ready;
    if (woke == detail::death_wait::interrupted) return slot_wait::timeout;
    if (d.expired()) {
      if (auto v = verdict()) return *v;
      return slot_wait::timeout;
    }
  }
}

}  // namespace ipc
