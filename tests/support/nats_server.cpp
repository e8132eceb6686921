#include "nats_server.hpp"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

namespace ipc::test {

using namespace std::chrono_literals;

int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::system_error(errno, std::system_category(), "socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    const int err = errno;
    ::close(fd);
    throw std::system_error(err, std::system_category(), "bind(127.0.0.1:0)");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

nats_server::nats_server(config c) : c_(std::move(c)) {
  if (c_.port == 0) c_.port = free_loopback_port();
  if (c_.name.empty()) c_.name = "test-" + std::to_string(c_.port);
  std::string tmpl = (std::filesystem::temp_directory_path() / "ipc-nats-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::system_error(errno, std::system_category(), "mkdtemp(" + tmpl + ")");
  dir_ = tmpl;
  if (c_.start) start();
}

nats_server::~nats_server() {
  try {
    stop();
  } catch (...) {  // NOLINT(bugprone-empty-catch): the handle's destructor kills and reaps anyway
  }
  proc_ = ipc::process();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string nats_server::log() const {
  std::ifstream in(dir_ / "server.log");
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

void nats_server::start() {
  const auto log_path = dir_ / "server.log";
  std::error_code ec;
  const auto offset = std::filesystem::exists(log_path, ec) ? std::filesystem::file_size(log_path, ec) : 0;
  std::vector<std::string> argv = c_.prefix;
  argv.insert(argv.end(), {"nats-server", "-a", c_.address, "-p", std::to_string(c_.port), "-js",
                                "-sd", (dir_ / "store").string(), "-l", log_path.string(), "--server_name", c_.name});
  if (c_.cluster_port != 0) {
    argv.insert(argv.end(), {"--cluster", "nats://127.0.0.1:" + std::to_string(c_.cluster_port), "--cluster_name", c_.cluster_name});
    std::string routes;
    for (int r : c_.routes) routes += (routes.empty() ? "" : ",") + std::string("nats://127.0.0.1:") + std::to_string(r);
    if (!routes.empty()) argv.insert(argv.end(), {"--routes", routes});
  }
  proc_ = ipc::process::exec(argv);
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < until) {
    const std::string text = log();
    if (text.size() > offset && text.find("Server is ready", offset) != std::string::npos) return;
    if (!proc_.running()) break;
    std::this_thread::sleep_for(20ms);
  }
  const std::string text = log();
  kill();
  throw std::runtime_error("nats-server on port " + std::to_string(c_.port) + " not ready in 10 s:\n" + text.substr(std::min<std::size_t>(offset, text.size())));
}

void nats_server::stop() {
  if (!proc_.joinable()) return;
  (void)proc_.kill(SIGTERM);
  if (!proc_.join_for(5s)) kill();
}

void nats_server::kill() {
  if (!proc_.joinable()) return;
  (void)proc_.kill(SIGKILL);
  (void)proc_.join();
}

}  // namespace ipc::test
