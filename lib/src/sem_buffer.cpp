#include <ipc/sem_buffer.hpp>

#include <ipc/error.hpp>

#include "detail/sem_buffer_layout.hpp"
#include "detail/channel_factories.hpp"
#include "detail/deadline_signal.hpp"
#include "detail/layout_header.hpp"
#include "detail/sysv_key.hpp"

#include <sys/ipc.h>
#include <sys/sem.h>
#include <time.h>
#include <sys/shm.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace ipc {
namespace {

using detail::sem_buffer_header;
using detail::sem_buffer_magic;
using detail::sem_buffer_version;

// Every this many operations a handle checks the indices against the semaphores (one GETALL):
// between these, the cheap checks on the indices it reads anyway catch a hostile or torn value.
constexpr std::uint32_t full_check_every = 64;
constexpr std::size_t header_bytes = detail::sem_buffer_header_bytes;
// Opening retries this often when it finds half a unit (removed, then recreated by a peer meanwhile).
constexpr int max_unit_attempts = 8;

using op = semaphore_set::op;

void check_geometry(std::size_t slots, std::size_t slot_size, const std::string& object) {
  if (slots < 1 || slots > sem_buffer::max_slots) {
    ipc::throw_errno(EINVAL, "sem_buffer(slots=" + std::to_string(slots) + ", allowed 1.." +
                                    std::to_string(sem_buffer::max_slots) + ")",
                        object);
  }
  if (slot_size < sem_buffer::min_slot_size || slot_size > sem_buffer::max_slot_size) {
    ipc::throw_errno(EINVAL, "sem_buffer(slot_size=" + std::to_string(slot_size) + ", allowed " +
                                    std::to_string(sem_buffer::min_slot_size) + ".." +
                                    std::to_string(sem_buffer::max_slot_size) + ")",
                        object);
  }
}

int segment_id(const layout_segment& seg) noexcept { return static_cast<const sysv_segment&>(seg.raw()).id(); }

// True when the set with this id no longer exists (IPC_RMID).
bool set_gone(int id) noexcept {
  semid_ds ds{};
  return ::semctl(id, 0, IPC_STAT, &ds) == -1 && (errno == EINVAL || errno == EIDRM);
}

// Removes the set under `key`, if any: a set a segment creator finds there belongs to a segment
// that is gone. Its users get EIDRM at once and reopen onto the new unit.
void remove_stale_set(key_t key, const std::string& object) {
  const int id = ::semget(key, 0, 0);
  if (id == -1) {
    if (errno != ENOENT) ipc::throw_errno(errno, "semget", object);
    return;
  }
  semid_ds ds{};
  if (::semctl(id, 0, IPC_STAT, &ds) == -1) {
    if (errno == EINVAL || errno == EIDRM) return;  // removed meanwhile
    ipc::throw_errno(errno, "semctl(IPC_STAT)", object);
  }
  detail::check_owner(ds.sem_perm.uid, ds.sem_perm.mode, "semctl(IPC_RMID)", object);
  if (::semctl(id, 0, IPC_RMID) == -1 && errno != EINVAL && errno != EIDRM) {
    ipc::throw_errno(errno, "semctl(IPC_RMID)", object);
  }
}

}  // namespace

sem_buffer::sem_buffer(std::string_view name, role r, open_mode mode, geometry g, mode_t perms)
    : channel("sem:" + std::string(name), 0), role_(r) {
  key_file_ = resolve_name(std::string(name) + ".sembuf").string();
  check_geometry(g.slots != 0 ? g.slots : default_slots, g.slot_size != 0 ? g.slot_size : default_slot_size,
                 key_file_);

  const bool key_file_existed = ::access(key_file_.c_str(), F_OK) == 0;
  const key_t sem_key = detail::sysv_key(key_file_, 'S', mode != open_mode::open_only);
  const key_t shm_key = detail::sysv_key(key_file_, 'H', false);
  try {
    open(sem_key, shm_key, mode, g, perms);
  } catch (...) {
    // A failed create (e.g. kernel.shmmni or kernel.sem exhausted) leaves no key file behind,
    // unless a segment or set uses it.
    if (!key_file_existed && ::shmget(shm_key, 0, 0) == -1 && errno == ENOENT && ::semget(sem_key, 0, 0) == -1 &&
        errno == ENOENT) {
      ::unlink(key_file_.c_str());
    }
    throw;
  }
}

