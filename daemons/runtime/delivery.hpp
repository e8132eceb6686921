// How a channel hands its records out, read from its URI alone - which decides what a consumer can
// check about the stream it sees (docs/daemons.md, "Work queues and broadcast"):
//
//   stream      one consumer sees every record (pipe, fifo, msgq, sem, the shm ring): gaps are loss;
//   work_queue  each record goes to exactly one of several consumers (shm:NAME?mode=mpmc, or a msgq /
//               sem channel a consumer was told it shares, --shared): a consumer sees a subset, so a
//               gap is another consumer's record - only duplicates and records going backwards
//               count; the total is checked by summing every consumer's records;
//   broadcast   every subscriber sees every record published after it joined (?mode=broadcast):
//               each subscriber checks the whole stream from its baseline, as a stream consumer.
//
//   auto d = ipc::daemon::delivery_of(ipc::channel_uri::parse("shm:jobs?mode=mpmc"));   // work_queue
#pragma once

#include <ipc/uri.hpp>

#include <string>

namespace ipc::daemon {

enum class delivery { stream, work_queue, broadcast };

/// How the channel `uri` names delivers records (see above). Throws errc::bad_uri when its `mode`
/// names two channel modes (channel_uri::shm_mode).
delivery delivery_of(const channel_uri& uri);

/// Whether several daemons of one role are expected on the channel (a work queue or broadcast):
/// each then gets a status file of its own (default_status_path). Never throws.
inline bool several_per_role(delivery d) noexcept { return d != delivery::stream; }

}  // namespace ipc::daemon
