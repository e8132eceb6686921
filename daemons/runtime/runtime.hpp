// The daemons' entry points: each program's main is one line.
//
//   int main(int argc, char** argv) { return ipc::daemon::run_consumer(argc, argv); }
//
// The skeleton they run on is daemon.hpp; exit statuses are exit_status.hpp.
#pragma once

#include "exit_status.hpp"

namespace ipc::daemon {

/// ipc-producer's body. Returns the exit status.
int run_producer(int argc, char** argv) noexcept;
/// ipc-consumer's body. Returns the exit status.
int run_consumer(int argc, char** argv) noexcept;

}  // namespace ipc::daemon