void sem_buffer::open(key_t sem_key, key_t shm_key, open_mode mode, geometry g, mode_t perms) {
  for (int attempt = 1;; ++attempt) {
    if (open_unit(sem_key, shm_key, mode, g, perms)) return;
    if (attempt == max_unit_attempts) {
      throw_error(errc::incompatible, "attach", key_file_,
                  "segment and semaphore set still disagree after " + std::to_string(attempt) +
                      " attempts (each removed half was recreated and removed again)");
    }
  }
}

// The segment's creator makes the unit's set (inside the segment's initialisation, so the segment is
// published with the set's id in it): any set already under the key is a stale half.
void sem_buffer::create_set(key_t sem_key, mode_t perms) {
  const std::string object = key_file_ + " semaphores";
  for (int attempt = 1;; ++attempt) {
    remove_stale_set(sem_key, object);
    try {
      sems_.emplace(sem_key, object, open_mode::create_only,
                    std::vector<unsigned short>{static_cast<unsigned short>(slots_), 0, 1, 0, 0}, perms);
      return;
    } catch (const std::system_error& e) {
      if (e.code() != std::errc::file_exists || attempt == 3) throw;
    }
  }
}

// One attempt: false when the segment found was half a unit (its set gone); that half is removed.
bool sem_buffer::open_unit(key_t sem_key, key_t shm_key, open_mode mode, geometry g, mode_t perms) {
  seg_.reset();
  sems_.reset();
  const bool explicit_geometry = g.slots != 0 || g.slot_size != 0;
  const std::size_t want_slots = g.slots != 0 ? g.slots : default_slots;
  const std::size_t want_slot_size = g.slot_size != 0 ? g.slot_size : default_slot_size;
  layout_spec spec{sem_buffer_magic, sem_buffer_version, header_bytes, want_slots * want_slot_size};
  auto init = [&](std::byte* base, std::size_t) {
    auto* h = reinterpret_cast<sem_buffer_header*>(base);
    h->slots = static_cast<std::uint32_t>(want_slots);
    h->slot_size = static_cast<std::uint32_t>(want_slot_size);
    h->head = 0;
    h->tail = 0;
    h->unused = 0;
    slots_ = want_slots;
    create_set(sem_key, perms);
    h->sem_id = sems_->id();
  };
  auto attach = [&](open_mode m, const layout_spec& s) {
    auto size = m == open_mode::open_only ? layout_segment::total_bytes(s) : header_bytes + s.payload_bytes;
    seg_.emplace(std::make_unique<sysv_segment>(shm_key, key_file_ + " segment", m, size, perms), s, init);
  };
  try {
    if (!explicit_geometry && mode == open_mode::open_or_create) {
      // Without a geometry, attach to whatever exists; create with the defaults only if nothing does.
      layout_spec any = spec;
      any.payload_bytes = 0;
      try {
        attach(open_mode::open_only, any);
      } catch (const std::system_error& e) {
        if (e.code() != std::errc::no_such_file_or_directory) throw;
        attach(open_mode::open_or_create, spec);
      }
    } else {
      if (mode == open_mode::open_only && !explicit_geometry) spec.payload_bytes = 0;
      attach(mode, spec);
    }
  } catch (...) {
    if (sems_ && sems_->created()) {  // the segment's init failed after making the set
      try {
        sems_->remove();
      } catch (...) {  // NOLINT(bugprone-empty-catch): the original error is the one to report
      }
    }
    throw;
  }

  try {
    // Copy the geometry once and validate it against the mapping: never trust it again afterwards.
    const auto* h = seg_->header_as<sem_buffer_header>();
    slots_ = h->slots;
    slot_size_ = h->slot_size;
    if (slots_ < 1 || slots_ > max_slots || slot_size_ < min_slot_size || slot_size_ > max_slot_size ||
        header_bytes + slots_ * slot_size_ != seg_->size()) {
      throw_error(errc::incompatible, "attach", seg_->object(),
                  "geometry " + std::to_string(slots_) + " x " + std::to_string(slot_size_) + " does not fit the " +
                      std::to_string(seg_->size()) + "-byte segment");
    }
    if (explicit_geometry && ((g.slots != 0 && g.slots != slots_) || (g.slot_size != 0 && g.slot_size != slot_size_))) {
      throw_error(errc::incompatible, "attach", seg_->object(),
                  "buffer has " + std::to_string(slots_) + " slots of " + std::to_string(slot_size_) +
                      " bytes, asked for " + std::to_string(want_slots) + " x " + std::to_string(want_slot_size));
    }
    max_message_size_ = slot_size_ - length_bytes;
    indices_ = &seg_->header_as<sem_buffer_header>()->head;

    if (!seg_->created()) {
      // The set must be the one this segment was made with. Anything else means a half of the unit
      // was removed: this segment's set is gone for good, so the segment is useless - remove it (by
      // id: never a newer unit's) and start again.
      const int recorded = h->sem_id;
      const int current = ::semget(sem_key, 0, 0);
      if (current == -1 && errno != ENOENT) ipc::throw_errno(errno, "semget", key_file_ + " semaphores");
      if (current == recorded) {
        try {
          sems_.emplace(sem_key, key_file_ + " semaphores", open_mode::open_only, std::vector<unsigned short>(5, 0),
                        perms);
        } catch (const std::system_error& e) {
          if (e.code() != std::errc::no_such_file_or_directory) throw;  // removed since semget: half a unit
        }
      }
      if (!sems_ || sems_->id() != recorded) {
        seg_->remove();
        seg_.reset();
        sems_.reset();
        if (mode == open_mode::open_only) {
          ipc::throw_errno(ENOENT, "semget", key_file_ + " semaphores (the buffer's set was removed; its segment too)");
        }
        return false;
      }
    }
    if (role_ == role::sender) clear_closed();
  } catch (...) {
    if (seg_ && seg_->created()) {
      try {
        if (sems_) sems_->remove();
        seg_->remove();
      } catch (...) {  // NOLINT(bugprone-empty-catch): the original error is the one to report
      }
    }
    throw;
  }
  next_unit_check_ = std::chrono::steady_clock::now() + unit_check_period;
  return true;
}

