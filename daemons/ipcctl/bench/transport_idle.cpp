#include "transport_idle.hpp"

#include "runner.hpp"
#include "table.hpp"

#include <ipc/error.hpp>

#include <sys/resource.h>
#include <unistd.h>
#include <time.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <thread>

namespace ipc::bench {
namespace {

constexpr std::size_t idle_message = 64;

double cpu_us(const rusage& r) {
  return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e6 +
         static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
}

// voluntary_ctxt_switches of every thread of pid (/proc/PID/status counts the whole process).
long voluntary_switches(pid_t pid) {
  std::FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/status").c_str(), "re");
  if (f == nullptr) ipc::throw_errno(errno, "fopen", "/proc/" + std::to_string(pid) + "/status");
  char line[256];
  long v = -1;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::sscanf(line, "voluntary_ctxt_switches: %ld", &v) == 1) break;
  }
  std::fclose(f);
  if (v < 0) throw_error(errc::corrupt, "read", "/proc/" + std::to_string(pid) + "/status", "no voluntary_ctxt_switches");
  return v;
}

}  // namespace

idle_figures measure_idle(transport& t, double seconds) {
  idle_figures out;
  auto child = [&](transport& tr) {
    endpoint& rx = tr.end(0);
    endpoint& report = tr.end(1);
    auto m = report.message();
    std::memset(m.data(), 0, m.size());
    const std::int64_t pid = ::getpid();
    std::memcpy(m.data(), &pid, sizeof pid);
    report.send();  // tells the parent whom to watch
    rusage before{}, after{};
    ::getrusage(RUSAGE_SELF, &before);
    (void)rx.receive();  // blocks while the parent sends nothing
    ::getrusage(RUSAGE_SELF, &after);
    const auto cpu = static_cast<std::int64_t>(cpu_us(after) - cpu_us(before));
    std::memcpy(m.data(), &cpu, sizeof cpu);
    report.send();
  };
  auto parent = [&](transport& tr) {
    endpoint& tx = tr.end(0);
    endpoint& report = tr.end(1);
    auto m = tx.message();
    std::memset(m.data(), 0, m.size());
    auto first = report.receive();
    if (first.size() != idle_message) throw_error(errc::corrupt, "receive", "idle report", "wrong size");
    std::int64_t pid = 0;
    std::memcpy(&pid, first.data(), sizeof pid);
    // Let the receiver settle (spin, yield, go to sleep), then count its sleeps over `seconds`.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const long before = voluntary_switches(static_cast<pid_t>(pid));
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    const long after = voluntary_switches(static_cast<pid_t>(pid));
    tx.send();
    const auto last = report.receive();
    std::int64_t cpu = 0;
    std::memcpy(&cpu, last.data(), sizeof cpu);
    out.wakeups_per_s = static_cast<double>(after - before) / seconds;
    out.cpu_ms_per_s = static_cast<double>(cpu) / 1000.0 / (seconds + 0.2);
  };
  run_forked(t, idle_message, {side::parent, side::child}, seconds, child, parent);
  return out;
}

std::string idle_table(const std::vector<idle_row>& rows, double seconds) {
  std::string s = "\nidle receiver: blocked in receive() on an empty channel; voluntary context switches "
                  "(/proc/PID/status) over " + daemon::fmt(seconds, 1) + " s after 0.2 s to settle, CPU over the whole wait\n";
  daemon::table t({"channel", "impl", "wake-ups/s", "CPU ms/s", ""}, {false, false, true, true, false});
  for (const auto& r : rows) {
    if (!r.error.empty()) t.add({r.channel, r.impl, "—", "—", "failed: " + r.error});
    else t.add({r.channel, r.impl, daemon::fmt(r.figures.wakeups_per_s, 1), daemon::fmt(r.figures.cpu_ms_per_s, 3), ""});
  }
  return s + t.render();
}

}  // namespace ipc::bench
