#include <ipc/error.hpp>
#include <ipc/shm_ring.hpp>

#include "detail/channel_factories.hpp"
#include "detail/futex.hpp"
#include "detail/layout_header.hpp"
#include "detail/reserve_pages.hpp"
#include "detail/sysv_key.hpp"

#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <new>
#include <thread>

namespace bip = boost::interprocess;

namespace ipc {
namespace detail {

inline constexpr std::uint32_t ring_magic = 0x52435049;  // "IPCR" in memory order
inline constexpr std::uint32_t ring_version = 1;
inline constexpr std::uint32_t wrap_marker = 0xffffffffU;
inline constexpr std::uint64_t record_header = 8;
inline constexpr int max_holders = 7;
inline constexpr std::uint64_t min_capacity = 4096;
inline constexpr std::uint64_t max_capacity = std::uint64_t{1} << 30;

// One process attached in a role. start_time (clock ticks since boot, /proc/PID/stat field 22)
// tells a live process from a later one that reused the pid.
// A fork-pending slot is reserved by the parent just before fork() (pid = the parent's) and turned
// into the child's own slot by the child, so the role never looks abandoned in between.
struct holder_slot {
  std::atomic<std::int32_t> pid;
  std::atomic<std::uint32_t> fork_pending;
  std::atomic<std::uint64_t> start_time;
};

// Who holds one role. The holders change only under `lock` (a pid, taken over when it is dead);
// `closed` is set when the last holder leaves or is found dead, and cleared by the next attach.
struct alignas(64) role_block {
  std::atomic<std::int32_t> lock;
  std::atomic<std::uint32_t> closed;
  std::atomic<std::uint32_t> attaches;
  std::uint32_t reserved;
  holder_slot holders[max_holders];
};

// The whole layout: this header, then `capacity` bytes of records. head and tail count bytes
// since creation (never wrapped); position = index & (capacity - 1).
struct ring_header {
  layout_header base;
  std::uint64_t capacity;
  std::uint64_t max_message;
  alignas(64) std::atomic<std::uint64_t> head;  // written by the sender only
  alignas(64) std::atomic<std::uint64_t> tail;  // written by the receiver only
  alignas(64) std::atomic<std::uint32_t> data_seq;           // futex: bumped when records were added
  std::atomic<std::uint32_t> receiver_sleeping;              // 1 while the receiver may sleep on data_seq
  alignas(64) std::atomic<std::uint32_t> space_seq;          // futex: bumped when space was freed
  std::atomic<std::uint32_t> sender_wants;                   // bytes the sleeping sender needs (0: awake)
  role_block sender;
  role_block receiver;
};
static_assert(sizeof(ring_header) % 64 == 0);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic<std::int32_t>::is_always_lock_free);

struct shm_mapping {
  bip::shared_memory_object shm;
  bip::mapped_region region;
};

namespace {

std::string shm_path(std::string_view name) { return "/dev/shm/" + shm_ring::shm_name(name); }

[[noreturn]] void rethrow_boost(const bip::interprocess_exception& e, std::string_view call,
                                std::string_view object) {
  int err = e.get_native_error();
  if (err == 0) {
    switch (e.get_error_code()) {
      case bip::already_exists_error: err = EEXIST; break;
      case bip::not_found_error: err = ENOENT; break;
      case bip::security_error: err = EACCES; break;
      case bip::out_of_memory_error: err = ENOMEM; break;
      default: err = EIO; break;
    }
  }
  throw_errno(err, call, object);
}

constexpr std::uint64_t round8(std::uint64_t n) noexcept { return (n + 7) & ~std::uint64_t{7}; }

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::atomic_signal_fence(std::memory_order_seq_cst);
#endif
}

// Calls ready() while spinning for about 20 µs, then yields a few times. Cheap when the peer is
// running on the other core; the caller sleeps on the futex afterwards.
template <typename F>
bool spin_until(F&& ready) {
  using clock = std::chrono::steady_clock;
  const auto stop = clock::now() + std::chrono::microseconds(20);
  for (unsigned i = 1;; ++i) {
    cpu_relax();
    if (ready()) return true;
    if ((i & 31U) == 0 && clock::now() >= stop) break;
  }
  for (int i = 0; i < 4; ++i) {
    ::sched_yield();
    if (ready()) return true;
  }
  return false;
}

struct proc_status {
  bool exists = false;
  bool zombie = false;
  std::uint64_t start_time = 0;
};

// Reads state and start time from /proc/PID/stat without allocating (also used right after fork).
// exists=false when /proc has no such entry; falls back to kill(pid, 0) when /proc is unreadable.
proc_status read_proc(pid_t pid) noexcept {
  proc_status st;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    st.exists = !(::kill(pid, 0) == -1 && errno == ESRCH);
    return st;
  }
  char buf[1024];
  ssize_t n;
  do {
    n = ::read(fd, buf, sizeof buf - 1);
  } while (n < 0 && errno == EINTR);
  ::close(fd);
  if (n <= 0) return st;  // the process went away between open and read
  buf[n] = '\0';
  st.exists = true;
  // "pid (comm) S ppid ..." — comm may hold spaces and parentheses, so parse after the last ')'.
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr) return st;
  ++p;
  int field = 2;
  while (*p != '\0') {
    while (*p == ' ') ++p;
    if (*p == '\0') break;
    ++field;
    if (field == 3) st.zombie = (*p == 'Z' || *p == 'X' || *p == 'x');
    if (field == 22) {
      st.start_time = std::strtoull(p, nullptr, 10);
      break;
    }
    while (*p != ' ' && *p != '\0') ++p;
  }
  return st;
}

