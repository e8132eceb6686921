// shm_broadcast's lifetime: creating or attaching the segment, validating its header, joining the
// holder table (a subscriber's cursor is set before its place is published), leaving it, and
// becoming an endpoint of its own in a fork() child. The data path is shm_broadcast_io.cpp.
#include <ipc/error.hpp>
#include <ipc/inspect.hpp>
#include <ipc/shm_broadcast.hpp>
#include <ipc/uri.hpp>

#include "detail/endpoint_lock.hpp"
#include "detail/futex.hpp"
#include "detail/shm_broadcast_layout.hpp"
#include "detail/shm_link.hpp"
#include "detail/shm_slot_queue.hpp"
#include "detail/shm_mpmc_holders.hpp"

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <memory>
#include <new>

namespace ipc {
namespace {

constexpr detail::slot_queue_kind channel_kind{"shm_broadcast",
                                               detail::bcast_magic,
                                               detail::bcast_version,
                                               sizeof(detail::bcast_header),
                                               detail::bcast_cell_header,
                                               detail::bcast_min_slots,
                                               detail::bcast_max_slots,
                                               detail::bcast_max_message,
                                               detail::bcast_max_total};

std::string policy_name(broadcast_policy p) { return p == broadcast_policy::drop_oldest ? "drop_oldest" : "block"; }

unsigned log2_of(std::uint64_t power_of_two) noexcept {
  unsigned s = 0;
  while ((std::uint64_t{1} << s) < power_of_two) ++s;
  return s;
}

detail::holder_table table(detail::bcast_header& h) noexcept { return detail::table_of(h); }

// What a new place's cursor starts at, written before the place counts as a subscriber.
struct cursor_start {
  detail::bcast_header* header;
  std::uint64_t next;
};

void set_cursor(void* context, unsigned index) noexcept {
  const auto* c = static_cast<const cursor_start*>(context);
  c->header->cursors[index].next.store(c->next, std::memory_order_seq_cst);
}

}  // namespace

shm_broadcast::shm_broadcast(std::string_view name, role r, const shm_broadcast_options& options)
    : channel("shm:" + std::string(name) + "?mode=broadcast", 0), base_name_(name), role_(r) {
  auto found = detail::open_slot_queue(base_name_, name_, channel_kind, options);
  dev_ = found.id.dev;
  ino_ = found.id.ino;
  // Everything else starts as the zero bytes the reservation gave: head 0, every cell "lap -1, empty".
  seg_.emplace(std::move(found.seg), found.spec, [&](std::byte* base, std::size_t) {
    auto* h = reinterpret_cast<detail::bcast_header*>(base);
    h->slots = options.slots;
    h->max_message = options.max_message;
    h->slot_stride = detail::slot_stride(channel_kind, options.max_message);
    h->policy = static_cast<std::uint32_t>(options.policy == broadcast_policy::drop_oldest ? detail::bcast_policy::drop_oldest
                                                                                          : detail::bcast_policy::block);
  });
  auto* h = seg_->header_as<detail::bcast_header>();
  const detail::slot_queue_sizes sizes{h->slots, h->max_message, h->slot_stride};
  detail::check_slot_queue(name_, seg_->object(), channel_kind, sizes, h->base.total_size, options);
  const std::uint32_t policy = h->policy;
  if (policy > 1) {
    throw_error(errc::incompatible, "attach", name_,
                seg_->object() + ": policy " + std::to_string(policy) + " is neither block (0) nor drop_oldest (1)");
  }
  drop_oldest_ = policy == static_cast<std::uint32_t>(detail::bcast_policy::drop_oldest);
  detail::check_insisted(name_, "policy", options.insist_policy, policy_name(options.policy), policy_name(this->policy()));
  const std::uint64_t n = sizes.slots;
  const std::uint64_t maxm = sizes.max_message;
  const std::uint64_t stride = sizes.stride;
  hdr_ = h;
  cells_ = seg_->payload();
  mask_ = n - 1;
  shift_ = log2_of(n);
  stride_ = stride;
  max_message_size_ = static_cast<std::size_t>(maxm);

  pid_ = ::getpid();
  // A subscriber's place counts once published, with its cursor already at the head then; the head
  // read again after publishing (seq_cst on both sides) is at least any position a publisher
  // claimed without seeing us, so starting there never asks for a cell that was overwritten.
  cursor_start start{hdr_, hdr_->head.load(std::memory_order_seq_cst)};
  const detail::before_publish init{r == role::receiver ? &set_cursor : nullptr, &start};
  const auto place = detail::register_holder(table(*hdr_), r, pid_, process_identity(pid_).start_time, false,
                                             {dev_, ino_}, name_, init);
  holder_ = place.index;
  place_gen_ = place.gen;
  token_ = detail::slot_state::make_token(place.index, place.gen);
  if (r == role::receiver) {
    next_ = std::max(start.next, hdr_->head.load(std::memory_order_seq_cst));
    hdr_->cursors[holder_].next.store(next_, std::memory_order_seq_cst);
  }
  try {
    detail::shm_fork_registry::add(this, &shm_broadcast::fork_hook);
  } catch (...) {
    detail::release_holder(table(*hdr_), place);
    throw;
  }
}

shm_broadcast::~shm_broadcast() {
  detail::shm_fork_registry::erase(this);
  if (hdr_ != nullptr) leave();
}

void shm_broadcast::close() {
  if (hdr_ == nullptr) return;
  leave();
  seg_.reset();
  hdr_ = nullptr;
  cells_ = nullptr;
}

void shm_broadcast::closed_handle(std::string_view call) const {
  throw_error(errc::closed, call, name_, "this handle was closed by close(); reopen() attaches it again");
}

// Leaves the holder table, as the destructor and close() do. Never throws.
void shm_broadcast::leave() noexcept {
  bool lock_released = true;
  const bool last = detail::release_holder(table(*hdr_), {holder_, place_gen_}, &lock_released);
  // Our endpoint lock still on another thread's robust list (this handle dies on a thread other
  // than the one that attached it): that list points into the header, so it stays mapped.
  if (!lock_released) detail::park_mapping_until_exit(seg_);
  try {
    // A subscriber leaving may be the one a blocked publisher waits for; the last publisher leaving
    // ends the stream for the subscribers.
    if (role_ == role::receiver) wake(hdr_->space_seq);
    if (role_ == role::sender && last) wake(hdr_->data_seq);
  } catch (...) {  // NOLINT(bugprone-empty-catch): the others fall back on their liveness checks
  }
}

channel_limits shm_broadcast::limits() const {
  channel_limits l;
  l.max_message_size = max_message_size_;
  l.capacity_messages = static_cast<std::size_t>(mask_ + 1);
  l.capacity_bytes = static_cast<std::size_t>((mask_ + 1) * max_message_size_);
  return l;
}

void shm_broadcast::remove() {
  // Only the segment this handle maps (a newer one under the name, made by a peer after this one was
  // unlinked, is left alone); on purpose: every handle goes on with the anonymous segment.
  detail::unlink_if_denotes(base_name_, {dev_, ino_}, hdr_ == nullptr ? nullptr : &hdr_->unlinked_on_purpose);
}

void shm_broadcast::discard() { detail::unlink_if_denotes(base_name_, {dev_, ino_}, nullptr); }

int shm_broadcast::segment_fd() const noexcept { return static_cast<posix_segment&>(seg_->raw()).fd(); }

void shm_broadcast::check_name_if_due(std::string_view call) {
  if (hdr_ == nullptr) closed_handle(call);
  if (!detail::link_check_due(next_link_check_ns_)) return;
  detail::check_linked(segment_fd(), hdr_->unlinked_on_purpose, next_link_check_ns_, call, name_, seg_->object());
}

void shm_broadcast::reopen() {
  // Still the channel the name denotes: everything is kept (a subscriber's place and cursor).
  std::optional<mode_t> mode = 0600;  // closed: attach again, or create a channel like ours
  if (hdr_ != nullptr) mode = detail::unlinked_mode(segment_fd(), seg_->object());
  if (!mode) return;
  shm_broadcast_options o;
  o.slots = static_cast<std::size_t>(mask_ + 1);
  o.max_message = max_message_size_;
  o.policy = policy();
  o.mode = *mode;
  o.open = open_mode::open_or_create;
  shm_broadcast fresh(base_name_, role_, o);  // the name's channel now, or a new one like ours
  swap_attachment(fresh);                     // fresh's destructor leaves the old channel
}

void shm_broadcast::swap_attachment(shm_broadcast& other) noexcept {
  using std::swap;
  swap(seg_, other.seg_);
  swap(hdr_, other.hdr_);
  swap(cells_, other.cells_);
  swap(mask_, other.mask_);
  swap(shift_, other.shift_);
  swap(stride_, other.stride_);
  swap(drop_oldest_, other.drop_oldest_);
  swap(next_, other.next_);
  swap(limit_, other.limit_);
  swap(wanted_, other.wanted_);
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

bool shm_broadcast::remove(std::string_view name) { return posix_segment::remove(name); }

broadcast_policy shm_broadcast::policy() const noexcept {
  return drop_oldest_ ? broadcast_policy::drop_oldest : broadcast_policy::block;
}

std::uint64_t shm_broadcast::torn_skipped() const noexcept {
  return hdr_ == nullptr ? 0 : hdr_->torn_skipped.load(std::memory_order_relaxed);
}

std::size_t shm_broadcast::subscribers() const noexcept {
  return hdr_ == nullptr ? 0 : hdr_->live[1].load(std::memory_order_acquire);
}

void shm_broadcast::corrupt(const std::string& what) const { throw_error(errc::corrupt, "shm_broadcast", name_, what); }

void shm_broadcast::wake(std::atomic<std::uint32_t>& seq) {
  seq.fetch_add(1, std::memory_order_release);
  detail::futex_wake(seq, INT_MAX, name_);
}

// ---------------------------------------------------------------- fork

void shm_broadcast::fork_hook(void* self, detail::fork_step step) noexcept { static_cast<shm_broadcast*>(self)->on_fork(step); }

// The parent reserves a place for the child before fork() (a subscriber's with the parent's
// cursor, so the child goes on from where the parent is and no publisher overwrites what it has
// yet to read); the child adopts it. Same model as shm_mpmc (docs/shm-modes.md, "Holders").
void shm_broadcast::on_fork(detail::fork_step step) noexcept {
  if (hdr_ == nullptr) return;
  cursor_start start{hdr_, next_};
  const detail::before_publish init{role_ == role::receiver ? &set_cursor : nullptr, &start};
  try {
    switch (step) {
      case detail::fork_step::prepare: {
        const auto st = hdr_->holders[holder_].start_time.load(std::memory_order_relaxed);
        const auto p = detail::register_holder(table(*hdr_), role_, pid_, st, true, {dev_, ino_}, name_, init);
        pending_ = static_cast<int>(p.index);
        pending_gen_ = p.gen;
        break;
      }
      case detail::fork_step::parent:
        pending_ = -1;  // the reserved place is the child's now
        break;
      case detail::fork_step::failed:
        if (pending_ >= 0) detail::release_holder(table(*hdr_), {static_cast<unsigned>(pending_), pending_gen_});
        pending_ = -1;
        break;
      case detail::fork_step::child: {
        const pid_t child = ::getpid();
        const auto id = process_identity(child);
        detail::mpmc_place p{};
        if (pending_ >= 0) {
          p = detail::adopt_pending(table(*hdr_), {static_cast<unsigned>(pending_), pending_gen_}, child, id.start_time);
        }
        if (p.gen == 0) p = detail::register_holder(table(*hdr_), role_, child, id.start_time, false, {dev_, ino_}, name_, init);
        holder_ = p.index;
        place_gen_ = p.gen;
        token_ = detail::slot_state::make_token(p.index, p.gen);
        pid_ = child;
        pending_ = -1;
        break;
      }
    }
  } catch (...) {
    // No place left for the child: its claims carry the parent's token, which stays alive as long
    // as the parent does; only the liveness bookkeeping is weaker.
    pending_ = -1;
    if (step == detail::fork_step::child) pid_ = ::getpid();
  }
}

}  // namespace ipc
