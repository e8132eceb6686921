// Internal to the benchmark: runs one measurement between this process and a forked child over a
// transport, checking every message, with a watchdog so that a broken or dead peer ends the cell
// with an error instead of a hang, and with every child reaped and every object removed.
#pragma once

#include "transport.hpp"

#include <ipc/process.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace ipc::bench {

/// Rounds each table cell's (and each modes row's) --duration is split into, interleaved with the
/// rows it is compared with (a libipc cell with its raw twin; the modes rows of one size with each
/// other); the best round counts (docs/benchmarks.md, "Fair ratios").
inline constexpr unsigned cell_rounds = 3;

struct throughput_figures {
  std::uint64_t messages = 0;  ///< messages counted (after the first, which starts the clock)
  double seconds = 0;          ///< from the first message received to the end marker
  /// CPU time of both processes per message, in ns: the sender's thread over its send loop plus the
  /// receiver's thread from the first message to the end marker, ÷ messages. What a message costs,
  /// whatever else the machine runs (throughput swings with the load; this moves far less).
  double cpu_ns_per_msg = 0;
};

struct latency_figures {
  std::uint64_t round_trips = 0;  ///< round trips measured (after the warm-up)
  double p50_us = 0;
  double p99_us = 0;
};

/// steady_clock (CLOCK_MONOTONIC, the same in every process) now, in nanoseconds: what the
/// children stamp and the parent compares across processes.
std::int64_t now_ns() noexcept;

/// The q-quantile (0 … 1) of `sorted` (ascending, not empty): the sample at index ⌊q·n⌋, the last at most.
double percentile(const std::vector<double>& sorted, double q) noexcept;

/// How every child of the benchmark is made (run_forked's, the modes' N + M): named `name`, killed
/// with its handle and with this process (SIGKILL at parent death). Never throws but bad_alloc.
process_options child_options(std::string name);
/// The first call in such a child: ^C goes to the whole terminal's group, and is the parent's to
/// handle (it ends the run and kills the children), so the child ignores it; SIGTERM kills. Never throws.
void child_signals() noexcept;

/// Set by the SIGINT/SIGTERM handler: the running cell ends (child killed, objects removed) and the
/// run stops.
extern std::atomic<bool> stop_requested;

/// Forks the child, which opens its ends and runs `child_body`; runs `parent_body` here. The
/// transport is set up before and torn down after, whatever happens; the child is always reaped.
/// Throws the child's or this side's failure.
void run_forked(transport& t, std::size_t size, std::vector<side> senders, double seconds,
                const std::function<void(transport&)>& child_body,
                const std::function<void(transport&)>& parent_body);

/// The calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID), in ns.
std::int64_t thread_cpu_ns() noexcept;

/// The child sends `size`-byte messages for `seconds`, then an end marker; this process receives,
/// checks each one's size and sequence number and times them; both sides' CPU time is taken too.
/// Throws on any failure.
throughput_figures measure_throughput(transport& t, std::size_t size, double seconds);

/// This process sends a ping, the child echoes it on a second link; round trips for `seconds`
/// after a short warm-up. Throws on any failure.
latency_figures measure_latency(transport& t, std::size_t size, double seconds);

}  // namespace ipc::bench