// The segment's identity, to find it in /proc/PID/maps.
struct segment_id {
  std::uint64_t dev = 0;
  std::uint64_t ino = 0;
};

// Whether pid still maps the segment. After fork+exec the child keeps its pid and start time but
// not the mapping: it must not count as a holder. True when maps cannot be read (benefit of doubt).
bool maps_segment(pid_t pid, const segment_id& seg) noexcept {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/maps", static_cast<int>(pid));
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno != ENOENT;
  // Lines: "start-end perms offset major:minor inode path". Read in chunks, keep a partial line.
  char buf[8192];
  std::size_t have = 0;
  bool found = false, read_any = false;
  for (;;) {
    ssize_t n = ::read(fd, buf + have, sizeof buf - 1 - have);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    read_any = true;
    have += static_cast<std::size_t>(n);
    buf[have] = '\0';
    char* line = buf;
    char* nl;
    while ((nl = std::strchr(line, '\n')) != nullptr) {
      *nl = '\0';
      unsigned maj = 0, min = 0;
      unsigned long long ino = 0;
      if (std::sscanf(line, "%*s %*s %*s %x:%x %llu", &maj, &min, &ino) == 3 && ino == seg.ino &&
          ::makedev(maj, min) == seg.dev) {
        found = true;
        break;
      }
      line = nl + 1;
    }
    if (found) break;
    have = static_cast<std::size_t>(buf + have - line);
    if (have == sizeof buf - 1) have = 0;  // an absurdly long line: drop it
    std::memmove(buf, line, have);
  }
  ::close(fd);
  return found || !read_any;
}

bool alive(pid_t pid, std::uint64_t start_time) noexcept {
  if (pid <= 0) return false;
  auto st = read_proc(pid);
  if (!st.exists || st.zombie) return false;
  return start_time == 0 || st.start_time == 0 || st.start_time == start_time;
}

