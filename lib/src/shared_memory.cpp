#include <ipc/shared_memory.hpp>

#include <ipc/error.hpp>
#include <ipc/unique_fd.hpp>

#include "detail/layout_header.hpp"
#include "detail/names.hpp"
#include "detail/reserve_pages.hpp"
#include "detail/sysv_key.hpp"

#include <boost/interprocess/exceptions.hpp>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <thread>
#include <utility>

namespace bip = boost::interprocess;

namespace ipc {
namespace {

constexpr auto attach_wait = std::chrono::seconds(2);
constexpr std::size_t max_segment_bytes = std::size_t{1} << 40;  // 1 TiB: anything larger is a bug

void check_create_size(std::size_t size, const std::string& object) {
  if (size == 0) ipc::throw_errno(EINVAL, "create(size 0)", object);
  if (size > max_segment_bytes) ipc::throw_errno(EFBIG, "create(size " + std::to_string(size) + ")", object);
}

void check_plain(std::string_view name, std::string_view object) {
  if (detail::plain_name_problem(name)) ipc::throw_errno(EINVAL, "shm_open(name must be [A-Za-z0-9._-]{1,200})", object);
}

[[noreturn]] void rethrow_boost(const bip::interprocess_exception& e, int fallback, const char* call,
                                const std::string& object) {
  int err = e.get_native_error();
  ipc::throw_errno(err != 0 ? err : fallback, call, object);
}

std::string describe(std::string_view label, key_t key) {
  std::string s(label);
  if (!s.empty()) s += ' ';
  s += "(key=" + detail::key_string(key) + ")";
  return s;
}

}  // namespace

segment::~segment() = default;

// ---------------------------------------------------------------- POSIX

struct posix_segment::impl {
  bip::shared_memory_object shm;
  bip::mapped_region region;
};

std::string posix_segment::posix_name(std::string_view name) { return "libipc." + std::string(name); }

posix_segment::posix_segment(std::string_view name, open_mode mode, std::size_t size, mode_t perms)
    : impl_(std::make_unique<impl>()) {
  const std::string pname = posix_name(name);
  object_ = "/dev/shm/" + pname;
  check_plain(name, object_);
  if (mode != open_mode::open_only) {
    check_create_size(size, object_);
    detail::check_new_mode(perms, "shm_open", object_);
  }
  if (size > max_segment_bytes) ipc::throw_errno(EFBIG, "shm_open(size)", object_);
  const auto d = deadline::in(attach_wait);
  for (;;) {
    if (mode != open_mode::open_only) {
      try {
        impl_->shm = bip::shared_memory_object(bip::create_only, pname.c_str(), bip::read_write,
                                               bip::permissions(static_cast<unsigned>(perms & 0777)));
        created_ = true;
      } catch (const bip::interprocess_exception& e) {
        if (e.get_error_code() != bip::already_exists_error || mode == open_mode::create_only) {
          rethrow_boost(e, EEXIST, "shm_open", object_);
        }
      }
    }
    if (created_) {
      try {
        // Pages reserved now: a full /dev/shm is ENOSPC here, never SIGBUS on a later write.
        detail::reserve_pages(impl_->shm.get_mapping_handle().handle, size, object_);
      } catch (...) {
        ::shm_unlink(("/" + pname).c_str());
        throw;
      }
      break;
    }
    try {
      impl_->shm = bip::shared_memory_object(bip::open_only, pname.c_str(), bip::read_write);
      break;
    } catch (const bip::interprocess_exception& e) {
      // Removed between our create attempt and the open: try creating again.
      if (e.get_error_code() == bip::not_found_error && mode == open_mode::open_or_create && !d.expired()) continue;
      rethrow_boost(e, ENOENT, "shm_open", object_);
    }
  }
  // glibc's shm_open adds O_NOFOLLOW | O_CLOEXEC itself; the owner check is on the opened fd.
  const int fd = impl_->shm.get_mapping_handle().handle;
  struct stat st {};
  for (;;) {
    ipc::check_unix(::fstat(fd, &st), "fstat", object_);
    if (!S_ISREG(st.st_mode)) throw_error(errc::not_owner, "shm_open", object_, "not a shared-memory object");
    detail::check_owner(st.st_uid, st.st_mode, "shm_open", object_);
    if (st.st_size > 0) break;
    // The creator has opened but not yet sized it (ftruncate follows shm_open).
    if (d.expired()) throw_error(errc::incompatible, "shm_open", object_, "segment still has size 0");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  size_ = static_cast<std::size_t>(st.st_size);
  if (!created_ && size != 0 && size_ != size) {
    throw_error(errc::incompatible, "shm_open", object_,
                "segment has " + std::to_string(size_) + " bytes, expected " + std::to_string(size));
  }
  try {
    impl_->region = bip::mapped_region(impl_->shm, bip::read_write, 0, size_);
  } catch (const bip::interprocess_exception& e) {
    if (created_) ::shm_unlink(("/" + pname).c_str());
    rethrow_boost(e, EIO, "mmap", object_);
  }
  data_ = static_cast<std::byte*>(impl_->region.get_address());
}

posix_segment::~posix_segment() = default;

int posix_segment::fd() const noexcept { return impl_->shm.get_mapping_handle().handle; }

void posix_segment::remove() {
  const std::string shm_name = "/" + object_.substr(std::string_view("/dev/shm/").size());
  if (::shm_unlink(shm_name.c_str()) == -1 && errno != ENOENT) ipc::throw_errno(errno, "shm_unlink", object_);
}

bool posix_segment::remove(std::string_view name) {
  const std::string pname = posix_name(name);
  const std::string object = "/dev/shm/" + pname;
  check_plain(name, object);
  unique_fd fd{::shm_open(("/" + pname).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0)};
  if (!fd) {
    if (errno == ENOENT) return false;
    ipc::throw_errno(errno, "shm_open", object);
  }
  struct stat st {};
  ipc::check_unix(::fstat(fd.get(), &st), "fstat", object);
  detail::check_owner(st.st_uid, st.st_mode, "shm_unlink", object);
  if (::shm_unlink(("/" + pname).c_str()) == -1) {
    if (errno == ENOENT) return false;
    ipc::throw_errno(errno, "shm_unlink", object);
  }
  return true;
}

// ---------------------------------------------------------------- System V

sysv_segment::sysv_segment(std::string_view name, open_mode mode, std::size_t size, mode_t perms)
    : key_file_(resolve_name(std::string(name) + ".shm").string()) {
  // Bad sizes fail before the key file is made: nothing half-created is left behind.
  if (mode != open_mode::open_only) {
    check_create_size(size, key_file_);
    detail::check_new_mode(perms, "shmget", key_file_);
  }
  const bool key_file_existed = ::access(key_file_.c_str(), F_OK) == 0;
  key_ = detail::sysv_key(key_file_, 'H', mode != open_mode::open_only);
  object_ = describe(key_file_, key_);
  try {
    open(mode, size, perms);
  } catch (...) {
    // A failed create (e.g. kernel.shmmni exhausted) leaves no key file behind, unless a segment uses it.
    if (!key_file_existed && ::shmget(key_, 0, 0) == -1 && errno == ENOENT) ::unlink(key_file_.c_str());
    throw;
  }
}

sysv_segment::sysv_segment(key_t key, std::string label, open_mode mode, std::size_t size, mode_t perms)
    : key_(key) {
  object_ = describe(label, key);
  if (mode != open_mode::open_only) detail::check_new_mode(perms, "shmget", object_);
  open(mode, size, perms);
}

void sysv_segment::open(open_mode mode, std::size_t size, mode_t perms) {
  if (mode != open_mode::open_only) check_create_size(size, object_);
  if (size > max_segment_bytes) ipc::throw_errno(EFBIG, "shmget(size)", object_);
  const auto d = deadline::in(attach_wait);
  shmid_ds ds{};
  for (;;) {
    if (mode != open_mode::open_only) {
      id_ = ::shmget(key_, size, IPC_CREAT | IPC_EXCL | static_cast<int>(perms & 0777));
      if (id_ >= 0) {
        created_ = true;
      } else if (errno != EEXIST || mode == open_mode::create_only) {
        detail::throw_sysv_create_error(errno, "shmget", object_, size);
      }
    }
    if (!created_) {
      id_ = ::shmget(key_, 0, 0);
      if (id_ < 0) {
        if (errno == ENOENT && mode == open_mode::open_or_create && !d.expired()) continue;
        ipc::throw_errno(errno, "shmget", object_);
      }
    }
    if (::shmctl(id_, IPC_STAT, &ds) == 0) break;
    if ((errno == EIDRM || errno == EINVAL) && mode == open_mode::open_or_create && !d.expired()) continue;
    ipc::throw_errno(errno, "shmctl(IPC_STAT)", object_);
  }
  detail::check_owner(ds.shm_perm.uid, ds.shm_perm.mode, "shmget", object_);
  size_ = ds.shm_segsz;
  if (!created_ && size != 0 && size_ != size) {
    throw_error(errc::incompatible, "shmget", object_,
                "segment has " + std::to_string(size_) + " bytes, expected " + std::to_string(size));
  }
  void* addr = ::shmat(id_, nullptr, 0);
  if (addr == reinterpret_cast<void*>(-1)) {
    int e = errno;
    if (created_) ::shmctl(id_, IPC_RMID, nullptr);
    ipc::throw_errno(e, "shmat", object_);
  }
  data_ = static_cast<std::byte*>(addr);
}

sysv_segment::~sysv_segment() {
  if (data_ != nullptr) ::shmdt(data_);
}

std::size_t sysv_segment::attached() const {
  shmid_ds ds{};
  ipc::check_unix(::shmctl(id_, IPC_STAT, &ds), "shmctl(IPC_STAT)", object_);
  return ds.shm_nattch;
}

void sysv_segment::remove() {
  if (::shmctl(id_, IPC_RMID, nullptr) == -1 && errno != EIDRM && errno != EINVAL) {
    ipc::throw_errno(errno, "shmctl(IPC_RMID)", object_);
  }
  if (!key_file_.empty() && ::unlink(key_file_.c_str()) == -1 && errno != ENOENT) {
    ipc::throw_errno(errno, "unlink", key_file_);
  }
}

bool sysv_segment::remove(std::string_view name) {
  const std::string key_file = resolve_name(std::string(name) + ".shm").string();
  if (::access(key_file.c_str(), F_OK) == -1 && errno == ENOENT) return false;
  const key_t key = detail::sysv_key(key_file, 'H', false);
  const std::string object = describe(key_file, key);
  bool removed = false;
  int id = ::shmget(key, 0, 0);
  if (id >= 0) {
    shmid_ds ds{};
    ipc::check_unix(::shmctl(id, IPC_STAT, &ds), "shmctl(IPC_STAT)", object);
    detail::check_owner(ds.shm_perm.uid, ds.shm_perm.mode, "shmctl(IPC_RMID)", object);
    ipc::check_unix(::shmctl(id, IPC_RMID, nullptr), "shmctl(IPC_RMID)", object);
    removed = true;
  } else if (errno != ENOENT) {
    ipc::throw_errno(errno, "shmget", object);
  }
  if (::unlink(key_file.c_str()) == -1 && errno != ENOENT) ipc::throw_errno(errno, "unlink", key_file);
  return removed;
}

// ---------------------------------------------------------------- layouts

std::size_t layout_segment::total_bytes(const layout_spec& spec) {
  if (spec.header_size < sizeof(detail::layout_header) || spec.header_size > max_segment_bytes) {
    ipc::throw_errno(EINVAL, "layout(header_size " + std::to_string(spec.header_size) + ")", "layout_spec");
  }
  if (spec.payload_bytes > max_segment_bytes - spec.header_size) {
    ipc::throw_errno(EFBIG, "layout(payload " + std::to_string(spec.payload_bytes) + " bytes)", "layout_spec");
  }
  return spec.payload_bytes == 0 ? 0 : spec.header_size + spec.payload_bytes;
}

layout_segment::layout_segment(segment_backing backing, std::string_view name, open_mode mode,
                               const layout_spec& spec, const init_fn& init, mode_t perms) {
  std::size_t total = total_bytes(spec);
  // A payload of 0 bytes is allowed for creation: the layout is then the header alone.
  std::size_t create_size = total != 0 ? total : spec.header_size;
  std::size_t size = mode == open_mode::open_only ? total : create_size;
  for (int attempt = 0;; ++attempt) {
    if (backing == segment_backing::posix) {
      segment_ = std::make_unique<posix_segment>(name, mode, size, perms);
    } else {
      segment_ = std::make_unique<sysv_segment>(name, mode, size, perms);
    }
    // A creator killed mid-initialisation never publishes; when it is provably dead, open_or_create
    // replaces its segment instead of failing on it (POSIX: removal by name is made safe below).
    if (backing != segment_backing::posix || mode != open_mode::open_or_create || attempt >= 3 ||
        !replace_abandoned(static_cast<posix_segment&>(*segment_), name)) {
      break;
    }
  }
  attach(spec, init);
}

bool layout_segment::replace_abandoned(posix_segment& seg, std::string_view name) {
  if (seg.created() || seg.size() < sizeof(detail::layout_header)) return false;
  if (!detail::abandoned(reinterpret_cast<const detail::layout_header*>(seg.data()))) return false;
  // Several openers may find it abandoned at once: the one holding the flock on the old segment
  // unlinks it, and only while the name still refers to that very segment (same inode), so a
  // replacement another opener already created is never removed.
  if (::flock(seg.fd(), LOCK_EX) != 0) return false;
  struct stat mine {};
  struct stat named {};
  unique_fd now{::shm_open(("/" + posix_segment::posix_name(name)).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0)};
  if (::fstat(seg.fd(), &mine) == 0 && now && ::fstat(now.get(), &named) == 0 && mine.st_ino == named.st_ino &&
      mine.st_dev == named.st_dev) {
    ::shm_unlink(("/" + posix_segment::posix_name(name)).c_str());
  }
  return true;  // removed by us or by another opener: open again
}

layout_segment::layout_segment(std::unique_ptr<segment> seg, const layout_spec& spec, const init_fn& init)
    : segment_(std::move(seg)) {
  (void)total_bytes(spec);
  attach(spec, init);
}

layout_segment::layout_segment(layout_segment&&) noexcept = default;
layout_segment& layout_segment::operator=(layout_segment&&) noexcept = default;
layout_segment::~layout_segment() = default;

void layout_segment::attach(const layout_spec& spec, const init_fn& init) {
  segment& s = *segment_;
  header_size_ = spec.header_size;
  auto* h = reinterpret_cast<detail::layout_header*>(s.data());
  if (s.created()) {
    if (s.size() < spec.header_size) {
      s.remove();
      ipc::throw_errno(EINVAL, "layout(segment smaller than its header)", s.object());
    }
    detail::claim_header(h);  // first: an opener can prove we died if we never publish
    try {
      if (init) init(s.data(), s.size());
    } catch (...) {
      try {
        s.remove();
      } catch (...) {  // NOLINT(bugprone-empty-catch): the init failure is the error worth reporting
      }
      throw;
    }
    detail::publish_header(h, spec.magic, spec.version, spec.header_size, s.size());
    total_size_ = s.size();
    return;
  }
  detail::validate_header(h, s.size(), spec.magic, spec.version, spec.header_size, deadline::in(attach_wait),
                          s.object());
  total_size_ = static_cast<std::size_t>(h->total_size);
  if (spec.payload_bytes != 0 && total_size_ != spec.header_size + spec.payload_bytes) {
    throw_error(errc::incompatible, "attach", s.object(),
                "payload of " + std::to_string(total_size_ - spec.header_size) + " bytes, expected " +
                    std::to_string(spec.payload_bytes));
  }
}

std::byte* layout_segment::data() const noexcept { return segment_->data(); }

const detail::layout_header& layout_segment::header() const noexcept {
  return *reinterpret_cast<const detail::layout_header*>(segment_->data());
}

pid_t layout_segment::creator_pid() const noexcept { return header().creator_pid; }
bool layout_segment::created() const noexcept { return segment_->created(); }
const std::string& layout_segment::object() const noexcept { return segment_->object(); }
void layout_segment::remove() { segment_->remove(); }

bool layout_segment::remove(segment_backing backing, std::string_view name) {
  return backing == segment_backing::posix ? posix_segment::remove(name) : sysv_segment::remove(name);
}

}  // namespace ipc
