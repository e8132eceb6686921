#include "stats_line.hpp"

#include <charconv>
#include <cstdio>
#include <cstdlib>

namespace ipc::daemon {
namespace {

bool to_u64(std::string_view v, std::uint64_t& out, int base = 10) {
  const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out, base);
  return !v.empty() && ec == std::errc{} && p == v.data() + v.size();
}

bool to_double(std::string_view v, double& out) {
  const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  return !v.empty() && ec == std::errc{} && p == v.data() + v.size();
}

}  // namespace

std::string stats_line::format() const {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "stats role=%s channel=%s pid=%ld records=%llu bytes=%llu rate=%.0f mbps=%.3f lost=%llu dup=%llu "
                "reorder=%llu corrupt=%llu p50_us=%llu p99_us=%llu restarts=%llu session=%016llx first_seq=%llu "
                "seq=%llu skipped=%llu final=%d",
                role.c_str(), channel.c_str(), static_cast<long>(pid), static_cast<unsigned long long>(records),
                static_cast<unsigned long long>(bytes), rate, mbps, static_cast<unsigned long long>(lost),
                static_cast<unsigned long long>(dup), static_cast<unsigned long long>(reorder),
                static_cast<unsigned long long>(corrupt), static_cast<unsigned long long>(p50_us),
                static_cast<unsigned long long>(p99_us), static_cast<unsigned long long>(restarts),
                static_cast<unsigned long long>(session), static_cast<unsigned long long>(first_seq),
                static_cast<unsigned long long>(seq), static_cast<unsigned long long>(skipped), final ? 1 : 0);
  return buf;
}

std::string_view strip_priority(std::string_view line) noexcept {
  if (line.size() >= 3 && line[0] == '<' && line[1] >= '0' && line[1] <= '7' && line[2] == '>') line.remove_prefix(3);
  return line;
}

std::optional<stats_line> stats_line::parse(std::string_view line) {
  line = strip_priority(line);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  if (!line.starts_with("stats ")) return std::nullopt;
  line.remove_prefix(6);
  stats_line s;
  bool have_role = false, have_pid = false;
  while (!line.empty()) {
    const auto sp = line.find(' ');
    const auto item = line.substr(0, sp);
    line = sp == std::string_view::npos ? std::string_view{} : line.substr(sp + 1);
    if (item.empty()) continue;
    const auto eq = item.find('=');
    if (eq == std::string_view::npos) return std::nullopt;
    const auto k = item.substr(0, eq);
    const auto v = item.substr(eq + 1);
    bool ok = true;
    std::uint64_t u = 0;
    if (k == "role") {
      s.role = v;
      have_role = !v.empty();
    } else if (k == "channel") {
      s.channel = v;
    } else if (k == "pid") {
      ok = to_u64(v, u) && u > 0 && u < (std::uint64_t{1} << 31);
      s.pid = static_cast<pid_t>(u);
      have_pid = ok;
    } else if (k == "records") {
      ok = to_u64(v, s.records);
    } else if (k == "bytes") {
      ok = to_u64(v, s.bytes);
    } else if (k == "rate") {
      ok = to_double(v, s.rate);
    } else if (k == "mbps") {
      ok = to_double(v, s.mbps);
    } else if (k == "lost") {
      ok = to_u64(v, s.lost);
    } else if (k == "dup") {
      ok = to_u64(v, s.dup);
    } else if (k == "reorder") {
      ok = to_u64(v, s.reorder);
    } else if (k == "corrupt") {
      ok = to_u64(v, s.corrupt);
    } else if (k == "p50_us") {
      ok = to_u64(v, s.p50_us);
    } else if (k == "p99_us") {
      ok = to_u64(v, s.p99_us);
    } else if (k == "restarts") {
      ok = to_u64(v, s.restarts);
    } else if (k == "session") {
      ok = to_u64(v, s.session, 16);
    } else if (k == "first_seq") {
      ok = to_u64(v, s.first_seq);
    } else if (k == "seq") {
      ok = to_u64(v, s.seq);
    } else if (k == "skipped") {
      ok = to_u64(v, s.skipped);
    } else if (k == "final") {
      ok = v == "0" || v == "1";
      s.final = v == "1";
    }
    if (!ok) return std::nullopt;
  }
  if (!have_role || !have_pid) return std::nullopt;
  return s;
}

}  // namespace ipc::daemon
