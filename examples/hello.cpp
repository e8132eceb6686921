// Two processes, one System V message queue, one message.
// Build: g++ -std=c++20 hello.cpp $(pkg-config --cflags --libs libipc)
#include <ipc/channel.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <string>

int main() {
  auto inbox = ipc::open_channel("msgq:hello", ipc::role::receiver);  // creates the queue, mode 0600
  if (pid_t child = fork(); child == 0) {
    auto outbox = ipc::open_channel("msgq:hello", ipc::role::sender);
    outbox->send(ipc::as_bytes("hello from pid " + std::to_string(getpid())));
    _exit(0);
  } else {
    std::vector<std::byte> message;
    bool got = inbox->receive_for(message, std::chrono::seconds(5)).has_value();
    std::cout << (got ? ipc::as_text(message) : "nothing arrived") << '\n';
    waitpid(child, nullptr, 0);
    inbox->remove();  // queues outlive processes: remove it explicitly
    return got ? 0 : 1;
  }
}