// The role lock: a pid in shared memory. Held for a few instructions; a dead holder's lock is
// taken over. Throws EBUSY after 2 s (a live holder stopped inside, e.g. by SIGSTOP).
class role_lock {
 public:
  role_lock(role_block& b, pid_t me, std::string_view object) : b_(b), me_(me) {
    const auto give_up = deadline::in(std::chrono::seconds(2));
    for (unsigned i = 0;; ++i) {
      std::int32_t owner = 0;
      if (b_.lock.compare_exchange_strong(owner, me_, std::memory_order_acquire)) return;
      if (owner != 0 && !alive(owner, 0) &&
          b_.lock.compare_exchange_strong(owner, me_, std::memory_order_acquire)) {
        return;
      }
      if (give_up.expired()) {
        throw_errno(EBUSY, "lock", std::string(object) + " role lock held by pid " + std::to_string(owner));
      }
      if (i < 64) {
        cpu_relax();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
    }
  }
  ~role_lock() { b_.lock.store(0, std::memory_order_release); }
  role_lock(const role_lock&) = delete;
  role_lock& operator=(const role_lock&) = delete;

 private:
  role_block& b_;
  pid_t me_;
};

// Under the lock: drops dead holders; returns the first live one (0 if none). Sets closed when
// the last holder was found dead.
pid_t reap_locked(role_block& b, const segment_id& seg) noexcept {
  pid_t live = 0;
  bool reaped = false;
  for (auto& h : b.holders) {
    pid_t p = h.pid.load(std::memory_order_relaxed);
    if (p == 0) continue;
    if (alive(p, h.start_time.load(std::memory_order_relaxed)) && maps_segment(p, seg)) {
      if (live == 0) live = p;
    } else {
      h.pid.store(0, std::memory_order_relaxed);
      reaped = true;
    }
  }
  if (reaped && live == 0) b.closed.store(1, std::memory_order_release);
  return live;
}

bool add_locked(role_block& b, pid_t pid, std::uint64_t start_time, bool fork_pending = false) noexcept {
  for (auto& h : b.holders) {
    if (h.pid.load(std::memory_order_relaxed) == 0) {
      h.start_time.store(start_time, std::memory_order_relaxed);
      h.fork_pending.store(fork_pending ? 1 : 0, std::memory_order_relaxed);
      h.pid.store(pid, std::memory_order_relaxed);
      b.closed.store(0, std::memory_order_release);
      b.attaches.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
  }
  return false;
}

// Under the lock: the slot of pid (its own, or a fork-pending one it reserved), or nullptr.
holder_slot* find_locked(role_block& b, pid_t pid, bool fork_pending) noexcept {
  for (auto& h : b.holders) {
    if (h.pid.load(std::memory_order_relaxed) == pid &&
        (h.fork_pending.load(std::memory_order_relaxed) != 0) == fork_pending) {
      return &h;
    }
  }
  return nullptr;
}

// Under the lock: removes pid's own slot; sets closed when nobody is left.
void remove_locked(role_block& b, pid_t pid) noexcept {
  holder_slot* h = find_locked(b, pid, false);
  if (h == nullptr) return;
  h->pid.store(0, std::memory_order_relaxed);
  for (auto& o : b.holders) {
    if (o.pid.load(std::memory_order_relaxed) != 0) return;
  }
  b.closed.store(1, std::memory_order_release);
}

}  // namespace

}  // namespace detail

// Every live endpoint of this process, so that a fork() child is registered as a holder of the
// roles it inherited: the child may be the one that keeps using them (channel_pair tests, the
// producer that forks its consumer), and it must count as alive while it does.
struct shm_ring_fork_registry {
  std::mutex mutex;
  std::vector<shm_ring*> rings;

  static shm_ring_fork_registry& get() {
    static shm_ring_fork_registry* r = [] {
      auto* reg = new shm_ring_fork_registry;  // never destroyed: atfork handlers outlive statics
      // errno is cleared before fork so the parent handler can tell a failed fork (glibc runs
      // parent handlers then too) and take back the slots it reserved for a child that never was.
      ::pthread_atfork(
          [] {
            auto& g = get();
            g.mutex.lock();
            for (auto* ring : g.rings) ring->on_fork(shm_ring::fork_step::prepare);
            errno = 0;
          },
          [] {
            auto& g = get();
            const int err = errno;
            if (err != 0) {
              for (auto* ring : g.rings) ring->on_fork(shm_ring::fork_step::failed);
            }
            g.mutex.unlock();
            errno = err;
          },
          [] {
            auto& g = get();
            for (auto* ring : g.rings) ring->on_fork(shm_ring::fork_step::child);
            g.mutex.unlock();
          });
      return reg;
    }();
    return *r;
  }
  static void add(shm_ring* ring) {
    auto& g = get();
    std::lock_guard lock(g.mutex);
    g.rings.push_back(ring);
  }
  static void erase(shm_ring* ring) noexcept {
    auto& g = get();
    std::lock_guard lock(g.mutex);
    g.rings.erase(std::remove(g.rings.begin(), g.rings.end(), ring), g.rings.end());
  }
};