// Deliberately no close() here: System V objects keep no per-process count across fork, so a
// destructor cannot know it is the last sender; a forked copy going away must not end the stream.
sem_buffer::~sem_buffer() = default;

namespace {

// The lock of a send or receive: the unit (a free slot or a message) and the mutex, both undoable,
// and `busy` raised without undo, all or nothing. `busy` must be 0 for the lock to succeed, and
// that test is IPC_NOWAIT: the kernel decides block-or-fail on the first op that cannot proceed,
// so while another holder has the mutex we sleep on the mutex, but a free mutex with `busy` still
// raised (its holder died before committing) fails at once with EAGAIN.
constexpr short lock_flags(bool undo, bool nowait) noexcept {
  return static_cast<short>((undo ? SEM_UNDO : 0) | (nowait ? IPC_NOWAIT : 0));
}

}  // namespace

bool sem_buffer::lock(unsigned short unit, const deadline& d) {
  for (;;) {
    const bool nowait = d.expired();
    sembuf ops[4] = {
        {unit, -1, lock_flags(true, nowait)},
        {sem_mutex, -1, lock_flags(true, nowait)},
        {sem_busy, 0, lock_flags(false, true)},
        {sem_busy, 1, 0},
    };
    // A timed wait that interrupt_thread() hit ends as a timeout (ipc/asio.hpp's cancel).
    if (!nowait && !d.is_never() && detail::take_interrupt()) return false;
    int r;
    if (nowait || d.is_never()) {
      r = ::semop(sems_->id(), ops, 4);
    } else {
      timespec left = d.remaining_timespec();
      r = ::semtimedop(sems_->id(), ops, 4, &left);
    }
    if (r == 0) return true;
    const int e = errno;
    if (e == EINTR) continue;
    if (e != EAGAIN) {
      if (e == EIDRM || e == EINVAL) throw_error(errc::closed, "semop", sems_->object(), "the semaphore set was removed");
      ipc::throw_errno(e, "semop", sems_->object());
    }
    // EAGAIN: a timeout, a full/empty buffer under try_, or `busy` left raised by a dead holder.
    if (sems_->value(sem_busy) != 0 && recover(d)) continue;
    if (nowait || d.expired()) return false;
  }
}

