// ipc-consumer --channel URI [--sink FILE|-|null] [--count N] …
// Receives and checks records from any libipc channel; see docs/daemons.md.
#include "runtime.hpp"

int main(int argc, char** argv) { return ipc::daemon::run_consumer(argc, argv); }
