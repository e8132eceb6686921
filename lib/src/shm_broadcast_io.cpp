// shm_broadcast's data path: publishers claim cells in head order (a CAS on the cell's state word
// that records their token), subscribers copy cells out seqlock-style and move their cursor, and
// both wait in one place (wait_until). docs/shm-broadcast.md has the protocol.
#include <ipc/error.hpp>
#include <ipc/shm_broadcast.hpp>

#include "detail/cpu_relax.hpp"
#include "detail/endpoint_lock.hpp"
#include "detail/futex.hpp"
#include "detail/shm_broadcast_layout.hpp"
#include "detail/shm_mpmc_holders.hpp"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <optional>

namespace ipc {
namespace {

using detail::slot_phase;
using detail::slot_state;

detail::holder_table table(detail::bcast_header& h) noexcept { return detail::table_of(h); }

// How far a cell's lap field is ahead of the one a position expects (negative: behind).
std::int32_t lap_diff(std::uint32_t cell_lap, std::uint32_t expected) noexcept {
  return static_cast<std::int32_t>(cell_lap - expected);
}

// Moves the head from pos to pos + 1 unless someone already did: whoever sees the cell at the head
// claimed helps, so a publisher killed between its claim and this step holds nobody up.
void help_advance(std::atomic<std::uint64_t>& head, std::uint64_t pos) noexcept {
  head.compare_exchange_strong(pos, pos + 1, std::memory_order_seq_cst, std::memory_order_relaxed);
}

// Whether the holder a claim token names still holds its place at the claim's generation: false once
// it released the place or was reaped, so its claim will never be finished. Shared memory only, no
// liveness probe. Never throws.
bool claimer_registered(const detail::bcast_header& h, std::uint32_t token) noexcept {
  const slot_state s{0, slot_phase::writing, token};
  const unsigned i = s.holder_index();
  if (i >= detail::mpmc_max_holders) return false;
  return (h.holders[i].gen.load(std::memory_order_acquire) & slot_state::gen_mask) == s.holder_gen();
}

// The endpoint locks of the registered holders of role r other than place `self`: what a sleeper
// waiting for that role watches (subscribers and lap-behind publishers watch the publishers, a
// publisher waiting for room watches the subscribers). Returns how many. Never throws.
int watch_list(detail::bcast_header& h, role r, unsigned self,
               const detail::endpoint_lock* (&out)[detail::mpmc_max_holders]) noexcept {
  const unsigned ri = r == role::sender ? 0U : 1U;
  int n = 0;
  for (unsigned i = 0; i < detail::mpmc_max_holders; ++i) {
    if (i == self) continue;
    const auto& e = h.holders[i];
    // The role is written before the generation is published (register_holder).
    if ((e.gen.load(std::memory_order_acquire) & 1U) == 0 || (e.role.load(std::memory_order_relaxed) & 1U) != ri) continue;
    out[n++] = &h.endpoint_locks[i];
  }
  return n;
}

}  // namespace

// How long a publisher waiting for room sleeps for a batch of cells before it asks for the first.
constexpr std::chrono::milliseconds batch_wait{10};

std::byte* shm_broadcast::cell_at(std::uint64_t pos) const noexcept { return cells_ + (pos & mask_) * stride_; }

// Waits until changed(), a verdict (a dead claimer, the end of the stream), or `d`. Spins ~20 µs
// first (a publisher mid-copy, or a peer on the other core), then sleeps on data_seq (waiting for
// a cell) or space_seq (a publisher waiting for subscribers) together with the endpoint locks of
// the role it waits for (detail::wait_data_or_death): no time slices while they are held, and the
// kernel wakes the sleeper when one of them dies or execs. verdict(probe) is asked before each
// sleep, with probe true at most every 10 ms (a liveness probe reads /proc) and at once after a
// watched lock changed; verdict(false) looks at shared memory only.
// A sleeper arms its flag (arm()), fences, re-checks, then sleeps; a waker changes the state,
// fences, and takes the flag (exchange) before it wakes: one of them sees the other, and one
// sleeping episode costs one wake-up however many messages pass meanwhile.
template <class Changed, class Verdict>
shm_broadcast::cell_wait shm_broadcast::wait_until(bool on_data, const Changed& changed, const Verdict& verdict,
                                                   const deadline& d) {
  auto& h = *hdr_;
  auto probe = [&]() -> std::optional<cell_wait> {
    const auto now = std::chrono::steady_clock::now();
    const bool due = now >= next_probe_;
    if (due) next_probe_ = now + std::chrono::milliseconds(10);
    return verdict(due);
  };
  if (changed()) return cell_wait::ready;
  if (d.expired()) {
    next_probe_ = {};
    if (auto v = probe()) return *v;
    return cell_wait::timeout;
  }
  {
    using clock = std::chrono::steady_clock;
    const auto stop = clock::now() + std::chrono::microseconds(20);
    for (unsigned i = 1;; ++i) {
      detail::cpu_relax();
      if (changed()) return cell_wait::ready;
      if ((i & 31U) == 0 && clock::now() >= stop) break;
    }
    for (int i = 0; i < 4; ++i) {
      ::sched_yield();
      if (changed()) return cell_wait::ready;
    }
  }
  auto& seq = on_data ? h.data_seq : h.space_seq;
  const role watched = on_data ? role::sender : role::receiver;
  unsigned unheld_streak = 0;
  // A publisher waiting for room (wanted_: the first cell it needs) first asks to be woken only
  // once the slowest subscriber has freed an eighth of the ring as well, so a publisher held up by
  // a subscriber wakes once per batch, not once per message; but for batch_wait at most, then for
  // the first cell: a subscriber that reads a message or two and then waits for this publisher
  // must not leave both waiting for ever.
  const std::uint64_t needed = wanted_;
  const std::uint64_t batch = on_data ? 0 : (mask_ + 1) / 8;
  const auto batch_end = deadline::clock::now() + batch_wait;
  for (;;) {
    if (auto v = probe()) return *v;
    const bool batching = batch != 0 && deadline::clock::now() < batch_end;
    wanted_ = batching ? needed + batch : needed;
    const std::uint32_t before = seq.load(std::memory_order_acquire);
    arm(on_data);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (changed()) return cell_wait::ready;
    // A claimer or the last publisher may have gone (released, or reaped by another process) since
    // the verdict above but before our read of seq: that bump is behind us and the holder is out of
    // the watch list. Whoever frees a place bumps seq after it, so verdict(false), which reads the
    // table after seq, sees it.
    if (auto v = verdict(false)) return *v;
    detail::retake_endpoint_lock(table(h), {holder_, place_gen_}, pid_);  // our attaching thread may have exited
    const detail::endpoint_lock* locks[detail::mpmc_max_holders];
    const int n = watch_list(h, watched, holder_, locks);
    const deadline until = batching ? deadline::at(std::min(d.time_point(), batch_end)) : d;
    const auto woke = detail::wait_data_or_death(seq, before, {locks, static_cast<std::size_t>(n)}, until, name_, unheld_streak);
    if (changed()) return cell_wait::ready;
    // Only a wait with a deadline is interruptible (ipc/asio.hpp); the batch's own limit is not one.
    if (woke == detail::death_wait::interrupted && !d.is_never()) return cell_wait::timeout;
    if (woke == detail::death_wait::peer_changed) next_probe_ = {};  // judge the peer now
    if (d.expired()) {
      next_probe_ = {};
      if (auto v = probe()) return *v;
      return cell_wait::timeout;
    }
  }
}

// The lowest cursor of the live subscribers, or the head when there is none. The head is read
// first: a subscriber this scan misses published its place after that read, and starts at a head
// read after publishing (see the constructor), so its cursor is at least this value too.
std::uint64_t shm_broadcast::slowest_subscriber() const noexcept {
  auto& h = *hdr_;
  std::uint64_t slowest = h.head.load(std::memory_order_seq_cst);
  for (unsigned i = 0; i < detail::mpmc_max_holders; ++i) {
    const auto& e = h.holders[i];
    const std::uint32_t g = e.gen.load(std::memory_order_seq_cst);
    // A place counts while registered (odd), and while a fork child adopts it (even, fork_pending
    // set: its cursor is the parent's and stays valid); fork_pending is read first since adoption
    // clears it only after publishing the new generation.
    bool counts = (g & 1U) != 0;
    if (!counts && e.fork_pending.load(std::memory_order_acquire) != 0) {
      counts = e.pid.load(std::memory_order_acquire) != 0;
    }
    if (!counts || e.role.load(std::memory_order_acquire) != 1U) continue;
    slowest = std::min(slowest, h.cursors[i].next.load(std::memory_order_acquire));
  }
  return slowest;
}

void shm_broadcast::arm(bool on_data) noexcept {
  auto& h = *hdr_;
  if (on_data) {
    h.data_waiting.store(1, std::memory_order_seq_cst);
  } else {
    h.space_wanted.store(wanted_, std::memory_order_seq_cst);
    h.space_waiting.store(1, std::memory_order_seq_cst);
  }
}

// Publishes the cursor; under block, wakes a sleeping publisher when this move crosses the cursor it
// waits for (each subscriber crosses it once, so a sleep costs at most one wake per subscriber).
void shm_broadcast::advance_cursor(std::uint64_t next) {
  const std::uint64_t prev = next_;
  next_ = next;
  auto& h = *hdr_;
  h.cursors[holder_].next.store(next, std::memory_order_release);
  if (drop_oldest_) return;  // no publisher ever waits for a subscriber
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (h.space_waiting.load(std::memory_order_relaxed) == 0) return;
  const std::uint64_t wanted = h.space_wanted.load(std::memory_order_relaxed);
  if (prev < wanted && wanted <= next && h.space_waiting.exchange(0, std::memory_order_seq_cst) != 0) wake(h.space_seq);
}

bool shm_broadcast::do_send(std::span<const std::byte> message, const deadline& d) {
  // A subscriber that published would wait on its own cursor under policy=block.
  if (role_ != role::sender) throw_errno(EBADF, "send", name_, "a subscriber handle does not publish");
  check_name_if_due("send");
  auto& h = *hdr_;
  const std::uint64_t slots = mask_ + 1;
  for (;;) {
    const std::uint64_t pos = h.head.load(std::memory_order_seq_cst);
    auto* cell = reinterpret_cast<detail::bcast_cell*>(cell_at(pos));
    const auto lap = static_cast<std::uint32_t>(pos >> shift_);
    std::uint64_t w = cell->state.load(std::memory_order_acquire);
    const auto s = slot_state::decode(w);
    const std::int32_t ahead = lap_diff(s.lap, lap);  // 0: the cell's last claim was position pos - slots
    if (ahead > 0) {  // pos was claimed already: the head is behind
      help_advance(h.head, pos);
      continue;
    }
    if (ahead < 0) {
      if (h.head.load(std::memory_order_seq_cst) == pos) {
        corrupt("cell " + std::to_string(pos & mask_) + " is at lap " + std::to_string(s.lap) +
                " while the publishers are at lap " + std::to_string(lap + 1));
      }
      continue;
    }
    if (s.phase == slot_phase::writing) {
      // A publisher a whole lap behind is still copying position pos - slots in, or died doing it.
      const auto why = wait_until(
          true, [&] { return cell->state.load(std::memory_order_acquire) != w || h.head.load(std::memory_order_acquire) != pos; },
          [&](bool probe) -> std::optional<cell_wait> {
            if (probe ? !detail::token_alive(table(h), s.token, {dev_, ino_}) : !claimer_registered(h, s.token)) {
              return cell_wait::dead;
            }
            return std::nullopt;
          },
          d);
      if (why == cell_wait::timeout) return false;
      if (why == cell_wait::dead &&
          cell->state.compare_exchange_strong(w, slot_state{lap, slot_phase::free, 0}.encode(), std::memory_order_acq_rel)) {
        h.torn_skipped.fetch_add(1, std::memory_order_relaxed);
        wake(h.data_seq);
      }
      continue;
    }
    if (!drop_oldest_ && pos >= limit_) {
      // Overwriting position pos - slots needs every live subscriber past it.
      limit_ = slowest_subscriber() + slots;
      if (pos >= limit_) {
        // Sleep until the slowest subscriber has read the cell we need (in batches: wait_until).
        wanted_ = pos - slots + 1;
        const auto why = wait_until(
            false,
            [&] {
              limit_ = slowest_subscriber() + slots;
              return pos < limit_ || h.head.load(std::memory_order_acquire) != pos;
            },
            [&](bool probe) -> std::optional<cell_wait> {
              if (probe) detail::reap_role(table(h), role::receiver, {dev_, ino_});  // a dead subscriber stops counting
              return std::nullopt;
            },
            d);
        if (why == cell_wait::timeout) return false;
        continue;
      }
    }
    if (!cell->state.compare_exchange_strong(w, slot_state{lap + 1, slot_phase::writing, token_}.encode(),
                                             std::memory_order_seq_cst, std::memory_order_relaxed)) {
      continue;
    }
    // Seqlock writer: the claim is visible before any byte of the copy, so a subscriber that read
    // part of the new bytes finds the state word changed when it re-checks.
    std::atomic_thread_fence(std::memory_order_release);
    help_advance(h.head, pos);
    cell->length.store(static_cast<std::uint32_t>(message.size()), std::memory_order_relaxed);
    if (!message.empty()) {
      std::memcpy(reinterpret_cast<std::byte*>(cell) + detail::bcast_cell_header, message.data(), message.size());
    }
    cell->state.store(slot_state{lap + 1, slot_phase::full, 0}.encode(), std::memory_order_release);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (h.data_waiting.load(std::memory_order_relaxed) != 0 && h.data_waiting.exchange(0, std::memory_order_seq_cst) != 0) {
      wake(h.data_seq);
    }
    // Publishers asleep for room all wait at the head, which we just moved on: they look again
    // (one that asked for a batch may share space_wanted with one that asks for the first cell,
    // so the subscriber's crossing need not have woken every one of them).
    if (!drop_oldest_ && h.space_waiting.load(std::memory_order_relaxed) != 0 &&
        h.space_waiting.exchange(0, std::memory_order_seq_cst) != 0) {
      wake(h.space_seq);
    }
    return true;
  }
}

bool shm_broadcast::do_receive(std::vector<std::byte>& out, const deadline& d) {
  if (role_ != role::receiver) throw_errno(EBADF, "receive", name_, "a publisher handle does not subscribe");
  if (hdr_ == nullptr) closed_handle("receive");
  auto& h = *hdr_;
  const std::uint64_t slots = mask_ + 1;
  // Skips from pos to the oldest message still held (the head a lap back), counting what was missed.
  auto skip_lapped = [&](std::uint64_t pos) {
    const std::uint64_t head = h.head.load(std::memory_order_acquire);
    const std::uint64_t to = std::max(pos + 1, head > slots ? head - slots : 0);
    dropped_ += to - pos;
    count_skipped(to - pos);
    advance_cursor(to);
  };
  for (;;) {
    const std::uint64_t pos = next_;
    auto* cell = reinterpret_cast<detail::bcast_cell*>(cell_at(pos));
    const auto lap = static_cast<std::uint32_t>(pos >> shift_);
    std::uint64_t w = cell->state.load(std::memory_order_acquire);
    const auto s = slot_state::decode(w);
    const std::int32_t ahead = lap_diff(s.lap, lap + 1);  // 0: the cell's last claim was position pos
    if (ahead == 0 && s.phase == slot_phase::full) {
      const std::uint32_t len = cell->length.load(std::memory_order_relaxed);
      if (len > max_message_size_) {
        if (cell->state.load(std::memory_order_acquire) != w) {
          skip_lapped(pos);
          continue;
        }
        corrupt("cell " + std::to_string(pos & mask_) + " claims " + std::to_string(len) + " bytes, more than max_message " +
                std::to_string(max_message_size_));
      }
      out.resize(len);
      if (len != 0) std::memcpy(out.data(), reinterpret_cast<const std::byte*>(cell) + detail::bcast_cell_header, len);
      // Seqlock reader: the copy is this message only if the word did not move while we copied.
      std::atomic_thread_fence(std::memory_order_acquire);
      if (cell->state.load(std::memory_order_relaxed) != w) {
        skip_lapped(pos);
        continue;
      }
      advance_cursor(pos + 1);
      return true;
    }
    if (ahead == 0 && s.phase == slot_phase::free) {  // its publisher died mid-write: no message there
      advance_cursor(pos + 1);
      continue;
    }
    if (ahead > 0) {  // overwritten before we got to it (drop_oldest)
      skip_lapped(pos);
      continue;
    }
    if (ahead < -1) {
      corrupt("cell " + std::to_string(pos & mask_) + " is at lap " + std::to_string(s.lap) + " while subscriber " +
              std::to_string(holder_) + " reads lap " + std::to_string(lap + 1));
    }
    // Not published yet (ahead -1), or being written (ahead 0, writing).
    const bool writing = ahead == 0;
    const auto why = wait_until(
        true, [&] { return cell->state.load(std::memory_order_acquire) != w; },
        [&](bool probe) -> std::optional<cell_wait> {
          if (writing) {
            if (probe ? !detail::token_alive(table(h), s.token, {dev_, ino_}) : !claimer_registered(h, s.token)) {
              return cell_wait::dead;
            }
            return std::nullopt;
          }
          // Nothing more will come once every publisher that ever attached is gone (the dead ones
          // found by a probe). The cell is read again after the count: a last publisher's message
          // is published before it leaves.
          if (h.ever[0].load(std::memory_order_acquire) == 0) return std::nullopt;
          const std::uint32_t live =
              probe ? detail::reap_role(table(h), role::sender, {dev_, ino_}) : h.live[0].load(std::memory_order_acquire);
          if (live == 0 && cell->state.load(std::memory_order_acquire) == w) return cell_wait::end;
          return std::nullopt;
        },
        d);
    switch (why) {
      case cell_wait::ready: break;
      case cell_wait::timeout: return false;
      case cell_wait::end: throw_error(errc::closed, "receive", name_, "every publisher is gone and everything was read");
      case cell_wait::dead:
        // Its publisher died holding the claim: the position holds no message, for every subscriber.
        if (cell->state.compare_exchange_strong(w, slot_state{lap + 1, slot_phase::free, 0}.encode(),
                                                std::memory_order_acq_rel)) {
          h.torn_skipped.fetch_add(1, std::memory_order_relaxed);
          wake(h.data_seq);
        }
        break;
    }
  }
}

}  // namespace ipc
