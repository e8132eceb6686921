// Internal to the benchmark: the shm channel's modes with several processes on one object, which
// the two-process cells cannot show. N senders and M receivers (each its own forked process,
// through ipc::process) open one URI; the senders send `size`-byte messages for `seconds`, then
// leave; the receivers take until the channel says closed. Figures: total messages received per
// second, from the common start to the last receiver's end, every message's size checked.
//
//   mode_figures f = measure_mode("shm:x?mode=mpmc&slots=1024&max_message=64", 2, 2, 64, 1.0);
//
// Another library takes part through a mode_opener (Boost.Interprocess message_queue:
// measure_boost_mode, transport_modes_boost.cpp), run by the same run_mode.
#pragma once

#include <ipc/channel.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace ipc::bench {

struct mode_figures {
  std::uint64_t messages = 0;  ///< received by all receivers
  std::uint64_t sent = 0;      ///< sent by all senders (= messages for a work queue; × receivers for broadcast)
  double seconds = 0;          ///< from the start signal to the last receiver's end
  [[nodiscard]] double rate() const { return seconds > 0 ? static_cast<double>(messages) / seconds : 0; }
};

/// One process's end of the object of a modes run, opened in that process.
class mode_end {
 public:
  mode_end() = default;
  virtual ~mode_end() = default;
  mode_end(const mode_end&) = delete;
  mode_end& operator=(const mode_end&) = delete;
  /// Blocks while full. Throws on failure.
  virtual void send(std::span<const std::byte> message) = 0;
  /// Blocks for the next message into `buf`; false once the stream has ended (every sender gone).
  virtual bool receive(std::vector<std::byte>& buf) = 0;
  /// A sender after its last message; `last_sender` once every sender got here, when the
  /// `receivers` must be told the stream ended (where leaving does not say so). Default: nothing.
  virtual void finish(bool last_sender, unsigned receivers) { (void)last_sender, (void)receivers; }
};
/// Opens a sender or receiver end; runs in the child process.
using mode_opener = std::function<std::unique_ptr<mode_end>(role)>;

/// Forks `senders` + `receivers` processes that open their ends with `open` (receivers first),
/// lets the senders send `size`-byte messages for `seconds`, and times until the last receiver saw
/// the end. Blocks for about `seconds`, at most seconds + 40 s. Throws errc::closed / errc::corrupt
/// naming `what` when a child failed, did not get ready within 10 s or did not finish (the rest are
/// then killed); every child is reaped.
mode_figures run_mode(const mode_opener& open, unsigned senders, unsigned receivers, std::size_t size, double seconds,
                      const std::string& what);

/// The same with Boost.Interprocess message_queue "NAME" of `depth` messages of `size` bytes
/// (created here, mode 0600, removed afterwards): the last sender queues one end marker per receiver.
mode_figures measure_boost_mode(const std::string& name, std::size_t depth, unsigned senders, unsigned receivers,
                                std::size_t size, double seconds);

/// Runs one configuration; removes the object afterwards. Throws on any failure (a child that
/// failed, a message of the wrong size, a run that did not end within seconds + 30 s).
mode_figures measure_mode(const std::string& uri, unsigned senders, unsigned receivers, std::size_t size,
                          double seconds);

/// One row of the modes section.
struct mode_row {
  std::string label;      ///< "spsc 1→1", "mpmc 2→2", "broadcast 1→4", ...
  std::size_t size = 0;
  mode_figures figures;
  double vs_spsc = 0;     ///< this row's msg/s ÷ the SPSC row's at the same size (broadcast: per subscriber)
  std::string error;      ///< set when the measurement failed
  unsigned receivers = 1;  ///< processes receiving
  bool broadcast = false; ///< every receiver gets every message: the rate that matters is per receiver
  unsigned senders = 1;   ///< processes sending
  /// Messages per second each receiver got: the total divided among the receivers.
  [[nodiscard]] double per_receiver_rate() const { return receivers > 0 ? figures.rate() / receivers : 0; }
};

/// The --modes section: at each size, shm SPSC 1→1 (the ring), MPMC 1→1, MPMC 2→2, and broadcast
/// (policy=block) 1→1 and 1→4, then Boost.Interprocess message_queue 1→1 and 2→2 (an MPMC queue)
/// with the MPMC rows' slots; the rows of a size run in cell_rounds interleaved rounds of
/// seconds ÷ cell_rounds, each row keeping its best. Never throws.
std::vector<mode_row> measure_mode_rows(const std::vector<std::size_t>& sizes, double seconds, const std::string& prefix);
std::string mode_table(const std::vector<mode_row>& rows, double seconds);

}  // namespace ipc::bench
