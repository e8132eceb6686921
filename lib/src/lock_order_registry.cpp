// The lock-order checker's registry: one System V segment per runtime directory
// (runtime_dir()/lock-order.shm), a robust_mutex and fixed tables of edges and names. Every
// process that checks lock order learns into it and checks against it, so an order reversed in
// another process is caught before this one blocks.
#include "detail/lock_order_registry.hpp"

#include "detail/layout_header.hpp"
#include <ipc/inspect.hpp>

#include <ipc/error.hpp>
#include <ipc/shared_memory.hpp>

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

namespace ipc::detail::lock_order_registry {
namespace {

constexpr std::uint32_t magic = 0x49504c4f;  // "IPLO"
constexpr std::uint32_t version = 1;
constexpr std::size_t max_edges = 8192;
constexpr std::size_t max_names = 1024;
constexpr std::size_t name_bytes = 60;
constexpr std::size_t max_users = 256;

struct edge {
  std::uint32_t first;
  std::uint32_t then;
  std::int32_t pid;
  std::uint32_t reserved;
  std::uint64_t start_time;
};

struct name_entry {
  std::uint32_t id;
  char name[name_bytes];
};

// A process that has used the registry (pid 0: free). The last live one to leave removes it.
struct user {
  std::int32_t pid;
  std::uint32_t reserved;
  std::uint64_t start_time;
};

struct registry_header {
  layout_header base;
  robust_mutex lock;       // id 0: the checker never checks its own lock
  std::uint32_t retired;   // set by the last process, under the lock, before it removes the segment
  std::uint32_t edge_count;
  std::uint32_t name_count;
  std::uint32_t reserved;
  edge edges[max_edges];
  name_entry names[max_names];
  user users[max_users];
};
static_assert(std::is_standard_layout_v<registry_header>);

// This process's view. `reg` is set once (per process image: a fork child shares the mapping and
// the state). The segment handle is never destroyed, so the mapping outlives static destruction.
struct local_state {
  std::mutex m;  // attach and pending; held across fork (atfork) so a child never inherits it locked
  std::atomic<registry_header*> reg{nullptr};
  layout_segment* seg = nullptr;  // null for the private (anonymous) fallback
  std::string object;
  // Names described before this process needed the registry: published when it attaches, so a
  // process that never nests locks never creates a registry.
  std::vector<std::pair<std::uint32_t, std::string>> pending;
};

local_state& local() {
  static auto* s = [] {
    auto* st = new local_state;
    ::pthread_atfork([] { local().m.lock(); }, [] { local().m.unlock(); }, [] { local().m.unlock(); });
    return st;
  }();
  return *s;
}

// Built while the library loads, before any thread can fork: a function-local static whose
// initialiser calls pthread_atfork blocks on glibc's atfork lock while another thread forks,
// and that fork's child would inherit the static "being initialised" and hang on first use.
[[maybe_unused]] const bool g_local_ready = (local(), true);

struct me {
  pid_t pid;
  std::uint64_t start_time;
};

me current() noexcept {
  // Cached per pid: a fork child recomputes on first use.
  static thread_local pid_t cached_pid = 0;
  static thread_local std::uint64_t cached_start = 0;
  pid_t p = ::getpid();
  if (p != cached_pid) {
    cached_start = ipc::process_identity(p).start_time;
    cached_pid = p;
  }
  return {p, cached_start};
}

// Under the registry lock: keeps the edges matching keep(e).
template <typename Keep>
void compact_locked(registry_header& r, Keep keep) {
  std::size_t n = std::min<std::size_t>(r.edge_count, max_edges);
  std::size_t out = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (keep(r.edges[i])) r.edges[out++] = r.edges[i];
  }
  r.edge_count = static_cast<std::uint32_t>(out);
}

void drop_dead_locked(registry_header& r) {
  std::unordered_map<std::int32_t, bool> alive;  // one /proc read per pid
  compact_locked(r, [&](const edge& e) {
    auto it = alive.find(e.pid);
    if (it == alive.end()) it = alive.emplace(e.pid, ipc::process_alive(e.pid, e.start_time)).first;
    return it->second;
  });
  for (auto& u : r.users) {
    if (u.pid != 0 && !ipc::process_alive(u.pid, u.start_time)) u = user{};
  }
}

// The pid this process image registered as a user under (a fork child registers anew).
std::atomic<pid_t> g_entered{0};

// Under the lock: records this process as a user (once per process).
void enter_locked(registry_header& r, const me& self) noexcept {
  if (g_entered.load(std::memory_order_relaxed) == self.pid) return;
  user* free_slot = nullptr;
  for (auto& u : r.users) {
    if (u.pid == self.pid && u.start_time == self.start_time) {
      free_slot = &u;
      break;
    }
    if (free_slot == nullptr && (u.pid == 0 || !ipc::process_alive(u.pid, u.start_time))) free_slot = &u;
  }
  // Table full of live users: unrecorded, this process never removes the registry itself.
  if (free_slot != nullptr) *free_slot = user{self.pid, 0, self.start_time};
  g_entered.store(self.pid, std::memory_order_relaxed);
}

void describe_locked(registry_header& r, std::uint32_t id, std::string_view name) noexcept;

registry_header& attach() {
  auto& st = local();
  if (auto* r = st.reg.load(std::memory_order_acquire); r != nullptr) return *r;
  std::lock_guard lk(st.m);
  if (auto* r = st.reg.load(std::memory_order_acquire); r != nullptr) return *r;
  registry_header* found = nullptr;
  const layout_spec spec{.magic = magic, .version = version, .header_size = sizeof(registry_header), .payload_bytes = 0};
  auto init = [](std::byte* base, std::size_t) {
    auto* h = ::new (base) registry_header();
    robust_mutex::create_at(&h->lock, 0);
  };
  for (int attempt = 0; attempt < 50 && found == nullptr; ++attempt) {
    std::unique_ptr<layout_segment> seg;
    try {
      seg = std::make_unique<layout_segment>(segment_backing::sysv, "lock-order", open_mode::open_or_create, spec, init);
    } catch (const std::system_error&) {
      break;  // no usable runtime directory: fall back to a private registry below
    }
    auto* h = seg->header_as<registry_header>();
    std::unique_lock rl(h->lock);
    if (h->retired != 0) {
      // Its last user is removing it right now: a fresh one will be created.
      rl.unlock();
      ::usleep(1000);
      continue;
    }
    drop_dead_locked(*h);
    rl.unlock();
    st.object = seg->object();
    st.seg = seg.release();
    found = h;
  }
  if (found == nullptr) {
    // Shared with our fork children, invisible to unrelated processes.
    void* p = ::mmap(nullptr, sizeof(registry_header), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw_errno(errno, "mmap", "private lock-order registry");
    init(static_cast<std::byte*>(p), sizeof(registry_header));
    st.object = "private";
    found = static_cast<registry_header*>(p);
  }
  {
    std::unique_lock rl(found->lock);
    enter_locked(*found, current());
    for (const auto& [id, name] : st.pending) describe_locked(*found, id, name);
  }
  st.pending.clear();
  std::atexit([] { leave(); });
  st.reg.store(found, std::memory_order_release);
  return *found;
}

std::string name_locked(const registry_header& r, std::uint32_t id) {
  std::size_t n = std::min<std::size_t>(r.name_count, max_names);
  for (std::size_t i = 0; i < n; ++i) {
    if (r.names[i].id == id) {
      return "\"" + std::string(r.names[i].name, ::strnlen(r.names[i].name, name_bytes)) + "\" (id " +
             std::to_string(id) + ")";
    }
  }
  return "lock " + std::to_string(id);
}

// The edges of a learned path from -> ... -> to (breadth first: the shortest), or empty.
std::vector<const edge*> path_locked(const registry_header& r, std::uint32_t from, std::uint32_t to) {
  const std::size_t n = std::min<std::size_t>(r.edge_count, max_edges);
  std::unordered_map<std::uint32_t, const edge*> via{{from, nullptr}};
  std::deque<std::uint32_t> todo{from};
  while (!todo.empty()) {
    std::uint32_t at = todo.front();
    todo.pop_front();
    if (at == to) {
      std::vector<const edge*> out;
      for (const edge* e = via[at]; e != nullptr; e = via[e->first]) out.push_back(e);
      std::reverse(out.begin(), out.end());
      return out;
    }
    for (std::size_t i = 0; i < n; ++i) {
      const edge& e = r.edges[i];
      if (e.first == at && via.emplace(e.then, &e).second) todo.push_back(e.then);
    }
  }
  return {};
}

bool has_edge_locked(const registry_header& r, std::uint32_t first, std::uint32_t then, const me& self) {
  const std::size_t n = std::min<std::size_t>(r.edge_count, max_edges);
  for (std::size_t i = 0; i < n; ++i) {
    const edge& e = r.edges[i];
    if (e.first == first && e.then == then && e.pid == self.pid && e.start_time == self.start_time) return true;
  }
  return false;
}

void repair_if_needed(registry_header& r, bool owner_died) {
  // A process died mid-update: counts are written after their entry, so clamping is enough.
  if (!owner_died) return;
  r.edge_count = static_cast<std::uint32_t>(std::min<std::size_t>(r.edge_count, max_edges));
  r.name_count = static_cast<std::uint32_t>(std::min<std::size_t>(r.name_count, max_names));
}

}  // namespace

void leave() noexcept {
  if (g_entered.load(std::memory_order_relaxed) != ::getpid()) return;  // never used it
  auto& st = local();
  registry_header* r = st.reg.load(std::memory_order_acquire);
  if (r == nullptr) return;
  try {
    std::unique_lock lk(r->lock);
    const me self = current();
    compact_locked(*r, [&](const edge& e) { return !(e.pid == self.pid && e.start_time == self.start_time); });
    bool others = false;
    for (auto& u : r->users) {
      if (u.pid == self.pid && u.start_time == self.start_time) {
        u = user{};
      } else if (u.pid != 0) {
        others = others || ipc::process_alive(u.pid, u.start_time);
      }
    }
    // The last live user: nobody else will look at it (a fork child that inherited the mapping
    // but never used it keeps a private copy), so remove it rather than leave it in ipcs.
    if (!others && st.seg != nullptr && r->retired == 0) {
      r->retired = 1;
      st.seg->remove();
    }
  } catch (...) {  // NOLINT(bugprone-empty-catch): at exit there is no one to tell; the next user cleans up
  }
}

std::optional<lock_order_checker::violation> check_and_learn(std::span<const std::uint32_t> held,
                                                             std::uint32_t acquiring) {
  registry_header& r = attach();
  std::unique_lock lk(r.lock);
  repair_if_needed(r, r.lock.previous_owner_died());
  const me self = current();
  enter_locked(r, self);
  for (std::uint32_t a : held) {
    if (a == acquiring || has_edge_locked(r, a, acquiring, self)) continue;
    auto path = path_locked(r, acquiring, a);
    if (path.empty()) continue;
    lock_order_checker::violation v;
    v.held = a;
    v.acquiring = acquiring;
    v.held_name = name_locked(r, a);
    v.acquiring_name = name_locked(r, acquiring);
    v.pid = self.pid;
    std::string before;
    for (const edge* e : path) {
      v.reverse.push_back({e->first, e->then, e->pid});
      if (!before.empty()) before += ", and ";
      before += "pid " + std::to_string(e->pid) + " took " + name_locked(r, e->first) + " then " +
                name_locked(r, e->then);
    }
    v.message = "pid " + std::to_string(self.pid) + " acquiring " + v.acquiring_name + " while holding " +
                v.held_name + " (order " + v.held_name + " then " + v.acquiring_name + "), but " + before +
                ": the two orders can deadlock (reported before blocking)";
    return v;
  }
  for (std::uint32_t a : held) {
    if (a == acquiring || has_edge_locked(r, a, acquiring, self)) continue;
    if (r.edge_count >= max_edges) drop_dead_locked(r);
    if (r.edge_count >= max_edges) break;  // full of live processes' orders: learn no more
    r.edges[r.edge_count] = edge{a, acquiring, self.pid, 0, self.start_time};
    ++r.edge_count;
  }
  return std::nullopt;
}

std::string name_of(std::uint32_t id) {
  registry_header& r = attach();
  std::unique_lock lk(r.lock);
  return name_locked(r, id);
}

void forget_mine_and_dead() {
  registry_header& r = attach();
  std::unique_lock lk(r.lock);
  repair_if_needed(r, r.lock.previous_owner_died());
  const me self = current();
  enter_locked(r, self);
  compact_locked(r, [&](const edge& e) { return !(e.pid == self.pid && e.start_time == self.start_time); });
  drop_dead_locked(r);
}

void describe(std::uint32_t id, std::string_view name) {
  if (id == 0) return;
  auto& st = local();
  registry_header* reg = st.reg.load(std::memory_order_acquire);
  if (reg == nullptr) {
    std::lock_guard lk(st.m);
    reg = st.reg.load(std::memory_order_acquire);
    if (reg == nullptr) {
      if (st.pending.size() < max_names) st.pending.emplace_back(id, std::string(name.substr(0, name_bytes - 1)));
      return;
    }
  }
  std::unique_lock lk(reg->lock);
  repair_if_needed(*reg, reg->lock.previous_owner_died());
  enter_locked(*reg, current());
  describe_locked(*reg, id, name);
}

std::string object() {
  attach();
  return local().object;
}

namespace {

void describe_locked(registry_header& r, std::uint32_t id, std::string_view name) noexcept {
  const std::size_t n = std::min<std::size_t>(r.name_count, max_names);
  for (std::size_t i = 0; i < n; ++i) {
    if (r.names[i].id == id) return;
  }
  if (n == max_names) return;
  name_entry& e = r.names[n];
  e.id = id;
  std::memset(e.name, 0, name_bytes);
  std::memcpy(e.name, name.data(), std::min(name.size(), name_bytes - 1));
  r.name_count = static_cast<std::uint32_t>(n + 1);
}

}  // namespace

}  // namespace ipc::detail::lock_order_registry
