#include <ipc/sem_buffer.hpp>

#include <ipc/error.hpp>

#include "detail/sem_buffer_layout.hpp"
#include "detail/channel_factories.hpp"
#include "detail/deadline_signal.hpp"
#include "detail/layout_header.hpp"
#include "detail/sysv_key.hpp"

#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace ipc {
namespace {

using detail::sem_buffer_magic;
using detail::sem_buffer_version;


// The segment: this header, then `slots` slots of `slot_size` bytes (u32 length + payload).
// The indices run modulo 2 x slots (so full and empty differ) and are touched only under the
// mutex; the counts live in the semaphore set. A holder killed between its index store and its
// commit semop leaves `busy` raised, which the next holder sees (docs/semaphore-shm.md).
struct sem_buffer_header {
  detail::layout_header base;
  std::uint32_t slots;
  std::uint32_t slot_size;
  std::uint32_t head;  // next message to read, mod 2 x slots
  std::uint32_t tail;  // next slot to write, mod 2 x slots
};

// Every this many operations a handle checks the indices against the semaphores (one GETALL):
// between these, the cheap checks on the indices it reads anyway catch a hostile or torn value.
constexpr std::uint32_t full_check_every = 64;
constexpr std::size_t header_bytes = (sizeof(sem_buffer_header) + 63) / 64 * 64;

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
  };
  auto attach = [&](open_mode m, const layout_spec& s) {
    auto size = m == open_mode::open_only ? layout_segment::total_bytes(s) : header_bytes + s.payload_bytes;
    seg_.emplace(std::make_unique<sysv_segment>(shm_key, key_file_ + " segment", m, size, perms), s, init);
  };
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

  try {
    // Whoever comes first creates the set, from the validated geometry.
    sems_.emplace(sem_key, key_file_ + " semaphores",
                  mode == open_mode::open_only ? open_mode::open_only : open_mode::open_or_create,
                  std::vector<unsigned short>{static_cast<unsigned short>(slots_), 0, 1, 0, 0}, perms);
    if (role_ == role::sender) clear_closed();
  } catch (...) {
    if (seg_->created()) {
      try {
        seg_->remove();
      } catch (...) {  // NOLINT(bugprone-empty-catch): the original error is the one to report
      }
    }
    throw;
  }
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
  const auto v = sems_->values();
  if (v[sem_busy] == 0) {
    sems_->apply({{sem_mutex, 1, true}}, deadline::now());
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
  sems_->apply({{sem_busy, static_cast<short>(-v[sem_busy]), false}, {sem_mutex, 1, true}}, deadline::now());
  return true;
}

void sem_buffer::corrupt_locked(const std::string& what) {
  // Holding the mutex only (recovery, cross-check): release it, leave `busy` for the next look.
  corrupt(what, {{sem_mutex, 1, true}});
}

void sem_buffer::cross_check(bool receiving, std::uint32_t count, std::initializer_list<semaphore_set::op> release) {
  if (checks_++ % full_check_every != 0) return;
  // Holding the mutex and a unit, so the semaphores are still: the committed messages (full, plus
  // the unit a receiver holds, minus the close token) must be what the indices say.
  const auto v = sems_->values();
  const std::size_t full = v[sem_full] + (receiving ? 1U : 0U);
  const std::size_t empty = v[sem_empty] + (receiving ? 0U : 1U);
  if (v[sem_closed] > 1 || full < v[sem_closed] || full - v[sem_closed] != count || empty + count != slots_) {
    corrupt("semaphores disagree with the indices: full=" + std::to_string(v[sem_full]) + " empty=" +
                std::to_string(v[sem_empty]) + " closed=" + std::to_string(v[sem_closed]) + " messages=" +
                std::to_string(count) + " slots=" + std::to_string(slots_),
            release);
  }
}

void sem_buffer::corrupt(const std::string& what, std::initializer_list<semaphore_set::op> release) {
  try {
    sems_->apply(release, deadline::now());
  } catch (...) {  // NOLINT(bugprone-empty-catch): the corruption is the error worth reporting
  }
  throw_error(errc::corrupt, "sem_buffer", sems_->object(), what);
}

