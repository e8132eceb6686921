// named-sync-peer COMMAND NAME... — exec'd by the [named_sync] and [lock_order] tests as an
// unrelated process that opens the toolkit's named objects by name (open_only: the test made them).
//
//   hold NAME                 lock named_mutex NAME, print "locked", sleep until killed (60 s max)
//   count NAME N              N times: lock NAME, ++ the shared_object<long> NAME (a plain
//                             read-modify-write), unlock; print "counted N"
//   cond-wait NAME            lock named_mutex NAME, print "waiting", wait (30 s) on named_condition
//                             NAME until shared_object<long> NAME is non-zero; print "woken VALUE"
//                             or "timeout"
//   event-wait NAME           wait (30 s) for event NAME; print "set" or "timeout"
//   barrier NAME [hang]       print "arrived", wait at barrier NAME (30 s); print "passed INDEX",
//                             "timeout" or "broken: WHAT"; with hang: print "arrived" and sleep instead
//   abba FIRST SECOND MINE OTHER
//                             lock named_mutex FIRST, set event MINE, wait (30 s) for event OTHER,
//                             lock SECOND; print "took both" or "violation: WHAT" (exit 3)
//   nest FIRST SECOND [hang]  lock named_mutex FIRST then SECOND (the checker learns that order),
//                             print "registry OBJECT" and "nested"; with hang: then sleep until killed (60 s)
// Exit: 0 done, 1 error (printed), 2 usage, 3 violation, 4 timeout.
#include <ipc/named_sync.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <mutex>
#include <string>
#include <thread>

using namespace std::chrono_literals;
using ipc::open_mode;

namespace {

int usage(const char* self) {
  std::fprintf(stderr, "usage: %s hold|count|cond-wait|event-wait|barrier|abba NAME...\n", self);
  return 2;
}

int say(const std::string& line, int code = 0) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
  return code;
}

}  // namespace

int main(int argc, char* argv[]) {
  if (argc < 3) return usage(argv[0]);
  const std::string cmd = argv[1], name = argv[2];
  try {
    if (cmd == "hold") {
      ipc::named_mutex m(name, open_mode::open_only);
      m.lock();
      say("locked");
      std::this_thread::sleep_for(60s);
      return 0;
    }
    if (cmd == "count" && argc == 4) {
      ipc::named_mutex m(name, open_mode::open_only);
      ipc::shared_object<long> counter(name, open_mode::open_only);
      const long n = std::stol(argv[3]);
      for (long i = 0; i < n; ++i) {
        std::lock_guard lk(m);
        volatile long* v = counter.get();
        *v = *v + 1;
      }
      return say("counted " + std::to_string(n));
    }
    if (cmd == "cond-wait") {
      ipc::named_mutex m(name, open_mode::open_only);
      ipc::named_condition cv(name, open_mode::open_only);
      ipc::shared_object<long> flag(name, open_mode::open_only);
      std::unique_lock lk(m);
      say("waiting");
      if (!cv.wait_for(lk, 30s, [&] { return *flag != 0; })) return say("timeout", 4);
      return say("woken " + std::to_string(*flag));
    }
    if (cmd == "event-wait") {
      ipc::event e(name, open_mode::open_only);
      return e.wait_for(30s) ? say("set") : say("timeout", 4);
    }
    if (cmd == "barrier") {
      ipc::barrier b(name, 0, open_mode::open_only);
      say("arrived");
      if (argc == 4 && std::string(argv[3]) == "hang") {
        std::this_thread::sleep_for(60s);
        return 0;
      }
      try {
        auto index = b.wait_for(30s);
        return index ? say("passed " + std::to_string(*index)) : say("timeout", 4);
      } catch (const std::system_error& e) {
        return say(std::string("broken: ") + e.what(), 3);
      }
    }
    if (cmd == "nest" && argc >= 4) {
      ipc::named_mutex first(argv[2], open_mode::open_only), second(argv[3], open_mode::open_only);
      std::unique_lock l1(first);
      std::unique_lock l2(second);
      say("registry " + ipc::lock_order_checker::registry());
      say("nested");
      if (argc == 5 && std::string(argv[4]) == "hang") std::this_thread::sleep_for(60s);
      return 0;
    }
    if (cmd == "abba" && argc == 6) {
      ipc::named_mutex first(argv[2], open_mode::open_only), second(argv[3], open_mode::open_only);
      ipc::event mine(argv[4], open_mode::open_only), other(argv[5], open_mode::open_only);
      std::unique_lock l1(first);
      mine.set();
      if (!other.wait_for(30s)) return say("timeout", 4);
      try {
        std::unique_lock l2(second);
      } catch (const std::system_error& e) {
        return say(std::string("violation: ") + e.what(), 3);
      }
      return say("took both");
    }
    return usage(argv[0]);
  } catch (const std::exception& e) {
    return say(std::string("error: ") + e.what(), 1);
  }
}
