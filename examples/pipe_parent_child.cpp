// Tutorial: a pipe from a parent to its child. The parent writes three messages and closes its
// end; the child reads until the pipe reports that the writer has gone (errc::closed).
#include <ipc/error.hpp>
#include <ipc/pipe.hpp>
#include <ipc/process.hpp>

#include <cstdio>
#include <string>
#include <system_error>
#include <vector>

int main() {
  auto [tx, rx] = ipc::pipe_channel::create();
  auto child = ipc::process::fork([&] {
    tx.reset();  // the child's copy of the write end: without closing it the child never sees EOF
    std::vector<std::byte> message;
    try {
      for (;;) {
        rx->receive(message);
        std::printf("child got: %s\n", std::string(ipc::as_text(message)).c_str());
      }
    } catch (const std::system_error& e) {
      if (e.code() != ipc::errc::closed) throw;
      std::printf("child: the parent closed the pipe\n");
    }
    return 0;
  });
  rx.reset();  // the parent only writes
  for (const char* text : {"one", "two", "three"}) tx->send(ipc::as_bytes(text));
  tx.reset();  // EOF for the child
  std::printf("parent: child %s\n", child.join().to_string().c_str());
}
