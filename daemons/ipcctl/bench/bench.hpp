// The libipc benchmark: every channel between two processes (fork), at several message sizes —
// one-way throughput and round-trip latency — next to the same mechanism done with plain
// syscalls and to Boost.Interprocess message_queue, with the ratios. See docs/benchmarks.md.
//
//   ipc-bench                                  // table: 5 channels x {libipc, raw} + boost, 64 B, 1 KiB, 16 KiB
//   ipc-bench --duration 0.2 --sizes 64,4K --channels pipe,shm --json
//   ipc-bench --idle 2 --rate 20000 --modes --json   // and the sections after the table, every figure in the JSON
//   ipc-bench --plot bench.png                 // needs gnuplot (apt-get install gnuplot-nox)
//
// ipcctl runs it as `ipcctl bench [options]`: pass the arguments after "bench" with argv[0] set to
// anything (it is only used in messages).
#pragma once

namespace ipc::bench {

/// Parses the options and runs the benchmark; blocks for the whole run (about a minute by default).
/// Never throws. Returns 0 on success, 1 when a measurement or --check failed, 2 for bad options,
/// 130 when interrupted by SIGINT/SIGTERM (the running cell's child is killed, its objects removed).
int ipc_bench_main(int argc, char** argv);

}  // namespace ipc::bench
