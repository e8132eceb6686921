// The exit statuses of every program of the toolkit (docs/daemons.md, docs/errors.md).
#pragma once

namespace ipc::daemon {

enum exit_code : int {
  exit_ok = 0,         ///< done: count reached, SIGTERM drained, end of input
  exit_failure = 1,    ///< the channel (or another resource) failed and could not be recovered
  exit_usage = 2,      ///< a usage error: nothing was created; a supervisor never restarts it
  exit_anomalies = 3,  ///< records were lost, duplicated, reordered or corrupt
  exit_sink = 4,       ///< the consumer's sink failed (EPIPE, ENOSPC, EIO): receiving stopped at once
};

}  // namespace ipc::daemon
