// ipc::named_condition: a robust_condition in a named segment, waited on with a named_mutex.
#include <ipc/named_sync.hpp>

#include <cerrno>

namespace ipc {

named_condition::named_condition(std::string_view name, open_mode mode, const named_options& options)
    : seg_(name, mode, {"cond", sizeof(robust_condition), alignof(robust_condition), 0},
           [](void* at) { robust_condition::create_at(at); }, options),
      cv_(static_cast<robust_condition*>(seg_.object())) {}

lock_result named_condition::wait(lock_type& lk) {
  wait_until(lk, deadline::never());
  return {lk.mutex()->previous_owner_died()};
}

std::cv_status named_condition::wait_until(lock_type& lk, const deadline& d) {
  if (lk.mutex() == nullptr || !lk.owns_lock()) {
    ipc::throw_errno(EPERM, "named_condition::wait", seg_.object_name() + ": the lock does not hold its mutex");
  }
  // robust_condition waits with a unique_lock of the robust_mutex: lend it ours for the wait and
  // take it back however the wait ends (a relock that threw leaves the mutex unheld).
  std::unique_lock<robust_mutex> inner(lk.mutex()->native(), std::adopt_lock);
  struct give_back {
    std::unique_lock<robust_mutex>& inner;
    lock_type& outer;
    ~give_back() {
      if (inner.owns_lock()) {
        inner.release();
      } else {
        outer.release();
      }
    }
  } back{inner, lk};
  return cv_->wait_until(inner, d);
}

void named_condition::notify_one() noexcept { cv_->notify_one(); }

void named_condition::notify_all() noexcept { cv_->notify_all(); }

bool named_condition::remove(std::string_view name, segment_backing backing) {
  return detail::named_segment::remove("cond", name, backing);
}

}  // namespace ipc