namespace {

detail::role_block& block_of(detail::ring_header& h, role r) noexcept {
  return r == role::sender ? h.sender : h.receiver;
}
const char* role_name(role r) noexcept { return r == role::sender ? "sender" : "receiver"; }

// Whether the peer role is gone for good: it was attached once and now nobody holds it, or every
// holder is dead. A role never attached is not gone (the receiver may start first). The /proc
// probes run at most every 10 ms so that a polling try_receive stays cheap.
bool peer_gone(detail::role_block& b, const detail::segment_id& seg, pid_t me, std::string_view object,
               std::chrono::steady_clock::time_point& next_probe) {
  if (b.closed.load(std::memory_order_acquire) != 0) return true;
  const auto now = std::chrono::steady_clock::now();
  if (now < next_probe) return false;
  next_probe = now + std::chrono::milliseconds(10);
  bool any = false;
  for (auto& h : b.holders) {
    pid_t p = h.pid.load(std::memory_order_relaxed);
    if (p == 0) continue;
    any = true;
    if (detail::alive(p, h.start_time.load(std::memory_order_relaxed)) && detail::maps_segment(p, seg)) {
      return false;
    }
  }
  if (!any) return false;
  detail::role_lock lock(b, me, object);
  detail::reap_locked(b, seg);
  return b.closed.load(std::memory_order_acquire) != 0;
}

}  // namespace

std::string shm_ring::shm_name(std::string_view name) { return "libipc." + std::string(name); }

shm_ring::shm_ring(std::string_view name, role r, const shm_ring_options& options)
    : channel("shm:" + std::string(name), 0), base_name_(name), role_(r) {
  {
    channel_uri u;
    u.text = name_;
    u.scheme = "shm";
    u.name = base_name_;
    u.require_plain_name();
  }
  if (options.open != open_mode::open_only) detail::check_new_mode(options.mode, "shm_open", name_);
  const std::string path = detail::shm_path(base_name_);
  const std::string shm = shm_name(base_name_);
  auto m = std::make_unique<detail::shm_mapping>();
  bool created = false;
  std::uint64_t total = 0;
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
    total = sizeof(detail::ring_header) + cap;
  }
  // open_or_create: try to create; if it exists, open; if it vanished in between, try again.
  for (int attempt = 0; !created; ++attempt) {
    if (options.open != open_mode::open_only) {
      try {
        m->shm = bip::shared_memory_object(bip::create_only, shm.c_str(), bip::read_write,
                                           bip::permissions(static_cast<int>(options.mode)));
        created = true;
        break;
      } catch (const bip::interprocess_exception& e) {
        if (options.open == open_mode::create_only || e.get_native_error() != EEXIST) {
          detail::rethrow_boost(e, "shm_open(create_only)", path);
        }
      }
    }
    try {
      m->shm = bip::shared_memory_object(bip::open_only, shm.c_str(), bip::read_write);
      break;
    } catch (const bip::interprocess_exception& e) {
      if (options.open == open_mode::open_only || e.get_native_error() != ENOENT || attempt >= 100) {
        detail::rethrow_boost(e, "shm_open(open_only)", path);
      }
    }
  }
  const int fd = m->shm.get_mapping_handle().handle;
  {
    struct stat st {};
    detail::check_unix(::fstat(fd, &st), "fstat", path);
    dev_ = st.st_dev;
    ino_ = st.st_ino;
  }

  if (created) {
    // Nothing half-made stays behind: any failure unlinks the new segment.
    try {
      detail::reserve_pages(fd, static_cast<std::size_t>(total), path);  // ENOSPC now, never SIGBUS later
      m->region = bip::mapped_region(m->shm, bip::read_write, 0, total);
      auto* h = static_cast<detail::ring_header*>(m->region.get_address());
      h->capacity = options.capacity;
      h->max_message = options.max_message;
      // Everything else starts as the zero bytes posix_fallocate gave us (head = tail = 0, no holders).
      detail::publish_header(&h->base, detail::ring_magic, detail::ring_version, sizeof(detail::ring_header),
                             total);
    } catch (const bip::interprocess_exception& e) {
      bip::shared_memory_object::remove(shm.c_str());
      detail::rethrow_boost(e, "mmap", path);
    } catch (...) {
      bip::shared_memory_object::remove(shm.c_str());
      throw;
    }
  } else {
    struct stat st {};
    detail::check_unix(::fstat(fd, &st), "fstat", path);
    detail::check_owner(st.st_uid, st.st_mode, "shm_open", path);
    // A concurrent creator may not have sized it yet: wait (bounded) for a size.
    const auto d = deadline::in(std::chrono::seconds(2));
    while (st.st_size == 0) {
      if (d.expired()) throw_error(errc::incompatible, "attach", name_, "segment is still empty after 2 s");
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      detail::check_unix(::fstat(fd, &st), "fstat", path);
    }
    try {
      m->region = bip::mapped_region(m->shm, bip::read_write);
    } catch (const bip::interprocess_exception& e) {
      detail::rethrow_boost(e, "mmap", path);
    }
    auto* h = static_cast<detail::ring_header*>(m->region.get_address());
    const std::size_t mapped = m->region.get_size();
    detail::validate_header(&h->base, mapped, detail::ring_magic, detail::ring_version, sizeof(detail::ring_header),
                            d, name_);
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
  }

  hdr_ = static_cast<detail::ring_header*>(m->region.get_address());
  data_ = static_cast<std::byte*>(m->region.get_address()) + sizeof(detail::ring_header);
  capacity_ = hdr_->capacity;
  mask_ = capacity_ - 1;
  max_message_size_ = static_cast<std::size_t>(hdr_->max_message);
  map_ = std::move(m);

  const std::uint64_t head = hdr_->head.load(std::memory_order_acquire);
  const std::uint64_t tail = hdr_->tail.load(std::memory_order_acquire);
  check_indices(head, tail);
  cached_peer_index_ = r == role::sender ? tail : head;

  pid_ = ::getpid();
  const auto me = detail::read_proc(pid_);
  auto& mine = block_of(*hdr_, r);
  {
    detail::role_lock lock(mine, pid_, name_);
    if (pid_t holder = detail::reap_locked(mine, {dev_, ino_})) {
      detail::throw_errno(EBUSY, std::string("attach ") + role_name(r),
                          name_ + ": the " + role_name(r) + " role is held by pid " + std::to_string(holder));
    }
    detail::add_locked(mine, pid_, me.start_time);
  }
  shm_ring_fork_registry::add(this);
}

