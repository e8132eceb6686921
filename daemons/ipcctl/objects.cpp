#include "objects.hpp"

#include <ipc/error.hpp>
#include <ipc/unique_fd.hpp>

#include "detail/eintr.hpp"
#include "detail/layout_header.hpp"
#include "detail/sysv_key.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>

namespace fs = std::filesystem;

namespace ipcctl {
namespace {

constexpr std::string_view posix_dir = "/dev/shm";
constexpr std::string_view posix_prefix = "libipc.";
// Key files younger than this are left alone by gc: their creator may be about to msgget/semget.
constexpr long orphan_key_grace_seconds = 10;

const std::set<std::string, std::less<>> key_file_suffixes = {"msgq", "sem", "sembuf", "shm"};

// One row of /proc/sysvipc/{msg,sem,shm}, by column name.
using proc_row = std::map<std::string, long long, std::less<>>;

std::vector<proc_row> read_sysvipc(const char* file) {
  std::ifstream in(file);
  if (!in) ipc::detail::throw_errno(errno == 0 ? ENOENT : errno, "open", file);
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

// Which processes hold which paths: open fds (/proc/PID/fd) and mappings (/proc/PID/maps).
std::map<std::string, std::set<pid_t>> scan_holders(const std::vector<std::string>& prefixes) {
  std::map<std::string, std::set<pid_t>> holders;
  auto interesting = [&](std::string_view p) {
    return std::any_of(prefixes.begin(), prefixes.end(), [&](const std::string& x) { return p.starts_with(x); });
  };
  const pid_t self = ::getpid();
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string pid_text = e.path().filename().string();
    pid_t pid = 0;
    auto [ptr, err] = std::from_chars(pid_text.data(), pid_text.data() + pid_text.size(), pid);
    if (err != std::errc{} || ptr != pid_text.data() + pid_text.size() || pid == self) continue;
    std::error_code fd_ec;
    for (const auto& f : fs::directory_iterator(e.path() / "fd", fd_ec)) {
      std::error_code link_ec;
      auto target = fs::read_symlink(f.path(), link_ec).string();
      if (!link_ec && interesting(target)) holders[target].insert(pid);
    }
    std::ifstream maps(e.path() / "maps");
    for (std::string line; std::getline(maps, line);) {
      auto slash = line.find('/');
      if (slash == std::string::npos) continue;
      std::string target = line.substr(slash);
      if (target.ends_with(" (deleted)")) continue;
      if (interesting(target)) holders[target].insert(pid);
    }
  }
  return holders;
}

// The creator pid from a POSIX segment's layout_header, when the header is published and its sizes
// agree with the file. Read with pread on a read-only fd: a truncated or hostile file can neither
// make us read past its end nor raise SIGBUS, which a mapping could.
std::optional<pid_t> header_creator(int fd, unsigned long long file_size) {
  if (file_size < sizeof(ipc::detail::layout_header)) return std::nullopt;
  std::byte raw[sizeof(ipc::detail::layout_header)];
  ssize_t n = ipc::detail::retry_eintr([&] { return ::pread(fd, raw, sizeof raw, 0); });
  if (n != static_cast<ssize_t>(sizeof raw)) return std::nullopt;
  using h = ipc::detail::layout_header;
  auto get = [&]<typename T>(std::size_t offset, T& out) { std::memcpy(&out, raw + offset, sizeof out); };
  std::uint32_t state = 0, header_size = 0;
  std::uint64_t total_size = 0;
  std::int32_t creator = 0;
  get(offsetof(h, state), state);
  get(offsetof(h, header_size), header_size);
  get(offsetof(h, total_size), total_size);
  get(offsetof(h, creator_pid), creator);
  if (state != h::ready_value || header_size < sizeof(h) || total_size < header_size || total_size > file_size ||
      creator <= 0) {
    return std::nullopt;
  }
  return static_cast<pid_t>(creator);
}

void add_sysv_objects(std::vector<ipc_object>& out, const ipc_object& base, unsigned low24,
                      const std::vector<proc_row>& msgs, const std::vector<proc_row>& sems,
                      const std::vector<proc_row>& shms) {
  auto belongs = [&](const proc_row& r) {
    auto key = static_cast<unsigned>(field(r, "key"));
    return key != 0 && (key & 0xffffffU) == low24;
  };
  bool any = false;
  for (const auto& r : msgs) {
    if (!belongs(r)) continue;
    ipc_object o = base;
    o.kind = "msgq";
    o.key = ipc::detail::key_string(static_cast<key_t>(field(r, "key")));
    o.id = static_cast<int>(field(r, "msqid"));
    o.uid = static_cast<uid_t>(field(r, "uid"));
    o.mode = static_cast<mode_t>(field(r, "perms") & 0777);
    for (const char* p : {"lspid", "lrpid"}) {
      if (auto pid = static_cast<pid_t>(field(r, p)); pid > 0 && std::find(o.pids.begin(), o.pids.end(), pid) == o.pids.end()) {
        o.pids.push_back(pid);
      }
    }
    o.size = static_cast<unsigned long long>(field(r, "cbytes"));
    o.age_seconds = seconds_since(std::max({field(r, "ctime"), field(r, "stime"), field(r, "rtime")}));
    out.push_back(std::move(o));
    any = true;
  }
  for (const auto& r : sems) {
    if (!belongs(r)) continue;
    ipc_object o = base;
    o.kind = "semset";
    o.key = ipc::detail::key_string(static_cast<key_t>(field(r, "key")));
    o.id = static_cast<int>(field(r, "semid"));
    o.uid = static_cast<uid_t>(field(r, "uid"));
    o.mode = static_cast<mode_t>(field(r, "perms") & 0777);
    o.size = static_cast<unsigned long long>(field(r, "nsems"));
    // sempid: the last process that changed each semaphore (semop, SETVAL, SETALL).
    for (int i = 0; i < static_cast<int>(o.size); ++i) {
      int pid = ::semctl(o.id, i, GETPID);
      if (pid > 0 && std::find(o.pids.begin(), o.pids.end(), pid) == o.pids.end()) o.pids.push_back(pid);
    }
    o.age_seconds = seconds_since(std::max(field(r, "ctime"), field(r, "otime")));
    out.push_back(std::move(o));
    any = true;
  }
  for (const auto& r : shms) {
    if (!belongs(r)) continue;
    ipc_object o = base;
    o.kind = "sysv-shm";
    o.key = ipc::detail::key_string(static_cast<key_t>(field(r, "key")));
    o.id = static_cast<int>(field(r, "shmid"));
    o.uid = static_cast<uid_t>(field(r, "uid"));
    o.mode = static_cast<mode_t>(field(r, "perms") & 0777);
    if (auto cpid = static_cast<pid_t>(field(r, "cpid")); cpid > 0) o.pids.push_back(cpid);
    o.pids_are_creator = true;
    o.attached = static_cast<int>(field(r, "nattch"));
    o.size = static_cast<unsigned long long>(field(r, "size"));
    o.age_seconds = seconds_since(field(r, "ctime"));
    out.push_back(std::move(o));
    any = true;
  }
  if (!any) {
    ipc_object o = base;
    o.kind = "keyfile";
    out.push_back(std::move(o));
  }
}

bool all_dead(const std::vector<pid_t>& pids) {
  return std::none_of(pids.begin(), pids.end(), [](pid_t p) { return pid_alive(p); });
}

bool is_sysv(const ipc_object& o) { return o.kind == "msgq" || o.kind == "semset" || o.kind == "sysv-shm"; }

bool family_matches(const ipc_object& o, std::string_view family) {
  if (family == o.family || family == o.kind) return true;
  if (family == "sem") return o.family == "sembuf";     // the sem: channel (bounded buffer)
  if (family == "shm") return o.family == "posix-shm";  // the shm: channel (ring)
  return false;
}

}  // namespace

bool pid_alive(pid_t pid) noexcept {
  if (pid <= 0) return false;
  return ::kill(pid, 0) == 0 || errno == EPERM;
}

std::string user_name(uid_t uid) {
  passwd pw{};
  passwd* found = nullptr;
  char buf[1024];
  if (::getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found != nullptr) return found->pw_name;
  return std::to_string(uid);
}

std::vector<ipc_object> discover(const fs::path& dir) {
  const auto msgs = read_sysvipc("/proc/sysvipc/msg");
  const auto sems = read_sysvipc("/proc/sysvipc/sem");
  const auto shms = read_sysvipc("/proc/sysvipc/shm");
  const auto holders = scan_holders({dir.string() + "/", std::string(posix_dir) + "/" + std::string(posix_prefix)});
  auto holder_count = [&](const fs::path& p) {
    auto it = holders.find(p.string());
    return it == holders.end() ? 0 : static_cast<int>(it->second.size());
  };

  std::vector<ipc_object> out;
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) ipc::detail::throw_errno(ec.value(), "opendir", dir.string());
  std::vector<fs::path> entries;
  for (const auto& e : it) entries.push_back(e.path());
  std::sort(entries.begin(), entries.end());
  for (const auto& p : entries) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) continue;  // removed while we looked
    ipc_object base;
    base.path = p;
    base.uid = st.st_uid;
    base.mode = st.st_mode & 0777;
    base.age_seconds = seconds_since(st.st_mtime);
    if (S_ISFIFO(st.st_mode)) {
      base.kind = base.family = "fifo";
      base.name = p.filename().string();
      base.attached = holder_count(p);
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
    add_sysv_objects(out, base, low24, msgs, sems, shms);
  }

  std::vector<fs::path> segments;
  for (const auto& e : fs::directory_iterator(std::string(posix_dir), ec)) {
    if (e.path().filename().string().starts_with(posix_prefix)) segments.push_back(e.path());
  }
  std::sort(segments.begin(), segments.end());
  for (const auto& p : segments) {
    ipc::unique_fd fd{::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)};
    struct stat st {};
    if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    ipc_object o;
    o.kind = o.family = "posix-shm";
    o.name = p.filename().string().substr(posix_prefix.size());
    o.path = p;
    o.uid = st.st_uid;
    o.mode = st.st_mode & 0777;
    o.size = static_cast<unsigned long long>(st.st_size);
    o.age_seconds = seconds_since(st.st_mtime);
    if (auto creator = header_creator(fd.get(), o.size)) o.pids.push_back(*creator);
    o.pids_are_creator = true;
    o.attached = holder_count(p);
    out.push_back(std::move(o));
  }
  return out;
}

