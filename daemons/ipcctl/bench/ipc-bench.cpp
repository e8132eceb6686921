// ipc-bench: the benchmark on its own (ipcctl runs the same code as `ipcctl bench`).
#include "bench.hpp"

int main(int argc, char** argv) { return ipc::bench::ipc_bench_main(argc, argv); }
