// ipc::event: a flag, the segment's robust lock and a robust_condition (Python's Event).
#include <ipc/named_sync.hpp>

#include <cstdint>

namespace ipc {

struct event::state {
  robust_condition cv;
  std::uint32_t flag;
};

event::event(std::string_view name, open_mode mode, bool initially_set, const named_options& options)
    : seg_(name, mode, {"event", sizeof(state), alignof(state), 0},
           [initially_set](void* at) {
             auto* s = static_cast<state*>(at);
             robust_condition::create_at(&s->cv);
             s->flag = initially_set ? 1 : 0;
           },
           options),
      s_(static_cast<state*>(seg_.object())) {}

// The flag is one word written whole under the lock, so a setter killed inside leaves it either
// set or not: an owner death needs no repair here.
void event::set() {
  std::unique_lock lk(seg_.lock());
  s_->flag = 1;
  s_->cv.notify_all();
}

void event::clear() {
  std::unique_lock lk(seg_.lock());
  s_->flag = 0;
}

bool event::is_set() const {
  std::unique_lock lk(seg_.lock());
  return s_->flag != 0;
}

void event::wait() { wait_until(deadline::never()); }

bool event::wait_until(const deadline& d) {
  std::unique_lock lk(seg_.lock());
  return s_->cv.wait_until(lk, d, [&] { return s_->flag != 0; });
}

bool event::remove(std::string_view name, segment_backing backing) {
  return detail::named_segment::remove("event", name, backing);
}

}  // namespace ipc