verdict judge(const ipc_object& o) {
  if (o.attached > 0) return verdict::live;
  if (o.kind == "keyfile") return o.age_seconds >= orphan_key_grace_seconds ? verdict::stale : verdict::live;
  // Nobody holds a FIFO or a POSIX segment open or mapped: whoever made it is gone or not using it,
  // and the next channel to open it recreates it (holders are counted exactly, from /proc).
  if (o.kind == "fifo") return verdict::stale;
  if (o.kind == "posix-shm") return o.pids.empty() || all_dead(o.pids) ? verdict::stale : verdict::live;
  if (o.pids.empty()) return verdict::unknown;
  return all_dead(o.pids) ? verdict::stale : verdict::live;
}

std::vector<ipc_object> select(const std::vector<ipc_object>& all, std::string_view spec) {
  std::string_view family, name = spec;
  if (auto colon = spec.find(':'); colon != std::string_view::npos) {
    family = spec.substr(0, colon);
    name = spec.substr(colon + 1);
  }
  std::vector<ipc_object> found;
  std::set<std::string> families;
  for (const auto& o : all) {
    if (o.name != name || (!family.empty() && !family_matches(o, family))) continue;
    found.push_back(o);
    families.insert(o.family);
  }
  if (found.empty()) throw std::runtime_error("no toolkit object named '" + std::string(spec) + "' (see ipcctl list)");
  if (families.size() > 1) {
    std::string list;
    for (const auto& f : families) list += (list.empty() ? "" : ", ") + f + ":" + std::string(name);
    throw std::runtime_error("'" + std::string(spec) + "' names several objects (" + list + "): say which");
  }
  return found;
}

