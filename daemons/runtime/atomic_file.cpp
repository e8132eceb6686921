#include "atomic_file.hpp"

#include <ipc/error.hpp>
#include <ipc/fd_io.hpp>
#include <ipc/unique_fd.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>

namespace ipc::daemon {
namespace {

const char* kind_of(mode_t m) noexcept {
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISSOCK(m)) return "a socket";
  if (S_ISDIR(m)) return "a directory";
  return "not a regular file";
}

// Removes the temporary file when the write does not get as far as the rename.
struct temporary {
  std::string path;
  bool renamed = false;
  ~temporary() {
    if (!renamed) ::unlink(path.c_str());
  }
};

}  // namespace

void check_replaceable(const std::filesystem::path& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return;
    ipc::throw_errno(errno, "lstat", path.string());
  }
  if (S_ISREG(st.st_mode)) return;
  if (S_ISLNK(st.st_mode)) ipc::throw_errno(ELOOP, "replace", path.string(), "a symbolic link, never followed or replaced");
  ipc::throw_errno(EPERM, "replace", path.string(), std::string(kind_of(st.st_mode)) + ", not a regular file: never replaced");
}

void write_file_atomically(const std::filesystem::path& path, std::string_view text) {
  const auto dir = path.parent_path();
  if (!dir.empty() && ::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) ipc::throw_errno(errno, "mkdir", dir.string());
  temporary tmp{path.string() + ".tmp." + std::to_string(::getpid())};
  constexpr int flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW;
  unique_fd fd{::open(tmp.path.c_str(), flags, 0600)};
  if (!fd && errno == EEXIST) {
    // Left by an earlier process with our pid: unlink removes that entry itself, never a link's target.
    ::unlink(tmp.path.c_str());
    fd.reset(::open(tmp.path.c_str(), flags, 0600));
  }
  if (!fd) {
    const int err = errno;
    tmp.renamed = true;  // not ours: nothing to remove
    ipc::throw_errno(err, "open", tmp.path);
  }
  ipc::write_all(fd.get(), text, tmp.path);
  fd.reset();
  check_replaceable(path);
  if (::rename(tmp.path.c_str(), path.c_str()) != 0) ipc::throw_errno(errno, "rename", path.string());
  tmp.renamed = true;
}

bool remove_regular_file(const std::filesystem::path& path) noexcept {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  return ::unlink(path.c_str()) == 0;
}

}  // namespace ipc::daemon
