// ipc::barrier: n parties meet; the barrier breaks when a registered process dies.
#include <ipc/named_sync.hpp>

#include <ipc/inspect.hpp>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <string>

namespace ipc {

namespace {

struct party {
  std::int32_t pid;  // 0: free slot
  std::uint32_t handles;
  std::uint64_t start_time;
};

// How often a waiter looks for dead parties: a dead party cannot notify, so waiters poll.
constexpr auto death_poll = std::chrono::milliseconds(50);

}  // namespace

struct barrier::state {
  robust_condition cv;
  std::uint32_t parties;
  std::uint32_t count;       // arrived in this generation
  std::uint32_t generation;  // bumped when the last party arrives (or on reset)
  std::uint32_t broken;      // 0, or 1 once a party died / abort()
  std::int32_t dead_pid;     // the party whose death broke it (0: aborted)
  std::uint32_t reserved;
  party procs[max_processes];
};

barrier::barrier(std::string_view name, std::size_t parties, open_mode mode, const named_options& options)
    : seg_(name, mode, {"barrier", sizeof(state), alignof(state), 0},
           [&](void* at) {
             if (parties == 0 || parties > UINT32_MAX) {
               ipc::throw_errno(EINVAL, "barrier(parties " + std::to_string(parties) + ")", name);
             }
             auto* s = ::new (at) state{};
             robust_condition::create_at(&s->cv);
             s->parties = static_cast<std::uint32_t>(parties);
           },
           options),
      s_(static_cast<state*>(seg_.object())),
      parties_(0) {
  std::unique_lock lk(seg_.lock());
  if (s_->parties == 0 || (parties != 0 && s_->parties != parties)) {
    throw_error(errc::incompatible, "attach", seg_.object_name(),
                "barrier of " + std::to_string(s_->parties) + " parties, expected " + std::to_string(parties));
  }
  parties_ = s_->parties;
  try {
    check_parties_locked(seg_.lock().previous_owner_died());
  } catch (const std::system_error&) {
    // Broken already: this handle may still reset() it, so opening succeeds.
  }
  const pid_t me = ::getpid();
  const std::uint64_t started = ipc::process_identity(me).start_time;
  for (auto& p : s_->procs) {
    if (p.pid == me && p.start_time == started) {
      ++p.handles;
      return;
    }
  }
  for (auto& p : s_->procs) {
    if (p.pid == 0) {
      p = party{me, 1, started};
      return;
    }
  }
  ipc::throw_errno(EUSERS, "barrier(" + std::to_string(max_processes) + " processes hold handles)",
                      seg_.object_name());
}

barrier::~barrier() {
  try {
    std::unique_lock lk(seg_.lock());
    const pid_t me = ::getpid();
    for (auto& p : s_->procs) {
      if (p.pid == me && p.start_time == ipc::process_identity(me).start_time) {
        if (--p.handles == 0) p = party{};
        break;
      }
    }
  } catch (...) {  // NOLINT(bugprone-empty-catch): a destructor cannot report; a stale slot reads as a dead party
  }
}

void barrier::check_parties_locked(bool owner_died) {
  if (s_->broken == 0) {
    if (owner_died) {
      // The previous holder died inside wait/open/close: the counts may be half-updated.
      s_->broken = 1;
      s_->dead_pid = -1;
    }
    for (auto& p : s_->procs) {
      if (s_->broken != 0) break;
      if (p.pid != 0 && !ipc::process_alive(p.pid, p.start_time)) {
        s_->broken = 1;
        s_->dead_pid = p.pid;
        p = party{};
      }
    }
    if (s_->broken != 0) s_->cv.notify_all();
  }
  if (s_->broken != 0) {
    std::string why = s_->dead_pid > 0   ? "barrier is broken: party pid " + std::to_string(s_->dead_pid) + " died"
                      : s_->dead_pid < 0 ? std::string("barrier is broken: a party died holding its lock")
                                         : std::string("barrier is broken: aborted");
    throw_error(errc::closed, "barrier::wait", seg_.object_name(), why);
  }
}

std::size_t barrier::wait() { return *wait_until(deadline::never()); }

std::optional<std::size_t> barrier::wait_until(const deadline& d) {
  std::unique_lock lk(seg_.lock());
  check_parties_locked(seg_.lock().previous_owner_died());
  const std::uint32_t gen = s_->generation;
  const std::size_t index = s_->count++;
  if (s_->count >= s_->parties) {
    s_->count = 0;
    ++s_->generation;
    s_->cv.notify_all();
    return index;
  }
  for (;;) {
    const auto slice = deadline::in(death_poll);
    s_->cv.wait_until(lk, slice.time_point() < d.time_point() ? slice : d);
    if (s_->generation != gen) return index;
    check_parties_locked(seg_.lock().previous_owner_died());
    if (d.expired()) {
      --s_->count;
      return std::nullopt;
    }
  }
}

void barrier::abort() {
  std::unique_lock lk(seg_.lock());
  s_->broken = 1;
  s_->dead_pid = 0;
  s_->cv.notify_all();
}

void barrier::reset() {
  std::unique_lock lk(seg_.lock());
  s_->broken = 0;
  s_->dead_pid = 0;
  s_->count = 0;
  ++s_->generation;
}

bool barrier::broken() const {
  std::unique_lock lk(seg_.lock());
  return s_->broken != 0;
}

std::size_t barrier::waiting() const {
  std::unique_lock lk(seg_.lock());
  return s_->count;
}

bool barrier::remove(std::string_view name, segment_backing backing) {
  return detail::named_segment::remove("barrier", name, backing);
}

}  // namespace ipc