// Why a woken process dying cannot strand the others (docs/crash-behaviour.md, "No process waits
// for ever"): every wait here is one semop, and the kernel's update_queue performs a sleeper's
// whole operation (with its SEM_UNDO record) before it wakes it, then goes on trying every other
// sleeper. A process killed right after being woken already holds what it waited for, and its exit
// gives back the undoable part (slot and mutex), which runs the queue again. No baton is ever
// left with a process that must run to pass it on.
bool sem_buffer::do_send(std::span<const std::byte> message, const deadline& d) {
  // A free slot and the mutex in one semop: we hold both or neither. Both are undoable, so a
  // SIGKILL before the commit gives both back; `busy` tells the next holder to check the indices.
  if (!lock(sem_empty, d)) return false;
  const std::initializer_list<semaphore_set::op> release = {{sem_empty, 1, true}, {sem_mutex, 1, true}, {sem_busy, -1, false}};
  const std::uint32_t ring = 2 * static_cast<std::uint32_t>(slots_);
  const std::uint32_t head = indices_[0], tail = indices_[1];
  if (head >= ring || tail >= ring) {
    corrupt("indices out of range: head=" + std::to_string(head) + " tail=" + std::to_string(tail) +
                " slots=" + std::to_string(slots_),
            release);
  }
  const std::uint32_t count = (tail + ring - head) % ring;
  if (count >= slots_) corrupt("no free slot although one was reserved", release);
  cross_check(false, count, release);
  std::byte* slot = seg_->payload() + (tail % slots_) * slot_size_;
  const auto len = static_cast<std::uint32_t>(message.size());
  std::memcpy(slot, &len, sizeof len);
  if (!message.empty()) std::memcpy(slot + length_bytes, message.data(), message.size());
  indices_[1] = (tail + 1) % ring;
  // The commit, one atomic semop: cancel the undo of our empty unit (+1 undoable, -1 not), publish the
  // message (full +1), release the mutex and lower busy.
  sems_->apply({{sem_empty, 1, true}, {sem_empty, -1, false}, {sem_full, 1, false}, {sem_mutex, 1, true}, {sem_busy, -1, false}},
               deadline::now());
  return true;
}

bool sem_buffer::do_receive(std::vector<std::byte>& out, const deadline& d) {
  if (!lock(sem_full, d)) return false;
  const std::initializer_list<semaphore_set::op> release = {{sem_full, 1, true}, {sem_mutex, 1, true}, {sem_busy, -1, false}};
  const std::uint32_t ring = 2 * static_cast<std::uint32_t>(slots_);
  const std::uint32_t head = indices_[0], tail = indices_[1];
  if (head >= ring || tail >= ring) {
    corrupt("indices out of range: head=" + std::to_string(head) + " tail=" + std::to_string(tail) +
                " slots=" + std::to_string(slots_),
            release);
  }
  const std::uint32_t count = (tail + ring - head) % ring;
  if (count == 0) {
    // No message although we hold a unit of full: the close token, or corruption.
    if (sems_->value(sem_closed) != 1) corrupt("a unit of full without a message or the close token", release);
    sems_->apply(release, deadline::now());  // give the token back for the other receivers
    throw_error(errc::closed, "receive", name_, "sender closed the channel and it is drained");
  }
  cross_check(true, count, release);
  const std::byte* slot = seg_->payload() + (head % slots_) * slot_size_;
  std::uint32_t len = 0;
  std::memcpy(&len, slot, sizeof len);
  if (len > slot_size_ - length_bytes) {
    corrupt("slot " + std::to_string(head % slots_) + " holds length " + std::to_string(len) + " > " +
                std::to_string(slot_size_ - length_bytes),
            release);
  }
  try {
    out.resize(len);
  } catch (...) {
    sems_->apply(release, deadline::now());
    throw;
  }
  if (len != 0) std::memcpy(out.data(), slot + length_bytes, len);
  indices_[0] = (head + 1) % ring;
  sems_->apply({{sem_full, 1, true}, {sem_full, -1, false}, {sem_empty, 1, false}, {sem_mutex, 1, true}, {sem_busy, -1, false}},
               deadline::now());
  return true;
}

void sem_buffer::clear_closed() {
  sems_->apply({{sem_mutex, -1, true}});
  const auto v = sems_->values();
  if (v[sem_closed] == 0) {
    sems_->apply({{sem_mutex, 1, true}}, deadline::now());
  } else if (!sems_->apply({{sem_closed, -1, false}, {sem_full, -1, false}, {sem_mutex, 1, true}}, deadline::now())) {
    corrupt("closed flag set without its token in full", {{sem_mutex, 1, true}});
  }
  closed_ = false;
}

void sem_buffer::close() {
  if (role_ != role::sender || closed_) return;
  sems_->apply({{sem_mutex, -1, true}});
  const auto v = sems_->values();
  if (v[sem_closed] == 0) {
    // The token: full counts one more than there are messages, so blocked receivers wake.
    sems_->apply({{sem_closed, 1, false}, {sem_full, 1, false}, {sem_mutex, 1, true}}, deadline::now());
  } else {
    sems_->apply({{sem_mutex, 1, true}}, deadline::now());
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
  if (::unlink(key_file_.c_str()) == -1 && errno != ENOENT) ipc::throw_errno(errno, "unlink", key_file_);
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