shm_ring::~shm_ring() {
  shm_ring_fork_registry::erase(this);
  if (hdr_ == nullptr) return;
  try {
    auto& mine = block_of(*hdr_, role_);
    bool last = false;
    {
      detail::role_lock lock(mine, pid_, name_);
      detail::remove_locked(mine, pid_);
      last = mine.closed.load(std::memory_order_relaxed) != 0;
    }
    if (last) {
      // Wake the peer wherever it sleeps so it sees `closed` now, not at its next liveness check.
      auto& seq = role_ == role::sender ? hdr_->data_seq : hdr_->space_seq;
      seq.fetch_add(1, std::memory_order_release);
      detail::futex_wake(seq, INT_MAX, name_);
    }
  } catch (...) {
    // A stuck role lock (live holder stopped for 2 s): the peer falls back on its liveness checks.
  }
}

void shm_ring::on_fork(fork_step step) noexcept {
  if (hdr_ == nullptr) return;
  auto& mine = block_of(*hdr_, role_);
  try {
    switch (step) {
      case fork_step::prepare: {
        detail::role_lock lock(mine, pid_, name_);
        const auto* own = detail::find_locked(mine, pid_, false);
        detail::add_locked(mine, pid_, own ? own->start_time.load(std::memory_order_relaxed) : 0, true);
        break;
      }
      case fork_step::failed: {
        detail::role_lock lock(mine, pid_, name_);
        if (auto* h = detail::find_locked(mine, pid_, true)) h->pid.store(0, std::memory_order_relaxed);
        break;
      }
      case fork_step::child: {
        const pid_t child = ::getpid();
        const auto st = detail::read_proc(child);
        detail::role_lock lock(mine, child, name_);
        if (auto* h = detail::find_locked(mine, pid_, true)) {
          h->start_time.store(st.start_time, std::memory_order_relaxed);
          h->fork_pending.store(0, std::memory_order_relaxed);
          h->pid.store(child, std::memory_order_relaxed);
        } else {
          detail::add_locked(mine, child, st.start_time);
        }
        pid_ = child;
        break;
      }
    }
  } catch (...) {
    // A stuck role lock: this handle still works; only the liveness bookkeeping is missing.
    if (step == fork_step::child) pid_ = ::getpid();
  }
}

