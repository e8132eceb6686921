#include "loss.hpp"

#include <algorithm>

namespace ipcctl {

void role_reports::take(const stats& s) {
  auto it = std::find_if(procs.rbegin(), procs.rend(), [&](const process_report& r) { return r.last.pid == s.pid; });
  process_report& r = it != procs.rend() ? *it : procs.emplace_back();
  r.last = s;
  if (s.session != 0 && s.seq != 0) r.sessions[s.session] = span{s.first_seq, s.seq};
  if (s.p50_us > 0 || s.p99_us > 0) latency = std::pair{static_cast<double>(s.p50_us), static_cast<double>(s.p99_us)};
}

const stats* role_reports::current() const { return procs.empty() ? nullptr : &procs.back().last; }

std::uint64_t role_reports::sum(std::uint64_t stats::*field) const {
  std::uint64_t n = 0;
  for (const auto& r : procs) n += r.last.*field;
  return n;
}

pair_totals account(const role_reports& sent, const role_reports& received, const account_options& o) {
  pair_totals t;
  t.received = received.sum(&stats::records);
  t.bytes = received.sum(&stats::bytes);
  t.lost = received.sum(&stats::lost);
  t.dup = received.sum(&stats::dup);
  t.reorder = received.sum(&stats::reorder);
  t.corrupt = received.sum(&stats::corrupt);
  // For channels other than pipe a producer's own `restarts` counts channel reopens, which follow a
  // consumer restart and are not counted again; the pipe producer's are its consumer's restarts.
  t.restarts = o.process_restarts + (o.count_producer_restarts ? sent.sum(&stats::restarts) : 0);
  std::map<std::uint64_t, std::uint64_t> last_sent;  // session → highest sequence sent
  for (const auto& r : sent.procs) {
    if (r.last.records > 0 && r.last.session == 0) t.unverified = "a producer reported no sequence numbers";
    for (const auto& [session, sp] : r.sessions) last_sent[session] = std::max(last_sent[session], sp.highest);
  }
  for (const auto& r : received.procs) {
    if (r.last.records > 0 && r.sessions.empty()) t.unverified = "a consumer reported no sequence numbers";
    // A producer killed after its last stats line sent more than it reported.
    for (const auto& [session, sp] : r.sessions) last_sent[session] = std::max(last_sent[session], sp.highest);
  }
  if (o.producer_died) t.unverified = "a producer died: what it sent after its last stats line and nobody received is unknown";
  for (const auto& [session, highest_sent] : last_sent) {
    std::uint64_t next = 1;  // the first sequence no consumer has accounted for yet
    for (const auto& r : received.procs) {
      auto it = r.sessions.find(session);
      if (it == r.sessions.end()) continue;
      const span sp = it->second;
      if (sp.first > next) t.lost += sp.first - next;
      if (sp.first < next) t.dup += std::min(sp.highest + 1, next) - sp.first;
      next = std::max(next, sp.highest + 1);
    }
    if (o.final && highest_sent >= next) t.lost += highest_sent + 1 - next;
    t.sent += highest_sent;
  }
  return t;
}

bool consumer_behind(const role_reports& sent, const role_reports& received) {
  const stats* s = sent.current();
  if (s == nullptr || s->seq == 0) return false;
  if (received.procs.empty()) return true;
  const auto& seen = received.procs.back().sessions;
  auto it = seen.find(s->session);
  return it == seen.end() || it->second.highest < s->seq;
}

}  // namespace ipcctl
