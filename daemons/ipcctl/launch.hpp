// `ipcctl launch`: runs producer/consumer pairs locally, without systemd, and supervises them.
//
//   ipcctl::launch_options o;
//   o.kinds = {"msgq", "shm"};
//   o.duration_s = 5;
//   int rc = ipcctl::launch(o);   // 0 ok, 1 failure, 3 a record was lost, duplicated, reordered or corrupt
//
// Each pair is fork+exec of ipc-producer / ipc-consumer (found next to ipcctl, in the build tree's
// parent directory, or in $PATH). Their stderr is read line by line: stats lines feed the table,
// everything else is passed through to our stderr prefixed with the pair and role. A daemon that dies
// (signal, or exit status other than 0 and 2) is restarted with back-off and counted; one that fails
// five times within ten seconds is given up. At the end (duration reached, SIGINT, SIGTERM) the
// producers get SIGTERM first; once their consumers have caught up (or 5 s passed) the consumers get
// SIGTERM; whatever has not exited 5 s later gets SIGKILL.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ipcctl {

struct launch_options {
  std::vector<std::string> kinds;  ///< pipe, fifo, msgq, sem, shm
  double duration_s = 5;           ///< 0: until SIGINT/SIGTERM
  std::uint64_t rate = 0;          ///< records/s per producer, 0 = as fast as the channel goes
  std::size_t size = 64;           ///< payload bytes
  double interval_s = 1;           ///< stats interval (and table refresh)
  std::string prefix = "demo";     ///< object names: PREFIX-fifo, PREFIX-msgq, …
};

/// The channel URI launch uses for kind under prefix: "pipe", "fifo:PREFIX-fifo", "msgq:PREFIX-msgq" …
std::string launch_uri(const std::string& kind, const std::string& prefix);

/// Runs the pairs until the duration ends or SIGINT/SIGTERM arrives; prints a live table on stdout
/// (in place on a terminal) and a summary. Returns the exit status (0, 1 or 3). Throws
/// std::runtime_error when a daemon program cannot be found.
int launch(const launch_options& o);

}  // namespace ipcctl
