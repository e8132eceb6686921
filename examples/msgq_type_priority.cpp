// Tutorial: a System V message queue read by type and by priority. A child process sends five
// typed messages; the parent first takes the type-2 message only, then the rest lowest type first
// (mtype as a priority: 1 is the most urgent).
#include <ipc/msg_queue.hpp>
#include <ipc/process.hpp>

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

int main() {
  ipc::msg_queue q("tutorial-msgq");  // key from ftok($IPC_RUNTIME_DIR/tutorial-msgq.msgq, 'M')
  auto sender = ipc::process::fork([] {
    ipc::msg_queue mine("tutorial-msgq", {.open = ipc::open_mode::open_only});
    std::vector<std::pair<long, std::string>> messages{
        {3, "routine report"}, {1, "disk almost full"}, {2, "user logged in"}, {3, "another report"}, {1, "fan failure"}};
    for (const auto& [type, text] : messages) mine.send(type, ipc::as_bytes(text));
    return 0;
  });
  std::printf("sender %s\n", sender.join().to_string().c_str());

  std::vector<std::byte> body;
  auto r = q.receive(ipc::msg_selector::exact(2), body);  // by type: only mtype 2
  std::printf("by type 2:   [%ld] %s\n", r.type, std::string(ipc::as_text(body)).c_str());
  for (int i = 0; i < 4; ++i) {
    r = q.receive(ipc::msg_selector::up_to(3), body);  // by priority: the lowest mtype <= 3 first
    std::printf("by priority: [%ld] %s\n", r.type, std::string(ipc::as_text(body)).c_str());
  }
  q.remove();  // queues outlive processes: remove it explicitly
}
