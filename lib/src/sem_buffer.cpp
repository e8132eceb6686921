#include <ipc/sem_buffer.hpp>

#include <ipc/error.hpp>

#include "detail/channel_factories.hpp"
#include "detail/layout_header.hpp"
#include "detail/sysv_key.hpp"

#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ipc {
namespace {

constexpr std::uint32_t sem_buffer_magic = 0x53454d42;  // "SEMB"
constexpr std::uint32_t sem_buffer_version = 1;

// The segment: this header, then `slots` slots of `slot_size` bytes (u32 length + payload).
// The indices are NOT here: the read index and the counts live in the semaphore set, so that every
// state change commits in one atomic semop (see docs/semaphore-shm.md, "crash safety").
struct sem_buffer_header {
  detail::layout_header base;
  std::uint32_t slots;
  std::uint32_t slot_size;
};
constexpr std::size_t header_bytes = (sizeof(sem_buffer_header) + 63) / 64 * 64;

using op = semaphore_set::op;

// What each critical section took (all with undo), i.e. what a failure inside it gives back.
constexpr op taken_by_send[] = {{sem_buffer::sem_empty, 1, true}, {sem_buffer::sem_mutex, 1, true}};
constexpr op taken_by_receive[] = {{sem_buffer::sem_full, 1, true}, {sem_buffer::sem_mutex, 1, true}};
constexpr op taken_alone[] = {{sem_buffer::sem_mutex, 1, true}};
constexpr op lock_alone_op[] = {{sem_buffer::sem_mutex, -1, true}};
constexpr auto lock_wait = std::chrono::seconds(5);

void check_geometry(std::size_t slots, std::size_t slot_size, const std::string& object) {
  if (slots < 1 || slots > sem_buffer::max_slots) {
    detail::throw_errno(EINVAL, "sem_buffer(slots=" + std::to_string(slots) + ", allowed 1.." +
                                    std::to_string(sem_buffer::max_slots) + ")",
                        object);
  }
  if (slot_size < sem_buffer::min_slot_size || slot_size > sem_buffer::max_slot_size) {
    detail::throw_errno(EINVAL, "sem_buffer(slot_size=" + std::to_string(slot_size) + ", allowed " +
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

sem_buffer::state sem_buffer::read_state(bool receiving) {
  // Called holding the mutex. Receivers and senders take `full`/`empty` atomically with the mutex,
  // so here full == messages + closed exactly (minus the unit a receiver holds), and mutex == 0.
  const std::span<const op> held = receiving ? std::span<const op>(taken_by_receive) : std::span<const op>(taken_by_send);
  std::vector<unsigned short> v;
  try {
    v = sems_->values();
  } catch (const std::system_error& e) {
    failed_holding(e, "semctl(GETALL)", held);
  }
  const std::size_t closed = v[sem_closed];
  const std::size_t full = v[sem_full] + (receiving ? 1U : 0U);
  const std::size_t head = v[sem_head];
  if (closed > 1 || head >= slots_ || full < closed || full - closed > slots_ || v[sem_mutex] != 0) {
    corrupt("semaphores out of range: head=" + std::to_string(head) + " full=" + std::to_string(full) +
                " closed=" + std::to_string(closed) + " mutex=" + std::to_string(v[sem_mutex]) +
                " (held: 0) slots=" + std::to_string(slots_),
            held);
  }
  return {head, full - closed, closed};
}

void sem_buffer::give_back(std::span<const semaphore_set::op> held) noexcept {
  try {
    sems_->apply(held, deadline::now());
    return;
  } catch (...) {  // NOLINT(bugprone-empty-catch): e.g. ERANGE on a count out of range; the mutex alone below
  }
  // Whatever else we took stays with our undo adjustment (given back when we exit); the mutex must go now.
  try {
    sems_->apply({{sem_mutex, 1, true}}, deadline::now());
  } catch (...) {  // NOLINT(bugprone-empty-catch): a removed set holds nothing any more
  }
}

void sem_buffer::corrupt(const std::string& what, std::span<const semaphore_set::op> held) {
  give_back(held);
  throw_error(errc::corrupt, "sem_buffer", sems_->object(), what);
}

void sem_buffer::failed_holding(const std::system_error& e, std::string_view step,
                                std::span<const semaphore_set::op> held) {
  // A removed set (errc::closed) holds no mutex any more: report it as it is.
  if (e.code() == errc::closed) throw e;
  corrupt(std::string(step) + " failed while holding the index mutex: " + e.what(), held);
}

void sem_buffer::release(std::span<const semaphore_set::op> ops, std::string_view step,
                         std::span<const semaphore_set::op> held) {
  try {
    sems_->apply(ops, deadline::now());
  } catch (const std::system_error& e) {
    failed_holding(e, step, held);
  }
}

bool sem_buffer::do_send(std::span<const std::byte> message, const deadline& d) {
  // Taking a free slot and the mutex in one semop: we hold both or neither. Both are undoable, so a
  // SIGKILL before the commit below gives both back and leaves no trace.
  if (!sems_->apply({{sem_empty, -1, true}, {sem_mutex, -1, true}}, d)) return false;
  const state s = read_state(false);
  if (s.count >= slots_) corrupt("no free slot although one was reserved", taken_by_send);
  const std::size_t tail = (s.head + s.count) % slots_;
  std::byte* slot = seg_->payload() + tail * slot_size_;
  const auto len = static_cast<std::uint32_t>(message.size());
  std::memcpy(slot, &len, sizeof len);
  if (!message.empty()) std::memcpy(slot + length_bytes, message.data(), message.size());
  // The commit, one atomic semop: cancel the undo of our empty unit (+1 undoable, -1 not), publish the
  // message (full +1) and release the mutex. A count driven out of range (ERANGE) fails it whole: then
  // the slot and the mutex are given back and the error is errc::corrupt.
  static constexpr op commit[] = {{sem_empty, 1, true}, {sem_empty, -1, false}, {sem_full, 1, false}, {sem_mutex, 1, true}};
  release(commit, "commit of send (semop)", taken_by_send);
  return true;
}

bool sem_buffer::do_receive(std::vector<std::byte>& out, const deadline& d) {
  if (!sems_->apply({{sem_full, -1, true}, {sem_mutex, -1, true}}, d)) return false;
  const state s = read_state(true);
  if (s.count == 0) {
    // We took the close token, not a message: give it back for the other receivers.
    release(taken_by_receive, "give back of the close token (semop)", taken_by_receive);
    throw_error(errc::closed, "receive", name_, "sender closed the channel and it is drained");
  }
  const std::byte* slot = seg_->payload() + s.head * slot_size_;
  std::uint32_t len = 0;
  std::memcpy(&len, slot, sizeof len);
  if (len > slot_size_ - length_bytes) {
    corrupt("slot " + std::to_string(s.head) + " holds length " + std::to_string(len) + " > " +
                std::to_string(slot_size_ - length_bytes),
            taken_by_receive);
  }
  try {
    out.resize(len);
  } catch (...) {
    give_back(taken_by_receive);
    throw;
  }
  if (len != 0) std::memcpy(out.data(), slot + length_bytes, len);
  const auto advance = static_cast<short>(s.head + 1 == slots_ ? -static_cast<int>(slots_ - 1) : 1);
  const op commit[] = {{sem_full, 1, true},
                       {sem_full, -1, false},
                       {sem_empty, 1, false},
                       {sem_head, advance, false},
                       {sem_mutex, 1, true}};
  release(commit, "commit of receive (semop)", taken_by_receive);
  return true;
}

void sem_buffer::lock_alone(std::string_view step) {
  // The mutex is held for a memcpy at most: one not given back within lock_wait has a stopped holder
  // or a corrupt count, and waiting for ever would only hide that.
  if (!sems_->apply(lock_alone_op, deadline::in(lock_wait))) {
    throw_error(errc::corrupt, "sem_buffer", sems_->object(),
                std::string(step) + ": index mutex not released within " + std::to_string(lock_wait.count()) +
                    " s (a stopped holder, or its count is corrupt: mutex=" +
                    std::to_string(sems_->value(sem_mutex)) + ")");
  }
}

void sem_buffer::clear_closed() {
  lock_alone("clear_closed");
  std::vector<unsigned short> v;
  try {
    v = sems_->values();
  } catch (const std::system_error& e) {
    failed_holding(e, "semctl(GETALL)", taken_alone);
  }
  if (v[sem_closed] == 0) {
    release(taken_alone, "unlock (semop)", taken_alone);
  } else {
    static constexpr op clear[] = {{sem_closed, -1, false}, {sem_full, -1, false}, {sem_mutex, 1, true}};
    bool cleared = false;
    try {
      cleared = sems_->apply(clear, deadline::now());
    } catch (const std::system_error& e) {
      failed_holding(e, "clear of the closed flag (semop)", taken_alone);
    }
    if (!cleared) corrupt("closed flag set without its token in full", taken_alone);
  }
  closed_ = false;
}

void sem_buffer::close() {
  if (role_ != role::sender || closed_) return;
  lock_alone("close");
  std::vector<unsigned short> v;
  try {
    v = sems_->values();
  } catch (const std::system_error& e) {
    failed_holding(e, "semctl(GETALL)", taken_alone);
  }
  if (v[sem_closed] == 0) {
    // The token: full counts one more than there are messages, so blocked receivers wake.
    static constexpr op token[] = {{sem_closed, 1, false}, {sem_full, 1, false}, {sem_mutex, 1, true}};
    release(token, "close (semop)", taken_alone);
  } else {
    release(taken_alone, "unlock (semop)", taken_alone);
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
  if (::unlink(key_file_.c_str()) == -1 && errno != ENOENT) detail::throw_errno(errno, "unlink", key_file_);
}

bool sem_buffer::remove(std::string_view name) {
  const std::string key_file = resolve_name(std::string(name) + ".sembuf").string();
  if (::access(key_file.c_str(), F_OK) == -1 && errno == ENOENT) return false;
  bool removed = false;
  const key_t sem_key = detail::sysv_key(key_file, 'S', false);
  const key_t shm_key = detail::sysv_key(key_file, 'H', false);
  if (int id = ::semget(sem_key, 0, 0); id >= 0) {
    semid_ds ds{};
    detail::check_unix(::semctl(id, 0, IPC_STAT, &ds), "semctl(IPC_STAT)", key_file);
    detail::check_owner(ds.sem_perm.uid, ds.sem_perm.mode, "semctl(IPC_RMID)", key_file);
    detail::check_unix(::semctl(id, 0, IPC_RMID), "semctl(IPC_RMID)", key_file);
    removed = true;
  }
  if (int id = ::shmget(shm_key, 0, 0); id >= 0) {
    shmid_ds ds{};
    detail::check_unix(::shmctl(id, IPC_STAT, &ds), "shmctl(IPC_STAT)", key_file);
    detail::check_owner(ds.shm_perm.uid, ds.shm_perm.mode, "shmctl(IPC_RMID)", key_file);
    detail::check_unix(::shmctl(id, IPC_RMID, nullptr), "shmctl(IPC_RMID)", key_file);
    removed = true;
  }
  if (::unlink(key_file.c_str()) == -1 && errno != ENOENT) detail::throw_errno(errno, "unlink", key_file);
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
