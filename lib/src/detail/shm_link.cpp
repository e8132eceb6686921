#include "detail/shm_link.hpp"

#include <ipc/error.hpp>
#include <ipc/shared_memory.hpp>

#include <sys/stat.h>
#include <time.h>

namespace ipc::detail {

std::int64_t coarse_now_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

namespace {
struct stat stat_fd(int fd, const std::string& object) {
  struct stat st {};
  ipc::check_unix(::fstat(fd, &st), "fstat", object);
  return st;
}
}  // namespace

void check_linked(int fd, const std::atomic<std::uint32_t>& on_purpose, std::int64_t& next_ns, std::string_view call,
                  const std::string& channel, const std::string& object) {
  const struct stat st = stat_fd(fd, object);
  if (st.st_nlink == 0 && on_purpose.load(std::memory_order_acquire) == 0) {
    next_ns = 0;
    throw_error(errc::removed, call, channel,
                object + " was unlinked while attached (st_nlink 0, not by remove()): a peer opening the name gets "
                         "another segment; reopen() attaches to it or recreates one");
  }
  next_ns = coarse_now_ns() + link_check_interval_ns;
}

std::optional<mode_t> unlinked_mode(int fd, const std::string& object) {
  const struct stat st = stat_fd(fd, object);
  if (st.st_nlink != 0) return std::nullopt;
  return st.st_mode & 0777;
}

segment_id identify_segment(int fd, const std::string& object) {
  const struct stat st = stat_fd(fd, object);
  return {static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
}

bool name_denotes(const std::string& posix_name, segment_id id) {
  struct stat st {};
  if (::stat(("/dev/shm/" + posix_name).c_str(), &st) != 0) return true;
  return st.st_dev == id.dev && st.st_ino == id.ino;
}

void unlink_if_denotes(const std::string& base_name, segment_id id, std::atomic<std::uint32_t>* on_purpose) {
  if (!name_denotes(posix_segment::posix_name(base_name), id)) return;
  if (on_purpose != nullptr) on_purpose->store(1, std::memory_order_release);
  (void)posix_segment::remove(base_name);
}

}  // namespace ipc::detail
