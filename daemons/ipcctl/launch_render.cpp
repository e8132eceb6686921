#include "launch_render.hpp"

#include "table.hpp"

namespace ipcctl {

std::string render_table(const std::vector<pair_view>& pairs, bool summary, double elapsed) {
  table t({"channel", "sent", "received", "rec/s", "MB/s", "p50 us", "p99 us", "lost", "dup", "reord", "corrupt",
           "restarts", "state"},
          {false, true, true, true, true, true, true, true, true, true, true, true, false});
  pair_totals all;
  auto per_s = [&](double v) { return elapsed > 0 ? v / elapsed : 0.0; };
  for (const auto& p : pairs) {
    const auto& x = p.totals;
    const stats* last = p.received->current();
    const double rate = summary ? per_s(static_cast<double>(x.received)) : (last ? last->rate : 0);
    const double mbps = summary ? per_s(static_cast<double>(x.bytes)) / 1e6 : (last ? last->mbps : 0);
    const auto& lat = p.received->latency;
    t.add({p.uri, std::to_string(x.sent), std::to_string(x.received), fmt(rate, 0), fmt(mbps, 2),
           lat ? fmt(lat->first, 1) : "-", lat ? fmt(lat->second, 1) : "-", std::to_string(x.lost),
           std::to_string(x.dup), std::to_string(x.reorder), std::to_string(x.corrupt), std::to_string(x.restarts),
           p.state});
    all.sent += x.sent;
    all.received += x.received;
    all.bytes += x.bytes;
    all.lost += x.lost;
    all.dup += x.dup;
    all.reorder += x.reorder;
    all.corrupt += x.corrupt;
    all.restarts += x.restarts;
  }
  if (summary && pairs.size() > 1) {
    t.add({"total", std::to_string(all.sent), std::to_string(all.received), fmt(per_s(static_cast<double>(all.received)), 0),
           fmt(per_s(static_cast<double>(all.bytes)) / 1e6, 2), "-", "-", std::to_string(all.lost), std::to_string(all.dup),
           std::to_string(all.reorder), std::to_string(all.corrupt), std::to_string(all.restarts), ""});
  }
  return t.render();
}

std::string render_progress(const std::vector<pair_view>& pairs, double elapsed) {
  std::string out;
  for (const auto& p : pairs) {
    const auto& x = p.totals;
    const stats* last = p.received->current();
    const auto& lat = p.received->latency;
    out += "t=" + fmt(elapsed, 1) + "s " + p.uri + " sent=" + std::to_string(x.sent) + " received=" +
           std::to_string(x.received) + " rec/s=" + (last ? fmt(last->rate, 0) : "-") + " MB/s=" +
           (last ? fmt(last->mbps, 2) : "-") + " p50_us=" + (lat ? fmt(lat->first, 1) : "-") + " p99_us=" +
           (lat ? fmt(lat->second, 1) : "-") + " lost=" + std::to_string(x.lost) + " corrupt=" + std::to_string(x.corrupt) +
           " restarts=" + std::to_string(x.restarts) + " state=" + p.state + "\n";
  }
  return out;
}

summary render_summary(const std::vector<pair_view>& pairs, double elapsed, std::size_t size) {
  summary s;
  s.text = "summary (" + fmt(elapsed, 1) + " s, " + std::to_string(size) + "-byte records):\n" +
           render_table(pairs, true, elapsed);
  bool loss = false, failure = false;
  std::vector<std::string> problems;
  for (const auto& p : pairs) {
    const auto& x = p.totals;
    if (!x.unverified.empty()) {
      failure = true;
      problems.push_back(p.uri + ": unverified, the figures may be inexact: " + x.unverified);
    }
    if (x.lost + x.dup + x.reorder + x.corrupt > 0) {
      loss = true;
      problems.push_back(p.uri + ": " + std::to_string(x.lost) + " lost, " + std::to_string(x.dup) + " duplicated, " +
                         std::to_string(x.reorder) + " reordered, " + std::to_string(x.corrupt) + " corrupt");
    }
    if (p.consumer_exit_code == 3) {
      loss = true;
      problems.push_back(p.uri + ": the consumer reported damaged records (exit status 3)");
    }
    if (x.received == 0) {
      failure = true;
      problems.push_back(p.uri + ": no record moved");
    }
    for (const auto& role : p.gave_up) {
      failure = true;
      problems.push_back(p.uri + ": the " + role + " kept failing (or failed for good) and was given up");
    }
  }
  for (const auto& m : problems) s.text += "FAILED " + m + "\n";
  if (problems.empty()) s.text += "ok: every record arrived, none lost, duplicated, reordered or corrupt\n";
  s.exit_code = loss ? 3 : failure ? 1 : 0;
  return s;
}

}  // namespace ipcctl
