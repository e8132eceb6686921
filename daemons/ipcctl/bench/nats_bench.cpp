// ipc-bench-nats: the nats: rows of the benchmark. Starts its own nats-server (loopback, free port,
// JetStream in a temporary directory) unless --server is given, and measures in one run, with the
// same 64-byte messages:
//   shm, msgq                the local channels (libipc), for scale
//   nats-core  libnats       publishing directly with the NATS C client (core NATS)
//   nats-core  libipc        the nats: channel, core NATS
//   jetstream  libnats       js_Publish (waits for the server's ack) + pull consumer, async acks
//   jetstream  libipc        the nats: channel with ?jetstream= (acknowledged receive)
//   bridge     ipc-bridge    shm → ipc-bridge → JetStream → ipc-bridge → msgq (two real bridges)
// Throughput: one sender thread as fast as it can, one receiver; msgs/s over the whole transfer.
// Latency: the same path paced at --rate msgs/s, one-way, from the send time carried in the message
// (one host, CLOCK_MONOTONIC), p50 and p99. Single process (libnats' threads do not survive fork),
// except the bridges, which are real processes (ipc::process). Every message is checked.
#include "cli.hpp"
#include "daemon.hpp"
#include "table.hpp"

#include <ipc/channel.hpp>
#include <ipc/error.hpp>
#include <ipc/process.hpp>
#include <ipc/record.hpp>
#include <ipc/shm_ring.hpp>
#include <ipc/uri.hpp>

#include <nats/nats.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using clk = std::chrono::steady_clock;

constexpr std::size_t payload_size = 64;

// A path under test: a sender and a receiver of whole messages. receive returns false on timeout.
struct path {
  path() = default;
  path(const path&) = default;
  path& operator=(const path&) = default;
  virtual ~path() = default;  // a holder (below) keeps channels and processes alive through it
  std::function<void(std::span<const std::byte>)> send;
  std::function<bool(std::vector<std::byte>&, std::chrono::milliseconds)> receive;
};

struct result {
  std::string row, impl;
  double msgs_per_s = 0;
  std::uint64_t received = 0, sent = 0;
  double p50_us = 0, p99_us = 0;
  std::string note;
};

// Every message is a record (the bridge and the daemons' accounting need one): sequence and send time.
void fill(std::vector<std::byte>& wire, std::uint64_t seq) {
  static const std::vector<std::byte> payload(payload_size, std::byte{'n'});
  ipc::encode({0xbe11c4, seq, ipc::monotonic_now_ns()}, payload, wire);
}

// Throughput: `count` messages as fast as the path takes them; the receiver stops after a 2 s silence.
void throughput(path& p, std::uint64_t count, result& r) {
  std::atomic<std::uint64_t> sent{0};
  const auto t0 = clk::now();
  std::thread tx([&] {
    std::vector<std::byte> wire;
    for (std::uint64_t i = 1; i <= count; ++i) {
      fill(wire, i);
      p.send(wire);
      sent = i;
    }
  });
  std::vector<std::byte> buf;
  std::uint64_t got = 0;
  auto last = t0;
  while (got < count && p.receive(buf, 2000ms)) {
    if (!ipc::decode(buf)) throw std::runtime_error(r.row + ": a corrupt message");
    ++got;
    last = clk::now();
  }
  tx.join();
  r.sent = sent;
  r.received = got;
  r.msgs_per_s = static_cast<double>(got) / std::chrono::duration<double>(last - t0).count();
  if (got < count) r.note = std::to_string(count - got) + " not delivered (at-most-once)";
}

