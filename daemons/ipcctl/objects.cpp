#include "objects.hpp"

#include <ipc/error.hpp>

#include <pwd.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <set>
#include <stdexcept>

namespace fs = std::filesystem;

namespace ipcctl {
namespace {

// Key files younger than this are left alone by gc: their creator may be about to msgget/semget.
constexpr long orphan_key_grace_seconds = 10;

bool is_sysv(const object_info& o) { return o.kind == "msgq" || o.kind == "semset" || o.kind == "sysv-shm"; }

bool family_matches(const object_info& o, std::string_view family) {
  if (family == o.family || family == o.kind) return true;
  if (family == "sem") return o.family == "sembuf";     // the sem: channel (bounded buffer)
  if (family == "shm") return o.family == "posix-shm";  // the shm: channel (ring)
  return false;
}

// Whether a daemon's channel URI ("msgq:demo?capacity=4", "fifo:/run/ipc/x") names o.
bool claims(const daemon_claim& c, const object_info& o) {
  const auto colon = c.channel.find(':');
  if (colon == std::string::npos) return false;
  const std::string scheme = c.channel.substr(0, colon);
  std::string name = c.channel.substr(colon + 1);
  name = name.substr(0, name.find('?'));
  if (scheme == "fifo") return o.kind == "fifo" && (name == o.name || fs::path(name) == o.path);
  return name == o.name && family_matches(o, scheme);
}

std::string plural(std::uint64_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

}  // namespace

std::string user_name(uid_t uid) {
  passwd pw{};
  passwd* found = nullptr;
  char buf[1024];
  if (::getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found != nullptr) return found->pw_name;
  return std::to_string(uid);
}

std::vector<daemon_claim> daemon_claims(const std::vector<status_entry>& status) {
  std::vector<daemon_claim> out;
  for (const auto& e : status) {
    if (e.alive && e.figures) out.push_back({e.figures->channel, e.figures->pid, e.file.string()});
  }
  return out;
}

std::string_view verdict_word(verdict_kind k) noexcept {
  switch (k) {
    case verdict_kind::in_use: return "keep";
    case verdict_kind::unknown: return "unknown";
    case verdict_kind::holds_data: return "data";
    case verdict_kind::abandoned: return "remove";
  }
  return "?";
}

std::string contents_text(const object_info& o) {
  const auto& c = o.contents;
  if (!c.known) return "?";
  if (c.is_value) return "value";
  if (c.subscribers >= 0) {
    // broadcast: what the slowest subscriber has still to read
    const std::string subs = plural(static_cast<std::uint64_t>(c.subscribers), "subscriber", "subscribers");
    return c.messages == 0 ? (c.subscribers == 0 ? std::string("empty") : "empty, " + subs) : plural(c.messages, "msg", "msg") + " unread, " + subs;
  }
  if (c.messages == 0 && c.bytes == 0) return "empty";
  const bool ring = o.layout == "shm_ring";
  std::string s = o.kind == "semset" && o.family != "sembuf" ? plural(c.messages, "sem set", "sems set")
                  : ring                                     ? plural(c.messages, "rec", "rec")
                                                             : plural(c.messages, "msg", "msg");
  if (c.bytes != 0) s += ", " + std::to_string(c.bytes) + " B";
  return s;
}

verdict judge(const object_info& o, const std::vector<daemon_claim>& claims_in) {
  using k = verdict_kind;
  if (o.removed) {
    return {k::in_use, std::string("removed but still ") + (o.kind == "fifo" ? "open in " : "mapped by ") +
                           plural(o.attached, "process", "processes")};
  }
  for (const auto& u : o.users) {
    if (u.alive && u.current) return {k::in_use, "pid " + std::to_string(u.pid) + " (" + u.how + ") is alive"};
  }
  if (o.attached > 0) return {k::in_use, plural(o.attached, "process", "processes") + " attached"};
  if (o.waiting > 0) return {k::in_use, plural(o.waiting, "process", "processes") + " waiting on a semaphore"};
  for (const auto& c : claims_in) {
    if (claims(c, o)) return {k::in_use, "daemon pid " + std::to_string(c.pid) + " uses " + c.channel};
  }
  for (const auto& u : o.users) {
    if (u.alive) return {k::in_use, "pid " + std::to_string(u.pid) + " (" + u.how + ") is alive"};
  }
  if (o.kind == "keyfile") {
    if (o.age_seconds < orphan_key_grace_seconds) {
      return {k::in_use, "key file " + std::to_string(o.age_seconds) + " s old: its creator may be about to use it"};
    }
    return {k::abandoned, "orphan key file, no object"};
  }
  if (!o.contents.known) return {k::holds_data, "contents unknown"};
  if (o.contents.is_value) return {k::holds_data, o.layout == "shared_value" ? "holds a value" : "holds data (not all zero)"};
  if (o.contents.messages != 0 || o.contents.bytes != 0) {
    return {k::holds_data, "holds " + contents_text(o)};
  }
  if (o.users.empty() && o.kind != "fifo") return {k::unknown, "no user recorded"};
  if (o.kind == "fifo") return {k::abandoned, "nobody has it open"};
  std::string dead;
  for (const auto& u : o.users) dead += (dead.empty() ? "" : ", ") + std::to_string(u.pid) + " " + u.how;
  return {k::abandoned, "empty; every user dead (" + dead + ")"};
}

std::vector<object_group> judge_all(const std::vector<object_info>& all, const std::vector<daemon_claim>& claims_in) {
  std::vector<object_group> out;
  std::map<fs::path, std::size_t> by_key_file;
  for (const auto& o : all) {
    const verdict v = judge(o, claims_in);
    if (is_sysv(o)) {
      auto [it, fresh] = by_key_file.try_emplace(o.path, out.size());
      if (fresh) {
        out.push_back({{o}, v});
        continue;
      }
      auto& g = out[it->second];
      g.objects.push_back(o);
      if (v.kind < g.why.kind) g.why = v;  // the most protective member decides
      continue;
    }
    out.push_back({{o}, v});
  }
  return out;
}

bool gc_removes(const object_group& g, bool force) noexcept {
  if (g.objects.empty() || g.objects.front().removed) return false;
  return g.why.kind == verdict_kind::abandoned || (force && g.why.kind == verdict_kind::holds_data);
}

std::vector<object_info> select(const std::vector<object_info>& all, std::string_view spec) {
  std::string_view family, name = spec;
  if (auto colon = spec.find(':'); colon != std::string_view::npos) {
    family = spec.substr(0, colon);
    name = spec.substr(colon + 1);
  }
  std::vector<object_info> found;
  std::set<std::string> families;
  for (const auto& o : all) {
    if (o.removed || o.name != name || (!family.empty() && !family_matches(o, family))) continue;
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

void remove_group(const std::vector<object_info>& group) {
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
    const char* call = "unlink";
    if (o.kind == "msgq") {
      rc = ::msgctl(o.id, IPC_RMID, nullptr);
      call = "msgctl(IPC_RMID)";
    } else if (o.kind == "semset") {
      rc = ::semctl(o.id, 0, IPC_RMID);
      call = "semctl(IPC_RMID)";
    } else if (o.kind == "sysv-shm") {
      rc = ::shmctl(o.id, IPC_RMID, nullptr);
      call = "shmctl(IPC_RMID)";
    } else {
      rc = ::unlink(o.path.c_str());
    }
    if (rc != 0 && errno != ENOENT && errno != EINVAL && errno != EIDRM) ipc::throw_errno(errno, call, shown);
    if (is_sysv(o)) key_files.insert(o.path);
  }
  for (const auto& k : key_files) {
    if (::unlink(k.c_str()) != 0 && errno != ENOENT) ipc::throw_errno(errno, "unlink", k.string());
  }
}

}  // namespace ipcctl
