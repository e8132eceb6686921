#include "transport_rate.hpp"

#include "runner.hpp"
#include "table.hpp"

#include <ipc/error.hpp>

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <span>
#include <thread>

namespace ipc::bench {
namespace {

constexpr std::size_t rate_message = 64;
constexpr std::uint64_t end_marker = ~std::uint64_t{0};

}  // namespace

rate_figures measure_rate(transport& t, double rate, double seconds) {
  rate_figures out;
  const auto count = static_cast<std::uint64_t>(rate * seconds);
  if (count < 10) throw_error(errc::bad_uri, "bench", "--rate", "fewer than 10 messages: raise the rate or the duration");
  auto child = [&](transport& tr) {
    endpoint& tx = tr.end(0);
    auto m = tx.message();
    std::memset(m.data(), 0, m.size());
    const std::int64_t period = static_cast<std::int64_t>(1e9 / rate);
    const std::int64_t start = now_ns();
    for (std::uint64_t k = 0; k < count; ++k) {
      const std::int64_t due = start + static_cast<std::int64_t>(k) * period;
      // Sleep to ~50 µs before the slot, then spin to it: a timer alone is late by its slack.
      for (std::int64_t left = due - now_ns(); left > 0; left = due - now_ns()) {
        if (left > 100'000) {
          const timespec ts{0, static_cast<long>(left - 50'000)};
          ::nanosleep(&ts, nullptr);
        }
      }
      const std::int64_t stamp = now_ns();
      std::memcpy(m.data(), &k, sizeof k);
      std::memcpy(m.data() + 8, &stamp, sizeof stamp);
      tx.send();
    }
    std::memcpy(m.data(), &end_marker, sizeof end_marker);
    tx.send();
  };
  auto parent = [&](transport& tr) {
    endpoint& rx = tr.end(0);
    std::vector<double> lat;
    lat.reserve(count);
    for (std::uint64_t expect = 0;; ++expect) {
      const auto m = rx.receive();
      const std::int64_t at = now_ns();
      if (m.size() != rate_message) throw_error(errc::corrupt, "receive", "fixed rate", "wrong size");
      std::uint64_t seq = 0;
      std::int64_t stamp = 0;
      std::memcpy(&seq, m.data(), sizeof seq);
      std::memcpy(&stamp, m.data() + 8, sizeof stamp);
      if (seq == end_marker) break;
      if (seq != expect) throw_error(errc::corrupt, "receive", "fixed rate", "sequence " + std::to_string(seq) + ", expected " + std::to_string(expect));
      lat.push_back(static_cast<double>(at - stamp) / 1000.0);
    }
    if (lat.size() < 10) throw_error(errc::corrupt, "receive", "fixed rate", "fewer than 10 messages arrived");
    std::sort(lat.begin(), lat.end());
    out.messages = lat.size();
    out.p50_us = percentile(lat, 0.50);
    out.p99_us = percentile(lat, 0.99);
  };
  run_forked(t, rate_message, {side::child}, seconds, child, parent);
  return out;
}

std::string rate_table(const std::vector<rate_row>& rows, double rate, double seconds) {
  std::string s = "\nfixed rate: " + daemon::fmt(rate, 0) + " msg/s of 64 B for " + daemon::fmt(seconds, 2) +
                  " s, one way (steady_clock stamp before send -> after receive)\n";
  daemon::table t({"channel", "impl", "messages", "p50 µs", "p99 µs", ""}, {false, false, true, true, true, false});
  for (const auto& r : rows) {
    if (!r.error.empty()) {
      t.add({r.channel, r.impl, "—", "—", "—", "failed: " + r.error});
    } else {
      t.add({r.channel, r.impl, std::to_string(r.figures.messages), daemon::fmt(r.figures.p50_us, 1),
             daemon::fmt(r.figures.p99_us, 1), ""});
    }
  }
  return s + t.render();
}

}  // namespace ipc::bench