// Latency: paced at `rate`, one-way from the carried send time.
void latency(path& p, std::uint64_t rate, double seconds, result& r) {
  const auto count = static_cast<std::uint64_t>(static_cast<double>(rate) * seconds);
  std::thread tx([&] {
    std::vector<std::byte> wire;
    const auto start = clk::now();
    for (std::uint64_t i = 1; i <= count; ++i) {
      std::this_thread::sleep_until(start + std::chrono::nanoseconds(1'000'000'000 / rate) * i);
      fill(wire, i);
      p.send(wire);
    }
  });
  std::vector<std::uint64_t> ns;
  std::vector<std::byte> buf;
  while (ns.size() < count && p.receive(buf, 2000ms)) {
    const auto now = ipc::monotonic_now_ns();
    auto d = ipc::decode(buf);
    if (!d) throw std::runtime_error(r.row + ": a corrupt message");
    ns.push_back(now - d.header.send_time_ns);
  }
  tx.join();
  if (ns.empty()) return;
  std::sort(ns.begin(), ns.end());
  r.p50_us = static_cast<double>(ns[ns.size() / 2]) / 1000.0;
  r.p99_us = static_cast<double>(ns[std::min(ns.size() - 1, ns.size() * 99 / 100)]) / 1000.0;
}

// ---- libipc channels (local and nats:) ----
struct channel_path {
  std::unique_ptr<ipc::channel> rx, tx;
  path make() {
    path p;
    p.send = [this](std::span<const std::byte> m) { tx->send(m); };
    p.receive = [this](std::vector<std::byte>& b, std::chrono::milliseconds t) { return rx->receive_for(b, t).has_value(); };
    return p;
  }
};

// ---- libnats directly ----
[[noreturn]] void fail(natsStatus s, const char* call) {
  throw std::runtime_error(std::string(call) + ": " + natsStatus_GetText(s));
}

struct nats_direct {
  natsConnection* nc = nullptr;
  natsSubscription* sub = nullptr;
  jsCtx* js = nullptr;
  std::string subject;
  std::vector<natsMsg*> batch;
  std::size_t next = 0;
  explicit nats_direct(const std::string& url, std::string subj, const std::string& stream) : subject(std::move(subj)) {
    if (auto s = natsConnection_ConnectTo(&nc, url.c_str()); s != NATS_OK) fail(s, "natsConnection_ConnectTo");
    if (stream.empty()) {
      if (auto s = natsConnection_SubscribeSync(&sub, nc, subject.c_str()); s != NATS_OK) fail(s, "natsConnection_SubscribeSync");
      natsSubscription_SetPendingLimits(sub, -1, -1);
      natsConnection_Flush(nc);
      return;
    }
    if (auto s = natsConnection_JetStream(&js, nc, nullptr); s != NATS_OK) fail(s, "natsConnection_JetStream");
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const char* subjects[] = {subject.c_str()};
    cfg.Name = stream.c_str();
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.Retention = js_WorkQueuePolicy;
    jsStreamInfo* si = nullptr;
    if (auto s = js_AddStream(&si, js, &cfg, nullptr, nullptr); s != NATS_OK) fail(s, "js_AddStream");
    jsStreamInfo_Destroy(si);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.MaxAckPending = 100000;
    if (auto s = js_PullSubscribe(&sub, js, subject.c_str(), "bench", nullptr, &so, nullptr); s != NATS_OK) fail(s, "js_PullSubscribe");
  }
  ~nats_direct() {
    for (std::size_t i = next; i < batch.size(); ++i) natsMsg_Destroy(batch[i]);
    natsSubscription_Destroy(sub);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
  }
  nats_direct(const nats_direct&) = delete;
  nats_direct& operator=(const nats_direct&) = delete;

  path make() {
    path p;
    p.send = [this](std::span<const std::byte> m) {
              if (js == nullptr) {
                if (auto s = natsConnection_Publish(nc, subject.c_str(), m.data(), static_cast<int>(m.size())); s != NATS_OK) fail(s, "natsConnection_Publish");
                return;
              }
              jsPubAck* pa = nullptr;
              if (auto s = js_Publish(&pa, js, subject.c_str(), m.data(), static_cast<int>(m.size()), nullptr, nullptr); s != NATS_OK) fail(s, "js_Publish");
              jsPubAck_Destroy(pa);
            };
    p.receive = [this](std::vector<std::byte>& b, std::chrono::milliseconds t) {
              natsMsg* m = nullptr;
              if (js == nullptr) {
                if (natsSubscription_NextMsg(&m, sub, t.count()) != NATS_OK) return false;
              } else {
                if (next == batch.size()) {
                  batch.clear();
                  next = 0;
                  natsMsgList list{};
                  if (natsSubscription_Fetch(&list, sub, 256, t.count(), nullptr) != NATS_OK) return false;
                  for (int i = 0; i < list.Count; ++i) {
                    batch.push_back(list.Msgs[i]);
                    list.Msgs[i] = nullptr;
                  }
                  natsMsgList_Destroy(&list);
                  if (batch.empty()) return false;
                }
                m = batch[next++];
                natsMsg_Ack(m, nullptr);
              }
              const auto* d = reinterpret_cast<const std::byte*>(natsMsg_GetData(m));
              b.assign(d, d + natsMsg_GetDataLength(m));
              natsMsg_Destroy(m);
              return true;
            };
    return p;
  }
};

// ---- a nats-server of our own ----
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    throw std::system_error(errno, std::system_category(), "bind(127.0.0.1:0)");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

// A private directory for the bridges' status files, removed at exit.
struct scratch {
  std::filesystem::path path;
  scratch() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "ipc-bench-nats-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::system_error(errno, std::system_category(), "mkdtemp(" + tmpl + ")");
    path = tmpl;
  }
  ~scratch() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  scratch(const scratch&) = delete;
  scratch& operator=(const scratch&) = delete;
};

struct own_server {
  std::filesystem::path dir;
  ipc::process proc;
  std::string address;
  own_server() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "ipc-bench-nats-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::system_error(errno, std::system_category(), "mkdtemp");
    dir = tmpl;
    const int port = free_port();
    address = "127.0.0.1:" + std::to_string(port);
    proc = ipc::process::exec({"nats-server", "-a", "127.0.0.1", "-p", std::to_string(port), "-js", "-sd", (dir / "store").string(),
                               "-l", (dir / "log").string()});
    for (int i = 0; i < 500; ++i) {
      std::ifstream in(dir / "log");
      std::stringstream s;
      s << in.rdbuf();
      if (s.str().find("Server is ready") != std::string::npos) return;
      std::this_thread::sleep_for(20ms);
    }
    throw std::runtime_error("nats-server not ready in 10 s");
  }
  ~own_server() {
    if (proc.joinable()) {
      (void)proc.kill(SIGTERM);
      if (!proc.join_for(5s)) (void)proc.kill(SIGKILL);
    }
    proc = ipc::process();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  own_server(const own_server&) = delete;
  own_server& operator=(const own_server&) = delete;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"The nats: rows of the benchmark: local channels, the NATS C client directly, the nats: channel\n"
               "(core and JetStream) and the shm -> ipc-bridge -> JetStream -> ipc-bridge -> msgq chain, with 64-byte\n"
               "messages: throughput (msgs/s) and one-way latency at a fixed rate (p50, p99). See docs/beyond-one-machine.md.",
               "ipc-bench-nats"};
  ipc::daemon::add_common(app);
  std::uint64_t count = 20000, rate = 1000;
  double seconds = 2;
  std::string server;
  bool json = false;
  ipc::daemon::add_count(app, "--count", count, 100, 10'000'000, "messages per throughput measurement (default 20000)");
  ipc::daemon::add_count(app, "--rate", rate, 1, 100000, "messages/s for the latency measurement (default 1000)");
  ipc::daemon::add_seconds(app, "--duration", seconds, 0.1, 60, "seconds of the latency measurement (default 2)");
  app.add_option("--server", server, "HOST:PORT of a nats-server with JetStream (default: start one on loopback)");
  app.add_flag("--json", json, "print JSON instead of the table");
  if (auto rc = ipc::daemon::parse(app, argc, argv)) return *rc;
  ::signal(SIGPIPE, SIG_IGN);
  try {
    if (!std::getenv("IPC_RUNTIME_DIR") && ::geteuid() != 0 && !std::getenv("XDG_RUNTIME_DIR")) ::setenv("IPC_RUNTIME_DIR", "/tmp", 0);
    std::optional<own_server> own;
    if (server.empty()) {
      own.emplace();
      server = own->address;
    }
    const std::string tag = "bench" + std::to_string(::getpid());
    const scratch work;
    std::vector<result> results;
    auto measure = [&](const std::string& row, const std::string& impl, const std::function<std::unique_ptr<path>(int)>& make, const std::function<void()>& cleanup) {
      result r;
      r.row = row;
      r.impl = impl;
      {
        auto p = make(0);
        throughput(*p, count, r);
      }
      {
        auto p = make(1);
        latency(*p, rate, seconds, r);
      }
      cleanup();
      results.push_back(r);
      std::fprintf(stderr, "%s %s: %.0f msgs/s, p50 %.1f us\n", row.c_str(), impl.c_str(), r.msgs_per_s, r.p50_us);
    };
    // Holds whatever the path needs alive (channels, connections, processes).
    struct holder : path {
      std::vector<std::shared_ptr<void>> keep;
    };
    auto channel_pair = [&](const std::string& rx_uri, const std::string& tx_uri) {
      auto h = std::make_unique<holder>();
      auto c = std::make_shared<channel_path>();
      c->rx = ipc::open_channel(rx_uri, ipc::role::receiver);
      c->tx = ipc::open_channel(tx_uri, ipc::role::sender);
      static_cast<path&>(*h) = c->make();
      h->keep.push_back(c);
      return std::unique_ptr<path>(std::move(h));
    };
    measure("shm", "libipc", [&](int i) { return channel_pair("shm:" + tag + "-s" + std::to_string(i), "shm:" + tag + "-s" + std::to_string(i)); },
            [&] {
              for (int i = 0; i < 2; ++i) (void)ipc::shm_ring::remove(tag + "-s" + std::to_string(i));
            });
    measure("msgq", "libipc", [&](int i) { return channel_pair("msgq:" + tag + "-q" + std::to_string(i), "msgq:" + tag + "-q" + std::to_string(i)); },
            [&] {
              for (int i = 0; i < 2; ++i) ipc::open_channel("msgq:" + tag + "-q" + std::to_string(i), ipc::role::receiver)->remove();
            });
    measure("nats-core", "libnats",
            [&](int i) {
              auto h = std::make_unique<holder>();
              auto d = std::make_shared<nats_direct>("nats://" + server, "bench." + tag + ".d" + std::to_string(i), "");
              static_cast<path&>(*h) = d->make();
              h->keep.push_back(d);
              return std::unique_ptr<path>(std::move(h));
            },
            [] {});
    measure("nats-core", "libipc",
            [&](int i) {
              const std::string u = "nats://" + server + "/bench." + tag + ".c" + std::to_string(i);
              return channel_pair(u, u);
            },
            [] {});
    measure("jetstream", "libnats",
            [&](int i) {
              auto h = std::make_unique<holder>();
              auto d = std::make_shared<nats_direct>("nats://" + server, "bench." + tag + ".jd" + std::to_string(i), tag + "-JD" + std::to_string(i));
              static_cast<path&>(*h) = d->make();
              h->keep.push_back(d);
              return std::unique_ptr<path>(std::move(h));
            },
            [] {});
    auto js_uri = [&](const std::string& name) { return "nats://" + server + "/bench." + tag + "." + name + "?jetstream=" + tag + "-" + name; };
    measure("jetstream", "libipc", [&](int i) { return channel_pair(js_uri("j" + std::to_string(i)), js_uri("j" + std::to_string(i))); },
            [&] {
              for (int i = 0; i < 2; ++i) ipc::open_channel(js_uri("j" + std::to_string(i)), ipc::role::sender)->remove();
            });
    const std::string bridge = ipc::daemon::own_directory() + "/ipc-bridge";
    const std::string bridge_path = std::filesystem::exists(bridge) ? bridge : ipc::daemon::own_directory() + "/../../ipc-bridge";
    measure("bridge", "ipc-bridge",
            [&](int i) {
              const std::string n = std::to_string(i);
              auto h = std::make_unique<holder>();
              auto c = std::make_shared<channel_path>();
              c->rx = ipc::open_channel("msgq:" + tag + "-by" + n, ipc::role::receiver);
              c->tx = ipc::open_channel("shm:" + tag + "-bx" + n, ipc::role::sender);
              // Status files in the bench's own directory (a daemon replaces its status file by rename).
              auto out = std::make_shared<ipc::process>(ipc::process::exec(
                  {bridge_path, "--from", js_uri("b" + n), "--to", "msgq:" + tag + "-by" + n, "--stats-interval", "0", "--status-file",
                   (work.path / ("out" + n + ".status")).string()}));
              auto in = std::make_shared<ipc::process>(ipc::process::exec(
                  {bridge_path, "--from", "shm:" + tag + "-bx" + n, "--to", js_uri("b" + n), "--stats-interval", "0", "--status-file",
                   (work.path / ("in" + n + ".status")).string()}));
              static_cast<path&>(*h) = c->make();
              h->keep.push_back(in);
              h->keep.push_back(out);
              h->keep.push_back(c);
              return std::unique_ptr<path>(std::move(h));
            },
            [&] {
              for (int i = 0; i < 2; ++i) {
                const std::string n = std::to_string(i);
                (void)ipc::shm_ring::remove(tag + "-bx" + n);
                ipc::open_channel("msgq:" + tag + "-by" + n, ipc::role::receiver)->remove();
                ipc::open_channel(js_uri("b" + n), ipc::role::sender)->remove();
              }
            });
    if (json) {
      nlohmann::json j = nlohmann::json::array();
      for (const auto& r : results) {
        j.push_back({{"path", r.row}, {"impl", r.impl}, {"msgs_per_s", r.msgs_per_s}, {"sent", r.sent}, {"received", r.received},
                     {"p50_us", r.p50_us}, {"p99_us", r.p99_us}, {"note", r.note}});
      }
      std::cout << j.dump(2) << "\n";
      return 0;
    }
    ipc::daemon::table t({"path", "impl", "msgs/s", "p50 us", "p99 us", "note"}, {false, false, true, true, true, false});
    using ipc::daemon::fmt;
    for (const auto& r : results) t.add({r.row, r.impl, fmt(r.msgs_per_s, 0), fmt(r.p50_us, 1), fmt(r.p99_us, 1), r.note});
    std::cout << "64-byte records; throughput: " << count << " as fast as taken; latency: one-way at " << rate << "/s for " << seconds
              << " s; server " << server << "\n"
              << t.render();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "<3>ipc-bench-nats: %s\n", e.what());
    return 1;
  }
}
