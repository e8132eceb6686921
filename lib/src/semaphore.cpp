#include <ipc/semaphore.hpp>

#include <ipc/error.hpp>

#include "detail/eintr.hpp"
#include "detail/sysv_key.hpp"

#include <sys/ipc.h>
#include <sys/sem.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <thread>
#include <utility>

namespace ipc {
namespace {

// glibc leaves the definition of semctl's fourth argument to the caller.
union semun {
  int val;
  semid_ds* buf;
  unsigned short* array;
};

// SEMMSL's usual default; larger sets are refused by the kernel anyway.
constexpr std::size_t max_semaphores = 32000;
constexpr auto init_wait = std::chrono::seconds(2);

std::string describe(std::string_view label, key_t key) {
  std::string s(label);
  if (!s.empty()) s += ' ';
  s += "(key=" + detail::key_string(key) + ")";
  return s;
}

}  // namespace

semaphore_set::semaphore_set(std::string_view name, open_mode mode, std::vector<unsigned short> initial_values,
                             mode_t perms)
    : key_file_(resolve_name(std::string(name) + ".sem").string()) {
  object_ = key_file_;
  check_values(initial_values);  // before the key file is made: nothing half-created is left behind
  if (mode != open_mode::open_only) detail::check_new_mode(perms, "semget", key_file_);
  const bool key_file_existed = ::access(key_file_.c_str(), F_OK) == 0;
  key_ = detail::sysv_key(key_file_, 'S', mode != open_mode::open_only);
  object_ = describe(key_file_, key_);
  try {
    open(mode, initial_values, perms);
  } catch (...) {
    // A failed create (e.g. kernel.sem exhausted) leaves no key file behind, unless a set uses it.
    if (!key_file_existed && ::semget(key_, 0, 0) == -1 && errno == ENOENT) ::unlink(key_file_.c_str());
    throw;
  }
}

semaphore_set::semaphore_set(key_t key, std::string label, open_mode mode,
                             std::vector<unsigned short> initial_values, mode_t perms)
    : key_(key), object_(describe(label, key)) {
  if (mode != open_mode::open_only) detail::check_new_mode(perms, "semget", object_);
  open(mode, initial_values, perms);
}

semaphore_set::semaphore_set(semaphore_set&& other) noexcept
    : id_(std::exchange(other.id_, -1)),
      key_(other.key_),
      nsems_(other.nsems_),
      created_(other.created_),
      key_file_(std::move(other.key_file_)),
      object_(std::move(other.object_)) {}

semaphore_set& semaphore_set::operator=(semaphore_set&& other) noexcept {
  id_ = std::exchange(other.id_, -1);
  key_ = other.key_;
  nsems_ = other.nsems_;
  created_ = other.created_;
  key_file_ = std::move(other.key_file_);
  object_ = std::move(other.object_);
  return *this;
}

semaphore_set::~semaphore_set() = default;

void semaphore_set::fail(int err, const char* call) const {
  if (err == EIDRM || err == EINVAL) throw_error(errc::closed, call, object_, "semaphore set was removed");
  ipc::throw_errno(err, call, object_);
}

void semaphore_set::check_values(const std::vector<unsigned short>& initial_values) const {
  if (initial_values.empty() || initial_values.size() > max_semaphores) {
    ipc::throw_errno(EINVAL, "semget(nsems " + std::to_string(initial_values.size()) + ")", object_);
  }
  for (auto v : initial_values) {
    if (v > max_value) ipc::throw_errno(ERANGE, "semget(initial value " + std::to_string(v) + ")", object_);
  }
}

void semaphore_set::open(open_mode mode, const std::vector<unsigned short>& initial_values, mode_t perms) {
  check_values(initial_values);
  nsems_ = initial_values.size();
  const auto d = deadline::in(init_wait);
  for (;;) {
    if (mode != open_mode::open_only) {
      int id = ::semget(key_, static_cast<int>(nsems_), IPC_CREAT | IPC_EXCL | static_cast<int>(perms & 0777));
      if (id >= 0) {
        id_ = id;
        created_ = true;
        // SETALL, then one real semop so sem_otime becomes non-zero: the openers' "initialised" signal.
        // (A semop of zero operations is refused, and SETALL alone does not touch sem_otime.)
        std::vector<unsigned short> values = initial_values;
        semun arg{};
        arg.array = values.data();
        short first = initial_values[0] > 0 ? -1 : 1;
        std::array<sembuf, 2> touch{{{0, first, 0}, {0, static_cast<short>(-first), 0}}};
        const char* failed = nullptr;
        if (::semctl(id_, 0, SETALL, arg) == -1) {
          failed = "semctl(SETALL)";
        } else if (detail::retry_eintr([&] { return ::semop(id_, touch.data(), 2); }) == -1) {
          failed = "semop(initialise)";
        }
        if (failed != nullptr) {
          int e = errno;
          ::semctl(id_, 0, IPC_RMID);
          id_ = -1;
          ipc::throw_errno(e, failed, object_);
        }
        return;
      }
      if (errno != EEXIST || mode == open_mode::create_only) detail::throw_sysv_create_error(errno, "semget", object_);
    }
    int id = ::semget(key_, 0, 0);
    if (id < 0) {
      // Removed between our create attempt and the open: try creating again.
      if (errno == ENOENT && mode == open_mode::open_or_create && !d.expired()) continue;
      ipc::throw_errno(errno, "semget", object_);
    }
    semid_ds ds{};
    semun arg{};
    arg.buf = &ds;
    for (;;) {
      if (::semctl(id, 0, IPC_STAT, arg) == -1) {
        if ((errno == EIDRM || errno == EINVAL) && mode == open_mode::open_or_create && !d.expired()) break;
        fail(errno, "semctl(IPC_STAT)");
      }
      detail::check_owner(ds.sem_perm.uid, ds.sem_perm.mode, "semget", object_);
      if (ds.sem_nsems != nsems_) {
        throw_error(errc::incompatible, "semget", object_,
                    "set has " + std::to_string(ds.sem_nsems) + " semaphores, expected " + std::to_string(nsems_));
      }
      if (ds.sem_otime != 0) {
        id_ = id;
        return;
      }
      if (d.expired()) throw_error(errc::incompatible, "semget", object_, "set never initialised by its creator");
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
}

void semaphore_set::check_index(unsigned short i, const char* call) const {
  if (i >= nsems_) {
    ipc::throw_errno(EINVAL, call, object_ + " index " + std::to_string(i) + " of " + std::to_string(nsems_));
  }
}

bool semaphore_set::apply(std::span<const op> ops, const deadline& d) {
  if (ops.empty() || ops.size() > 64) ipc::throw_errno(EINVAL, "semop(operation count)", object_);
  std::array<sembuf, 64> buf{};
  for (std::size_t k = 0; k < ops.size(); ++k) {
    check_index(ops[k].index, "semop");
    buf[k].sem_num = ops[k].index;
    buf[k].sem_op = ops[k].delta;
  }
  for (;;) {
    const bool nowait = d.expired();
    for (std::size_t k = 0; k < ops.size(); ++k) {
      buf[k].sem_flg = static_cast<short>((ops[k].undo ? SEM_UNDO : 0) | (nowait ? IPC_NOWAIT : 0));
    }
    int r;
    if (nowait || d.is_never()) {
      r = ::semop(id_, buf.data(), ops.size());
    } else {
      // semtimedop's timeout is relative: recompute what is left on every retry.
      timespec left = d.remaining_timespec();
      r = ::semtimedop(id_, buf.data(), ops.size(), &left);
    }
    if (r == 0) return true;
    const int e = errno;
    if (e == EAGAIN) {
      if (nowait || d.expired()) return false;
      continue;  // the kernel's timer fired a hair early against our clock
    }
    if (e == EINTR) continue;
    fail(e, "semop");
  }
}

void semaphore_set::wait(unsigned short i, short n, undo u) { wait_until(i, deadline::never(), n, u); }

bool semaphore_set::try_wait(unsigned short i, short n, undo u) { return wait_until(i, deadline::now(), n, u); }

bool semaphore_set::wait_for(unsigned short i, std::chrono::nanoseconds timeout, short n, undo u) {
  return wait_until(i, deadline::in(timeout), n, u);
}

bool semaphore_set::wait_until(unsigned short i, const deadline& d, short n, undo u) {
  return apply({{i, static_cast<short>(-n), u == undo::yes}}, d);
}

void semaphore_set::post(unsigned short i, short n, undo u) { apply({{i, n, u == undo::yes}}, deadline::now()); }

int semaphore_set::value(unsigned short i) const {
  check_index(i, "semctl(GETVAL)");
  int v = ::semctl(id_, i, GETVAL);
  if (v == -1) fail(errno, "semctl(GETVAL)");
  return v;
}

std::vector<unsigned short> semaphore_set::values() const {
  std::vector<unsigned short> v(nsems_);
  semun arg{};
  arg.array = v.data();
  if (::semctl(id_, 0, GETALL, arg) == -1) fail(errno, "semctl(GETALL)");
  return v;
}

int semaphore_set::waiters(unsigned short i) const {
  check_index(i, "semctl(GETNCNT)");
  int v = ::semctl(id_, i, GETNCNT);
  if (v == -1) fail(errno, "semctl(GETNCNT)");
  return v;
}

int semaphore_set::zero_waiters(unsigned short i) const {
  check_index(i, "semctl(GETZCNT)");
  int v = ::semctl(id_, i, GETZCNT);
  if (v == -1) fail(errno, "semctl(GETZCNT)");
  return v;
}

pid_t semaphore_set::last_pid(unsigned short i) const {
  check_index(i, "semctl(GETPID)");
  int v = ::semctl(id_, i, GETPID);
  if (v == -1) fail(errno, "semctl(GETPID)");
  return static_cast<pid_t>(v);
}

void semaphore_set::set_value(unsigned short i, unsigned short v) {
  check_index(i, "semctl(SETVAL)");
  if (v > max_value) ipc::throw_errno(ERANGE, "semctl(SETVAL)", object_);
  semun arg{};
  arg.val = v;
  if (::semctl(id_, i, SETVAL, arg) == -1) fail(errno, "semctl(SETVAL)");
}

void semaphore_set::remove() {
  if (id_ >= 0 && ::semctl(id_, 0, IPC_RMID) == -1 && errno != EIDRM && errno != EINVAL) {
    ipc::throw_errno(errno, "semctl(IPC_RMID)", object_);
  }
  if (!key_file_.empty() && ::unlink(key_file_.c_str()) == -1 && errno != ENOENT) {
    ipc::throw_errno(errno, "unlink", key_file_);
  }
}

bool semaphore_set::remove(std::string_view name) {
  const std::string key_file = resolve_name(std::string(name) + ".sem").string();
  if (::access(key_file.c_str(), F_OK) == -1 && errno == ENOENT) return false;
  const key_t key = detail::sysv_key(key_file, 'S', false);
  const std::string object = describe(key_file, key);
  bool removed = false;
  int id = ::semget(key, 0, 0);
  if (id >= 0) {
    semid_ds ds{};
    semun arg{};
    arg.buf = &ds;
    ipc::check_unix(::semctl(id, 0, IPC_STAT, arg), "semctl(IPC_STAT)", object);
    detail::check_owner(ds.sem_perm.uid, ds.sem_perm.mode, "semctl(IPC_RMID)", object);
    ipc::check_unix(::semctl(id, 0, IPC_RMID), "semctl(IPC_RMID)", object);
    removed = true;
  } else if (errno != ENOENT) {
    ipc::throw_errno(errno, "semget", object);
  }
  if (::unlink(key_file.c_str()) == -1 && errno != ENOENT) ipc::throw_errno(errno, "unlink", key_file);
  return removed;
}

semaphore_set::guard::guard(semaphore_set& s, unsigned short i) : set_(s), index_(i) { set_.wait(index_, 1, undo::yes); }

semaphore_set::guard::~guard() {
  try {
    set_.post(index_, 1, undo::yes);
  } catch (...) {  // NOLINT(bugprone-empty-catch): a removed set has nothing left to release
  }
}

}  // namespace ipc
