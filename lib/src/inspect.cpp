#include <ipc/inspect.hpp>

#include <ipc/error.hpp>
#include <ipc/unique_fd.hpp>
#include <ipc/uri.hpp>

#include "detail/sem_buffer_layout.hpp"
#include "detail/eintr.hpp"
#include "detail/layout_header.hpp"
#include "detail/shared_array_header.hpp"
#include "detail/shm_broadcast_layout.hpp"
#include "detail/shm_mpmc_layout.hpp"
#include "detail/shm_ring_layout.hpp"
#include "detail/sysv_key.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <vector>

namespace fs = std::filesystem;

namespace ipc {

// The layouts a tool can name, and the version whose header records the creator's start time.
struct known_layout {
  std::uint32_t magic;
  std::uint32_t version;
  const char* kind;
};
constexpr std::array<known_layout, 5> known_layouts = {{
    {detail::ring_magic, detail::ring_version, "shm_ring"},
    {detail::mpmc_magic, detail::mpmc_version, "shm_mpmc"},
    {detail::bcast_magic, detail::bcast_version, "shm_broadcast"},
    {detail::shared_array_header::magic, detail::shared_array_header::version, "shared_value"},
    {detail::sem_buffer_magic, detail::sem_buffer_version, "sem_buffer"},
}};

std::optional<layout_info> read_layout_header(int fd, std::uint64_t file_size) noexcept {
  using h = detail::layout_header;
  if (file_size < sizeof(h)) return std::nullopt;
  std::byte raw[sizeof(h)];
  const ssize_t n = detail::retry_eintr([&] { return ::pread(fd, raw, sizeof raw, 0); });
  if (n != static_cast<ssize_t>(sizeof raw)) return std::nullopt;
  auto get = [&]<typename T>(std::size_t offset, T& out) { std::memcpy(&out, raw + offset, sizeof out); };
  std::uint32_t state = 0;
  std::int32_t pid = 0;
  layout_info info;
  get(offsetof(h, state), state);
  get(offsetof(h, magic), info.magic);
  get(offsetof(h, version), info.version);
  get(offsetof(h, header_size), info.header_size);
  get(offsetof(h, total_size), info.total_size);
  get(offsetof(h, creator_pid), pid);
  get(offsetof(h, creator_uid), info.creator_uid);
  get(offsetof(h, created_unix_ns), info.created_unix_ns);
  if (state != h::ready_value || info.header_size < sizeof(h) || info.total_size < info.header_size ||
      info.total_size > file_size || pid <= 0) {
    return std::nullopt;
  }
  info.creator.pid = pid;
  info.kind = "unknown";
  for (const auto& k : known_layouts) {
    if (k.magic != info.magic) continue;
    info.kind = k.kind;
    // An older layout of a known kind has no start time where this one has it: unknown, not garbage.
    if (k.version == info.version) get(offsetof(h, creator_start_time), info.creator.start_time);
  }
  return info;
}

namespace {

constexpr std::string_view posix_dir = "/dev/shm";
constexpr std::string_view posix_prefix = "libipc.";
constexpr std::uint64_t max_zero_scan = std::uint64_t{64} << 20;  // larger raw segments: contents unknown
constexpr std::uint64_t max_ring_walk = 1000000;                  // records counted in one ring

const std::set<std::string, std::less<>> key_file_suffixes = {"msgq", "sem", "sembuf", "shm"};

// One row of /proc/sysvipc/{msg,sem,shm}, by column name.
using proc_row = std::map<std::string, long long, std::less<>>;

std::vector<proc_row> read_sysvipc(const char* file) {
  std::ifstream in(file);
  if (!in) throw_errno(errno == 0 ? ENOENT : errno, "open", file);
  std::string line;
  std::vector<std::string> columns;
  if (std::getline(in, line)) {
    std::istringstream h(line);
    for (std::string c; h >> c;) columns.push_back(c);
  }
  std::vector<proc_row> rows;
  while (std::getline(in, line)) {
    std::istringstream l(line);
    proc_row row;
    for (const auto& c : columns) {
      long long v = 0;
      // The kernel prints perms in octal ("%4o"); every other column is decimal.
      if (!(c == "perms" ? (l >> std::oct >> v >> std::dec) : (l >> v))) break;
      row[c] = v;
    }
    if (row.size() == columns.size()) rows.push_back(std::move(row));
  }
  return rows;
}

long long field(const proc_row& r, std::string_view name) {
  auto it = r.find(name);
  return it == r.end() ? 0 : it->second;
}

long seconds_since(long long t) {
  if (t <= 0) return 0;
  auto now = static_cast<long long>(::time(nullptr));
  return now > t ? static_cast<long>(now - t) : 0;
}

bool parse_int(std::string_view s, long long& out, int base = 10) {
  if (base == 16 && s.starts_with("0x")) s.remove_prefix(2);
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
  return ec == std::errc{} && p == s.data() + s.size();
}

// A file unlinked while a process still maps it or holds it open ("PATH (deleted)" in /proc).
struct removed_object {
  std::set<pid_t> holders;
  std::string handle;  // a /proc/PID/fd/N (or /proc/PID/map_files/RANGE) reaching the object, if any
};

// What every process is doing to the toolkit's objects, from one pass over /proc.
struct proc_scan {
  std::map<std::string, std::set<pid_t>> open_or_mapped;          // path -> holders
  std::map<std::pair<std::string, unsigned long long>, removed_object> removed;  // (unlinked path, inode)
  std::map<int, std::set<pid_t>> sysv_attached;                   // shmid -> attached pids
  std::map<std::pair<char, int>, std::set<std::pair<pid_t, std::string>>> blocked;  // ('m'|'s', id)
};

// The System V call a thread is blocked in, from /proc/PID/task/TID/syscall ("NR arg1 ..." while
// blocked, "running" otherwise). Unreadable (another uid without privilege, Yama): not seen.
void scan_syscalls(const fs::path& proc_pid, pid_t pid, proc_scan& s) {
  std::error_code ec;
  for (const auto& t : fs::directory_iterator(proc_pid / "task", ec)) {
    std::ifstream in(t.path() / "syscall");
    long long nr = -1;
    std::string arg;
    if (!(in >> nr >> arg)) continue;
    long long id = 0;
    if (!parse_int(arg, id, 16)) continue;
    const char* how = nr == SYS_msgrcv       ? "blocked in msgrcv"
                      : nr == SYS_msgsnd     ? "blocked in msgsnd"
                      : nr == SYS_semop      ? "blocked in semop"
                      : nr == SYS_semtimedop ? "blocked in semtimedop"
                                             : nullptr;
    if (how == nullptr) continue;
    const char kind = (nr == SYS_msgrcv || nr == SYS_msgsnd) ? 'm' : 's';
    s.blocked[{kind, static_cast<int>(id)}].insert({pid, how});
  }
}

proc_scan scan_proc(const std::vector<std::string>& prefixes) {
  proc_scan s;
  auto interesting = [&](std::string_view p) {
    return std::any_of(prefixes.begin(), prefixes.end(), [&](const std::string& x) { return p.starts_with(x); });
  };
  const pid_t self = ::getpid();
  // System V ids mean something only inside one IPC namespace (a private one starts again at id 0):
  // the System V facts of a process in another namespace are about other objects.
  std::error_code ns_ec;
  const auto own_ipc_ns = fs::read_symlink("/proc/self/ns/ipc", ns_ec);
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string pid_text = e.path().filename().string();
    long long pid_ll = 0;
    if (!parse_int(pid_text, pid_ll) || pid_ll <= 0) continue;
    const auto pid = static_cast<pid_t>(pid_ll);
    if (pid == self) continue;
    std::error_code their_ec;
    const auto their_ipc_ns = fs::read_symlink(e.path() / "ns" / "ipc", their_ec);
    const bool same_ipc_ns = ns_ec || their_ec || their_ipc_ns == own_ipc_ns;
    constexpr std::string_view deleted = " (deleted)";
    std::error_code fd_ec;
    for (const auto& f : fs::directory_iterator(e.path() / "fd", fd_ec)) {
      std::error_code link_ec;
      auto target = fs::read_symlink(f.path(), link_ec).string();
      if (link_ec || !interesting(target)) continue;
      if (target.ends_with(deleted)) {
        target.resize(target.size() - deleted.size());
        struct stat st {};
        if (::stat(f.path().c_str(), &st) != 0 || st.st_nlink != 0) continue;  // closed meanwhile, or a file named so
        auto& r = s.removed[{target, static_cast<unsigned long long>(st.st_ino)}];
        r.holders.insert(pid);
        r.handle = f.path().string();  // an fd handle reads without the map_files privilege
        continue;
      }
      s.open_or_mapped[target].insert(pid);
    }
    std::ifstream maps(e.path() / "maps");
    for (std::string line; std::getline(maps, line);) {
      auto slash = line.find('/');
      if (slash == std::string::npos) continue;
      std::string target = line.substr(slash);
      if (target.starts_with("/SYSV")) {
        // "start-end perms offset dev inode /SYSV<key> (deleted)": the inode is the shmid.
        std::istringstream f(line);
        std::string range, perms, offset, dev;
        long long shmid = -1;
        if (same_ipc_ns && f >> range >> perms >> offset >> dev >> shmid) {
          s.sysv_attached[static_cast<int>(shmid)].insert(pid);
        }
        continue;
      }
      if (target.ends_with(deleted)) {
        target.resize(target.size() - deleted.size());
        if (!interesting(target)) continue;
        std::istringstream f(line);
        std::string range, perms, offset, dev;
        unsigned long long inode = 0;
        if (!(f >> range >> perms >> offset >> dev >> inode)) continue;
        auto& r = s.removed[{target, inode}];
        r.holders.insert(pid);
        if (r.handle.empty()) r.handle = (e.path() / "map_files" / range).string();  // root (CAP_SYS_ADMIN) only
        continue;
      }
      if (interesting(target)) s.open_or_mapped[target].insert(pid);
    }
    if (same_ipc_ns) scan_syscalls(e.path(), pid, s);
  }
  return s;
}

void add_use(object_info& o, pid_t pid, std::string how, bool alive, bool current) {
  if (pid <= 0) return;
  for (const auto& u : o.users) {
    if (u.pid == pid && u.how == how) return;
  }
  o.users.push_back({pid, std::move(how), alive, current});
}

void add_blocked(object_info& o, const proc_scan& s, char kind) {
  auto it = s.blocked.find({kind, o.id});
  if (it == s.blocked.end()) return;
  for (const auto& [pid, how] : it->second) add_use(o, pid, how, process_alive(pid, 0), true);
}

// Whether every byte of a raw segment is zero (what a new one holds): nullopt when too large to tell.
std::optional<bool> all_zero_fd(int fd, std::uint64_t size) {
  // tmpfs knows which pages were never written: no data at all is certainly empty.
  const off_t first = ::lseek(fd, 0, SEEK_DATA);
  if (first == -1 && errno == ENXIO) return true;
  if (size > max_zero_scan) return std::nullopt;
  std::vector<char> buf(64 << 10);
  for (std::uint64_t at = 0; at < size;) {
    const ssize_t n = detail::retry_eintr([&] { return ::pread(fd, buf.data(), buf.size(), static_cast<off_t>(at)); });
    if (n <= 0) return std::nullopt;
    if (std::any_of(buf.begin(), buf.begin() + n, [](char c) { return c != 0; })) return false;
    at += static_cast<std::uint64_t>(n);
  }
  return true;
}

std::optional<bool> all_zero_sysv(int shmid, std::uint64_t size) {
  if (size > max_zero_scan) return std::nullopt;
  void* p = ::shmat(shmid, nullptr, SHM_RDONLY);
  if (p == reinterpret_cast<void*>(-1)) return std::nullopt;
  const auto* c = static_cast<const unsigned char*>(p);
  const bool zero = std::all_of(c, c + size, [](unsigned char b) { return b == 0; });
  ::shmdt(p);
  return zero;
}

// A ring's contents and role holders, read with pread from its /dev/shm file.
void inspect_ring(object_info& o, int fd, const layout_info& h) {
  using ring = detail::ring_header;
  if (h.header_size != sizeof(ring) || h.version != detail::ring_version) return;
  std::byte raw[sizeof(ring)];
  if (detail::retry_eintr([&] { return ::pread(fd, raw, sizeof raw, 0); }) != static_cast<ssize_t>(sizeof raw)) return;
  auto get = [&]<typename T>(std::size_t offset, T& out) { std::memcpy(&out, raw + offset, sizeof out); };
  std::uint64_t capacity = 0, head = 0, tail = 0;
  get(offsetof(ring, capacity), capacity);
  get(offsetof(ring, head), head);
  get(offsetof(ring, tail), tail);
  if (capacity == 0 || (capacity & (capacity - 1)) != 0 || sizeof(ring) + capacity != h.total_size ||
      head - tail > capacity) {
    return;  // inconsistent: contents unknown (kept, never judged empty)
  }
  o.contents.known = true;
  o.contents.bytes = head - tail;
  // Count the records from tail to head: 8-byte headers (u32 length), wrap markers skipped.
  std::uint64_t records = 0;
  for (std::uint64_t at = tail; at < head && records < max_ring_walk;) {
    const std::uint64_t pos = at & (capacity - 1);
    std::uint32_t len = 0;
    if (detail::retry_eintr([&] { return ::pread(fd, &len, sizeof len, static_cast<off_t>(sizeof(ring) + pos)); }) !=
        static_cast<ssize_t>(sizeof len)) {
      break;
    }
    if (len == detail::wrap_marker) {
      at += capacity - pos;
      continue;
    }
    ++records;
    at += detail::record_header + ((std::uint64_t{len} + 7) & ~std::uint64_t{7});
  }
  o.contents.messages = records;
  for (const auto* role : {"sender", "receiver"}) {
    const std::size_t block = std::string_view(role) == "sender" ? offsetof(ring, sender) : offsetof(ring, receiver);
    for (int i = 0; i < detail::max_holders; ++i) {
      const std::size_t slot = block + offsetof(detail::role_block, holders) + i * sizeof(detail::holder_slot);
      std::int32_t pid = 0;
      std::uint64_t start = 0;
      get(slot + offsetof(detail::holder_slot, pid), pid);
      get(slot + offsetof(detail::holder_slot, start_time), start);
      if (pid > 0) add_use(o, pid, std::string(role) + " role", process_alive(pid, start), true);
    }
  }
}

// The holder table the work queue and broadcast share: every registered place (odd generation) is a
// use going on, named by its role; its liveness by the start time it recorded.
void add_holders(object_info& o, const std::byte* table, const char* const (&role_names)[2]) {
  for (int i = 0; i < detail::mpmc_max_holders; ++i) {
    const std::byte* e = table + i * sizeof(detail::mpmc_holder);
    std::int32_t pid = 0;
    std::uint32_t gen = 0, role = 0;
    std::uint64_t start = 0;
    std::memcpy(&pid, e + offsetof(detail::mpmc_holder, pid), sizeof pid);
    std::memcpy(&gen, e + offsetof(detail::mpmc_holder, gen), sizeof gen);
    std::memcpy(&start, e + offsetof(detail::mpmc_holder, start_time), sizeof start);
    std::memcpy(&role, e + offsetof(detail::mpmc_holder, role), sizeof role);
    if (pid <= 0 || (gen & 1U) == 0 || role > 1) continue;
    add_use(o, pid, std::string(role_names[role]) + " role", process_alive(pid, start), true);
  }
}

// The whole fixed-size header T at offset 0, read with pread; empty when it cannot be read whole.
template <typename T>
std::vector<std::byte> read_header(int fd) {
  std::vector<std::byte> raw(sizeof(T));
  if (detail::retry_eintr([&] { return ::pread(fd, raw.data(), raw.size(), 0); }) != static_cast<ssize_t>(raw.size())) raw.clear();
  return raw;
}

// Whether a work queue's or broadcast's sizes are the ones its creator validated (else: unknown).
bool cells_consistent(std::uint64_t header, std::uint64_t slots, std::uint64_t max_message, std::uint64_t stride,
                      std::uint64_t cell_header, const layout_info& h) {
  return slots >= 2 && (slots & (slots - 1)) == 0 && max_message >= 1 && stride >= cell_header + max_message &&
         stride <= cell_header + max_message + 64 && header + slots * stride == h.total_size;
}

// A work queue's contents (the positions producers claimed and consumers have not: whole messages,
// or ones being written) and its senders and receivers, read with pread from its /dev/shm file.
void inspect_mpmc(object_info& o, int fd, const layout_info& h) {
  using q = detail::mpmc_header;
  if (h.header_size != sizeof(q) || h.version != detail::mpmc_version) return;
  const auto raw = read_header<q>(fd);
  if (raw.empty()) return;
  auto get = [&]<typename T>(std::size_t offset, T& out) { std::memcpy(&out, raw.data() + offset, sizeof out); };
  std::uint64_t slots = 0, max_message = 0, stride = 0, enq = 0, deq = 0;
  get(offsetof(q, slots), slots);
  get(offsetof(q, max_message), max_message);
  get(offsetof(q, slot_stride), stride);
  get(offsetof(q, enqueue_pos), enq);
  get(offsetof(q, dequeue_pos), deq);
  add_holders(o, raw.data() + offsetof(q, holders), {"sender", "receiver"});
  // Both positions are helped forward, so dequeue may briefly pass enqueue by the claims in flight.
  if (!cells_consistent(sizeof(q), slots, max_message, stride, detail::mpmc_slot_header, h) ||
      (enq >= deq && enq - deq > slots) || (deq > enq && deq - enq > detail::mpmc_max_holders)) {
    return;  // inconsistent: contents unknown (kept, never judged empty)
  }
  o.contents.known = true;
  o.contents.messages = enq > deq ? enq - deq : 0;
  for (std::uint64_t at = deq; at < enq; ++at) {
    const off_t slot = static_cast<off_t>(sizeof(q) + (at & (slots - 1)) * stride);
    std::uint64_t state = 0;
    std::uint32_t len = 0;
    if (detail::retry_eintr([&] { return ::pread(fd, &state, sizeof state, slot); }) != static_cast<ssize_t>(sizeof state) ||
        detail::retry_eintr([&] { return ::pread(fd, &len, sizeof len, slot + 8); }) != static_cast<ssize_t>(sizeof len)) {
      break;
    }
    if (detail::slot_state::decode(state).phase == detail::slot_phase::full && len <= max_message) o.contents.bytes += len;
  }
}

// A broadcast channel's subscribers and the oldest unread backlog (what its slowest registered
// subscriber has still to read), read with pread from its /dev/shm file. With no subscriber it
// holds nothing anyone will read: a new subscriber starts at the next message published.
void inspect_broadcast(object_info& o, int fd, const layout_info& h) {
  using b = detail::bcast_header;
  if (h.header_size != sizeof(b) || h.version != detail::bcast_version) return;
  const auto raw = read_header<b>(fd);
  if (raw.empty()) return;
  auto get = [&]<typename T>(std::size_t offset, T& out) { std::memcpy(&out, raw.data() + offset, sizeof out); };
  std::uint64_t slots = 0, max_message = 0, stride = 0, head = 0;
  get(offsetof(b, slots), slots);
  get(offsetof(b, max_message), max_message);
  get(offsetof(b, slot_stride), stride);
  get(offsetof(b, head), head);
  add_holders(o, raw.data() + offsetof(b, holders), {"publisher", "subscriber"});
  if (!cells_consistent(sizeof(b), slots, max_message, stride, detail::bcast_cell_header, h)) return;
  std::uint64_t subscribers = 0, backlog = 0;
  for (int i = 0; i < detail::mpmc_max_holders; ++i) {
    const std::size_t e = offsetof(b, holders) + i * sizeof(detail::mpmc_holder);
    std::int32_t pid = 0;
    std::uint32_t gen = 0, role = 0;
    std::uint64_t next = 0;
    get(e + offsetof(detail::mpmc_holder, pid), pid);
    get(e + offsetof(detail::mpmc_holder, gen), gen);
    get(e + offsetof(detail::mpmc_holder, role), role);
    if (pid <= 0 || (gen & 1U) == 0 || role != 1) continue;
    get(offsetof(b, cursors) + i * sizeof(detail::bcast_cursor) + offsetof(detail::bcast_cursor, next), next);
    ++subscribers;
    // A lapped subscriber (drop_oldest) has at most a ring's worth left to read.
    if (head > next) backlog = std::max(backlog, std::min(head - next, slots));
  }
  o.contents.known = true;
  o.contents.messages = backlog;
  o.contents.subscribers = static_cast<int>(subscribers);
}

void add_sysv_objects(std::vector<object_info>& out, const object_info& base, unsigned low24,
                      const std::vector<proc_row>& msgs, const std::vector<proc_row>& sems,
                      const std::vector<proc_row>& shms, const proc_scan& scan) {
  auto belongs = [&](const proc_row& r) {
    auto key = static_cast<unsigned>(field(r, "key"));
    return key != 0 && (key & 0xffffffU) == low24;
  };
  const std::size_t first = out.size();
  for (const auto& r : msgs) {
    if (!belongs(r)) continue;
    object_info o = base;
    o.kind = "msgq";
    o.key = detail::key_string(static_cast<key_t>(field(r, "key")));
    o.id = static_cast<int>(field(r, "msqid"));
    o.uid = static_cast<uid_t>(field(r, "uid"));
    o.mode = static_cast<mode_t>(field(r, "perms") & 0777);
    const auto lspid = static_cast<pid_t>(field(r, "lspid")), lrpid = static_cast<pid_t>(field(r, "lrpid"));
    add_use(o, lspid, "last msgsnd", process_alive_at(lspid, field(r, "stime")), false);
    add_use(o, lrpid, "last msgrcv", process_alive_at(lrpid, field(r, "rtime")), false);
    add_blocked(o, scan, 'm');
    o.contents.known = true;
    o.contents.messages = static_cast<std::uint64_t>(field(r, "qnum"));
    o.contents.bytes = static_cast<std::uint64_t>(field(r, "cbytes"));
    o.size = o.contents.bytes;
    o.age_seconds = seconds_since(std::max({field(r, "ctime"), field(r, "stime"), field(r, "rtime")}));
    out.push_back(std::move(o));
  }
  for (const auto& r : sems) {
    if (!belongs(r)) continue;
    object_info o = base;
    o.kind = "semset";
    o.key = detail::key_string(static_cast<key_t>(field(r, "key")));
    o.id = static_cast<int>(field(r, "semid"));
    o.uid = static_cast<uid_t>(field(r, "uid"));
    o.mode = static_cast<mode_t>(field(r, "perms") & 0777);
    o.size = static_cast<std::uint64_t>(field(r, "nsems"));
    const long long last_change = std::max(field(r, "ctime"), field(r, "otime"));
    std::vector<int> values;
    for (int i = 0; i < static_cast<int>(o.size); ++i) {
      // sempid: the last process that changed the semaphore (semop, SETVAL, SETALL).
      const int pid = ::semctl(o.id, i, GETPID);
      add_use(o, pid, "last semop", process_alive_at(pid, last_change), false);
      const int n = ::semctl(o.id, i, GETNCNT), z = ::semctl(o.id, i, GETZCNT);
      o.waiting += (n > 0 ? n : 0) + (z > 0 ? z : 0);
      values.push_back(::semctl(o.id, i, GETVAL));
    }
    add_blocked(o, scan, 's');
    o.contents.known = std::none_of(values.begin(), values.end(), [](int v) { return v < 0; });
    if (o.family == "sembuf") {
      // The bounded buffer's counts: full (1) holds messages plus the closed mark (4).
      if (values.size() == 5 && o.contents.known && values[1] >= values[4]) {
        o.contents.messages = static_cast<std::uint64_t>(values[1] - values[4]);
      } else {
        o.contents.known = false;
      }
    } else {
      o.contents.messages = static_cast<std::uint64_t>(std::count_if(values.begin(), values.end(), [](int v) { return v != 0; }));
    }
    o.age_seconds = seconds_since(last_change);
    out.push_back(std::move(o));
  }
  for (const auto& r : shms) {
    if (!belongs(r)) continue;
    object_info o = base;
    o.kind = "sysv-shm";
    o.key = detail::key_string(static_cast<key_t>(field(r, "key")));
    o.id = static_cast<int>(field(r, "shmid"));
    o.uid = static_cast<uid_t>(field(r, "uid"));
    o.mode = static_cast<mode_t>(field(r, "perms") & 0777);
    const auto cpid = static_cast<pid_t>(field(r, "cpid")), lpid = static_cast<pid_t>(field(r, "lpid"));
    add_use(o, cpid, "creator", process_alive_at(cpid, field(r, "ctime")), false);
    add_use(o, lpid, "last shmat/shmdt", process_alive_at(lpid, std::max(field(r, "atime"), field(r, "dtime"))),
            false);
    if (auto it = scan.sysv_attached.find(o.id); it != scan.sysv_attached.end()) {
      for (pid_t p : it->second) add_use(o, p, "attached", process_alive(p, 0), true);
    }
    o.attached = static_cast<int>(field(r, "nattch"));
    o.size = static_cast<std::uint64_t>(field(r, "size"));
    if (o.family != "sembuf") {  // a bounded buffer's fill level lives in its semaphore set
      if (auto zero = all_zero_sysv(o.id, o.size)) {
        o.contents.known = true;
        o.contents.messages = *zero ? 0 : 1;
        o.contents.is_value = !*zero;
      }
    }
    o.age_seconds = seconds_since(field(r, "ctime"));
    out.push_back(std::move(o));
  }
  // A bounded buffer's segment holds what its set counts.
  for (std::size_t i = first; i < out.size(); ++i) {
    if (out[i].kind != "sysv-shm" || out[i].family != "sembuf") continue;
    for (std::size_t j = first; j < out.size(); ++j) {
      if (out[j].kind == "semset") out[i].contents = out[j].contents;
    }
  }
  if (out.size() == first) {
    object_info o = base;
    o.kind = "keyfile";
    o.contents.known = true;
    out.push_back(std::move(o));
  }
}

object_info inspect_segment(const fs::path& p, const struct stat& st, int fd, const std::set<pid_t>* mappers) {
  object_info o;
  o.kind = o.family = "posix-shm";
  o.name = p.filename().string().substr(posix_prefix.size());
  o.path = p;
  o.uid = st.st_uid;
  o.mode = st.st_mode & 0777;
  o.size = static_cast<std::uint64_t>(st.st_size);
  o.age_seconds = seconds_since(st.st_mtime);
  o.attached = 0;
  if (mappers != nullptr) {
    for (pid_t pid : *mappers) add_use(o, pid, "maps it", process_alive(pid, 0), true);
    o.attached = static_cast<int>(mappers->size());
  }
  if (auto h = read_layout_header(fd, o.size)) {
    o.layout = h->kind;
    add_use(o, h->creator.pid, "creator", process_alive(h->creator), false);
    if (h->kind == "shm_ring") {
      inspect_ring(o, fd, *h);
    } else if (h->kind == "shm_mpmc") {
      inspect_mpmc(o, fd, *h);
    } else if (h->kind == "shm_broadcast") {
      inspect_broadcast(o, fd, *h);
    } else if (h->kind == "shared_value") {
      o.contents = {true, 1, 0, true};
    }
  }
  if (o.layout.empty() || o.layout == "unknown") {
    if (auto zero = all_zero_fd(fd, o.size)) {
      o.contents.known = true;
      o.contents.messages = *zero ? 0 : 1;
      o.contents.is_value = !*zero;
    }
  }
  return o;
}

}  // namespace

