#include "stats.hpp"

#include <charconv>
#include <cstdlib>
#include <string>

namespace ipcctl {
namespace {

bool to_u64(std::string_view v, std::uint64_t& out) {
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  return ec == std::errc{} && p == v.data() + v.size();
}

bool to_hex(std::string_view v, std::uint64_t& out) {
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out, 16);
  return ec == std::errc{} && p == v.data() + v.size();
}

bool to_double(std::string_view v, double& out) {
  std::string s(v);
  char* end = nullptr;
  out = std::strtod(s.c_str(), &end);
  return !s.empty() && end == s.c_str() + s.size();
}

}  // namespace

std::string_view strip_priority(std::string_view line) noexcept {
  if (line.size() >= 3 && line[0] == '<' && line[1] >= '0' && line[1] <= '7' && line[2] == '>') line.remove_prefix(3);
  return line;
}

std::optional<stats> parse_stats(std::string_view line) {
  line = strip_priority(line);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  if (!line.starts_with("stats ")) return std::nullopt;
  line.remove_prefix(6);
  stats s;
  bool have_role = false, have_pid = false;
  while (!line.empty()) {
    auto sp = line.find(' ');
    auto item = line.substr(0, sp);
    line = sp == std::string_view::npos ? std::string_view{} : line.substr(sp + 1);
    if (item.empty()) continue;
    auto eq = item.find('=');
    if (eq == std::string_view::npos) return std::nullopt;
    auto k = item.substr(0, eq);
    auto v = item.substr(eq + 1);
    std::uint64_t u = 0;
    bool ok = true;
    if (k == "role") {
      s.role = v;
      have_role = v == "producer" || v == "consumer";
    } else if (k == "channel") {
      s.channel = v;
    } else if (k == "pid") {
      ok = to_u64(v, u) && u > 0;
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
      ok = to_double(v, s.p50_us);
    } else if (k == "p99_us") {
      ok = to_double(v, s.p99_us);
    } else if (k == "restarts") {
      ok = to_u64(v, s.restarts);
    } else if (k == "session") {
      ok = to_hex(v, s.session);
    } else if (k == "first_seq") {
      ok = to_u64(v, s.first_seq);
    } else if (k == "seq") {
      ok = to_u64(v, s.seq);
    } else if (k == "final") {
      ok = v == "0" || v == "1";
      s.final = v == "1";
    }
    if (!ok) return std::nullopt;
  }
  if (!have_role || !have_pid) return std::nullopt;
  return s;
}

}  // namespace ipcctl
