// Throughput of the shm: ring between two processes (not a test; prints a table).
//
//   build/tests/bench-shm-ring [seconds-per-size]
//
// For each message size a forked child opens the sender and sends as many messages as it can for
// the given time (default 1 s); the parent receives, checks the sequence numbers and reports the
// receive rate from the first message to the last.
#include <ipc/shm_ring.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

namespace {

constexpr std::uint64_t end_marker = ~std::uint64_t{0};

int run_sender(const std::string& name, std::size_t size, double seconds) {
  ipc::shm_ring tx(name, ipc::role::sender, {.capacity = std::size_t{1} << 20,
                                             .max_message = std::size_t{64} << 10,
                                             .mode = 0600,
                                             .open = ipc::open_mode::open_only});
  std::vector<std::byte> msg(size);
  const auto stop = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  std::uint64_t seq = 0;
  for (;;) {
    for (int i = 0; i < 256; ++i, ++seq) {
      std::memcpy(msg.data(), &seq, sizeof seq);
      tx.send(msg);
    }
    if (std::chrono::steady_clock::now() >= stop) break;
  }
  std::memcpy(msg.data(), &end_marker, sizeof end_marker);
  tx.send(msg);
  return 0;
}

}  // namespace

int run(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 1.0;
  std::printf("%10s %14s %12s\n", "size", "msgs/s", "MB/s");
  for (std::size_t size : {std::size_t{64}, std::size_t{1024}, std::size_t{16384}}) {
    const std::string name = "bench-" + std::to_string(::getpid()) + "-" + std::to_string(size);
    ipc::shm_ring rx(name, ipc::role::receiver, {.capacity = std::size_t{1} << 20,
                                                 .max_message = std::size_t{64} << 10,
                                                 .mode = 0600,
                                                 .open = ipc::open_mode::create_only});
    const pid_t child = ::fork();
    if (child < 0) return 2;
    if (child == 0) {
      int rc = 3;
      try {
        rc = run_sender(name, size, seconds);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "sender: %s\n", e.what());
      }
      ::_exit(rc);
    }
    // Unlinked once the child has attached (or failed): nothing is left in /dev/shm.
    struct unlink_at_end {
      ipc::shm_ring& ring;
      ~unlink_at_end() {
        try {
          ring.remove();
        } catch (const std::exception& e) {
          std::fprintf(stderr, "%s\n", e.what());
        }
      }
    } unlink{rx};
    std::vector<std::byte> buf;
    std::uint64_t expect = 0;
    std::chrono::steady_clock::time_point first{};
    for (;;) {
      rx.receive(buf);
      std::uint64_t seq = 0;
      std::memcpy(&seq, buf.data(), sizeof seq);
      if (expect == 0) first = std::chrono::steady_clock::now();
      if (seq == end_marker) break;
      if (seq != expect) {
        std::fprintf(stderr, "size %zu: got message %llu, expected %llu\n", size,
                     static_cast<unsigned long long>(seq), static_cast<unsigned long long>(expect));
        return 1;
      }
      ++expect;
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - first).count();
    int st = 0;
    ::waitpid(child, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return 1;
    std::printf("%10zu %14.0f %12.1f\n", size, static_cast<double>(expect) / secs,
                static_cast<double>(expect) * static_cast<double>(size) / secs / 1e6);
  }
  return 0;
}

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench-shm-ring: %s\n", e.what());
    return 1;
  }
}
