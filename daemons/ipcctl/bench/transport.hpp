// Internal to the benchmark: a transport moves fixed-size messages between the benchmark's
// parent process and its forked child, over one mechanism, either through libipc, through the
// mechanism's plain syscalls ("raw"), or through Boost.Interprocess message_queue.
//
//   auto t = make_transport("msgq", "raw", "ipc-bench.1234.7");
//   t->setup(64, {side::child});        // parent, before fork: link 0, the child sends
//   // child:  t->open_child();  t->end(0).send();
//   // parent: t->open_parent(); t->end(0).receive();  ...  t->teardown();
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ipc::bench {

/// Which process of a measurement: the one that runs the benchmark, or its forked child.
enum class side { parent, child };

/// One process's end of one link.
class endpoint {
 public:
  endpoint() = default;
  virtual ~endpoint();
  endpoint(const endpoint&) = delete;
  endpoint& operator=(const endpoint&) = delete;

  /// Where the next message is built: exactly the cell's message size, kept between sends.
  virtual std::span<std::byte> message() = 0;
  /// Sends message(). Blocks while the link is full. Throws errc::closed when the peer is gone.
  virtual void send() = 0;
  /// Blocks for the next message; the view stays valid until the next receive(). Throws as send().
  virtual std::span<const std::byte> receive() = 0;
};

class transport {
 public:
  transport() = default;
  virtual ~transport();
  transport(const transport&) = delete;
  transport& operator=(const transport&) = delete;

  /// Parent, before fork: creates the objects of links carrying `size`-byte messages; senders[i] is
  /// the side that sends on link i. Opens what the parent can open already. Throws on failure.
  virtual void setup(std::size_t size, std::vector<side> senders) = 0;
  /// Child, after fork: drops its copies of the parent's ends, opens its own. Never waits for the parent.
  virtual void open_child() = 0;
  /// Parent, once the child has opened its ends: drops the child's ends, opens the rest of its own.
  virtual void open_parent() = 0;
  /// This process's end of link i (sending or receiving, as senders[i] says).
  virtual endpoint& end(std::size_t i) = 0;
  /// Called from the watchdog thread once the child is dead or killed: makes a call of the parent
  /// that would wait for ever return with an error. Never blocks, never throws.
  virtual void interrupt() noexcept = 0;
  /// Parent, after the child is reaped: closes its ends and removes every object. Idempotent.
  virtual void teardown() noexcept = 0;
};

/// The five channels, in table order.
inline constexpr std::string_view channel_names[] = {"pipe", "fifo", "msgq", "sem", "shm"};
/// Channels named by URI that the --idle and --rate sections measure after channel_names' (libipc
/// only; there is no raw twin): one line each. Selected by --channels through their scheme; the
/// bench makes the URI "<scheme>:<unique name>?<options>&open=create_only&max_message=64" (the
/// creator) or "...?<options>&open=open_only" (the other process), and removes the object by the
/// creator's remove().
struct uri_channel {
  std::string_view label;    ///< the row's channel column, e.g. "shm mpmc"
  std::string_view scheme;   ///< "shm"
  std::string_view options;  ///< the rest of the query, e.g. "mode=mpmc&slots=64"
};
inline constexpr uri_channel uri_channels[] = {
    {"shm mpmc", "shm", "mode=mpmc&slots=64"},
    {"shm broadcast", "shm", "mode=broadcast&slots=64"},
};

/// The reference row's channel and implementation names.
inline constexpr std::string_view boost_channel = "boost_mq";
inline constexpr std::string_view boost_impl = "boost";

/// The largest message this implementation carries in the benchmark's configuration, with the
/// reason it is the limit (for the "skipped" note). Never throws.
struct message_limit {
  std::size_t bytes;
  std::string why;
};
message_limit max_message(std::string_view channel, std::string_view impl);

/// What the implementation is, in one line (for --help and docs).
std::string describe(std::string_view channel, std::string_view impl);

/// A transport for channel (pipe, fifo, msgq, sem, shm, boost_mq or a uri_channels label) and impl
/// (libipc, raw, boost);
/// every object it makes is named from `prefix`, which must be unique to the cell.
std::unique_ptr<transport> make_transport(std::string_view channel, std::string_view impl, std::string prefix);

}  // namespace ipc::bench
