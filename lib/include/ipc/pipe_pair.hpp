// A duplex typed pipe between a process and its fork (Python's multiprocessing.Pipe()).
//
//   auto [parent_end, child_end] = ipc::pipe_pair<std::string>();
//   auto child = ipc::process::fork([&] {
//     parent_end.close();                         // keep only your own end, or EOF never comes
//     child_end.send("ready");
//     return child_end.recv() == "go" ? 0 : 1;
//   });
//   child_end.close();
//   auto hello = parent_end.recv();               // "ready"
//   parent_end.send("go");
//
// Each end is an ipc::connection<T>: send() and recv() in both directions over two anonymous pipes
// (pipe2, O_CLOEXEC, framed — <ipc/pipe.hpp>). Values are MessagePack (<ipc/serialize.hpp>). When
// the other end is closed in every process and its values are taken, recv() throws errc::closed
// and send() throws errc::closed (never SIGPIPE). A connection serves one process and one thread;
// values above max_message (64 KiB by default) throw errc::message_too_large.
#pragma once

#include <ipc/error.hpp>
#include <ipc/pipe.hpp>
#include <ipc/serialize.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

namespace ipc {

/// One end of a pipe_pair: sends T to the other end and receives T from it.
template <typename T>
class connection {
 public:
  using value_type = T;

  connection(std::unique_ptr<pipe_channel> tx, std::unique_ptr<pipe_channel> rx) noexcept
      : tx_(std::move(tx)), rx_(std::move(rx)) {}

  /// Blocks while the pipe is full. Throws errc::closed (other end closed, or this one),
  /// errc::message_too_large (nothing sent).
  void send(const T& v) { send_until(v, deadline::never()); }
  /// Blocks at most `timeout`; false on timeout (nothing sent). Throws as send().
  bool send_for(const T& v, std::chrono::nanoseconds timeout) { return send_until(v, deadline::in(timeout)); }

  /// Blocks until a value arrives. Throws errc::closed when the other end is closed everywhere and
  /// nothing is left, errc::corrupt for a message that is not a T.
  T recv() { return *recv_until(deadline::never()); }
  /// Blocks at most `timeout`; std::nullopt on timeout. Throws as recv().
  std::optional<T> recv_for(std::chrono::nanoseconds timeout) { return recv_until(deadline::in(timeout)); }
  /// Never blocks: true when recv() would not block (a value is waiting, or the other end is gone).
  [[nodiscard]] bool poll() const { return readable_within(std::chrono::nanoseconds::zero()); }
  /// Waits at most `timeout` for recv() not to block. Throws std::system_error naming poll.
  [[nodiscard]] bool readable_within(std::chrono::nanoseconds timeout) const;

  /// Closes this end in this process (both directions). Later calls on it throw errc::closed.
  void close() noexcept {
    tx_.reset();
    rx_.reset();
  }
  /// The read fd, for your own poll/epoll (-1 after close()).
  [[nodiscard]] int readable_fd() const noexcept { return rx_ ? rx_->readable_fd() : -1; }

 private:
  void check_open(std::string_view call) const {
    if (!tx_ || !rx_) throw_error(errc::closed, call, "pipe_pair", "this end was closed");
  }
  bool send_until(const T& v, const deadline& d) {
    check_open("connection::send");
    buffer_.clear();
    pack_into(buffer_, v);
    return tx_->send_until(buffer_, d);
  }
  std::optional<T> recv_until(const deadline& d) {
    check_open("connection::recv");
    if (!rx_->receive_until(buffer_, d)) return std::nullopt;
    return unpack<T>(buffer_, rx_->name());
  }

  std::unique_ptr<pipe_channel> tx_;
  std::unique_ptr<pipe_channel> rx_;
  std::vector<std::byte> buffer_;
};

/// Creates two connected ends (Python's Pipe()). Never blocks. Throws as pipe_channel::create.
template <typename T>
std::pair<connection<T>, connection<T>> pipe_pair(const pipe_options& options = {}) {
  auto [a_tx, b_rx] = pipe_channel::create(options);
  auto [b_tx, a_rx] = pipe_channel::create(options);
  return {connection<T>(std::move(a_tx), std::move(a_rx)), connection<T>(std::move(b_tx), std::move(b_rx))};
}

namespace detail {
/// poll(2) on fd for readability with a deadline, EINTR retried. Throws std::system_error naming poll.
IPC_API bool wait_readable(int fd, std::chrono::nanoseconds timeout);
}  // namespace detail

template <typename T>
bool connection<T>::readable_within(std::chrono::nanoseconds timeout) const {
  check_open("connection::poll");
  if (rx_->has_buffered_message()) return true;
  return detail::wait_readable(rx_->readable_fd(), timeout);
}

}  // namespace ipc
