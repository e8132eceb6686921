#include <ipc/error.hpp>
#include <ipc/size.hpp>
#include <ipc/uri.hpp>

#include "detail/names.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace ipc {
namespace {

// Above this a size option is a typo rather than a wish: no channel holds a terabyte.
constexpr std::uint64_t max_size_option = std::uint64_t{1} << 40;

[[noreturn]] void bad(std::string_view uri, const std::string& detail) {
  throw_error(errc::bad_uri, "open_channel", uri, detail);
}

// How a name or path is shown in an error: control characters (a NUL above all) made visible.
std::string shown(std::string_view text) {
  std::string s;
  for (char c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(static_cast<unsigned char>(c)));
      s += buf;
    } else {
      s += c;
    }
  }
  return s;
}

}  // namespace

namespace detail {

std::optional<std::string> text_problem(std::string_view text) {
  for (char c : text) {
    if (c == '\0') return std::string("contains a NUL byte");
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return std::string("contains a control character");
  }
  return std::nullopt;
}

std::optional<std::string> plain_name_problem(std::string_view name) {
  if (auto t = text_problem(name)) return t;
  if (name.empty()) return std::string("is empty");
  if (name.size() > max_plain_name) return "is longer than " + std::to_string(max_plain_name) + " characters";
  if (name == "." || name == "..") return "'" + std::string(name) + "' is not a plain name";
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) return "'" + std::string(name) + "' may use only letters, digits, '.', '_' and '-'";
  }
  return std::nullopt;
}

std::optional<std::string> path_problem(std::string_view path) {
  if (auto t = text_problem(path)) return t;
  if (path.empty()) return std::string("is empty");
  if (path.size() > max_path) return "is longer than " + std::to_string(max_path) + " bytes";
  std::string_view rest = path;
  while (!rest.empty()) {
    const auto slash = rest.find('/');
    const std::string_view part = rest.substr(0, slash);
    if (part == "..") return std::string("has a '..' component (names never leave their directory)");
    if (part.size() > max_component) return "has a component longer than " + std::to_string(max_component) + " bytes";
    rest = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
  }
  return std::nullopt;
}

}  // namespace detail

channel_uri channel_uri::parse(std::string_view uri) {
  channel_uri u;
  u.text = shown(uri);
  if (uri.empty()) bad(uri, "empty URI");
  if (uri.size() > detail::max_uri) bad(u.text, "longer than " + std::to_string(detail::max_uri) + " bytes");
  if (auto p = detail::text_problem(uri)) bad(u.text, "URI " + *p);
  auto q = uri.find('?');
  std::string_view head = uri.substr(0, q);
  std::string_view query = q == std::string_view::npos ? std::string_view{} : uri.substr(q + 1);
  auto colon = head.find(':');
  u.scheme = std::string(head.substr(0, colon));
  if (colon != std::string_view::npos) u.name = std::string(head.substr(colon + 1));
  for (char c : u.scheme) {
    if (c < 'a' || c > 'z') bad(uri, "scheme '" + u.scheme + "' is not lower-case letters");
  }
  static constexpr std::string_view schemes[] = {"pipe", "fifo", "msgq", "sem", "shm", "nats"};
  bool known = false;
  for (auto s : schemes) known = known || s == u.scheme;
  if (!known) bad(uri, "unknown scheme '" + u.scheme + "' (expected pipe, fifo, msgq, sem, shm or nats)");
  if (q != std::string_view::npos && query.empty()) bad(uri, "empty query after '?'");
  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view kv = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    auto eq = kv.find('=');
    if (eq == std::string_view::npos || eq == 0) bad(uri, "option '" + std::string(kv) + "' is not key=value");
    std::string key(kv.substr(0, eq));
    if (u.option(key)) bad(uri, "option '" + key + "' given twice");
    u.options.emplace_back(std::move(key), std::string(kv.substr(eq + 1)));
  }
  return u;
}

std::optional<std::string_view> channel_uri::option(std::string_view key) const {
  for (const auto& [k, v] : options) {
    if (k == key) return std::string_view(v);
  }
  return std::nullopt;
}

std::size_t channel_uri::size_option(std::string_view key, std::size_t fallback) const {
  auto v = option(key);
  if (!v) return fallback;
  const std::string what = "option '" + std::string(key) + "=" + std::string(*v) + "'";
  const auto n = parse_size(*v);
  if (!n) bad(text, what + " is not a size (e.g. 4096, 0x1000, 64K, 1MiB)");
  if (*n == 0) bad(text, what + " is zero: every size is at least 1");
  if (*n > max_size_option) bad(text, what + " is above 1 TiB, the largest size a channel option takes");
  return static_cast<std::size_t>(*n);
}