std::vector<object_info> list_objects(const list_options& options) {
  const fs::path dir = options.runtime_dir.empty() ? runtime_dir() : options.runtime_dir;
  const auto msgs = read_sysvipc("/proc/sysvipc/msg");
  const auto sems = read_sysvipc("/proc/sysvipc/sem");
  const auto shms = read_sysvipc("/proc/sysvipc/shm");
  const std::string segment_prefix = std::string(posix_dir) + "/" + std::string(posix_prefix);
  const auto scan = scan_proc({dir.string() + "/", segment_prefix});

  std::vector<object_info> out;
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) throw_errno(ec.value(), "opendir", dir.string());
  std::vector<fs::path> entries;
  for (const auto& e : it) entries.push_back(e.path());
  std::sort(entries.begin(), entries.end());
  for (const auto& p : entries) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) continue;  // removed while we looked
    object_info base;
    base.path = p;
    base.uid = st.st_uid;
    base.mode = st.st_mode & 0777;
    base.age_seconds = seconds_since(st.st_mtime);
    if (S_ISFIFO(st.st_mode)) {
      base.kind = base.family = "fifo";
      base.name = p.filename().string();
      int holders = 0;
      if (auto h = scan.open_or_mapped.find(p.string()); h != scan.open_or_mapped.end()) {
        for (pid_t pid : h->second) add_use(base, pid, "has it open", process_alive(pid, 0), true);
        holders = static_cast<int>(h->second.size());
      }
      base.attached = holders;
      // The kernel keeps a FIFO's bytes only while someone holds it open.
      base.contents.known = holders == 0;
      out.push_back(std::move(base));
      continue;
    }
    std::string ext = p.extension().string();
    if (!S_ISREG(st.st_mode) || ext.size() < 2 || !key_file_suffixes.contains(std::string_view(ext).substr(1))) {
      continue;
    }
    base.family = ext.substr(1);
    base.name = p.stem().string();
    // ftok: low 16 bits of the inode, low 8 bits of the device (see detail/sysv_key.cpp).
    auto low24 = static_cast<unsigned>((st.st_ino & 0xffffU) | ((st.st_dev & 0xffU) << 16));
    add_sysv_objects(out, base, low24, msgs, sems, shms, scan);
  }

  std::vector<fs::path> segments;
  for (const auto& e : fs::directory_iterator(std::string(posix_dir), ec)) {
    if (e.path().filename().string().starts_with(posix_prefix)) segments.push_back(e.path());
  }
  std::sort(segments.begin(), segments.end());
  const uid_t me = ::geteuid();
  for (const auto& p : segments) {
    unique_fd fd{::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)};
    struct stat st {};
    if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (!options.all_segments && st.st_uid != me) continue;
    const auto mappers = scan.open_or_mapped.find(p.string());
    out.push_back(inspect_segment(p, st, fd.get(), mappers == scan.open_or_mapped.end() ? nullptr : &mappers->second));
  }
  // Objects unlinked while still mapped or open (rm /dev/shm/libipc.X, a FIFO removed under its
  // peers): listed like ipcs' "dest", with what they hold when a handle in /proc reaches them;
  // never removable again.
  const std::string fifo_prefix = dir.string() + "/";
  for (const auto& [key, r] : scan.removed) {
    const auto& [path, inode] = key;
    const bool segment = path.starts_with(segment_prefix);
    if (!segment && !path.starts_with(fifo_prefix)) continue;
    struct stat st {};
    const bool reached = !r.handle.empty() && ::stat(r.handle.c_str(), &st) == 0 && st.st_ino == inode;
    object_info o;
    if (segment) {
      unique_fd fd;
      if (reached && S_ISREG(st.st_mode)) fd.reset(::open(r.handle.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
      if (fd && ::fstat(fd.get(), &st) == 0 && st.st_ino == inode) {
        o = inspect_segment(path, st, fd.get(), &r.holders);
      } else {
        o.kind = o.family = "posix-shm";
        o.path = path;
        o.name = fs::path(path).filename().string().substr(posix_prefix.size());
        o.attached = static_cast<int>(r.holders.size());
        for (pid_t pid : r.holders) add_use(o, pid, "maps it", process_alive(pid, 0), true);
      }
    } else {
      // A FIFO is only looked at (stat), never opened: opening would make us one of its peers.
      if (!reached || !S_ISFIFO(st.st_mode)) continue;
      o.kind = o.family = "fifo";
      o.path = path;
      o.name = fs::path(path).filename().string();
      o.uid = st.st_uid;
      o.mode = st.st_mode & 0777;
      o.attached = static_cast<int>(r.holders.size());
      for (pid_t pid : r.holders) add_use(o, pid, "has it open", process_alive(pid, 0), true);
    }
    o.removed = true;
    bool ours = options.all_segments || (reached && st.st_uid == me);
    if (!reached) {
      for (pid_t pid : r.holders) {
        struct stat ps {};
        if (::stat(("/proc/" + std::to_string(pid)).c_str(), &ps) == 0) {
          o.uid = ps.st_uid;
          ours = ours || ps.st_uid == me;
        }
      }
    }
    if (ours) out.push_back(std::move(o));
  }
  return out;
}

}  // namespace ipc