channel_limits shm_ring::limits() const {
  channel_limits l;
  l.max_message_size = max_message_size_;
  l.capacity_bytes = static_cast<std::size_t>(capacity_);
  return l;
}

void shm_ring::remove() { remove(base_name_); }

bool shm_ring::remove(std::string_view name) {
  const std::string shm = shm_name(name);
  errno = 0;
  if (bip::shared_memory_object::remove(shm.c_str())) return true;
  if (errno == ENOENT) return false;
  detail::throw_errno(errno != 0 ? errno : EIO, "shm_unlink", detail::shm_path(name));
}

void shm_ring::corrupt(const std::string& what) const { throw_error(errc::corrupt, "shm_ring", name_, what); }

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
  auto& h = *hdr_;
  const std::uint64_t len = message.size();
  const std::uint64_t rec = detail::record_header + detail::round8(len);
  const std::uint64_t head = h.head.load(std::memory_order_relaxed);
  if ((head & 7U) != 0) check_indices(head, cached_peer_index_);
  std::uint64_t pos = head & mask_;
  const std::uint64_t to_end = capacity_ - pos;
  const std::uint64_t needed = rec + (to_end < rec ? to_end : 0);
  const std::uint64_t used = head - cached_peer_index_;
  if (used > capacity_ || capacity_ - used < needed) {
    if (!wait_for_space(head, needed, d)) return false;
  }
  if (to_end < rec) {
    std::memcpy(data_ + pos, &detail::wrap_marker, sizeof detail::wrap_marker);
    pos = 0;
  }
  const auto len32 = static_cast<std::uint32_t>(len);
  const std::uint32_t zero = 0;
  std::memcpy(data_ + pos, &len32, sizeof len32);
  std::memcpy(data_ + pos + 4, &zero, sizeof zero);
  if (len != 0) std::memcpy(data_ + pos + detail::record_header, message.data(), len);
  h.head.store(head + needed, std::memory_order_release);
  // Dekker with the receiver: it sets receiver_sleeping, then re-reads head; we publish head,
  // then read receiver_sleeping. The fences make sure at least one of us sees the other.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (h.receiver_sleeping.load(std::memory_order_relaxed) != 0) {
    h.data_seq.fetch_add(1, std::memory_order_release);
    detail::futex_wake(h.data_seq, 1, name_);
  }
  return true;
}

