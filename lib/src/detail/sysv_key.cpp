#include "detail/sysv_key.hpp"

#include <ipc/error.hpp>
#include <ipc/unique_fd.hpp>

#include "detail/eintr.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <system_error>

namespace ipc::detail {

key_t sysv_key(const std::filesystem::path& key_file, int proj_id, bool create) {
  const std::string shown = key_file.string();
  // O_NONBLOCK: a FIFO planted in place of the key file must be refused, not block the open.
  int flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | (create ? O_CREAT : 0);
  unique_fd fd{retry_eintr([&] { return ::open(key_file.c_str(), flags, 0600); })};
  if (!fd) {
    if (errno == ELOOP) throw_error(errc::not_owner, "open", shown, "key file is a symlink");
    throw_errno(errno, "open", shown);
  }
  struct stat st {};
  check_unix(::fstat(fd.get(), &st), "fstat", shown);
  if (!S_ISREG(st.st_mode)) throw_error(errc::not_owner, "open", shown, "key file is not a regular file");
  check_owner(st.st_uid, st.st_mode, "open", shown);
  // glibc's ftok(): low 16 bits of the inode, low 8 bits of the device, 8 bits of proj_id.
  auto key = static_cast<key_t>((st.st_ino & 0xffffU) | ((st.st_dev & 0xffU) << 16) |
                                ((static_cast<unsigned>(proj_id) & 0xffU) << 24));
  return key;
}

void check_owner(uid_t uid, mode_t mode, std::string_view call, std::string_view object) {
  if (uid != ::geteuid()) {
    throw_error(errc::not_owner, call, object,
                "owned by uid " + std::to_string(uid) + ", not " + std::to_string(::geteuid()));
  }
  if ((mode & S_IWOTH) != 0) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 0777));
    throw_error(errc::not_owner, call, object, std::string("world-writable mode ") + buf);
  }
}

void check_new_mode(mode_t mode, std::string_view call, std::string_view object) {
  const char* why = (mode & ~mode_t{0777}) != 0 ? "has bits beyond 0777"
                    : (mode & S_IWOTH) != 0     ? "would let any user write"
                    : (mode & 0600) != 0600     ? "must give the owner read and write"
                                                : nullptr;
  if (why == nullptr) return;
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode));
  throw_errno(EINVAL, call, std::string(object) + ", mode " + buf + " " + why);
}

namespace {

// The current value of /proc/sys/kernel/<name> as text ("?" when unreadable).
std::string sysctl_value(const char* name) {
  std::ifstream in(std::string("/proc/sys/kernel/") + name);
  std::string v;
  std::getline(in, v);
  return v.empty() ? "?" : v;
}

}  // namespace

void throw_sysv_create_error(int err, std::string_view call, std::string_view object, std::size_t size) {
  std::string limit;
  if (err == ENOSPC && call.starts_with("msgget")) {
    limit = "system limit kernel.msgmni = " + sysctl_value("msgmni") +
            " queues reached (raise it: sysctl -w kernel.msgmni=N)";
  } else if (err == ENOSPC && call.starts_with("semget")) {
    limit = "system limit kernel.sem = '" + sysctl_value("sem") +
            "' reached: semmni (4th, sets) or semmns (2nd, semaphores) (raise it: sysctl -w kernel.sem='SEMMSL SEMMNS "
            "SEMOPM SEMMNI')";
  } else if (err == ENOSPC && call.starts_with("shmget")) {
    limit = "system limit kernel.shmmni = " + sysctl_value("shmmni") + " segments or kernel.shmall = " +
            sysctl_value("shmall") + " pages reached by " + std::to_string(size) +
            " more bytes (raise it: sysctl -w kernel.shmmni=N or kernel.shmall=N)";
  } else if (err == EINVAL && call.starts_with("shmget") && size != 0) {
    limit = std::to_string(size) + " bytes outside kernel.shmmax = " + sysctl_value("shmmax") +
            " (raise it: sysctl -w kernel.shmmax=N)";
  }
  std::string what(call);
  what.append("(").append(object).append(")");
  if (!limit.empty()) what.append(": ").append(limit);
  throw std::system_error(err, std::system_category(), what);
}

std::string key_string(key_t key) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", static_cast<unsigned>(key));
  return buf;
}

}  // namespace ipc::detail