bool sem_buffer::recover(const deadline& d) {
  // Take the mutex alone (a live holder has it while busy is legitimately raised: then wait).
  if (!sems_->apply({{sem_mutex, -1, true}}, d)) return false;
  std::vector<unsigned short> v;
  try {
    v = sems_->values();
  } catch (const std::system_error& e) {
    failed_holding(e, "semctl(GETALL)", {{sem_mutex, 1, true}});
  }
  if (v[sem_busy] == 0) {
    give_back({{sem_mutex, 1, true}});
    return true;  // someone else recovered first
  }
  // The dead holder's unit and mutex came back by undo; its index store may or may not have
  // happened. The semaphores say how many messages are committed: make the indices agree.
  auto* h = indices_;
  const std::uint32_t ring = 2 * static_cast<std::uint32_t>(slots_);
  const std::uint32_t head = h[0], tail = h[1];
  const std::size_t committed = v[sem_full] - std::min<std::size_t>(v[sem_full], v[sem_closed]);
  if (head >= ring || tail >= ring || v[sem_closed] > 1 || committed > slots_) {
    corrupt_locked("semaphores or indices out of range after a holder died: head=" + std::to_string(head) +
                   " tail=" + std::to_string(tail) + " full=" + std::to_string(v[sem_full]) +
                   " closed=" + std::to_string(v[sem_closed]));
  }
  const std::uint32_t count = (tail + ring - head) % ring;
  if (count == committed + 1) {
    h[1] = (tail + ring - 1) % ring;  // a sender died after its index store: its message never was
  } else if (count + 1 == committed) {
    h[0] = (head + ring - 1) % ring;  // a receiver died after its index store: the message is still there
  } else if (count != committed) {
    corrupt_locked("indices hold " + std::to_string(count) + " messages, the semaphores " + std::to_string(committed));
  }
  ++recoveries_;
  try {
    sems_->apply({{sem_busy, static_cast<short>(-v[sem_busy]), false}, {sem_mutex, 1, true}}, deadline::now());
  } catch (const std::system_error& e) {
    failed_holding(e, "semop(end of recovery)", {{sem_mutex, 1, true}});
  }
  return true;
}

void sem_buffer::corrupt_locked(const std::string& what) {
  // Holding the mutex only (recovery, cross-check): release it, leave `busy` for the next look.
  corrupt(what, {{sem_mutex, 1, true}});
}

void sem_buffer::cross_check(bool receiving, std::uint32_t count, held_ops held) {
  if (checks_++ % full_check_every != 0) return;
  // Holding the mutex, `busy` and a unit, so the semaphores are still: the committed messages (full,
  // plus the unit a receiver holds, minus the close token) must be what the indices say; the mutex
  // is 0 and busy 1 (ours) - anything else would let two holders in at once.
  std::vector<unsigned short> v;
  try {
    v = sems_->values();
  } catch (const std::system_error& e) {
    failed_holding(e, "semctl(GETALL)", held);
  }
  const std::size_t full = v[sem_full] + (receiving ? 1U : 0U);
  const std::size_t empty = v[sem_empty] + (receiving ? 0U : 1U);
  if (v[sem_closed] > 1 || full < v[sem_closed] || full - v[sem_closed] != count || empty + count != slots_ ||
      v[sem_mutex] != 0 || v[sem_busy] != 1) {
    corrupt("semaphores disagree with the indices: full=" + std::to_string(v[sem_full]) + " empty=" +
                std::to_string(v[sem_empty]) + " closed=" + std::to_string(v[sem_closed]) + " mutex=" +
                std::to_string(v[sem_mutex]) + " busy=" + std::to_string(v[sem_busy]) + " (held: mutex 0, busy 1)" +
                " messages=" + std::to_string(count) + " slots=" + std::to_string(slots_),
            held);
  }
}

