// A real nats-server for the tests: on a free loopback port, JetStream in a temporary directory,
// started and stopped through ipc::process.
//
//   ipc::test::nats_server s;                       // started; ready within 10 s or it throws
//   auto tx = ipc::open_channel("nats://" + s.address() + "/demo?jetstream=DEMO", ipc::role::sender);
//   s.kill(); s.start();                            // same port, same store: the stream survives
//
// A three-server cluster: give each a cluster port and the others' cluster ports as routes
// (nats_server::config), and a server name. Only 127.0.0.1 (or a test netns address) is used.
#pragma once

#include <ipc/process.hpp>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace ipc::test {

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
int free_loopback_port();

class nats_server {
 public:
  struct config {
    std::string name;                 ///< server_name (required in a cluster); default "test-<port>"
    int port = 0;                     ///< 0: a free one
    int cluster_port = 0;             ///< 0: no cluster
    std::vector<int> routes;          ///< the other servers' cluster ports
    std::string cluster_name = "ipc-test";
    bool start = true;                ///< start in the constructor
    std::string address = "127.0.0.1";  ///< where it listens (a test netns address at most)
    std::vector<std::string> prefix;  ///< runs it through a wrapper, e.g. {"/usr/bin/ip", "netns", "exec", NS}
  };
  nats_server() : nats_server(config{}) {}
  /// Makes the store directory and (by default) starts the server. Throws std::runtime_error
  /// (with the server's log) when it is not ready within 10 s.
  explicit nats_server(config c);
  /// Stops the server (SIGTERM, then SIGKILL after 5 s) and removes the store directory.
  ~nats_server();
  nats_server(const nats_server&) = delete;
  nats_server& operator=(const nats_server&) = delete;

  /// Starts it (again: same port and store), waits until it logs "Server is ready" (10 s at most).
  void start();
  /// SIGTERM and wait (5 s, then SIGKILL). The store is kept.
  void stop();
  /// SIGKILL and reap. The store is kept.
  void kill();
  [[nodiscard]] bool running() { return proc_.joinable() && proc_.running(); }

  [[nodiscard]] int port() const { return c_.port; }
  /// "127.0.0.1:PORT", for nats://ADDRESS/SUBJECT.
  [[nodiscard]] std::string address() const { return c_.address + ":" + std::to_string(c_.port); }
  /// The server's log so far.
  [[nodiscard]] std::string log() const;

 private:
  config c_;
  std::filesystem::path dir_;
  ipc::process proc_;
};

}  // namespace ipc::test