bool shm_ring::wait_for_space(std::uint64_t head, std::uint64_t needed, const deadline& d) {
  auto& h = *hdr_;
  auto enough = [&] {
    const std::uint64_t tail = h.tail.load(std::memory_order_acquire);
    check_indices(head, tail);
    cached_peer_index_ = tail;
    return capacity_ - (head - tail) >= needed;
  };
  if (enough()) return true;
  auto gone = [&] { return peer_gone(h.receiver, {dev_, ino_}, pid_, name_, next_liveness_probe_); };
  if (d.expired()) {
    if (gone()) throw_error(errc::closed, "send", name_, "the receiver is gone and the ring is full");
    return false;
  }
  if (detail::spin_until(enough)) return true;
  for (;;) {
    if (gone()) throw_error(errc::closed, "send", name_, "the receiver is gone and the ring is full");
    const std::uint32_t seq = h.space_seq.load(std::memory_order_acquire);
    h.sender_wants.store(static_cast<std::uint32_t>(needed), std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (enough()) {
      h.sender_wants.store(0, std::memory_order_relaxed);
      return true;
    }
    // Sleep in slices so a receiver that died without a word is noticed within ~100 ms.
    const auto slice = std::min(d.time_point(), deadline::clock::now() + std::chrono::milliseconds(100));
    detail::futex_wait(h.space_seq, seq, deadline::at(slice), name_);
    h.sender_wants.store(0, std::memory_order_relaxed);
    if (enough()) return true;
    if (d.expired()) return false;
  }
}

bool shm_ring::do_receive(std::vector<std::byte>& out, const deadline& d) {
  auto& h = *hdr_;
  std::uint64_t tail = h.tail.load(std::memory_order_relaxed);
  std::uint64_t head = cached_peer_index_;
  if (head == tail || head - tail > capacity_ || ((head | tail) & 7U) != 0) {
    if (!wait_for_data(tail, d)) return false;
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
  const std::uint64_t rec = detail::record_header + detail::round8(len);
  if (rec > avail || pos + rec > capacity_) {
    corrupt("record of " + std::to_string(len) + " bytes at index " + std::to_string(tail) +
            " runs past the head or the end of the ring");
  }
  out.resize(len);
  if (len != 0) std::memcpy(out.data(), data_ + pos + detail::record_header, len);
  const std::uint64_t new_tail = tail + rec;
  h.tail.store(new_tail, std::memory_order_release);
  // Dekker with the sender (see do_send); it sleeps only until `sender_wants` bytes are free.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (const std::uint32_t wants = h.sender_wants.load(std::memory_order_relaxed); wants != 0) {
    const std::uint64_t used = h.head.load(std::memory_order_relaxed) - new_tail;
    if (used > capacity_ || capacity_ - used >= wants) {
      h.space_seq.fetch_add(1, std::memory_order_release);
      detail::futex_wake(h.space_seq, 1, name_);
    }
  }
  return true;
}

bool shm_ring::wait_for_data(std::uint64_t tail, const deadline& d) {
  auto& h = *hdr_;
  auto ready = [&] {
    const std::uint64_t head = h.head.load(std::memory_order_acquire);
    check_indices(head, tail);
    cached_peer_index_ = head;
    return head != tail;
  };
  if (ready()) return true;
  // `closed` is published after the sender's last record, so re-check the ring once after it.
  auto drained_and_gone = [&] { return peer_gone(h.sender, {dev_, ino_}, pid_, name_, next_liveness_probe_) && !ready(); };
  if (d.expired()) {
    if (drained_and_gone()) throw_error(errc::closed, "receive", name_, "the sender is gone and the ring is empty");
    return false;
  }
  if (detail::spin_until(ready)) return true;
  for (;;) {
    if (drained_and_gone()) throw_error(errc::closed, "receive", name_, "the sender is gone and the ring is empty");
    if (cached_peer_index_ != tail) return true;
    const std::uint32_t seq = h.data_seq.load(std::memory_order_acquire);
    h.receiver_sleeping.store(1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (ready()) {
      h.receiver_sleeping.store(0, std::memory_order_relaxed);
      return true;
    }
    const auto slice = std::min(d.time_point(), deadline::clock::now() + std::chrono::milliseconds(100));
    detail::futex_wait(h.data_seq, seq, deadline::at(slice), name_);
    h.receiver_sleeping.store(0, std::memory_order_relaxed);
    if (ready()) return true;
    if (d.expired()) return false;
  }
}

namespace detail {

std::unique_ptr<channel> open_shm_uri(const channel_uri& uri, role r) {
  uri.allow_only({"capacity", "max_message", "mode", "open"});
  uri.require_plain_name();
  shm_ring_options o;
  o.capacity = uri.size_option("capacity", o.capacity);
  o.max_message = uri.size_option("max_message", o.max_message);
  o.mode = uri.mode_option("mode", o.mode);
  o.open = uri.open_option(o.open);
  return std::make_unique<shm_ring>(uri.name, r, o);
}

}  // namespace detail
}  // namespace ipc

// Layout v1 offsets, relied on by docs/shm_ring.md and the corruption tests that edit a raw mapping.
static_assert(offsetof(ipc::detail::ring_header, capacity) == 40);
static_assert(offsetof(ipc::detail::ring_header, head) == 64);
static_assert(offsetof(ipc::detail::ring_header, tail) == 128);
static_assert(sizeof(ipc::detail::ring_header) == 576);