void sem_buffer::give_back(held_ops held) noexcept {
  try {
    if (sems_->apply(held, deadline::now())) return;
  } catch (...) {  // NOLINT(bugprone-empty-catch): e.g. ERANGE on a count out of range; the mutex alone below
  }
  // What else we took stays with our undo adjustment (given back when we exit); the mutex and
  // `busy` must go now, or every later operation would wait for ever.
  const bool had_busy = std::any_of(held.begin(), held.end(), [](const op& o) { return o.index == sem_busy; });
  try {
    if (had_busy && sems_->apply({{sem_mutex, 1, true}, {sem_busy, -1, false}}, deadline::now())) return;
  } catch (...) {  // NOLINT(bugprone-empty-catch): the mutex alone below
  }
  try {
    sems_->apply({{sem_mutex, 1, true}}, deadline::now());
  } catch (...) {  // NOLINT(bugprone-empty-catch): a removed set holds nothing any more
  }
}

void sem_buffer::corrupt(const std::string& what, held_ops held) {
  give_back(held);
  throw_error(errc::corrupt, "sem_buffer", sems_->object(), what);
}

void sem_buffer::failed_holding(const std::system_error& e, std::string_view step, held_ops held) {
  // A removed set holds no mutex any more: report it as it is.
  if (e.code() == errc::closed) throw e;
  corrupt(std::string(step) + " failed while holding the index mutex: " + e.what(), held);
}

// The commit of a send or receive, one atomic semop. When it fails (a count driven out of range:
// ERANGE), the index store is undone and what we hold is given back: the channel is as before the
// operation, and the error is errc::corrupt naming the counts.
void sem_buffer::commit(held_ops ops, std::string_view step, held_ops held, std::uint32_t index, std::uint32_t old_value) {
  try {
    // One semop with IPC_NOWAIT, straight to the kernel: a commit only gives back and moves units
    // it holds, so it never waits, and semaphore_set::apply(ops, deadline::now()) read the clock
    // twice per message to learn that.
    sembuf b[8];
    std::size_t n = 0;
    for (const auto& o : ops) b[n++] = {o.index, o.delta, static_cast<short>((o.undo ? SEM_UNDO : 0) | IPC_NOWAIT)};
    while (::semop(sems_->id(), b, n) != 0) {
      const int e = errno;
      if (e == EINTR) continue;
      if (e == EIDRM || e == EINVAL) throw_error(errc::closed, "semop", sems_->object(), "semaphore set was removed");
      ipc::throw_errno(e, "semop", sems_->object());
    }
  } catch (const std::system_error& e) {
    if (e.code() == errc::closed) throw;
    indices_[index] = old_value;
    std::string counts;
    try {
      const auto v = sems_->values();
      counts = " (empty=" + std::to_string(v[sem_empty]) + " full=" + std::to_string(v[sem_full]) +
               " closed=" + std::to_string(v[sem_closed]) + " slots=" + std::to_string(slots_) + ")";
    } catch (const std::system_error&) {  // NOLINT(bugprone-empty-catch): the commit's error is the one to report
    }
    corrupt(std::string(step) + " failed: " + e.what() + counts, held);
  }
}

void sem_buffer::discard_if_half() noexcept {
  // The set is gone (ipcrm -s, a peer's quarantine): its segment is half a unit that nobody can use
  // again. Removing it (by id) lets the next open, ours or a peer's, recreate both.
  if (!sems_ || !set_gone(sems_->id()) || !seg_) return;
  try {
    seg_->remove();
  } catch (...) {  // NOLINT(bugprone-empty-catch): the closed error is the one to report
  }
}

void sem_buffer::check_unit() {
  // CLOCK_MONOTONIC_COARSE (steady_clock's clock, read at the last tick): a few ns a message where
  // steady_clock::now() cost tens; a jiffy late is nothing against a 250 ms period.
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  const std::chrono::steady_clock::time_point now{std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec)};
  if (now < next_unit_check_) return;
  next_unit_check_ = now + unit_check_period;
  shmid_ds ds{};
  const int r = ::shmctl(segment_id(*seg_), IPC_STAT, &ds);
  const bool gone = r == -1 ? errno == EINVAL || errno == EIDRM : (ds.shm_perm.mode & SHM_DEST) != 0;
  if (!gone) return;
  // The segment half was removed (ipcrm -m): a new opener would make a new segment and pair it with
  // this set. Remove the set now, so every peer sees EIDRM at once and reopens onto one new unit.
  try {
    sems_->remove();
  } catch (...) {  // NOLINT(bugprone-empty-catch): the closed error is the one to report
  }
  throw_error(errc::closed, "sem_buffer", seg_->object(),
              "the segment was removed; its semaphore set is removed with it and the next open recreates both");
}

