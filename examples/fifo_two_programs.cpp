// Tutorial: a FIFO (named pipe) between two unrelated programs, and from a shell.
//
//   fifo_two_programs reader PATH COUNT   creates PATH, prints COUNT lines it reads, removes PATH
//   fifo_two_programs writer PATH TEXT... writes each TEXT as one line
//
// With framing=lines every message is one text line, so `echo hi > PATH` is a writer too
// (examples/fifo_shell.sh runs a reader, this program as a writer, and then the shell).
#include <ipc/error.hpp>
#include <ipc/fifo.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <system_error>
#include <vector>

int main(int argc, char* argv[]) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s reader PATH COUNT | writer PATH TEXT...\n", argv[0]);
    return 2;
  }
  const std::string role = argv[1];
  ipc::fifo_options lines;
  lines.framing = ipc::fifo_framing::lines;
  if (role == "writer") {
    auto tx = ipc::fifo_channel::open(argv[2], ipc::role::sender, lines);  // sends wait for the reader
    for (int i = 3; i < argc; ++i) tx->send(ipc::as_bytes(argv[i]));
    return 0;
  }
  auto rx = ipc::fifo_channel::open(argv[2], ipc::role::receiver, lines);  // creates the FIFO (mode 0600)
  std::printf("reader: ready\n");
  std::fflush(stdout);
  std::vector<std::byte> line;
  for (int got = 0, want = std::atoi(argv[3]); got < want;) {
    try {
      rx->receive(line);
      std::printf("reader got: %s\n", std::string(ipc::as_text(line)).c_str());
      ++got;
    } catch (const std::system_error& e) {
      if (e.code() != ipc::errc::closed) throw;
      rx->reopen();  // a writer left: wait for the next one
    }
  }
  rx->remove();
  return 0;
}
