// ipc-producer --channel URI [--rate R] [--size B] [--count N] [--source FILE|-] …
// Sends checked records over any libipc channel; see docs/daemons.md.
#include "runtime.hpp"

int main(int argc, char** argv) { return ipc::daemon::run_producer(argc, argv); }