// Why a woken process dying cannot strand the others (docs/crash-behaviour.md, "No process waits
// for ever"): every wait here is one semop, and the kernel's update_queue performs a sleeper's
// whole operation (with its SEM_UNDO record) before it wakes it, then goes on trying every other
// sleeper. A process killed right after being woken already holds what it waited for, and its exit
// gives back the undoable part (slot and mutex), which runs the queue again. No baton is ever
// left with a process that must run to pass it on.
bool sem_buffer::do_send(std::span<const std::byte> message, const deadline& d) try {
  if (role_ != role::sender) throw_errno(EBADF, "send", name_, "this handle is the receiver");
  check_unit();
  // A free slot and the mutex in one semop: we hold both or neither. Both are undoable, so a
  // SIGKILL before the commit gives both back; `busy` tells the next holder to check the indices.
  if (!lock(sem_empty, d)) return false;
  const held_ops held = {{sem_empty, 1, true}, {sem_mutex, 1, true}, {sem_busy, -1, false}};
  const std::uint32_t ring = 2 * static_cast<std::uint32_t>(slots_);
  const std::uint32_t head = indices_[0], tail = indices_[1];
  if (head >= ring || tail >= ring) {
    corrupt("indices out of range: head=" + std::to_string(head) + " tail=" + std::to_string(tail) +
                " slots=" + std::to_string(slots_),
            held);
  }
  const std::uint32_t count = (tail + ring - head) % ring;
  if (count >= slots_) corrupt("no free slot although one was reserved", held);
  cross_check(false, count, held);
  std::byte* slot = seg_->payload() + (tail % slots_) * slot_size_;
  const auto len = static_cast<std::uint32_t>(message.size());
  std::memcpy(slot, &len, sizeof len);
  if (!message.empty()) std::memcpy(slot + length_bytes, message.data(), message.size());
  indices_[1] = (tail + 1) % ring;
  // The commit: cancel the undo of our empty unit (+1 undoable, -1 not), publish the message
  // (full +1), release the mutex and lower busy.
  commit({{sem_empty, 1, true}, {sem_empty, -1, false}, {sem_full, 1, false}, {sem_mutex, 1, true}, {sem_busy, -1, false}},
         "commit of send (semop)", held, 1, tail);
  return true;
} catch (const std::system_error& e) {
  if (e.code() == errc::closed) discard_if_half();
  throw;
}