channel_uri::shm_mode_parts channel_uri::shm_mode() const {
  shm_mode_parts parts;
  const auto v = option("mode");
  if (!v) return parts;
  std::string words;
  std::string perms;
  std::string_view list = *v;
  for (;;) {
    const auto comma = list.find(',');
    const std::string_view item = list.substr(0, comma);
    const bool word = !item.empty() && std::isalpha(static_cast<unsigned char>(item[0])) != 0;
    std::string& into = word ? words : perms;
    if (!into.empty()) {
      throw_error(errc::bad_uri, "open_channel", text,
                  "option 'mode=" + std::string(*v) + "' names more than one " + (word ? "channel mode" : "permission"));
    }
    into = item;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  if (!words.empty()) parts.mode = words;
  if (!perms.empty() || words.empty()) parts.permissions = perms;
  return parts;
}

mode_t channel_uri::mode_option(std::string_view key, mode_t fallback) const {
  auto v = option(key);
  if (!v) return fallback;
  std::string s(*v);
  char* end = nullptr;
  errno = 0;
  unsigned long m = std::strtoul(s.c_str(), &end, 8);
  if (s.empty() || errno != 0 || *end != '\0' || m > 0777) {
    bad(text, "option '" + std::string(key) + "=" + s + "' is not an octal mode like 0600");
  }
  if (m & S_IWOTH) bad(text, "option '" + std::string(key) + "=" + s + "' would let any user write");
  if ((m & 0600) != 0600) bad(text, "option '" + std::string(key) + "=" + s + "' must give the owner read and write");
  return static_cast<mode_t>(m);
}

open_mode channel_uri::open_option(open_mode fallback) const {
  auto v = option("open");
  if (!v) return fallback;
  if (*v == "create_only") return open_mode::create_only;
  if (*v == "open_only") return open_mode::open_only;
  if (*v == "open_or_create") return open_mode::open_or_create;
  bad(text, "option 'open=" + std::string(*v) + "' (expected create_only, open_only or open_or_create)");
}

void channel_uri::allow_only(std::initializer_list<std::string_view> allowed) const {
  for (const auto& [k, v] : options) {
    bool ok = false;
    for (auto a : allowed) ok = ok || a == k;
    if (!ok) {
      std::string list;
      for (auto a : allowed) list.append(list.empty() ? "" : ", ").append(a);
      bad(text, "unknown option '" + k + "' for " + scheme + (list.empty() ? " (it takes none)" : " (known: " + list + ")"));
    }
  }
}

void channel_uri::require_plain_name() const {
  if (name.empty()) bad(text, scheme + " needs a name, e.g. " + scheme + ":demo");
  if (auto p = detail::plain_name_problem(name)) bad(text, "name " + *p);
}

void channel_uri::require_safe_name() const {
  if (scheme == "pipe") return;  // no name: pipe, pipe:fd=N (its factory checks the fd)
  if (scheme == "nats") return;  // a URL, not a name: the nats factory checks servers, subject and stream
  if (scheme == "fifo") {
    if (name.empty()) bad(text, "fifo needs a path, e.g. fifo:demo.fifo or fifo:/run/ipc/demo.fifo");
    if (auto p = detail::path_problem(name)) bad(text, "path " + *p);
    return;
  }
  if (scheme == "msgq" && name.empty() && option("key")) return;  // msgq:?key=0x… names no file
  require_plain_name();
}

std::filesystem::path runtime_dir() {
  std::string spelled;
  if (const char* e = std::getenv("IPC_RUNTIME_DIR"); e && *e) {
    spelled = e;
  } else if (const char* r = std::getenv("RUNTIME_DIRECTORY"); r && *r) {
    std::string_view first(r);
    spelled = std::string(first.substr(0, first.find(':')));
  } else if (::geteuid() == 0) {
    spelled = "/run/ipc";
  } else if (const char* x = std::getenv("XDG_RUNTIME_DIR"); x && *x) {
    spelled = std::string(x) + "/ipc";
  } else {
    throw_error(errc::bad_uri, "runtime_dir", "(unset)",
                "set IPC_RUNTIME_DIR or XDG_RUNTIME_DIR: no runtime directory for a non-root user");
  }
  // Every spelling of one directory is judged the same: "." components and trailing slashes go (so
  // "link/" or "link/." is the symlink "link", refused below, not the directory it points to), and a
  // ".." component is refused outright (it may pass through a symlink).
  if (auto p = detail::path_problem(spelled)) {
    throw_error(errc::not_owner, "runtime_dir", shown(spelled), "runtime directory path " + *p);
  }
  std::filesystem::path dir = std::filesystem::path(spelled).lexically_normal();
  if (dir.has_relative_path() && !dir.has_filename()) dir = dir.parent_path();  // "a/b/" -> "a/b"
  if (dir.empty()) dir = ".";
  const std::string shown = dir.string();
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) ipc::throw_errno(errno, "mkdir", shown);
  struct stat st {};
  ipc::check_unix(::lstat(dir.c_str(), &st), "lstat", shown);
  if (!S_ISDIR(st.st_mode)) throw_error(errc::not_owner, "runtime_dir", shown, "not a directory (symlinks are not followed)");
  if (st.st_uid != ::geteuid() && st.st_uid != 0) {
    throw_error(errc::not_owner, "runtime_dir", shown, "owned by uid " + std::to_string(st.st_uid));
  }
  if ((st.st_mode & S_IWOTH) != 0) throw_error(errc::not_owner, "runtime_dir", shown, "world-writable");
  return dir;
}

std::filesystem::path resolve_name(std::string_view name) {
  if (auto problem = detail::path_problem(name)) {
    ipc::throw_errno(EINVAL, "resolve_name", "name '" + shown(name) + "' " + *problem);
  }
  std::filesystem::path p(name);
  if (p.is_absolute()) return p;
  return runtime_dir() / p;
}

}  // namespace ipc