void remove_group(const std::vector<ipc_object>& group) {
  const bool root = ::geteuid() == 0;
  for (const auto& o : group) {
    if (!root && o.uid != ::geteuid()) {
      ipc::throw_error(ipc::errc::not_owner, "remove", o.kind + ":" + o.name, "owned by " + user_name(o.uid));
    }
  }
  std::set<fs::path> key_files;
  for (const auto& o : group) {
    const std::string shown = o.kind + ":" + o.name + (o.key.empty() ? "" : " (key=" + o.key + ")");
    int rc = 0;
    if (o.kind == "msgq") {
      rc = ::msgctl(o.id, IPC_RMID, nullptr);
    } else if (o.kind == "semset") {
      rc = ::semctl(o.id, 0, IPC_RMID);
    } else if (o.kind == "sysv-shm") {
      rc = ::shmctl(o.id, IPC_RMID, nullptr);
    } else {
      rc = ::unlink(o.path.c_str());
    }
    if (rc != 0 && errno != ENOENT && errno != EINVAL && errno != EIDRM) {
      const char* call = o.kind == "msgq" ? "msgctl(IPC_RMID)"
                         : o.kind == "semset" ? "semctl(IPC_RMID)"
                         : o.kind == "sysv-shm" ? "shmctl(IPC_RMID)"
                                                : "unlink";
      ipc::detail::throw_errno(errno, call, shown);
    }
    if (is_sysv(o)) key_files.insert(o.path);
  }
  for (const auto& k : key_files) {
    if (::unlink(k.c_str()) != 0 && errno != ENOENT) ipc::detail::throw_errno(errno, "unlink", k.string());
  }
}

std::vector<std::vector<ipc_object>> stale_groups(const std::vector<ipc_object>& all) {
  std::vector<std::vector<ipc_object>> groups;
  std::map<fs::path, std::vector<ipc_object>> by_key_file;
  for (const auto& o : all) {
    if (is_sysv(o)) {
      by_key_file[o.path].push_back(o);
    } else if (judge(o) == verdict::stale) {
      groups.push_back({o});
    }
  }
  for (auto& [path, objs] : by_key_file) {
    bool any_stale = false, any_live = false;
    for (const auto& o : objs) {
      auto v = judge(o);
      any_stale = any_stale || v == verdict::stale;
      any_live = any_live || v == verdict::live;
    }
    if (any_stale && !any_live) groups.push_back(std::move(objs));
  }
  return groups;
}

}  // namespace ipcctl
