#include "confined.hpp"

#include <ipc/process.hpp>
#include <ipc/unique_fd.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

namespace ipc::test {
namespace {

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.flush();
  if (!out) throw std::runtime_error("write " + path + " = '" + text + "' failed");
}

void enter_namespaces(const confinement& c) {
  const uid_t uid = ::geteuid();
  const gid_t gid = ::getegid();
  int flags = CLONE_NEWNS | CLONE_NEWIPC;
  if (uid != 0) flags |= CLONE_NEWUSER;  // not root: become root of a user namespace of our own
  if (::unshare(flags) != 0) throw std::system_error(errno, std::system_category(), "unshare");
  if (uid != 0) {
    write_file("/proc/self/setgroups", "deny");
    write_file("/proc/self/uid_map", "0 " + std::to_string(uid) + " 1");
    write_file("/proc/self/gid_map", "0 " + std::to_string(gid) + " 1");
  }
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    throw std::system_error(errno, std::system_category(), "mount(/, MS_PRIVATE)");
  }
  const std::string opts = "size=" + std::to_string(c.shm_bytes) + ",mode=1777";
  if (::mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, opts.c_str()) != 0) {
    throw std::system_error(errno, std::system_category(), "mount(tmpfs on /dev/shm, " + opts + ")");
  }
  for (const auto& [name, value] : c.sysctls) write_file("/proc/sys/kernel/" + name, value);
}

void put_lines(std::ostringstream& os, char tag, const std::vector<std::string>& lines) {
  for (const auto& l : lines) {
    std::string flat = l;
    for (char& ch : flat) ch = ch == '\n' ? ' ' : ch;
    os << tag << ' ' << flat << '\n';
  }
}

}  // namespace

confined_result run_confined(const confinement& c, const std::function<void(findings&)>& body,
                             std::chrono::seconds timeout) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::system_category(), "pipe2");
  unique_fd rd(fds[0]);
  unique_fd wr(fds[1]);
  auto child = process::fork([&]() -> int {
    rd.reset();
    std::ostringstream os;
    int code = 0;
    try {
      enter_namespaces(c);
      findings f;
      try {
        body(f);
      } catch (const std::exception& e) {
        f.failures.push_back(std::string("unexpected exception: ") + e.what());
      }
      put_lines(os, 'F', f.failures);
      put_lines(os, 'N', f.notes);
    } catch (const std::exception& e) {
      os << "S " << e.what() << '\n';
      code = 3;
    }
    const std::string text = os.str();
    std::size_t off = 0;
    while (off < text.size()) {
      ssize_t n = ::write(wr.get(), text.data() + off, text.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return 4;
      off += static_cast<std::size_t>(n);
    }
    return code;
  });
  wr.reset();
  std::string text;
  const auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{rd.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[4096];
    ssize_t n = ::read(rd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  confined_result r;
  auto st = child.join_for(std::chrono::seconds(5));
  if (!st) {
    child.kill(SIGKILL);
    st = child.join();
    r.setup_error = "confined child did not finish within the deadline";
  }
  r.status = st->to_string();
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.size() < 2) continue;
    const std::string rest = line.substr(2);
    if (line[0] == 'S') r.setup_error = rest;
    if (line[0] == 'F') r.failures.push_back(rest);
    if (line[0] == 'N') r.notes.push_back(rest);
  }
  if (r.setup_error.empty() && !st->success()) r.setup_error = "confined child " + r.status;
  return r;
}

std::vector<std::string> dir_entries(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) out.push_back(e.path().filename().string());
  return out;
}

std::vector<std::string> sysv_objects() {
  std::vector<std::string> out;
  for (const char* kind : {"msg", "sem", "shm"}) {
    std::ifstream in(std::string("/proc/sysvipc/") + kind);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) out.push_back(std::string(kind) + ": " + line);
  }
  return out;
}

}  // namespace ipc::test