bool sem_buffer::do_receive(std::vector<std::byte>& out, const deadline& d) try {
  if (role_ != role::receiver) throw_errno(EBADF, "receive", name_, "this handle is the sender");
  check_unit();
  if (!lock(sem_full, d)) return false;
  const held_ops held = {{sem_full, 1, true}, {sem_mutex, 1, true}, {sem_busy, -1, false}};
  const std::uint32_t ring = 2 * static_cast<std::uint32_t>(slots_);
  const std::uint32_t head = indices_[0], tail = indices_[1];
  if (head >= ring || tail >= ring) {
    corrupt("indices out of range: head=" + std::to_string(head) + " tail=" + std::to_string(tail) +
                " slots=" + std::to_string(slots_),
            held);
  }
  const std::uint32_t count = (tail + ring - head) % ring;
  if (count == 0) {
    // No message although we hold a unit of full: the close token, or corruption.
    int closed = 0;
    try {
      closed = sems_->value(sem_closed);
    } catch (const std::system_error& e) {
      failed_holding(e, "semctl(GETVAL)", held);
    }
    if (closed != 1) corrupt("a unit of full without a message or the close token", held);
    try {
      sems_->apply(held, deadline::now());  // give the token back for the other receivers
    } catch (const std::system_error& e) {
      failed_holding(e, "give back of the close token (semop)", held);
    }
    throw_error(errc::closed, "receive", name_, "sender closed the channel and it is drained");
  }
  cross_check(true, count, held);
  const std::byte* slot = seg_->payload() + (head % slots_) * slot_size_;
  std::uint32_t len = 0;
  std::memcpy(&len, slot, sizeof len);
  if (len > slot_size_ - length_bytes) {
    corrupt("slot " + std::to_string(head % slots_) + " holds length " + std::to_string(len) + " > " +
                std::to_string(slot_size_ - length_bytes),
            held);
  }
  try {
    out.resize(len);
  } catch (...) {
    give_back(held);
    throw;
  }
  if (len != 0) std::memcpy(out.data(), slot + length_bytes, len);
  indices_[0] = (head + 1) % ring;
  commit({{sem_full, 1, true}, {sem_full, -1, false}, {sem_empty, 1, false}, {sem_mutex, 1, true}, {sem_busy, -1, false}},
         "commit of receive (semop)", held, 0, head);
  return true;
} catch (const std::system_error& e) {
  if (e.code() == errc::closed) discard_if_half();
  throw;
}

void sem_buffer::lock_alone(std::string_view step) {
  // The mutex is held for a memcpy at most: one not given back within mutex_wait has a stopped
  // holder or a corrupt count, and waiting for ever would only hide that (and wedge a new sender).
  if (sems_->apply({{sem_mutex, -1, true}}, deadline::in(mutex_wait))) return;
  int mutex = -1;
  try {
    mutex = sems_->value(sem_mutex);
  } catch (const std::system_error&) {  // NOLINT(bugprone-empty-catch): the timeout is the error to report
  }
  throw_error(errc::corrupt, "sem_buffer", sems_->object(),
              std::string(step) + ": index mutex not released within " + std::to_string(mutex_wait.count()) +
                  " s (a stopped holder, or its count is corrupt: mutex=" + std::to_string(mutex) + ")");
}

void sem_buffer::clear_closed() {
  lock_alone("clear_closed");
  const held_ops held = {{sem_mutex, 1, true}};
  std::vector<unsigned short> v;
  try {
    v = sems_->values();
  } catch (const std::system_error& e) {
    failed_holding(e, "semctl(GETALL)", held);
  }
  bool released = false;
  try {
    released = v[sem_closed] == 0 ? sems_->apply(held, deadline::now())
                                  : sems_->apply({{sem_closed, -1, false}, {sem_full, -1, false}, {sem_mutex, 1, true}},
                                                 deadline::now());
  } catch (const std::system_error& e) {
    failed_holding(e, "clear of the closed flag (semop)", held);
  }
  if (!released) corrupt("closed flag set without its token in full", held);
  closed_ = false;
}

void sem_buffer::close() {
  if (role_ != role::sender || closed_) return;
  lock_alone("close");
  const held_ops held = {{sem_mutex, 1, true}};
  std::vector<unsigned short> v;
  try {
    v = sems_->values();
  } catch (const std::system_error& e) {
    failed_holding(e, "semctl(GETALL)", held);
  }
  try {
    // The token: full counts one more than there are messages, so blocked receivers wake.
    if (v[sem_closed] == 0) {
      sems_->apply({{sem_closed, 1, false}, {sem_full, 1, false}, {sem_mutex, 1, true}}, deadline::now());
    } else {
      sems_->apply(held, deadline::now());
    }
  } catch (const std::system_error& e) {
    failed_holding(e, "close (semop)", held);
  }
  closed_ = true;
}

channel_limits sem_buffer::limits() const {
  return {slot_size_ - length_bytes, slots_ * (slot_size_ - length_bytes), slots_};
}

void sem_buffer::remove() {
  closed_ = true;  // nothing left to close
  sems_->remove();
  seg_->remove();
  // Both by id; the key file goes only if no newer unit was made under it meanwhile (its key
  // would otherwise be lost, and the next open would pair a new key with nobody).
  const key_t sem_key = sems_->key();
  const key_t shm_key = static_cast<const sysv_segment&>(seg_->raw()).key();
  if (::semget(sem_key, 0, 0) == -1 && errno == ENOENT && ::shmget(shm_key, 0, 0) == -1 && errno == ENOENT &&
      ::unlink(key_file_.c_str()) == -1 && errno != ENOENT) {
    ipc::throw_errno(errno, "unlink", key_file_);
  }
}

