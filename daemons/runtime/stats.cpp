#include "stats.hpp"

#include "atomic_file.hpp"
#include "log.hpp"
#include "stats_line.hpp"

#include <ipc/uri.hpp>

#include <unistd.h>

#include <bit>
#include <cstdio>

namespace ipc::daemon {

unsigned latency_histogram::index(std::uint64_t ns) noexcept {
  if (ns < (1U << sub_bits)) return static_cast<unsigned>(ns);
  const unsigned msb = 63U - static_cast<unsigned>(std::countl_zero(ns));
  const unsigned shift = msb - sub_bits;
  const auto sub = static_cast<unsigned>((ns >> shift) & ((1U << sub_bits) - 1));
  return ((shift + 1) << sub_bits) + sub;
}

std::uint64_t latency_histogram::upper_bound(unsigned i) noexcept {
  if (i < (1U << sub_bits)) return i;
  const unsigned shift = (i >> sub_bits) - 1;
  const std::uint64_t sub = i & ((1U << sub_bits) - 1);
  const std::uint64_t base = ((std::uint64_t{1} << sub_bits) | sub) << shift;
  return base + ((std::uint64_t{1} << shift) - 1);
}

void latency_histogram::add(std::uint64_t ns) noexcept {
  auto& c = counts_[index(ns)];
  if (c != UINT32_MAX) ++c;
  ++count_;
}

std::uint64_t latency_histogram::percentile_ns(double p) const noexcept {
  if (count_ == 0) return 0;
  if (p < 0.0) p = 0.0;
  if (p > 1.0) p = 1.0;
  auto want = static_cast<std::uint64_t>(p * static_cast<double>(count_));
  if (want == 0) want = 1;
  std::uint64_t seen = 0;
  for (unsigned i = 0; i < buckets; ++i) {
    seen += counts_[i];
    if (seen >= want) return upper_bound(i);
  }
  return upper_bound(buckets - 1);
}

void latency_histogram::reset() noexcept {
  counts_.fill(0);
  count_ = 0;
}

sequence_tracker::session_state& sequence_tracker::find(std::uint64_t session, bool& fresh) noexcept {
  ++tick_;
  session_state* oldest = &sessions_[0];
  for (auto& s : sessions_) {
    if (s.last_used != 0 && s.id == session) {
      s.last_used = tick_;
      fresh = false;
      return s;
    }
    if (s.last_used < oldest->last_used) oldest = &s;
  }
  *oldest = session_state{};
  oldest->id = session;
  oldest->last_used = tick_;
  fresh = true;
  return *oldest;
}

sequence_tracker::verdict sequence_tracker::add(std::uint64_t session, std::uint64_t sequence) noexcept {
  bool fresh = false;
  auto& s = find(session, fresh);
  latest_ = static_cast<std::size_t>(&s - sessions_.data());
  any_ = true;
  if (fresh) {
    ++sessions_seen_;
    s.first = sequence;
    s.next = sequence + 1;
    s.set(sequence);
    return verdict::in_order;
  }
  if (sequence >= s.next) {
    const std::uint64_t gap = sequence - s.next;
    if (gap >= window) {
      s.seen.fill(0);
    } else {
      for (std::uint64_t q = s.next; q < sequence; ++q) s.clear(q);
    }
    s.set(sequence);
    s.next = sequence + 1;
    if (gap == 0) return verdict::in_order;
    if (!shared_) lost_ += gap;  // shared: the gap went to other consumers
    return verdict::gap;
  }
  if (s.next - sequence > window || s.test(sequence)) {
    ++dup_;
    return verdict::duplicate;
  }
  s.set(sequence);
  ++reorder_;
  if (lost_ > 0) --lost_;
  return verdict::reordered;
}

sequence_tracker::span_seen sequence_tracker::latest() const noexcept {
  if (!any_) return {};
  const auto& s = sessions_[latest_];
  return {s.id, s.first, s.next - 1};
}

stats_reporter::stats_reporter(std::string role, std::string channel, std::filesystem::path status_file)
    : role_(std::move(role)), channel_(std::move(channel)), status_file_(std::move(status_file)) {}

std::string stats_reporter::report(const figures& f, latency_histogram& latency, bool final) noexcept {
  try {
    const auto now = std::chrono::steady_clock::now();
    const double secs = std::chrono::duration<double>(now - last_).count();
    const double rate = secs > 0 ? static_cast<double>(f.records - last_records_) / secs : 0.0;
    const double mbps = secs > 0 ? static_cast<double>(f.bytes - last_bytes_) / secs / 1e6 : 0.0;
    last_ = now;
    last_records_ = f.records;
    last_bytes_ = f.bytes;
    const std::uint64_t p50 = latency.percentile_ns(0.50) / 1000;
    const std::uint64_t p99 = latency.percentile_ns(0.99) / 1000;
    latency.reset();
    const stats_line sl{.role = role_, .channel = channel_, .pid = ::getpid(),
                        .records = f.records, .bytes = f.bytes, .rate = rate, .mbps = mbps,
                        .lost = f.lost, .dup = f.dup, .reorder = f.reorder, .corrupt = f.corrupt,
                        .p50_us = p50, .p99_us = p99, .restarts = f.restarts,
                        .session = f.session, .first_seq = f.first_seq, .seq = f.seq, .skipped = f.skipped, .final = final};
    const std::string line = sl.format();
    char buf[256];
    log_line(priority::info, line);
    std::snprintf(buf, sizeof buf, "records=%llu rate=%.0f/s lost=%llu p99=%lluus",
                  static_cast<unsigned long long>(f.records), rate, static_cast<unsigned long long>(f.lost),
                  static_cast<unsigned long long>(p99));
    status_ = buf;
    if (!status_file_.empty()) {
      try {
        write_file_atomically(status_file_, line + "\n");
      } catch (const std::exception& e) {
        if (!warned_) log(priority::warning, "status file: ", e.what(), " (further failures not logged)");
        warned_ = true;
      }
    }
    return line;
  } catch (...) {
    return {};
  }
}

void stats_reporter::remove_status_file() noexcept {
  if (!status_file_.empty()) remove_regular_file(status_file_);
}

std::filesystem::path default_status_path(std::string_view channel_uri, std::string_view role, bool per_process) {
  const auto uri = channel_uri::parse(channel_uri);
  // A pipe has no name: the producer's pid tells two pairs apart (the consumer is the producer's child).
  std::string name = uri.scheme == "pipe" ? std::to_string(role == "producer" ? ::getpid() : ::getppid()) : uri.name;
  while (!name.empty() && name.front() == '/') name.erase(0, 1);
  for (char& c : name) {
    if (c == '/') c = '_';
  }
  // The directory is made by the first write (write_file_atomically): a daemon that stops on a usage
  // error leaves nothing behind.
  const std::string pid = per_process ? "." + std::to_string(::getpid()) : std::string();
  return runtime_dir() / "status" / (uri.scheme + "-" + name + "." + std::string(role) + pid + ".status");
}

}  // namespace ipc::daemon