bool sem_buffer::remove(std::string_view name) {
  const std::string key_file = resolve_name(std::string(name) + ".sembuf").string();
  if (::access(key_file.c_str(), F_OK) == -1 && errno == ENOENT) return false;
  bool removed = false;
  const key_t sem_key = detail::sysv_key(key_file, 'S', false);
  const key_t shm_key = detail::sysv_key(key_file, 'H', false);
  if (int id = ::semget(sem_key, 0, 0); id >= 0) {
    semid_ds ds{};
    ipc::check_unix(::semctl(id, 0, IPC_STAT, &ds), "semctl(IPC_STAT)", key_file);
    detail::check_owner(ds.sem_perm.uid, ds.sem_perm.mode, "semctl(IPC_RMID)", key_file);
    ipc::check_unix(::semctl(id, 0, IPC_RMID), "semctl(IPC_RMID)", key_file);
    removed = true;
  }
  if (int id = ::shmget(shm_key, 0, 0); id >= 0) {
    shmid_ds ds{};
    ipc::check_unix(::shmctl(id, IPC_STAT, &ds), "shmctl(IPC_STAT)", key_file);
    detail::check_owner(ds.shm_perm.uid, ds.shm_perm.mode, "shmctl(IPC_RMID)", key_file);
    ipc::check_unix(::shmctl(id, IPC_RMID, nullptr), "shmctl(IPC_RMID)", key_file);
    removed = true;
  }
  if (::unlink(key_file.c_str()) == -1 && errno != ENOENT) ipc::throw_errno(errno, "unlink", key_file);
  return removed;
}

namespace detail {

std::unique_ptr<channel> open_sem_uri(const channel_uri& uri, role r) {
  uri.allow_only({"slots", "slot_size", "capacity", "max_message", "mode", "open"});
  uri.require_plain_name();
  if (uri.option("slot_size") && uri.option("max_message")) {
    throw_error(errc::bad_uri, "open_channel", uri.text, "give slot_size or max_message, not both");
  }
  if (uri.option("slots") && uri.option("capacity")) {
    throw_error(errc::bad_uri, "open_channel", uri.text, "give slots or capacity, not both");
  }
  sem_buffer::geometry g;
  if (uri.option("slot_size")) g.slot_size = uri.size_option("slot_size", 0);
  if (uri.option("max_message")) g.slot_size = uri.size_option("max_message", 0) + sem_buffer::length_bytes;
  if (g.slot_size != 0 && (g.slot_size < sem_buffer::min_slot_size || g.slot_size > sem_buffer::max_slot_size)) {
    throw_error(errc::bad_uri, "open_channel", uri.text,
                "slot size " + std::to_string(g.slot_size) + " outside " + std::to_string(sem_buffer::min_slot_size) +
                    ".." + std::to_string(sem_buffer::max_slot_size));
  }
  if (uri.option("slots")) g.slots = uri.size_option("slots", 0);
  if (uri.option("capacity")) {
    // capacity in payload bytes: enough slots of the chosen size to hold it.
    std::size_t payload = (g.slot_size != 0 ? g.slot_size : sem_buffer::default_slot_size) - sem_buffer::length_bytes;
    g.slots = (uri.size_option("capacity", 0) + payload - 1) / payload;
    if (g.slot_size == 0) g.slot_size = sem_buffer::default_slot_size;
  }
  if ((uri.option("slots") || uri.option("capacity")) && (g.slots == 0 || g.slots > sem_buffer::max_slots)) {
    throw_error(errc::bad_uri, "open_channel", uri.text,
                "slots " + std::to_string(g.slots) + " outside 1.." + std::to_string(sem_buffer::max_slots));
  }
  return std::make_unique<sem_buffer>(uri.name, r, uri.open_option(), g, uri.mode_option());
}

}  // namespace detail
}  // namespace ipc
